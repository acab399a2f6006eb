//! Console page for drives: the drives of the member's organizations, and
//! creating one (the organizations' admins and legal representatives).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use drive::DriveError;
use serde::Deserialize;

use crate::AppState;
use crate::console::{Chrome, ConsoleUser};
use crate::flash::Flash;
use crate::fmt::bytes;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/drives", get(drives_page).post(create))
        .route("/drives/{drive}/files", get(browse::root))
        .route("/drives/{drive}/files/{*path}", get(browse::at))
        .route("/drives/{drive}/upload", post(browse::upload))
        .route("/drives/{drive}/folders", post(browse::make_folder))
        .route("/drives/{drive}/delete", post(browse::delete))
}

struct DriveRow {
    id: u64,
    name: String,
    org: String,
    usage: String,
    access: String,
    /// The member manages its organization: links to the access page.
    manages: bool,
}

struct OrgChoice {
    id: String,
    name: String,
}

#[derive(Template)]
#[template(path = "drives.html")]
struct DrivesPage {
    c: Chrome,
    notice: Option<String>,
    error: Option<String>,
    drives: Vec<DriveRow>,
    /// Organizations the member manages: where they may create drives.
    managed: Vec<OrgChoice>,
}

async fn render(ctx: &ConsoleUser, status: StatusCode, notice: Option<String>, error: Option<String>) -> Response {
    let user = &ctx.user;
    let (drives, memberships) = match (
        ctx.state.drives().of_account(&user.account).await,
        ctx.state.identity().memberships(&user.account.id).await,
    ) {
        (Ok(d), Ok(m)) => (d, m),
        (Err(e), _) | (_, Err(e)) => return ctx.failure(e),
    };
    let t = ctx.t();
    let managed: Vec<OrgChoice> = memberships
        .into_iter()
        .filter(|m| m.role.manages_organization())
        .map(|m| OrgChoice {
            id: m.org_id.into_string(),
            name: m.org_name,
        })
        .collect();
    let page = DrivesPage {
        c: ctx.chrome(t.t("drive.title")),
        notice,
        error,
        drives: drives
            .into_iter()
            .map(|(d, access)| DriveRow {
                access: t.t(&format!("access.{}", access.as_str())).to_owned(),
                manages: managed.iter().any(|o| o.id == d.org_id.as_str()),
                usage: t.tf(
                    "drive.usage",
                    &[("used", &bytes(t, d.used_bytes)), ("quota", &bytes(t, d.quota_bytes))],
                ),
                id: d.id.get(),
                name: d.name,
                org: d.org_name,
            })
            .collect(),
        managed,
    };
    ctx.render(status, &page)
}

async fn drives_page(ctx: ConsoleUser) -> Response {
    render(&ctx, StatusCode::OK, None, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateForm {
    org: String,
    name: String,
    /// GiB, as typed.
    quota_gib: String,
}

async fn create(ctx: ConsoleUser, Form(form): Form<CreateForm>) -> Response {
    let user = &ctx.user;
    let t = ctx.t();
    let quota = match form.quota_gib.trim() {
        "" => None,
        typed => match typed.parse::<u64>() {
            Ok(gib) if gib > 0 => Some(gib.saturating_mul(1024 * 1024 * 1024)),
            _ => {
                let error = Some(t.t("drive.invalid_quota").to_owned());
                return render(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, error).await;
            }
        },
    };
    match ctx
        .state
        .drives()
        .create(Some(&user.account), &identity::OrgId::new(form.org), &form.name, quota)
        .await
    {
        Ok(drive) => ctx.flash_to(
            "/drives",
            &Flash::notice("flows.drive_created").arg("name", drive.name),
            &[],
        ),
        Err(DriveError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = match e {
                DriveError::InvalidName => t.t("drive.invalid_name").to_owned(),
                DriveError::InvalidQuota => t.t("drive.invalid_quota").to_owned(),
                _ => t.t("org.not_allowed").to_owned(),
            };
            render(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, Some(error)).await
        }
    }
}

// ---- browsing, uploading and downloading ---------------------------------------

mod browse {
    use askama::Template;
    use axum::Form;
    use axum::body::Body;
    use axum::extract::{Multipart, Path, Query};
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use drive::FileError;
    use futures_util::TryStreamExt;
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

    /// Everything but RFC 3986's unreserved characters (also RFC 5987's
    /// `attr-char` for file names in headers).
    const ENCODED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'-').remove(b'_').remove(b'~');
    use drive::DriveId;
    use serde::Deserialize;

    use crate::console::{Chrome, Confirmation, Confirmed, ConsoleUser, Ctx};
    use crate::flash::Flash;
    use crate::fmt;
    use crate::fmt::bytes;

    /// `/drives/<id>/files/<each name percent-encoded>`.
    pub fn files_url(drive: DriveId, names: &[&str]) -> String {
        let mut url = format!("/drives/{drive}/files");
        for name in names {
            url.push('/');
            url.extend(utf8_percent_encode(name, ENCODED));
        }
        url
    }

    fn error_text(ctx: &Ctx, e: &FileError) -> (StatusCode, String) {
        let t = ctx.t();
        match e {
            FileError::NoDrive | FileError::NotFound => (StatusCode::NOT_FOUND, t.t("files.not_found").to_owned()),
            FileError::InvalidPath(_) => (StatusCode::BAD_REQUEST, t.t("files.invalid_name").to_owned()),
            FileError::Exists => (StatusCode::CONFLICT, t.t("files.exists").to_owned()),
            FileError::NotAFolder | FileError::IsAFolder => (StatusCode::CONFLICT, t.t("files.exists").to_owned()),
            FileError::ReadOnly => (StatusCode::FORBIDDEN, t.t("files.read_only").to_owned()),
            FileError::InsufficientStorage => (StatusCode::INSUFFICIENT_STORAGE, t.t("files.full").to_owned()),
            FileError::Conflict => (StatusCode::CONFLICT, t.t("files.conflict").to_owned()),
            FileError::Incomplete | FileError::ChecksumMismatch => {
                (StatusCode::BAD_REQUEST, t.t("files.incomplete").to_owned())
            }
            FileError::Blob(_) | FileError::Store(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, t.t("error.internal").to_owned())
            }
        }
    }

    struct Crumb {
        name: String,
        href: String,
    }

    struct Entry {
        name: String,
        href: String,
        path: String,
        is_dir: bool,
        size: String,
        modified: String,
    }

    /// How to reach this folder from a WebDAV client.
    struct Connect {
        host_url: String,
        path_url: String,
        /// The host form without its scheme (what NAS tools ask for).
        host_name: String,
        /// `dav://` or `davs://`, for Linux file managers.
        gio_url: String,
        login: String,
    }

    #[derive(Template)]
    #[template(path = "drive_files.html")]
    struct FilesPage {
        c: Chrome,
        connect: Connect,
        drive: DriveId,
        folder: String,
        crumbs: Vec<Crumb>,
        entries: Vec<Entry>,
        upload_action: String,
        error: Option<String>,
        /// The member may change the drive (upload, new folder, delete,
        /// import).
        writable: bool,
        /// The member manages the drive's organization.
        manages: bool,
    }

    async fn render(
        ctx: &ConsoleUser,
        drive: DriveId,
        path: &str,
        status: StatusCode,
        error: Option<String>,
    ) -> Response {
        let user = &ctx.user;
        let drives = ctx.state.drives();
        let names = match drive::split_path(path) {
            Ok(n) => n,
            Err(e) => {
                let (status, text) = error_text(ctx, &e);
                return ctx.message(status, ctx.t().t("drive.title"), &text);
            }
        };
        let listed = drives.list(&user.account, drive, path).await;
        let (node_drive, access, entries) = match (drives.access(&user.account, drive).await, listed) {
            (Ok(Some((d, a))), Ok(entries)) => (d, a, entries),
            (Err(e), _) => return ctx.failure(e),
            (_, Err(FileError::NotAFolder)) => return download(ctx, drive, path).await,
            (_, Err(e)) => {
                let (status, text) = error_text(ctx, &e);
                return ctx.message(status, ctx.t().t("drive.title"), &text);
            }
            (Ok(None), Ok(_)) => {
                return ctx.message(
                    StatusCode::NOT_FOUND,
                    ctx.t().t("drive.title"),
                    ctx.t().t("files.not_found"),
                );
            }
        };
        let mut crumbs = vec![Crumb {
            name: node_drive.name.clone(),
            href: files_url(drive, &[]),
        }];
        for i in 0..names.len() {
            crumbs.push(Crumb {
                name: names[i].to_owned(),
                href: files_url(drive, &names[..=i]),
            });
        }
        let folder = format!("/{}", names.join("/"));
        let addresses = crate::dav::addresses(&ctx.state, &ctx.base_url, drive, &folder);
        let secure = addresses.host.starts_with("https://");
        let without_scheme = addresses.host.split_once("://").map_or("", |(_, rest)| rest).to_owned();
        let connect = Connect {
            gio_url: format!("{}://{without_scheme}", if secure { "davs" } else { "dav" }),
            host_name: without_scheme.split('/').next().unwrap_or_default().to_owned(),
            host_url: addresses.host,
            path_url: addresses.path,
            login: user.account.email.to_string(),
        };
        let manages = match ctx.state.identity().memberships(&user.account.id).await {
            Ok(memberships) => memberships
                .iter()
                .any(|m| m.org_id == node_drive.org_id && m.role.manages_organization()),
            Err(e) => return ctx.failure(e),
        };
        let t = ctx.t();
        let page = FilesPage {
            writable: access == drive::Access::ReadWrite,
            manages,
            c: ctx.chrome(&node_drive.name),
            connect,
            drive,
            upload_action: format!(
                "/drives/{drive}/upload?folder={}&csrf={}",
                utf8_percent_encode(&folder, ENCODED),
                ctx.chrome("").csrf
            ),
            folder: folder.clone(),
            crumbs,
            entries: entries
                .into_iter()
                .map(|n| {
                    let mut child: Vec<&str> = names.clone();
                    child.push(&n.name);
                    Entry {
                        href: files_url(drive, &child),
                        path: format!("/{}", child.join("/")),
                        size: if n.is_dir { String::new() } else { bytes(t, n.size) },
                        modified: fmt::datetime(t, n.modified_at),
                        is_dir: n.is_dir,
                        name: n.name,
                    }
                })
                .collect(),
            error,
        };
        ctx.render(status, &page)
    }

    pub async fn root(ctx: ConsoleUser, Path(drive): Path<DriveId>) -> Response {
        render(&ctx, drive, "/", StatusCode::OK, None).await
    }

    pub async fn at(ctx: ConsoleUser, Path((drive, path)): Path<(DriveId, String)>) -> Response {
        render(&ctx, drive, &path, StatusCode::OK, None).await
    }

    async fn download(ctx: &ConsoleUser, drive: DriveId, path: &str) -> Response {
        let user = &ctx.user;
        match ctx.state.drives().open_chunks(&user.account, drive, path).await {
            Ok((node, chunks)) => {
                let name = utf8_percent_encode(&node.name, ENCODED).to_string();
                (
                    [
                        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                        (header::CONTENT_LENGTH, node.size.to_string()),
                        (header::ETAG, format!("\"{}\"", node.etag)),
                        (
                            header::CONTENT_DISPOSITION,
                            format!("attachment; filename*=UTF-8''{name}"),
                        ),
                        // A member's upload, never a console page, even
                        // if a browser were to render it (see `dav.rs`).
                        (header::CONTENT_SECURITY_POLICY, "sandbox".to_owned()),
                    ],
                    Body::from_stream(download_stream(chunks)),
                )
                    .into_response()
            }
            Err(e) => {
                let (status, text) = error_text(ctx, &e);
                ctx.message(status, ctx.t().t("drive.title"), &text)
            }
        }
    }

    /// How much of a file a download reads at a time.
    const DOWNLOAD_CHUNK: usize = 256 * 1024;

    /// A file's chunks as a response body; a failed read ends the body
    /// early (the client sees fewer bytes than the length announced).
    fn download_stream(
        chunks: Box<dyn drive::BlobChunks>,
    ) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
        futures_util::stream::unfold(Some(chunks), |chunks| async move {
            let mut chunks = chunks?;
            match chunks.next_chunk(DOWNLOAD_CHUNK).await {
                Ok(chunk) if chunk.is_empty() => None,
                Ok(chunk) => Some((Ok(chunk), Some(chunks))),
                Err(e) => {
                    tracing::error!(error = %e, "reading a blob for a download failed");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        })
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct UploadQuery {
        folder: String,
    }

    /// Each file of the form goes into the folder, streamed.
    pub async fn upload(
        ctx: ConsoleUser,
        Path(drive): Path<DriveId>,
        Query(q): Query<UploadQuery>,
        request: axum::extract::Request,
    ) -> Response {
        let user = &ctx.user;
        let mut replace = false;
        let mut stored = Vec::new();
        let Ok(mut form) = <Multipart as axum::extract::FromRequest<()>>::from_request(request, &()).await else {
            let text = ctx.t().t("files.upload_failed").to_owned();
            return render(&ctx, drive, &q.folder, StatusCode::BAD_REQUEST, Some(text)).await;
        };
        loop {
            let field = match form.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(_) => {
                    let text = ctx.t().t("files.upload_failed").to_owned();
                    return render(&ctx, drive, &q.folder, StatusCode::BAD_REQUEST, Some(text)).await;
                }
            };
            if field.name() == Some("replace") {
                replace = true;
                continue;
            }
            let Some(name) = field.file_name().map(str::to_owned).filter(|n| !n.is_empty()) else {
                continue;
            };
            let path = format!("{}/{name}", q.folder.trim_end_matches('/'));
            // A file of that name is kept unless the form said to replace it.
            if !replace {
                match ctx.state.drives().stat(&user.account, drive, &path).await {
                    Ok(_) => {
                        let text = ctx.t().tf("flows.upload_exists", &[("name", &name)]);
                        return uploaded_so_far(&ctx, drive, &q.folder, &stored, StatusCode::CONFLICT, Some(text))
                            .await;
                    }
                    Err(FileError::NotFound) => {}
                    Err(e) => {
                        let (status, text) = error_text(&ctx, &e);
                        return render(&ctx, drive, &q.folder, status, Some(text)).await;
                    }
                }
            }
            let stream = field.map_err(std::io::Error::other);
            let mut reader = tokio_util::io::StreamReader::new(stream);
            if let Err(e) = ctx
                .state
                .drives()
                .put_file(&user.account, drive, &path, &mut reader, None)
                .await
            {
                let (status, text) = error_text(&ctx, &e);
                return uploaded_so_far(&ctx, drive, &q.folder, &stored, status, Some(text)).await;
            }
            stored.push(name);
        }
        uploaded_so_far(&ctx, drive, &q.folder, &stored, StatusCode::OK, None).await
    }

    /// After an upload: back to the folder saying what was stored, or,
    /// when a file stopped it, the folder with why (and what was stored
    /// before it).
    async fn uploaded_so_far(
        ctx: &ConsoleUser,
        drive: DriveId,
        folder: &str,
        stored: &[String],
        status: StatusCode,
        error: Option<String>,
    ) -> Response {
        let t = ctx.t();
        let done = match stored {
            [] => None,
            [one] => Some(t.tf("flows.uploaded_one", &[("name", one)])),
            many => Some(t.tf("flows.uploaded_many", &[("count", &many.len().to_string())])),
        };
        match error {
            None => {
                let names = drive::split_path(folder).unwrap_or_default();
                let flash = match stored {
                    [one] => Flash::notice("flows.uploaded_one").arg("name", one.clone()),
                    many => Flash::notice("flows.uploaded_many").arg("count", many.len().to_string()),
                };
                ctx.flash_to(&files_url(drive, &names), &flash, &[])
            }
            Some(error) => {
                let text = match done {
                    Some(done) => format!("{done} {error}"),
                    None => error,
                };
                render(ctx, drive, folder, status, Some(text)).await
            }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct FolderForm {
        folder: String,
        name: String,
    }

    pub async fn make_folder(ctx: ConsoleUser, Path(drive): Path<DriveId>, Form(form): Form<FolderForm>) -> Response {
        let user = &ctx.user;
        let name = form.name.trim();
        if name.contains(['/', '\\']) {
            let text = ctx.t().t("flows.folder_slash").to_owned();
            return render(&ctx, drive, &form.folder, StatusCode::UNPROCESSABLE_ENTITY, Some(text)).await;
        }
        let path = format!("{}/{name}", form.folder.trim_end_matches('/'));
        match ctx.state.drives().make_folder(&user.account, drive, &path).await {
            Ok(_) => {
                let names = drive::split_path(&form.folder).unwrap_or_default();
                let flash = Flash::notice("flows.folder_created").arg("name", name);
                ctx.flash_to(&files_url(drive, &names), &flash, &[])
            }
            Err(e) => {
                let (status, text) = error_text(&ctx, &e);
                render(&ctx, drive, &form.folder, status, Some(text)).await
            }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct DeleteForm {
        path: String,
        confirm: Option<String>,
    }

    pub async fn delete(ctx: ConsoleUser, Path(drive): Path<DriveId>, Form(form): Form<DeleteForm>) -> Response {
        let user = &ctx.user;
        let names = drive::split_path(&form.path).unwrap_or_default();
        let parent = &names[..names.len().saturating_sub(1)];
        let Some(name) = names.last().map(|n| n.to_string()) else {
            let (status, text) = error_text(&ctx, &FileError::InvalidPath("the top folder"));
            return render(&ctx, drive, "/", status, Some(text)).await;
        };
        if !(Confirmed {
            confirm: form.confirm.clone(),
        })
        .yes()
        {
            let node = match ctx.state.drives().stat(&user.account, drive, &form.path).await {
                Ok(node) => node,
                Err(e) => {
                    let (status, text) = error_text(&ctx, &e);
                    return render(&ctx, drive, &format!("/{}", parent.join("/")), status, Some(text)).await;
                }
            };
            let t = ctx.t();
            let (title, key) = if node.is_dir {
                ("flows.delete_folder_title", "flows.delete_folder_text")
            } else {
                ("flows.delete_file_title", "flows.delete_file_text")
            };
            return ctx.confirm(Confirmation {
                title: t.t(title),
                text: t.tf(key, &[("name", &name)]),
                action: format!("/drives/{drive}/delete"),
                fields: vec![("path".to_owned(), form.path.clone())],
                button: t.tf("flows.delete_button", &[("name", &name)]),
                cancel: files_url(drive, parent),
                password: false,
            });
        }
        match ctx.state.drives().delete(&user.account, drive, &form.path).await {
            Ok(()) => ctx.flash_to(
                &files_url(drive, parent),
                &Flash::notice("flows.deleted").arg("name", name),
                &[],
            ),
            Err(e) => {
                let (status, text) = error_text(&ctx, &e);
                render(&ctx, drive, &format!("/{}", parent.join("/")), status, Some(text)).await
            }
        }
    }
}
