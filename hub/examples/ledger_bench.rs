//! The ledger's own cost, without a backend: a real `Store` (SQLite in a temporary folder, and
//! PostgreSQL in a fresh database on `XIJI_TEST_PG_URL` when it is set) holding N admitted
//! one-node clusters (100 users × N/100 named servers, each admitted through
//! `Store::begin_spawn` with its opening ledger rows, as a start is), then checkpoint rounds as
//! `domain::metering::checkpoint` does them minus the backend's usage report: the reservations,
//! and for each admitted run its meters, the price versions, its rows split and priced by
//! `metering::rows_for`, appended with `Store::append_to_run` (one transaction per run). Each
//! round meters 15 s more of every node (the clock is simulated, so no round waits).
//!
//!   cargo run --release -p hub --example ledger_bench -- [NODES] [ROUNDS]   # 1000 5
//!
//! Prints the admission time per start, and per round: rows, seconds, rows/s and the CPU time of
//! this process (PostgreSQL's own CPU is not counted). Used by docs/benchmarks.md ("Admission
//! and metering").

use std::time::Instant;

use anyhow::{bail, Context, Result};
use hub::db::{BeginSpawn, Limits, NodeSize, Reserve, SpawnBegun, Store};
use hub::domain::metering::{new_run_key, open_rows, rows_for, RunMeta};

/// This process's user + system CPU time, in seconds.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

async fn bench(engine: &str, url: &str, nodes: usize, rounds: usize) -> Result<()> {
    let store = Store::connect(url).await?;
    let tz = chrono_tz::Tz::UTC;
    let now = hub::clock::now();
    let users: Vec<String> = (0..100).map(|i| format!("s{i:03}")).collect();
    let rows = store.create_users(&users, false, now).await?;
    let per_user = nodes.div_ceil(users.len());
    let prices = store.price_versions().await?;
    let size = NodeSize {
        cpu_millis: 500,
        memory_mib: 512,
        gpus: 0,
        storage_mib: 0,
    };
    let scopes = vec!["access:servers".to_owned()];

    // Admission: every start through the spawn's first transaction, one after another.
    let started = Instant::now();
    let mut admitted = 0usize;
    'users: for j in 0..per_user {
        for user in &rows {
            if admitted == nodes {
                break 'users;
            }
            let server_name = format!("n{j}");
            let run = new_run_key(now);
            let meta = RunMeta {
                run: run.clone(),
                user_id: user.id,
                user_name: user.name.clone(),
                project_id: None,
                server_name: server_name.clone(),
                image: "bench".to_owned(),
                nodes: 1,
                size,
            };
            let open = open_rows(&meta, tz, &prices, now);
            let client = format!("jupyterhub-user-{}-{server_name}", user.name);
            let begin = BeginSpawn {
                user_id: user.id,
                server_name: &server_name,
                user_options: "{}",
                token_hash: &format!("hash-{}-{server_name}", user.name),
                token_scopes: &scopes,
                client_id: &client,
                client_description: "bench",
                redirect_uri: "/oauth_callback",
                node_clients: &[],
                reserve: Some(Reserve {
                    project_id: None,
                    image: "bench",
                    nodes: 1,
                    size,
                    run: &run,
                    wait: false,
                    capacity: Limits::default(),
                    open_rows: &open,
                }),
                now,
            };
            match store.begin_spawn(&begin).await? {
                SpawnBegun::Begun { .. } => admitted += 1,
                SpawnBegun::Refused(r) => bail!("{engine}: a start was refused: {r:?}"),
            }
        }
    }
    let admit_s = started.elapsed().as_secs_f64();
    println!(
        "{engine}: {admitted} starts admitted in {admit_s:.2} s ({:.2} ms each, one at a time)",
        admit_s * 1000.0 / admitted as f64
    );

    // Checkpoint rounds, 15 s of simulated time each.
    let start_s = now.div_euclid(1_000_000);
    for round in 1..=rounds {
        let now_s = start_s + 15 * i64::try_from(round)?;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let mut written = 0usize;
        for reservation in store.reservations().await? {
            if reservation.state != "admitted" {
                continue;
            }
            let meta = RunMeta::from(&reservation);
            let meters = store.run_meters(&meta.run).await?;
            let prices = store.price_versions().await?;
            let mut new_rows = Vec::new();
            for meter in &meters {
                new_rows.extend(rows_for(
                    &meta,
                    meter.node,
                    meter.end_s,
                    now_s,
                    0,
                    "checkpoint",
                    tz,
                    &prices,
                    hub::clock::now(),
                ));
            }
            written += new_rows.len();
            if !store
                .append_to_run(reservation.server_id, &reservation.run, &new_rows)
                .await?
            {
                bail!("{engine}: run {} lost its reservation", reservation.run);
            }
        }
        let seconds = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        println!(
            "{engine}: round {round}: {written} rows in {seconds:.2} s ({:.0} rows/s), \
             {cpu:.2} s CPU of this process ({:.1} % of one core at a 15 s interval)",
            written as f64 / seconds,
            cpu * 100.0 / 15.0
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;

    let dir = std::env::temp_dir().join(format!("xiji-ledger-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("creating the temporary folder")?;
    let sqlite = format!("sqlite://{}?mode=rwc", dir.join("bench.sqlite").display());
    let result = bench("SQLite", &sqlite, nodes, rounds).await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;

    if let Ok(pg_url) = std::env::var("XIJI_TEST_PG_URL") {
        let name = format!("xiji_ledger_bench_{}", std::process::id());
        let admin = sqlx::PgPool::connect(&pg_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        let mut url = url::Url::parse(&pg_url)?;
        url.set_path(&name);
        let result = bench("PostgreSQL", url.as_str(), nodes, rounds).await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await?;
        result?;
    } else {
        println!("PostgreSQL: skipped (XIJI_TEST_PG_URL is not set)");
    }
    Ok(())
}
