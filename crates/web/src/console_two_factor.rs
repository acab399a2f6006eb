//! Console pages for two-step verification: the second sign-in step and
//! the 2FA page (methods, enrolment, backup codes). Application passwords
//! are in `console_app_passwords`.
//!
//! The method list and "Add an option" are driven by
//! [`identity::FactorKind::ALL`], so the methods still to come (the
//! authenticator app, security keys, SMS) slot into the same pages.

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use identity::credential::backup_code;
use identity::{
    ApprovalRequestId, FactorId, FactorKind, IdentityError, PushError, PushOutcome, PushState, SecondStepError,
    StepRequest,
};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Authed, sign_in_cookies};
use crate::console::{Chrome, Confirmation, ConsolePending, ConsoleUser, Ctx, see_other};
use crate::flash::{Flash, Secret};
use crate::fmt;
use crate::refusal::Refusal;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin/second-factor", get(second_step_form).post(second_step_submit))
        .route(
            "/signin/second-factor/authenticator/{id}",
            get(push_wait_page).post(push_continue),
        )
        .route("/security/two-factor", get(two_factor_page))
        .route("/security/two-factor/totp", post(begin_totp))
        .route("/security/two-factor/totp/{id}/confirm", post(confirm_totp))
        .route("/security/two-factor/security_key", post(begin_security_key))
        .route(
            "/security/two-factor/security_key/{id}/finish",
            post(finish_security_key),
        )
        .route("/security/two-factor/authenticator", post(begin_authenticator))
        .route(
            "/security/two-factor/authenticator/{id}/linked",
            post(authenticator_linked),
        )
        .route("/security/two-factor/sms", post(begin_sms))
        .route("/security/two-factor/sms/{id}/confirm", post(confirm_sms))
        .route("/security/two-factor/sms/{id}/resend", post(resend_sms))
        .route("/security/two-factor/methods/{id}/remove", post(remove_method))
        .route("/security/two-factor/default", post(set_default_method))
        .route(
            "/security/two-factor/backup-codes",
            get(backup_codes_page).post(regenerate_backup_codes),
        )
        .route("/security/two-factor/backup-codes.txt", post(download_backup_codes))
}

fn kind_label(ctx: &Ctx, kind: FactorKind) -> String {
    ctx.t().t(&format!("method.{}", kind.as_str())).to_owned()
}

// ---- the second sign-in step ------------------------------------------------

struct MethodChoice {
    label: String,
    href: String,
}

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondStepPage {
    c: Chrome,
    /// `totp`, `backup_code`, `sms` or `choose`.
    method: String,
    choices: Vec<MethodChoice>,
    error: Option<String>,
    notice: Option<String>,
    /// With `security_key`: the options for `navigator.credentials.get`.
    webauthn_options: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MethodQuery {
    method: Option<String>,
}

async fn second_step_page(
    ctx: &Ctx,
    pending: &Authed,
    method: Option<&str>,
    status: StatusCode,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    let challenge = match ctx.state.identity().challenge(&pending.account).await {
        Ok(c) => c,
        Err(e) => return ctx.failure(e),
    };
    let methods = challenge.as_ref().map_or(&[][..], |c| &c.methods[..]);
    let mut choices: Vec<MethodChoice> = methods
        .iter()
        .map(|m| MethodChoice {
            label: format!("{} ({})", m.name, kind_label(ctx, m.kind)),
            href: format!("/signin/second-factor?method={}", m.kind.as_str()),
        })
        .collect();
    choices.push(MethodChoice {
        label: ctx.t().t("second_step.use_backup_code").to_owned(),
        href: "/signin/second-factor?method=backup_code".to_owned(),
    });
    let method = match method {
        Some(m @ ("backup_code" | "choose")) => m,
        Some(m) if methods.iter().any(|e| e.kind.as_str() == m) => m,
        _ => challenge.as_ref().map_or("backup_code", |c| c.default_method.as_str()),
    }
    .to_owned();
    let mut webauthn_options = String::new();
    if method == "security_key" {
        match ctx
            .state
            .identity()
            .begin_security_key_sign_in(&pending.session, &pending.account)
            .await
        {
            Ok(options) => webauthn_options = options.to_string(),
            Err(SecondStepError::Store(e)) => return ctx.failure(e),
            Err(_) => return ctx.to_sign_in(),
        }
    }
    let page = SecondStepPage {
        c: ctx.chrome(ctx.t().t("second_step.title")),
        method,
        choices,
        error,
        notice,
        webauthn_options,
    };
    ctx.render(status, &page)
}

async fn second_step_form(ctx: ConsolePending, Query(q): Query<MethodQuery>) -> Response {
    second_step_page(&ctx, &ctx.pending, q.method.as_deref(), StatusCode::OK, None, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CodeForm {
    method: String,
    code: String,
    /// With `security_key`: the browser's answer, as JSON.
    credential: String,
}

async fn second_step_submit(ctx: ConsolePending, Form(form): Form<CodeForm>) -> Response {
    let pending = &ctx.pending;
    let t = ctx.t();
    let credential = serde_json::from_str(&form.credential).ok();
    let step = match StepRequest::parse(&form.method, form.code, credential) {
        Some(StepRequest::Check(step)) => step,
        Some(StepRequest::Push) => {
            let sent = ctx
                .state
                .identity()
                .begin_push(&pending.session, &pending.account, &pending.client)
                .await;
            let error = match sent {
                Ok(request) => {
                    return Redirect::to(&format!("/signin/second-factor/authenticator/{}", request.id))
                        .into_response();
                }
                Err(PushError::Paused { retry_after }) => t.plural("push.paused", minutes(retry_after), &[]),
                Err(PushError::TooManyRequests { retry_after }) => t.plural("push.too_many", minutes(retry_after), &[]),
                Err(PushError::NoDevice) => t.t("push.no_device").to_owned(),
                Err(PushError::Store(e)) => return ctx.failure(e),
                Err(PushError::NotPending) => return ctx.to_sign_in(),
            };
            return second_step_page(
                &ctx,
                pending,
                Some("authenticator"),
                StatusCode::TOO_MANY_REQUESTS,
                Some(error),
                None,
            )
            .await;
        }
        Some(StepRequest::SendSms) => {
            let sent = ctx
                .state
                .identity()
                .send_sign_in_sms(&pending.session, &pending.account, ctx.lang_code())
                .await;
            let (status, error, notice) = match sent {
                Ok(phone) => (StatusCode::OK, None, Some(t.tf("sms.sent", &[("phone", &phone)]))),
                Err(SecondStepError::Sms(e)) => (StatusCode::TOO_MANY_REQUESTS, Some(Refusal::sms(&e).text(t)), None),
                Err(SecondStepError::Store(e)) => return ctx.failure(e),
                Err(_) => return ctx.to_sign_in(),
            };
            return second_step_page(&ctx, pending, Some("sms"), status, error, notice).await;
        }
        // The page asks the browser for the key's answer to a fresh challenge.
        Some(StepRequest::SecurityKeyChallenge) => {
            return second_step_page(&ctx, pending, Some("security_key"), StatusCode::OK, None, None).await;
        }
        None => return second_step_page(&ctx, pending, None, StatusCode::BAD_REQUEST, None, None).await,
    };
    let result = ctx
        .state
        .identity()
        .second_step(
            &pending.session,
            &pending.account,
            step,
            ctx.device.as_deref(),
            &pending.client,
        )
        .await;
    let (status, error) = match result {
        Ok(signed) => {
            ctx.state.metrics().sign_in("signed_in");
            if form.method == "backup_code" {
                let left = match ctx.state.identity().two_factor(&pending.account.id).await {
                    Ok(s) => s.backup_codes_remaining,
                    Err(e) => return ctx.failure(e),
                };
                let flash = Flash::notice("flows.backup_code_used").arg("count", left.to_string());
                return ctx.flash_to("/", &flash, &sign_in_cookies(&ctx.state, &signed));
            }
            return see_other("/", &sign_in_cookies(&ctx.state, &signed));
        }
        Err(SecondStepError::WrongCode { attempts_left }) => (
            StatusCode::UNAUTHORIZED,
            t.tf(
                "second_step.wrong_code",
                &[("left", &t.number(u64::from(attempts_left)))],
            ),
        ),
        Err(SecondStepError::CodeReused) => (StatusCode::UNAUTHORIZED, t.t("flows.code_reused").to_owned()),
        Err(SecondStepError::Restart) => {
            return see_other("/signin?restart=1", &[crate::auth::sign_out_cookie(&ctx.state)]);
        }
        Err(SecondStepError::TooManyAttempts { retry_after }) => (
            StatusCode::TOO_MANY_REQUESTS,
            Refusal::too_many_attempts(retry_after).text(t),
        ),
        Err(SecondStepError::NotPending) => return ctx.to_sign_in(),
        Err(SecondStepError::Sms(e)) => (StatusCode::TOO_MANY_REQUESTS, Refusal::sms(&e).text(t)),
        Err(SecondStepError::NoSecurityKey) => (StatusCode::CONFLICT, t.t("security_key.none").to_owned()),
        Err(SecondStepError::Store(e)) => return ctx.failure(e),
    };
    second_step_page(&ctx, pending, Some(&form.method), status, Some(error), None).await
}

fn minutes(ms: i64) -> u64 {
    u64::try_from((ms + 59_999) / 60_000).unwrap_or(0).max(1)
}

// ---- push approval: the waiting page -----------------------------------------

#[derive(Template)]
#[template(path = "push_wait.html")]
struct PushWaitPage {
    c: Chrome,
    request_id: String,
    number: u8,
    expired: bool,
    error: Option<String>,
}

/// Without a waiting session: a denial ended it (say so), or the member
/// is signed in already.
async fn after_denial(ctx: &Ctx, id: &ApprovalRequestId) -> Response {
    if ctx.signed_in.is_some() {
        return Redirect::to("/").into_response();
    }
    match ctx.state.identity().push_state(id).await {
        Ok(Some((request, PushState::Denied))) => refused(ctx, &request),
        Ok(_) => ctx.to_sign_in(),
        Err(e) => ctx.failure(e),
    }
}

/// Back to sign-in after the phone refused: a wrong number is most often
/// a mistap, and is said so; a "No" may mean someone else has the
/// password.
fn refused(ctx: &Ctx, request: &identity::ApprovalRequest) -> Response {
    let key = if request.status == identity::ApprovalStatus::WrongNumber {
        "flows.push_mistap"
    } else {
        "push.denied"
    };
    ctx.flash_to(
        "/signin",
        &Flash::error(key),
        &[crate::auth::sign_out_cookie(&ctx.state)],
    )
}

async fn render_push_wait(ctx: &Ctx, id: &ApprovalRequestId, error: Option<String>) -> Response {
    let Some(pending) = &ctx.half_signed_in else {
        return after_denial(ctx, id).await;
    };
    let found = match ctx.state.identity().push_state(id).await {
        Ok(found) => found.filter(|(r, _)| r.session_id == pending.session.id),
        Err(e) => return ctx.failure(e),
    };
    let Some((request, state)) = found else {
        return Redirect::to("/signin/second-factor?method=authenticator").into_response();
    };
    let page = PushWaitPage {
        c: ctx.chrome(ctx.t().t("push.title")),
        request_id: request.id.into_string(),
        number: request.number,
        expired: state == PushState::Expired,
        error,
    };
    ctx.render(StatusCode::OK, &page)
}

async fn push_wait_page(ctx: Ctx, Path(id): Path<ApprovalRequestId>) -> Response {
    render_push_wait(&ctx, &id, None).await
}

/// The waiting page's form: signs in once the phone approved (the page's
/// script submits it by itself then).
async fn push_continue(ctx: Ctx, Path(id): Path<ApprovalRequestId>) -> Response {
    let Some(pending) = &ctx.half_signed_in else {
        return after_denial(&ctx, &id).await;
    };
    let outcome = ctx
        .state
        .identity()
        .finish_push(
            &pending.session,
            &pending.account,
            &id,
            ctx.device.as_deref(),
            &pending.client,
        )
        .await;
    match outcome {
        Ok(PushOutcome::SignedIn(signed)) => {
            ctx.state.metrics().sign_in("signed_in");
            see_other("/", &sign_in_cookies(&ctx.state, &signed))
        }
        Ok(PushOutcome::Denied) => match ctx.state.identity().push_state(&id).await {
            Ok(Some((request, _))) => refused(&ctx, &request),
            Ok(None) => ctx.to_sign_in(),
            Err(e) => ctx.failure(e),
        },
        Ok(PushOutcome::Pending) => {
            let waiting = ctx.t().t("push.still_waiting").to_owned();
            render_push_wait(&ctx, &id, Some(waiting)).await
        }
        Ok(PushOutcome::Expired) => render_push_wait(&ctx, &id, None).await,
        Err(SecondStepError::TooManyAttempts { retry_after }) => {
            let error = Refusal::too_many_attempts(retry_after).text(ctx.t());
            second_step_page(
                &ctx,
                pending,
                Some("choose"),
                StatusCode::TOO_MANY_REQUESTS,
                Some(error),
                None,
            )
            .await
        }
        Err(SecondStepError::Store(e)) => ctx.failure(e),
        Err(_) => Redirect::to("/signin/second-factor").into_response(),
    }
}

// ---- the two-step verification page ----------------------------------------

struct MethodRow {
    id: String,
    name: String,
    kind: String,
    kind_code: &'static str,
    is_default: bool,
    added: String,
    last_used: String,
}

struct KindOption {
    kind: &'static str,
    label: String,
    hint: String,
}

#[derive(Template)]
#[template(path = "two_factor.html")]
struct TwoFactorPage {
    c: Chrome,
    notice: Option<String>,
    error: Option<String>,
    enabled: bool,
    methods: Vec<MethodRow>,
    backup_remaining: String,
    backup_low: bool,
    kinds: Vec<KindOption>,
}

async fn two_factor_page(ctx: ConsoleUser) -> Response {
    render_two_factor(&ctx, StatusCode::OK, None, None).await
}

/// Back to the 2FA page, saying `done` (`two_factor.done_<done>`) once.
fn two_factor_done(ctx: &Ctx, done: &str) -> Response {
    ctx.flash_to(
        "/security/two-factor",
        &Flash::notice(&format!("two_factor.done_{done}")),
        &[],
    )
}

/// The kind offered first before a method is added (when two-step
/// verification is already on), so that adding one does not silently
/// change it.
async fn default_before(ctx: &ConsoleUser) -> Option<FactorKind> {
    let status = ctx.state.identity().two_factor(&ctx.user.account.id).await.ok()?;
    status.default_method.filter(|_| status.enabled)
}

/// After a method was added: the earlier default stays the default, and
/// the page says so (it offers to change it).
async fn method_added(ctx: &ConsoleUser, before: Option<FactorKind>) -> Response {
    let Some(kind) = before else {
        return two_factor_done(ctx, "method_added");
    };
    match ctx
        .state
        .identity()
        .set_default_method(&ctx.user.account.id, kind)
        .await
    {
        Ok(()) => ctx.flash_to(
            "/security/two-factor",
            &Flash::notice("flows.method_added_default_kept").arg("method", kind_label(ctx, kind)),
            &[],
        ),
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(_) => two_factor_done(ctx, "method_added"),
    }
}

/// New backup codes: shown once, on a page of their own that a reload
/// does not make again.
fn show_codes(ctx: &Ctx, codes: Vec<String>, first_time: bool) -> Response {
    let key = if first_time {
        "two_factor.now_on"
    } else {
        "flows.codes_new"
    };
    ctx.flash_to(
        "/security/two-factor/backup-codes",
        &Flash::notice(key).with_secret(Secret::BackupCodes { codes, first_time }),
        &[],
    )
}

async fn render_two_factor(
    ctx: &ConsoleUser,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let user = &ctx.user;
    let s = match ctx.state.identity().two_factor(&user.account.id).await {
        Ok(s) => s,
        Err(e) => return ctx.failure(e),
    };
    let t = ctx.t();
    let page = TwoFactorPage {
        c: ctx.chrome(t.t("two_factor.title")),
        notice,
        error,
        enabled: s.enabled,
        methods: s
            .methods
            .iter()
            .map(|m| MethodRow {
                id: m.id.to_string(),
                name: m.name.clone(),
                kind: kind_label(ctx, m.kind),
                kind_code: m.kind.as_str(),
                is_default: s.default_method == Some(m.kind),
                added: fmt::datetime(t, m.created_at),
                last_used: if m.last_used_at == 0 {
                    t.t("common.never").to_owned()
                } else {
                    fmt::datetime(t, m.last_used_at)
                },
            })
            .collect(),
        backup_remaining: t.tf(
            "backup_codes.remaining",
            &[("count", &t.number(s.backup_codes_remaining as u64))],
        ),
        backup_low: s.enabled && s.backup_codes_remaining <= 2,
        kinds: FactorKind::ALL
            .iter()
            .map(|k| KindOption {
                kind: k.as_str(),
                label: kind_label(ctx, *k),
                hint: t.tf(
                    &format!("method.{}_hint", k.as_str()),
                    &[("countries", &ctx.state.identity().sms_regions().join(", "))],
                ),
            })
            .collect(),
    };
    ctx.render(status, &page)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DefaultForm {
    method: String,
}

async fn set_default_method(ctx: ConsoleUser, Form(form): Form<DefaultForm>) -> Response {
    let user = &ctx.user;
    let Some(kind) = FactorKind::parse(&form.method) else {
        return (StatusCode::BAD_REQUEST, "unknown method").into_response();
    };
    match ctx.state.identity().set_default_method(&user.account.id, kind).await {
        Ok(()) => two_factor_done(&ctx, "default_set"),
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::identity(&e).text(ctx.t());
            render_two_factor(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, Some(error)).await
        }
    }
}

#[derive(Template)]
#[template(path = "totp_enrol.html")]
struct TotpEnrolPage {
    c: Chrome,
    id: String,
    name: String,
    qr_svg: String,
    secret: String,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct NameForm {
    pub(crate) name: String,
}

async fn begin_totp(ctx: ConsoleUser, Form(form): Form<NameForm>) -> Response {
    let user = &ctx.user;
    let name = if form.name.trim().is_empty() {
        ctx.t().t("method.totp").to_owned()
    } else {
        form.name
    };
    match ctx.state.identity().begin_totp(&user.account, &name).await {
        Ok(e) => render_enrolment(&ctx, StatusCode::OK, e, &name, None),
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::identity(&e).text(ctx.t());
            render_two_factor(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, Some(error)).await
        }
    }
}

fn render_enrolment(
    ctx: &Ctx,
    status: StatusCode,
    e: identity::TotpEnrollment,
    name: &str,
    error: Option<String>,
) -> Response {
    let Some(qr_svg) = crate::qr::svg(&e.otpauth_uri) else {
        return ctx.failure("QR code too long");
    };
    let secret = e
        .secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let page = TotpEnrolPage {
        c: ctx.chrome(ctx.t().t("two_factor.enrol_title")),
        id: e.id.into_string(),
        name: name.to_owned(),
        qr_svg,
        secret,
        error,
    };
    ctx.render(status, &page)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfirmForm {
    code: String,
    name: String,
}

async fn confirm_totp(ctx: ConsoleUser, Path(id): Path<FactorId>, Form(form): Form<ConfirmForm>) -> Response {
    let user = &ctx.user;
    let identity = ctx.state.identity();
    let before = default_before(&ctx).await;
    match identity
        .confirm_totp(&user.account.id, &id, &form.code, &user.client)
        .await
    {
        Ok(Some(codes)) => show_codes(&ctx, codes, true),
        Ok(None) => method_added(&ctx, before).await,
        Err(IdentityError::WrongCode) => match identity.pending_totp(&user.account, &id).await {
            Ok(Some(e)) => {
                let error = Some(ctx.t().t("two_factor.wrong_code").to_owned());
                render_enrolment(&ctx, StatusCode::UNPROCESSABLE_ENTITY, e, &form.name, error)
            }
            Ok(None) => expired(&ctx).await,
            Err(e) => ctx.failure(e),
        },
        Err(IdentityError::NotFound) => expired(&ctx).await,
        Err(e) => ctx.failure(e),
    }
}

async fn expired(ctx: &ConsoleUser) -> Response {
    let error = Some(ctx.t().t("two_factor.enrolment_expired").to_owned());
    render_two_factor(ctx, StatusCode::GONE, None, error).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordForm {
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RemoveForm {
    password: String,
    confirm: Option<String>,
}

async fn remove_method(ctx: ConsoleUser, Path(id): Path<FactorId>, Form(form): Form<RemoveForm>) -> Response {
    let user = &ctx.user;
    let identity = ctx.state.identity();
    if form.confirm.as_deref() != Some("yes") {
        let s = match identity.two_factor(&user.account.id).await {
            Ok(s) => s,
            Err(e) => return ctx.failure(e),
        };
        let Some(method) = s.methods.iter().find(|m| m.id == id) else {
            return two_factor_done(&ctx, "method_removed");
        };
        let t = ctx.t();
        let named = format!("{} ({})", method.name, kind_label(&ctx, method.kind));
        let (title, key) = if s.methods.len() == 1 {
            ("flows.two_factor_off_title", "flows.two_factor_off_text")
        } else {
            ("flows.remove_method_title", "flows.remove_method_text")
        };
        return ctx.confirm(Confirmation {
            title: t.t(title),
            text: t.tf(key, &[("method", &named)]),
            action: format!("/security/two-factor/methods/{id}/remove"),
            fields: Vec::new(),
            button: t.tf("flows.remove_method_button", &[("method", &named)]),
            cancel: "/security/two-factor".to_owned(),
            password: true,
        });
    }
    let password = Some(form.password.as_str()).filter(|p| !p.is_empty());
    match identity
        .remove_second_factor(&user.session, &user.account, &id, password, &user.client)
        .await
    {
        Ok(()) => {
            let off = identity.two_factor(&user.account.id).await.is_ok_and(|s| !s.enabled);
            two_factor_done(&ctx, if off { "two_factor_off" } else { "method_removed" })
        }
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::identity(&e).text(ctx.t());
            render_two_factor(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, Some(error)).await
        }
    }
}

#[derive(Template)]
#[template(path = "backup_codes.html")]
struct BackupCodesPage {
    c: Chrome,
    codes: Vec<String>,
    /// Whose codes, from which server, made when: on screen and on paper.
    printed_for: String,
}

/// The codes a redirect brought along, once; without them, the 2FA page.
async fn backup_codes_page(ctx: ConsoleUser) -> Response {
    let Some(Secret::BackupCodes { codes, .. }) = ctx.secret() else {
        return Redirect::to("/security/two-factor").into_response();
    };
    let t = ctx.t();
    let page = BackupCodesPage {
        c: ctx.chrome(t.t("backup_codes.title")),
        codes: codes.clone(),
        printed_for: t.tf(
            "flows.codes_for",
            &[
                ("email", ctx.user.account.email.as_str()),
                ("server", &ctx.base_url),
                ("date", &fmt::datetime(ctx.t(), ctx.state.identity().now())),
            ],
        ),
    };
    let mut response = ctx.render(StatusCode::OK, &page);
    // Shown once: never from a cache.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

async fn regenerate_backup_codes(ctx: ConsoleUser, Form(form): Form<PasswordForm>) -> Response {
    let user = &ctx.user;
    match ctx
        .state
        .identity()
        .regenerate_backup_codes(&user.session, &user.account, &form.password, &user.client)
        .await
    {
        Ok(codes) => show_codes(&ctx, codes, false),
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::identity(&e).text(ctx.t());
            render_two_factor(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, Some(error)).await
        }
    }
}

/// The codes the page just showed, as a text file. They come back from
/// the page's own form (the server keeps only digests); anything that is
/// not a backup code is refused.
async fn download_backup_codes(ctx: ConsoleUser, Form(fields): Form<Vec<(String, String)>>) -> Response {
    let user = &ctx.user;
    let codes: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "code")
        .map(|(_, v)| v.as_str())
        .collect();
    if codes.is_empty() || codes.len() > backup_code::COUNT || !codes.iter().all(|c| backup_code::well_formed(c)) {
        return (StatusCode::BAD_REQUEST, "not backup codes").into_response();
    }
    let t = ctx.t();
    let mut text = format!(
        "{}\r\n{}\r\n{}\r\n\r\n",
        t.tf("backup_codes.file_title", &[("email", user.account.email.as_str())]),
        t.tf(
            "flows.codes_for",
            &[
                ("email", user.account.email.as_str()),
                ("server", &ctx.base_url),
                ("date", &fmt::datetime(ctx.t(), ctx.state.identity().now())),
            ],
        ),
        t.t("backup_codes.file_hint")
    );
    for code in codes {
        text.push_str(code);
        text.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"cloudkeep-backup-codes.txt\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

// ---- the authenticator app ------------------------------------------------------

#[derive(Template)]
#[template(path = "authenticator_link.html")]
struct AuthenticatorLinkPage {
    c: Chrome,
    id: String,
    link: String,
    qr_svg: String,
    notice: Option<String>,
}

fn render_link_page(ctx: &Ctx, id: String, link: String, notice: Option<String>) -> Response {
    let Some(qr_svg) = crate::qr::svg(&link) else {
        return ctx.failure("QR code too long");
    };
    let page = AuthenticatorLinkPage {
        c: ctx.chrome(ctx.t().t("authenticator.link_title")),
        id,
        link,
        qr_svg,
        notice,
    };
    let mut response = ctx.render(StatusCode::OK, &page);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LinkedForm {
    link: String,
}

/// "I have linked the app": the backup codes when linking turned two-step
/// verification on, else back to the 2FA page; the same page again while
/// the app has not linked.
async fn authenticator_linked(
    ctx: ConsoleUser,
    headers: axum::http::HeaderMap,
    Path(id): Path<FactorId>,
    Form(form): Form<LinkedForm>,
) -> Response {
    let user = &ctx.user;
    match ctx.state.identity().linked_device(&user.account, &id).await {
        Ok((true, Some(codes))) => show_codes(&ctx, codes, true),
        Ok((true, None)) => two_factor_done(&ctx, "method_added"),
        Ok((false, _)) => {
            // Only a link of this server is shown again.
            let ours = format!("{}/authenticator/", ctx.state.config().base_url(&headers));
            if !form.link.starts_with(&ours) || form.link.len() > ours.len() + 100 {
                return Redirect::to("/security/two-factor").into_response();
            }
            let notice = ctx.t().t("authenticator.not_linked_yet").to_owned();
            render_link_page(&ctx, id.into_string(), form.link, Some(notice))
        }
        Err(e) => ctx.failure(e),
    }
}

async fn begin_authenticator(ctx: ConsoleUser, headers: axum::http::HeaderMap, Form(form): Form<NameForm>) -> Response {
    let user = &ctx.user;
    let name = if form.name.trim().is_empty() {
        ctx.t().t("method.authenticator").to_owned()
    } else {
        form.name
    };
    match ctx.state.identity().begin_authenticator(&user.account, &name).await {
        Ok(created) => {
            let link =
                crate::api_two_factor::authenticator_link(&ctx.state.config().base_url(&headers), &created.token);
            render_link_page(&ctx, created.id.into_string(), link, None)
        }
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::identity(&e).text(ctx.t());
            render_two_factor(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, Some(error)).await
        }
    }
}

// ---- security keys -------------------------------------------------------------

#[derive(Template)]
#[template(path = "security_key_enrol.html")]
struct SecurityKeyEnrolPage {
    c: Chrome,
    id: String,
    options: String,
    error: Option<String>,
}

async fn begin_security_key(ctx: ConsoleUser, Form(form): Form<NameForm>) -> Response {
    let user = &ctx.user;
    let name = if form.name.trim().is_empty() {
        ctx.t().t("method.security_key").to_owned()
    } else {
        form.name
    };
    match ctx.state.identity().begin_security_key(&user.account, &name).await {
        Ok(challenge) => {
            let page = SecurityKeyEnrolPage {
                c: ctx.chrome(ctx.t().t("security_key.enrol_title")),
                id: challenge.id.into_string(),
                options: challenge.options.to_string(),
                error: None,
            };
            ctx.render(StatusCode::OK, &page)
        }
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::identity(&e).text(ctx.t());
            render_two_factor(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, Some(error)).await
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CredentialForm {
    credential: String,
}

async fn finish_security_key(ctx: ConsoleUser, Path(id): Path<FactorId>, Form(form): Form<CredentialForm>) -> Response {
    let user = &ctx.user;
    let before = default_before(&ctx).await;
    let credential = serde_json::from_str(&form.credential).unwrap_or_default();
    match ctx
        .state
        .identity()
        .finish_security_key(&user.account.id, &id, credential, &user.client)
        .await
    {
        Ok(Some(codes)) => show_codes(&ctx, codes, true),
        Ok(None) => method_added(&ctx, before).await,
        Err(IdentityError::NotFound) => expired(&ctx).await,
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::identity(&e).text(ctx.t());
            render_two_factor(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, Some(error)).await
        }
    }
}

// ---- SMS ---------------------------------------------------------------------

#[derive(Template)]
#[template(path = "sms_enrol.html")]
struct SmsEnrolPage {
    c: Chrome,
    id: String,
    sent_to: String,
    error: Option<String>,
}

fn render_sms_enrolment(ctx: &Ctx, status: StatusCode, id: String, phone: &str, error: Option<String>) -> Response {
    let page = SmsEnrolPage {
        c: ctx.chrome(ctx.t().t("sms.enrol_title")),
        id,
        sent_to: ctx.t().tf("sms.sent", &[("phone", phone)]),
        error,
    };
    ctx.render(status, &page)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PhoneForm {
    phone: String,
}

async fn begin_sms(ctx: ConsoleUser, Form(form): Form<PhoneForm>) -> Response {
    let user = &ctx.user;
    match ctx
        .state
        .identity()
        .begin_sms(&user.account, &form.phone, ctx.lang_code())
        .await
    {
        Ok(e) => render_sms_enrolment(&ctx, StatusCode::OK, e.id.into_string(), &e.phone, None),
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::identity(&e).text(ctx.t());
            render_two_factor(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, Some(error)).await
        }
    }
}

async fn confirm_sms(ctx: ConsoleUser, Path(id): Path<FactorId>, Form(form): Form<ConfirmForm>) -> Response {
    let user = &ctx.user;
    let identity = ctx.state.identity();
    let before = default_before(&ctx).await;
    match identity
        .confirm_sms(&user.account.id, &id, &form.code, &user.client)
        .await
    {
        Ok(Some(codes)) => show_codes(&ctx, codes, true),
        Ok(None) => method_added(&ctx, before).await,
        Err(IdentityError::WrongCode) => {
            let phone = pending_phone(&ctx, &id).await;
            let error = Some(ctx.t().t("sms.wrong_code").to_owned());
            render_sms_enrolment(&ctx, StatusCode::UNPROCESSABLE_ENTITY, id.into_string(), &phone, error)
        }
        Err(IdentityError::NotFound) => expired(&ctx).await,
        Err(e) => ctx.failure(e),
    }
}

/// The masked number of a pending SMS enrolment, for showing it again.
async fn pending_phone(ctx: &ConsoleUser, id: &FactorId) -> String {
    let user = &ctx.user;
    ctx.state
        .identity()
        .pending_method_name(&user.account.id, id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

async fn resend_sms(ctx: ConsoleUser, Path(id): Path<FactorId>) -> Response {
    let user = &ctx.user;
    match ctx
        .state
        .identity()
        .resend_sms_enrolment(&user.account, &id, ctx.lang_code())
        .await
    {
        Ok(phone) => render_sms_enrolment(&ctx, StatusCode::OK, id.into_string(), &phone, None),
        Err(IdentityError::NotFound) => expired(&ctx).await,
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let phone = pending_phone(&ctx, &id).await;
            let error = Some(Refusal::identity(&e).text(ctx.t()));
            render_sms_enrolment(&ctx, StatusCode::TOO_MANY_REQUESTS, id.into_string(), &phone, error)
        }
    }
}
