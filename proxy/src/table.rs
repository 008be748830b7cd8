//! The route table: routespec → target, longest-prefix lookup by path segment, `last_activity`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat};
use http::uri::{Authority, Uri};
use serde_json::{Map, Value};

use crate::connections::{OpenConnections, OPEN_WEBSOCKETS_KEY};
use crate::error::ProxyError;
use crate::path::{key_depth, normalize_path, prefix_keys};

/// JupyterHub's Proxy interface (add/delete/get routes), driven by the hub.
#[async_trait::async_trait]
pub trait Proxy: Send + Sync + 'static {
    /// Adds or replaces the route for `routespec` (always ending with `/`, e.g. `/user/alice/`)
    /// to `target` (e.g. `http://127.0.0.1:5555`), with the hub's `data`.
    async fn add_route(
        &self,
        routespec: &str,
        target: &str,
        data: Map<String, Value>,
    ) -> Result<(), ProxyError>;

    /// Deletes the route for `routespec`. Deleting an absent route is Ok.
    async fn delete_route(&self, routespec: &str) -> Result<(), ProxyError>;

    /// Every route, keyed by routespec (with its trailing `/`, exactly as it was added).
    /// `Route::data` includes `last_activity` (ISO 8601 UTC with `Z`, like
    /// `2026-11-24T09:49:24.408Z`).
    async fn get_all_routes(&self) -> Result<BTreeMap<String, Route>, ProxyError>;
}

/// One route as the hub sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Route {
    /// The routespec as added, with its trailing `/`.
    pub routespec: String,
    /// The target URL, as added.
    pub target: String,
    /// The hub's data plus `last_activity`.
    pub data: Map<String, Value>,
}

/// Only move a route's `last_activity` when it is at least this much older than now, so a busy
/// route does not write the same cache line on every body chunk.
const ACTIVITY_RESOLUTION_MS: i64 = 1_000;

/// A backend the proxy forwards to: `http://authority` plus an optional path prefix.
#[derive(Debug)]
pub(crate) struct Target {
    /// `host:port` of the backend.
    pub(crate) authority: Authority,
    /// The target URL's path without its trailing `/` (often empty); prepended to forwarded paths.
    pub(crate) path_prefix: Box<str>,
}

impl Target {
    fn parse(routespec: &str, target: &str) -> Result<Self, ProxyError> {
        let invalid = |reason| ProxyError::InvalidTarget {
            routespec: routespec.to_owned(),
            target: target.to_owned(),
            reason,
        };
        let uri: Uri = target
            .parse()
            .map_err(|_| invalid("not a valid absolute URL"))?;
        if !uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http"))
        {
            return Err(invalid("only http:// targets are supported"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.host().is_empty() {
            return Err(invalid("no host"));
        }
        if authority.as_str().contains('@') {
            return Err(invalid("credentials in the target are not supported"));
        }
        if uri.query().is_some() {
            return Err(invalid("a target cannot have a query"));
        }
        let path = uri.path();
        let path_prefix = if path == "/" || path.is_empty() {
            Box::default()
        } else {
            let normalized = normalize_path(path).map_err(|e| invalid(e.reason()))?;
            normalized.trim_end_matches('/').into()
        };
        // A copy of just `host:port`: the parsed `Uri` would keep the whole target string alive.
        let authority = Authority::from_maybe_shared(bytes::Bytes::copy_from_slice(
            authority.as_str().as_bytes(),
        ))
        .map_err(|_| invalid("no host"))?;
        Ok(Self {
            authority,
            path_prefix,
        })
    }
}

/// A live route: what the forwarder needs, plus its activity clock.
#[derive(Debug)]
pub(crate) struct RouteEntry {
    /// The routespec exactly as the hub added it (returned by `get_all_routes`).
    pub(crate) routespec: Box<str>,
    /// The target exactly as the hub added it.
    pub(crate) target_url: Box<str>,
    pub(crate) target: Target,
    /// The hub's data as a JSON object text (`""` when empty): a few dozen bytes, where a
    /// `serde_json::Map` costs over 600 per route. Only read back by `get_all_routes`.
    data: Box<str>,
    /// Milliseconds since the Unix epoch of the last traffic (or of the route's creation).
    last_activity_ms: AtomicI64,
    /// Websocket tunnels open through this route. Kept when the route is replaced (the hub
    /// re-adds routes), since tunnels opened through the old entry still run.
    pub(crate) open_websockets: Arc<OpenConnections>,
}

impl RouteEntry {
    /// Records traffic on this route now (coarsely; see [`ACTIVITY_RESOLUTION_MS`]).
    pub(crate) fn touch(&self) {
        let now = now_ms();
        if now - self.last_activity_ms.load(Ordering::Relaxed) >= ACTIVITY_RESOLUTION_MS {
            self.last_activity_ms.fetch_max(now, Ordering::Relaxed);
        }
    }

    fn to_route(&self) -> Route {
        let mut data = if self.data.is_empty() {
            Map::new()
        } else {
            // Written by `serde_json` from a `Map` in `add_route`, so it always reads back.
            serde_json::from_str(&self.data).unwrap_or_default()
        };
        data.insert(
            "last_activity".to_owned(),
            Value::String(format_timestamp(
                self.last_activity_ms.load(Ordering::Relaxed),
            )),
        );
        data.insert(
            OPEN_WEBSOCKETS_KEY.to_owned(),
            Value::from(self.open_websockets.get()),
        );
        Route {
            routespec: self.routespec.clone().into(),
            target: self.target_url.clone().into(),
            data,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `2026-11-24T09:49:24.408Z`, the format CHP reports and the hub parses.
fn format_timestamp(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Default)]
struct Routes {
    /// Keyed by the normalised routespec without its trailing slash (`/user/alice`; `""` for `/`).
    by_key: HashMap<Box<str>, Arc<RouteEntry>>,
    /// `depth_counts[d]` = number of routes whose key has `d` segments. Lookups only try prefixes
    /// up to the deepest route, so a request path with thousands of segments costs no more than
    /// a short one.
    depth_counts: Vec<usize>,
}

impl Routes {
    fn max_depth(&self) -> usize {
        self.depth_counts.len().saturating_sub(1)
    }

    fn insert(&mut self, key: Box<str>, entry: Arc<RouteEntry>) {
        let depth = key_depth(&key);
        if self.by_key.insert(key, entry).is_none() {
            if self.depth_counts.len() <= depth {
                self.depth_counts.resize(depth + 1, 0);
            }
            self.depth_counts[depth] += 1;
        }
    }

    fn remove(&mut self, key: &str) -> bool {
        let removed = self.by_key.remove(key).is_some();
        if removed {
            let depth = key_depth(key);
            if let Some(count) = self.depth_counts.get_mut(depth) {
                *count = count.saturating_sub(1);
            }
            while self.depth_counts.last() == Some(&0) {
                self.depth_counts.pop();
            }
        }
        removed
    }
}

/// The embedded proxy's route table. Share it as `Arc<RouteTable>` between the hub (which drives
/// it through [`Proxy`]) and [`serve`](crate::serve) (which reads it on every request).
///
/// Lookups take a read lock for a handful of hash probes (one per segment, up to the deepest
/// route's depth), so they stay fast with hundreds of thousands of routes; changes take the write
/// lock briefly.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: RwLock<Routes>,
}

impl RouteTable {
    /// An empty table: every request goes to the fallback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.read().by_key.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The route a request for `path` (the raw path, without query) would be forwarded to:
    /// `None` if the path is refused or no route matches (the fallback would answer).
    pub fn route_for_path(&self, path: &str) -> Option<Route> {
        let normalized = normalize_path(path).ok()?;
        self.lookup(&normalized).map(|entry| entry.to_route())
    }

    /// The route added for `routespec` (or an equivalent spelling of it), if any.
    ///
    /// # Errors
    /// If `routespec` is not a valid routespec.
    pub fn route(&self, routespec: &str) -> Result<Option<Route>, ProxyError> {
        let key = routespec_key(routespec)?;
        Ok(self.read().by_key.get(&key).map(|entry| entry.to_route()))
    }

    /// Deletes the route for `routespec`; whether there was one.
    ///
    /// # Errors
    /// If `routespec` is not a valid routespec.
    pub fn remove(&self, routespec: &str) -> Result<bool, ProxyError> {
        let key = routespec_key(routespec)?;
        let removed = self.write().remove(&key);
        if removed {
            tracing::debug!(route.path = routespec, "route deleted");
        }
        Ok(removed)
    }

    /// The count of websockets open through the route for `routespec` (shared with the route's
    /// tunnels), if there is such a route.
    ///
    /// # Errors
    /// If `routespec` is not a valid routespec.
    pub fn open_websockets(
        &self,
        routespec: &str,
    ) -> Result<Option<Arc<OpenConnections>>, ProxyError> {
        let key = routespec_key(routespec)?;
        Ok(self
            .read()
            .by_key
            .get(&key)
            .map(|entry| Arc::clone(&entry.open_websockets)))
    }

    /// Every route with `last_activity` strictly before `before_ms` (milliseconds since the Unix
    /// epoch), or every route if `None`.
    pub fn routes_inactive_since(&self, before_ms: Option<i64>) -> Vec<Route> {
        let entries: Vec<Arc<RouteEntry>> = self
            .read()
            .by_key
            .values()
            .filter(|entry| {
                before_ms.is_none_or(|t| entry.last_activity_ms.load(Ordering::Relaxed) < t)
            })
            .cloned()
            .collect();
        entries.iter().map(|entry| entry.to_route()).collect()
    }

    /// Longest-prefix match of an already normalised path.
    pub(crate) fn lookup(&self, normalized_path: &str) -> Option<Arc<RouteEntry>> {
        let routes = self.read();
        if routes.by_key.is_empty() {
            return None;
        }
        prefix_keys(normalized_path, routes.max_depth())
            .find_map(|key| routes.by_key.get(key))
            .cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Routes> {
        // A panic while holding the lock cannot leave `Routes` half-updated in a way that matters
        // (at worst a depth count is off by one), so a poisoned lock is still used.
        self.routes.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Routes> {
        self.routes.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks a routespec and returns its lookup key (normalised, without trailing slash).
fn routespec_key(routespec: &str) -> Result<Box<str>, ProxyError> {
    let invalid = |reason| ProxyError::InvalidRoutespec {
        routespec: routespec.to_owned(),
        reason,
    };
    if !routespec.starts_with('/') {
        return Err(invalid(
            "a routespec must start with '/' (for host routing: '/{host}/{path}')",
        ));
    }
    if !routespec.ends_with('/') {
        return Err(invalid("a routespec must end with '/'"));
    }
    let normalized = normalize_path(routespec).map_err(|e| invalid(e.reason()))?;
    Ok(normalized.trim_end_matches('/').into())
}

#[async_trait::async_trait]
impl Proxy for RouteTable {
    async fn add_route(
        &self,
        routespec: &str,
        target: &str,
        mut data: Map<String, Value>,
    ) -> Result<(), ProxyError> {
        let key = routespec_key(routespec)?;
        let parsed_target = Target::parse(routespec, target)?;
        // `last_activity` and the open websockets are ours to keep; a stale copy in the hub's
        // data would shadow them.
        data.remove("last_activity");
        data.remove(OPEN_WEBSOCKETS_KEY);
        let data = if data.is_empty() {
            Box::default()
        } else {
            Value::Object(data).to_string().into_boxed_str()
        };
        let mut routes = self.write();
        let open_websockets = routes
            .by_key
            .get(&key)
            .map_or_else(OpenConnections::new, |old| Arc::clone(&old.open_websockets));
        let entry = Arc::new(RouteEntry {
            routespec: routespec.into(),
            target_url: target.into(),
            target: parsed_target,
            data,
            last_activity_ms: AtomicI64::new(now_ms()),
            open_websockets,
        });
        routes.insert(key, entry);
        drop(routes);
        tracing::debug!(route.path = routespec, target, "route added");
        Ok(())
    }

    async fn delete_route(&self, routespec: &str) -> Result<(), ProxyError> {
        self.remove(routespec).map(|_| ())
    }

    async fn get_all_routes(&self) -> Result<BTreeMap<String, Route>, ProxyError> {
        Ok(self
            .routes_inactive_since(None)
            .into_iter()
            .map(|route| (route.routespec.clone(), route))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Map<String, Value> {
        Map::new()
    }

    #[tokio::test]
    async fn longest_prefix_wins_and_matches_whole_segments_only() {
        let table = RouteTable::new();
        table
            .add_route("/user/", "http://127.0.0.1:1", data())
            .await
            .unwrap();
        table
            .add_route("/user/alice/", "http://127.0.0.1:2", data())
            .await
            .unwrap();
        table
            .add_route("/user/alice/named/", "http://127.0.0.1:3", data())
            .await
            .unwrap();
        let target = |p: &str| table.route_for_path(p).map(|r| r.target);
        assert_eq!(target("/user/alice").as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(
            target("/user/alice/").as_deref(),
            Some("http://127.0.0.1:2")
        );
        assert_eq!(
            target("/user/alice/lab/x").as_deref(),
            Some("http://127.0.0.1:2")
        );
        assert_eq!(
            target("/user/alice/named/api").as_deref(),
            Some("http://127.0.0.1:3")
        );
        assert_eq!(
            target("/user/alicex").as_deref(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(target("/hub/home"), None);
        assert_eq!(target("/"), None);
    }

    #[tokio::test]
    async fn root_route_catches_everything_else() {
        let table = RouteTable::new();
        table
            .add_route("/", "http://127.0.0.1:1", data())
            .await
            .unwrap();
        assert!(table.route_for_path("/anything/at/all").is_some());
        assert!(table.route_for_path("/").is_some());
    }

    #[tokio::test]
    async fn routespecs_are_returned_as_added_and_deleted_by_equivalent_spelling() {
        let table = RouteTable::new();
        let mut d = data();
        d.insert("user".into(), "~bob".into());
        table
            .add_route("/user/%7Ebob/", "http://127.0.0.1:1/", d)
            .await
            .unwrap();
        let routes = table.get_all_routes().await.unwrap();
        let route = &routes["/user/%7Ebob/"];
        assert_eq!(route.target, "http://127.0.0.1:1/");
        assert_eq!(route.data["user"], "~bob");
        let stamp = route.data["last_activity"].as_str().unwrap();
        assert!(stamp.ends_with('Z') && stamp.len() == 24, "{stamp}");
        assert!(table.route_for_path("/user/~bob/lab").is_some());
        table.delete_route("/user/~bob/").await.unwrap();
        assert!(table.is_empty());
        table.delete_route("/user/~bob/").await.unwrap();
    }

    #[tokio::test]
    async fn bad_routespecs_and_targets_are_refused() {
        let table = RouteTable::new();
        for spec in ["/user/alice", "user/alice/", "/user/../", "/a%2Fb/"] {
            assert!(matches!(
                table.add_route(spec, "http://127.0.0.1:1", data()).await,
                Err(ProxyError::InvalidRoutespec { .. })
            ));
        }
        for target in [
            "127.0.0.1:1",
            "https://127.0.0.1:1",
            "http://u:p@127.0.0.1:1",
            "http://127.0.0.1:1/?q",
            "nonsense",
        ] {
            assert!(
                matches!(
                    table.add_route("/x/", target, data()).await,
                    Err(ProxyError::InvalidTarget { .. })
                ),
                "{target}"
            );
        }
        assert!(table.is_empty());
    }

    #[tokio::test]
    async fn depth_bound_shrinks_when_deep_routes_go() {
        let table = RouteTable::new();
        table
            .add_route("/a/b/c/d/", "http://127.0.0.1:1", data())
            .await
            .unwrap();
        table
            .add_route("/a/", "http://127.0.0.1:2", data())
            .await
            .unwrap();
        assert_eq!(table.read().max_depth(), 4);
        table.delete_route("/a/b/c/d/").await.unwrap();
        assert_eq!(table.read().max_depth(), 1);
        assert_eq!(
            table.route_for_path("/a/b/c/d/e").unwrap().target,
            "http://127.0.0.1:2"
        );
    }

    #[tokio::test]
    async fn routes_report_their_open_websockets_and_keep_the_count_when_replaced() {
        let table = RouteTable::new();
        table
            .add_route("/user/ann/", "http://127.0.0.1:1", data())
            .await
            .unwrap();
        let open = table.open_websockets("/user/ann/").unwrap().unwrap();
        let tunnel = open.hold();
        let count = |table: &RouteTable| {
            table.route("/user/ann/").unwrap().unwrap().data[OPEN_WEBSOCKETS_KEY].clone()
        };
        assert_eq!(count(&table), 1);
        // The hub re-adds the route (with a stale count in its data): the tunnel still counts.
        let mut stale = data();
        stale.insert(OPEN_WEBSOCKETS_KEY.into(), 7.into());
        table
            .add_route("/user/ann/", "http://127.0.0.1:2", stale)
            .await
            .unwrap();
        assert_eq!(count(&table), 1);
        drop(tunnel);
        assert_eq!(count(&table), 0);
    }

    #[test]
    fn timestamps_look_like_chp() {
        assert_eq!(
            format_timestamp(1_795_513_764_408),
            "2026-11-24T09:49:24.408Z"
        );
    }
}
