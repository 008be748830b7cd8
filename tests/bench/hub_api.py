#!/usr/bin/env python3
"""Benchmark of the hub REST API: Xiji against the real JupyterHub 5.5 on this machine, in one run.

Run it through tests/bench/hub_api.sh (which builds Xiji in release mode). It measures, with `wrk`:

- GET  /hub/api/users/{name}
- GET  /hub/api/users?limit=100 (the pagination envelope, 1000 users in the database)
- POST /hub/api/users/{fresh name}

at each concurrency (default 1, 16, 64), with a token the hub issued itself (an admin user's API
token: JupyterHub re-hashes tokens from its config file on every request, which would halve its
speed), then each hub's start-up time and resident memory with 100,000 users in its database, and
prints a Markdown table of req/s, p50 and p99 with the ratios Xiji/JupyterHub.

Standard library only, plus `wrk` on PATH. Every wait is bounded; processes are stopped by id.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "conformance"))
import hubs  # noqa: E402

PAGINATION = "application/jupyterhub-pagination+json"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def api(hub: hubs.Hub, method: str, path: str, token: str, body=None, timeout=120.0):
    headers = {"Authorization": f"token {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    r = hub.request(method, "/hub/api" + path, headers, data, timeout=timeout)
    if r.status >= 400 or r.status == 0:
        raise RuntimeError(f"{hub.name}: {method} {path} -> {r.status} {r.body[:200]!r}")
    return r.json()


def populate(hub: hubs.Hub, n: int, prefix: str = "u") -> None:
    """Creates n users `{prefix}00000…` in bulk requests of 100."""
    for start in range(0, n, 100):
        names = [f"{prefix}{i:05d}" for i in range(start, min(n, start + 100))]
        api(hub, "POST", "/users", hub.service_token, {"usernames": names})


def admin_token(hub: hubs.Hub) -> str:
    body = api(hub, "POST", "/users/admin/tokens", hub.service_token, {"note": "benchmark"})
    return body["token"]


POST_LUA = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  prefix = args[1] .. tid .. "x"
end
function request()
  counter = counter + 1
  return wrk.format("POST", "/hub/api/users/" .. prefix .. counter, nil, "")
end
"""

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(out: str) -> dict:
    def latency(pct: str) -> float | None:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": latency("50"),
        "p99": latency("99"),
        "requests": int(total.group(1)) if total else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def run_wrk(hub: hubs.Hub, token: str, endpoint: str, conc: int, seconds: float,
            workdir: Path, tag: str, one_user: str) -> dict:
    threads = max(1, min(conc, 2))
    cmd = ["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{max(1, round(seconds))}s", "--latency",
           "--timeout", "10s", "-H", f"Authorization: token {token}"]
    url = f"http://127.0.0.1:{hub.port}"
    if endpoint == "get_user":
        cmd += [f"{url}/hub/api/users/{one_user}"]
    elif endpoint == "list_users":
        cmd += ["-H", f"Accept: {PAGINATION}", f"{url}/hub/api/users?limit=100"]
    else:
        script = workdir / "post_user.lua"
        script.write_text(POST_LUA)
        cmd += ["-s", str(script), url, "--", f"p{tag}c{conc}t"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()} {proc.stdout.strip()}")
    res = parse_wrk(proc.stdout)
    if res["non2xx"]:
        raise RuntimeError(f"{hub.name} {endpoint} c={conc}: {res['non2xx']} of "
                           f"{res['requests']} responses were not 2xx\n{proc.stdout}")
    return res


def rss_mb(pid: int) -> float | None:
    kb = hubs.vm_rss_kb(pid)
    return kb / 1024 if kb else None


def jupyterhub_insert_users(db: Path, n: int) -> None:
    """Adds n users straight into a stopped JupyterHub's SQLite database (its API would take
    minutes for 100,000), each with the default `user` role as JupyterHub would assign it."""
    con = sqlite3.connect(db)
    try:
        cur = con.cursor()
        role_id = cur.execute("SELECT id FROM roles WHERE name = 'user'").fetchone()[0]
        now = time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime())
        start = cur.execute("SELECT COALESCE(MAX(id), 0) FROM users").fetchone()[0] + 1
        rows = [(start + i, f"m{i:06d}", False, now, uuid.uuid4().hex, "{}")
                for i in range(n)]
        cur.executemany("INSERT INTO users (id, name, admin, created, cookie_id, state) "
                        "VALUES (?, ?, ?, ?, ?, ?)", rows)
        cur.executemany("INSERT INTO user_role_map (user_id, role_id, managed_by_auth) "
                        "VALUES (?, ?, 0)",
                        [(r[0], role_id) for r in rows])
        con.commit()
    finally:
        con.close()


def xiji_insert_users(hub: hubs.Hub, n: int) -> None:
    for start in range(0, n, 1000):
        names = [f"m{i:06d}" for i in range(start, min(n, start + 1000))]
        api(hub, "POST", "/users", hub.service_token, {"usernames": names})


def startup(hub: hubs.Hub, n_big: int) -> dict:
    """Fills the database to n_big users, restarts the hub, and measures the restart."""
    t0 = time.monotonic()
    if isinstance(hub, hubs.JupyterHub):
        hub.stop()
        jupyterhub_insert_users(hub.workdir / "jupyterhub.sqlite", n_big)
        # The first start after the insert may migrate or re-check roles: start once, then
        # measure the next start, as for Xiji.
        hub.start(timeout=600)
    else:
        xiji_insert_users(hub, n_big)
    log(f"{hub.name}: {n_big} users added in {time.monotonic() - t0:.1f} s")
    hub.stop()
    hub.port = hubs.free_port()
    hub.start(timeout=600)
    seconds = hub.startup_seconds
    assert hub.proc is not None
    rss_idle = rss_mb(hub.proc.pid)
    r = hub.request("GET", "/hub/api/users?limit=100",
                    {"Authorization": f"token {hub.service_token}", "Accept": PAGINATION})
    total = (r.json() or {}).get("_pagination", {}).get("total")
    rss_after = rss_mb(hub.proc.pid)
    return {"startup_s": seconds, "rss_mb": rss_idle, "rss_after_list_mb": rss_after,
            "users": total}


def fmt_ms(v):
    return "–" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.0f}")


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.1f}×"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--startup-users", type=int, default=100_000,
                    help="users in the database for the start-up measurement (0: skip)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")

    venv5 = hubs.require(hubs.env_path("XIJI_TEST_VENV5", ".cache/venv5"), "venv5")
    node_modules = hubs.env_path("XIJI_TEST_NODE_MODULES", ".cache/node/node_modules")
    xiji_bin = hubs.require(hubs.env_path("XIJI_BIN", "target/release/xiji"),
                            "the xiji binary (cargo build --release -p hub)")
    concs = [int(c) for c in args.concurrency.split(",")]
    endpoints = [("get_user", "GET /users/{name}"),
                 ("list_users", "GET /users?limit=100 (paginated)"),
                 ("post_user", "POST /users/{name}")]

    results: dict = {}
    load_before = os.getloadavg()
    for which in ("jupyterhub", "xiji"):
        wd = Path(tempfile.mkdtemp(prefix=f"xiji-bench-{which}-"))
        svc = uuid.uuid4().hex
        if which == "jupyterhub":
            hub: hubs.Hub = hubs.JupyterHub(wd, svc, venv5, node_modules)
        else:
            hub = hubs.Xiji(wd, svc, xiji_bin, venv5)
        try:
            hub.start(timeout=120)
            log(f"{which} up in {hub.startup_seconds:.2f} s; creating {args.users} users")
            populate(hub, args.users)
            token = admin_token(hub)
            res: dict = {}
            for ep, _ in endpoints:
                for c in concs:
                    # A short warm-up, then the measurement.
                    one = f"u{args.users // 2:05d}"
                    run_wrk(hub, token, ep, c, 1, wd, f"w{which[0]}", one)
                    r = run_wrk(hub, token, ep, c, args.seconds, wd, which[0], one)
                    res[f"{ep}@{c}"] = r
                    log(f"{which} {ep} c={c}: {r['rps']:.0f} req/s, p50 {fmt_ms(r['p50'])} ms, "
                        f"p99 {fmt_ms(r['p99'])} ms")
            if args.startup_users:
                res["startup"] = startup(hub, args.startup_users)
                log(f"{which} start-up with {args.startup_users} users: {res['startup']}")
            results[which] = res
        except Exception as e:  # noqa: BLE001
            log(f"{which} failed: {e}\n--- last lines of its log ---\n{hub.log_tail(15)}")
            return 2
        finally:
            hub.stop()
            hubs.remove_workdir(wd)

    jh, xi = results["jupyterhub"], results["xiji"]
    cpu = platform.processor() or platform.machine()
    load_after = os.getloadavg()
    print(f"\nHub REST API, {os.cpu_count()} cores ({cpu}), SQLite, {args.users} users, "
          f"{args.seconds:.0f} s per cell, wrk; latencies in ms; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print("| request | c | JupyterHub req/s | Xiji req/s | ratio | JupyterHub p50 / p99 "
          "| Xiji p50 / p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for ep, label in endpoints:
        for c in concs:
            a, b = jh[f"{ep}@{c}"], xi[f"{ep}@{c}"]
            print(f"| `{label}` | {c} | {a['rps']:.0f} | {b['rps']:.0f} | "
                  f"{ratio(b['rps'], a['rps'])} | {fmt_ms(a['p50'])} / {fmt_ms(a['p99'])} | "
                  f"{fmt_ms(b['p50'])} / {fmt_ms(b['p99'])} |")
    if "startup" in jh and "startup" in xi:
        a, b = jh["startup"], xi["startup"]
        print(f"\nStart-up with {args.startup_users:,} users in the database (until "
              "`GET /hub/api/` answers), and the hub process's resident memory\n")
        print("| | JupyterHub | Xiji | ratio |")
        print("|---|---:|---:|---:|")
        print(f"| start-up (s) | {a['startup_s']:.2f} | {b['startup_s']:.2f} | "
              f"{ratio(a['startup_s'], b['startup_s'])} faster |")
        print(f"| RSS after start (MiB) | {a['rss_mb']:.0f} | {b['rss_mb']:.0f} | "
              f"{ratio(a['rss_mb'], b['rss_mb'])} smaller |")
        print(f"| RSS after one list of 100 (MiB) | {a['rss_after_list_mb']:.0f} | "
              f"{b['rss_after_list_mb']:.0f} | "
              f"{ratio(a['rss_after_list_mb'], b['rss_after_list_mb'])} smaller |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
