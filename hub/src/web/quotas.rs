//! `/hub/admin/quotas`: the quotas' administration — each role's default limits, users'
//! exceptions (find a user, set or remove theirs) and the caps on the backend's capacity — and
//! the "Your quota" card of the home page (the rules are `domain/quotas.rs`).
//!
//! The page is rendered with what is stored; its buttons call `/hub/api/quotas…`,
//! `/hub/api/users/{name}/quota` and `/hub/api/capacity` from `hub/static/admin_quotas.js`, so
//! a refusal shows the API's message as it is.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::{PageError, PageRequest};
use crate::db::{Amounts, Limits, UserRow};
use crate::domain::access::administers_installation;
use crate::domain::quotas::{self, cores_text, size_input, size_text};
use crate::domain::Services;

/// A quantity quotas count, as the pages name it: the API's field and its label's key.
#[derive(Debug, Clone, Copy)]
struct Quantity {
    /// The field the API takes (`cpus`, `memory`…).
    field: &'static str,
    /// Its i18n key.
    label: &'static str,
    /// How its stored value is written.
    unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Count,
    Millicores,
    Mib,
}

const QUANTITIES: [Quantity; 6] = [
    Quantity {
        field: "clusters",
        label: "quota_clusters",
        unit: Unit::Count,
    },
    Quantity {
        field: "nodes",
        label: "quota_nodes",
        unit: Unit::Count,
    },
    Quantity {
        field: "cpus",
        label: "quota_cpus",
        unit: Unit::Millicores,
    },
    Quantity {
        field: "memory",
        label: "quota_memory",
        unit: Unit::Mib,
    },
    Quantity {
        field: "gpus",
        label: "quota_gpus",
        unit: Unit::Count,
    },
    Quantity {
        field: "storage",
        label: "quota_storage",
        unit: Unit::Mib,
    },
];

/// Capacity counts no clusters and no storage.
fn is_hardware(q: &Quantity) -> bool {
    !matches!(q.field, "clusters" | "storage")
}

impl Quantity {
    fn of_limits(&self, l: &Limits) -> Option<i64> {
        match self.field {
            "clusters" => l.clusters,
            "nodes" => l.nodes,
            "cpus" => l.cpu_millis,
            "memory" => l.memory_mib,
            "gpus" => l.gpus,
            _ => l.storage_mib,
        }
    }

    fn of_amounts(&self, a: &Amounts) -> i64 {
        match self.field {
            "clusters" => a.clusters,
            "nodes" => a.nodes,
            "cpus" => a.cpu_millis,
            "memory" => a.memory_mib,
            "gpus" => a.gpus,
            _ => a.storage_mib,
        }
    }

    /// As typed into a field (`""`: none).
    fn input(&self, value: Option<i64>) -> String {
        match (value, self.unit) {
            (None, _) => String::new(),
            (Some(v), Unit::Count) => v.to_string(),
            (Some(v), Unit::Millicores) => cores_text(v),
            (Some(v), Unit::Mib) => size_input(v),
        }
    }

    /// As read (`16 GiB`).
    fn text(&self, value: i64) -> String {
        match self.unit {
            Unit::Count => value.to_string(),
            Unit::Millicores => cores_text(value),
            Unit::Mib if value == 0 => "0".to_owned(),
            Unit::Mib => size_text(value),
        }
    }
}

/// One limit in a form: the field, its label, the value as typed, and what an empty field
/// means (the role's value for an exception).
#[derive(Debug, Serialize)]
struct LimitField {
    field: &'static str,
    label: &'static str,
    value: String,
    fallback: Option<String>,
}

fn fields(limits: &Limits, fallback: Option<&Limits>) -> Vec<LimitField> {
    QUANTITIES
        .iter()
        .map(|q| LimitField {
            field: q.field,
            label: q.label,
            value: q.input(q.of_limits(limits)),
            fallback: fallback.map(|f| q.input(q.of_limits(f))),
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct RoleView {
    role: &'static str,
    fields: Vec<LimitField>,
}

#[derive(Debug, Serialize)]
struct ExceptionView {
    name: String,
    role: &'static str,
    fields: Vec<LimitField>,
    /// The campus quota class that set it, if a login did.
    quota_class: Option<String>,
}

/// One row of the capacity table.
#[derive(Debug, Serialize)]
struct CapacityRow {
    field: &'static str,
    label: &'static str,
    reported: Option<String>,
    cap: String,
    effective: Option<String>,
    reserved: String,
}

/// `GET /hub/admin/quotas`.
pub(crate) async fn admin_page(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
) -> Result<Response, PageError> {
    let (_, caller) = page.require_user()?;
    if !administers_installation(&caller.scopes) {
        return Err(PageError::status(StatusCode::FORBIDDEN));
    }
    let role_rows = hub.store.role_quotas().await?;
    let roles: Vec<RoleView> = role_rows
        .iter()
        .map(|r| RoleView {
            role: r.role.as_str(),
            fields: fields(&r.limits, None),
        })
        .collect();
    let exceptions: Vec<ExceptionView> = hub
        .store
        .user_quota_exceptions()
        .await?
        .iter()
        .map(|e| {
            let role_limits = role_rows
                .iter()
                .find(|r| r.role == e.account_role)
                .map(|r| r.limits)
                .unwrap_or_default();
            ExceptionView {
                name: e.user_name.clone(),
                role: e.account_role.as_str(),
                fields: fields(&e.limits, Some(&role_limits)),
                quota_class: e
                    .source
                    .as_deref()
                    .and_then(|s| s.strip_prefix("campus:"))
                    .map(str::to_owned),
            }
        })
        .collect();
    let capacity = quotas::capacity(&hub).await?;
    let capacity_rows: Vec<CapacityRow> = QUANTITIES
        .iter()
        .filter(|q| is_hardware(q))
        .map(|q| CapacityRow {
            field: q.field,
            label: q.label,
            reported: q.of_limits(&capacity.reported).map(|v| q.text(v)),
            cap: q.input(q.of_limits(&capacity.caps.limits)),
            effective: q.of_limits(&capacity.effective).map(|v| q.text(v)),
            reserved: q.text(q.of_amounts(&capacity.reserved)),
        })
        .collect();
    Ok(page.render(
        "admin_quotas.html",
        context! {
            page => "admin-quotas",
            roles => roles,
            exceptions => exceptions,
            capacity => capacity_rows,
            quantities => QUANTITIES.iter().map(|q| (q.field, q.label)).collect::<Vec<_>>(),
        },
    ))
}

/// One line of the home page's quota card.
#[derive(Debug, Serialize)]
pub(crate) struct QuotaLine {
    field: &'static str,
    label: &'static str,
    used: String,
    limit: Option<String>,
    /// Used share of the limit, 0–100 (`None`: no limit).
    percent: Option<i64>,
}

/// The home page's "Your quota" card.
#[derive(Debug, Serialize)]
pub(crate) struct QuotaCard {
    lines: Vec<QuotaLine>,
    exception: bool,
}

/// The card of `user`: each limit that holds for them and what their running clusters hold.
pub(crate) async fn home_card(hub: &Services, user: &UserRow) -> Result<QuotaCard, PageError> {
    let q = quotas::of_user(&hub.store, user).await?;
    let limits = q.quota.effective();
    let lines = QUANTITIES
        .iter()
        .map(|quantity| {
            let used = quantity.of_amounts(&q.used);
            let limit = quantity.of_limits(&limits);
            QuotaLine {
                field: quantity.field,
                label: quantity.label,
                used: quantity.text(used),
                limit: limit.map(|l| quantity.text(l)),
                percent: limit.map(|l| match l {
                    0 if used == 0 => 0,
                    0 => 100,
                    l => (used.saturating_mul(100) / l).clamp(0, 100),
                }),
            }
        })
        .collect();
    Ok(QuotaCard {
        lines,
        exception: q.quota.exception.is_some(),
    })
}
