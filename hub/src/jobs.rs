//! The hub's background loops. Each is a named step run every interval by [`run_every`]; a
//! failed step is logged (with the loop's name) and tried again at the next tick. A new loop
//! is one line in [`spawn_all`].

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock;
use crate::domain::servers;
use crate::domain::Services;

/// Starts the hub's background loops (after start-up's re-adoption).
pub(crate) fn spawn_all(hub: &Arc<Services>) {
    let secs = |s: f64| Duration::from_secs_f64(s.max(1.0));
    if hub.hub_route_target.is_some() {
        let every = secs(hub.config.proxy.check_routes_interval);
        run_every(
            hub,
            "reconciling the proxy's routes",
            every,
            |h| async move { servers::check_routes(&h).await },
        );
    }
    let every = secs(hub.config.spawner.poll_interval);
    run_every(hub, "server poll", every, |h| async move {
        servers::poll_once(&h).await
    });
    let every = secs(hub.config.metering.checkpoint_interval);
    run_every(hub, "metering checkpoint", every, |h| async move {
        crate::domain::metering::checkpoint(&h).await?;
        // Capacity a backend freed on its own (or a raised cap) lets the line move.
        crate::domain::admission::pump(&h).await
    });
    run_every(
        hub,
        "releasing clusters with no page open",
        crate::domain::release::CHECK_EVERY,
        |h| async move { crate::domain::release::release_unwatched(&h).await },
    );
    run_every(
        hub,
        "releasing clusters over budget",
        crate::domain::budgets::CHECK_EVERY,
        |h| async move { crate::domain::budgets::enforce(&h).await },
    );
    if let Some(every) = crate::domain::campus_login::refresh_every(hub) {
        run_every(
            hub,
            "asking the identity provider about signed-in users again",
            every,
            |h| async move { crate::domain::campus_login::refresh_due(&h).await },
        );
    }
    let every = Duration::from_secs(60);
    run_every(hub, "activity sync", every, |h| async move {
        servers::sync_proxy_activity(&h).await
    });
    run_every(hub, "purging expired tokens", every, |h| async move {
        h.store.purge_expired(clock::now()).await
    });
    run_every(
        hub,
        "removing abandoned uploads",
        Duration::from_secs(600),
        |h| async move {
            crate::domain::datasets::purge_stale_uploads(&h).await?;
            crate::domain::project_uploads::purge_stale(&h)
                .await
                .map(drop)
        },
    );
}

/// Runs `step` on `ctx` (the hub) every `every` on a task of its own, the first time one
/// interval from now. A failure is logged as a warning with `name` and does not stop the loop.
pub(crate) fn run_every<T, F, Fut, E>(ctx: &Arc<T>, name: &'static str, every: Duration, step: F)
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Display,
{
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = step(Arc::clone(&ctx)).await {
                tracing::warn!(job = name, error = %e, "background job failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_job_waits_one_interval_then_runs_every_interval_even_after_failures() {
        let runs = Arc::new(AtomicU32::new(0));
        run_every(
            &runs,
            "test job",
            Duration::from_millis(20),
            |runs| async move {
                // Every other run fails; the loop must go on.
                match runs.fetch_add(1, Ordering::SeqCst) % 2 {
                    0 => Err("failed on purpose"),
                    _ => Ok(()),
                }
            },
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            0,
            "ran before its first interval"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 4 {
            assert!(tokio::time::Instant::now() < deadline, "the job stopped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
