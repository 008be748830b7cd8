//! The hub's folders (work directories, datasets) as volumes of a node pod.
//!
//! The hub knows a folder by its path on its own host (a storage pool's mount point and the
//! rest); a pod sees the same files through a volume ([`VolumeMapping`]): the mapping whose
//! `host_path` is the longest prefix of the folder wins, and the rest of the path becomes the
//! mount's `subPath`. Each mapping used becomes one volume of the pod (`pool-{i}`, `i` its place
//! in [`KubernetesConfig::volumes`](super::KubernetesConfig)), mounted as often as needed; the
//! volume itself is writable and each mount says whether it is read-only.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NFSVolumeSource, PersistentVolumeClaimVolumeSource, Volume, VolumeMount,
};

use super::{VolumeMapping, VolumeSource};
use crate::SpawnerError;

/// The volumes one pod needs for the folders it mounts.
pub(super) struct PoolVolumes<'a> {
    mappings: &'a [VolumeMapping],
    used: BTreeSet<usize>,
}

impl<'a> PoolVolumes<'a> {
    /// No folder mounted yet.
    pub(super) fn new(mappings: &'a [VolumeMapping]) -> Self {
        Self {
            mappings,
            used: BTreeSet::new(),
        }
    }

    /// The mount of the hub's folder `host` at `mount_path`. `what` names the folder for a
    /// person (`the work directory`, `the dataset mounted at "datasets/alice/mnist"`).
    /// [`SpawnerError::Rejected`] when no mapping holds it, naming the folder and the setting.
    pub(super) fn mount(
        &mut self,
        host: &Path,
        mount_path: &str,
        read_only: bool,
        what: &str,
    ) -> Result<VolumeMount, SpawnerError> {
        let (index, sub_path) = locate(self.mappings, host, what)?;
        self.used.insert(index);
        Ok(VolumeMount {
            name: volume_name(index),
            mount_path: mount_path.to_owned(),
            read_only: read_only.then_some(true),
            sub_path,
            ..Default::default()
        })
    }

    /// One volume per mapping used, in the order of the configuration.
    pub(super) fn volumes(&self) -> Vec<Volume> {
        self.used
            .iter()
            .map(|&index| volume(index, &self.mappings[index].source))
            .collect()
    }
}

/// `pool-{index}`.
fn volume_name(index: usize) -> String {
    format!("pool-{index}")
}

fn volume(index: usize, source: &VolumeSource) -> Volume {
    let mut volume = Volume {
        name: volume_name(index),
        ..Default::default()
    };
    match source {
        VolumeSource::Claim { claim_name } => {
            volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name.clone(),
                read_only: None,
            });
        }
        VolumeSource::Nfs { server, path } => {
            volume.nfs = Some(NFSVolumeSource {
                server: server.clone(),
                path: path.clone(),
                read_only: None,
            });
        }
        VolumeSource::HostPath { path } => {
            volume.host_path = Some(HostPathVolumeSource {
                path: path.clone(),
                // The pool's folder must already be there on every node: never an empty
                // directory made by the kubelet in its place.
                type_: Some("Directory".into()),
            });
        }
    }
    volume
}

/// The mapping that holds `host` (longest `host_path`, compared component by component) and the
/// rest of the path as a `subPath` (`None` for the mapping's root).
fn locate(
    mappings: &[VolumeMapping],
    host: &Path,
    what: &str,
) -> Result<(usize, Option<String>), SpawnerError> {
    let not_covered = || {
        SpawnerError::Rejected(format!(
            "{what} ({}) is not on storage the cluster can mount: the operator must add a \
             [[spawner.kubernetes.volumes]] entry whose host_path holds it",
            host.display()
        ))
    };
    if !host.is_absolute() {
        return Err(SpawnerError::InvalidSpec(format!(
            "{what} ({}) is not an absolute path",
            host.display()
        )));
    }
    let (index, mapping) = mappings
        .iter()
        .enumerate()
        .filter(|(_, m)| host.starts_with(&m.host_path))
        .max_by_key(|(_, m)| m.host_path.components().count())
        .ok_or_else(not_covered)?;
    let rest = host
        .strip_prefix(&mapping.host_path)
        .map_err(|_| not_covered())?;
    let mut parts = Vec::new();
    for component in rest.components() {
        match component {
            Component::Normal(part) => match part.to_str() {
                Some(part) => parts.push(part),
                None => {
                    return Err(SpawnerError::InvalidSpec(format!(
                        "{what} ({}) has a name that is not UTF-8",
                        host.display()
                    )))
                }
            },
            Component::CurDir => {}
            _ => {
                return Err(SpawnerError::InvalidSpec(format!(
                    "{what} ({}) climbs out of its storage with '..'",
                    host.display()
                )))
            }
        }
    }
    let sub_path = (!parts.is_empty()).then(|| parts.join("/"));
    Ok((index, sub_path))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn mapping(host: &str, source: VolumeSource) -> VolumeMapping {
        VolumeMapping {
            host_path: PathBuf::from(host),
            source,
        }
    }

    fn mappings() -> Vec<VolumeMapping> {
        vec![
            mapping(
                "/srv/pools",
                VolumeSource::HostPath {
                    path: "/mnt/pools".into(),
                },
            ),
            mapping(
                "/srv/pools/gluster1",
                VolumeSource::Claim {
                    claim_name: "gluster1".into(),
                },
            ),
            mapping(
                "/srv/nfs",
                VolumeSource::Nfs {
                    server: "nfs.campus".into(),
                    path: "/export/xiji".into(),
                },
            ),
        ]
    }

    #[test]
    fn the_longest_host_path_wins_and_the_rest_is_the_sub_path() {
        let mappings = mappings();
        let mut pool = PoolVolumes::new(&mappings);
        let work = pool
            .mount(
                Path::new("/srv/pools/gluster1/homes/alice"),
                "/home/jovyan/work",
                false,
                "the work directory",
            )
            .unwrap();
        assert_eq!(work.name, "pool-1");
        assert_eq!(work.sub_path.as_deref(), Some("homes/alice"));
        assert_eq!(work.read_only, None);
        // A sibling whose name only starts like the mapping's is not inside it.
        let other = pool
            .mount(
                Path::new("/srv/pools/gluster10/d"),
                "/home/jovyan/datasets/a/b",
                true,
                "a dataset",
            )
            .unwrap();
        assert_eq!(other.name, "pool-0");
        assert_eq!(other.sub_path.as_deref(), Some("gluster10/d"));
        assert_eq!(other.read_only, Some(true));
        let same = pool
            .mount(
                Path::new("/srv/pools/gluster1/datasets/7/files"),
                "/home/jovyan/datasets/a/c",
                true,
                "a dataset",
            )
            .unwrap();
        assert_eq!(same.name, "pool-1");
        let root = pool
            .mount(Path::new("/srv/nfs"), "/home/jovyan/x", true, "a dataset")
            .unwrap();
        assert_eq!(root.sub_path, None);
        let volumes = pool.volumes();
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["pool-0", "pool-1", "pool-2"]);
        assert_eq!(
            volumes[1]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("gluster1")
        );
        assert_eq!(
            volumes[0].host_path.as_ref().map(|h| h.path.as_str()),
            Some("/mnt/pools")
        );
        assert_eq!(
            volumes[2].nfs.as_ref().map(|n| n.server.as_str()),
            Some("nfs.campus")
        );
    }

    #[test]
    fn a_folder_no_mapping_holds_is_refused_with_the_setting_to_add() {
        let mappings = mappings();
        let mut pool = PoolVolumes::new(&mappings);
        match pool.mount(
            Path::new("/home/alice/work"),
            "/home/jovyan/work",
            false,
            "the work directory",
        ) {
            Err(SpawnerError::Rejected(message)) => {
                assert!(message.contains("/home/alice/work"), "{message}");
                assert!(message.contains("the work directory"), "{message}");
                assert!(
                    message.contains("[[spawner.kubernetes.volumes]]"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(pool.volumes().is_empty());
        assert!(matches!(
            pool.mount(Path::new("/srv/nfs/../etc"), "/x", true, "a dataset"),
            Err(SpawnerError::InvalidSpec(_))
        ));
    }
}
