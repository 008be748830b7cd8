//! What a spawn request asks for and the checks that reject impossible requests with a message
//! saying what to change: `user_options` → [`ClusterRequest`] (read once, where the request
//! arrives) → [`ResourceLimits::admit`] → [`ClusterResources`] (defaults filled in, held against
//! what the backend can give).
//!
//! Accepted `user_options` keys (others are ignored, so the hub may add its own):
//!
//! | key | meaning | examples |
//! | --- | --- | --- |
//! | `image` | image reference to run | `"127.0.0.1:5000/xiji/base-notebook:latest"` |
//! | `nodes` | number of nodes | `2`, `"2"` |
//! | `cpus` | CPU cores per node (fractions allowed) | `1`, `0.5`, `"2"` |
//! | `memory` | memory per node; a bare number is GiB | `2`, `"512M"`, `"2G"`, `"1.5GiB"` |
//! | `gpus` | GPUs per node | `0`, `1` |
//! | `storage` | writable-layer size per node; a bare number is GiB | `10`, `"20G"` |
//!
//! Sizes use powers of 1024 (`K`, `M`, `G`, `T`, with or without `i`/`B`). Every value may also
//! be a one-element list, as HTML form data arrives (`{"nodes": ["2"]}`).

use crate::SpawnerError;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// A spawn request's image and sizes as the user asked for them, read and type-checked; what
/// the request leaves out is `None`. Holding it against a backend's limits
/// ([`ResourceLimits::admit`]) gives the [`ClusterResources`] to start.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterRequest {
    /// The image asked for, as given (a reference; the hub also accepts a library id or name
    /// and replaces it with the reference before the backend sees it).
    pub image: Option<String>,
    /// Number of nodes.
    pub nodes: Option<u32>,
    /// CPU cores per node.
    pub cpus: Option<f64>,
    /// Memory per node in bytes.
    pub memory_bytes: Option<u64>,
    /// GPUs per node.
    pub gpus: Option<u32>,
    /// Size of each node's writable layer in bytes.
    pub storage_bytes: Option<u64>,
    /// The compute pool to run on (backends with several machines); `None`: the default.
    #[serde(default)]
    pub pool: Option<String>,
}

impl ClusterRequest {
    /// Reads a spawn request's `user_options` (see the module docs for the keys; others are
    /// ignored). [`SpawnerError::Rejected`] says which value cannot be read and how to write it.
    pub fn from_user_options(user_options: &serde_json::Value) -> Result<Self, SpawnerError> {
        let options = Options::new(user_options)?;
        Ok(Self {
            image: options.image("image")?,
            nodes: options.count("nodes")?,
            cpus: options.number("cpus")?,
            memory_bytes: options.size("memory")?,
            gpus: options.count("gpus")?,
            storage_bytes: options.size("storage")?,
            pool: options.pool("pool")?,
        })
    }
}

/// The request that asks for exactly these resources (to check them again).
impl From<&ClusterResources> for ClusterRequest {
    fn from(r: &ClusterResources) -> Self {
        Self {
            image: r.image.clone(),
            nodes: Some(r.nodes),
            cpus: r.cpus,
            memory_bytes: r.memory_bytes,
            gpus: Some(r.gpus),
            storage_bytes: r.storage_bytes,
            pool: r.pool.clone(),
        }
    }
}

/// The resources of a virtual cluster: `nodes` identical nodes of the given size.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterResources {
    /// Image to run; `None`: the backend's default.
    pub image: Option<String>,
    /// Number of nodes, at least 1.
    pub nodes: u32,
    /// CPU cores per node; `None`: no limit.
    pub cpus: Option<f64>,
    /// Memory per node in bytes (a hard limit, no swap); `None`: no limit.
    pub memory_bytes: Option<u64>,
    /// GPUs per node.
    pub gpus: u32,
    /// Size of each node's writable layer in bytes; `None`: no limit.
    pub storage_bytes: Option<u64>,
    /// The compute pool to run on; `None`: the backend's default (backends with one machine
    /// ignore it).
    #[serde(default)]
    pub pool: Option<String>,
}

impl ClusterResources {
    /// One node, no limits: what single-node backends that ignore `user_options` run.
    pub fn single_node() -> Self {
        Self {
            image: None,
            nodes: 1,
            cpus: None,
            memory_bytes: None,
            gpus: 0,
            storage_bytes: None,
            pool: None,
        }
    }
}

/// What a backend can give, and its defaults for what a request leaves out.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceLimits {
    /// Most nodes one cluster may have.
    pub max_nodes: u32,
    /// CPU cores of the host; the whole cluster must fit (`nodes × cpus`).
    pub host_cpus: f64,
    /// Memory of the host in bytes; the whole cluster must fit (`nodes × memory`).
    pub host_memory_bytes: u64,
    /// GPUs of the host: `Some(0)` none, `None` present but not counted.
    pub host_gpus: Option<u32>,
    /// Smallest memory per node (below it the single-user server cannot run).
    pub min_memory_bytes: u64,
    /// Smallest CPU share per node.
    pub min_cpus: f64,
    /// Largest storage per node.
    pub max_storage_bytes: u64,
    /// CPU cores per node when the request does not say.
    pub default_cpus: f64,
    /// Memory per node when the request does not say.
    pub default_memory_bytes: u64,
}

impl ResourceLimits {
    /// Checks a request against these limits; the result has the defaults filled in.
    pub fn admit(&self, request: &ClusterRequest) -> Result<ClusterResources, SpawnerError> {
        let image = request.image.clone();
        let nodes = request.nodes.unwrap_or(1);
        let cpus = request.cpus.unwrap_or(self.default_cpus);
        let memory = request.memory_bytes.unwrap_or(self.default_memory_bytes);
        let gpus = request.gpus.unwrap_or(0);
        let storage = request.storage_bytes;

        if nodes == 0 {
            return Err(reject(
                "a cluster needs at least 1 node: ask for 1 or more nodes",
            ));
        }
        if nodes > self.max_nodes {
            return Err(reject(format!(
                "{nodes} nodes is more than this host allows: ask for at most {} nodes",
                self.max_nodes
            )));
        }
        if cpus < self.min_cpus {
            return Err(reject(format!(
                "{cpus} CPU cores per node is too little: ask for at least {} cores",
                self.min_cpus
            )));
        }
        let total_cpus = cpus * f64::from(nodes);
        if total_cpus > self.host_cpus + 1e-9 {
            return Err(reject(format!(
                "{nodes} nodes × {cpus} CPU cores = {total_cpus} cores, but this host has {} \
                 cores: ask for fewer nodes or at most {} cores per node",
                self.host_cpus,
                round_down(self.host_cpus / f64::from(nodes))
            )));
        }
        if memory < self.min_memory_bytes {
            return Err(reject(format!(
                "{} of memory per node is too little: ask for at least {}",
                human_size(memory),
                human_size(self.min_memory_bytes)
            )));
        }
        let total_memory = memory.saturating_mul(u64::from(nodes));
        if total_memory > self.host_memory_bytes {
            return Err(reject(format!(
                "{nodes} nodes × {} of memory = {}, but this host has {}: ask for fewer nodes \
                 or at most {} per node",
                human_size(memory),
                human_size(total_memory),
                human_size(self.host_memory_bytes),
                human_size(self.host_memory_bytes / u64::from(nodes))
            )));
        }
        if gpus > 0 {
            match self.host_gpus {
                Some(0) => {
                    return Err(reject(
                        "this host has no GPU: ask for 0 GPUs, or choose an image that does \
                         not need one",
                    ))
                }
                Some(available) if u64::from(gpus) * u64::from(nodes) > u64::from(available) => {
                    return Err(reject(format!(
                        "{nodes} nodes × {gpus} GPUs is more than the {available} GPUs of \
                         this host: ask for fewer nodes or GPUs"
                    )))
                }
                _ => {}
            }
        }
        if let Some(storage) = storage {
            if storage < GIB {
                return Err(reject(format!(
                    "{} of storage per node is too little: ask for at least 1G",
                    human_size(storage)
                )));
            }
            if storage > self.max_storage_bytes {
                return Err(reject(format!(
                    "{} of storage per node is more than allowed: ask for at most {}",
                    human_size(storage),
                    human_size(self.max_storage_bytes)
                )));
            }
        }
        Ok(ClusterResources {
            image,
            nodes,
            cpus: Some(cpus),
            memory_bytes: Some(memory),
            gpus,
            storage_bytes: storage,
            pool: request.pool.clone(),
        })
    }
}

/// Checks that `image` can be an image reference, and that it is one of `allowed` when the
/// configuration lists the images it offers: [`SpawnerError::Rejected`] otherwise.
pub(crate) fn check_image(image: &str, allowed: Option<&[String]>) -> Result<(), SpawnerError> {
    let plausible = !image.is_empty()
        && image.len() <= 255
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
        && !image.starts_with(['-', '/', ':', '@']);
    if !plausible {
        return Err(SpawnerError::Rejected(format!(
            "\"{image}\" is not an image reference: choose an image from the library"
        )));
    }
    if allowed.is_some_and(|list| !list.iter().any(|a| a == image)) {
        return Err(SpawnerError::Rejected(format!(
            "the image \"{image}\" is not offered here: choose an image from the library"
        )));
    }
    Ok(())
}

/// Whether `name` can name a compute pool: 1 to 63 lower-case ASCII letters, digits and `-`,
/// starting and ending with a letter or digit (it is a Kubernetes label value).
pub fn is_pool_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'-')
}

fn reject(message: impl Into<String>) -> SpawnerError {
    SpawnerError::Rejected(message.into())
}

/// `2.5` for 2.54; CPU counts in messages.
fn round_down(x: f64) -> f64 {
    (x * 100.0).floor() / 100.0
}

/// `512M`, `2G`, `1.5G`: sizes in messages, in the syntax requests use.
pub(crate) fn human_size(bytes: u64) -> String {
    let (unit, div) = if bytes >= TIB {
        ("T", TIB)
    } else if bytes >= GIB {
        ("G", GIB)
    } else if bytes >= MIB {
        ("M", MIB)
    } else if bytes >= KIB {
        ("K", KIB)
    } else {
        return format!("{bytes} bytes");
    };
    // Sizes are far below 2^53, so the conversion to f64 is exact enough for a message.
    #[allow(clippy::cast_precision_loss)]
    let value = bytes as f64 / div as f64;
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

/// `user_options` as an object, with one-element lists unwrapped.
struct Options<'a> {
    map: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl<'a> Options<'a> {
    fn new(value: &'a serde_json::Value) -> Result<Self, SpawnerError> {
        match value {
            serde_json::Value::Null => Ok(Self { map: None }),
            serde_json::Value::Object(map) => Ok(Self { map: Some(map) }),
            _ => Err(reject("user_options must be a JSON object")),
        }
    }

    fn get(&self, key: &str) -> Result<Option<&'a serde_json::Value>, SpawnerError> {
        let Some(value) = self.map.and_then(|m| m.get(key)) else {
            return Ok(None);
        };
        let value = match value {
            serde_json::Value::Array(items) if items.len() == 1 => &items[0],
            serde_json::Value::Array(_) => {
                return Err(reject(format!("{key}: give one value, not a list")))
            }
            other => other,
        };
        match value {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) if s.trim().is_empty() => Ok(None),
            other => Ok(Some(other)),
        }
    }

    /// An image: a reference or name (a string), or a library id (a number).
    fn image(&self, key: &str) -> Result<Option<String>, SpawnerError> {
        match self.get(key)? {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(reject(format!(
                "{key} must be an image id, name or reference from the image library, not {other}"
            ))),
        }
    }

    /// A compute pool's name: 1 to 63 lower-case letters, digits and `-`, starting and ending
    /// with a letter or digit (a Kubernetes label value).
    fn pool(&self, key: &str) -> Result<Option<String>, SpawnerError> {
        let name = match self.get(key)? {
            None => return Ok(None),
            Some(serde_json::Value::String(s)) => s.trim().to_owned(),
            Some(other) => {
                return Err(reject(format!(
                    "{key} must be the name of a compute pool, not {other}"
                )))
            }
        };
        if is_pool_name(&name) {
            Ok(Some(name))
        } else {
            Err(reject(format!(
                "{key} {name:?} is not a compute pool name: use 1 to 63 lower-case letters, \
                 digits and '-', starting and ending with a letter or digit"
            )))
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>, SpawnerError> {
        let value = match self.get(key)? {
            None => return Ok(None),
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match value {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
            Some(x) if x.is_finite() => Err(reject(format!(
                "{key} cannot be negative ({x}): ask for a positive number"
            ))),
            _ => Err(reject(format!("{key} must be a number, e.g. 1 or 0.5"))),
        }
    }

    fn count(&self, key: &str) -> Result<Option<u32>, SpawnerError> {
        let Some(x) = self.number(key)? else {
            return Ok(None);
        };
        if x.fract() != 0.0 || x > f64::from(u32::MAX) {
            return Err(reject(format!(
                "{key} must be a whole number, e.g. 2 (got {x})"
            )));
        }
        // Checked above: a whole number in 0..=u32::MAX.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(Some(x as u32))
    }

    fn size(&self, key: &str) -> Result<Option<u64>, SpawnerError> {
        match self.get(key)? {
            None => Ok(None),
            Some(serde_json::Value::Number(n)) => match n.as_f64() {
                Some(gib) => gib_to_bytes(key, gib).map(Some),
                None => Err(reject(format!("{key}: not a number"))),
            },
            Some(serde_json::Value::String(s)) => parse_size(key, s).map(Some),
            Some(other) => Err(reject(format!(
                "{key} must be a size like \"2G\" or \"512M\", not {other}"
            ))),
        }
    }
}

fn gib_to_bytes(key: &str, gib: f64) -> Result<u64, SpawnerError> {
    scaled(key, gib, GIB)
}

fn scaled(key: &str, value: f64, unit: u64) -> Result<u64, SpawnerError> {
    if !value.is_finite() {
        return Err(reject(format!("{key}: not a size")));
    }
    if value < 0.0 {
        return Err(reject(format!(
            "{key} cannot be negative: ask for a size like \"2G\""
        )));
    }
    // Units are powers of two below 2^41: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let bytes = value * unit as f64;
    if bytes >= 1.0e18 {
        return Err(reject(format!(
            "{key} is absurdly large: ask for a size like \"2G\""
        )));
    }
    // Finite, non-negative and below 2^60: fits u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes.round() as u64)
}

/// `"512M"`, `"2G"`, `"1.5GiB"`, `"2 gb"`, `"3"` (GiB).
fn parse_size(key: &str, text: &str) -> Result<u64, SpawnerError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        reject(format!(
            "{key}: cannot read \"{text}\"; write a size like \"2G\" or \"512M\""
        ))
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let multiplier = match unit {
        "" if number.len() == text.len() => GIB,
        "" => 1,
        "k" => KIB,
        "m" => MIB,
        "g" => GIB,
        "t" => TIB,
        _ => return Err(bad()),
    };
    scaled(key, value, multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_must_be_references_and_allowed() {
        assert!(check_image("registry:5000/xiji/base-notebook:latest", None).is_ok());
        assert!(check_image("-rf", None).is_err());
        assert!(check_image("a b", None).is_err());
        let allowed = ["x:1".to_owned()];
        assert!(check_image("x:1", Some(&allowed)).is_ok());
        assert!(check_image("x:2", Some(&allowed)).is_err());
    }
    use serde_json::json;

    fn limits() -> ResourceLimits {
        ResourceLimits {
            max_nodes: 16,
            host_cpus: 8.0,
            host_memory_bytes: 32 * GIB,
            host_gpus: Some(0),
            min_memory_bytes: 128 * MIB,
            min_cpus: 0.1,
            max_storage_bytes: TIB,
            default_cpus: 1.0,
            default_memory_bytes: GIB,
        }
    }

    /// Reads `options` as a request, then holds it against `limits`.
    fn admit(
        limits: &ResourceLimits,
        options: &serde_json::Value,
    ) -> Result<ClusterResources, SpawnerError> {
        limits.admit(&ClusterRequest::from_user_options(options)?)
    }

    fn rejection(options: serde_json::Value) -> String {
        match admit(&limits(), &options) {
            Err(SpawnerError::Rejected(message)) => message,
            other => panic!("expected a rejection for {options}, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_request_is_one_node_of_the_default_size() {
        let r = admit(&limits(), &json!({})).unwrap();
        assert_eq!(r.nodes, 1);
        assert_eq!(r.cpus, Some(1.0));
        assert_eq!(r.memory_bytes, Some(GIB));
        assert_eq!(r.gpus, 0);
        assert_eq!(r.storage_bytes, None);
        assert_eq!(admit(&limits(), &serde_json::Value::Null).unwrap(), r);
    }

    #[test]
    fn numbers_strings_units_and_form_lists_are_read() {
        let r = admit(
            &limits(),
            &json!({"image": "x/y:1", "nodes": ["2"], "cpus": "1.5", "memory": "512M",
                      "storage": 10, "gpus": "0"}),
        )
        .unwrap();
        assert_eq!(r.image.as_deref(), Some("x/y:1"));
        assert_eq!(r.nodes, 2);
        assert_eq!(r.cpus, Some(1.5));
        assert_eq!(r.memory_bytes, Some(512 * MIB));
        assert_eq!(r.storage_bytes, Some(10 * GIB));
        for (text, bytes) in [
            ("2G", 2 * GIB),
            ("2GiB", 2 * GIB),
            ("2 gb", 2 * GIB),
            ("1.5G", 3 * GIB / 2),
            ("3", 3 * GIB),
            ("1048576000b", 1_048_576_000),
        ] {
            assert_eq!(parse_size("memory", text).unwrap(), bytes, "{text}");
        }
    }

    #[test]
    fn impossible_requests_say_what_to_change() {
        assert!(rejection(json!({"nodes": 0})).contains("at least 1 node"));
        assert!(rejection(json!({"nodes": 17})).contains("at most 16 nodes"));
        assert!(rejection(json!({"nodes": 1.5})).contains("whole number"));
        assert!(rejection(json!({"cpus": -1})).contains("negative"));
        assert!(rejection(json!({"cpus": 0})).contains("at least 0.1 cores"));
        let m = rejection(json!({"nodes": 4, "cpus": 4}));
        assert!(
            m.contains("this host has 8 cores") && m.contains("at most 2 cores"),
            "{m}"
        );
        let m = rejection(json!({"nodes": 2, "memory": "20G"}));
        assert!(
            m.contains("this host has 32G") && m.contains("at most 16G per node"),
            "{m}"
        );
        assert!(rejection(json!({"memory": "1M"})).contains("at least 128M"));
        assert!(rejection(json!({"memory": "-2G"})).contains("negative"));
        assert!(rejection(json!({"memory": "lots"})).contains("like \"2G\""));
        assert!(rejection(json!({"memory": 1e300})).contains("absurdly large"));
        assert!(rejection(json!({"gpus": 1})).contains("no GPU"));
        assert!(rejection(json!({"storage": "10M"})).contains("at least 1G"));
        assert!(rejection(json!({"nodes": [1, 2]})).contains("one value"));
        assert!(rejection(json!([1])).contains("JSON object"));
    }

    #[test]
    fn gpus_are_counted_when_the_host_count_is_known() {
        let mut l = limits();
        l.host_gpus = Some(2);
        assert!(admit(&l, &json!({"nodes": 2, "gpus": 1})).is_ok());
        assert!(matches!(
            admit(&l, &json!({"nodes": 3, "gpus": 1})),
            Err(SpawnerError::Rejected(m)) if m.contains("2 GPUs of this host")
        ));
        l.host_gpus = None;
        assert!(admit(&l, &json!({"nodes": 3, "gpus": 1})).is_ok());
    }

    #[test]
    fn sizes_print_in_request_syntax() {
        assert_eq!(human_size(512 * MIB), "512M");
        assert_eq!(human_size(3 * GIB / 2), "1.5G");
        assert_eq!(human_size(100), "100 bytes");
    }
}
