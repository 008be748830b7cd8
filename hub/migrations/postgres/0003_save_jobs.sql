-- Saves of running nodes as images. A job is a row from the request on, so a hub restart finds
-- it: the hub writes state and byte progress through, and at start-up resumes the jobs that were
-- running (their node still runs) or marks them failed. A job becomes 'done' in the same
-- transaction that writes its image record, after the image's manifest was pushed.
CREATE TABLE save_jobs (
    id TEXT PRIMARY KEY,                      -- random hex
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    server_id BIGINT NOT NULL,                -- the server row saved (no key: rows come and go)
    server_name TEXT NOT NULL,                -- '' for the default server
    node TEXT NOT NULL,                       -- e.g. 'node-0'
    container_id TEXT NOT NULL,
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    repository TEXT NOT NULL,                 -- registry/prefix/user/name
    image_reference TEXT NOT NULL,            -- repository:tag
    base_image TEXT NOT NULL,
    state TEXT NOT NULL,                      -- queued | reading | compressing | pushing | done | failed | cancelled
    reason TEXT,                              -- failed: why, for the user
    progress TEXT NOT NULL DEFAULT '{}',      -- byte counters (JSON)
    result TEXT,                              -- what was pushed (JSON), once done
    image_id BIGINT REFERENCES images(id) ON DELETE SET NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    finished BIGINT                           -- set exactly when the state is done, failed or cancelled
);
CREATE INDEX save_jobs_user ON save_jobs (user_id, created);
CREATE INDEX save_jobs_finished ON save_jobs (finished);
