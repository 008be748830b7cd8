//! The image pages: the library's administration (`/hub/admin/images`: add, edit, enable,
//! disable, delete, approve or reject requested images) and a user's own images
//! (`/hub/images`: their saved images, asking for one to be added to the library, and the
//! library with a Start link that preselects the image in the spawn form).
//!
//! Every change is a form posted with the XSRF token, then a redirect back to the list with a
//! message. VNC passwords are never written into a page: the form says whether one is set and
//! takes a new one.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use minijinja::context;
use serde::Serialize;

use super::auth::{check_xsrf, parse_form};
use super::{redirect, Detail, PageError, PageRequest};
use crate::clock;
use crate::db::{ImageFields, ImageFilter, ImageKind, ImageRow, Visibility};
use crate::domain::images::{self, ImagePatch};
use crate::domain::HubError;
use crate::domain::Services;

/// An image record as the pages show it (without its VNC password).
#[derive(Debug, Serialize)]
struct ImageView {
    id: i64,
    kind: ImageKind,
    desktop: bool,
    name: String,
    image: String,
    tag: String,
    reference: String,
    start_options: String,
    start_command: String,
    vnc_password_set: bool,
    vnc_port: Option<i64>,
    description: String,
    needs_gpu: bool,
    enabled: bool,
    visibility: Visibility,
    owner: Option<String>,
    updated: String,
}

async fn image_views(hub: &Services, rows: &[ImageRow]) -> Result<Vec<ImageView>, PageError> {
    let mut owners: HashMap<i64, Option<String>> = HashMap::new();
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let owner = match row.owner_id {
            Some(id) => match owners.get(&id) {
                Some(name) => name.clone(),
                None => {
                    let name = hub.store.user_by_id(id).await?.map(|u| u.name);
                    owners.insert(id, name.clone());
                    name
                }
            },
            None => None,
        };
        views.push(ImageView {
            id: row.id,
            kind: row.kind,
            desktop: row.kind == ImageKind::Desktop,
            name: row.name.clone(),
            image: row.image.clone(),
            tag: row.tag.clone(),
            reference: images::reference(row),
            start_options: row.start_options.clone(),
            start_command: row.start_command.clone(),
            vnc_password_set: row.vnc_password.as_deref().is_some_and(|p| !p.is_empty()),
            vnc_port: row.vnc_port,
            description: row.description.clone(),
            needs_gpu: row.needs_gpu != 0,
            enabled: row.enabled != 0,
            visibility: row.visibility,
            owner,
            updated: clock::iso(row.updated),
        });
    }
    Ok(views)
}

/// The changes a `?done=` can report, each with its `image_done_*` message.
pub(crate) const DONE: [&str; 9] = [
    "added",
    "saved",
    "enabled",
    "disabled",
    "approved",
    "rejected",
    "deleted",
    "requested",
    "withdrawn",
];

/// The message of a `?done=` after a change, if it is one of ours.
fn done_message(page: &PageRequest, query: &[(String, String)]) -> Option<&'static str> {
    let done = query.iter().rev().find(|(k, _)| k == "done")?;
    DONE.contains(&done.1.as_str())
        .then(|| page.lang.text(&format!("image_done_{}", done.1)))
}

/// The caller, if it administers the image library; 403 otherwise.
fn require_library_admin(page: &PageRequest) -> Result<i64, PageError> {
    let (user, caller) = page.require_user()?;
    if !images::is_library_admin(&caller.scopes) {
        return Err(PageError::status(StatusCode::FORBIDDEN));
    }
    Ok(user.id)
}

fn parse_id(text: &str) -> Result<i64, PageError> {
    text.parse()
        .map_err(|_| PageError::status(StatusCode::NOT_FOUND))
}

/// `GET /hub/admin/images`: every record, requests for the library first.
pub(crate) async fn admin_list(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    require_library_admin(&page)?;
    let rows = hub.store.list_images(ImageFilter::All).await?;
    let all = image_views(&hub, &rows).await?;
    let (requested, others): (Vec<ImageView>, Vec<ImageView>) = all
        .into_iter()
        .partition(|i| i.visibility == Visibility::Requested);
    Ok(page.render(
        "admin_images.html",
        context! {
            page => "admin-images",
            requested => requested,
            images => others,
            done => done_message(&page, &query),
        },
    ))
}

/// What the image form holds, as typed (never the VNC password).
#[derive(Debug, Clone, Default, Serialize)]
struct ImageFormValues {
    kind: String,
    name: String,
    image: String,
    tag: String,
    start_options: String,
    start_command: String,
    vnc_port: String,
    description: String,
    needs_gpu: bool,
    enabled: bool,
}

impl ImageFormValues {
    fn of(row: &ImageRow) -> Self {
        Self {
            kind: row.kind.as_str().to_owned(),
            name: row.name.clone(),
            image: row.image.clone(),
            tag: row.tag.clone(),
            start_options: row.start_options.clone(),
            start_command: row.start_command.clone(),
            vnc_port: row.vnc_port.map(|p| p.to_string()).unwrap_or_default(),
            description: row.description.clone(),
            needs_gpu: row.needs_gpu != 0,
            enabled: row.enabled != 0,
        }
    }

    fn new_of_kind(kind: &str) -> Self {
        let kind = ImageKind::parse(kind).unwrap_or(ImageKind::Jupyter);
        let desktop = kind == ImageKind::Desktop;
        Self {
            kind: kind.as_str().to_owned(),
            tag: "latest".into(),
            vnc_port: if desktop {
                "5901".into()
            } else {
                String::new()
            },
            enabled: true,
            ..Self::default()
        }
    }

    /// The values of a posted form, and the new VNC password if one was typed.
    fn from_form(form: &HashMap<String, String>) -> (Self, Option<String>) {
        let text = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        let checked = |k: &str| form.get(k).is_some_and(|v| !v.is_empty() && v != "0");
        let values = Self {
            kind: text("kind"),
            name: text("name"),
            image: text("image"),
            tag: text("tag"),
            start_options: text("start_options"),
            start_command: text("start_command"),
            vnc_port: text("vnc_port"),
            description: form
                .get("description")
                .map(|d| d.trim().replace("\r\n", "\n"))
                .unwrap_or_default(),
            needs_gpu: checked("needs_gpu"),
            enabled: checked("enabled"),
        };
        // Passwords are taken as typed: spaces may be part of them.
        let password = form.get("vnc_password").filter(|p| !p.is_empty()).cloned();
        (values, password)
    }

    fn desktop(&self) -> bool {
        self.kind == ImageKind::Desktop.as_str()
    }

    /// The record this form describes: an empty tag is `latest`, and a Jupyter image keeps no
    /// VNC settings. A new record joins the library; an edited `existing` one keeps its
    /// visibility, its owner and, when no new one was typed, its VNC password. `Err` says why
    /// the kind is not one there is.
    fn fields(
        &self,
        port: Option<i64>,
        password: Option<String>,
        existing: Option<&ImageRow>,
    ) -> Result<ImageFields, String> {
        let desktop = self.desktop();
        let password = password.or_else(|| existing.and_then(|row| row.vnc_password.clone()));
        Ok(ImageFields {
            kind: ImageKind::parse(&self.kind)?,
            name: self.name.clone(),
            image: self.image.clone(),
            tag: if self.tag.is_empty() {
                "latest".into()
            } else {
                self.tag.clone()
            },
            start_options: self.start_options.clone(),
            start_command: if desktop {
                self.start_command.clone()
            } else {
                String::new()
            },
            vnc_password: if desktop { password } else { None },
            vnc_port: port,
            description: self.description.clone(),
            needs_gpu: self.needs_gpu,
            enabled: self.enabled,
            visibility: existing.map_or(Visibility::Library, |row| row.visibility),
            owner_id: existing.and_then(|row| row.owner_id),
        })
    }

    /// The VNC port, for desktop images; `Err` with a catalogue key when it is not a number.
    fn port(&self) -> Result<Option<i64>, &'static str> {
        if !self.desktop() || self.vnc_port.is_empty() {
            return Ok(None);
        }
        self.vnc_port
            .parse::<i64>()
            .map(Some)
            .map_err(|_| "image_vnc_port_invalid")
    }
}

/// Why a form was refused: a catalogue key or the domain's message.
fn refusal(page: &PageRequest, detail: Detail) -> String {
    match detail {
        Detail::Key(k) => page.lang.text(k).to_owned(),
        Detail::Text(t) => t,
    }
}

/// Renders the add/edit form; `id` is `None` for a new record.
fn render_form(
    page: &PageRequest,
    status: StatusCode,
    id: Option<i64>,
    values: &ImageFormValues,
    vnc_password_set: bool,
    error: Option<String>,
) -> Response {
    let action = match id {
        Some(id) => format!("/hub/admin/images/{id}"),
        None => "/hub/admin/images/new".to_owned(),
    };
    page.render_with_status(
        status,
        "admin_image_form.html",
        context! {
            page => "admin-images",
            id => id,
            action => action,
            values => values,
            kinds => images::KINDS,
            vnc_password_set => vnc_password_set,
            error => error,
        },
    )
}

/// A domain refusal the form can show (bad values, a taken name), or the error page.
fn form_error(e: HubError) -> Result<String, PageError> {
    match e {
        HubError::BadRequest(m) | HubError::Conflict(m) => Ok(m),
        other => Err(other.into()),
    }
}

/// `GET /hub/admin/images/new?kind=jupyter|desktop`.
pub(crate) async fn admin_new(
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    require_library_admin(&page)?;
    let kind = query
        .iter()
        .rev()
        .find(|(k, _)| k == "kind")
        .map_or("jupyter", |(_, v)| v.as_str());
    let values = ImageFormValues::new_of_kind(kind);
    Ok(render_form(
        &page,
        StatusCode::OK,
        None,
        &values,
        false,
        None,
    ))
}

/// `POST /hub/admin/images/new`: adds a library record.
pub(crate) async fn admin_create(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    require_library_admin(&page)?;
    let form = parse_form(&body)?;
    check_xsrf(&headers, &form)?;
    let (values, password) = ImageFormValues::from_form(&form);
    let refuse = |detail: Detail| {
        Ok(render_form(
            &page,
            StatusCode::BAD_REQUEST,
            None,
            &values,
            false,
            Some(refusal(&page, detail)),
        ))
    };
    let port = match values.port() {
        Ok(p) => p,
        Err(key) => return refuse(Detail::Key(key)),
    };
    let fields = match values.fields(port, password, None) {
        Ok(f) => f,
        Err(message) => return refuse(Detail::Text(message)),
    };
    match images::create(&hub.store, fields).await {
        Ok(row) => {
            tracing::info!(image.id = row.id, image.reference = %images::reference(&row), "image added to the library from the admin page");
            Ok(redirect("/hub/admin/images?done=added"))
        }
        Err(e) => refuse(Detail::Text(form_error(e)?)),
    }
}

/// `GET /hub/admin/images/{id}`: the edit form.
pub(crate) async fn admin_edit(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let me = require_library_admin(&page)?;
    let id = parse_id(&id)?;
    let row = images::visible(&hub.store, id, Some(me), true).await?;
    let set = row.vnc_password.as_deref().is_some_and(|p| !p.is_empty());
    Ok(render_form(
        &page,
        StatusCode::OK,
        Some(id),
        &ImageFormValues::of(&row),
        set,
        None,
    ))
}

/// `POST /hub/admin/images/{id}`: saves the edit form. An empty VNC password keeps the stored
/// one; a Jupyter image keeps no VNC settings.
pub(crate) async fn admin_update(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let me = require_library_admin(&page)?;
    let id = parse_id(&id)?;
    let form = parse_form(&body)?;
    check_xsrf(&headers, &form)?;
    let row = images::visible(&hub.store, id, Some(me), true).await?;
    let set = row.vnc_password.as_deref().is_some_and(|p| !p.is_empty());
    let (values, password) = ImageFormValues::from_form(&form);
    let refuse = |detail: Detail| {
        Ok(render_form(
            &page,
            StatusCode::BAD_REQUEST,
            Some(id),
            &values,
            set,
            Some(refusal(&page, detail)),
        ))
    };
    let port = match values.port() {
        Ok(p) => p,
        Err(key) => return refuse(Detail::Key(key)),
    };
    let fields = match values.fields(port, password, Some(&row)) {
        Ok(f) => f,
        Err(message) => return refuse(Detail::Text(message)),
    };
    match images::update(&hub.store, id, fields).await {
        Ok(_) => {
            tracing::info!(image.id = id, "image changed from the admin page");
            Ok(redirect("/hub/admin/images?done=saved"))
        }
        Err(e) => refuse(Detail::Text(form_error(e)?)),
    }
}

/// `POST /hub/admin/images/{id}/{action}`: `enable`, `disable`, `approve` (a requested image
/// joins the library), `reject` (it goes back to its owner, private) or `delete`.
pub(crate) async fn admin_action(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let me = require_library_admin(&page)?;
    let id = parse_id(&id)?;
    let form = parse_form(&body)?;
    check_xsrf(&headers, &form)?;
    let patch = |f: fn(&mut ImagePatch)| {
        let mut p = ImagePatch::default();
        f(&mut p);
        p
    };
    let (change, done) = match action.as_str() {
        "enable" => (Some(patch(|p| p.enabled = Some(true))), "enabled"),
        "disable" => (Some(patch(|p| p.enabled = Some(false))), "disabled"),
        "approve" => (
            Some(patch(|p| p.visibility = Some(Visibility::Library))),
            "approved",
        ),
        "reject" => (
            Some(patch(|p| p.visibility = Some(Visibility::Private))),
            "rejected",
        ),
        "delete" => (None, "deleted"),
        _ => return Err(PageError::status(StatusCode::NOT_FOUND)),
    };
    match change {
        Some(p) => {
            images::patch(&hub.store, id, p, Some(me), true).await?;
        }
        None => images::delete(&hub.store, id, Some(me), true).await?,
    }
    tracing::info!(image.id = id, action = %action, "image library changed from the admin page");
    Ok(redirect(&format!("/hub/admin/images?done={done}")))
}

/// `GET /hub/images`: the caller's saved images and the library they may start from.
pub(crate) async fn mine(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let (user, caller) = page.require_user()?;
    let admin = images::is_library_admin(&caller.scopes);
    let own = hub
        .store
        .list_images(images::listing(Some(user.id), admin, true))
        .await?;
    let mut library = hub.store.list_images(ImageFilter::Startable).await?;
    // As the spawn form lists them: Jupyter images first.
    library.sort_by_cached_key(|i| (i.kind != ImageKind::Jupyter, i.name.to_lowercase()));
    Ok(page.render(
        "my_images.html",
        context! {
            page => "images",
            mine => image_views(&hub, &own).await?,
            library => image_views(&hub, &library).await?,
            done => done_message(&page, &query),
        },
    ))
}

/// `POST /hub/images/{id}/{action}` on the caller's own image: `request` (ask for it to be
/// added to the library), `withdraw` (take the request back) or `delete`.
pub(crate) async fn mine_action(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let (user, caller) = page.require_user()?;
    let admin = images::is_library_admin(&caller.scopes);
    let id = parse_id(&id)?;
    let form = parse_form(&body)?;
    check_xsrf(&headers, &form)?;
    // Only one's own images here, administrators included (they use the admin page for others).
    let row = images::visible(&hub.store, id, Some(user.id), admin).await?;
    if row.owner_id != Some(user.id) {
        return Err(PageError::status(StatusCode::NOT_FOUND));
    }
    let visibility = |v: Visibility| ImagePatch {
        visibility: Some(v),
        ..ImagePatch::default()
    };
    let done = match action.as_str() {
        "request" => {
            images::patch(
                &hub.store,
                id,
                visibility(Visibility::Requested),
                Some(user.id),
                admin,
            )
            .await?;
            "requested"
        }
        "withdraw" => {
            images::patch(
                &hub.store,
                id,
                visibility(Visibility::Private),
                Some(user.id),
                admin,
            )
            .await?;
            "withdrawn"
        }
        "delete" => {
            images::delete(&hub.store, id, Some(user.id), admin).await?;
            "deleted"
        }
        _ => return Err(PageError::status(StatusCode::NOT_FOUND)),
    };
    tracing::info!(image.id = id, user.name = %user.name, action = %action, "own image changed");
    Ok(redirect(&format!("/hub/images?done={done}")))
}
