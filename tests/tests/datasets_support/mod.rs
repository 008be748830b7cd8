//! What the datasets tests share: one caller's view of the datasets API (a token, or nobody),
//! uploads in chunks following tus, files of fixed-seed bytes streamed from disk, sha256 from
//! coreutils' `sha256sum`, ZIP archives checked and extracted by Python's `zipfile`, the storage
//! pools of `tests/setup-storage.sh`, and a TCP relay that cuts its connections after a given
//! number of bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use tests::{encode, expect_json, random_hex, Hub};

/// The tus protocol version every upload request names.
pub const TUS: &str = "1.0.0";
/// The media type of a tus `PATCH` body.
pub const OFFSET_OCTETS: &str = "application/offset+octet-stream";
/// sha256 of nothing.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One caller of the API: a token, or nobody (`token: None`), against the hub's own address or
/// another one that leads to it (a relay).
#[derive(Clone)]
pub struct Api<'h> {
    /// The hub.
    pub hub: &'h Hub,
    /// `token …`, or no credentials at all.
    pub token: Option<String>,
    /// `http://host:port` the requests go to.
    pub base: String,
}

impl<'h> Api<'h> {
    /// A caller with `token`.
    pub fn new(hub: &'h Hub, token: &str) -> Self {
        Self {
            hub,
            token: Some(token.to_owned()),
            base: hub.base_url().to_owned(),
        }
    }

    /// Nobody: no token, no cookie.
    pub fn anonymous(hub: &'h Hub) -> Self {
        Self {
            hub,
            token: None,
            base: hub.base_url().to_owned(),
        }
    }

    /// The same caller through another address (e.g. a relay in front of the hub).
    pub fn via(&self, addr: SocketAddr) -> Self {
        Self {
            hub: self.hub,
            token: self.token.clone(),
            base: format!("http://{addr}"),
        }
    }

    /// A request to `path` (starting with `/`).
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self
            .hub
            .client()
            .request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.header("Authorization", format!("token {token}")),
            None => builder,
        }
    }

    /// Creates `name` with `extra` fields (description, tags, …); returns the dataset.
    pub async fn create(&self, name: &str, extra: Value) -> Result<Value> {
        let mut body = json!({ "name": name });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let resp = self
            .req(Method::POST, "/hub/api/datasets")
            .json(&body)
            .send()
            .await?;
        expect_json(resp, StatusCode::CREATED, &format!("create dataset {name}")).await
    }

    /// The dataset `owner/name` (200 expected).
    pub async fn dataset(&self, owner: &str, name: &str) -> Result<Value> {
        let resp = self
            .req(Method::GET, &dataset_path(owner, name))
            .send()
            .await?;
        expect_json(resp, StatusCode::OK, &format!("get {owner}/{name}")).await
    }

    /// One page of a folder's listing.
    pub async fn tree_page(
        &self,
        owner: &str,
        name: &str,
        folder: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Value> {
        let resp = self
            .req(Method::GET, &format!("{}/tree", dataset_path(owner, name)))
            .query(&[
                ("path", folder.to_owned()),
                ("offset", offset.to_string()),
                ("limit", limit.to_string()),
            ])
            .send()
            .await?;
        expect_json(
            resp,
            StatusCode::OK,
            &format!("tree of {owner}/{name}:{folder:?} at {offset}"),
        )
        .await
    }

    /// Every entry of a folder, read in pages of 1000.
    pub async fn tree(&self, owner: &str, name: &str, folder: &str) -> Result<Vec<Value>> {
        let mut entries = Vec::new();
        loop {
            let page = self
                .tree_page(owner, name, folder, entries.len(), 1000)
                .await?;
            let got = page["entries"]
                .as_array()
                .with_context(|| format!("a tree page without entries: {page}"))?;
            entries.extend(got.iter().cloned());
            let total = page["total"]
                .as_u64()
                .context("a tree page without total")?;
            if got.is_empty() || entries.len() as u64 >= total {
                return Ok(entries);
            }
        }
    }

    /// Declares an upload (the raw answer).
    pub async fn start_upload(
        &self,
        owner: &str,
        name: &str,
        path: &str,
        size: u64,
    ) -> Result<Response> {
        Ok(self
            .req(
                Method::POST,
                &format!("{}/uploads", dataset_path(owner, name)),
            )
            .header("Tus-Resumable", TUS)
            .json(&json!({ "path": path, "size": size }))
            .send()
            .await?)
    }

    /// Declares an upload that must be accepted; returns its JSON (`id`, `url`, …).
    pub async fn started_upload(
        &self,
        owner: &str,
        name: &str,
        path: &str,
        size: u64,
    ) -> Result<Value> {
        let resp = self.start_upload(owner, name, path, size).await?;
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let upload = expect_json(
            resp,
            StatusCode::CREATED,
            &format!("start the upload of {path:?}"),
        )
        .await?;
        ensure!(
            upload["path"].is_string()
                && upload["size"] == json!(size)
                && upload["url"]
                    .as_str()
                    .is_some_and(|u| u.contains("/hub/api/uploads/")),
            "the new upload: {upload}"
        );
        let url = upload["url"].as_str().unwrap_or_default();
        ensure!(
            location.as_deref().is_some_and(|l| l.ends_with(url)),
            "Location {location:?} is not the upload's url {url}"
        );
        Ok(upload)
    }

    /// Sends `body` at `offset` of the upload at `url` (the raw answer).
    pub async fn patch(&self, url: &str, offset: u64, body: Vec<u8>) -> Result<Response> {
        Ok(self
            .req(Method::PATCH, url)
            .header("Tus-Resumable", TUS)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", OFFSET_OCTETS)
            .body(body)
            .send()
            .await?)
    }

    /// `HEAD` of an upload: its `Upload-Offset` (200/204 expected).
    pub async fn upload_offset(&self, url: &str) -> Result<u64> {
        let resp = self
            .req(Method::HEAD, url)
            .header("Tus-Resumable", TUS)
            .send()
            .await?;
        ensure!(resp.status().is_success(), "HEAD {url}: {}", resp.status());
        header_u64(&resp, "upload-offset")
    }

    /// Uploads `bytes` as `path`, `chunk` bytes per `PATCH`, checking `Upload-Offset` after
    /// each; returns the last `PATCH`'s answer offset. The file must be listed nowhere until the
    /// last byte arrived.
    pub async fn upload(
        &self,
        owner: &str,
        name: &str,
        path: &str,
        bytes: &[u8],
        chunk: usize,
    ) -> Result<()> {
        let upload = self
            .started_upload(owner, name, path, bytes.len() as u64)
            .await?;
        if bytes.is_empty() {
            ensure!(
                upload["complete"] == json!(true),
                "a 0-byte upload: {upload}"
            );
            return Ok(());
        }
        ensure!(
            upload["offset"] == json!(0) && upload["complete"] == json!(false),
            "{upload}"
        );
        let url = upload["url"].as_str().unwrap_or_default().to_owned();
        let mut offset = 0usize;
        for piece in bytes.chunks(chunk.max(1)) {
            let resp = self.patch(&url, offset as u64, piece.to_vec()).await?;
            let status = resp.status();
            if status != StatusCode::NO_CONTENT {
                bail!(
                    "PATCH {path:?} at {offset}: {status} {}",
                    resp.text().await.unwrap_or_default()
                );
            }
            offset += piece.len();
            let answered = header_u64(&resp, "upload-offset")?;
            ensure!(
                answered == offset as u64,
                "PATCH {path:?} answered Upload-Offset {answered}, not {offset}"
            );
            if offset < bytes.len() {
                ensure!(
                    self.upload_offset(&url).await? == offset as u64,
                    "HEAD after {offset} bytes of {path:?}"
                );
            }
        }
        Ok(())
    }

    /// Downloads a file whole (200 expected).
    pub async fn download(&self, owner: &str, name: &str, path: &str) -> Result<Vec<u8>> {
        let resp = self
            .req(Method::GET, &file_path(owner, name, path))
            .send()
            .await?;
        let status = resp.status();
        if status != StatusCode::OK {
            bail!(
                "download {owner}/{name}/{path}: {status} {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(resp.bytes().await?.to_vec())
    }

    /// Downloads a folder (`""`: everything) as ZIP (200 expected).
    pub async fn zip(&self, owner: &str, name: &str, folder: &str) -> Result<Vec<u8>> {
        let resp = self
            .req(Method::GET, &format!("{}/zip", dataset_path(owner, name)))
            .query(&[("path", folder)])
            .send()
            .await?;
        let status = resp.status();
        if status != StatusCode::OK {
            bail!(
                "zip of {owner}/{name}:{folder:?}: {status} {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(resp.bytes().await?.to_vec())
    }
}

/// `/hub/api/datasets/{owner}/{name}`.
pub fn dataset_path(owner: &str, name: &str) -> String {
    format!("/hub/api/datasets/{}/{}", encode(owner), encode(name))
}

/// `/hub/api/datasets/{owner}/{name}/files/{path}`, each component encoded.
pub fn file_path(owner: &str, name: &str, path: &str) -> String {
    let encoded: Vec<String> = path.split('/').map(encode).collect();
    format!("{}/files/{}", dataset_path(owner, name), encoded.join("/"))
}

/// A header's value as a number.
pub fn header_u64(resp: &Response, name: &str) -> Result<u64> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no numeric {name} header in {:?}", resp.headers()))
}

/// Creates user `name` and a token of theirs with the default role.
pub async fn user_with_token(hub: &Hub, name: &str) -> Result<String> {
    hub.create_user(name, &format!("{name}-password-1")).await?;
    hub.create_token(name, json!({})).await
}

/// `n` bytes of a fixed-seed sequence (xorshift64*), the same on every run.
pub fn seeded_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; n];
    Seeded::new(seed).fill(&mut out);
    out
}

/// A xorshift64* sequence of bytes.
pub struct Seeded(u64);

impl Seeded {
    /// Starts at `seed` (0 is replaced: xorshift never leaves it).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let word = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Writes `size` fixed-seed bytes to `path`, 1 MiB at a time (never the whole file in memory).
pub fn write_seeded_file(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut seeded = Seeded::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = buf.len().min(usize::try_from(left)?);
        seeded.fill(&mut buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// sha256 (hex) of bytes, by `sha256sum`.
pub fn sha256_hex(bytes: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run sha256sum")?;
    child
        .stdin
        .take()
        .context("sha256sum's stdin")?
        .write_all(bytes)?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "sha256sum failed: {}", out.status);
    first_word(&out.stdout)
}

/// sha256 (hex) of a file, by `sha256sum`.
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("cannot run sha256sum")?;
    ensure!(
        out.status.success(),
        "sha256sum {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    first_word(&out.stdout)
}

fn first_word(out: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(out);
    let word = text.split_whitespace().next().unwrap_or_default();
    ensure!(word.len() == 64, "not a sha256: {text}");
    Ok(word.to_owned())
}

/// What Python's `zipfile` finds in an archive: it runs `testzip()` (every CRC checked), extracts
/// everything into `into`, and returns each member's name and size; `unzip -t` must agree.
pub fn unzip(archive: &[u8], into: &Path) -> Result<BTreeMap<String, u64>> {
    std::fs::create_dir_all(into)?;
    let zip_path = into.with_extension("zip");
    std::fs::write(&zip_path, archive)?;
    let script = "\
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
assert bad is None, f'bad CRC in {bad}'
z.extractall(sys.argv[2])
print(json.dumps({i.filename: i.file_size for i in z.infolist()}, ensure_ascii=False))
";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&zip_path)
        .arg(into)
        .output()
        .context("cannot run python3")?;
    ensure!(
        out.status.success(),
        "Python's zipfile refused the archive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: BTreeMap<String, u64> =
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "zipfile's listing: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
    let test = Command::new("unzip")
        .arg("-tq")
        .arg(&zip_path)
        .output()
        .context("cannot run unzip")?;
    ensure!(
        test.status.success(),
        "unzip -t failed: {}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    Ok(listing)
}

/// A mount point `tests/setup-storage.sh` made, from its variable.
pub fn mount_point(variable: &str) -> Result<PathBuf> {
    match std::env::var(variable) {
        Ok(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => bail!(
            "{variable} is not set: run `tests/setup-storage.sh && . .cache/storage-env.sh` \
             first (as root; or run every test with `tests/run`, which does it)"
        ),
    }
}

/// Folders (and files) of this test on the shared mounts, removed at the end.
#[derive(Default)]
pub struct Scratch(Vec<PathBuf>);

impl Scratch {
    /// A new folder of this test below `parent`.
    pub fn folder(&mut self, parent: &Path) -> Result<PathBuf> {
        let dir = parent.join(format!("t-{}", random_hex(6)));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.0.push(dir.clone());
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Every storage pool, as the administrator sees them.
pub async fn pools(hub: &Hub) -> Result<Vec<Value>> {
    let resp = hub
        .admin(Method::GET, "/hub/api/storage-pools")
        .send()
        .await?;
    let list = expect_json(resp, StatusCode::OK, "list pools").await?;
    list.as_array()
        .cloned()
        .context("the pool list is not an array")
}

/// One pool by name.
pub async fn pool_named(hub: &Hub, name: &str) -> Result<Value> {
    pools(hub)
        .await?
        .into_iter()
        .find(|p| p["name"] == name)
        .with_context(|| format!("no pool {name}"))
}

/// How many datasets a pool holds, from its `contents`.
pub fn datasets_on(pool: &Value) -> u64 {
    pool["contents"]["dataset"].as_u64().unwrap_or(0)
}

/// Adds a pool (201 expected).
pub async fn add_pool(hub: &Hub, name: &str, path: &Path, fs_type: &str) -> Result<Value> {
    let resp = hub
        .admin(Method::POST, "/hub/api/storage-pools")
        .json(&json!({ "name": name, "path": path, "fs_type": fs_type }))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, &format!("add pool {name}")).await
}

/// Sets a pool's state (`active`, `draining`).
pub async fn set_pool_state(hub: &Hub, name: &str, state: &str) -> Result<Value> {
    let pool = pool_named(hub, name).await?;
    let resp = hub
        .admin(
            Method::PATCH,
            &format!("/hub/api/storage-pools/{}", pool["id"]),
        )
        .json(&json!({ "state": state }))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, &format!("pool {name} → {state}")).await
}

/// A dataset's folder on its pool: `{pool}/dataset/{id}`, found among the pools' folders.
pub async fn dataset_dir(hub: &Hub, dataset: &Value) -> Result<PathBuf> {
    let id = dataset["id"]
        .as_i64()
        .with_context(|| format!("a dataset without id: {dataset}"))?;
    for pool in pools(hub).await? {
        let dir = Path::new(pool["path"].as_str().unwrap_or_default())
            .join("dataset")
            .join(id.to_string());
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    bail!("dataset {id} has no folder on any pool")
}

/// Every regular file below `dir` with its size, paths relative to `dir`.
pub fn files_below(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(dir)?
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, entry.metadata()?.len());
            }
        }
    }
    Ok(out)
}

/// Fills the filesystem holding `dir` with zeros in `dir/filler` until it is full (ENOSPC).
pub fn fill_to_enospc(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut small = vec![0u8; 4096];
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_all()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e).context("filling a pool"),
        }
    }
    // The last blocks, 4 KiB at a time.
    loop {
        match file.write_all(&small).and_then(|()| file.sync_all()) {
            Ok(()) => small.fill(0),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(path),
            Err(e) => return Err(e).context("filling a pool"),
        }
    }
}

/// A TCP relay in front of the hub that cuts every connection once the bytes sent towards the
/// hub (over all connections together) reach the next of its cut points.
pub struct CuttingRelay {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How many cuts it has made.
    pub cuts: Arc<AtomicUsize>,
    /// Bytes sent towards the hub so far.
    pub forwarded: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttingRelay {
    /// Listens on 127.0.0.1 and relays to `target`; cuts at each of `cut_at` (ascending).
    pub async fn start(target: String, cut_at: Vec<u64>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cuts = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let cut_at = Arc::new(cut_at);
        let (c, f) = (cuts.clone(), forwarded.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                tokio::spawn(relay(
                    client,
                    upstream,
                    cut_at.clone(),
                    c.clone(),
                    f.clone(),
                ));
            }
        });
        Ok(Self {
            addr,
            cuts,
            forwarded,
            accept,
        })
    }
}

impl Drop for CuttingRelay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    upstream: tokio::net::TcpStream,
    cut_at: Arc<Vec<u64>>,
    cuts: Arc<AtomicUsize>,
    forwarded: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let before = forwarded.fetch_add(n as u64, Ordering::SeqCst);
        let done = cuts.load(Ordering::SeqCst);
        let next_cut = cut_at.get(done).copied();
        if let Some(cut) = next_cut.filter(|cut| before + n as u64 >= *cut) {
            // Forward up to the cut point, then drop both connections mid-request.
            let keep = usize::try_from(cut.saturating_sub(before))
                .unwrap_or(n)
                .min(n);
            let _ = upstream_write.write_all(&buf[..keep]).await;
            forwarded.fetch_sub((n - keep) as u64, Ordering::SeqCst);
            cuts.fetch_add(1, Ordering::SeqCst);
            back.abort();
            return;
        }
        if upstream_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = upstream_write.shutdown().await;
    let _ = back.await;
}

/// Sends one request with `target` exactly as given (no URL parser resolves `..` or re-encodes
/// anything) and `token`, and reads the whole answer.
pub async fn raw_get(
    addr: &str,
    method: &str,
    target: &str,
    token: &str,
) -> Result<tests::RawResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: token {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await
    .context("no complete answer within 30 s")??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("not an HTTP answer: {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status line: {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || after.len() < size {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    Ok(tests::RawResponse {
        status,
        headers,
        body,
    })
}
