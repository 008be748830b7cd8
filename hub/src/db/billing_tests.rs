//! Billing's and budgets' statements on both engines: ledger rows are written with SQL here (the
//! meter writes them in the hub), then read back through the reports' aggregates.

use super::tests::stores;
use super::*;

/// One ledger row of `user` (and `project`) on `day`, `secs` long, priced with version 1.
async fn ledger_row(
    store: &Store,
    key: &str,
    user: &UserRow,
    project: Option<i64>,
    day: &str,
    secs: i64,
    cost: i64,
) {
    sqlx::query(
        "INSERT INTO usage_ledger (idem_key, run, user_id, user_name, project_id, server_name, image, \
         node, cpu_millis, memory_mib, gpus, start_s, end_s, day, cpu_mcs, mib_s, gpu_s, cpu_used_ms, \
         price_id, cost_micros, kind, recorded) VALUES ($1, 'run', $2, $3, $4, '', 'img', 0, 2000, 1024, \
         0, 0, $5, $6, $7, $8, 0, $9, 1, $10, 'checkpoint', 0)",
    )
    .bind(key)
    .bind(user.id)
    .bind(&user.name)
    .bind(project)
    .bind(secs)
    .bind(day)
    .bind(2000 * secs)
    .bind(1024 * secs)
    .bind(1000 * secs)
    .bind(cost)
    .execute(&store.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn usage_lines_per_day_project_and_user_add_up_to_the_total_on_both_engines() {
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let alice = store.create_user("alice", false, 1).await.unwrap();
        let bob = store.create_user("bob", false, 1).await.unwrap();
        let group = store
            .create_group("physics", &serde_json::json!({}))
            .await
            .unwrap();
        store
            .add_group_members(group.id, &[alice.id])
            .await
            .unwrap();
        ledger_row(&store, "a1", &alice, Some(7), "2026-03-01", 60, 1_000).await;
        ledger_row(&store, "a2", &alice, None, "2026-03-01", 30, 333).await;
        ledger_row(&store, "a3", &alice, Some(7), "2026-03-02", 15, 7).await;
        ledger_row(&store, "b1", &bob, Some(7), "2026-03-02", 10, 50).await;
        ledger_row(&store, "b2", &bob, None, "2026-04-01", 10, 99).await;
        let march = |scope| UsageFilter {
            scope,
            from_day: "2026-03-01".into(),
            to_day: "2026-03-31".into(),
        };
        let total_of = |sums: &[UsageSums]| sums.iter().map(|s| s.cost_micros).sum::<i64>();
        for scope in [
            UsageScope::All,
            UsageScope::User(alice.id),
            UsageScope::Group(group.id),
            UsageScope::Project(7),
        ] {
            let f = march(scope);
            let total = store.usage_sums(&f, UsageGrouping::Total).await.unwrap();
            let want = store.usage_cost(&f).await.unwrap();
            assert_eq!(total_of(&total), want, "{engine:?} {scope:?}");
            for g in [
                UsageGrouping::Day,
                UsageGrouping::Project,
                UsageGrouping::User,
            ] {
                let lines = store.usage_sums(&f, g).await.unwrap();
                assert_eq!(total_of(&lines), want, "{engine:?} {scope:?} {g:?}");
            }
        }
        assert_eq!(
            store.usage_cost(&march(UsageScope::All)).await.unwrap(),
            1_390,
            "{engine:?}"
        );
        assert_eq!(
            store
                .usage_cost(&march(UsageScope::User(alice.id)))
                .await
                .unwrap(),
            1_340
        );
        assert_eq!(
            store
                .usage_cost(&march(UsageScope::Group(group.id)))
                .await
                .unwrap(),
            1_340
        );
        assert_eq!(
            store
                .usage_cost(&march(UsageScope::Project(7)))
                .await
                .unwrap(),
            1_057
        );
        let days = store
            .usage_sums(&march(UsageScope::All), UsageGrouping::Day)
            .await
            .unwrap();
        let keys: Vec<&str> = days.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["2026-03-01", "2026-03-02"], "{engine:?}");
        assert_eq!(days[0].cpu_mcs, 2000 * 90);
        assert_eq!(days[0].node_s, 90);
        let projects = store
            .usage_sums(&march(UsageScope::All), UsageGrouping::Project)
            .await
            .unwrap();
        let keys: Vec<&str> = projects.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["", "7"], "{engine:?}: outside any project first");
        let users = store
            .usage_sums(&march(UsageScope::All), UsageGrouping::User)
            .await
            .unwrap();
        let labels: Vec<&str> = users.iter().map(|d| d.label.as_str()).collect();
        assert_eq!(labels, ["alice", "bob"], "{engine:?}");
    }
}

#[tokio::test]
async fn prices_are_dated_versions_and_only_an_unused_future_one_can_go_on_both_engines() {
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let initial = store.price_versions().await.unwrap();
        assert_eq!(
            initial.len(),
            1,
            "{engine:?}: the migration's initial prices"
        );
        let later = store.add_price(1_000, 2, 3, 4, "later", 5).await.unwrap();
        assert!(
            matches!(
                store.add_price(1_000, 1, 1, 1, "", 5).await,
                Err(DbError::Conflict)
            ),
            "{engine:?}"
        );
        let ids: Vec<i64> = store
            .price_versions()
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, [initial[0].id, later.id]);
        assert_eq!(
            store.price_at(999).await.unwrap().map(|p| p.id),
            Some(initial[0].id)
        );
        assert_eq!(
            store.price_at(1_000).await.unwrap().map(|p| p.id),
            Some(later.id)
        );
        // In force (now = 2,000): it stays.
        assert!(
            !store.delete_future_price(later.id, 2_000).await.unwrap(),
            "{engine:?}"
        );
        assert!(
            store.delete_future_price(later.id, 500).await.unwrap(),
            "{engine:?}"
        );
        assert_eq!(store.price_versions().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_budget_is_replaced_per_month_and_its_grace_period_is_kept_until_the_limit_changes_on_both_engines(
) {
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let alice = store.create_user("alice", false, 1).await.unwrap();
        let every = store
            .put_budget(BudgetKind::User, alice.id, "", 5_000_000, "", 1)
            .await
            .unwrap();
        let again = store
            .put_budget(BudgetKind::User, alice.id, "", 7_000_000, "raised", 2)
            .await
            .unwrap();
        assert_eq!(
            every.id, again.id,
            "{engine:?}: one every-month budget per user"
        );
        assert_eq!(
            (again.limit_micros, again.note.as_str()),
            (7_000_000, "raised")
        );
        let march = store
            .put_budget(BudgetKind::User, alice.id, "2026-03", 1, "", 3)
            .await
            .unwrap();
        assert_eq!(
            store
                .budgets_of(BudgetKind::User, alice.id)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store
                .budget_exceeded_since(march.id, "2026-03", 100)
                .await
                .unwrap(),
            100
        );
        assert_eq!(
            store
                .budget_exceeded_since(march.id, "2026-03", 200)
                .await
                .unwrap(),
            100,
            "{engine:?}: the first time counts"
        );
        store
            .put_budget(BudgetKind::User, alice.id, "2026-03", 2, "", 4)
            .await
            .unwrap();
        assert_eq!(
            store.budget_exceeded_at(march.id, "2026-03").await.unwrap(),
            None,
            "{engine:?}: a new limit, a new grace period"
        );
        assert!(store.delete_budget(march.id).await.unwrap());
        assert!(!store.delete_budget(march.id).await.unwrap());
        assert_eq!(store.budgets().await.unwrap().len(), 1);
    }
}
