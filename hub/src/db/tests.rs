//! One database test suite, run against SQLite and against PostgreSQL (`XIJI_TEST_PG_URL`, set up
//! by `tests/setup-env.sh`; each run creates and drops its own database).

use super::*;

/// A fresh store of each engine.
async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
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
            now: 5,
        };
        let id = store.begin_spawn(&spawn).await.unwrap();
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
        store.set_server_status(id, "running").await.unwrap();
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
