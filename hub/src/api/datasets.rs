//! `/hub/api/datasets…`: datasets, their files and the start of resumable uploads (a Xiji
//! extension; see `docs/datasets.md`; the uploads themselves are `super::uploads`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json as j, Value};

use super::uploads::Answer;
use super::{body_as, empty, json, ApiCaller, JsonBody};
use crate::clock;
use crate::db::DatasetRow;
use crate::domain::datasets::{self, Access, DatasetRequest, Reached, SearchQuery, Viewer};
use crate::domain::{markdown, Services};
use crate::error::ApiError;

use super::url_segment as segment;

/// The caller as a dataset viewer: `read:datasets` to read, `datasets` to change.
fn viewer(caller: &ApiCaller, change: bool) -> Result<Viewer, ApiError> {
    super::acting_user(caller, "Datasets", "read:datasets", "datasets", change)
}

/// A dataset's JSON for a viewer.
async fn model(
    hub: &Services,
    viewer: &Viewer,
    d: &DatasetRow,
    access: Access,
) -> Result<Value, ApiError> {
    let starred = hub.store.dataset_starred(d.id, viewer.user.id).await?;
    let base = format!(
        "/hub/api/datasets/{}/{}",
        segment(&d.owner),
        segment(&d.name)
    );
    Ok(j!({
        "id": d.id,
        "owner": d.owner,
        "name": d.name,
        "description": d.description,
        "description_html": markdown::to_safe_html(&d.description),
        "tags": d.tag_list(),
        "license": d.license,
        "visibility": d.visibility,
        "file_count": d.file_count,
        "size_bytes": d.size_bytes,
        "stars": d.stars,
        "starred": starred,
        "access": access.as_str(),
        "has_cover": d.has_cover != 0,
        "cover_url": (d.has_cover != 0).then(|| format!("{base}/cover?v={}", d.updated)),
        "mount_path": format!("/home/jovyan/{}/{}/{}", datasets::MOUNT_FOLDER, d.owner, d.name),
        "url": format!("/hub/datasets/{}/{}", segment(&d.owner), segment(&d.name)),
        "created": clock::iso(d.created),
        "updated": clock::iso(d.updated),
    }))
}

async fn reach(
    hub: &Services,
    caller: &ApiCaller,
    owner: &str,
    name: &str,
    need: Access,
) -> Result<(Viewer, Reached), ApiError> {
    let v = viewer(caller, need > Access::Read)?;
    let reached = datasets::reach(hub, &v, owner, name, need).await?;
    Ok((v, reached))
}

/// `GET /datasets`: a page of the datasets the caller may read that match the query.
pub async fn list(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Query(q): Query<SearchQuery>,
) -> Result<Response, ApiError> {
    let v = viewer(&caller, false)?;
    let (rows, total, offset, limit) = datasets::search(&hub, &v, &q).await?;
    let mut items = Vec::with_capacity(rows.len());
    for d in &rows {
        let access = datasets::access_of(&hub.store, &v, d)
            .await?
            .unwrap_or(Access::Read);
        items.push(model(&hub, &v, d, access).await?);
    }
    Ok(json(
        StatusCode::OK,
        j!({"items": items, "total": total, "offset": offset, "limit": limit}),
    ))
}

/// `POST /datasets`.
pub async fn create(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let v = viewer(&caller, true)?;
    let request: DatasetRequest = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request(
            "Give the dataset as a JSON object: name, description, tags, license, visibility",
        )
    })?;
    let d = datasets::create(&hub, &v, request).await?;
    let mut response = json(
        StatusCode::CREATED,
        model(&hub, &v, &d, Access::Owner).await?,
    );
    if let Ok(loc) = HeaderValue::from_str(&format!(
        "/hub/api/datasets/{}/{}",
        segment(&d.owner),
        segment(&d.name)
    )) {
        response.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(response)
}

/// `GET /datasets/{owner}/{name}`.
pub async fn get_one(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (v, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    Ok(json(
        StatusCode::OK,
        model(&hub, &v, &r.dataset, r.access).await?,
    ))
}

/// `PATCH /datasets/{owner}/{name}`.
pub async fn patch(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (v, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    let request: DatasetRequest = body_as(body)?.unwrap_or_default();
    let d = datasets::update(&hub, &r, request).await?;
    Ok(json(StatusCode::OK, model(&hub, &v, &d, r.access).await?))
}

/// `DELETE /datasets/{owner}/{name}`.
pub async fn delete(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    datasets::delete(&hub, &r.dataset).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Query of `…/tree` and `…/zip`.
#[derive(Debug, Default, Deserialize)]
pub struct FolderQuery {
    /// The folder (`""`: the top).
    #[serde(default)]
    path: String,
    /// Entries to skip.
    offset: Option<String>,
    /// Page size.
    limit: Option<String>,
}

fn page_number(what: &str, text: Option<&str>, default: usize) -> Result<usize, ApiError> {
    match text {
        None | Some("") => Ok(default),
        Some(t) => t.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "{what} must be a whole number of 0 or more, not {t:?}"
            ))
        }),
    }
}

/// `GET /datasets/{owner}/{name}/tree`.
pub async fn tree(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<FolderQuery>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    let offset = page_number("offset", q.offset.as_deref(), 0)?;
    let limit =
        page_number("limit", q.limit.as_deref(), 100)?.clamp(1, datasets::MAX_PAGE as usize);
    let page = datasets::tree(&hub, &r.dataset, q.path.trim_matches('/'), offset, limit).await?;
    Ok(json(StatusCode::OK, j!(page)))
}

/// `Content-Disposition: attachment` with the name in UTF-8.
fn attachment(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
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
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// The byte range a `Range: bytes=a-b` header asks of `size` bytes; `Err` when it cannot be met.
fn byte_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.strip_prefix("bytes=") else {
        return Ok(None);
    };
    // One range only; several are answered whole.
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.checked_sub(1).ok_or(())?)
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.checked_sub(1).ok_or(())?),
        (a, b) => {
            let a: u64 = a.parse().map_err(|_| ())?;
            let b: u64 = b.parse().map_err(|_| ())?;
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// `GET /datasets/{owner}/{name}/files/{path}`: a file, streamed; one `Range` honoured.
pub async fn download(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name, path)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    let (row, on_disk) = datasets::file(&hub, &r.dataset, &path).await?;
    let size = row.size.max(0) as u64;
    let file_name = row.path.rsplit('/').next().unwrap_or(&row.path).to_owned();
    let range = match byte_range(&headers, size) {
        Ok(r) => r,
        Err(()) => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("The file has {size} bytes; the range asked for is outside it"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = Body::from_stream(crate::domain::dataset_files::file_range(
        on_disk, start, len,
    ));
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_DISPOSITION, attachment(&file_name));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", row.sha256)) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// `DELETE /datasets/{owner}/{name}/files/{path}`: a file or a folder.
pub async fn delete_file(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name, path)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Write).await?;
    datasets::delete_path(&hub, &r.dataset, &path).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /datasets/{owner}/{name}/zip?path=`: a folder as a streamed ZIP.
pub async fn zip(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<FolderQuery>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    let (file_name, stream) = datasets::zip(&hub, &r.dataset, q.path.trim_matches('/')).await?;
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(header::CONTENT_DISPOSITION, attachment(&file_name));
    Ok(response)
}

/// Body of `…/move`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    from: String,
    to: String,
}

/// `POST /datasets/{owner}/{name}/move`.
pub async fn move_path(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Write).await?;
    let request: MoveRequest = body_as(body)?
        .ok_or_else(|| ApiError::bad_request("Give {\"from\": path, \"to\": path}"))?;
    let (from, to) = datasets::move_path(&hub, &r.dataset, &request.from, &request.to).await?;
    Ok(json(StatusCode::OK, j!({"from": from, "to": to})))
}

/// Body of `POST …/uploads`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    path: String,
    size: i64,
}

/// `POST /datasets/{owner}/{name}/uploads`: declares a file; 201 with where to send it.
pub async fn start_upload(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (v, r) = reach(&hub, &caller, &owner, &name, Access::Write).await?;
    let request: UploadRequest = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request(
            "Declare the file first: {\"path\": \"folder/name.csv\", \"size\": bytes}",
        )
    })?;
    let state = datasets::start_upload(&hub, &v, &r.dataset, &request.path, request.size).await?;
    Ok(Answer::dataset(&r.dataset, &state).respond(StatusCode::CREATED, true))
}

/// `GET /datasets/{owner}/{name}/uploads`: the caller's unfinished uploads to it.
pub async fn list_uploads(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (v, r) = reach(&hub, &caller, &owner, &name, Access::Write).await?;
    let states = datasets::uploads_to(&hub, &v, &r.dataset).await?;
    let items: Vec<Value> = states
        .iter()
        .map(|s| Answer::dataset(&r.dataset, s).model)
        .collect();
    Ok(json(StatusCode::OK, Value::Array(items)))
}

/// `PUT /datasets/{owner}/{name}/cover`: the raw image (PNG, JPEG or WebP).
pub async fn put_cover(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let (v, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    let cap = hub.config.datasets.cover_max_kb.saturating_mul(1024) as usize;
    // Read one byte past the cap, so a larger image is told apart without reading it whole.
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("Reading the image failed: {e}")))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() > cap {
            // Too large: read the rest (thrown away) so the 413 reaches the client.
            crate::domain::dataset_files::drain(&mut stream).await;
            break;
        }
    }
    datasets::set_cover(&hub, &r.dataset, bytes.into()).await?;
    let d = hub
        .store
        .dataset(r.dataset.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No dataset {owner}/{name}")))?;
    Ok(json(StatusCode::OK, model(&hub, &v, &d, r.access).await?))
}

/// `GET /datasets/{owner}/{name}/cover`.
pub async fn get_cover(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Read).await?;
    let (bytes, kind) = datasets::cover(&hub, &r.dataset).await?;
    let mut response = (StatusCode::OK, bytes).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    Ok(response)
}

/// `DELETE /datasets/{owner}/{name}/cover`.
pub async fn delete_cover(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    datasets::delete_cover(&hub, &r.dataset).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /datasets/{owner}/{name}/shares`.
pub async fn list_shares(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    let shares = datasets::shares(&hub, &r.dataset).await?;
    Ok(json(StatusCode::OK, j!(shares)))
}

/// Body of `PUT …/shares/{kind}/{grantee}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    access: String,
}

/// `PUT /datasets/{owner}/{name}/shares/{kind}/{grantee}`.
pub async fn put_share(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name, kind, grantee)): Path<(String, String, String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    let request: ShareRequest = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request("Give {\"access\": \"read\"} or {\"access\": \"write\"}")
    })?;
    let share = datasets::share(&hub, &r.dataset, &kind, &grantee, &request.access).await?;
    hub.invalidate_auth();
    Ok(json(StatusCode::OK, j!(share)))
}

/// `DELETE /datasets/{owner}/{name}/shares/{kind}/{grantee}`.
pub async fn delete_share(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name, kind, grantee)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let (_, r) = reach(&hub, &caller, &owner, &name, Access::Owner).await?;
    datasets::unshare(&hub, &r.dataset, &kind, &grantee).await?;
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
    let (stars, starred) = datasets::star(hub, &v, &r.dataset, on).await?;
    Ok(json(
        StatusCode::OK,
        j!({"stars": stars, "starred": starred}),
    ))
}

/// `PUT /datasets/{owner}/{name}/star`.
pub async fn star(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    set_star(&hub, &caller, &owner, &name, true).await
}

/// `DELETE /datasets/{owner}/{name}/star`.
pub async fn unstar(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    set_star(&hub, &caller, &owner, &name, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        byte_range(&h, size)
    }

    #[test]
    fn byte_ranges_are_read_as_rfc_9110_says() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=5-1", 100), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
    }

    #[test]
    fn download_names_keep_their_utf8_and_never_break_the_header() {
        let v = attachment("训练集 \"a\".csv");
        let text = v.to_str().unwrap();
        assert!(text.contains("filename*=UTF-8''%E8%AE%AD"), "{text}");
        assert!(!text.contains("\"a\""), "{text}");
    }
}
