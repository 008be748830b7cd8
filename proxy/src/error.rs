//! The proxy crate's one error type.

/// Why a route could not be added, deleted or listed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The routespec is not a path starting and ending with `/`, or it holds a segment the
    /// proxy refuses to route (`.`, `..`, an encoded `/` or `\`, a bad percent escape).
    #[error("invalid routespec {routespec:?}: {reason}")]
    InvalidRoutespec {
        /// The routespec as given by the caller.
        routespec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The target is not an absolute `http://host[:port][/path]` URL.
    #[error("invalid target {target:?} for routespec {routespec:?}: {reason}")]
    InvalidTarget {
        /// The routespec the target was given for.
        routespec: String,
        /// The target as given by the caller.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The proxy that keeps the route table could not be reached or refused the change
    /// (for `Proxy` implementations that keep their table outside this process).
    #[error("proxy unavailable: {0}")]
    Unavailable(String),
    /// The standalone proxy could not start: a bad option, an unreadable TLS certificate or key,
    /// an address that cannot be bound.
    #[error("{0}")]
    Startup(String),
}
