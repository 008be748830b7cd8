//! Scope definitions: JupyterHub 5.5.1's built-in scopes, configured `custom:` scopes,
//! and validation of scope strings.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::Deserialize;

use super::RbacError;

/// One built-in scope: its name, a short description (shown on the OAuth consent page) and the
/// scopes it directly implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinScope {
    /// The scope name, e.g. `read:users`.
    pub name: &'static str,
    /// A one-line description for people.
    pub description: &'static str,
    /// Scopes directly implied by this one (expanded recursively).
    pub subscopes: &'static [&'static str],
}

const fn scope(
    name: &'static str,
    description: &'static str,
    subscopes: &'static [&'static str],
) -> BuiltinScope {
    BuiltinScope {
        name,
        description,
        subscopes,
    }
}

/// Every scope JupyterHub 5.5.1 defines, with its direct subscopes.
pub const BUILTIN_SCOPES: &[BuiltinScope] = &[
    scope("(no_scope)", "Identify who owns the request.", &[]),
    scope("self", "Everything about your own account.", &[]),
    scope("inherit", "Everything the owner of the token can do.", &[]),
    scope("admin-ui", "Open the admin page.", &[]),
    scope(
        "admin:users",
        "Manage users, including their authentication state (superuser-equivalent).",
        &[
            "admin:auth_state",
            "users",
            "read:roles:users",
            "delete:users",
        ],
    ),
    scope("admin:auth_state", "Read users' authentication state.", &[]),
    scope(
        "users",
        "Read and change user models.",
        &["read:users", "list:users", "users:activity"],
    ),
    scope("delete:users", "Delete users.", &[]),
    scope("list:users", "List users by name.", &["read:users:name"]),
    scope(
        "read:users",
        "Read user models.",
        &[
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
        ],
    ),
    scope("read:users:name", "Read user names.", &[]),
    scope(
        "read:users:groups",
        "Read which groups users belong to.",
        &[],
    ),
    scope(
        "read:users:activity",
        "Read when users were last active.",
        &[],
    ),
    scope(
        "read:roles",
        "Read role assignments.",
        &[
            "read:roles:users",
            "read:roles:services",
            "read:roles:groups",
        ],
    ),
    scope("read:roles:users", "Read users' roles.", &[]),
    scope("read:roles:services", "Read services' roles.", &[]),
    scope("read:roles:groups", "Read groups' roles.", &[]),
    scope(
        "users:activity",
        "Report user activity.",
        &["read:users:activity"],
    ),
    scope(
        "admin:servers",
        "Manage user servers, including their state.",
        &["admin:server_state", "servers"],
    ),
    scope("admin:server_state", "Read and change servers' state.", &[]),
    scope(
        "servers",
        "Start and stop user servers.",
        &["read:servers", "delete:servers"],
    ),
    scope(
        "read:servers",
        "Read user names and server models (without state).",
        &["read:users:name"],
    ),
    scope("delete:servers", "Stop and delete user servers.", &[]),
    scope("tokens", "Manage user tokens.", &["read:tokens"]),
    // Xiji's own: datasets (docs/datasets.md).
    scope(
        "datasets",
        "Create, change and delete datasets and their files as the user.",
        &["read:datasets"],
    ),
    scope(
        "read:datasets",
        "Search, read, download and star datasets as the user.",
        &[],
    ),
    // Xiji's own: projects (docs/projects.md).
    scope(
        "projects",
        "Create, change, run, fork and delete projects as the user.",
        &["read:projects"],
    ),
    scope(
        "read:projects",
        "Search, open and star projects as the user.",
        &[],
    ),
    scope("read:tokens", "Read user tokens.", &[]),
    scope(
        "admin:groups",
        "Manage groups: create, change and delete them.",
        &["groups", "read:roles:groups", "delete:groups"],
    ),
    scope(
        "groups",
        "Read and change groups and their members.",
        &["read:groups", "list:groups"],
    ),
    scope("list:groups", "List groups by name.", &["read:groups:name"]),
    scope("read:groups", "Read group models.", &["read:groups:name"]),
    scope("read:groups:name", "Read group names.", &[]),
    scope("delete:groups", "Delete groups.", &[]),
    scope(
        "admin:services",
        "Manage services not defined in the configuration.",
        &["list:services", "read:services", "read:roles:services"],
    ),
    scope(
        "list:services",
        "List services by name.",
        &["read:services:name"],
    ),
    scope(
        "read:services",
        "Read service models.",
        &["read:services:name"],
    ),
    scope("read:services:name", "Read service names.", &[]),
    scope("read:hub", "Read details about the hub.", &[]),
    scope(
        "access:servers",
        "Use user servers from the API or a browser.",
        &[],
    ),
    scope(
        "access:services",
        "Use services from the API or a browser.",
        &[],
    ),
    scope(
        "users:shares",
        "Read and revoke what is shared with users.",
        &["read:users:shares"],
    ),
    scope("read:users:shares", "Read what is shared with users.", &[]),
    scope(
        "groups:shares",
        "Read and revoke what is shared with groups.",
        &["read:groups:shares"],
    ),
    scope(
        "read:groups:shares",
        "Read what is shared with groups.",
        &[],
    ),
    scope("read:shares", "Read who has shared access to servers.", &[]),
    scope(
        "shares",
        "Manage shared access to servers.",
        &[
            "access:servers",
            "read:shares",
            "users:shares",
            "groups:shares",
        ],
    ),
    scope("proxy", "Read and synchronise the proxy's routes.", &[]),
    scope("shutdown", "Shut the hub down.", &[]),
    scope("read:metrics", "Read Prometheus metrics.", &[]),
];

/// A `custom:` scope from the configuration (`custom_scopes`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomScopeDefinition {
    /// Shown on the OAuth consent page.
    pub description: String,
    /// Other custom scopes this one implies.
    #[serde(default)]
    pub subscopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Definition {
    description: String,
    subscopes: Vec<String>,
}

/// The scopes this hub knows: the built-in ones plus the configured `custom:` scopes.
///
/// Build one at start-up ([`ScopeCatalog::with_custom_scopes`]) and share it; most scope logic
/// that needs definitions (validation, expansion) is a method on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeCatalog {
    definitions: BTreeMap<String, Definition>,
}

static BUILTIN_CATALOG: OnceLock<ScopeCatalog> = OnceLock::new();

impl ScopeCatalog {
    /// The catalog of built-in scopes only.
    pub fn builtin() -> &'static ScopeCatalog {
        BUILTIN_CATALOG.get_or_init(Self::builtin_owned)
    }

    fn builtin_owned() -> ScopeCatalog {
        let definitions = BUILTIN_SCOPES
            .iter()
            .map(|s| {
                (
                    s.name.to_owned(),
                    Definition {
                        description: s.description.to_owned(),
                        subscopes: s.subscopes.iter().map(|&n| n.to_owned()).collect(),
                    },
                )
            })
            .collect();
        ScopeCatalog { definitions }
    }

    /// The built-in scopes plus `custom`, checked as JupyterHub checks `custom_scopes`: names
    /// match `custom:[a-z0-9][a-z0-9_-*:]+[a-z0-9_*]`, and subscopes are custom scopes defined
    /// in the same map.
    pub fn with_custom_scopes(
        custom: &BTreeMap<String, CustomScopeDefinition>,
    ) -> Result<ScopeCatalog, RbacError> {
        let mut catalog = Self::builtin_owned();
        for (name, definition) in custom {
            if catalog.definitions.contains_key(name) {
                return Err(RbacError::ScopeRedefined {
                    scope: name.clone(),
                });
            }
            if !is_valid_custom_scope_name(name) {
                return Err(RbacError::InvalidCustomScopeName {
                    scope: name.clone(),
                });
            }
            for subscope in &definition.subscopes {
                if !custom.contains_key(subscope) {
                    return Err(RbacError::InvalidCustomSubscope {
                        scope: name.clone(),
                        subscope: subscope.clone(),
                    });
                }
            }
        }
        for (name, definition) in custom {
            catalog.definitions.insert(
                name.clone(),
                Definition {
                    description: definition.description.clone(),
                    subscopes: definition.subscopes.clone(),
                },
            );
        }
        Ok(catalog)
    }

    /// Whether `name` (without filter) is a defined scope.
    pub fn is_defined(&self, name: &str) -> bool {
        self.definitions.contains_key(name)
    }

    /// The description of a defined scope.
    pub fn description(&self, name: &str) -> Option<&str> {
        self.definitions.get(name).map(|d| d.description.as_str())
    }

    /// `name` and all its subscopes, recursively. An undefined name yields just itself.
    pub fn with_subscopes<'a>(&'a self, name: &'a str) -> BTreeSet<&'a str> {
        let mut found = BTreeSet::new();
        let mut pending = vec![name];
        while let Some(next) = pending.pop() {
            if found.insert(next) {
                if let Some(definition) = self.definitions.get(next) {
                    pending.extend(definition.subscopes.iter().map(String::as_str));
                }
            }
        }
        found
    }

    /// Whether `scope` is a valid raw scope: a defined name, optionally followed by one filter,
    /// `!user=<name>`, `!server=<user>/<server>`, `!group=<name>`, `!service=<name>`, or one of
    /// the self-references `!user`, `!server`, `!service`.
    pub fn is_valid_scope(&self, scope: &str) -> bool {
        self.check_scope_exists(scope, "").is_ok()
    }

    /// Checks every scope as JupyterHub's `_check_scopes_exist`, with its error messages;
    /// `who_for` names the holder in the message (e.g. `Some("token")`, `Some("role x")`).
    ///
    /// Unlike JupyterHub, an empty filter value (`read:users!user=`) is rejected here rather
    /// than failing later.
    pub fn check_scopes_exist<S: AsRef<str>>(
        &self,
        scopes: &[S],
        who_for: Option<&str>,
    ) -> Result<(), RbacError> {
        let context = who_for.map(|w| format!("for {w}")).unwrap_or_default();
        scopes
            .iter()
            .try_for_each(|scope| self.check_scope_exists(scope.as_ref(), &context))
    }

    fn check_scope_exists(&self, scope: &str, context: &str) -> Result<(), RbacError> {
        let (name, filter) = match scope.split_once('!') {
            Some((name, filter)) => (name, Some(filter)),
            None => (scope, None),
        };
        if !self.is_defined(name) {
            if name == "all" {
                return Err(RbacError::DraftScopeAll);
            }
            return Err(RbacError::UnknownScope {
                scope: scope.to_owned(),
                context: context.to_owned(),
            });
        }
        let Some(filter) = filter else {
            return Ok(());
        };
        if matches!(filter, "user" | "server" | "service") {
            return Ok(());
        }
        match filter.split_once('=') {
            Some((kind, value)) if super::FilterKind::parse(kind).is_some() => {
                if value.is_empty() {
                    Err(RbacError::EmptyFilterValue {
                        scope: scope.to_owned(),
                    })
                } else {
                    Ok(())
                }
            }
            _ => Err(RbacError::UnknownFilter {
                filter: filter.to_owned(),
                scope: scope.to_owned(),
                context: context.to_owned(),
            }),
        }
    }
}

/// JupyterHub's custom scope pattern, `^custom:[a-z0-9][a-z0-9_\-\*:]+[a-z0-9_\*]$`.
fn is_valid_custom_scope_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("custom:") else {
        return false;
    };
    let bytes = rest.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if bytes.len() < 3 {
        return false;
    }
    let lower_or_digit = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    lower_or_digit(first)
        && (lower_or_digit(last) || matches!(last, b'_' | b'*'))
        && bytes[1..bytes.len() - 1]
            .iter()
            .all(|b| lower_or_digit(b) || matches!(b, b'_' | b'-' | b'*' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscope_of_a_builtin_scope_is_itself_defined() {
        let catalog = ScopeCatalog::builtin();
        for scope in BUILTIN_SCOPES {
            for sub in scope.subscopes {
                assert!(catalog.is_defined(sub), "{sub} of {}", scope.name);
            }
        }
        assert_eq!(BUILTIN_SCOPES.len(), 51);
    }

    #[test]
    fn admin_users_expands_recursively_to_its_whole_tree() {
        let expanded: Vec<_> = ScopeCatalog::builtin()
            .with_subscopes("admin:users")
            .into_iter()
            .collect();
        assert_eq!(
            expanded,
            [
                "admin:auth_state",
                "admin:users",
                "delete:users",
                "list:users",
                "read:roles:users",
                "read:users",
                "read:users:activity",
                "read:users:groups",
                "read:users:name",
                "users",
                "users:activity",
            ]
        );
    }

    #[test]
    fn valid_scopes_accept_one_known_filter_or_a_self_reference() {
        let catalog = ScopeCatalog::builtin();
        for ok in [
            "read:users",
            "(no_scope)",
            "inherit",
            "read:users!user=alice",
            "access:servers!server=alice/",
            "access:servers!server=alice/gpu",
            "read:groups!group=physics",
            "access:services!service=grader",
            "users:activity!user",
            "access:servers!server",
            "access:services!service",
        ] {
            assert!(catalog.is_valid_scope(ok), "{ok}");
        }
    }

    #[test]
    fn invalid_scopes_are_rejected() {
        let catalog = ScopeCatalog::builtin();
        for bad in [
            "",
            "all",
            "read:user",
            "custom:undefined",
            "read:users!group",
            "read:users!owner=alice",
            "read:users!user=",
            "read:users!",
        ] {
            assert!(!catalog.is_valid_scope(bad), "{bad}");
        }
    }

    #[test]
    fn scope_errors_carry_jupyterhub_messages() {
        let catalog = ScopeCatalog::builtin();
        let err = catalog
            .check_scopes_exist(&["read:users", "nope"], Some("token"))
            .map_err(|e| e.to_string());
        assert_eq!(err, Err("Scope 'nope' for token does not exist".to_owned()));
        let err = catalog
            .check_scopes_exist(&["all"], None)
            .map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("Draft scope 'all' is now called 'inherit'".to_owned())
        );
        let err = catalog
            .check_scopes_exist(&["read:users!owner=x"], Some("role r"))
            .map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(
                "Scope filter owner=x '!owner=x' in scope 'read:users!owner=x' for role r does not exist"
                    .to_owned()
            )
        );
    }

    #[test]
    fn custom_scopes_become_valid_and_expand_through_their_subscopes() {
        let custom = BTreeMap::from([
            (
                "custom:lab:read".to_owned(),
                CustomScopeDefinition {
                    description: "read".to_owned(),
                    subscopes: vec!["custom:lab:read:files".to_owned()],
                },
            ),
            (
                "custom:lab:read:files".to_owned(),
                CustomScopeDefinition {
                    description: "files".to_owned(),
                    subscopes: vec![],
                },
            ),
        ]);
        let catalog = ScopeCatalog::with_custom_scopes(&custom).map_err(|e| e.to_string());
        let Ok(catalog) = catalog else {
            panic!("{catalog:?}");
        };
        assert!(catalog.is_valid_scope("custom:lab:read!user=alice"));
        assert!(!ScopeCatalog::builtin().is_valid_scope("custom:lab:read"));
        assert_eq!(
            catalog
                .with_subscopes("custom:lab:read")
                .into_iter()
                .collect::<Vec<_>>(),
            ["custom:lab:read", "custom:lab:read:files"]
        );
    }

    #[test]
    fn custom_scope_definitions_are_checked() {
        let one = |name: &str, subscopes: &[&str]| {
            BTreeMap::from([(
                name.to_owned(),
                CustomScopeDefinition {
                    description: "d".to_owned(),
                    subscopes: subscopes.iter().map(|s| (*s).to_owned()).collect(),
                },
            )])
        };
        assert!(ScopeCatalog::with_custom_scopes(&one("custom:ok_1*", &[])).is_ok());
        for bad in [
            "custom:",
            "custom:ab",
            "custom:-ab",
            "custom:abc-",
            "read:x",
            "custom:Abc",
        ] {
            assert!(
                ScopeCatalog::with_custom_scopes(&one(bad, &[])).is_err(),
                "{bad}"
            );
        }
        assert!(ScopeCatalog::with_custom_scopes(&one("custom:abc", &["read:users"])).is_err());
        assert!(ScopeCatalog::with_custom_scopes(&one("custom:abc", &["custom:zzz"])).is_err());
    }
}
