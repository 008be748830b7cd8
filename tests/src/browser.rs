//! Running a Playwright script of `tests/browser/` in Debian's Chromium against a test hub, with a
//! deadline, its output kept, and its screenshots in `tests/artifacts/<name>/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::{artifacts_dir, required_env, tail, workspace_root, Hub};

/// The longest a browser script may run, including JupyterLab's first load on a busy machine.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(900);

/// What a finished script left.
pub struct BrowserRun {
    /// Its standard output and error.
    pub output: String,
    /// Where its screenshots are.
    pub artifacts: PathBuf,
}

impl BrowserRun {
    /// Fails unless a screenshot whose name contains `name` was taken.
    pub fn expect_screenshot(&self, name: &str) -> Result<()> {
        let found = std::fs::read_dir(&self.artifacts)?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(name));
        ensure!(
            found,
            "no {name} screenshot in {}",
            self.artifacts.display()
        );
        Ok(())
    }
}

/// Runs `tests/browser/{script}` with node against `hub` (XIJI_URL) and the extra environment;
/// screenshots go to `tests/artifacts/{name}/`. Fails when the script fails or overruns, with
/// the end of its output.
pub async fn run_script(
    hub: &Hub,
    script: &str,
    name: &str,
    vars: &[(&str, &str)],
) -> Result<BrowserRun> {
    let node_modules = PathBuf::from(required_env("XIJI_TEST_NODE_MODULES")?);
    ensure!(
        node_modules
            .join("playwright-core")
            .join("package.json")
            .is_file(),
        "{} has no playwright-core: run tests/setup-env.sh",
        node_modules.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    ensure!(
        PathBuf::from(&chromium).is_file(),
        "no Chromium at {chromium}: run tests/setup-env.sh (it installs Debian's chromium)"
    );
    let artifacts = artifacts_dir().join(name);
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts)?;
    let log_path = hub.scratch_path(&format!("{name}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut command = hub.command("node");
    command
        .arg(workspace_root().join("tests/browser").join(script))
        .env("XIJI_URL", hub.base_url())
        .env("XIJI_ARTIFACTS", &artifacts)
        .env("XIJI_TEST_NODE_MODULES", &node_modules)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for (key, value) in vars {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .context("cannot run node: is Node.js on PATH? (tests/setup-env.sh needs it too)")?;
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the browser run took more than {BROWSER_TIMEOUT:?}:\n{}",
                tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 100)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    eprintln!("===== browser ({script}) =====\n{output}");
    ensure!(
        status.success(),
        "the browser run failed ({status}); screenshots in {}:\n{}",
        artifacts.display(),
        tail(&output, 60)
    );
    Ok(BrowserRun { output, artifacts })
}

/// Copies the screenshots of browser runs (`runs`, in order) next to the hub's files and into
/// `target/screenshots/{name}/`, whether the runs passed or not, numbered on from one run to the
/// next (each run numbers its own from 01).
pub fn keep_screenshots(hub: &Hub, name: &str, runs: &[&str]) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .map(|p| {
            if p.is_relative() {
                workspace_root().join(p)
            } else {
                p
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    for to in [
        hub.scratch_path("screenshots"),
        target.join("screenshots").join(name),
    ] {
        let _ = std::fs::remove_dir_all(&to);
        if std::fs::create_dir_all(&to).is_err() {
            continue;
        }
        let mut number = 0;
        for run in runs {
            let mut names: Vec<String> = std::fs::read_dir(artifacts_dir().join(run))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for file in names {
                number += 1;
                let rest = file.split_once('-').map_or(file.as_str(), |(_, rest)| rest);
                let _ = std::fs::copy(
                    artifacts_dir().join(run).join(&file),
                    to.join(format!("{number:02}-{rest}")),
                );
            }
        }
    }
}
