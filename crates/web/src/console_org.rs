//! Console pages for organizations: the members list (two-step status,
//! counts and chart, roles, security alerts, invitations), the security
//! page (requiring two-step verification, the audit log), leaving, and
//! accepting an invitation.

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use identity::{AccountId, OrgError, OrgId, Role};
use serde::Deserialize;

use crate::AppState;
use crate::console::{Chrome, Confirmation, Confirmed, ConsoleUser, Ctx, see_other};
use crate::flash::Flash;
use crate::fmt;
use crate::refusal::Refusal;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}/members", get(members_page))
        .route("/orgs/{org}/invitations", post(invite))
        .route("/orgs/{org}/invitations/{id}/resend", post(resend_invitation))
        .route("/orgs/{org}/invitations/{id}/revoke", post(revoke_invitation))
        .route("/orgs/{org}/members/{member}/role", post(set_role))
        .route("/orgs/{org}/members/{member}/remove", post(remove))
        .route("/orgs/{org}/members/{member}/alert", post(alert))
        .route("/orgs/{org}/alerts", post(alert_all))
        .route("/orgs/{org}/security", get(security_page).post(set_policy))
        .route("/orgs/{org}/leave", post(leave))
        .route("/invitations/{token}", get(invitation_page).post(accept))
}

struct MemberRow {
    id: String,
    name: String,
    email: String,
    role: &'static str,
    role_label: String,
    /// The roles this manager may give the member (with the current one):
    /// no control is offered that the server would refuse.
    roles: Vec<RoleOption>,
    /// This manager may remove the member.
    removable: bool,
    two_factor: bool,
    methods_text: String,
    last_sign_in: String,
}

struct InvitationRow {
    id: String,
    email: String,
    role: String,
    invited_by: String,
    expires: String,
}

struct RoleOption {
    code: &'static str,
    label: String,
}

#[derive(Template)]
#[template(path = "org_members.html")]
struct MembersPage {
    c: Chrome,
    org_id: String,
    /// For the buttons that name whom they act on.
    org_name: String,
    notice: Option<String>,
    error: Option<String>,
    members: Vec<MemberRow>,
    counts_text: String,
    chart_label: String,
    percent: usize,
    /// Width of the chart's bar, in SVG units out of 200.
    bar: usize,
    only_without: bool,
    /// The roles this manager may invite with.
    roles: Vec<RoleOption>,
    invitations: Vec<InvitationRow>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MembersQuery {
    filter: Option<String>,
}

/// The roles `actor` may give someone who has `from` (`None`: someone
/// invited), the current one first kept. The last legal representative is
/// checked when the change is made.
fn roles(ctx: &Ctx, actor: Option<Role>, from: Option<Role>) -> Vec<RoleOption> {
    Role::ALL
        .into_iter()
        .filter(|r| Some(*r) == from || actor.is_some_and(|a| a.may_change_role(from, Some(*r), usize::MAX).is_ok()))
        .map(|r| RoleOption {
            code: r.as_str(),
            label: ctx.t().t(&format!("role.{}", r.as_str())).to_owned(),
        })
        .collect()
}

async fn render_members(
    ctx: &ConsoleUser,
    org: &OrgId,
    only_without: bool,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let user = &ctx.user;
    let filter = only_without.then_some(false);
    let identity = ctx.state.identity();
    let found = match identity.members(&user.account, org, filter).await {
        Ok(found) => identity.invitations(&user.account, org).await.map(|i| (found, i)),
        Err(e) => Err(e),
    };
    let found = match found {
        Ok(found) => identity
            .memberships(&user.account.id)
            .await
            .map(|m| (found, m))
            .map_err(OrgError::Store),
        Err(e) => Err(e),
    };
    let (((organization, members, counts), invitations), memberships) = match found {
        Ok(found) => found,
        Err(OrgError::Store(e)) => return ctx.failure(e),
        Err(e) => {
            let text = Refusal::org(&e).text(ctx.t());
            return ctx.message(StatusCode::FORBIDDEN, ctx.t().t("org.title"), &text);
        }
    };
    let t = ctx.t();
    let actor = memberships.iter().find(|m| &m.org_id == org).map(|m| m.role);
    let page = MembersPage {
        c: ctx.chrome(&t.tf("org.members_title", &[("org", &organization.name)])),
        org_id: organization.id.into_string(),
        org_name: organization.name.clone(),
        notice,
        error,
        members: members
            .into_iter()
            .map(|m| MemberRow {
                two_factor: m.two_factor(),
                role: m.role.as_str(),
                role_label: t.t(&format!("role.{}", m.role.as_str())).to_owned(),
                roles: roles(ctx, actor, Some(m.role)),
                removable: actor.is_some_and(|a| a.may_change_role(Some(m.role), None, usize::MAX).is_ok()),
                id: m.account_id.into_string(),
                name: m.name,
                email: m.email,
                methods_text: t.plural("org.methods", m.methods as u64, &[]),
                last_sign_in: if m.last_sign_in > 0 {
                    fmt::datetime(t, m.last_sign_in)
                } else {
                    t.t("org.never").to_owned()
                },
            })
            .collect(),
        counts_text: t.plural(
            "org.counts_text",
            counts.total as u64,
            &[
                ("with", &t.number(counts.with_two_factor as u64)),
                ("without", &t.number(counts.without_two_factor() as u64)),
            ],
        ),
        chart_label: t.tf("org.chart_label", &[("percent", &counts.percent().to_string())]),
        percent: counts.percent(),
        bar: counts.percent() * 2,
        only_without,
        roles: roles(ctx, actor, None),
        invitations: invitations
            .into_iter()
            .map(|i| InvitationRow {
                role: t.t(&format!("role.{}", i.role.as_str())).to_owned(),
                expires: fmt::datetime(t, i.expires_at),
                id: i.id,
                email: i.email,
                invited_by: i.invited_by,
            })
            .collect(),
    };
    ctx.render(status, &page)
}

async fn members_page(ctx: ConsoleUser, Path(org): Path<OrgId>, Query(q): Query<MembersQuery>) -> Response {
    let only_without = q.filter.as_deref() == Some("without");
    render_members(&ctx, &org, only_without, StatusCode::OK, None, None).await
}

/// After a change: back to the list, or the list with the refusal.
async fn after(ctx: &ConsoleUser, org: &OrgId, result: Result<(), OrgError>, done: &str) -> Response {
    match result {
        Ok(()) => ctx.flash_to(
            &format!("/orgs/{org}/members"),
            &Flash::notice(&format!("org.done_{done}")),
            &[],
        ),
        Err(OrgError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let status = match e {
                OrgError::AlertTooSoon { .. } => StatusCode::TOO_MANY_REQUESTS,
                OrgError::NotAllowed(identity::RoleError::LastLegalRepresentative) | OrgError::AlreadyMember(_) => {
                    StatusCode::CONFLICT
                }
                OrgError::InvalidEmail(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::FORBIDDEN,
            };
            let error = Refusal::org(&e).text(ctx.t());
            render_members(ctx, org, false, status, None, Some(error)).await
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InviteForm {
    email: String,
    role: String,
}

async fn invite(
    ctx: ConsoleUser,
    Path(org): Path<OrgId>,
    headers: axum::http::HeaderMap,
    Form(form): Form<InviteForm>,
) -> Response {
    let user = &ctx.user;
    let role = form.role.parse().unwrap_or(Role::User);
    let base = ctx.state.config().base_url(&headers);
    let result = ctx
        .state
        .identity()
        .invite(&user.account, &org, &form.email, role, &base)
        .await
        .map(|_| ());
    after(&ctx, &org, result, "invited").await
}

async fn resend_invitation(
    ctx: ConsoleUser,
    Path((org, id)): Path<(OrgId, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    let base = ctx.state.config().base_url(&headers);
    let result = ctx
        .state
        .identity()
        .resend_invitation(&ctx.user.account, &org, &id, &base)
        .await
        .map(|_| ());
    after(&ctx, &org, result, "resent").await
}

async fn revoke_invitation(ctx: ConsoleUser, Path((org, id)): Path<(OrgId, String)>) -> Response {
    let result = ctx
        .state
        .identity()
        .revoke_invitation(&ctx.user.account, &org, &id)
        .await;
    after(&ctx, &org, result, "invitation_revoked").await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RoleForm {
    role: String,
}

async fn set_role(
    ctx: ConsoleUser,
    Path((org, member)): Path<(OrgId, AccountId)>,
    Form(form): Form<RoleForm>,
) -> Response {
    let user = &ctx.user;
    let Ok(role) = form.role.parse() else {
        return after(&ctx, &org, Err(OrgError::NotFound), "role").await;
    };
    let result = ctx
        .state
        .identity()
        .set_member_role(&user.account, &org, &member, role)
        .await;
    after(&ctx, &org, result, "role").await
}

/// The organization's name and a member's name and email, for a
/// confirmation; `None` when the member is not there (or the actor may not
/// see the list: the action then says why).
async fn member_named(
    ctx: &ConsoleUser,
    org: &OrgId,
    member: &AccountId,
) -> Result<Option<(String, String)>, Response> {
    match ctx.state.identity().members(&ctx.user.account, org, None).await {
        Ok((o, members, _)) => Ok(members
            .into_iter()
            .find(|m| &m.account_id == member)
            .map(|m| (o.name, format!("{} ({})", m.name, m.email)))),
        Err(OrgError::Store(e)) => Err(ctx.failure(e)),
        Err(_) => Ok(None),
    }
}

async fn remove(
    ctx: ConsoleUser,
    Path((org, member)): Path<(OrgId, AccountId)>,
    Form(form): Form<Confirmed>,
) -> Response {
    let user = &ctx.user;
    if !form.yes() {
        let (org_name, who) = match member_named(&ctx, &org, &member).await {
            Ok(Some(found)) => found,
            Ok(None) => return after(&ctx, &org, Err(OrgError::NotFound), "removed").await,
            Err(response) => return response,
        };
        let t = ctx.t();
        return ctx.confirm(Confirmation {
            title: t.t("flows.remove_member_title"),
            text: t.tf("flows.remove_member_text", &[("member", &who), ("org", &org_name)]),
            action: format!("/orgs/{org}/members/{member}/remove"),
            fields: Vec::new(),
            button: t.tf("flows.remove_member_button", &[("member", &who)]),
            cancel: format!("/orgs/{org}/members"),
            password: false,
        });
    }
    let result = ctx.state.identity().remove_member(&user.account, &org, &member).await;
    after(&ctx, &org, result, "removed").await
}

async fn alert(ctx: ConsoleUser, Path((org, member)): Path<(OrgId, AccountId)>) -> Response {
    let user = &ctx.user;
    let result = ctx
        .state
        .identity()
        .send_security_alert(&user.account, &org, &member)
        .await;
    after(&ctx, &org, result, "alerted").await
}

async fn alert_all(ctx: ConsoleUser, Path(org): Path<OrgId>, Form(form): Form<Confirmed>) -> Response {
    let user = &ctx.user;
    if !form.yes() {
        let (organization, without) = match ctx.state.identity().members(&user.account, &org, Some(false)).await {
            Ok((o, members, _)) => (o, members),
            Err(e) => return after(&ctx, &org, Err(e), "alerted").await,
        };
        let t = ctx.t();
        let count = without.len().to_string();
        return ctx.confirm(Confirmation {
            title: t.t("flows.alert_all_title"),
            text: t.tf(
                "flows.alert_all_text",
                &[("count", &count), ("org", &organization.name)],
            ),
            action: format!("/orgs/{org}/alerts"),
            fields: Vec::new(),
            button: t.tf("flows.alert_all_button", &[("count", &count)]),
            cancel: format!("/orgs/{org}/members?filter=without"),
            password: false,
        });
    }
    match ctx
        .state
        .identity()
        .alert_members_without_two_factor(&user.account, &org)
        .await
    {
        Ok(sent) => ctx.flash_to(
            &format!("/orgs/{org}/members?filter=without"),
            &Flash::notice("org.done_alerted_all").count(sent as u64),
            &[],
        ),
        Err(e) => after(&ctx, &org, Err(e), "alerted").await,
    }
}

async fn leave(ctx: ConsoleUser, Path(org): Path<OrgId>, Form(form): Form<Confirmed>) -> Response {
    let user = &ctx.user;
    let org_name = match ctx.state.identity().memberships(&user.account.id).await {
        Ok(m) => m.into_iter().find(|m| m.org_id == org).map(|m| m.org_name),
        Err(e) => return ctx.failure(e),
    };
    let Some(org_name) = org_name else {
        let text = Refusal::org(&OrgError::NotFound).text(ctx.t());
        return ctx.message(StatusCode::FORBIDDEN, ctx.t().t("org.title"), &text);
    };
    if !form.yes() {
        let t = ctx.t();
        return ctx.confirm(Confirmation {
            title: t.t("flows.leave_title"),
            text: t.tf("flows.leave_text", &[("org", &org_name)]),
            action: format!("/orgs/{org}/leave"),
            fields: Vec::new(),
            button: t.tf("flows.leave_button", &[("org", &org_name)]),
            cancel: "/".to_owned(),
            password: false,
        });
    }
    match ctx.state.identity().leave(&user.account, &org).await {
        Ok(()) => ctx.flash_to("/", &Flash::notice("flows.left").arg("org", org_name), &[]),
        Err(OrgError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let text = Refusal::org(&e).text(ctx.t());
            ctx.message(StatusCode::FORBIDDEN, ctx.t().t("org.title"), &text)
        }
    }
}

// ---- the organization's security page ---------------------------------------

struct OrgEventRow {
    at: String,
    actor: String,
    what: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "org_security.html")]
struct SecurityPage {
    c: Chrome,
    org_id: String,
    require: bool,
    grace_days: u32,
    status_text: String,
    error: Option<String>,
    /// Asking to confirm this change (`require`, `grace_days`).
    confirming: Option<(bool, u32)>,
    confirm_text: String,
    events: Vec<OrgEventRow>,
}

async fn render_security(
    ctx: &ConsoleUser,
    org: &OrgId,
    status: StatusCode,
    error: Option<String>,
    confirming: Option<(bool, u32)>,
) -> Response {
    let user = &ctx.user;
    let identity = ctx.state.identity();
    let found = match (
        identity.org_policy(&user.account, org).await,
        identity.org_events(&user.account, org, 50).await,
    ) {
        (Ok(p), Ok(e)) => (p, e),
        (Err(OrgError::Store(e)), _) | (_, Err(OrgError::Store(e))) => return ctx.failure(e),
        (Err(e), _) | (_, Err(e)) => {
            let text = Refusal::org(&e).text(ctx.t());
            return ctx.message(StatusCode::FORBIDDEN, ctx.t().t("org.title"), &text);
        }
    };
    let (policy, events) = found;
    let t = ctx.t();
    let status_text = if policy.require_two_factor {
        t.tf(
            "org.policy_on",
            &[("by", &policy.by), ("deadline", &fmt::datetime(t, policy.deadline()))],
        )
    } else {
        t.t("org.policy_off").to_owned()
    };
    let page = SecurityPage {
        c: ctx.chrome(&t.tf("org.security_title", &[("org", &policy.org_name)])),
        org_id: policy.org_id.to_string(),
        require: policy.require_two_factor,
        confirm_text: match confirming {
            Some((true, days)) => t.plural("org.confirm_on", u64::from(days), &[("org", &policy.org_name)]),
            Some((false, _)) => t.tf("org.confirm_off", &[("org", &policy.org_name)]),
            None => String::new(),
        },
        grace_days: policy.grace_days,
        status_text,
        error,
        confirming,
        events: events
            .into_iter()
            .map(|e| OrgEventRow {
                at: fmt::datetime(t, e.at),
                actor: e.actor,
                what: t.t(&format!("org.event_{}", e.kind)).to_owned(),
                detail: crate::i18n::org_detail(t, &e.kind, &e.detail),
            })
            .collect(),
    };
    ctx.render(status, &page)
}

async fn security_page(ctx: ConsoleUser, Path(org): Path<OrgId>) -> Response {
    render_security(&ctx, &org, StatusCode::OK, None, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PolicyForm {
    require: Option<String>,
    grace_days: String,
    confirm: Option<String>,
}

/// The switch: first a confirmation step (the dialog), then the change.
async fn set_policy(ctx: ConsoleUser, Path(org): Path<OrgId>, Form(form): Form<PolicyForm>) -> Response {
    let user = &ctx.user;
    let require = form.require.is_some();
    let grace: u32 = form.grace_days.trim().parse().unwrap_or(0);
    if form.confirm.is_none() {
        return render_security(&ctx, &org, StatusCode::OK, None, Some((require, grace))).await;
    }
    match ctx
        .state
        .identity()
        .set_org_policy(&user.account, &org, require, grace, true)
        .await
    {
        Ok(_) => see_other(&format!("/orgs/{org}/security"), &[]),
        Err(OrgError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::org(&e).text(ctx.t());
            render_security(&ctx, &org, StatusCode::FORBIDDEN, Some(error), None).await
        }
    }
}

// ---- invitations ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage {
    c: Chrome,
    token: String,
    text: String,
    /// `join` (signed in as the invitee), `create` (no account yet),
    /// `sign_in` (an account exists, or another is signed in).
    mode: &'static str,
    email_text: String,
    error: Option<String>,
}

async fn render_invitation(ctx: &Ctx, token: &str, status: StatusCode, error: Option<String>) -> Response {
    let t = ctx.t();
    let invitation = match ctx.state.identity().invitation(token).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return ctx.message(
                StatusCode::GONE,
                t.t("org.invitation_title"),
                t.t("org.invitation_unavailable"),
            );
        }
        Err(e) => return ctx.failure(e),
    };
    let signed_in_as = ctx.signed_in.as_ref().map(|u| u.account.email.to_string());
    let exists = match identity::EmailAddress::parse(&invitation.email) {
        Ok(email) => match ctx.state.identity().account_exists(&email).await {
            Ok(exists) => exists,
            Err(e) => return ctx.failure(e),
        },
        Err(_) => false,
    };
    let mode = match signed_in_as {
        Some(me) if me.eq_ignore_ascii_case(&invitation.email) => "join",
        None if !exists => "create",
        _ => "sign_in",
    };
    let page = InvitationPage {
        c: ctx.chrome(t.t("org.invitation_title")),
        token: token.to_owned(),
        text: t.tf(
            "org.invitation_text",
            &[
                ("by", &invitation.invited_by),
                ("org", &invitation.org_name),
                ("role", t.t(&format!("role.{}", invitation.role.as_str()))),
                ("email", &invitation.email),
            ],
        ),
        mode,
        email_text: match mode {
            "create" => t.tf("org.create_account", &[("email", &invitation.email)]),
            _ => t.tf("org.sign_in_first", &[("email", &invitation.email)]),
        },
        error,
    };
    ctx.render(status, &page)
}

async fn invitation_page(ctx: Ctx, Path(token): Path<String>) -> Response {
    render_invitation(&ctx, &token, StatusCode::OK, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AcceptForm {
    name: String,
    password: String,
}

async fn accept(ctx: Ctx, Path(token): Path<String>, Form(form): Form<AcceptForm>) -> Response {
    let account = ctx.signed_in.as_ref().map(|u| &u.account);
    let new_account =
        (account.is_none() && !form.password.is_empty()).then_some((form.name.as_str(), form.password.as_str()));
    match ctx
        .state
        .identity()
        .accept_invitation(&token, account, new_account)
        .await
    {
        Ok((org, _)) if account.is_some() => {
            ctx.flash_to("/", &Flash::notice("flows.joined").arg("org", org.name), &[])
        }
        Ok((org, joined)) => ctx.flash_to(
            "/signin",
            &Flash::notice("flows.joined_sign_in")
                .arg("org", org.name)
                .with_email(joined.email.as_str()),
            &[],
        ),
        Err(OrgError::Store(e)) => ctx.failure(e),
        Err(e) => {
            let error = Refusal::org(&e).text(ctx.t());
            render_invitation(&ctx, &token, StatusCode::UNPROCESSABLE_ENTITY, Some(error)).await
        }
    }
}
