//! Admission under concurrency, on both engines: many starts at once never take more than a
//! quota or the capacity allows, and the line is served in order.

use std::sync::Arc;

use super::tests::stores;
use super::*;

fn spawn<'a>(
    user_id: i64,
    name: &'a str,
    reserve: Reserve<'a>,
    scopes: &'a [String],
) -> BeginSpawn<'a> {
    BeginSpawn {
        user_id,
        server_name: name,
        user_options: "{}",
        token_hash: name,
        token_scopes: scopes,
        client_id: name,
        client_description: "",
        redirect_uri: "/",
        node_clients: &[],
        reserve: Some(reserve),
        now: 1,
    }
}

fn reserve<'a>(run: &'a str, nodes: i64, wait: bool, capacity: Limits) -> Reserve<'a> {
    Reserve {
        project_id: None,
        image: "",
        nodes,
        size: NodeSize {
            cpu_millis: 1000,
            memory_mib: 1024,
            gpus: 0,
            storage_mib: 0,
        },
        run,
        wait,
        capacity,
        open_rows: &[],
    }
}

async fn set_role_clusters(store: &Store, clusters: i64) {
    sqlx::query("UPDATE quotas SET clusters = $1 WHERE role = 'student'")
        .bind(clusters)
        .execute(&store.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_hundred_concurrent_starts_of_one_user_at_a_quota_of_two_clusters_admit_exactly_two() {
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let alice = store.create_user("alice", false, 1).await.unwrap();
        set_role_clusters(&store, 2).await;
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let name = format!("s{i}");
                    let run = format!("run-{i}");
                    let scopes: Vec<String> = Vec::new();
                    let begin = spawn(
                        alice.id,
                        &name,
                        reserve(&run, 1, false, Limits::default()),
                        &scopes,
                    );
                    store.begin_spawn(&begin).await.unwrap()
                })
            })
            .collect();
        let mut admitted = 0;
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                SpawnBegun::Begun {
                    admission: Some(Admission::Admitted),
                    ..
                } => admitted += 1,
                SpawnBegun::Refused(Refusal::Quota(excess)) => {
                    assert_eq!(excess.quantity, Quantity::Clusters);
                    assert_eq!((excess.limit, excess.used, excess.asked), (2, 2, 1));
                    refused += 1;
                }
                other => panic!("{engine:?}: unexpected {other:?}"),
            }
        }
        assert_eq!((admitted, refused), (2, 98), "{engine:?}");
        assert_eq!(store.admitted_amounts().await.unwrap().clusters, 2);
        // A refused start wrote nothing: the two admitted starts' rows are alice's only ones.
        assert_eq!(
            store.count_named_servers(alice.id).await.unwrap(),
            2,
            "{engine:?}"
        );
    }
}

#[tokio::test]
async fn a_hundred_starts_of_ten_users_never_reserve_more_than_four_nodes_and_the_line_is_served_in_order(
) {
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let names: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
        store.create_users(&names, false, 1).await.unwrap();
        let mut ids = Vec::new();
        for n in &names {
            ids.push(store.user(n).await.unwrap().unwrap().id);
        }
        let capacity = Limits {
            nodes: Some(4),
            ..Limits::default()
        };
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let store = Arc::clone(&store);
                let user = ids[i % 10];
                tokio::spawn(async move {
                    let name = format!("s{i}");
                    let run = format!("run-{i}");
                    let scopes: Vec<String> = Vec::new();
                    let begin = spawn(user, &name, reserve(&run, 1, true, capacity), &scopes);
                    let begun = store.begin_spawn(&begin).await.unwrap();
                    // Never more than the capacity, seen from any request's end.
                    assert!(store.admitted_amounts().await.unwrap().nodes <= 4);
                    begun
                })
            })
            .collect();
        let mut admitted = Vec::new();
        let mut queued = 0;
        for t in tasks {
            match t.await.unwrap() {
                SpawnBegun::Begun {
                    server_id,
                    admission: Some(Admission::Admitted),
                } => admitted.push(server_id),
                SpawnBegun::Begun {
                    admission: Some(Admission::Queued { .. }),
                    ..
                } => queued += 1,
                other => panic!("{engine:?}: unexpected {other:?}"),
            }
        }
        assert_eq!((admitted.len(), queued), (4, 96), "{engine:?}");
        // As clusters stop, the line moves in order of arrival and never over the capacity.
        let mut served = Vec::new();
        let mut running = admitted.clone();
        while let Some(head) = store.queue_head().await.unwrap() {
            assert!(
                !store
                    .admit_head(head.server_id, capacity, &[], 2)
                    .await
                    .unwrap(),
                "{engine:?}: admitted over the capacity"
            );
            let stopping = running.remove(0);
            let run = store.reservation(stopping).await.unwrap().unwrap().run;
            assert!(store
                .release_reservation(stopping, &run, &[])
                .await
                .unwrap());
            assert!(store
                .admit_head(head.server_id, capacity, &[], 2)
                .await
                .unwrap());
            assert_eq!(store.queue_position(head.server_id).await.unwrap(), None);
            served.push(head.seq);
            running.push(head.server_id);
            assert_eq!(store.admitted_amounts().await.unwrap().nodes, 4);
        }
        assert_eq!(served.len(), 96);
        assert!(
            served.windows(2).all(|w| w[0] < w[1]),
            "{engine:?}: served out of order"
        );
    }
}

#[tokio::test]
async fn the_ledger_refuses_updates_and_deletes_and_counts_a_retried_row_once() {
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let row = LedgerRow {
            idem_key: "r/0/10".into(),
            run: "r".into(),
            user_id: 1,
            user_name: "alice".into(),
            project_id: None,
            server_name: String::new(),
            image: String::new(),
            node: 0,
            cpu_millis: 1000,
            memory_mib: 1024,
            gpus: 0,
            start_s: 10,
            end_s: 25,
            day: "1970-01-01".into(),
            cpu_mcs: 15_000,
            mib_s: 15 * 1024,
            gpu_s: 0,
            cpu_used_ms: 3,
            price_id: 1,
            cost_micros: 4166,
            kind: "checkpoint".into(),
            recorded: 0,
        };
        assert_eq!(
            store
                .append_ledger(std::slice::from_ref(&row))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .append_ledger(std::slice::from_ref(&row))
                .await
                .unwrap(),
            0,
            "{engine:?}"
        );
        assert_eq!(store.run_ledger("r").await.unwrap(), vec![row]);
        for sql in [
            "UPDATE usage_ledger SET end_s = 99",
            "DELETE FROM usage_ledger",
        ] {
            let e = sqlx::query(sql).execute(&store.pool).await.unwrap_err();
            assert!(e.to_string().contains("append-only"), "{engine:?}: {e}");
        }
        let meters = store.run_meters("r").await.unwrap();
        assert_eq!(
            meters,
            vec![NodeMeter {
                node: 0,
                end_s: 25,
                cpu_used_ms: 3
            }]
        );
    }
}
