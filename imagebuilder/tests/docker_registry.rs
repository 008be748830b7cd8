//! End to end against a real Docker Engine and a real Debian `docker-registry`:
//! change files in a running container, save it with the image builder (no `docker commit`),
//! `docker pull` and run the result, and read the registry's own access log to prove that no
//! base layer was uploaded again.
//!
//! Runs when `XIJI_TEST_DOCKER=1` (set by `tests/setup-docker.sh`'s env file); then a missing
//! Docker or registry is a failure, not a skip. Each test starts its own registry on a free
//! loopback port with its own storage, and removes its containers and images.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod docker_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use docker_support::{docker_tests_enabled, free_port, sh, unique, DockerCleanup, Registry};
use imagebuilder::{
    docker_container_from_inspect, BuilderConfig, Compression, Error, ImageBuilder, JobState,
    LayerOptions, PauseHook, RegistryAuth, SaveRequest, WritableLayer, WORK_DIR,
};

/// A tiny two-layer base image from the host's own binaries (no Docker Hub here): layer 1 is a
/// `docker import`ed rootfs, layer 2 a `docker build` step that adds files the test deletes or
/// replaces later. Pushed to `registry` as `<repo>:1`.
fn build_base(registry: &Registry, cleanup: &mut DockerCleanup, repo: &str) -> String {
    let rootfs = docker_support::host_rootfs(
        &[
            "sh",
            "ls",
            "cat",
            "rm",
            "mkdir",
            "ln",
            "sleep",
            "stat",
            "readlink",
            "echo",
            "sha256sum",
        ],
        &["etc", "tmp", "root", "home/jovyan", "usr/share/doc/old"],
    );
    let root = rootfs.path();
    std::fs::write(root.join("usr/share/doc/old/README"), "old docs\n").unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();

    let imported = unique("ib-test-rootfs-");
    cleanup.images.push(imported.clone());
    sh(&format!(
        "tar -C {} -c . | docker import - {imported} > /dev/null",
        root.display()
    ));
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {imported}\n\
             RUN mkdir -p /usr/share/doc/pkg && echo pkg docs > /usr/share/doc/pkg/README \
             && echo 12.0 > /etc/debian_version && echo base > /etc/base-file\n\
             CMD [\"/bin/sh\"]\n"
        ),
    )
    .unwrap();
    let base = format!("{}/{repo}:1", registry.addr);
    cleanup.images.push(base.clone());
    sh(&format!(
        "DOCKER_BUILDKIT=0 docker build -q -t {base} {} > /dev/null",
        context.path().display()
    ));
    sh(&format!("docker push {base} > /dev/null"));
    base
}

fn base_layer_digests(registry: &Registry, repo: &str) -> Vec<String> {
    let manifest = sh(&format!(
        "curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' http://{}/v2/{repo}/manifests/1",
        registry.addr
    ));
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Pauses with `docker pause`, and records the container's state seen at each call.
struct DockerPause {
    container: String,
    calls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl PauseHook for DockerPause {
    async fn pause(&self) -> Result<(), String> {
        sh(&format!("docker pause {} > /dev/null", self.container));
        self.record("pause");
        Ok(())
    }
    async fn resume(&self) -> Result<(), String> {
        self.record("resume");
        sh(&format!("docker unpause {} > /dev/null", self.container));
        Ok(())
    }
}

impl DockerPause {
    fn record(&self, call: &str) {
        let state = sh(&format!(
            "docker inspect -f '{{{{.State.Status}}}}' {}",
            self.container
        ));
        self.calls
            .lock()
            .unwrap()
            .push(format!("{call}: {}", state.trim()));
    }
}

fn builder() -> ImageBuilder {
    ImageBuilder::new(BuilderConfig {
        compression: Compression::default(),
        ..BuilderConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_container_runs_with_its_changes_and_no_base_layer_is_uploaded_again() {
    if !docker_tests_enabled() {
        return;
    }
    let registry = Registry::start();
    let mut cleanup = DockerCleanup::default();
    let base = build_base(&registry, &mut cleanup, "xiji/base");
    let base_layers = base_layer_digests(&registry, "xiji/base");
    assert_eq!(base_layers.len(), 2);

    let container = unique("ib-test-node-");
    cleanup.containers.push(container.clone());
    sh(&format!(
        "docker run -d --name {container} {base} sleep 3600 > /dev/null"
    ));
    sh(&format!(
        "docker exec {container} sh -c '\
         mkdir -p /opt/tools && echo added > /opt/tools/added.txt && \
         ln /opt/tools/added.txt /opt/tools/hardlink.txt && ln -s added.txt /opt/tools/symlink.txt && \
         rm /etc/debian_version && \
         rm -rf /usr/share/doc && mkdir -p /usr/share/doc && echo new docs > /usr/share/doc/only.txt && \
         mkdir -p {WORK_DIR} && echo secret > {WORK_DIR}/notebook.txt && \
         echo scratch > /tmp/scratch.txt && \
         mkdir -p /root/.cache/pip && echo wheel > /root/.cache/pip/cached.whl'"
    ));

    // A 5 MiB file: several 1 MiB gzip members in the layer, which Docker must read as one.
    let blob: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i % 251) as u8)
        .collect();
    let blob_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(blob_file.path(), &blob).unwrap();
    let blob_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&blob))
    };
    sh(&format!(
        "docker cp {} {container}:/opt/tools/blob.bin",
        blob_file.path().display()
    ));

    // The writable layer, found both ways: docker inspect, and the init process's mountinfo.
    let inspect = sh(&format!("docker inspect {container}"));
    let found = docker_container_from_inspect(&inspect).unwrap();
    assert!(found.running);
    assert_eq!(found.image, base);
    let from_mountinfo = WritableLayer::from_pid(found.pid, Path::new("/")).unwrap();
    assert_eq!(from_mountinfo, found.writable_layer());

    let target = format!("{}/users/alice/env:v1", registry.addr);
    cleanup.images.push(target.clone());
    let mut request = SaveRequest::new(
        found.writable_layer(),
        base.clone(),
        target.clone(),
        "alice",
    );
    request.description = Some("tools and docs".into());
    let job = builder().start(request).unwrap();
    let mut updates = job.subscribe();
    let watcher = tokio::spawn(async move {
        let mut states = vec![updates.borrow().state.clone()];
        while updates.changed().await.is_ok() {
            let state = updates.borrow().state.clone();
            if states.last() != Some(&state) {
                states.push(state.clone());
            }
            if state.is_finished() {
                break;
            }
        }
        (states, updates.borrow().clone())
    });
    let saved = job.wait().await.unwrap();
    let (states, last) = watcher.await.unwrap();
    assert_eq!(
        states,
        [
            JobState::Queued,
            JobState::Reading,
            JobState::Compressing,
            JobState::Pushing,
            JobState::Done
        ]
    );
    assert_eq!(last.image.as_ref(), Some(&saved));
    assert_eq!(last.progress.bytes_pushed, saved.layer_size);
    assert_eq!(last.progress.push_total, saved.layer_size);
    assert!(
        last.progress.bytes_read > 0 && last.progress.bytes_read == last.progress.total_estimate
    );
    assert_eq!(saved.base_layers_mounted, 2, "{saved:?}");
    assert_eq!(saved.base_layers_copied, 0);

    // The registry's own log: exactly the new layer and the config were uploaded, the base
    // layers were mounted.
    let uploaded = registry.uploaded_digests("users/alice/env");
    assert_eq!(
        uploaded.iter().collect::<BTreeSet<_>>(),
        [&saved.layer_digest, &saved.config_digest]
            .into_iter()
            .collect(),
        "uploads: {uploaded:?}"
    );
    for layer in &base_layers {
        assert!(!uploaded.contains(layer), "base layer {layer} was uploaded");
    }
    let mounts = registry.mount_requests("users/alice/env");
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert!(mounts.iter().all(|m| m.contains("\" 201 ")), "{mounts:?}");

    // Docker pulls it and runs it.
    sh(&format!("docker pull -q {target} > /dev/null"));
    let report = sh(&format!(
        "docker run --rm {target} sh -c '\
         cat /opt/tools/added.txt; cat /opt/tools/hardlink.txt; readlink /opt/tools/symlink.txt; \
         stat -c %i /opt/tools/added.txt /opt/tools/hardlink.txt; \
         ls /etc/debian_version 2>&1 || true; cat /etc/base-file; \
         ls /usr/share/doc; \
         ls {WORK_DIR} 2>&1 || true; ls /tmp; ls /root/.cache 2>&1 || true'"
    ));
    let blob_in_image = sh(&format!(
        "docker run --rm {target} sha256sum /opt/tools/blob.bin"
    ));
    assert!(
        blob_in_image.starts_with(&blob_sha),
        "{blob_in_image} vs {blob_sha}"
    );
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "added");
    assert_eq!(lines[1], "added");
    assert_eq!(lines[2], "added.txt");
    assert_eq!(lines[3], lines[4], "hard link shares the inode");
    assert!(
        lines[5].contains("No such file"),
        "deleted file is gone: {report}"
    );
    assert_eq!(lines[6], "base", "untouched base files stay");
    assert_eq!(
        lines[7], "only.txt",
        "replaced directory holds only the new content: {report}"
    );
    assert!(
        lines[8].contains("No such file"),
        "work dir not saved: {report}"
    );
    assert!(!report.contains("scratch.txt"), "/tmp not saved: {report}");
    assert!(
        lines.last().unwrap().contains("No such file"),
        "caches not saved: {report}"
    );

    // Labels and history, as Docker reads them.
    let labels = sh(&format!(
        "docker image inspect -f '{{{{json .Config.Labels}}}}' {target}"
    ));
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["org.xiji.saved-by"], "alice");
    assert_eq!(labels["org.xiji.base-image"], base.as_str());
    assert_eq!(
        labels["org.opencontainers.image.description"],
        "tools and docs"
    );
    let history = sh(&format!(
        "docker history --no-trunc --format '{{{{.CreatedBy}}}}|{{{{.Comment}}}}' {target}"
    ));
    assert!(
        history
            .lines()
            .next()
            .unwrap()
            .starts_with("xiji save-image by alice|tools and docs"),
        "{history}"
    );

    // skopeo (when installed) reads the manifest and config as valid images.
    if Command::new("skopeo").arg("--version").output().is_ok() {
        let inspected = sh(&format!(
            "skopeo inspect --tls-verify=false docker://{target}"
        ));
        let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3);
        assert_eq!(inspected["Digest"], saved.manifest_digest.as_str());
        let config = sh(&format!(
            "skopeo inspect --tls-verify=false --config docker://{target}"
        ));
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
        assert_eq!(
            config["rootfs"]["diff_ids"][2],
            saved.layer_diff_id.as_str()
        );
    } else {
        eprintln!("note: skopeo is not installed; manifest validated by docker pull only");
    }

    // Saving again into the same repository: the base layers are found present (HEAD) and
    // not even mounted again. (The new layer is streamed up while it is compressed, before its
    // digest is known, so it goes up again; the registry stores it once.)
    // This time with the container paused for a consistent snapshot (`docker pause`).
    let target2 = format!("{}/users/alice/env:v2", registry.addr);
    let mut request = SaveRequest::new(found.writable_layer(), base.clone(), target2, "alice");
    let pause = Arc::new(DockerPause {
        container: container.clone(),
        calls: Mutex::new(Vec::new()),
    });
    request.pause = pause.clone();
    let again = builder().start(request).unwrap().wait().await.unwrap();
    assert_eq!(
        *pause.calls.lock().unwrap(),
        ["pause: paused", "resume: paused"],
        "paused while read, resumed after"
    );
    assert_eq!(
        sh(&format!(
            "docker inspect -f '{{{{.State.Status}}}}' {container}"
        ))
        .trim(),
        "running"
    );
    assert_eq!(again.base_layers_present, 2, "{again:?}");
    assert_eq!(again.base_layers_mounted, 0, "{again:?}");
    assert_eq!(
        again.layer_digest, saved.layer_digest,
        "the same tree gives the same layer"
    );
    let uploaded = registry.uploaded_digests("users/alice/env");
    for layer in &base_layers {
        assert!(!uploaded.contains(layer), "base layer {layer} was uploaded");
    }
    assert_eq!(registry.mount_requests("users/alice/env").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_cancellation_leave_no_tagged_image() {
    if !docker_tests_enabled() {
        return;
    }
    let registry = Registry::start();
    let mut cleanup = DockerCleanup::default();
    let base = build_base(&registry, &mut cleanup, "xiji/base2");
    let upper = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(upper.path().join("opt")).unwrap();
    std::fs::write(upper.path().join("opt/big.bin"), vec![1u8; 4 * 1024 * 1024]).unwrap();
    let layer = WritableLayer::at(upper.path());

    // Over the size cap: a clear error, nothing tagged.
    let capped = ImageBuilder::new(BuilderConfig {
        layer: LayerOptions {
            size_cap: Some(1024 * 1024),
            ..LayerOptions::default()
        },
        ..BuilderConfig::default()
    });
    let target = format!("{}/users/bob/capped:v1", registry.addr);
    let job = capped
        .start(SaveRequest::new(layer.clone(), base.clone(), target, "bob"))
        .unwrap();
    let err = job.wait().await.unwrap_err();
    assert!(matches!(err, Error::SizeCapExceeded { .. }), "{err}");
    assert!(err.to_string().contains("/opt/big.bin (4.0 MiB)"), "{err}");
    assert_eq!(registry.manifest_status("users/bob/capped:v1"), "404");

    // Cancelled before it could finish: `cancelled`, nothing tagged.
    let target = format!("{}/users/bob/cancelled:v1", registry.addr);
    let job = builder()
        .start(SaveRequest::new(layer.clone(), base.clone(), target, "bob"))
        .unwrap();
    job.cancel();
    let status = job.subscribe();
    assert!(matches!(job.wait().await.unwrap_err(), Error::Cancelled));
    assert_eq!(status.borrow().state, JobState::Cancelled);
    assert_eq!(registry.manifest_status("users/bob/cancelled:v1"), "404");

    // A registry that is down: a failure naming the registry, quickly.
    let closed = format!("127.0.0.1:{}", free_port());
    let job = builder()
        .start(SaveRequest::new(
            layer.clone(),
            format!("{closed}/xiji/base:1"),
            format!("{closed}/users/bob/env:v1"),
            "bob",
        ))
        .unwrap();
    let status = job.subscribe();
    let started = Instant::now();
    let err = job.wait().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        err.to_string()
            .contains("registry error while fetching the manifest"),
        "{err}"
    );
    match &status.borrow().state {
        JobState::Failed { reason } => assert_eq!(reason, &err.to_string()),
        other => panic!("{other:?}"),
    }

    // A base image that does not exist.
    let job = builder()
        .start(SaveRequest::new(
            layer.clone(),
            format!("{}/xiji/nope:1", registry.addr),
            format!("{}/users/bob/env:v1", registry.addr),
            "bob",
        ))
        .unwrap();
    let err = job.wait().await.unwrap_err();
    assert!(err.to_string().contains("xiji/nope"), "{err}");

    // A name the registry would reject is refused at once.
    let err = builder()
        .start(SaveRequest::new(
            layer,
            base,
            format!("{}/Users/BOB:v1", registry.addr),
            "bob",
        ))
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidReference { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_basic_auth_takes_the_configured_credentials_and_copies_base_layers() {
    if !docker_tests_enabled() {
        return;
    }
    // The base on an open registry, the target on another one that wants a password: the base
    // layers cannot be mounted across registries, so they are copied.
    let open = Registry::start();
    let locked = Registry::start_with_basic_auth(Some(("alice", "s3cret-pw")));
    let mut cleanup = DockerCleanup::default();
    let base = build_base(&open, &mut cleanup, "xiji/base3");
    let upper = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(upper.path().join("opt")).unwrap();
    std::fs::write(upper.path().join("opt/hello.txt"), "hello").unwrap();
    let layer = WritableLayer::at(upper.path());
    let target = format!("{}/users/alice/env:v1", locked.addr);

    let with = |auth: RegistryAuth| {
        let mut config = BuilderConfig::default();
        config
            .registry
            .credentials
            .insert(locked.addr.clone(), auth);
        ImageBuilder::new(config)
    };

    // Wrong password: a clear failure, nothing tagged.
    let err = with(RegistryAuth::Basic {
        username: "alice".into(),
        password: "wrong".into(),
    })
    .start(SaveRequest::new(
        layer.clone(),
        base.clone(),
        target.clone(),
        "alice",
    ))
    .unwrap()
    .wait()
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("registry error while checking access to"),
        "fails before compressing: {err}"
    );
    assert!(err.to_string().contains("401"), "{err}");
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "no password in messages: {err}"
    );

    // The right one.
    let saved = with(RegistryAuth::Basic {
        username: "alice".into(),
        password: "s3cret-pw".into(),
    })
    .start(SaveRequest::new(layer, base, target.clone(), "alice"))
    .unwrap()
    .wait()
    .await
    .unwrap();
    assert_eq!(saved.base_layers_copied, 2, "{saved:?}");
    let status = sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' -u alice:s3cret-pw -H 'Accept: {}' http://{}/v2/users/alice/env/manifests/v1",
        imagebuilder::DOCKER_MANIFEST,
        locked.addr
    ));
    assert_eq!(status, "200");
    let anonymous = sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' http://{}/v2/users/alice/env/manifests/v1",
        locked.addr
    ));
    assert_eq!(anonymous, "401");
    if Command::new("skopeo").arg("--version").output().is_ok() {
        let inspected = sh(&format!(
            "skopeo inspect --tls-verify=false --creds alice:s3cret-pw docker://{target}"
        ));
        let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3);
    }
}
