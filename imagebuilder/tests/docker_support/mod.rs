//! Docker Engine and registry helpers shared by the test binaries that run against a real
//! Docker Engine and a real Debian `docker-registry` (`docker_registry`, `node_agent`, and the
//! spawner's `kube_agent` by its path). Needs only `std`, `tempfile` and `serde_json`.
#![allow(dead_code)] // each binary uses a part
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether to run the tests that need Docker Engine and Debian's `docker-registry`:
/// `XIJI_TEST_DOCKER=1` (set by `tests/setup-docker.sh`'s env file); then a missing Docker or
/// registry is a failure, not a skip.
pub fn docker_tests_enabled() -> bool {
    if !docker_engine_enabled() {
        return false;
    }
    assert!(
        Command::new("docker-registry").arg("--version").output().is_ok(),
        "XIJI_TEST_DOCKER=1 but Debian's docker-registry is not installed (apt-get install docker-registry)"
    );
    true
}

/// Whether to run the tests that need Docker Engine alone: `XIJI_TEST_DOCKER=1`, and then a
/// Docker that does not answer is a failure, not a skip.
pub fn docker_engine_enabled() -> bool {
    if std::env::var("XIJI_TEST_DOCKER").as_deref() != Ok("1") {
        eprintln!("skipped: set XIJI_TEST_DOCKER=1 (after tests/setup-docker.sh) to run");
        return false;
    }
    let info = Command::new("docker").arg("info").output();
    match info {
        Ok(out) if out.status.success() => true,
        Ok(out) => panic!(
            "XIJI_TEST_DOCKER=1 but `docker info` fails: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("XIJI_TEST_DOCKER=1 but docker cannot run: {e}"),
    }
}

/// Runs a shell command; panics with its output on failure.
pub fn sh(command: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(command)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{command}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A name no other test run uses: `prefix`, the process id and the clock's nanoseconds.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}{}-{nanos}", std::process::id())
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A field of `docker inspect` of a container, trimmed.
pub fn docker_inspect(container: &str, format: &str) -> String {
    sh(&format!("docker inspect -f '{format}' {container}"))
        .trim()
        .to_owned()
}

/// Docker's own reading of a container's CPU time (its stats API's
/// `cpu_stats.cpu_usage.total_usage`, nanoseconds), through the Engine's socket.
pub fn docker_cpu_ns(container: &str) -> u64 {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let stats = sh(&format!(
        "curl -sf --unix-socket {socket} 'http://docker/containers/{container}/stats?stream=false&one-shot=true'"
    ));
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    stats["cpu_stats"]["cpu_usage"]["total_usage"]
        .as_u64()
        .unwrap_or_else(|| panic!("no CPU time in Docker's stats: {stats}"))
}

/// Our own `docker-registry` on a free loopback port with its own storage (never the shared
/// one on :5000), its access log kept for the test to read.
pub struct Registry {
    child: Child,
    pub addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with_basic_auth(None)
    }

    /// With `Some((user, password))`, the registry demands HTTP Basic credentials.
    pub fn start_with_basic_auth(credentials: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let auth = match credentials {
            None => String::new(),
            Some((user, password)) => {
                // distribution wants bcrypt; Python's crypt module (libxcrypt) makes it.
                let hash = sh(&format!(
                    "python3 -W ignore -c \"import crypt; print(crypt.crypt('{password}', crypt.mksalt(crypt.METHOD_BLOWFISH)))\""
                ));
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{}\n", hash.trim())).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: xiji-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
        };
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            addr,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not start: {}",
                registry.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Digests of blobs whose upload completed (`PUT …/blobs/uploads/<id>?digest=…`) into
    /// `repo`, from the access log.
    pub fn uploaded_digests(&self, repo: &str) -> Vec<String> {
        let prefix = format!("\"PUT /v2/{repo}/blobs/uploads/");
        self.log_text()
            .lines()
            .filter_map(|line| {
                let start = line.find(&prefix)?;
                let request = &line[start..];
                let digest = request.split("digest=").nth(1)?;
                let digest: String = digest
                    .chars()
                    .take_while(|c| !matches!(c, ' ' | '&' | '"'))
                    .collect();
                Some(digest.replace("%3A", ":").replace("%3a", ":"))
            })
            .collect()
    }

    /// Requests `POST /v2/<repo>/blobs/uploads/?…mount=…` with the status the registry gave.
    pub fn mount_requests(&self, repo: &str) -> Vec<String> {
        let prefix = format!("\"POST /v2/{repo}/blobs/uploads/?");
        self.log_text()
            .lines()
            .filter(|line| line.contains(&prefix) && line.contains("mount="))
            .map(str::to_owned)
            .collect()
    }

    /// The HTTP status of a tag's manifest (`"200"`, `"404"`), `repo_and_tag` as `repo:tag`.
    pub fn manifest_status(&self, repo_and_tag: &str) -> String {
        let (repo, tag) = repo_and_tag.rsplit_once(':').unwrap();
        sh(&format!(
            "curl -s -o /dev/null -w '%{{http_code}}' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' http://{}/v2/{repo}/manifests/{tag}",
            self.addr
        ))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Containers and images removed at the end, whatever happens.
#[derive(Default)]
pub struct DockerCleanup {
    pub containers: Vec<String>,
    pub images: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker")
                .args(["rm", "-f", c])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for i in &self.images {
            let _ = Command::new("docker")
                .args(["rmi", "-f", i])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A root filesystem of the host's own `binaries` and their libraries (no Docker Hub here), in
/// a merged-/usr layout like the host's: each file under its directory's real path, and /bin,
/// /lib, /lib64 as links into /usr; `dirs` made empty besides.
pub fn host_rootfs(binaries: &[&str], dirs: &[&str]) -> tempfile::TempDir {
    let rootfs = tempfile::tempdir().unwrap();
    let root = rootfs.path();
    let mut files: BTreeSet<String> = BTreeSet::new();
    for bin in binaries {
        let path = sh(&format!("command -v {bin} || true")).trim().to_string();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/bin/{bin}")
        };
        files.insert(path.clone());
        for lib in sh(&format!("ldd {path} | grep -o '/lib[^ ]*' || true")).lines() {
            files.insert(lib.to_string());
        }
    }
    for file in &files {
        let path = Path::new(file);
        let dir = sh(&format!("readlink -f {}", path.parent().unwrap().display()));
        let dest = root
            .join(dir.trim().trim_start_matches('/'))
            .join(path.file_name().unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(path, &dest).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::fs::create_dir_all(root.join(target)).unwrap();
        if !root.join(link).exists() {
            std::os::unix::fs::symlink(target, root.join(link)).unwrap();
        }
    }
    for dir in dirs {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    rootfs
}
