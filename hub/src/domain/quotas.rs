//! Quotas (PRODUCT "Compute resource administration"): the limits each account role has by
//! default, users' exceptions to them, and the administrator's caps on the hardware's capacity.
//! Admission (`admission.rs`, `db::reservations`) holds every start against them; this module
//! reads and changes them and says what a user holds now.
//!
//! Limits are given as the spawn form gives sizes: `cpus` in cores (fractions allowed, kept as
//! millicores), `memory` and `storage` as `"16G"`, `"512M"` or a bare number of GiB (kept in
//! MiB), and `clusters`, `nodes`, `gpus` as whole numbers. The stored units (`cpu_millis`,
//! `memory_mib`, `storage_mib`) are accepted too, so what `GET` returns can be `PUT` back. A
//! missing or `null` field (or an empty string, as a form sends it) is "no limit" for a role,
//! "the role's" for a user and "what the backend reports" for a cap.

use serde_json::{Map, Value};

use super::admission::backend_capacity;
use super::{HubError, HubResult, Services};
use crate::clock;
use crate::db::{
    AccountRole, Amounts, CapacityCapsRow, Limits, RoleQuotaRow, Store, UserQuota, UserRow,
};

const MIB: u64 = 1024 * 1024;

/// The largest limit accepted, in any unit: far beyond any hardware, well inside `i64` once
/// multiplied by a node count.
const MAX_LIMIT: i64 = 1_000_000_000_000;

/// Which limits a body may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// A role's or a user's quota: every quantity.
    Quota,
    /// The capacity caps: nodes, CPU, memory and GPUs (clusters and storage are not capped).
    Caps,
}

impl LimitKind {
    fn fields(self) -> &'static str {
        match self {
            LimitKind::Quota => {
                "clusters, nodes, cpus (or cpu_millis), memory (or memory_mib), gpus, storage (or storage_mib)"
            }
            LimitKind::Caps => "nodes, cpus (or cpu_millis), memory (or memory_mib), gpus",
        }
    }
}

/// Reads limits from a JSON object (see the module docs); the 400 says which field is wrong and
/// how to write it.
pub fn parse_limits(body: Option<&Value>, kind: LimitKind) -> HubResult<Limits> {
    let example = match kind {
        LimitKind::Quota => r#"{"clusters": 2, "nodes": 4, "cpus": 8, "memory": "16G"}"#,
        LimitKind::Caps => r#"{"nodes": 20, "cpus": 64, "memory": "256G", "gpus": 4}"#,
    };
    let object = match body {
        None => return Ok(Limits::default()),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(bad(format!(
                "Give the limits as a JSON object, e.g. {example}"
            )))
        }
    };
    let allowed: &[&str] = match kind {
        LimitKind::Quota => &[
            "clusters",
            "nodes",
            "cpus",
            "cpu_millis",
            "memory",
            "memory_mib",
            "gpus",
            "storage",
            "storage_mib",
        ],
        LimitKind::Caps => &[
            "nodes",
            "cpus",
            "cpu_millis",
            "memory",
            "memory_mib",
            "gpus",
        ],
    };
    if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!(
            "Unknown limit {unknown:?}: the limits are {}",
            kind.fields()
        )));
    }
    let either = |human: &str, exact: &str| -> HubResult<Option<(&Value, bool)>> {
        match (given(object, human), given(object, exact)) {
            (Some(_), Some(_)) => Err(bad(format!("Give {human} or {exact}, not both"))),
            (Some(v), None) => Ok(Some((v, true))),
            (None, Some(v)) => Ok(Some((v, false))),
            (None, None) => Ok(None),
        }
    };
    let cpu_millis = match either("cpus", "cpu_millis")? {
        Some((v, true)) => Some(cpus_to_millis(v)?),
        Some((v, false)) => Some(whole("cpu_millis", v)?),
        None => None,
    };
    let size = |human: &str, exact: &str| -> HubResult<Option<i64>> {
        Ok(match either(human, exact)? {
            Some((v, true)) => Some(size_to_mib(human, v)?),
            Some((v, false)) => Some(whole(exact, v)?),
            None => None,
        })
    };
    let count = |key: &str| -> HubResult<Option<i64>> {
        given(object, key).map(|v| whole(key, v)).transpose()
    };
    Ok(Limits {
        clusters: count("clusters")?,
        nodes: count("nodes")?,
        cpu_millis,
        memory_mib: size("memory", "memory_mib")?,
        gpus: count("gpus")?,
        storage_mib: size("storage", "storage_mib")?,
    })
}

fn bad(message: String) -> HubError {
    HubError::BadRequest(message)
}

/// A field's value unless it is absent, `null` or an empty string ("no limit").
fn given<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    match object.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(v) => Some(v),
    }
}

/// A number, or a string holding one.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

fn whole(key: &str, v: &Value) -> HubResult<i64> {
    let x = number(v).ok_or_else(|| {
        bad(format!(
            "{key} must be a whole number, e.g. 4 (or null for no limit), not {v}"
        ))
    })?;
    if x < 0.0 {
        return Err(bad(format!(
            "{key} cannot be negative ({v}): give 0 or more, or null for no limit"
        )));
    }
    if x.fract() != 0.0 {
        return Err(bad(format!(
            "{key} must be a whole number, e.g. 4, not {v}"
        )));
    }
    // MAX_LIMIT is exact in f64.
    #[allow(clippy::cast_precision_loss)]
    if x > MAX_LIMIT as f64 {
        return Err(bad(format!("{key} is too large ({v})")));
    }
    // A whole number in 0..=MAX_LIMIT.
    #[allow(clippy::cast_possible_truncation)]
    Ok(x as i64)
}

/// Cores (fractions allowed) → millicores.
fn cpus_to_millis(v: &Value) -> HubResult<i64> {
    let x = number(v).ok_or_else(|| {
        bad(format!(
            "cpus must be a number of CPU cores, e.g. 8 or 0.5, not {v}"
        ))
    })?;
    if x < 0.0 {
        return Err(bad(format!(
            "cpus cannot be negative ({v}): give 0 or more, or null for no limit"
        )));
    }
    let millis = (x * 1000.0).round();
    // MAX_LIMIT is exact in f64.
    #[allow(clippy::cast_precision_loss)]
    if millis > MAX_LIMIT as f64 {
        return Err(bad(format!("cpus is too large ({v})")));
    }
    // Rounded, in 0..=MAX_LIMIT.
    #[allow(clippy::cast_possible_truncation)]
    Ok(millis as i64)
}

/// `"16G"`, `"512M"`, a bare number of GiB… (read as the spawn form reads sizes) → MiB, rounded
/// up.
fn size_to_mib(key: &str, v: &Value) -> HubResult<i64> {
    let request = spawner::ClusterRequest::from_user_options(&serde_json::json!({ key: v }))
        .map_err(|e| match e {
            spawner::SpawnerError::Rejected(message) => bad(message),
            other => bad(other.to_string()),
        })?;
    let bytes = match key {
        "memory" => request.memory_bytes,
        _ => request.storage_bytes,
    }
    .unwrap_or(0);
    i64::try_from(bytes.div_ceil(MIB))
        .ok()
        .filter(|mib| *mib <= MAX_LIMIT)
        .ok_or_else(|| bad(format!("{key} is too large ({v})")))
}

/// CPU millicores as cores, the way they are typed: `8`, `1.5`, `0.25`.
pub fn cores_text(millis: i64) -> String {
    let whole = millis / 1000;
    let rest = millis % 1000;
    if rest == 0 {
        return whole.to_string();
    }
    let fraction = format!("{:03}", rest.abs());
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// MiB as a size the way it is typed, exactly: `16G`, `1.5G`, `512M`, `2T`.
pub fn size_input(mib: i64) -> String {
    let (value, unit) = scaled(mib, true);
    format!("{value}{unit}")
}

/// MiB as a size to read (up to two decimals): `16 GiB`, `1.5 GiB`, `512 MiB`.
pub fn size_text(mib: i64) -> String {
    let (value, unit) = scaled(mib, false);
    format!("{value} {unit}iB")
}

/// The largest unit `mib` reaches (with `exact`, only one that shows it exactly in two
/// decimals) and the value in it.
fn scaled(mib: i64, exact: bool) -> (String, &'static str) {
    const UNITS: [(i64, &str); 2] = [(1024 * 1024, "T"), (1024, "G")];
    for (size, unit) in UNITS {
        if mib >= size && (!exact || mib.saturating_mul(100) % size == 0) {
            // Below 2^53 (MAX_LIMIT): exact in f64.
            #[allow(clippy::cast_precision_loss)]
            let value = mib as f64 / size as f64;
            let text = format!("{value:.2}");
            let text = text.trim_end_matches('0').trim_end_matches('.');
            return (text.to_owned(), unit);
        }
    }
    (mib.to_string(), "M")
}

/// An account role named in a path; 404 naming the roles otherwise.
pub fn role_or_404(word: &str) -> HubResult<AccountRole> {
    AccountRole::parse(word).map_err(|_| {
        let roles: Vec<&str> = AccountRole::ALL.iter().map(|r| r.as_str()).collect();
        HubError::NotFound(format!(
            "No account role {word:?}: the roles are {}",
            roles.join(", ")
        ))
    })
}

/// Replaces a role's default limits.
pub async fn set_role(
    store: &Store,
    role: AccountRole,
    body: Option<&Value>,
) -> HubResult<RoleQuotaRow> {
    let limits = parse_limits(body, LimitKind::Quota)?;
    let row = store.set_role_quota(role, &limits, clock::now()).await?;
    tracing::info!(role = role.as_str(), ?limits, "role quota set");
    Ok(row)
}

/// A user's quota and what their clusters hold now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaAndUse {
    /// Their role's limits and their exception.
    pub quota: UserQuota,
    /// What their admitted clusters hold.
    pub used: Amounts,
}

/// The quota of `user` and their use now.
pub async fn of_user(store: &Store, user: &UserRow) -> HubResult<QuotaAndUse> {
    let quota = store
        .user_quota(user.id)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {}", user.name)))?;
    let used = store.reserved_by_user(user.id).await?;
    Ok(QuotaAndUse { quota, used })
}

/// Sets (replaces) a user's exception: the fields given override their role's, the others are
/// the role's. An empty body is refused (clearing is a `DELETE`).
pub async fn set_exception(
    store: &Store,
    user: &UserRow,
    body: Option<&Value>,
) -> HubResult<QuotaAndUse> {
    let limits = parse_limits(body, LimitKind::Quota)?;
    if limits == Limits::default() {
        return Err(bad(format!(
            "The exception sets no limit: give at least one of {} (to go back to the role's limits, remove the exception)",
            LimitKind::Quota.fields()
        )));
    }
    store
        .set_user_quota(user.id, &limits, None, clock::now())
        .await?;
    tracing::info!(user.name = %user.name, ?limits, "quota exception set");
    of_user(store, user).await
}

/// The `source` of an exception a campus login set from a quota class.
fn class_source(class: &str) -> String {
    format!("campus:{class}")
}

/// Brings a user's exception in line with the quota class their campus login's claims named:
/// sets the class's limits (marked as the class's), or with no class removes one an earlier
/// login set. An exception an administrator set stays: it is theirs to change.
pub async fn follow_quota_class(
    store: &Store,
    user: &UserRow,
    class: Option<(&str, &Limits)>,
) -> HubResult<()> {
    let current = store.user_quota(user.id).await?.and_then(|q| q.exception);
    let from_campus = current.as_ref().is_none_or(|e| {
        e.source
            .as_deref()
            .is_some_and(|s| s.starts_with("campus:"))
    });
    if !from_campus {
        if let Some((name, _)) = class {
            tracing::info!(user.name = %user.name, class = name,
                "quota class from the claims not applied: an administrator set this user's exception");
        }
        return Ok(());
    }
    match class {
        Some((name, limits)) => {
            let source = class_source(name);
            let same = current.as_ref().is_some_and(|e| {
                e.source.as_deref() == Some(source.as_str()) && &e.limits == limits
            });
            if !same {
                store
                    .set_user_quota(user.id, limits, Some(&source), clock::now())
                    .await?;
                tracing::info!(user.name = %user.name, class = name, "quota class applied");
            }
        }
        None => {
            if current.is_some() && store.clear_user_quota(user.id).await? {
                tracing::info!(user.name = %user.name, "quota class no longer named: exception removed");
            }
        }
    }
    Ok(())
}

/// Removes a user's exception; their role's limits hold again. Removing none is no error.
pub async fn clear_exception(store: &Store, user: &UserRow) -> HubResult<()> {
    if store.clear_user_quota(user.id).await? {
        tracing::info!(user.name = %user.name, "quota exception removed");
    }
    Ok(())
}

/// The capacity clusters are admitted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityView {
    /// What the backend reports it can run at once (`None`: unbounded or unknown).
    pub reported: Limits,
    /// The administrator's caps.
    pub caps: CapacityCapsRow,
    /// The smaller of both: what admission holds starts against.
    pub effective: Limits,
    /// What admitted clusters hold now.
    pub reserved: Amounts,
}

/// The capacity now.
pub async fn capacity(hub: &Services) -> HubResult<CapacityView> {
    let reported = backend_capacity(&hub.spawner.capacity());
    let caps = hub.store.capacity_caps().await?;
    let reserved = hub.store.admitted_amounts().await?;
    Ok(CapacityView {
        reported,
        effective: reported.min(caps.limits),
        caps,
        reserved,
    })
}

/// Replaces the capacity caps.
pub async fn set_caps(hub: &Services, body: Option<&Value>) -> HubResult<CapacityView> {
    let caps = parse_limits(body, LimitKind::Caps)?;
    hub.store.set_capacity_caps(&caps, clock::now()).await?;
    tracing::info!(?caps, "capacity caps set");
    capacity(hub).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quota(body: Value) -> HubResult<Limits> {
        parse_limits(Some(&body), LimitKind::Quota)
    }

    fn message(body: Value) -> String {
        match quota(body.clone()) {
            Err(HubError::BadRequest(m)) => m,
            other => panic!("expected a 400 for {body}, got {other:?}"),
        }
    }

    #[test]
    fn sizes_are_read_as_the_spawn_form_reads_them() {
        let limits = quota(json!({
            "clusters": 2, "nodes": "4", "cpus": 1.5, "memory": "16G", "gpus": 0, "storage": 100
        }))
        .unwrap();
        assert_eq!(
            limits,
            Limits {
                clusters: Some(2),
                nodes: Some(4),
                cpu_millis: Some(1500),
                memory_mib: Some(16 * 1024),
                gpus: Some(0),
                storage_mib: Some(100 * 1024),
            }
        );
        assert_eq!(
            quota(json!({"memory": "512M"})).unwrap().memory_mib,
            Some(512)
        );
        assert_eq!(
            quota(json!({"memory": "1.5GiB"})).unwrap().memory_mib,
            Some(1536)
        );
        assert_eq!(
            quota(json!({"cpus": "0.25"})).unwrap().cpu_millis,
            Some(250)
        );
        // The stored units round-trip.
        assert_eq!(
            quota(json!({"cpu_millis": 2500, "memory_mib": 100, "storage_mib": null})).unwrap(),
            Limits {
                cpu_millis: Some(2500),
                memory_mib: Some(100),
                ..Limits::default()
            }
        );
        // Absent, null and empty mean no limit.
        assert_eq!(
            quota(json!({"nodes": null, "cpus": ""})).unwrap(),
            Limits::default()
        );
        assert_eq!(
            parse_limits(None, LimitKind::Quota).unwrap(),
            Limits::default()
        );
    }

    #[test]
    fn bad_limits_get_a_message_that_says_what_to_write() {
        assert!(message(json!({"nodes": -1})).contains("nodes cannot be negative"));
        assert!(message(json!({"nodes": 2.5})).contains("nodes must be a whole number"));
        assert!(message(json!({"cpus": "many"})).contains("cpus must be a number"));
        assert!(message(json!({"memory": "lots"})).contains("write a size like"));
        assert!(message(json!({"memory": "-2G"})).contains("memory cannot be negative"));
        assert!(message(json!({"cpus": 1, "cpu_millis": 1000})).contains("not both"));
        let unknown = message(json!({"disk": 3}));
        assert!(unknown.contains("Unknown limit \"disk\""), "{unknown}");
        assert!(unknown.contains("storage"), "{unknown}");
        assert!(message(json!([1])).contains("JSON object"));
        assert!(message(json!({"gpus": 1e15})).contains("too large"));
        // Caps know no clusters or storage.
        let caps = parse_limits(Some(&json!({"clusters": 1})), LimitKind::Caps);
        assert!(matches!(caps, Err(HubError::BadRequest(m)) if m.contains("nodes, cpus")));
    }

    #[test]
    fn limits_are_written_back_the_way_they_are_typed() {
        assert_eq!(cores_text(8000), "8");
        assert_eq!(cores_text(1500), "1.5");
        assert_eq!(cores_text(250), "0.25");
        assert_eq!(cores_text(0), "0");
        assert_eq!(size_input(16 * 1024), "16G");
        assert_eq!(size_input(1536), "1.5G");
        assert_eq!(size_input(512), "512M");
        assert_eq!(size_input(3 * 1024 * 1024), "3T");
        assert_eq!(size_input(0), "0M");
        assert_eq!(size_text(16 * 1024), "16 GiB");
        assert_eq!(size_input(1500), "1500M");
        assert_eq!(size_text(1500), "1.46 GiB");
        for mib in [
            1,
            512,
            1500,
            1536,
            16 * 1024,
            100 * 1024,
            5 * 1024 * 1024 + 512,
        ] {
            let back = quota(json!({ "memory": size_input(mib) })).unwrap();
            assert_eq!(back.memory_mib, Some(mib));
        }
    }

    #[test]
    fn an_unknown_role_is_a_404_naming_the_roles() {
        assert_eq!(role_or_404("teacher").unwrap(), AccountRole::Teacher);
        let Err(HubError::NotFound(m)) = role_or_404("dean") else {
            panic!("dean is no role");
        };
        assert!(m.contains("student, teacher, admin"), "{m}");
    }
}
