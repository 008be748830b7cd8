//! A list-then-watch of one kind of object, as kube-rs's `watcher` does it, small: list, watch
//! from the list's resourceVersion, list again whenever the watch ends or fails (a `410 Gone`,
//! the server's timeout, a dropped connection). What it sees arrives on a channel; the task
//! stops when the [`Watch`] is dropped.

use std::fmt::Debug;
use std::time::Duration;

use futures_util::StreamExt as _;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::Api;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// How long one watch request lasts at most before it is made again (the server may end it
/// sooner).
const WATCH_SECONDS: u32 = 55;
/// The pause before listing again after a failure, so a failing server is not hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// The pause before listing again after a watch that ended normally.
const RELIST_PAUSE: Duration = Duration::from_millis(50);

/// What a watch saw.
#[derive(Debug)]
pub(super) enum Seen<K> {
    /// The whole list, at the start and after every re-list (objects missing from it are gone).
    Listed(Vec<K>),
    /// Made or changed.
    Applied(K),
    /// Deleted.
    Deleted(K),
    /// The API server could not be listed or watched; the watch tries again.
    Trouble(String),
}

/// A running list-then-watch; dropping it stops the task.
pub(super) struct Watch<K> {
    receiver: mpsc::UnboundedReceiver<Seen<K>>,
    task: tokio::task::AbortHandle,
}

impl<K> Watch<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    /// Lists and watches the objects of `api` with `labels` (a label selector), if any.
    pub(super) fn start(api: Api<K>, labels: Option<String>) -> Self {
        Self::spawn(api, labels, None)
    }

    /// Watches what changes in `api` after `version` (a resourceVersion) without listing what
    /// is there first (the namespace's old Events, say); lists only if the watch must start
    /// again.
    pub(super) fn since(api: Api<K>, version: String) -> Self {
        Self::spawn(api, None, Some(version))
    }

    fn spawn(api: Api<K>, labels: Option<String>, since: Option<String>) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(api, labels, since, sender)).abort_handle();
        Self { receiver, task }
    }

    /// The next thing seen; `None` only if the task ended (it does not on its own).
    pub(super) async fn next(&mut self) -> Option<Seen<K>> {
        self.receiver.recv().await
    }
}

impl<K> Drop for Watch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run<K>(
    api: Api<K>,
    labels: Option<String>,
    mut since: Option<String>,
    sender: mpsc::UnboundedSender<Seen<K>>,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut list_params = ListParams::default();
    let mut watch_params = WatchParams::default().timeout(WATCH_SECONDS);
    if let Some(labels) = &labels {
        list_params = list_params.labels(labels);
        watch_params = watch_params.labels(labels);
    }
    loop {
        let mut version = match since.take() {
            Some(version) => version,
            None => match api.list(&list_params).await {
                Ok(list) => {
                    let version = list.metadata.resource_version.clone().unwrap_or_default();
                    if sender.send(Seen::Listed(list.items)).is_err() {
                        return;
                    }
                    version
                }
                Err(e) => {
                    if sender.send(Seen::Trouble(e.to_string())).is_err() {
                        return;
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        let pause = match watch_from(&api, &watch_params, &mut version, &sender).await {
            Ended::Closed => return,
            Ended::Normally => RELIST_PAUSE,
            Ended::Failed(why) => {
                if sender.send(Seen::Trouble(why)).is_err() {
                    return;
                }
                RETRY_PAUSE
            }
        };
        tokio::time::sleep(pause).await;
    }
}

enum Ended {
    /// The receiver is gone: stop.
    Closed,
    Normally,
    Failed(String),
}

async fn watch_from<K>(
    api: &Api<K>,
    params: &WatchParams,
    version: &mut String,
    sender: &mpsc::UnboundedSender<Seen<K>>,
) -> Ended
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let stream = match api.watch(params, version).await {
        Ok(stream) => stream,
        Err(e) => return Ended::Failed(e.to_string()),
    };
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let seen = match event {
            Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => {
                remember(version, &object);
                Seen::Applied(object)
            }
            Ok(WatchEvent::Deleted(object)) => {
                remember(version, &object);
                Seen::Deleted(object)
            }
            Ok(WatchEvent::Bookmark(bookmark)) => {
                *version = bookmark.metadata.resource_version;
                continue;
            }
            // 410 Gone (the version is too old) and the like: list again.
            Ok(WatchEvent::Error(status)) if status.code == 410 => return Ended::Normally,
            Ok(WatchEvent::Error(status)) => return Ended::Failed(status.message.clone()),
            Err(e) => return Ended::Failed(e.to_string()),
        };
        if sender.send(seen).is_err() {
            return Ended::Closed;
        }
    }
    Ended::Normally
}

fn remember<K: kube::Resource>(version: &mut String, object: &K) {
    if let Some(v) = &object.meta().resource_version {
        version.clone_from(v);
    }
}
