"""Xiji in JupyterLab: save the running environment as an image, release the cluster, see its
running time, cost and budget.

Two halves in one package:

- a prebuilt JupyterLab extension (``share/jupyter/labextensions/jupyterlab-xiji``) with the
  "Save environment as image" command, dialog and progress notification, the "Release this
  cluster" command and the status bar's usage item;
- a Jupyter Server extension (this module) whose handlers under ``{base_url}xiji/`` call the
  Xiji hub with the server's own API token, so the browser never handles a hub token.
"""

from .handlers import setup_handlers

__version__ = "0.1.0"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyterlab-xiji"}]


def _jupyter_server_extension_points():
    return [{"module": "jupyterlab_xiji"}]


def _load_jupyter_server_extension(server_app):
    setup_handlers(server_app.web_app)
    server_app.log.info(
        "jupyterlab_xiji: save-image, release and usage handlers at %sxiji/", server_app.base_url
    )


# Older name, still called by some servers.
load_jupyter_server_extension = _load_jupyter_server_extension
