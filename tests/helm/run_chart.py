#!/usr/bin/env python3
"""Runs the Helm chart's hub and proxy (and node agent, when its binary exists) as their pod
specs say, on this machine, and uses them as a user and an administrator would.

No Kubernetes cluster runs here, so this script plays the kubelet, kube-proxy and cluster DNS
for the chart's own pods, in private network and mount namespaces (root):

  - the chart is rendered by Helm's engine (helm-python-sdk) for release `xiji` in namespace
    `campus`;
  - every Service name (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `...cluster.local`) resolves to
    127.0.0.1 (an /etc/hosts bind-mounted in the mount namespace), and every pod listens on the
    namespace's loopback; a Service reached by name is therefore reached on its targetPort, so
    the chart's Services whose port differs from their targetPort (the public one) are reached
    on the container port, as an ingress controller's endpoint would;
  - each container runs its `command` + `args` with the `env` of its spec (values, Secret keys,
    the downward API's node name) as the user its security context names, its volumes filled from the rendered ConfigMaps and Secrets
    (items, sub paths, projected sources, modes) under a directory of its own; paths under a
    mount point are rewritten to that directory in the arguments and in xiji.toml (the one
    change to what the chart renders: there is no container filesystem to mount them at);
  - the hub's Kubernetes API is the test stand-in (tests/kube/cluster.py: kmock's emulator with
    a scheduler and a kubelet), given to it as $KUBECONFIG instead of the in-cluster service
    account, through a recorder (api_recorder.py): every request the hub made is then held
    against the chart's Role and ClusterRole as Kubernetes' RBAC authorizer would (the stand-in
    authorises nothing itself).

Then: the probes' paths answer on the probes' ports; the hub put its default route into the
proxy through the proxy's API Service with the Secret's token; the proxy's public port serves
the hub; the first administrator logs in through the proxy with the password of the release's
Secret (or the operator's), lists users, sees the stand-in's node among the compute nodes and
puts it into a pool by its name (the node gets the pool label) and out again; with
--singleuser-bin-dir it also starts its own server (a pod of the namespace, run by the stand-in's
kubelet with jupyterhub-singleuser, reached through the proxy) and stops it; the node agent
(when built) takes the hub's token on its hostPort; every API request the hub made is allowed by
the chart's RBAC.

    run_chart.py --chart deploy/xiji --bin-dir target/debug [-f VALUES.yaml]
                 [--singleuser-bin-dir VENV/bin] [--operator-secret NAME:KEY=VALUE]
                 [--external-postgres URL]

Prints `ok ...` lines and exits 0, or `FAIL ...` with the processes' logs and exits 1.
"""

from __future__ import annotations

import argparse
import base64
from http.cookiejar import CookieJar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_chart  # noqa: E402  (the same rendering and values as the static checks)

RELEASE = check_chart.RELEASE
NAMESPACE = check_chart.NAMESPACE
STANDIN = Path(__file__).resolve().parents[1] / "kube" / "cluster.py"
RECORDER = Path(__file__).resolve().parent / "api_recorder.py"
INNER = "XIJI_RUN_CHART_INNER"
# Set in inner(): where claims live, shared by the played pods and the stand-in's kubelet.
CLAIMS = Path("/nonexistent")


class Failed(Exception):
    pass


class Pod:
    """One pod of the chart, its volumes as directories, its containers as processes."""

    def __init__(self, work: Path, workload: dict, docs: list[tuple[str, dict]]):
        self.name = workload["metadata"]["name"]
        self.spec = workload["spec"]["template"]["spec"]
        self.docs = docs
        self.root = work / self.name
        self.root.mkdir(parents=True)
        self.processes: list[tuple[str, subprocess.Popen, Path]] = []
        self.volumes = {v["name"]: self._volume(v) for v in self.spec.get("volumes", [])}
        # A StatefulSet's claims: an empty directory each, as a fresh volume.
        for template in workload["spec"].get("volumeClaimTemplates", []):
            self.volumes[template["metadata"]["name"]] = self._volume(template["metadata"])

    def _object(self, kind: str, name: str) -> dict | None:
        return next((d for _, d in self.docs if d["kind"] == kind
                     and d["metadata"]["name"] == name), None)

    def _secret_data(self, name: str) -> dict[str, bytes]:
        secret = self._object("Secret", name)
        if secret is None:
            raise Failed(f"pod {self.name}: Secret {name} is not in the release")
        return {k: base64.b64decode(v) for k, v in secret.get("data", {}).items()}

    def _volume(self, volume: dict) -> Path:
        if "persistentVolumeClaim" in volume:
            # One directory per claim, where the stand-in's kubelet puts the same claim for
            # users' pods: the files are shared as on a ReadWriteMany volume.
            path = CLAIMS / NAMESPACE / volume["persistentVolumeClaim"]["claimName"]
            path.mkdir(parents=True, exist_ok=True)
            return path
        path = self.root / "volumes" / volume["name"]
        path.mkdir(parents=True)
        if "configMap" in volume:
            cm = self._object("ConfigMap", volume["configMap"]["name"])
            if cm is None:
                raise Failed(f"pod {self.name}: ConfigMap {volume['configMap']['name']} missing")
            data = {k: v.encode() for k, v in cm.get("data", {}).items()}
            self._write(path, data, volume["configMap"].get("items"),
                        volume["configMap"].get("defaultMode", 0o644))
        elif "secret" in volume:
            self._write(path, self._secret_data(volume["secret"]["secretName"]),
                        volume["secret"].get("items"), volume["secret"].get("defaultMode", 0o644))
        elif "projected" in volume:
            mode = volume["projected"].get("defaultMode", 0o644)
            for source in volume["projected"]["sources"]:
                if "secret" in source:
                    self._write(path, self._secret_data(source["secret"]["name"]),
                                source["secret"].get("items"), mode)
                else:
                    raise Failed(f"pod {self.name}: projected source {source} not played here")
        # emptyDir, persistentVolumeClaim, nfs, hostPath: an empty directory of the pod's own.
        return path

    def _write(self, path: Path, data: dict[str, bytes], items: list | None, mode: int) -> None:
        for key, target in ([(i["key"], i["path"]) for i in items] if items
                            else [(k, k) for k in data]):
            if key not in data:
                raise Failed(f"pod {self.name}: key {key} is missing from its source")
            file = path / target
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data[key])
            file.chmod(mode)

    def mounts(self, container: dict) -> dict[str, Path]:
        out = {}
        for m in container.get("volumeMounts", []):
            host = self.volumes[m["name"]]
            if m.get("subPath"):
                host = host / m["subPath"]
            out[m["mountPath"].rstrip("/")] = host
        return out

    @staticmethod
    def rewrite(text: str, mounts: dict[str, Path]) -> str:
        """Paths under a mount point, to the pod's directory (longest mount first, one pass)."""
        if not mounts:
            return text
        alternatives = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w/.-])({alternatives})(?=$|[/\"'\s])", re.M)
        return pattern.sub(lambda m: str(mounts[m.group(1)]), text)

    def environment(self, container: dict) -> dict[str, str]:
        """The container's env as the kubelet would give it (paths under mounts rewritten)."""
        mounts = self.mounts(container)
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root), "NO_COLOR": "1"}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = self.rewrite(e["value"], mounts)
            elif "secretKeyRef" in e["valueFrom"]:
                ref = e["valueFrom"]["secretKeyRef"]
                env[e["name"]] = self._secret_data(ref["name"])[ref["key"]].decode()
            elif e["valueFrom"].get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                env[e["name"]] = "node-0"
            else:
                raise Failed(f"pod {self.name}: env {e} not played here")
        return env

    def start(self, container: dict, binaries: dict[str, str], extra_env: dict[str, str],
              config_files: tuple[str, ...] = ()) -> None:
        mounts = self.mounts(container)
        for mount_path in config_files:
            file = mounts[mount_path]
            file.write_text(self.rewrite(file.read_text(), mounts))
        argv = [self.rewrite(a, mounts) for a in container.get("command", []) +
                container.get("args", [])]
        if argv[0] not in binaries:
            raise Failed(f"pod {self.name}: no binary for {argv[0]}")
        argv[0] = binaries[argv[0]]
        # The user the pod's security contexts name (the container's over the pod's).
        context = self.spec.get("securityContext", {}) | container.get("securityContext", {})
        self.run(container["name"], argv, self.environment(container) | extra_env,
                 context.get("runAsUser"), context.get("runAsGroup"))

    def run(self, name: str, argv: list[str], env: dict[str, str], uid: int | None = None,
            gid: int | None = None) -> None:
        log = self.root / f"{name}.log"
        as_user = {} if uid in (None, 0) else {"user": uid, "group": gid if gid is not None
                                                else uid, "extra_groups": []}
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, env=env, cwd=self.root, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       **as_user)
        self.processes.append((name, process, log))

    def stop(self) -> None:
        for _, process, _ in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process, _ in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {self.name}/{name} (exit {p.poll()}) ---\n"
                         + log.read_text(errors="replace")[-6000:]
                         for name, p, log in self.processes)

    def check_alive(self) -> None:
        for name, process, _ in self.processes:
            if process.poll() is not None:
                raise Failed(f"{self.name}/{name} exited with {process.returncode}")


def wait_for(what: str, probe, timeout: float, pods: list[Pod]):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for pod in pods:
            pod.check_alive()
        try:
            result = probe()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError) as e:
            last = e
        time.sleep(0.3)
    raise Failed(f"{what}: not within {timeout:.0f} s (last: {last})")


def fetch(url: str, *, data: bytes | None = None, headers: dict | None = None,
         opener=None, method: str | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with (opener or urllib.request.build_opener(NoRedirect)).open(request, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def probe_ok(container: dict, probe_name: str, env: dict[str, str]) -> bool:
    probe = container.get(probe_name)
    if not probe:
        return True
    if "exec" in probe:
        return subprocess.run(probe["exec"]["command"], env=env, capture_output=True,
                              timeout=10, check=False).returncode == 0
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if "httpGet" in probe:
        port = probe["httpGet"]["port"]
        port = ports.get(port, port)
        status, _, _ = fetch(f"http://127.0.0.1:{port}{probe['httpGet']['path']}")
        return 200 <= status < 400
    if "tcpSocket" in probe:
        port = probe["tcpSocket"]["port"]
        with socket.create_connection(("127.0.0.1", ports.get(port, port)), timeout=2):
            return True
    raise Failed(f"probe {probe} not played here")


def external_postgresql(url: str) -> dict:
    """A campus database for `database.url` / `database.existingSecret`: a workload shaped like
    the chart's PostgreSQL pod, with the URL's user, password and database, for
    play_postgresql."""
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    database = parts.path.lstrip("/") or user
    return {"metadata": {"name": f"external-{parts.hostname}"}, "spec": {"template": {"spec": {
        "containers": [{
            "name": "postgresql",
            "env": [{"name": "POSTGRES_USER", "value": user},
                    {"name": "POSTGRES_PASSWORD", "value": password},
                    {"name": "POSTGRES_DB", "value": database},
                    {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
            "readinessProbe": {"exec": {"command": [
                "pg_isready", "-h", "127.0.0.1", "-p", str(parts.port or 5432)]}},
            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                             {"name": "run", "mountPath": "/var/run/postgresql"}]}],
        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "run", "emptyDir": {}}]}}}}


def play_postgresql(work: Path, statefulset: dict, docs, pods: list[Pod],
                    port: int = 5432) -> Pod:
    """The PostgreSQL pod, played by Debian's PostgreSQL server (the official image is not
    runnable here) set up as the image's entrypoint does from POSTGRES_USER, POSTGRES_PASSWORD,
    POSTGRES_DB and PGDATA: initdb with that superuser and password, password authentication
    over TCP, the database created; it listens on the pod's port 5432."""
    pod = Pod(work, statefulset, docs)
    c = check_chart.container(statefulset, "postgresql")
    env = pod.environment(c)
    mounts = pod.mounts(c)
    pgdata = Path(Pod.rewrite(env["PGDATA"], mounts))
    run_dir = mounts["/var/run/postgresql"]
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        raise Failed("no Debian PostgreSQL server (/usr/lib/postgresql/*/bin) to play the pod")
    bin_dir = bins[-1].parent
    pwfile = pod.root / "pwfile"
    pwfile.write_text(env["POSTGRES_PASSWORD"] + "\n")
    subprocess.run(["chown", "-R", "postgres:postgres", str(pod.root)], check=True)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_postgres + [str(bin_dir / "initdb"), "-D", str(pgdata), "-U",
                                  env["POSTGRES_USER"], f"--pwfile={pwfile}",
                                  "--auth-local=trust", "--auth-host=scram-sha-256"],
                   check=True, capture_output=True, timeout=120)
    pod.run("postgresql", as_postgres + [str(bin_dir / "postgres"), "-D", str(pgdata),
                                          "-h", "127.0.0.1", "-p", str(port), "-k",
                                          str(run_dir)],
            env)
    wait_for("PostgreSQL's readinessProbe",
             lambda: probe_ok(c, "readinessProbe", env), 60, [pod])
    database = env["POSTGRES_DB"]
    if database != "postgres":
        subprocess.run(as_postgres + ["psql", "-h", str(run_dir), "-p", str(port), "-U",
                                      env["POSTGRES_USER"],
                                      "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c",
                                      f'CREATE DATABASE "{database}"'],
                       check=True, capture_output=True, timeout=60)
    return pod


def spawn_and_stop(public: str, opener, session: dict, user: str, pods: list[Pod]) -> None:
    """The administrator's own server through the proxy: a cluster of one node in the release's
    namespace, made by the hub with the chart's [spawner.kubernetes], run by the stand-in's
    kubelet (jupyterhub-singleuser), reached through the proxy's public port, then stopped."""
    status, body, _ = fetch(f"{public}/hub/api/users/{user}/server", opener=opener,
                            headers=session, data=b"{}", method="POST")
    if status not in (201, 202):
        raise Failed(f"starting {user}'s server: {status} {body[:400]!r}")

    def ready():
        status, body, _ = fetch(f"{public}/hub/api/users/{user}", opener=opener,
                                headers=session)
        server = json.loads(body).get("servers", {}).get("", {}) if status == 200 else {}
        if status == 200 and not server and json.loads(body).get("pending") is None:
            raise Failed(f"{user}'s server is gone while starting: {body[:400]!r}")
        return server.get("ready") and server

    server = wait_for(f"{user}'s server ready", ready, 180, pods)
    status, body, _ = fetch(f"{public}{server['url']}api")
    if status != 200 or "version" not in json.loads(body):
        raise Failed(f"{public}{server['url']}api through the proxy: {status} {body[:300]!r}")
    print(f"ok   {user}'s server starts as a pod of the release's namespace and answers "
          f"through the proxy at {server['url']} (jupyter_server {json.loads(body)['version']})")
    status, body, _ = fetch(f"{public}/hub/api/users/{user}/server", opener=opener,
                            headers=session, method="DELETE")
    if status not in (202, 204):
        raise Failed(f"stopping {user}'s server: {status} {body[:300]!r}")

    def stopped():
        status, body, _ = fetch(f"{public}/hub/api/users/{user}", opener=opener,
                                headers=session)
        return status == 200 and not json.loads(body).get("servers")

    wait_for(f"{user}'s server stopped", stopped, 120, pods)
    print(f"ok   {user}'s server stops")


def inner(args: argparse.Namespace) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    values = check_chart.user_values(args.values, args.set_json)
    rendered, merged = check_chart.render(args.chart, values)
    docs = check_chart.documents(rendered)
    # Secrets the operator made before installing (values name them: existingSecret...).
    for spec in args.operator_secret:
        name, _, pair = spec.partition(":")
        key, _, value = pair.partition("=")
        docs.append(("operator", {"apiVersion": "v1", "kind": "Secret",
                                  "metadata": {"name": name, "namespace": NAMESPACE},
                                  "data": {key: base64.b64encode(value.encode()).decode()}}))
    work = Path(tempfile.mkdtemp(prefix="xiji-chart-run-"))
    work.chmod(0o711)  # the PostgreSQL pod runs as postgres

    # Cluster DNS: every Service of the release on this namespace's loopback.
    hosts = work / "hosts"
    names = [s["metadata"]["name"] for s in check_chart.by_kind(docs, "Service")]
    external_hosts = [urllib.parse.urlsplit(u).hostname for u in args.external_postgres]
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {h}\n" for h in external_hosts)
                     + "".join(
        f"127.0.0.1 {n} {n}.{NAMESPACE} {n}.{NAMESPACE}.svc {n}.{NAMESPACE}.svc.cluster.local\n"
        for n in names))
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)

    global CLAIMS
    CLAIMS = work / "standin" / "claims"
    bin_dir = Path(args.bin_dir).resolve()
    binaries = {name: str(bin_dir / name) for name in ("xiji", "xiji-proxy", "xiji-node-agent")
                if (bin_dir / name).is_file()}
    pods: list[Pod] = []
    helpers: list[subprocess.Popen] = []
    standin = None
    try:
        standin = subprocess.Popen(
            [sys.executable, str(STANDIN), "--port", "0", "--namespaces", NAMESPACE,
             "--state-dir", str(work / "standin"),
             *(["--volcano"] if merged["singleuser"]["schedulerName"] == "volcano" else []),
             *(["--bin-dir", args.singleuser_bin_dir] if args.singleuser_bin_dir else [])],
            stdout=subprocess.PIPE, stderr=open(work / "standin.log", "wb"), text=True,
            start_new_session=True)
        line = standin.stdout.readline() if standin.stdout else ""
        if not line.startswith("READY "):
            raise Failed(f"the Kubernetes stand-in did not start: {line!r} "
                         f"{(work / 'standin.log').read_text(errors='replace')[-2000:]}")
        api_url = line.split()[1]
        # The hub's requests go through a recorder, to hold them against the chart's RBAC.
        requests_log = work / "api-requests.jsonl"
        recorder = subprocess.Popen(
            [sys.executable, str(RECORDER), "--upstream", api_url, "--log", str(requests_log)],
            stdout=subprocess.PIPE, stderr=open(work / "recorder.log", "wb"), text=True,
            start_new_session=True)
        helpers.append(recorder)
        line = recorder.stdout.readline() if recorder.stdout else ""
        if not line.startswith("READY "):
            raise Failed(f"the API recorder did not start: {line!r}")
        hub_api_url = line.split()[1]
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": hub_api_url}}],
            "users": [{"name": "hub", "user": {}}],
            "contexts": [{"name": "standin", "context": {
                "cluster": "standin", "user": "hub", "namespace": NAMESPACE}}]}))

        hub_d = check_chart.one(docs, "Deployment", "hub")
        proxy_d = check_chart.one(docs, "Deployment", "proxy")
        agent_d = check_chart.one(docs, "DaemonSet", "node-agent")
        def secret_value(name: str, key: str) -> str:
            secret = next(s for s in check_chart.by_kind(docs, "Secret")
                          if s["metadata"]["name"] == name)
            return base64.b64decode(secret["data"][key]).decode()

        for url in args.external_postgres:
            pods.append(play_postgresql(work, external_postgresql(url), docs, pods,
                                        urllib.parse.urlsplit(url).port or 5432))
            print(f"ok   the campus database at {urllib.parse.urlsplit(url).hostname} runs")
        postgres_d = check_chart.one(docs, "StatefulSet", "postgresql")
        if postgres_d is not None:
            pods.append(play_postgresql(work, postgres_d, docs, pods))
            print(f"ok   {postgres_d['metadata']['name']}: initialised from its POSTGRES_* "
                  "environment, its probes pass")

        proxy_pod = Pod(work, proxy_d, docs)
        pods.append(proxy_pod)
        proxy_c = check_chart.container(proxy_d, "proxy")
        proxy_pod.start(proxy_c, binaries, {})
        hub_pod = Pod(work, hub_d, docs)
        pods.append(hub_pod)
        hub_c = check_chart.container(hub_d, "hub")
        config_mount = next(m["mountPath"] for m in hub_c["volumeMounts"]
                            if m.get("subPath") == "xiji.toml")
        hub_pod.start(hub_c, binaries, {"KUBECONFIG": str(kubeconfig)},
                      config_files=(config_mount,))
        agent_c = None
        if agent_d is not None and "xiji-node-agent" in binaries:
            agent_pod = Pod(work, agent_d, docs)
            pods.append(agent_pod)
            agent_c = check_chart.container(agent_d, "node-agent")
            agent_pod.start(agent_c, binaries, {})

        for pod, pod_d, c in ((proxy_pod, proxy_d, proxy_c), (hub_pod, hub_d, hub_c),
                              (pods[-1], agent_d, agent_c)):
            if c is None:
                continue
            env = pod.environment(c)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                wait_for(f"{pod_d['metadata']['name']} {probe}",
                         lambda c=c, probe=probe, env=env: probe_ok(c, probe, env), 90, pods)
            uids = sorted({os.stat(f"/proc/{p.pid}").st_uid for _, p, _ in pod.processes})
            print(f"ok   {pod_d['metadata']['name']}: its probes pass on its ports "
                  f"(running as uid {', '.join(map(str, uids))})")
        if agent_d is not None and agent_c is None:
            print("skip the node agent: no xiji-node-agent binary in the bin dir")

        # The hub drives the proxy through the API Service with the Secret's token.
        config = check_chart.tomllib.loads(
            next(c for c in check_chart.by_kind(docs, "ConfigMap")
                 if "xiji.toml" in c.get("data", {}))["data"]["xiji.toml"])
        api = config["proxy"]["api_url"].rstrip("/")
        token = secret_value(f"{RELEASE}-secrets", "proxy-token")

        def hub_route():
            status, body, _ = fetch(f"{api}/api/routes",
                                   headers={"Authorization": f"token {token}"})
            routes = json.loads(body) if status == 200 else {}
            return routes.get("/", {}).get("hub") is True and routes

        routes = wait_for("the hub's route in the proxy", hub_route, 60, pods)
        status, _, _ = fetch(f"{api}/api/routes", headers={"Authorization": "token wrong"})
        if status != 403:
            raise Failed(f"the proxy's API answered {status} to a wrong token")
        print(f"ok   the hub put its route into the proxy through {api} with the Secret's "
              f"token (routes: {sorted(routes)}); a wrong token gets 403")

        # A browser at the proxy's public port (where the Service and the Ingress lead).
        public = f"http://127.0.0.1:{proxy_c['ports'][0]['containerPort']}"
        status, body, _ = fetch(f"{public}/hub/api")
        if status != 200 or "version" not in json.loads(body):
            raise Failed(f"{public}/hub/api answered {status}: {body[:200]!r}")
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar),
                                             NoRedirect)
        status, _, _ = fetch(f"{public}/hub/login", opener=opener)
        # With an https public_url the cookies are Secure; the ingress terminating TLS is not
        # played, so the jar sends them over the plain hop as the browser would over https.
        for cookie in jar:
            cookie.secure = False
        xsrf = next((c.value for c in jar if c.name == "_xsrf"), "")
        if status != 200 or not xsrf:
            raise Failed(f"the login page answered {status} with no _xsrf cookie")
        admin = merged["hub"]["admin"]["username"]
        password = secret_value(merged["hub"]["admin"]["existingSecret"]
                                or f"{RELEASE}-secrets", "admin-password")
        form = urllib.parse.urlencode({"_xsrf": xsrf, "username": admin,
                                       "password": password}).encode()
        status, body, _ = fetch(f"{public}/hub/login", data=form, opener=opener)
        for cookie in jar:
            cookie.secure = False
        if status != 302:
            raise Failed(f"logging in as {admin} with the Secret's password: {status} "
                         f"{body[:300]!r}")
        status, body, _ = fetch(f"{public}/hub/api/users", opener=opener,
                               headers={"X-XSRFToken": xsrf})
        users = [u["name"] for u in json.loads(body)] if status == 200 else []
        if admin not in users:
            raise Failed(f"the administrator's user list: {status} {body[:300]!r}")
        print(f"ok   {admin} logs in through the proxy with the password of "
              f"{merged['hub']['admin']['existingSecret'] or 'the release Secret'} and lists "
              f"the users ({users})")
        # Compute nodes: the hub sees the cluster's nodes through the API it was given and
        # puts one into a pool by its name, which labels the node (singleuser.poolLabel): what
        # the ClusterRole's patch on nodes is for.
        session = {"X-XSRFToken": xsrf, "Content-Type": "application/json"}
        node_api = f"{api_url}/api/v1/nodes/node-0"
        pool_label = merged["singleuser"]["poolLabel"]

        def node_listed():
            status, body, _ = fetch(f"{public}/hub/api/compute-nodes", opener=opener,
                                    headers=session)
            names = [n["name"] for n in json.loads(body)] if status == 200 else []
            return "node-0" in names

        wait_for("node-0 on the hub's compute nodes", node_listed, 30, pods)
        # The pool clusters go to (singleuser.defaultPool), defined first unless it is the
        # hub's own "default".
        pool = merged["singleuser"]["defaultPool"] or "default"
        if pool != "default":
            status, body, _ = fetch(f"{public}/hub/api/compute-pools", opener=opener,
                                    headers=session, data=json.dumps({"name": pool}).encode())
            if status != 201:
                raise Failed(f"defining the compute pool {pool}: {status} {body[:300]!r}")
        status, body, _ = fetch(f"{public}/hub/api/compute-nodes", opener=opener,
                                headers=session, data=json.dumps(
                                    {"name": "node-0", "pool": pool}).encode())
        if status != 200:
            raise Failed(f"adding node-0 to the pool {pool}: {status} {body[:300]!r}")
        labels = json.loads(fetch(node_api)[1])["metadata"].get("labels", {})
        if labels.get(pool_label) != pool:
            raise Failed(f"node-0's labels after adding it: {labels}")
        if args.singleuser_bin_dir:
            spawn_and_stop(public, opener, session, admin, pods)
        status, body, _ = fetch(f"{public}/hub/api/compute-nodes/node-0", opener=opener,
                                headers=session, method="DELETE")
        labels = json.loads(fetch(node_api)[1])["metadata"].get("labels", {})
        if status != 204 or pool_label in labels:
            raise Failed(f"removing node-0: {status} {body[:300]!r}, labels {labels}")
        print(f"ok   the hub lists the cluster's nodes, adds node-0 to a pool by its name "
              f"(label {pool_label}={pool} on the node) and takes it out again")
        if agent_c is not None:
            # The agent holds the hub's token: a request with it reaches the API (404 for a
            # save that does not exist), one without is refused.
            port = agent_c["ports"][0]["hostPort"]
            agent_token = secret_value(f"{RELEASE}-secrets", "agent-token")
            with_token, _, _ = fetch(f"http://127.0.0.1:{port}/v1/saves/none",
                                     headers={"Authorization": f"Bearer {agent_token}"})
            without, _, _ = fetch(f"http://127.0.0.1:{port}/v1/saves/none")
            if (with_token, without) != (404, 401):
                raise Failed(f"the node agent answered {with_token} with the hub's token and "
                             f"{without} without (expected 404 and 401)")
            print(f"ok   the node agent on hostPort {port} takes the hub's token from the "
                  "shared Secret and refuses requests without it")
        # Everything the hub asked of the Kubernetes API, held against the chart's RBAC as the
        # API server's authorizer would (the stand-in itself authorises nothing).
        account = check_chart.pod_spec(hub_d).get("serviceAccountName", "default")
        asked, denied = set(), set()
        for entry in requests_log.read_text().splitlines():
            request = json.loads(entry)
            attrs = check_chart.request_attributes(request["method"], request["path"],
                                                   request["query"])
            if attrs is None:
                continue
            what = (attrs["verb"], attrs["group"] or "core", attrs["resource"],
                    attrs["namespace"] or "-")
            asked.add(what)
            if not check_chart.authorized(docs, account, NAMESPACE, attrs):
                denied.add(what)
        if not asked:
            raise Failed("the hub made no Kubernetes API request through the recorder")
        if denied:
            raise Failed(f"the chart's RBAC would refuse the hub's requests {sorted(denied)}")
        print(f"ok   the chart's Role and ClusterRole allow every request the hub made "
              f"({', '.join(f'{v} {r}' for v, _, r, _ in sorted(asked))})")
        print("ok   the chart's hub, proxy" + (" and node agent" if agent_c else "")
              + " run as their pod specs say")
        return 0
    except (Failed, OSError, ValueError, KeyError, StopIteration,
            subprocess.SubprocessError) as e:
        print(f"FAIL {type(e).__name__}: {e} {getattr(e, 'stderr', '') or ''}")
        for pod in pods:
            print(pod.logs())
        return 1
    finally:
        for pod in pods:
            pod.stop()
        for helper in helpers:
            helper.terminate()
            try:
                helper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                helper.kill()
        if standin is not None:
            standin.terminate()
            try:
                standin.wait(timeout=10)
            except subprocess.TimeoutExpired:
                standin.kill()
        if not os.environ.get("XIJI_TEST_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chart", required=True)
    parser.add_argument("--bin-dir", required=True, help="where xiji, xiji-proxy (and "
                        "xiji-node-agent) are")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--set-json", action="append", default=[])
    parser.add_argument("--operator-secret", action="append", default=[],
                        metavar="NAME:KEY=VALUE", help="a Secret the operator made beforehand")
    parser.add_argument("--external-postgres", action="append", default=[], metavar="URL",
                        help="run a PostgreSQL server as the database at URL (its host "
                        "resolves to loopback)")
    parser.add_argument("--singleuser-bin-dir", default="",
                        help="a folder with jupyterhub-singleuser: start and stop the "
                        "administrator's server too (values must make its command run as root: "
                        "singleuser.cmd with --allow-root)")
    args = parser.parse_args()
    if os.environ.get(INNER) == "1":
        return inner(args)
    if os.geteuid() != 0:
        print("skip running the chart: needs root for its network and mount namespaces")
        return 0
    # Private network and mount namespaces: the pods' fixed ports and the cluster's names
    # touch nothing outside; everything started in them ends with them.
    return subprocess.run(
        ["unshare", "--mount", "--net", "--fork", "--kill-child", sys.executable,
         os.path.abspath(__file__), *sys.argv[1:]],
        env={**os.environ, INNER: "1"}, timeout=600, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
