//! `wait_for_http_server`: JupyterHub's "is the server up" check.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use spawner::{wait_for_http_server, SpawnerError};

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn any_status_below_500_counts_as_up_even_404() {
    let url = serve(axum::Router::new()).await;
    let began = Instant::now();
    wait_for_http_server(&format!("{url}/user/alice/api"), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(began.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_5xx_is_retried_until_the_server_answers_properly() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/user/alice/api",
        axum::routing::get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    StatusCode::BAD_GATEWAY
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let url = serve(app).await;
    wait_for_http_server(&format!("{url}/user/alice/api"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_server_that_starts_listening_late_is_noticed_within_tens_of_milliseconds() {
    // Reserve a port, release it, and bind it again after a delay.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let delay = Duration::from_millis(300);
    let listening_at = Arc::new(std::sync::Mutex::new(None));
    let mark = listening_at.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        *mark.lock().unwrap() = Some(Instant::now());
        axum::serve(listener, axum::Router::new()).await
    });
    wait_for_http_server(
        &format!("http://127.0.0.1:{port}/user/alice/api"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let since_listening = listening_at.lock().unwrap().unwrap().elapsed();
    assert!(
        since_listening < Duration::from_millis(250),
        "{since_listening:?}"
    );
}

#[tokio::test]
async fn nothing_listening_gives_a_timeout_error_after_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/user/alice/api");
    let began = Instant::now();
    let err = wait_for_http_server(&url, Duration::from_millis(300))
        .await
        .unwrap_err();
    let elapsed = began.elapsed();
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2));
    match err {
        SpawnerError::HttpTimeout { last_error, .. } => {
            assert!(last_error.contains("connect"), "{last_error}")
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn a_server_that_accepts_but_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let err = wait_for_http_server(&format!("http://{addr}/api"), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, SpawnerError::HttpTimeout { .. }), "{err:?}");
}
