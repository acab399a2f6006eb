//! [`identity::ThrottleStore`] over SQL.

use async_trait::async_trait;
use identity::softlock::ThrottleState;
use identity::{StoreError, ThrottleRecord, ThrottleRelease, ThrottleReservation, ThrottleStore};

use crate::SqlStore;
use crate::changes::{Arg, Change, write_changes};
use crate::db::{Columns, Run, backend};

/// Reserves one attempt on `key` (see `IdentityStore::reserve_throttle`).
/// The check and the increment are one statement: two concurrent attempts
/// cannot both take the last room. Reservations do not bump the version;
/// a settled failure does, so room computed from an older state is
/// refused and computed again.
pub(super) fn reserve_throttle<'q>(
    key: &'q str,
    r: &ThrottleReservation,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO throttles (key, failures, last_failure, locked_until, version, in_flight, reserved_at)
         VALUES ($1, 0, 0, 0, 0, 1, $2)
         ON CONFLICT (key) DO UPDATE SET
             in_flight = CASE WHEN throttles.reserved_at <= $3 THEN 1 ELSE throttles.in_flight + 1 END,
             reserved_at = $2
         WHERE throttles.version = $4 AND (throttles.in_flight < $5 OR throttles.reserved_at <= $3)",
    )
    .bind(key)
    .bind(r.now)
    .bind(r.lapsed_before)
    .bind(r.version)
    .bind(i64::from(r.open))
}

/// The statement that gives back the room of reserved attempts (none for
/// none); a success (`forget`) also forgets the key's failures. Rows stay
/// while other attempts are in flight: deleting one would free their room
/// too. A key named twice gives back twice (one statement cannot update a
/// row twice on PostgreSQL, so each key's count is in the statement).
pub(super) fn release_change(releases: &[ThrottleRelease]) -> Option<Change<'_>> {
    // Each key once, in order, with how many attempts it gives back and
    // whether one of them succeeded.
    let mut keys: Vec<(&str, usize, bool)> = Vec::with_capacity(releases.len());
    for release in releases {
        match keys.iter_mut().find(|(key, ..)| *key == release.key) {
            Some((_, count, forget)) => {
                *count += 1;
                *forget |= release.forget;
            }
            None => keys.push((&release.key, 1, release.forget)),
        }
    }
    if keys.is_empty() {
        return None;
    }
    let placeholder = |i: usize| format!("${}", i + 1);
    let forget: Vec<String> = (0..keys.len()).filter(|&i| keys[i].2).map(placeholder).collect();
    let forgotten = if forget.is_empty() {
        "FALSE".to_owned()
    } else {
        format!("key IN ({})", forget.join(", "))
    };
    let given_back = if keys.iter().all(|(_, count, _)| *count == 1) {
        "1".to_owned()
    } else {
        let arms: String = (0..keys.len())
            .map(|i| format!(" WHEN {} THEN {}", placeholder(i), keys[i].1))
            .collect();
        format!("(CASE key{arms} END)")
    };
    let sql = format!(
        "UPDATE throttles SET
             in_flight = CASE WHEN in_flight > {given_back} THEN in_flight - {given_back} ELSE 0 END,
             failures = CASE WHEN {forgotten} THEN 0 ELSE failures END,
             last_failure = CASE WHEN {forgotten} THEN 0 ELSE last_failure END,
             locked_until = CASE WHEN {forgotten} THEN 0 ELSE locked_until END,
             version = CASE WHEN {forgotten} THEN version + 1 ELSE version END
         WHERE key IN ({})",
        (0..keys.len()).map(placeholder).collect::<Vec<_>>().join(", ")
    );
    Some(Change::new(sql, keys.iter().map(|(key, ..)| Arg::Text(key)).collect()))
}

/// A throttle record from a row with its columns.
pub(super) fn throttle_from(row: &(impl Columns + ?Sized)) -> Result<ThrottleRecord, StoreError> {
    Ok(ThrottleRecord {
        state: ThrottleState {
            failures: row.count("failures")?,
            last_failure: row.int("last_failure")?,
            locked_until: row.int("locked_until")?,
        },
        version: row.int("version")?,
    })
}

#[async_trait]
impl ThrottleStore for SqlStore {
    async fn throttle(&self, key: &str) -> Result<Option<ThrottleRecord>, StoreError> {
        Ok(self.throttles(&[key]).await?.pop().flatten())
    }

    async fn throttles(&self, keys: &[&str]) -> Result<Vec<Option<ThrottleRecord>>, StoreError> {
        let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT key, failures, last_failure, locked_until, version FROM throttles WHERE key IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in keys {
            query = query.bind(*key);
        }
        let rows = query.all(&self.pool).await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: String = row.text("key")?;
            found.push((key, throttle_from(row)?));
        }
        Ok(keys
            .iter()
            .map(|k| found.iter().find(|(key, _)| key == k).map(|(_, r)| *r))
            .collect())
    }

    async fn reserve_throttle(&self, key: &str, r: ThrottleReservation) -> Result<bool, StoreError> {
        let done = reserve_throttle(key, &r)
            .execute(&*self.writer.turn().await)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn reserve_throttles(&self, reservations: &[(&str, ThrottleReservation)]) -> Result<bool, StoreError> {
        // One statement for every key (a sign-in reserves two): one turn
        // at the writer without a transaction around it, one round trip.
        // It takes what room it finds; the keys it got are returned, and
        // given back when one was missing. Rows are written in key order,
        // so two of these on PostgreSQL lock them in the same order.
        let mut sorted: Vec<&(&str, ThrottleReservation)> = reservations.iter().collect();
        sorted.sort_by_key(|(key, _)| *key);
        let mut values = Vec::with_capacity(sorted.len());
        let mut room = Vec::with_capacity(sorted.len());
        let mut lapsed_room = Vec::with_capacity(sorted.len());
        for i in 0..sorted.len() {
            let [key, now, lapsed, version, open] = std::array::from_fn(|k| 5 * i + k + 1);
            values.push(format!("(${key}, 0, 0, 0, 0, 1, ${now})"));
            lapsed_room.push(format!(
                "(throttles.key = ${key} AND throttles.reserved_at <= ${lapsed})"
            ));
            room.push(format!(
                "(throttles.key = ${key} AND throttles.version = ${version}
                  AND (throttles.in_flight < ${open} OR throttles.reserved_at <= ${lapsed}))"
            ));
        }
        let sql = format!(
            "INSERT INTO throttles (key, failures, last_failure, locked_until, version, in_flight, reserved_at)
             VALUES {}
             ON CONFLICT (key) DO UPDATE SET
                 in_flight = CASE WHEN {} THEN 1 ELSE throttles.in_flight + 1 END,
                 reserved_at = excluded.reserved_at
             WHERE {}
             RETURNING key",
            values.join(", "),
            lapsed_room.join(" OR "),
            room.join(" OR ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (key, r) in &sorted {
            query = query
                .bind(*key)
                .bind(r.now)
                .bind(r.lapsed_before)
                .bind(r.version)
                .bind(i64::from(r.open));
        }
        let rows = query.all(&*self.writer.turn().await).await?;
        if rows.len() == sorted.len() {
            return Ok(true);
        }
        let mut taken = Vec::with_capacity(rows.len());
        for row in &rows {
            taken.push(ThrottleRelease {
                key: row.text("key")?,
                forget: false,
            });
        }
        if !taken.is_empty() {
            self.release_throttles(&taken).await?;
        }
        Ok(false)
    }

    async fn swap_throttle(&self, key: &str, expected: Option<i64>, state: ThrottleState) -> Result<bool, StoreError> {
        let failures = i64::from(state.failures);
        let done = match expected {
            None => sqlx::query(
                "INSERT INTO throttles (key, failures, last_failure, locked_until, version) VALUES ($1, $2, $3, $4, 1)
                 ON CONFLICT (key) DO UPDATE SET failures = $2, last_failure = $3, locked_until = $4,
                     version = throttles.version + 1,
                     in_flight = CASE WHEN throttles.in_flight > 0 THEN throttles.in_flight - 1 ELSE 0 END",
            )
            .bind(key)
            .bind(failures)
            .bind(state.last_failure)
            .bind(state.locked_until)
            .execute(&*self.writer.turn().await)
            .await,
            Some(version) => {
                sqlx::query(
                    "UPDATE throttles SET failures = $2, last_failure = $3, locked_until = $4, version = version + 1,
                         in_flight = CASE WHEN in_flight > 0 THEN in_flight - 1 ELSE 0 END
                     WHERE key = $1 AND version = $5",
                )
                .bind(key)
                .bind(failures)
                .bind(state.last_failure)
                .bind(state.locked_until)
                .bind(version)
                .execute(&*self.writer.turn().await)
                .await
            }
        };
        Ok(done.map_err(backend)?.rows_affected() == 1)
    }

    async fn release_throttles(&self, releases: &[ThrottleRelease]) -> Result<(), StoreError> {
        match release_change(releases) {
            Some(change) => write_changes(&self.writer, &[change]).await,
            None => Ok(()),
        }
    }
}
