//! The new image's config and manifest: the base's, plus one layer.
//!
//! Both are edited as JSON values so every field this crate does not know (Docker's
//! `container_config`, annotations, …) survives unchanged.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::compress::Compression;
use crate::error::{Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Label naming who saved the image.
pub const LABEL_SAVED_BY: &str = "org.xiji.saved-by";
/// Label naming the base image.
pub const LABEL_BASE_IMAGE: &str = "org.xiji.base-image";
/// Label with the base image's manifest digest.
pub const LABEL_BASE_DIGEST: &str = "org.xiji.base-digest";

/// A blob reference in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Foreign layers' download locations (blobs that are not in the registry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// The base image as fetched from the registry (one platform's manifest).
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The reference it was fetched by.
    pub reference: String,
    /// The manifest's digest (of the platform manifest, not of an index).
    pub manifest_digest: String,
    /// The manifest's media type ([`OCI_MANIFEST`] or [`DOCKER_MANIFEST`]).
    pub manifest_media_type: String,
    /// The manifest.
    pub manifest: Value,
    /// The config.
    pub config: Value,
    /// The layers, in order.
    pub layers: Vec<Descriptor>,
}

impl BaseImage {
    /// Reads a platform manifest and its config. `manifest_media_type` comes from the
    /// registry's `Content-Type` or the manifest's own `mediaType`.
    pub fn from_parts(
        reference: &str,
        manifest_digest: &str,
        manifest: Value,
        config: Value,
    ) -> Result<Self> {
        let unsupported = |reason: String| Error::UnsupportedBaseImage {
            reference: reference.to_string(),
            reason,
        };
        let media_type = manifest_media_type(&manifest)
            .ok_or_else(|| unsupported("the manifest has no known media type".into()))?;
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(unsupported(format!("manifest type {media_type}")));
        }
        let layers: Vec<Descriptor> = manifest
            .get("layers")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| unsupported(format!("bad layers list: {e}")))?
            .unwrap_or_default();
        let rootfs = config.get("rootfs");
        if rootfs.and_then(|r| r.get("type")).and_then(Value::as_str) != Some("layers") {
            return Err(unsupported(
                "the config's rootfs is not of type layers".into(),
            ));
        }
        let diff_ids = rootfs
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0);
        if diff_ids != layers.len() {
            return Err(unsupported(format!(
                "the config lists {diff_ids} layers but the manifest {}",
                layers.len()
            )));
        }
        Ok(Self {
            reference: reference.to_string(),
            manifest_digest: manifest_digest.to_string(),
            manifest_media_type: media_type.to_string(),
            manifest,
            config,
            layers,
        })
    }
}

/// The media type a manifest declares, or the one its shape implies (`mediaType` is optional
/// in OCI manifests and indexes).
pub fn manifest_media_type(manifest: &Value) -> Option<&str> {
    if let Some(media_type) = manifest.get("mediaType").and_then(Value::as_str) {
        return Some(media_type);
    }
    if manifest.get("manifests").is_some() {
        Some(OCI_INDEX)
    } else if manifest.get("layers").is_some() {
        Some(OCI_MANIFEST)
    } else {
        None
    }
}

/// Picks linux/amd64 from an image index or manifest list: the digest of its manifest.
pub fn select_linux_amd64(index: &Value) -> Option<String> {
    index
        .get("manifests")?
        .as_array()?
        .iter()
        .find(|entry| {
            let platform = entry.get("platform");
            let field = |k: &str| platform.and_then(|p| p.get(k)).and_then(Value::as_str);
            field("os") == Some("linux") && field("architecture") == Some("amd64")
        })
        .and_then(|entry| entry.get("digest"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Who, when and why — the new history entry and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveMetadata {
    /// When the layer was made.
    pub created: DateTime<Utc>,
    /// The user who saved it.
    pub saved_by: String,
    /// A description (the history entry's `comment`).
    pub comment: Option<String>,
    /// Extra labels (override the base image's).
    pub labels: BTreeMap<String, String>,
}

/// The new layer as the config and manifest describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// `sha256:` of the compressed blob.
    pub digest: String,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// Compressed size.
    pub size: u64,
}

/// The base config with the new layer: `rootfs.diff_ids`, a history entry, labels, `created`.
pub fn extend_config(base: &BaseImage, layer: &LayerRecord, meta: &SaveMetadata) -> Result<Value> {
    let mut config = base.config.clone();
    let created = meta.created.to_rfc3339_opts(SecondsFormat::Secs, true);
    let object = config
        .as_object_mut()
        .ok_or_else(|| Error::UnsupportedBaseImage {
            reference: base.reference.clone(),
            reason: "the config is not a JSON object".into(),
        })?;
    object.insert("created".into(), json!(created));

    if let Some(diff_ids) = object
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
    {
        diff_ids.push(json!(layer.diff_id));
    } else {
        object.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": [layer.diff_id]}),
        );
    }

    let history = object.entry("history").or_insert_with(|| json!([]));
    if !history.is_array() {
        *history = json!([]);
    }
    if let Some(history) = history.as_array_mut() {
        // One entry per non-empty layer keeps tools that pair them (`docker history`) right.
        let described = history
            .iter()
            .filter(|h| h.get("empty_layer").and_then(Value::as_bool) != Some(true))
            .count();
        for _ in described..base.layers.len() {
            history.push(json!({"created_by": "(base image layer)"}));
        }
        let mut entry = Map::new();
        entry.insert("created".into(), json!(created));
        entry.insert(
            "created_by".into(),
            json!(format!("xiji save-image by {}", meta.saved_by)),
        );
        entry.insert("author".into(), json!(meta.saved_by));
        if let Some(comment) = meta.comment.as_ref().filter(|c| !c.is_empty()) {
            entry.insert("comment".into(), json!(comment));
        }
        history.push(Value::Object(entry));
    }

    let container_config = object.entry("config").or_insert_with(|| json!({}));
    if !container_config.is_object() {
        *container_config = json!({});
    }
    if let Some(container_config) = container_config.as_object_mut() {
        let labels = container_config
            .entry("Labels")
            .or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(LABEL_SAVED_BY.into(), json!(meta.saved_by));
            labels.insert(LABEL_BASE_IMAGE.into(), json!(base.reference));
            labels.insert(LABEL_BASE_DIGEST.into(), json!(base.manifest_digest));
            if let Some(comment) = meta.comment.as_ref().filter(|c| !c.is_empty()) {
                labels.insert(
                    "org.opencontainers.image.description".into(),
                    json!(comment),
                );
            }
            for (key, value) in &meta.labels {
                labels.insert(key.clone(), json!(value));
            }
        }
    }
    Ok(config)
}

/// The new manifest: the base's layers plus the new one, pointing at the new config. A Docker
/// schema 2 base stays Docker schema 2, unless the layer is zstd (which that format cannot
/// name): then the manifest becomes OCI, with the same blobs.
pub fn extend_manifest(
    base: &BaseImage,
    config_digest: &str,
    config_size: u64,
    layer: &LayerRecord,
    compression: &Compression,
) -> Result<(Value, String)> {
    let mut manifest = base.manifest.clone();
    let docker = base.manifest_media_type == DOCKER_MANIFEST && !compression.is_zstd();
    let object = manifest
        .as_object_mut()
        .ok_or_else(|| Error::UnsupportedBaseImage {
            reference: base.reference.clone(),
            reason: "the manifest is not a JSON object".into(),
        })?;
    let (manifest_type, config_type, layer_type) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP)
    } else {
        (OCI_MANIFEST, OCI_CONFIG, compression.oci_media_type())
    };
    object.insert("schemaVersion".into(), json!(2));
    object.insert("mediaType".into(), json!(manifest_type));
    object.remove("subject");
    object.insert(
        "config".into(),
        json!({"mediaType": config_type, "digest": config_digest, "size": config_size}),
    );
    let mut layers: Vec<Value> = Vec::with_capacity(base.layers.len() + 1);
    for base_layer in base
        .manifest
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut base_layer = base_layer.clone();
        if !docker {
            if let Some(media_type) = base_layer.get("mediaType").and_then(Value::as_str) {
                let converted = oci_layer_type(media_type);
                base_layer["mediaType"] = json!(converted);
            }
        }
        layers.push(base_layer);
    }
    layers.push(json!({"mediaType": layer_type, "digest": layer.digest, "size": layer.size}));
    object.insert("layers".into(), Value::Array(layers));
    if !docker {
        let annotations = object.entry("annotations").or_insert_with(|| json!({}));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(
                "org.opencontainers.image.base.name".into(),
                json!(base.reference),
            );
            annotations.insert(
                "org.opencontainers.image.base.digest".into(),
                json!(base.manifest_digest),
            );
        }
    }
    Ok((manifest, manifest_type.to_string()))
}

/// The OCI name of a Docker layer media type (OCI types pass through).
fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        DOCKER_LAYER_GZIP => "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        other => other,
    }
}

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
