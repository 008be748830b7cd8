//! Expansion of raw scopes (as written in roles and tokens) into a [`ScopeSet`]: metascopes,
//! subscopes and self-referencing filters.

use super::{FilterKind, ScopeCatalog, ScopeSet};

/// The scopes `self` stands for, each filtered `!user=<owner>`.
pub const SELF_SCOPES: &[&str] = &[
    "read:users",
    "read:users:name",
    "read:users:groups",
    "users:shares",
    "read:users:shares",
    "read:shares",
    "users:activity",
    "read:users:activity",
    "servers",
    "delete:servers",
    "read:servers",
    "tokens",
    "read:tokens",
    "access:servers",
    "datasets",
    "read:datasets",
    "projects",
    "read:projects",
];

/// Who holds the scopes being expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity<'a> {
    /// A user: `self` and `!user` resolve to this name.
    User(&'a str),
    /// A service: `!service` resolves to this name; `self` and `!user` resolve to nothing.
    Service(&'a str),
    /// No user or service (e.g. a share granted to a group): no self-reference resolves except
    /// through the issuing client.
    Nobody,
}

/// The OAuth client that issued a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client<'a> {
    /// The hub itself (`jupyterhub`), API-created tokens, role scopes: nothing extra.
    Hub,
    /// A service's client: `!service` resolves to this service.
    Service(&'a str),
    /// A server's client (`jupyterhub-user-…`): `!server` resolves to this full server name,
    /// `user/` for a default server or `user/name` for a named one.
    Server(&'a str),
}

/// The owner against which self-references are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// Who holds the scopes.
    pub entity: Entity<'a>,
    /// Which OAuth client issued the token, if that matters.
    pub client: Client<'a>,
}

impl<'a> Owner<'a> {
    /// A user holding scopes through roles or a hub-issued token.
    pub fn user(name: &'a str) -> Owner<'a> {
        Owner {
            entity: Entity::User(name),
            client: Client::Hub,
        }
    }

    /// A service holding scopes through roles or a hub-issued token.
    pub fn service(name: &'a str) -> Owner<'a> {
        Owner {
            entity: Entity::Service(name),
            client: Client::Hub,
        }
    }

    /// The same owner, for a token issued by `client`.
    pub fn issued_by(self, client: Client<'a>) -> Owner<'a> {
        Owner { client, ..self }
    }

    fn user_name(&self) -> Option<&'a str> {
        match self.entity {
            Entity::User(name) => Some(name),
            Entity::Service(_) | Entity::Nobody => None,
        }
    }

    fn service_name(&self) -> Option<&'a str> {
        match (self.client, self.entity) {
            (Client::Service(name), _) | (_, Entity::Service(name)) => Some(name),
            _ => None,
        }
    }

    fn server_name(&self) -> Option<&'a str> {
        match self.client {
            Client::Server(full_name) => Some(full_name),
            Client::Hub | Client::Service(_) => None,
        }
    }
}

/// Whether raw scopes contain `inherit`: then a token's scopes are exactly its owner's
/// (see [`ScopeCatalog::token_scopes`]).
pub fn has_inherit<S: AsRef<str>>(raw: &[S]) -> bool {
    raw.iter().any(|s| s.as_ref() == "inherit")
}

/// The scopes every token may use to identify its owner: `read:users:name!user=<u>` and
/// `read:users:groups!user=<u>` for a user, `read:services:name!service=<s>` for a service.
pub fn identify_scopes(entity: Entity<'_>) -> ScopeSet {
    let mut set = ScopeSet::new();
    match entity {
        Entity::User(name) => {
            set.grant_filtered("read:users:name", FilterKind::User, name);
            set.grant_filtered("read:users:groups", FilterKind::User, name);
        }
        Entity::Service(name) => {
            set.grant_filtered("read:services:name", FilterKind::Service, name);
        }
        Entity::Nobody => {}
    }
    set
}

/// The raw identify scopes an OAuth client always gets, before they are resolved for the user.
pub const IDENTIFY_RAW_SCOPES: [&str; 2] = ["read:users:groups!user", "read:users:name!user"];

/// The scope needed to use what an OAuth client fronts: `access:servers!server=<u>/<s>` for a
/// server's client, `access:services!service=<s>` for a service's, nothing for the hub.
pub fn access_scopes(client: Client<'_>) -> ScopeSet {
    let mut set = ScopeSet::new();
    match client {
        Client::Hub => {}
        Client::Server(full_name) => {
            set.grant_filtered("access:servers", FilterKind::Server, full_name);
        }
        Client::Service(name) => {
            set.grant_filtered("access:services", FilterKind::Service, name);
        }
    }
    set
}

impl ScopeCatalog {
    /// Expands raw scopes for `owner` as JupyterHub's `expand_scopes`:
    ///
    /// - every scope with all its subscopes, its filter applied to each; under a `!server`
    ///   filter, subscopes starting with `read:user` (and such a scope itself) are dropped;
    /// - `!user` → `!user=<user>`, `!service` → `!service=<service or issuing service>`,
    ///   `!server` → `!server=<server of the issuing client>`; a self-reference without a
    ///   target is dropped, with the scope it filters;
    /// - `self` → [`SELF_SCOPES`] filtered `!user=<user>` (nothing for services);
    /// - `inherit` is kept as a scope name; see [`has_inherit`].
    ///
    /// Strings that [`ScopeCatalog::check_scopes_exist`] would reject with a bad filter are
    /// dropped (never widened); undefined names are kept without subscopes.
    pub fn expand<S: AsRef<str>>(&self, raw: &[S], owner: &Owner<'_>) -> ScopeSet {
        let mut set = ScopeSet::new();
        let mut has_self = false;
        for scope in raw {
            let scope = scope.as_ref();
            let (name, filter) = match scope.split_once('!') {
                Some((name, filter)) => (name, Some(filter)),
                None => (scope, None),
            };
            let names = self.with_subscopes(name);
            let Some(filter) = filter else {
                for name in names {
                    if name == "self" {
                        has_self = true;
                    } else {
                        set.grant_unfiltered(name);
                    }
                }
                continue;
            };
            let resolved = match filter {
                "user" => owner.user_name().map(|v| (FilterKind::User, v)),
                "service" => owner.service_name().map(|v| (FilterKind::Service, v)),
                "server" => owner.server_name().map(|v| (FilterKind::Server, v)),
                _ => filter
                    .split_once('=')
                    .filter(|(_, value)| !value.is_empty())
                    .and_then(|(kind, value)| FilterKind::parse(kind).map(|k| (k, value))),
            };
            let Some((kind, value)) = resolved else {
                continue;
            };
            // Cross-resource subscopes such as read:servers → read:users:name make no sense
            // for one server.
            let skip_user_reads = kind == FilterKind::Server;
            for name in names {
                if !(skip_user_reads && name.starts_with("read:user")) {
                    set.grant_filtered(name, kind, value);
                }
            }
        }
        if has_self {
            if let Some(user) = owner.user_name() {
                for name in SELF_SCOPES {
                    set.grant_filtered(name, FilterKind::User, user);
                }
            }
        }
        set
    }
}

/// A token's effective scopes, and the ones its owner no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScopes {
    /// What the token may do now.
    pub effective: ScopeSet,
    /// Expanded token scopes dropped because the owner lacks them (JupyterHub logs a
    /// warning "discarding scopes …").
    pub discarded: Vec<String>,
}

impl ScopeCatalog {
    /// A token's effective scopes, as JupyterHub's `get_scopes_for(token)`: with `inherit`,
    /// exactly `owner_scopes`; otherwise the token's expanded scopes plus the issuing client's
    /// [`access_scopes`] plus the owner's [`identify_scopes`], intersected with `owner_scopes`
    /// (the owner's current expanded role scopes, plus shares).
    pub fn token_scopes<S: AsRef<str>>(
        &self,
        token_raw: &[S],
        owner: &Owner<'_>,
        owner_scopes: &ScopeSet,
        groups_of: &dyn Fn(&str) -> Vec<String>,
    ) -> TokenScopes {
        if has_inherit(token_raw) {
            return TokenScopes {
                effective: owner_scopes.clone(),
                discarded: Vec::new(),
            };
        }
        let mut requested = self.expand(token_raw, owner);
        requested.extend(&access_scopes(owner.client));
        requested.extend(&identify_scopes(owner.entity));
        let effective = super::intersect(&requested, owner_scopes, groups_of);
        let kept = effective.to_strings();
        let discarded = requested
            .to_sorted_strings()
            .into_iter()
            .filter(|s| !kept.contains(s))
            .collect();
        TokenScopes {
            effective,
            discarded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{default_role, Grant};
    use super::*;

    fn catalog() -> &'static ScopeCatalog {
        ScopeCatalog::builtin()
    }

    fn no_groups(_: &str) -> Vec<String> {
        Vec::new()
    }

    fn role_scopes(name: &str) -> Vec<&'static str> {
        default_role(name)
            .map(|r| r.scopes.to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn self_expands_to_the_users_own_resources() {
        let set = catalog().expand(&["self"], &Owner::user("alice"));
        let expected: Vec<String> = {
            let mut v: Vec<String> = SELF_SCOPES
                .iter()
                .map(|s| format!("{s}!user=alice"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(set.to_sorted_strings(), expected);
    }

    #[test]
    fn user_role_expands_like_self() {
        let owner = Owner::user("alice");
        assert_eq!(
            catalog().expand(&role_scopes("user"), &owner),
            catalog().expand(&["self"], &owner)
        );
    }

    #[test]
    fn self_resolves_to_nothing_for_a_service() {
        assert!(catalog()
            .expand(&["self"], &Owner::service("grader"))
            .is_empty());
    }

    #[test]
    fn admin_role_expands_to_unfiltered_admin_scopes() {
        let set = catalog().expand(&role_scopes("admin"), &Owner::user("root"));
        let strings = set.to_sorted_strings();
        assert_eq!(strings.len(), 44);
        assert!(strings.iter().all(|s| !s.contains('!')));
        for scope in [
            "admin:auth_state",
            "admin:server_state",
            "delete:groups",
            "read:users:name",
            "read:groups:shares",
            "access:servers",
            "read:metrics",
        ] {
            assert!(set.get(scope).is_some_and(Grant::is_unfiltered), "{scope}");
        }
        for absent in ["self", "inherit", "(no_scope)", "admin:users!user=root"] {
            assert!(!set.contains(absent), "{absent}");
        }
    }

    #[test]
    fn server_role_for_a_server_client_resolves_both_self_references() {
        let owner = Owner::user("alice").issued_by(Client::Server("alice/"));
        let set = catalog().expand(&role_scopes("server"), &owner);
        assert_eq!(
            set.to_sorted_strings(),
            [
                "access:servers!server=alice/",
                "read:users:activity!user=alice",
                "users:activity!user=alice",
            ]
        );
    }

    #[test]
    fn unresolvable_self_references_are_dropped() {
        let set = catalog().expand(
            &[
                "access:servers!server",
                "read:users!user",
                "access:services!service",
            ],
            &Owner::service("grader"),
        );
        assert_eq!(set.to_sorted_strings(), ["access:services!service=grader"]);
        let set = catalog().expand(&["access:services!service", "read:hub"], &Owner::user("a"));
        assert_eq!(set.to_sorted_strings(), ["read:hub"]);
    }

    #[test]
    fn a_service_client_resolves_service_self_reference_for_a_user_token() {
        let owner = Owner::user("alice").issued_by(Client::Service("grader"));
        let set = catalog().expand(&["access:services!service"], &owner);
        assert_eq!(set.to_sorted_strings(), ["access:services!service=grader"]);
    }

    #[test]
    fn explicit_filters_apply_to_every_subscope() {
        let set = catalog().expand(&["users!group=physics"], &Owner::user("a"));
        assert_eq!(
            set.to_sorted_strings(),
            [
                "list:users!group=physics",
                "read:users!group=physics",
                "read:users:activity!group=physics",
                "read:users:groups!group=physics",
                "read:users:name!group=physics",
                "users!group=physics",
                "users:activity!group=physics",
            ]
        );
    }

    #[test]
    fn server_filter_drops_user_read_subscopes() {
        let set = catalog().expand(
            &["servers!server=alice/gpu", "read:users!server=alice/"],
            &Owner::user("a"),
        );
        assert_eq!(
            set.to_sorted_strings(),
            [
                "delete:servers!server=alice/gpu",
                "read:servers!server=alice/gpu",
                "servers!server=alice/gpu",
            ]
        );
    }

    #[test]
    fn identify_and_access_scopes_name_the_owner_and_the_client() {
        assert_eq!(
            identify_scopes(Entity::User("alice")).to_sorted_strings(),
            ["read:users:groups!user=alice", "read:users:name!user=alice"]
        );
        assert_eq!(
            identify_scopes(Entity::Service("grader")).to_sorted_strings(),
            ["read:services:name!service=grader"]
        );
        assert_eq!(
            access_scopes(Client::Server("alice/gpu")).to_sorted_strings(),
            ["access:servers!server=alice/gpu"]
        );
        assert!(access_scopes(Client::Hub).is_empty());
    }

    #[test]
    fn server_token_expanded_scopes_match_jupyterhub_exactly() {
        // The server's API token is stored with the resolved request
        // {users:activity!user, access:servers!server=alice/} and issued by the hub.
        let owner = Owner::user("alice");
        let owner_scopes = catalog().expand(&role_scopes("user"), &owner);
        let token = catalog().token_scopes(
            &["users:activity!user", "access:servers!server=alice/"],
            &owner,
            &owner_scopes,
            &no_groups,
        );
        assert_eq!(
            token.effective.to_sorted_strings(),
            [
                "access:servers!server=alice/",
                "read:users:activity!user=alice",
                "read:users:groups!user=alice",
                "read:users:name!user=alice",
                "users:activity!user=alice",
            ]
        );
        assert!(token.discarded.is_empty());
    }

    #[test]
    fn inherit_token_gets_exactly_the_owners_scopes() {
        let owner = Owner::user("alice");
        let owner_scopes = catalog().expand(&["self"], &owner);
        let token = catalog().token_scopes(&["inherit"], &owner, &owner_scopes, &no_groups);
        assert_eq!(token.effective, owner_scopes);
        assert!(has_inherit(&role_scopes("token")));
    }

    #[test]
    fn token_scopes_the_owner_lost_are_discarded() {
        let owner = Owner::user("alice");
        let owner_scopes = catalog().expand(&["self"], &owner);
        let token = catalog().token_scopes(
            &[
                "read:users!user=bob",
                "read:hub",
                "read:users:activity!user",
            ],
            &owner,
            &owner_scopes,
            &no_groups,
        );
        assert_eq!(
            token.effective.to_sorted_strings(),
            [
                "read:users:activity!user=alice",
                "read:users:groups!user=alice",
                "read:users:name!user=alice",
            ]
        );
        assert_eq!(
            token.discarded,
            [
                "read:hub",
                "read:users!user=bob",
                "read:users:activity!user=bob",
                "read:users:groups!user=bob",
                "read:users:name!user=bob",
            ]
        );
    }

    #[test]
    fn oauth_token_of_a_server_client_gets_access_to_that_server() {
        let owner = Owner::user("alice").issued_by(Client::Server("alice/"));
        let owner_scopes = catalog().expand(&["self"], &owner);
        let token = catalog().token_scopes(
            &["read:users:name!user", "read:users:groups!user"],
            &owner,
            &owner_scopes,
            &no_groups,
        );
        assert_eq!(
            token.effective.to_sorted_strings(),
            [
                "access:servers!server=alice/",
                "read:users:groups!user=alice",
                "read:users:name!user=alice",
            ]
        );
    }
}
