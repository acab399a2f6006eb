//! Push approval over the JSON API: the waiting sign-in asks and watches
//! (JSON or server-sent events), the authenticator app long-polls for
//! requests and answers them with signed messages. The protocol is in
//! `docs/authenticator.md`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use identity::{DeviceError, DeviceProof, DeviceRequest, PushError, PushOutcome, PushState, SecondStepError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{ApiJson, ApiPath, StatusBody};
use crate::auth::{Client, DEVICE_COOKIE, any_session, sign_in_cookies, sign_out_cookie};
use crate::cookies;
use crate::error::{ApiError, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct PushPendingBody {
    /// `pending`
    status: String,
    request_id: String,
    /// The number to show; the member picks it in the app.
    number: u8,
    expires_at: i64,
}

/// Maps a refused push request to API errors.
pub fn push_error(e: PushError) -> ApiError {
    let message = e.to_string();
    match e {
        PushError::NoDevice => ApiError::new(StatusCode::CONFLICT, "no_authenticator", message),
        PushError::Paused { retry_after } => ApiError {
            code: "push_paused",
            message,
            ..ApiError::too_many_attempts(retry_after)
        },
        PushError::TooManyRequests { retry_after } => ApiError {
            code: "too_many_push_requests",
            message,
            ..ApiError::too_many_attempts(retry_after)
        },
        PushError::NotPending => ApiError::not_signed_in(),
        PushError::Store(e) => ApiError::internal(e),
    }
}

/// `{"method":"authenticator"}` at the second step: sends the request.
pub async fn begin(state: &AppState, pending: &crate::auth::Authed) -> Result<Response, ApiError> {
    let request = state
        .identity()
        .begin_push(&pending.session, &pending.account, &pending.client)
        .await
        .map_err(push_error)?;
    Ok(Json(PushPendingBody {
        status: "pending".to_owned(),
        request_id: request.id.into_string(),
        number: request.number,
        expires_at: request.expires_at,
    })
    .into_response())
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

fn status_event(state: PushState) -> Event {
    Event::default()
        .event("status")
        .data(format!("{{\"status\":\"{}\"}}", state.as_str()))
}

/// How the waiting sign-in learns the answer. As JSON: `pending`,
/// `signed_in` (the approved request completes the second step and sets
/// the session cookie), `denied` (the attempt is over: sign in again) or
/// `expired` (send another request or use another method). With `Accept:
/// text/event-stream`: `status` events, `pending` first, then the answer
/// (`approved` meaning "fetch this as JSON to finish").
#[utoipa::path(get, path = "/api/v1/session/second-factor/authenticator/{request_id}", tag = "session",
    security(("session" = [])), params(("request_id" = String, Path)),
    responses(
        (status = 200, description = "`pending`, `signed_in` (session cookie set), `denied` or `expired`; or an event stream", body = StatusBody),
        (status = 401, description = "`not_signed_in`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ))]
pub async fn status(
    State(state): State<AppState>,
    ApiPath(request_id): ApiPath<identity::ApprovalRequestId>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let session = any_session(&state, &parts).await?;
    let found = state.identity().push_state(&request_id).await?;
    let Some((approval, current)) = found else {
        return Err(if session.is_some() {
            not_found()
        } else {
            ApiError::not_signed_in()
        });
    };
    let owner = session.as_ref().filter(|a| a.session.id == approval.session_id);
    // A denial ended the session; the waiting page still learns why.
    let Some(owner) = owner else {
        return match current {
            PushState::Denied if wants_events(&headers) => Ok(events(state, request_id, current).into_response()),
            PushState::Denied => Ok(Json(status_body("denied")).into_response()),
            _ if session.is_none() => Err(ApiError::not_signed_in()),
            _ => Err(not_found()),
        };
    };
    if wants_events(&headers) {
        return Ok(events(state, request_id, current).into_response());
    }
    if current == PushState::Used {
        // Asked again after signing in with it: nothing more to do.
        return Ok(Json(status_body("signed_in")).into_response());
    }
    let device = cookies::get(&headers, DEVICE_COOKIE);
    let outcome = state
        .identity()
        .finish_push(&owner.session, &owner.account, &request_id, device, &owner.client)
        .await;
    match outcome {
        Ok(PushOutcome::SignedIn(signed)) => {
            state.metrics().sign_in("signed_in");
            let cookies = sign_in_cookies(&state, &signed);
            Ok(crate::api::with_cookies(cookies, Json(status_body("signed_in"))))
        }
        Ok(PushOutcome::Pending) => Ok(Json(status_body("pending")).into_response()),
        Ok(PushOutcome::Expired) => Ok(Json(status_body("expired")).into_response()),
        Ok(PushOutcome::Denied) => Ok(crate::api::with_cookies(
            vec![sign_out_cookie(&state)],
            Json(status_body("denied")),
        )),
        Err(SecondStepError::TooManyAttempts { retry_after }) => Err(ApiError::too_many_attempts(retry_after)),
        Err(SecondStepError::Store(e)) => Err(ApiError::internal(e)),
        Err(_) => Err(ApiError::not_signed_in()),
    }
}

fn status_body(status: &str) -> StatusBody {
    crate::api::status(status).0
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such approval request")
}

enum Step {
    Emit(PushState),
    Wait,
    Done,
}

fn after(state: PushState) -> Step {
    if state == PushState::Pending {
        Step::Wait
    } else {
        Step::Done
    }
}

/// The event stream: the state now, then each change until the request is
/// answered or expires (`pending` again now and then while it waits).
fn events(
    state: AppState,
    request_id: identity::ApprovalRequestId,
    first: PushState,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold(Step::Emit(first), move |step| {
        let state = state.clone();
        let request_id = request_id.clone();
        async move {
            match step {
                Step::Done => None,
                Step::Emit(s) => Some((Ok(status_event(s)), after(s))),
                Step::Wait => {
                    let changed = state
                        .identity()
                        .wait_push_state(&request_id, Duration::from_secs(55))
                        .await;
                    match changed {
                        Ok(Some(s)) => Some((Ok(status_event(s)), after(s))),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!(error = %e, "an approval request's event stream failed");
                            None
                        }
                    }
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Deserialize, ToSchema)]
pub struct DeviceProofBody {
    /// The method id the device got when it linked.
    method_id: String,
    /// Milliseconds since the epoch, within five minutes of the server.
    timestamp: i64,
    /// Ed25519 over `cloudkeep-authenticator/1\n<purpose>\n<method_id>\n<timestamp>\n<extra>`, base64url.
    signature: String,
}

impl DeviceProofBody {
    fn proof(&self) -> DeviceProof {
        DeviceProof {
            method_id: identity::FactorId::new(self.method_id.clone()),
            timestamp: self.timestamp,
            signature: self.signature.clone(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct PollBody {
    #[serde(flatten)]
    device: DeviceProofBody,
    /// Hold the call up to this many seconds (at most 55) until a request
    /// arrives; 0 answers at once.
    #[serde(default)]
    wait: u64,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceRequestBody {
    id: String,
    email: String,
    created_at: i64,
    expires_at: i64,
    ip: String,
    /// "Firefox on Linux"
    browser: String,
    /// The approximate place, when known.
    place: Option<String>,
    /// Three numbers; the sign-in page shows one of them.
    numbers: [u8; 3],
}

impl From<DeviceRequest> for DeviceRequestBody {
    fn from(r: DeviceRequest) -> Self {
        Self {
            id: r.id.into_string(),
            email: r.email,
            created_at: r.created_at,
            expires_at: r.expires_at,
            ip: r.ip,
            browser: r.browser,
            place: r.place,
            numbers: r.numbers,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeviceRequestsBody {
    requests: Vec<DeviceRequestBody>,
}

fn device_error(e: DeviceError) -> ApiError {
    let message = e.to_string();
    match e {
        DeviceError::Revoked => ApiError::new(StatusCode::GONE, "device_revoked", message),
        DeviceError::BadSignature => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", message),
        DeviceError::ClockSkew => ApiError::new(StatusCode::UNAUTHORIZED, "clock_skew", message),
        DeviceError::NotFound => not_found(),
        DeviceError::Closed(_) => ApiError::new(StatusCode::CONFLICT, "request_closed", message),
        DeviceError::Store(e) => ApiError::internal(e),
    }
}

/// Called by the app (signed with purpose `poll`, no extra): the open
/// approval requests for its account, held until one arrives or `wait`
/// seconds pass.
#[utoipa::path(post, path = "/api/v1/authenticator/requests", tag = "authenticator", request_body = PollBody,
    responses(
        (status = 200, body = DeviceRequestsBody),
        (status = 401, description = "`invalid_signature` or `clock_skew`", body = ErrorBody),
        (status = 410, description = "`device_revoked`: the method was removed", body = ErrorBody),
    ))]
pub async fn poll(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PollBody>,
) -> Result<Json<DeviceRequestsBody>, ApiError> {
    let requests = state
        .identity()
        .device_requests(&body.device.proof(), Duration::from_secs(body.wait))
        .await
        .map_err(device_error)?;
    Ok(Json(DeviceRequestsBody {
        requests: requests.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct AnswerBody {
    #[serde(flatten)]
    device: DeviceProofBody,
    /// The number the member picked.
    number: u8,
    /// Yes (`true`) or No.
    approve: bool,
}

/// Called by the app: the member's answer, signed with purpose `answer`
/// and extra `<request id>\n<number>\n<approve|deny>`. `approved` only
/// with Yes and the number the sign-in page shows; `denied` or
/// `wrong_number` end that sign-in and are recorded as suspicious.
#[utoipa::path(post, path = "/api/v1/authenticator/requests/{request_id}/answer", tag = "authenticator",
    params(("request_id" = String, Path)), request_body = AnswerBody,
    responses(
        (status = 200, description = "`approved`, `denied` or `wrong_number`", body = StatusBody),
        (status = 401, description = "`invalid_signature` or `clock_skew`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`request_closed`: already answered or expired", body = ErrorBody),
        (status = 410, description = "`device_revoked`", body = ErrorBody),
    ))]
pub async fn answer(
    State(state): State<AppState>,
    ApiPath(request_id): ApiPath<identity::ApprovalRequestId>,
    Client(client): Client,
    ApiJson(body): ApiJson<AnswerBody>,
) -> Result<Json<StatusBody>, ApiError> {
    let status = state
        .identity()
        .answer_push(&body.device.proof(), &request_id, body.number, body.approve, &client)
        .await
        .map_err(device_error)?;
    Ok(Json(status_body(status.as_str())))
}
