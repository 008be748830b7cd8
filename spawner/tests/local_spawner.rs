//! The `local` backend against the real `jupyterhub-singleuser` (and small shell stand-ins
//! where only process handling matters).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use spawner::local::LocalSpawner;
use spawner::{wait_for_http_server, wait_until_ready, ProgressEvent, Spawner, SpawnerError};
use support::{
    init_tracing, live_group_members, live_processes_with_cmdline, local_config, plain_spec,
    singleuser, StandInHub,
};
use tokio::sync::mpsc;

fn pgid_of(state: &serde_json::Value) -> i64 {
    state["pgid"].as_i64().expect("pgid in the state blob")
}

#[tokio::test]
async fn a_singleuser_server_starts_answers_survives_a_hub_restart_and_stops_completely() {
    init_tracing();
    let singleuser = singleuser().await;
    let hub = StandInHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_config(&[singleuser.to_str().unwrap()], &dir);
    let spawner = LocalSpawner::new(cfg.clone());
    let spec = hub.spec_for("alice");

    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let started = spawner.start(&spec, progress_tx).await.unwrap();
    let state = started.state.clone();
    assert!(
        started.url.starts_with("http://127.0.0.1:"),
        "{}",
        started.url
    );
    assert_eq!(state["url"], started.url.as_str());
    assert_eq!(state["pid"], state["pgid"]);
    let mut events: Vec<ProgressEvent> = Vec::new();
    while let Ok(event) = progress_rx.try_recv() {
        events.push(event);
    }
    assert!(
        events
            .iter()
            .any(|e| e.progress == 30 && e.message == "Starting jupyterhub-singleuser"),
        "{events:?}"
    );
    assert!(events.windows(2).all(|w| w[0].progress < w[1].progress));

    let api = format!("{}/user/alice/api", started.url);
    wait_for_http_server(&api, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(spawner.poll(&state).await.unwrap(), None);
    assert!(hub.seen("GET /hub/api"), "{:?}", hub.requests);

    let work_dir = dir.path().join("work").join("alice");
    let mode = std::fs::metadata(&work_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let log = std::fs::read_to_string(dir.path().join("logs").join("alice.log")).unwrap();
    assert!(log.contains("/user/alice/"), "{log}");

    // The hub restarts: a new spawner with no child handles, only the stored blob.
    let restarted = LocalSpawner::new(cfg);
    assert_eq!(restarted.poll(&state).await.unwrap(), None);
    assert_eq!(restarted.url_from_state(&state), Some(started.url.clone()));

    restarted
        .stop(&state, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(restarted.poll(&state).await.unwrap().is_some());
    assert!(spawner.poll(&state).await.unwrap().is_some());
    let port = state["port"].as_u64().unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port as u16))
            .await
            .is_err(),
        "port {port} still open"
    );
    assert_eq!(live_group_members(pgid_of(&state)), Vec::<i64>::new());
    // Stopping again is harmless.
    restarted
        .stop(&state, Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_that_ignores_sigterm_is_killed_with_its_whole_group_after_the_grace_period() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // The shell and its `sleep` child both ignore SIGTERM.
    let cfg = local_config(&["sh", "-c", "trap '' TERM; sleep 600 & wait"], &dir);
    let spawner = LocalSpawner::new(cfg);
    let (tx, _rx) = mpsc::unbounded_channel();
    let started = spawner.start(&plain_spec("bob"), tx).await.unwrap();
    let pgid = pgid_of(&started.state);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(live_group_members(pgid).len() >= 2, "shell and sleep run");

    let grace = Duration::from_millis(400);
    let began = Instant::now();
    spawner.stop(&started.state, grace).await.unwrap();
    assert!(began.elapsed() >= grace);
    assert_eq!(live_group_members(pgid), Vec::<i64>::new());
    assert!(spawner.poll(&started.state).await.unwrap().is_some());
}

#[tokio::test]
async fn a_command_that_exits_at_once_fails_start_with_its_log_and_leaves_nothing_running() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // Leaves a child behind in its group, which start must clean up.
    let cfg = local_config(
        &[
            "sh",
            "-c",
            "sleep 987.654 & echo 'boom: bad config' >&2; exit 3",
        ],
        &dir,
    );
    let spawner = LocalSpawner::new(cfg);
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = spawner.start(&plain_spec("carol"), tx).await.unwrap_err();
    match &err {
        SpawnerError::ExitedEarly {
            status, log_tail, ..
        } => {
            assert_eq!(*status, 3);
            assert!(log_tail.contains("boom: bad config"), "{log_tail}");
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(err
        .to_string()
        .contains("exited during start-up with status 3"));
    assert_eq!(
        live_processes_with_cmdline("sleep 987.654"),
        Vec::<i64>::new()
    );
}

#[tokio::test]
async fn a_command_that_does_not_exist_fails_start_with_a_clear_error() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("jupyterhub-singleuser");
    let cfg = local_config(&[missing.to_str().unwrap()], &dir);
    let spawner = LocalSpawner::new(cfg);
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = spawner.start(&plain_spec("dave"), tx).await.unwrap_err();
    assert!(matches!(err, SpawnerError::Launch { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(missing.to_str().unwrap()), "{message}");
    assert!(message.contains("No such file"), "{message}");
}

#[tokio::test]
async fn waiting_for_readiness_fails_fast_when_the_server_dies_while_starting() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local_config(&["sh", "-c", "sleep 0.5; exit 7"], &dir);
    cfg.early_exit_window = Duration::from_millis(50);
    let spawner = LocalSpawner::new(cfg);
    let (tx, _rx) = mpsc::unbounded_channel();
    let started = spawner.start(&plain_spec("erin"), tx).await.unwrap();
    let began = Instant::now();
    let api = format!("{}/user/erin/api", started.url);
    let err = wait_until_ready(&spawner, &started.state, &api, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SpawnerError::ExitedBeforeReady { status: 7 }),
        "{err:?}"
    );
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_state_whose_pid_was_reused_is_reported_gone_and_nothing_is_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let spawner = LocalSpawner::new(local_config(&["true"], &dir));
    // This very test process, with a start time that is not its own: a reused pid.
    let me = std::process::id();
    let pgid = nix::unistd::getpgrp().as_raw();
    let state = serde_json::json!({
        "pid": me, "pgid": pgid, "port": 1, "ip": "127.0.0.1",
        "url": "http://127.0.0.1:1", "start_time": 1,
    });
    assert_eq!(spawner.poll(&state).await.unwrap(), Some(0));
    spawner
        .stop(&state, Duration::from_millis(100))
        .await
        .unwrap();
    // Still alive to assert this.
    assert_eq!(spawner.poll(&serde_json::json!({})).await.unwrap(), Some(0));
    spawner
        .stop(&serde_json::Value::Null, Duration::from_millis(100))
        .await
        .unwrap();
}

#[tokio::test]
async fn ensure_python_env_is_idempotent_and_fast_when_the_env_exists() {
    init_tracing();
    let first = singleuser().await;
    assert!(first.is_file());
    let began = Instant::now();
    let second = singleuser().await;
    assert_eq!(first, second);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn ensure_python_env_reports_a_missing_python_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let missing_python = dir.path().join("no-python3");
    let err = LocalSpawner::ensure_python_env(
        &venv,
        missing_python.to_str().unwrap(),
        &["jupyterhub".to_owned()],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SpawnerError::PythonEnv { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("python -m venv"), "{message}");
    assert!(message.contains("no-python3"), "{message}");
}
