-- Budgets: a limit on what a user, a group (its members together) or a project may cost in a
-- local calendar month, in millionths of a billing unit. month '' is every month; a row for one
-- month ('YYYY-MM') replaces it for that month. target_id is the user's, group's or project's id.
CREATE TABLE budgets (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,                       -- 'user' | 'group' | 'project'
    target_id BIGINT NOT NULL,
    month TEXT NOT NULL DEFAULT '',
    limit_micros BIGINT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    UNIQUE (kind, target_id, month)
);

-- When a budget was first seen used up in a month: its running clusters are released a grace
-- period after that (kept here so a restart of the hub does not start the grace period again).
CREATE TABLE budget_exceeded (
    budget_id BIGINT NOT NULL REFERENCES budgets(id) ON DELETE CASCADE,
    month TEXT NOT NULL,
    since BIGINT NOT NULL,                    -- Unix seconds
    PRIMARY KEY (budget_id, month)
);
