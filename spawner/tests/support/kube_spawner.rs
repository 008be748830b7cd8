//! A `KubernetesSpawner` on the cluster stand-in ([`super::kube_cluster`]): the stand-in with
//! the tests' namespace, and a spawner's configuration whose pods run the test venv's
//! `jupyterhub-singleuser`, the stand-in's echo server or any command, with their work
//! directories in a temporary folder; what the tests look at in the cluster (its objects, its
//! processes) and a pod that takes room on a node.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use spawner::kubernetes::{
    ApiAccess, KubernetesConfig, KubernetesSpawner, VolumeMapping, VolumeSource,
};
use spawner::Spawner;

use super::kube_cluster::{echo_server, KubeCluster, KubeClusterOptions};

/// The namespace of the tests' clusters.
pub const NS: &str = "xiji";

/// What the nodes run.
pub enum Server<'a> {
    /// The real `jupyterhub-singleuser` of the test venv.
    Singleuser(&'a Path),
    /// The stand-in's echo server (any path answers 200): for tests of the pods' life only.
    Echo,
    /// Any command.
    Command(&'a [&'a str]),
}

/// A stand-in cluster with the [`NS`] namespace and the configuration of a spawner on it: work
/// directories in a temporary folder given to the pods as a hostPath volume.
pub struct KubeSetup {
    pub cluster: KubeCluster,
    /// The spawner's configuration, for the test to change before [`KubeSetup::spawner`].
    pub cfg: KubernetesConfig,
    /// The temporary folder (canonical), the pods' hostPath volume.
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

impl KubeSetup {
    pub fn new(nodes: &str, mut opts: KubeClusterOptions, server: Server<'_>) -> Self {
        if let Server::Singleuser(path) = server {
            opts.bin_dirs.push(path.parent().unwrap().to_path_buf());
        }
        opts.namespaces.push(NS.into());
        let cluster = KubeCluster::start(nodes, opts);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut cfg = KubernetesConfig::new(
            ApiAccess::Url(cluster.url.clone()),
            "registry.example/xiji/base-notebook:test",
            root.join("work"),
        );
        cfg.namespace = NS.into();
        cfg.volumes = vec![VolumeMapping {
            host_path: root.clone(),
            source: VolumeSource::HostPath {
                path: root.display().to_string(),
            },
        }];
        cfg.ready_timeout = Duration::from_secs(60);
        cfg.cmd = match server {
            // The stand-in runs pods as processes of the test's user, root here: a real
            // node runs as jovyan and needs no `--allow-root`.
            Server::Singleuser(path) => vec![
                path.display().to_string(),
                "--ip=0.0.0.0".into(),
                "--port=8888".into(),
                "--allow-root".into(),
            ],
            Server::Echo => vec![
                "python3".into(),
                echo_server().display().to_string(),
                "--ip=0.0.0.0".into(),
                "--port=8888".into(),
            ],
            Server::Command(words) => words.iter().map(|w| (*w).to_owned()).collect(),
        };
        Self {
            cluster,
            cfg,
            root,
            _dir: dir,
        }
    }

    pub async fn spawner(&self) -> KubernetesSpawner {
        KubernetesSpawner::connect(self.cfg.clone()).await.unwrap()
    }

    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(kube::Config::new(self.cluster.url.parse().unwrap())).unwrap()
    }

    /// Every object of the namespace whose labels match `selector`, as `kind/name`.
    pub async fn objects(&self, selector: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (kind, path) in [
            ("pod", format!("/api/v1/namespaces/{NS}/pods")),
            ("configmap", format!("/api/v1/namespaces/{NS}/configmaps")),
            ("secret", format!("/api/v1/namespaces/{NS}/secrets")),
            ("service", format!("/api/v1/namespaces/{NS}/services")),
            (
                "networkpolicy",
                format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"),
            ),
        ] {
            let list = self
                .cluster
                .get_json(&format!("{path}?labelSelector={selector}"))
                .await;
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                found.push(format!(
                    "{kind}/{}",
                    item["metadata"]["name"].as_str().unwrap()
                ));
            }
        }
        found
    }

    /// Waits (bounded) until nothing matches `selector`.
    pub async fn wait_no_objects(&self, selector: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.objects(selector).await;
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still there after {timeout:?}: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Nothing of this hub's is left in the cluster: no object labelled `xiji.org/hub=xiji`.
    pub async fn assert_nothing_of_the_hub_left(&self) {
        assert_eq!(
            self.objects("xiji.org/hub=xiji").await,
            Vec::<String>::new()
        );
    }

    /// Stops the cluster of `state` (5 s of grace) and sees that nothing of the hub's is left.
    pub async fn stop_leaving_nothing(&self, spawner: &KubernetesSpawner, state: &Value) {
        spawner.stop(state, Duration::from_secs(5)).await.unwrap();
        self.assert_nothing_of_the_hub_left().await;
    }

    /// The container processes running in the tests' namespace.
    pub async fn processes(&self) -> Vec<Value> {
        self.cluster
            .processes()
            .await
            .into_iter()
            .filter(|p| p["namespace"] == NS)
            .collect()
    }

    /// A pod that takes `cpu` of a node until the test ends: labelled as this hub's (so Xiji's
    /// admission counts it) or not.
    pub async fn occupy(&self, namespace: &str, name: &str, cpu: &str, xiji: bool) {
        let labels = if xiji {
            json!({"xiji.org/hub": "xiji"})
        } else {
            json!({"app": "someone-else"})
        };
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "c", "image": "busybox", "command": ["sleep", "600"],
                    "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}},
                }],
            },
        }))
        .unwrap();
        Api::<Pod>::namespaced(self.client(), namespace)
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        self.cluster
            .wait_pod(namespace, name, Duration::from_secs(10), |p| {
                p["status"]["phase"] == "Running"
            })
            .await;
    }
}

/// A failed test shows what the stand-in did.
impl Drop for KubeSetup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.cluster.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- the stand-in's log, last lines ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
