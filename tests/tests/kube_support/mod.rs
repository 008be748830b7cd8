//! The Kubernetes cluster stand-in for hub-level tests: the spawner tests' helper, included by
//! path so both crates share one copy (`mod kube_support;` then `kube_support::KubeCluster`),
//! and a hub on the `kubernetes` backend talking to it.
#![allow(dead_code)]

#[path = "../../../spawner/tests/support/kube_cluster.rs"]
mod kube_cluster;

pub use kube_cluster::*;

use anyhow::Result;
use tests::{Hub, HubOptions, Singleuser};

/// The namespace the hubs of these tests make their clusters in.
pub const NAMESPACE: &str = "xiji";

/// The stand-in with `nodes` (see [`KubeCluster::start`]), with the test venv's
/// `jupyterhub-singleuser` as the pods' program.
pub fn kube_cluster(nodes: &str) -> Result<KubeCluster> {
    let venv = Singleuser::Jupyterhub5.venv()?;
    Ok(KubeCluster::start(
        nodes,
        KubeClusterOptions {
            bin_dirs: vec![venv.join("bin")],
            namespaces: vec![NAMESPACE.into()],
            ..KubeClusterOptions::default()
        },
    ))
}

/// A hub on the kubernetes backend talking to `cluster`, made in `root`, which is mapped to the
/// same folder on every Kubernetes node (the stand-in's pods run on this machine): the storage
/// pool holding the work directories is in it. `extra_toml` is appended to
/// `[spawner.kubernetes]` (keys of that table, then any further tables).
pub async fn kube_hub(
    cluster: &KubeCluster,
    root: &std::path::Path,
    ready_timeout: u32,
    extra_toml: &str,
) -> Result<Hub> {
    let root_text = root.display();
    let options = HubOptions {
        // The stand-in's kubelet runs pods as the test's user (root in CI): hence
        // `--allow-root`, which real pods (jovyan) do not need.
        spawner_toml: format!(
            "backend = \"kubernetes\"\nstart_timeout = {}\n",
            ready_timeout + 60
        ),
        tables_toml: format!(
            "\n[spawner.kubernetes]\napi_url = \"{url}\"\nnamespace = \"{NAMESPACE}\"\n\
             ready_timeout = {ready_timeout}\ndefault_cpus = 1\ndefault_memory_mb = 1024\n\
             cmd = [\"jupyterhub-singleuser\", \"--ip=0.0.0.0\", \"--port=8888\", \"--allow-root\"]\n\
             {extra_toml}\n\
             [[spawner.kubernetes.volumes]]\nhost_path = \"{root_text}\"\nnode_path = \"{root_text}\"\n",
            url = cluster.url
        ),
        // The start answers at once (202), so that the test hears the whole progress stream.
        top_level_toml: "slow_spawn_timeout = 0\n".into(),
        parent_dir: Some(root.to_path_buf()),
        ..HubOptions::default()
    };
    Hub::start_with(options).await
}
