//! Filter-aware intersection of expanded scope sets, and the checks that use it when scopes
//! are requested for a token.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::scope_set::server_owner;
use super::{Entity, Filters, Grant, Owner, RbacError, ScopeCatalog, ScopeSet};

/// What two expanded sets both allow, as JupyterHub's `_intersect_expanded_scopes` with group
/// membership available:
///
/// - unfiltered ∩ anything = that thing;
/// - filters of the same kind intersect by value;
/// - a server on one side is kept if its owner is a user on the other side, or belongs to a
///   group on the other side;
/// - a user on one side is kept if they belong to a group on the other side.
///
/// `groups_of(user)` gives a user's group names; it is called only when group filters meet
/// user or server filters (see [`ScopeSet::filter_user_names`] to preload).
pub fn intersect(a: &ScopeSet, b: &ScopeSet, groups_of: &dyn Fn(&str) -> Vec<String>) -> ScopeSet {
    let cache: RefCell<HashMap<String, BTreeSet<String>>> = RefCell::new(HashMap::new());
    let in_any_group = |user: &str, groups: &BTreeSet<String>| {
        let mut cache = cache.borrow_mut();
        let user_groups = cache
            .entry(user.to_owned())
            .or_insert_with(|| groups_of(user).into_iter().collect());
        !user_groups.is_disjoint(groups)
    };

    let mut common = BTreeMap::new();
    for (name, grant_a) in a.grants() {
        let Some(grant_b) = b.get(name) else {
            continue;
        };
        let grant = match (grant_a, grant_b) {
            (Grant::Unfiltered, other) | (other, Grant::Unfiltered) => other.clone(),
            (Grant::Filtered(fa), Grant::Filtered(fb)) => {
                Grant::Filtered(intersect_filters(fa, fb, &in_any_group))
            }
        };
        common.insert(name.clone(), grant);
    }
    ScopeSet::from_grants(common)
}

fn intersect_filters(
    a: &Filters,
    b: &Filters,
    in_any_group: &dyn Fn(&str, &BTreeSet<String>) -> bool,
) -> Filters {
    let both = |x: &BTreeSet<String>, y: &BTreeSet<String>| x.intersection(y).cloned().collect();
    let mut common = Filters {
        users: both(&a.users, &b.users),
        servers: both(&a.servers, &b.servers),
        groups: both(&a.groups, &b.groups),
        services: both(&a.services, &b.services),
    };
    for (x, y) in [(a, b), (b, a)] {
        // Servers are under their owner, and the owner under their groups.
        for server in &x.servers {
            if common.servers.contains(server) {
                continue;
            }
            let owner = server_owner(server);
            if y.users.contains(owner) || (!y.groups.is_empty() && in_any_group(owner, &y.groups)) {
                common.servers.insert(server.clone());
            }
        }
        if !y.groups.is_empty() {
            for user in &x.users {
                if !common.users.contains(user) && in_any_group(user, &y.groups) {
                    common.users.insert(user.clone());
                }
            }
        }
    }
    common
}

impl ScopeCatalog {
    /// Checks scopes requested for a new API token (`POST /users/{name}/tokens`, service
    /// creation) as JupyterHub's `_check_token_scopes`: every expanded requested scope must be
    /// covered by `owner_scopes` (the owner's current expanded scopes). `inherit` alone is
    /// always fine. Returns the expanded requested scopes (`owner_scopes` for `inherit` alone).
    ///
    /// Validate the strings first with [`ScopeCatalog::check_scopes_exist`] (`who_for`
    /// `"token"`); both errors are answered 400 with the error's text.
    pub fn check_token_scopes<S: AsRef<str>>(
        &self,
        requested: &[S],
        owner: &Owner<'_>,
        owner_scopes: &ScopeSet,
        groups_of: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<ScopeSet, RbacError> {
        let without_inherit: Vec<&str> = requested
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| *s != "inherit")
            .collect();
        if without_inherit.is_empty() {
            return Ok(owner_scopes.clone());
        }
        let wanted = self.expand(&without_inherit, owner);
        let held = intersect(&wanted, owner_scopes, groups_of).to_strings();
        let excess: Vec<String> = wanted
            .to_sorted_strings()
            .into_iter()
            .filter(|s| !held.contains(s))
            .collect();
        if excess.is_empty() {
            return Ok(wanted);
        }
        let owner = match owner.entity {
            Entity::User(name) => format!("User {name}"),
            Entity::Service(name) => format!("Service {name}"),
            Entity::Nobody => "None".to_owned(),
        };
        Err(RbacError::ScopesNotHeld {
            scopes: excess,
            owner,
        })
    }

    /// Resolves raw scopes requested through OAuth or for a server's token against the raw
    /// scopes the user holds, as JupyterHub's `_resolve_requested_scopes`.
    ///
    /// A requested scope held verbatim is allowed. Otherwise it is expanded: if the holder's
    /// expanded scopes cover all of it, the raw scope is allowed as written; if they cover
    /// part, that part is allowed as expanded strings and the raw scope is still reported
    /// disallowed; else it is disallowed. Requests are taken in sorted order (JupyterHub
    /// takes them in hash order, so when they overlap its `allowed` strings can vary between
    /// runs; the permissions they grant do not). Callers add `inherit` (and, for OAuth, the identify
    /// and access scopes) to `have` as JupyterHub does; see the module documentation.
    pub fn resolve_requested_scopes(
        &self,
        requested: &BTreeSet<String>,
        have: &BTreeSet<String>,
        owner: &Owner<'_>,
        groups_of: &dyn Fn(&str) -> Vec<String>,
    ) -> ResolvedScopes {
        let mut allowed: BTreeSet<String> = requested.intersection(have).cloned().collect();
        let mut disallowed: BTreeSet<String> = requested.difference(have).cloned().collect();
        if disallowed.is_empty() {
            return ResolvedScopes {
                allowed,
                disallowed,
            };
        }
        let expand = |raw: &BTreeSet<String>| {
            let raw: Vec<&str> = raw.iter().map(String::as_str).collect();
            self.expand(&raw, owner)
        };
        let expanded_have = expand(have);
        let mut expanded_allowed = expand(&allowed).to_strings();
        for scope in disallowed.clone() {
            let already = &expanded_allowed;
            let missing: BTreeSet<String> = expand(&BTreeSet::from([scope.clone()]))
                .to_strings()
                .into_iter()
                .filter(|s| !already.contains(s))
                .collect();
            let granted = if missing.is_empty() {
                BTreeSet::new()
            } else {
                let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
                let missing = match ScopeSet::parse_expanded(&missing) {
                    Ok(set) => set,
                    // Strings written by `to_strings` always parse.
                    Err(_) => continue,
                };
                intersect(&missing, &expanded_have, groups_of).to_strings()
            };
            if granted == missing {
                allowed.insert(scope.clone());
                disallowed.remove(&scope);
                expanded_allowed = expand(&allowed).to_strings();
            } else if !granted.is_empty() {
                allowed.extend(granted);
                expanded_allowed = expand(&allowed).to_strings();
            }
        }
        ResolvedScopes {
            allowed,
            disallowed,
        }
    }
}

/// The outcome of [`ScopeCatalog::resolve_requested_scopes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedScopes {
    /// Scopes to store on the token: raw requested scopes, plus expanded strings for requests
    /// that were only partly held.
    pub allowed: BTreeSet<String>,
    /// Raw requested scopes not (fully) held.
    pub disallowed: BTreeSet<String>,
}

/// The raw scopes to request for a server's API token, as JupyterHub's spawn does:
/// `requested` (`Spawner.server_token_scopes`, or the `server` role's scopes when empty) with
/// `!server` resolved to `!server=<user>/<server_name>`, plus `users:activity!user` unless
/// `users:activity!user`, `users:activity` or `inherit` is already there. Resolve the result
/// with [`ScopeCatalog::resolve_requested_scopes`] against the user's raw role scopes plus
/// `inherit`, owner [`Owner::user`].
pub fn server_token_request<S: AsRef<str>>(
    requested: &[S],
    user: &str,
    server_name: &str,
) -> BTreeSet<String> {
    let mut scopes: BTreeSet<String> = if requested.is_empty() {
        super::SERVER_ROLE_SCOPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        requested.iter().map(|s| s.as_ref().to_owned()).collect()
    };
    scopes = scopes
        .into_iter()
        .map(|s| {
            if s.ends_with("!server") {
                format!("{s}={user}/{server_name}")
            } else {
                s
            }
        })
        .collect();
    if !["users:activity!user", "users:activity", "inherit"]
        .iter()
        .any(|s| scopes.contains(*s))
    {
        scopes.insert("users:activity!user".to_owned());
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::super::{Client, IDENTIFY_RAW_SCOPES};
    use super::*;

    fn set(scopes: &[&str]) -> ScopeSet {
        match ScopeSet::parse_expanded(scopes) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn strings(scopes: &[&str]) -> BTreeSet<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    fn groups(
        table: &'static [(&'static str, &'static [&'static str])],
    ) -> impl Fn(&str) -> Vec<String> {
        move |user: &str| {
            table
                .iter()
                .filter(|(_, members)| members.contains(&user))
                .map(|(group, _)| (*group).to_owned())
                .collect()
        }
    }

    fn no_groups(_: &str) -> Vec<String> {
        Vec::new()
    }

    /// Checks both directions, as intersection must be symmetric.
    fn assert_intersection(
        left: &[&str],
        right: &[&str],
        expected: &[&str],
        groups_of: &dyn Fn(&str) -> Vec<String>,
    ) {
        let (l, r) = (set(left), set(right));
        let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        expected.sort();
        assert_eq!(intersect(&l, &r, groups_of).to_sorted_strings(), expected);
        assert_eq!(intersect(&r, &l, groups_of).to_sorted_strings(), expected);
    }

    #[test]
    fn intersection_without_groups_matches_jupyterhub_cases() {
        assert_intersection(&[], &["users"], &[], &no_groups);
        assert_intersection(&["users!user=x", "users!group=y"], &[], &[], &no_groups);
        assert_intersection(
            &["users!user=x", "users!user=y", "users!group=y"],
            &["users!user=x"],
            &["users!user=x"],
            &no_groups,
        );
        assert_intersection(
            &["users!user=x", "users!group=y"],
            &["users!user=x", "users!group=y", "users!user=z"],
            &["users!user=x", "users!group=y"],
            &no_groups,
        );
        assert_intersection(
            &["users!group=y", "users!user=z"],
            &["users!user=x"],
            &[],
            &no_groups,
        );
        assert_intersection(&["users!group=y"], &["users!user=x"], &[], &no_groups);
        assert_intersection(&["servers!user=y"], &["servers!server=x/"], &[], &no_groups);
    }

    #[test]
    fn unfiltered_side_keeps_the_other_sides_filters() {
        assert_intersection(
            &["read:users:name", "read:hub"],
            &["read:users:name!user=x", "read:users:name!group=g"],
            &["read:users:name!group=g", "read:users:name!user=x"],
            &no_groups,
        );
    }

    #[test]
    fn server_filter_is_kept_under_its_owners_user_filter() {
        assert_intersection(
            &["read:servers!user=abc"],
            &["read:servers!server=abc/xyz"],
            &["read:servers!server=abc/xyz"],
            &no_groups,
        );
        assert_intersection(
            &["read:servers!user=abc"],
            &["read:servers!server=abcd/xyz"],
            &[],
            &no_groups,
        );
    }

    #[test]
    fn group_membership_resolves_users_and_servers() {
        let gx = groups(&[("gx", &["ux"])]);
        let gxy = groups(&[("gx", &["ux"]), ("gy", &["uy"])]);
        assert_intersection(
            &["users!group=gx"],
            &["users!user=ux"],
            &["users!user=ux"],
            &gx,
        );
        assert_intersection(
            &["read:users!group=gx"],
            &["read:users!user=nosuchuser"],
            &[],
            &no_groups,
        );
        assert_intersection(
            &["read:users!group=gx"],
            &["read:users!server=ux/server"],
            &["read:users!server=ux/server"],
            &gx,
        );
        assert_intersection(
            &["read:users!group=gx"],
            &["read:users!server=ux/server", "read:users!user=uy"],
            &["read:users!server=ux/server"],
            &gxy,
        );
        assert_intersection(
            &["read:users!group=gy"],
            &["read:users!server=ux/server", "read:users!user=uy"],
            &["read:users!user=uy"],
            &gxy,
        );
        assert_intersection(
            &["read:servers!server=ux/server", "read:servers!group=gy"],
            &["read:servers!server=uy/server", "read:servers!user=ux"],
            &[
                "read:servers!server=ux/server",
                "read:servers!server=uy/server",
            ],
            &gxy,
        );
        assert_intersection(
            &["read:servers!user=ux", "read:servers!group=gy"],
            &["read:servers!user=uy", "read:servers!group=gx"],
            &["read:servers!user=ux", "read:servers!user=uy"],
            &gxy,
        );
    }

    #[test]
    fn token_with_scopes_the_owner_lacks_is_refused_with_jupyterhub_message() {
        let catalog = ScopeCatalog::builtin();
        let owner = Owner::user("alice");
        let owner_scopes = catalog.expand(&["self"], &owner);
        let err = catalog
            .check_token_scopes(&["read:users!user=bob"], &owner, &owner_scopes, &no_groups)
            .map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(
                "Not assigning requested scopes read:users!user=bob,read:users:activity!user=bob,\
                 read:users:groups!user=bob,read:users:name!user=bob not held by User alice"
                    .to_owned()
            )
        );
    }

    #[test]
    fn token_with_scopes_the_owner_holds_is_accepted() {
        let catalog = ScopeCatalog::builtin();
        let owner = Owner::user("alice");
        let owner_scopes = catalog.expand(&["self"], &owner);
        let ok = catalog.check_token_scopes(
            &[
                "read:users:name!user",
                "access:servers!server=alice/gpu",
                "inherit",
            ],
            &owner,
            &owner_scopes,
            &no_groups,
        );
        assert_eq!(
            ok.map(|s| s.to_sorted_strings()),
            Ok(vec![
                "access:servers!server=alice/gpu".to_owned(),
                "read:users:name!user=alice".to_owned(),
            ])
        );
        let only_inherit =
            catalog.check_token_scopes(&["inherit"], &owner, &owner_scopes, &no_groups);
        assert_eq!(only_inherit, Ok(owner_scopes));
    }

    #[test]
    fn admin_may_give_a_token_scopes_on_other_users() {
        let catalog = ScopeCatalog::builtin();
        let owner = Owner::user("root");
        let owner_scopes = catalog.expand(&["admin:users", "self"], &owner);
        assert!(catalog
            .check_token_scopes(
                &["read:users:name!user=nobody", "list:users!user=nobody"],
                &owner,
                &owner_scopes,
                &no_groups,
            )
            .is_ok());
    }

    #[test]
    fn server_token_request_resolves_to_the_server_role_for_its_user() {
        let catalog = ScopeCatalog::builtin();
        let requested = server_token_request::<&str>(&[], "alice", "");
        assert_eq!(
            requested,
            strings(&["access:servers!server=alice/", "users:activity!user"])
        );
        let have = strings(&["self", "inherit"]);
        let resolved =
            catalog.resolve_requested_scopes(&requested, &have, &Owner::user("alice"), &no_groups);
        assert_eq!(resolved.allowed, requested);
        assert!(resolved.disallowed.is_empty());
        let custom = server_token_request(&["read:hub"], "alice", "gpu");
        assert_eq!(custom, strings(&["read:hub", "users:activity!user"]));
    }

    #[test]
    fn oauth_request_keeps_held_part_and_reports_the_rest() {
        let catalog = ScopeCatalog::builtin();
        let owner = Owner::user("alice").issued_by(Client::Server("alice/"));
        let mut requested = strings(&["read:users", "read:users:name!user"]);
        requested.extend(IDENTIFY_RAW_SCOPES.iter().map(|s| (*s).to_owned()));
        requested.insert("access:servers!server=alice/".to_owned());
        let mut have = strings(&["self", "inherit", "access:servers!server=alice/"]);
        have.extend(IDENTIFY_RAW_SCOPES.iter().map(|s| (*s).to_owned()));
        let resolved = catalog.resolve_requested_scopes(&requested, &have, &owner, &no_groups);
        assert_eq!(resolved.disallowed, strings(&["read:users"]));
        assert_eq!(
            resolved.allowed,
            strings(&[
                "access:servers!server=alice/",
                "read:users!user=alice",
                "read:users:activity!user=alice",
                "read:users:groups!user",
                "read:users:groups!user=alice",
                "read:users:name!user",
                "read:users:name!user=alice",
            ])
        );
    }
}
