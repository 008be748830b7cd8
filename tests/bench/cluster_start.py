#!/usr/bin/env python3
"""Cluster start benchmark: time from the start request to every node ready, for 1, 2 and 4
nodes, through Xiji's hub (docker backend) against the same containers started directly with
`docker run` (same image, same per-node limits, a network per cluster, each node's Jupyter server
answering HTTP). Prints a Markdown table with the hub's overhead as a ratio. Not a timed test.

    tests/bench/cluster_start.sh [--nodes 1,2,4] [--runs 3]

Environment: XIJI_BIN (the hub binary), XIJI_TEST_DOCKER_IMAGE (default
127.0.0.1:5000/xiji/base-notebook:latest). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

IMAGE = os.environ.get("XIJI_TEST_DOCKER_IMAGE", "127.0.0.1:5000/xiji/base-notebook:latest")
CPUS = "0.5"
MEMORY = "512m"
TIMEOUT = 300.0


def api(base: str, token: str, method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}/hub/api{path}", data=data, method=method)
    req.add_header("Authorization", f"token {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def docker(*args: str) -> str:
    out = subprocess.run(["docker", *args], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def remove_labelled(label: str) -> None:
    ids = docker("ps", "-aq", "--filter", f"label={label}").split()
    if ids:
        docker("rm", "-f", *ids)
    nets = docker("network", "ls", "-q", "--filter", f"label={label}").split()
    if nets:
        docker("network", "rm", *nets)


class XijiHub:
    def __init__(self, binary: str, instance: str):
        self.dir = tempfile.mkdtemp(prefix="xiji-bench-")
        self.token = secrets.token_hex(16)
        config = os.path.join(self.dir, "xiji.toml")
        with open(config, "w") as f:
            f.write(
                f'slow_spawn_timeout = 0\nlog = "warn"\n[admin]\npassword = "{secrets.token_hex(8)}"\n'
                f'[spawner]\nbackend = "docker"\nstart_timeout = {TIMEOUT}\npoll_interval = 60\n'
                f'[spawner.docker]\ninstance = "{instance}"\n'
                f'[[services]]\nname = "bench"\napi_token = "{self.token}"\nadmin = true\n'
            )
        self.log = open(os.path.join(self.dir, "hub.log"), "w+")
        self.proc = subprocess.Popen(
            [binary, "--config", config, "--data-dir", os.path.join(self.dir, "data"),
             "--bind", "127.0.0.1:0"],
            stdout=self.log, stderr=subprocess.STDOUT, env={k: v for k, v in os.environ.items()
                                                            if not k.startswith("XIJI_")})
        deadline = time.time() + 60
        while time.time() < deadline:
            self.log.seek(0)
            m = re.search(r"Xiji is running at (http://\S+?)/?\s", self.log.read())
            if m:
                self.base = m.group(1).rstrip("/")
                break
            if self.proc.poll() is not None:
                raise SystemExit("the hub exited early; see " + self.log.name)
            time.sleep(0.1)
        else:
            raise SystemExit("the hub did not start")
        repo, tag = IMAGE.rsplit(":", 1)
        status, body = api(self.base, self.token, "POST", "/images",
                           {"name": "bench", "image": repo, "tag": tag})
        assert status == 201, (status, body)
        api(self.base, self.token, "POST", "/users/bench")

    def start_cluster(self, nodes: int) -> float:
        t0 = time.perf_counter()
        status, body = api(self.base, self.token, "POST", "/users/bench/server",
                           {"image": "bench", "nodes": nodes, "cpus": CPUS, "memory": MEMORY})
        if status not in (201, 202):
            raise SystemExit(f"start gave {status}: {body}")
        while True:
            _, user = api(self.base, self.token, "GET", "/users/bench")
            server = (user or {}).get("servers", {}).get("")
            if server and server.get("ready"):
                return time.perf_counter() - t0
            if not server and not user.get("pending"):
                raise SystemExit(f"the cluster failed; see {self.log.name}")
            if time.perf_counter() - t0 > TIMEOUT:
                raise SystemExit("the cluster was not ready in time")
            time.sleep(0.05)

    def stop_cluster(self) -> None:
        api(self.base, self.token, "DELETE", "/users/bench/server")
        deadline = time.time() + 120
        while time.time() < deadline:
            _, user = api(self.base, self.token, "GET", "/users/bench")
            if not user.get("servers", {}).get("") and not user.get("pending"):
                return
            time.sleep(0.2)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def direct_cluster(nodes: int, label: str) -> float:
    """The same cluster by hand: a network, N containers, until every Jupyter server answers."""
    name = f"bench-direct-{secrets.token_hex(4)}"
    t0 = time.perf_counter()
    docker("network", "create", "--label", label, name)
    ips = []
    for k in range(nodes):
        docker("run", "-d", "--label", label, "--network", name, "--network-alias", f"node-{k}",
               "--hostname", f"node-{k}", "--name", f"{name}-node-{k}", "--cpus", CPUS,
               "--memory", MEMORY, "--memory-swap", MEMORY, "--user", "1000:1000",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", IMAGE,
               "jupyter", "server", "--ip=0.0.0.0", "--port=8888", "--ServerApp.token=")
    for k in range(nodes):
        ips.append(docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                          f"{name}-node-{k}"))
    for ip in ips:
        while True:
            try:
                with urllib.request.urlopen(f"http://{ip}:8888/api", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.perf_counter() - t0 > TIMEOUT:
                raise SystemExit("the direct cluster was not ready in time")
            time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    remove_labelled(label)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2,4")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(n) for n in args.nodes.split(",")]
    instance = f"xiji-bench-{secrets.token_hex(4)}"
    direct_label = f"org.xiji.bench={instance}"
    hub = XijiHub(os.environ["XIJI_BIN"], instance)
    rows = []
    try:
        hub.start_cluster(1)  # warm-up: the image's files in the page cache for both sides
        hub.stop_cluster()
        for n in sizes:
            xiji, direct = [], []
            for _ in range(args.runs):
                xiji.append(hub.start_cluster(n))
                hub.stop_cluster()
                direct.append(direct_cluster(n, direct_label))
            rows.append((n, statistics.median(xiji), statistics.median(direct)))
            print(f"{n} node(s): xiji {rows[-1][1]:.2f} s, docker run {rows[-1][2]:.2f} s",
                  file=sys.stderr)
    finally:
        hub.close()
        remove_labelled(f"org.xiji.hub={instance}")
        remove_labelled(direct_label)
    print(f"\nStart to all nodes ready, median of {args.runs} runs ({IMAGE}, {CPUS} CPU and "
          f"{MEMORY} per node)\n")
    print("| nodes | Xiji hub (s) | docker run (s) | Xiji / docker run |")
    print("|---:|---:|---:|---:|")
    for n, x, d in rows:
        print(f"| {n} | {x:.2f} | {d:.2f} | {x / d:.2f}× |")


if __name__ == "__main__":
    main()
