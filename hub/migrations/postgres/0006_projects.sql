-- Projects: the unit of work. A project's files are its folder on a storage pool (placement kind
-- 'project', key 'project:{id}'), which is /home/jovyan/work on every node of a cluster run for
-- it; the cluster is the runner's named server 'project-{id}'.
CREATE TABLE projects (
    id BIGSERIAL PRIMARY KEY,
    owner_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',              -- words separated by single spaces
    image_id BIGINT REFERENCES images(id) ON DELETE SET NULL,
    visibility TEXT NOT NULL DEFAULT 'private', -- 'private' | 'public'
    forked_from BIGINT REFERENCES projects(id) ON DELETE SET NULL,
    last_options TEXT NOT NULL DEFAULT '{}',    -- the sizes of the last run (JSON)
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    UNIQUE (owner_id, name)
);
CREATE INDEX projects_forked_from ON projects (forked_from);

CREATE TABLE project_datasets (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    dataset_id BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    PRIMARY KEY (project_id, dataset_id)
);

CREATE TABLE project_members (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,                         -- 'viewer' | 'editor'
    created BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

CREATE TABLE project_stars (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_stars_user ON project_stars (user_id);
