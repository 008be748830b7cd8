-- Datasets: named sets of files a user uploads once and every node of their clusters reads.
-- A dataset's files live on a storage pool (placement kind 'dataset', key 'dataset:{id}');
-- a file is a row here only once its upload is complete and its sha256 is known.
CREATE TABLE datasets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',            -- words separated by single spaces
    license TEXT NOT NULL DEFAULT '',
    visibility TEXT NOT NULL DEFAULT 'private', -- 'private' | 'public'
    has_cover BIGINT NOT NULL DEFAULT 0,
    file_count BIGINT NOT NULL DEFAULT 0,
    size_bytes BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    UNIQUE (owner_id, name)
);

CREATE TABLE dataset_files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_id BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    path TEXT NOT NULL,                       -- NFC, '/'-separated, no '.' or '..' components
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    created BIGINT NOT NULL,
    UNIQUE (dataset_id, path)
);

-- Uploads under way; their declared size counts against the dataset owner's limit.
CREATE TABLE dataset_uploads (
    id TEXT PRIMARY KEY,
    dataset_id BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    UNIQUE (dataset_id, path)
);

CREATE TABLE dataset_shares (
    dataset_id BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
    group_id BIGINT REFERENCES groups(id) ON DELETE CASCADE,
    access TEXT NOT NULL,                     -- 'read' | 'write'
    created BIGINT NOT NULL,
    UNIQUE (dataset_id, user_id, group_id)
);
CREATE INDEX dataset_shares_user ON dataset_shares (user_id);
CREATE INDEX dataset_shares_group ON dataset_shares (group_id);

CREATE TABLE dataset_stars (
    dataset_id BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, user_id)
);
CREATE INDEX dataset_stars_user ON dataset_stars (user_id);
