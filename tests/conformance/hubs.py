"""Starting and stopping the two hubs the conformance and benchmark scripts compare.

Standard library only. Every wait is bounded; every process is started in its own session and
stopped by its own id (then its process group), never by name.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(f"[conformance] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_path(var: str, default_rel: str) -> Path:
    """A path from an environment variable, else from <repo>/.cache (setup-env.sh's layout)."""
    value = os.environ.get(var)
    path = Path(value) if value else REPO / default_rel
    return path


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise SystemExit(
            f"{what} not found at {path}; run tests/setup-env.sh and source .cache/test-env.sh"
        )
    return path


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None


def http_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Response:
    """One request on a fresh connection; the path is sent exactly as given (no normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        elif method in ("POST", "PUT", "PATCH", "DELETE"):
            hdrs.setdefault("Content-Length", "0")
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body is not None:
            conn.send(body)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    except (OSError, http.client.HTTPException) as e:
        return Response(0, {"x-error": f"{type(e).__name__}: {e}"}, b"")
    finally:
        conn.close()


def wait_ready(port: int, proc: subprocess.Popen, timeout: float, what: str) -> float:
    """Polls GET /hub/api/ until 200; returns the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before answering")
        r = http_request(port, "GET", "/hub/api/", timeout=2)
        if r.status == 200:
            return time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer 200 on /hub/api/ within {timeout:.0f} s")


def _kill_group(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def kill_strays(root: Path) -> None:
    """Kills processes whose working directory lies under `root` (servers our hubs started in
    their own sessions, if a hub failed to stop them)."""
    root_s = str(root.resolve())
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == root_s or cwd.startswith(root_s + "/"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


def vm_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# Extra services and roles both hubs get from their configuration, so RBAC filters that only
# roles from config can express (`!group=`, `!server=`, services with limited scopes) are compared.
MONITOR_TOKEN = "monitor-token-0123456789abcdef0123456789"
EXTRA_SERVICES = [
    {"name": "monitor", "api_token": MONITOR_TOKEN},
]
EXTRA_ROLES = [
    {
        "name": "monitor-role",
        "description": "reads bob, group g1 and one of alice's servers",
        "scopes": [
            "list:users!user=bob",
            "read:users!user=bob",
            "read:servers!server=alice/nb1",
            "list:groups!group=g1",
            "read:groups!group=g1",
            "read:services",
        ],
        "services": ["monitor"],
    },
    {
        "name": "teaching-assistant",
        "description": "manages the servers of group class1",
        "scopes": [
            "list:users!group=class1",
            "read:users!group=class1",
            "servers!group=class1",
            "read:groups!group=class1",
        ],
        "users": ["ta"],
    },
]


def jupyterhub_extra_config() -> str:
    return (
        f"c.JupyterHub.services += {EXTRA_SERVICES!r}\n"
        f"c.JupyterHub.load_roles = {EXTRA_ROLES!r}\n"
    )


def xiji_extra_toml() -> str:
    lines = []
    for svc in EXTRA_SERVICES:
        lines += ["[[services]]", f"name = {json.dumps(svc['name'])}",
                  f"api_token = {json.dumps(svc['api_token'])}"]
    for role in EXTRA_ROLES:
        lines += ["[[roles]]"]
        for key in ("name", "description", "scopes", "users", "services", "groups"):
            if key in role:
                lines.append(f"{key} = {json.dumps(role[key])}")
    return "\n".join(lines) + "\n"


class Hub:
    """A running hub: name, public port, admin service token, process, working dir."""

    name = "hub"

    def __init__(self, workdir: Path, service_token: str):
        self.workdir = workdir
        self.service_token = service_token
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "hub.log"
        self.startup_seconds: float | None = None

    def request(self, method, path, headers=None, body=None, timeout=30.0) -> Response:
        return http_request(self.port, method, path, headers, body, timeout)

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> None:
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, timeout: float = 60.0) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc, grace=20.0)
        kill_strays(self.workdir)
        if getattr(self, "log_file", None):
            self.log_file.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


JUPYTERHUB_CONFIG = """
import os
c = get_config()  # noqa
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{proxy_api_port}'
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = {cookie_secret!r}
c.JupyterHub.pid_file = {pid_file!r}
c.JupyterHub.authenticator_class = 'dummy'
c.DummyAuthenticator.password = {admin_password!r}
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{'admin'}}
c.JupyterHub.spawner_class = 'simple'
c.SimpleLocalProcessSpawner.home_dir_template = {home_template!r}
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 60
c.JupyterHub.allow_named_servers = True
c.JupyterHub.services = [
    {{'name': 'ci', 'api_token': {service_token!r}, 'admin': True}},
]
c.JupyterHub.log_level = 'INFO'
c.JupyterHub.last_activity_interval = 300
"""


class JupyterHub(Hub):
    """The real JupyterHub from a venv, with its own configurable-http-proxy."""

    name = "jupyterhub"

    def __init__(self, workdir: Path, service_token: str, venv: Path, node_modules: Path,
                 extra_config: str = "", db_url: str | None = None):
        super().__init__(workdir, service_token)
        self.venv = venv
        self.node_modules = node_modules
        self.extra_config = extra_config
        self.db_url = db_url or f"sqlite:///{workdir / 'jupyterhub.sqlite'}"

    def write_config(self) -> Path:
        cfg = JUPYTERHUB_CONFIG.format(
            port=self.port,
            hub_port=free_port(),
            proxy_api_port=free_port(),
            db_url=self.db_url,
            cookie_secret=str(self.workdir / "cookie_secret"),
            pid_file=str(self.workdir / "jupyterhub.pid"),
            admin_password="conformance-password",
            home_template=str(self.workdir / "home" / "{username}"),
            singleuser=str(self.venv / "bin" / "jupyterhub-singleuser"),
            args=["--allow-root"] if os.geteuid() == 0 else [],
            service_token=self.service_token,
        ) + jupyterhub_extra_config() + self.extra_config
        path = self.workdir / "jupyterhub_config.py"
        path.write_text(cfg)
        return path

    def start(self, timeout: float = 90.0) -> None:
        cfg = self.write_config()
        env = dict(os.environ)
        env["PATH"] = f"{self.node_modules / '.bin'}:{self.venv / 'bin'}:{env.get('PATH', '')}"
        env.pop("JUPYTERHUB_API_TOKEN", None)
        started = time.monotonic()
        self._spawn([str(self.venv / "bin" / "jupyterhub"), "-f", str(cfg)], env)
        assert self.proc is not None
        wait_ready(self.port, self.proc, timeout, "JupyterHub")
        self.startup_seconds = time.monotonic() - started


class Xiji(Hub):
    """The xiji binary."""

    name = "xiji"

    def __init__(self, workdir: Path, service_token: str, binary: Path, venv: Path,
                 extra_toml: str = "", database_url: str | None = None):
        super().__init__(workdir, service_token)
        self.binary = binary
        self.venv = venv
        self.extra_toml = extra_toml
        self.database_url = database_url

    def write_config(self) -> Path:
        args = ["--allow-root"] if os.geteuid() == 0 else []
        lines = [
            f'bind = "127.0.0.1:{self.port}"',
            f"data_dir = {json.dumps(str(self.workdir / 'data'))}",
        ]
        if self.database_url:
            lines.append(f"database_url = {json.dumps(self.database_url)}")
        lines += [
            "allow_named_servers = true",
            self.extra_toml,
            "[admin]",
            'username = "admin"',
            'password = "conformance-password"',
            "[spawner.local]",
            f"cmd = [{json.dumps(str(self.venv / 'bin' / 'jupyterhub-singleuser'))}]",
            f"args = {json.dumps(args)}",
            "[[services]]",
            'name = "ci"',
            f"api_token = {json.dumps(self.service_token)}",
            "admin = true",
            xiji_extra_toml(),
        ]
        path = self.workdir / "xiji.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 60.0) -> None:
        cfg = self.write_config()
        env = dict(os.environ)
        env.setdefault("XIJI_LOG", "info")
        for k in ("XIJI_BIND", "XIJI_DATA_DIR", "XIJI_DATABASE_URL", "JUPYTERHUB_API_TOKEN"):
            env.pop(k, None)
        started = time.monotonic()
        self._spawn([str(self.binary), "--config", str(cfg)], env)
        assert self.proc is not None
        wait_ready(self.port, self.proc, timeout, "xiji")
        self.startup_seconds = time.monotonic() - started


def new_workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove_workdir(path: Path) -> None:
    kill_strays(path)
    shutil.rmtree(path, ignore_errors=True)


def serve_main(argv: list[str] | None = None) -> int:
    """`python hubs.py serve {xiji|jupyterhub} --ready-file F`: starts one hub with a fresh admin
    service token, writes `PORT TOKEN` into F once it answers, and runs until SIGTERM/SIGINT."""
    import argparse
    import uuid

    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["serve"])
    ap.add_argument("which", choices=["xiji", "jupyterhub"])
    ap.add_argument("--ready-file", type=Path, required=True)
    ap.add_argument("--extra-toml", default="", help="top-level TOML keys for xiji")
    ap.add_argument("--database-url", default=None, help="xiji's database (default: SQLite)")
    args = ap.parse_args(argv)

    venv5 = require(env_path("XIJI_TEST_VENV5", ".cache/venv5"), "venv5")
    wd = new_workdir(f"xiji-serve-{args.which}-")
    token = uuid.uuid4().hex
    if args.which == "jupyterhub":
        node_modules = env_path("XIJI_TEST_NODE_MODULES", ".cache/node/node_modules")
        hub: Hub = JupyterHub(wd, token, venv5, node_modules)
    else:
        binary = require(env_path("XIJI_BIN", "target/debug/xiji"), "the xiji binary")
        hub = Xiji(wd, token, binary, venv5, extra_toml=args.extra_toml,
                   database_url=args.database_url)

    stopping = {"flag": False}

    def on_signal(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        hub.start()
        args.ready_file.write_text(f"{hub.port} {token} {hub.log_path}\n")
        log(f"{hub.name} ready on 127.0.0.1:{hub.port} (log {hub.log_path})")
        while not stopping["flag"] and hub.proc is not None and hub.proc.poll() is None:
            time.sleep(0.2)
        if hub.proc is not None and hub.proc.poll() is not None:
            log(f"{hub.name} exited with {hub.proc.returncode}\n{hub.log_tail()}")
            return 1
        return 0
    except Exception as e:  # noqa: BLE001
        log(f"{hub.name} failed to start: {e}\n{hub.log_tail()}")
        return 1
    finally:
        hub.stop()
        remove_workdir(wd)


if __name__ == "__main__":
    sys.exit(serve_main())
