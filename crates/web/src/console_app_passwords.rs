//! Console pages for application passwords: the list, creating one (its
//! secret shown once, through the one-time message) and revoking one after
//! a confirmation.

use askama::Template;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use identity::{AppPasswordId, IdentityError};

use crate::AppState;
use crate::console::{Chrome, Confirmation, ConsoleUser};
use crate::console_two_factor::NameForm;
use crate::flash::{Flash, Secret};
use crate::fmt;
use crate::refusal::Refusal;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/security/app-passwords",
            get(app_passwords_page).post(create_app_password),
        )
        .route("/security/app-passwords/{id}/revoke", post(revoke_app_password))
}

struct AppPasswordRow {
    id: String,
    name: String,
    created: String,
    last_used: String,
    last_ip: String,
}

#[derive(Template)]
#[template(path = "app_passwords.html")]
struct AppPasswordsPage {
    c: Chrome,
    notice: Option<String>,
    error: Option<String>,
    created_heading: String,
    created_password: Option<String>,
    rows: Vec<AppPasswordRow>,
    two_factor_on: bool,
}

async fn render_app_passwords(
    ctx: &ConsoleUser,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    created: Option<(String, String)>,
) -> Response {
    let user = &ctx.user;
    let identity = ctx.state.identity();
    let (list, s) = match (
        identity.app_passwords(&user.account.id).await,
        identity.two_factor(&user.account.id).await,
    ) {
        (Ok(l), Ok(s)) => (l, s),
        (Err(e), _) | (_, Err(e)) => return ctx.failure(e),
    };
    let t = ctx.t();
    let (created_heading, created_password) = match created {
        Some((name, p)) => (t.tf("app_passwords.created", &[("name", &name)]), Some(p)),
        None => (String::new(), None),
    };
    let page = AppPasswordsPage {
        c: ctx.chrome(t.t("app_passwords.title")),
        notice,
        error,
        created_heading,
        created_password,
        rows: list
            .into_iter()
            .map(|p| AppPasswordRow {
                id: p.id.into_string(),
                name: p.name,
                created: fmt::datetime(t, p.created_at),
                last_used: if p.last_used_at == 0 {
                    t.t("common.never").to_owned()
                } else {
                    fmt::datetime(t, p.last_used_at)
                },
                last_ip: p.last_used_ip,
            })
            .collect(),
        two_factor_on: s.enabled,
    };
    let mut response = ctx.render(status, &page);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

async fn app_passwords_page(ctx: ConsoleUser) -> Response {
    let created = match ctx.secret() {
        Some(Secret::AppPassword { name, password }) => Some((name.clone(), password.clone())),
        _ => None,
    };
    render_app_passwords(&ctx, StatusCode::OK, None, None, created).await
}

async fn create_app_password(ctx: ConsoleUser, Form(form): Form<NameForm>) -> Response {
    let user = &ctx.user;
    match ctx
        .state
        .identity()
        .create_app_password(&user.account, &form.name, &user.client)
        .await
    {
        Ok((created, password)) => ctx.flash_to(
            "/security/app-passwords",
            &Flash::notice("flows.app_password_created")
                .arg("name", created.name.clone())
                .with_secret(Secret::AppPassword {
                    name: created.name,
                    password,
                }),
            &[],
        ),
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::identity(&e).text(ctx.t());
            render_app_passwords(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, Some(error), None).await
        }
    }
}

async fn revoke_app_password(
    ctx: ConsoleUser,
    Path(id): Path<AppPasswordId>,
    Form(form): Form<crate::console::Confirmed>,
) -> Response {
    let user = &ctx.user;
    if !form.yes() {
        let name = match ctx.state.identity().app_passwords(&user.account.id).await {
            Ok(list) => list.into_iter().find(|p| p.id == id).map(|p| p.name),
            Err(e) => return ctx.failure(e),
        };
        let Some(name) = name else {
            return Redirect::to("/security/app-passwords").into_response();
        };
        let t = ctx.t();
        return ctx.confirm(Confirmation {
            title: t.t("flows.revoke_app_password_title"),
            text: t.tf("flows.revoke_app_password_text", &[("name", &name)]),
            action: format!("/security/app-passwords/{id}/revoke"),
            fields: Vec::new(),
            button: t.tf("flows.revoke_app_password_button", &[("name", &name)]),
            cancel: "/security/app-passwords".to_owned(),
            password: false,
        });
    }
    match ctx
        .state
        .identity()
        .revoke_app_password(&user.account.id, &id, &user.client)
        .await
    {
        Ok(_) => ctx.flash_to(
            "/security/app-passwords",
            &Flash::notice("app_passwords.done_revoked"),
            &[],
        ),
        Err(e) => ctx.failure(e),
    }
}
