//! What only SQLite does: the commit queue on a thread of its own with its
//! own connection, and folder pages read on the calling task.

use identity::StoreError;

use super::commits::{
    COMMIT_BATCH, FileCommit, answer, commit_batch, new_file_changes, new_file_outcomes, outcomes_of,
};
use super::walk::PageRow;
use crate::sqlite_commits::CommitConnection;
use crate::sqlite_reads::failed;
use crate::writer::Writer;

impl PageRow for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.get(i).map_err(failed)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.get(i).map_err(failed)
    }
}

/// The commit queue (see [`commit_files_on_postgres`]) on SQLite, on a
/// thread of its own: a batch of new files is one transaction of its own
/// connection (`commits`, see [`crate::sqlite_commits`]), which the thread
/// runs once it is the process's turn to write; a batch that replaces
/// files goes through `writer`, on `runtime`.
pub(crate) fn commit_files_on_sqlite(
    writer: Writer,
    mut commits: CommitConnection,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<FileCommit>,
    runtime: tokio::runtime::Handle,
) {
    let mut batch = Vec::with_capacity(COMMIT_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < COMMIT_BATCH {
            let Ok(file) = queue.try_recv() else { break };
            batch.push(file);
        }
        let files: Vec<&FileCommit> = batch.iter().collect();
        let committed = if files.iter().all(|f| f.replaced.is_none()) {
            new_file_changes(&files)
                .and_then(|changes| {
                    let _turn = writer.blocking_turn();
                    commits.commit_counts(&changes)
                })
                .map(|counts| new_file_outcomes(&files, counts))
        } else {
            runtime.block_on(commit_batch(&writer, &files))
        };
        let outcomes = outcomes_of(files.len(), committed).into_iter().map(Some).collect();
        answer(&mut batch, outcomes);
    }
}
