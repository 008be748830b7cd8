-- Release policies: when a running cluster is given back.
--
-- release_settings: the installation's default policy ('automatic' | 'manual' | 'on_logout') and
-- the grace period of 'automatic' (seconds with no page of the cluster open), one row.
CREATE TABLE release_settings (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    policy TEXT NOT NULL,
    grace_seconds BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    updated_by TEXT
);
INSERT INTO release_settings (id, policy, grace_seconds, updated) VALUES (1, 'manual', 60, 0);

-- A user's exception: their policy instead of the default (this is how manual release is allowed
-- to one user, or forbidden).
CREATE TABLE release_exceptions (
    user_id BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    policy TEXT NOT NULL,
    updated BIGINT NOT NULL,
    updated_by TEXT
);

-- The policy a running cluster holds: its owner's when it started (started = servers.started
-- of that start), so a later change of policy does not release clusters left running on purpose.
CREATE TABLE cluster_release_policies (
    server_id BIGINT PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    started BIGINT NOT NULL,
    policy TEXT NOT NULL
);

-- Releases the hub made on its own or an administrator forced, shown to the cluster's user.
-- cause: 'automatic' | 'on_logout' | 'forced'; reason: the administrator's words (forced).
CREATE TABLE releases (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    server_name TEXT NOT NULL,
    cause TEXT NOT NULL,
    reason TEXT NOT NULL,
    released_by TEXT,
    created BIGINT NOT NULL
);
CREATE INDEX releases_user ON releases (user_id, created);
