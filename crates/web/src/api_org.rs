//! Organizations over the JSON API: members and invitations, roles,
//! security alerts, the two-step verification requirement and the audit
//! log.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use identity::{AccountId, OrgId, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{ApiJson, ApiPath, ApiQuery, StatusBody, status};
use crate::auth::{ApiUser, any_session};
use crate::error::{ApiError, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct MemberBody {
    id: String,
    email: String,
    name: String,
    /// `legal-representative`, `admin`, `user` or `external`
    role: String,
    two_factor: bool,
    /// Active two-step methods.
    methods: u32,
    /// 0 when never.
    last_sign_in: i64,
    joined_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CountsBody {
    total: usize,
    with_two_factor: usize,
    without_two_factor: usize,
    /// Percent of members with two-step verification.
    percent: usize,
}

#[derive(Serialize, ToSchema)]
pub struct MembersBody {
    organization: String,
    counts: CountsBody,
    members: Vec<MemberBody>,
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams, Default)]
#[serde(default)]
pub struct MembersQuery {
    /// `enabled` or `disabled`: only members with (or without) two-step
    /// verification.
    two_factor: Option<String>,
}

fn role_of(s: &str) -> Result<Role, ApiError> {
    s.parse().map_err(|e: identity::RoleError| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_role", e.to_string())
    })
}

/// The members, with their two-step verification status (admins and the
/// legal representative).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/members", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path, description = "organization id"), MembersQuery),
    responses((status = 200, body = MembersBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn members(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(org): ApiPath<OrgId>,
    ApiQuery(q): ApiQuery<MembersQuery>,
) -> Result<Json<MembersBody>, ApiError> {
    let filter = match q.two_factor.as_deref() {
        None | Some("") => None,
        Some("enabled") => Some(true),
        Some("disabled") => Some(false),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "two_factor is enabled or disabled",
            ));
        }
    };
    let (org, members, counts) = state.identity().members(&user.account, &org, filter).await?;
    Ok(Json(MembersBody {
        organization: org.name,
        counts: CountsBody {
            total: counts.total,
            with_two_factor: counts.with_two_factor,
            without_two_factor: counts.without_two_factor(),
            percent: counts.percent(),
        },
        members: members
            .into_iter()
            .map(|m| MemberBody {
                two_factor: m.two_factor(),
                id: m.account_id.into_string(),
                email: m.email,
                name: m.name,
                role: m.role.as_str().to_owned(),
                methods: m.methods,
                last_sign_in: m.last_sign_in,
                joined_at: m.joined_at,
            })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct InviteBody {
    email: String,
    /// `legal-representative`, `admin`, `user` or `external`
    role: String,
}

#[derive(Serialize, ToSchema)]
pub struct InvitationBody {
    email: String,
    role: String,
    /// The single-use link, also emailed (valid 7 days).
    link: String,
}

/// Invites someone by email: a link, valid 7 days, that creates an account
/// or adds an existing one.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/invitations", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path)), request_body = InviteBody,
    responses((status = 201, body = InvitationBody), (status = 403, body = ErrorBody), (status = 409, description = "`already_member`", body = ErrorBody),
        (status = 422, description = "`invalid_role` or `invalid_email`", body = ErrorBody)))]
pub async fn invite(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(org): ApiPath<OrgId>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<InviteBody>,
) -> Result<(StatusCode, Json<InvitationBody>), ApiError> {
    let role = role_of(&body.role)?;
    let base = state.config().base_url(&headers);
    let token = state
        .identity()
        .invite(&user.account, &org, &body.email, role, &base)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(InvitationBody {
            email: body.email.trim().to_lowercase(),
            role: role.as_str().to_owned(),
            link: format!("{base}/invitations/{token}"),
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct PendingInvitationBody {
    /// Names the invitation in `resend` and `DELETE` (not its link).
    id: String,
    email: String,
    /// `legal-representative`, `admin`, `user` or `external`
    role: String,
    /// The email of who invited.
    invited_by: String,
    created_at: i64,
    /// When the link stops working.
    expires_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PendingInvitationsBody {
    invitations: Vec<PendingInvitationBody>,
}

/// The invitations still waiting for an answer, newest first (admins and
/// the legal representative).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/invitations", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path)),
    responses((status = 200, body = PendingInvitationsBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn invitations(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(org): ApiPath<OrgId>,
) -> Result<Json<PendingInvitationsBody>, ApiError> {
    let found = state.identity().invitations(&user.account, &org).await?;
    Ok(Json(PendingInvitationsBody {
        invitations: found
            .into_iter()
            .map(|i| PendingInvitationBody {
                id: i.id,
                email: i.email,
                role: i.role.as_str().to_owned(),
                invited_by: i.invited_by,
                created_at: i.created_at,
                expires_at: i.expires_at,
            })
            .collect(),
    }))
}

/// Sends a pending invitation again with a new link, valid 7 days; the
/// old link stops working.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/invitations/{id}/resend", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path), ("id" = String, Path, description = "the invitation's `id` from the list")),
    responses((status = 200, body = InvitationBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`already_member`: the person joined meanwhile", body = ErrorBody)))]
pub async fn resend_invitation(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath((org, id)): ApiPath<(OrgId, String)>,
    headers: HeaderMap,
) -> Result<Json<InvitationBody>, ApiError> {
    let base = state.config().base_url(&headers);
    let pending = state.identity().invitations(&user.account, &org).await?;
    let token = state
        .identity()
        .resend_invitation(&user.account, &org, &id, &base)
        .await?;
    let (email, role) = pending
        .into_iter()
        .find(|i| i.id == id)
        .map(|i| (i.email, i.role.as_str().to_owned()))
        .unwrap_or_default();
    Ok(Json(InvitationBody {
        email,
        role,
        link: format!("{base}/invitations/{token}"),
    }))
}

/// Withdraws a pending invitation: its link stops working.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/invitations/{id}", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path), ("id" = String, Path, description = "the invitation's `id` from the list")),
    responses((status = 200, body = StatusBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath((org, id)): ApiPath<(OrgId, String)>,
) -> Result<Json<StatusBody>, ApiError> {
    state.identity().revoke_invitation(&user.account, &org, &id).await?;
    Ok(status("revoked"))
}

#[derive(Deserialize, ToSchema)]
pub struct RoleBody {
    role: String,
}

/// Gives a member another role. There is always at least one legal
/// representative.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/members/{member}", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path), ("member" = String, Path)), request_body = RoleBody,
    responses((status = 200, body = StatusBody), (status = 403, body = ErrorBody), (status = 409, description = "`last_legal_representative`", body = ErrorBody),
        (status = 422, description = "`invalid_role`", body = ErrorBody)))]
pub async fn set_role(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath((org, member)): ApiPath<(OrgId, AccountId)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<Json<StatusBody>, ApiError> {
    let role = role_of(&body.role)?;
    state
        .identity()
        .set_member_role(&user.account, &org, &member, role)
        .await?;
    Ok(status("updated"))
}

/// Removes a member.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/members/{member}", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path), ("member" = String, Path)),
    responses((status = 200, body = StatusBody), (status = 403, body = ErrorBody), (status = 409, description = "`last_legal_representative`", body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath((org, member)): ApiPath<(OrgId, AccountId)>,
) -> Result<Json<StatusBody>, ApiError> {
    state.identity().remove_member(&user.account, &org, &member).await?;
    Ok(status("removed"))
}

/// An external member leaves the organization.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/leave", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path)),
    responses((status = 200, body = StatusBody), (status = 403, description = "only external members leave by themselves", body = ErrorBody)))]
pub async fn leave(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(org): ApiPath<OrgId>,
) -> Result<Json<StatusBody>, ApiError> {
    state.identity().leave(&user.account, &org).await?;
    Ok(status("left"))
}

/// Emails a member a summary of their security settings (at most once a
/// day per member).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/members/{member}/security-alert", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path), ("member" = String, Path)),
    responses((status = 200, body = StatusBody), (status = 429, description = "`alert_too_soon`", body = ErrorBody)))]
pub async fn security_alert(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath((org, member)): ApiPath<(OrgId, AccountId)>,
) -> Result<Json<StatusBody>, ApiError> {
    state
        .identity()
        .send_security_alert(&user.account, &org, &member)
        .await?;
    Ok(status("sent"))
}

#[derive(Deserialize, ToSchema)]
pub struct AlertsBody {
    /// `two_factor_disabled`
    filter: String,
}

#[derive(Serialize, ToSchema)]
pub struct SentBody {
    /// How many members got it (those alerted in the last day are skipped).
    sent: usize,
}

/// Sends the security alert to every member without two-step
/// verification.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/security-alerts", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path)), request_body = AlertsBody,
    responses((status = 200, body = SentBody), (status = 403, body = ErrorBody)))]
pub async fn security_alerts(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(org): ApiPath<OrgId>,
    ApiJson(body): ApiJson<AlertsBody>,
) -> Result<Json<SentBody>, ApiError> {
    if body.filter != "two_factor_disabled" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "filter is two_factor_disabled",
        ));
    }
    let sent = state
        .identity()
        .alert_members_without_two_factor(&user.account, &org)
        .await?;
    Ok(Json(SentBody { sent }))
}

#[derive(Serialize, ToSchema)]
pub struct PolicyBody {
    require_two_factor: bool,
    grace_days: u32,
    /// When members without two-step verification are stopped.
    deadline: i64,
    /// Who last changed it, and when.
    changed_by: String,
    changed_at: i64,
}

impl From<identity::OrgPolicy> for PolicyBody {
    fn from(p: identity::OrgPolicy) -> Self {
        Self {
            require_two_factor: p.require_two_factor,
            grace_days: p.grace_days,
            deadline: p.deadline(),
            changed_by: p.by,
            changed_at: p.since,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct PolicyChange {
    require_two_factor: bool,
    #[serde(default)]
    grace_days: u32,
    /// Must be `true`: the confirmation dialog's answer.
    #[serde(default)]
    confirm: bool,
}

/// The two-step verification requirement.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/security-policy", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path)), responses((status = 200, body = PolicyBody), (status = 404, body = ErrorBody)))]
pub async fn policy(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(org): ApiPath<OrgId>,
) -> Result<Json<PolicyBody>, ApiError> {
    let p = state.identity().org_policy(&user.account, &org).await?;
    Ok(Json(p.into()))
}

/// Requires (or stops requiring) two-step verification of every member.
/// Refused while you have no two-step verification yourself.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/security-policy", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path)), request_body = PolicyChange,
    responses(
        (status = 200, body = PolicyBody),
        (status = 400, description = "`confirmation_required`", body = ErrorBody),
        (status = 403, description = "`not_allowed` or `two_factor_required_for_you`", body = ErrorBody),
    ))]
pub async fn set_policy(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(org): ApiPath<OrgId>,
    ApiJson(body): ApiJson<PolicyChange>,
) -> Result<Json<PolicyBody>, ApiError> {
    let p = state
        .identity()
        .set_org_policy(
            &user.account,
            &org,
            body.require_two_factor,
            body.grace_days,
            body.confirm,
        )
        .await?;
    Ok(Json(p.into()))
}

#[derive(Serialize, ToSchema)]
pub struct OrgEventBody {
    at: i64,
    actor: String,
    kind: String,
    detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrgEventsBody {
    events: Vec<OrgEventBody>,
}

/// The organization's audit log, newest first (admins).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/events", tag = "organizations", security(("session" = [])),
    params(("org" = String, Path)), responses((status = 200, body = OrgEventsBody), (status = 403, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(org): ApiPath<OrgId>,
) -> Result<Json<OrgEventsBody>, ApiError> {
    let events = state.identity().org_events(&user.account, &org, 100).await?;
    Ok(Json(OrgEventsBody {
        events: events
            .into_iter()
            .map(|e| OrgEventBody {
                at: e.at,
                actor: e.actor,
                kind: e.kind,
                detail: e.detail,
            })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(default)]
pub struct AcceptBody {
    /// For a new account: the name and password to create it with. Leave
    /// out when signed in as the invited email.
    name: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct AcceptedBody {
    organization: String,
    email: String,
}

/// Accepts an invitation: signed in as the invited email, or creating the
/// account with `name` and `password`.
#[utoipa::path(post, path = "/api/v1/invitations/{token}/accept", tag = "organizations",
    params(("token" = String, Path)), request_body = AcceptBody,
    responses((status = 200, body = AcceptedBody), (status = 403, description = "`wrong_invitee`", body = ErrorBody), (status = 410, description = "`invitation_unavailable`", body = ErrorBody)))]
pub async fn accept(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    request: axum::extract::Request,
) -> Result<Json<AcceptedBody>, ApiError> {
    let (parts, body) = request.into_parts();
    let session = any_session(&state, &parts)
        .await?
        .filter(|a| a.session.stage == identity::SessionStage::SignedIn);
    let body = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let accept: AcceptBody = if body.is_empty() {
        AcceptBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?
    };
    let new_account =
        (session.is_none() && !accept.password.is_empty()).then_some((accept.name.as_str(), accept.password.as_str()));
    let (org, account) = state
        .identity()
        .accept_invitation(&token, session.as_ref().map(|a| &a.account), new_account)
        .await?;
    Ok(Json(AcceptedBody {
        organization: org.name,
        email: account.email.to_string(),
    }))
}
