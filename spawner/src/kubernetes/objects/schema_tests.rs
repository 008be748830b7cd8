//! Every object the backend writes, for a matrix of clusters, against the Kubernetes API's own
//! schemas of two versions (kubernetes-validate, strict), the API server's rules it leaves out
//! (`tests/kube/schemas/api_rules.py`) and Volcano's PodGroup CRD schema
//! (`tests/kube/schemas/podgroup-scheduling.volcano.sh-v1beta1.json`); and proof that each check
//! refuses a broken object. See `tests/kube/schemas/README.md`.
//!
//! The checks run with the kube venv's Python, `$XIJI_KUBE_PYTHON` (`tests/setup-env.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::{KubernetesConfig, Toleration};
use super::tests::{config, dataset, spec};
use super::{build, set_owner, ClusterNames, ClusterObjects, Gang, MIB};
use crate::{SecretFile, SpawnSpec};

/// The Kubernetes versions whose schemas every object must pass.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];
const FAKE_OWNER_UID: &str = "2f6c1a9e-8d4b-4c3a-9e1f-7b5d3c2a1f00";

fn kube_python() -> PathBuf {
    match std::env::var_os("XIJI_KUBE_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => panic!(
            "XIJI_KUBE_PYTHON is not set: run tests/setup-env.sh, then `. .cache/test-env.sh` \
             (it points at the kube venv with kubernetes-validate and jsonschema)"
        ),
    }
}

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kube/schemas")
}

/// One cluster of the matrix: its name, configuration, spec and gang.
struct Case {
    name: &'static str,
    cfg: KubernetesConfig,
    spec: SpawnSpec,
    gang: Gang,
}

/// Clusters that between them use every option of the builder.
fn matrix(root: &Path) -> Vec<Case> {
    let mut cases = Vec::new();

    cases.push(Case {
        name: "one-node",
        cfg: config(root),
        spec: spec(root, 1),
        gang: Gang::None,
    });

    let mut cfg = config(root);
    cfg.default_pool = Some("cpu".into());
    let mut sixteen = spec(root, 16);
    sixteen.resources.cpus = Some(0.5);
    sixteen.resources.memory_bytes = Some(1536 * MIB + 12345);
    cases.push(Case {
        name: "sixteen-fractional-default-pool",
        cfg,
        spec: sixteen,
        gang: Gang::None,
    });

    let mut cfg = config(root);
    cfg.gpu_resource = "amd.com/gpu".into();
    cfg.runtime_class = Some("rocm".into());
    cfg.tolerations = vec![
        Toleration {
            key: "dedicated".into(),
            operator: "Equal".into(),
            value: Some("xiji".into()),
            effect: Some("NoSchedule".into()),
        },
        Toleration {
            key: "maintenance".into(),
            operator: "Exists".into(),
            value: None,
            effect: None,
        },
    ];
    let mut gpus = spec(root, 2);
    gpus.resources.gpus = 2;
    gpus.resources.storage_bytes = Some(20 * 1024 * MIB);
    gpus.resources.pool = Some("mi300".into());
    gpus.resources.image = Some("registry.campus:5000/alice/rocm-notebook@sha256:0123".into());
    cases.push(Case {
        name: "gpus-storage-pool-tolerations",
        cfg,
        spec: gpus,
        gang: Gang::None,
    });

    let mut volumes = spec(root, 3);
    let work = root.join("nfs/homes/alice");
    std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("{}: {e}", work.display()));
    volumes.work_dir = Some(work);
    volumes.mounts = vec![
        dataset(root, "claim", "datasets/alice/mnist"),
        dataset(root, "nfs", "datasets/bob/cifar"),
        dataset(root, "host", "datasets/carol/imagenet"),
        dataset(root, "host", "datasets/carol/coco"),
    ];
    volumes.secret_files = vec![
        SecretFile::new("vnc-password", "pw-1234").unwrap_or_else(|e| panic!("{e}")),
        SecretFile::new("wandb.key", "k").unwrap_or_else(|e| panic!("{e}")),
    ];
    cases.push(Case {
        name: "every-volume-source-datasets-secret-files",
        cfg: config(root),
        spec: volumes,
        gang: Gang::None,
    });

    let mut cfg = config(root);
    cfg.sudo = false;
    cfg.image_pull_secrets = vec!["campus-registry".into()];
    cfg.environment
        .insert("HF_TOKEN".into(), "hf_secret_value".into());
    cfg.hub_pod_labels
        .insert("app.kubernetes.io/instance".into(), "xiji".into());
    cfg.scheduler_name = Some("campus-scheduler".into());
    let bundle = root.join("campus-ca.pem");
    std::fs::write(
        &bundle,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    cfg.ca_bundle = Some(bundle);
    let mut unicode = spec(root, 2);
    unicode.user = "王小明@example.org".into();
    unicode.server_name = "实验 GPU".into();
    unicode.service_prefix = "/user/%E7%8E%8B/x/".into();
    cases.push(Case {
        name: "sudo-off-unicode-names-scheduler-ca-bundle",
        cfg,
        spec: unicode,
        gang: Gang::None,
    });

    let mut volcano = spec(root, 4);
    volcano.resources.gpus = 1;
    volcano.resources.storage_bytes = Some(5 * 1024 * MIB);
    volcano.resources.cpus = Some(3.75);
    cases.push(Case {
        name: "volcano-gang",
        cfg: config(root),
        spec: volcano,
        gang: Gang::Volcano,
    });

    cases
}

/// Every object of `objects` (owned by a fake uid) as a JSON file in `dir`: the core objects,
/// the PodGroup if any, and the PodGroup's metadata as a ConfigMap's (its CRD schema says only
/// "object" of it).
struct Written {
    core: Vec<PathBuf>,
    pod_groups: Vec<PathBuf>,
}

fn write_objects(dir: &Path, case: &str, mut objects: ClusterObjects, written: &mut Written) {
    set_owner(&mut objects, FAKE_OWNER_UID);
    let write = |name: String, value: serde_json::Value| {
        let path = dir.join(format!("{case}-{name}.json"));
        let text = serde_json::to_string_pretty(&value).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    };
    written
        .core
        .push(write("configmap".into(), json(&objects.owner)));
    written
        .core
        .push(write("secret".into(), json(&objects.secret)));
    written
        .core
        .push(write("service".into(), json(&objects.service)));
    written
        .core
        .push(write("networkpolicy".into(), json(&objects.network_policy)));
    for (k, pod) in objects.pods.iter().enumerate() {
        written.core.push(write(format!("pod-{k}"), json(pod)));
    }
    if let Some(group) = objects.pod_group {
        let meta = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": group["metadata"].clone(),
        });
        written.core.push(write("podgroup-metadata".into(), meta));
        written.pod_groups.push(write("podgroup".into(), group));
    }
}

/// An object as JSON.
fn json(object: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(object).unwrap_or_else(|e| panic!("{e}"))
}

fn run(program: &Path, args: &[&str], files: &[PathBuf]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn kubernetes_validate(version: &str, files: &[PathBuf]) -> (bool, String) {
    run(
        &kube_python(),
        &["-m", "kubernetes_validate", "--strict", "-k", version],
        files,
    )
}

fn api_rules(files: &[PathBuf]) -> (bool, String) {
    let script = schemas_dir().join("api_rules.py");
    run(
        &kube_python(),
        &[script.to_str().unwrap_or_default()],
        files,
    )
}

/// Checks `files` against the PodGroup CRD's schema with `jsonschema`.
fn pod_group_schema(files: &[PathBuf]) -> (bool, String) {
    const CHECK: &str = "
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
bad = 0
for path in sys.argv[2:]:
    for error in validator.iter_errors(json.load(open(path))):
        print(f\"{path}: {'/'.join(map(str, error.absolute_path))}: {error.message}\")
        bad = 1
print(f'{len(sys.argv) - 2} PodGroups checked')
sys.exit(bad)
";
    let schema = schemas_dir().join("podgroup-scheduling.volcano.sh-v1beta1.json");
    run(
        &kube_python(),
        &["-c", CHECK, schema.to_str().unwrap_or_default()],
        files,
    )
}

fn build_matrix(root: &Path, out: &Path) -> Written {
    let mut written = Written {
        core: Vec::new(),
        pod_groups: Vec::new(),
    };
    for case in matrix(root) {
        let names = ClusterNames::new(&case.spec.user, &case.spec.server_name, "5e0c7a3b9d21");
        let objects = build(&case.cfg, &case.spec, &names, case.gang)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        write_objects(out, case.name, objects, &mut written);
    }
    written
}

#[test]
fn every_object_of_every_cluster_passes_the_schemas_of_kubernetes_1_33_and_1_37() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let written = build_matrix(root.path(), out.path());
    // 6 clusters, 28 pods between them, and the Volcano case's PodGroup.
    assert_eq!(written.core.len(), 6 * 4 + 28 + 1);
    assert_eq!(written.pod_groups.len(), 1);
    for version in KUBERNETES_VERSIONS {
        let (ok, output) = kubernetes_validate(version, &written.core);
        assert!(ok, "kubernetes-validate {version}:\n{output}");
        // A kind it has no schema for is only a warning: every file must have passed.
        assert_eq!(
            output.matches(" passed for resource ").count(),
            written.core.len(),
            "kubernetes-validate {version}:\n{output}"
        );
    }
    let (ok, output) = api_rules(&written.core);
    assert!(ok, "{output}");
    assert!(output.contains("53 objects, 0 problems"), "{output}");
    let (ok, output) = pod_group_schema(&written.pod_groups);
    assert!(ok, "{output}");
    assert!(output.contains("1 PodGroups checked"), "{output}");
}

/// A copy of `path` with `change` applied, next to it.
fn broken(path: &Path, suffix: &str, change: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let mut value: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    change(&mut value);
    let copy = path.with_file_name(format!("broken-{suffix}.json"));
    std::fs::write(&copy, value.to_string()).unwrap_or_else(|e| panic!("{e}"));
    copy
}

#[test]
fn each_check_refuses_a_broken_object() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let written = build_matrix(root.path(), out.path());
    let pod = written
        .core
        .iter()
        .find(|p| p.to_string_lossy().ends_with("one-node-pod-0.json"))
        .unwrap_or_else(|| panic!("no pod in {:?}", written.core));

    // A misspelled field: the strict schemas of both versions refuse it.
    let misspelled = broken(pod, "misspelled", |pod| {
        let container = &mut pod["spec"]["containers"][0];
        let probe = container["readinessProbe"].take();
        if let Some(fields) = container.as_object_mut() {
            fields.remove("readinessProbe");
            fields.insert("readinesProbe".into(), probe);
        }
    });
    for version in KUBERNETES_VERSIONS {
        let (ok, output) = kubernetes_validate(version, std::slice::from_ref(&misspelled));
        assert!(
            !ok,
            "kubernetes-validate {version} took a misspelled field:\n{output}"
        );
        assert!(output.contains("readinesProbe"), "{output}");
    }

    // A memory request of "lots": the schemas say only "string", the API server's rules refuse
    // it; so do they a label value no API server takes.
    let lots = broken(pod, "lots", |pod| {
        pod["spec"]["containers"][0]["resources"]["requests"]["memory"] = "lots".into();
        pod["metadata"]["labels"]["xiji.org/user"] = "王小明".into();
    });
    let (ok, output) = api_rules(std::slice::from_ref(&lots));
    assert!(!ok, "{output}");
    assert!(output.contains("'lots' is not a quantity"), "{output}");
    assert!(output.contains("is not a label value"), "{output}");

    // A PodGroup with a negative minMember and an unknown field.
    let group = broken(&written.pod_groups[0], "podgroup", |group| {
        group["spec"]["minMember"] = (-1).into();
        group["spec"]["minMembers"] = 4.into();
    });
    let (ok, output) = pod_group_schema(std::slice::from_ref(&group));
    assert!(!ok, "{output}");
    assert!(output.contains("minMember"), "{output}");
    assert!(output.contains("minMembers"), "{output}");
}
