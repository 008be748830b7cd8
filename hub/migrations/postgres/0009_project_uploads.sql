-- Uploads under way into a project's files (the same resumable protocol as datasets'). The bytes
-- gather in the project's 'uploads/{id}' beside its 'files/' and are renamed into place when the
-- last one arrives; a project's files are its folder, so a finished upload leaves no row.
CREATE TABLE project_uploads (
    id TEXT PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    UNIQUE (project_id, path)
);
CREATE INDEX project_uploads_updated ON project_uploads (updated);
