-- The image library: Jupyter and desktop images users start clusters from, with the brochure's
-- fields, and images users saved from their running nodes (private until added to the library).
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                       -- 'jupyter' | 'desktop'
    name TEXT NOT NULL UNIQUE,                -- display name, e.g. 'Python 3 + MPI'
    image TEXT NOT NULL,                      -- repository, e.g. '127.0.0.1:5000/xiji/base-notebook'
    tag TEXT NOT NULL,
    start_options TEXT NOT NULL DEFAULT '',   -- extra arguments for the single-user server
    start_command TEXT NOT NULL DEFAULT '',   -- desktop: the command that starts the VNC server
    vnc_password TEXT,                        -- desktop only
    vnc_port BIGINT,                          -- desktop only
    description TEXT NOT NULL DEFAULT '',
    needs_gpu BIGINT NOT NULL DEFAULT 0,
    enabled BIGINT NOT NULL DEFAULT 1,
    visibility TEXT NOT NULL DEFAULT 'library', -- 'library' | 'private' | 'requested'
    owner_id BIGINT REFERENCES users(id) ON DELETE SET NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX images_owner ON images (owner_id);
