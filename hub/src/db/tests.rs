//! One database test suite, run against SQLite and against PostgreSQL (`XIJI_TEST_PG_URL`, set up
//! by `tests/setup-env.sh`; each run creates and drops its own database).

use super::*;

/// A fresh store of each engine (the temporary directory keeps the SQLite file alive). Shared
/// with the domain's tests that need both engines.
pub(crate) async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("t.sqlite").display()
    );
    let sqlite = Store::connect(&url).await.unwrap();
    let pg_url = std::env::var("XIJI_TEST_PG_URL").expect(
        "XIJI_TEST_PG_URL is not set: run tests/setup-env.sh (tests/run does) to start PostgreSQL",
    );
    let name = format!("xiji_t_{}", crate::domain::tokens::random_hex(8));
    let admin = sqlx::PgPool::connect(&pg_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut url = url::Url::parse(&pg_url).unwrap();
    url.set_path(&name);
    let pg = Store::connect(url.as_str()).await.unwrap();
    vec![(sqlite, Some(dir)), (pg, None)]
}

#[tokio::test]
async fn users_are_created_listed_paginated_filtered_and_deleted_on_both_engines() {
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let names: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
        store.create_users(&names, false, 10).await.unwrap();
        assert!(
            matches!(
                store.create_user("u1", false, 11).await,
                Err(DbError::Conflict)
            ),
            "{engine:?}"
        );
        // A failed bulk create leaves nothing behind.
        let bulk = vec!["new1".to_owned(), "u2".to_owned()];
        assert!(store.create_users(&bulk, false, 12).await.is_err());
        assert!(
            store.user("new1").await.unwrap().is_none(),
            "{engine:?}: bulk create was not rolled back"
        );
        let (page, total) = store
            .list_users(&UserQuery {
                offset: 1,
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(total, 5);
        assert_eq!(
            page.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["u1", "u2"]
        );
        let only = AllowedUsers {
            names: vec!["u3".into(), "zz".into()],
            groups: vec![],
        };
        let (page, total) = store
            .list_users(&UserQuery {
                only: Some(only),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!((page.len(), total), (1, 1));
        let u4 = store.user("u4").await.unwrap().unwrap();
        store
            .update_user(
                u4.id,
                &UserUpdate {
                    admin: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(store.user("u4").await.unwrap().unwrap().is_admin());
        store.delete_user(u4.id).await.unwrap();
        assert!(store.user("u4").await.unwrap().is_none());
        assert_eq!(store.count_users().await.unwrap(), 4);
    }
}

#[tokio::test]
async fn groups_members_and_roles_resolve_through_groups_on_both_engines() {
    for (store, _dir) in stores().await {
        let alice = store.create_user("alice", false, 1).await.unwrap();
        let group = store
            .create_group("class", &serde_json::json!({"course": "x"}))
            .await
            .unwrap();
        store
            .add_group_members(group.id, &[alice.id, alice.id])
            .await
            .unwrap();
        assert_eq!(store.groups_of("alice").await.unwrap(), ["class"]);
        let role = store
            .upsert_role("teacher", "", &["read:users".to_owned()])
            .await
            .unwrap();
        store
            .set_role_holders(role, &[], &[group.id], &[])
            .await
            .unwrap();
        let roles = store.user_roles(&[alice.id]).await.unwrap();
        assert_eq!(roles[&alice.id][0].scopes, ["read:users"]);
        store
            .remove_group_members(group.id, &[alice.id])
            .await
            .unwrap();
        assert!(store.user_roles(&[alice.id]).await.unwrap().is_empty());
        store.delete_group(group.id).await.unwrap();
        assert!(store.group("class").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn a_spawn_writes_server_token_and_client_together_and_stop_removes_them_on_both_engines() {
    for (store, _dir) in stores().await {
        let alice = store.create_user("alice", false, 1).await.unwrap();
        let scopes = vec!["users:activity!user".to_owned()];
        let nodes = vec![(
            "jupyterhub-user-alice-node-1".to_owned(),
            "/user/alice/node-1/oauth_callback".to_owned(),
        )];
        let spawn = BeginSpawn {
            user_id: alice.id,
            server_name: "",
            user_options: "{}",
            token_hash: "h1",
            token_scopes: &scopes,
            client_id: "jupyterhub-user-alice",
            client_description: "Server at /user/alice/",
            redirect_uri: "/user/alice/oauth_callback",
            node_clients: &nodes,
            reserve: None,
            now: 5,
        };
        let SpawnBegun::Begun { server_id: id, .. } = store.begin_spawn(&spawn).await.unwrap()
        else {
            panic!("a spawn without a reservation is never refused");
        };
        // A second spawn of a server that is not stopped is refused, and changes nothing.
        assert!(matches!(
            store
                .begin_spawn(&BeginSpawn {
                    token_hash: "h2",
                    ..spawn
                })
                .await,
            Err(DbError::Conflict)
        ));
        assert!(store.token_by_hash("h1").await.unwrap().is_some());
        assert_eq!(
            store
                .oauth_client("jupyterhub-user-alice")
                .await
                .unwrap()
                .unwrap()
                .server_owner
                .as_deref(),
            Some("alice")
        );
        let node = store
            .oauth_client("jupyterhub-user-alice-node-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(node.redirect_uri, "/user/alice/node-1/oauth_callback");
        store
            .set_server_launched(id, "http://127.0.0.1:1", &serde_json::json!({"pid": 1}))
            .await
            .unwrap();
        store
            .set_server_status(id, ServerStatus::Running)
            .await
            .unwrap();
        assert_eq!(store.active_servers().await.unwrap().len(), 1);
        let (ready, _) = store
            .list_users(&UserQuery {
                state: Some(ServerStateFilter::Ready),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ready.len(), 1);
        store.finish_stop(id).await.unwrap();
        assert!(store.token_by_hash("h1").await.unwrap().is_none());
        for client in ["jupyterhub-user-alice", "jupyterhub-user-alice-node-1"] {
            assert!(
                store.oauth_client(client).await.unwrap().is_none(),
                "{client}"
            );
        }
        assert!(store.active_servers().await.unwrap().is_empty());
        assert_eq!(
            store.server(alice.id, "").await.unwrap().unwrap().status,
            "stopped"
        );
    }
}

#[tokio::test]
async fn codes_are_single_use_and_logout_revokes_session_tokens_on_both_engines() {
    for (store, _dir) in stores().await {
        let alice = store.create_user("alice", false, 1).await.unwrap();
        let scopes = vec!["read:users:name!user".to_owned()];
        let code = NewCode {
            code_hash: "c",
            client_identifier: "x",
            user_id: alice.id,
            session_id: Some("s1"),
            redirect_uri: "/cb",
            scopes: &scopes,
            code_challenge: None,
            code_challenge_method: None,
            expires_at: 100,
        };
        store.insert_code(&code).await.unwrap();
        assert!(store.take_code("c").await.unwrap().is_some());
        assert!(store.take_code("c").await.unwrap().is_none());
        store
            .insert_session("cookiehash", "s1", alice.id, 1, 1000)
            .await
            .unwrap();
        let token = NewToken {
            hashed: "t",
            kind: "oauth",
            user_id: Some(alice.id),
            service_id: None,
            server_id: None,
            scopes: &scopes,
            note: "",
            session_id: Some("s1"),
            oauth_client: Some("x"),
            created: 1,
            expires_at: None,
        };
        store.insert_token(&token).await.unwrap();
        assert!(store.session("cookiehash", 2).await.unwrap().is_some());
        assert!(
            store.session("cookiehash", 2000).await.unwrap().is_none(),
            "expired session accepted"
        );
        store.delete_session("s1").await.unwrap();
        assert!(store.token_by_hash("t").await.unwrap().is_none());
        assert!(store.session("cookiehash", 2).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn image_records_are_created_filtered_updated_and_deleted_on_both_engines() {
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let owner = store.create_user("saver", false, 1).await.unwrap();
        let base = ImageFields {
            kind: "jupyter".into(),
            name: "Python".into(),
            image: "127.0.0.1:5000/xiji/base-notebook".into(),
            tag: "latest".into(),
            start_options: String::new(),
            start_command: String::new(),
            vnc_password: None,
            vnc_port: None,
            description: "base".into(),
            needs_gpu: false,
            enabled: true,
            visibility: "library".into(),
            owner_id: None,
        };
        let lib = store.create_image(&base, 10).await.unwrap();
        assert!(
            matches!(store.create_image(&base, 11).await, Err(DbError::Conflict)),
            "{engine:?}: duplicate names must conflict"
        );
        let mut disabled = base.clone();
        disabled.name = "Old".into();
        disabled.enabled = false;
        store.create_image(&disabled, 12).await.unwrap();
        let mut saved = base.clone();
        saved.name = "Mine".into();
        saved.visibility = "private".into();
        saved.owner_id = Some(owner.id);
        let mine = store.create_image(&saved, 13).await.unwrap();

        let names = |rows: Vec<ImageRow>| rows.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(store.list_images(ImageFilter::Startable).await.unwrap()),
            ["Python"]
        );
        assert_eq!(
            names(
                store
                    .list_images(ImageFilter::VisibleTo(owner.id))
                    .await
                    .unwrap()
            ),
            ["Mine", "Old", "Python"]
        );
        assert_eq!(
            names(
                store
                    .list_images(ImageFilter::OwnedBy(owner.id))
                    .await
                    .unwrap()
            ),
            ["Mine"]
        );
        assert_eq!(store.list_images(ImageFilter::All).await.unwrap().len(), 3);

        let mut requested = ImageFields::of(&mine);
        requested.visibility = "requested".into();
        let row = store
            .update_image(mine.id, &requested, 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (row.visibility.as_str(), row.updated, row.created),
            ("requested", 20, 13)
        );
        assert_eq!(
            names(store.list_images(ImageFilter::Requested).await.unwrap()),
            ["Mine"]
        );

        // Deleting the owner keeps the image, without an owner.
        store.delete_user(owner.id).await.unwrap();
        assert_eq!(
            store.image(mine.id).await.unwrap().unwrap().owner_id,
            None,
            "{engine:?}"
        );
        assert!(store.delete_image(lib.id).await.unwrap());
        assert!(!store.delete_image(lib.id).await.unwrap());
        assert!(store
            .update_image(lib.id, &base, 30)
            .await
            .unwrap()
            .is_none());
    }
}

/// A Jupyter image record of the test image, `name`d, with this visibility and owner.
pub(crate) fn image_fields(name: &str, visibility: &str, owner_id: Option<i64>) -> ImageFields {
    ImageFields {
        kind: "jupyter".into(),
        name: name.into(),
        image: "127.0.0.1:5000/xiji/base-notebook".into(),
        tag: "latest".into(),
        start_options: String::new(),
        start_command: String::new(),
        vnc_password: None,
        vnc_port: None,
        description: String::new(),
        needs_gpu: false,
        enabled: true,
        visibility: visibility.into(),
        owner_id,
    }
}

#[tokio::test]
async fn a_saved_image_is_startable_by_its_owner_at_once_and_by_others_once_in_the_library_on_both_engines(
) {
    use crate::domain::images::startable;
    use crate::domain::HubError;
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let alice = store.create_user("alice", false, 1).await.unwrap();
        let bob = store.create_user("bob", false, 1).await.unwrap();
        let lib = store
            .create_image(&image_fields("Python", "library", None), 2)
            .await
            .unwrap();
        let mine = store
            .create_image(&image_fields("alice/env:v1", "private", Some(alice.id)), 3)
            .await
            .unwrap();
        let asked = store
            .create_image(
                &image_fields("alice/env:v2", "requested", Some(alice.id)),
                4,
            )
            .await
            .unwrap();
        let mut off = image_fields("alice/old:v1", "private", Some(alice.id));
        off.enabled = false;
        let off = store.create_image(&off, 5).await.unwrap();

        let names = |rows: Vec<ImageRow>| rows.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(
                store
                    .list_images(ImageFilter::StartableBy(alice.id))
                    .await
                    .unwrap()
            ),
            ["Python", "alice/env:v1", "alice/env:v2"],
            "{engine:?}"
        );
        assert_eq!(
            names(
                store
                    .list_images(ImageFilter::StartableBy(bob.id))
                    .await
                    .unwrap()
            ),
            ["Python"],
            "{engine:?}"
        );

        // The owner starts their private and requested images at once.
        assert_eq!(
            startable(&store, mine.id, alice.id).await.unwrap().id,
            mine.id
        );
        assert_eq!(
            startable(&store, asked.id, alice.id).await.unwrap().id,
            asked.id
        );
        assert_eq!(startable(&store, lib.id, bob.id).await.unwrap().id, lib.id);
        // Another user gets the same 400 as for an id that does not exist.
        let unknown = match startable(&store, 999_999, bob.id).await {
            Err(HubError::BadRequest(m)) => m,
            other => panic!("{engine:?}: unknown image: {other:?}"),
        };
        let foreign = match startable(&store, mine.id, bob.id).await {
            Err(HubError::BadRequest(m)) => m,
            other => panic!("{engine:?}: another user's image: {other:?}"),
        };
        assert_eq!(
            foreign.replace(&mine.id.to_string(), "N"),
            unknown.replace("999999", "N"),
            "{engine:?}"
        );
        let disabled = match startable(&store, off.id, alice.id).await {
            Err(HubError::BadRequest(m)) => m,
            other => panic!("{engine:?}: disabled own image: {other:?}"),
        };
        assert!(disabled.contains("disabled"), "{disabled}");

        // Published: everyone may start it.
        let mut published = ImageFields::of(&mine);
        published.visibility = "library".into();
        store.update_image(mine.id, &published, 6).await.unwrap();
        assert_eq!(
            startable(&store, mine.id, bob.id).await.unwrap().id,
            mine.id
        );
        assert!(names(
            store
                .list_images(ImageFilter::StartableBy(bob.id))
                .await
                .unwrap()
        )
        .contains(&"alice/env:v1".to_owned()));
    }
}

fn new_job(id: &str, user_id: i64, name: &str) -> NewSaveJob {
    NewSaveJob {
        id: id.into(),
        user_id,
        server_id: 7,
        server_name: String::new(),
        node: "node-0".into(),
        container_id: format!("container-{id}"),
        name: name.into(),
        tag: "v1".into(),
        description: "d".into(),
        repository: format!("127.0.0.1:5000/saved/alice/{name}"),
        image_reference: format!("127.0.0.1:5000/saved/alice/{name}:v1"),
        base_image: "127.0.0.1:5000/xiji/base-notebook:latest".into(),
    }
}

#[tokio::test]
async fn save_jobs_are_written_through_and_done_only_together_with_their_image_on_both_engines() {
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let alice = store.create_user("alice", false, 1).await.unwrap();
        store
            .create_save_job(&new_job("j1", alice.id, "env"), 10)
            .await
            .unwrap();
        let job = store.save_job("j1").await.unwrap().unwrap();
        assert_eq!(
            (job.state.as_str(), job.user_name.as_str(), job.finished),
            ("queued", "alice", None),
            "{engine:?}"
        );
        assert!(store
            .update_save_job("j1", "compressing", r#"{"bytes_read":5}"#, 11)
            .await
            .unwrap());
        let job = store.save_job("j1").await.unwrap().unwrap();
        assert_eq!(
            (job.state.as_str(), job.progress.as_str(), job.updated),
            ("compressing", r#"{"bytes_read":5}"#, 11)
        );
        assert_eq!(store.unfinished_save_jobs().await.unwrap().len(), 1);

        // Done: the image record and the job's end in one step.
        let image = image_fields("alice/env:v1", "private", Some(alice.id));
        let row = store
            .complete_save_job("j1", &image, r#"{"manifest_digest":"sha256:ab"}"#, "{}", 12)
            .await
            .unwrap()
            .expect("the job was open");
        let job = store.save_job("j1").await.unwrap().unwrap();
        assert_eq!(
            (job.state.as_str(), job.image_id, job.finished),
            ("done", Some(row.id), Some(12)),
            "{engine:?}"
        );
        assert!(store.unfinished_save_jobs().await.unwrap().is_empty());
        // An ended job is never written again.
        assert!(!store
            .update_save_job("j1", "pushing", "{}", 13)
            .await
            .unwrap());
        assert!(!store
            .end_save_job("j1", "failed", Some("late"), None, 13)
            .await
            .unwrap());
        assert!(store
            .complete_save_job("j1", &image_fields("x", "private", None), "{}", "{}", 13)
            .await
            .unwrap()
            .is_none());
        assert!(
            store.image_by_name("x").await.unwrap().is_none(),
            "{engine:?}"
        );

        // A name taken meanwhile: nothing is written, the job stays open to be failed.
        store
            .create_save_job(&new_job("j2", alice.id, "env2"), 20)
            .await
            .unwrap();
        assert!(matches!(
            store.complete_save_job("j2", &image, "{}", "{}", 21).await,
            Err(DbError::Conflict)
        ));
        let job = store.save_job("j2").await.unwrap().unwrap();
        assert_eq!((job.finished, job.image_id), (None, None), "{engine:?}");
        assert!(store
            .end_save_job(
                "j2",
                "failed",
                Some("the hub restarted during the save"),
                None,
                22
            )
            .await
            .unwrap());
        let job = store.save_job("j2").await.unwrap().unwrap();
        assert_eq!(
            (job.state.as_str(), job.reason.as_deref(), job.finished),
            (
                "failed",
                Some("the hub restarted during the save"),
                Some(22)
            )
        );

        // A job left running by a hub that stopped is put back in the queue to resume.
        store
            .create_save_job(&new_job("j3", alice.id, "env3"), 30)
            .await
            .unwrap();
        store
            .update_save_job("j3", "pushing", r#"{"bytes_pushed":9}"#, 31)
            .await
            .unwrap();
        assert!(store.requeue_save_job("j3", 40).await.unwrap());
        let job = store.save_job("j3").await.unwrap().unwrap();
        assert_eq!(
            (job.state.as_str(), job.progress.as_str()),
            ("queued", "{}")
        );
        assert!(!store.requeue_save_job("j2", 40).await.unwrap());

        assert_eq!(
            store
                .save_jobs_of(alice.id)
                .await
                .unwrap()
                .iter()
                .map(|j| j.id.as_str())
                .collect::<Vec<_>>(),
            ["j3", "j2", "j1"],
            "{engine:?}: newest first"
        );
        // Retention: ended jobs before the cut are deleted, running ones never.
        assert_eq!(store.delete_save_jobs_finished_before(22).await.unwrap(), 1);
        assert!(store.save_job("j1").await.unwrap().is_none());
        assert_eq!(
            store
                .delete_save_jobs_finished_before(i64::MAX)
                .await
                .unwrap(),
            1
        );
        assert!(store.save_job("j3").await.unwrap().is_some());
        // The image outlives its job; the jobs go with their user.
        assert!(store.image(row.id).await.unwrap().is_some());
        store.delete_user(alice.id).await.unwrap();
        assert!(store.save_job("j3").await.unwrap().is_none(), "{engine:?}");
    }
}

#[tokio::test]
async fn pools_and_placements_are_recorded_and_only_empty_pools_are_removed_on_both_engines() {
    for (store, _dir) in stores().await {
        let engine = store.engine();
        let new = |name: &str, path: &str| NewPool {
            name: name.into(),
            path: path.into(),
            fs_type: PoolType::Local,
            capacity_bytes: None,
        };
        let a = store.create_pool(&new("a", "/pools/a"), 10).await.unwrap();
        assert_eq!(
            (a.state, a.fs_type, a.created),
            (PoolState::Active, PoolType::Local, 10)
        );
        let b = store
            .create_pool(
                &NewPool {
                    fs_type: PoolType::Glusterfs,
                    capacity_bytes: Some(1 << 30),
                    ..new("b", "/pools/b")
                },
                11,
            )
            .await
            .unwrap();
        for taken in [new("a", "/pools/c"), new("c", "/pools/a")] {
            assert!(
                matches!(store.create_pool(&taken, 12).await, Err(DbError::Conflict)),
                "{engine:?}: names and paths are unique"
            );
        }
        let names: Vec<String> = store
            .list_pools()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["a", "b"], "{engine:?}");

        let drained = store
            .update_pool(b.id, PoolState::Draining, None, 13)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (drained.state, drained.capacity_bytes, drained.updated),
            (PoolState::Draining, None, 13)
        );
        assert!(store
            .update_pool(999, PoolState::Active, None, 14)
            .await
            .unwrap()
            .is_none());

        // The first placement of a thing wins; a second one gets the first's.
        let first = store
            .create_placement(a.id, PlacementKind::Work, "user:1", "work/1-ann", 15)
            .await
            .unwrap();
        let again = store
            .create_placement(b.id, PlacementKind::Work, "user:1", "work/1-other", 16)
            .await
            .unwrap();
        assert_eq!(again, first, "{engine:?}");
        assert_eq!(
            store
                .placement(PlacementKind::Work, "user:1")
                .await
                .unwrap(),
            Some(first.clone())
        );
        assert_eq!(
            store
                .placement(PlacementKind::Dataset, "user:1")
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.placements_on(a.id).await.unwrap(), vec![first]);

        assert_eq!(
            store.delete_empty_pool(a.id).await.unwrap(),
            PoolRemoval::NotEmpty(1)
        );
        assert!(
            store.pool(a.id).await.unwrap().is_some(),
            "{engine:?}: a pool in use stays"
        );
        assert!(store
            .delete_placement(PlacementKind::Work, "user:1")
            .await
            .unwrap());
        assert!(!store
            .delete_placement(PlacementKind::Work, "user:1")
            .await
            .unwrap());
        assert_eq!(
            store.delete_empty_pool(a.id).await.unwrap(),
            PoolRemoval::Removed
        );
        assert_eq!(
            store.delete_empty_pool(a.id).await.unwrap(),
            PoolRemoval::Missing
        );
        assert_eq!(store.list_pools().await.unwrap().len(), 1, "{engine:?}");
    }
}

#[tokio::test]
async fn datasets_files_uploads_shares_and_stars_are_kept_on_both_engines() {
    for (store, _dir) in stores().await {
        let alice = store.create_user("alice", false, 1).await.unwrap();
        let bob = store.create_user("bob", false, 1).await.unwrap();
        let carol = store.create_user("carol", false, 1).await.unwrap();
        let class = store
            .create_group_with_members("class", &[carol.id])
            .await
            .unwrap();
        let fields = |name: &str, description: &str, visibility| DatasetFields {
            name: name.into(),
            description: description.into(),
            tags: "images digits".into(),
            license: "CC-BY-4.0".into(),
            visibility,
        };
        let mnist = store
            .create_dataset(
                alice.id,
                &fields(
                    "mnist",
                    "Handwritten 100% digits",
                    DatasetVisibility::Private,
                ),
                10,
            )
            .await
            .unwrap();
        let public = store
            .create_dataset(
                alice.id,
                &fields("数据集", "中文 text", DatasetVisibility::Public),
                20,
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .create_dataset(
                    alice.id,
                    &fields("mnist", "", DatasetVisibility::Private),
                    30
                )
                .await,
            Err(DbError::Conflict)
        ));
        let search = |viewer: i64, words: &[&str]| DatasetSearch {
            viewer_id: viewer,
            admin: false,
            words: words.iter().map(|w| w.to_string()).collect(),
            owner: None,
            tag: None,
            starred: false,
            sort: DatasetSort::Updated,
            offset: 0,
            limit: 50,
        };
        // Bob sees the public one only; a word of the description finds it; LIKE's % is literal.
        let (rows, total) = store.search_datasets(&search(bob.id, &[])).await.unwrap();
        assert_eq!((rows.len(), total), (1, 1));
        assert_eq!(rows[0].name, "数据集");
        let (rows, _) = store
            .search_datasets(&search(alice.id, &["100%"]))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let (rows, _) = store
            .search_datasets(&search(alice.id, &["0%"]))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let (rows, _) = store
            .search_datasets(&search(alice.id, &["1_0"]))
            .await
            .unwrap();
        assert!(rows.is_empty());
        // A group share reaches carol; a user share reaches bob.
        store
            .set_dataset_share(mnist.id, Grantee::Group(class.id), ShareAccess::Write, 40)
            .await
            .unwrap();
        store
            .set_dataset_share(mnist.id, Grantee::User(bob.id), ShareAccess::Read, 41)
            .await
            .unwrap();
        store
            .set_dataset_share(mnist.id, Grantee::User(bob.id), ShareAccess::Read, 42)
            .await
            .unwrap();
        assert_eq!(
            store.share_access(mnist.id, carol.id).await.unwrap(),
            Some(ShareAccess::Write)
        );
        assert_eq!(
            store.share_access(mnist.id, bob.id).await.unwrap(),
            Some(ShareAccess::Read)
        );
        let shares = store.dataset_shares(mnist.id).await.unwrap();
        assert_eq!(shares.len(), 2, "{shares:?}");
        assert_eq!((shares[0].kind, shares[0].name.as_str()), ("user", "bob"));
        let (rows, total) = store.search_datasets(&search(bob.id, &[])).await.unwrap();
        assert_eq!((rows.len(), total), (2, 2));
        // Stars, counted and sorted on.
        store
            .set_dataset_star(public.id, bob.id, true, 50)
            .await
            .unwrap();
        store
            .set_dataset_star(public.id, bob.id, true, 51)
            .await
            .unwrap();
        store
            .set_dataset_star(public.id, carol.id, true, 52)
            .await
            .unwrap();
        let mut by_stars = search(bob.id, &[]);
        by_stars.sort = DatasetSort::Stars;
        let (rows, _) = store.search_datasets(&by_stars).await.unwrap();
        assert_eq!((rows[0].name.as_str(), rows[0].stars), ("数据集", 2));
        let mut starred = search(bob.id, &[]);
        starred.starred = true;
        assert_eq!(store.search_datasets(&starred).await.unwrap().1, 1);
        // Uploads reserve against the owner's limit; a full limit refuses.
        let upload = |id: &str, path: &str, size: i64| UploadRow {
            id: id.into(),
            dataset_id: mnist.id,
            user_id: carol.id,
            path: path.into(),
            size,
            created: 60,
            updated: 60,
        };
        let first = upload("u1", "数据/训练集.csv", 600);
        assert!(matches!(
            store.start_upload(&first, alice.id, 1000).await.unwrap(),
            UploadStart::Started(_)
        ));
        assert!(matches!(
            store
                .start_upload(&upload("u2", "b", 500), alice.id, 1000)
                .await
                .unwrap(),
            UploadStart::OverLimit { used: 600 }
        ));
        assert!(matches!(
            store
                .start_upload(&upload("u3", "数据/训练集.csv", 1), alice.id, 1000)
                .await
                .unwrap(),
            UploadStart::UploadExists(_)
        ));
        let file = store
            .complete_upload(&first, "ab", 70, async || Ok(()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(file.path, "数据/训练集.csv");
        let d = store.dataset(mnist.id).await.unwrap().unwrap();
        assert_eq!((d.file_count, d.size_bytes), (1, 600));
        assert_eq!(store.dataset_bytes_of_owner(alice.id).await.unwrap(), 600);
        // A file's path and its folders are taken; a failed disk step rolls a move back.
        for taken in ["数据/训练集.csv", "数据", "数据/训练集.csv/x"] {
            assert!(
                store.dataset_path_taken(mnist.id, taken).await.unwrap(),
                "{taken}"
            );
        }
        assert!(!store.dataset_path_taken(mnist.id, "数").await.unwrap());
        assert!(matches!(
            store
                .start_upload(&upload("u4", "数据", 1), alice.id, 1000)
                .await
                .unwrap(),
            UploadStart::FileExists
        ));
        let failed = store
            .move_dataset_files(mnist.id, "数据", "data", 80, async || {
                Err(std::io::Error::other("disk"))
            })
            .await
            .unwrap();
        assert!(failed.is_err());
        assert!(store
            .dataset_file(mnist.id, "数据/训练集.csv")
            .await
            .unwrap()
            .is_some());
        let moved = store
            .move_dataset_files(mnist.id, "数据", "data/数据", 81, async || Ok(()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved, 1);
        let under = store.dataset_files_under(mnist.id, "data").await.unwrap();
        assert_eq!(under[0].path, "data/数据/训练集.csv");
        assert!(store
            .dataset_files_under(mnist.id, "dat")
            .await
            .unwrap()
            .is_empty());
        let gone = store
            .delete_dataset_files(mnist.id, "data", 90)
            .await
            .unwrap();
        assert_eq!(gone.len(), 1);
        let d = store.dataset(mnist.id).await.unwrap().unwrap();
        assert_eq!((d.file_count, d.size_bytes), (0, 0));
        // Deleting the owner takes datasets, files, shares and stars with it.
        store.delete_user(alice.id).await.unwrap();
        assert!(store.dataset(mnist.id).await.unwrap().is_none());
        assert!(store
            .search_datasets(&search(bob.id, &[]))
            .await
            .unwrap()
            .0
            .is_empty());
    }
}

#[tokio::test]
async fn projects_members_stars_forks_and_datasets_are_kept_on_both_engines() {
    for (store, _dir) in stores().await {
        let alice = store.create_user("alice", false, 1).await.unwrap();
        let bob = store.create_user("bob", false, 1).await.unwrap();
        let carol = store.create_user("carol", false, 1).await.unwrap();
        let data = store
            .create_dataset(
                alice.id,
                &DatasetFields {
                    name: "d".into(),
                    description: String::new(),
                    tags: String::new(),
                    license: String::new(),
                    visibility: DatasetVisibility::Public,
                },
                2,
            )
            .await
            .unwrap();
        let fields = |name: &str, visibility| ProjectFields {
            name: name.into(),
            description: "Weather 50% model".into(),
            tags: "ml weather".into(),
            image_id: None,
            visibility,
        };
        let private = store
            .create_project(
                alice.id,
                &fields("private", DatasetVisibility::Private),
                &[data.id],
                None,
                10,
            )
            .await
            .unwrap();
        let public = store
            .create_project(
                alice.id,
                &fields("public", DatasetVisibility::Public),
                &[],
                None,
                11,
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .create_project(
                    alice.id,
                    &fields("public", DatasetVisibility::Public),
                    &[],
                    None,
                    12
                )
                .await,
            Err(DbError::Conflict)
        ));
        assert_eq!(
            store.project_dataset_ids(private.id).await.unwrap(),
            vec![data.id]
        );
        let search = |viewer: i64| ProjectSearch {
            viewer_id: viewer,
            admin: false,
            words: Vec::new(),
            owner: None,
            mine: false,
            starred: false,
            by_stars: false,
            offset: 0,
            limit: 20,
        };
        // Bob sees the public one; as a member, the private one too.
        assert_eq!(store.search_projects(&search(bob.id)).await.unwrap().1, 1);
        store
            .set_project_member(private.id, bob.id, ProjectRole::Viewer, 20)
            .await
            .unwrap();
        store
            .set_project_member(private.id, bob.id, ProjectRole::Editor, 21)
            .await
            .unwrap();
        assert_eq!(
            store.project_role(private.id, bob.id).await.unwrap(),
            Some(ProjectRole::Editor)
        );
        assert_eq!(store.project_members(private.id).await.unwrap().len(), 1);
        assert_eq!(store.search_projects(&search(bob.id)).await.unwrap().1, 2);
        let mut mine = search(bob.id);
        mine.mine = true;
        assert_eq!(store.search_projects(&mine).await.unwrap().1, 1);
        let mut words = search(carol.id);
        words.words = vec!["50%".into(), "weather".into()];
        assert_eq!(store.search_projects(&words).await.unwrap().1, 1);
        // Stars, forks and their counts; a fork outlives its original.
        store
            .set_project_star(public.id, bob.id, true, 30)
            .await
            .unwrap();
        store
            .set_project_star(public.id, bob.id, true, 31)
            .await
            .unwrap();
        assert!(store.project_starred(public.id, bob.id).await.unwrap());
        let fork = store
            .create_project(
                carol.id,
                &fields("public", DatasetVisibility::Private),
                &[],
                Some(public.id),
                40,
            )
            .await
            .unwrap();
        let original = store.project(public.id).await.unwrap().unwrap();
        assert_eq!((original.stars, original.forks), (1, 1));
        let mut by_stars = search(carol.id);
        by_stars.by_stars = true;
        assert_eq!(
            store.search_projects(&by_stars).await.unwrap().0[0].id,
            public.id
        );
        // A change of datasets replaces them in one step; the last run's sizes are kept.
        let changed = store
            .update_project(
                private.id,
                &fields("renamed", DatasetVisibility::Private),
                Some(&[]),
                50,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changed.name, "renamed");
        assert!(store
            .project_dataset_ids(private.id)
            .await
            .unwrap()
            .is_empty());
        store
            .set_project_last_options(private.id, r#"{"nodes":2}"#)
            .await
            .unwrap();
        assert_eq!(
            store
                .project(private.id)
                .await
                .unwrap()
                .unwrap()
                .last_options,
            r#"{"nodes":2}"#
        );
        // Deleting the owner takes their projects; the fork stays, no longer "forked from".
        store.delete_user(alice.id).await.unwrap();
        assert!(store.project(public.id).await.unwrap().is_none());
        let fork = store.project(fork.id).await.unwrap().unwrap();
        assert_eq!(fork.forked_from, None);
    }
}

#[tokio::test]
async fn project_uploads_and_hidden_import_names_are_kept_on_both_engines() {
    for (store, _dir) in stores().await {
        let alice = store.create_user("alice", false, 1).await.unwrap();
        let bob = store.create_user("bob", false, 1).await.unwrap();
        let fields = |name: &str| ProjectFields {
            name: name.into(),
            description: String::new(),
            tags: String::new(),
            image_id: None,
            visibility: DatasetVisibility::Private,
        };
        let lab = store
            .create_project(alice.id, &fields("lab"), &[], None, 10)
            .await
            .unwrap();
        let upload = |id: &str, user_id: i64, path: &str, at: i64| ProjectUploadRow {
            id: id.into(),
            project_id: lab.id,
            user_id,
            path: path.into(),
            size: 5,
            created: at,
            updated: at,
        };
        let first = upload("p1", alice.id, "数据/a.csv", 100);
        assert_eq!(store.start_project_upload(&first).await.unwrap(), Ok(()));
        // One upload per path: the second is answered with the first.
        assert_eq!(
            store
                .start_project_upload(&upload("p2", bob.id, "数据/a.csv", 101))
                .await
                .unwrap(),
            Err(first.clone())
        );
        let other = upload("p3", bob.id, "b.csv", 200);
        store.start_project_upload(&other).await.unwrap().unwrap();
        assert_eq!(
            store.project_upload("p1").await.unwrap(),
            Some(first.clone())
        );
        assert_eq!(
            store.project_uploads_of(lab.id, bob.id).await.unwrap(),
            vec![other.clone()]
        );
        assert_eq!(
            store.stale_project_uploads(150).await.unwrap(),
            vec![first.clone()]
        );
        store.touch_project_upload("p1", 300).await.unwrap();
        assert_eq!(
            store.stale_project_uploads(250).await.unwrap(),
            vec![other.clone()]
        );
        assert!(store.delete_project_upload("p3").await.unwrap());
        assert!(!store.delete_project_upload("p3").await.unwrap());
        // Uploads go with their project.
        store.delete_project(lab.id).await.unwrap();
        assert_eq!(store.project_upload("p1").await.unwrap(), None);

        // Hidden names are found by their literal start (`_` and `%` are not wildcards).
        let hidden = store
            .create_project(bob.id, &fields(".import-00ff"), &[], None, 10)
            .await
            .unwrap();
        store
            .create_project(bob.id, &fields("ximport-00ff"), &[], None, 10)
            .await
            .unwrap();
        let found = store.projects_named_from(".import-").await.unwrap();
        assert_eq!(
            found.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![hidden.id]
        );
        assert!(store
            .projects_named_from("_import")
            .await
            .unwrap()
            .is_empty());
    }
}

#[tokio::test]
async fn auth_states_are_replaced_found_when_due_and_go_with_their_user_on_both_engines() {
    for (store, _dir) in stores().await {
        let ann = store.create_user("ann", false, 1).await.unwrap();
        let bob = store.create_user("bob", false, 1).await.unwrap();
        assert_eq!(store.encrypted_auth_state(ann.id).await.unwrap(), None);
        store
            .set_encrypted_auth_state(ann.id, Some("gAAAA-one"), 10)
            .await
            .unwrap();
        store
            .set_encrypted_auth_state(ann.id, Some("gAAAA-two"), 20)
            .await
            .unwrap();
        store
            .set_encrypted_auth_state(bob.id, Some("gAAAA-bob"), 5)
            .await
            .unwrap();
        assert_eq!(
            store.encrypted_auth_state(ann.id).await.unwrap().as_deref(),
            Some("gAAAA-two")
        );
        assert_eq!(store.auth_state_updated(ann.id).await.unwrap(), Some(20));
        // Due: written before the cutoff and still signed in somewhere.
        assert!(store.auth_states_due(100, 50, 10).await.unwrap().is_empty());
        store
            .insert_session("h-ann", "s-ann", ann.id, 30, 1000)
            .await
            .unwrap();
        store
            .insert_session("h-bob", "s-bob", bob.id, 30, 40)
            .await
            .unwrap();
        assert_eq!(
            store.auth_states_due(100, 50, 10).await.unwrap(),
            [ann.id],
            "bob's session has expired"
        );
        assert!(store.auth_states_due(15, 50, 10).await.unwrap().is_empty());
        // Every session of a user ends at once.
        store
            .insert_session("h-ann2", "s-ann2", ann.id, 31, 1000)
            .await
            .unwrap();
        assert_eq!(store.delete_sessions_of(ann.id).await.unwrap(), 2);
        assert!(store.session("h-ann2", 50).await.unwrap().is_none());
        assert!(store.auth_states_due(100, 50, 10).await.unwrap().is_empty());
        store
            .set_encrypted_auth_state(ann.id, None, 30)
            .await
            .unwrap();
        assert_eq!(store.encrypted_auth_state(ann.id).await.unwrap(), None);
        store.delete_user(bob.id).await.unwrap();
        assert_eq!(store.encrypted_auth_state(bob.id).await.unwrap(), None);
    }
}
