//! The console: server-rendered pages that work without JavaScript.
//! Setup, sign in, home, and security (password, sessions, activity).
//!
//! Every page gets the same chrome (language switcher, navigation, sign
//! out) and a CSRF token for its forms; the check itself is in `guard`.

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use identity::{IdentityError, Purpose, SessionStage, SetupRequest, SignIn, SignInError};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{self, Authed, DEVICE_COOKIE, sign_in_cookies, sign_out_cookie};
use crate::cookies::{self, Lifetime};
use crate::flash::{FLASH_COOKIE, Flash, Secret};
use crate::fmt;
use crate::guard::{self, CSRF_COOKIE};
use crate::i18n::{Catalog, Lang};
use crate::refusal::Refusal;

pub const LANG_COOKIE: &str = "ck_lang";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/setup/{token}", get(setup_form).post(setup_submit))
        .route("/signin", get(signin_form).post(signin_submit))
        .route("/signout", post(signout))
        .route("/security", get(security))
        .route("/security/password", post(change_password))
        .route("/security/notifications", post(save_notifications))
        .route("/security/sessions/{id}/revoke", post(revoke_session))
        .route("/language", post(set_language))
        .route("/static/console.css", get(stylesheet))
        .route("/static/print.js", get(print_script))
        .route("/static/webauthn.js", get(webauthn_script))
        .route("/static/push.js", get(push_script))
        .route("/static/favicon.svg", get(favicon))
        .route("/static/manifest.webmanifest", get(manifest))
        .route("/console/style", get(crate::console_style::style_page))
        .merge(crate::console_two_factor::routes())
        .merge(crate::console_app_passwords::routes())
        .merge(crate::console_org::routes())
        .merge(crate::console_drive::routes())
        .merge(crate::console_import::routes())
        .merge(crate::console_drive_access::routes())
        .method_not_allowed_fallback(form_address)
}

/// A `GET` of an address only forms post to (a language switch or a
/// reload on a page a form answered): the page the form is on.
async fn form_address(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        Redirect::to(&crate::flash::page_of(uri.path())).into_response()
    } else {
        StatusCode::METHOD_NOT_ALLOWED.into_response()
    }
}

// ---- request context --------------------------------------------------------

/// What every console page needs to know about the request.
pub struct Ctx {
    pub(crate) state: AppState,
    lang: Lang,
    /// The signed-in member (handlers that need one take [`ConsoleUser`]).
    pub(crate) signed_in: Option<Authed>,
    /// A session that passed the password and awaits its second factor
    /// ([`ConsolePending`]).
    pub(crate) half_signed_in: Option<Authed>,
    csrf: String,
    /// A pre-sign-in CSRF cookie to set, when the browser had none.
    new_binding: Option<String>,
    here: String,
    /// `scheme://host[:port]` people reach the console at.
    pub(crate) base_url: String,
    pub(crate) client: identity::ClientInfo,
    pub(crate) device: Option<String>,
    /// An organization requires two-step verification the member lacks.
    pub(crate) requirement: Option<identity::Requirement>,
    /// That organization, when the member is external there and may leave
    /// it instead of enrolling.
    leave_org: Option<String>,
    /// The one-time message this page shows (see [`crate::flash`]).
    pub(crate) flash: Option<Flash>,
    /// The request carried a flash cookie: the page deletes it.
    had_flash: bool,
}

/// What a console path is for, for [`identity::Access::allows`]; the
/// static files count as part of enrolling (its pages need them).
pub(crate) fn purpose(path: &str) -> Purpose {
    if path.starts_with("/security/two-factor") || path.starts_with("/static/") {
        Purpose::Enrol
    } else if path == "/signout" {
        Purpose::SignOut
    } else if path == "/language" {
        Purpose::Language
    } else if path.starts_with("/orgs/") && path.ends_with("/leave") {
        Purpose::LeaveOrganization
    } else {
        Purpose::Other
    }
}

fn lang_of(headers: &HeaderMap) -> Lang {
    cookies::get(headers, LANG_COOKIE)
        .and_then(Lang::from_code)
        .or_else(|| {
            let accept = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
            Lang::negotiate(accept)
        })
        .unwrap_or(Lang::En)
}

impl Ctx {
    pub(crate) fn t(&self) -> &'static Catalog {
        self.lang.catalog()
    }

    pub(crate) fn lang_code(&self) -> &'static str {
        self.lang.code()
    }

    /// Where a page that needs a signed-in member sends everyone else: the
    /// second step when the password was given, else sign-in.
    pub(crate) fn to_sign_in(&self) -> Response {
        let to = if self.half_signed_in.is_some() {
            "/signin/second-factor"
        } else {
            "/signin"
        };
        Redirect::to(to).into_response()
    }

    /// A redirect to `to` that shows `flash` there once, setting `cookies`
    /// too.
    pub(crate) fn flash_to(&self, to: &str, flash: &Flash, cookies: &[String]) -> Response {
        let mut all = vec![flash.cookie(&self.state, &self.csrf)];
        all.extend_from_slice(cookies);
        see_other(to, &all)
    }

    /// What this page shows once besides its message, if anything.
    pub(crate) fn secret(&self) -> Option<&Secret> {
        self.flash.as_ref().and_then(|f| f.secret.as_ref())
    }

    pub(crate) fn chrome(&self, title: &str) -> Chrome {
        Chrome {
            flash: self.flash.as_ref().map(|f| FlashView {
                text: f.text(self.t()),
                error: f.error,
            }),
            t: self.t(),
            lang: self.lang.code(),
            csrf: self.csrf.clone(),
            user_name: self.signed_in.as_ref().map(|u| u.account.name.clone()),
            leave_org: self.leave_org.clone(),
            requirement: self.requirement.as_ref().map(|r| {
                let key = if r.blocked {
                    "org.required_now"
                } else {
                    "org.required_from"
                };
                self.t().tf(
                    key,
                    &[
                        ("org", &r.org_name),
                        ("by", &r.by),
                        ("deadline", &fmt::datetime(self.t(), r.deadline)),
                    ],
                )
            }),
            here: self.here.clone(),
            title: title.to_owned(),
            langs: Lang::ALL
                .into_iter()
                .map(|l| LangOption {
                    code: l.code(),
                    name: l.native_name(),
                    selected: l == self.lang,
                })
                .collect(),
        }
    }

    pub(crate) fn render(&self, status: StatusCode, page: &impl Template) -> Response {
        let mut response = match page.render() {
            Ok(html) => (status, axum::response::Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "page failed to render").into_response()
            }
        };
        if self.had_flash
            && let Ok(value) = Flash::clear(&self.state).parse()
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        if let Some(binding) = &self.new_binding {
            let cookie = cookies::set(
                CSRF_COOKIE,
                binding,
                Lifetime::BrowserSession,
                self.state.config().secure_cookies(),
            );
            if let Ok(value) = cookie.parse() {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        response
    }

    pub(crate) fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        let page = MessagePage {
            c: self.chrome(title),
            text: text.to_owned(),
            signed_in: self.signed_in.is_some(),
        };
        self.render(status, &page)
    }

    /// The confirmation page for `q` (see [`Confirmation`]).
    pub(crate) fn confirm(&self, q: Confirmation<'_>) -> Response {
        let page = ConfirmPage {
            c: self.chrome(q.title),
            text: q.text,
            action: q.action,
            fields: q.fields,
            button: q.button,
            cancel: q.cancel,
            password_label: q.password.then(|| self.t().t("two_factor.remove_password").to_owned()),
        };
        let mut response = self.render(StatusCode::OK, &page);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
        response
    }

    pub(crate) fn failure(&self, detail: impl std::fmt::Display) -> Response {
        tracing::error!(error = %detail, "console request failed");
        let t = self.t();
        self.message(
            StatusCode::INTERNAL_SERVER_ERROR,
            t.t("error.title"),
            t.t("error.internal"),
        )
    }
}

fn context_from(state: &AppState, parts: &Parts, session: Option<Authed>) -> Ctx {
    let (signed_in, half_signed_in) = match session {
        Some(a) if a.session.stage == SessionStage::SignedIn => (Some(a), None),
        Some(a) => (None, Some(a)),
        None => (None, None),
    };
    let (csrf, new_binding) = match guard::binding(state, &parts.headers) {
        Some(b) => (guard::token_for(state, b), None),
        None => {
            let fresh = identity::random_token(32);
            (guard::token_for(state, &fresh), Some(fresh))
        }
    };
    let sealed = cookies::get(&parts.headers, FLASH_COOKIE).filter(|v| !v.is_empty());
    Ctx {
        flash: sealed.and_then(|s| Flash::read(state, s, &csrf)),
        had_flash: sealed.is_some(),
        state: state.clone(),
        lang: lang_of(&parts.headers),
        signed_in,
        half_signed_in,
        csrf,
        new_binding,
        here: parts.uri.path().to_owned(),
        base_url: state.config().base_url(&parts.headers),
        client: auth::client_info(state, parts),
        device: cookies::get(&parts.headers, DEVICE_COOKIE).map(str::to_owned),
        requirement: None,
        leave_org: None,
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let mut ctx = match auth::any_session(state, parts).await {
            Ok(session) => context_from(state, parts, session),
            Err(e) => return Err(context_from(state, parts, None).failure(e)),
        };
        if let Some(user) = &ctx.signed_in {
            ctx.requirement = user.access.requirement().cloned();
            if let Some(r) = &ctx.requirement {
                let memberships = match state.identity().memberships(&user.account.id).await {
                    Ok(m) => m,
                    Err(e) => return Err(ctx.failure(e)),
                };
                ctx.leave_org = memberships
                    .iter()
                    .find(|m| m.org_id == r.org_id && m.role.may_leave())
                    .map(|m| m.org_id.to_string());
            }
            if !user.access.allows(purpose(parts.uri.path())) {
                return Err(Redirect::to("/security/two-factor").into_response());
            }
        }
        Ok(ctx)
    }
}

/// A console request from a signed-in member: the handler gets the member
/// with the page's context, and everyone else is sent to sign in (or to
/// their second step) before it runs. Reads as the [`Ctx`] it carries.
pub struct ConsoleUser {
    ctx: Ctx,
    pub(crate) user: Authed,
}

impl std::ops::Deref for ConsoleUser {
    type Target = Ctx;

    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ctx = Ctx::from_request_parts(parts, state).await?;
        match ctx.signed_in.clone() {
            Some(user) => Ok(Self { ctx, user }),
            None => Err(ctx.to_sign_in()),
        }
    }
}

/// A console request from a session waiting for its second step; a
/// signed-in member is sent home, anyone else to sign in.
pub struct ConsolePending {
    ctx: Ctx,
    pub(crate) pending: Authed,
}

impl std::ops::Deref for ConsolePending {
    type Target = Ctx;

    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl FromRequestParts<AppState> for ConsolePending {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ctx = Ctx::from_request_parts(parts, state).await?;
        match ctx.half_signed_in.clone() {
            Some(pending) => Ok(Self { ctx, pending }),
            None if ctx.signed_in.is_some() => Err(Redirect::to("/").into_response()),
            None => Err(ctx.to_sign_in()),
        }
    }
}

// ---- templates -------------------------------------------------------------

pub struct LangOption {
    pub(crate) code: &'static str,
    pub(crate) name: &'static str,
    pub(crate) selected: bool,
}

/// A one-time message, as the page shows it.
pub struct FlashView {
    pub(crate) text: String,
    pub(crate) error: bool,
}

/// The parts of the page around the content.
pub struct Chrome {
    pub(crate) flash: Option<FlashView>,
    pub(crate) t: &'static Catalog,
    pub(crate) lang: &'static str,
    pub(crate) csrf: String,
    pub(crate) user_name: Option<String>,
    /// Why (or from when) an organization requires two-step verification.
    pub(crate) requirement: Option<String>,
    /// An organization the member may leave instead of enrolling.
    pub(crate) leave_org: Option<String>,
    pub(crate) here: String,
    pub(crate) title: String,
    pub(crate) langs: Vec<LangOption>,
}

/// One entry of the main navigation.
pub struct NavItem {
    pub(crate) href: &'static str,
    pub(crate) label: &'static str,
    /// `aria-current`: "page" on the entry's own page, "true" on the pages
    /// under it (a drive's files under Drives).
    pub(crate) current: Option<&'static str>,
}

impl Chrome {
    /// The main navigation, with the entry of the current page marked.
    pub(crate) fn nav(&self) -> Vec<NavItem> {
        const ENTRIES: [(&str, &str); 5] = [
            ("/", "nav.home"),
            ("/drives", "nav.drives"),
            ("/security", "nav.security"),
            ("/security/two-factor", "nav.two_factor"),
            ("/security/app-passwords", "nav.app_passwords"),
        ];
        // The entry of this very page, else the longest one the page is under.
        let current = ENTRIES
            .iter()
            .find(|(href, _)| self.here == *href)
            .map(|(href, _)| (*href, "page"))
            .or_else(|| {
                ENTRIES
                    .iter()
                    .filter(|(href, _)| *href != "/" && self.here.starts_with(&format!("{href}/")))
                    .max_by_key(|(href, _)| href.len())
                    .map(|(href, _)| (*href, "true"))
            });
        ENTRIES
            .into_iter()
            .map(|(href, key)| NavItem {
                href,
                label: self.t.t(key),
                current: current.filter(|(at, _)| *at == href).map(|(_, how)| how),
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    c: Chrome,
    text: String,
    signed_in: bool,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    c: Chrome,
    text: String,
    action: String,
    fields: Vec<(String, String)>,
    button: String,
    cancel: String,
    password_label: Option<String>,
}

/// A question before a destructive or mass action: what will happen, to
/// whom, and the button that does it. The page posts the same form again
/// with `confirm=yes`; it works without JavaScript.
pub(crate) struct Confirmation<'a> {
    pub title: &'a str,
    pub text: String,
    /// Where the confirmed form goes.
    pub action: String,
    /// The form's own fields, sent along again.
    pub fields: Vec<(String, String)>,
    pub button: String,
    /// Where "Cancel" leads.
    pub cancel: String,
    /// Also asks for the account password (a field named `password`).
    pub password: bool,
}

/// The `confirm` field of a form that asks first.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct Confirmed {
    pub(crate) confirm: Option<String>,
}

impl Confirmed {
    pub(crate) fn yes(&self) -> bool {
        self.confirm.as_deref() == Some("yes")
    }
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    c: Chrome,
    token: String,
    error: Option<String>,
    organization: String,
    name: String,
    email: String,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    c: Chrome,
    error: Option<String>,
    email: String,
    remember: bool,
}

struct OrgRow {
    id: String,
    name: String,
    role: String,
    manages: bool,
    may_leave: bool,
}

/// The Home page's summary of the account's security.
struct SecurityCard {
    two_factor_on: bool,
    /// Each method, named with its kind.
    methods: Vec<String>,
    backup_left: String,
    /// The latest sign-ins, newest first, one line each.
    sign_ins: Vec<String>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    c: Chrome,
    security: SecurityCard,
    welcome: String,
    email: String,
    sync_user_id: String,
    organizations: Vec<OrgRow>,
}

struct SessionRow {
    id: String,
    browser: String,
    ip: String,
    signed_in_at: String,
    last_seen: String,
    current: bool,
}

struct EventRow {
    at: String,
    what: String,
    ip: String,
    browser: String,
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage {
    c: Chrome,
    notice: Option<String>,
    error: Option<String>,
    sessions: Vec<SessionRow>,
    events: Vec<EventRow>,
    older: Option<String>,
    newest: bool,
    emails: Vec<EmailChoice>,
}

/// One kind of security email on the security page.
struct EmailChoice {
    kind: &'static str,
    label: String,
    enabled: bool,
}

// ---- handlers --------------------------------------------------------------

pub(crate) fn see_other(to: &str, cookies: &[String]) -> Response {
    let mut response = Redirect::to(to).into_response();
    for cookie in cookies {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A file of the console's own, compiled into the binary.
fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

async fn print_script() -> Response {
    static_file(JAVASCRIPT, include_str!("../templates/print.js"))
}

async fn push_script() -> Response {
    static_file(JAVASCRIPT, include_str!("../templates/push.js"))
}

async fn webauthn_script() -> Response {
    static_file(JAVASCRIPT, include_str!("../templates/webauthn.js"))
}

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", include_str!("../templates/console.css"))
}

async fn favicon() -> Response {
    static_file("image/svg+xml", include_str!("../templates/favicon.svg"))
}

async fn manifest() -> Response {
    static_file(
        "application/manifest+json",
        include_str!("../templates/manifest.webmanifest"),
    )
}

async fn home(ctx: Ctx) -> Response {
    let Some(user) = &ctx.signed_in else {
        return match ctx.state.identity().needs_setup().await {
            Ok(true) => {
                let t = ctx.t();
                ctx.message(StatusCode::OK, t.t("setup.pending_title"), t.t("setup.pending"))
            }
            Ok(false) => ctx.to_sign_in(),
            Err(e) => ctx.failure(e),
        };
    };
    let identity = ctx.state.identity();
    let (memberships, two_factor, page) = match (
        identity.memberships(&user.account.id).await,
        identity.two_factor(&user.account.id).await,
        identity.events(&user.account.id, None, 50).await,
    ) {
        (Ok(m), Ok(s), Ok(p)) => (m, s, p),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return ctx.failure(e),
    };
    let t = ctx.t();
    let page = HomePage {
        security: SecurityCard {
            two_factor_on: two_factor.enabled,
            methods: two_factor
                .methods
                .iter()
                .map(|m| format!("{} ({})", m.name, t.t(&format!("method.{}", m.kind.as_str()))))
                .collect(),
            backup_left: t.tf(
                "backup_codes.remaining",
                &[("count", &two_factor.backup_codes_remaining.to_string())],
            ),
            sign_ins: page
                .events
                .into_iter()
                .filter(|e| e.kind == identity::EventKind::SignIn)
                .take(3)
                .map(|e| {
                    t.tf(
                        "flows.sign_in_line",
                        &[
                            ("at", &fmt::datetime(t, e.at)),
                            ("browser", &fmt::browser(&e.user_agent)),
                            ("ip", &e.ip),
                        ],
                    )
                })
                .collect(),
        },
        c: ctx.chrome(t.t("home.title")),
        welcome: t.tf("home.welcome", &[("name", &user.account.name)]),
        email: user.account.email.to_string(),
        sync_user_id: user.account.sync_user_id.to_string(),
        organizations: memberships
            .into_iter()
            .map(|m| OrgRow {
                id: m.org_id.into_string(),
                manages: m.role.manages_organization(),
                may_leave: m.role.may_leave(),
                name: m.org_name,
                role: t.t(&format!("role.{}", m.role.as_str())).to_owned(),
            })
            .collect(),
    };
    ctx.render(StatusCode::OK, &page)
}

// -- setup

#[derive(Deserialize, Default)]
#[serde(default)]
struct SetupForm {
    organization: String,
    name: String,
    email: String,
    password: String,
    password_confirm: String,
}

fn setup_link_gone(ctx: &Ctx) -> Response {
    let t = ctx.t();
    ctx.message(StatusCode::GONE, t.t("setup.invalid_title"), t.t("setup.invalid"))
}

async fn setup_form(ctx: Ctx, Path(token): Path<String>) -> Response {
    match ctx.state.identity().setup_link_valid(&token).await {
        Ok(true) => {}
        Ok(false) => return setup_link_gone(&ctx),
        Err(e) => return ctx.failure(e),
    }
    let page = SetupPage {
        c: ctx.chrome(ctx.t().t("setup.title")),
        token,
        error: None,
        organization: String::new(),
        name: String::new(),
        email: String::new(),
    };
    ctx.render(StatusCode::OK, &page)
}

async fn setup_submit(ctx: Ctx, Path(token): Path<String>, Form(form): Form<SetupForm>) -> Response {
    let t = ctx.t();
    let error = if form.password != form.password_confirm {
        t.t("password.mismatch").to_owned()
    } else {
        let request = SetupRequest {
            organization: form.organization.clone(),
            name: form.name.clone(),
            email: form.email.clone(),
            password: form.password.clone(),
            lang: ctx.lang_code().to_owned(),
        };
        match ctx
            .state
            .identity()
            .complete_setup(&token, request, ctx.client.clone())
            .await
        {
            Ok(signed) => return see_other("/", &sign_in_cookies(&ctx.state, &signed)),
            Err(IdentityError::SetupUnavailable) => return setup_link_gone(&ctx),
            Err(IdentityError::Store(e)) => return ctx.failure(e),
            Err(e) => Refusal::identity(&e).text(t),
        }
    };
    let page = SetupPage {
        c: ctx.chrome(t.t("setup.title")),
        token,
        error: Some(error),
        organization: form.organization,
        name: form.name,
        email: form.email,
    };
    ctx.render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

// -- sign in and out

#[derive(Deserialize, Default)]
#[serde(default)]
struct SignInForm {
    email: String,
    password: String,
    remember: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SignInQuery {
    restart: Option<String>,
}

async fn signin_form(ctx: Ctx, Query(q): Query<SignInQuery>) -> Response {
    if ctx.signed_in.is_some() {
        return Redirect::to("/").into_response();
    }
    let email = ctx.flash.as_ref().and_then(|f| f.email.clone()).unwrap_or_default();
    let page = SignInPage {
        c: ctx.chrome(ctx.t().t("signin.title")),
        error: q.restart.map(|_| ctx.t().t("second_step.restart").to_owned()),
        email,
        remember: false,
    };
    ctx.render(StatusCode::OK, &page)
}

async fn signin_submit(ctx: Ctx, Form(form): Form<SignInForm>) -> Response {
    let t = ctx.t();
    let attempt = SignIn {
        email: form.email.clone(),
        password: form.password,
        remember: form.remember.is_some(),
        client: ctx.client.clone(),
        device: ctx.device.clone(),
    };
    let metrics = ctx.state.metrics();
    let result = ctx.state.identity().sign_in(attempt).await;
    // Security emails follow the language the member reads the console in.
    if let Ok(signed) = &result
        && signed.account.lang != ctx.lang_code()
        && let Err(e) = ctx
            .state
            .identity()
            .set_language(&signed.account.id, ctx.lang_code())
            .await
    {
        return ctx.failure(e);
    }
    let mut retry_after = None;
    let (status, error) = match result {
        Ok(signed) if signed.second_factor.is_some() => {
            metrics.sign_in("second_factor_required");
            return see_other("/signin/second-factor", &sign_in_cookies(&ctx.state, &signed));
        }
        Ok(signed) => {
            metrics.sign_in("signed_in");
            return see_other("/", &sign_in_cookies(&ctx.state, &signed));
        }
        Err(SignInError::InvalidCredentials) => {
            metrics.sign_in("invalid_credentials");
            (StatusCode::UNAUTHORIZED, t.t("signin.invalid").to_owned())
        }
        Err(SignInError::TooManyAttempts { retry_after: wait }) => {
            metrics.sign_in("too_many_attempts");
            retry_after = Some((wait / 1000).max(1));
            (StatusCode::TOO_MANY_REQUESTS, Refusal::too_many_attempts(wait).text(t))
        }
        Err(SignInError::Store(e)) => return ctx.failure(e),
    };
    let page = SignInPage {
        c: ctx.chrome(t.t("signin.title")),
        error: Some(error),
        email: form.email,
        remember: form.remember.is_some(),
    };
    let mut response = ctx.render(status, &page);
    // As the API does: scripts and proxies know when to come back.
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
    }
    response
}

async fn signout(ctx: Ctx) -> Response {
    if let Some(user) = ctx.signed_in.as_ref().or(ctx.half_signed_in.as_ref())
        && let Err(e) = ctx.state.identity().sign_out(&user.session, &user.client).await
    {
        return ctx.failure(e);
    }
    ctx.flash_to(
        "/signin",
        &Flash::notice("flows.signed_out"),
        &[sign_out_cookie(&ctx.state)],
    )
}

// -- security

#[derive(Deserialize, Default)]
#[serde(default)]
struct SecurityQuery {
    before: Option<String>,
}

async fn security(ctx: ConsoleUser, Query(q): Query<SecurityQuery>) -> Response {
    security_page(&ctx, StatusCode::OK, None, None, q.before.as_deref()).await
}

async fn security_page(
    ctx: &ConsoleUser,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    before: Option<&str>,
) -> Response {
    let user = &ctx.user;
    let identity = ctx.state.identity();
    let (sessions, page, off) = match (
        identity.sessions(&user.account.id).await,
        identity.events(&user.account.id, before, 25).await,
        identity.notice_opt_outs(&user.account.id).await,
    ) {
        (Ok(s), Ok(p), Ok(o)) => (s, p, o),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return ctx.failure(e),
    };
    let t = ctx.t();
    let page = SecurityPage {
        c: ctx.chrome(t.t("security.title")),
        notice,
        error,
        sessions: sessions
            .into_iter()
            .map(|s| SessionRow {
                current: s.id == user.session.id,
                browser: fmt::browser(&s.user_agent),
                signed_in_at: fmt::datetime(t, s.created_at),
                last_seen: fmt::datetime(t, s.last_seen_at),
                id: s.id.into_string(),
                ip: s.ip,
            })
            .collect(),
        events: page
            .events
            .into_iter()
            .map(|e| EventRow {
                at: fmt::datetime(t, e.at),
                what: crate::i18n::event_text(t, e.kind.as_str(), &e.detail),
                ip: e.ip,
                browser: fmt::browser(&e.user_agent),
            })
            .collect(),
        older: page.next,
        newest: before.is_none(),
        emails: identity::NoticeKind::OPTIONAL
            .into_iter()
            .map(|kind| EmailChoice {
                kind: kind.as_str(),
                label: t.t(&format!("notifications.{}", kind.as_str())).to_owned(),
                enabled: !off.contains(&kind),
            })
            .collect(),
    };
    ctx.render(status, &page)
}

/// The security page's email choices: the checked kinds stay on.
async fn save_notifications(ctx: ConsoleUser, Form(fields): Form<Vec<(String, String)>>) -> Response {
    let user = &ctx.user;
    let wanted: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "email")
        .map(|(_, v)| v.as_str())
        .collect();
    for kind in identity::NoticeKind::OPTIONAL {
        let on = wanted.contains(&kind.as_str());
        if let Err(e) = ctx.state.identity().set_notice_wanted(&user.account.id, kind, on).await {
            return ctx.failure(e);
        }
    }
    ctx.flash_to(
        "/security#emails-heading",
        &Flash::notice("security.done_emails_saved"),
        &[],
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordForm {
    current_password: String,
    new_password: String,
    new_password_confirm: String,
}

async fn change_password(ctx: ConsoleUser, Form(form): Form<PasswordForm>) -> Response {
    let user = &ctx.user;
    let t = ctx.t();
    if form.new_password != form.new_password_confirm {
        let error = Some(t.t("password.mismatch").to_owned());
        return security_page(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, error, None).await;
    }
    let changed = ctx
        .state
        .identity()
        .change_password(&user.session, &form.current_password, &form.new_password, &user.client)
        .await;
    match changed {
        Ok(()) => ctx.flash_to("/security", &Flash::notice("security.done_password_changed"), &[]),
        Err(IdentityError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Some(Refusal::identity(&e).text(t));
            security_page(&ctx, StatusCode::UNPROCESSABLE_ENTITY, None, error, None).await
        }
    }
}

async fn revoke_session(ctx: ConsoleUser, Path(id): Path<identity::SessionId>) -> Response {
    let user = &ctx.user;
    match ctx
        .state
        .identity()
        .revoke_session(&user.account.id, &id, &user.client)
        .await
    {
        Ok(_) if id == user.session.id => see_other("/signin", &[sign_out_cookie(&ctx.state)]),
        Ok(_) => ctx.flash_to("/security", &Flash::notice("security.done_session_revoked"), &[]),
        Err(e) => ctx.failure(e),
    }
}

// -- language

#[derive(Deserialize, Default)]
#[serde(default)]
struct LanguageForm {
    lang: String,
    back: String,
}

async fn set_language(ctx: Ctx, Form(form): Form<LanguageForm>) -> Response {
    let state = &ctx.state;
    let lang = Lang::from_code(&form.lang).unwrap_or(Lang::En);
    let signed_in = ctx.signed_in.as_ref().or(ctx.half_signed_in.as_ref());
    if let Some(member) = signed_in
        && let Err(e) = state.identity().set_language(&member.account.id, lang.code()).await
    {
        return ctx.failure(e);
    }
    // Only a path on this site: never an open redirect.
    let safe = form.back.starts_with('/') && !form.back.starts_with("//") && !form.back.contains('\\');
    let back = if safe { form.back.as_str() } else { "/" };
    let cookie = cookies::set(
        LANG_COOKIE,
        lang.code(),
        Lifetime::Seconds(400 * 86_400),
        state.config().secure_cookies(),
    );
    see_other(back, &[cookie])
}

// ---- pages used from elsewhere ---------------------------------------------

pub async fn not_found(State(state): State<AppState>, parts: Parts) -> Response {
    if parts.uri.path().starts_with("/api/") {
        return crate::error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route").into_response();
    }
    let ctx = context_from(&state, &parts, None);
    let t = ctx.t();
    ctx.message(StatusCode::NOT_FOUND, t.t("notfound.title"), t.t("notfound.text"))
}

/// The answer to a form whose CSRF token is missing or stale.
pub fn form_expired(state: &AppState, headers: &HeaderMap) -> Response {
    let mut request = axum::http::Request::new(());
    *request.headers_mut() = headers.clone();
    let (parts, ()) = request.into_parts();
    let ctx = context_from(state, &parts, None);
    let t = ctx.t();
    ctx.message(StatusCode::FORBIDDEN, t.t("csrf.title"), t.t("csrf.text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_keys_exist_in_every_language() {
        for lang in Lang::ALL {
            let t = lang.catalog();
            let mut keys: Vec<String> = identity::EventKind::ALL
                .iter()
                .map(|k| format!("event.{}", k.as_str()))
                .collect();
            keys.extend(identity::Role::ALL.iter().map(|r| format!("role.{}", r.as_str())));
            for r in [
                identity::PasswordRejected::TooShort,
                identity::PasswordRejected::TooLong,
                identity::PasswordRejected::ContainsPersonalData,
                identity::PasswordRejected::TooGuessable,
            ] {
                keys.push(format!("password.{}", r.code()));
            }
            keys.extend([
                "security.done_password_changed".into(),
                "security.done_session_revoked".into(),
            ]);
            for key in keys {
                assert_ne!(t.t(&key), key, "{key} missing in {}", lang.code());
            }
        }
    }

    fn chrome_at(here: &str) -> Chrome {
        Chrome {
            t: Lang::En.catalog(),
            lang: "en",
            csrf: String::new(),
            user_name: Some("Ana".into()),
            requirement: None,
            leave_org: None,
            here: here.into(),
            title: String::new(),
            langs: Vec::new(),
            flash: None,
        }
    }

    fn current(here: &str) -> Vec<(&'static str, &'static str)> {
        chrome_at(here)
            .nav()
            .into_iter()
            .filter_map(|n| Some((n.href, n.current?)))
            .collect()
    }

    #[test]
    fn the_navigation_marks_one_entry_current() {
        assert_eq!(current("/"), [("/", "page")]);
        assert_eq!(current("/security"), [("/security", "page")]);
        // The most precise entry, not every one the path starts with.
        assert_eq!(current("/security/two-factor"), [("/security/two-factor", "page")]);
        assert_eq!(current("/security/two-factor/totp"), [("/security/two-factor", "true")]);
        assert_eq!(current("/drives/6970248/files"), [("/drives", "true")]);
        // Pages outside the navigation mark nothing; a prefix of a word is no parent.
        assert!(current("/orgs/x/members").is_empty());
        assert!(current("/securityx").is_empty());
    }
}
