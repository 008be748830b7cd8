//! The desktop bridge: a browser's websocket ↔ a VNC server's TCP port, with no websockify.
//!
//! The hub checks who is asking, then [`connect`]s to the node's VNC server and performs the RFB
//! handshake **itself**, answering VNC authentication with the image's password (DES
//! challenge-response, RFC 6143 §7.2.2). Only then does it accept the browser's websocket
//! ([`accept`]), to which it offers the security type *None*: the password never leaves the
//! hub. After both handshakes the bridge relays raw RFB bytes in binary websocket frames both
//! ways (one frame per TCP read; towards the browser, frames are flushed when the VNC server has
//! nothing more to read, and a full socket stops the reading: backpressure), and closes both
//! sides when either closes.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use des::cipher::{BlockEncrypt, KeyInit};
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Largest chunk read from the VNC server per websocket frame.
const READ_CHUNK: usize = 64 * 1024;
/// Longest error reason a VNC server may send that we read.
const MAX_REASON: u32 = 4096;

/// Why a desktop connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VncError {
    /// The VNC server could not be reached or the connection broke during the handshake.
    #[error("cannot reach the desktop's VNC server: {0}")]
    Io(#[from] io::Error),
    /// The handshake took longer than allowed.
    #[error("the desktop's VNC server did not complete its handshake in time")]
    Timeout,
    /// The server spoke something other than RFB 3.x.
    #[error("the desktop's VNC server speaks an unknown protocol: {0}")]
    Protocol(String),
    /// The server refused the connection or the password.
    #[error("the desktop's VNC server refused the connection: {0}")]
    Refused(String),
    /// The browser's request is not a websocket upgrade the bridge can accept.
    #[error("not a websocket upgrade: {0}")]
    BadUpgrade(&'static str),
}

impl VncError {
    /// The HTTP status that reports it to the browser.
    pub fn status(&self) -> StatusCode {
        match self {
            VncError::BadUpgrade(_) => StatusCode::BAD_REQUEST,
            VncError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// An RFB protocol version, 3.minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RfbVersion(pub u8);

impl RfbVersion {
    fn parse(raw: &[u8; 12]) -> Result<Self, VncError> {
        let text = std::str::from_utf8(raw).unwrap_or("");
        let minor = text
            .strip_prefix("RFB 003.")
            .and_then(|rest| rest.strip_suffix('\n'))
            .and_then(|m| m.parse::<u16>().ok())
            .ok_or_else(|| VncError::Protocol(format!("{:?}", String::from_utf8_lossy(raw))))?;
        // 3.3, 3.7, 3.8; anything newer talks 3.8 (RFC 6143 §7.1.1), 3.4–3.6 are 3.3.
        Ok(RfbVersion(match minor {
            0..=6 => 3,
            7 => 7,
            _ => 8,
        }))
    }

    fn banner(self) -> &'static [u8; 12] {
        match self.0 {
            3 => b"RFB 003.003\n",
            7 => b"RFB 003.007\n",
            _ => b"RFB 003.008\n",
        }
    }
}

/// A VNC server connection past its security handshake, waiting for `ClientInit`.
#[derive(Debug)]
pub struct Upstream {
    stream: TcpStream,
    address: String,
}

impl Upstream {
    /// Where it is connected.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// Connects to a VNC server (`host:port`) and authenticates: VNC authentication with `password`
/// when the server offers it, else *None* if offered. Everything, connecting included, must
/// finish within `limit`.
///
/// # Errors
/// [`VncError`] saying what failed.
pub async fn connect(
    address: &str,
    password: Option<&str>,
    limit: Duration,
) -> Result<Upstream, VncError> {
    let handshake = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        server_handshake(&mut stream, password).await?;
        Ok::<_, VncError>(stream)
    };
    let stream = tokio::time::timeout(limit, handshake)
        .await
        .map_err(|_| VncError::Timeout)??;
    Ok(Upstream {
        stream,
        address: address.to_owned(),
    })
}

/// The client's half of the RFB handshake, up to (not including) `ClientInit`.
async fn server_handshake<S>(stream: &mut S, password: Option<&str>) -> Result<(), VncError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut banner = [0u8; 12];
    stream.read_exact(&mut banner).await?;
    let version = RfbVersion::parse(&banner)?;
    stream.write_all(version.banner()).await?;
    let chosen = if version.0 == 3 {
        let kind = stream.read_u32().await?;
        match kind {
            0 => return Err(VncError::Refused(read_reason(stream).await?)),
            1 | 2 => u8::try_from(kind).unwrap_or(0),
            other => {
                return Err(VncError::Protocol(format!(
                    "security type {other} is not supported"
                )))
            }
        }
    } else {
        let count = stream.read_u8().await?;
        if count == 0 {
            return Err(VncError::Refused(read_reason(stream).await?));
        }
        let mut offered = vec![0u8; usize::from(count)];
        stream.read_exact(&mut offered).await?;
        let pick = if password.is_some() && offered.contains(&2) {
            2
        } else if offered.contains(&1) {
            1
        } else if offered.contains(&2) {
            return Err(VncError::Refused(
                "it asks for a VNC password and the image record has none".into(),
            ));
        } else {
            return Err(VncError::Protocol(format!(
                "it offers security types {offered:?}; the bridge speaks VncAuth (2) and None (1): \
                 start it with -SecurityTypes VncAuth"
            )));
        };
        stream.write_all(&[pick]).await?;
        pick
    };
    if chosen == 2 {
        let mut challenge = [0u8; 16];
        stream.read_exact(&mut challenge).await?;
        let response = vnc_auth_response(password.unwrap_or(""), &challenge);
        stream.write_all(&response).await?;
    }
    // SecurityResult: always after VncAuth; after None only from 3.8 on.
    if chosen == 2 || version.0 >= 8 {
        let result = stream.read_u32().await?;
        if result != 0 {
            let reason = if version.0 >= 8 {
                read_reason(stream).await.unwrap_or_default()
            } else {
                String::new()
            };
            let reason = if reason.is_empty() {
                "authentication failed (is the image record's VNC password the server's?)".into()
            } else {
                reason
            };
            return Err(VncError::Refused(reason));
        }
    }
    Ok(())
}

async fn read_reason<S: AsyncRead + Unpin>(stream: &mut S) -> Result<String, VncError> {
    let len = stream.read_u32().await?.min(MAX_REASON);
    let mut text = vec![0u8; len as usize];
    stream.read_exact(&mut text).await?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// VNC authentication's answer to a challenge: the challenge DES-encrypted (ECB) with the first
/// 8 bytes of the password, zero-padded, each key byte's bits mirrored.
pub fn vnc_auth_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let cipher = des::Des::new(&key.into());
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(block.into());
    }
    out
}

/// What a websocket upgrade needs from the request.
#[derive(Debug)]
pub struct WsAccept {
    accept: String,
    protocol: Option<&'static str>,
}

/// Checks that `headers` ask for a websocket (version 13) and works out the answer; the
/// subprotocol `binary` is echoed when offered (noVNC may ask for it).
///
/// # Errors
/// [`VncError::BadUpgrade`].
pub fn check_upgrade(headers: &HeaderMap) -> Result<WsAccept, VncError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(VncError::BadUpgrade("Upgrade: websocket is missing"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return Err(VncError::BadUpgrade("Sec-WebSocket-Version must be 13"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(VncError::BadUpgrade("Sec-WebSocket-Key is missing"))?;
    let protocol = has_token(header::SEC_WEBSOCKET_PROTOCOL, "binary").then_some("binary");
    Ok(WsAccept {
        accept: derive_accept_key(key.as_bytes()),
        protocol,
    })
}

/// Live counters of one bridge.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Bytes from the browser to the VNC server.
    pub up: AtomicU64,
    /// Bytes from the VNC server to the browser.
    pub down: AtomicU64,
    /// Set when the bridge has ended.
    pub closed: AtomicBool,
}

/// Called now and then while bytes move (at most every `activity_every`), so the
/// hub can count desktop use as activity.
pub type ActivityHook = Arc<dyn Fn() + Send + Sync>;

/// Options of [`accept`].
#[derive(Clone)]
pub struct BridgeOptions {
    /// For logs: which desktop this is (e.g. `/user/alice/node-1/`).
    pub label: String,
    /// Called at most every `activity_every` while traffic flows.
    pub on_activity: Option<ActivityHook>,
    /// See `on_activity`.
    pub activity_every: Duration,
    /// How long the browser may take over its half of the RFB handshake.
    pub handshake_timeout: Duration,
    /// Counters the caller may watch (tests, metrics).
    pub stats: Arc<BridgeStats>,
    /// Held until the bridge ends, however it ends: the caller's count of open desktops.
    pub open: Option<Arc<crate::ConnectionGuard>>,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            label: String::new(),
            on_activity: None,
            activity_every: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(30),
            stats: Arc::default(),
            open: None,
        }
    }
}

/// Answers a checked websocket upgrade with `101 Switching Protocols` and, once hyper hands over
/// the connection (its `OnUpgrade`, taken from the request's `extensions`), bridges it to
/// `upstream` in a task of its own.
///
/// # Errors
/// [`VncError::BadUpgrade`] if the request cannot be upgraded (no `OnUpgrade` extension: it did
/// not come straight from hyper).
pub fn accept(
    upgrade: WsAccept,
    extensions: &mut http::Extensions,
    upstream: Upstream,
    options: BridgeOptions,
) -> Result<Response<()>, VncError> {
    let on_upgrade = extensions
        .remove::<OnUpgrade>()
        .ok_or(VncError::BadUpgrade("this connection cannot be upgraded"))?;
    let label = options.label.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(error) => {
                tracing::debug!(desktop = %label, %error, "desktop websocket upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        bridge(ws, upstream.stream, options).await;
    });
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&upgrade.accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = upgrade.protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    Ok(response)
}

/// Runs the browser's half of the handshake over `ws`, then relays until either side closes.
/// Public for benchmarks and tests that bring their own websocket.
pub async fn bridge<S>(ws: WebSocketStream<S>, tcp: TcpStream, options: BridgeOptions)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let stats = Arc::clone(&options.stats);
    let (mut sink, mut source) = ws.split();
    let handshake = tokio::time::timeout(
        options.handshake_timeout,
        client_handshake(&mut sink, &mut source),
    )
    .await;
    let leftover = match handshake {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            tracing::debug!(desktop = %options.label, %error, "browser's RFB handshake failed");
            let _ = sink.send(Message::Close(None)).await;
            stats.closed.store(true, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            tracing::debug!(desktop = %options.label, "browser's RFB handshake timed out");
            let _ = sink.send(Message::Close(None)).await;
            stats.closed.store(true, Ordering::Relaxed);
            return;
        }
    };
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let activity = Activity::new(&options);

    let upward = async {
        if !leftover.is_empty() {
            tcp_write.write_all(&leftover).await?;
            stats.up.fetch_add(leftover.len() as u64, Ordering::Relaxed);
        }
        while let Some(message) = source.next().await {
            let data = match message.map_err(io::Error::other)? {
                Message::Binary(data) => data,
                Message::Text(text) => Bytes::from(text.as_bytes().to_vec()),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            tcp_write.write_all(&data).await?;
            stats.up.fetch_add(data.len() as u64, Ordering::Relaxed);
            activity.touch();
        }
        tcp_write.shutdown().await?;
        Ok::<_, io::Error>(())
    };
    let downward = async {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            buf.reserve(READ_CHUNK);
            // Frames are fed (buffered by tungstenite, written out once its write buffer fills,
            // and awaited when the socket is full: backpressure) while the VNC server has more
            // to read; the websocket is flushed only when it has nothing more right now.
            let n = match tcp_read.try_read_buf(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    sink.flush().await.map_err(io::Error::other)?;
                    tcp_read.read_buf(&mut buf).await?
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                break;
            }
            let chunk = buf.split().freeze();
            stats.down.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            sink.feed(Message::Binary(chunk))
                .await
                .map_err(io::Error::other)?;
            activity.touch();
        }
        sink.flush().await.map_err(io::Error::other)?;
        Ok::<_, io::Error>(())
    };
    let ended = tokio::select! {
        r = upward => ("browser", r),
        r = downward => ("vnc server", r),
    };
    // Either side is done: close the websocket (a no-op if the browser already did); dropping
    // the TCP halves closes the VNC connection.
    let frame = CloseFrame {
        code: if ended.1.is_ok() {
            CloseCode::Normal
        } else {
            CloseCode::Error
        },
        reason: "".into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
    stats.closed.store(true, Ordering::Relaxed);
    tracing::debug!(
        desktop = %options.label,
        closed_by = ended.0,
        error = ended.1.err().map(|e| e.to_string()),
        bytes.up = stats.up.load(Ordering::Relaxed),
        bytes.down = stats.down.load(Ordering::Relaxed),
        seconds = started.elapsed().as_secs(),
        "desktop connection closed"
    );
}

/// The server's half of the RFB handshake towards the browser, offering only *None*. Returns the
/// bytes the browser sent beyond it (normally none; its `ClientInit` comes later).
async fn client_handshake<Tx, Rx>(sink: &mut Tx, source: &mut Rx) -> Result<Bytes, VncError>
where
    Tx: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
    Rx: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut inbox = BytesMut::new();
    let send = |data: &'static [u8]| Message::Binary(Bytes::from_static(data));
    sink.send(send(b"RFB 003.008\n")).await.map_err(ws_io)?;
    fill(source, &mut inbox, 12).await?;
    let mut banner = [0u8; 12];
    banner.copy_from_slice(&inbox.split_to(12));
    let version = RfbVersion::parse(&banner)?;
    if version.0 == 3 {
        sink.send(send(&[0, 0, 0, 1])).await.map_err(ws_io)?;
    } else {
        sink.send(send(&[1, 1])).await.map_err(ws_io)?;
        fill(source, &mut inbox, 1).await?;
        let choice = inbox.split_to(1);
        if choice.first() != Some(&1) {
            return Err(VncError::Protocol(format!(
                "the browser chose security type {choice:?}, not None"
            )));
        }
        if version.0 >= 8 {
            sink.send(send(&[0, 0, 0, 0])).await.map_err(ws_io)?;
        }
    }
    Ok(inbox.freeze())
}

/// Reads websocket messages into `inbox` until it holds at least `want` bytes.
async fn fill<Rx>(source: &mut Rx, inbox: &mut BytesMut, want: usize) -> Result<(), VncError>
where
    Rx: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while inbox.len() < want {
        match source.next().await {
            Some(Ok(Message::Binary(data))) => inbox.extend_from_slice(&data),
            Some(Ok(Message::Text(text))) => inbox.extend_from_slice(text.as_bytes()),
            Some(Ok(Message::Close(_))) | None => {
                return Err(VncError::Io(io::ErrorKind::UnexpectedEof.into()))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ws_io(e)),
        }
    }
    Ok(())
}

fn ws_io(e: tokio_tungstenite::tungstenite::Error) -> VncError {
    VncError::Io(io::Error::other(e))
}

/// Rate-limits the activity hook.
struct Activity {
    hook: Option<ActivityHook>,
    every_ms: u64,
    origin: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new(options: &BridgeOptions) -> Self {
        let every_ms = u64::try_from(options.activity_every.as_millis()).unwrap_or(u64::MAX);
        Self {
            hook: options.on_activity.clone(),
            every_ms,
            origin: Instant::now(),
            // The first traffic reports at once.
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let Some(hook) = &self.hook else { return };
        let now = u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(self.every_ms);
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.every_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            hook();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn vnc_auth_matches_a_known_answer() {
        // The expected bytes come from noVNC's own DES (core/des.js, as its RFB client answers
        // the same challenge with the same password).
        let challenge = *b"0123456789abcdef";
        let a = vnc_auth_response("password", &challenge);
        let hex: String = a.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5645abeb5f1e6475e8feb11beb66ea19");
        let b = vnc_auth_response("password-and-more", &challenge);
        assert_eq!(a, b, "only the first 8 bytes count");
        assert_ne!(a, vnc_auth_response("passwore", &challenge));
    }

    #[test]
    fn versions_are_read_as_rfc_6143_says() {
        assert_eq!(
            RfbVersion::parse(b"RFB 003.008\n").ok(),
            Some(RfbVersion(8))
        );
        assert_eq!(
            RfbVersion::parse(b"RFB 003.889\n").ok(),
            Some(RfbVersion(8))
        );
        assert_eq!(
            RfbVersion::parse(b"RFB 003.007\n").ok(),
            Some(RfbVersion(7))
        );
        assert_eq!(
            RfbVersion::parse(b"RFB 003.005\n").ok(),
            Some(RfbVersion(3))
        );
        assert!(RfbVersion::parse(b"HTTP/1.1 200").is_err());
    }

    #[test]
    fn upgrades_need_the_websocket_headers() {
        let mut h = HeaderMap::new();
        assert!(check_upgrade(&h).is_err());
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        assert!(check_upgrade(&h).is_err());
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("binary, base64"),
        );
        let accepted = check_upgrade(&h).unwrap();
        assert_eq!(accepted.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(accepted.protocol, Some("binary"));
    }

    /// A fake VNC server: VncAuth with `password`, checks the answer, then echoes.
    async fn fake_server(password: &'static str) -> (String, tokio::task::JoinHandle<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"RFB 003.008\n").await.unwrap();
            let mut v = [0u8; 12];
            s.read_exact(&mut v).await.unwrap();
            s.write_all(&[2, 19, 2]).await.unwrap();
            assert_eq!(s.read_u8().await.unwrap(), 2);
            let challenge: [u8; 16] = *b"0123456789abcdef";
            s.write_all(&challenge).await.unwrap();
            let mut answer = [0u8; 16];
            s.read_exact(&mut answer).await.unwrap();
            let ok = answer == vnc_auth_response(password, &challenge);
            if !ok {
                s.write_all(&[0, 0, 0, 1, 0, 0, 0, 3]).await.unwrap();
                s.write_all(b"bad").await.unwrap();
                return false;
            }
            s.write_all(&[0, 0, 0, 0]).await.unwrap();
            let mut buf = [0u8; 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return true;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_with_the_servers_reason() {
        let (addr, task) = fake_server("secret1").await;
        let err = connect(&addr, Some("wrong12"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, VncError::Refused(ref m) if m == "bad"),
            "{err}"
        );
        assert!(!task.await.unwrap());
    }

    #[tokio::test]
    async fn the_bridge_authenticates_offers_none_and_relays_both_ways() {
        let (addr, task) = fake_server("secret1").await;
        let upstream = connect(&addr, Some("secret1"), Duration::from_secs(5))
            .await
            .unwrap();
        // A websocket pair over a local TCP connection.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_addr = listener.local_addr().unwrap();
        let stats = Arc::new(BridgeStats::default());
        let options = BridgeOptions {
            stats: Arc::clone(&stats),
            ..BridgeOptions::default()
        };
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(s).await.unwrap();
            bridge(ws, upstream.stream, options).await;
        });
        let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{ws_addr}/"))
            .await
            .unwrap();
        let mut inbox = BytesMut::new();
        fill(&mut client, &mut inbox, 12).await.unwrap();
        assert_eq!(&inbox.split_to(12)[..], b"RFB 003.008\n");
        client
            .send(Message::Binary(Bytes::from_static(b"RFB 003.008\n")))
            .await
            .unwrap();
        fill(&mut client, &mut inbox, 2).await.unwrap();
        assert_eq!(&inbox.split_to(2)[..], &[1, 1], "only None is offered");
        client
            .send(Message::Binary(Bytes::from_static(&[1])))
            .await
            .unwrap();
        fill(&mut client, &mut inbox, 4).await.unwrap();
        assert_eq!(&inbox.split_to(4)[..], &[0, 0, 0, 0]);
        // Now raw bytes: the fake server echoes.
        let payload = Bytes::from(vec![7u8; 200_000]);
        client.send(Message::Binary(payload.clone())).await.unwrap();
        fill(&mut client, &mut inbox, payload.len()).await.unwrap();
        assert_eq!(inbox.split_to(payload.len()).freeze(), payload);
        client.close(None).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert!(stats.closed.load(Ordering::Relaxed));
        assert_eq!(stats.up.load(Ordering::Relaxed), 200_000);
        assert!(tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap());
    }

    #[tokio::test]
    async fn the_browser_is_closed_when_the_vnc_server_goes_away() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let vnc = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"RFB 003.008\n").await.unwrap();
            let mut v = [0u8; 12];
            s.read_exact(&mut v).await.unwrap();
            s.write_all(&[1, 1]).await.unwrap();
            assert_eq!(s.read_u8().await.unwrap(), 1);
            s.write_all(&[0, 0, 0, 0]).await.unwrap();
            // Then hang up.
        });
        let upstream = connect(&addr, None, Duration::from_secs(5)).await.unwrap();
        vnc.await.unwrap();
        let ws_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_addr = ws_listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = ws_listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(s).await.unwrap();
            bridge(ws, upstream.stream, BridgeOptions::default()).await;
        });
        let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{ws_addr}/"))
            .await
            .unwrap();
        let mut inbox = BytesMut::new();
        fill(&mut client, &mut inbox, 12).await.unwrap();
        client
            .send(Message::Binary(Bytes::from_static(b"RFB 003.008\n")))
            .await
            .unwrap();
        fill(&mut client, &mut inbox, 14).await.unwrap();
        client
            .send(Message::Binary(Bytes::from_static(&[1])))
            .await
            .unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match client.next().await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .unwrap();
        assert!(closed);
    }
}
