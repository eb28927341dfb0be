//! pgroll's 56 example migrations (tests/fixtures/pgroll/examples, with their licence notice) run unchanged:
//! `migrate --complete` applies them all in order, and each one on its own survives
//! start → rollback (schema exactly as before) → start → complete.

mod common;

use std::path::PathBuf;

use common::lifecycle::Env;
use pgbaton::format;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pgroll/examples")
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_complete_applies_every_example_in_order() {
    let env = Env::new().await;
    let m = env.migrator().await;
    let applied = m
        .migrate(&examples_dir(), true)
        .await
        .unwrap_or_else(|e| panic!("migrate failed: {e}"));
    let files = format::load_dir(&examples_dir()).expect("examples load");
    assert_eq!(files.len(), 56);
    assert_eq!(
        applied,
        files.iter().map(|f| f.name.clone()).collect::<Vec<_>>()
    );
    let status = m.status().await.expect("status");
    assert!(status.active.is_none());
    assert_eq!(status.completed_count, 56);
    // Running it again is a no-op: the history matches the directory.
    let again = m
        .migrate(&examples_dir(), true)
        .await
        .expect("second migrate");
    assert!(again.is_empty());
    // The last version schema works: the view of a table created by the examples is readable.
    let (_, vs) = m.latest().await.expect("latest").expect("some");
    assert_eq!(
        vs, "public_with_version_schema",
        "example 56 sets version_schema"
    );
    env.sql(&format!(
        "SELECT * FROM {}.products",
        pgbaton::ident::quote_ident(&vs)
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_survives_start_rollback_start_complete() {
    let env = Env::new().await;
    let m = env.migrator().await;
    for file in format::load_dir(&examples_dir()).expect("examples load") {
        // A start-time `sql` without `down` cannot be rolled back (pgroll's rule too: nothing
        // undoes it), so such a file only gets start → complete.
        let irreversible = file.operations.iter().any(|op| {
            matches!(op, pgbaton::ops::Op::RawSql(sql) if !sql.on_complete && sql.down.is_empty())
        });
        if irreversible {
            assert_eq!(file.name, "40_create_enum_type", "the only such example");
            m.start(&file, true)
                .await
                .unwrap_or_else(|e| panic!("{}: start failed: {e}", file.name));
            continue;
        }
        let before = common::schema_dump(&env.db.url, "public");
        m.start(&file, false)
            .await
            .unwrap_or_else(|e| panic!("{}: start failed: {e}", file.name));
        m.rollback(false)
            .await
            .unwrap_or_else(|e| panic!("{}: rollback failed: {e}", file.name));
        let after = common::schema_dump(&env.db.url, "public");
        assert_eq!(
            before, after,
            "{}: rollback must leave the schema exactly as before",
            file.name
        );
        m.start(&file, false)
            .await
            .unwrap_or_else(|e| panic!("{}: second start failed: {e}", file.name));
        m.complete()
            .await
            .unwrap_or_else(|e| panic!("{}: complete failed: {e}", file.name));
    }
}
