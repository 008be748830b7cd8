//! Access decisions for handlers (JupyterHub's `needs_scope`), filters for list endpoints,
//! and the keys of each model a caller may see (JupyterHub's `access_map`).

use std::collections::BTreeSet;

use super::{Grant, ScopeSet};

/// What a request acts on, for checking filtered scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// Nothing in particular (e.g. `read:hub`, `proxy`): only unfiltered scopes allow it.
    Hub,
    /// A user; `groups` are the user's group names (needed only if
    /// [`ScopeSet::needs_groups`]).
    User {
        /// The user's name.
        name: &'a str,
        /// The user's groups.
        groups: &'a [String],
    },
    /// A server; `server_name` is empty for the default server.
    Server {
        /// The owner's name.
        user: &'a str,
        /// The server's name (empty for the default server).
        server_name: &'a str,
        /// The owner's groups.
        user_groups: &'a [String],
    },
    /// A group.
    Group {
        /// The group's name.
        name: &'a str,
    },
    /// A service.
    Service {
        /// The service's name.
        name: &'a str,
    },
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Go ahead.
    Allowed,
    /// A required scope is held, but its filter does not cover this resource: answer 404
    /// [`NOT_FOUND_MESSAGE`], the same as a missing resource.
    NotFound,
    /// No required scope is held: answer 403 with `message`.
    Forbidden {
        /// JupyterHub's message, e.g. `Action is not authorized with current scopes; requires
        /// any of [read:users, read:users:name]`.
        message: String,
    },
}

/// JupyterHub's message for [`Access::NotFound`].
pub const NOT_FOUND_MESSAGE: &str = "No access to resources or resources not found";

impl Access {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Access::Allowed => 200,
            Access::NotFound => 404,
            Access::Forbidden { .. } => 403,
        }
    }

    /// The error message (empty when allowed).
    pub fn message(&self) -> &str {
        match self {
            Access::Allowed => "",
            Access::NotFound => NOT_FOUND_MESSAGE,
            Access::Forbidden { message } => message,
        }
    }

    /// Whether the request may go ahead.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Access::Allowed)
    }
}

/// A 403 refusal, for list endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The error message.
    pub message: String,
}

impl From<Forbidden> for Access {
    fn from(refusal: Forbidden) -> Access {
        Access::Forbidden {
            message: refusal.message,
        }
    }
}

fn not_authorized(any_of: &[&str]) -> String {
    format!(
        "Action is not authorized with current scopes; requires any of [{}]",
        any_of.join(", ")
    )
}

/// Whether `scopes` allow an action needing any of `any_of` on `resource`, as JupyterHub's
/// `needs_scope` for single-resource endpoints: allowed if one of the scopes is unfiltered or
/// its filter covers the resource; else 404 if one is held with a filter and the resource is
/// not [`Resource::Hub`]; else 403.
pub fn check(scopes: &ScopeSet, any_of: &[&str], resource: &Resource<'_>) -> Access {
    if any_of.iter().any(|scope| scopes.allows(scope, resource)) {
        return Access::Allowed;
    }
    if *resource != Resource::Hub && any_of.iter().any(|scope| scopes.contains(scope)) {
        return Access::NotFound;
    }
    Access::Forbidden {
        message: not_authorized(any_of),
    }
}

/// The kind of list endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `GET /users`, scope `list:users`.
    Users,
    /// `GET /groups`, scope `list:groups`.
    Groups,
    /// `GET /services`, scope `list:services`.
    Services,
}

impl ListKind {
    /// The scope the endpoint needs.
    pub fn scope(self) -> &'static str {
        match self {
            ListKind::Users => "list:users",
            ListKind::Groups => "list:groups",
            ListKind::Services => "list:services",
        }
    }
}

/// Which items a list endpoint may return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFilter {
    /// Every item.
    All,
    /// Items named in `names`, or (users only) members of a group in `groups`; both may be
    /// empty, giving an empty list (still 200).
    Only {
        /// Names of the listed kind (users, groups or services).
        names: BTreeSet<String>,
        /// For users: groups whose members may be listed. Always empty otherwise.
        groups: BTreeSet<String>,
    },
}

impl ListFilter {
    /// Whether an item may be listed; `groups` are a user's groups (ignored for other kinds).
    pub fn allows(&self, name: &str, groups: &[String]) -> bool {
        match self {
            ListFilter::All => true,
            ListFilter::Only {
                names,
                groups: allowed,
            } => names.contains(name) || groups.iter().any(|g| allowed.contains(g)),
        }
    }
}

/// What a list endpoint may return, as JupyterHub's list handlers: 403 "Action is not
/// authorized…" without the list scope; for users, 403 "Forbidden" when `list:users` carries a
/// `!server=` or `!service=` filter (JupyterHub refuses rather than widen it), likewise for
/// groups with any filter but `!group=`; for services, only `!service=` filters count.
pub fn list_filter(scopes: &ScopeSet, kind: ListKind) -> Result<ListFilter, Forbidden> {
    let filters = match scopes.get(kind.scope()) {
        None => {
            return Err(Forbidden {
                message: not_authorized(&[kind.scope()]),
            })
        }
        Some(Grant::Unfiltered) => return Ok(ListFilter::All),
        Some(Grant::Filtered(filters)) => filters,
    };
    let refuse = || Forbidden {
        message: "Forbidden".to_owned(),
    };
    match kind {
        ListKind::Users => {
            if !filters.servers.is_empty() || !filters.services.is_empty() {
                return Err(refuse());
            }
            Ok(ListFilter::Only {
                names: filters.users.clone(),
                groups: filters.groups.clone(),
            })
        }
        ListKind::Groups => {
            if !filters.users.is_empty()
                || !filters.servers.is_empty()
                || !filters.services.is_empty()
            {
                return Err(refuse());
            }
            Ok(ListFilter::Only {
                names: filters.groups.clone(),
                groups: BTreeSet::new(),
            })
        }
        ListKind::Services => Ok(ListFilter::Only {
            names: filters.services.clone(),
            groups: BTreeSet::new(),
        }),
    }
}

type AccessMap = &'static [(&'static str, &'static [&'static str])];

const USER_ACCESS_MAP: AccessMap = &[
    (
        "read:users",
        &[
            "kind",
            "name",
            "admin",
            "roles",
            "groups",
            "server",
            "pending",
            "created",
            "last_activity",
        ],
    ),
    ("read:users:name", &["kind", "name", "admin"]),
    ("read:users:groups", &["kind", "name", "groups"]),
    ("read:users:activity", &["kind", "name", "last_activity"]),
    ("read:servers", &["kind", "name", "servers"]),
    ("read:roles:users", &["kind", "name", "roles", "admin"]),
    ("admin:auth_state", &["kind", "name", "auth_state"]),
];

const GROUP_ACCESS_MAP: AccessMap = &[
    ("read:groups", &["kind", "name", "properties", "users"]),
    ("read:groups:name", &["kind", "name"]),
    ("read:roles:groups", &["kind", "name", "roles"]),
];

const SERVICE_ACCESS_MAP: AccessMap = &[
    (
        "read:services",
        &[
            "kind", "name", "admin", "url", "prefix", "command", "pid", "info", "display",
        ],
    ),
    ("read:services:name", &["kind", "name", "admin"]),
    ("read:roles:services", &["kind", "name", "roles", "admin"]),
];

fn model_keys(
    scopes: &ScopeSet,
    map: AccessMap,
    resource: &Resource<'_>,
) -> BTreeSet<&'static str> {
    map.iter()
        .filter(|(scope, _)| scopes.allows(scope, resource))
        .flat_map(|(_, keys)| keys.iter().copied())
        .collect()
}

/// The user-model keys the caller may see for `user` (a [`Resource::User`]): the union over
/// `read:users`, `read:users:name`, `read:users:groups`, `read:users:activity`, `read:servers`,
/// `read:roles:users`, `admin:auth_state` whose filters cover this user. Empty means the
/// caller sees nothing of this user.
///
/// As JupyterHub: `pending` comes from the default server when `pending` is allowed;
/// `servers` holds the servers `read:servers` allows (see [`ScopeSet::allows`] with a
/// [`Resource::Server`]) and is present when the key is allowed or any server is visible.
pub fn user_model_keys(scopes: &ScopeSet, user: &Resource<'_>) -> BTreeSet<&'static str> {
    model_keys(scopes, USER_ACCESS_MAP, user)
}

/// The group-model keys (`kind`, `name`, `properties`, `users`, `roles`) the caller may see.
pub fn group_model_keys(scopes: &ScopeSet, group_name: &str) -> BTreeSet<&'static str> {
    model_keys(
        scopes,
        GROUP_ACCESS_MAP,
        &Resource::Group { name: group_name },
    )
}

/// The service-model keys the caller may see.
pub fn service_model_keys(scopes: &ScopeSet, service_name: &str) -> BTreeSet<&'static str> {
    model_keys(
        scopes,
        SERVICE_ACCESS_MAP,
        &Resource::Service { name: service_name },
    )
}

/// Whether the server model includes `state` (`admin:server_state` covering the server).
pub fn server_state_visible(scopes: &ScopeSet, server: &Resource<'_>) -> bool {
    scopes.allows("admin:server_state", server)
}

#[cfg(test)]
mod tests {
    use super::super::{Owner, ScopeCatalog};
    use super::*;

    fn set(scopes: &[&str]) -> ScopeSet {
        match ScopeSet::parse_expanded(scopes) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn user<'a>(name: &'a str, groups: &'a [String]) -> Resource<'a> {
        Resource::User { name, groups }
    }

    fn keys(k: &[&'static str]) -> BTreeSet<&'static str> {
        k.iter().copied().collect()
    }

    #[test]
    fn own_user_is_allowed_and_another_user_is_not_found() {
        let scopes = ScopeCatalog::builtin().expand(&["self"], &Owner::user("alice"));
        assert_eq!(
            check(&scopes, &["read:users"], &user("alice", &[])),
            Access::Allowed
        );
        let other = check(
            &scopes,
            &["read:users", "read:users:name"],
            &user("bob", &[]),
        );
        assert_eq!(other, Access::NotFound);
        assert_eq!(other.status(), 404);
        assert_eq!(
            other.message(),
            "No access to resources or resources not found"
        );
    }

    #[test]
    fn missing_scope_is_forbidden_with_jupyterhubs_message() {
        let scopes = set(&["read:users!user=alice"]);
        let access = check(
            &scopes,
            &["admin:users", "delete:users"],
            &user("alice", &[]),
        );
        assert_eq!(
            access,
            Access::Forbidden {
                message: "Action is not authorized with current scopes; requires any of \
                          [admin:users, delete:users]"
                    .to_owned()
            }
        );
        assert_eq!(access.status(), 403);
    }

    #[test]
    fn hub_level_actions_need_the_unfiltered_scope() {
        assert!(check(&set(&["read:hub"]), &["read:hub"], &Resource::Hub).is_allowed());
        let filtered = check(&set(&["proxy!user=alice"]), &["proxy"], &Resource::Hub);
        assert_eq!(filtered.status(), 403);
    }

    #[test]
    fn server_filters_allow_the_server_its_owner_or_the_owners_group() {
        let physics = vec!["physics".to_owned()];
        let server = |user: &'static str, server_name: &'static str, groups: &'static [String]| {
            Resource::Server {
                user,
                server_name,
                user_groups: groups,
            }
        };
        let by_server = set(&["access:servers!server=alice/"]);
        assert!(check(&by_server, &["access:servers"], &server("alice", "", &[])).is_allowed());
        assert_eq!(
            check(
                &by_server,
                &["access:servers"],
                &server("alice", "gpu", &[])
            ),
            Access::NotFound
        );
        let by_user = set(&["access:servers!user=alice"]);
        assert!(check(&by_user, &["access:servers"], &server("alice", "gpu", &[])).is_allowed());
        let by_group = set(&["access:servers!group=physics"]);
        let in_group = Resource::Server {
            user: "carol",
            server_name: "",
            user_groups: &physics,
        };
        assert!(check(&by_group, &["access:servers"], &in_group).is_allowed());
        assert_eq!(
            check(&by_group, &["access:servers"], &server("carol", "", &[])),
            Access::NotFound
        );
        // a server filter says nothing about its owner
        assert_eq!(
            check(&by_server, &["access:servers"], &user("alice", &[])),
            Access::NotFound
        );
    }

    #[test]
    fn group_and_service_filters_match_by_name() {
        let scopes = set(&["read:groups!group=physics", "read:services!service=grader"]);
        assert!(check(
            &scopes,
            &["read:groups"],
            &Resource::Group { name: "physics" }
        )
        .is_allowed());
        assert_eq!(
            check(&scopes, &["read:groups"], &Resource::Group { name: "chem" }),
            Access::NotFound
        );
        let grader = Resource::Service { name: "grader" };
        assert!(check(&scopes, &["read:services"], &grader).is_allowed());
        let members = vec!["physics".to_owned()];
        assert!(check(
            &set(&["read:users!group=physics"]),
            &["read:users"],
            &user("dan", &members)
        )
        .is_allowed());
    }

    #[test]
    fn list_users_without_the_scope_is_forbidden() {
        assert_eq!(
            list_filter(&set(&["read:users"]), ListKind::Users),
            Err(Forbidden {
                message:
                    "Action is not authorized with current scopes; requires any of [list:users]"
                        .to_owned()
            })
        );
    }

    #[test]
    fn list_users_filters_by_user_and_group_and_refuses_server_filters() {
        assert_eq!(
            list_filter(&set(&["list:users"]), ListKind::Users),
            Ok(ListFilter::All)
        );
        let filter = list_filter(
            &set(&["list:users!user=carol", "list:users!group=physics"]),
            ListKind::Users,
        );
        let Ok(filter) = filter else {
            panic!("{filter:?}");
        };
        assert!(filter.allows("carol", &[]));
        assert!(filter.allows("dan", &["physics".to_owned()]));
        assert!(!filter.allows("erin", &["chem".to_owned()]));
        assert_eq!(
            list_filter(&set(&["list:users!server=alice/"]), ListKind::Users),
            Err(Forbidden {
                message: "Forbidden".to_owned()
            })
        );
        let nobody = list_filter(&set(&["list:users!user=nobody"]), ListKind::Users);
        assert!(matches!(nobody, Ok(ListFilter::Only { ref names, .. }) if names.len() == 1));
    }

    #[test]
    fn list_groups_accepts_only_group_filters_and_services_only_service_filters() {
        assert!(list_filter(&set(&["list:groups!group=g"]), ListKind::Groups).is_ok());
        assert!(list_filter(&set(&["list:groups!user=u"]), ListKind::Groups).is_err());
        let services = list_filter(
            &set(&["list:services!service=grader", "list:services!user=u"]),
            ListKind::Services,
        );
        assert_eq!(
            services,
            Ok(ListFilter::Only {
                names: BTreeSet::from(["grader".to_owned()]),
                groups: BTreeSet::new(),
            })
        );
    }

    #[test]
    fn user_model_keys_follow_the_access_map_per_user() {
        let identify = set(&["read:users:name!user=alice", "read:users:groups!user=alice"]);
        assert_eq!(
            user_model_keys(&identify, &user("alice", &[])),
            keys(&["admin", "groups", "kind", "name"])
        );
        assert!(user_model_keys(&identify, &user("bob", &[])).is_empty());
        let list_only =
            ScopeCatalog::builtin().expand(&["list:users!user=carol"], &Owner::user("a"));
        assert_eq!(
            user_model_keys(&list_only, &user("carol", &[])),
            keys(&["admin", "kind", "name"])
        );
        assert_eq!(
            user_model_keys(&set(&["read:roles:users"]), &user("miranda", &[])),
            keys(&["admin", "kind", "name", "roles"])
        );
        let admin =
            ScopeCatalog::builtin().expand(&["admin:users", "admin:servers"], &Owner::user("r"));
        assert_eq!(
            user_model_keys(&admin, &user("anyone", &[])),
            keys(&[
                "admin",
                "auth_state",
                "created",
                "groups",
                "kind",
                "last_activity",
                "name",
                "pending",
                "roles",
                "server",
                "servers",
            ])
        );
    }

    #[test]
    fn group_and_service_model_keys_follow_their_access_maps() {
        assert_eq!(
            group_model_keys(&set(&["read:groups:name", "read:roles:groups"]), "g"),
            keys(&["kind", "name", "roles"])
        );
        assert_eq!(
            group_model_keys(&set(&["read:groups"]), "g"),
            keys(&["kind", "name", "properties", "users"])
        );
        assert_eq!(
            service_model_keys(&set(&["read:services:name"]), "s"),
            keys(&["admin", "kind", "name"])
        );
        assert_eq!(service_model_keys(&set(&["read:services"]), "s").len(), 9);
        assert!(service_model_keys(&set(&["read:services!service=t"]), "s").is_empty());
    }

    #[test]
    fn server_state_needs_admin_server_state_on_that_server() {
        let alice = Resource::Server {
            user: "alice",
            server_name: "",
            user_groups: &[],
        };
        assert!(server_state_visible(&set(&["admin:server_state"]), &alice));
        assert!(!server_state_visible(
            &set(&["admin:server_state!user=bob"]),
            &alice
        ));
        assert!(!server_state_visible(&set(&["servers"]), &alice));
    }
}
