//! Dead properties: what they weigh against the quota and the flag that tells a node has some.

use drive::NodeId;
use identity::StoreError;

use super::rows::signed;
use crate::db::{Columns, Run};

/// What the dead properties of node `id` take from the quota
/// ([`drive::prop_bytes`]), as the transaction sees them.
pub(super) async fn props_bytes(conn: &mut sqlx::AnyConnection, id: &NodeId) -> Result<i64, StoreError> {
    let rows = sqlx::query("SELECT namespace, name, xml FROM drive_props WHERE node_id = $1")
        .bind(id.as_str())
        .all(conn)
        .await?;
    charged_props(&rows)
}

/// [`drive::prop_bytes`] of rows of `namespace, name, xml`.
pub(super) fn charged_props(rows: &[sqlx::any::AnyRow]) -> Result<i64, StoreError> {
    let mut total = 0;
    for row in rows {
        let text = |column: &str| row.text(column);
        total += drive::prop_bytes(&text("namespace")?, &text("name")?, &text("xml")?);
    }
    signed(total)
}

/// Sets the node's `has_props` to whether it has dead properties now,
/// in the transaction that changed them.
pub(super) async fn mark_props(conn: &mut sqlx::AnyConnection, node_id: &NodeId) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE drive_nodes
         SET has_props = CASE WHEN EXISTS (SELECT 1 FROM drive_props p WHERE p.node_id = $1) THEN 1 ELSE 0 END
         WHERE id = $1",
    )
    .bind(node_id.as_str())
    .run(conn)
    .await?;
    Ok(())
}
