//! Billing: what an interval of reserved resources costs under a price version, and the usage
//! reports built from the ledger's rows.
//!
//! Money is integer throughout: prices and costs are millionths of a billing unit; the ledger's
//! units are CPU millicore-seconds, MiB-seconds and GPU-seconds.

use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate};

use super::access::administers_installation;
use super::access::Viewer;
use super::identity::Caller;
use super::{HubError, HubResult, Services};
use crate::db::{
    PriceRow, ProjectRole, ProjectRow, UsageFilter, UsageGrouping, UsageScope, UsageSums, UserRow,
};

/// CPU millicore-seconds in a core-hour.
const MCS_PER_CORE_HOUR: i128 = 1000 * 3600;
/// MiB-seconds in a GiB-hour.
const MIB_S_PER_GIB_HOUR: i128 = 1024 * 3600;
/// GPU-seconds in a GPU-hour.
const GPU_S_PER_GPU_HOUR: i128 = 3600;
/// The least common multiple of the three, so one interval's cost is floored once.
const COMMON: i128 = 460_800_000;

/// The cost, in millionths of a billing unit, of one interval's reserved units under `price`:
/// `cpu_mcs` CPU millicore-seconds, `mib_s` MiB-seconds and `gpu_s` GPU-seconds. Integer math in
/// `i128`, floored once over the sum (so an interval never costs more than its exact price).
pub fn cost_micros(price: &PriceRow, cpu_mcs: i64, mib_s: i64, gpu_s: i64) -> i64 {
    // Saturating: no real interval comes near i128's range, but a corrupt input must not panic.
    let part = |units: i64, per_hour: i64, scale: i128| {
        i128::from(units)
            .saturating_mul(i128::from(per_hour))
            .saturating_mul(COMMON / scale)
    };
    let numerator = part(cpu_mcs, price.cpu_core_hour, MCS_PER_CORE_HOUR)
        .saturating_add(part(mib_s, price.memory_gib_hour, MIB_S_PER_GIB_HOUR))
        .saturating_add(part(gpu_s, price.gpu_hour, GPU_S_PER_GPU_HOUR));
    let cost = numerator.div_euclid(COMMON);
    i64::try_from(cost).unwrap_or(if cost < 0 { i64::MIN } else { i64::MAX })
}

/// The version in force at `t` (Unix seconds) among `versions` ordered by `effective_from`: the
/// last one that starts at or before `t` (the first one if `t` is before all of them).
pub fn price_at(versions: &[PriceRow], t: i64) -> Option<&PriceRow> {
    versions
        .iter()
        .rev()
        .find(|p| p.effective_from <= t)
        .or_else(|| versions.first())
}

/// Longest period a report covers, in days.
pub const MAX_PERIOD_DAYS: i64 = 366;

/// `12.345678`: millionths of a unit as an exact decimal.
pub fn units_text(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// Millionths of a unit as a JSON number of units (for display; `_micros` is exact).
pub fn units(micros: i64) -> f64 {
    // Exact below 2^53 millionths (9 billion units), far above any bill.
    micros as f64 / 1e6
}

/// `1.5` or `"0.25"` units → millionths, exactly (at most six decimals, not negative).
pub fn parse_units(text: &str, what: &str) -> HubResult<i64> {
    let bad = || {
        HubError::BadRequest(format!(
            "{what} must be a number of billing units with at most six decimals, not {text:?}"
        ))
    };
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: i64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)
}

/// What one cluster of the given per-node sizes costs per hour under `price`, millionths.
pub fn hourly_micros(
    price: &PriceRow,
    nodes: i64,
    cpu_millis: i64,
    memory_mib: i64,
    gpus: i64,
) -> i64 {
    let n = nodes.max(0);
    cost_micros(
        price,
        n.saturating_mul(cpu_millis).saturating_mul(3600),
        n.saturating_mul(memory_mib).saturating_mul(3600),
        n.saturating_mul(gpus).saturating_mul(3600),
    )
}

/// An inclusive range of local days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

impl Period {
    /// The month of `day`, from its first day to its last.
    pub fn month_of(day: NaiveDate) -> Period {
        let from = day.with_day(1).unwrap_or(day);
        let to = from
            .checked_add_months(Months::new(1))
            .and_then(|d| d.pred_opt())
            .unwrap_or(day);
        Period { from, to }
    }

    /// From the request: `month` (`YYYY-MM`), or `from` and `to` (`YYYY-MM-DD`, either may be
    /// left out); nothing is the current month up to `today`.
    pub fn read(
        from: Option<&str>,
        to: Option<&str>,
        month: Option<&str>,
        today: NaiveDate,
    ) -> HubResult<Period> {
        let day = |text: &str, what: &str| {
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
                HubError::BadRequest(format!(
                    "{what} must be a date like 2026-03-01, not {text:?}"
                ))
            })
        };
        if let Some(month) = month.filter(|m| !m.trim().is_empty()) {
            if from.is_some() || to.is_some() {
                return Err(HubError::BadRequest(
                    "Give either month or from/to, not both".into(),
                ));
            }
            let first = day(&format!("{}-01", month.trim()), "month").map_err(|_| {
                HubError::BadRequest(format!("month must be like 2026-03, not {month:?}"))
            })?;
            return Ok(Period::month_of(first));
        }
        let this_month = Period::month_of(today);
        let from = match from.filter(|t| !t.trim().is_empty()) {
            Some(t) => day(t, "from")?,
            None => this_month.from,
        };
        let to = match to.filter(|t| !t.trim().is_empty()) {
            Some(t) => day(t, "to")?,
            None => today.max(from),
        };
        if to < from {
            return Err(HubError::BadRequest(format!(
                "to ({to}) is before from ({from})"
            )));
        }
        if (to - from).num_days() >= MAX_PERIOD_DAYS {
            return Err(HubError::BadRequest(format!(
                "A report covers at most {MAX_PERIOD_DAYS} days; ask for a shorter period"
            )));
        }
        Ok(Period { from, to })
    }

    /// Its days, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.from.iter_days().take_while(|d| *d <= self.to)
    }

    fn filter(&self, scope: UsageScope) -> UsageFilter {
        UsageFilter {
            scope,
            from_day: self.from.format("%Y-%m-%d").to_string(),
            to_day: self.to.format("%Y-%m-%d").to_string(),
        }
    }
}

/// The installation's local date now: days of the ledger end at its midnight.
pub fn today(hub: &Services) -> NaiveDate {
    local_date(hub, chrono::Utc::now().timestamp())
}

/// The installation's local date at `t` (Unix seconds), in `[metering] time_zone`.
pub fn local_date(hub: &Services, t: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.with_timezone(&hub.meter.tz()).date_naive())
        .unwrap_or_default()
}

/// One line of a report: the sums of whole ledger rows, and the cost split by resource.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct UsageLine {
    /// A day, a project's or a user's id (empty for a total).
    pub key: String,
    /// What the page shows for the key: the day, `owner/name`, a user's name.
    pub label: String,
    /// Ledger rows.
    pub rows: i64,
    /// Node-seconds.
    pub node_seconds: i64,
    /// CPU millicore-seconds reserved (= CPU milliseconds).
    pub cpu_mcs: i64,
    /// CPU time used, milliseconds.
    pub cpu_used_ms: i64,
    /// MiB-seconds reserved.
    pub mib_s: i64,
    /// GPU-seconds reserved.
    pub gpu_s: i64,
    /// The cost (the sum of the rows' costs), millionths of a unit.
    pub cost_micros: i64,
    /// The CPU part of the cost, priced on the line's sums (for the chart).
    pub cpu_cost_micros: i64,
    /// The memory part.
    pub memory_cost_micros: i64,
    /// The GPU part.
    pub gpu_cost_micros: i64,
}

impl UsageLine {
    fn add(&mut self, sums: &UsageSums, price: Option<&PriceRow>) {
        self.rows += sums.rows;
        self.node_seconds += sums.node_s;
        self.cpu_mcs += sums.cpu_mcs;
        self.cpu_used_ms += sums.cpu_used_ms;
        self.mib_s += sums.mib_s;
        self.gpu_s += sums.gpu_s;
        self.cost_micros += sums.cost_micros;
        if let Some(p) = price {
            self.cpu_cost_micros += cost_micros(p, sums.cpu_mcs, 0, 0);
            self.memory_cost_micros += cost_micros(p, 0, sums.mib_s, 0);
            self.gpu_cost_micros += cost_micros(p, 0, 0, sums.gpu_s);
        }
    }

    /// CPU time used over CPU time reserved (Slurm's `seff`), if any was reserved.
    pub fn efficiency(&self) -> Option<f64> {
        // Millicore-seconds are CPU milliseconds.
        (self.cpu_mcs > 0).then(|| self.cpu_used_ms as f64 / self.cpu_mcs as f64)
    }

    /// CPU core-hours reserved.
    pub fn cpu_hours(&self) -> f64 {
        self.cpu_mcs as f64 / 3_600_000.0
    }

    /// CPU core-hours used.
    pub fn cpu_used_hours(&self) -> f64 {
        self.cpu_used_ms as f64 / 3_600_000.0
    }

    /// GiB-hours of memory reserved.
    pub fn memory_gib_hours(&self) -> f64 {
        self.mib_s as f64 / (1024.0 * 3600.0)
    }

    /// GPU-hours reserved.
    pub fn gpu_hours(&self) -> f64 {
        self.gpu_s as f64 / 3600.0
    }
}

/// Whose usage a report shows, as the pages and the API name it.
#[derive(Debug, Clone)]
pub enum Subject {
    /// The whole installation.
    Installation,
    /// A user.
    User(UserRow),
    /// A group (its members as they are now).
    Group {
        /// The group's id.
        id: i64,
        /// Its name.
        name: String,
    },
    /// A project.
    Project(ProjectRow),
}

impl Subject {
    fn scope(&self) -> UsageScope {
        match self {
            Subject::Installation => UsageScope::All,
            Subject::User(u) => UsageScope::User(u.id),
            Subject::Group { id, .. } => UsageScope::Group(*id),
            Subject::Project(p) => UsageScope::Project(p.id),
        }
    }

    /// `user`, `group`, `project` or `installation`.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Installation => "installation",
            Subject::User(_) => "user",
            Subject::Group { .. } => "group",
            Subject::Project(_) => "project",
        }
    }

    /// The user's or group's name, the project's `owner/name`; empty for the installation.
    pub fn name(&self) -> String {
        match self {
            Subject::Installation => String::new(),
            Subject::User(u) => u.name.clone(),
            Subject::Group { name, .. } => name.clone(),
            Subject::Project(p) => format!("{}/{}", p.owner, p.name),
        }
    }
}

/// A usage report: the total, one line per day of the period (days without use included), one
/// per project and, for a group or the installation, one per user. Every list adds up exactly
/// to the total.
#[derive(Debug, Clone)]
pub struct UsageReport {
    /// Whose usage.
    pub subject: Subject,
    /// The days it covers.
    pub period: Period,
    /// Everything.
    pub total: UsageLine,
    /// Per day.
    pub days: Vec<UsageLine>,
    /// Per project (key empty: clusters outside any project).
    pub projects: Vec<UsageLine>,
    /// Per user (groups and the installation; empty otherwise).
    pub users: Vec<UsageLine>,
}

/// Folds sums (one per key and price version) into lines, in key order.
fn lines(sums: &[UsageSums], prices: &BTreeMap<i64, PriceRow>) -> Vec<UsageLine> {
    let mut out: Vec<UsageLine> = Vec::new();
    for s in sums {
        if out.last().map(|l| l.key.as_str()) != Some(s.key.as_str()) {
            out.push(UsageLine {
                key: s.key.clone(),
                label: s.label.clone(),
                ..UsageLine::default()
            });
        }
        if let Some(line) = out.last_mut() {
            line.add(s, prices.get(&s.price_id));
        }
    }
    out
}

/// The report of `subject` over `period`.
pub async fn report(hub: &Services, subject: Subject, period: Period) -> HubResult<UsageReport> {
    let store = &hub.store;
    let prices: BTreeMap<i64, PriceRow> = store
        .price_versions()
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let filter = period.filter(subject.scope());
    let total = lines(
        &store.usage_sums(&filter, UsageGrouping::Total).await?,
        &prices,
    )
    .pop()
    .unwrap_or_default();
    let mut by_day: BTreeMap<String, UsageLine> = lines(
        &store.usage_sums(&filter, UsageGrouping::Day).await?,
        &prices,
    )
    .into_iter()
    .map(|l| (l.key.clone(), l))
    .collect();
    let days = period
        .days()
        .map(|d| {
            let key = d.format("%Y-%m-%d").to_string();
            let mut line = by_day.remove(&key).unwrap_or_default();
            line.label = key.clone();
            line.key = key;
            line
        })
        .collect();
    let mut projects = lines(
        &store.usage_sums(&filter, UsageGrouping::Project).await?,
        &prices,
    );
    for line in &mut projects {
        line.label = match line.key.parse::<i64>() {
            Ok(id) => match store.project(id).await? {
                Some(p) => format!("{}/{}", p.owner, p.name),
                None => format!("#{id}"),
            },
            Err(_) => String::new(),
        };
    }
    let users = match subject {
        Subject::Group { .. } | Subject::Installation => lines(
            &store.usage_sums(&filter, UsageGrouping::User).await?,
            &prices,
        ),
        _ => Vec::new(),
    };
    Ok(UsageReport {
        subject,
        period,
        total,
        days,
        projects,
        users,
    })
}

/// The report as CSV: one line per day with its figures, then a `total` line. Costs are exact
/// decimals of billing units; CPU, memory and GPU figures are the ledger's integer units.
pub fn csv(report: &UsageReport) -> String {
    let mut out = String::from(
        "day,node_seconds,cpu_millicore_seconds,cpu_used_ms,efficiency,memory_mib_seconds,gpu_seconds,cost\n",
    );
    let mut line = |label: &str, l: &UsageLine| {
        let efficiency = l
            .efficiency()
            .map(|e| format!("{e:.4}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{label},{},{},{},{efficiency},{},{},{}\n",
            l.node_seconds,
            l.cpu_mcs,
            l.cpu_used_ms,
            l.mib_s,
            l.gpu_s,
            units_text(l.cost_micros)
        ));
    };
    for d in &report.days {
        line(&d.key, d);
    }
    line("total", &report.total);
    out
}

/// A user's usage as `caller` may see it: their own, an administrator's, or a token holding
/// `read:users:activity` on them (a server's own token, a course integration).
pub async fn user_subject(hub: &Services, caller: &Caller, name: &str) -> HubResult<Subject> {
    let own = caller.user().is_some_and(|u| u.name == name);
    if !own && !administers_installation(&caller.scopes) {
        super::access::check_user(&hub.store, caller, &["read:users:activity"], name).await?;
    }
    let user = hub
        .store
        .user(name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No user {name}")))?;
    Ok(Subject::User(user))
}

/// A group's usage: administrators, and teachers who are members of the group.
pub async fn group_subject(hub: &Services, caller: &Caller, name: &str) -> HubResult<Subject> {
    let group = hub
        .store
        .group(name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No group {name}")))?;
    if !administers_installation(&caller.scopes) {
        let teacher_member = match caller.user() {
            Some(u) if u.account_role == crate::db::AccountRole::Teacher => {
                hub.store.group_ids_of(u.id).await?.contains(&group.id)
            }
            _ => false,
        };
        if !teacher_member {
            return Err(HubError::Forbidden(format!(
                "Only administrators and the group's teachers may see the usage of {name}"
            )));
        }
    }
    Ok(Subject::Group {
        id: group.id,
        name: group.name,
    })
}

/// A project's usage: its owner, its members and administrators (not every reader of a public
/// project). 404 for anyone else.
pub async fn project_subject(
    hub: &Services,
    viewer: &Viewer,
    owner: &str,
    name: &str,
) -> HubResult<Subject> {
    let missing = || HubError::NotFound(format!("No project {owner}/{name}"));
    if owner.chars().chain(name.chars()).any(char::is_control) {
        return Err(missing());
    }
    let project = hub
        .store
        .project_by_name(owner, name)
        .await?
        .ok_or_else(missing)?;
    let member: Option<ProjectRole> = hub.store.project_role(project.id, viewer.user.id).await?;
    if !(viewer.admin || project.owner_id == viewer.user.id || member.is_some()) {
        return Err(missing());
    }
    Ok(Subject::Project(project))
}

/// The whole installation: administrators only.
pub fn installation_subject(caller: &Caller) -> HubResult<Subject> {
    if administers_installation(&caller.scopes) {
        Ok(Subject::Installation)
    } else {
        Err(HubError::Forbidden(
            "Only administrators may see the installation's usage".into(),
        ))
    }
}

/// The price versions, and which is in force now.
pub async fn prices(hub: &Services) -> HubResult<(Vec<PriceRow>, Option<i64>)> {
    let versions = hub.store.price_versions().await?;
    let now = chrono::Utc::now().timestamp();
    let current = price_at(&versions, now).map(|p| p.id);
    Ok((versions, current))
}

/// An administrator's new price version: units per hour as decimal text, from a time.
#[derive(Debug, Clone, Default)]
pub struct NewPrice {
    /// Units per CPU-core-hour.
    pub cpu_core_hour: String,
    /// Units per GiB-hour of memory.
    pub memory_gib_hour: String,
    /// Units per GPU-hour.
    pub gpu_hour: String,
    /// When it takes effect (Unix seconds); `None`: now.
    pub effective_from: Option<i64>,
    /// A note.
    pub note: String,
}

/// Adds a price version from now or a later time. Rows already written keep the version they
/// were priced with; a version cannot start in the past, where rows may already use another.
pub async fn add_price(hub: &Services, new: NewPrice) -> HubResult<PriceRow> {
    let cpu = parse_units(&new.cpu_core_hour, "cpu_core_hour")?;
    let memory = parse_units(&new.memory_gib_hour, "memory_gib_hour")?;
    let gpu = parse_units(&new.gpu_hour, "gpu_hour")?;
    let now = chrono::Utc::now().timestamp();
    let from = new.effective_from.unwrap_or(now);
    // A minute's slack for a form filled in with "now".
    if from < now - 60 {
        return Err(HubError::BadRequest(
            "effective_from is in the past: a new price may start now or later, never before \
             usage that is already billed"
                .into(),
        ));
    }
    let from = from.max(now);
    if new.note.chars().count() > 500 {
        return Err(HubError::BadRequest(
            "note is longer than 500 characters".into(),
        ));
    }
    match hub
        .store
        .add_price(from, cpu, memory, gpu, new.note.trim(), crate::clock::now())
        .await
    {
        Ok(row) => {
            tracing::info!(
                price.id = row.id,
                price.effective_from = row.effective_from,
                "price version added"
            );
            Ok(row)
        }
        Err(crate::db::DbError::Conflict) => Err(HubError::Conflict(
            "A price version already takes effect at that second".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Removes a price version that has not taken effect yet.
pub async fn delete_price(hub: &Services, id: i64) -> HubResult<()> {
    let now = chrono::Utc::now().timestamp();
    if hub.store.delete_future_price(id, now).await? {
        Ok(())
    } else if hub.store.price_versions().await?.iter().any(|p| p.id == id) {
        Err(HubError::Conflict(
            "This price version is in force or was: it stays, so old bills can be reproduced. \
             Add a new version instead."
                .into(),
        ))
    } else {
        Err(HubError::NotFound(format!("No price version {id}")))
    }
}

/// The price of the next hour of a cluster of these per-node sizes, in millionths, now.
pub async fn projected_hourly(
    hub: &Services,
    nodes: i64,
    cpu_millis: i64,
    memory_mib: i64,
    gpus: i64,
) -> HubResult<Option<i64>> {
    let now = chrono::Utc::now().timestamp();
    Ok(hub
        .store
        .price_at(now)
        .await?
        .map(|p| hourly_micros(&p, nodes, cpu_millis, memory_mib, gpus)))
}

/// The live usage of one running server.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveUsage {
    /// Seconds since its first node's first interval (or its admission).
    pub running_seconds: i64,
    /// What it cost so far: its rows plus the unwritten time since, millionths.
    pub cost_micros: i64,
    /// What an hour of it costs at the current price, millionths.
    pub price_per_hour_micros: i64,
    /// The project it runs.
    pub project_id: Option<i64>,
}

/// A running server's usage: the ledger's rows of its run plus, per node, the time since its
/// last row at the current price. `None` when the server holds no admitted reservation.
pub async fn live_usage(hub: &Services, server_id: i64) -> HubResult<Option<LiveUsage>> {
    let Some(run) = hub.store.running_run(server_id).await? else {
        return Ok(None);
    };
    let now = chrono::Utc::now().timestamp();
    let price = hub.store.price_at(now).await?;
    let billed = hub.store.run_nodes_billed(&run.run).await?;
    let per_hour = price.as_ref().map_or(0, |p| {
        hourly_micros(p, run.nodes, run.cpu_millis, run.memory_mib, run.gpus)
    });
    let mut cost = 0i64;
    for node in 0..run.nodes.max(0) {
        let written = billed.iter().find(|b| b.node == node);
        cost = cost.saturating_add(written.map_or(0, |b| b.cost_micros));
        let since = written
            .map(|b| b.end_s)
            .or_else(|| run.admitted.map(|a| a / 1_000_000))
            .unwrap_or(now);
        let gap = (now - since).max(0);
        if let Some(p) = &price {
            cost = cost.saturating_add(cost_micros(
                p,
                run.cpu_millis.saturating_mul(gap),
                run.memory_mib.saturating_mul(gap),
                run.gpus.saturating_mul(gap),
            ));
        }
    }
    let started = billed
        .iter()
        .map(|b| b.start_s)
        .min()
        .or_else(|| run.admitted.map(|a| a / 1_000_000))
        .unwrap_or(now);
    Ok(Some(LiveUsage {
        running_seconds: (now - started).max(0),
        cost_micros: cost,
        price_per_hour_micros: per_hour,
        project_id: run.project_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(cpu: i64, mem: i64, gpu: i64) -> PriceRow {
        PriceRow {
            id: 1,
            effective_from: 0,
            cpu_core_hour: cpu,
            memory_gib_hour: mem,
            gpu_hour: gpu,
            note: String::new(),
            created: 0,
        }
    }

    #[test]
    fn an_hour_of_each_unit_costs_its_hourly_price() {
        let p = price(1_000_000, 100_000, 10_000_000);
        assert_eq!(cost_micros(&p, 1000 * 3600, 0, 0), 1_000_000);
        assert_eq!(cost_micros(&p, 0, 1024 * 3600, 0), 100_000);
        assert_eq!(cost_micros(&p, 0, 0, 3600), 10_000_000);
        // Two cores, 4 GiB and a GPU for half an hour.
        assert_eq!(
            cost_micros(&p, 2000 * 1800, 4096 * 1800, 1800),
            1_000_000 + 200_000 + 5_000_000
        );
    }

    #[test]
    fn a_fraction_of_a_millionth_is_floored_once_over_the_sum() {
        // 1 millicore-second at 1 unit per core-hour is 1/3.6 millionths: 0.
        let p = price(1_000_000, 0, 0);
        assert_eq!(cost_micros(&p, 1, 0, 0), 0);
        assert_eq!(cost_micros(&p, 4, 0, 0), 1);
        // Two parts of 0.6 each add up to 1 before the floor.
        let q = price(2160, 2212, 0);
        // 1000 mcs × 2160 / 3.6e6 = 0.6; 1024 MiB·s × 2212 / 3 686 400 ≈ 0.61.
        assert_eq!(cost_micros(&q, 1000, 1024, 0), 1);
    }

    #[test]
    fn large_intervals_do_not_overflow() {
        let p = price(i64::MAX / 2, i64::MAX / 2, i64::MAX / 2);
        assert_eq!(cost_micros(&p, i64::MAX, i64::MAX, i64::MAX), i64::MAX);
        let p = price(1_000_000, 100_000, 10_000_000);
        // A year of 1,000 cores.
        let mcs = 1_000_000 * 365 * 24 * 3600;
        assert_eq!(cost_micros(&p, mcs, 0, 0), 1000 * 365 * 24 * 1_000_000);
    }

    #[test]
    fn the_price_in_force_is_the_last_that_started() {
        let mut a = price(1, 1, 1);
        a.effective_from = 0;
        let mut b = price(2, 2, 2);
        b.id = 2;
        b.effective_from = 100;
        let v = vec![a, b];
        assert_eq!(price_at(&v, 99).map(|p| p.id), Some(1));
        assert_eq!(price_at(&v, 100).map(|p| p.id), Some(2));
        assert_eq!(price_at(&v, -5).map(|p| p.id), Some(1));
        assert_eq!(price_at(&[], 5), None);
    }
}
