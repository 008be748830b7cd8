//! `/hub/api/prices…`, `…/usage…` and `/hub/api/budgets…`: billing (a Xiji extension; see
//! `docs/billing.md`). Usage reports of a user, a group, a project and the installation as JSON
//! and CSV, a running server's live usage, the dated price versions and the budgets.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json as j, Value};

use super::{body_as, empty, json, ApiCaller, JsonBody};
use crate::clock;
use crate::db::PriceRow;
use crate::domain::access::administers_installation;
use crate::domain::access::Viewer;
use crate::domain::billing::{self, units, units_text, Period, Subject, UsageLine, UsageReport};
use crate::domain::budgets::{self, BudgetRequest, BudgetSettings, BudgetStatus};
use crate::domain::{HubError, Services};
use crate::error::ApiError;

type Params = Query<Vec<(String, String)>>;

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn period(hub: &Services, query: &[(String, String)]) -> Result<Period, ApiError> {
    Ok(Period::read(
        param(query, "from"),
        param(query, "to"),
        param(query, "month"),
        billing::today(hub),
    )?)
}

fn require_admin(caller: &ApiCaller) -> Result<(), ApiError> {
    if administers_installation(&caller.0.scopes) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Only administrators may manage prices and budgets",
        ))
    }
}

fn viewer(caller: &ApiCaller) -> Result<Viewer, ApiError> {
    let user = caller
        .0
        .user()
        .ok_or_else(|| ApiError::forbidden("A service's token cannot read a project's usage"))?;
    Ok(Viewer {
        user: user.clone(),
        admin: administers_installation(&caller.0.scopes),
    })
}

/// A price version's JSON: units per hour as numbers and exact millionths.
pub(crate) fn price_model(p: &PriceRow) -> Value {
    j!({
        "id": p.id,
        "effective_from": clock::iso(p.effective_from.saturating_mul(1_000_000)),
        "cpu_core_hour": units(p.cpu_core_hour),
        "memory_gib_hour": units(p.memory_gib_hour),
        "gpu_hour": units(p.gpu_hour),
        "cpu_core_hour_micros": p.cpu_core_hour,
        "memory_gib_hour_micros": p.memory_gib_hour,
        "gpu_hour_micros": p.gpu_hour,
        "note": p.note,
        "created": clock::iso(p.created),
    })
}

fn line_model(l: &UsageLine) -> Value {
    j!({
        "key": l.key,
        "label": l.label,
        "rows": l.rows,
        "node_seconds": l.node_seconds,
        "cpu_millicore_seconds": l.cpu_mcs,
        "cpu_used_ms": l.cpu_used_ms,
        "memory_mib_seconds": l.mib_s,
        "gpu_seconds": l.gpu_s,
        "cpu_hours": l.cpu_hours(),
        "cpu_used_hours": l.cpu_used_hours(),
        "memory_gib_hours": l.memory_gib_hours(),
        "gpu_hours": l.gpu_hours(),
        "efficiency": l.efficiency(),
        "cost": units(l.cost_micros),
        "cost_micros": l.cost_micros,
        "cost_by_resource_micros": {
            "cpu": l.cpu_cost_micros,
            "memory": l.memory_cost_micros,
            "gpu": l.gpu_cost_micros,
        },
    })
}

fn report_model(r: &UsageReport) -> Value {
    let lines = |ls: &[UsageLine]| Value::Array(ls.iter().map(line_model).collect());
    j!({
        "kind": r.subject.kind(),
        "name": r.subject.name(),
        "from": r.period.from.to_string(),
        "to": r.period.to.to_string(),
        "total": line_model(&r.total),
        "days": lines(&r.days),
        "projects": lines(&r.projects),
        "users": lines(&r.users),
    })
}

/// The report as JSON or, for a `.csv` path, as a CSV download.
async fn answer(
    hub: &Services,
    subject: Subject,
    period: Period,
    csv: bool,
) -> Result<Response, ApiError> {
    let report = billing::report(hub, subject, period).await?;
    if !csv {
        return Ok(json(StatusCode::OK, report_model(&report)));
    }
    let name = match report.subject.name() {
        n if n.is_empty() => "installation".to_owned(),
        n => n.replace('/', "-"),
    };
    let file: String = format!(
        "usage-{name}-{}-{}.csv",
        report.period.from, report.period.to
    )
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || "-_.".contains(c) {
            c
        } else {
            '_'
        }
    })
    .collect();
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        billing::csv(&report),
    )
        .into_response())
}

/// `GET /usage[.csv]?[user=|group=|project=owner/name]&from=&to=|month=`.
async fn usage_query(
    hub: Arc<Services>,
    caller: ApiCaller,
    query: Vec<(String, String)>,
    csv: bool,
) -> Result<Response, ApiError> {
    let period = period(&hub, &query)?;
    let subject = match (
        param(&query, "user"),
        param(&query, "group"),
        param(&query, "project"),
    ) {
        (Some(u), None, None) => billing::user_subject(&hub, &caller.0, u).await?,
        (None, Some(g), None) => billing::group_subject(&hub, &caller.0, g).await?,
        (None, None, Some(p)) => {
            let (owner, name) = p.split_once('/').ok_or_else(|| {
                ApiError::bad_request(format!("project is named owner/name, not {p:?}"))
            })?;
            billing::project_subject(&hub, &viewer(&caller)?, owner, name).await?
        }
        (None, None, None) => billing::installation_subject(&caller.0)?,
        _ => {
            return Err(ApiError::bad_request(
                "Give at most one of user, group and project",
            ))
        }
    };
    answer(&hub, subject, period, csv).await
}

/// `GET /usage`.
pub async fn usage(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Query(q): Params,
) -> Result<Response, ApiError> {
    usage_query(hub, caller, q, false).await
}

/// `GET /usage.csv`.
pub async fn usage_csv(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Query(q): Params,
) -> Result<Response, ApiError> {
    usage_query(hub, caller, q, true).await
}

/// `GET /users/{name}/usage`.
pub async fn user_usage(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let subject = billing::user_subject(&hub, &caller.0, &name).await?;
    answer(&hub, subject, period(&hub, &q)?, false).await
}

/// `GET /users/{name}/usage.csv`.
pub async fn user_usage_csv(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let subject = billing::user_subject(&hub, &caller.0, &name).await?;
    answer(&hub, subject, period(&hub, &q)?, true).await
}

/// `GET /groups/{name}/usage`.
pub async fn group_usage(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let subject = billing::group_subject(&hub, &caller.0, &name).await?;
    answer(&hub, subject, period(&hub, &q)?, false).await
}

/// `GET /groups/{name}/usage.csv`.
pub async fn group_usage_csv(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let subject = billing::group_subject(&hub, &caller.0, &name).await?;
    answer(&hub, subject, period(&hub, &q)?, true).await
}

/// `GET /projects/{owner}/{name}/usage`.
pub async fn project_usage(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let subject = billing::project_subject(&hub, &viewer(&caller)?, &owner, &name).await?;
    answer(&hub, subject, period(&hub, &q)?, false).await
}

/// `GET /projects/{owner}/{name}/usage.csv`.
pub async fn project_usage_csv(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let subject = billing::project_subject(&hub, &viewer(&caller)?, &owner, &name).await?;
    answer(&hub, subject, period(&hub, &q)?, true).await
}

/// A budget's status as JSON.
pub(crate) fn budget_model(s: &BudgetStatus) -> Value {
    j!({
        "id": s.budget.id,
        "kind": s.budget.kind,
        "target": s.target,
        "month": if s.budget.month.is_empty() { Value::Null } else { Value::from(s.budget.month.clone()) },
        "period": s.month,
        "limit": units(s.budget.limit_micros),
        "used": units(s.used_micros),
        "left": units(s.left_micros()),
        "limit_micros": s.budget.limit_micros,
        "used_micros": s.used_micros,
        "left_micros": s.left_micros(),
        "percent": s.percent(),
        "state": s.state,
        "release_at": s.release_at.map(|t| clock::iso(t.saturating_mul(1_000_000))),
        "note": s.budget.note,
        "updated": clock::iso(s.budget.updated),
    })
}

/// `GET /users/{name}/usage/live?server=`: a running server's time, cost so far, price per
/// hour and its most pressing budget. The server's own token may read it.
pub async fn live(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let Subject::User(user) = billing::user_subject(&hub, &caller.0, &name).await? else {
        return Err(ApiError::internal());
    };
    let server_name = param(&q, "server").unwrap_or("");
    let server = hub
        .store
        .server(user.id, server_name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{name} has no server {server_name:?}")))?;
    let live = billing::live_usage(&hub, server.id).await?;
    let project_id = live.as_ref().and_then(|l| l.project_id);
    let budget = budgets::most_pressing(budgets::statuses_for(&hub, user.id, project_id).await?);
    let (seconds, cost, per_hour) = live.as_ref().map_or((0, 0, 0), |l| {
        (l.running_seconds, l.cost_micros, l.price_per_hour_micros)
    });
    // The policy the running cluster holds: under `automatic` its pages warn before closing.
    let release_policy = match live {
        Some(_) => Some(crate::domain::release::held_policy(&hub, &server).await?),
        None => None,
    };
    Ok(json(
        StatusCode::OK,
        j!({
            "running": live.is_some(),
            "running_seconds": seconds,
            "cost": units(cost),
            "cost_micros": cost,
            "cost_text": units_text(cost),
            "price_per_hour": units(per_hour),
            "price_per_hour_micros": per_hour,
            "budget": budget.as_ref().map(budget_model),
            "release_policy": release_policy.map(|p| p.as_str()),
        }),
    ))
}

/// `GET /users/{name}/budgets`: the budgets the user's clusters count against this month.
pub async fn user_budgets(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let Subject::User(user) = billing::user_subject(&hub, &caller.0, &name).await? else {
        return Err(ApiError::internal());
    };
    let statuses = budgets::statuses_for(&hub, user.id, None).await?;
    Ok(json(
        StatusCode::OK,
        Value::Array(statuses.iter().map(budget_model).collect()),
    ))
}

/// `GET /prices`: every version, oldest first, and the one in force. Anyone signed in.
pub async fn list_prices(
    State(hub): State<Arc<Services>>,
    _caller: ApiCaller,
) -> Result<Response, ApiError> {
    let (versions, current) = billing::prices(&hub).await?;
    Ok(json(
        StatusCode::OK,
        j!({
            "current": current,
            "versions": versions.iter().map(price_model).collect::<Vec<_>>(),
        }),
    ))
}

/// `POST /prices`'s body: units per hour (numbers or decimal text) and when.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceBody {
    cpu_core_hour: Value,
    memory_gib_hour: Value,
    gpu_hour: Value,
    #[serde(default)]
    effective_from: Option<String>,
    #[serde(default)]
    note: String,
}

fn number_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `POST /prices`: a new version from now or later (administrators).
pub async fn add_price(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let body: PriceBody = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request("Give the prices as JSON: cpu_core_hour, memory_gib_hour, gpu_hour")
    })?;
    let effective_from = match body.effective_from.as_deref().filter(|t| !t.is_empty()) {
        Some(text) => Some(
            clock::parse_iso(text)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "effective_from must be an ISO 8601 time, not {text:?}"
                    ))
                })?
                .div_euclid(1_000_000),
        ),
        None => None,
    };
    let row = billing::add_price(
        &hub,
        billing::NewPrice {
            cpu_core_hour: number_text(&body.cpu_core_hour),
            memory_gib_hour: number_text(&body.memory_gib_hour),
            gpu_hour: number_text(&body.gpu_hour),
            effective_from,
            note: body.note,
        },
    )
    .await?;
    Ok(json(StatusCode::CREATED, price_model(&row)))
}

/// `DELETE /prices/{id}`: a version that has not taken effect (administrators).
pub async fn delete_price(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("No price version {id}")))?;
    billing::delete_price(&hub, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /budgets` (administrators).
pub async fn list_budgets(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let all = budgets::list(&hub).await?;
    Ok(json(
        StatusCode::OK,
        Value::Array(all.iter().map(budget_model).collect()),
    ))
}

/// `POST /budgets`: sets a target's budget for a month or every month (administrators).
pub async fn put_budget(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let req: BudgetRequest = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request("Give the budget as JSON: kind, target, limit (and month, note)")
    })?;
    let status = budgets::put(&hub, req).await?;
    Ok(json(StatusCode::OK, budget_model(&status)))
}

/// `DELETE /budgets/{id}` (administrators).
pub async fn delete_budget(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::from(HubError::NotFound(format!("No budget {id}"))))?;
    budgets::delete(&hub, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /budgets/settings` (administrators).
pub async fn get_budget_settings(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let s = budgets::settings(&hub).await?;
    Ok(json(StatusCode::OK, j!(s)))
}

/// `PUT /budgets/settings` (administrators).
pub async fn put_budget_settings(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let current = budgets::settings(&hub).await?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Change {
        warn_percent: Option<i64>,
        release_grace_seconds: Option<i64>,
    }
    let change: Change = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request("Give warn_percent and/or release_grace_seconds as JSON")
    })?;
    let new = BudgetSettings {
        warn_percent: change.warn_percent.unwrap_or(current.warn_percent),
        release_grace_seconds: change
            .release_grace_seconds
            .unwrap_or(current.release_grace_seconds),
    };
    Ok(json(
        StatusCode::OK,
        j!(budgets::set_settings(&hub, new).await?),
    ))
}
