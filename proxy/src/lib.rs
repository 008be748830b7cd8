//! Xiji reverse proxy.
