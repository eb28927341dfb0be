//! The lifecycle itself, end to end through the migrator: init, the journal, version schemas,
//! concurrent migrators, and the errors that must come before any DDL runs.

mod common;

use common::lifecycle::*;

#[tokio::test]
async fn init_is_idempotent_and_status_reports_nothing_active() {
    let env = Env::new().await;
    let m = env.migrator().await;
    m.init().await.expect("second init");
    let status = m.status().await.expect("status");
    assert!(status.initialized);
    assert!(status.active.is_none());
    assert_eq!(status.completed_count, 0);
}
