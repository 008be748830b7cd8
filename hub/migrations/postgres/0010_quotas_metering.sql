-- Quotas, admission and the metering ledger.
--
-- quotas: one row per account role (the role's defaults) and one per user with an exception. A
-- NULL limit is "no limit" on a role's row and "the role's" on a user's row. Limits count what
-- running and admitted clusters reserve: clusters at once, nodes in all of them, and the sum over
-- nodes of CPU (millicores), memory (MiB), GPUs and storage (MiB).
CREATE TABLE quotas (
    id BIGSERIAL PRIMARY KEY,
    role TEXT UNIQUE,
    user_id BIGINT UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    clusters BIGINT,
    nodes BIGINT,
    cpu_millis BIGINT,
    memory_mib BIGINT,
    gpus BIGINT,
    storage_mib BIGINT,
    updated BIGINT NOT NULL,
    CHECK ((role IS NULL) <> (user_id IS NULL))
);
INSERT INTO quotas (role, updated) VALUES ('student', 0), ('teacher', 0), ('admin', 0);

-- What an administrator caps the backend's capacity to (one row; NULL: what the backend reports).
CREATE TABLE capacity_caps (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    nodes BIGINT,
    cpu_millis BIGINT,
    memory_mib BIGINT,
    gpus BIGINT,
    updated BIGINT NOT NULL
);
INSERT INTO capacity_caps (id, updated) VALUES (1, 0);

-- One row per cluster holding or waiting for resources: 'admitted' counts against its user's
-- quota and the capacity from the transaction that writes it until the cluster is released;
-- 'queued' waits its turn (seq, first come first served). Sizes are per node.
CREATE TABLE reservations (
    server_id BIGINT PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id BIGINT,
    image TEXT NOT NULL,
    nodes BIGINT NOT NULL,
    cpu_millis BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    gpus BIGINT NOT NULL,
    storage_mib BIGINT NOT NULL,
    state TEXT NOT NULL,                      -- 'queued' | 'admitted'
    seq BIGINT NOT NULL,
    run TEXT NOT NULL,                        -- this start's key in the ledger
    created BIGINT NOT NULL,
    admitted BIGINT
);
CREATE INDEX reservations_state ON reservations (state, seq);
CREATE INDEX reservations_user ON reservations (user_id);

-- Price versions: billing units per hour of a CPU core, a GiB of memory and a GPU, in millionths
-- of a unit, from effective_from (Unix seconds) until the next version. Ledger rows name the
-- version they were priced with, so an old bill is reproduced exactly.
CREATE TABLE prices (
    id BIGSERIAL PRIMARY KEY,
    effective_from BIGINT NOT NULL UNIQUE,
    cpu_core_hour BIGINT NOT NULL,
    memory_gib_hour BIGINT NOT NULL,
    gpu_hour BIGINT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created BIGINT NOT NULL
);
INSERT INTO prices (effective_from, cpu_core_hour, memory_gib_hour, gpu_hour, note, created)
VALUES (0, 1000000, 100000, 10000000, 'initial prices', 0);

-- The metering ledger, append-only (a trigger refuses UPDATE and DELETE). A row is one node's
-- interval [start_s, end_s) in Unix seconds with the sizes it reserved; the intervals of a run
-- (one start of a cluster) follow each other without gap or overlap. No row crosses local
-- midnight or a change of price. idem_key makes a retried write count once.
CREATE TABLE usage_ledger (
    id BIGSERIAL PRIMARY KEY,
    idem_key TEXT NOT NULL UNIQUE,
    run TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    project_id BIGINT,
    server_name TEXT NOT NULL,
    image TEXT NOT NULL,
    node BIGINT NOT NULL,
    cpu_millis BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    gpus BIGINT NOT NULL,
    start_s BIGINT NOT NULL,
    end_s BIGINT NOT NULL,
    day TEXT NOT NULL,                        -- local date of the interval, YYYY-MM-DD
    cpu_mcs BIGINT NOT NULL,                  -- CPU millicore-seconds reserved
    mib_s BIGINT NOT NULL,                    -- MiB-seconds reserved
    gpu_s BIGINT NOT NULL,                    -- GPU-seconds reserved
    cpu_used_ms BIGINT NOT NULL,              -- CPU time the node used in the interval (cgroup)
    price_id BIGINT NOT NULL REFERENCES prices(id),
    cost_micros BIGINT NOT NULL,              -- millionths of a billing unit
    kind TEXT NOT NULL,                       -- 'open' | 'checkpoint' | 'close' | 'recovered'
    recorded BIGINT NOT NULL
);
CREATE INDEX usage_ledger_run ON usage_ledger (run, node, end_s);
CREATE INDEX usage_ledger_user_day ON usage_ledger (user_id, day);
CREATE INDEX usage_ledger_project_day ON usage_ledger (project_id, day);
CREATE INDEX usage_ledger_day ON usage_ledger (day);
CREATE FUNCTION usage_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'usage_ledger is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER usage_ledger_no_change BEFORE UPDATE OR DELETE ON usage_ledger
FOR EACH ROW EXECUTE FUNCTION usage_ledger_append_only();
