//! Counts of open long-lived connections (websocket tunnels, desktop bridges): how the hub knows
//! whether any browser page of a cluster is still open (automatic release).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The key under which a route's data reports its open websockets (`GET /api/routes`), beside
/// `last_activity`. configurable-http-proxy has no such key: a reader must treat its absence as
/// "unknown", not as zero.
pub const OPEN_WEBSOCKETS_KEY: &str = "open_websockets";

/// How many connections are open through one thing (a route, a desktop). Shared as `Arc`; each
/// open connection holds a [`ConnectionGuard`], which counts it until dropped, so a tunnel that
/// ends in any way (closed, failed, cut by a shutdown, its task panicking) is counted out.
#[derive(Debug, Default)]
pub struct OpenConnections(AtomicUsize);

impl OpenConnections {
    /// A new count at zero.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The connections open now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one more connection until the guard is dropped.
    pub fn hold(self: &Arc<Self>) -> ConnectionGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }
}

/// One open connection of an [`OpenConnections`]; dropping it counts the connection out.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<OpenConnections>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_counts_while_its_guard_lives() {
        let open = OpenConnections::new();
        let first = open.hold();
        let second = open.hold();
        assert_eq!(open.get(), 2);
        drop(first);
        assert_eq!(open.get(), 1);
        drop(second);
        assert_eq!(open.get(), 0);
    }
}
