//! Drives over the JSON API: the ones a member may use, and creating one
//! in an organization.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use drive::{Access, Drive, DriveError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::ApiJson;
use crate::api_org::org_error;
use crate::auth::ApiUser;
use crate::error::{ApiError, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct DriveBody {
    /// Numeric; the WebDAV user name is the member's email.
    id: u64,
    name: String,
    organization_id: String,
    organization: String,
    quota_bytes: u64,
    used_bytes: u64,
    /// `read` or `read-write`
    access: String,
    created_at: i64,
    /// WebDAV address naming the drive in the host:
    /// `http://<id>.connect.<domain>/`.
    connect_url: String,
    /// WebDAV address on the main host: `<base>/dav/drives/<id>/`.
    webdav_url: String,
}

fn body(state: &AppState, headers: &HeaderMap, d: Drive, access: Access) -> DriveBody {
    let addresses = crate::dav::addresses(state, &state.config().base_url(headers), d.id, "/");
    DriveBody {
        connect_url: addresses.host,
        webdav_url: addresses.path,
        id: d.id,
        name: d.name,
        organization_id: d.org_id,
        organization: d.org_name,
        quota_bytes: d.quota_bytes,
        used_bytes: d.used_bytes,
        access: access.as_str().to_owned(),
        created_at: d.created_at,
    }
}

#[derive(Serialize, ToSchema)]
pub struct DrivesBody {
    drives: Vec<DriveBody>,
}

pub fn drive_error(e: DriveError) -> ApiError {
    let message = e.to_string();
    match e {
        DriveError::InvalidName => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_name", message),
        DriveError::InvalidQuota => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_quota", message),
        DriveError::Org(inner) => org_error(inner),
        DriveError::Store(inner) => ApiError::internal(inner),
    }
}

/// The drives of your organizations.
#[utoipa::path(get, path = "/api/v1/drives", tag = "drives", security(("session" = [])),
    responses((status = 200, body = DrivesBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiUser(user): ApiUser,
) -> Result<Json<DrivesBody>, ApiError> {
    let drives = state.drives().of_account(&user.account).await?;
    Ok(Json(DrivesBody {
        drives: drives.into_iter().map(|(d, a)| body(&state, &headers, d, a)).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewDrive {
    name: String,
    /// Bytes; 10 GiB when left out.
    quota_bytes: Option<u64>,
}

/// Creates a drive in an organization (its admins and legal
/// representative).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/drives", tag = "drives", security(("session" = [])),
    params(("org" = String, Path)), request_body = NewDrive,
    responses((status = 201, body = DriveBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiUser(user): ApiUser,
    Path(org): Path<String>,
    ApiJson(new): ApiJson<NewDrive>,
) -> Result<(StatusCode, Json<DriveBody>), ApiError> {
    let drive = state
        .drives()
        .create(Some(&user.account), &org, &new.name, new.quota_bytes)
        .await
        .map_err(drive_error)?;
    Ok((
        StatusCode::CREATED,
        Json(body(&state, &headers, drive, Access::ReadWrite)),
    ))
}
