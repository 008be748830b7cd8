//! The expanded, parsed form of a set of scopes: scope name → unfiltered or a set of filters.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{RbacError, Resource};

/// The kind of resource a scope filter names (`!user=`, `!server=`, `!group=`, `!service=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilterKind {
    /// `!user=<name>`: the user and (for server scopes) all their servers.
    User,
    /// `!server=<user>/<server>`; the default server is `<user>/`.
    Server,
    /// `!group=<name>`: the group and, for user and server scopes, its members.
    Group,
    /// `!service=<name>`.
    Service,
}

impl FilterKind {
    /// All kinds, in the order filters are written out.
    pub const ALL: [FilterKind; 4] = [
        FilterKind::User,
        FilterKind::Server,
        FilterKind::Group,
        FilterKind::Service,
    ];

    /// The word used in scope strings.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterKind::User => "user",
            FilterKind::Server => "server",
            FilterKind::Group => "group",
            FilterKind::Service => "service",
        }
    }

    /// Parses the word used in scope strings.
    pub fn parse(word: &str) -> Option<FilterKind> {
        FilterKind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

impl fmt::Display for FilterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resources a filtered scope applies to; several filters on one scope add up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// User names (`!user=`).
    pub users: BTreeSet<String>,
    /// Full server names `user/server` (`!server=`).
    pub servers: BTreeSet<String>,
    /// Group names (`!group=`).
    pub groups: BTreeSet<String>,
    /// Service names (`!service=`).
    pub services: BTreeSet<String>,
}

impl Filters {
    /// The values of one kind.
    pub fn get(&self, kind: FilterKind) -> &BTreeSet<String> {
        match kind {
            FilterKind::User => &self.users,
            FilterKind::Server => &self.servers,
            FilterKind::Group => &self.groups,
            FilterKind::Service => &self.services,
        }
    }

    fn get_mut(&mut self, kind: FilterKind) -> &mut BTreeSet<String> {
        match kind {
            FilterKind::User => &mut self.users,
            FilterKind::Server => &mut self.servers,
            FilterKind::Group => &mut self.groups,
            FilterKind::Service => &mut self.services,
        }
    }

    /// Adds one filter value.
    pub fn insert(&mut self, kind: FilterKind, value: impl Into<String>) {
        self.get_mut(kind).insert(value.into());
    }

    /// Whether no filter is set (such a scope grants nothing).
    pub fn is_empty(&self) -> bool {
        FilterKind::ALL.iter().all(|&k| self.get(k).is_empty())
    }

    /// Whether these filters let the scope act on `resource` (JupyterHub's
    /// `check_scope_filter`): a resource named in the filter of its own kind; a server whose
    /// owner is in `users`; a user or server owner that belongs to a group in `groups`.
    /// Nothing filtered covers [`Resource::Hub`].
    pub fn allows(&self, resource: &Resource<'_>) -> bool {
        let in_groups = |groups: &[String]| groups.iter().any(|g| self.groups.contains(g));
        match *resource {
            Resource::Hub => false,
            Resource::User { name, groups } => self.users.contains(name) || in_groups(groups),
            Resource::Server {
                user,
                server_name,
                user_groups,
            } => {
                self.servers.contains(&format!("{user}/{server_name}"))
                    || self.users.contains(user)
                    || in_groups(user_groups)
            }
            Resource::Group { name } => self.groups.contains(name),
            Resource::Service { name } => self.services.contains(name),
        }
    }
}

/// What a set holds for one scope name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The scope applies to every resource.
    Unfiltered,
    /// The scope applies only to the resources these filters cover.
    Filtered(Filters),
}

impl Grant {
    /// Whether this grant covers every resource.
    pub fn is_unfiltered(&self) -> bool {
        matches!(self, Grant::Unfiltered)
    }
}

/// A fully expanded set of scopes (JupyterHub's "parsed scopes"): no metascopes left except
/// `inherit`, subscopes included, self-references resolved. Always reduced: an unfiltered
/// grant absorbs filtered ones for the same scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    grants: BTreeMap<String, Grant>,
}

impl ScopeSet {
    /// The empty set.
    pub fn new() -> ScopeSet {
        ScopeSet::default()
    }

    /// Parses already-expanded scope strings such as `read:users!user=alice` (e.g. stored
    /// share scopes). Metascopes and self-references are not resolved here; use
    /// [`super::ScopeCatalog::expand`] for raw scopes.
    pub fn parse_expanded<S: AsRef<str>>(scopes: &[S]) -> Result<ScopeSet, RbacError> {
        let mut set = ScopeSet::new();
        for scope in scopes {
            set.insert_expanded(scope.as_ref())?;
        }
        Ok(set)
    }

    /// Adds one expanded scope string.
    pub fn insert_expanded(&mut self, scope: &str) -> Result<(), RbacError> {
        let Some((name, filter)) = scope.split_once('!') else {
            self.grant_unfiltered(scope);
            return Ok(());
        };
        let Some((kind, value)) = filter.split_once('=') else {
            return Err(RbacError::EmptyFilterValue {
                scope: scope.to_owned(),
            });
        };
        let Some(kind) = FilterKind::parse(kind) else {
            return Err(RbacError::UnknownFilter {
                filter: filter.to_owned(),
                scope: scope.to_owned(),
                context: String::new(),
            });
        };
        if value.is_empty() {
            return Err(RbacError::EmptyFilterValue {
                scope: scope.to_owned(),
            });
        }
        self.grant_filtered(name, kind, value);
        Ok(())
    }

    /// Grants `name` on every resource.
    pub fn grant_unfiltered(&mut self, name: &str) {
        self.grants.insert(name.to_owned(), Grant::Unfiltered);
    }

    /// Grants `name` on the resources `kind=value` covers (no effect if already unfiltered).
    pub fn grant_filtered(&mut self, name: &str, kind: FilterKind, value: &str) {
        let grant = self
            .grants
            .entry(name.to_owned())
            .or_insert_with(|| Grant::Filtered(Filters::default()));
        if let Grant::Filtered(filters) = grant {
            filters.insert(kind, value);
        }
    }

    /// Grants `name` with `grant`, combining with what is already held.
    pub fn grant(&mut self, name: &str, grant: &Grant) {
        match grant {
            Grant::Unfiltered => self.grant_unfiltered(name),
            Grant::Filtered(filters) => {
                for kind in FilterKind::ALL {
                    for value in filters.get(kind) {
                        self.grant_filtered(name, kind, value);
                    }
                }
            }
        }
    }

    /// Adds everything `other` holds (set union).
    pub fn extend(&mut self, other: &ScopeSet) {
        for (name, grant) in &other.grants {
            self.grant(name, grant);
        }
    }

    /// What is held for one scope name.
    pub fn get(&self, name: &str) -> Option<&Grant> {
        self.grants.get(name)
    }

    /// Whether the scope is held at all, filtered or not.
    pub fn contains(&self, name: &str) -> bool {
        self.grants.contains_key(name)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// The scope names held with their grants, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Grant)> {
        self.grants.iter().map(|(n, g)| (n.as_str(), g))
    }

    /// Whether `scope` is held for `resource` (JupyterHub's `get_scope_filter(scope)(resource)`).
    /// [`Resource::Hub`] is allowed only by an unfiltered grant.
    pub fn allows(&self, scope: &str, resource: &Resource<'_>) -> bool {
        match self.grants.get(scope) {
            None => false,
            Some(Grant::Unfiltered) => true,
            Some(Grant::Filtered(filters)) => filters.allows(resource),
        }
    }

    /// Whether any filter names a group, i.e. whether checks need the user's groups loaded.
    pub fn needs_groups(&self) -> bool {
        self.grants
            .values()
            .any(|g| matches!(g, Grant::Filtered(f) if !f.groups.is_empty()))
    }

    /// Every user name the filters mention (`!user=` values and the owners in `!server=`), so
    /// a caller can load their group memberships before [`super::intersect`].
    pub fn filter_user_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for grant in self.grants.values() {
            if let Grant::Filtered(filters) = grant {
                names.extend(filters.users.iter().cloned());
                names.extend(filters.servers.iter().map(|s| server_owner(s).to_owned()));
            }
        }
        names
    }

    /// The set as expanded scope strings (`name` or `name!kind=value`).
    pub fn to_strings(&self) -> BTreeSet<String> {
        self.to_sorted_strings().into_iter().collect()
    }

    /// The set as sorted expanded scope strings, as JupyterHub lists `scopes` in
    /// `GET /hub/api/user` and the token model.
    pub fn to_sorted_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, grant) in &self.grants {
            match grant {
                Grant::Unfiltered => out.push(name.clone()),
                Grant::Filtered(filters) => {
                    for kind in FilterKind::ALL {
                        for value in filters.get(kind) {
                            out.push(format!("{name}!{kind}={value}"));
                        }
                    }
                }
            }
        }
        out.sort();
        out
    }

    pub(super) fn grants(&self) -> &BTreeMap<String, Grant> {
        &self.grants
    }

    pub(super) fn from_grants(grants: BTreeMap<String, Grant>) -> ScopeSet {
        ScopeSet {
            grants: grants
                .into_iter()
                .filter(|(_, g)| !matches!(g, Grant::Filtered(f) if f.is_empty()))
                .collect(),
        }
    }
}

/// The user part of a full server name `user/server`.
pub(super) fn server_owner(full_name: &str) -> &str {
    full_name.split_once('/').map_or(full_name, |(u, _)| u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(scopes: &[&str]) -> ScopeSet {
        match ScopeSet::parse_expanded(scopes) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn several_filters_on_one_scope_add_up_and_unfiltered_wins() {
        let s = set(&[
            "read:users!user=alice",
            "read:users!group=physics",
            "access:servers!server=bob/",
            "access:servers",
            "access:servers!user=carol",
        ]);
        assert_eq!(
            s.to_sorted_strings(),
            [
                "access:servers",
                "read:users!group=physics",
                "read:users!user=alice",
            ]
        );
    }

    #[test]
    fn parsing_rejects_filters_without_value_or_with_unknown_kind() {
        assert!(ScopeSet::parse_expanded(&["read:users!user"]).is_err());
        assert!(ScopeSet::parse_expanded(&["read:users!user="]).is_err());
        assert!(ScopeSet::parse_expanded(&["read:users!owner=x"]).is_err());
    }

    #[test]
    fn filter_user_names_include_server_owners() {
        let s = set(&[
            "read:users!user=alice",
            "access:servers!server=bob/gpu",
            "read:groups!group=g",
        ]);
        let names: Vec<_> = s.filter_user_names().into_iter().collect();
        assert_eq!(names, ["alice", "bob"]);
        assert!(s.needs_groups());
        assert!(!set(&["read:users!user=alice"]).needs_groups());
    }
}
