-- Compute pools: the groups of machines that clusters are placed on, as administrators define
-- them. A machine is in a pool by the backend's own record, not by a row here: a Kubernetes node
-- by its label (`xiji.org/pool=<name>` by default), the Docker and local backends' one host
-- always in `default`. A pool that machines are in cannot be removed.
CREATE TABLE compute_pools (
    name TEXT PRIMARY KEY,                    -- a label value: 1-63 of a-z, 0-9, '-', alphanumeric at both ends
    description TEXT NOT NULL DEFAULT '',
    created BIGINT NOT NULL
);
INSERT INTO compute_pools (name, description, created) VALUES ('default', '', 0);
