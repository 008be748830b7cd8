#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic loudly
//! Websocket tunnels spliced in the kernel (`proxy::splice`) behave exactly like copied ones:
//! every byte arrives, in order, both ways — including bytes the backend sends right after its
//! `101` and bytes sent just before a side closes — and a side's close reaches the other side
//! only after its last byte. Each test runs with the splice (when this process may load eBPF
//! programs, as root on Linux) and with `kernel_splice: false`.

mod support;

use std::time::Duration;

use proxy::{Proxy, ProxyConfig};
use support::{no_data, RunningProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sent by the backend right after its `101`, before it reads anything.
const EARLY: usize = 300_000;
/// Sent by the client, echoed by the backend.
const UPLOAD: usize = 8 << 20;
/// Sent by the backend after the client finished sending, just before it closes.
const TRAILER: &[u8] = b"trailer: the backend's last bytes";

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A websocket-speaking backend at the byte level: accepts the upgrade, sends [`EARLY`] bytes,
/// echoes everything until the client's half-close, then sends [`TRAILER`] and closes.
async fn start_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                read_head(&mut stream).await;
                stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                          Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
                    )
                    .await
                    .unwrap();
                stream.write_all(&pattern(1, EARLY)).await.unwrap();
                let (mut read, mut write) = stream.split();
                tokio::io::copy(&mut read, &mut write).await.unwrap();
                write.write_all(TRAILER).await.unwrap();
                write.shutdown().await.unwrap();
            });
        }
    });
    addr
}

/// A proxy whose route `/user/alice/` leads to [`start_backend`]'s backend.
async fn proxy_to_backend(config: ProxyConfig) -> RunningProxy {
    let proxy = RunningProxy::start_with(config).await;
    let backend = start_backend().await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{backend}"), no_data())
        .await
        .unwrap();
    proxy
}

/// A websocket upgrade through the proxy, answered `101`: the tunnel's client end.
async fn open_tunnel(proxy: std::net::SocketAddr) -> TcpStream {
    let mut client = TcpStream::connect(proxy).await.unwrap();
    client
        .write_all(
            b"GET /user/alice/api/kernels/k/channels HTTP/1.1\r\nHost: x\r\n\
              Upgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client
}

async fn every_byte_both_ways_then_the_close(config: ProxyConfig) {
    let proxy = proxy_to_backend(config).await;
    let client = open_tunnel(proxy.addr).await;

    let (mut read, mut write) = client.into_split();
    let upload = pattern(2, UPLOAD);
    let sending = tokio::spawn(async move {
        for chunk in upload.chunks(50_000) {
            write.write_all(chunk).await.unwrap();
        }
        // The client is done; the backend answers with its trailer and closes.
        write.shutdown().await.unwrap();
        write
    });
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), read.read_to_end(&mut received))
        .await
        .expect("the tunnel did not close within 60 s")
        .unwrap();
    sending.await.unwrap();

    let mut expected = pattern(1, EARLY);
    expected.extend(pattern(2, UPLOAD));
    expected.extend_from_slice(TRAILER);
    let first_difference = received.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(received.len(), expected.len(), "bytes received");
    assert_eq!(first_difference, None, "the bytes differ from there on");
}

/// Whether this process splices (as root on a Linux kernel with sockmap). Said on stderr, so a
/// run shows which path the "spliced" tests took.
fn report_splicing() {
    if proxy::splice::kernel().is_none() {
        eprintln!("no kernel splice in this process (not root, or no sockmap): tunnels are copied");
    }
}

#[tokio::test]
async fn a_spliced_tunnel_delivers_every_byte_in_order_both_ways_and_closes_after_the_last() {
    report_splicing();
    every_byte_both_ways_then_the_close(ProxyConfig::default()).await;
}

#[tokio::test]
async fn a_copied_tunnel_delivers_every_byte_in_order_both_ways_and_closes_after_the_last() {
    every_byte_both_ways_then_the_close(ProxyConfig {
        kernel_splice: false,
        ..ProxyConfig::default()
    })
    .await;
}

#[tokio::test]
async fn many_spliced_tunnels_at_once_keep_their_bytes_apart() {
    report_splicing();
    let proxy = proxy_to_backend(ProxyConfig::default()).await;
    let mut tunnels = Vec::new();
    for n in 0u8..20 {
        let addr = proxy.addr;
        tunnels.push(tokio::spawn(async move {
            let mut client = open_tunnel(addr).await;
            let mut early = vec![0u8; EARLY];
            client.read_exact(&mut early).await.unwrap();
            for round in 0..20u8 {
                let message = pattern(
                    n.wrapping_mul(31).wrapping_add(round),
                    1000 + usize::from(n),
                );
                client.write_all(&message).await.unwrap();
                let mut echo = vec![0u8; message.len()];
                client.read_exact(&mut echo).await.unwrap();
                assert_eq!(echo, message, "tunnel {n}, round {round}");
            }
        }));
    }
    for tunnel in tunnels {
        tokio::time::timeout(Duration::from_secs(60), tunnel)
            .await
            .expect("a tunnel stalled")
            .unwrap();
    }
}
