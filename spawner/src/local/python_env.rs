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
        write_lab_overrides(venv).await?;
        return Ok(singleuser);
    }

    // Several hubs or test binaries may share one venv: one of them installs, the others wait.
    let _lock = lock(venv).await?;
    if is_ready(venv, &singleuser, &wanted).await {
        write_lab_overrides(venv).await?;
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
    write_lab_overrides(venv).await?;
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

/// Where JupyterLab reads the environment's setting defaults (`{sys.prefix}`/share/jupyter/lab/
/// settings/overrides.json).
const LAB_OVERRIDES: &str = "share/jupyter/lab/settings/overrides.json";
/// JupyterLab's plugin whose `fetchNews` setting, left at `"none"`, asks every new user "Would
/// you like to get notified about official Jupyter news?".
const NOTIFICATION_PLUGIN: &str = "@jupyterlab/apputils-extension:notification";

/// Sets JupyterLab's defaults in the venv so users get no Jupyter news prompt and no update
/// check (`fetchNews: "false"`, `checkForUpdates: false`): merged into an existing
/// `overrides.json`, where values already set there win; the file is written only when it
/// changes. An `overrides.json` that is not a JSON object is left alone (with a warning).
pub(super) async fn write_lab_overrides(venv: &Path) -> Result<(), SpawnerError> {
    let path = venv.join(LAB_OVERRIDES);
    let existing = match tokio::fs::read_to_string(&path).await {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(SpawnerError::io(format!("reading {}", path.display()), e)),
    };
    let Some(merged) = merged_lab_overrides(existing.as_deref()) else {
        tracing::warn!(
            file = %path.display(),
            "JupyterLab's overrides.json is not a JSON object; the news prompt stays"
        );
        return Ok(());
    };
    if existing.as_deref() == Some(merged.as_str()) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| SpawnerError::io(format!("creating {}", dir.display()), e))?;
    }
    tokio::fs::write(&path, merged)
        .await
        .map_err(|e| SpawnerError::io(format!("writing {}", path.display()), e))?;
    tracing::info!(file = %path.display(), "JupyterLab news prompt and update check turned off");
    Ok(())
}

/// `existing` (an `overrides.json`, or none) with the notification defaults added; `None` when
/// `existing` is not a JSON object. Unchanged input comes back byte for byte.
fn merged_lab_overrides(existing: Option<&str>) -> Option<String> {
    let mut root = match existing {
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return None,
        },
        None => serde_json::Map::new(),
    };
    let plugin = root
        .entry(NOTIFICATION_PLUGIN)
        .or_insert_with(|| serde_json::json!({}));
    let serde_json::Value::Object(plugin) = plugin else {
        return existing.map(str::to_owned);
    };
    let mut changed = false;
    for (key, value) in [
        ("fetchNews", serde_json::json!("false")),
        ("checkForUpdates", serde_json::json!(false)),
    ] {
        if !plugin.contains_key(key) {
            plugin.insert(key.to_owned(), value);
            changed = true;
        }
    }
    if !changed {
        if let Some(text) = existing {
            return Some(text.to_owned());
        }
    }
    serde_json::to_string_pretty(&serde_json::Value::Object(root))
        .ok()
        .map(|t| t + "\n")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_overrides_turn_the_news_prompt_off_and_keep_what_the_operator_set() {
        let fresh: serde_json::Value =
            serde_json::from_str(&merged_lab_overrides(None).unwrap()).unwrap();
        assert_eq!(fresh[NOTIFICATION_PLUGIN]["fetchNews"], "false");
        assert_eq!(fresh[NOTIFICATION_PLUGIN]["checkForUpdates"], false);

        let theirs = r#"{"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
            "@jupyterlab/apputils-extension:notification": {"fetchNews": "true"}}"#;
        let merged: serde_json::Value =
            serde_json::from_str(&merged_lab_overrides(Some(theirs)).unwrap()).unwrap();
        assert_eq!(merged[NOTIFICATION_PLUGIN]["fetchNews"], "true");
        assert_eq!(merged[NOTIFICATION_PLUGIN]["checkForUpdates"], false);
        assert_eq!(
            merged["@jupyterlab/apputils-extension:themes"]["theme"],
            "JupyterLab Dark"
        );

        let done = merged_lab_overrides(None).unwrap();
        assert_eq!(merged_lab_overrides(Some(&done)).unwrap(), done);
        assert_eq!(merged_lab_overrides(Some("[1]")), None);
        assert_eq!(merged_lab_overrides(Some("not json")), None);
    }

    #[tokio::test]
    async fn an_existing_venv_gets_the_overrides_file() {
        let venv = tempfile::tempdir().unwrap();
        write_lab_overrides(venv.path()).await.unwrap();
        let text = std::fs::read_to_string(venv.path().join(LAB_OVERRIDES)).unwrap();
        assert!(text.contains("\"fetchNews\": \"false\""), "{text}");
    }
}
