//! The image library: validation of image records and who may see or change them.
//!
//! Users start clusters from enabled `library` images and from their own saved images.
//! Administrators (callers holding JupyterHub's unfiltered `admin:users` scope) add, edit, disable
//! and delete records. Images a user saved from a running node are `private` to that user (who may
//! start them at once; nobody else sees them) until they ask for them to be added (`requested`)
//! and an administrator approves (`library`): then everyone may start them.

use super::{HubError, HubResult};
use crate::clock;
use crate::db::{DbError, ImageFields, ImageFilter, ImageKind, ImageRow, Store, Visibility};
use crate::rbac::ScopeSet;

/// Image kinds.
pub const KINDS: &[ImageKind] = ImageKind::ALL;
/// Visibilities.
pub const VISIBILITIES: &[Visibility] = Visibility::ALL;

/// Whether the caller administers the image library.
pub fn is_library_admin(scopes: &ScopeSet) -> bool {
    scopes.get("admin:users").is_some_and(|g| g.is_unfiltered())
}

/// `image:tag`, the reference a backend runs.
pub fn reference(row: &ImageRow) -> String {
    format!("{}:{}", row.image, row.tag)
}

/// Checks a repository name as the OCI distribution spec and Docker accept it: an optional
/// registry host (with port) and lower-case path components joined by `/`.
pub fn check_repository(repo: &str) -> HubResult<()> {
    let bad = |why: &str| {
        HubError::BadRequest(format!(
            "Invalid image name {repo:?}: {why}. Use e.g. 127.0.0.1:5000/xiji/base-notebook"
        ))
    };
    if repo.is_empty() {
        return Err(bad("it is empty"));
    }
    if repo.len() > 255 {
        return Err(bad("it is longer than 255 characters"));
    }
    let mut parts: Vec<&str> = repo.split('/').collect();
    let first = parts[0];
    if parts.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost") {
        let (host, port) = first.split_once(':').unwrap_or((first, ""));
        let host_ok = !host.is_empty()
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !host_ok || (!port.is_empty() && port.parse::<u16>().is_err()) {
            return Err(bad(
                "the registry host is not a host name with an optional port",
            ));
        }
        parts.remove(0);
    }
    for part in parts {
        if !path_component_ok(part) {
            return Err(bad(
                "each path part must be lower-case letters and digits, separated by '.', '_', '__' or '-'",
            ));
        }
    }
    Ok(())
}

fn path_component_ok(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or a run of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn check_tag(tag: &str) -> HubResult<()> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok
        || tag.len() > 128
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(HubError::BadRequest(format!(
            "Invalid tag {tag:?}: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        )));
    }
    Ok(())
}

/// Checks a whole record; the messages say what to change.
pub fn validate(f: &ImageFields) -> HubResult<()> {
    let name = f.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(HubError::BadRequest(
            "An image's display name must be 1 to 100 characters without control characters".into(),
        ));
    }
    check_repository(&f.image)?;
    check_tag(&f.tag)?;
    for (what, text) in [
        ("start_options", &f.start_options),
        ("start_command", &f.start_command),
        ("description", &f.description),
    ] {
        if text.len() > 4096 {
            return Err(HubError::BadRequest(format!(
                "{what} is longer than 4096 bytes"
            )));
        }
        // PostgreSQL cannot store NUL in text: refused here, not a database failure (500).
        if text.contains('\0') {
            return Err(HubError::BadRequest(format!(
                "{what} contains a NUL character (\\u0000); remove it"
            )));
        }
    }
    if f.kind == ImageKind::Desktop {
        if f.start_command.trim().is_empty() {
            return Err(HubError::BadRequest(
                "A desktop image needs a start_command that starts its VNC server".into(),
            ));
        }
        match f.vnc_port {
            Some(p) if (1..=65535).contains(&p) => {}
            _ => {
                return Err(HubError::BadRequest(
                    "A desktop image needs a vnc_port between 1 and 65535 (usually 5901)".into(),
                ))
            }
        }
        // No password: every cluster gets its own (given to its nodes as a file). A password
        // is for images that bake in their own.
        match f.vnc_password.as_deref() {
            None => {}
            Some(p) if (6..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_graphic()) => {}
            Some(_) => {
                return Err(HubError::BadRequest(
                    "A desktop image's vnc_password, when given, is 6 to 8 printable ASCII \
                     characters (VNC authentication uses only the first 8); leave it out to give \
                     every cluster its own"
                        .into(),
                ))
            }
        }
    } else if f.vnc_port.is_some() || f.vnc_password.is_some() {
        return Err(HubError::BadRequest(
            "vnc_port and vnc_password belong to desktop images; leave them out for a jupyter image"
                .into(),
        ));
    }
    Ok(())
}

/// Adds a record after validating it.
pub async fn create(store: &Store, fields: ImageFields) -> HubResult<ImageRow> {
    validate(&fields)?;
    store
        .create_image(&fields, clock::now())
        .await
        .map_err(|e| name_taken(e, &fields.name))
}

/// Replaces a record's fields after validating them.
pub async fn update(store: &Store, id: i64, fields: ImageFields) -> HubResult<ImageRow> {
    validate(&fields)?;
    store
        .update_image(id, &fields, clock::now())
        .await
        .map_err(|e| name_taken(e, &fields.name))?
        .ok_or_else(|| not_found(id))
}

/// The record, if the caller may see it: library images for everyone, others for their owner and
/// library administrators.
pub async fn visible(
    store: &Store,
    id: i64,
    user_id: Option<i64>,
    admin: bool,
) -> HubResult<ImageRow> {
    let row = store.image(id).await?.ok_or_else(|| not_found(id))?;
    if admin
        || row.visibility == Visibility::Library
        || (user_id.is_some() && row.owner_id == user_id)
    {
        Ok(row)
    } else {
        Err(not_found(id))
    }
}

/// What a listing shows to this caller.
pub fn listing(user_id: Option<i64>, admin: bool, mine_only: bool) -> ImageFilter {
    match (admin, user_id, mine_only) {
        (_, Some(id), true) => ImageFilter::OwnedBy(id),
        (true, _, _) => ImageFilter::All,
        (false, Some(id), false) => ImageFilter::VisibleTo(id),
        (false, None, _) => ImageFilter::Startable,
    }
}

/// The image `user_id` may start, by id: an enabled library image, or one of their own enabled
/// images (usable by its owner from the moment it is saved). Anything else, another user's
/// private image included, is the same 400 as an id that does not exist.
pub async fn startable(store: &Store, id: i64, user_id: i64) -> HubResult<ImageRow> {
    match store.image(id).await? {
        Some(row) if row.visibility == Visibility::Library || row.owner_id == Some(user_id) => {
            if row.enabled != 0 {
                Ok(row)
            } else {
                Err(HubError::BadRequest(format!(
                    "Image {:?} is disabled; choose another image",
                    row.name
                )))
            }
        }
        _ => Err(HubError::BadRequest(format!(
            "No image {id} among the images you may start; choose one of GET /hub/api/images"
        ))),
    }
}

fn not_found(id: i64) -> HubError {
    HubError::NotFound(format!("No such image: {id}"))
}

fn name_taken(e: DbError, name: &str) -> HubError {
    match e {
        DbError::Conflict => HubError::Conflict(format!("An image named {name:?} exists already")),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jupyter() -> ImageFields {
        crate::db::tests::image_fields("Python", "library", None)
    }

    #[test]
    fn repository_names_follow_the_distribution_grammar() {
        for ok in [
            "xiji/base-notebook",
            "127.0.0.1:5000/xiji/base-notebook",
            "localhost/a",
            "registry.example.edu/group/sub/img_1",
            "a__b",
            "a---b",
            "ubuntu",
        ] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Xiji/base",
            "xiji//base",
            "xiji/base/",
            "-x",
            "x_-y",
            "host:99999/x",
            "a b",
            "x/../y",
            "x\u{7}",
        ] {
            assert!(check_repository(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_follow_the_distribution_grammar() {
        assert!(check_tag("v1.2-rc_3").is_ok());
        assert!(check_tag("_x").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn desktop_images_need_a_command_port_and_at_most_a_short_password() {
        let mut d = jupyter();
        d.kind = "desktop".into();
        assert!(validate(&d).is_err());
        d.start_command = "vncserver :1".into();
        d.vnc_port = Some(5901);
        assert!(validate(&d).is_ok(), "no password: one per cluster");
        d.vnc_password = Some("toolongpassword".into());
        let err = validate(&d).unwrap_err().to_string();
        assert!(err.contains("6 to 8"), "{err}");
        d.vnc_password = Some("secret1".into());
        assert!(validate(&d).is_ok());
        let mut j = jupyter();
        j.vnc_port = Some(5901);
        assert!(validate(&j).is_err());
    }

    #[tokio::test]
    async fn a_nul_character_in_free_text_is_a_bad_request_on_sqlite_and_postgresql() {
        for (store, _dir) in crate::db::tests::stores().await {
            let engine = store.engine();
            for field in ["start_options", "start_command", "description"] {
                let mut f = jupyter();
                f.name = format!("with NUL in {field}");
                let text = "a\0b".to_owned();
                match field {
                    "start_options" => f.start_options = text,
                    "start_command" => f.start_command = text,
                    _ => f.description = text,
                }
                match create(&store, f).await {
                    Err(HubError::BadRequest(m)) => assert!(m.contains(field), "{m}"),
                    other => panic!("{engine:?}: {field} with NUL gave {other:?}"),
                }
            }
            let mut f = jupyter();
            f.description = "line one\nline two".into();
            assert!(create(&store, f).await.is_ok(), "{engine:?}");
            store.close().await;
        }
    }

    #[test]
    fn users_see_the_library_and_their_own_images() {
        assert_eq!(listing(Some(3), false, false), ImageFilter::VisibleTo(3));
        assert_eq!(listing(Some(3), true, false), ImageFilter::All);
        assert_eq!(listing(Some(3), true, true), ImageFilter::OwnedBy(3));
        assert_eq!(listing(None, false, false), ImageFilter::Startable);
    }
}

/// A change to an image record; absent fields stay as they are.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePatch {
    /// What its nodes run.
    pub kind: Option<ImageKind>,
    /// Display name.
    pub name: Option<String>,
    /// Repository.
    pub image: Option<String>,
    /// Tag.
    pub tag: Option<String>,
    /// Extra single-user arguments.
    pub start_options: Option<String>,
    /// VNC start command.
    pub start_command: Option<String>,
    /// VNC password (`null` clears it).
    #[serde(default, deserialize_with = "double_option")]
    pub vnc_password: Option<Option<String>>,
    /// VNC port (`null` clears it).
    #[serde(default, deserialize_with = "double_option")]
    pub vnc_port: Option<Option<i64>>,
    /// Free text.
    pub description: Option<String>,
    /// Needs a GPU.
    pub needs_gpu: Option<bool>,
    /// Users may start it.
    pub enabled: Option<bool>,
    /// Who may start it.
    pub visibility: Option<Visibility>,
}

fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

impl ImagePatch {
    /// The fields after the patch.
    pub fn apply(self, mut f: ImageFields) -> ImageFields {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { f.$field = v; } )* };
        }
        set!(
            kind,
            name,
            image,
            tag,
            start_options,
            start_command,
            vnc_password,
            vnc_port,
            description,
            needs_gpu,
            enabled,
            visibility
        );
        f
    }

    /// Whether it touches only what an image's owner may change on their own saved image: its
    /// name, description, and asking for (or withdrawing) its addition to the library.
    fn owner_may_apply(&self) -> bool {
        let only_owner_fields = self.kind.is_none()
            && self.image.is_none()
            && self.tag.is_none()
            && self.start_options.is_none()
            && self.start_command.is_none()
            && self.vnc_password.is_none()
            && self.vnc_port.is_none()
            && self.needs_gpu.is_none()
            && self.enabled.is_none();
        let visibility_ok = self
            .visibility
            .is_none_or(|v| matches!(v, Visibility::Private | Visibility::Requested));
        only_owner_fields && visibility_ok
    }
}

/// Changes a record: administrators change anything; an owner changes the name and description of
/// their own image that is not (yet) in the library, and may ask for it to be added.
pub async fn patch(
    store: &Store,
    id: i64,
    patch: ImagePatch,
    user_id: Option<i64>,
    admin: bool,
) -> HubResult<ImageRow> {
    let row = visible(store, id, user_id, admin).await?;
    if !admin {
        let owns = user_id.is_some() && row.owner_id == user_id;
        if !owns || row.visibility == Visibility::Library {
            return Err(HubError::Forbidden(
                "Only administrators may change images in the library".into(),
            ));
        }
        if !patch.owner_may_apply() {
            return Err(HubError::Forbidden(
                "You may change only the name and description of your image, and ask for it to \
                 be added to the library (visibility \"requested\")"
                    .into(),
            ));
        }
    }
    update(store, id, patch.apply(ImageFields::of(&row))).await
}

/// Deletes a record: administrators any, owners their own images outside the library.
pub async fn delete(store: &Store, id: i64, user_id: Option<i64>, admin: bool) -> HubResult<()> {
    let row = visible(store, id, user_id, admin).await?;
    let owns_private =
        user_id.is_some() && row.owner_id == user_id && row.visibility != Visibility::Library;
    if !(admin || owns_private) {
        return Err(HubError::Forbidden(
            "Only administrators may delete images in the library".into(),
        ));
    }
    store.delete_image(id).await?;
    Ok(())
}
