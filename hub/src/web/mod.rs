//! Server-rendered pages (login, home, tokens, admin), in English and Chinese.

use std::sync::Arc;

use axum::Router;

use crate::app::Hub;

/// The page routes.
pub fn routes(hub: Arc<Hub>) -> Router {
    Router::new().with_state(hub)
}
