#!/usr/bin/env python3
"""Benchmark of the hub REST API: Xiji against the real JupyterHub 5.5 on this machine, in one run.

Run it through tests/bench/hub_api.sh (which builds Xiji in release mode). It measures, with `wrk`:

- GET  /hub/api/users/{name}
- GET  /hub/api/users?limit=100 (the pagination envelope, 1000 users in the database)
- POST /hub/api/users/{fresh name}

at each concurrency (default 1, 16, 64), with a token the hub issued itself (an admin user's API
token: JupyterHub re-hashes tokens from its config file on every request, which would halve its
speed); then POST → ready of a local single-user server against the process's own start-up (see
`spawn_overhead`); then each hub's start-up time and resident memory with 100,000 users in its
database; and prints Markdown tables of req/s, p50 and p99 with the ratios Xiji/JupyterHub.

Standard library only, plus `wrk` on PATH. Every wait is bounded; processes are stopped by id.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
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


def _proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def _proc_cmdline(pid: int) -> list[str]:
    return [a.decode(errors="replace")
            for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def singleuser_process(hub: hubs.Hub, user: str) -> tuple[list[str], dict[str, str], str]:
    """Command line, environment and working directory of the single-user server the hub
    started for `user` (a descendant of the hub's process with JUPYTERHUB_USER = user)."""
    assert hub.proc is not None
    for pid in sorted(_descendants(hub.proc.pid)):
        try:
            env = _proc_environ(pid)
            if env.get("JUPYTERHUB_USER") == user and "JUPYTERHUB_SERVICE_URL" in env:
                return _proc_cmdline(pid), env, os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
    raise RuntimeError(f"{hub.name}: no single-user process of {user} found")


def wait_http_below_500(port: int, path: str, timeout: float, proc=None) -> None:
    """Polls GET path every 5 ms until it answers with a status below 500 (the hubs' readiness
    rule)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the single-user process exited with {proc.returncode}")
        r = hubs.http_request(port, "GET", path, timeout=2)
        if 0 < r.status < 500:
            return
        time.sleep(0.005)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer within {timeout:.0f} s")


def direct_start(cmd: list[str], env: dict[str, str], cwd: str, workdir: Path) -> float:
    """Runs the single-user command itself, with the environment the hub gave it (on another
    port), and returns the seconds from launch until its `{prefix}api` answers."""
    old = env["JUPYTERHUB_SERVICE_URL"]
    m = re.match(r"^(https?://[^/:]+):(\d+)(/.*)?$", old)
    if not m:
        raise RuntimeError(f"unexpected JUPYTERHUB_SERVICE_URL {old!r}")
    port = hubs.free_port()
    env = dict(env)
    env["JUPYTERHUB_SERVICE_URL"] = f"{m.group(1)}:{port}{m.group(3) or '/'}"
    cmd = [a.replace(f"--port={m.group(2)}", f"--port={port}") for a in cmd]
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    with open(workdir / "direct-singleuser.log", "ab") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http_below_500(port, f"{prefix}api", 120, proc)
            return time.monotonic() - t0
        finally:
            hubs._kill_group(proc, grace=10.0)


def boottime() -> float:
    """Seconds since boot: the clock of /proc/<pid>/stat's start time."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _start_time(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return ticks / os.sysconf("SC_CLK_TCK")


class SpawnWatcher(threading.Thread):
    """While the hub spawns, finds the single-user process among the hub's descendants (its
    fork time from /proc) and polls its `{prefix}api` itself every 5 ms, to learn when the
    process alone was up."""

    def __init__(self, hub: hubs.Hub, user: str, timeout: float = 120.0):
        super().__init__(daemon=True)
        self.hub, self.user, self.timeout = hub, user, timeout
        self.forked: float | None = None
        self.up: float | None = None
        self.error: str | None = None
        self.stop_flag = False

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        pid, port, path = None, 0, ""
        try:
            while pid is None and not self.stop_flag and time.monotonic() < deadline:
                assert self.hub.proc is not None
                for cand in sorted(_descendants(self.hub.proc.pid)):
                    try:
                        env = _proc_environ(cand)
                    except OSError:
                        continue
                    url = env.get("JUPYTERHUB_SERVICE_URL", "")
                    m = re.match(r"^https?://[^/:]+:(\d+)", url)
                    if env.get("JUPYTERHUB_USER") == self.user and m:
                        pid, port = cand, int(m.group(1))
                        path = env.get("JUPYTERHUB_SERVICE_PREFIX", "/") + "api"
                        self.forked = _start_time(cand)
                        break
                else:
                    time.sleep(0.002)
            while pid is not None and not self.stop_flag and time.monotonic() < deadline:
                r = hubs.http_request(port, "GET", path, timeout=2)
                if 0 < r.status < 500:
                    self.up = boottime()
                    return
                time.sleep(0.005)
        except Exception as e:  # noqa: BLE001
            self.error = str(e)


def spawn_until_ready(hub: hubs.Hub, user: str) -> dict:
    """POST /users/{user}/server, then (if the hub answered 202) follows the progress stream
    until its `ready` event. Returns, in seconds: `total` (POST sent → ready), `process` (the
    single-user process's fork → its own `api` answering) and `overhead` (the rest: before the
    fork, and between the process answering and the hub reporting ready)."""
    auth = {"Authorization": f"token {hub.service_token}"}
    watcher = SpawnWatcher(hub, user)
    watcher.start()
    t_post = boottime()
    try:
        r = hub.request("POST", f"/hub/api/users/{user}/server", auth, timeout=120)
        if r.status == 201:
            t_ready = boottime()
        elif r.status != 202:
            raise RuntimeError(f"{hub.name}: POST /users/{user}/server -> {r.status} "
                               f"{r.body[:200]!r}")
        else:
            t_ready = _wait_progress_ready(hub, user, auth)
        watcher.join(timeout=30)
    finally:
        watcher.stop_flag = True
    if watcher.forked is None or watcher.up is None:
        raise RuntimeError(f"{hub.name}: could not watch the single-user process "
                           f"({watcher.error or 'not found'})")
    # The watcher may see the process answer a few ms after the hub did.
    up = min(watcher.up, t_ready)
    return {"total": t_ready - t_post, "process": up - watcher.forked,
            "overhead": (watcher.forked - t_post) + (t_ready - up),
            "before_fork": watcher.forked - t_post, "after_up": t_ready - up}


def _wait_progress_ready(hub: hubs.Hub, user: str, auth: dict) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=120)
    try:
        conn.request("GET", f"/hub/api/users/{user}/server/progress", headers=auth)
        resp = conn.getresponse()
        while True:
            line = resp.readline()
            if not line:
                raise RuntimeError(f"{hub.name}: progress stream ended before ready")
            if line.startswith(b"data:"):
                event = json.loads(line[5:])
                if event.get("ready"):
                    return boottime()
                if event.get("failed"):
                    raise RuntimeError(f"{hub.name}: spawn failed: {event}")
    finally:
        conn.close()


def stop_server(hub: hubs.Hub, user: str) -> None:
    auth = {"Authorization": f"token {hub.service_token}"}
    r = hub.request("DELETE", f"/hub/api/users/{user}/server", auth, timeout=120)
    if r.status not in (202, 204):
        raise RuntimeError(f"{hub.name}: DELETE /users/{user}/server -> {r.status}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        model = api(hub, "GET", f"/users/{user}", hub.service_token)
        if not model.get("servers"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{hub.name}: {user}'s server did not stop within 60 s")


def spawn_overhead(hub: hubs.Hub, runs: int, workdir: Path) -> dict:
    """POST → ready of a local server against the single-user process's own start. Each run:
    the hub starts the server, timed from the POST until ready, while the process is watched
    (its fork time, and when its own `api` first answers); then the same command with the same
    environment is run directly on another port, timed from launch until its `api` answers;
    then the hub stops the server. One warm-up round is not counted. The overhead is taken
    within each spawn (total − the process's own fork → up), so the large run-to-run variation
    of Python's start-up on a loaded machine cancels out; the direct runs check that the process
    under the hub starts as fast as alone."""
    user = "spawnbench"
    api(hub, "POST", f"/users/{user}", hub.service_token)
    rows = []
    for i in range(runs + 1):
        spawn = spawn_until_ready(hub, user)
        cmd, env, cwd = singleuser_process(hub, user)
        spawn["direct"] = direct_start(cmd, env, cwd, workdir)
        stop_server(hub, user)
        if i == 0:
            continue
        rows.append(spawn)
        log(f"{hub.name} spawn {i}: POST → ready {spawn['total'] * 1000:.0f} ms, of which the "
            f"process {spawn['process'] * 1000:.0f} ms, overhead {spawn['overhead'] * 1000:.0f} ms "
            f"({spawn['before_fork'] * 1000:.0f} before the fork, "
            f"{spawn['after_up'] * 1000:.0f} after it answered); "
            f"the process alone {spawn['direct'] * 1000:.0f} ms")

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows) * 1000

    return {"total_ms": med("total"), "process_ms": med("process"),
            "overhead_ms": med("overhead"),
            "overhead_max_ms": max(r["overhead"] for r in rows) * 1000,
            "direct_ms": med("direct"), "runs": runs}


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
    ap.add_argument("--spawn-runs", type=int, default=5,
                    help="POST → ready measurements of a local server per hub (0: skip)")
    ap.add_argument("--parts", default="api,spawn,startup",
                    help="which measurements to run (comma-separated subset of the default)")
    ap.add_argument("--hubs", default="jupyterhub,xiji",
                    help="which hubs to measure; the tables need both, one alone prints JSON")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")

    venv5 = hubs.require(hubs.env_path("XIJI_TEST_VENV5", ".cache/venv5"), "venv5")
    node_modules = hubs.env_path("XIJI_TEST_NODE_MODULES", ".cache/node/node_modules")
    xiji_bin = hubs.require(hubs.env_path("XIJI_BIN", "target/release/xiji"),
                            "the xiji binary (cargo build --release -p hub)")
    concs = [int(c) for c in args.concurrency.split(",")]
    parts = set(args.parts.split(","))
    if "api" not in parts:
        concs = []
    if "spawn" not in parts:
        args.spawn_runs = 0
    if "startup" not in parts:
        args.startup_users = 0
    endpoints = [("get_user", "GET /users/{name}"),
                 ("list_users", "GET /users?limit=100 (paginated)"),
                 ("post_user", "POST /users/{name}")]

    results: dict = {}
    load_before = os.getloadavg()
    for which in args.hubs.split(","):
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
            if args.spawn_runs:
                res["spawn"] = spawn_overhead(hub, args.spawn_runs, wd)
                log(f"{which} spawn: {res['spawn']}")
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

    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if "jupyterhub" not in results or "xiji" not in results:
        print(json.dumps(results, indent=1))
        return 0
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
    if "spawn" in jh and "spawn" in xi:
        a, b = jh["spawn"], xi["spawn"]
        print(f"\nPOST → ready of a local server (`jupyterhub-singleuser`), median of "
              f"{args.spawn_runs} runs; ms\n")
        print("| | JupyterHub | Xiji |")
        print("|---|---:|---:|")
        print(f"| POST → ready | {a['total_ms']:.0f} | {b['total_ms']:.0f} |")
        print(f"| of which the process (fork → its `api` answers) | {a['process_ms']:.0f} | "
              f"{b['process_ms']:.0f} |")
        print(f"| overhead: the rest (median / worst) | {a['overhead_ms']:.0f} / "
              f"{a['overhead_max_ms']:.0f} | {b['overhead_ms']:.0f} / {b['overhead_max_ms']:.0f} |")
        print(f"| the same command run directly (launch → `api` answers) | "
              f"{a['direct_ms']:.0f} | {b['direct_ms']:.0f} |")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
