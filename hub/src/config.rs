//! Configuration: defaults, then a TOML file, then `XIJI_*` environment variables, then CLI flags.
//! Every key is documented in `docs/configuration.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration problem, reported before the hub starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has unknown keys.
    #[error("invalid configuration file {path}: {source}")]
    Parse {
        /// The file's path.
        path: PathBuf,
        /// The TOML error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A file or directory the configuration names does not exist.
    #[error("{key}: {path} does not exist")]
    MissingPath {
        /// The configuration key (or flag) that names it, e.g. `admin.password_file`.
        key: String,
        /// The path, made absolute.
        path: PathBuf,
    },
    /// The working directory, which relative paths are resolved against, cannot be read.
    #[error("cannot resolve relative paths: the current directory is unreadable: {0}")]
    CurrentDir(std::io::Error),
}

/// The hub's whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Public address the proxy listens on (the hub is served behind it, in process).
    pub bind: SocketAddr,
    /// Public URL users reach, e.g. `https://xiji.example.edu/`; `None` = derived per request.
    pub public_url: Option<String>,
    /// Where the SQLite database, logs, per-user work folders and the notebook venv live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: `sqlite://{data_dir}/xiji.sqlite`.
    pub database_url: Option<String>,
    /// `tracing` filter, e.g. `info` or `hub=debug,info`.
    pub log: String,
    /// Whether users may have named servers besides their default one.
    pub allow_named_servers: bool,
    /// Most named servers a user may have (0 = unlimited).
    pub named_server_limit_per_user: u32,
    /// Lifetime of the login cookie and of OAuth access tokens, in days.
    pub cookie_max_age_days: u32,
    /// Default page size of paginated API lists.
    pub api_page_default_limit: u32,
    /// Largest page size; also the size of unpaginated lists.
    pub api_page_max_limit: u32,
    /// Seconds a start request waits before answering 202 and letting the spawn go on.
    pub slow_spawn_timeout: f64,
    /// Seconds a stop request waits before answering 202.
    pub slow_stop_timeout: f64,
    /// Largest accepted request body for the API, in bytes.
    pub max_body_bytes: usize,
    /// Failed logins allowed per user name and per address within `login_throttle_window` seconds.
    pub login_throttle_attempts: u32,
    /// Window and lock-out period of login throttling, in seconds.
    pub login_throttle_window: u64,
    /// Mark cookies `Secure`; default: when `public_url` is https.
    pub cookie_secure: Option<bool>,
    /// The first administrator, created on first start.
    pub admin: AdminConfig,
    /// How servers are started.
    pub spawner: SpawnerConfig,
    /// External services with API tokens (like JupyterHub's `c.JupyterHub.services`).
    pub services: Vec<ServiceConfig>,
    /// Extra roles (like JupyterHub's `c.JupyterHub.load_roles`).
    pub roles: Vec<RoleConfig>,
    /// The proxy: embedded (default) or an external one driven through CHP's REST API.
    pub proxy: ProxySettings,
    /// Saving running nodes as images (`POST …/save-image`).
    pub images: ImagesConfig,
    /// Datasets: limits and upload housekeeping.
    pub datasets: DatasetsConfig,
    /// Metering: how often running clusters are written to the ledger, the days' time zone.
    pub metering: MeteringConfig,
    /// How users sign in: local passwords (default) or a campus OpenID Connect provider.
    pub auth: AuthConfig,
}

/// How users sign in (`[auth]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `local` (passwords kept by the hub), `oidc` (a campus OpenID Connect provider) or
    /// `oauth2` (a plain OAuth2 provider with a user-info endpoint).
    pub kind: AuthKind,
    /// Who may still sign in with a local password beside campus login: `everyone`, `admins`
    /// (the default with campus login) or `off`. Only `everyone` with `kind = "local"`.
    pub local_logins: Option<LocalLogins>,
    /// Keep what the provider gave at each campus login (tokens and claims) as the user's
    /// `auth_state`, encrypted, for administrators to read through the API as JupyterHub does.
    pub enable_auth_state: bool,
    /// A file holding the key(s) `auth_state` is encrypted with: 32 bytes each, written as 64
    /// hex digits or 44 characters of URL-safe base64, several separated by `;` (the first
    /// encrypts; the others still decrypt, for rotation). Without it, the environment variable
    /// `JUPYTERHUB_CRYPT_KEY` in the same format, as JupyterHub reads it.
    pub crypt_key_file: Option<PathBuf>,
    /// Seconds after which what a campus login said of a user is asked again (with the
    /// refresh token kept in `auth_state`): by a background loop for users signed in or with a
    /// server, and before a start. `0`: only at logins.
    pub refresh_age: f64,
    /// The identity provider, for `kind = "oidc"` or `"oauth2"` (`[auth.oidc]`, or
    /// `[auth.oauth2]`: the same settings).
    #[serde(alias = "oauth2")]
    pub oidc: OidcConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            kind: AuthKind::Local,
            local_logins: None,
            enable_auth_state: false,
            crypt_key_file: None,
            refresh_age: 300.0,
            oidc: OidcConfig::default(),
        }
    }
}

/// The environment variable JupyterHub reads its `auth_state` keys from; Xiji reads the same.
pub const CRYPT_KEY_ENV: &str = "JUPYTERHUB_CRYPT_KEY";

impl AuthConfig {
    /// Whether users sign in at an identity provider (`oidc` or `oauth2`).
    pub fn campus(&self) -> bool {
        self.kind != AuthKind::Local
    }

    /// Who may sign in with a local password.
    pub fn local_logins(&self) -> LocalLogins {
        match (self.kind, self.local_logins) {
            (AuthKind::Local, _) => LocalLogins::Everyone,
            (_, Some(l)) => l,
            (_, None) => LocalLogins::Admins,
        }
    }

    /// The text of the `auth_state` key(s): `crypt_key_file`, else `JUPYTERHUB_CRYPT_KEY`.
    pub fn crypt_key_text(&self) -> Result<Option<String>, ConfigError> {
        if let Some(f) = &self.crypt_key_file {
            return std::fs::read_to_string(f)
                .map(|s| Some(s.trim().to_owned()))
                .map_err(|source| ConfigError::Read {
                    path: f.clone(),
                    source,
                });
        }
        Ok(std::env::var(CRYPT_KEY_ENV)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()))
    }

    /// The provider section's name in messages.
    fn section(&self) -> &'static str {
        match self.kind {
            AuthKind::OAuth2 => "auth.oauth2",
            _ => "auth.oidc",
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.kind == AuthKind::Local {
            if matches!(self.local_logins, Some(l) if l != LocalLogins::Everyone) {
                return Err(ConfigError::Invalid(
                    "auth.local_logins: with kind = \"local\" everyone signs in with a password; \
                     set kind = \"oidc\" or \"oauth2\" first"
                        .into(),
                ));
            }
        } else {
            self.oidc.validate(self.kind, self.section())?;
        }
        if !(self.refresh_age.is_finite() && self.refresh_age >= 0.0) {
            return Err(ConfigError::Invalid(
                "auth.refresh_age: seconds, 0 or more".into(),
            ));
        }
        let env_key = std::env::var(CRYPT_KEY_ENV).is_ok_and(|k| !k.trim().is_empty());
        if self.enable_auth_state && self.crypt_key_file.is_none() && !env_key {
            return Err(ConfigError::Invalid(format!(
                "auth.enable_auth_state needs the encryption key: set auth.crypt_key_file or \
                 {CRYPT_KEY_ENV} (e.g. the output of `openssl rand -hex 32`)"
            )));
        }
        Ok(())
    }
}

/// The sign-in methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// Local user names and passwords only.
    #[default]
    Local,
    /// "Log in with {provider}" through OpenID Connect (discovery, ID token).
    Oidc,
    /// "Log in with {provider}" through plain OAuth2: who the user is comes from the provider's
    /// user-info endpoint.
    #[serde(rename = "oauth2")]
    OAuth2,
}

/// Who may sign in with a local password when campus login is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalLogins {
    /// Every account with a password.
    Everyone,
    /// Administrators only (a way in when the provider is down); others are sent to it.
    Admins,
    /// Nobody: the login page offers only the provider.
    Off,
}

/// A quota class: users the claims put in it get its limits as their quota exception.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaClassConfig {
    /// Its name, also the value of `quota_class_claim` that selects it.
    pub name: String,
    /// Members of any of these provider groups are in the class.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The limits, written as for a quota exception: `{ cpus = 16, memory = "64G", gpus = 2 }`.
    pub limits: serde_json::Value,
}

/// A campus identity provider (`[auth.oidc]` or `[auth.oauth2]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// Shown on the login button: "Log in with {provider_name}".
    pub provider_name: String,
    /// OpenID Connect: the issuer URL; its `/.well-known/openid-configuration` names the
    /// endpoints.
    pub issuer: String,
    /// OAuth2: the authorization endpoint.
    pub authorize_url: String,
    /// OAuth2: the token endpoint.
    pub token_url: String,
    /// OAuth2: the user-info endpoint, read with the access token (the claims come from it).
    pub userinfo_url: String,
    /// OAuth2: where logging out sends the browser afterwards (the provider's sign-out page),
    /// if anywhere.
    pub logout_url: Option<String>,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret; else `client_secret_file`.
    pub client_secret: Option<String>,
    /// A file holding the client secret (surrounding whitespace ignored).
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for (with `oidc`, `openid` is always asked for).
    pub scopes: Vec<String>,
    /// Send a PKCE (S256) challenge with each login (as JupyterHub's OAuthenticator does by
    /// default); off only for a provider that refuses it.
    pub pkce: bool,
    /// The claim holding the user name; a login without it is refused.
    pub username_claim: String,
    /// The claim holding the user's groups (a list of strings); `None` = no groups.
    pub groups_claim: Option<String>,
    /// A claim whose values (a string or a list, e.g. `eduPersonAffiliation`) count like groups
    /// for `admin_groups`, `teacher_groups`, `allowed_groups` and the quota classes, without
    /// becoming hub groups.
    pub role_claim: Option<String>,
    /// Provider group names to hub group names (e.g. a directory's long names to course
    /// names). When given, only the groups named here become hub groups.
    pub group_map: BTreeMap<String, String>,
    /// Members of these provider groups are administrators.
    pub admin_groups: Vec<String>,
    /// Members of these provider groups (and not of `admin_groups`) are teachers; everyone
    /// else a student.
    pub teacher_groups: Vec<String>,
    /// Only these users may sign in (with `allowed_groups`: either); both empty = everyone.
    pub allowed_users: Vec<String>,
    /// Only members of these provider groups (or of `admin_groups`) may sign in.
    pub allowed_groups: Vec<String>,
    /// Keep the user's hub groups in line with the provider's on every sign-in: added to each,
    /// and taken out of the groups an earlier sign-in put them in that the provider no longer
    /// names. Groups administrators or teachers fill by hand are left alone.
    pub manage_groups: bool,
    /// A claim whose value names the user's quota class (else the class comes from groups).
    pub quota_class_claim: Option<String>,
    /// Quota classes, in order: the first one the claim names or a group is in applies.
    pub quota_classes: Vec<QuotaClassConfig>,
    /// The redirect URI registered at the provider; default: `{public_url}hub/oauth_callback`,
    /// or the request's host when `public_url` is not set.
    pub callback_url: Option<String>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            provider_name: "Campus".into(),
            issuer: String::new(),
            authorize_url: String::new(),
            token_url: String::new(),
            userinfo_url: String::new(),
            logout_url: None,
            client_id: String::new(),
            client_secret: None,
            client_secret_file: None,
            scopes: vec!["openid".into(), "profile".into()],
            pkce: true,
            username_claim: "preferred_username".into(),
            groups_claim: None,
            role_claim: None,
            group_map: BTreeMap::new(),
            admin_groups: Vec::new(),
            teacher_groups: Vec::new(),
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
            manage_groups: false,
            quota_class_claim: None,
            quota_classes: Vec::new(),
            callback_url: None,
        }
    }
}

/// Where the client secret comes from when the configuration gives none, as in JupyterHub's
/// OAuthenticator (a Kubernetes Secret handed in as an environment variable).
pub const CLIENT_SECRET_ENV: &str = "OAUTH_CLIENT_SECRET";

fn client_secret_from_env() -> Option<String> {
    std::env::var(CLIENT_SECRET_ENV)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn http_url(section: &str, key: &str, value: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(value)
        .map_err(|e| ConfigError::Invalid(format!("{section}.{key} {value:?}: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::Invalid(format!(
            "{section}.{key} {value:?}: must be http:// or https://"
        )));
    }
    Ok(())
}

impl OidcConfig {
    /// The client secret: `client_secret`, the trimmed content of `client_secret_file`, else
    /// the environment variable `OAUTH_CLIENT_SECRET` (JupyterHub OAuthenticator's).
    pub fn secret(&self) -> Result<String, ConfigError> {
        if let Some(s) = &self.client_secret {
            return Ok(s.clone());
        }
        match &self.client_secret_file {
            Some(f) => std::fs::read_to_string(f)
                .map(|s| s.trim().to_owned())
                .map_err(|source| ConfigError::Read {
                    path: f.clone(),
                    source,
                }),
            None => client_secret_from_env().ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "auth.oidc: give client_secret, client_secret_file or {CLIENT_SECRET_ENV}"
                ))
            }),
        }
    }

    fn validate(&self, kind: AuthKind, section: &str) -> Result<(), ConfigError> {
        if kind == AuthKind::OAuth2 {
            for (key, value) in [
                ("authorize_url", &self.authorize_url),
                ("token_url", &self.token_url),
                ("userinfo_url", &self.userinfo_url),
            ] {
                http_url(section, key, value)?;
            }
            if let Some(url) = &self.logout_url {
                http_url(section, "logout_url", url)?;
            }
        } else {
            http_url(section, "issuer", &self.issuer)?;
        }
        if self.client_id.is_empty() || self.username_claim.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{section}: client_id and username_claim must not be empty"
            )));
        }
        match (&self.client_secret, &self.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "{section}: give client_secret or client_secret_file, not both"
                )))
            }
            (None, None) if client_secret_from_env().is_none() => {
                return Err(ConfigError::Invalid(format!(
                    "{section}: give client_secret or client_secret_file (or set {CLIENT_SECRET_ENV})"
                )))
            }
            _ => {}
        }
        let mut names = std::collections::BTreeSet::new();
        for class in &self.quota_classes {
            if class.name.trim().is_empty() || !names.insert(class.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "{section}.quota_classes: each class needs a name of its own ({:?})",
                    class.name
                )));
            }
        }
        Ok(())
    }
}

/// Metering of running clusters into the usage ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeteringConfig {
    /// Seconds between checkpoints of running clusters (what a hub crash can leave unwritten,
    /// until the next start recovers it from the backend).
    pub checkpoint_interval: f64,
    /// The installation's time zone (IANA name, e.g. `Asia/Shanghai`): days end at its
    /// midnight. Empty: the host's (`/etc/timezone`, else `UTC`).
    pub time_zone: String,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval: 15.0,
            time_zone: String::new(),
        }
    }
}

impl MeteringConfig {
    /// The time zone days are counted in.
    pub fn tz(&self) -> Result<chrono_tz::Tz, ConfigError> {
        let name = if self.time_zone.is_empty() {
            std::fs::read_to_string("/etc/timezone")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "UTC".to_owned())
        } else {
            self.time_zone.clone()
        };
        name.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "metering.time_zone {name:?} is not a time zone name (e.g. \"Asia/Shanghai\", \"UTC\")"
            ))
        })
    }
}

/// Datasets: how much a user may store, the cover's size, how long an unfinished upload waits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetsConfig {
    /// What one user's datasets may hold, in GiB (counting uploads under way).
    pub user_limit_gb: f64,
    /// Largest cover image, in KiB.
    pub cover_max_kb: u64,
    /// Hours an unfinished upload is kept without a byte arriving before it is removed.
    pub upload_expiry_hours: u64,
}

impl Default for DatasetsConfig {
    fn default() -> Self {
        Self {
            user_limit_gb: 100.0,
            cover_max_kb: 2048,
            upload_expiry_hours: 24,
        }
    }
}

impl DatasetsConfig {
    /// [`Self::user_limit_gb`] in bytes.
    pub fn user_limit_bytes(&self) -> i64 {
        (self.user_limit_gb.max(0.0) * 1024.0 * 1024.0 * 1024.0) as i64
    }
}

/// Saving a node as an image: where saved images go, what they leave out, who approves them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// The registry saved images are pushed to, `host[:port]`.
    pub registry: String,
    /// Repository path below the registry: a save is `{registry}/{repository_prefix}/{user}/{name}:{tag}`.
    pub repository_prefix: String,
    /// Container paths never saved (each with everything below it; `*` and `?` match within
    /// a component). Default: the work directory, `/tmp`, caches, runtime mounts.
    pub excludes: Vec<String>,
    /// Paths excluded besides `excludes` (e.g. dataset mount points).
    pub extra_excludes: Vec<String>,
    /// Largest change saved, in GiB of file content (0: no cap).
    pub size_cap_gb: f64,
    /// `gzip` (one thread), `pgzip` (parallel gzip, default) or `zstd` (needs Docker ≥ 23 to pull).
    pub compression: String,
    /// Compression level (gzip 1–9, zstd 1–19); default 6 for gzip, 3 for zstd.
    pub compression_level: Option<i32>,
    /// Saved images go straight into the library (visibility `library`) instead of staying
    /// private to their owner until an administrator approves them.
    pub auto_approve: bool,
    /// Saves running at once; more wait in `queued`.
    pub max_concurrent_jobs: usize,
    /// Pause the node while its writable layer is read (a consistent snapshot; the node's
    /// processes are frozen for that time).
    pub pause: bool,
    /// Where temporary layer files go (default: the system's temporary directory).
    pub temp_dir: Option<PathBuf>,
    /// Registry hosts spoken to over plain HTTP (loopback registries always are).
    pub plain_http: Vec<String>,
    /// Credentials per registry host (`host[:port]`), for the target and for base images.
    pub credentials: BTreeMap<String, RegistryCredentials>,
    /// Minutes a finished save job stays readable through the API.
    pub job_retention_minutes: u64,
}

/// How the hub authenticates to one registry: `username` + `password` (or `password_file`),
/// or a bearer `token`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryCredentials {
    /// User name (HTTP Basic, or the token service's Basic exchange).
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// A bearer token sent as it is.
    pub token: Option<String>,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            registry: "127.0.0.1:5000".into(),
            repository_prefix: "xiji-saved".into(),
            // The builder's defaults, and what the docker backend writes into every node (the
            // cluster's SSH keys, host file, CA bundle and secrets must not travel with an
            // image), and the mount points of datasets (read-only, never part of an image).
            excludes: imagebuilder::DEFAULT_EXCLUDES
                .iter()
                .map(|p| (*p).to_owned())
                .chain(
                    [
                        "/etc/xiji/ssh",
                        "/etc/xiji/hostfile",
                        spawner::docker::CA_BUNDLE_PATH,
                        spawner::SECRETS_DIR,
                        "/home/jovyan/datasets",
                    ]
                    .map(str::to_owned),
                )
                .collect(),
            extra_excludes: Vec::new(),
            size_cap_gb: 10.0,
            compression: "pgzip".into(),
            compression_level: None,
            auto_approve: false,
            max_concurrent_jobs: 1,
            pause: false,
            temp_dir: None,
            plain_http: Vec::new(),
            credentials: BTreeMap::new(),
            job_retention_minutes: 24 * 60,
        }
    }
}

/// How the hub reaches users' servers: through its own embedded proxy or an external one.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySettings {
    /// `embedded` (the proxy runs in the hub's process on `bind`) or `external` (a separate
    /// `xiji-proxy` or configurable-http-proxy, driven through its REST API at `api_url`).
    pub mode: ProxyMode,
    /// The external proxy's REST API, e.g. `http://127.0.0.1:8001`.
    pub api_url: String,
    /// Token for the external proxy's API; else `auth_token_file`, else the
    /// `CONFIGPROXY_AUTH_TOKEN` environment variable.
    pub auth_token: Option<String>,
    /// File holding the token (trailing newline ignored).
    pub auth_token_file: Option<PathBuf>,
    /// External mode: where the hub itself listens (the proxy's default route points here).
    pub hub_bind: SocketAddr,
    /// External mode: the URL the proxy uses to reach the hub; default `http://{hub_bind}`.
    pub hub_url: Option<String>,
    /// External mode: start `xiji proxy` (listening on `bind`, API on `api_url`) if the API does
    /// not answer at start-up. The proxy is left running when the hub stops, so sessions survive
    /// hub restarts.
    pub start: bool,
    /// The command that starts the proxy when `start` is on; default: this `xiji` binary with
    /// the `proxy` subcommand. Options (`--ip`, `--port`, `--api-ip`, `--api-port`,
    /// `--default-target`) are appended.
    pub command: Vec<String>,
    /// External mode: seconds between reconciliations of the proxy's routes with the running
    /// servers (missing routes added, stale ones removed).
    pub check_routes_interval: f64,
    /// Let the kernel move websocket tunnels' bytes where the proxy may load eBPF programs (as
    /// root on Linux): the embedded proxy, and the `xiji proxy` that `start` runs. `false`
    /// copies them in user space.
    pub kernel_splice: bool,
}

/// Where the proxy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// In the hub's process, on `bind`.
    Embedded,
    /// A separate process with CHP's REST API.
    External,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            mode: ProxyMode::Embedded,
            api_url: "http://127.0.0.1:8001".into(),
            auth_token: None,
            auth_token_file: None,
            hub_bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
            hub_url: None,
            start: false,
            command: Vec::new(),
            check_routes_interval: 60.0,
            kernel_splice: true,
        }
    }
}

impl ProxySettings {
    /// The external proxy's API token: `auth_token`, `auth_token_file` or
    /// `CONFIGPROXY_AUTH_TOKEN`; `None` if none is set.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(t) = &self.auth_token {
            return Ok(Some(t.clone()));
        }
        if let Some(f) = &self.auth_token_file {
            return read_secret_file(f).map(Some);
        }
        Ok(std::env::var("CONFIGPROXY_AUTH_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()))
    }

    /// The URL the external proxy forwards hub requests to, given the address the hub's
    /// listener really got.
    pub fn hub_target(&self, listening: SocketAddr) -> String {
        match &self.hub_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let ip = match listening.ip() {
                    ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                    v4 => v4.to_string(),
                };
                format!("http://{ip}:{}", listening.port())
            }
        }
    }
}

/// The first administrator account.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// User name of the first administrator.
    pub username: String,
    /// Its password; if unset (and no `password_file`), one is generated and printed once.
    pub password: Option<String>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
}

/// Spawner settings common to all backends, and per-backend sections.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpawnerConfig {
    /// Backend: `local` (processes on this host) or `docker` (virtual clusters of containers
    /// on Docker Engine).
    pub backend: String,
    /// Seconds the backend may take to launch a server.
    pub start_timeout: f64,
    /// Nodes in their start-up phase at once (launch until ready); more starts wait in order,
    /// and their timeouts count from their own launch. 0: one per CPU core of the hub's machine.
    pub concurrent_starts: u32,
    /// Seconds a launched server may take to answer HTTP.
    pub http_timeout: f64,
    /// Seconds between liveness polls of running servers.
    pub poll_interval: f64,
    /// Seconds between SIGTERM and SIGKILL when stopping.
    pub stop_grace: f64,
    /// Settings of the `local` backend.
    pub local: LocalSpawnerConfig,
    /// Settings of the `docker` backend.
    pub docker: DockerSpawnerConfig,
    /// Settings of the `kubernetes` backend.
    pub kubernetes: KubernetesSpawnerConfig,
}

/// The `kubernetes` backend: each server is a virtual cluster of pods in one namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesSpawnerConfig {
    /// The API server's URL without credentials (`kubectl proxy`); unset: the in-cluster
    /// service account, else `kubeconfig`, else `$KUBECONFIG` / `~/.kube/config`.
    pub api_url: Option<String>,
    /// A kubeconfig file (its current context).
    pub kubeconfig: Option<PathBuf>,
    /// The namespace of every object.
    pub namespace: String,
    /// Value of the `xiji.org/hub` label, telling this hub's objects from another's.
    pub instance: String,
    /// Image run when a request names none.
    pub image: String,
    /// `imagePullPolicy` of the nodes.
    pub image_pull_policy: String,
    /// Names of the Secrets used to pull images.
    pub image_pull_secrets: Vec<String>,
    /// The nodes' command; empty: `jupyterhub-singleuser --ip=0.0.0.0 --port=8888`.
    pub cmd: Vec<String>,
    /// URL pods use for the hub (scheme and authority), e.g. `http://xiji-hub:8081`.
    pub hub_connect_url: Option<String>,
    /// Extra environment variables of every node.
    pub environment: BTreeMap<String, String>,
    /// The extended resource that counts GPUs.
    pub gpu_resource: String,
    /// The node label that puts a Kubernetes node in a Xiji compute pool.
    pub pool_label: String,
    /// The pool of requests that name none; unset: any node with the pool label.
    pub default_pool: Option<String>,
    /// Tolerations of every node pod.
    pub tolerations: Vec<TolerationConfig>,
    /// `runtimeClassName` of the nodes (e.g. `nvidia`).
    pub runtime_class: Option<String>,
    /// `schedulerName` of the nodes (e.g. `volcano`); unset: the default scheduler.
    pub scheduler_name: Option<String>,
    /// How the storage pools' folders on the hub's host are found in the cluster.
    pub volumes: Vec<VolumeMappingConfig>,
    /// Users' work directories, `{work_root}/{user}`. Default: `{data_dir}/work`.
    pub work_root: Option<PathBuf>,
    /// Labels of the hub's and proxy's pods, which the clusters' NetworkPolicy lets in.
    pub hub_pod_labels: BTreeMap<String, String>,
    /// Seconds a cluster may take until every pod is scheduled, started and answering.
    pub ready_timeout: f64,
    /// Most nodes per cluster.
    pub max_nodes: u32,
    /// CPU cores per node when a request does not say.
    pub default_cpus: f64,
    /// Memory per node in MiB when a request does not say.
    pub default_memory_mb: u64,
    /// Largest ephemeral storage per node, in GiB.
    pub max_storage_gb: u64,
    /// Whether users may `sudo` inside their own nodes.
    pub sudo: bool,
    /// The node agent's port on every Kubernetes node (for saving images).
    pub agent_port: u16,
    /// Labels of the node agent's pods.
    pub agent_pod_labels: BTreeMap<String, String>,
    /// File holding the token the hub presents to the node agents.
    pub agent_token_file: Option<PathBuf>,
    /// The cluster's DNS domain (the nodes' search path).
    pub cluster_domain: String,
    /// PEM bundle of the CAs nodes trust, given to every node at
    /// `/etc/xiji/ca-certificates.crt`; unset: none.
    pub ca_bundle: Option<PathBuf>,
}

/// One toleration of `[spawner.kubernetes]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TolerationConfig {
    /// The taint's key.
    pub key: String,
    /// `Equal` (default) or `Exists`.
    #[serde(default = "default_toleration_operator")]
    pub operator: String,
    /// The taint's value for `Equal`.
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; unset: all.
    pub effect: Option<String>,
}

fn default_toleration_operator() -> String {
    "Equal".into()
}

/// One storage pool's folders as the cluster sees them: `host_path` on the hub's host is, in
/// the cluster, the claim `claim_name`, the NFS export `nfs_server:nfs_path`, or the folder
/// `node_path` on every Kubernetes node (give exactly one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMappingConfig {
    /// The folder on the hub's host (a storage pool's mount point, the work root).
    pub host_path: PathBuf,
    /// A ReadWriteMany PersistentVolumeClaim of the namespace holding the same files.
    pub claim_name: Option<String>,
    /// An NFS server exporting the same files.
    pub nfs_server: Option<String>,
    /// The export's path on `nfs_server`.
    pub nfs_path: Option<String>,
    /// The same files at this path on every Kubernetes node.
    pub node_path: Option<String>,
}

/// The `docker` backend: each server is a virtual cluster of containers on Docker Engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerSpawnerConfig {
    /// Image run when a request names none.
    pub image: String,
    /// Users' persistent work directories, `{work_root}/{user}`, mounted at `/home/jovyan/work`
    /// on every node. Default: `{data_dir}/work`.
    pub work_root: Option<PathBuf>,
    /// Value of the `org.xiji.hub` label, telling this hub's containers from another's.
    pub instance: String,
    /// The nodes' command; empty: `jupyterhub-singleuser --ip=0.0.0.0 --port=8888`.
    pub cmd: Vec<String>,
    /// Address of an extra hub listener that containers reach the hub API on. Default: the
    /// `docker0` bridge's address, any free port.
    pub hub_bind: Option<SocketAddr>,
    /// URL containers use for the hub (scheme and authority); default: `http://{hub_bind}`.
    pub hub_connect_url: Option<String>,
    /// Extra environment variables of every node.
    pub environment: BTreeMap<String, String>,
    /// How the hub reaches nodes: `container-ip` (default) or `loopback` (published ports).
    pub node_address: String,
    /// Seconds a cluster may take until every node answers HTTP.
    pub ready_timeout: f64,
    /// Most nodes per cluster.
    pub max_nodes: u32,
    /// CPU cores per node when a request does not say.
    pub default_cpus: f64,
    /// Memory per node in MiB when a request does not say.
    pub default_memory_mb: u64,
    /// Largest writable-layer size per node, in GiB.
    pub max_storage_gb: u64,
    /// Process limit per node (0: none).
    pub pids_limit: i64,
    /// GPUs of the host, instead of detecting them.
    pub gpus: Option<u32>,
    /// How many times the host's CPUs admission may hand out (node CPU sizes are ceilings, not
    /// guarantees); 1: none.
    pub cpu_overcommit: f64,
    /// PEM bundle of the CAs nodes trust, copied into every node at
    /// `/etc/xiji/ca-certificates.crt` (pip, requests, curl, git, conda, Node and apt use it).
    /// Default: the host's `/etc/ssl/certs/ca-certificates.crt` when it exists; `""`: none.
    pub ca_bundle: Option<PathBuf>,
    /// Whether users may `sudo` to root inside their own nodes (Docker's default capabilities,
    /// no `no-new-privileges`); false drops every capability. Default true.
    pub sudo: bool,
}

impl KubernetesSpawnerConfig {
    /// Checks what serde cannot: sizes, pool names, one source per volume mapping.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(format!("spawner.kubernetes: {m}")));
        if self.max_nodes == 0 || self.default_cpus <= 0.0 || self.default_memory_mb < 64 {
            return invalid(
                "max_nodes ≥ 1, default_cpus > 0 and default_memory_mb ≥ 64".to_owned(),
            );
        }
        if self.api_url.is_some() && self.kubeconfig.is_some() {
            return invalid("give api_url or kubeconfig, not both".to_owned());
        }
        if let Some(pool) = &self.default_pool {
            if !spawner::is_pool_name(pool) {
                return invalid(format!(
                    "default_pool {pool:?} is not a pool name (lower-case letters, digits, '-')"
                ));
            }
        }
        for v in &self.volumes {
            let nfs = v.nfs_server.is_some() || v.nfs_path.is_some();
            let sources = [v.claim_name.is_some(), nfs, v.node_path.is_some()];
            if sources.iter().filter(|s| **s).count() != 1 {
                return invalid(format!(
                    "volumes: {} needs exactly one of claim_name, nfs_server + nfs_path, node_path",
                    v.host_path.display()
                ));
            }
            if nfs && (v.nfs_server.is_none() || v.nfs_path.is_none()) {
                return invalid(format!(
                    "volumes: {} needs both nfs_server and nfs_path",
                    v.host_path.display()
                ));
            }
        }
        for t in &self.tolerations {
            if !matches!(t.operator.as_str(), "Equal" | "Exists") {
                return invalid(format!(
                    "tolerations: operator {:?} of {}: use \"Equal\" or \"Exists\"",
                    t.operator, t.key
                ));
            }
        }
        Ok(())
    }
}

/// The host's CA bundle, the default of `[spawner.docker] ca_bundle`.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl DockerSpawnerConfig {
    /// The CA bundle to give nodes: the configured one, else the host's when it exists; `None`
    /// when set to `""` or when the host has none.
    pub fn ca_bundle_path(&self) -> Option<PathBuf> {
        match &self.ca_bundle {
            Some(path) if path.as_os_str().is_empty() => None,
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(HOST_CA_BUNDLE)).filter(|p| p.is_file()),
        }
    }
}

/// The `local` backend: `jupyterhub-singleuser` processes on this host.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalSpawnerConfig {
    /// Python virtual environment holding `jupyterhub-singleuser`; created if missing.
    /// Default: `{data_dir}/venv`.
    pub venv: Option<PathBuf>,
    /// Python used to create the venv.
    pub python: String,
    /// Packages installed into a new venv.
    pub packages: Vec<String>,
    /// Explicit single-user command (overrides `venv`).
    pub cmd: Vec<String>,
    /// Extra arguments for the single-user server.
    pub args: Vec<String>,
    /// Address servers listen on.
    pub ip: String,
    /// Extra environment variables for every server.
    pub environment: BTreeMap<String, String>,
}

/// An external service with an API token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name (the token's owner).
    pub name: String,
    /// Its API token.
    pub api_token: Option<String>,
    /// File holding its API token.
    pub api_token_file: Option<PathBuf>,
    /// Grant the `admin` role.
    #[serde(default)]
    pub admin: bool,
    /// URL of the service, if it serves HTTP (informational for now).
    #[serde(default)]
    pub url: Option<String>,
    /// Free-form description shown in the API.
    #[serde(default)]
    pub info: BTreeMap<String, serde_json::Value>,
    /// Whether to show it on the home page.
    #[serde(default)]
    pub display: bool,
}

/// A role: a named set of scopes given to users, groups and services.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Role name (JupyterHub's rules: lower case, digits, `-_~.`).
    pub name: String,
    /// Human description.
    #[serde(default)]
    pub description: String,
    /// Scopes, JupyterHub's names and filters.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Users holding the role (created if missing).
    #[serde(default)]
    pub users: Vec<String>,
    /// Services holding the role.
    #[serde(default)]
    pub services: Vec<String>,
    /// Groups holding the role (created if missing).
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            public_url: None,
            data_dir: PathBuf::from("xiji-data"),
            database_url: None,
            log: "info".into(),
            allow_named_servers: true,
            named_server_limit_per_user: 0,
            cookie_max_age_days: 14,
            api_page_default_limit: 50,
            api_page_max_limit: 200,
            slow_spawn_timeout: 10.0,
            slow_stop_timeout: 10.0,
            max_body_bytes: 1024 * 1024,
            login_throttle_attempts: 5,
            login_throttle_window: 300,
            cookie_secure: None,
            admin: AdminConfig::default(),
            spawner: SpawnerConfig::default(),
            services: Vec::new(),
            roles: Vec::new(),
            proxy: ProxySettings::default(),
            images: ImagesConfig::default(),
            datasets: DatasetsConfig::default(),
            metering: MeteringConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            username: "admin".into(),
            password: None,
            password_file: None,
        }
    }
}

impl Default for SpawnerConfig {
    fn default() -> Self {
        Self {
            backend: "local".into(),
            start_timeout: 60.0,
            concurrent_starts: 0,
            http_timeout: 30.0,
            poll_interval: 30.0,
            stop_grace: 5.0,
            local: LocalSpawnerConfig::default(),
            docker: DockerSpawnerConfig::default(),
            kubernetes: KubernetesSpawnerConfig::default(),
        }
    }
}

impl Default for KubernetesSpawnerConfig {
    fn default() -> Self {
        Self {
            api_url: None,
            kubeconfig: None,
            namespace: "xiji".into(),
            instance: "xiji".into(),
            image: "xiji/base-notebook:latest".into(),
            image_pull_policy: "IfNotPresent".into(),
            image_pull_secrets: Vec::new(),
            cmd: Vec::new(),
            hub_connect_url: None,
            environment: BTreeMap::new(),
            gpu_resource: "nvidia.com/gpu".into(),
            pool_label: "xiji.org/pool".into(),
            default_pool: None,
            tolerations: Vec::new(),
            runtime_class: None,
            scheduler_name: None,
            volumes: Vec::new(),
            work_root: None,
            hub_pod_labels: BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "xiji".to_owned(),
            )]),
            ready_timeout: 300.0,
            max_nodes: 16,
            default_cpus: 1.0,
            default_memory_mb: 2048,
            max_storage_gb: 1024,
            sudo: true,
            agent_port: 8585,
            agent_pod_labels: BTreeMap::from([(
                "app.kubernetes.io/component".to_owned(),
                "node-agent".to_owned(),
            )]),
            agent_token_file: None,
            cluster_domain: "cluster.local".into(),
            ca_bundle: None,
        }
    }
}

impl Default for DockerSpawnerConfig {
    fn default() -> Self {
        Self {
            image: "127.0.0.1:5000/xiji/base-notebook:latest".into(),
            work_root: None,
            instance: "xiji".into(),
            cmd: Vec::new(),
            hub_bind: None,
            hub_connect_url: None,
            environment: BTreeMap::new(),
            node_address: "container-ip".into(),
            ready_timeout: 120.0,
            max_nodes: 16,
            default_cpus: 1.0,
            default_memory_mb: 2048,
            max_storage_gb: 1024,
            pids_limit: 4096,
            gpus: None,
            cpu_overcommit: 1.0,
            ca_bundle: None,
            sudo: true,
        }
    }
}

impl Default for LocalSpawnerConfig {
    fn default() -> Self {
        Self {
            venv: None,
            python: "python3".into(),
            packages: vec![
                "jupyterhub>=5.5,<6".into(),
                "jupyterlab".into(),
                "ipykernel".into(),
            ],
            cmd: Vec::new(),
            args: Vec::new(),
            ip: "127.0.0.1".into(),
            environment: BTreeMap::new(),
        }
    }
}

/// Values given on the command line or in `XIJI_*` variables; they override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--bind` / `XIJI_BIND`.
    pub bind: Option<SocketAddr>,
    /// `--data-dir` / `XIJI_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url` / `XIJI_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--public-url` / `XIJI_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// `--admin-username` / `XIJI_ADMIN_USERNAME`.
    pub admin_username: Option<String>,
    /// `XIJI_ADMIN_PASSWORD`.
    pub admin_password: Option<String>,
    /// `--admin-password-file` / `XIJI_ADMIN_PASSWORD_FILE`.
    pub admin_password_file: Option<PathBuf>,
    /// `--log` / `XIJI_LOG`.
    pub log: Option<String>,
}

impl Config {
    /// Loads the file (if any), applies overrides and checks the result.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => Config::default(),
        };
        if let Some(v) = overrides.bind {
            config.bind = v;
        }
        if let Some(v) = overrides.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = overrides.database_url {
            config.database_url = Some(v);
        }
        if let Some(v) = overrides.public_url {
            config.public_url = Some(v);
        }
        if let Some(v) = overrides.admin_username {
            config.admin.username = v;
        }
        if let Some(v) = overrides.admin_password {
            config.admin.password = Some(v);
        }
        if let Some(v) = overrides.admin_password_file {
            config.admin.password_file = Some(v);
        }
        if let Some(v) = overrides.log {
            config.log = v;
        }
        config.validate()?;
        let cwd = std::env::current_dir().map_err(ConfigError::CurrentDir)?;
        config.resolve_paths(&cwd)?;
        Ok(config)
    }

    /// Makes every path of the configuration absolute against `base` (the working directory the
    /// hub was started in), once: servers run in users' homes and the proxy in its own process,
    /// where a relative path would name something else. Files the configuration requires (secret
    /// files) must exist.
    fn resolve_paths(&mut self, base: &Path) -> Result<(), ConfigError> {
        let abs = |p: &Path| absolute_from(base, p);
        self.data_dir = abs(&self.data_dir);
        if let Some(url) = &self.database_url {
            self.database_url = Some(absolute_sqlite_url(base, url));
        }
        let local = &mut self.spawner.local;
        local.venv = local.venv.as_deref().map(abs);
        // A program named by a relative path (`venv/bin/x`), not one looked up on PATH (`x`).
        if let Some(program) = local.cmd.first_mut() {
            if program.contains('/') {
                *program = abs(Path::new(program.as_str())).display().to_string();
            }
        }
        let docker = &mut self.spawner.docker;
        docker.work_root = docker.work_root.as_deref().map(abs);
        let kube = &mut self.spawner.kubernetes;
        kube.work_root = kube.work_root.as_deref().map(abs);
        kube.kubeconfig = kube.kubeconfig.as_deref().map(abs);
        for volume in &mut kube.volumes {
            volume.host_path = abs(&volume.host_path);
        }
        self.images.temp_dir = self.images.temp_dir.as_deref().map(abs);

        let mut required: Vec<(String, &mut PathBuf)> = Vec::new();
        if let Some(f) = self.admin.password_file.as_mut() {
            required.push(("admin.password_file".into(), f));
        }
        if let Some(f) = self.proxy.auth_token_file.as_mut() {
            required.push(("proxy.auth_token_file".into(), f));
        }
        let section = self.auth.section();
        if let Some(f) = self.auth.oidc.client_secret_file.as_mut() {
            if self.auth.kind != AuthKind::Local {
                required.push((format!("{section}.client_secret_file"), f));
            }
        }
        if let Some(f) = self.auth.crypt_key_file.as_mut() {
            required.push(("auth.crypt_key_file".into(), f));
        }
        for s in &mut self.services {
            if let Some(f) = s.api_token_file.as_mut() {
                required.push((format!("services.{}.api_token_file", s.name), f));
            }
        }
        let docker_backend = self.spawner.backend == "docker";
        if let Some(f) = self.spawner.docker.ca_bundle.as_mut() {
            // `""` means no bundle, not the working directory.
            if docker_backend && !f.as_os_str().is_empty() {
                required.push(("spawner.docker.ca_bundle".into(), f));
            }
        }
        if self.spawner.backend == "kubernetes" {
            let kube = &mut self.spawner.kubernetes;
            if let Some(f) = kube.agent_token_file.as_mut() {
                required.push(("spawner.kubernetes.agent_token_file".into(), f));
            }
            if let Some(f) = kube.ca_bundle.as_mut() {
                required.push(("spawner.kubernetes.ca_bundle".into(), f));
            }
        }
        for (host, c) in &mut self.images.credentials {
            if let Some(f) = c.password_file.as_mut() {
                required.push((format!("images.credentials.\"{host}\".password_file"), f));
            }
        }
        for (key, path) in required {
            *path = abs(path);
            if !path.exists() {
                return Err(ConfigError::MissingPath {
                    key,
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.api_page_max_limit == 0 || self.api_page_default_limit == 0 {
            return Err(ConfigError::Invalid(
                "page limits must be at least 1".into(),
            ));
        }
        if !matches!(
            self.spawner.backend.as_str(),
            "local" | "docker" | "kubernetes"
        ) {
            return Err(ConfigError::Invalid(format!(
                "unknown spawner backend {:?} (available: local, docker, kubernetes)",
                self.spawner.backend
            )));
        }
        let docker = &self.spawner.docker;
        if !matches!(docker.node_address.as_str(), "container-ip" | "loopback") {
            return Err(ConfigError::Invalid(format!(
                "spawner.docker.node_address {:?}: use \"container-ip\" or \"loopback\"",
                docker.node_address
            )));
        }
        if docker.cpu_overcommit.is_nan() || docker.cpu_overcommit < 1.0 {
            return Err(ConfigError::Invalid(
                "spawner.docker.cpu_overcommit must be at least 1 (1: no overcommit)".into(),
            ));
        }
        if docker.max_nodes == 0 || docker.default_cpus <= 0.0 || docker.default_memory_mb < 64 {
            return Err(ConfigError::Invalid(
                "spawner.docker: max_nodes ≥ 1, default_cpus > 0 and default_memory_mb ≥ 64".into(),
            ));
        }
        self.spawner.kubernetes.validate()?;
        for service in &self.services {
            if service.api_token.is_some() && service.api_token_file.is_some() {
                return Err(ConfigError::Invalid(format!(
                    "service {}: give api_token or api_token_file, not both",
                    service.name
                )));
            }
        }
        self.auth.validate()?;
        if self.proxy.auth_token.is_some() && self.proxy.auth_token_file.is_some() {
            return Err(ConfigError::Invalid(
                "proxy: give auth_token or auth_token_file, not both".into(),
            ));
        }
        if self.proxy.mode == ProxyMode::External {
            let api = url::Url::parse(&self.proxy.api_url).map_err(|e| {
                ConfigError::Invalid(format!("proxy.api_url {:?}: {e}", self.proxy.api_url))
            })?;
            if api.scheme() != "http" && api.scheme() != "https" {
                return Err(ConfigError::Invalid(format!(
                    "proxy.api_url {:?}: must be http:// or https://",
                    self.proxy.api_url
                )));
            }
            if self.proxy.hub_bind == self.bind && self.bind.port() != 0 {
                return Err(ConfigError::Invalid(
                    "proxy.hub_bind must differ from bind in external mode (bind is the proxy's \
                     public address)"
                        .into(),
                ));
            }
        }
        self.validate_images()?;
        self.metering.tz()?;
        if self.metering.checkpoint_interval.is_nan() || self.metering.checkpoint_interval < 1.0 {
            return Err(ConfigError::Invalid(
                "metering.checkpoint_interval must be at least 1 second".into(),
            ));
        }
        if let Some(url) = &self.public_url {
            url::Url::parse(url)
                .map_err(|e| ConfigError::Invalid(format!("public_url {url:?}: {e}")))?;
        }
        Ok(())
    }

    fn validate_images(&self) -> Result<(), ConfigError> {
        let images = &self.images;
        if !matches!(images.compression.as_str(), "gzip" | "pgzip" | "zstd") {
            return Err(ConfigError::Invalid(format!(
                "images.compression {:?}: use \"gzip\", \"pgzip\" or \"zstd\"",
                images.compression
            )));
        }
        let registry_ok = !images.registry.is_empty()
            && !images.registry.contains('/')
            && !images.registry.contains(char::is_whitespace);
        if !registry_ok {
            return Err(ConfigError::Invalid(format!(
                "images.registry {:?}: give host[:port], e.g. \"127.0.0.1:5000\"",
                images.registry
            )));
        }
        if !(images.size_cap_gb >= 0.0 && images.size_cap_gb.is_finite()) {
            return Err(ConfigError::Invalid(
                "images.size_cap_gb must be 0 (no cap) or more".into(),
            ));
        }
        for (host, c) in &images.credentials {
            let basic = c.username.is_some();
            let secret = usize::from(c.password.is_some()) + usize::from(c.password_file.is_some());
            let ok = if basic {
                secret == 1 && c.token.is_none()
            } else {
                secret == 0 && c.token.is_some()
            };
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "images.credentials.\"{host}\": give username with password or password_file, or a token"
                )));
            }
        }
        Ok(())
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("xiji.sqlite").display()
            ),
        }
    }

    /// Whether cookies carry `Secure`.
    pub fn cookies_secure(&self) -> bool {
        self.cookie_secure.unwrap_or_else(|| {
            self.public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
        })
    }

    /// The venv of the local backend.
    pub fn local_venv(&self) -> PathBuf {
        self.spawner
            .local
            .venv
            .clone()
            .unwrap_or_else(|| self.data_dir.join("venv"))
    }
}

/// `path` made absolute against `base`, with `.` components dropped (`..` is kept: it may cross
/// a symbolic link).
fn absolute_from(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// A `sqlite://` URL whose file is a relative path, made absolute; other URLs as they are.
fn absolute_sqlite_url(base: &Path, url: &str) -> String {
    let (prefix, rest) = match url.strip_prefix("sqlite://") {
        Some(rest) => ("sqlite://", rest),
        None => match url.strip_prefix("sqlite:") {
            Some(rest) => ("sqlite:", rest),
            None => return url.to_owned(),
        },
    };
    let (file, query) = match rest.split_once('?') {
        Some((f, q)) => (f, Some(q)),
        None => (rest, None),
    };
    if file.is_empty() || file.starts_with('/') || file.starts_with(':') {
        return url.to_owned();
    }
    let file = absolute_from(base, Path::new(file));
    match query {
        Some(q) => format!("{prefix}{}?{q}", file.display()),
        None => format!("{prefix}{}", file.display()),
    }
}

/// Reads a secret file, without its trailing newline.
pub fn read_secret_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_in_the_file_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "bnd = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bnd"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(
            &path,
            "bind = \"127.0.0.1:1\"\n[admin]\nusername = \"root1\"\n",
        )
        .unwrap();
        let over = Overrides {
            bind: Some("127.0.0.1:2".parse().unwrap()),
            ..Default::default()
        };
        let config = Config::load(Some(&path), over).unwrap();
        assert_eq!(config.bind.port(), 2);
        assert_eq!(config.admin.username, "root1");
    }

    #[test]
    fn image_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        for (text, wanted) in [
            ("[images]\ncompression = \"lz4\"\n", "images.compression"),
            ("[images]\nregistry = \"http://r/x\"\n", "images.registry"),
            (
                "[images.credentials.\"r:5000\"]\nusername = \"u\"\n",
                "images.credentials",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Config::load(Some(&path), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(wanted), "{text}: {err}");
        }
        std::fs::write(
            &path,
            "[images]\nregistry = \"r.example.edu\"\nauto_approve = true\n\
             [images.credentials.\"r.example.edu\"]\nusername = \"u\"\npassword = \"p\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), Overrides::default()).unwrap();
        assert!(config.images.auto_approve);
        for injected in [
            "/etc/xiji/ssh",
            "/etc/xiji/hostfile",
            "/etc/xiji/ca-certificates.crt",
            "/etc/xiji/secrets",
        ] {
            assert!(
                config.images.excludes.iter().any(|e| e == injected),
                "{injected}"
            );
        }
    }

    #[test]
    fn relative_paths_are_made_absolute_against_the_starting_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: PathBuf::from("./xiji-data"),
            database_url: Some("sqlite://db/x.sqlite?mode=rwc".into()),
            ..Config::default()
        };
        config.spawner.local.venv = Some(PathBuf::from("venv"));
        config.spawner.local.cmd = vec!["bin/singleuser".into(), "--debug".into()];
        config.spawner.docker.work_root = Some(PathBuf::from("work"));
        config.resolve_paths(dir.path()).unwrap();
        assert_eq!(config.data_dir, dir.path().join("xiji-data"));
        assert_eq!(
            config.database_url.as_deref(),
            Some(
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("db/x.sqlite").display()
                )
                .as_str()
            )
        );
        assert_eq!(config.local_venv(), dir.path().join("venv"));
        assert_eq!(
            config.spawner.local.cmd,
            [
                dir.path().join("bin/singleuser").display().to_string(),
                "--debug".to_owned()
            ]
        );
        assert_eq!(
            config.spawner.docker.work_root,
            Some(dir.path().join("work"))
        );

        // The default venv follows the (now absolute) data directory; a program on PATH stays.
        let mut config = Config::default();
        config.spawner.local.cmd = vec!["jupyterhub-singleuser".into()];
        config.resolve_paths(dir.path()).unwrap();
        assert_eq!(config.local_venv(), dir.path().join("xiji-data/venv"));
        assert_eq!(config.spawner.local.cmd, ["jupyterhub-singleuser"]);
        assert_eq!(
            config.database_url(),
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("xiji-data/xiji.sqlite").display()
            )
        );
    }

    #[test]
    fn a_missing_secret_file_is_a_start_up_error_naming_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(
            &path,
            "[admin]\npassword_file = \"nowhere/admin-password\"\n",
        )
        .unwrap();
        let err = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("admin.password_file") && err.contains("nowhere/admin-password"),
            "{err}"
        );
        assert!(err.contains("does not exist"), "{err}");
        let secret = dir.path().join("token");
        std::fs::write(&secret, "0123456789abcdef\n").unwrap();
        std::fs::write(
            &path,
            format!(
                "[[services]]\nname = \"culler\"\napi_token_file = \"{}\"\n\
                 [[services]]\nname = \"other\"\napi_token_file = \"missing-token\"\n",
                secret.display()
            ),
        )
        .unwrap();
        let err = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("services.other.api_token_file"), "{err}");
    }

    #[test]
    fn campus_login_is_off_by_default_and_needs_an_issuer_a_client_and_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "").unwrap();
        let cfg = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(cfg.auth.kind, AuthKind::Local);
        let base = "[auth]\nkind = \"oidc\"\n[auth.oidc]\n";
        for (text, wanted) in [
            ("client_id = \"x\"\nclient_secret = \"s\"\n", "auth.oidc.issuer"),
            (
                "issuer = \"https://id.example.edu\"\nclient_secret = \"s\"\n",
                "client_id",
            ),
            (
                "issuer = \"https://id.example.edu\"\nclient_id = \"x\"\n",
                "client_secret",
            ),
            (
                "issuer = \"https://id.example.edu\"\nclient_id = \"x\"\nclient_secret_file = \"nope\"\n",
                "auth.oidc.client_secret_file",
            ),
        ] {
            std::fs::write(&path, format!("{base}{text}")).unwrap();
            let err = Config::load(Some(&path), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(wanted), "{text}: {err}");
        }
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        std::fs::write(
            &path,
            format!(
                "{base}issuer = \"https://id.example.edu\"\nclient_id = \"x\"\nclient_secret_file = {:?}\n",
                dir.path().join("secret")
            ),
        )
        .unwrap();
        let cfg = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(cfg.auth.kind, AuthKind::Oidc);
        assert_eq!(cfg.auth.oidc.secret().unwrap(), "s3cret");
    }

    #[test]
    fn oauth2_login_needs_its_three_endpoints_and_local_logins_default_to_admins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        let base =
            "[auth]\nkind = \"oauth2\"\n[auth.oauth2]\nclient_id = \"x\"\nclient_secret = \"s\"\n";
        std::fs::write(
            &path,
            format!("{base}authorize_url = \"https://id.example.edu/a\"\n"),
        )
        .unwrap();
        let err = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.oauth2.token_url"), "{err}");
        std::fs::write(
            &path,
            format!(
                "{base}authorize_url = \"https://id.example.edu/a\"\ntoken_url = \"https://id.example.edu/t\"\nuserinfo_url = \"https://id.example.edu/u\"\n"
            ),
        )
        .unwrap();
        let cfg = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(cfg.auth.kind, AuthKind::OAuth2);
        assert_eq!(cfg.auth.local_logins(), LocalLogins::Admins);
        std::fs::write(&path, "[auth]\nlocal_logins = \"admins\"\n").unwrap();
        let err = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.local_logins"), "{err}");
        std::fs::write(
            &path,
            "[auth]\nenable_auth_state = true\ncrypt_key_file = \"missing\"\n",
        )
        .unwrap();
        let err = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.crypt_key_file"), "{err}");
    }
}
