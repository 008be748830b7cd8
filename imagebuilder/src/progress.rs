//! Byte counters and cancellation shared between a job and the blocking code doing its work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Where a save stands, in bytes. Every number only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteProgress {
    /// Entries (files, directories, links, whiteouts) found in the writable layer.
    pub entries: u64,
    /// File content bytes read from the writable layer so far.
    pub bytes_read: u64,
    /// File content bytes the layer will hold (known once the scan is done): the total for
    /// `bytes_read`.
    pub total_estimate: u64,
    /// Compressed bytes written to the temporary layer file.
    pub bytes_compressed: u64,
    /// Bytes of the new layer uploaded to the registry.
    pub bytes_pushed: u64,
    /// Size of the compressed layer (known once compression is done): the total for
    /// `bytes_pushed`.
    pub push_total: u64,
}

/// Counters and the cancellation token of one job; cheap to clone, safe to share with blocking
/// threads. `Signals::default()` gives fresh counters and a token nobody cancels.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    counters: Arc<Counters>,
    cancel: CancellationToken,
}

#[derive(Debug, Default)]
struct Counters {
    entries: AtomicU64,
    bytes_read: AtomicU64,
    total_estimate: AtomicU64,
    bytes_compressed: AtomicU64,
    bytes_pushed: AtomicU64,
    push_total: AtomicU64,
}

impl Signals {
    /// Signals whose cancellation follows `cancel`.
    pub fn with_cancel(cancel: CancellationToken) -> Self {
        Self {
            counters: Arc::default(),
            cancel,
        }
    }

    /// The cancellation token.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> ByteProgress {
        let c = &self.counters;
        ByteProgress {
            entries: c.entries.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            total_estimate: c.total_estimate.load(Ordering::Relaxed),
            bytes_compressed: c.bytes_compressed.load(Ordering::Relaxed),
            bytes_pushed: c.bytes_pushed.load(Ordering::Relaxed),
            push_total: c.push_total.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_entries(&self, n: u64) {
        self.counters.entries.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_read(&self, n: u64) {
        self.counters.bytes_read.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn set_total_estimate(&self, n: u64) {
        self.counters.total_estimate.store(n, Ordering::Relaxed);
    }
    pub(crate) fn add_compressed(&self, n: u64) {
        self.counters
            .bytes_compressed
            .fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_pushed(&self, n: u64) {
        self.counters.bytes_pushed.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn set_push_total(&self, n: u64) {
        self.counters.push_total.store(n, Ordering::Relaxed);
    }
}
