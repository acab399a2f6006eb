//! The quota rule: bytes are charged to a drive in the statement that
//! stores them, only while they fit. The rule is written once, as the SQL
//! condition [`fits_quota`]; each statement that charges (one file, a
//! batch of new files on PostgreSQL, a replaced file, a folder or a
//! property) puts it in its own text at compile time, so the statements
//! the database sees are the same as if it were spelled out in each.

use drive::DriveId;
use identity::StoreError;

use super::rows::signed;
use crate::db::Run;

/// The condition, on a row of `drives`, that `$bytes` (a placeholder)
/// more bytes fit its quota.
macro_rules! fits_quota {
    ($bytes:literal) => {
        concat!("used_bytes + ", $bytes, " <= quota_bytes")
    };
}
pub(super) use fits_quota;

/// Charges `bytes` to the drive's quota in the transaction (a negative
/// amount gives space back); `false` when the drive would exceed its
/// quota. Giving back always succeeds.
pub(super) async fn charge(conn: &mut sqlx::AnyConnection, drive_id: DriveId, bytes: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(concat!(
        "UPDATE drives SET used_bytes = used_bytes + $2 WHERE id = $1 AND ($2 <= 0 OR ",
        fits_quota!("$2"),
        ")"
    ))
    .bind(signed(drive_id)?)
    .bind(bytes)
    .run(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
