#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: failing loudly is fine
//! Helpers for `tests/bench/proxy.sh`:
//!
//! - `proxy_bench add-routes API_URL TOKEN N TARGET [PREFIX]`: adds N routes to TARGET through
//!   CHP's REST API (64 keep-alive connections, one request at a time on each) and prints the
//!   seconds it took.
//! - `proxy_bench ws-echo-server PORT`: a websocket echo server.
//! - `proxy_bench ws-rtt URL SECONDS`: one websocket, ping-pong of 32-byte text messages for
//!   SECONDS; prints `p50_us p99_us msgs_per_s`.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("add-routes") => {
            let api = args[2].trim_end_matches('/').to_owned();
            let token = args[3].clone();
            let n: usize = args[4].parse().unwrap();
            let target = args[5].clone();
            let prefix = args.get(6).cloned().unwrap_or_else(|| "/bench".into());
            add_routes(&api, &token, n, &target, &prefix).await;
        }
        Some("ws-echo-server") => ws_echo_server(args[2].parse().unwrap()).await,
        Some("ws-rtt") => ws_rtt(&args[2], args[3].parse().unwrap()).await,
        _ => eprintln!("usage: see the source"),
    }
}

/// One plain HTTP/1.1 keep-alive connection per worker, one request at a time (no pipelining):
/// what any CHP client does, without a general-purpose client's own cost on this shared machine.
async fn add_routes(api: &str, token: &str, n: usize, target: &str, prefix: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let authority = api
        .strip_prefix("http://")
        .expect("an http:// API URL")
        .to_owned();
    let started = Instant::now();
    let workers = 64;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let authority = authority.clone();
        let token = token.to_owned();
        let prefix = prefix.to_owned();
        let target = target.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut request = Vec::with_capacity(512);
            let mut buf = vec![0u8; 4096];
            let mut i = w;
            while i < n {
                let body =
                    format!(r#"{{"target": "{target}", "user": "u{i}", "server_name": ""}}"#);
                request.clear();
                request.extend_from_slice(
                    format!(
                        "POST /api/routes{prefix}/u{i} HTTP/1.1\r\nHost: {authority}\r\n\
                         Authorization: token {token}\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
                stream.write_all(&request).await.unwrap();
                // Read the head, then as much body as `Content-Length` says.
                let mut got = 0;
                let mut need = usize::MAX;
                while got < need {
                    let read = stream.read(&mut buf[got..]).await.unwrap();
                    assert!(read > 0, "the API closed the connection");
                    got += read;
                    if need == usize::MAX {
                        if let Some(end) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                            need = end + 4 + length;
                        }
                    }
                }
                assert!(
                    buf.starts_with(b"HTTP/1.1 201"),
                    "{}",
                    String::from_utf8_lossy(&buf[..got])
                );
                i += workers;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!("{:.3}", started.elapsed().as_secs_f64());
}

async fn ws_echo_server(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() {
                    break;
                }
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn ws_rtt(url: &str, seconds: f64) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let payload = "x".repeat(32);
    // Warm up.
    for _ in 0..200 {
        ws.send(Message::text(payload.clone())).await.unwrap();
        ws.next().await.unwrap().unwrap();
    }
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    while Instant::now() < deadline {
        let t = Instant::now();
        ws.send(Message::text(payload.clone())).await.unwrap();
        ws.next().await.unwrap().unwrap();
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = started.elapsed().as_secs_f64();
    samples.sort_unstable();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!(
        "{:.1} {:.1} {:.0}",
        pick(0.5),
        pick(0.99),
        samples.len() as f64 / elapsed
    );
    let _ = ws.close(None).await;
}
