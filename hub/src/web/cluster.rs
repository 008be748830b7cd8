//! Virtual clusters on the pages: the spawn form (a library image and the size of each node,
//! with the backend's defaults and limits, and the datasets to mount, whatever the backend) and
//! what the home and admin pages show of a running cluster (its image, its size, and each node
//! with its links).

use serde::Serialize;
use serde_json::{Map, Value};
use spawner::ClusterRequest;

use super::PageError;
use crate::db::{ImageFilter, ImageKind, ImageRow, ServerRow, ServerStatus, Visibility};
use crate::domain::clusters::{self, SizeChoices};
use crate::domain::servers::{service_prefix, url_quote};
use crate::domain::Services;

/// The spawn form's fields, which are also the `user_options` keys it sends.
pub(crate) const OPTION_FIELDS: [&str; 7] = [
    "image", "nodes", "cpus", "memory", "gpus", "storage", "pool",
];

/// The spawn form's dataset checkboxes: one per dataset, value `owner/name`, repeated.
pub(crate) const DATASET_FIELD: &str = "dataset";

/// A hidden field of a form that offers datasets: with it, a form whose boxes are all unticked
/// still asks for no dataset (`"datasets": []`) instead of reusing the previous start's.
pub(crate) const DATASETS_OFFERED_FIELD: &str = "datasets_offered";

/// The spawn form's checkbox "Wait in line if the hardware is busy", and the `user_options` key
/// (`true`) that asks admission to queue a start that does not fit the free capacity.
pub(crate) const WAIT_FIELD: &str = "wait";

/// The spawn form's choice of release policy, and its `user_options` key.
pub(crate) const RELEASE_FIELD: &str = crate::domain::release::CHOICE_KEY;

/// What the spawn form holds, as typed (so a refused request shows the same values again).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct SpawnValues {
    /// Library image id.
    pub image: String,
    /// Number of nodes.
    pub nodes: String,
    /// CPU cores per node.
    pub cpus: String,
    /// Memory per node, e.g. `2G`.
    pub memory: String,
    /// GPUs per node.
    pub gpus: String,
    /// Storage per node; empty: no limit.
    pub storage: String,
    /// The compute pool; empty: the backend's default.
    pub pool: String,
    /// The datasets ticked, as `owner/name`.
    pub datasets: Vec<String>,
    /// The form offered datasets (even if none is ticked).
    pub datasets_offered: bool,
    /// "Wait in line if the hardware is busy" is ticked.
    pub wait: bool,
    /// The release policy chosen (empty: the user's own).
    pub release_policy: String,
}

impl SpawnValues {
    /// The values of a posted form as its fields arrived (`dataset` repeated, one per ticked
    /// box), or `None` if it has none of the fields (a bare Start button: the previous options
    /// are used again).
    pub(crate) fn from_pairs(form: &[(String, String)]) -> Option<Self> {
        let has = |key: &str| form.iter().any(|(k, _)| k == key);
        let datasets_offered = has(DATASETS_OFFERED_FIELD) || has(DATASET_FIELD);
        let wait = has(WAIT_FIELD);
        if !OPTION_FIELDS.iter().any(|k| has(k))
            && !datasets_offered
            && !wait
            && !has(RELEASE_FIELD)
        {
            return None;
        }
        let get = |key: &str| {
            form.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let mut datasets: Vec<String> = Vec::new();
        for (_, value) in form.iter().filter(|(k, _)| k == DATASET_FIELD) {
            let value = value.trim();
            if !value.is_empty() && !datasets.iter().any(|d| d == value) {
                datasets.push(value.to_owned());
            }
        }
        Some(Self {
            image: get("image"),
            nodes: get("nodes"),
            cpus: get("cpus"),
            memory: get("memory"),
            gpus: get("gpus"),
            storage: get("storage"),
            pool: get("pool"),
            datasets,
            datasets_offered,
            wait,
            release_policy: get(RELEASE_FIELD),
        })
    }

    /// The `user_options` of a spawn request: the fields that are filled in, and the datasets
    /// ticked when the form offered any (`[]`: none).
    pub(crate) fn user_options(&self) -> Value {
        let mut map = Map::new();
        for (key, value) in self.pairs() {
            if !value.is_empty() {
                map.insert(key.to_owned(), Value::String(value.to_owned()));
            }
        }
        if self.datasets_offered || !self.datasets.is_empty() {
            let list = self.datasets.iter().cloned().map(Value::String).collect();
            map.insert(clusters::DATASETS_KEY.to_owned(), Value::Array(list));
        }
        if self.wait {
            map.insert(WAIT_FIELD.to_owned(), Value::Bool(true));
        }
        if !self.release_policy.is_empty() {
            map.insert(
                RELEASE_FIELD.to_owned(),
                Value::String(self.release_policy.clone()),
            );
        }
        Value::Object(map)
    }

    fn pairs(&self) -> [(&'static str, &str); 7] {
        [
            ("image", &self.image),
            ("nodes", &self.nodes),
            ("cpus", &self.cpus),
            ("memory", &self.memory),
            ("gpus", &self.gpus),
            ("storage", &self.storage),
            ("pool", &self.pool),
        ]
    }

    /// The values of a previous start's stored `user_options` (the library image by its id).
    fn from_options(options: &Value) -> Self {
        let text = |key: &str| -> String {
            let value = match options.get(key) {
                Some(Value::Array(items)) => items.first(),
                other => other,
            };
            match value {
                Some(Value::String(s)) => s.trim().to_owned(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            }
        };
        let datasets = match options.get(clusters::DATASETS_KEY) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Self {
            image: text("image_id"),
            nodes: text("nodes"),
            cpus: text("cpus"),
            memory: text("memory"),
            gpus: text("gpus"),
            storage: text("storage"),
            pool: text("pool"),
            datasets,
            datasets_offered: false,
            wait: options.get(WAIT_FIELD) == Some(&Value::Bool(true)),
            release_policy: text(RELEASE_FIELD),
        }
    }
}

/// A release policy the form offers: one its user may choose.
#[derive(Debug, Serialize)]
pub(crate) struct ReleaseChoice {
    /// The policy's word, the option's value.
    value: &'static str,
    /// The catalogue key of its name.
    label: String,
    /// Chosen by the values shown (else the user's own policy).
    selected: bool,
}

/// The release policies the owner may choose, their own (or the one typed) selected.
pub(crate) async fn release_choices(
    hub: &Services,
    owner: Option<&crate::db::UserRow>,
    chosen: &str,
) -> Result<Vec<ReleaseChoice>, PageError> {
    let Some(owner) = owner else {
        return Ok(Vec::new());
    };
    let policy = crate::domain::release::policy_of(&hub.store, owner.id).await?;
    let wanted = if chosen.is_empty() {
        policy.policy.as_str()
    } else {
        chosen
    };
    Ok(crate::domain::release::choices(&policy)
        .into_iter()
        .map(|p| ReleaseChoice {
            value: p.as_str(),
            label: format!("release_policy_{}", p.as_str()),
            selected: p.as_str() == wanted,
        })
        .collect())
}

/// A dataset the form offers: one the server's owner may read.
#[derive(Debug, Serialize)]
struct DatasetChoice {
    /// `owner/name`, the checkbox's value and label.
    name: String,
    /// Where it appears in every node.
    path: String,
    /// Ticked: asked for by the values shown.
    checked: bool,
}

/// An image the form offers: of the library, or the server owner's own.
#[derive(Debug, Serialize)]
struct ImageChoice {
    id: String,
    name: String,
    description: String,
    desktop: bool,
    needs_gpu: bool,
    reference: String,
    /// The owner's own image, not (yet) in the library.
    private: bool,
    /// Needs a GPU on a host without one.
    unavailable: bool,
}

/// The limits the form shows, as the form's inputs want them.
#[derive(Debug, Serialize)]
struct SizeLimitsView {
    max_nodes: u32,
    min_cpus: String,
    max_cpus: String,
    min_memory: String,
    max_memory: String,
    /// `None`: GPUs present but not counted.
    max_gpus: Option<u32>,
    no_gpu: bool,
    max_storage: Option<String>,
}

/// Everything the spawn form template needs.
#[derive(Debug, Serialize)]
pub(crate) struct SpawnForm {
    /// Where the form posts (`/hub/spawn/{user}[/{server}]`, with `next` if any).
    action: String,
    /// The backend takes sizes (docker); `false`: only a Start button (local).
    sizes_configurable: bool,
    limits: Option<SizeLimitsView>,
    images: Vec<ImageChoice>,
    values: SpawnValues,
    /// The datasets the server's owner may read, to mount read-only on every node.
    datasets: Vec<DatasetChoice>,
    /// Why the last attempt was refused.
    error: Option<String>,
    /// The prices in force, for the projected cost per hour (none: no price).
    price: Option<super::billing::SpawnPrice>,
    /// The release policies the owner may choose for this start.
    release: Vec<ReleaseChoice>,
    /// The compute pools a start may choose (empty: the backend places servers itself).
    pools: Vec<String>,
}

/// `512M`, `2G`, `1.5G`: sizes in the syntax the form takes.
pub(crate) fn size_text(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (unit, div) in UNITS {
        if bytes >= div {
            // Exact enough for display: sizes are far below 2^53.
            let value = bytes as f64 / div as f64;
            return format!("{}{unit}", number_text(value));
        }
    }
    format!("{bytes}")
}

/// `1`, `0.5`, `2.25`: a number with at most two decimals.
pub(crate) fn number_text(x: f64) -> String {
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Which spawn form to show.
pub(crate) struct FormRequest<'a> {
    /// The server's owner.
    pub user: &'a str,
    /// The server's name (empty: the default server).
    pub server: &'a str,
    /// The server's row, for the previous options.
    pub row: Option<&'a ServerRow>,
    /// Values typed in a refused attempt.
    pub values: Option<SpawnValues>,
    /// An image to preselect (from a Start link on the images page).
    pub wanted_image: Option<&'a str>,
    /// Why the last attempt was refused.
    pub error: Option<String>,
    /// Where to go once started.
    pub next: Option<&'a str>,
}

/// The spawn form of a user's server: values as typed (`values`), else those of the server's
/// previous start, else the backend's defaults; `wanted_image` (an id) is preselected if
/// startable. The images are the library's and the server owner's own.
pub(crate) async fn spawn_form(
    hub: &Services,
    req: FormRequest<'_>,
) -> Result<SpawnForm, PageError> {
    let mut action = super::spawn::spawn_path(req.user, req.server);
    if let Some(next) = req.next {
        action = format!("{action}?{}", super::encode_query(&[("next", next)]));
    }
    let owner = hub.store.user(req.user).await?;
    let previous = || {
        req.row
            .and_then(|r| serde_json::from_str::<Value>(&r.user_options).ok())
            .map(|o| SpawnValues::from_options(&o))
            .unwrap_or_default()
    };
    let readable = match &owner {
        Some(owner) => crate::domain::datasets::readable_for_spawn(hub, owner).await?,
        None => Vec::new(),
    };
    let Some(sizes) = clusters::size_choices(hub) else {
        let values = req.values.unwrap_or_else(previous);
        return Ok(SpawnForm {
            action,
            sizes_configurable: false,
            limits: None,
            images: Vec::new(),
            datasets: dataset_choices(readable, &values.datasets),
            release: release_choices(hub, owner.as_ref(), &values.release_policy).await?,
            values,
            error: req.error,
            price: None,
            pools: Vec::new(),
        });
    };
    let no_gpu = sizes.max_gpus == Some(0);
    // The library and the server owner's own images (usable as soon as they are saved).
    let filter = match &owner {
        Some(owner) => ImageFilter::StartableBy(owner.id),
        None => ImageFilter::Startable,
    };
    let mut rows = hub.store.list_images(filter).await?;
    // Jupyter images first: the usual choice, and the first is the default; library images
    // before one's own.
    rows.sort_by_cached_key(|i| {
        (
            i.kind != ImageKind::Jupyter,
            i.visibility != Visibility::Library,
            i.name.to_lowercase(),
        )
    });
    let images: Vec<ImageChoice> = rows.iter().map(|row| image_choice(row, no_gpu)).collect();
    let values = match req.values {
        Some(v) => v,
        None => with_defaults(previous(), &sizes, &images, req.wanted_image),
    };
    Ok(SpawnForm {
        action,
        sizes_configurable: true,
        limits: Some(limits_view(&sizes)),
        images,
        datasets: dataset_choices(readable, &values.datasets),
        release: release_choices(hub, owner.as_ref(), &values.release_policy).await?,
        values,
        error: req.error,
        price: super::billing::spawn_price(hub).await?,
        pools: pool_choices(hub).await?,
    })
}

/// The compute pools a start may choose: the defined ones, where the backend places servers by
/// pool.
pub(super) async fn pool_choices(hub: &Services) -> Result<Vec<String>, PageError> {
    if !hub.spawner.capabilities().compute_pools {
        return Ok(Vec::new());
    }
    let pools = hub.store.list_compute_pools().await?;
    Ok(pools.into_iter().map(|p| p.name).collect())
}

/// The datasets the owner may read (`owner/name`, sorted), ticked where `wanted` names them.
/// One no longer readable is not offered, so it is not asked for again.
fn dataset_choices(readable: Vec<String>, wanted: &[String]) -> Vec<DatasetChoice> {
    readable
        .into_iter()
        .map(|name| DatasetChoice {
            path: format!("/home/jovyan/datasets/{name}"),
            checked: wanted.contains(&name),
            name,
        })
        .collect()
}

fn image_choice(row: &ImageRow, no_gpu: bool) -> ImageChoice {
    ImageChoice {
        id: row.id.to_string(),
        name: row.name.clone(),
        description: row.description.clone(),
        desktop: row.kind == ImageKind::Desktop,
        needs_gpu: row.needs_gpu != 0,
        reference: crate::domain::images::reference(row),
        private: row.visibility != Visibility::Library,
        unavailable: no_gpu && row.needs_gpu != 0,
    }
}

fn limits_view(s: &SizeChoices) -> SizeLimitsView {
    SizeLimitsView {
        max_nodes: s.max_nodes,
        min_cpus: number_text(s.min_cpus),
        max_cpus: number_text(s.max_cpus),
        min_memory: size_text(s.min_memory_bytes),
        max_memory: size_text(s.max_memory_bytes),
        max_gpus: s.max_gpus,
        no_gpu: s.max_gpus == Some(0),
        max_storage: s.max_storage_bytes.map(size_text),
    }
}

/// Fills what the previous start left empty with the backend's defaults, and picks the image:
/// the wanted one, else the previous one, else the first that can start here.
fn with_defaults(
    mut v: SpawnValues,
    sizes: &SizeChoices,
    images: &[ImageChoice],
    wanted: Option<&str>,
) -> SpawnValues {
    let startable = |id: &str| images.iter().any(|i| i.id == id && !i.unavailable);
    v.image = match wanted.map(str::trim) {
        Some(w) if startable(w) => w.to_owned(),
        _ if startable(&v.image) => v.image,
        _ => images
            .iter()
            .find(|i| !i.unavailable)
            .map(|i| i.id.clone())
            .unwrap_or_default(),
    };
    if v.nodes.is_empty() {
        v.nodes = "1".into();
    }
    if v.cpus.is_empty() {
        v.cpus = number_text(sizes.default_cpus);
    }
    if v.memory.is_empty() {
        v.memory = size_text(sizes.default_memory_bytes);
    }
    let needs_gpu = images.iter().any(|i| i.id == v.image && i.needs_gpu);
    if v.gpus.is_empty() || (needs_gpu && v.gpus == "0") {
        v.gpus = if needs_gpu { "1" } else { "0" }.into();
    }
    v
}

/// A node of a running cluster as the pages show it.
#[derive(Debug, Serialize)]
struct NodeView {
    /// 0 for node-0.
    index: usize,
    name: String,
    /// Its public URL path (`/user/alice/node-1/`).
    url: String,
    /// `{url}lab`.
    lab_url: String,
    /// `{url}desktop/` for desktop images.
    desktop_url: Option<String>,
}

/// The size of a cluster's nodes.
#[derive(Debug, Serialize)]
struct SizeView {
    nodes: u32,
    cpus: String,
    memory: String,
    gpus: u32,
    storage: Option<String>,
}

/// A running cluster: its image, size and nodes.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterView {
    image_name: Option<String>,
    desktop: bool,
    size: Option<SizeView>,
    nodes: Vec<NodeView>,
    /// `POST` here saves a node as an image (the save-image API).
    save_image_api: String,
}

/// What the pages show of a server's cluster; `None` for a server without nodes (a single
/// process of the local backend) or one that is not running.
pub(crate) async fn cluster_view(
    hub: &Services,
    user: &str,
    row: &ServerRow,
) -> Result<Option<ClusterView>, PageError> {
    if row.status != ServerStatus::Running {
        return Ok(None);
    }
    let nodes = clusters::nodes_of(hub.spawner.as_ref(), row.state.as_deref());
    if nodes.is_empty() {
        return Ok(None);
    }
    let options: Value = serde_json::from_str(&row.user_options).unwrap_or(Value::Null);
    let image = match options.get("image_id").and_then(Value::as_i64) {
        Some(id) => hub.store.image(id).await?,
        None => None,
    };
    let desktop = image.as_ref().is_some_and(|i| i.kind == ImageKind::Desktop);
    let image_name = image.map(|i| i.name).or_else(|| {
        ["image_name", "image"]
            .iter()
            .find_map(|k| options.get(*k).and_then(Value::as_str).map(str::to_owned))
    });
    let size = match ClusterRequest::from_user_options(&options) {
        Ok(request) => hub.spawner.validate(&request).await.ok(),
        Err(_) => None,
    };
    let size = size.map(|r| SizeView {
        nodes: r.nodes,
        cpus: r.cpus.map(number_text).unwrap_or_default(),
        memory: r.memory_bytes.map(size_text).unwrap_or_default(),
        gpus: r.gpus,
        storage: r.storage_bytes.map(size_text),
    });
    let prefix = service_prefix(user, &row.name);
    let nodes = nodes
        .into_iter()
        .enumerate()
        .map(|(index, node)| {
            // Node-0 is served at the server's own prefix.
            let url = if node.service_prefix.is_empty() {
                prefix.clone()
            } else {
                node.service_prefix
            };
            NodeView {
                index,
                lab_url: format!("{url}lab"),
                desktop_url: desktop.then(|| format!("{url}desktop/")),
                name: node.name,
                url,
            }
        })
        .collect();
    let user_q = url_quote(user);
    let save_image_api = if row.name.is_empty() {
        format!("/hub/api/users/{user_q}/server/save-image")
    } else {
        format!(
            "/hub/api/users/{user_q}/servers/{}/save-image",
            url_quote(&row.name)
        )
    };
    Ok(Some(ClusterView {
        image_name,
        desktop,
        size,
        nodes,
        save_image_api,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_the_form_takes_them() {
        assert_eq!(size_text(2 << 30), "2G");
        assert_eq!(size_text(512 << 20), "512M");
        assert_eq!(size_text(3 << 29), "1.5G");
        assert_eq!(number_text(1.0), "1");
        assert_eq!(number_text(0.5), "0.5");
        assert_eq!(number_text(0.1 + 0.2), "0.3");
    }

    #[test]
    fn only_filled_in_fields_become_user_options() {
        let form: Vec<(String, String)> = [("_xsrf", "x"), ("nodes", " 2 "), ("storage", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let values = SpawnValues::from_pairs(&form).unwrap();
        assert_eq!(values.nodes, "2");
        assert_eq!(values.user_options(), serde_json::json!({"nodes": "2"}));
        let bare = vec![("_xsrf".to_owned(), "x".to_owned())];
        assert_eq!(SpawnValues::from_pairs(&bare), None);
    }

    #[test]
    fn ticked_datasets_arrive_repeated_and_an_offer_without_ticks_asks_for_none() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let values = SpawnValues::from_pairs(&pairs(&[
            ("_xsrf", "x"),
            ("nodes", "2"),
            ("datasets_offered", "1"),
            ("dataset", "alice/mnist"),
            ("dataset", "bob/数据"),
            ("dataset", "alice/mnist"),
        ]))
        .unwrap();
        assert_eq!(values.datasets, ["alice/mnist", "bob/数据"]);
        assert_eq!(
            values.user_options(),
            serde_json::json!({"nodes": "2", "datasets": ["alice/mnist", "bob/数据"]})
        );
        // Every box unticked (the local backend's form has nothing else): no dataset, not the
        // previous start's.
        let none =
            SpawnValues::from_pairs(&pairs(&[("_xsrf", "x"), ("datasets_offered", "1")])).unwrap();
        assert_eq!(none.user_options(), serde_json::json!({"datasets": []}));
        // A bare Start button still reuses the previous options.
        assert_eq!(SpawnValues::from_pairs(&pairs(&[("_xsrf", "x")])), None);
        // A previous start's datasets tick the boxes again; unreadable ones are not offered.
        let previous = SpawnValues::from_options(&serde_json::json!({
            "datasets": ["alice/mnist", "carol/secret"]
        }));
        let choices = dataset_choices(
            vec!["alice/mnist".into(), "bob/数据".into()],
            &previous.datasets,
        );
        let shown: Vec<(&str, bool)> = choices
            .iter()
            .map(|c| (c.name.as_str(), c.checked))
            .collect();
        assert_eq!(shown, [("alice/mnist", true), ("bob/数据", false)]);
        assert_eq!(choices[0].path, "/home/jovyan/datasets/alice/mnist");
    }

    #[test]
    fn a_previous_start_fills_the_form_again() {
        let v = SpawnValues::from_options(&serde_json::json!({
            "image": "r/x:1", "image_id": 7, "nodes": "3", "cpus": 0.5, "memory": ["2G"]
        }));
        assert_eq!(
            (
                v.image.as_str(),
                v.nodes.as_str(),
                v.cpus.as_str(),
                v.memory.as_str()
            ),
            ("7", "3", "0.5", "2G")
        );
    }
}
