//! JupyterHub's default roles and role validation.

use super::{RbacError, ScopeCatalog};

/// A role every hub has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRole {
    /// The role name.
    pub name: &'static str,
    /// A one-line description.
    pub description: &'static str,
    /// The raw scopes the role grants.
    pub scopes: &'static [&'static str],
}

/// The `admin` role's scopes; JupyterHub refuses configuration that changes them.
pub const ADMIN_ROLE_SCOPES: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:servers",
    "admin:services",
    "tokens",
    "admin:groups",
    "list:services",
    "read:services",
    "read:hub",
    "proxy",
    "shutdown",
    "access:services",
    "access:servers",
    "read:roles",
    "read:metrics",
    "shares",
];

/// The `server` role's scopes: what a single-user server's own API token gets by default.
pub const SERVER_ROLE_SCOPES: &[&str] = &["users:activity!user", "access:servers!server"];

/// The default roles: `user` (every user), `admin` (users with `admin: true`), `server`
/// (servers' API tokens), `token` (API tokens created without scopes).
pub const DEFAULT_ROLES: &[DefaultRole] = &[
    DefaultRole {
        name: "user",
        description: "What every user may do with their own account",
        scopes: &["self"],
    },
    DefaultRole {
        name: "admin",
        description: "Elevated rights over the whole hub",
        scopes: ADMIN_ROLE_SCOPES,
    },
    DefaultRole {
        name: "server",
        description: "Report activity and be reached, for a single-user server",
        scopes: SERVER_ROLE_SCOPES,
    },
    DefaultRole {
        name: "token",
        description: "Everything the token's owner may do",
        scopes: &["inherit"],
    },
];

/// The default role with this name.
pub fn default_role(name: &str) -> Option<&'static DefaultRole> {
    DEFAULT_ROLES.iter().find(|r| r.name == name)
}

/// Checks a role name as JupyterHub: `^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$`, i.e. 3–255
/// characters of lowercase ASCII letters, digits and `-_~.`, starting with a letter and ending
/// with a letter or digit.
pub fn validate_role_name(name: &str) -> Result<(), RbacError> {
    let bytes = name.as_bytes();
    let valid = (3..=255).contains(&bytes.len())
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'~' | b'.')
        });
    if valid {
        Ok(())
    } else {
        Err(RbacError::InvalidRoleName {
            name: name.to_owned(),
        })
    }
}

/// Checks a role from the configuration (`load_roles`) as JupyterHub's `create_role`: a valid
/// name, scopes that exist (message names `role <name>`), and no change to `admin`'s scopes.
pub fn validate_role<S: AsRef<str>>(
    catalog: &ScopeCatalog,
    name: &str,
    scopes: &[S],
) -> Result<(), RbacError> {
    validate_role_name(name)?;
    if name == "admin"
        && !scopes
            .iter()
            .map(AsRef::as_ref)
            .eq(ADMIN_ROLE_SCOPES.iter().copied())
    {
        let listed: Vec<String> = scopes.iter().map(|s| format!("'{}'", s.as_ref())).collect();
        return Err(RbacError::AdminRoleOverride {
            scopes: format!("[{}]", listed.join(", ")),
        });
    }
    catalog.check_scopes_exist(scopes, Some(&format!("role {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_follow_jupyterhubs_pattern() {
        for ok in ["user", "abc", "data-science_2", "x.y~z", &"a".repeat(255)] {
            assert!(validate_role_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Admin",
            "1abc",
            "abc-",
            "ab c",
            "",
            "rôle",
            &"a".repeat(256),
        ] {
            assert!(validate_role_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_role_name_message_explains_the_rules() {
        let message = validate_role_name("Bad").map_err(|e| e.to_string());
        let Err(message) = message else {
            panic!("accepted");
        };
        assert!(message.starts_with("Invalid role name: 'Bad'. Role names must:\n"));
    }

    #[test]
    fn default_roles_hold_jupyterhubs_scopes() {
        let names: Vec<_> = DEFAULT_ROLES.iter().map(|r| r.name).collect();
        assert_eq!(names, ["user", "admin", "server", "token"]);
        assert_eq!(default_role("admin").map(|r| r.scopes.len()), Some(16));
        assert_eq!(
            default_role("server").map(|r| r.scopes),
            Some(&["users:activity!user", "access:servers!server"][..])
        );
        let catalog = ScopeCatalog::builtin();
        for role in DEFAULT_ROLES {
            assert!(
                validate_role(catalog, role.name, role.scopes).is_ok(),
                "{}",
                role.name
            );
        }
    }

    #[test]
    fn configured_roles_are_checked() {
        let catalog = ScopeCatalog::builtin();
        assert_eq!(
            validate_role(catalog, "admin", &["read:hub"]).map_err(|e| e.to_string()),
            Err("Cannot override admin role admin.scopes = ['read:hub']".to_owned())
        );
        assert_eq!(
            validate_role(catalog, "grader", &["read:hubb"]).map_err(|e| e.to_string()),
            Err("Scope 'read:hubb' for role grader does not exist".to_owned())
        );
        assert!(validate_role(catalog, "grader", &["read:users!group=teachers"]).is_ok());
    }
}
