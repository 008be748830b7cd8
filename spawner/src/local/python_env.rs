//! Creating the Python virtualenv that provides `jupyterhub-singleuser`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};

use crate::SpawnerError;

/// File inside the venv listing the packages it was last installed with, one per line; written
/// only after a successful install, so an interrupted install is redone.
const MARKER: &str = ".xiji-packages";

/// See [`super::LocalSpawner::ensure_python_env`].
pub(super) async fn ensure(
    venv: &Path,
    python: &str,
    packages: &[String],
) -> Result<PathBuf, SpawnerError> {
    let singleuser = venv.join("bin").join("jupyterhub-singleuser");
    let wanted = packages.join("\n");
    if is_ready(venv, &singleuser, &wanted).await {
        tracing::debug!(venv = %venv.display(), "Python environment already present");
        return Ok(singleuser);
    }

    // Several hubs or test binaries may share one venv: one of them installs, the others wait.
    let _lock = lock(venv).await?;
    if is_ready(venv, &singleuser, &wanted).await {
        return Ok(singleuser);
    }

    let began = Instant::now();
    let venv_python = venv.join("bin").join("python");
    if !venv_python.exists() {
        tracing::info!(venv = %venv.display(), python, "creating Python virtualenv");
        let mut command = tokio::process::Command::new(python);
        command.arg("-m").arg("venv").arg(venv);
        if let Err(error) = run(venv, "python -m venv", python, command).await {
            // Debian without `python3-venv` has no ensurepip: make the venv without pip and
            // bootstrap pip from the package index instead.
            tracing::warn!(%error, "python -m venv failed; retrying without ensurepip");
            // A half-made venv would fail the same way again; start clean.
            let _ = tokio::fs::remove_dir_all(venv).await;
            let mut command = tokio::process::Command::new(python);
            command.args(["-m", "venv", "--without-pip"]).arg(venv);
            run(venv, "python -m venv --without-pip", python, command)
                .await
                .map_err(|_| error)?;
            let mut command = tokio::process::Command::new(&venv_python);
            command.args(["-c", BOOTSTRAP_PIP]);
            run(
                venv,
                "bootstrap pip",
                &venv_python.display().to_string(),
                command,
            )
            .await?;
        }
    }

    tracing::info!(
        venv = %venv.display(),
        packages = %packages.join(" "),
        "installing Python packages (this can take a few minutes)"
    );
    let mut command = tokio::process::Command::new(&venv_python);
    command
        .args(["-m", "pip", "install", "--disable-pip-version-check"])
        .args(packages);
    run(
        venv,
        "pip install",
        &venv_python.display().to_string(),
        command,
    )
    .await?;

    if !singleuser.exists() {
        return Err(SpawnerError::PythonEnv {
            venv: venv.to_owned(),
            step: "pip install".into(),
            message: format!(
                "the packages [{}] provide no {} (is jupyterhub among them?)",
                packages.join(", "),
                singleuser.display()
            ),
        });
    }
    tokio::fs::write(venv.join(MARKER), &wanted)
        .await
        .map_err(|e| SpawnerError::io(format!("writing {}", venv.join(MARKER).display()), e))?;
    tracing::info!(
        venv = %venv.display(),
        elapsed_s = began.elapsed().as_secs(),
        "Python environment ready"
    );
    Ok(singleuser)
}

/// Fetches pip's newest wheel from the package index (`XIJI_PIP_JSON_URL`, default PyPI's JSON
/// API) and installs pip from it, for venvs made with `--without-pip`.
const BOOTSTRAP_PIP: &str = r##"
import json, os, subprocess, sys, tempfile, urllib.parse, urllib.request
meta = os.environ.get("XIJI_PIP_JSON_URL", "https://pypi.org/pypi/pip/json")
with urllib.request.urlopen(meta, timeout=60) as answer:
    files = json.load(answer)["urls"]
url = urllib.parse.urljoin(meta, next(f["url"] for f in files if f["filename"].endswith(".whl")))
wheel = os.path.join(tempfile.mkdtemp(), url.rsplit("/", 1)[1].split("#")[0])
urllib.request.urlretrieve(url, wheel)
subprocess.check_call([sys.executable, os.path.join(wheel, "pip"), "install", "--no-index", wheel])
"##;

/// The venv has the single-user script and was installed with exactly `wanted`.
async fn is_ready(venv: &Path, singleuser: &Path, wanted: &str) -> bool {
    singleuser.exists()
        && tokio::fs::read_to_string(venv.join(MARKER))
            .await
            .is_ok_and(|installed| installed == wanted)
}

/// Takes an exclusive `flock` on `<venv>.lock`, next to the venv; released on drop.
async fn lock(venv: &Path) -> Result<Flock<std::fs::File>, SpawnerError> {
    let name = venv
        .file_name()
        .ok_or_else(|| SpawnerError::Config(format!("venv path {} has no name", venv.display())))?;
    let parent = venv.parent().unwrap_or_else(|| Path::new("."));
    let lock_path = parent.join(format!("{}.lock", name.to_string_lossy()));
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| SpawnerError::io(format!("creating {}", parent.display()), e))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| SpawnerError::io(format!("opening {}", lock_path.display()), e))?;
    let locked = tokio::task::spawn_blocking(move || Flock::lock(file, FlockArg::LockExclusive))
        .await
        .map_err(|e| SpawnerError::io("waiting for the venv lock", std::io::Error::other(e)))?;
    locked.map_err(|(_, errno)| {
        SpawnerError::io(format!("locking {}", lock_path.display()), errno.into())
    })
}

/// Runs one step and turns a failure into [`SpawnerError::PythonEnv`] with the end of its output.
async fn run(
    venv: &Path,
    step: &str,
    program: &str,
    mut command: tokio::process::Command,
) -> Result<(), SpawnerError> {
    let failed = |message: String| SpawnerError::PythonEnv {
        venv: venv.to_owned(),
        step: step.to_owned(),
        message,
    };
    let output: Output = command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| failed(format!("cannot run `{program}`: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(failed(format!(
        "`{program}` failed ({}):\n{}",
        output.status,
        last_lines(&text, 20)
    )))
}

/// The last `n` lines of `text`.
pub(super) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
