//! Console page for who may use a drive: what members get by default and
//! each member's own rule. The organization's admins and legal
//! representative only.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use drive::{Access, DriveError, DriveId, Grant};
use serde::Deserialize;

use crate::AppState;
use crate::console::{Chrome, ConsoleUser, Ctx};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/drives/{drive}/access", get(page).post(set_member_access))
        .route("/drives/{drive}/access/member", post(set_rule))
}

/// A choice in a select: value, text, selected.
struct Choice {
    value: &'static str,
    text: String,
    selected: bool,
}

struct MemberRow {
    account_id: String,
    email: String,
    name: String,
    role: String,
    manages: bool,
    access: String,
    choices: Vec<Choice>,
}

#[derive(Template)]
#[template(path = "drive_access.html")]
struct AccessPage {
    c: Chrome,
    drive: DriveId,
    drive_name: String,
    defaults: Vec<Choice>,
    members: Vec<MemberRow>,
    notice: Option<String>,
    error: Option<String>,
}

fn grant_text(ctx: &Ctx, grant: Grant) -> String {
    ctx.t().t(&format!("access.{}", grant.as_str())).to_owned()
}

fn access_text(ctx: &Ctx, access: Option<Access>) -> String {
    match access {
        Some(Access::ReadWrite) => grant_text(ctx, Grant::ReadWrite),
        Some(Access::Read) => grant_text(ctx, Grant::Read),
        None => grant_text(ctx, Grant::None),
    }
}

fn error_text(ctx: &Ctx, e: &DriveError) -> (StatusCode, String) {
    let t = ctx.t();
    match e {
        DriveError::NotFound | DriveError::NotAMember | DriveError::Org(identity::OrgError::NotFound) => {
            (StatusCode::NOT_FOUND, t.t("files.not_found").to_owned())
        }
        DriveError::ManagerAlwaysWrites => (
            StatusCode::UNPROCESSABLE_ENTITY,
            t.t("access.manager_always_writes").to_owned(),
        ),
        DriveError::Org(_) => (StatusCode::FORBIDDEN, t.t("access.managers_only").to_owned()),
        DriveError::InvalidName | DriveError::InvalidQuota | DriveError::Store(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, t.t("error.internal").to_owned())
        }
    }
}

async fn render(
    ctx: &ConsoleUser,
    drive: DriveId,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let user = &ctx.user;
    let (found, members) = match ctx.state.drives().members(Some(&user.account), drive).await {
        Ok(found) => found,
        Err(e) => {
            let (status, text) = error_text(ctx, &e);
            return ctx.message(status, ctx.t().t("access.title"), &text);
        }
    };
    let t = ctx.t();
    let defaults = Grant::ALL
        .into_iter()
        .map(|g| Choice {
            value: g.as_str(),
            text: grant_text(ctx, g),
            selected: g == found.member_access,
        })
        .collect();
    let default_text = t.tf(
        "access.use_default",
        &[("access", &grant_text(ctx, found.member_access))],
    );
    let members = members
        .into_iter()
        .map(|m| {
            let mut choices = vec![Choice {
                value: "default",
                text: default_text.clone(),
                selected: m.grant.is_none(),
            }];
            choices.extend(Grant::ALL.into_iter().map(|g| Choice {
                value: g.as_str(),
                text: grant_text(ctx, g),
                selected: m.grant == Some(g),
            }));
            MemberRow {
                manages: m.manages(),
                access: access_text(ctx, m.access),
                role: t.t(&format!("role.{}", m.member.role.as_str())).to_owned(),
                account_id: m.member.account_id.into_string(),
                email: m.member.email,
                name: m.member.name,
                choices,
            }
        })
        .collect();
    let page = AccessPage {
        c: ctx.chrome(t.t("access.title")),
        drive,
        drive_name: found.name,
        defaults,
        members,
        notice,
        error,
    };
    ctx.render(status, &page)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DoneQuery {
    saved: Option<String>,
}

async fn page(ctx: ConsoleUser, Path(drive): Path<DriveId>, Query(q): Query<DoneQuery>) -> Response {
    let notice = q.saved.map(|_| ctx.t().t("access.saved").to_owned());
    render(&ctx, drive, StatusCode::OK, notice, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DefaultForm {
    member_access: String,
}

/// The answer to a form: back to the page, or the page with the error.
async fn after(ctx: &ConsoleUser, drive: DriveId, done: Result<(), DriveError>) -> Response {
    match done {
        Ok(()) => Redirect::to(&format!("/drives/{drive}/access?saved=1")).into_response(),
        Err(DriveError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let (status, text) = error_text(ctx, &e);
            render(ctx, drive, status, None, Some(text)).await
        }
    }
}

/// The page for a choice that is not in the list.
fn unknown_choice(ctx: &Ctx) -> Response {
    ctx.message(
        StatusCode::UNPROCESSABLE_ENTITY,
        ctx.t().t("access.title"),
        ctx.t().t("access.unknown"),
    )
}

async fn set_member_access(ctx: ConsoleUser, Path(drive): Path<DriveId>, Form(form): Form<DefaultForm>) -> Response {
    let user = &ctx.user;
    let Ok(grant) = form.member_access.parse::<Grant>() else {
        return unknown_choice(&ctx);
    };
    let done = ctx
        .state
        .drives()
        .set_member_access(Some(&user.account), drive, grant)
        .await
        .map(|_| ());
    after(&ctx, drive, done).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RuleForm {
    account: String,
    /// `default`, or a grant.
    access: String,
}

async fn set_rule(ctx: ConsoleUser, Path(drive): Path<DriveId>, Form(form): Form<RuleForm>) -> Response {
    let user = &ctx.user;
    let grant = match form.access.as_str() {
        "default" => None,
        other => match other.parse::<Grant>() {
            Ok(g) => Some(g),
            Err(_) => return unknown_choice(&ctx),
        },
    };
    let done = ctx
        .state
        .drives()
        .set_grant(
            Some(&user.account),
            drive,
            &identity::AccountId::new(form.account),
            grant,
        )
        .await
        .map(|_| ());
    after(&ctx, drive, done).await
}
