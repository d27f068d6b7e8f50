//! openraft's own conformance suite (`Suite::test_all`, 45 cases) against
//! the hyperlog store, each case on a fresh directory.

use hyperlog_raft::LogStore;
use hyperlog_raft::kv::{StateMachine, TypeConfig};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<TypeConfig>, StateMachine), StorageError<TypeConfig>>
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LogStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("opening the store in {}: {e}", dir.path().display()));
        Ok((dir, store, StateMachine::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_conformance_suite() {
    // A callback never completed would hang the suite: bound it.
    tokio::time::timeout(
        std::time::Duration::from_secs(300),
        Suite::test_all(Builder),
    )
    .await
    .expect("the suite did not finish in 300 s")
    .unwrap();
}
