//! The hub's modules depend on each other in one direction only, as ARCHITECTURE.md draws
//! them: `app` → `router` → `api`/`web`/`desktop`/`jobs` → `error` → `http` → `domain` → `db`,
//! with `rbac`, `config` and `clock` at the bottom; so no circle of imports can form. Read from
//! the sources' own `crate::` paths.

use std::collections::BTreeSet;
use std::path::Path;

/// Each module's layer: a module may use the modules of lower layers only. `router` is the
/// item of lib.rs that joins the HTTP faces; `lib` is lib.rs itself.
const LAYERS: &[(&str, u8)] = &[
    ("clock", 0),
    ("config", 0),
    ("rbac", 0),
    ("db", 1),
    ("domain", 2),
    ("http", 3),
    ("error", 4),
    ("api", 5),
    ("web", 5),
    ("desktop", 5),
    ("jobs", 5),
    ("router", 6),
    ("app", 7),
    ("lib", 8),
];

/// Same-layer uses that are allowed: the desktop page is rendered with the pages' templates.
const ALLOWED_SIDEWAYS: &[(&str, &str)] = &[("desktop", "web")];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// Every `.rs` file under `dir`, except test modules.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with("tests.rs")
        {
            out.push(path);
        }
    }
}

/// The top-level modules named as `crate::<name>` in `text`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .map(|(i, _)| {
            text[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut wrong = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap();
        let first = relative.components().next().unwrap();
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        let module = if module == "main" {
            "lib".to_owned()
        } else {
            module
        };
        let Some(own) = layer(&module) else {
            panic!(
                "{} is in no layer: add its module to LAYERS",
                relative.display()
            );
        };
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests at the end of a file may reach anywhere.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for used in crate_paths(code) {
            if used == module {
                continue;
            }
            let Some(theirs) = layer(&used) else {
                panic!(
                    "{} uses crate::{used}, which is in no layer",
                    relative.display()
                );
            };
            let sideways = ALLOWED_SIDEWAYS.contains(&(module.as_str(), used.as_str()));
            if theirs >= own && !sideways {
                wrong.push(format!(
                    "{} ({module}, layer {own}) uses crate::{used} (layer {theirs})",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses against the layering:\n{}",
        wrong.join("\n")
    );
}
