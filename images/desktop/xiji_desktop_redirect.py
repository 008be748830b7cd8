"""Jupyter server extension of Xiji's desktop image: `{node prefix}desktop/` redirects to the
hub's desktop page for this node, `/hub/desktop{node prefix}`, where the hub checks who is asking
and serves the noVNC client. The redirect reveals nothing; no authentication is needed for it."""

import os

from tornado import web


class DesktopRedirect(web.RequestHandler):
    def initialize(self, target):
        self.target = target

    def get(self):
        query = self.request.query
        self.redirect(self.target + (("?" + query) if query else ""))


def _jupyter_server_extension_points():
    return [{"module": "xiji_desktop_redirect"}]


def _load_jupyter_server_extension(serverapp):
    base = serverapp.base_url  # the node's prefix, e.g. /user/alice/node-1/
    hub_base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
    rest = base[len(hub_base):] if base.startswith(hub_base) else base.lstrip("/")
    target = hub_base + "hub/desktop/" + rest
    pattern = base.rstrip("/") + "/desktop/?"
    serverapp.web_app.add_handlers(".*$", [(pattern, DesktopRedirect, {"target": target})])
    serverapp.log.info("xiji desktop: %sdesktop/ redirects to %s", base, target)
