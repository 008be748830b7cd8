//! Deleting clusters: pods with a grace period, the owner object (a garbage collector deletes
//! whatever names it), and explicitly every object labelled with the cluster id, so a cluster is
//! gone also where the garbage collector is slow or absent. Deleting what is already gone is
//! fine.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::Api;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::gang::VOLCANO_API_VERSION;
use super::{LABEL_CLUSTER, LABEL_HUB};
use crate::SpawnerError;

/// How much longer than its grace period a pod may take to go before it is deleted at once.
const GONE_MARGIN: Duration = Duration::from_secs(30);
/// How often the pods are listed while waiting for them to go.
const GONE_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// Where a hub's clusters are: the API, the namespace, whether PodGroups exist.
#[derive(Clone)]
pub(super) struct Place {
    pub(super) client: kube::Client,
    pub(super) namespace: String,
    /// Volcano's PodGroups are served (else they are neither listed nor deleted).
    pub(super) pod_groups: bool,
}

/// In which order a cluster goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Order {
    /// Pods first, each with the grace period, then the owner and the rest: a stop.
    PodsFirst,
    /// The owner first, so that a hub killed meanwhile leaves the rest to the garbage
    /// collector, then the pods and the rest: orphans.
    OwnerFirst,
}

/// The PodGroups of Volcano.
pub(super) fn pod_group_resource() -> ApiResource {
    ApiResource {
        group: "scheduling.volcano.sh".into(),
        version: "v1beta1".into(),
        api_version: VOLCANO_API_VERSION.into(),
        kind: "PodGroup".into(),
        plural: "podgroups".into(),
    }
}

impl Place {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pod_groups_api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &pod_group_resource())
    }

    /// Deletes cluster `cluster_id` (pods get `grace` to stop) and returns once its pods are
    /// gone, or `grace` + 30 s have passed (then the pods left are deleted at once).
    pub(super) async fn delete_cluster(
        &self,
        cluster_id: &str,
        grace: Duration,
        order: Order,
    ) -> Result<(), SpawnerError> {
        let selector = format!("{LABEL_CLUSTER}={cluster_id}");
        if order == Order::OwnerFirst {
            self.delete_owners(&selector, cluster_id).await?;
        }
        let grace_seconds = u32::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0))
            .unwrap_or(u32::MAX);
        let pods = delete_labelled(
            &self.api::<Pod>(),
            &selector,
            cluster_id,
            &DeleteParams {
                grace_period_seconds: Some(grace_seconds),
                ..DeleteParams::default()
            },
            "pod",
        )
        .await?;
        if !pods.is_empty() {
            self.wait_pods_gone(&selector, cluster_id, grace + GONE_MARGIN)
                .await?;
        }
        if order == Order::PodsFirst {
            self.delete_owners(&selector, cluster_id).await?;
        }
        let plain = DeleteParams::default();
        delete_labelled(
            &self.api::<Secret>(),
            &selector,
            cluster_id,
            &plain,
            "secret",
        )
        .await?;
        delete_labelled(
            &self.api::<Service>(),
            &selector,
            cluster_id,
            &plain,
            "service",
        )
        .await?;
        delete_labelled(
            &self.api::<NetworkPolicy>(),
            &selector,
            cluster_id,
            &plain,
            "network policy",
        )
        .await?;
        if self.pod_groups {
            delete_labelled(
                &self.pod_groups_api(),
                &selector,
                cluster_id,
                &plain,
                "pod group",
            )
            .await?;
        }
        tracing::info!(cluster.id = %cluster_id, "cluster deleted");
        Ok(())
    }

    /// The owner ConfigMap, in the background: the garbage collector deletes its dependents
    /// (foreground would keep the owner until they are gone, forever where no collector runs).
    async fn delete_owners(&self, selector: &str, cluster_id: &str) -> Result<(), SpawnerError> {
        delete_labelled(
            &self.api::<ConfigMap>(),
            selector,
            cluster_id,
            &DeleteParams::background(),
            "owner",
        )
        .await
        .map(drop)
    }

    /// Waits until no pod of the cluster is left, for `bound` at most; then deletes the rest
    /// at once (grace period 0).
    async fn wait_pods_gone(
        &self,
        selector: &str,
        cluster_id: &str,
        bound: Duration,
    ) -> Result<(), SpawnerError> {
        let api = self.api::<Pod>();
        let deadline = Instant::now() + bound;
        loop {
            let left = labelled(&api, selector, cluster_id, "pod").await?;
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    cluster.id = %cluster_id,
                    pods = ?left.iter().map(name_of).collect::<Vec<_>>(),
                    waited_s = bound.as_secs(),
                    "pods still there after their grace period; deleting them at once"
                );
                let now = DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                };
                delete_labelled(&api, selector, cluster_id, &now, "pod").await?;
                return Ok(());
            }
            tokio::time::sleep(GONE_CHECK_INTERVAL).await;
        }
    }

    /// The cluster ids of every object labelled as this hub's (`instance`).
    pub(super) async fn cluster_ids(
        &self,
        instance: &str,
    ) -> Result<BTreeSet<String>, SpawnerError> {
        let selector = format!("{LABEL_HUB}={instance}");
        let mut ids = BTreeSet::new();
        ids.extend(
            hub_clusters(&self.api::<ConfigMap>(), &selector, instance, "config map").await?,
        );
        ids.extend(hub_clusters(&self.api::<Pod>(), &selector, instance, "pod").await?);
        ids.extend(hub_clusters(&self.api::<Secret>(), &selector, instance, "secret").await?);
        ids.extend(hub_clusters(&self.api::<Service>(), &selector, instance, "service").await?);
        ids.extend(
            hub_clusters(
                &self.api::<NetworkPolicy>(),
                &selector,
                instance,
                "network policy",
            )
            .await?,
        );
        if self.pod_groups {
            ids.extend(
                hub_clusters(&self.pod_groups_api(), &selector, instance, "pod group").await?,
            );
        }
        Ok(ids)
    }
}

fn name_of<K: kube::Resource>(object: &K) -> String {
    object.meta().name.clone().unwrap_or_default()
}

fn label<'a, K: kube::Resource>(object: &'a K, key: &str) -> Option<&'a str> {
    object
        .meta()
        .labels
        .as_ref()
        .and_then(|l: &BTreeMap<String, String>| l.get(key))
        .map(String::as_str)
}

/// The objects of `api` carrying `selector` whose cluster label is `cluster_id` (checked here
/// too: a selector is a request).
async fn labelled<K>(
    api: &Api<K>,
    selector: &str,
    cluster_id: &str,
    what: &str,
) -> Result<Vec<K>, SpawnerError>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            SpawnerError::kube(format!("listing the {what}s of cluster {cluster_id}"), e)
        })?;
    Ok(list
        .items
        .into_iter()
        .filter(|o| label(o, LABEL_CLUSTER) == Some(cluster_id))
        .collect())
}

/// Deletes every object of `api` of the cluster; returns their names.
async fn delete_labelled<K>(
    api: &Api<K>,
    selector: &str,
    cluster_id: &str,
    params: &DeleteParams,
    what: &str,
) -> Result<Vec<String>, SpawnerError>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    let mut names = Vec::new();
    for object in labelled(api, selector, cluster_id, what).await? {
        let name = name_of(&object);
        match api.delete(&name, params).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(SpawnerError::kube(format!("deleting the {what} {name}"), e)),
        }
        tracing::debug!(cluster.id = %cluster_id, object = %name, kind = what, "deleted");
        names.push(name);
    }
    Ok(names)
}

/// The cluster ids of the objects of `api` labelled as `instance`'s.
async fn hub_clusters<K>(
    api: &Api<K>,
    selector: &str,
    instance: &str,
    what: &str,
) -> Result<BTreeSet<String>, SpawnerError>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| SpawnerError::kube(format!("listing Xiji's {what}s"), e))?;
    Ok(list
        .items
        .iter()
        .filter(|o| label(*o, LABEL_HUB) == Some(instance))
        .filter_map(|o| label(o, LABEL_CLUSTER))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect())
}

/// A 404: the object is already gone.
pub(super) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}
