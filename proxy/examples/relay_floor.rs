#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: failing loudly is fine
//! `relay_floor [MESSAGES]`: what relaying a TCP connection costs on this machine at the least,
//! whatever the proxy. A client ping-pongs 64-byte messages (the size of a small websocket frame)
//! with an echo server, directly and through three bare relays that do nothing but move bytes:
//!
//! - two blocking threads, one per direction (the cheapest a user-space relay can be);
//! - one single-threaded tokio runtime with `copy_bidirectional` (how a tunnel in an async proxy
//!   moves bytes, without any HTTP);
//! - the kernel itself, as the proxy splices a websocket tunnel (`proxy::splice`): every segment
//!   one socket receives is sent out of the other without any user-space thread running (needs
//!   root and a kernel with sockmap; reported as unavailable otherwise).
//!
//! With `--xiji-proxy PATH`, the same through that `xiji-proxy` binary (one serving thread, its
//! default target the echo server), with its kernel splice and with `--no-kernel-splice`: every
//! connection starts with a websocket upgrade, which the echo server accepts, so the proxy
//! tunnels the messages exactly as it tunnels a websocket's frames.
//!
//! Prints the round trip's p50/p99 and what each path adds to the direct p50: the floor under
//! `tests/bench/proxy.sh`'s websocket numbers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;

use proxy::splice::KernelSplice;
use std::time::Instant;

const WARMUP: usize = 500;

fn main() {
    let mut messages = 20_000;
    let mut xiji_proxy = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--xiji-proxy" => xiji_proxy = args.next(),
            n => {
                messages = n
                    .parse()
                    .expect("relay_floor [MESSAGES] [--xiji-proxy PATH]")
            }
        }
    }
    let echo = echo_server();
    let threads = relay(echo, Relay::Threads);
    let tokio = relay(echo, Relay::Tokio);
    let kernel = match KernelSplice::load() {
        Ok(splice) => Ok(relay(echo, Relay::Kernel(splice))),
        Err(reason) => Err(reason),
    };
    let proxies = xiji_proxy.map(|path| {
        (
            XijiProxy::start(&path, echo, &[]),
            XijiProxy::start(&path, echo, &["--no-kernel-splice"]),
        )
    });

    println!("| path | p50 µs | p99 µs | added to the direct p50 |");
    println!("|---|---|---|---|");
    let (direct_p50, direct_p99) = round_trips(echo, messages);
    println!("| direct | {direct_p50:.1} | {direct_p99:.1} | |");
    let row = |name: &str, port: u16| {
        let (p50, p99) = round_trips(port, messages);
        println!(
            "| {name} | {p50:.1} | {p99:.1} | + {:.1} µs |",
            p50 - direct_p50
        );
    };
    row("relay: two blocking threads", threads);
    row("relay: tokio, one thread", tokio);
    match kernel {
        Ok(port) => row("relay: kernel (eBPF sockmap)", port),
        Err(reason) => println!("| relay: kernel (eBPF sockmap) | unavailable: {reason} | | |"),
    }
    if let Some((spliced, copied)) = &proxies {
        row("xiji-proxy --threads 1", spliced.port);
        row("xiji-proxy --threads 1 --no-kernel-splice", copied.port);
    }
}

/// A `xiji-proxy` process whose default target is the echo server; killed when dropped.
struct XijiProxy {
    child: std::process::Child,
    port: u16,
}

impl XijiProxy {
    fn start(path: &str, echo: u16, extra: &[&str]) -> Self {
        let free = || {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (port, api_port) = (free(), free());
        let child = std::process::Command::new(path)
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--api-ip", "127.0.0.1", "--api-port", &api_port.to_string()])
            .args(["--default-target", &format!("http://127.0.0.1:{echo}")])
            .args(["--threads", "1", "--log-level", "warn"])
            .args(extra)
            .env("CONFIGPROXY_AUTH_TOKEN", "relay-floor")
            .spawn()
            .unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{path} did not listen within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for XijiProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const UPGRADE: &[u8] = b"GET /floor HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: cmVsYXktZmxvb3Itbm9uY2U=\r\nSec-WebSocket-Version: 13\r\n\r\n";
const SWITCHED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: bm90LWNoZWNrZWQtaGVyZQ==\r\n\r\n";

/// Reads an HTTP head, up to and including its blank line.
fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    head
}

/// The median and 99th percentile round trip, in µs, of `messages` ping-pongs on one connection.
fn round_trips(port: u16, messages: usize) -> (f64, f64) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(UPGRADE).unwrap();
    let head = read_head(&mut stream);
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let ping = [7u8; 64];
    let mut pong = [0u8; 64];
    let mut times = Vec::with_capacity(messages);
    for i in 0..WARMUP + messages {
        let start = Instant::now();
        stream.write_all(&ping).unwrap();
        stream.read_exact(&mut pong).unwrap();
        if i >= WARMUP {
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    times.sort_by(f64::total_cmp);
    (times[messages / 2], times[messages * 99 / 100])
}

fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            stream.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                read_head(&mut stream);
                stream.write_all(SWITCHED).unwrap();
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => stream.write_all(&buf[..n]).unwrap(),
                    }
                }
            });
        }
    });
    port
}

enum Relay {
    Threads,
    Tokio,
    Kernel(KernelSplice),
}

/// A relay on a new port to the echo server on `target`.
fn relay(target: u16, kind: Relay) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // Relayed connections whose sockets only the kernel moves bytes between.
        let mut spliced = Vec::new();
        for client in listener.incoming() {
            let client = client.unwrap();
            client.set_nodelay(true).unwrap();
            let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
            server.set_nodelay(true).unwrap();
            match &kind {
                Relay::Threads => {
                    copy_thread(client.try_clone().unwrap(), server.try_clone().unwrap());
                    copy_thread(server, client);
                }
                Relay::Tokio => {
                    client.set_nonblocking(true).unwrap();
                    server.set_nonblocking(true).unwrap();
                    std::thread::spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_io()
                            .build()
                            .unwrap();
                        runtime.block_on(async {
                            let mut a = tokio::net::TcpStream::from_std(client).unwrap();
                            let mut b = tokio::net::TcpStream::from_std(server).unwrap();
                            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                        });
                    });
                }
                Relay::Kernel(splice) => {
                    splice.join(client.as_fd(), server.as_fd()).unwrap();
                    spliced.push((client, server));
                }
            }
        }
    });
    port
}

fn copy_thread(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
}
