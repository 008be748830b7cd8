#!/usr/bin/env python3
"""Class-start benchmark: N users press Start within a second, on Xiji and on the real JupyterHub,
in one run on this machine (docs/benchmarks.md, "A class starting at once").

Both hubs run local single-user servers (`jupyterhub-singleuser` from the same venv; JupyterHub
with its SimpleLocalProcessSpawner) with the same timeouts: 30 s for a launched server to answer
(`http_timeout`, both hubs' default) and 60 s to launch (`start_timeout`). Xiji runs with its
defaults, i.e. starts admitted to their start-up phase one per CPU core; JupyterHub with its
defaults (`concurrent_spawn_limit` 100). For each hub: one server started alone (the time a start
takes), then N at once; prints how many became ready, how many failed, and how long until the
last one settled, as a Markdown table with the ratios.

Standard library only. Every wait is bounded; processes are stopped by id.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "conformance"))
import hubs  # noqa: E402

SETTLE_TIMEOUT = 300.0


def log(msg: str) -> None:
    print(f"[class-start] {msg}", file=sys.stderr, flush=True)


def api(hub: hubs.Hub, method: str, path: str, body=None, timeout=120.0) -> hubs.Response:
    headers = {"Authorization": f"token {hub.service_token}"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    return hub.request(method, f"/hub/api{path}", headers=headers, body=data, timeout=timeout)


def start(hub: hubs.Hub, user: str) -> int:
    return api(hub, "POST", f"/users/{user}/server", body={}).status


def state(hub: hubs.Hub, user: str) -> str:
    """`ready`, `pending` or `failed` (no server, or one that is neither ready nor pending)."""
    resp = api(hub, "GET", f"/users/{user}")
    server = (resp.json() or {}).get("servers", {}).get("")
    if server and server.get("ready"):
        return "ready"
    if server and server.get("pending"):
        return "pending"
    return "failed"


def settle(hub: hubs.Hub, users: list[str], began: float) -> dict:
    """Polls until no server is pending (or the timeout); the time is from `began`."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        states = {u: state(hub, u) for u in users}
        pending = [u for u, s in states.items() if s == "pending"]
        if not pending or time.monotonic() > deadline:
            return {
                "ready": sum(s == "ready" for s in states.values()),
                "failed": sum(s == "failed" for s in states.values()),
                "pending": len(pending),
                "seconds": time.monotonic() - began,
            }
        time.sleep(0.5)


def press_start_together(hub: hubs.Hub, users: list[str]) -> list[int]:
    statuses: list[int] = [0] * len(users)

    def one(i: int, user: str) -> None:
        try:
            statuses[i] = start(hub, user)
        except Exception as e:  # noqa: BLE001 - a refused request is a result too
            log(f"{user}: {e}")
            statuses[i] = -1

    threads = [threading.Thread(target=one, args=(i, u)) for i, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SETTLE_TIMEOUT)
    return statuses


def measure(hub: hubs.Hub, class_size: int) -> dict:
    users = [f"student{i:02d}" for i in range(class_size)]
    resp = api(hub, "POST", "/users", body={"usernames": users + ["teacher"]})
    if resp.status not in (200, 201):
        raise RuntimeError(f"creating users: {resp.status} {resp.body[:200]!r}")
    began = time.monotonic()
    start(hub, "teacher")
    alone = settle(hub, ["teacher"], began)
    if alone["ready"] != 1:
        raise RuntimeError(f"one server alone did not start: {alone}\n{hub.log_tail()}")
    began = time.monotonic()
    statuses = press_start_together(hub, users)
    result = settle(hub, users, began)
    result["alone_seconds"] = alone["seconds"]
    result["refused"] = sum(s not in (201, 202) for s in statuses)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20, help="class size (default 20)")
    ap.add_argument("--hubs", default="jupyterhub,xiji")
    args = ap.parse_args()
    venv = hubs.require(hubs.env_path("XIJI_TEST_VENV6", ".cache/venv6"), "venv6")
    node_modules = hubs.env_path("XIJI_TEST_NODE_MODULES", ".cache/node/node_modules")
    xiji_bin = hubs.require(hubs.env_path("XIJI_BIN", "target/release/xiji"),
                            "the xiji binary (cargo build --release -p hub)")
    results = {}
    for which in args.hubs.split(","):
        wd = Path(tempfile.mkdtemp(prefix=f"xiji-class-{which}-"))
        token = uuid.uuid4().hex
        if which == "jupyterhub":
            hub: hubs.Hub = hubs.JupyterHub(
                wd, token, venv, node_modules,
                extra_config="c.Spawner.http_timeout = 30\nc.Spawner.start_timeout = 60\n")
        else:
            hub = hubs.Xiji(wd, token, xiji_bin, venv)
        try:
            hub.start(timeout=120)
            log(f"{which}: one server alone, then {args.users} at once")
            results[which] = measure(hub, args.users)
            log(f"{which}: {results[which]}")
        finally:
            hub.stop()
            hubs.remove_workdir(wd)
    print(json.dumps(results, indent=2))
    if len(results) == 2:
        j, x = results["jupyterhub"], results["xiji"]
        print(f"\n{args.users} users pressing Start at once, {os.cpu_count()} cores, "
              f"load before {os.getloadavg()[0]:.1f}\n")
        print("| | JupyterHub | Xiji |")
        print("|---|---:|---:|")
        print(f"| one server alone (s) | {j['alone_seconds']:.1f} | {x['alone_seconds']:.1f} |")
        for key, label in (("ready", "ready"), ("failed", "failed"), ("pending", "still pending")):
            print(f"| {label} of {args.users} | {j[key]} | {x[key]} |")
        print(f"| until the last settled (s) | {j['seconds']:.1f} | {x['seconds']:.1f} |")
        print(f"| one after another would take (s) | {j['alone_seconds'] * args.users:.0f} | "
              f"{x['alone_seconds'] * args.users:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
