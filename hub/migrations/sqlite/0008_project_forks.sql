-- A fork's copy of its original's files, made by the hub in the background: one row per forked
-- project from its creation on ('copying'), written through with the files and bytes copied so
-- far, ending 'done' or 'failed' (with why, for the user). A hub that restarts finds the forks
-- it was copying, removes what they had copied and marks them failed; a failed fork holds no
-- files. Forks made before this table have no row: their copy was done in the request.
CREATE TABLE project_forks (
    project_id BIGINT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    state TEXT NOT NULL,                      -- 'copying' | 'done' | 'failed'
    files_done BIGINT NOT NULL DEFAULT 0,     -- files, links and other non-folders copied
    files_total BIGINT NOT NULL DEFAULT 0,    -- 0 while they are being counted
    bytes_done BIGINT NOT NULL DEFAULT 0,
    bytes_total BIGINT NOT NULL DEFAULT 0,
    message TEXT,                             -- 'failed': why, for the user
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX project_forks_state ON project_forks (state);
