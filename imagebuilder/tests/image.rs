//! The new config and manifest: the base's, plus one layer, with unknown fields kept.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::BTreeMap;

use chrono::TimeZone;
use imagebuilder::{
    extend_config, extend_manifest, select_linux_amd64, BaseImage, Compression, LayerRecord,
    SaveMetadata, DOCKER_MANIFEST, OCI_MANIFEST,
};
use serde_json::json;

fn docker_base() -> BaseImage {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": "sha256:c0"},
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 10, "digest": "sha256:l1"},
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 20, "digest": "sha256:l2"}
        ]
    });
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "container_config": {"Cmd": ["/bin/sh"]},
        "config": {"Cmd": ["/bin/sh"], "Labels": {"maintainer": "xiji", "org.xiji.saved-by": "someone-else"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:d1", "sha256:d2"]},
        "history": [
            {"created_by": "imported", "created": "2024-01-01T00:00:00Z"},
            {"created_by": "ENV A=b", "empty_layer": true},
            {"created_by": "RUN make"}
        ]
    });
    BaseImage::from_parts("127.0.0.1:5000/xiji/base:1", "sha256:m0", manifest, config).unwrap()
}

fn layer() -> LayerRecord {
    LayerRecord {
        digest: "sha256:new".into(),
        diff_id: "sha256:newdiff".into(),
        size: 30,
    }
}

fn meta() -> SaveMetadata {
    SaveMetadata {
        created: chrono::Utc
            .with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .unwrap(),
        saved_by: "alice".into(),
        comment: Some("my env".into()),
        labels: BTreeMap::from([("course".to_string(), "ml101".to_string())]),
    }
}

#[test]
fn the_config_gains_the_diff_id_a_history_entry_and_labels_and_keeps_the_rest() {
    let config = extend_config(&docker_base(), &layer(), &meta()).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        json!(["sha256:d1", "sha256:d2", "sha256:newdiff"])
    );
    assert_eq!(config["created"], "2026-11-24T12:00:00Z");
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(
        history[3],
        json!({"created": "2026-11-24T12:00:00Z", "created_by": "xiji save-image by alice", "author": "alice", "comment": "my env"})
    );
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["maintainer"], "xiji");
    assert_eq!(labels["org.xiji.saved-by"], "alice");
    assert_eq!(labels["org.xiji.base-image"], "127.0.0.1:5000/xiji/base:1");
    assert_eq!(labels["org.xiji.base-digest"], "sha256:m0");
    assert_eq!(labels["org.opencontainers.image.description"], "my env");
    assert_eq!(labels["course"], "ml101");
    assert_eq!(config["container_config"], json!({"Cmd": ["/bin/sh"]}));
    assert_eq!(config["config"]["Cmd"], json!(["/bin/sh"]));
}

#[test]
fn a_base_without_history_gets_one_entry_per_layer() {
    let mut base = docker_base();
    base.config.as_object_mut().unwrap().remove("history");
    let config = extend_config(&base, &layer(), &meta()).unwrap();
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["created_by"], "(base image layer)");
}

#[test]
fn a_docker_manifest_stays_docker_with_a_docker_layer_type() {
    let (manifest, media_type) = extend_manifest(
        &docker_base(),
        "sha256:cfg",
        123,
        &layer(),
        &Compression::default(),
    )
    .unwrap();
    assert_eq!(media_type, DOCKER_MANIFEST);
    assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
    assert_eq!(
        manifest["config"],
        json!({"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:cfg", "size": 123})
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0]["digest"], "sha256:l1");
    assert_eq!(
        layers[2],
        json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": "sha256:new", "size": 30})
    );
    assert!(manifest.get("annotations").is_none());
}

#[test]
fn a_zstd_layer_turns_a_docker_manifest_into_oci_with_the_same_blobs() {
    let zstd = Compression::Zstd {
        level: 3,
        threads: 0,
    };
    let (manifest, media_type) =
        extend_manifest(&docker_base(), "sha256:cfg", 123, &layer(), &zstd).unwrap();
    assert_eq!(media_type, OCI_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(layers[0]["digest"], "sha256:l1");
    assert_eq!(
        layers[2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        "127.0.0.1:5000/xiji/base:1"
    );
    // And it is a valid OCI manifest by oci-spec's reading.
    let parsed: oci_client::manifest::OciImageManifest = serde_json::from_value(manifest).unwrap();
    assert_eq!(parsed.layers.len(), 3);
}

#[test]
fn an_oci_manifest_without_media_type_is_recognised_and_keeps_its_annotations() {
    let manifest = json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1, "digest": "sha256:c0"},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 10, "digest": "sha256:l1"}],
        "annotations": {"org.opencontainers.image.source": "https://example.invalid/repo"},
        "subject": {"mediaType": OCI_MANIFEST, "size": 1, "digest": "sha256:s"}
    });
    let config = json!({"rootfs": {"type": "layers", "diff_ids": ["sha256:d1"]}});
    let base = BaseImage::from_parts("r/x:1", "sha256:m", manifest, config).unwrap();
    assert_eq!(base.manifest_media_type, OCI_MANIFEST);
    let (manifest, media_type) =
        extend_manifest(&base, "sha256:cfg", 5, &layer(), &Compression::default()).unwrap();
    assert_eq!(media_type, OCI_MANIFEST);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.source"],
        "https://example.invalid/repo"
    );
    assert!(
        manifest.get("subject").is_none(),
        "the base's subject does not describe the new image"
    );
    assert_eq!(
        manifest["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}

#[test]
fn a_base_whose_config_and_manifest_disagree_is_refused() {
    let mut base = docker_base();
    base.config["rootfs"]["diff_ids"] = json!(["sha256:d1"]);
    let err = BaseImage::from_parts("r/x:1", "sha256:m", base.manifest, base.config).unwrap_err();
    assert!(
        err.to_string()
            .contains("config lists 1 layers but the manifest 2"),
        "{err}"
    );
}

#[test]
fn an_index_resolves_to_linux_amd64() {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}}
        ]
    });
    assert_eq!(select_linux_amd64(&index).as_deref(), Some("sha256:amd"));
    assert_eq!(select_linux_amd64(&json!({"manifests": []})), None);
}
