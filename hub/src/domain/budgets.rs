//! Budgets: a monthly limit on what a user, a group (its members together) or a project may
//! cost. At the warning threshold (default 80 %) the user is warned (the pages' banner, the live
//! usage the JupyterLab extension shows); once a budget is used up, new starts it covers are
//! refused ([`check_start`]) and its running clusters are released a grace period later
//! (default 5 minutes) by [`enforce`], a loop of the hub.
//!
//! Months are the installation's local calendar months; the usage is the ledger's rows of the
//! month's days (checkpointed every few seconds, so a running cluster counts with a small lag).

use std::collections::HashMap;
use std::sync::Arc;

use super::billing::{self, units_text, Period};
use super::{HubError, HubResult, Services};
use crate::db::{BudgetKind, BudgetRow, UsageFilter, UsageScope, UserRow};

/// How often [`enforce`] looks at the running clusters' budgets.
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Settings key: the warning threshold, percent of the limit.
const WARN_PERCENT_KEY: &str = "budgets.warn_percent";
/// Settings key: seconds between a budget being used up and its clusters' release.
const GRACE_KEY: &str = "budgets.release_grace_seconds";

/// The administrators' budget settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BudgetSettings {
    /// Warn at this percentage of a limit (1–100).
    pub warn_percent: i64,
    /// Seconds between a budget being used up and the release of its running clusters.
    pub release_grace_seconds: i64,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            warn_percent: 80,
            release_grace_seconds: 300,
        }
    }
}

/// The budget settings as stored (defaults where none is).
pub async fn settings(hub: &Services) -> HubResult<BudgetSettings> {
    let d = BudgetSettings::default();
    let read = |v: Option<String>, default: i64| v.and_then(|t| t.parse().ok()).unwrap_or(default);
    Ok(BudgetSettings {
        warn_percent: read(hub.store.setting(WARN_PERCENT_KEY).await?, d.warn_percent),
        release_grace_seconds: read(hub.store.setting(GRACE_KEY).await?, d.release_grace_seconds),
    })
}

/// Changes the budget settings.
pub async fn set_settings(hub: &Services, new: BudgetSettings) -> HubResult<BudgetSettings> {
    if !(1..=100).contains(&new.warn_percent) {
        return Err(HubError::BadRequest(
            "warn_percent must be between 1 and 100".into(),
        ));
    }
    if !(0..=86_400).contains(&new.release_grace_seconds) {
        return Err(HubError::BadRequest(
            "release_grace_seconds must be between 0 and 86400 (a day)".into(),
        ));
    }
    hub.store
        .set_setting(WARN_PERCENT_KEY, &new.warn_percent.to_string())
        .await?;
    hub.store
        .set_setting(GRACE_KEY, &new.release_grace_seconds.to_string())
        .await?;
    Ok(new)
}

/// Where a budget stands this month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetState {
    /// Below the warning threshold.
    Ok,
    /// At or above the warning threshold.
    Warning,
    /// Used up.
    Exceeded,
}

/// A budget with what its target used in a month.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    /// The budget.
    pub budget: BudgetRow,
    /// The user's or group's name, the project's `owner/name`.
    pub target: String,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The month's cost so far, millionths.
    pub used_micros: i64,
    /// Where it stands.
    pub state: BudgetState,
    /// When its running clusters are (or will be) released, Unix seconds; only when used up.
    pub release_at: Option<i64>,
}

impl BudgetStatus {
    /// What is left, millionths (never below 0).
    pub fn left_micros(&self) -> i64 {
        (self.budget.limit_micros - self.used_micros).max(0)
    }

    /// The share used, in percent (rounded down).
    pub fn percent(&self) -> i64 {
        if self.budget.limit_micros <= 0 {
            return if self.used_micros > 0 { 100 } else { 0 };
        }
        let p = i128::from(self.used_micros) * 100 / i128::from(self.budget.limit_micros);
        i64::try_from(p).unwrap_or(i64::MAX)
    }

    /// How close it is to its limit, to pick the most pressing of several.
    fn pressure(&self) -> (u8, i64) {
        let rank = match self.state {
            BudgetState::Exceeded => 2,
            BudgetState::Warning => 1,
            BudgetState::Ok => 0,
        };
        (rank, self.percent())
    }
}

/// The month (`YYYY-MM`) and its days, now.
fn this_month(hub: &Services) -> (String, Period) {
    let today = billing::today(hub);
    (today.format("%Y-%m").to_string(), Period::month_of(today))
}

/// The budget that applies in `month`: the month's own, else the every-month one.
fn effective<'a>(rows: &'a [BudgetRow], month: &str) -> Option<&'a BudgetRow> {
    rows.iter()
        .find(|b| b.month == month)
        .or_else(|| rows.iter().find(|b| b.month.is_empty()))
}

fn scope_of(kind: BudgetKind, target_id: i64) -> UsageScope {
    match kind {
        BudgetKind::User => UsageScope::User(target_id),
        BudgetKind::Group => UsageScope::Group(target_id),
        BudgetKind::Project => UsageScope::Project(target_id),
    }
}

/// The name of a budget's target (`#id` once it is gone).
async fn target_name(hub: &Services, kind: BudgetKind, id: i64) -> HubResult<String> {
    let name = match kind {
        BudgetKind::User => hub.store.user_by_id(id).await?.map(|u| u.name),
        BudgetKind::Group => hub.store.group_name(id).await?,
        BudgetKind::Project => hub
            .store
            .project(id)
            .await?
            .map(|p| format!("{}/{}", p.owner, p.name)),
    };
    Ok(name.unwrap_or_else(|| format!("#{id}")))
}

/// The status of `budget` in `month` (whose days are `period`).
async fn status(
    hub: &Services,
    budget: &BudgetRow,
    month: &str,
    period: Period,
    settings: BudgetSettings,
) -> HubResult<BudgetStatus> {
    let filter = UsageFilter {
        scope: scope_of(budget.kind, budget.target_id),
        from_day: period.from.format("%Y-%m-%d").to_string(),
        to_day: period.to.format("%Y-%m-%d").to_string(),
    };
    let used = hub.store.usage_cost(&filter).await?;
    let limit = i128::from(budget.limit_micros);
    let state = if i128::from(used) >= limit {
        BudgetState::Exceeded
    } else if i128::from(used) * 100 >= limit * i128::from(settings.warn_percent) {
        BudgetState::Warning
    } else {
        BudgetState::Ok
    };
    let release_at = match state {
        BudgetState::Exceeded => Some(
            hub.store
                .budget_exceeded_at(budget.id, month)
                .await?
                .unwrap_or_else(|| chrono::Utc::now().timestamp())
                .saturating_add(settings.release_grace_seconds),
        ),
        _ => None,
    };
    Ok(BudgetStatus {
        budget: budget.clone(),
        target: target_name(hub, budget.kind, budget.target_id).await?,
        month: month.to_owned(),
        used_micros: used,
        state,
        release_at,
    })
}

/// The budgets a cluster of `user_id` (running `project_id`) counts against this month: the
/// user's, each of their groups', the project's.
pub async fn statuses_for(
    hub: &Services,
    user_id: i64,
    project_id: Option<i64>,
) -> HubResult<Vec<BudgetStatus>> {
    let (month, period) = this_month(hub);
    let settings = settings(hub).await?;
    let mut targets = vec![(BudgetKind::User, user_id)];
    for g in hub.store.group_ids_of(user_id).await? {
        targets.push((BudgetKind::Group, g));
    }
    if let Some(p) = project_id {
        targets.push((BudgetKind::Project, p));
    }
    let mut out = Vec::new();
    for (kind, id) in targets {
        let rows = hub.store.budgets_of(kind, id).await?;
        if let Some(budget) = effective(&rows, &month) {
            out.push(status(hub, budget, &month, period, settings).await?);
        }
    }
    Ok(out)
}

/// The most pressing of several statuses.
pub fn most_pressing(statuses: Vec<BudgetStatus>) -> Option<BudgetStatus> {
    statuses.into_iter().max_by_key(BudgetStatus::pressure)
}

/// What the pages' banner shows a user: the most pressing budget at or above the warning
/// threshold among theirs, their groups' and those of the projects they run now.
pub async fn banner(hub: &Services, user: &UserRow) -> HubResult<Option<BudgetStatus>> {
    let mut statuses = statuses_for(hub, user.id, None).await?;
    for cluster in hub.store.admitted_clusters().await? {
        if let (true, Some(p)) = (cluster.user_id == user.id, cluster.project_id) {
            let rows = hub.store.budgets_of(BudgetKind::Project, p).await?;
            let (month, period) = this_month(hub);
            if let Some(budget) = effective(&rows, &month) {
                let settings = settings(hub).await?;
                statuses.push(status(hub, budget, &month, period, settings).await?);
            }
        }
    }
    Ok(most_pressing(statuses).filter(|s| s.state != BudgetState::Ok))
}

/// `Your`, `Your group physics's`, `Project ann/thesis's`: whose budget it is.
fn whose(s: &BudgetStatus) -> String {
    match s.budget.kind {
        BudgetKind::User => "Your".to_owned(),
        BudgetKind::Group => format!("Your group {}'s", s.target),
        BudgetKind::Project => format!("Project {}'s", s.target),
    }
}

/// What a refused start says.
fn used_up_message(s: &BudgetStatus) -> String {
    let whose = whose(s);
    format!(
        "{whose} budget for {} is used up ({} of {} units): no new cluster can start until next \
         month or until an administrator raises it",
        s.month,
        units_text(s.used_micros),
        units_text(s.budget.limit_micros)
    )
}

/// What a start's progress stream says when a budget it counts against is past the warning
/// threshold.
fn warning_message(s: &BudgetStatus) -> String {
    let whose = whose(s);
    format!(
        "{whose} budget for {} is {} % used ({} of {} units): clusters are released when it is \
         used up",
        s.month,
        s.percent(),
        units_text(s.used_micros),
        units_text(s.budget.limit_micros)
    )
}

/// Refuses (403) a start of `user`'s cluster (running `project_id`) when a budget it would count
/// against is used up this month; otherwise the warning to show, if one is past the threshold.
pub async fn check_start(
    hub: &Services,
    user: &UserRow,
    project_id: Option<i64>,
) -> HubResult<Option<String>> {
    let statuses = statuses_for(hub, user.id, project_id).await?;
    if let Some(s) = statuses.iter().find(|s| s.state == BudgetState::Exceeded) {
        tracing::info!(user.name = %user.name, budget.id = s.budget.id, "start refused: budget used up");
        return Err(HubError::Forbidden(used_up_message(s)));
    }
    Ok(most_pressing(statuses)
        .filter(|s| s.state == BudgetState::Warning)
        .map(|s| warning_message(&s)))
}

/// The loop's step: for every cluster holding resources, its used-up budgets are noted (the
/// first time starts the grace period) and, once the grace period is over, the cluster is
/// released. A budget no longer used up (its limit was raised) forgets its grace period.
pub async fn enforce(hub: &Arc<Services>) -> HubResult<()> {
    let clusters = hub.store.admitted_clusters().await?;
    if clusters.is_empty() {
        return Ok(());
    }
    let (month, _) = this_month(hub);
    let settings = settings(hub).await?;
    let now = chrono::Utc::now().timestamp();
    // Budgets shared by several clusters (a group's) are looked at once per pass.
    let mut seen: HashMap<i64, Option<i64>> = HashMap::new();
    for cluster in clusters {
        let mut release_at: Option<i64> = None;
        for s in statuses_for(hub, cluster.user_id, cluster.project_id).await? {
            let since = match seen.get(&s.budget.id) {
                Some(v) => *v,
                None => {
                    let v = if s.state == BudgetState::Exceeded {
                        Some(
                            hub.store
                                .budget_exceeded_since(s.budget.id, &month, now)
                                .await?,
                        )
                    } else {
                        if s.state == BudgetState::Ok
                            || hub
                                .store
                                .budget_exceeded_at(s.budget.id, &month)
                                .await?
                                .is_some()
                        {
                            hub.store.clear_budget_exceeded(s.budget.id, &month).await?;
                        }
                        None
                    };
                    seen.insert(s.budget.id, v);
                    v
                }
            };
            if let Some(since) = since {
                let at = since.saturating_add(settings.release_grace_seconds);
                release_at = Some(release_at.map_or(at, |r: i64| r.min(at)));
            }
        }
        if release_at.is_some_and(|at| now >= at) {
            release(hub, cluster.user_id, &cluster.server_name).await;
        }
    }
    Ok(())
}

/// Stops a cluster whose budget is used up; a failure is logged and tried again next pass.
async fn release(hub: &Arc<Services>, user_id: i64, server_name: &str) {
    let found = async {
        let Some(user) = hub.store.user_by_id(user_id).await? else {
            return Ok::<_, HubError>(None);
        };
        let server = hub.store.server(user.id, server_name).await?;
        Ok(server.map(|s| (user, s)))
    }
    .await;
    match found {
        Ok(Some((user, server))) => {
            tracing::info!(user.name = %user.name, server.name = %server_name, "releasing a cluster: its budget is used up");
            if let Err(e) = super::servers::stop(hub, &user, &server).await {
                tracing::warn!(user.name = %user.name, server.name = %server_name, error = %e, "could not release a cluster over budget");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not read a cluster over budget"),
    }
}

/// An administrator's budget: whose (`kind` and `target`: a user's or group's name, a project's
/// `owner/name`), which month (`YYYY-MM`, or none: every month), the limit in units.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    /// `user`, `group` or `project`.
    pub kind: String,
    /// The user's or group's name, the project's `owner/name`.
    pub target: String,
    /// `YYYY-MM`; absent or empty: every month.
    #[serde(default)]
    pub month: Option<String>,
    /// The limit in billing units (a number or decimal text).
    pub limit: serde_json::Value,
    /// A note.
    #[serde(default)]
    pub note: String,
}

/// Finds the target's id.
async fn target_id(hub: &Services, kind: BudgetKind, target: &str) -> HubResult<i64> {
    let target = target.trim();
    let missing = || HubError::BadRequest(format!("No {kind} {target:?}"));
    match kind {
        BudgetKind::User => Ok(hub.store.user(target).await?.ok_or_else(missing)?.id),
        BudgetKind::Group => Ok(hub.store.group(target).await?.ok_or_else(missing)?.id),
        BudgetKind::Project => {
            let (owner, name) = target.split_once('/').ok_or_else(|| {
                HubError::BadRequest(format!("A project is named owner/name, not {target:?}"))
            })?;
            Ok(hub
                .store
                .project_by_name(owner, name)
                .await?
                .ok_or_else(missing)?
                .id)
        }
    }
}

/// Sets a budget (replacing the target's budget for the same month).
pub async fn put(hub: &Services, req: BudgetRequest) -> HubResult<BudgetStatus> {
    let kind = BudgetKind::parse(req.kind.trim()).map_err(HubError::BadRequest)?;
    let id = target_id(hub, kind, &req.target).await?;
    let month = req.month.unwrap_or_default().trim().to_owned();
    if !month.is_empty()
        && chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").is_err()
    {
        return Err(HubError::BadRequest(format!(
            "month must be like 2026-03, or empty for every month, not {month:?}"
        )));
    }
    let limit_text = match &req.limit {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let limit = billing::parse_units(&limit_text, "limit")?;
    if req.note.chars().count() > 500 {
        return Err(HubError::BadRequest(
            "note is longer than 500 characters".into(),
        ));
    }
    let row = hub
        .store
        .put_budget(
            kind,
            id,
            &month,
            limit,
            req.note.trim(),
            crate::clock::now(),
        )
        .await?;
    tracing::info!(budget.id = row.id, budget.kind = %kind, budget.target = id, "budget set");
    status_now(hub, &row).await
}

/// A budget's status in the current month (or in its own month, for a one-month budget).
pub async fn status_now(hub: &Services, budget: &BudgetRow) -> HubResult<BudgetStatus> {
    let (this, period) = this_month(hub);
    let settings = settings(hub).await?;
    if budget.month.is_empty() || budget.month == this {
        return status(hub, budget, &this, period, settings).await;
    }
    let first = chrono::NaiveDate::parse_from_str(&format!("{}-01", budget.month), "%Y-%m-%d")
        .map_err(|_| HubError::Internal(format!("stored budget month {:?}", budget.month)))?;
    status(
        hub,
        budget,
        &budget.month,
        Period::month_of(first),
        settings,
    )
    .await
}

/// Every budget with where it stands.
pub async fn list(hub: &Services) -> HubResult<Vec<BudgetStatus>> {
    let mut out = Vec::new();
    for b in hub.store.budgets().await? {
        out.push(status_now(hub, &b).await?);
    }
    Ok(out)
}

/// Deletes a budget.
pub async fn delete(hub: &Services, id: i64) -> HubResult<()> {
    if hub.store.delete_budget(id).await? {
        Ok(())
    } else {
        Err(HubError::NotFound(format!("No budget {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, month: &str) -> BudgetRow {
        BudgetRow {
            id,
            kind: BudgetKind::User,
            target_id: 1,
            month: month.into(),
            limit_micros: 1,
            note: String::new(),
            created: 0,
            updated: 0,
        }
    }

    #[test]
    fn a_months_own_budget_replaces_the_every_month_one() {
        let rows = vec![row(1, ""), row(2, "2026-03")];
        assert_eq!(effective(&rows, "2026-03").map(|b| b.id), Some(2));
        assert_eq!(effective(&rows, "2026-04").map(|b| b.id), Some(1));
        assert_eq!(effective(&rows[1..], "2026-04"), None);
    }
}
