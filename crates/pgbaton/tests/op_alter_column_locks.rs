//! `alter_column`'s declared locks against what PostgreSQL takes: every transactional step of the
//! primary-key swap, of start and of the in-place `varchar` widening run for real, each checked
//! against `pg_locks` and `pg_stat_xact_user_tables` before it commits. (Split from
//! `op_alter_column.rs`, which covers the lifecycle.)

mod common;

use common::lifecycle::*;

/// Runs every transactional step of `steps` for real, each in its own transaction, and checks
/// before committing that the strongest lock `pg_locks` shows on the step's table is the one it
/// declares, and that a catalog-only step read no rows of any table (`pg_stat_xact_user_tables`).
async fn run_traced(env: &Env, steps: &[pgbaton::step::Step]) {
    use pgbaton::step::{Action, LockLevel, Work};
    for step in steps {
        // A fresh session per step: `pg_stat_xact_*` also counts a session's earlier, not yet
        // flushed transactions.
        let client = client(env).await;
        let sql = match &step.action {
            Action::Transaction(sql) => sql.clone(),
            _ => panic!("step {} is not transactional", step.title),
        };
        client.batch_execute("BEGIN").await.expect("begin");
        for s in &sql {
            client
                .batch_execute(s)
                .await
                .unwrap_or_else(|e| panic!("{}: {s}: {}", step.title, common::describe(&e)));
        }
        if let Some(table) = &step.table {
            let modes: Vec<String> = client
                .query(
                    "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND relation = to_regclass($1)",
                    &[&table.to_string()],
                )
                .await
                .expect("pg_locks")
                .iter()
                .map(|r| r.get(0))
                .collect();
            let strongest = [
                LockLevel::AccessExclusive,
                LockLevel::Exclusive,
                LockLevel::ShareRowExclusive,
                LockLevel::Share,
                LockLevel::ShareUpdateExclusive,
                LockLevel::RowExclusive,
                LockLevel::RowShare,
                LockLevel::AccessShare,
            ]
            .into_iter()
            .find(|l| {
                l.pg_locks_mode()
                    .is_some_and(|m| modes.iter().any(|x| x == m))
            });
            assert_eq!(
                strongest,
                Some(step.lock),
                "{}: declared {:?}, pg_locks {modes:?}",
                step.title,
                step.lock
            );
        }
        if step.work == Work::Catalog {
            let read: i64 = client
                .query_one(
                    "SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0)::bigint FROM pg_stat_xact_user_tables WHERE schemaname = 'public'",
                    &[],
                )
                .await
                .expect("stats")
                .get(0);
            assert_eq!(
                read, 0,
                "{} is declared catalog-only but read {read} rows",
                step.title
            );
        }
        client.batch_execute("COMMIT").await.expect("commit");
    }
}

#[tokio::test]
async fn declared_locks_of_the_primary_key_swap_match_pg_locks() {
    let env = Env::new().await;
    env.sql(
        "CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE pets (id serial PRIMARY KEY, owner int REFERENCES people (id));
         INSERT INTO people (name) SELECT 'p' || g FROM generate_series(1, 2000) g;
         INSERT INTO pets (owner) SELECT 1 + g % 2000 FROM generate_series(1, 2000) g;",
    )
    .await;
    let migration = yaml(
        "02_widen_pk",
        "operations:
  - alter_column:
      table: people
      column: id
      type: bigint
      up: id
      down: CAST(id AS integer)
",
    );
    let m = env.migrator().await;
    let plan = m.plan(&migration).await.expect("plan");
    assert!(plan.lock_violations().is_empty());
    m.start(&migration, false)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    // The complete phase, step by step (the version schema of the previous version: none).
    let steps: Vec<_> = plan
        .complete
        .iter()
        .filter(|s| matches!(s.action, pgbaton::step::Action::Transaction(_)))
        .cloned()
        .collect();
    assert!(steps.iter().any(|s| s.title.starts_with("contract")));
    assert!(steps
        .iter()
        .any(|s| s.title.starts_with("re-create foreign key")));
    run_traced(&env, &steps).await;
    let rows = client(&env)
        .await
        .query(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'id'
             UNION ALL SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'pets'::regclass AND contype = 'f'
             UNION ALL SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'people'::regclass AND contype = 'p'",
            &[],
        )
        .await
        .expect("shape");
    let shape: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        shape,
        [
            "bigint",
            "FOREIGN KEY (owner) REFERENCES people(id)",
            "PRIMARY KEY (id)"
        ]
    );
}

#[tokio::test]
async fn declared_locks_of_start_steps_and_the_in_place_widening_match_pg_locks() {
    let env = Env::new().await;
    env.sql(
        "CREATE TABLE users (id serial PRIMARY KEY, email varchar(100) NOT NULL, bio text CHECK (bio <> ''));
         CREATE INDEX users_email_idx ON users (email);
         INSERT INTO users (email, bio) SELECT 'u' || g, 'b' FROM generate_series(1, 2000) g;",
    )
    .await;
    // Copy path: the catalog steps of start on the table (copies, write window, trigger, the
    // counting of writes per version, NOT VALID constraints), in order, without the fill between
    // them.
    let copy = yaml(
        "02_copy",
        "operations:
  - alter_column:
      table: users
      column: bio
      type: varchar(50)
      nullable: false
      up: coalesce(bio, 'none')
      down: bio
",
    );
    let m = env.migrator().await;
    let plan = m.plan(&copy).await.expect("plan");
    let catalog: Vec<_> = plan
        .start
        .iter()
        .filter(|s| {
            matches!(s.action, pgbaton::step::Action::Transaction(_))
                && s.table.as_ref().is_some_and(|t| t.name.as_str() == "users")
        })
        .cloned()
        .collect();
    assert_eq!(catalog.len(), 5, "{catalog:#?}");
    run_traced(&env, &catalog).await;
    env.sql("ALTER TABLE users DROP COLUMN _pgbaton_new_bio; DROP TRIGGER _pgbaton_dual_write ON users; DROP FUNCTION _pgbaton_dw_users(); ALTER TABLE users DROP COLUMN _pgbaton_touched; DROP SEQUENCE _pgbaton_ww_users;
             DROP TRIGGER _pgbaton_version_writes ON users; DROP FUNCTION _pgbaton_vw_users(); DROP FUNCTION _pgbaton_vwc_users(boolean);
             DROP SEQUENCE _pgbaton_vco_users, _pgbaton_vto_users, _pgbaton_vcn_users, _pgbaton_vtn_users").await;

    // Catalog path: the widening at complete, views re-created around it, nothing read.
    let widen = yaml(
        "02_widen",
        "operations:
  - alter_column:
      table: users
      column: email
      type: varchar(200)
      up: email
      down: email
",
    );
    let plan = m.plan(&widen).await.expect("plan");
    assert!(
        plan.start.iter().all(|s| s.table.is_none()),
        "only the version schema at start"
    );
    m.start(&widen, false)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let contract: Vec<_> = plan
        .complete
        .iter()
        .filter(|s| s.title.starts_with("contract"))
        .cloned()
        .collect();
    assert_eq!(contract.len(), 1);
    run_traced(&env, &contract).await;
    let len: i32 = client(&env)
        .await
        .query_one(
            "SELECT character_maximum_length FROM information_schema.columns WHERE table_schema = 'public_02_widen' AND table_name = 'users' AND column_name = 'email'",
            &[],
        )
        .await
        .expect("view column")
        .get(0);
    assert_eq!(
        len, 200,
        "the version schema's view was re-created with the new type"
    );
}
