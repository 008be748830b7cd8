-- Campus login (`[auth] kind = "oidc" | "oauth2"`).
--
-- auth_states: what the identity provider gave at a user's last campus login (tokens and the
-- claims), as JupyterHub keeps `auth_state`: a Fernet token under the installation's crypt key,
-- never plain. One row per user, gone with the user.
CREATE TABLE auth_states (
    user_id BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    encrypted TEXT NOT NULL,
    updated BIGINT NOT NULL
);

-- Who set a user's quota exception: NULL an administrator, 'campus:<class>' the quota class the
-- identity provider's claims named at the last login. A login replaces or clears only its own.
ALTER TABLE quotas ADD COLUMN source TEXT;
