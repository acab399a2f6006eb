//! Console page for drives: the drives of the member's organizations, and
//! creating one (the organizations' admins and legal representatives).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use drive::DriveError;
use serde::Deserialize;

use crate::AppState;
use crate::console::{Chrome, Ctx};

pub fn routes() -> Router<AppState> {
    Router::new().route("/drives", get(drives_page).post(create))
}

/// `1.5 GiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

struct DriveRow {
    id: u64,
    name: String,
    org: String,
    usage: String,
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

#[derive(Deserialize, Default)]
#[serde(default)]
struct DoneQuery {
    created: Option<u64>,
}

async fn render(ctx: &Ctx, status: StatusCode, notice: Option<String>, error: Option<String>) -> Response {
    let Some(user) = &ctx.user else {
        return ctx.to_sign_in();
    };
    let (drives, memberships) = match (
        ctx.state.drives().of_account(&user.account).await,
        ctx.state.identity().memberships(&user.account.id).await,
    ) {
        (Ok(d), Ok(m)) => (d, m),
        (Err(e), _) | (_, Err(e)) => return ctx.failure(e),
    };
    let t = ctx.t();
    let page = DrivesPage {
        c: ctx.chrome(t.t("drive.title")),
        notice,
        error,
        drives: drives
            .into_iter()
            .map(|(d, _)| DriveRow {
                usage: t.tf(
                    "drive.usage",
                    &[("used", &bytes(d.used_bytes)), ("quota", &bytes(d.quota_bytes))],
                ),
                id: d.id,
                name: d.name,
                org: d.org_name,
            })
            .collect(),
        managed: memberships
            .into_iter()
            .filter(|m| m.role.manages_organization())
            .map(|m| OrgChoice {
                id: m.org_id,
                name: m.org_name,
            })
            .collect(),
    };
    ctx.render(status, &page)
}

async fn drives_page(ctx: Ctx, Query(q): Query<DoneQuery>) -> Response {
    let notice = q
        .created
        .map(|id| ctx.t().tf("drive.created", &[("id", &id.to_string())]));
    render(&ctx, StatusCode::OK, notice, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateForm {
    org: String,
    name: String,
    /// GiB, as typed.
    quota_gib: String,
}

async fn create(ctx: Ctx, Form(form): Form<CreateForm>) -> Response {
    let Some(user) = &ctx.user else {
        return ctx.to_sign_in();
    };
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
        .create(Some(&user.account), &form.org, &form.name, quota)
        .await
    {
        Ok(drive) => Redirect::to(&format!("/drives?created={}", drive.id)).into_response(),
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

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(10 * 1024 * 1024 * 1024), "10.0 GiB");
    }
}
