#!/usr/bin/env python3
"""Benchmark of admission and metering: Xiji (SQLite and PostgreSQL) against the real
JupyterHub 5.5 on this machine, in one run.

Run it through tests/bench/admission.sh (which builds Xiji in release mode). Two parts:

- `admission`: 1,000 start requests (`POST /hub/api/users/{name}/servers/{server}`, 100 users ×
  10 named servers) sent as fast as a bounded number of connections allows (default 16, then 64
  in flight), each timed from its send to its answer (the container/process start is never
  part of it):
  - *refused*: every start is over quota — on Xiji the students' role quota is 0 clusters
    (`PUT /hub/api/quotas/roles/student`), so each start runs its whole admission transaction
    and answers 403; on JupyterHub a `pre_spawn_hook` counts the user's active servers against
    a quota of 0 and raises `web.HTTPError(403)`;
  - *queued* (Xiji only): every start is admitted into the line of waiting starts — the
    capacity capped to 1 node, held by one running server, `"wait": true` in the body and
    `slow_spawn_timeout = 0`, so the 202 comes right after the reservation is written.
- `ledger`: the real hub (local backend) with 1,000 running servers — 100 users × 10 named
  servers, each a tiny HTTP process (tests/bench/tiny_singleuser.c) instead of
  jupyterhub-singleuser, so that 1,000 fit in memory — checkpointed every 15 s: ledger rows
  written per second, the hub process's CPU % over the window (from /proc/<pid>/stat), and each
  checkpoint round's length (from the rows' `recorded` times) and CPU.

Prints Markdown tables with the ratios Xiji/JupyterHub. Standard library only (plus `cc` to build
the tiny server and `psql` for the PostgreSQL database). Every wait is bounded; 127.0.0.1 only;
processes are stopped by id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "conformance"))
import hubs  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

# JupyterHub's side of the refused starts: the same rule (active servers + 1 > quota → 403),
# checked where JupyterHub lets a deployment check it, before the spawner starts anything.
JUPYTERHUB_QUOTA_HOOK = """
from tornado import web

BENCH_QUOTA_CLUSTERS = 0


def bench_quota_hook(spawner):
    user = spawner.user
    held = sum(1 for s in user.spawners.values() if s is not spawner and s.active)
    if held + 1 > BENCH_QUOTA_CLUSTERS:
        raise web.HTTPError(
            403,
            f"Over your quota of clusters at once: you may hold {BENCH_QUOTA_CLUSTERS}, "
            f"you hold {held} and this start asks for 1.",
        )


c.Spawner.pre_spawn_hook = bench_quota_hook
"""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Processes


def cpu_seconds(pids) -> float:
    """utime + stime of the given processes, in seconds (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(entry.name))
    return out


def mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def rss_anon_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------------------------
# Hubs


class BenchXiji(hubs.Xiji):
    """Xiji with the benchmark's settings: named servers, `slow_spawn_timeout = 0`, the local
    backend running `server_cmd`, a checkpoint interval."""

    def __init__(self, workdir: Path, service_token: str, binary: Path, server_cmd: str,
                 database_url: str | None, checkpoint_interval: float):
        super().__init__(workdir, service_token, binary, Path("/nonexistent"),
                         database_url=database_url)
        self.server_cmd = server_cmd
        self.checkpoint_interval = checkpoint_interval

    def write_config(self) -> Path:
        lines = [
            f'bind = "127.0.0.1:{self.port}"',
            f"data_dir = {json.dumps(str(self.workdir / 'data'))}",
        ]
        if self.database_url:
            lines.append(f"database_url = {json.dumps(self.database_url)}")
        lines += [
            "allow_named_servers = true",
            "slow_spawn_timeout = 0",
            "[admin]",
            'username = "admin"',
            'password = "bench-password-1"',
            "[spawner.local]",
            f"cmd = [{json.dumps(self.server_cmd)}]",
            'ip = "127.0.0.1"',
            "[metering]",
            f"checkpoint_interval = {self.checkpoint_interval}",
            "[[services]]",
            'name = "ci"',
            f"api_token = {json.dumps(self.service_token)}",
            "admin = true",
        ]
        path = self.workdir / "xiji.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def sqlite_path(self) -> Path:
        return self.workdir / "data" / "xiji.sqlite"


class PgDatabase:
    """A fresh database on XIJI_TEST_PG_URL's server, created and dropped with psql."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.name = f"xiji_bench_{uuid.uuid4().hex[:10]}"
        parts = urllib.parse.urlsplit(base_url)
        self.url = urllib.parse.urlunsplit(parts._replace(path=f"/{self.name}"))

    def psql(self, url: str, sql: str) -> str:
        r = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return r.stdout.strip()

    def __enter__(self) -> "PgDatabase":
        self.psql(self.base_url, f"CREATE DATABASE {self.name}")
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.psql(self.base_url, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        except Exception as e:  # noqa: BLE001
            log(f"could not drop {self.name}: {e}")


def api(hub: hubs.Hub, method: str, path: str, body=None, ok=(200, 201, 202, 204)):
    headers = {"Authorization": f"token {hub.service_token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    r = hub.request(method, "/hub/api" + path, headers, data, timeout=120)
    if r.status not in ok:
        raise RuntimeError(f"{hub.name}: {method} {path} -> {r.status} {r.body[:300]!r}")
    return r.json()


def create_users(hub: hubs.Hub, names: list[str]) -> None:
    for i in range(0, len(names), 100):
        api(hub, "POST", "/users", {"usernames": names[i:i + 100]})


def admin_token(hub: hubs.Hub) -> str:
    return api(hub, "POST", "/users/admin/tokens", {"note": "benchmark"})["token"]


def wait_servers_ready(hub: hubs.Hub, expected: int, timeout: float) -> float:
    """Polls GET /users until `expected` servers are ready; returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    ready = 0
    while time.monotonic() < deadline:
        ready, offset = 0, 0
        while True:
            page = api(hub, "GET", f"/users?offset={offset}&limit=100")
            ready += sum(1 for u in page for s in (u.get("servers") or {}).values()
                         if s.get("ready"))
            if len(page) < 100:
                break
            offset += 100
        if ready >= expected:
            return time.monotonic() - t0
        if mem_available_mib() < 1024:
            raise RuntimeError("less than 1 GiB of memory is available; giving up")
        time.sleep(1.0)
    raise RuntimeError(f"{hub.name}: {ready} of {expected} servers ready after {timeout:.0f} s")


# --------------------------------------------------------------------------------------------
# The load: a bounded number of keep-alive connections sending a fixed list of requests


class Conn:
    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = False

    async def open(self) -> None:
        self.close()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.used = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("closed before the answer")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            k, v = k.strip().lower(), v.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v:
                chunked = True
            elif k == "connection" and "close" in v:
                close = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                data += await self.reader.readexactly(size)
                await self.reader.readline()
        else:
            data = await self.reader.readexactly(length)
        self.used = True
        if close:
            self.close()
        return status, data


async def _fire(port: int, token: str, requests: list[tuple[str, str, bytes]],
                concurrency: int) -> dict:
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    results: list = [None] * len(requests)
    todo = iter(range(len(requests)))
    retries = 0

    async def worker() -> None:
        nonlocal retries
        conn = Conn(port)
        try:
            for i in todo:
                method, path, body = requests[i]
                t0 = time.perf_counter()
                try:
                    status, data = await conn.request(method, path, headers, body)
                except (ConnectionError, asyncio.IncompleteReadError):
                    # A keep-alive connection the server had closed: once more on a new one.
                    if not conn.used:
                        raise
                    retries += 1
                    await conn.open()
                    t0 = time.perf_counter()
                    status, data = await conn.request(method, path, headers, body)
                results[i] = (status, time.perf_counter() - t0, data[:300])
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
    return {"wall": time.perf_counter() - t0, "results": results, "retries": retries}


def fire(hub: hubs.Hub, token: str, requests: list[tuple[str, str, bytes]], concurrency: int,
         expect: int, hub_pids, timeout: float = 900.0) -> dict:
    """Sends the requests over `concurrency` connections; every answer must be `expect`.
    Returns req/s, p50/p99 (ms), and the CPU seconds of the hub's processes and of this
    client."""
    cpu0, me0 = cpu_seconds(hub_pids), os.times()
    out = asyncio.run(asyncio.wait_for(_fire(hub.port, token, requests, concurrency), timeout))
    cpu1, me1 = cpu_seconds(hub_pids), os.times()
    statuses = Counter(r[0] for r in out["results"])
    if set(statuses) != {expect}:
        odd = next(r for r in out["results"] if r[0] != expect)
        raise RuntimeError(f"{hub.name}: expected only {expect}, got {dict(statuses)}; "
                           f"e.g. {odd[0]} {odd[2]!r}")
    lat = sorted(r[1] * 1000 for r in out["results"])
    n = len(lat)
    return {
        "n": n,
        "rps": n / out["wall"],
        "wall_s": out["wall"],
        "p50": statistics.median(lat),
        "p99": lat[min(n - 1, int(n * 0.99))],
        "hub_cpu_ms_per_req": (cpu1 - cpu0) * 1000 / n,
        "client_cpu_s": (me1.user - me0.user) + (me1.system - me0.system),
        "retries": out["retries"],
        "sample": out["results"][0][2].decode(errors="replace"),
    }


def start_requests(users: list[str], per_user: int, prefix: str,
                   body: dict | None) -> list[tuple[str, str, bytes]]:
    """One start per (user, server), users interleaved: user 0's server 0, user 1's server 0…"""
    data = json.dumps(body).encode() if body is not None else b""
    return [("POST", f"/hub/api/users/{u}/servers/{prefix}{j}", data)
            for j in range(per_user) for u in users]


# --------------------------------------------------------------------------------------------
# Part 1: admission


def bench_jupyterhub(venv5: Path, node_modules: Path, users: list[str], per_user: int,
                     conc: int, warmup: int) -> dict:
    wd = Path(tempfile.mkdtemp(prefix="xiji-bench-adm-jh-"))
    hub = hubs.JupyterHub(wd, uuid.uuid4().hex, venv5, node_modules,
                          extra_config=JUPYTERHUB_QUOTA_HOOK)
    try:
        hub.start(timeout=120)
        create_users(hub, users)
        token = admin_token(hub)
        assert hub.proc is not None
        pids = [hub.proc.pid] + children(hub.proc.pid)  # the hub and its proxy
        fire(hub, token, start_requests(users[:warmup], 1, "warm", None), conc, 403, pids)
        res = fire(hub, token, start_requests(users, per_user, "s", None), conc, 403, pids)
        log(f"jupyterhub refused c={conc}: {res['rps']:.0f} req/s, p50 {res['p50']:.1f} ms, "
            f"p99 {res['p99']:.1f} ms; answer: {res['sample'][:160]}")
        return res
    except Exception:
        log(f"jupyterhub failed; its log:\n{hub.log_tail(30)}")
        raise
    finally:
        hub.stop()
        hubs.remove_workdir(wd)


def bench_xiji_admission(binary: Path, tiny: Path, engine: str, pg_base: str | None,
                         users: list[str], per_user: int, conc: int, warmup: int) -> dict:
    """Refused, then queued, on one fresh Xiji (and database)."""
    wd = Path(tempfile.mkdtemp(prefix=f"xiji-bench-adm-{engine}-"))
    pg = PgDatabase(pg_base) if engine == "postgres" else None
    if pg:
        pg.__enter__()
    hub = BenchXiji(wd, uuid.uuid4().hex, binary, str(tiny), pg.url if pg else None, 15)
    out = {}
    try:
        hub.start(timeout=120)
        create_users(hub, users + ["holder"])
        token = admin_token(hub)
        assert hub.proc is not None
        pids = [hub.proc.pid]
        # (a) every start over the students' quota of 0 clusters.
        api(hub, "PUT", "/quotas/roles/student", {"clusters": 0})
        fire(hub, token, start_requests(users[:warmup], 1, "warm", {}), conc, 403, pids)
        res = fire(hub, token, start_requests(users, per_user, "s", {}), conc, 403, pids)
        log(f"xiji/{engine} refused c={conc}: {res['rps']:.0f} req/s, p50 {res['p50']:.1f} ms, "
            f"p99 {res['p99']:.1f} ms; answer: {res['sample'][:160]}")
        out["refused"] = res
        # (b) every start into the line: no quota, 1 node of capacity, held by one server.
        api(hub, "PUT", "/quotas/roles/student", {})
        api(hub, "PUT", "/capacity", {"nodes": 1})
        api(hub, "POST", "/users/holder/server", {}, ok=(201, 202))
        wait_servers_ready(hub, 1, 60)
        res = fire(hub, token, start_requests(users, per_user, "q", {"wait": True}), conc, 202,
                   pids)
        body = api(hub, "GET", "/reservations")
        states = Counter(r["state"] for r in body["reservations"])
        if states != Counter({"queued": len(users) * per_user, "admitted": 1}):
            raise RuntimeError(f"xiji/{engine}: reservations after the queued run: {dict(states)}")
        log(f"xiji/{engine} queued c={conc}: {res['rps']:.0f} req/s, p50 {res['p50']:.1f} ms, "
            f"p99 {res['p99']:.1f} ms; reservations {dict(states)}")
        out["queued"] = res
        return out
    except Exception:
        log(f"xiji/{engine} failed; its log:\n{hub.log_tail(30)}")
        raise
    finally:
        hub.stop()
        hubs.remove_workdir(wd)
        if pg:
            pg.__exit__(None, None, None)


# --------------------------------------------------------------------------------------------
# Part 2: the ledger's cost


def ledger_rows(hub: BenchXiji, pg: PgDatabase | None, since_us: int = 0) -> list[tuple]:
    """(recorded, kind) of every ledger row recorded at or after `since_us`."""
    sql = f"SELECT recorded, kind FROM usage_ledger WHERE recorded >= {int(since_us)}"
    if pg:
        text = pg.psql(pg.url, sql.replace(", kind", " || ',' || kind"))
        return [(int(line.split(",")[0]), line.split(",")[1]) for line in text.splitlines()
                if line]
    con = sqlite3.connect(hub.sqlite_path(), timeout=30)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def rounds_of(recorded_us: list[int], gap_s: float = 3.0) -> list[tuple[float, float, int]]:
    """Groups checkpoint rows into rounds: (first, last, rows), by gaps of more than gap_s."""
    out: list[list] = []
    for t in sorted(x / 1e6 for x in recorded_us):
        if out and t - out[-1][1] <= gap_s:
            out[-1][1] = t
            out[-1][2] += 1
        else:
            out.append([t, t, 1])
    return [tuple(r) for r in out]


def bench_ledger(binary: Path, tiny: Path, engine: str, pg_base: str | None, users: list[str],
                 per_user: int, interval: float, window: float) -> dict:
    wd = Path(tempfile.mkdtemp(prefix=f"xiji-bench-ledger-{engine}-"))
    pg = PgDatabase(pg_base) if engine == "postgres" else None
    if pg:
        pg.__enter__()
    hub = BenchXiji(wd, uuid.uuid4().hex, binary, str(tiny), pg.url if pg else None, interval)
    nodes = len(users) * per_user
    try:
        hub.start(timeout=120)
        create_users(hub, users)
        token = admin_token(hub)
        assert hub.proc is not None
        mem_before = mem_available_mib()
        t0 = time.monotonic()
        fire(hub, token, start_requests(users, per_user, "n", {}), 16, 202, [hub.proc.pid])
        ready_s = wait_servers_ready(hub, nodes, 900)
        took = time.monotonic() - t0
        kids = children(hub.proc.pid)
        servers_mib = sum(rss_anon_kib(p) for p in kids) / 1024
        log(f"xiji/{engine}: {nodes} servers ready in {took:.0f} s ({ready_s:.0f} s after the "
            f"last 202); {len(kids)} server processes, {servers_mib:.0f} MiB anonymous memory "
            f"in all; memory available {mem_before} → {mem_available_mib()} MiB")
        # Settle: let the start-up's work end and one checkpoint of all of them pass.
        time.sleep(interval + 2)
        pid = hub.proc.pid
        start_wall = time.time()
        samples = [(start_wall, cpu_seconds([pid]))]
        end = time.monotonic() + window
        while time.monotonic() < end:
            time.sleep(0.25)
            samples.append((time.time(), cpu_seconds([pid])))
        end_wall = samples[-1][0]
        rows = [r for r in ledger_rows(hub, pg, int(start_wall * 1e6))
                if r[0] <= end_wall * 1e6]
        checkpoint_rows = [r[0] for r in rows if r[1] == "checkpoint"]
        rounds = rounds_of(checkpoint_rows)
        cpu_total = samples[-1][1] - samples[0][1]
        span = end_wall - start_wall

        def cpu_between(a: float, b: float) -> float:
            """CPU seconds in the samples that overlap [a, b] (widened to whole samples)."""
            total = 0.0
            for (ta, ca), (tb, cb) in zip(samples, samples[1:]):
                if tb >= a and ta <= b:
                    total += cb - ca
            return total

        round_info = []
        for first, last, n in rounds:
            round_info.append({"rows": n, "seconds": last - first,
                               "cpu_s": cpu_between(first, last)})
        in_rounds = sum(r["cpu_s"] for r in round_info)
        round_time = sum(max(r["seconds"], 0.25) for r in round_info)
        res = {
            "nodes": nodes,
            "servers_anon_mib": servers_mib,
            "hub_rss_mib": (hubs.vm_rss_kb(pid) or 0) / 1024,
            "window_s": span,
            "rows": len(rows),
            "checkpoint_rows": len(checkpoint_rows),
            "rows_per_s": len(rows) / span,
            "hub_cpu_pct": 100 * cpu_total / span,
            "rounds": round_info,
            "between_rounds_cpu_pct": 100 * (cpu_total - in_rounds) / max(span - round_time, 1e-9),
        }
        log(f"xiji/{engine} ledger: {json.dumps(res)}")
        return res
    except Exception:
        log(f"xiji/{engine} failed; its log:\n{hub.log_tail(30)}")
        raise
    finally:
        hub.stop()
        hubs.remove_workdir(wd)
        if pg:
            pg.__exit__(None, None, None)


# --------------------------------------------------------------------------------------------


def ratio(a, b) -> str:
    return "–" if not a or not b else f"{a / b:.1f}×"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="admission,ledger")
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--concurrency", default="16,64")
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--per-user", type=int, default=10, help="named servers per user")
    ap.add_argument("--warmup", type=int, default=20, help="untimed refused starts first")
    ap.add_argument("--interval", type=float, default=15.0, help="checkpoint interval (s)")
    ap.add_argument("--window", type=float, default=60.0, help="ledger measurement (s)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()

    venv5 = hubs.require(hubs.env_path("XIJI_TEST_VENV5", ".cache/venv5"), "venv5")
    node_modules = hubs.env_path("XIJI_TEST_NODE_MODULES", ".cache/node/node_modules")
    binary = hubs.require(hubs.env_path("XIJI_BIN", "target/release/xiji"),
                          "the xiji binary (cargo build --release -p hub)")
    parts = set(args.parts.split(","))
    engines = args.engines.split(",")
    concs = [int(c) for c in args.concurrency.split(",")]
    pg_base = os.environ.get("XIJI_TEST_PG_URL")
    if "postgres" in engines and not pg_base:
        raise SystemExit("XIJI_TEST_PG_URL is not set: run tests/setup-env.sh")
    users = [f"s{i:03d}" for i in range(args.users)]

    work = Path(tempfile.mkdtemp(prefix="xiji-bench-tiny-"))
    tiny = work / "tiny_singleuser"
    subprocess.run(["cc", "-O2", "-o", str(tiny), str(HERE / "tiny_singleuser.c")], check=True,
                   timeout=120)

    results: dict = {"admission": {}, "ledger": {}}
    load_before = os.getloadavg()
    try:
        if "admission" in parts:
            for conc in concs:
                results["admission"][f"jupyterhub@{conc}"] = bench_jupyterhub(
                    venv5, node_modules, users, args.per_user, conc, args.warmup)
                for engine in engines:
                    results["admission"][f"{engine}@{conc}"] = bench_xiji_admission(
                        binary, tiny, engine, pg_base, users, args.per_user, conc, args.warmup)
        if "ledger" in parts:
            for engine in engines:
                results["ledger"][engine] = bench_ledger(
                    binary, tiny, engine, pg_base, users, args.per_user, args.interval,
                    args.window)
    finally:
        hubs.remove_workdir(work)
    load_after = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))

    n = args.users * args.per_user
    cpu = platform.processor() or platform.machine()
    label = {"sqlite": "Xiji, SQLite", "postgres": "Xiji, PostgreSQL"}
    if results["admission"]:
        print(f"\nAdmission: {n} starts ({args.users} users × {args.per_user} named servers), "
              f"{os.cpu_count()} cores ({cpu}); load average {load_before[0]:.1f} before, "
              f"{load_after[0]:.1f} after; latencies in ms; CPU = the hub's processes "
              "(JupyterHub: with its proxy; not PostgreSQL's)\n")
        print("| starts | c | hub | req/s | / JupyterHub | p50 | p99 | hub CPU ms/req |")
        print("|---|---:|---|---:|---:|---:|---:|---:|")
        for conc in concs:
            jh = results["admission"][f"jupyterhub@{conc}"]
            print(f"| refused (403, quota) | {conc} | JupyterHub 5.5, SQLite | {jh['rps']:.0f} | "
                  f"1.0× | {jh['p50']:.1f} | {jh['p99']:.1f} | {jh['hub_cpu_ms_per_req']:.2f} |")
            for engine in engines:
                r = results["admission"][f"{engine}@{conc}"]["refused"]
                print(f"| refused (403, quota) | {conc} | {label[engine]} | {r['rps']:.0f} | "
                      f"{ratio(r['rps'], jh['rps'])} | {r['p50']:.1f} | {r['p99']:.1f} | "
                      f"{r['hub_cpu_ms_per_req']:.2f} |")
            for engine in engines:
                r = results["admission"][f"{engine}@{conc}"]["queued"]
                print(f"| queued (202, in line) | {conc} | {label[engine]} | {r['rps']:.0f} | "
                      f"{ratio(r['rps'], jh['rps'])} | {r['p50']:.1f} | {r['p99']:.1f} | "
                      f"{r['hub_cpu_ms_per_req']:.2f} |")
    if results["ledger"]:
        print(f"\nLedger: {n} running servers (local backend, tiny HTTP processes), "
              f"checkpoint every {args.interval:.0f} s, measured over {args.window:.0f} s\n")
        print("| engine | rows/s needed | rows/s written | hub CPU % | hub CPU per row (ms) | "
              "a round of all nodes (s) | hub RSS (MiB) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for engine in engines:
            r = results["ledger"].get(engine)
            if not r or not r["checkpoint_rows"]:
                continue
            # Rounds longer than the interval run back to back and merge into one span: then a
            # round lasts as long as writing one row per node takes.
            separate = bool(r["rounds"]) and all(
                x["seconds"] < args.interval - 1 for x in r["rounds"])
            round_s = (statistics.median(x["seconds"] for x in r["rounds"]) if separate
                       else r["nodes"] * r["window_s"] / r["checkpoint_rows"])
            cpu_per_row = r["hub_cpu_pct"] / 100 * r["window_s"] / r["checkpoint_rows"] * 1000
            print(f"| {label[engine]} | {r['nodes'] / args.interval:.1f} | "
                  f"{r['rows_per_s']:.1f} | {r['hub_cpu_pct']:.1f} | {cpu_per_row:.2f} | "
                  f"{round_s:.2f}{'' if separate else ' (back to back)'} | "
                  f"{r['hub_rss_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
