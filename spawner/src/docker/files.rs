//! The files injected into every node before it starts: the cluster's SSH keys, the MPI
//! hostfile, the operator's CA bundle and the spawn's secret files, as a tar archive for
//! Docker's `PUT /containers/{id}/archive`.
//!
//! | path | owner, mode | content |
//! | --- | --- | --- |
//! | `/etc/xiji/hostfile` | root, 0644 | `node-k slots=C` per node |
//! | `/etc/xiji/ca-certificates.crt` | root, 0644 | the operator's CA bundle (`ca_bundle`), when set |
//! | `/etc/xiji/secrets/` | jovyan, 0500 | the spawn's [`SecretFile`]s, each jovyan 0400 |
//! | `/etc/xiji/ssh/id_ed25519` (+`.pub`) | jovyan, 0600 | the cluster's user key |
//! | `/etc/xiji/ssh/authorized_keys` | jovyan, 0600 | its public half |
//! | `/etc/xiji/ssh/ssh_host_ed25519_key` (+`.pub`) | jovyan, 0600 | the cluster's host key |
//! | the folders above the spawn's read-only mounts (`/home/jovyan/datasets/`, …) | jovyan, 0755 | none |
//!
//! The keys are generated per cluster, never stored by the hub and never logged. None of these
//! paths may go into a saved image (the hub's `images.excludes` lists them).

use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::{SecretFile, SpawnerError, SECRETS_DIR};

/// Where the operator's CA bundle is inside every node (pip, requests, curl, git, conda, Node
/// and apt are pointed at it).
pub const CA_BUNDLE_PATH: &str = "/etc/xiji/ca-certificates.crt";

/// jovyan's uid and gid in the images.
pub const JOVYAN_UID: u64 = 1000;

/// A cluster's SSH keys in OpenSSH format.
pub struct ClusterKeys {
    pub(crate) user_private: String,
    pub(crate) user_public: String,
    pub(crate) host_private: String,
    pub(crate) host_public: String,
}

/// Debug never shows the private keys.
impl std::fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterKeys")
            .field("user_public", &self.user_public)
            .field("host_public", &self.host_public)
            .finish_non_exhaustive()
    }
}

impl ClusterKeys {
    /// Two fresh ed25519 key pairs (user and host), with `comment` (e.g. the cluster name).
    pub fn generate(comment: &str) -> Result<Self, SpawnerError> {
        let (user_private, user_public) = ed25519_pair(&format!("jovyan@{comment}"))?;
        let (host_private, host_public) = ed25519_pair(&format!("host@{comment}"))?;
        Ok(Self {
            user_private,
            user_public,
            host_private,
            host_public,
        })
    }
}

fn ed25519_pair(comment: &str) -> Result<(String, String), SpawnerError> {
    let fail = |e: ssh_key::Error| SpawnerError::Config(format!("cannot generate an SSH key: {e}"));
    let mut key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).map_err(fail)?;
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF).map_err(fail)?.to_string();
    let public = key.public_key().to_openssh().map_err(fail)?;
    Ok((private, format!("{public}\n")))
}

/// What a node gets besides the SSH keys and the hostfile.
#[derive(Default)]
pub struct NodeExtras<'a> {
    /// The CA bundle's content, for [`CA_BUNDLE_PATH`].
    pub ca_bundle: Option<&'a [u8]>,
    /// Files for [`SECRETS_DIR`].
    pub secrets: &'a [SecretFile],
    /// Folders to make (or hand over) for jovyan, relative to `/`, ending with `/`, parents
    /// first: those above the spawn's read-only mount points.
    pub jovyan_folders: &'a [String],
}

/// The tar archive of the node files (paths relative to `/`).
pub fn node_files_archive(
    keys: &ClusterKeys,
    hostfile: &str,
    extras: &NodeExtras<'_>,
) -> Result<Vec<u8>, SpawnerError> {
    let mut builder = tar::Builder::new(Vec::new());
    let io = |e| SpawnerError::io("building the node files archive", e);
    append_dir(&mut builder, "etc/xiji/", 0, 0o755).map_err(io)?;
    append_dir(&mut builder, "etc/xiji/ssh/", JOVYAN_UID, 0o700).map_err(io)?;
    let relative = |path: &str| path.trim_start_matches('/').to_owned();
    if let Some(bundle) = extras.ca_bundle {
        append_file(&mut builder, &relative(CA_BUNDLE_PATH), 0, 0o644, bundle).map_err(io)?;
    }
    if !extras.secrets.is_empty() {
        let dir = relative(SECRETS_DIR);
        append_dir(&mut builder, &format!("{dir}/"), JOVYAN_UID, 0o500).map_err(io)?;
        for secret in extras.secrets {
            let path = format!("{dir}/{}", secret.name);
            append_file(&mut builder, &path, JOVYAN_UID, 0o400, &secret.content).map_err(io)?;
        }
    }
    for folder in extras.jovyan_folders {
        append_dir(&mut builder, folder, JOVYAN_UID, 0o755).map_err(io)?;
    }
    let files: [(&str, u64, u32, &str); 6] = [
        ("etc/xiji/hostfile", 0, 0o644, hostfile),
        (
            "etc/xiji/ssh/id_ed25519",
            JOVYAN_UID,
            0o600,
            &keys.user_private,
        ),
        (
            "etc/xiji/ssh/id_ed25519.pub",
            JOVYAN_UID,
            0o644,
            &keys.user_public,
        ),
        (
            "etc/xiji/ssh/authorized_keys",
            JOVYAN_UID,
            0o600,
            &keys.user_public,
        ),
        (
            "etc/xiji/ssh/ssh_host_ed25519_key",
            JOVYAN_UID,
            0o600,
            &keys.host_private,
        ),
        (
            "etc/xiji/ssh/ssh_host_ed25519_key.pub",
            JOVYAN_UID,
            0o644,
            &keys.host_public,
        ),
    ];
    for (path, owner, mode, content) in files {
        append_file(&mut builder, path, owner, mode, content.as_bytes()).map_err(io)?;
    }
    builder.into_inner().map_err(io)
}

fn append_file(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    owner: u64,
    mode: u32,
    content: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(content.len() as u64);
    header.set_mode(mode);
    header.set_uid(owner);
    header.set_gid(owner);
    header.set_mtime(0);
    builder.append_data(&mut header, path, content)
}

fn append_dir(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    owner: u64,
    mode: u32,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(mode);
    header.set_uid(owner);
    header.set_gid(owner);
    header.set_mtime(0);
    builder.append_data(&mut header, path, std::io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_the_keys_with_jovyans_ownership() {
        let keys = ClusterKeys::generate("xiji-alice-00").unwrap();
        assert!(keys.user_public.starts_with("ssh-ed25519 "));
        assert!(!format!("{keys:?}").contains("PRIVATE"));
        let secrets = [SecretFile::new("vnc-password", "pw-1234").unwrap()];
        let folders = ["home/jovyan/datasets/".to_owned()];
        let extras = NodeExtras {
            ca_bundle: Some(b"-----BEGIN CERTIFICATE-----\n"),
            secrets: &secrets,
            jovyan_folders: &folders,
        };
        let bytes = node_files_archive(&keys, "node-0 slots=1\n", &extras).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let header = entry.header().clone();
            let mut content = String::new();
            std::io::Read::read_to_string(&mut entry, &mut content).unwrap();
            if path == "etc/xiji/ssh/id_ed25519" {
                assert!(content.contains("BEGIN OPENSSH PRIVATE KEY"));
                assert_eq!(header.mode().unwrap(), 0o600);
                assert_eq!(header.uid().unwrap(), 1000);
            }
            if path == "etc/xiji/hostfile" {
                assert_eq!(content, "node-0 slots=1\n");
            }
            if path == "etc/xiji/ca-certificates.crt" {
                assert!(content.starts_with("-----BEGIN CERTIFICATE"));
                assert_eq!(header.mode().unwrap(), 0o644);
                assert_eq!(header.uid().unwrap(), 0);
            }
            if path == "etc/xiji/secrets/vnc-password" {
                assert_eq!(content, "pw-1234");
                assert_eq!(header.mode().unwrap(), 0o400);
                assert_eq!(header.uid().unwrap(), 1000);
            }
            if path == "home/jovyan/datasets/" {
                assert_eq!(header.entry_type(), tar::EntryType::Directory);
                assert_eq!(header.mode().unwrap(), 0o755);
                assert_eq!(header.uid().unwrap(), 1000);
                assert_eq!(header.gid().unwrap(), 1000);
            }
            if path == "etc/xiji/secrets/" {
                assert_eq!(header.mode().unwrap(), 0o500);
                assert_eq!(header.uid().unwrap(), 1000);
            }
            seen.push(path);
        }
        assert!(seen.contains(&"etc/xiji/ssh/authorized_keys".to_owned()));
        assert!(seen.contains(&"etc/xiji/ssh/ssh_host_ed25519_key".to_owned()));
        for path in [
            "etc/xiji/ca-certificates.crt",
            "etc/xiji/secrets/",
            "etc/xiji/secrets/vnc-password",
            "home/jovyan/datasets/",
        ] {
            assert!(seen.contains(&path.to_owned()), "{path} in {seen:?}");
        }
        let plain = node_files_archive(&keys, "", &NodeExtras::default()).unwrap();
        let mut archive = tar::Archive::new(plain.as_slice());
        for entry in archive.entries().unwrap() {
            let path = entry.unwrap().path().unwrap().display().to_string();
            assert!(
                !path.contains("secrets") && !path.contains("ca-cert") && !path.contains("home"),
                "{path}"
            );
        }
    }

    #[test]
    fn secret_file_names_are_plain_names() {
        assert!(SecretFile::new("vnc-password", "x").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(SecretFile::new(bad, "x").is_err(), "{bad:?}");
        }
        assert!(!format!("{:?}", SecretFile::new("n", "hunter2").unwrap()).contains("hunter2"));
    }
}
