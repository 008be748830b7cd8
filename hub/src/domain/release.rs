//! Release policies (PRODUCT: "Release policies"; docs/release-policies.md): when a running
//! cluster is given back, and administrators' forced releases.
//!
//! - The installation has a default policy and a grace period (stored; administrators change
//!   them), a user may have an exception: their own policy. That is how an exception allows
//!   manual release to one user (`manual` while the default is `automatic` or `on_logout`) or
//!   forbids it (`automatic` or `on_logout` while the default is `manual`).
//! - A cluster holds the policy its user had when it started ([`held_policy`]): changing a policy
//!   never releases clusters left running on purpose under the old one.
//! - `automatic`: [`release_unwatched`] (a background loop) releases a cluster once no page of it
//!   has been open for the grace period. A page is a websocket: the proxy counts those open
//!   through each route (JupyterLab's kernels, terminals and event stream; its data's
//!   `open_websockets`), the hub those of desktops ([`ReleaseWatch::desktop_opened`]). Reloading
//!   a page within the grace keeps the cluster. With configurable-http-proxy itself, which does
//!   not count, routed pages are unknown and nothing is released automatically.
//! - `manual`: nothing is released until the user clicks Release (a stop).
//! - `on_logout`: [`release_on_logout`] when the user logs out.
//! - [`force_release`]: an administrator releases any cluster with a reason its user is shown.
//!
//! A release is [`servers::stop`]; the hub's own releases are recorded (`releases`) and shown
//! to the user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proxy::{ConnectionGuard, OpenConnections, OPEN_WEBSOCKETS_KEY};
use serde_json::Value;

use crate::clock::{self, Micros};
use crate::db::{
    NewRelease, ReleaseExceptionRow, ReleaseRow, ReleaseSettingsRow, ServerRow, ServerStatus,
    Store, UserRow,
};
pub use crate::db::{ReleaseCause, ReleasePolicy};
use crate::domain::servers::{self, Outcome};
use crate::domain::{HubError, HubResult, Services};

/// How often [`release_unwatched`] looks (the grace period's precision).
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// The shortest grace period an administrator may set: a page's reload must fit in it.
pub const MIN_GRACE_SECONDS: i64 = 5;
/// The longest grace period (a day).
pub const MAX_GRACE_SECONDS: i64 = 86_400;
/// The longest reason of a forced release.
pub const MAX_REASON_CHARS: usize = 500;
/// How long a release is shown on its user's home page (unless the cluster started again).
pub const SHOWN_FOR: Micros = 7 * 24 * 3600 * 1_000_000;

/// The default and every exception.
#[derive(Debug, Clone)]
pub struct ReleasePolicies {
    /// The default policy and the grace period.
    pub settings: ReleaseSettingsRow,
    /// Users' exceptions, by name.
    pub exceptions: Vec<ReleaseExceptionRow>,
}

/// The default and every exception.
pub async fn policies(store: &Store) -> HubResult<ReleasePolicies> {
    Ok(ReleasePolicies {
        settings: store.release_settings().await?,
        exceptions: store.release_exceptions().await?,
    })
}

/// Sets the default policy and the grace period (`None`: kept). 400 for a grace period out of
/// bounds.
pub async fn set_default(
    store: &Store,
    policy: ReleasePolicy,
    grace_seconds: Option<i64>,
    by: &str,
) -> HubResult<ReleaseSettingsRow> {
    let grace = match grace_seconds {
        Some(g) => check_grace(g)?,
        None => store.release_settings().await?.grace_seconds,
    };
    store
        .set_release_settings(policy, grace, by, clock::now())
        .await?;
    tracing::info!(policy = %policy, grace_seconds = grace, by, "default release policy set");
    Ok(store.release_settings().await?)
}

fn check_grace(seconds: i64) -> HubResult<i64> {
    if (MIN_GRACE_SECONDS..=MAX_GRACE_SECONDS).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(HubError::BadRequest(format!(
            "The grace period must be between {MIN_GRACE_SECONDS} and {MAX_GRACE_SECONDS} \
             seconds, not {seconds}"
        )))
    }
}

async fn user_named(store: &Store, name: &str) -> HubResult<UserRow> {
    store
        .user(name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {name}")))
}

/// Gives user `name` their own policy. 404 for an unknown user.
pub async fn set_exception(
    store: &Store,
    name: &str,
    policy: ReleasePolicy,
    by: &str,
) -> HubResult<ReleaseExceptionRow> {
    let user = user_named(store, name).await?;
    store
        .set_release_exception(user.id, policy, by, clock::now())
        .await?;
    tracing::info!(user.name = %user.name, policy = %policy, by, "release policy exception set");
    store
        .release_exception(user.id)
        .await?
        .ok_or_else(|| HubError::Internal("an exception just written is missing".into()))
}

/// Removes user `name`'s exception: the default applies to them again. 404 for an unknown user
/// or one without an exception.
pub async fn remove_exception(store: &Store, name: &str, by: &str) -> HubResult<()> {
    let user = user_named(store, name).await?;
    if !store.delete_release_exception(user.id).await? {
        return Err(HubError::NotFound(format!(
            "{name} has no release policy exception"
        )));
    }
    tracing::info!(user.name = %user.name, by, "release policy exception removed");
    Ok(())
}

/// A user's policy and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPolicy {
    /// The policy their next cluster gets.
    pub policy: ReleasePolicy,
    /// Whether it is their exception (else the default).
    pub exception: bool,
    /// The grace period of `automatic`, in seconds.
    pub grace_seconds: i64,
}

impl UserPolicy {
    /// Whether the user may keep clusters running with no page open (manual release).
    pub fn manual_release_allowed(&self) -> bool {
        self.policy == ReleasePolicy::Manual
    }
}

/// The policy a user's next cluster gets.
pub async fn policy_of(store: &Store, user_id: i64) -> HubResult<UserPolicy> {
    let settings = store.release_settings().await?;
    let exception = store.release_exception(user_id).await?;
    Ok(UserPolicy {
        policy: exception.as_ref().map_or(settings.policy, |e| e.policy),
        exception: exception.is_some(),
        grace_seconds: settings.grace_seconds,
    })
}

/// The `user_options` key in which a start chooses its cluster's release policy.
pub const CHOICE_KEY: &str = "release_policy";

/// The policies `policy` lets its user choose for a start: the stricter ones always, manual
/// release only where it is allowed (PRODUCT: "per-user exception allowing or forbidding
/// manual release").
pub fn choices(policy: &UserPolicy) -> Vec<ReleasePolicy> {
    ReleasePolicy::ALL
        .iter()
        .copied()
        .filter(|p| *p != ReleasePolicy::Manual || policy.manual_release_allowed())
        .collect()
}

/// The release policy a start asks for in its `user_options` (`"release_policy"`), checked
/// against what its user may choose; without one, the user's own. A 400 says what to choose.
pub async fn policy_for_start(
    store: &Store,
    user_id: i64,
    user_options: &Value,
) -> HubResult<ReleasePolicy> {
    let policy = policy_of(store, user_id).await?;
    let asked = match user_options.get(CHOICE_KEY) {
        Some(Value::Array(items)) => items.first(),
        other => other,
    };
    let Some(asked) = asked.filter(|v| !v.is_null() && v.as_str() != Some("")) else {
        return Ok(policy.policy);
    };
    let word = asked
        .as_str()
        .ok_or_else(|| HubError::BadRequest(format!("{CHOICE_KEY} must be a word, not {asked}")))?;
    let chosen = ReleasePolicy::parse(word).map_err(HubError::BadRequest)?;
    if !choices(&policy).contains(&chosen) {
        return Err(HubError::BadRequest(
            "Manual release is not allowed for you: choose automatic or on_logout (an \
             administrator can allow it)"
                .into(),
        ));
    }
    Ok(chosen)
}

/// Records the policy a start chose, for the start that began at `started`.
pub async fn hold_for_start(
    hub: &Services,
    server_id: i64,
    started: Micros,
    policy: ReleasePolicy,
) -> HubResult<()> {
    let held = hub
        .store
        .cluster_release_policy(server_id, started, policy)
        .await?;
    hub.release.remember(server_id, started, held);
    Ok(())
}

/// The policy running server `server` holds: its user's at the start it is in (recorded the
/// first time it is asked).
pub async fn held_policy(hub: &Services, server: &ServerRow) -> HubResult<ReleasePolicy> {
    let started = server.started.unwrap_or(0);
    if let Some(policy) = hub.release.held(server.id, started) {
        return Ok(policy);
    }
    let current = policy_of(&hub.store, server.user_id).await?.policy;
    let policy = hub
        .store
        .cluster_release_policy(server.id, started, current)
        .await?;
    hub.release.remember(server.id, started, policy);
    Ok(policy)
}

/// Whether a page of `user_id`'s running server `server_name` should ask before it is closed:
/// the cluster holds `automatic`, so closing its last page releases it.
pub async fn warns_before_closing(
    hub: &Services,
    user_id: i64,
    server_name: &str,
) -> HubResult<bool> {
    match hub.store.server(user_id, server_name).await? {
        Some(server) if server.status == ServerStatus::Running => {
            Ok(held_policy(hub, &server).await? == ReleasePolicy::Automatic)
        }
        _ => Ok(false),
    }
}

/// What the hub keeps in memory for release: desktops open per server, when each automatic
/// cluster was last seen with no page open, and the policies running clusters hold.
#[derive(Default)]
pub struct ReleaseWatch {
    desktops: Mutex<HashMap<i64, Arc<OpenConnections>>>,
    unwatched_since: Mutex<HashMap<i64, Instant>>,
    held: Mutex<HashMap<i64, (Micros, ReleasePolicy)>>,
}

impl ReleaseWatch {
    /// Counts a desktop of server `server_id` as an open page until the guard is dropped.
    pub fn desktop_opened(&self, server_id: i64) -> ConnectionGuard {
        let mut desktops = self.desktops.lock().unwrap_or_else(PoisonError::into_inner);
        desktops.entry(server_id).or_default().hold()
    }

    fn desktops_open(&self, server_id: i64) -> usize {
        let mut desktops = self.desktops.lock().unwrap_or_else(PoisonError::into_inner);
        let open = desktops.get(&server_id).map_or(0, |c| c.get());
        if open == 0 {
            desktops.remove(&server_id);
        }
        open
    }

    fn held(&self, server_id: i64, started: Micros) -> Option<ReleasePolicy> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(&server_id)
            .filter(|(s, _)| *s == started)
            .map(|(_, p)| *p)
    }

    fn remember(&self, server_id: i64, started: Micros, policy: ReleasePolicy) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.insert(server_id, (started, policy));
    }

    /// Forgets servers that are no longer running.
    fn keep_only(&self, running: &[i64]) {
        let keep = |id: &i64| running.contains(id);
        self.unwatched_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| keep(id));
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| keep(id));
    }

    /// Whether server `server_id`, with `open` pages now, has had none for `grace`: its clock
    /// starts the first time it is seen with none and is reset by any open page.
    fn unwatched_for(&self, server_id: i64, open: usize, grace: Duration, now: Instant) -> bool {
        let mut since = self
            .unwatched_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if open > 0 {
            since.remove(&server_id);
            return false;
        }
        let first = *since.entry(server_id).or_insert(now);
        now.duration_since(first) >= grace
    }
}

/// Open pages per `(user, server)` from the proxy's routes; `None` for a server one of whose
/// routes does not say (configurable-http-proxy does not count websockets).
fn routed_pages(
    routes: &std::collections::BTreeMap<String, proxy::Route>,
) -> HashMap<(String, String), Option<usize>> {
    let mut pages: HashMap<(String, String), Option<usize>> = HashMap::new();
    for route in routes.values() {
        let (Some(user), Some(server)) = (
            route.data.get("user").and_then(Value::as_str),
            route.data.get("server_name").and_then(Value::as_str),
        ) else {
            continue;
        };
        let open = route
            .data
            .get(OPEN_WEBSOCKETS_KEY)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok());
        let entry = pages
            .entry((user.to_owned(), server.to_owned()))
            .or_insert(Some(0));
        *entry = match (*entry, open) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
    pages
}

/// One round of the automatic policy: releases every running cluster holding `automatic` that
/// has had no page open for the grace period.
pub async fn release_unwatched(hub: &Arc<Services>) -> HubResult<()> {
    let running: Vec<(String, ServerRow)> = hub
        .store
        .active_servers()
        .await?
        .into_iter()
        .filter(|(_, s)| s.status == ServerStatus::Running)
        .collect();
    hub.release
        .keep_only(&running.iter().map(|(_, s)| s.id).collect::<Vec<_>>());
    let mut watched = Vec::new();
    for (user, server) in running {
        if held_policy(hub, &server).await? == ReleasePolicy::Automatic {
            watched.push((user, server));
        }
    }
    if watched.is_empty() {
        return Ok(());
    }
    let grace = hub.store.release_settings().await?.grace_seconds;
    let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
    let routes = hub
        .proxy
        .get_all_routes()
        .await
        .map_err(|e| HubError::Spawner(e.to_string()))?;
    let routed = routed_pages(&routes);
    let now = Instant::now();
    for (user, server) in watched {
        let proxied = routed
            .get(&(user.clone(), server.name.clone()))
            .copied()
            .unwrap_or(Some(0));
        let Some(proxied) = proxied else {
            tracing::debug!(user.name = %user, server.name = %server.name,
                "the proxy does not count open websockets; not releasing automatically");
            continue;
        };
        let open = proxied + hub.release.desktops_open(server.id);
        if !hub.release.unwatched_for(server.id, open, grace, now) {
            continue;
        }
        tracing::info!(user.name = %user, server.name = %server.name, grace_seconds = grace.as_secs(),
            "no page of the cluster has been open for the grace period: releasing it");
        let Some(owner) = hub.store.user(&user).await? else {
            continue;
        };
        release(hub, &owner, &server, ReleaseCause::Automatic, "", None).await?;
    }
    Ok(())
}

/// Stops `server` and records why.
async fn release(
    hub: &Arc<Services>,
    user: &UserRow,
    server: &ServerRow,
    cause: ReleaseCause,
    reason: &str,
    by: Option<&str>,
) -> HubResult<(Outcome, ReleaseRow)> {
    let outcome = servers::stop(hub, user, server).await?;
    let now = clock::now();
    hub.store
        .record_release(
            NewRelease {
                user_id: user.id,
                server_name: &server.name,
                cause,
                reason,
                released_by: by,
            },
            now,
        )
        .await?;
    let record = ReleaseRow {
        id: 0,
        user_name: user.name.clone(),
        server_name: server.name.clone(),
        cause,
        reason: reason.to_owned(),
        released_by: by.map(str::to_owned),
        created: now,
    };
    Ok((outcome, record))
}

/// After `user` logged out: releases, in a task of its own, each of their running clusters that
/// holds `on_logout`.
pub fn release_on_logout(hub: &Arc<Services>, user: UserRow) {
    let hub = Arc::clone(hub);
    tokio::spawn(async move {
        if let Err(e) = release_all_on_logout(&hub, &user).await {
            tracing::error!(user.name = %user.name, error = %e, "releasing clusters on logout failed");
        }
    });
}

async fn release_all_on_logout(hub: &Arc<Services>, user: &UserRow) -> HubResult<()> {
    let servers = hub
        .store
        .servers_of(&[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    for server in servers {
        if server.status != ServerStatus::Running
            || held_policy(hub, &server).await? != ReleasePolicy::OnLogout
        {
            continue;
        }
        tracing::info!(user.name = %user.name, server.name = %server.name, "logged out: releasing the cluster");
        release(hub, user, &server, ReleaseCause::OnLogout, "", None).await?;
    }
    Ok(())
}

/// An administrator (`by`) releases `user`'s server `server_name` with `reason`, which the user
/// is shown. 400 for an empty or too long reason or a server that is not running (or still
/// starting); 404 for a server the user does not have.
pub async fn force_release(
    hub: &Arc<Services>,
    user: &UserRow,
    server_name: &str,
    reason: &str,
    by: &str,
) -> HubResult<(Outcome, ReleaseRow)> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(HubError::BadRequest(
            "Say why the cluster is released: its user is shown the reason".into(),
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(HubError::BadRequest(format!(
            "The reason is too long: at most {MAX_REASON_CHARS} characters"
        )));
    }
    let label = if server_name.is_empty() {
        user.name.clone()
    } else {
        servers::full_name(&user.name, server_name)
    };
    let server = hub
        .store
        .server(user.id, server_name)
        .await?
        .ok_or_else(|| {
            HubError::NotFound(format!("{} has no server named {server_name}", user.name))
        })?;
    if matches!(
        server.status,
        ServerStatus::Stopped | ServerStatus::Stopping
    ) {
        return Err(HubError::BadRequest(format!(
            "{label} is not running: there is nothing to release"
        )));
    }
    tracing::info!(user.name = %user.name, server.name = %server_name, by, reason, "forced release");
    release(hub, user, &server, ReleaseCause::Forced, reason, Some(by)).await
}

/// The releases a user is shown on their home page: each server's newest in the last
/// [`SHOWN_FOR`], unless that server started again after it.
pub async fn notices(store: &Store, user: &UserRow) -> HubResult<Vec<ReleaseRow>> {
    let now = clock::now();
    let recent = store.releases_of(user.id, now - SHOWN_FOR, 50).await?;
    let servers = store
        .servers_of(&[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    let mut shown: Vec<ReleaseRow> = Vec::new();
    for release in recent {
        if shown.iter().any(|r| r.server_name == release.server_name) {
            continue;
        }
        let started_since = servers
            .iter()
            .find(|s| s.name == release.server_name)
            .is_some_and(|s| {
                s.status != ServerStatus::Stopped && s.started.unwrap_or(0) > release.created
            });
        if !started_since {
            shown.push(release);
        }
    }
    Ok(shown)
}

/// A user's latest forced release of server `server_name` not followed by a new start, for the
/// server's progress stream.
pub async fn latest_forced(
    store: &Store,
    user: &UserRow,
    server: &ServerRow,
) -> HubResult<Option<ReleaseRow>> {
    Ok(notices(store, user)
        .await?
        .into_iter()
        .find(|r| r.server_name == server.name && r.cause == ReleaseCause::Forced))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(user: &str, server: &str, open: Option<u64>) -> proxy::Route {
        let mut data = serde_json::Map::new();
        data.insert("user".into(), user.into());
        data.insert("server_name".into(), server.into());
        if let Some(n) = open {
            data.insert(OPEN_WEBSOCKETS_KEY.into(), n.into());
        }
        proxy::Route {
            routespec: format!("/user/{user}/{server}"),
            target: "http://127.0.0.1:1".into(),
            data,
        }
    }

    #[test]
    fn a_clusters_pages_add_up_over_its_nodes_and_an_uncounted_route_makes_them_unknown() {
        let mut routes = std::collections::BTreeMap::new();
        for (spec, r) in [
            ("a", route("ann", "", Some(2))),
            ("b", route("ann", "", Some(1))),
            ("c", route("bob", "x", Some(0))),
            ("d", route("cy", "", Some(1))),
            ("e", route("cy", "", None)),
        ] {
            routes.insert(spec.to_owned(), r);
        }
        let pages = routed_pages(&routes);
        assert_eq!(pages[&("ann".into(), String::new())], Some(3));
        assert_eq!(pages[&("bob".into(), "x".into())], Some(0));
        assert_eq!(pages[&("cy".into(), String::new())], None);
    }

    #[test]
    fn a_cluster_is_unwatched_after_the_grace_with_no_page_and_a_reload_restarts_the_clock() {
        let watch = ReleaseWatch::default();
        let grace = Duration::from_secs(60);
        let t0 = Instant::now();
        assert!(!watch.unwatched_for(1, 0, grace, t0));
        assert!(!watch.unwatched_for(1, 0, grace, t0 + Duration::from_secs(59)));
        // The page came back (a reload) within the grace: the clock starts again.
        assert!(!watch.unwatched_for(1, 1, grace, t0 + Duration::from_secs(59)));
        assert!(!watch.unwatched_for(1, 0, grace, t0 + Duration::from_secs(61)));
        assert!(watch.unwatched_for(1, 0, grace, t0 + Duration::from_secs(121)));
    }

    #[test]
    fn a_desktop_counts_while_it_is_open() {
        let watch = ReleaseWatch::default();
        let desktop = watch.desktop_opened(7);
        assert_eq!(watch.desktops_open(7), 1);
        drop(desktop);
        assert_eq!(watch.desktops_open(7), 0);
    }

    #[test]
    fn grace_periods_out_of_bounds_are_refused() {
        assert!(check_grace(MIN_GRACE_SECONDS).is_ok());
        assert!(check_grace(MAX_GRACE_SECONDS).is_ok());
        assert!(matches!(check_grace(0), Err(HubError::BadRequest(_))));
        assert!(matches!(
            check_grace(MAX_GRACE_SECONDS + 1),
            Err(HubError::BadRequest(_))
        ));
    }
}
