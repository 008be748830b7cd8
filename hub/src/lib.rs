//! Xiji hub.
