"""Handlers under ``{base_url}xiji/`` that call the Xiji hub for this server.

- ``POST xiji/save-image`` ``{"name", "tag", "description"}`` → the hub's
  ``POST /hub/api/users/{user}/server[s/{server}]/save-image`` for this node;
- ``GET xiji/save-jobs`` → this server's save jobs;
- ``GET xiji/save-jobs/{id}`` → one job's state and progress;
- ``DELETE xiji/save-jobs/{id}`` → cancel it;
- ``POST xiji/release`` → the hub's ``DELETE /hub/api/users/{user}/server[s/{server}]``: stops this
  server (every node of its cluster) and gives its resources back;
- ``GET xiji/usage`` → the hub's ``GET /hub/api/users/{user}/usage/live?server={server}``: the
  cluster's running time, cost so far and budget.

The hub is reached at ``JUPYTERHUB_API_URL`` with ``JUPYTERHUB_API_TOKEN`` — the token the hub gave
this server, which it allows to save, stop and meter only this server. The user, server and node come from
``JUPYTERHUB_USER``, ``JUPYTERHUB_SERVER_NAME`` and ``XIJI_NODE`` (else the host name, which the
docker backend sets to the node's name). Only users who may use this server reach the handlers
(``tornado.web.authenticated`` with the single-user server's hub login).
"""

import json
import os
import socket
from urllib.parse import quote, urlencode

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

TIMEOUT_SECONDS = 60.0


class HubSettings:
    """What the hub gave this server in its environment."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.api_url = env.get("JUPYTERHUB_API_URL", "").rstrip("/")
        self.token = env.get("JUPYTERHUB_API_TOKEN") or env.get("JPY_API_TOKEN", "")
        self.user = env.get("JUPYTERHUB_USER", "")
        self.server = env.get("JUPYTERHUB_SERVER_NAME", "")
        self.node = env.get("XIJI_NODE") or socket.gethostname()

    def missing(self):
        """The variables that are not set."""
        wanted = {
            "JUPYTERHUB_API_URL": self.api_url,
            "JUPYTERHUB_API_TOKEN": self.token,
            "JUPYTERHUB_USER": self.user,
        }
        return [name for name, value in wanted.items() if not value]

    def server_path(self):
        """``users/{user}/server`` or ``users/{user}/servers/{server}``."""
        user = quote(self.user, safe="")
        if self.server:
            return f"users/{user}/servers/{quote(self.server, safe='')}"
        return f"users/{user}/server"


def save_body(body, node):
    """The hub's request body from the browser's: only the known fields, with this node."""
    if not isinstance(body, dict):
        raise web.HTTPError(400, "The request body must be a JSON object")
    out = {"node": node}
    for key in ("name", "tag", "description"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise web.HTTPError(400, f"{key} must be a string")
            out[key] = value
    return out


class HubProxyHandler(APIHandler):
    """Base: one call to the hub, answered with the hub's status and JSON."""

    async def call_hub(self, method, path, body=None):
        settings = HubSettings()
        missing = settings.missing()
        if missing:
            raise web.HTTPError(
                503,
                "This server was not started by a Xiji hub (missing " + ", ".join(missing) + ")",
            )
        request = HTTPRequest(
            url=f"{settings.api_url}/{path}",
            method=method,
            headers={
                "Authorization": f"token {settings.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            request_timeout=TIMEOUT_SECONDS,
        )
        client = AsyncHTTPClient()
        try:
            response = await client.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as error:
            self.log.warning("xiji: cannot reach the hub at %s: %s", settings.api_url, error)
            raise web.HTTPError(502, "Cannot reach the hub; try again in a moment") from error
        if response.code == 599:
            raise web.HTTPError(502, "Cannot reach the hub; try again in a moment")
        text = response.body.decode("utf-8", "replace") if response.body else ""
        if response.code == 204:
            # No content: the browser gets the same (a 204 cannot carry a body).
            self.set_status(204)
            self.finish()
            return
        self.set_status(response.code)
        self.set_header("Content-Type", "application/json")
        self.finish(text or "{}")

    def hub_settings(self):
        return HubSettings()


class SaveImageHandler(HubProxyHandler):
    @web.authenticated
    async def post(self):
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as error:
            raise web.HTTPError(400, f"Invalid JSON: {error}") from error
        settings = self.hub_settings()
        await self.call_hub(
            "POST", settings.server_path() + "/save-image", save_body(body, settings.node)
        )


class SaveJobsHandler(HubProxyHandler):
    @web.authenticated
    async def get(self):
        settings = self.hub_settings()
        await self.call_hub("GET", f"users/{quote(settings.user, safe='')}/save-jobs")


class SaveJobHandler(HubProxyHandler):
    @web.authenticated
    async def get(self, job_id):
        await self.call_hub("GET", f"save-jobs/{quote(job_id, safe='')}")

    @web.authenticated
    async def delete(self, job_id):
        await self.call_hub("DELETE", f"save-jobs/{quote(job_id, safe='')}")


class ReleaseHandler(HubProxyHandler):
    """Stops this server: every node of its cluster, its resources given back."""

    @web.authenticated
    async def post(self):
        settings = self.hub_settings()
        await self.call_hub("DELETE", settings.server_path())


class UsageHandler(HubProxyHandler):
    """This server's running time, cost so far, price per hour and its budget."""

    @web.authenticated
    async def get(self):
        settings = self.hub_settings()
        query = urlencode({"server": settings.server})
        await self.call_hub(
            "GET", f"users/{quote(settings.user, safe='')}/usage/live?{query}"
        )


def setup_handlers(web_app):
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base_url, "xiji", "save-image"), SaveImageHandler),
            (url_path_join(base_url, "xiji", "save-jobs"), SaveJobsHandler),
            (url_path_join(base_url, "xiji", "save-jobs", r"([0-9a-f]{1,64})"), SaveJobHandler),
            (url_path_join(base_url, "xiji", "release"), ReleaseHandler),
            (url_path_join(base_url, "xiji", "usage"), UsageHandler),
        ],
    )
