//! Drives over the JSON API: the ones a member may use, and creating one
//! in an organization.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use drive::{Access, Drive, DriveError, DriveId, DriveMember, FileError, Grant, Import, ImportError, NewImport};
use identity::{AccountId, OrgId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{ApiJson, ApiPath};
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
    /// Files' contents, 512 bytes per folder and the dead properties
    /// WebDAV clients set (see `docs/operations.md`).
    used_bytes: u64,
    /// What you may do: `read` or `read-write`.
    access: String,
    /// What members without a rule of their own may do: `read-write`,
    /// `read` or `none`.
    member_access: String,
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
        id: d.id.get(),
        name: d.name,
        organization_id: d.org_id.into_string(),
        organization: d.org_name,
        quota_bytes: d.quota_bytes,
        used_bytes: d.used_bytes,
        access: access.as_str().to_owned(),
        member_access: d.member_access.as_str().to_owned(),
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
        DriveError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
        DriveError::NotAMember => ApiError::new(StatusCode::NOT_FOUND, "not_a_member", message),
        DriveError::ManagerAlwaysWrites => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "manager_always_writes", message)
        }
        DriveError::Org(inner) => ApiError::from(inner),
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
    ApiPath(org): ApiPath<OrgId>,
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

/// An import into a drive ("Import external data"). The source password
/// is never shown; it is erased when the import ends.
#[derive(Serialize, ToSchema)]
pub struct ImportBody {
    id: String,
    /// `queued`, `running`, `done`, `failed` or `cancelled`
    state: String,
    /// Empty for members who may only read the drive.
    source_url: String,
    /// Empty for members who may only read the drive.
    source_user: String,
    /// Destination folder in the drive.
    folder: String,
    files_found: u64,
    files_done: u64,
    bytes_done: u64,
    files_failed: u64,
    current_file: String,
    /// Why the import stopped, when it failed.
    error: String,
    cancel_requested: bool,
    created_at: i64,
    finished_at: Option<i64>,
}

pub fn import_body(i: Import) -> ImportBody {
    ImportBody {
        id: i.id,
        state: i.state.as_str().to_owned(),
        source_url: i.source_url,
        source_user: i.source_user,
        folder: i.folder,
        files_found: i.files_found,
        files_done: i.files_done,
        bytes_done: i.bytes_done,
        files_failed: i.files_failed,
        current_file: i.current_file,
        error: i.error,
        cancel_requested: i.cancel_requested,
        created_at: i.created_at,
        finished_at: i.finished_at,
    }
}

#[derive(Serialize, ToSchema)]
pub struct ImportsBody {
    imports: Vec<ImportBody>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportFailure {
    path: String,
    error: String,
}

#[derive(Serialize, ToSchema)]
pub struct ImportReport {
    #[serde(flatten)]
    import: ImportBody,
    /// Files that could not be copied (at most 1,000), by path.
    failures: Vec<ImportFailure>,
}

#[derive(Deserialize, ToSchema)]
pub struct NewImportBody {
    /// The WebDAV folder to copy, e.g. `https://nas.example.org/dav/Photos`
    /// (another server, or one of our drives' addresses).
    source_url: String,
    user: String,
    password: String,
    /// The existing folder of the drive to copy into; `/` when left out.
    folder: Option<String>,
}

pub fn import_error(e: ImportError) -> ApiError {
    let message = e.to_string();
    match e {
        ImportError::InvalidSource => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_source", message),
        ImportError::NoFolder => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_such_folder", message),
        ImportError::SourceNotAllowed => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "source_not_allowed", message),
        ImportError::NotFound | ImportError::File(FileError::NoDrive) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
        }
        ImportError::File(FileError::ReadOnly) => ApiError::new(StatusCode::FORBIDDEN, "read_only", message),
        ImportError::File(FileError::InvalidPath(_)) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_such_folder", message)
        }
        ImportError::File(other) => ApiError::internal(other),
        ImportError::Store(inner) => ApiError::internal(inner),
    }
}

/// Starts copying a WebDAV folder into the drive in the background.
#[utoipa::path(post, path = "/api/v1/drives/{drive}/imports", tag = "drives", security(("session" = [])),
    params(("drive" = u64, Path)), request_body = NewImportBody,
    responses((status = 201, body = ImportBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start_import(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(drive): ApiPath<DriveId>,
    ApiJson(new): ApiJson<NewImportBody>,
) -> Result<(StatusCode, Json<ImportBody>), ApiError> {
    let started = state
        .drives()
        .start_import(
            &user.account,
            drive,
            NewImport {
                source_url: &new.source_url,
                user: &new.user,
                password: &new.password,
                folder: new.folder.as_deref().unwrap_or("/"),
            },
        )
        .await
        .map_err(import_error)?;
    Ok((StatusCode::CREATED, Json(import_body(started))))
}

/// The drive's imports, newest first, with their progress.
#[utoipa::path(get, path = "/api/v1/drives/{drive}/imports", tag = "drives", security(("session" = [])),
    params(("drive" = u64, Path)),
    responses((status = 200, body = ImportsBody), (status = 404, body = ErrorBody)))]
pub async fn imports(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(drive): ApiPath<DriveId>,
) -> Result<Json<ImportsBody>, ApiError> {
    let list = state
        .drives()
        .imports(&user.account, drive)
        .await
        .map_err(import_error)?;
    Ok(Json(ImportsBody {
        imports: list.into_iter().map(import_body).collect(),
    }))
}

/// One import: progress and the files that could not be copied.
#[utoipa::path(get, path = "/api/v1/drives/{drive}/imports/{id}", tag = "drives", security(("session" = [])),
    params(("drive" = u64, Path), ("id" = String, Path)),
    responses((status = 200, body = ImportReport), (status = 404, body = ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath((drive, id)): ApiPath<(DriveId, String)>,
) -> Result<Json<ImportReport>, ApiError> {
    let (import, failures) = state
        .drives()
        .import(&user.account, drive, &id)
        .await
        .map_err(import_error)?;
    Ok(Json(ImportReport {
        import: import_body(import),
        failures: failures
            .into_iter()
            .map(|(path, error)| ImportFailure { path, error })
            .collect(),
    }))
}

/// Stops an import; it ends as `cancelled` (files already copied stay).
#[utoipa::path(post, path = "/api/v1/drives/{drive}/imports/{id}/cancel", tag = "drives", security(("session" = [])),
    params(("drive" = u64, Path), ("id" = String, Path)),
    responses((status = 202, body = ImportBody), (status = 404, body = ErrorBody)))]
pub async fn cancel_import(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath((drive, id)): ApiPath<(DriveId, String)>,
) -> Result<(StatusCode, Json<ImportBody>), ApiError> {
    let drives = state.drives();
    drives
        .cancel_import(&user.account, drive, &id)
        .await
        .map_err(import_error)?;
    let (import, _) = drives.import(&user.account, drive, &id).await.map_err(import_error)?;
    Ok((StatusCode::ACCEPTED, Json(import_body(import))))
}

/// A member of the drive's organization and what they may do on it.
#[derive(Serialize, ToSchema)]
pub struct DriveMemberBody {
    account_id: String,
    email: String,
    name: String,
    /// Their role in the organization; admins and the legal
    /// representative always read and write.
    role: String,
    /// Their own rule (`read-write`, `read` or `none`), or null for the
    /// drive's member access.
    rule: Option<String>,
    /// What that comes to: `read-write`, `read` or `none`.
    access: String,
}

fn member_body(m: DriveMember) -> DriveMemberBody {
    DriveMemberBody {
        access: m.access.map_or("none", Access::as_str).to_owned(),
        rule: m.grant.map(|g| g.as_str().to_owned()),
        role: m.member.role.as_str().to_owned(),
        account_id: m.member.account_id.into_string(),
        email: m.member.email,
        name: m.member.name,
    }
}

/// Who may use a drive.
#[derive(Serialize, ToSchema)]
pub struct DriveAccessBody {
    drive: u64,
    /// What members without a rule of their own may do: `read-write`,
    /// `read` or `none`.
    member_access: String,
    /// Every member of the organization, by email.
    members: Vec<DriveMemberBody>,
}

async fn access_body(
    state: &AppState,
    user: &crate::auth::Authed,
    drive: DriveId,
) -> Result<DriveAccessBody, ApiError> {
    let (drive, members) = state
        .drives()
        .members(Some(&user.account), drive)
        .await
        .map_err(drive_error)?;
    Ok(DriveAccessBody {
        drive: drive.id.get(),
        member_access: drive.member_access.as_str().to_owned(),
        members: members.into_iter().map(member_body).collect(),
    })
}

fn grant(text: &str) -> Result<Grant, ApiError> {
    text.parse().map_err(|e: drive::UnknownGrant| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_access", e.to_string())
    })
}

/// Who may use the drive (the organization's admins and legal
/// representative).
#[utoipa::path(get, path = "/api/v1/drives/{drive}/access", tag = "drives", security(("session" = [])),
    params(("drive" = u64, Path)),
    responses((status = 200, body = DriveAccessBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn access(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(drive): ApiPath<DriveId>,
) -> Result<Json<DriveAccessBody>, ApiError> {
    Ok(Json(access_body(&state, &user, drive).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct MemberAccessBody {
    /// `read-write`, `read` or `none`.
    member_access: String,
}

/// Sets what members without a rule of their own may do on the drive.
#[utoipa::path(put, path = "/api/v1/drives/{drive}/access", tag = "drives", security(("session" = [])),
    params(("drive" = u64, Path)), request_body = MemberAccessBody,
    responses((status = 200, body = DriveAccessBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set_member_access(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath(drive): ApiPath<DriveId>,
    ApiJson(change): ApiJson<MemberAccessBody>,
) -> Result<Json<DriveAccessBody>, ApiError> {
    let grant = grant(&change.member_access)?;
    state
        .drives()
        .set_member_access(Some(&user.account), drive, grant)
        .await
        .map_err(drive_error)?;
    Ok(Json(access_body(&state, &user, drive).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct RuleBody {
    /// `read-write`, `read` or `none`.
    access: String,
}

/// Gives one member a rule of their own on the drive.
#[utoipa::path(put, path = "/api/v1/drives/{drive}/access/{account}", tag = "drives", security(("session" = [])),
    params(("drive" = u64, Path), ("account" = String, Path)), request_body = RuleBody,
    responses((status = 200, body = DriveMemberBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set_rule(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath((drive, account)): ApiPath<(DriveId, AccountId)>,
    ApiJson(rule): ApiJson<RuleBody>,
) -> Result<Json<DriveMemberBody>, ApiError> {
    let grant = grant(&rule.access)?;
    let member = state
        .drives()
        .set_grant(Some(&user.account), drive, &account, Some(grant))
        .await
        .map_err(drive_error)?;
    Ok(Json(member_body(member)))
}

/// Takes a member's own rule away: they get the drive's member access.
#[utoipa::path(delete, path = "/api/v1/drives/{drive}/access/{account}", tag = "drives", security(("session" = [])),
    params(("drive" = u64, Path), ("account" = String, Path)),
    responses((status = 200, body = DriveMemberBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_rule(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiPath((drive, account)): ApiPath<(DriveId, AccountId)>,
) -> Result<Json<DriveMemberBody>, ApiError> {
    let member = state
        .drives()
        .set_grant(Some(&user.account), drive, &account, None)
        .await
        .map_err(drive_error)?;
    Ok(Json(member_body(member)))
}
