//! The `local` backend: each server is a `jupyterhub-singleuser` child process on this machine,
//! running as the hub's own OS user, like JupyterHub's `LocalProcessSpawner` without the user
//! switching.
//!
//! - Each server runs in its own process group, with cwd (and by default `HOME`)
//!   `{work_root}/{user}` (mode 0700), and writes stdout/stderr to a log file in `log_dir`, never
//!   to a pipe: the server outlives a hub crash and is re-adopted from its state blob.
//! - State blob: `{"pid", "pgid", "port", "ip", "url", "start_time"}`; `start_time` (field 22 of
//!   `/proc/<pid>/stat`) tells the server from an unrelated process that reused its pid.
//! - The spawn's read-only folders ([`SpawnSpec::mounts`], e.g. datasets) become symbolic links
//!   `{work dir}/{relative}` → source, made at each start (folders above them created, a stale
//!   link replaced); links left in `{work dir}/datasets/{owner}/{name}` by earlier starts that
//!   this one does not ask for are removed. **A link does not make the files read-only**: the
//!   server runs as the hub's own OS user, who owns the hub's files (a dataset's among them), so
//!   nothing stops it from writing through the link. The backend is for one trusted user on
//!   their own machine; read-only datasets need a container backend (`docker`).
//! - Linux only (`/proc`).

mod host;
mod process;
mod python_env;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::paths::path_component;
use crate::{
    Capabilities, Capacity, ClusterResources, NodeUsage, ProgressEvent, ProgressSender, SpawnSpec,
    Spawner, SpawnerError, Started,
};

/// Variables copied from the hub's environment by default, as JupyterHub's
/// `LocalProcessSpawner.env_keep` (plus `SHELL` for terminals and `TZ`).
pub const DEFAULT_ENV_KEEP: &[&str] = &[
    "PATH",
    "PYTHONPATH",
    "CONDA_ROOT",
    "CONDA_DEFAULT_ENV",
    "VIRTUAL_ENV",
    "LANG",
    "LC_ALL",
    "SHELL",
    "TZ",
    "JUPYTERHUB_SINGLEUSER_APP",
];

/// How often `stop` looks whether the server's processes are gone.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// How long `stop` waits after SIGKILL before reporting failure.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Configuration of the [`LocalSpawner`].
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// The single-user command, e.g. `[".../venv/bin/jupyterhub-singleuser"]`. A program without
    /// a `/` is looked up in the server's `PATH`.
    pub cmd: Vec<String>,
    /// Extra arguments after `cmd` (`--allow-root` is added when the hub runs as root).
    pub args: Vec<String>,
    /// Address the servers bind to; default `127.0.0.1`.
    pub ip: IpAddr,
    /// Each user's server runs with cwd `{work_root}/{user}`, created with mode 0700.
    pub work_root: PathBuf,
    /// Servers' stdout/stderr go to `{log_dir}/{user}.log` (`{user}@{server}.log` for named
    /// servers), appended to across restarts.
    pub log_dir: PathBuf,
    /// Variables copied from the hub's environment when set; default [`DEFAULT_ENV_KEEP`].
    pub env_keep: Vec<String>,
    /// Extra variables, applied after `env_keep` and the hub's `JUPYTERHUB_*` variables (as
    /// JupyterHub's `Spawner.environment`); only `JUPYTERHUB_SERVICE_URL` cannot be overridden.
    pub environment: BTreeMap<String, String>,
    /// Set `HOME` to the user's working directory, so users do not share `~/.jupyter`,
    /// `~/.local` and kernels' runtime files; default true.
    pub home_is_work_dir: bool,
    /// `start` watches the new process this long and fails (with the log's end) if it exits at
    /// once, e.g. on a bad argument; default 200 ms. The singleuser needs longer than that to
    /// answer HTTP, so this costs no latency.
    pub early_exit_window: Duration,
}

impl LocalConfig {
    /// A configuration with the defaults above.
    pub fn new(cmd: Vec<String>, work_root: PathBuf, log_dir: PathBuf) -> Self {
        Self {
            cmd,
            args: Vec::new(),
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            work_root,
            log_dir,
            env_keep: DEFAULT_ENV_KEEP.iter().map(|s| (*s).to_owned()).collect(),
            environment: BTreeMap::new(),
            home_is_work_dir: true,
            early_exit_window: Duration::from_millis(200),
        }
    }
}

/// The state blob of a local server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LocalState {
    pid: u32,
    pgid: u32,
    port: u16,
    ip: String,
    url: String,
    start_time: u64,
}

impl LocalState {
    /// `Ok(None)` for an empty state (never started); an error for a blob this backend did not
    /// write.
    fn from_blob(state: &serde_json::Value) -> Result<Option<Self>, SpawnerError> {
        let Some(parsed) = crate::state_blob::parse::<Self>(state)? else {
            return Ok(None);
        };
        // pid 0 or 1 would make killpg signal the hub's own group or init.
        if parsed.pid <= 1 || parsed.pgid <= 1 {
            return Err(SpawnerError::InvalidState(format!(
                "impossible pid {} / pgid {}",
                parsed.pid, parsed.pgid
            )));
        }
        Ok(Some(parsed))
    }
}

/// A child this hub process started: its exit status arrives through `exit` as soon as it is
/// reaped, so no zombies accumulate.
struct ChildRecord {
    start_time: u64,
    exit: watch::Receiver<Option<i32>>,
}

/// Runs single-user servers as local processes. See the [module docs](self).
pub struct LocalSpawner {
    cfg: LocalConfig,
    /// Children started by this instance, by pid. Empty after a hub restart: `poll`/`stop` then
    /// rely on `/proc` alone.
    children: Arc<Mutex<HashMap<u32, ChildRecord>>>,
    /// The process table of the last `node_usage`, reused for a second: a checkpoint asks for
    /// every server in a row, and one pass over `/proc` serves them all.
    cpu_table: Mutex<Option<(Instant, Arc<process::GroupTable>)>>,
}

impl LocalSpawner {
    /// The process table by group, read again when the last is more than a second old.
    fn cpu_table(&self) -> Arc<process::GroupTable> {
        let mut cached = self
            .cpu_table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((at, table)) = cached.as_ref() {
            if at.elapsed() < Duration::from_secs(1) {
                return Arc::clone(table);
            }
        }
        let table = Arc::new(process::cpu_by_group());
        *cached = Some((Instant::now(), Arc::clone(&table)));
        table
    }

    /// A spawner with configuration `cfg`.
    pub fn new(cfg: LocalConfig) -> Self {
        Self {
            cfg,
            children: Arc::default(),
            cpu_table: Mutex::new(None),
        }
    }

    /// Creates (if missing) a Python virtualenv at `venv` with `packages` (e.g.
    /// `["jupyterhub", "jupyterlab"]`) using `{python} -m venv` and pip, and returns the path of
    /// its `jupyterhub-singleuser`.
    ///
    /// Idempotent and fast when the venv was already installed with the same package list (a
    /// marker file records it); a changed list reruns `pip install` in the existing venv.
    /// Concurrent callers (threads or processes) are serialised by a lock file `<venv>.lock`.
    /// pip honours the usual `PIP_*` variables (index, `PIP_FIND_LINKS`, proxy).
    pub async fn ensure_python_env(
        venv: &Path,
        python: &str,
        packages: &[String],
    ) -> Result<PathBuf, SpawnerError> {
        python_env::ensure(venv, python, packages).await
    }

    /// Turns JupyterLab's "get notified about Jupyter news?" prompt and its update check off
    /// in an existing venv (its `share/jupyter/lab/settings/overrides.json`; settings already
    /// there win). [`ensure_python_env`](Self::ensure_python_env) does it too.
    pub async fn ensure_lab_overrides(venv: &Path) -> Result<(), SpawnerError> {
        python_env::write_lab_overrides(venv).await
    }

    fn children(&self) -> MutexGuard<'_, HashMap<u32, ChildRecord>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The exit status of a child of ours, if it has exited; `None` if it runs or is not ours.
    fn own_child_exit(&self, state: &LocalState) -> Option<ChildExit> {
        let children = self.children();
        let record = children.get(&state.pid)?;
        if record.start_time != state.start_time {
            return None;
        }
        let status = *record.exit.borrow();
        Some(match status {
            Some(code) => ChildExit::Exited(code),
            None => ChildExit::Running,
        })
    }

    fn forget_child(&self, pid: u32) {
        self.children().remove(&pid);
    }

    /// Everything `start` does before launching: directories, port, environment, log file.
    fn prepare(&self, spec: &SpawnSpec) -> Result<Prepared, SpawnerError> {
        if !spec.secret_files.is_empty() {
            // Local servers share the host's file system with every other user's: there is no
            // place only this server can read.
            return Err(SpawnerError::InvalidSpec(
                "the local backend cannot give a server secret files (desktop images need the \
                 docker backend)"
                    .into(),
            ));
        }
        let program = self
            .cfg
            .cmd
            .first()
            .ok_or_else(|| SpawnerError::Config("the single-user command is empty".into()))?
            .clone();
        let user_dir = path_component(&spec.user)
            .ok_or_else(|| SpawnerError::InvalidSpec("the user name is empty".into()))?;
        let work_dir = match &spec.work_dir {
            Some(dir) if dir.is_absolute() => dir.clone(),
            Some(dir) => {
                return Err(SpawnerError::Config(format!(
                    "the work directory {} must be an absolute path",
                    dir.display()
                )))
            }
            None => self.cfg.work_root.join(&user_dir),
        };
        let parent = work_dir.parent().unwrap_or(&self.cfg.work_root);
        crate::check_mounts(&spec.mounts)?;
        create_private_dir(parent, &work_dir)?;
        link_mounts(&work_dir, &spec.mounts)?;

        let port = free_port(self.cfg.ip)?;
        let service_url = format!(
            "http://{}{}",
            host_port(self.cfg.ip, port),
            spec.service_prefix
        );
        let connect_ip = if self.cfg.ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            self.cfg.ip
        };
        let url = format!("http://{}", host_port(connect_ip, port));

        let log_file = self
            .cfg
            .log_dir
            .join(log_file_name(&user_dir, &spec.server_name));
        std::fs::create_dir_all(&self.cfg.log_dir).map_err(|e| {
            SpawnerError::io(
                format!("creating log directory {}", self.cfg.log_dir.display()),
                e,
            )
        })?;
        let log = open_log(&log_file, &spec.user, &spec.server_name, port)?;

        let env = self.server_env(spec, &program, &work_dir, &service_url);
        let mut args: Vec<String> = self.cfg.cmd[1..].to_vec();
        args.extend(self.cfg.args.iter().cloned());
        if nix::unistd::geteuid().is_root() {
            // jupyter-server refuses to run as root without it.
            args.push("--allow-root".into());
        }
        Ok(Prepared {
            program,
            args,
            env,
            work_dir,
            log,
            log_file,
            port,
            url,
        })
    }

    /// The server's whole environment (the child does not inherit the hub's).
    fn server_env(
        &self,
        spec: &SpawnSpec,
        program: &str,
        work_dir: &Path,
        service_url: &str,
    ) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self
            .cfg
            .env_keep
            .iter()
            .filter_map(|key| Some((key.clone(), std::env::var(key).ok()?)))
            .collect();
        // Put the venv's bin first, so `python`/`pip` in the user's terminals and the kernel are
        // the ones that came with the server.
        if let Some(bin) = Path::new(program).parent().filter(|p| p.is_absolute()) {
            let bin = bin.display().to_string();
            let path = match env.get("PATH") {
                Some(path) if !path.is_empty() => format!("{bin}:{path}"),
                _ => bin,
            };
            env.insert("PATH".into(), path);
        }
        if self.cfg.home_is_work_dir {
            env.insert("HOME".into(), work_dir.display().to_string());
        }
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(token) = spec.env.get("JUPYTERHUB_API_TOKEN") {
            env.insert("JPY_API_TOKEN".into(), token.clone());
        }
        env.extend(
            self.cfg
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        env.insert("JUPYTERHUB_SERVICE_URL".into(), service_url.to_owned());
        env
    }

    /// Kills whatever is left of a server that failed to start, and forgets it.
    async fn discard(&self, pid: u32, start_time: u64) {
        if let Err(e) = process::signal_group(pid, start_time, Signal::SIGKILL) {
            tracing::warn!(pid, error = %e, "cannot kill the remains of a failed start");
        }
        let deadline = Instant::now() + KILL_WAIT;
        while !process::group_is_gone(pid, start_time) && Instant::now() < deadline {
            tokio::time::sleep(STOP_CHECK_INTERVAL).await;
        }
        self.forget_child(pid);
    }

    /// Waits until nothing of the server is left, or `deadline`; true if it is gone.
    async fn wait_gone(&self, state: &LocalState, deadline: Instant) -> bool {
        loop {
            if process::group_is_gone(state.pgid, state.start_time) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(STOP_CHECK_INTERVAL).await;
        }
    }
}

enum ChildExit {
    Running,
    Exited(i32),
}

/// What `prepare` produced for one launch.
struct Prepared {
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    work_dir: PathBuf,
    log: std::fs::File,
    log_file: PathBuf,
    port: u16,
    url: String,
}

#[async_trait::async_trait]
impl Spawner for LocalSpawner {
    fn backend_name(&self) -> &'static str {
        "local"
    }

    fn default_work_dir(&self, user: &str) -> Option<PathBuf> {
        path_component(user).map(|c| self.cfg.work_root.join(c))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            runs_on_hub_host: true,
            ..Capabilities::default()
        }
    }

    async fn start(
        &self,
        spec: &SpawnSpec,
        progress: ProgressSender,
    ) -> Result<Started, SpawnerError> {
        let span = tracing::info_span!(
            "local_start",
            user.name = %spec.user,
            server.name = %spec.server_name,
            pid = tracing::field::Empty,
        );
        async move {
            let report = |percent: u8, message: String| {
                // The hub may have stopped listening (client went away); the spawn goes on.
                let _ = progress.send(ProgressEvent::new(percent, message));
            };
            if spec.resources != ClusterResources::single_node() {
                tracing::debug!("the local backend runs one node without limits; sizes ignored");
            }
            report(10, "Preparing the working directory".into());
            let prepared = self.prepare(spec)?;

            report(30, format!("Starting {}", program_name(&prepared.program)));
            let stderr_log = prepared
                .log
                .try_clone()
                .map_err(|e| SpawnerError::io("duplicating the log file handle", e))?;
            let mut child = tokio::process::Command::new(&prepared.program)
                .args(&prepared.args)
                .current_dir(&prepared.work_dir)
                .env_clear()
                .envs(&prepared.env)
                .stdin(Stdio::null())
                .stdout(prepared.log)
                .stderr(stderr_log)
                // Own process group: a signal to the hub's group (Ctrl-C, systemd stop) does not
                // reach the server, and `stop` can signal the server with its subprocesses.
                .process_group(0)
                .kill_on_drop(false)
                .spawn()
                .map_err(|source| SpawnerError::Launch {
                    command: prepared.program.clone(),
                    source,
                })?;

            let Some(pid) = child.id() else {
                return Err(SpawnerError::Launch {
                    command: prepared.program.clone(),
                    source: std::io::Error::other("the process vanished before it had a pid"),
                });
            };
            tracing::Span::current().record("pid", pid);
            // Not yet reaped (nobody waited), so /proc/<pid> exists even if it already exited.
            let Some(start_time) = process::read_stat(pid).map(|s| s.start_time) else {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(SpawnerError::Launch {
                    command: prepared.program.clone(),
                    source: std::io::Error::other(format!("cannot read /proc/{pid}/stat")),
                });
            };

            let (exit_tx, mut exit_rx) = watch::channel(None);
            self.children().insert(
                pid,
                ChildRecord {
                    start_time,
                    exit: exit_rx.clone(),
                },
            );
            tokio::spawn(async move {
                let status = match child.wait().await {
                    Ok(status) => status
                        .code()
                        .or_else(|| status.signal().map(|signal| 128 + signal))
                        .unwrap_or(0),
                    Err(_) => 0,
                };
                let _ = exit_tx.send(Some(status));
            });

            let early_exit = tokio::time::timeout(self.cfg.early_exit_window, async {
                exit_rx.wait_for(Option::is_some).await.map(|status| *status)
            })
            .await;
            if let Ok(Ok(status)) = early_exit {
                let status = status.unwrap_or(0);
                self.discard(pid, start_time).await;
                let log_tail = tokio::fs::read_to_string(&prepared.log_file)
                    .await
                    .map(|text| python_env::last_lines(&text, 15))
                    .unwrap_or_default();
                return Err(SpawnerError::ExitedEarly {
                    status,
                    log_file: prepared.log_file,
                    log_tail,
                });
            }

            let state = LocalState {
                pid,
                pgid: pid,
                port: prepared.port,
                ip: self.cfg.ip.to_string(),
                url: prepared.url.clone(),
                start_time,
            };
            let state = match serde_json::to_value(&state) {
                Ok(state) => state,
                Err(e) => {
                    self.discard(pid, start_time).await;
                    return Err(SpawnerError::InvalidState(e.to_string()));
                }
            };
            tracing::info!(url = %prepared.url, log = %prepared.log_file.display(), "server process started");
            report(
                60,
                format!("Server process started (pid {pid}), waiting for it to respond"),
            );
            Ok(Started {
                url: prepared.url,
                state,
                nodes: Vec::new(),
            })
        }
        .instrument(span)
        .await
    }

    fn capacity(&self) -> Capacity {
        Capacity {
            nodes: None,
            cpu_millis: crate::host_cpu_millis(),
            memory_mib: crate::host_memory_mib(),
            gpus: Some(0),
        }
    }

    async fn compute_nodes(&self) -> Result<Vec<crate::ComputeNode>, SpawnerError> {
        let running = self
            .children()
            .values()
            .filter(|c| c.exit.borrow().is_none())
            .count();
        Ok(vec![host::host_node(
            u32::try_from(running).unwrap_or(u32::MAX),
        )])
    }

    async fn node_usage(&self, state: &serde_json::Value) -> Result<Vec<NodeUsage>, SpawnerError> {
        let Some(state) = LocalState::from_blob(state)? else {
            return Ok(Vec::new());
        };
        // A process that is gone leaves no stop time behind: the hub keeps what it metered.
        if !process::is_alive(state.pid, state.start_time) {
            return Ok(Vec::new());
        }
        Ok(vec![NodeUsage {
            index: 0,
            running: true,
            started_at: process::started_at_micros(state.start_time),
            finished_at: None,
            cpu_ns: Some(process::group_cpu_ns(
                &self.cpu_table(),
                state.pgid,
                state.start_time,
            )),
        }])
    }

    async fn poll(&self, state: &serde_json::Value) -> Result<Option<i32>, SpawnerError> {
        let Some(state) = LocalState::from_blob(state)? else {
            return Ok(Some(0));
        };
        match self.own_child_exit(&state) {
            Some(ChildExit::Exited(status)) => {
                tracing::debug!(pid = state.pid, status, "server has exited");
                return Ok(Some(status));
            }
            Some(ChildExit::Running) if process::is_alive(state.pid, state.start_time) => {
                return Ok(None);
            }
            // Not ours (hub restarted), or its waiter is being torn down: ask /proc.
            _ => {}
        }
        if process::is_alive(state.pid, state.start_time) {
            Ok(None)
        } else {
            tracing::debug!(pid = state.pid, "server is gone");
            Ok(Some(0))
        }
    }

    async fn stop(&self, state: &serde_json::Value, grace: Duration) -> Result<(), SpawnerError> {
        let Some(state) = LocalState::from_blob(state)? else {
            return Ok(());
        };
        let span = tracing::info_span!("local_stop", pid = state.pid);
        async move {
            // Every server this backend starts leads its own process group. A state saying
            // otherwise was not written by it; signalling its group could hit the hub's own.
            if state.pgid != state.pid {
                tracing::warn!(
                    pgid = state.pgid,
                    "state's process group is not the server's own; nothing signalled"
                );
                return Ok(());
            }
            if process::group_is_gone(state.pgid, state.start_time) {
                self.forget_child(state.pid);
                return Ok(());
            }
            process::signal_group(state.pgid, state.start_time, Signal::SIGTERM)?;
            if self.wait_gone(&state, Instant::now() + grace).await {
                tracing::info!("server stopped");
                self.forget_child(state.pid);
                return Ok(());
            }
            tracing::warn!(
                grace_s = grace.as_secs_f64(),
                "server ignored SIGTERM; sending SIGKILL"
            );
            let deadline = Instant::now() + KILL_WAIT;
            // Repeat: a member may have forked between the scan and the signal.
            while !process::group_is_gone(state.pgid, state.start_time) {
                if Instant::now() >= deadline {
                    return Err(SpawnerError::StopTimeout { pgid: state.pgid });
                }
                process::signal_group(state.pgid, state.start_time, Signal::SIGKILL)?;
                tokio::time::sleep(STOP_CHECK_INTERVAL).await;
            }
            self.forget_child(state.pid);
            Ok(())
        }
        .instrument(span)
        .await
    }

    fn url_from_state(&self, state: &serde_json::Value) -> Option<String> {
        state.get("url")?.as_str().map(str::to_owned)
    }
}

/// `{user}.log`, or `{user}@{server}.log` for a named server (`@` is escaped in components).
fn log_file_name(user_component: &str, server_name: &str) -> String {
    match path_component(server_name) {
        None => format!("{user_component}.log"),
        Some(server) => format!("{user_component}@{server}.log"),
    }
}

/// Creates `work_root` if needed and `dir` with mode 0700 (tightened if it already exists).
fn create_private_dir(work_root: &Path, dir: &Path) -> Result<(), SpawnerError> {
    std::fs::create_dir_all(work_root)
        .map_err(|e| SpawnerError::io(format!("creating {}", work_root.display()), e))?;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| SpawnerError::io(format!("setting mode 0700 on {}", dir.display()), e))
        }
        Err(e) => Err(SpawnerError::io(format!("creating {}", dir.display()), e)),
    }
}

/// The folder of the work directory whose `{owner}/{name}` links earlier starts left (the
/// hub's datasets).
const DATASETS_FOLDER: &str = "datasets";

/// Links every mount at `{work_dir}/{relative}` → its source, and removes the links of
/// `{work_dir}/datasets/*/*` no mount asks for now (with an owner folder they leave empty).
/// Only links are ever removed (and empty folders where a link is due); anything else in the
/// way is an error that names it.
fn link_mounts(work_dir: &Path, mounts: &[crate::Mount]) -> Result<(), SpawnerError> {
    let wanted: Vec<PathBuf> = mounts.iter().map(|m| work_dir.join(&m.relative)).collect();
    remove_stale_links(&work_dir.join(DATASETS_FOLDER), &wanted)?;
    for (mount, link) in mounts.iter().zip(&wanted) {
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| SpawnerError::io(format!("creating {}", parent.display()), e))?;
        }
        match std::fs::symlink_metadata(link) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if std::fs::read_link(link).is_ok_and(|to| to == mount.source) {
                    continue;
                }
                std::fs::remove_file(link).map_err(|e| {
                    SpawnerError::io(format!("replacing the stale link {}", link.display()), e)
                })?;
            }
            Ok(meta) if meta.is_dir() => {
                // An empty folder in the way (left by hand) is taken; one with files is not.
                std::fs::remove_dir(link).map_err(|_| {
                    SpawnerError::InvalidSpec(format!(
                        "{} is a folder with files in it, where {} is to be linked: move it away",
                        link.display(),
                        mount.source.display()
                    ))
                })?;
            }
            Ok(_) => {
                return Err(SpawnerError::InvalidSpec(format!(
                    "{} is a file, where {} is to be linked: move it away",
                    link.display(),
                    mount.source.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpawnerError::io(format!("reading {}", link.display()), e)),
        }
        std::os::unix::fs::symlink(&mount.source, link).map_err(|e| {
            SpawnerError::io(
                format!("linking {} to {}", link.display(), mount.source.display()),
                e,
            )
        })?;
        tracing::debug!(link = %link.display(), source = %mount.source.display(), "mount linked");
    }
    Ok(())
}

/// Removes the links `{datasets}/{owner}/{name}` that are not in `wanted`, and owner folders
/// that this leaves empty. A missing `datasets` folder is fine.
fn remove_stale_links(datasets: &Path, wanted: &[PathBuf]) -> Result<(), SpawnerError> {
    let read = |dir: &Path| -> Result<Vec<std::fs::DirEntry>, SpawnerError> {
        match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SpawnerError::io(format!("reading {}", dir.display()), e)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(SpawnerError::io(format!("reading {}", dir.display()), e)),
        }
    };
    // A `datasets` the user replaced with a link of their own is not looked into.
    if std::fs::symlink_metadata(datasets).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(());
    }
    for owner in read(datasets)? {
        // `file_type` does not follow links: a linked owner folder is not looked into.
        if !owner.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let mut removed = false;
        for entry in read(&owner.path())? {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_symlink()) && !wanted.contains(&path) {
                std::fs::remove_file(&path).map_err(|e| {
                    SpawnerError::io(format!("removing the link {}", path.display()), e)
                })?;
                tracing::debug!(link = %path.display(), "link of a mount no longer asked for removed");
                removed = true;
            }
        }
        if removed {
            // Only if empty: anything the user keeps there stays.
            let _ = std::fs::remove_dir(owner.path());
        }
    }
    Ok(())
}

/// Opens the server's log for appending (mode 0600) and writes a header line.
fn open_log(
    path: &Path,
    user: &str,
    server_name: &str,
    port: u16,
) -> Result<std::fs::File, SpawnerError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| SpawnerError::io(format!("opening log file {}", path.display()), e))?;
    writeln!(
        file,
        "--- xiji: starting server {user:?}/{server_name:?} on port {port} at {} ---",
        chrono::Utc::now().to_rfc3339()
    )
    .map_err(|e| SpawnerError::io(format!("writing log file {}", path.display()), e))?;
    Ok(file)
}

/// A port that is free on `ip` right now (bind to port 0 and release it), as JupyterHub's
/// `random_port`. Another process could take it before the server binds; the server then exits
/// and the spawn fails.
fn free_port(ip: IpAddr) -> Result<u16, SpawnerError> {
    let listener = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .map_err(|e| SpawnerError::io(format!("finding a free port on {ip}"), e))?;
    let port = listener
        .local_addr()
        .map_err(|e| SpawnerError::io(format!("finding a free port on {ip}"), e))?
        .port();
    Ok(port)
}

/// `ip:port`, with brackets around IPv6 addresses.
fn host_port(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// The last component of the program path, for messages.
fn program_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn default_and_named_servers_get_distinct_log_files() {
        assert_eq!(log_file_name("alice", ""), "alice.log");
        assert_eq!(log_file_name("alice", "gpu"), "alice@gpu.log");
        assert_ne!(log_file_name("a%40b", ""), log_file_name("a", "b"));
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(
            host_port(IpAddr::V6(Ipv6Addr::LOCALHOST), 8888),
            "[::1]:8888"
        );
        assert_eq!(
            host_port(IpAddr::V4(Ipv4Addr::LOCALHOST), 8888),
            "127.0.0.1:8888"
        );
    }

    fn spec_with(env: &[(&str, &str)]) -> SpawnSpec {
        SpawnSpec {
            user: "alice".into(),
            server_name: String::new(),
            service_prefix: "/user/alice/".into(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            resources: ClusterResources::single_node(),
            work_dir: None,
            secret_files: Vec::new(),
            mounts: Vec::new(),
        }
    }

    fn folder_mount(source: &Path, relative: &str) -> crate::Mount {
        crate::Mount {
            source: source.to_path_buf(),
            relative: relative.to_owned(),
        }
    }

    #[test]
    fn mounts_are_linked_in_the_work_directory_and_stale_links_go() {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let (a, b, c) = (
            root.path().join("a"),
            root.path().join("b"),
            root.path().join("c"),
        );
        for (dir, content) in [(&a, "A"), (&b, "B"), (&c, "C")] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("f.txt"), content).unwrap();
        }
        let read = |relative: &str| std::fs::read_to_string(work.join(relative).join("f.txt"));

        link_mounts(
            &work,
            &[
                folder_mount(&a, "datasets/alice/mnist"),
                folder_mount(&b, "datasets/bob/数据"),
            ],
        )
        .unwrap();
        assert_eq!(read("datasets/alice/mnist").unwrap(), "A");
        assert_eq!(read("datasets/bob/数据").unwrap(), "B");
        // The user's own things in the datasets folder stay.
        std::fs::write(work.join("datasets/bob/notes.txt"), "mine").unwrap();
        std::fs::create_dir_all(work.join("datasets/carol/own")).unwrap();

        // Started again: alice's link now leads elsewhere, bob's is no longer asked for.
        link_mounts(&work, &[folder_mount(&c, "datasets/alice/mnist")]).unwrap();
        assert_eq!(read("datasets/alice/mnist").unwrap(), "C");
        assert!(std::fs::symlink_metadata(work.join("datasets/bob/数据")).is_err());
        assert!(work.join("datasets/bob/notes.txt").exists());
        assert!(work.join("datasets/carol/own").is_dir());
        // The sources are untouched.
        assert_eq!(std::fs::read_to_string(b.join("f.txt")).unwrap(), "B");

        // None asked for: every link goes, and an owner folder left empty with it.
        link_mounts(&work, &[]).unwrap();
        assert!(std::fs::symlink_metadata(work.join("datasets/alice")).is_err());
        assert!(work.join("datasets").is_dir());
    }

    #[test]
    fn a_folder_with_files_where_a_link_is_due_is_refused_and_kept() {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("work");
        let source = root.path().join("src");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(work.join("datasets/alice/mnist")).unwrap();
        std::fs::write(work.join("datasets/alice/mnist/mine.txt"), "x").unwrap();
        match link_mounts(&work, &[folder_mount(&source, "datasets/alice/mnist")]) {
            Err(SpawnerError::InvalidSpec(message)) => {
                assert!(message.contains("move it away"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(work.join("datasets/alice/mnist/mine.txt").exists());
        // An empty folder in the way is replaced by the link.
        std::fs::remove_file(work.join("datasets/alice/mnist/mine.txt")).unwrap();
        link_mounts(&work, &[folder_mount(&source, "datasets/alice/mnist")]).unwrap();
        assert!(std::fs::symlink_metadata(work.join("datasets/alice/mnist"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn the_server_environment_has_the_hub_variables_the_service_url_and_the_legacy_token() {
        let mut cfg = LocalConfig::new(
            vec!["/opt/venv/bin/jupyterhub-singleuser".into()],
            "/srv/xiji-homes".into(),
            "/srv/logs".into(),
        );
        cfg.env_keep = vec!["XIJI_SURELY_UNSET_VARIABLE".into()];
        cfg.environment.insert("EXTRA".into(), "1".into());
        cfg.environment
            .insert("JUPYTERHUB_SERVICE_URL".into(), "http://evil/".into());
        let spawner = LocalSpawner::new(cfg);
        let spec = spec_with(&[
            ("JUPYTERHUB_API_TOKEN", "secret"),
            ("JUPYTERHUB_USER", "alice"),
        ]);
        let env = spawner.server_env(
            &spec,
            "/opt/venv/bin/jupyterhub-singleuser",
            Path::new("/srv/xiji-homes/alice"),
            "http://127.0.0.1:4000/user/alice/",
        );
        assert_eq!(
            env["JUPYTERHUB_SERVICE_URL"],
            "http://127.0.0.1:4000/user/alice/"
        );
        assert_eq!(env["JPY_API_TOKEN"], "secret");
        assert_eq!(env["JUPYTERHUB_USER"], "alice");
        assert_eq!(env["HOME"], "/srv/xiji-homes/alice");
        assert_eq!(env["PATH"], "/opt/venv/bin");
        assert_eq!(env["EXTRA"], "1");
        assert!(!env.contains_key("XIJI_SURELY_UNSET_VARIABLE"));
    }

    #[test]
    fn a_spec_with_secret_files_is_refused_before_anything_is_made() {
        let root = tempfile::tempdir().unwrap();
        let spawner = LocalSpawner::new(LocalConfig::new(
            vec!["/opt/venv/bin/jupyterhub-singleuser".into()],
            root.path().join("homes"),
            root.path().join("logs"),
        ));
        let mut spec = spec_with(&[]);
        spec.secret_files = vec![crate::SecretFile::new("vnc-password", "pw").unwrap()];
        let err = spawner.prepare(&spec).err().expect("refused");
        assert!(matches!(err, SpawnerError::InvalidSpec(_)), "{err}");
        assert!(err.to_string().contains("docker backend"), "{err}");
        assert!(!root.path().join("homes").exists());
    }

    #[test]
    fn state_blobs_that_could_signal_the_wrong_processes_are_refused() {
        let blob = |pid: u32, pgid: u32| {
            serde_json::json!({"pid": pid, "pgid": pgid, "port": 1, "ip": "127.0.0.1",
                               "url": "http://127.0.0.1:1", "start_time": 5})
        };
        assert!(LocalState::from_blob(&blob(0, 0)).is_err());
        assert!(LocalState::from_blob(&blob(1, 1)).is_err());
        assert!(LocalState::from_blob(&blob(4242, 4242)).unwrap().is_some());
        assert!(LocalState::from_blob(&serde_json::json!({"pid": "x"})).is_err());
        assert!(LocalState::from_blob(&serde_json::json!({}))
            .unwrap()
            .is_none());
        assert!(LocalState::from_blob(&serde_json::Value::Null)
            .unwrap()
            .is_none());
    }
}
