//! `/hub/api/projects…`: projects, their members, stars, forks and runs (a Xiji extension; see
//! `docs/projects.md`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json as j, Map, Value};

use super::{body_as, empty, json, ApiCaller, JsonBody};
use crate::clock;
use crate::db::{ForkRow, ProjectRow};
use crate::domain::datasets::Viewer;
use crate::domain::projects::{self, Access, ProjectRequest, Reached, SearchQuery};
use crate::domain::{
    markdown, project_archive, project_files, project_transfer, servers, Services,
};
use crate::error::ApiError;
use crate::rbac::{self, Resource};

use super::url_segment as segment;

/// The caller as a project viewer: `read:projects` to read, `projects` to change.
fn viewer(caller: &ApiCaller, change: bool) -> Result<Viewer, ApiError> {
    super::acting_user(caller, "Projects", "read:projects", "projects", change)
}

async fn reach(
    hub: &Services,
    caller: &ApiCaller,
    owner: &str,
    name: &str,
    need: Access,
) -> Result<(Viewer, Reached), ApiError> {
    let v = viewer(caller, need > Access::Read)?;
    let reached = projects::reach(hub, &v, owner, name, need).await?;
    Ok((v, reached))
}

/// A project's JSON for a viewer.
async fn model(
    hub: &Services,
    viewer: &Viewer,
    p: &ProjectRow,
    access: Access,
) -> Result<Value, ApiError> {
    let image = match p.image_id {
        Some(id) => hub.store.image(id).await?.map(
            |i| j!({"id": i.id, "name": i.name, "reference": crate::domain::images::reference(&i)}),
        ),
        None => None,
    };
    let forked_from = match p.forked_from {
        Some(id) => hub
            .store
            .project(id)
            .await?
            .map(|f| format!("{}/{}", f.owner, f.name)),
        None => None,
    };
    let running: Vec<Value> = projects::running(hub, p)
        .await?
        .into_iter()
        .map(|(user, row)| {
            j!({
                "user": user,
                "server_name": row.name,
                "ready": row.status == crate::db::ServerStatus::Running,
                "url": format!("/user/{}/{}/", segment(&user), row.name),
            })
        })
        .collect();
    let fork = hub.store.project_fork(p.id).await?.map(|f| fork_model(&f));
    Ok(j!({
        "id": p.id,
        "owner": p.owner,
        "name": p.name,
        "description": p.description,
        "description_html": markdown::to_safe_html(&p.description),
        "tags": p.tag_list(),
        "image": image,
        "visibility": p.visibility,
        "datasets": projects::dataset_names(hub, p).await?,
        "forked_from": forked_from,
        "forks": p.forks,
        "fork": fork,
        "stars": p.stars,
        "starred": hub.store.project_starred(p.id, viewer.user.id).await?,
        "access": access.as_str(),
        "server_name": projects::server_name(p),
        "last_options": serde_json::from_str::<Value>(&p.last_options).unwrap_or(Value::Null),
        "running": running,
        "work_path": "/home/jovyan/work",
        "url": format!("/hub/projects/{}/{}", segment(&p.owner), segment(&p.name)),
        "created": clock::iso(p.created),
        "updated": clock::iso(p.updated),
    }))
}

/// The copy of a fork's files: `copying` (with how far it got; the totals are 0 while they are
/// counted), `done`, or `failed` with why (the fork then holds no files).
fn fork_model(f: &ForkRow) -> Value {
    j!({
        "state": f.state,
        "files_done": f.files_done,
        "files_total": f.files_total,
        "bytes_done": f.bytes_done,
        "bytes_total": f.bytes_total,
        "message": f.message,
        "started": clock::iso(f.created),
        "updated": clock::iso(f.updated),
    })
}

/// `GET /projects`.
pub async fn list(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Query(q): Query<SearchQuery>,
) -> Result<Response, ApiError> {
    let v = viewer(&caller, false)?;
    let (rows, total, offset, limit) = projects::search(&hub, &v, &q).await?;
    let mut items = Vec::with_capacity(rows.len());
    for p in &rows {
        let access = projects::access_of(&hub, &v, p)
            .await?
            .unwrap_or(Access::Read);
        items.push(model(&hub, &v, p, access).await?);
    }
    Ok(json(
        StatusCode::OK,
        j!({"items": items, "total": total, "offset": offset, "limit": limit}),
    ))
}

/// `POST /projects`.
pub async fn create(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let v = viewer(&caller, true)?;
    let request: ProjectRequest = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request(
            "Give the project as a JSON object: name, description, image, datasets",
        )
    })?;
    let p = projects::create(&hub, &v, request).await?;
    let mut response = json(
        StatusCode::CREATED,
        model(&hub, &v, &p, Access::Owner).await?,
    );
    if let Ok(loc) = HeaderValue::from_str(&format!(
        "/hub/api/projects/{}/{}",
        segment(&p.owner),
        segment(&p.name)
    )) {
        response.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(response)
}

/// `GET /projects/{owner}/{name}`.
pub async fn get_one(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (v, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    Ok(json(
        StatusCode::OK,
        model(&hub, &v, &r.project, r.access).await?,
    ))
}

/// `PATCH /projects/{owner}/{name}`.
pub async fn patch(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (v, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    let request: ProjectRequest = body_as(body)?.unwrap_or_default();
    let p = projects::update(&hub, &v, &r, request).await?;
    Ok(json(StatusCode::OK, model(&hub, &v, &p, r.access).await?))
}

/// `DELETE /projects/{owner}/{name}`: 409 while a cluster of it runs, except for
/// administrators, whose delete stops its clusters first.
pub async fn delete(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (v, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    projects::delete(&hub, &r.project, v.admin).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /projects/{owner}/{name}/members`.
pub async fn list_members(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    let members = hub.store.project_members(r.project.id).await?;
    Ok(json(StatusCode::OK, j!(members)))
}

/// Body of `PUT …/members/{user}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    role: String,
}

/// `PUT /projects/{owner}/{name}/members/{user}`.
pub async fn put_member(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name, user)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    let request: MemberRequest = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request("Give {\"role\": \"viewer\"} or {\"role\": \"editor\"}")
    })?;
    let member = projects::set_member(&hub, &r.project, &user, &request.role).await?;
    Ok(json(StatusCode::OK, j!(member)))
}

/// `DELETE /projects/{owner}/{name}/members/{user}`.
pub async fn delete_member(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name, user)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    projects::remove_member(&hub, &r.project, &user).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn set_star(
    hub: &Services,
    caller: &ApiCaller,
    owner: &str,
    name: &str,
    on: bool,
) -> Result<Response, ApiError> {
    let (v, r) = reach(hub, caller, owner, name, Access::Read).await?;
    let stars = projects::star(hub, &v, &r.project, on).await?;
    Ok(json(StatusCode::OK, j!({"stars": stars, "starred": on})))
}

/// `PUT /projects/{owner}/{name}/star`.
pub async fn star(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    set_star(&hub, &caller, &owner, &name, true).await
}

/// `DELETE /projects/{owner}/{name}/star`.
pub async fn unstar(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    set_star(&hub, &caller, &owner, &name, false).await
}

/// Body of `POST …/fork`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkRequest {
    name: Option<String>,
}

/// `POST /projects/{owner}/{name}/fork`: a private copy for the caller, answered at once with its
/// `fork` copying; `GET` of the fork shows how far the copy got.
pub async fn fork(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    // Forking creates a project of the caller's own, which takes the scope to change projects.
    let mut v = viewer(&caller, true)?;
    v.admin = false;
    let request: ForkRequest = body_as(body)?.unwrap_or_default();
    let forked = projects::fork(&hub, &v, &r.project, request.name.as_deref()).await?;
    let mut out = model(&hub, &v, &forked.project, Access::Owner).await?;
    if let Some(map) = out.as_object_mut() {
        map.insert("dropped_datasets".into(), j!(forked.dropped_datasets));
    }
    Ok(json(StatusCode::CREATED, out))
}

/// `POST /projects/{owner}/{name}/run`: starts the caller's cluster of the project with the
/// given sizes (`nodes`, `cpus`, `memory`, `gpus`, `storage`; none: the last run's).
pub async fn run(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (v, r) = reach(&hub, &caller, &owner, &name, Access::Edit).await?;
    let allowed = rbac::check(
        &caller.0.scopes,
        &["servers"],
        &Resource::User {
            name: &v.user.name,
            groups: &[],
        },
    ) == rbac::Access::Allowed;
    if !allowed {
        return Err(ApiError::forbidden(
            "This token may not start servers: it lacks the scope servers",
        ));
    }
    let sizes: Map<String, Value> = body_as(body)?.unwrap_or_default();
    let outcome = projects::run(&hub, &v, &r.project, sizes).await?;
    let server_name = projects::server_name(&r.project);
    let status = match outcome {
        servers::Outcome::Done => StatusCode::CREATED,
        servers::Outcome::Pending => StatusCode::ACCEPTED,
    };
    Ok(json(
        status,
        j!({
            "user": v.user.name,
            "server_name": server_name,
            "url": format!("/user/{}/{}/", segment(&v.user.name), server_name),
            "progress_url": format!(
                "/hub/api/users/{}/servers/{}/progress",
                segment(&v.user.name),
                server_name
            ),
        }),
    ))
}

/// Query of `GET …/export`.
#[derive(Debug, Default, Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    include_datasets: bool,
}

/// `Content-Disposition: attachment` with the name in UTF-8.
fn attachment(name: &str) -> Option<HeaderValue> {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        segment(name)
    ))
    .ok()
}

/// `GET /projects/{owner}/{name}/export?include_datasets=`: the project as a `.tar.zst`
/// archive, streamed (see `docs/projects-archive.md`); included datasets are those the caller
/// may read.
pub async fn export(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let (v, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    let export = project_transfer::prepare_export(&hub, &v, &r.project, q.include_datasets).await?;
    let stream = project_archive::export_stream(export.plan, export.manifest);
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zstd"),
    );
    if let Some(value) = attachment(&export.file_name) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Query of `POST /projects/import`.
#[derive(Debug, Default, Deserialize)]
pub struct ImportQuery {
    name: Option<String>,
}

/// `POST /projects/import?name=`: the body, a `.tar.zst` archive read as it arrives, becomes a
/// new private project of the caller's.
pub async fn import(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let mut v = viewer(&caller, true)?;
    // The project is the caller's own: datasets and images as the caller may use them.
    v.admin = false;
    let name = q.name.filter(|n| !n.is_empty());
    let outcome = project_transfer::import(&hub, &v, name, body.into_data_stream()).await?;
    let p = &outcome.project;
    let mut out = model(&hub, &v, p, Access::Owner).await?;
    if let Some(map) = out.as_object_mut() {
        map.insert("dropped_datasets".into(), j!(outcome.dropped_datasets));
        map.insert(
            "datasets_not_imported".into(),
            j!(outcome.datasets_not_imported),
        );
        map.insert("datasets_imported".into(), j!(outcome.datasets_imported));
        map.insert("image_not_found".into(), j!(outcome.image_not_found));
        map.insert("imported_files".into(), j!(outcome.files));
        map.insert("imported_bytes".into(), j!(outcome.bytes));
    }
    let mut response = json(StatusCode::CREATED, out);
    if let Ok(loc) = HeaderValue::from_str(&format!(
        "/hub/api/projects/{}/{}",
        segment(&p.owner),
        segment(&p.name)
    )) {
        response.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(response)
}

/// Query of `GET …/tree`.
#[derive(Debug, Default, Deserialize)]
pub struct TreeQuery {
    #[serde(default)]
    path: String,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /projects/{owner}/{name}/tree?path=&offset=&limit=`: a folder of the project.
pub async fn tree(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<TreeQuery>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, project_files::MAX_PAGE);
    let page = project_files::tree(&hub, &r.project, &q.path, q.offset.unwrap_or(0), limit).await?;
    Ok(json(StatusCode::OK, j!(page)))
}

/// `GET /projects/{owner}/{name}/files/{path}`: a file of the project, streamed.
pub async fn download(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name, path)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    let (file_name, size, stream) = project_files::download(&hub, &r.project, &path).await?;
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Some(value) = attachment(&file_name) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
