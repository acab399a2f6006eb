//! The quota rule: bytes are charged to a drive in the statement that
//! stores them, only while they fit.

use identity::StoreError;

use super::rows::signed;
use crate::db::Run;

/// Charges `bytes` to the drive's quota in the transaction (a negative
/// amount gives space back); `false` when the drive would exceed its
/// quota. Giving back always succeeds.
pub(super) async fn charge(conn: &mut sqlx::AnyConnection, drive_id: u64, bytes: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE drives SET used_bytes = used_bytes + $2 WHERE id = $1 AND ($2 <= 0 OR used_bytes + $2 <= quota_bytes)",
    )
    .bind(signed(drive_id)?)
    .bind(bytes)
    .run(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
