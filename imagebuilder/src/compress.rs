//! Tar bytes → compressed layer file, hashing both sides in the same pass.
//!
//! ```text
//! tar ─► sha256 (diff_id) ─► gzip | parallel gzip | zstd ─► sha256 (digest) ─► temp file
//! ```

use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::layer::{LayerScan, TarSummary};
use crate::progress::Signals;

/// How the layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Compression {
    /// gzip (`tar+gzip`), readable by every runtime. With `threads > 1` the stream is cut into
    /// `block_size` blocks compressed in parallel and written as consecutive gzip members — one
    /// valid gzip file (RFC 1952 allows several members) that every gunzip reads. A block
    /// whose first 64 KiB do not shrink by 3% at deflate level 2 (weights, archives, media) is stored
    /// uncompressed, which saves most of the CPU time on such data.
    Gzip {
        /// 1 (fastest) to 9 (smallest).
        level: u32,
        /// Compression threads; 1 gives a classic single-member stream.
        threads: usize,
        /// Uncompressed bytes per member when `threads > 1`.
        block_size: usize,
    },
    /// zstd (`tar+zstd`): faster and smaller; needs containerd ≥ 1.5 or Docker ≥ 23 to pull.
    Zstd {
        /// 1 to 19.
        level: i32,
        /// Worker threads (0: single-threaded).
        threads: u32,
    },
}

impl Default for Compression {
    /// Parallel gzip at level 6 on every core.
    fn default() -> Self {
        Compression::Gzip {
            level: 6,
            threads: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            block_size: 1024 * 1024,
        }
    }
}

impl Compression {
    /// Single-threaded gzip at `level`.
    pub fn gzip(level: u32) -> Self {
        Compression::Gzip {
            level,
            threads: 1,
            block_size: 1024 * 1024,
        }
    }

    /// Whether the layer is zstd (which Docker schema2 manifests cannot describe).
    pub fn is_zstd(&self) -> bool {
        matches!(self, Compression::Zstd { .. })
    }

    /// The OCI layer media type.
    pub fn oci_media_type(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd { .. } => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// The compressed layer in a temporary file (deleted when this is dropped).
#[derive(Debug)]
pub struct LayerFile {
    file: tempfile::NamedTempFile,
    /// `sha256:…` of the compressed file: the manifest's layer digest.
    pub digest: String,
    /// `sha256:…` of the uncompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: String,
    /// Compressed size in bytes.
    pub size: u64,
    /// Uncompressed tar size in bytes.
    pub uncompressed_size: u64,
    /// What the tar holds.
    pub tar: TarSummary,
    /// How it was compressed.
    pub compression: Compression,
}

impl LayerFile {
    /// Where the compressed layer is.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Keeps the file (e.g. for inspection) and returns its path.
    pub fn persist(self, path: &Path) -> Result<PathBuf> {
        self.file.persist(path).map_err(|e| {
            Error::io(
                format!("cannot keep the layer as {}", path.display()),
                e.error,
            )
        })?;
        Ok(path.to_path_buf())
    }
}

/// Writes `scan` as a compressed tar into a new temporary file in `temp_dir`.
pub fn write_layer_file(
    scan: &LayerScan,
    compression: &Compression,
    temp_dir: &Path,
    signals: &Signals,
) -> Result<LayerFile> {
    write_layer_file_to(scan, compression, temp_dir, signals, None)
}

/// A message to the uploader that streams the layer while it is being written.
#[derive(Debug)]
pub enum LayerChunk {
    /// The next compressed bytes.
    Data(bytes::Bytes),
    /// The layer is complete. A channel that closes without it means the writer failed.
    End,
}

/// Like [`write_layer_file`], and also sends the compressed bytes, in pieces of
/// `chunk_size`, to `chunks` as they are produced, so the upload runs alongside compression.
pub fn write_layer_file_streaming(
    scan: &LayerScan,
    compression: &Compression,
    temp_dir: &Path,
    signals: &Signals,
    chunks: tokio::sync::mpsc::Sender<LayerChunk>,
    chunk_size: usize,
) -> Result<LayerFile> {
    write_layer_file_to(
        scan,
        compression,
        temp_dir,
        signals,
        Some(ChunkTee {
            chunks,
            pending: bytes::BytesMut::with_capacity(chunk_size),
            chunk_size,
        }),
    )
}

fn write_layer_file_to(
    scan: &LayerScan,
    compression: &Compression,
    temp_dir: &Path,
    signals: &Signals,
    tee: Option<ChunkTee>,
) -> Result<LayerFile> {
    let file = tempfile::Builder::new()
        .prefix("xiji-layer-")
        .suffix(".tar.partial")
        .tempfile_in(temp_dir)
        .map_err(|e| {
            Error::io(
                format!("cannot create a temporary file in {}", temp_dir.display()),
                e,
            )
        })?;
    let out = file
        .as_file()
        .try_clone()
        .map_err(|e| Error::io("cannot open the temporary layer file", e))?;
    let sink = LayerSink {
        file: BufWriter::with_capacity(1 << 20, out),
        tee,
    };
    let compressed = HashingWriter::new(sink, Some(signals));
    let encoder = Encoder::new(compressed, compression)?;
    let uncompressed = HashingWriter::new(encoder, None);
    let (uncompressed, tar) = scan.write_tar(uncompressed, signals)?;
    let (encoder, diff_id, uncompressed_size) = uncompressed.finish();
    let compressed = encoder
        .finish()
        .map_err(|e| Error::io("cannot finish compressing the layer", e))?;
    let (out, digest, size) = compressed.finish();
    out.finish()?;
    tracing::debug!(%digest, %diff_id, size, uncompressed_size, "layer compressed");
    Ok(LayerFile {
        file,
        digest,
        diff_id,
        size,
        uncompressed_size,
        tar,
        compression: *compression,
    })
}

/// The temporary file, and optionally the uploader.
struct LayerSink {
    file: BufWriter<std::fs::File>,
    tee: Option<ChunkTee>,
}

struct ChunkTee {
    chunks: tokio::sync::mpsc::Sender<LayerChunk>,
    pending: bytes::BytesMut,
    chunk_size: usize,
}

/// The uploader hung up: its own error says why.
const UPLOAD_STOPPED: &str = "the upload stopped";

impl ChunkTee {
    fn send(&mut self, message: LayerChunk) -> io::Result<()> {
        self.chunks
            .blocking_send(message)
            .map_err(|_| io::Error::other(UPLOAD_STOPPED))
    }
}

impl LayerSink {
    fn finish(mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| Error::io("cannot write the temporary layer file", e))?;
        if let Some(mut tee) = self.tee.take() {
            let rest = tee.pending.split().freeze();
            let sent = if rest.is_empty() {
                Ok(())
            } else {
                tee.send(LayerChunk::Data(rest))
            };
            sent.and_then(|()| tee.send(LayerChunk::End))
                .map_err(|e| Error::io("cannot stream the layer", e))?;
        }
        Ok(())
    }
}

impl Write for LayerSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(tee) = self.tee.as_mut() {
            tee.pending.extend_from_slice(&buf[..n]);
            if tee.pending.len() >= tee.chunk_size {
                let chunk = tee.pending.split_to(tee.chunk_size).freeze();
                tee.send(LayerChunk::Data(chunk))?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Whether a layer-writing error only reflects that the uploader stopped first.
pub(crate) fn is_upload_stopped(error: &Error) -> bool {
    error.to_string().contains(UPLOAD_STOPPED)
}

/// Passes bytes through while computing their sha256 and count.
pub(crate) struct HashingWriter<'a, W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
    progress: Option<&'a Signals>,
}

impl<'a, W: Write> HashingWriter<'a, W> {
    fn new(inner: W, progress: Option<&'a Signals>) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            progress,
        }
    }

    /// The inner writer, `sha256:<hex>` and the byte count.
    fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        if let Some(signals) = self.progress {
            signals.add_compressed(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    ParallelGzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(inner: W, compression: &Compression) -> Result<Self> {
        Ok(match *compression {
            Compression::Gzip { level, threads, .. } if threads <= 1 => Encoder::Gzip(
                flate2::write::GzEncoder::new(inner, flate2::Compression::new(level.min(9))),
            ),
            Compression::Gzip {
                level,
                threads,
                block_size,
            } => Encoder::ParallelGzip(ParallelGzip::new(
                inner,
                level.min(9),
                threads,
                block_size.max(64 * 1024),
            )),
            Compression::Zstd { level, threads } => {
                let mut encoder = zstd::stream::write::Encoder::new(inner, level)
                    .map_err(|e| Error::io("cannot start zstd", e))?;
                if threads > 0 {
                    encoder
                        .multithread(threads)
                        .map_err(|e| Error::io("cannot start zstd threads", e))?;
                }
                Encoder::Zstd(encoder)
            }
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::ParallelGzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::ParallelGzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::ParallelGzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

type Job = (Vec<u8>, mpsc::SyncSender<io::Result<Vec<u8>>>);

/// Multi-member gzip: blocks compressed on worker threads, written in order.
struct ParallelGzip<W: Write> {
    inner: W,
    buffer: Vec<u8>,
    block_size: usize,
    jobs: Option<mpsc::Sender<Job>>,
    pending: VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    /// Dropping `jobs` (also on an error path) ends the workers; they borrow nothing.
    workers: Vec<JoinHandle<()>>,
    members: u64,
}

impl<W: Write> ParallelGzip<W> {
    fn new(inner: W, level: u32, threads: usize, block_size: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let workers = (0..threads)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || loop {
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok((block, reply)) = job else { return };
                    let _ = reply.send(gzip_member(&block, level));
                })
            })
            .collect();
        Self {
            inner,
            buffer: Vec::with_capacity(block_size),
            block_size,
            jobs: Some(jobs),
            pending: VecDeque::new(),
            max_pending: threads * 2,
            workers,
            members: 0,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let block = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.block_size));
        let (reply, result) = mpsc::sync_channel(1);
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("compressor already finished"))?;
        jobs.send((block, reply))
            .map_err(|_| io::Error::other("a compression thread died"))?;
        self.pending.push_back(result);
        self.members += 1;
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(result) = self.pending.pop_front() {
            let member = result
                .recv()
                .map_err(|_| io::Error::other("a compression thread died"))??;
            self.inner.write_all(&member)?;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        if !self.buffer.is_empty() || self.members == 0 {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        Ok(self.inner)
    }
}

/// Bytes of a block compressed first to see whether the block compresses at all.
const PROBE: usize = 64 * 1024;

fn gzip_member(block: &[u8], level: u32) -> io::Result<Vec<u8>> {
    // Model weights, archives, media: random-looking data that deflate cannot shrink but
    // spends most of its time on. A fast probe decides; such blocks are stored (level 0).
    let level = if level > 0 && block.len() >= 2 * PROBE && !compresses(&block[..PROBE])? {
        0
    } else {
        level
    };
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(block.len() / 2 + 64),
        flate2::Compression::new(level),
    );
    encoder.write_all(block)?;
    encoder.finish()
}

/// Whether fast deflate saves at least 3% on `sample`. Level 2, not 1: level 1 uses only the
/// fixed Huffman code, which cannot shrink text without repeats (base64, hex dumps).
fn compresses(sample: &[u8]) -> io::Result<bool> {
    let mut probe = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(sample.len()),
        flate2::Compression::new(2),
    );
    probe.write_all(sample)?;
    let size = probe.finish()?.len();
    Ok(size * 100 < sample.len() * 97)
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.block_size - self.buffer.len();
        let n = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() >= self.block_size {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn the_probe_stores_noise_but_compresses_text_without_repeats() {
        assert!(!compresses(&noise(PROBE)).unwrap());
        // Base64 of noise: no repeats, yet 6 bits of information per byte.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let base64: Vec<u8> = noise(PROBE)
            .iter()
            .map(|b| ALPHABET[usize::from(b % 64)])
            .collect();
        assert!(compresses(&base64).unwrap());
        assert!(compresses(&b"def f(x):\n    return x\n".repeat(3000)).unwrap());
    }
}
