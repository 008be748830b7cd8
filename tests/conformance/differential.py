#!/usr/bin/env python3
"""Differential conformance test: the same REST request sequence against the real JupyterHub 5.5
(with its own configurable-http-proxy) and against Xiji; status codes, content types and JSON
shapes (key sets, value types, and stable values, with timestamps, ids, secrets and ports
normalised) are compared step by step.

    <venv5>/bin/python tests/conformance/differential.py [--only jupyterhub|xiji] [--dump DIR]

Exits non-zero on any mismatch not listed in tests/conformance/known-differences.toml.
Environment: XIJI_TEST_VENV5, XIJI_TEST_NODE_MODULES (default <repo>/.cache/...),
XIJI_BIN (default <repo>/target/debug/xiji). Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import re
import sys
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hubs  # noqa: E402

HERE = Path(__file__).resolve().parent
ALLOW_LIST = HERE / "known-differences.toml"
PAGINATION = "application/jupyterhub-pagination+json"
API = "/hub/api"

# ---------------------------------------------------------------------------------------------
# Recording


@dataclass
class Record:
    label: str
    request: str
    status: int
    content_type: str
    body: object  # parsed JSON, or {"<text>": first bytes} for non-JSON bodies, or None if empty
    notes: dict = field(default_factory=dict)  # derived facts compared as values


class Session:
    """Runs the scenario against one hub and records every step."""

    def __init__(self, hub: hubs.Hub):
        self.hub = hub
        self.records: list[Record] = []
        self.tokens: dict[str, str] = {"svc": hub.service_token}
        self.ids: dict[str, str] = {}

    def auth(self, token: str | None) -> dict[str, str]:
        if token is None:
            return {}
        value = self.tokens.get(token, token if token.startswith("raw:") else "missing-token")
        value = value.removeprefix("raw:")
        return {"Authorization": f"token {value}"}

    def call(self, label, method, path, token="svc", json_body=None, raw=None, headers=None,
             timeout=30.0, record=True) -> hubs.Response:
        hdrs = self.auth(token)
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        elif raw is not None:
            body = raw
            hdrs.setdefault("Content-Type", "application/json")
        hdrs.update(headers or {})
        full = path if path.startswith("/hub/") or path == "/" else API + path
        resp = self.hub.request(method, full, hdrs, body, timeout=timeout)
        if record:
            self.add(label, f"{method} {full}", resp)
        return resp

    def add(self, label, request, resp: hubs.Response | None, notes=None, body=None):
        if resp is None:
            self.records.append(Record(label, request, -1, "", body, notes or {}))
            return
        parsed = resp.json()
        if parsed is None and resp.body:
            parsed = {"<text>": resp.body[:60].decode("utf-8", "replace")}
        if resp.status == 0:
            parsed = {"<connection error>": resp.headers.get("x-error", "")}
        self.records.append(
            Record(label, request, resp.status, resp.content_type, parsed, notes or {})
        )


# ---------------------------------------------------------------------------------------------
# Progress streams (server-sent events)


def read_progress(hub: hubs.Hub, path: str, token: str, timeout: float = 60.0):
    """GETs a progress stream; returns (status, content type, events or error body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=timeout)
    try:
        conn.request("GET", API + path, headers={"Authorization": f"token {token}",
                                                 "Accept": "text/event-stream"})
        r = conn.getresponse()
        ctype = (r.getheader("content-type") or "").split(";")[0].strip()
        if r.status != 200:
            body = r.read()
            try:
                return r.status, ctype, json.loads(body)
            except ValueError:
                return r.status, ctype, {"<text>": body[:60].decode("utf-8", "replace")}
        events = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = r.fp.readline()
            if not line:
                break
            line = line.decode("utf-8", "replace").strip()
            if line.startswith("data:"):
                try:
                    ev = json.loads(line[5:].strip())
                except ValueError:
                    ev = {"<unparsable>": line[:60]}
                events.append(ev)
                if isinstance(ev, dict) and (ev.get("ready") or ev.get("failed")):
                    break
        return 200, ctype, events
    except (OSError, http.client.HTTPException) as e:
        return 0, "", {"<connection error>": str(e)}
    finally:
        conn.close()


def spawn_watching_progress(s: Session, label: str, server_path: str, progress_path: str):
    """POSTs a spawn in a thread and follows its progress stream from the first event."""
    result: dict = {}

    def post():
        result["resp"] = s.call(label + " POST", "POST", server_path, record=False, timeout=90)

    t = threading.Thread(target=post, daemon=True)
    t.start()
    status, ctype, events = 0, "", None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, ctype, events = read_progress(s.hub, progress_path, s.tokens["svc"], timeout=90)
        if status == 200:
            break
        if not t.is_alive():
            break
        time.sleep(0.05)
    t.join(95)
    resp = result.get("resp")
    s.add(label + ": POST", f"POST {API}{server_path}", resp)
    if status == 200 and isinstance(events, list):
        s.add(
            label + ": progress stream (first and last events)",
            f"GET {API}{progress_path}",
            hubs.Response(200, {"content-type": ctype}, b""),
            notes={
                "first": events[0] if events else None,
                "last": events[-1] if events else None,
                "more_than_one_event": len(events) > 1,
            },
        )
    else:
        s.add(label + ": progress stream", f"GET {API}{progress_path}",
              hubs.Response(status, {"content-type": ctype}, json.dumps(events).encode()))
    return resp


def wait_server(s: Session, user: str, server: str, want_ready: bool, timeout=60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = s.call("", "GET", f"/users/{user}", record=False)
        model = r.json() or {}
        srv = (model.get("servers") or {}).get(server)
        if want_ready and srv and srv.get("ready"):
            return True
        if not want_ready and not srv:
            return True
        time.sleep(0.2)
    return False


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat() + "Z"


# ---------------------------------------------------------------------------------------------
# The scenario: one request sequence, run against each hub in turn.


def scenario(s: Session) -> None:
    c = s.call

    # --- the hub itself
    c("root without credentials", "GET", "/hub/api/", token=None)
    c("root, no trailing slash", "GET", "/hub/api", token=None)
    c("info", "GET", "/info")
    c("info without credentials", "GET", "/info", token=None)
    c("unknown API path", "GET", "/nonexistent")

    # --- users
    c("create one user", "POST", "/users/alice")
    c("create the same user again", "POST", "/users/alice")
    c("create users in bulk", "POST", "/users", json_body={"usernames": ["bob", "carol", "dave"]})
    c("bulk create, all exist", "POST", "/users", json_body={"usernames": ["bob", "carol"]})
    c("bulk create, some exist", "POST", "/users", json_body={"usernames": ["bob", "erin"]})
    c("bulk create, admin flag", "POST", "/users",
      json_body={"usernames": ["gina"], "admin": True})
    c("bulk create, empty list", "POST", "/users", json_body={"usernames": []})
    c("bulk create, unknown key", "POST", "/users",
      json_body={"usernames": ["zoe"], "colour": "red"})
    c("bulk create, invalid name", "POST", "/users", json_body={"usernames": ["ok1", "bad/name"]})
    c("create user with admin body", "POST", "/users/hank", json_body={"admin": True})
    c("get a user", "GET", "/users/alice")
    c("get an admin user", "GET", "/users/hank")
    c("get unknown user", "GET", "/users/nobody")
    c("list users", "GET", "/users")
    c("list users, offset and limit", "GET", "/users?offset=1&limit=2")
    c("list users, paginated envelope", "GET", "/users?offset=1&limit=2",
      headers={"Accept": PAGINATION})
    c("list users, paginated, last page", "GET", "/users?offset=6&limit=3",
      headers={"Accept": PAGINATION})
    c("list users, paginated, default limit", "GET", "/users", headers={"Accept": PAGINATION})
    c("list users, limit 0", "GET", "/users?limit=0", headers={"Accept": PAGINATION})
    c("list users, negative offset", "GET", "/users?offset=-2&limit=2",
      headers={"Accept": PAGINATION})
    c("list users, limit over the max", "GET", "/users?limit=100000",
      headers={"Accept": PAGINATION})
    c("list users, non-integer offset", "GET", "/users?offset=abc")
    c("list users, non-integer limit", "GET", "/users?limit=1.5")
    c("list users, state=active", "GET", "/users?state=active")
    c("list users, state=ready", "GET", "/users?state=ready")
    c("list users, state=inactive", "GET", "/users?state=inactive")
    c("list users, state=bogus", "GET", "/users?state=bogus")
    c("list users, name_filter", "GET", "/users?name_filter=ar")
    c("list users, sort by name desc", "GET", "/users?sort=-name")
    c("list users, include_stopped_servers", "GET", "/users?include_stopped_servers")
    c("patch admin on", "PATCH", "/users/carol", json_body={"admin": True})
    c("patch admin off", "PATCH", "/users/carol", json_body={"admin": False})
    c("patch rename", "PATCH", "/users/dave", json_body={"name": "dave2"})
    c("get renamed user by old name", "GET", "/users/dave")
    c("get renamed user by new name", "GET", "/users/dave2")
    c("patch rename onto an existing user", "PATCH", "/users/dave2", json_body={"name": "bob"})
    c("patch unknown key", "PATCH", "/users/bob", json_body={"colour": "red"})
    c("patch admin with a string", "PATCH", "/users/bob", json_body={"admin": "yes"})
    c("patch with no body", "PATCH", "/users/bob")
    c("patch unknown user", "PATCH", "/users/nobody", json_body={"admin": True})
    c("delete a user", "DELETE", "/users/erin")
    c("delete it again", "DELETE", "/users/erin")
    c("delete the service itself as a user name", "DELETE", "/users/ci")

    # --- credentials
    c("method not allowed", "PUT", "/users")
    c("wrong Authorization scheme", "GET", "/users", token=None,
      headers={"Authorization": f"basic {s.hub.service_token}"})
    c("Bearer scheme", "GET", "/users/alice", token=None,
      headers={"Authorization": f"Bearer {s.hub.service_token}"})
    c("bad token", "GET", "/user", token="raw:not-a-real-token")
    c("no credentials", "GET", "/users", token=None)
    c("token in the query string", "GET", f"/user?token={s.hub.service_token}", token=None)

    # --- groups
    c("create group", "POST", "/groups/g1")
    c("create group again", "POST", "/groups/g1")
    c("create groups in bulk", "POST", "/groups", json_body={"groups": ["g2", "g3"]})
    c("bulk groups, all exist", "POST", "/groups", json_body={"groups": ["g2"]})
    c("create group with users", "POST", "/groups/g4", json_body={"users": ["alice", "bob"]})
    c("create group with unknown user", "POST", "/groups/g5", json_body={"users": ["nobody"]})
    c("get group", "GET", "/groups/g1")
    c("get unknown group", "GET", "/groups/nogroup")
    c("list groups", "GET", "/groups")
    c("list groups, paginated", "GET", "/groups?offset=1&limit=2",
      headers={"Accept": PAGINATION})
    c("add members", "POST", "/groups/g1/users", json_body={"users": ["alice", "bob", "carol"]})
    c("add unknown member", "POST", "/groups/g1/users", json_body={"users": ["nobody"]})
    c("add members, no body", "POST", "/groups/g1/users")
    c("remove a member", "DELETE", "/groups/g1/users", json_body={"users": ["bob"]})
    c("remove a non-member", "DELETE", "/groups/g1/users", json_body={"users": ["dave2"]})
    c("set properties", "PUT", "/groups/g1/properties", json_body={"course": "x101", "n": 3})
    c("set properties, not an object", "PUT", "/groups/g1/properties", json_body=[1, 2])
    c("group after changes", "GET", "/groups/g1")
    c("user shows groups", "GET", "/users/alice")
    c("add members to unknown group", "POST", "/groups/nogroup/users",
      json_body={"users": ["alice"]})
    c("delete group", "DELETE", "/groups/g3")
    c("delete group again", "DELETE", "/groups/g3")
    c("group name with encoded slash", "POST", "/groups/a%2Fb")

    # --- tokens
    r = c("create a token for a user", "POST", "/users/alice/tokens",
          json_body={"note": "t1", "expires_in": 3600})
    body = r.json() or {}
    s.tokens["alice"] = body.get("token", "missing")
    s.ids["alice1"] = body.get("id", "a0")
    c("token with scopes the owner lacks", "POST", "/users/alice/tokens",
      json_body={"scopes": ["read:users!user=bob"]})
    c("token with an unknown scope", "POST", "/users/alice/tokens",
      json_body={"scopes": ["no-such-scope"]})
    c("token with a bad expires_in", "POST", "/users/alice/tokens",
      json_body={"expires_in": "soon"})
    c("token with a role", "POST", "/users/alice/tokens", json_body={"roles": ["user"]})
    c("token body not an object", "POST", "/users/alice/tokens", json_body=[1])
    r = c("token with filtered scopes", "POST", "/users/admin/tokens",
          json_body={"scopes": ["read:users!user=bob"], "note": "filtered"})
    s.tokens["bob-reader"] = (r.json() or {}).get("token", "missing")
    r = c("token with read:hub only", "POST", "/users/admin/tokens",
          json_body={"scopes": ["read:hub"]})
    s.tokens["hub-reader"] = (r.json() or {}).get("token", "missing")
    r = c("server-like limited token", "POST", "/users/alice/tokens",
          json_body={"scopes": ["users:activity!user=alice", "access:servers!server=alice/"]})
    s.tokens["alice-server"] = (r.json() or {}).get("token", "missing")
    r = c("short-lived token", "POST", "/users/bob/tokens", json_body={"expires_in": 1})
    s.tokens["bob-short"] = (r.json() or {}).get("token", "missing")
    c("token for unknown user", "POST", "/users/nobody/tokens", json_body={})
    c("list a user's tokens", "GET", "/users/alice/tokens")
    c("get one token", "GET", f"/users/alice/tokens/{s.ids['alice1']}")
    c("get unknown token id", "GET", "/users/alice/tokens/a999999")
    c("get malformed token id", "GET", "/users/alice/tokens/zzz")
    c("get another user's token id", "GET", f"/users/bob/tokens/{s.ids['alice1']}")

    # --- identity and scope filters
    c("/user with a user token", "GET", "/user", token="alice")
    c("/user with the service token", "GET", "/user")
    c("/user with a server-like token", "GET", "/user", token="alice-server")
    c("/user with a filtered token", "GET", "/user", token="bob-reader")
    c("filtered scope: the user it names", "GET", "/users/bob", token="bob-reader")
    c("filtered scope: another user -> 404", "GET", "/users/carol", token="bob-reader")
    c("filtered scope: unknown user -> 404", "GET", "/users/nobody", token="bob-reader")
    c("filtered scope: list users -> 403", "GET", "/users", token="bob-reader")
    c("only identify scopes for users -> 404", "GET", "/users/bob", token="hub-reader")
    c("no matching scope -> 403", "GET", "/groups/g1", token="hub-reader")
    c("read:hub allows /info", "GET", "/info", token="hub-reader")
    c("user token reads itself", "GET", "/users/alice", token="alice")
    c("user token reads another user -> 404", "GET", "/users/bob", token="alice")
    c("user token lists users -> 403", "GET", "/users", token="alice")
    c("user token creates a user -> 403", "POST", "/users/mallory", token="alice")
    c("user token lists its tokens", "GET", "/users/alice/tokens", token="alice")
    c("user token lists another's tokens", "GET", "/users/bob/tokens", token="alice")
    c("user token creates a token for itself", "POST", "/users/alice/tokens", token="alice",
      json_body={"note": "self", "scopes": ["read:users:name!user=alice"]})
    c("user token escalates to admin scope", "POST", "/users/alice/tokens", token="alice",
      json_body={"scopes": ["admin:users"]})
    c("user token makes itself admin", "PATCH", "/users/alice", token="alice",
      json_body={"admin": True})
    c("server-like token reads its user", "GET", "/users/alice", token="alice-server")
    c("server-like token posts activity", "POST", "/users/alice/activity", token="alice-server",
      json_body={"last_activity": iso(dt.datetime.now(dt.timezone.utc))})
    c("user token reads groups -> 403", "GET", "/groups", token="alice")

    # --- roles from the configuration: !user, !group and !server filters
    s.tokens["monitor"] = hubs.MONITOR_TOKEN
    c("create group class1", "POST", "/groups/class1", json_body={"users": ["bob", "carol"]})
    r = c("token for the teaching assistant", "POST", "/users/ta/tokens", json_body={"note": "ta"})
    s.tokens["ta"] = (r.json() or {}).get("token", "missing")
    c("service role: /user", "GET", "/user", token="monitor")
    c("service role: list users, filtered to one", "GET", "/users", token="monitor")
    c("service role: list users, paginated", "GET", "/users", token="monitor",
      headers={"Accept": PAGINATION})
    c("service role: the user it names", "GET", "/users/bob", token="monitor")
    c("service role: another user -> 404", "GET", "/users/carol", token="monitor")
    c("service role: user of the one server it reads", "GET", "/users/alice", token="monitor")
    c("service role: list groups, filtered", "GET", "/groups", token="monitor")
    c("service role: the group it names", "GET", "/groups/g1", token="monitor")
    c("service role: another group -> 404", "GET", "/groups/g2", token="monitor")
    c("service role: create a group -> 403", "POST", "/groups/g9", token="monitor")
    c("service role: list services", "GET", "/services", token="monitor")
    c("service role: get a service", "GET", "/services/ci", token="monitor")
    c("service role: tokens of its user", "GET", "/users/bob/tokens", token="monitor")
    c("service role: start a server -> 403", "POST", "/users/bob/server", token="monitor")
    c("service role: stop its server", "DELETE", "/users/alice/servers/nb1", token="monitor")
    c("group role: /user", "GET", "/user", token="ta")
    c("group role: list users", "GET", "/users", token="ta")
    c("group role: list users, state=active", "GET", "/users?state=active", token="ta")
    c("group role: a member", "GET", "/users/carol", token="ta")
    c("group role: a non-member -> 404", "GET", "/users/alice", token="ta")
    c("group role: the group", "GET", "/groups/class1", token="ta")
    c("group role: another group -> 404", "GET", "/groups/g1", token="ta")
    c("group role: list groups -> 403", "GET", "/groups", token="ta")
    c("group role: stop a member's stopped server", "DELETE", "/users/carol/server", token="ta")
    c("group role: stop a non-member's server -> 404", "DELETE", "/users/alice/server",
      token="ta")
    c("group role: a non-member's named server -> 404", "DELETE", "/users/alice/servers/x",
      token="ta")
    c("group role: a member's unknown named server", "DELETE", "/users/carol/servers/x",
      token="ta")
    c("group role: join the group -> 403", "POST", "/groups/class1/users", token="ta",
      json_body={"users": ["ta"]})
    c("group role: token for a member -> 403", "POST", "/users/carol/tokens", token="ta",
      json_body={})
    c("group role: token with a group-filtered scope", "POST", "/users/ta/tokens", token="ta",
      json_body={"scopes": ["read:users!group=class1"]})
    c("group role: token escalating the filter", "POST", "/users/ta/tokens", token="ta",
      json_body={"scopes": ["read:users"]})
    c("add alice to class1", "POST", "/groups/class1/users", json_body={"users": ["alice"]})
    c("group role: a new member is visible", "GET", "/users/alice", token="ta")
    c("remove alice from class1", "DELETE", "/groups/class1/users", json_body={"users": ["alice"]})
    c("group role: a removed member -> 404", "GET", "/users/alice", token="ta")
    time.sleep(2.1)
    c("expired token", "GET", "/user", token="bob-short")
    c("expired token is not listed", "GET", "/users/bob/tokens")
    c("delete a token", "DELETE", f"/users/alice/tokens/{s.ids['alice1']}")
    c("deleted token is gone", "GET", f"/users/alice/tokens/{s.ids['alice1']}")
    c("deleted token no longer works", "GET", "/user", token="alice")
    c("delete a token again", "DELETE", f"/users/alice/tokens/{s.ids['alice1']}")

    # --- activity
    now = dt.datetime.now(dt.timezone.utc)
    c("activity", "POST", "/users/bob/activity", json_body={"last_activity": iso(now)})
    c("activity shows", "GET", "/users/bob")
    c("activity, no body", "POST", "/users/bob/activity")
    c("activity, bad timestamp", "POST", "/users/bob/activity",
      json_body={"last_activity": "yesterday"})
    c("activity, 2 h in the future", "POST", "/users/bob/activity",
      json_body={"last_activity": iso(now + dt.timedelta(hours=2))})
    c("activity, offset timestamp", "POST", "/users/bob/activity",
      json_body={"last_activity": now.astimezone(dt.timezone(dt.timedelta(hours=8)))
                 .isoformat()})
    c("activity, unknown server", "POST", "/users/bob/activity",
      json_body={"servers": {"nope": {"last_activity": iso(now)}}})
    c("activity, unknown user", "POST", "/users/nobody/activity",
      json_body={"last_activity": iso(now)})

    # --- servers
    c("start for unknown user", "POST", "/users/nobody/server")
    c("progress of a stopped server", "GET", "/users/alice/server/progress")
    c("progress of an unknown named server", "GET", "/users/alice/servers/nope/progress")
    c("stop a server that is not running", "DELETE", "/users/alice/server")
    c("stop an unknown named server", "DELETE", "/users/alice/servers/nope")
    r = c("start the default server", "POST", "/users/alice/server", timeout=90)
    ready = wait_server(s, "alice", "", True)
    after = s.call("", "GET", "/users/alice", record=False).json() or {}
    srv = (after.get("servers") or {}).get("", {})
    s.add("201 means ready, 202 means pending", "(derived)", None, notes={
        "started": r.status in (201, 202),
        "consistent": (r.status == 201 and srv.get("ready") is True)
        or (r.status == 202 and srv.get("pending") == "spawn")
        or (r.status == 202 and srv.get("ready") is True),  # became ready while we looked
        "became_ready": ready,
    })
    c("start it again -> 400", "POST", "/users/alice/server")
    c("user with a running server", "GET", "/users/alice")
    c("list users, state=ready (one running)", "GET", "/users?state=ready")
    c("list users, state=active (one running)", "GET", "/users?state=active")
    c("list users, state=inactive (one running)", "GET", "/users?state=inactive")
    r1, ctype, events = read_progress(s.hub, "/users/alice/server/progress", s.tokens["svc"], 20)
    s.add("progress of a ready server", f"GET {API}/users/alice/server/progress",
          hubs.Response(r1, {"content-type": ctype}, b""),
          notes={"events": events if r1 == 200 else None})
    c("activity for the running server", "POST", "/users/alice/activity",
      json_body={"servers": {"": {"last_activity": iso(dt.datetime.now(dt.timezone.utc))}}})
    c("proxy routes", "GET", "/proxy")
    c("proxy routes, paginated", "GET", "/proxy?limit=1", headers={"Accept": PAGINATION})
    spawn_watching_progress(s, "start a named server", "/users/alice/servers/nb1",
                            "/users/alice/servers/nb1/progress")
    wait_server(s, "alice", "nb1", True)
    c("start the named server again -> 400", "POST", "/users/alice/servers/nb1")
    c("user with two servers", "GET", "/users/alice")
    c("server-filtered role sees one server", "GET", "/users/alice", token="monitor")
    c("server-filtered role: list users", "GET", "/users?state=ready", token="monitor")
    c("group role: list users, state=ready", "GET", "/users?state=ready", token="ta")
    c("named server name with encoded slash", "POST", "/users/alice/servers/a%2Fb")
    c("named server name with a control char", "POST", "/users/alice/servers/a%01b",
      timeout=90)
    c("remove the control-char named server", "DELETE", "/users/alice/servers/a%01b",
      json_body={"remove": True}, timeout=60)
    c("stop the named server", "DELETE", "/users/alice/servers/nb1", timeout=60)
    wait_server(s, "alice", "nb1", False)
    c("named server is kept, stopped", "GET", "/users/alice?include_stopped_servers")
    c("stop the stopped named server", "DELETE", "/users/alice/servers/nb1")
    c("remove the named server", "DELETE", "/users/alice/servers/nb1",
      json_body={"remove": True})
    c("removed named server is gone", "GET", "/users/alice?include_stopped_servers")
    c("delete the default server by name", "DELETE", "/users/alice/servers/")
    c("stop the default server", "DELETE", "/users/alice/server", timeout=60)
    wait_server(s, "alice", "", False)
    c("user after stop", "GET", "/users/alice")
    c("stop it again", "DELETE", "/users/alice/server")
    c("delete a user", "DELETE", "/users/dave2")

    # --- services
    c("list services", "GET", "/services")
    c("get a service", "GET", "/services/ci")
    c("get unknown service", "GET", "/services/nope")

    # --- bad input (last: JupyterHub creates users from some of it)
    c("malformed JSON", "POST", "/users", raw=b'{"usernames": ["x"')
    c("bulk create, not a list", "POST", "/users", json_body={"usernames": "zoe"})
    c("JSON that is a list", "POST", "/users", raw=b'["x"]')
    c("JSON that is a string", "PATCH", "/users/bob", raw=b'"admin"')
    c("non-UTF-8 body", "POST", "/users", raw=b'{"usernames": ["\xff\xfe"]}')
    c("name with an encoded slash", "POST", "/users/a%2Fb")
    c("name '..'", "POST", "/users/..")
    c("name encoded '..'", "POST", "/users/%2E%2E")
    c("name '.'", "POST", "/users/%2E")
    c("name with NUL", "POST", "/users/a%00b")
    c("name with a control char", "POST", "/users/a%01b")
    c("name with a newline", "POST", "/users/a%0Ab")
    c("name with a leading space", "POST", "/users/%20lead")
    c("name with an inner space", "POST", "/users/in%20ner")
    c("unicode name", "POST", "/users/%C3%A9l%C3%A8ve")
    c("get unicode name", "GET", "/users/%C3%A9l%C3%A8ve")
    c("CJK name", "POST", "/users/%E7%94%A8%E6%88%B7")
    c("upper-case name", "POST", "/users/Zed")
    c("get upper-case name lower-cased", "GET", "/users/zed")
    c("very long name (300 chars)", "POST", "/users/" + "l" * 300)
    c("empty name", "POST", "/users/")
    c("invalid percent-encoding", "POST", "/users/a%ZZb")
    r = c("", "GET", "/users?limit=200", record=False)
    names = sorted(u.get("name", "?") for u in (r.json() or []) if isinstance(u, dict))
    s.add("user names after the bad input", f"GET {API}/users?limit=200",
          hubs.Response(r.status, {"content-type": r.content_type}, b""),
          notes={"names": names})
    c("oversized body (2 MiB)", "POST", "/users/bigbody",
      raw=b'{"admin": false}' + b" " * (2 * 1024 * 1024))


# ---------------------------------------------------------------------------------------------
# Normalisation and comparison

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
HOSTPORT = re.compile(r"(https?://)(127\.0\.0\.1|localhost|\[::1\]):\d+")
HEX32 = re.compile(r"^[0-9a-f]{32,}$")
VOLATILE_KEYS = {"version", "python", "sys_executable", "pid", "state"}
ID_KEYS = {"id", "token_id"}
SECRET_KEYS = {"token", "session_id"}


# Lists JupyterHub returns in database or set order: compared as sets (Xiji sorts them).
SET_KEYS = {"scopes", "roles", "groups", "users"}


# Xiji's own scopes (datasets and projects, in `self`; docs/compatibility.md): JupyterHub has no
# such scopes, so they are taken out of Xiji's scope lists before the comparison; every other
# scope is compared as it is.
XIJI_SCOPES = {"datasets", "read:datasets", "projects", "read:projects"}


def without_xiji_scopes(value, key=None):
    if key == "scopes" and isinstance(value, list):
        return [v for v in value
                if not (isinstance(v, str) and v.split("!", 1)[0] in XIJI_SCOPES)]
    if isinstance(value, dict):
        return {k: without_xiji_scopes(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [without_xiji_scopes(v, key) for v in value]
    return value


def norm(value, key=None):
    if key == "state" and value is not None:
        return "<state>"
    if key in SET_KEYS and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return sorted(value)
    if isinstance(value, dict):
        return {k: norm(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v, key) for v in value]
    if isinstance(value, str):
        if key in SECRET_KEYS:
            return "<secret>"
        if key in ID_KEYS and re.fullmatch(r"a\d+", value):
            return "<token-id>"
        if key in VOLATILE_KEYS:
            return "<str>"
        if TS.match(value):
            return "<timestamp>"
        if HEX32.match(value):
            return "<hex>"
        value = HOSTPORT.sub(r"\1<host>", value)
        value = re.sub(r"\ba\d+\b", "<token-id>", value) if key == "message" else value
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key in VOLATILE_KEYS:
        return "<num>"
    return value


def type_name(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def short(v, n=60) -> str:
    s = json.dumps(v, ensure_ascii=False, sort_keys=True) if not isinstance(v, str) else v
    return s if len(s) <= n else s[: n - 1] + "…"


def diff(a, b, path="$"):
    """Yields (kind, path, a, b). kind: shape (missing/extra keys, types, lengths) or value."""
    ta, tb = type_name(a), type_name(b)
    if ta != tb:
        yield "shape", path, f"{ta}: {short(a, 40)}", f"{tb}: {short(b, 40)}"
        return
    if ta == "object":
        for k in sorted(set(a) | set(b)):
            if k not in b:
                yield "shape", f"{path}.{k}", f"{type_name(a[k])}: {short(a[k], 40)}", "(absent)"
            elif k not in a:
                yield "shape", f"{path}.{k}", "(absent)", f"{type_name(b[k])}: {short(b[k], 40)}"
            else:
                yield from diff(a[k], b[k], f"{path}.{k}")
        return
    if ta == "array":
        if len(a) != len(b):
            yield "shape", f"{path}[len]", f"{len(a)}: {short(a)}", f"{len(b)}: {short(b)}"
        if all(isinstance(x, str) for x in a + b) and len(a) == len(b) and a != b:
            kind = "order" if sorted(a) == sorted(b) else "value"
            yield kind, path, short(a), short(b)
            return
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diff(x, y, f"{path}[{i}]")
        return
    if a != b:
        kind = "message" if path.endswith(".message") or path.endswith("message") else "value"
        yield kind, path, short(a), short(b)


@dataclass
class Mismatch:
    label: str
    request: str
    kind: str
    path: str
    jupyterhub: str
    xiji: str
    allowed_by: str | None = None


# A spawn answers 201 if the server became ready within the hub's patience, else 202: which one
# depends on the machine's load, so the two are equivalent here (a derived step checks that each
# hub's answer agrees with the server's state).
SPAWN_REQUEST = re.compile(r"^POST /hub/api/users/[^/]+/servers?(/[^/]*)?$")


def same_status(a: Record, b: Record) -> bool:
    if a.status == b.status:
        return True
    return bool(SPAWN_REQUEST.match(a.request)) and {a.status, b.status} <= {201, 202}


def compare(ra: list[Record], rb: list[Record]) -> list[Mismatch]:
    out: list[Mismatch] = []
    for a, b in zip(ra, rb):
        assert a.label == b.label, (a.label, b.label)

        def m(kind, path, x, y):
            out.append(Mismatch(a.label, a.request, kind, path, str(x), str(y)))

        if not same_status(a, b):
            m("status", "", a.status, b.status)
            # For two errors, the body is {status, message} on both sides: compare its shape.
            if a.status >= 400 and b.status >= 400:
                continue
        if same_status(a, b) and a.content_type != b.content_type and a.status != 204:
            m("content-type", "", a.content_type or "(none)", b.content_type or "(none)")
        if same_status(a, b) or (a.status < 400 and b.status < 400):
            for kind, path, x, y in diff(norm(a.body), norm(without_xiji_scopes(b.body))):
                if a.status >= 400 and path == "$.status":
                    continue
                m(kind, path, x, y)
        for kind, path, x, y in diff(norm(a.notes), norm(without_xiji_scopes(b.notes)), "notes"):
            m(kind, path, x, y)
    return out


def load_allow_list() -> list[dict]:
    if not ALLOW_LIST.exists():
        return []
    data = tomllib.loads(ALLOW_LIST.read_text())
    entries = data.get("difference", [])
    for e in entries:
        if not e.get("reason"):
            raise SystemExit(f"{ALLOW_LIST}: entry {e} has no reason")
        e["_used"] = 0
    return entries


def allowed(mm: Mismatch, entries: list[dict]) -> str | None:
    if mm.kind == "message":
        return "(error messages are informational)"
    for e in entries:
        if not fnmatch.fnmatchcase(mm.label, e.get("step", "*")):
            continue
        if not fnmatch.fnmatchcase(mm.kind, e.get("kind", "*")):
            continue
        if not fnmatch.fnmatchcase(mm.path, e.get("path", "*")):
            continue
        e["_used"] += 1
        return e.get("id") or e["reason"][:40]
    return None


def print_table(rows: list[Mismatch]) -> None:
    headers = ["step", "kind", "path", "JupyterHub", "Xiji", "allowed by"]
    def clean(cell: str) -> str:
        # control characters (from the bad-input names) escaped, so the table stays one line each
        return json.dumps(cell, ensure_ascii=False)[1:-1]

    table = [[clean(c) for c in (r.label, r.kind, r.path or "-", r.jupyterhub, r.xiji,
                                 r.allowed_by or "NO")]
             for r in rows]
    widths = [min(48, max([len(h)] + [len(row[i]) for row in table]))
              for i, h in enumerate(headers)]

    def fmt(row):
        cells = [(c if len(c) <= w else c[: w - 1] + "…").ljust(w) for c, w in zip(row, widths)]
        return "| " + " | ".join(cells) + " |"

    print(fmt(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print(fmt(row))


# ---------------------------------------------------------------------------------------------


def run_on(hub: hubs.Hub, deadline: float) -> list[Record]:
    hubs.log(f"starting {hub.name} on 127.0.0.1:{hub.port}")
    hub.start()
    hubs.log(f"{hub.name} ready after {hub.startup_seconds:.2f} s; running the scenario")
    s = Session(hub)
    t0 = time.monotonic()
    try:
        scenario(s)
    except Exception as e:  # noqa: BLE001 - record and carry on; the comparison shows the gap
        hubs.log(f"scenario on {hub.name} stopped early: {type(e).__name__}: {e}")
        s.add("(scenario aborted)", "", None, notes={"error": f"{type(e).__name__}: {e}"})
    hubs.log(f"{hub.name}: {len(s.records)} steps in {time.monotonic() - t0:.1f} s")
    if time.monotonic() > deadline:
        hubs.log("warning: over the time budget")
    return s.records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["jupyterhub", "xiji"],
                    help="run the scenario on one hub and print its records")
    ap.add_argument("--dump", type=Path, help="write each hub's records as JSON into this dir")
    ap.add_argument("--keep", action="store_true", help="keep the hubs' temporary directories")
    args = ap.parse_args()

    venv5 = hubs.require(hubs.env_path("XIJI_TEST_VENV5", ".cache/venv5"), "venv5")
    node_modules = hubs.env_path("XIJI_TEST_NODE_MODULES", ".cache/node/node_modules")
    xiji_bin = hubs.env_path("XIJI_BIN", "target/debug/xiji")
    deadline = time.monotonic() + 240

    results: dict[str, list[Record]] = {}
    workdirs = []
    for which in ("jupyterhub", "xiji"):
        if args.only and args.only != which:
            continue
        wd = hubs.new_workdir(f"xiji-conformance-{which}-")
        workdirs.append(wd)
        token = uuid.uuid4().hex
        if which == "jupyterhub":
            hubs.require(node_modules / ".bin" / "configurable-http-proxy",
                         "configurable-http-proxy")
            hub: hubs.Hub = hubs.JupyterHub(wd, token, venv5, node_modules)
        else:
            hubs.require(xiji_bin, "the xiji binary (cargo build -p hub, or set XIJI_BIN)")
            hub = hubs.Xiji(wd, token, xiji_bin, venv5)
        try:
            results[which] = run_on(hub, deadline)
        except Exception as e:  # noqa: BLE001
            hubs.log(f"{which} failed: {e}\n--- last lines of its log ---\n{hub.log_tail()}")
            return 2
        finally:
            hub.stop()
        if args.keep:
            hubs.log(f"{which} directory kept: {wd}")
        else:
            hubs.remove_workdir(wd)

    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for which, recs in results.items():
            (args.dump / f"{which}.json").write_text(json.dumps(
                [r.__dict__ for r in recs], indent=1, ensure_ascii=False, default=str))

    if args.only:
        for r in results[args.only]:
            print(f"{r.status:>3} {r.content_type:<22} {r.label:<48} {short(r.body, 100)}"
                  + (f"  notes={short(r.notes, 100)}" if r.notes else ""))
        return 0

    ra, rb = results["jupyterhub"], results["xiji"]
    if len(ra) != len(rb):
        hubs.log(f"step counts differ: jupyterhub {len(ra)}, xiji {len(rb)}")
    entries = load_allow_list()
    mismatches = compare(ra, rb)
    for mm in mismatches:
        mm.allowed_by = allowed(mm, entries)
    failing = [mm for mm in mismatches if mm.allowed_by is None]
    print(f"\n{len(ra)} steps; {len(mismatches)} differences, {len(failing)} not in "
          f"{ALLOW_LIST.name}\n")
    if mismatches:
        print_table(mismatches)
    stale = [e for e in entries if e["_used"] == 0]
    if stale:
        print("\nallow-list entries that matched nothing (remove them if the gap is closed):")
        for e in stale:
            print(f"  - step={e.get('step')!r} kind={e.get('kind', '*')!r}: {e['reason']}")
    if len(ra) != len(rb):
        return 1
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
