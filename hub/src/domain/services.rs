//! The domain's context: the store, the backend, the proxy the hub drives, live progress, caches
//! and the hub's secret. `app` builds it; the HTTP faces hold it as their state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spawner::Spawner;

use crate::config::Config;
use crate::db::Store;
use crate::domain::accounts::LoginThrottle;
use crate::domain::identity::AuthCache;
use crate::domain::save_image::SaveImages;
use crate::domain::servers::LiveServers;
use crate::domain::start_queue::StartQueue;

/// The domain's context: everything a domain operation, request or background task needs,
/// built once by `app` and shared behind an `Arc`.
pub struct Services {
    /// Configuration as loaded.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// The backend that starts servers.
    pub spawner: Arc<dyn Spawner>,
    /// The route table the proxy serves from.
    pub routes: Arc<proxy::RouteTable>,
    /// The proxy the hub drives: the embedded table above, or an external proxy's REST API
    /// (`[proxy] mode = "external"`).
    pub proxy: Arc<dyn proxy::Proxy>,
    /// With an external proxy: the target of its default route `/` (this hub).
    pub hub_route_target: Option<String>,
    /// Live spawn progress.
    pub live: LiveServers,
    /// Admission of starts to their start-up phase, a few at a time.
    pub start_queue: StartQueue,
    /// Failed-login throttling.
    pub throttle: LoginThrottle,
    /// Resolved callers by token hash.
    pub auth: AuthCache,
    /// The address the hub's own API is reached at by single-user servers.
    pub local_addr: SocketAddr,
    /// Key for signing short-lived values (XSRF) and deriving each desktop cluster's VNC
    /// password, generated per database.
    pub secret: String,
    /// Saves of running nodes as images, and their builder.
    pub save_images: SaveImages,
    /// Open desktops and what the release policies' loop remembers.
    pub release: crate::domain::release::ReleaseWatch,
    /// The usage ledger's writer and the line of starts waiting for capacity.
    pub meter: crate::domain::metering::Meter,
    /// The campus identity provider's client, with `[auth] kind = "oidc"` or `"oauth2"`.
    pub campus: Option<Arc<crate::domain::campus_login::CampusLogin>>,
    /// The keeper of users' encrypted `auth_state`, with `[auth] enable_auth_state`.
    pub auth_states: Option<crate::domain::auth_state::AuthStates>,
}

impl Services {
    /// `http://127.0.0.1:8000/`: the URL single-user servers use to reach the hub.
    pub fn internal_url(&self) -> String {
        let ip = if self.local_addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            match self.local_addr.ip() {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            }
        };
        format!("http://{ip}:{}/", self.local_addr.port())
    }

    /// Grace period between SIGTERM and SIGKILL.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_secs_f64(self.config.spawner.stop_grace.max(0.0))
    }

    /// Forgets cached callers after a change of rights, tokens or servers.
    pub fn invalidate_auth(&self) {
        self.auth.invalidate();
    }
}
