//! Talking to the registry with `oci-client`: the base image, blob presence and
//! cross-repository mounts, the chunked upload of the new layer, the config and the manifest.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use futures_util::{stream, Stream, StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::compress::LayerChunk;
use crate::error::{Error, Result};
use crate::image::{
    manifest_media_type, select_linux_amd64, BaseImage, Descriptor, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
use crate::progress::Signals;

/// Bytes per upload request of the new layer (`oci-client` sends one PATCH per 4 MiB).
pub(crate) const CHUNK_SIZE: usize = 4 * 1024 * 1024;

/// How to authenticate to one registry. `Debug` never shows secrets.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RegistryAuth {
    /// No credentials (token flows still work for anonymous pulls).
    #[default]
    Anonymous,
    /// HTTP Basic, or the token service's Basic exchange.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token sent as it is.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => {
                write!(f, "Basic({username}, <redacted>)")
            }
            RegistryAuth::Bearer { .. } => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl RegistryAuth {
    fn to_client(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth as A;
        match self {
            RegistryAuth::Anonymous => A::Anonymous,
            RegistryAuth::Basic { username, password } => {
                A::Basic(username.clone(), password.clone())
            }
            RegistryAuth::Bearer { token } => A::Bearer(token.clone()),
        }
    }
}

/// Registry settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// Credentials per registry host (`host[:port]` as in image references).
    pub credentials: BTreeMap<String, RegistryAuth>,
    /// Registry hosts spoken to over plain HTTP.
    pub plain_http: Vec<String>,
    /// Also use plain HTTP for registries on loopback addresses (`127.0.0.1:5000`,
    /// `localhost:5000`, `[::1]:5000`), as Docker does. Default true.
    pub plain_http_loopback: bool,
    /// Concurrent base-layer checks and mounts.
    pub concurrency: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            credentials: BTreeMap::new(),
            plain_http: Vec::new(),
            plain_http_loopback: true,
            concurrency: 4,
        }
    }
}

/// What happened to one base layer in the target repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobTransfer {
    /// The target repository had it already.
    Present,
    /// Cross-repository mounted from the base repository (no bytes sent).
    Mounted,
    /// Downloaded from the base and uploaded (the base is on another registry, or the registry
    /// refused the mount).
    Copied,
    /// A foreign (non-distributable) layer the registry does not hold.
    Foreign,
}

/// Parses an image reference (`host:port/path/name:tag`).
pub fn parse_reference(reference: &str) -> Result<Reference> {
    reference
        .parse::<Reference>()
        .map_err(|e| Error::InvalidReference {
            reference: reference.to_string(),
            reason: e.to_string(),
        })
}

fn is_loopback(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map(|(name, _)| name)
        .unwrap_or(host);
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

/// A registry session for one save (one `oci-client` client; tokens are cached in it).
pub struct RegistrySession {
    client: Client,
    config: RegistryConfig,
}

impl RegistrySession {
    /// A client for the registries that `references` name.
    pub fn new(config: &RegistryConfig, references: &[&Reference]) -> Result<Self> {
        // `oci-client` is built without a bundled crypto provider; ring is the workspace's. A
        // second install (another session, or the hub) is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut plain: Vec<String> = config.plain_http.clone();
        for reference in references {
            let host = reference.resolve_registry().to_string();
            if config.plain_http_loopback && is_loopback(&host) && !plain.contains(&host) {
                plain.push(host);
            }
        }
        // `try_from`, not `new`: `new` falls back to a default client (HTTPS only) on error.
        let client = Client::try_from(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
            max_concurrent_upload: config.concurrency.max(1),
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            // Per read, not per request: a registry that stops answering fails the job
            // instead of holding it (and its queue slot) forever.
            read_timeout: Some(std::time::Duration::from_secs(120)),
            ..Default::default()
        })
        .map_err(|e| Error::registry("setting up the registry client", e))?;
        Ok(Self {
            client,
            config: config.clone(),
        })
    }

    fn auth(&self, reference: &Reference) -> oci_client::secrets::RegistryAuth {
        self.config
            .credentials
            .get(reference.registry())
            .or_else(|| self.config.credentials.get(reference.resolve_registry()))
            .map(RegistryAuth::to_client)
            .unwrap_or(oci_client::secrets::RegistryAuth::Anonymous)
    }

    /// Fetches the base image's manifest (choosing linux/amd64 from an index) and config.
    pub async fn fetch_base(&self, reference: &Reference) -> Result<BaseImage> {
        let shown = reference.whole();
        let auth = self.auth(reference);
        let accepted = [
            OCI_MANIFEST,
            DOCKER_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST_LIST,
        ];
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(reference, &auth, &accepted)
            .await
            .map_err(|e| Error::registry(format!("fetching the manifest of {shown}"), e))?;
        let mut manifest = parse_json(&bytes, &shown)?;
        let mut digest = digest;
        let media_type = manifest_media_type(&manifest)
            .unwrap_or_default()
            .to_string();
        if media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST {
            let chosen =
                select_linux_amd64(&manifest).ok_or_else(|| Error::UnsupportedBaseImage {
                    reference: shown.clone(),
                    reason: "the index has no linux/amd64 image".into(),
                })?;
            let by_digest = Reference::with_digest(
                reference.registry().to_string(),
                reference.repository().to_string(),
                chosen.clone(),
            );
            let (bytes, _) = self
                .client
                .pull_manifest_raw(&by_digest, &auth, &accepted)
                .await
                .map_err(|e| {
                    Error::registry(format!("fetching the linux/amd64 manifest of {shown}"), e)
                })?;
            manifest = parse_json(&bytes, &shown)?;
            digest = chosen;
        }
        let config_descriptor: Descriptor = manifest
            .get("config")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::UnsupportedBaseImage {
                reference: shown.clone(),
                reason: format!("bad config descriptor: {e}"),
            })?
            .ok_or_else(|| Error::UnsupportedBaseImage {
                reference: shown.clone(),
                reason: format!(
                    "no config (a {} manifest?)",
                    if media_type.is_empty() {
                        "schema 1"
                    } else {
                        &media_type
                    }
                ),
            })?;
        let mut config_bytes = Vec::new();
        self.client
            .pull_blob(
                reference,
                &OciDescriptor {
                    media_type: config_descriptor.media_type.clone(),
                    digest: config_descriptor.digest.clone(),
                    size: i64::try_from(config_descriptor.size).unwrap_or(i64::MAX),
                    ..Default::default()
                },
                &mut config_bytes,
            )
            .await
            .map_err(|e| Error::registry(format!("fetching the config of {shown}"), e))?;
        let config = parse_json(&config_bytes, &shown)?;
        BaseImage::from_parts(&shown, &digest, manifest, config)
    }

    /// Fails fast when the target registry is down or refuses the credentials (a `HEAD` of a
    /// blob in the target repository), before minutes of compression.
    pub async fn check_target(&self, target: &Reference, some_digest: &str) -> Result<()> {
        self.remember_auth(target).await;
        self.client
            .blob_exists(target, some_digest)
            .await
            .map_err(|e| Error::registry(format!("checking access to {}", target.whole()), e))?;
        Ok(())
    }

    /// Makes every base layer available in `target`'s repository without uploading what the
    /// registry has: present → nothing; same registry → cross-repository mount; otherwise (or
    /// when the registry declines the mount) copy.
    pub async fn ensure_base_layers(
        &self,
        base: &Reference,
        layers: &[Descriptor],
        target: &Reference,
    ) -> Result<Vec<BlobTransfer>> {
        let concurrency = self.config.concurrency.max(1);
        // Collected first: a lazy `map` here makes the future not provably `Send`.
        let checks: Vec<_> = layers
            .iter()
            .map(|layer| Box::pin(self.ensure_blob(base, layer, target)))
            .collect();
        stream::iter(checks)
            .buffered(concurrency)
            .try_collect()
            .await
    }

    async fn ensure_blob(
        &self,
        base: &Reference,
        layer: &Descriptor,
        target: &Reference,
    ) -> Result<BlobTransfer> {
        if !layer.urls.is_empty() {
            return Ok(BlobTransfer::Foreign);
        }
        let digest = layer.digest.as_str();
        self.remember_auth(target).await;
        if self.exists(target, digest).await? {
            tracing::debug!(%digest, "base layer already in the target repository");
            return Ok(BlobTransfer::Present);
        }
        if base.resolve_registry() == target.resolve_registry() {
            match self.client.mount_blob(target, base, digest).await {
                Ok(()) => {
                    tracing::debug!(%digest, from = base.repository(), "base layer mounted");
                    return Ok(BlobTransfer::Mounted);
                }
                Err(e) => {
                    // The registry may answer 202 (an upload session) when it cannot mount.
                    if self.exists(target, digest).await? {
                        return Ok(BlobTransfer::Mounted);
                    }
                    tracing::info!(%digest, error = %e, "cross-repository mount declined; copying the layer");
                }
            }
        }
        self.copy_blob(base, layer, target).await?;
        Ok(BlobTransfer::Copied)
    }

    /// Gives the client the credentials for `reference`'s registry; it authenticates (and
    /// caches tokens per repository and operation) on the first request that needs it.
    async fn remember_auth(&self, reference: &Reference) {
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &self.auth(reference))
            .await;
    }

    async fn exists(&self, reference: &Reference, digest: &str) -> Result<bool> {
        self.client
            .blob_exists(reference, digest)
            .await
            .map_err(|e| Error::registry(format!("checking blob {digest}"), e))
    }

    async fn copy_blob(&self, from: &Reference, layer: &Descriptor, to: &Reference) -> Result<()> {
        let descriptor = OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: i64::try_from(layer.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        self.remember_auth(from).await;
        let source = self
            .client
            .pull_blob_stream(from, &descriptor)
            .await
            .map_err(|e| Error::registry(format!("downloading base layer {}", layer.digest), e))?;
        let body = rechunk(source.map_err(OciDistributionError::from));
        self.client
            .push_blob_stream(to, body, &layer.digest, Some(layer.size))
            .await
            .map_err(|e| Error::registry(format!("uploading base layer {}", layer.digest), e))?;
        Ok(())
    }

    /// Uploads the layer file in chunks, counting `bytes_pushed`; stops between chunks when
    /// the job is cancelled.
    pub async fn push_layer_file(
        &self,
        target: &Reference,
        path: &Path,
        digest: &str,
        size: u64,
        signals: &Signals,
    ) -> Result<()> {
        self.remember_auth(target).await;
        if self.exists(target, digest).await? {
            // The same layer was pushed before (a second save of an unchanged container).
            signals.add_pushed(size);
            return Ok(());
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let signals_for_stream = signals.clone();
        let body = stream::unfold(Some(file), move |file| {
            let signals = signals_for_stream.clone();
            async move {
                let mut file = file?;
                if signals.is_cancelled() {
                    let err = OciDistributionError::GenericError(Some("cancelled".into()));
                    return Some((Err(err), None));
                }
                let mut chunk = BytesMut::with_capacity(CHUNK_SIZE);
                while chunk.len() < CHUNK_SIZE {
                    match file.read_buf(&mut chunk).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => return Some((Err(e.into()), None)),
                    }
                }
                if chunk.is_empty() {
                    return None;
                }
                signals.add_pushed(chunk.len() as u64);
                Some((Ok(chunk.freeze()), Some(file)))
            }
        });
        self.client
            .push_blob_stream(target, body, digest, Some(size))
            .await
            .map_err(|e| {
                if signals.is_cancelled() {
                    Error::Cancelled
                } else {
                    Error::registry("uploading the new layer", e)
                }
            })?;
        Ok(())
    }

    /// Uploads the new layer while it is being written: the chunks come from
    /// [`crate::write_layer_file_streaming`]. Returns the digest and size of what was sent.
    /// A channel that closes without [`LayerChunk::End`] (the writer failed) or a cancelled
    /// job aborts the upload before it is committed, so no partial blob is left behind.
    pub async fn push_layer_stream(
        &self,
        target: &Reference,
        chunks: tokio::sync::mpsc::Receiver<LayerChunk>,
        signals: &Signals,
    ) -> Result<(String, u64)> {
        self.remember_auth(target).await;
        let signals_for_stream = signals.clone();
        let body = stream::unfold(Some(chunks), move |chunks| {
            let signals = signals_for_stream.clone();
            async move {
                let mut chunks = chunks?;
                let abort = |why: &str| {
                    let err = OciDistributionError::GenericError(Some(why.to_string()));
                    Some((Err(err), None))
                };
                if signals.is_cancelled() {
                    return abort("cancelled");
                }
                match chunks.recv().await {
                    Some(LayerChunk::Data(bytes)) => {
                        signals.add_pushed(bytes.len() as u64);
                        Some((Ok(bytes), Some(chunks)))
                    }
                    Some(LayerChunk::End) => None,
                    None => abort("the layer writer stopped"),
                }
            }
        });
        let pushed = self
            .client
            .push_blob_stream_chunked(target, body)
            .await
            .map_err(|e| {
                if signals.is_cancelled() {
                    Error::Cancelled
                } else {
                    Error::registry("uploading the new layer", e)
                }
            })?;
        Ok((pushed.blob_digest, pushed.size))
    }

    /// Uploads a small blob (the config).
    pub async fn push_blob(&self, target: &Reference, data: Vec<u8>, digest: &str) -> Result<()> {
        self.remember_auth(target).await;
        if self.exists(target, digest).await? {
            return Ok(());
        }
        self.client
            .push_blob(target, data, digest)
            .await
            .map_err(|e| Error::registry("uploading the image config", e))?;
        Ok(())
    }

    /// Puts the manifest under `target`'s tag.
    pub async fn push_manifest(
        &self,
        target: &Reference,
        manifest: Vec<u8>,
        media_type: &str,
    ) -> Result<()> {
        self.remember_auth(target).await;
        let content_type = media_type
            .parse()
            .map_err(|e| Error::registry("pushing the manifest", e))?;
        self.client
            .push_manifest_raw(target, manifest, content_type)
            .await
            .map_err(|e| {
                Error::registry(format!("pushing the manifest of {}", target.whole()), e)
            })?;
        Ok(())
    }
}

fn parse_json(bytes: &[u8], reference: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::UnsupportedBaseImage {
        reference: reference.to_string(),
        reason: format!("not JSON: {e}"),
    })
}

/// Regroups a byte stream into `CHUNK_SIZE` pieces (one upload request each).
fn rechunk<S>(source: S) -> impl Stream<Item = oci_client::errors::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = oci_client::errors::Result<Bytes>> + Send + Unpin + 'static,
{
    stream::unfold((source, false), |(mut source, done)| async move {
        if done {
            return None;
        }
        let mut chunk = BytesMut::with_capacity(CHUNK_SIZE);
        loop {
            match source.next().await {
                Some(Ok(bytes)) => {
                    chunk.extend_from_slice(&bytes);
                    if chunk.len() >= CHUNK_SIZE {
                        return Some((Ok(chunk.freeze()), (source, false)));
                    }
                }
                Some(Err(e)) => return Some((Err(e), (source, true))),
                None if chunk.is_empty() => return None,
                None => return Some((Ok(chunk.freeze()), (source, true))),
            }
        }
    })
}
