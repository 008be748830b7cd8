//! Usage and billing on the pages: a user's own usage (`/hub/usage`), any user's, a group's and
//! a project's (`/hub/usage/{users,groups,projects}/…`) and the installation's
//! (`/hub/admin/usage`) — each a month or a range of days with a stacked bar chart of the cost by
//! resource per day (SVG drawn here, no script), a table per day, per project and per user, and
//! the CSV of the API; and the administrators' prices and budgets (`/hub/admin/billing`, whose
//! forms call the API from `hub/static/billing_admin.js`). The budget banner of every page is
//! [`banner`].

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Months, NaiveDate};
use minijinja::context;
use serde::Serialize;

use super::{encode_query, PageError, PageRequest};
use crate::clock;
use crate::db::{BudgetKind, UserRow};
use crate::domain::access::administers_installation;
use crate::domain::access::Viewer;
use crate::domain::billing::{self, Period, Subject, UsageLine, UsageReport};
use crate::domain::budgets::{self, BudgetState, BudgetStatus};
use crate::domain::Services;

/// `12.5`, `0.012345`: exact units, at least two decimals.
pub(crate) fn money(micros: i64) -> String {
    let text = billing::units_text(micros);
    let trimmed = text.trim_end_matches('0');
    match trimmed.split_once('.') {
        Some((_, frac)) if frac.len() >= 2 => trimmed.to_owned(),
        Some((whole, frac)) => format!("{whole}.{frac:0<2}"),
        None => trimmed.to_owned(),
    }
}

fn hours(x: f64) -> String {
    super::cluster::number_text(x)
}

/// A line of a report as the tables show it.
#[derive(Debug, Serialize)]
struct LineView {
    key: String,
    label: String,
    link: Option<String>,
    cost: String,
    cost_micros: i64,
    node_hours: String,
    cpu_hours: String,
    cpu_used_hours: String,
    efficiency: Option<String>,
    memory_gib_hours: String,
    gpu_hours: String,
}

fn line_view(l: &UsageLine, link: Option<String>) -> LineView {
    LineView {
        key: l.key.clone(),
        label: l.label.clone(),
        link,
        cost: money(l.cost_micros),
        cost_micros: l.cost_micros,
        node_hours: hours(l.node_seconds as f64 / 3600.0),
        cpu_hours: hours(l.cpu_hours()),
        cpu_used_hours: hours(l.cpu_used_hours()),
        efficiency: l.efficiency().map(|e| format!("{:.0} %", e * 100.0)),
        memory_gib_hours: hours(l.memory_gib_hours()),
        gpu_hours: hours(l.gpu_hours()),
    }
}

/// The three resources of the chart: (key of the legend's message, colour).
const SERIES: [(&str, &str); 3] = [
    ("usage_cpu", "#3b82f6"),
    ("usage_memory", "#10b981"),
    ("usage_gpu", "#f59e0b"),
];

/// A round step for `max` over about four grid lines.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 4.0).max(1e-6);
    let magnitude = 10f64.powf(raw.log10().floor());
    let unit = raw / magnitude;
    let nice = if unit <= 1.0 {
        1.0
    } else if unit <= 2.0 {
        2.0
    } else if unit <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The stacked bar chart of the cost per day by resource, as SVG (presentation attributes only,
/// so the pages' content security policy needs no inline style). `labels` are the legend's.
fn chart_svg(days: &[UsageLine], labels: [&str; 3], units_word: &str) -> String {
    const W: f64 = 760.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 8.0;
    const TOP: f64 = 28.0;
    const BOTTOM: f64 = 28.0;
    let parts = |d: &UsageLine| {
        [
            d.cpu_cost_micros as f64 / 1e6,
            d.memory_cost_micros as f64 / 1e6,
            d.gpu_cost_micros as f64 / 1e6,
        ]
    };
    let max = days
        .iter()
        .map(|d| parts(d).iter().sum::<f64>())
        .fold(0.0, f64::max);
    let step = nice_step(if max > 0.0 { max } else { 1.0 });
    let top_value = (if max > 0.0 { max } else { 1.0 } / step).ceil() * step;
    let plot_h = H - TOP - BOTTOM;
    let plot_w = W - LEFT - RIGHT;
    let y = |v: f64| TOP + plot_h - v / top_value * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" id="usage-chart" class="usage-chart" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="11">"##,
        labels.join(" · ")
    );
    // Grid lines and the axis's values.
    let mut v = 0.0;
    while v <= top_value + step / 2.0 {
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#8884" stroke-width="1"/><text x="{}" y="{:.1}" text-anchor="end" fill="currentColor">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            super::cluster::number_text(v)
        );
        v += step;
    }
    let _ = write!(
        svg,
        r##"<text x="4" y="14" fill="currentColor">{units_word}</text>"##
    );
    let n = days.len().max(1) as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.7).max(1.0);
    let label_every = ((n / 10.0).ceil() as usize).max(1);
    for (i, d) in days.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut base = 0.0;
        for ((_, colour), value) in SERIES.iter().zip(parts(d)) {
            if value > 0.0 {
                let y0 = y(base + value);
                let h = (y(base) - y0).max(0.5);
                let _ = write!(
                    svg,
                    r##"<rect class="usage-bar" data-day="{}" x="{x:.1}" y="{y0:.1}" width="{bar:.1}" height="{h:.1}" fill="{colour}"><title>{} {}</title></rect>"##,
                    d.key,
                    d.key,
                    money(d.cost_micros)
                );
            }
            base += value;
        }
        if i % label_every == 0 {
            // Month and day: `03-14`.
            let text = d.key.get(5..).unwrap_or(&d.key);
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="currentColor">{text}</text>"##,
                x + bar / 2.0,
                H - 10.0
            );
        }
    }
    // The legend, top right.
    let mut lx = W - RIGHT - 300.0;
    for ((_, colour), label) in SERIES.iter().zip(labels) {
        let _ = write!(
            svg,
            r##"<rect x="{lx}" y="6" width="10" height="10" fill="{colour}"/><text x="{}" y="15" fill="currentColor">{label}</text>"##,
            lx + 14.0
        );
        lx += 100.0;
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where a report's page and its API live.
struct Place {
    /// The page's path.
    page: String,
    /// The API's path without `.csv`.
    api: String,
}

fn place(subject: &Subject) -> Place {
    let seg = crate::domain::servers::url_quote;
    match subject {
        Subject::Installation => Place {
            page: "/hub/admin/usage".into(),
            api: "/hub/api/usage".into(),
        },
        Subject::User(u) => Place {
            page: format!("/hub/usage/users/{}", seg(&u.name)),
            api: format!("/hub/api/users/{}/usage", seg(&u.name)),
        },
        Subject::Group { name, .. } => Place {
            page: format!("/hub/usage/groups/{}", seg(name)),
            api: format!("/hub/api/groups/{}/usage", seg(name)),
        },
        Subject::Project(p) => Place {
            page: format!("/hub/usage/projects/{}/{}", seg(&p.owner), seg(&p.name)),
            api: format!("/hub/api/projects/{}/{}/usage", seg(&p.owner), seg(&p.name)),
        },
    }
}

fn month_query(day: NaiveDate) -> String {
    encode_query(&[("month", &day.format("%Y-%m").to_string())])
}

fn render_report(page: &PageRequest, report: &UsageReport, admin: bool) -> Response {
    let t = page.lang.messages();
    let msg = |k: &str| t.get(k).copied().unwrap_or("");
    let place = place(&report.subject);
    let period_query = encode_query(&[
        ("from", &report.period.from.to_string()),
        ("to", &report.period.to.to_string()),
    ]);
    let seg = crate::domain::servers::url_quote;
    let projects: Vec<LineView> = report
        .projects
        .iter()
        .map(|l| {
            let link = (!l.label.is_empty() && !l.label.starts_with('#')).then(|| {
                let (o, n) = l.label.split_once('/').unwrap_or((&l.label, ""));
                format!("/hub/usage/projects/{}/{}?{period_query}", seg(o), seg(n))
            });
            let mut v = line_view(l, link);
            if v.label.is_empty() {
                v.label = msg("usage_no_project").to_owned();
            }
            v
        })
        .collect();
    let users: Vec<LineView> = report
        .users
        .iter()
        .map(|l| {
            let link = admin.then(|| format!("/hub/usage/users/{}?{period_query}", seg(&l.label)));
            line_view(l, link)
        })
        .collect();
    let days: Vec<LineView> = report
        .days
        .iter()
        .filter(|d| d.rows > 0)
        .map(|l| line_view(l, None))
        .collect();
    let svg = chart_svg(
        &report.days,
        [msg("usage_cpu"), msg("usage_memory"), msg("usage_gpu")],
        &escape(msg("usage_units_word")),
    );
    let month = Period::month_of(report.period.from);
    let whole_month = month == report.period;
    let prev = report
        .period
        .from
        .checked_sub_months(Months::new(1))
        .unwrap_or(report.period.from);
    let next = month.to.succ_opt().unwrap_or(month.to);
    let title = match &report.subject {
        Subject::Installation => msg("usage_title_installation").to_owned(),
        Subject::User(u) => msg("usage_title_user").replace("{name}", &u.name),
        Subject::Group { name, .. } => msg("usage_title_group").replace("{name}", name),
        Subject::Project(p) => {
            msg("usage_title_project").replace("{name}", &format!("{}/{}", p.owner, p.name))
        }
    };
    page.render(
        "usage.html",
        context! {
            page => if matches!(report.subject, Subject::Installation) { "admin-usage" } else { "usage" },
            title => title,
            kind => report.subject.kind(),
            name => report.subject.name(),
            from => report.period.from.to_string(),
            to => report.period.to.to_string(),
            month_label => whole_month.then(|| report.period.from.format("%Y-%m").to_string()),
            prev_url => format!("{}?{}", place.page, month_query(prev)),
            next_url => format!("{}?{}", place.page, month_query(next)),
            page_url => place.page,
            csv_url => format!("{}.csv?{period_query}", place.api),
            api_url => format!("{}?{period_query}", place.api),
            total => line_view(&report.total, None),
            cpu_cost => money(report.total.cpu_cost_micros),
            memory_cost => money(report.total.memory_cost_micros),
            gpu_cost => money(report.total.gpu_cost_micros),
            days => days,
            projects => projects,
            users => users,
            chart => minijinja::Value::from_safe_string(svg),
            admin => admin,
        },
    )
}

fn period_of(hub: &Services, query: &[(String, String)]) -> Result<Period, PageError> {
    let get = |k: &str| {
        query
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    Ok(Period::read(
        get("from"),
        get("to"),
        get("month"),
        billing::today(hub),
    )?)
}

type Params = Query<Vec<(String, String)>>;

/// `GET /hub/usage`: the signed-in user's own usage.
pub(crate) async fn mine(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(q): Params,
) -> Result<Response, PageError> {
    let (user, caller) = page.require_user()?;
    let period = period_of(&hub, &q)?;
    let report = billing::report(&hub, Subject::User(user.clone()), period).await?;
    Ok(render_report(
        &page,
        &report,
        administers_installation(&caller.scopes),
    ))
}

/// `GET /hub/usage/users/{name}`.
pub(crate) async fn user(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, PageError> {
    let (_, caller) = page.require_user()?;
    let subject = billing::user_subject(&hub, caller, &name).await?;
    let report = billing::report(&hub, subject, period_of(&hub, &q)?).await?;
    Ok(render_report(
        &page,
        &report,
        administers_installation(&caller.scopes),
    ))
}

/// `GET /hub/usage/groups/{name}`.
pub(crate) async fn group(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, PageError> {
    let (_, caller) = page.require_user()?;
    let subject = billing::group_subject(&hub, caller, &name).await?;
    let report = billing::report(&hub, subject, period_of(&hub, &q)?).await?;
    Ok(render_report(
        &page,
        &report,
        administers_installation(&caller.scopes),
    ))
}

/// `GET /hub/usage/projects/{owner}/{name}`.
pub(crate) async fn project(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, PageError> {
    let (user, caller) = page.require_user()?;
    let admin = administers_installation(&caller.scopes);
    let viewer = Viewer {
        user: user.clone(),
        admin,
    };
    let subject = billing::project_subject(&hub, &viewer, &owner, &name).await?;
    let report = billing::report(&hub, subject, period_of(&hub, &q)?).await?;
    Ok(render_report(&page, &report, admin))
}

/// `GET /hub/admin/usage`: the installation's usage.
pub(crate) async fn installation(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(q): Params,
) -> Result<Response, PageError> {
    let (_, caller) = page.require_user()?;
    if !administers_installation(&caller.scopes) {
        return Err(PageError::status(StatusCode::FORBIDDEN));
    }
    let report = billing::report(&hub, Subject::Installation, period_of(&hub, &q)?).await?;
    Ok(render_report(&page, &report, true))
}

#[derive(Debug, Serialize)]
struct PriceView {
    id: i64,
    effective_from: String,
    cpu_core_hour: String,
    memory_gib_hour: String,
    gpu_hour: String,
    note: String,
    current: bool,
    future: bool,
}

#[derive(Debug, Serialize)]
struct BudgetView {
    id: i64,
    kind: BudgetKind,
    target: String,
    link: String,
    month: String,
    limit: String,
    used: String,
    percent: i64,
    state: BudgetState,
    release_at: Option<String>,
    note: String,
}

fn budget_view(s: &BudgetStatus) -> BudgetView {
    let seg = crate::domain::servers::url_quote;
    let link = match s.budget.kind {
        BudgetKind::User => format!("/hub/usage/users/{}", seg(&s.target)),
        BudgetKind::Group => format!("/hub/usage/groups/{}", seg(&s.target)),
        BudgetKind::Project => {
            let (o, n) = s.target.split_once('/').unwrap_or((&s.target, ""));
            format!("/hub/usage/projects/{}/{}", seg(o), seg(n))
        }
    };
    BudgetView {
        id: s.budget.id,
        kind: s.budget.kind,
        target: s.target.clone(),
        link,
        month: s.budget.month.clone(),
        limit: money(s.budget.limit_micros),
        used: money(s.used_micros),
        percent: s.percent(),
        state: s.state,
        release_at: s
            .release_at
            .map(|t| clock::iso(t.saturating_mul(1_000_000))),
        note: s.budget.note.clone(),
    }
}

/// `GET /hub/admin/billing`: prices and budgets.
pub(crate) async fn admin(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
) -> Result<Response, PageError> {
    let (_, caller) = page.require_user()?;
    if !administers_installation(&caller.scopes) {
        return Err(PageError::status(StatusCode::FORBIDDEN));
    }
    let (versions, current) = billing::prices(&hub).await?;
    let now = chrono::Utc::now().timestamp();
    let prices: Vec<PriceView> = versions
        .iter()
        .rev()
        .map(|p| PriceView {
            id: p.id,
            effective_from: clock::iso(p.effective_from.saturating_mul(1_000_000)),
            cpu_core_hour: money(p.cpu_core_hour),
            memory_gib_hour: money(p.memory_gib_hour),
            gpu_hour: money(p.gpu_hour),
            note: p.note.clone(),
            current: Some(p.id) == current,
            future: p.effective_from > now,
        })
        .collect();
    let budgets: Vec<BudgetView> = budgets::list(&hub).await?.iter().map(budget_view).collect();
    let settings = budgets::settings(&hub).await?;
    Ok(page.render(
        "admin_billing.html",
        context! {
            page => "admin-billing",
            prices => prices,
            budgets => budgets,
            settings => settings,
            kinds => BudgetKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        },
    ))
}

/// The budget banner of every page: the user's most pressing budget at or above the warning
/// threshold, as the layout shows it. A failure only leaves the banner out.
pub(crate) async fn banner(hub: &Services, user: &UserRow) -> Option<minijinja::Value> {
    let status = match budgets::banner(hub, user).await {
        Ok(s) => s?,
        Err(e) => {
            tracing::warn!(user.name = %user.name, error = %e, "could not read the budgets for the banner");
            return None;
        }
    };
    Some(minijinja::Value::from_serialize(budget_view(&status)))
}

/// What the spawn form shows of the current price: millionths per hour of each resource.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SpawnPrice {
    cpu_core_hour: i64,
    memory_gib_hour: i64,
    gpu_hour: i64,
}

/// The price in force now, for the spawn form's projected cost.
pub(crate) async fn spawn_price(hub: &Services) -> Result<Option<SpawnPrice>, PageError> {
    let now = chrono::Utc::now().timestamp();
    Ok(hub.store.price_at(now).await?.map(|p| SpawnPrice {
        cpu_core_hour: p.cpu_core_hour,
        memory_gib_hour: p.memory_gib_hour,
        gpu_hour: p.gpu_hour,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_with_at_least_two_decimals() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(1_500_000), "1.50");
        assert_eq!(money(12_345), "0.012345");
        assert_eq!(money(-2_000_000), "-2.00");
    }

    #[test]
    fn the_chart_has_one_bar_per_resource_and_used_day() {
        let day = |key: &str, cpu, mem, gpu| UsageLine {
            key: key.into(),
            rows: 1,
            cpu_cost_micros: cpu,
            memory_cost_micros: mem,
            gpu_cost_micros: gpu,
            cost_micros: cpu + mem + gpu,
            ..UsageLine::default()
        };
        let svg = chart_svg(
            &[
                day("2026-03-01", 1_000_000, 500_000, 0),
                day("2026-03-02", 0, 0, 0),
                day("2026-03-03", 2_000_000, 0, 3_000_000),
            ],
            ["CPU", "Memory", "GPU"],
            "units",
        );
        assert_eq!(svg.matches("class=\"usage-bar\"").count(), 4, "{svg}");
        assert!(svg.contains("03-01") && svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
