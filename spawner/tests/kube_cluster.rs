//! The Kubernetes cluster stand-in (`tests/kube/cluster.py`) behaves, for kube-rs, like a real
//! cluster: an API server with uids, resource versions, selectors, patches and watches, a
//! scheduler with kube-scheduler's words, a kubelet that runs pods as processes, and a garbage
//! collector. The Kubernetes backend's tests stand on this.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::ObjectMeta;
use kube::Client;
use serde_json::{json, Value};
use support::kube_cluster::{echo_server, KubeCluster, KubeClusterOptions};

const TWO_NODES: &str = "node-a:cpu=4,memory=16Gi,pods=110,gpu=0;node-b:cpu=8,memory=32Gi,gpu=2,labels=xiji.org/pool=gpu";

async fn client(cluster: &KubeCluster) -> Client {
    let config = kube::Config::new(cluster.url.parse().unwrap());
    Client::try_from(config).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// A pod running the echo server on its own IP, port 8080, with `--ip=0.0.0.0` as a real
/// singleuser server is given.
fn echo_pod(name: &str, cpu: &str, extra_args: &[&str]) -> Pod {
    let mut args = vec![
        echo_server().display().to_string(),
        "--ip=0.0.0.0".to_owned(),
        "--port=8080".to_owned(),
    ];
    args.extend(extra_args.iter().map(|a| (*a).to_owned()));
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "echo"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "notebook",
                "image": "quay.io/jupyter/base-notebook:2025-06-02",
                "command": ["python3"],
                "args": args,
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "GREETING", "value": "hello $(POD_NAME), not $(LATER)"},
                    {"name": "LATER", "value": "defined after"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "api"}}},
                ],
                "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
            }],
        },
    }))
    .unwrap()
}

async fn tokens_secret(client: &Client) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "tokens"},
        "stringData": {"api": "s3cret"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn http_get_json(url: &str) -> Value {
    let uri: http::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().to_string();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n",
        uri.path()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let body = text.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn a_pod_runs_as_a_process_on_its_own_ip_and_becomes_ready_with_its_environment() {
    let cluster = KubeCluster::start(TWO_NODES, KubeClusterOptions::default());
    let client = client(&cluster).await;
    tokens_secret(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods
        .create(&PostParams::default(), &echo_pod("echo", "500m", &[]))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().expect("a uid");
    assert_eq!(uid.len(), 36, "a UUID: {uid}");
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));

    // Watched the way a backend waits: from the created object's resource version.
    let rv = created.metadata.resource_version.unwrap();
    let wp = WatchParams::default()
        .fields("metadata.name=echo")
        .timeout(20);
    let mut stream = pods.watch(&wp, &rv).await.unwrap().boxed();
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = stream.try_next().await.unwrap() {
            if let WatchEvent::Modified(pod) = event {
                if is_ready(&pod) {
                    return pod;
                }
            }
        }
        panic!("the watch ended before the pod was Ready");
    })
    .await
    .expect("Ready within 20 s");

    let status = ready.status.clone().unwrap();
    let ip = status.pod_ip.clone().unwrap();
    assert!(ip.starts_with("127."), "a loopback pod IP: {ip}");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ips.unwrap()[0].ip, ip);
    assert!(status.host_ip.is_some() && status.start_time.is_some());
    let container = &status.container_statuses.unwrap()[0];
    assert!(container.ready);
    let id = container.container_id.clone().unwrap();
    assert!(
        id.starts_with("containerd://") && id.len() == "containerd://".len() + 64,
        "{id}"
    );
    assert!(container
        .state
        .as_ref()
        .unwrap()
        .running
        .as_ref()
        .unwrap()
        .started_at
        .is_some());
    let node = ready.spec.as_ref().unwrap().node_name.clone().unwrap();

    let seen = http_get_json(&format!("http://{ip}:8080/")).await;
    assert_eq!(seen["ip"], ip, "--ip=0.0.0.0 became the pod's IP");
    assert_eq!(seen["env"]["POD_IP"], ip);
    assert_eq!(seen["env"]["POD_NAME"], "echo");
    assert_eq!(seen["env"]["NODE"], node);
    assert_eq!(seen["env"]["TOKEN"], "s3cret");
    assert_eq!(
        seen["env"]["GREETING"], "hello echo, not $(LATER)",
        "$(VAR) expanded from variables defined before it, as Kubernetes does"
    );
    assert_eq!(seen["env"]["HOSTNAME"], "echo");

    let events = cluster.events("default").await;
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e["involvedObject"]["uid"] == uid.as_str())
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons[..5],
        ["Scheduled", "Pulling", "Pulled", "Created", "Started"],
        "{events:#?}"
    );
    // Probes that ran before the server listened say so, as a real kubelet's do.
    assert!(
        reasons[5..].iter().all(|r| *r == "Unhealthy"),
        "{reasons:?}"
    );
    let pulling = events.iter().find(|e| e["reason"] == "Pulling").unwrap();
    assert_eq!(
        pulling["message"],
        "Pulling image \"quay.io/jupyter/base-notebook:2025-06-02\""
    );

    // The same events through events.k8s.io/v1, as the newer clients read them.
    let new_events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let scheduled = new_events
        .list(&ListParams::default().fields(&format!("regarding.uid={uid}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("Scheduled"))
        .expect("the Scheduled event through events.k8s.io");
    assert_eq!(
        scheduled.note.as_deref(),
        Some(format!("Successfully assigned default/echo to {node}").as_str())
    );
    assert_eq!(
        scheduled.reporting_controller.as_deref(),
        Some("default-scheduler")
    );

    let logs = pods.logs("echo", &LogParams::default()).await.unwrap();
    assert!(logs.contains(&format!("serving on {ip}:8080")), "{logs}");

    // Deleting the pod stops the process, then the pod goes.
    pods.delete("echo", &DeleteParams::default()).await.unwrap();
    cluster
        .wait_pod_gone("default", "echo", Duration::from_secs(10))
        .await;
    assert!(cluster.processes().await.is_empty());
    assert!(
        tokio::net::TcpStream::connect(format!("{ip}:8080"))
            .await
            .is_err(),
        "nothing listens on the pod's address any more"
    );
}

#[tokio::test]
async fn a_pod_too_large_for_every_node_is_unschedulable_in_the_schedulers_words_until_room_frees_up(
) {
    let cluster = KubeCluster::start(
        "node-a:cpu=2,memory=8Gi;node-b:cpu=2,memory=8Gi",
        KubeClusterOptions::default(),
    );
    let client = client(&cluster).await;
    tokens_secret(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &echo_pod("huge", "64", &[]))
        .await
        .unwrap();
    let pod = cluster
        .wait_pod("default", "huge", Duration::from_secs(5), |p| {
            p["status"]["conditions"][0]["reason"] == "Unschedulable"
        })
        .await;
    let condition = &pod["status"]["conditions"][0];
    assert_eq!(condition["type"], "PodScheduled");
    assert_eq!(condition["status"], "False");
    assert_eq!(
        condition["message"],
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    let events = cluster.events("default").await;
    let failed = events
        .iter()
        .find(|e| e["reason"] == "FailedScheduling")
        .expect("a FailedScheduling event");
    assert_eq!(failed["type"], "Warning");
    assert_eq!(failed["message"], condition["message"]);

    // Two pods fill both nodes; a third waits and is placed once one of them goes.
    pods.create(&PostParams::default(), &echo_pod("one", "1500m", &[]))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &echo_pod("two", "1500m", &[]))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &echo_pod("three", "1500m", &[]))
        .await
        .unwrap();
    let waiting = cluster
        .wait_pod("default", "three", Duration::from_secs(5), |p| {
            p["status"]["conditions"][0]["reason"] == "Unschedulable"
        })
        .await;
    assert!(waiting["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("0/2 nodes are available: 2 Insufficient cpu."));
    pods.delete("one", &DeleteParams::default()).await.unwrap();
    let placed = cluster
        .wait_pod("default", "three", Duration::from_secs(15), |p| {
            p["spec"]["nodeName"].is_string()
        })
        .await;
    assert_eq!(
        placed["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "PodScheduled")
            .unwrap()["status"],
        "True"
    );
}

#[tokio::test]
async fn pods_go_only_to_nodes_their_selector_and_tolerations_allow() {
    let cluster = KubeCluster::start(
        "cpu-node:cpu=4,memory=8Gi;gpu-node:cpu=4,memory=8Gi,gpu=2,labels=xiji.org/pool=gpu,taints=nvidia.com/gpu=present:NoSchedule",
        KubeClusterOptions::default(),
    );
    let client = client(&cluster).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let gpu = nodes.get("gpu-node").await.unwrap();
    let status = gpu.status.unwrap();
    assert_eq!(status.capacity.unwrap()["nvidia.com/gpu"].0, "2");
    let info = status.node_info.unwrap();
    assert_eq!(info.kubelet_version, "v1.33.2");
    assert!(info
        .container_runtime_version
        .starts_with("containerd://1.7."));
    assert_eq!(
        gpu.metadata.labels.unwrap()["kubernetes.io/hostname"],
        "gpu-node"
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let gpu_pod = |name: &str, tolerate: bool| -> Pod {
        let mut spec = json!({
            "restartPolicy": "Never",
            "nodeSelector": {"xiji.org/pool": "gpu"},
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "30"],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        });
        if tolerate {
            spec["tolerations"] =
                json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    pods.create(&PostParams::default(), &gpu_pod("intolerant", false))
        .await
        .unwrap();
    let refused = cluster
        .wait_pod("default", "intolerant", Duration::from_secs(5), |p| {
            p["status"]["conditions"][0]["reason"] == "Unschedulable"
        })
        .await;
    assert_eq!(
        refused["status"]["conditions"][0]["message"],
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {nvidia.com/gpu: present}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    pods.create(&PostParams::default(), &gpu_pod("tolerant", true))
        .await
        .unwrap();
    let placed = cluster
        .wait_pod("default", "tolerant", Duration::from_secs(5), |p| {
            p["spec"]["nodeName"].is_string()
        })
        .await;
    assert_eq!(placed["spec"]["nodeName"], "gpu-node");
    // Limits without requests count as requests (the API server's defaulting).
    assert_eq!(
        placed["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"],
        "1"
    );

    // A cordoned node takes nothing new.
    nodes
        .patch(
            "cpu-node",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    let plain: Pod = serde_json::from_value(json!({
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "30"]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &plain).await.unwrap();
    let refused = cluster
        .wait_pod("default", "plain", Duration::from_secs(5), |p| {
            p["status"]["conditions"][0]["reason"] == "Unschedulable"
        })
        .await;
    assert_eq!(
        refused["status"]["conditions"][0]["message"],
        "0/2 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}, 1 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    nodes
        .patch(
            "cpu-node",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": null}})),
        )
        .await
        .unwrap();
    let placed = cluster
        .wait_pod("default", "plain", Duration::from_secs(5), |p| {
            p["spec"]["nodeName"].is_string()
        })
        .await;
    assert_eq!(placed["spec"]["nodeName"], "cpu-node");
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists_and_watches() {
    let cluster = KubeCluster::start("node-0:cpu=2,memory=4Gi", KubeClusterOptions::default());
    let client = client(&cluster).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, app, tier) in [
        ("a", "hub", Some("web")),
        ("b", "hub", Some("db")),
        ("c", "lab", None),
    ] {
        let mut l = vec![("app", app)];
        if let Some(tier) = tier {
            l.push(("tier", tier));
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: labels(&l),
                ..Default::default()
            },
            ..Default::default()
        };
        maps.create(&PostParams::default(), &cm).await.unwrap();
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        let mut n: Vec<String> = list
            .items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .filter(|n| n != "kube-root-ca.crt")
            .collect();
        n.sort();
        n
    };
    for (selector, expected) in [
        ("app=hub", vec!["a", "b"]),
        ("app==hub,tier=db", vec!["b"]),
        ("app!=hub", vec!["c"]),
        ("tier in (web,db)", vec!["a", "b"]),
        ("tier notin (web)", vec!["b", "c"]),
        ("tier", vec!["a", "b"]),
        ("!tier", vec!["c"]),
    ] {
        let list = maps
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        assert_eq!(names(list), expected, "labelSelector={selector}");
    }
    let list = maps
        .list(&ListParams::default().fields("metadata.name=c"))
        .await
        .unwrap();
    assert_eq!(names(list), ["c"]);
    let list = maps.list(&ListParams::default()).await.unwrap();
    assert!(list.metadata.resource_version.is_some());

    // A bad selector is the API server's 400.
    let err = maps
        .list(&ListParams::default().labels("tier in (web"))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 400, "{status:?}"),
        other => panic!("{other}"),
    }

    // A watch with a selector sees an object that starts matching as ADDED and one that
    // stops matching as DELETED.
    let rv = maps
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = maps
        .watch(&WatchParams::default().labels("app=hub").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    maps.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "hub"}}})),
    )
    .await
    .unwrap();
    let (status, body) = cluster
        .request_as(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/a",
            "application/json-patch+json",
            Some(&json!([{"op": "replace", "path": "/metadata/labels/app", "value": "gone"}])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match event {
            WatchEvent::Added(cm) => seen.push(format!("ADDED {}", cm.metadata.name.unwrap())),
            WatchEvent::Deleted(cm) => seen.push(format!("DELETED {}", cm.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED c", "DELETED a"]);
}

#[tokio::test]
async fn objects_get_uids_and_increasing_versions_and_conflicts_are_409_and_misses_404() {
    let cluster = KubeCluster::start("node-0:cpu=2,memory=4Gi", KubeClusterOptions::default());
    let client = client(&cluster).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("settings".into()),
            ..Default::default()
        },
        data: Some([("a".to_owned(), "1".to_owned())].into()),
        ..Default::default()
    };
    let first = maps.create(&PostParams::default(), &cm).await.unwrap();
    let err = maps.create(&PostParams::default(), &cm).await.unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "AlreadyExists");
            assert_eq!(status.message, "configmaps \"settings\" already exists");
        }
        other => panic!("{other}"),
    }
    match maps.get("nothing").await.unwrap_err() {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
            assert_eq!(status.message, "configmaps \"nothing\" not found");
        }
        other => panic!("{other}"),
    }
    assert!(maps.get_opt("nothing").await.unwrap().is_none());

    let patched = maps
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"b": "2"}})),
        )
        .await
        .unwrap();
    let v1: u64 = first.metadata.resource_version.unwrap().parse().unwrap();
    let v2: u64 = patched
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(v2 > v1);
    assert_eq!(patched.metadata.uid, first.metadata.uid);
    assert_eq!(patched.data.as_ref().unwrap().len(), 2);

    // A replace with a stale resourceVersion is a 409 Conflict.
    let mut stale = patched.clone();
    stale.metadata.resource_version = Some(v1.to_string());
    match maps
        .replace("settings", &PostParams::default(), &stale)
        .await
        .unwrap_err()
    {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"))
        }
        other => panic!("{other}"),
    }
    // A dry run changes nothing.
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut other = cm.clone();
    other.metadata.name = Some("dry".into());
    maps.create(&pp, &other).await.unwrap();
    assert!(maps.get_opt("dry").await.unwrap().is_none());

    // Invalid names are refused as a real API server refuses them.
    other.metadata.name = Some("Not_A_Name".into());
    match maps
        .create(&PostParams::default(), &other)
        .await
        .unwrap_err()
    {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"))
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn deleting_an_owner_removes_its_dependents_and_theirs() {
    let cluster = KubeCluster::start("node-0:cpu=2,memory=4Gi", KubeClusterOptions::default());
    let client = client(&cluster).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let owner_ref = |kind: &str, api_version: &str, name: &str, uid: &str| OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let owner = maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("cluster-1".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let owner_uid = owner.metadata.uid.unwrap();
    let child = secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("cluster-1-keys".into()),
                    owner_references: Some(vec![owner_ref(
                        "ConfigMap",
                        "v1",
                        "cluster-1",
                        &owner_uid,
                    )]),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "cluster-1-node-0"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
                 "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "300"]}]},
    }))
    .unwrap();
    pod.metadata.owner_references = Some(vec![owner_ref(
        "Secret",
        "v1",
        "cluster-1-keys",
        child.metadata.uid.as_deref().unwrap(),
    )]);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    cluster
        .wait_pod(
            "default",
            "cluster-1-node-0",
            Duration::from_secs(10),
            |p| p["status"]["phase"] == "Running",
        )
        .await;

    maps.delete("cluster-1", &DeleteParams::background())
        .await
        .unwrap();
    cluster
        .wait_pod_gone("default", "cluster-1-node-0", Duration::from_secs(10))
        .await;
    assert!(secrets.get_opt("cluster-1-keys").await.unwrap().is_none());
    assert!(
        cluster.processes().await.is_empty(),
        "the sleep was stopped"
    );

    // Foreground: the owner stays (with its deletionTimestamp) until its dependents are gone.
    let owner = maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("cluster-2".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut pod = pod.clone();
    pod.metadata.name = Some("cluster-2-node-0".into());
    pod.metadata.owner_references = Some(vec![owner_ref(
        "ConfigMap",
        "v1",
        "cluster-2",
        owner.metadata.uid.as_deref().unwrap(),
    )]);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let answer = maps
        .delete("cluster-2", &DeleteParams::foreground())
        .await
        .unwrap();
    let waiting = answer.left().expect("the owner, still being deleted");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert!(waiting
        .metadata
        .finalizers
        .unwrap()
        .contains(&"foregroundDeletion".to_owned()));
    cluster
        .wait_pod_gone("default", "cluster-2-node-0", Duration::from_secs(10))
        .await;
    for _ in 0..100 {
        if maps.get_opt("cluster-2").await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the owner was not removed after its dependents");
}

#[tokio::test]
async fn a_killed_process_is_reported_terminated_and_the_pod_failed() {
    let cluster = KubeCluster::start("node-0:cpu=2,memory=4Gi", KubeClusterOptions::default());
    let client = client(&cluster).await;
    tokens_secret(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &echo_pod("victim", "100m", &[]))
        .await
        .unwrap();
    cluster
        .wait_pod("default", "victim", Duration::from_secs(15), |p| {
            p["status"]["containerStatuses"][0]["ready"] == true
        })
        .await;
    cluster.kill_pod("default", "victim").await;
    let pod = cluster
        .wait_pod("default", "victim", Duration::from_secs(10), |p| {
            p["status"]["phase"] == "Failed"
        })
        .await;
    let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 137, "{pod:#}");
    assert_eq!(terminated["reason"], "Error");
    assert!(terminated["finishedAt"].is_string());
    assert_eq!(pod["status"]["containerStatuses"][0]["ready"], false);

    // A container failing its liveness probe is killed.
    let mut unhealthy = echo_pod("unhealthy", "100m", &[]);
    unhealthy.spec.as_mut().unwrap().containers[0].liveness_probe = Some(
        serde_json::from_value(
            json!({"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 2}),
        )
        .unwrap(),
    );
    pods.create(&PostParams::default(), &unhealthy)
        .await
        .unwrap();
    let pod = cluster
        .wait_pod("default", "unhealthy", Duration::from_secs(15), |p| {
            p["status"]["phase"] == "Failed"
        })
        .await;
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 143,
        "stopped with SIGTERM"
    );
    let events = cluster.events("default").await;
    let ip = pod["status"]["podIP"].as_str().unwrap();
    assert!(
        events.iter().any(|e| e["reason"] == "Unhealthy"
            && e["message"]
                == format!("Liveness probe failed: dial tcp {ip}:9: connect: connection refused")),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| e["reason"] == "Killing"
        && e["message"] == "Container notebook failed liveness probe, will be restarted"));

    // A process that exits by itself with 0 makes the pod Succeeded.
    pods.create(
        &PostParams::default(),
        &echo_pod("done", "100m", &["--exit-after=0.5"]),
    )
    .await
    .unwrap();
    let pod = cluster
        .wait_pod("default", "done", Duration::from_secs(10), |p| {
            p["status"]["phase"] == "Succeeded"
        })
        .await;
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_leaves_the_container_waiting_in_image_pull_back_off() {
    let cluster = KubeCluster::start(
        "node-0:cpu=2,memory=4Gi",
        KubeClusterOptions {
            fail_pull: vec!["registry.invalid/".into()],
            ..Default::default()
        },
    );
    let client = client(&cluster).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "missing"},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/nothing:1", "command": ["true"]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let pod = cluster
        .wait_pod("default", "missing", Duration::from_secs(10), |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
        })
        .await;
    assert_eq!(pod["status"]["phase"], "Pending");
    let events = cluster.events("default").await;
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "Failed" && e["message"] == "Error: ErrImagePull"),
        "{events:#?}"
    );
    assert!(cluster.processes().await.is_empty());
}

#[tokio::test]
async fn pod_status_is_patched_through_its_subresource_only() {
    let cluster = KubeCluster::start("node-0:cpu=2,memory=4Gi", KubeClusterOptions::default());
    let client = client(&cluster).await;
    cluster.pause_kubelet().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "30"]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // A status in a main-resource patch is ignored; through /status it is taken.
    let patched = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"x": "1"}}, "status": {"phase": "Failed"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["x"], "1");
    assert_ne!(patched.status.unwrap().phase.as_deref(), Some("Failed"));
    // The scheduler binds the pod on its own time (the kubelet is paused, not the scheduler).
    cluster
        .wait_pod("default", "p", Duration::from_secs(30), |p| {
            p["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "PodScheduled"))
        })
        .await;
    let patched = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"status": {"conditions": [{"type": "Example", "status": "True"}]}}),
            ),
        )
        .await
        .unwrap();
    let conditions = patched.status.unwrap().conditions.unwrap();
    assert!(conditions.iter().any(|c| c.type_ == "Example"));
    assert!(
        conditions.iter().any(|c| c.type_ == "PodScheduled"),
        "merged by type: {conditions:?}"
    );
    // A paused kubelet leaves a deleted pod Terminating.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let terminating = pods.get("p").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    cluster.resume_kubelet().await;
    cluster
        .wait_pod_gone("default", "p", Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn discovery_lists_the_groups_a_backend_uses() {
    let cluster = KubeCluster::start(
        "node-0:cpu=2,memory=4Gi",
        KubeClusterOptions {
            volcano: true,
            ..Default::default()
        },
    );
    let client = client(&cluster).await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.33.2");
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    for (group, kind) in [
        ("", "Pod"),
        ("", "Event"),
        ("events.k8s.io", "Event"),
        ("policy", "PodDisruptionBudget"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("coordination.k8s.io", "Lease"),
        ("scheduling.volcano.sh", "PodGroup"),
    ] {
        let found = discovery.groups().any(|g| {
            g.name() == group
                && g.recommended_resources()
                    .iter()
                    .any(|(r, _)| r.kind == kind)
        });
        assert!(found, "{group} {kind} is discovered");
    }
    let aggregated = kube::discovery::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(aggregated.has_group("scheduling.volcano.sh"));

    let plain = KubeCluster::start("node-0:cpu=2,memory=4Gi", KubeClusterOptions::default());
    let discovery = kube::discovery::Discovery::new(client_for(&plain))
        .run()
        .await
        .unwrap();
    assert!(!discovery.has_group("scheduling.volcano.sh"));
}

fn client_for(cluster: &KubeCluster) -> Client {
    Client::try_from(kube::Config::new(cluster.url.parse().unwrap())).unwrap()
}

#[tokio::test]
async fn a_volcano_gang_is_bound_all_together_or_not_at_all() {
    let cluster = KubeCluster::start(
        "node-a:cpu=2,memory=8Gi;node-b:cpu=2,memory=8Gi",
        KubeClusterOptions {
            volcano: true,
            ..Default::default()
        },
    );
    let client = client(&cluster).await;
    let groups: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource {
            group: "scheduling.volcano.sh".into(),
            version: "v1beta1".into(),
            api_version: "scheduling.volcano.sh/v1beta1".into(),
            kind: "PodGroup".into(),
            plural: "podgroups".into(),
        },
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (gang, size, cpu) in [("too-big", 3, "1500m"), ("fits", 2, "1500m")] {
        let group: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
            "metadata": {"name": gang}, "spec": {"minMember": size},
        }))
        .unwrap();
        groups.create(&PostParams::default(), &group).await.unwrap();
        for i in 0..size {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("{gang}-{i}"),
                             "annotations": {"scheduling.k8s.io/group-name": gang}},
                "spec": {"schedulerName": "volcano", "restartPolicy": "Never",
                         "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "30"],
                                         "resources": {"requests": {"cpu": cpu}}}]},
            }))
            .unwrap();
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }
        if gang == "too-big" {
            // Once all three are there (before that, the gang is short of minMember).
            cluster
                .wait_pod("default", "too-big-0", Duration::from_secs(5), |p| {
                    p["status"]["conditions"][0]["message"]
                        == "0/2 nodes are unavailable: 2 Insufficient cpu."
                })
                .await;
        }
    }
    for i in 0..2 {
        cluster
            .wait_pod(
                "default",
                &format!("fits-{i}"),
                Duration::from_secs(5),
                |p| p["spec"]["nodeName"].is_string(),
            )
            .await;
    }
    for i in 0..3 {
        let pod = cluster
            .pod("default", &format!("too-big-{i}"))
            .await
            .unwrap();
        assert!(
            pod["spec"]["nodeName"].is_null(),
            "none of the gang is bound: {pod:#}"
        );
    }
}

#[tokio::test]
async fn strategic_merge_patches_merge_lists_by_their_keys_and_apply_creates_then_updates() {
    let cluster = KubeCluster::start("node-0:cpu=2,memory=4Gi", KubeClusterOptions::default());
    let client = client(&cluster).await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "default");
    let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "finalizers": ["example.org/keep"]},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                    {"name": "b", "image": "b:1"},
                ]},
            },
        },
    }))
    .unwrap();
    let created = deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let patched = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({
                "metadata": {"finalizers": ["example.org/also"]},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "a", "image": "a:2", "env": [{"name": "Y", "$patch": "delete"}, {"name": "Z", "value": "3"}]},
                ]}}},
            })),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "a spec change bumps the generation"
    );
    assert_eq!(
        patched.metadata.finalizers.unwrap(),
        ["example.org/keep", "example.org/also"],
        "finalizers are a set"
    );
    let containers = patched.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 2, "b is kept: containers merge by name");
    assert_eq!(containers[0].image.as_deref(), Some("a:2"));
    let env: Vec<(String, String)> = containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert_eq!(
        env,
        [
            ("X".to_owned(), "1".to_owned()),
            ("Z".to_owned(), "3".to_owned())
        ]
    );
    // A JSON merge patch replaces lists whole.
    let merged = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "c:1"}]}}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.spec.unwrap().template.spec.unwrap().containers.len(),
        1
    );

    // Server-side apply creates what is missing, then merges into it.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let apply = PatchParams::apply("xiji").force();
    let applied = maps
        .patch(
            "applied",
            &apply,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "applied", "labels": {"a": "1"}},
                                 "data": {"k": "v"}})),
        )
        .await
        .unwrap();
    assert!(applied.metadata.uid.is_some());
    let applied = maps
        .patch(
            "applied",
            &apply,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "applied", "labels": {"b": "2"}},
                                 "data": {"k": "w"}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["k"], "w");
    assert_eq!(
        applied.metadata.labels,
        labels(&[("b", "2")]),
        "what the manager no longer applies is removed"
    );

    // deletecollection with a label selector removes just those.
    for (name, keep) in [("x1", "no"), ("x2", "no"), ("x3", "yes")] {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: labels(&[("keep", keep)]),
                ..Default::default()
            },
            ..Default::default()
        };
        maps.create(&PostParams::default(), &cm).await.unwrap();
    }
    maps.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("keep=no"),
    )
    .await
    .unwrap();
    let left: Vec<String> = maps
        .list(&ListParams::default().labels("keep"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["x3"]);
}

#[tokio::test]
async fn a_node_that_is_not_ready_takes_no_new_pods_and_its_pods_lose_ready() {
    let cluster = KubeCluster::start("node-0:cpu=2,memory=4Gi", KubeClusterOptions::default());
    let client = client(&cluster).await;
    tokens_secret(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &echo_pod("before", "100m", &[]))
        .await
        .unwrap();
    cluster
        .wait_pod("default", "before", Duration::from_secs(15), |p| {
            p["status"]["containerStatuses"][0]["ready"] == true
        })
        .await;
    cluster.set_node_ready("node-0", false).await;
    let node = Api::<Node>::all(client.clone())
        .get("node-0")
        .await
        .unwrap();
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert!(node
        .spec
        .unwrap()
        .taints
        .unwrap()
        .iter()
        .any(|t| t.key == "node.kubernetes.io/not-ready" && t.effect == "NoSchedule"));
    cluster
        .wait_pod("default", "before", Duration::from_secs(5), |p| {
            p["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "False")
        })
        .await;
    pods.create(&PostParams::default(), &echo_pod("after", "100m", &[]))
        .await
        .unwrap();
    let refused = cluster
        .wait_pod("default", "after", Duration::from_secs(5), |p| {
            p["status"]["conditions"][0]["reason"] == "Unschedulable"
        })
        .await;
    assert_eq!(
        refused["status"]["conditions"][0]["message"],
        "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    cluster.set_node_ready("node-0", true).await;
    cluster
        .wait_pod("default", "after", Duration::from_secs(5), |p| {
            p["spec"]["nodeName"] == "node-0"
        })
        .await;

    // A pod naming a ServiceAccount that does not exist is refused at admission.
    let mut pod = echo_pod("no-account", "100m", &[]);
    pod.spec.as_mut().unwrap().service_account_name = Some("nobody".into());
    match pods.create(&PostParams::default(), &pod).await.unwrap_err() {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
            assert!(
                status
                    .message
                    .ends_with("serviceaccount \"nobody\" not found"),
                "{}",
                status.message
            );
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_watch_ends_at_its_timeout_and_resumes_from_a_resource_version() {
    let cluster = KubeCluster::start("node-0:cpu=2,memory=4Gi", KubeClusterOptions::default());
    let client = client(&cluster).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("counter".into()),
            ..Default::default()
        },
        data: Some([("n".to_owned(), "0".to_owned())].into()),
        ..Default::default()
    };
    let created = maps.create(&PostParams::default(), &cm).await.unwrap();
    let from = created.metadata.resource_version.unwrap();
    for n in 1..=3 {
        maps.patch(
            "counter",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": n.to_string()}})),
        )
        .await
        .unwrap();
    }
    // Resumed from the created version, the watch replays the three changes in order, then
    // ends when its timeout is up.
    let started = std::time::Instant::now();
    let stream = maps
        .watch(&WatchParams::default().timeout(2), &from)
        .await
        .unwrap();
    let events: Vec<_> =
        tokio::time::timeout(Duration::from_secs(10), stream.try_collect::<Vec<_>>())
            .await
            .expect("the watch ends by itself")
            .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let seen: Vec<String> = events
        .into_iter()
        .filter_map(|e| match e {
            WatchEvent::Modified(cm) => Some(cm.data.unwrap()["n"].clone()),
            WatchEvent::Bookmark(_) => None,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(seen, ["1", "2", "3"]);
}
