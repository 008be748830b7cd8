-- Storage pools: mounted filesystems (local disks, NFS, GlusterFS) that hold users' work
-- directories, datasets and projects. New data goes to the active pool with the most free
-- space; each placement is recorded, so data is always found where it was put.
CREATE TABLE storage_pools (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL UNIQUE,                -- absolute, canonical; the mount point or a folder in it
    fs_type TEXT NOT NULL,                    -- 'local' | 'nfs' | 'glusterfs'
    capacity_bytes BIGINT,                    -- optional cap below the filesystem's size
    state TEXT NOT NULL DEFAULT 'active',     -- 'active' | 'draining'
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);

-- Where each stored thing lives: one row per (kind, key), e.g. ('work', 'user:7').
CREATE TABLE storage_placements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pool_id BIGINT NOT NULL REFERENCES storage_pools(id),
    kind TEXT NOT NULL,                       -- 'work' | 'dataset' | 'project'
    owner_key TEXT NOT NULL,
    relative_path TEXT NOT NULL,              -- below the pool's path
    created BIGINT NOT NULL,
    UNIQUE (kind, owner_key)
);
CREATE INDEX storage_placements_pool ON storage_placements (pool_id);
