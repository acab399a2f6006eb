//! Console pages for "Import external data": start copying a WebDAV
//! folder into a drive, follow its progress, read its report, cancel it.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use drive::{DriveId, FileError, Import, ImportError, NewImport};
use serde::Deserialize;

use crate::AppState;
use crate::console::{Chrome, ConsoleUser, Ctx};
use crate::fmt;
use crate::fmt::bytes;
use crate::i18n::Catalog;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/drives/{drive}/imports", get(list).post(start))
        .route("/drives/{drive}/imports/{id}", get(detail))
        .route("/drives/{drive}/imports/{id}/cancel", post(cancel))
}

/// An import as the pages show it.
struct Row {
    id: String,
    state: &'static str,
    state_text: String,
    running: bool,
    source: String,
    user: String,
    folder: String,
    progress: String,
    current_file: String,
    failed: u64,
    error: String,
    started: String,
    finished: String,
}

/// Why an import stopped or a file was not copied, in the reader's
/// language: the store keeps the English sentence of a reason code
/// (`drive::IMPORT_REASONS`), found back here; a sentence that is not one
/// of ours is shown as it is.
fn reason_text(t: &Catalog, stored: &str) -> String {
    let Some((code, value)) = drive::explain_import_reason(stored) else {
        return stored.to_owned();
    };
    let key = format!("import.reason.{code}");
    match value.parse::<u64>() {
        Ok(n) if t.is_plural(&key) => t.plural(&key, n, &[]),
        number => {
            let size = number.map(|b| bytes(t, b)).unwrap_or_default();
            t.tf(&key, &[("org", &value), ("status", &value), ("size", &size)])
        }
    }
}

fn row(ctx: &Ctx, i: Import) -> Row {
    let t = ctx.t();
    Row {
        state: i.state.as_str(),
        state_text: t.t(&format!("import.state.{}", i.state.as_str())).to_owned(),
        running: !i.state.ended(),
        progress: t.plural(
            "import.progress",
            i.files_found,
            &[("done", &t.number(i.files_done)), ("size", &bytes(t, i.bytes_done))],
        ),
        id: i.id,
        source: i.source_url,
        user: i.source_user,
        folder: i.folder,
        current_file: i.current_file,
        failed: i.files_failed,
        error: reason_text(t, &i.error),
        started: fmt::datetime(t, i.created_at),
        finished: i.finished_at.map(|at| fmt::datetime(t, at)).unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "drive_imports.html")]
struct ListPage {
    c: Chrome,
    drive: DriveId,
    drive_name: String,
    imports: Vec<Row>,
    error: Option<String>,
    /// Only members who may change the drive may start an import.
    writable: bool,
}

#[derive(Template)]
#[template(path = "drive_import.html")]
struct DetailPage {
    c: Chrome,
    drive: DriveId,
    drive_name: String,
    import: Row,
    failures: Vec<(String, String)>,
    writable: bool,
}

/// While an import runs, the page reloads itself every few seconds.
fn refreshing(mut response: Response, running: bool) -> Response {
    if running {
        response.headers_mut().insert("refresh", HeaderValue::from_static("3"));
    }
    response
}

fn error_text(ctx: &Ctx, e: &ImportError) -> (StatusCode, String) {
    let t = ctx.t();
    match e {
        ImportError::InvalidSource => (
            StatusCode::UNPROCESSABLE_ENTITY,
            t.t("import.invalid_source").to_owned(),
        ),
        ImportError::SourceNotAllowed => (StatusCode::UNPROCESSABLE_ENTITY, t.t("import.not_allowed").to_owned()),
        ImportError::NoFolder | ImportError::File(FileError::InvalidPath(_)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, t.t("import.no_folder").to_owned())
        }
        ImportError::File(FileError::ReadOnly) => (StatusCode::FORBIDDEN, t.t("files.read_only").to_owned()),
        ImportError::NotFound | ImportError::File(FileError::NoDrive) => {
            (StatusCode::NOT_FOUND, t.t("files.not_found").to_owned())
        }
        ImportError::File(_) | ImportError::Store(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, t.t("error.internal").to_owned())
        }
    }
}

async fn render_list(ctx: &ConsoleUser, drive: DriveId, status: StatusCode, error: Option<String>) -> Response {
    let user = &ctx.user;
    let drives = ctx.state.drives();
    let tree = match drives.tree(&user.account, drive).await {
        Ok(tree) => tree,
        Err(FileError::NoDrive) => {
            return ctx.message(
                StatusCode::NOT_FOUND,
                ctx.t().t("drive.title"),
                ctx.t().t("files.not_found"),
            );
        }
        Err(e) => return ctx.failure(e),
    };
    let imports = match drives.imports(&user.account, drive).await {
        Ok(list) => list,
        Err(e) => return ctx.failure(e),
    };
    let running = imports.iter().any(|i| !i.state.ended());
    let page = ListPage {
        c: ctx.chrome(ctx.t().t("import.title")),
        drive,
        drive_name: tree.drive().name.clone(),
        writable: tree.access() == drive::Access::ReadWrite,
        imports: imports.into_iter().map(|i| row(ctx, i)).collect(),
        error,
    };
    refreshing(ctx.render(status, &page), running)
}

async fn list(ctx: ConsoleUser, Path(drive): Path<DriveId>) -> Response {
    render_list(&ctx, drive, StatusCode::OK, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StartForm {
    source_url: String,
    user: String,
    password: String,
    folder: String,
}

async fn start(ctx: ConsoleUser, Path(drive): Path<DriveId>, Form(form): Form<StartForm>) -> Response {
    let user = &ctx.user;
    let folder = if form.folder.trim().is_empty() {
        "/"
    } else {
        form.folder.trim()
    };
    let started = ctx
        .state
        .drives()
        .start_import(
            &user.account,
            drive,
            NewImport {
                source_url: &form.source_url,
                user: form.user.trim(),
                password: &form.password,
                folder,
            },
        )
        .await;
    match started {
        Ok(import) => Redirect::to(&format!("/drives/{drive}/imports/{}", import.id)).into_response(),
        Err(e) => {
            let (status, text) = error_text(&ctx, &e);
            render_list(&ctx, drive, status, Some(text)).await
        }
    }
}

async fn detail(ctx: ConsoleUser, Path((drive, id)): Path<(DriveId, String)>) -> Response {
    let user = &ctx.user;
    let drives = ctx.state.drives();
    let (import, failures) = match drives.import(&user.account, drive, &id).await {
        Ok(found) => found,
        Err(e) => {
            let (status, text) = error_text(&ctx, &e);
            return ctx.message(status, ctx.t().t("import.title"), &text);
        }
    };
    let (drive_name, writable) = match drives.tree(&user.account, drive).await {
        Ok(tree) => (tree.drive().name.clone(), tree.access() == drive::Access::ReadWrite),
        Err(e) => return ctx.failure(e),
    };
    let running = !import.state.ended();
    let page = DetailPage {
        c: ctx.chrome(ctx.t().t("import.title")),
        drive,
        drive_name,
        import: row(&ctx, import),
        failures: failures
            .into_iter()
            .map(|(path, why)| {
                let why = reason_text(ctx.t(), &why);
                (path, why)
            })
            .collect(),
        writable,
    };
    refreshing(ctx.render(StatusCode::OK, &page), running)
}

async fn cancel(ctx: ConsoleUser, Path((drive, id)): Path<(DriveId, String)>) -> Response {
    let user = &ctx.user;
    match ctx.state.drives().cancel_import(&user.account, drive, &id).await {
        Ok(()) => Redirect::to(&format!("/drives/{drive}/imports/{id}")).into_response(),
        Err(e) => {
            let (status, text) = error_text(&ctx, &e);
            ctx.message(status, ctx.t().t("import.title"), &text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reason_text;
    use crate::i18n::Lang;

    #[test]
    fn reasons_are_told_in_the_readers_language() {
        let es = Lang::Es.catalog();
        assert_eq!(
            reason_text(es, &drive::import_reason("too_many_files", 1)),
            "el origen contiene más de 1 archivo, el máximo que puede copiar una importación"
        );
        assert_eq!(
            reason_text(es, &drive::import_reason("too_big", 1_073_741_824)),
            "el origen contiene más de 1,0 GiB, el máximo que puede copiar una importación"
        );
        assert_eq!(
            reason_text(es, &drive::import_reason("answered", 500)),
            "el origen ha respondido con el error 500"
        );
        assert_eq!(
            reason_text(Lang::De.catalog(), &drive::import_reason("storage", "disk I/O error")),
            "der Server konnte das Kopierte nicht speichern; wenden Sie sich an Ihre Administration"
        );
        assert_eq!(reason_text(es, "an older server's words"), "an older server's words");
        for lang in Lang::ALL {
            for (code, _) in drive::IMPORT_REASONS {
                let text = reason_text(lang.catalog(), &drive::import_reason(code, 3));
                assert!(
                    !text.contains('{') && !text.starts_with("import."),
                    "{code} in {}: {text}",
                    lang.code()
                );
            }
        }
    }
}
