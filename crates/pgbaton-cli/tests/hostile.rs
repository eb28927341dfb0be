//! Issue #8, as a hostile but fair user tries pgbaton: SQL smuggled through the fields of a
//! migration file, and the exit codes of bad input. Every case runs the real binary against a
//! real server and checks that the database was not touched.

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use common::cli::Cli;

use pgbaton::config::ConnConfig;
use pgbaton::executor::{ExecOptions, Executor, Journal, Quiet};
use pgbaton::ident::{Ident, QualName};
use pgbaton::step::{LockLevel, Phase, Step};

const SETUP: &str = "CREATE TABLE victims (id int PRIMARY KEY); INSERT INTO victims VALUES (1);
     CREATE TABLE users (id int PRIMARY KEY, name text, email text);
     INSERT INTO users SELECT g, 'n' || g, 'e' || g FROM generate_series(1, 100) g;";

/// Each file smuggles a statement through one field; (file name, text, the field's path, line).
fn smuggled() -> Vec<(&'static str, &'static str, &'static str, usize)> {
    vec![
        (
            "01_type.yaml",
            "operations:\n  - add_column:\n      table: users\n      column:\n        name: age\n        type: 'int; DROP TABLE victims; --'\n        nullable: true\n",
            "operations[0].add_column.column.type",
            6,
        ),
        (
            "02_default.yaml",
            "operations:\n  - add_column:\n      table: users\n      column:\n        name: age\n        type: int\n        default: \"1); DROP TABLE victims; --\"\n",
            "operations[0].add_column.column.default",
            7,
        ),
        (
            "03_check.yaml",
            "operations:\n  - add_column:\n      table: users\n      column:\n        name: chk\n        type: int\n        nullable: true\n        check:\n          name: chk_pos\n          constraint: \"chk > 0); DROP TABLE victims; --\"\n",
            "operations[0].add_column.column.check.constraint",
            10,
        ),
        (
            "04_alter_type.yaml",
            "operations:\n  - alter_column:\n      table: users\n      column: id\n      type: \"bigint; DROP TABLE victims; --\"\n      up: id\n      down: id\n",
            "operations[0].alter_column.type",
            5,
        ),
        (
            "05_up.yaml",
            "operations:\n  - alter_column:\n      table: users\n      column: email\n      type: varchar(200)\n      up: \"email); DROP TABLE victims; SELECT (1\"\n      down: email\n",
            "operations[0].alter_column.up",
            6,
        ),
        (
            "06_predicate.yaml",
            "operations:\n  - create_index:\n      name: users_name\n      table: users\n      columns: [name]\n      predicate: \"id > 0; DROP TABLE victims\"\n",
            "operations[0].create_index.predicate",
            6,
        ),
        (
            "07_storage.yaml",
            "operations:\n  - create_index:\n      name: users_name\n      table: users\n      columns: [name]\n      storage_parameters: \"fillfactor = 70); DROP TABLE victims; --\"\n",
            "operations[0].create_index.storage_parameters",
            6,
        ),
        (
            "08_create_table.yaml",
            "operations:\n  - create_table:\n      name: t2\n      columns:\n        - name: id\n          type: int\n          pk: true\n        - name: x\n          type: \"text); DROP TABLE victims; CREATE TABLE t3 (x text\"\n",
            "operations[0].create_table.columns[1].type",
            9,
        ),
        (
            "09_table_check.yaml",
            "operations:\n  - create_table:\n      name: t2\n      columns:\n        - name: id\n          type: int\n          pk: true\n      constraints:\n        - name: c\n          type: check\n          check: \"id > 0) NOT VALID; DROP TABLE victims; --\"\n",
            "operations[0].create_table.constraints[0].check",
            11,
        ),
    ]
}

/// Issue #8, item 1: `validate`, `plan` and `start` refuse every smuggled statement with exit 3,
/// naming the file, the line and the field, and `victims` is still there.
#[tokio::test]
async fn smuggled_statements_are_refused_before_any_ddl() {
    let cli = Cli::new("smuggle").await;
    cli.sql(SETUP).await;
    let before = common::schema_dump(&cli.db.url, "public");
    for (name, text, field, line) in smuggled() {
        let path = cli.file(name, text);
        for command in ["validate", "plan", "start"] {
            let out = cli.expect(&[command, &path], 3);
            assert!(
                out.contains(&format!("{path}:{line}")) && out.contains(field),
                "{command} {name}: the message names neither {path}:{line} nor {field}:\n{out}"
            );
            assert!(
                cli.victims_alive().await,
                "{command} {name} dropped victims"
            );
        }
    }
    assert_eq!(common::schema_dump(&cli.db.url, "public"), before);
    assert_eq!(
        cli.count("SELECT count(*) FROM pgbaton.migrations").await,
        0,
        "a refused file left a migration behind"
    );
}

/// A checked fragment is spliced whole: a trailing `--` comment in `type` or `default` does not
/// swallow the rest of the column definition (`DEFAULT`, `NOT NULL`).
#[tokio::test]
async fn a_comment_in_a_fragment_does_not_swallow_the_generated_sql() {
    let cli = Cli::new("comment").await;
    cli.sql(SETUP).await;
    let path = cli.file(
        "01_count.yaml",
        "operations:\n  - add_column:\n      table: users\n      column:\n        name: hits\n        type: 'integer -- how many'\n        default: '7 -- a start'\n        nullable: false\n        check:\n          name: hits_pos\n          constraint: 'hits >= 0 -- never negative'\n",
    );
    cli.expect(&["start", "--complete", &path], 0);
    let row = cli
        .db
        .client
        .query_one(
            "SELECT is_nullable, column_default FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'users' AND column_name = 'hits'",
            &[],
        )
        .await
        .expect("column");
    assert_eq!(row.get::<_, String>(0), "NO");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("7"));
    assert_eq!(
        cli.count("SELECT count(*) FROM users WHERE hits = 7").await,
        100
    );
    assert_eq!(
        cli.count("SELECT count(*) FROM pg_constraint WHERE conname = 'hits_pos'")
            .await,
        1
    );
}

/// In depth: even if a second statement got into a step's SQL, the executor runs each statement
/// through the extended protocol, which refuses it, and the transaction is rolled back whole.
#[tokio::test]
async fn the_executor_never_runs_step_sql_as_a_script() {
    let db = common::fresh_db().await;
    common::exec(
        &db.client,
        "CREATE TABLE victims (id int); CREATE TABLE t (id int PRIMARY KEY)",
    )
    .await;
    let conn = ConnConfig::parse(&db.url).expect("url");
    let client = pgbaton::pg::connect(&conn).await.expect("connect");
    let journal = Journal {
        state: Ident::new("pgbaton"),
        schema: "public".into(),
        migration: "m1".into(),
    };
    pgbaton::state::init(&client, &journal.state)
        .await
        .expect("init");
    let t = QualName::new("public", "t");
    let steps = [
        Step::catalog(
            "a good step",
            Some(t.clone()),
            LockLevel::AccessExclusive,
            "ALTER TABLE public.t ADD COLUMN a int",
        ),
        Step::catalog(
            "a step with a smuggled statement",
            Some(t.clone()),
            LockLevel::AccessExclusive,
            "ALTER TABLE public.t ADD COLUMN b int; DROP TABLE victims",
        ),
    ];
    let opts = ExecOptions::default();
    let exec = Executor::new(&client, &conn, &journal, &opts, &Quiet)
        .await
        .expect("executor");
    let err = exec
        .run_phase(Phase::Start, &steps)
        .await
        .expect_err("a step of two statements must fail");
    assert!(
        err.to_string().contains("multiple commands"),
        "unexpected error: {err}"
    );
    let count = |sql: &'static str| common::scalar_i64(&db.client, sql);
    assert_eq!(
        count("SELECT count(*) FROM pg_class WHERE relname = 'victims'").await,
        1
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' \
             AND column_name = 'b'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' \
             AND column_name = 'a'"
        )
        .await,
        1
    );
}

/// Issue #8, item 2: `up`/`down` resolve names in the migrated schema whatever the writer's
/// search_path: a new-version writer connected with only the version schema on its path (as
/// `pgbaton latest url` gives it) and an old-version writer whose path lacks `public` both write,
/// both columns come out right, and each writer's own search_path is as it set it afterwards.
#[tokio::test]
async fn up_and_down_resolve_names_in_the_migrated_schema() {
    let cli = Cli::new("searchpath").await;
    cli.sql(
        "CREATE FUNCTION public.norm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT lower(trim(t))';
         CREATE TABLE users (id int PRIMARY KEY, email text);
         INSERT INTO users SELECT g, ' E' || g || ' ' FROM generate_series(1, 100) g;",
    )
    .await;
    let path = cli.file(
        "01_norm.yaml",
        "operations:\n  - alter_column:\n      table: users\n      column: email\n      type: varchar(200)\n      up: norm(email)\n      down: norm(email)\n",
    );
    cli.expect(&["start", &path], 0);

    let new_writer = cli.db.connect().await;
    common::exec(&new_writer, "SET search_path = public_01_norm").await;
    common::exec(
        &new_writer,
        "INSERT INTO users (id, email) VALUES (1001, '  New@Writer ');
         UPDATE users SET email = ' Upd@New ' WHERE id = 5",
    )
    .await;
    assert_eq!(
        common::scalar_i64(
            &new_writer,
            "SELECT count(*) FROM pg_settings WHERE name = 'search_path' AND setting = 'public_01_norm'"
        )
        .await,
        1,
        "the new-version writer's search_path changed"
    );

    let old_writer = cli.db.connect().await;
    common::exec(&old_writer, "SET search_path = pg_catalog").await;
    common::exec(
        &old_writer,
        "INSERT INTO public.users (id, email) VALUES (1002, ' Old@Writer ');
         UPDATE public.users SET email = ' Upd@Old ' WHERE id = 6",
    )
    .await;
    assert_eq!(
        common::scalar_i64(
            &old_writer,
            "SELECT count(*) FROM pg_settings WHERE name = 'search_path' AND setting = 'pg_catalog'"
        )
        .await,
        1,
        "the old-version writer's search_path changed"
    );

    let rows = |sql: &'static str| {
        let client = &cli.db.client;
        async move {
            client
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", common::describe(&e)))
                .iter()
                .map(|r| format!("{}|{}", r.get::<_, i32>(0), r.get::<_, String>(1)))
                .collect::<Vec<_>>()
        }
    };
    // The old version's column: `down` of what the new version wrote.
    assert_eq!(
        rows("SELECT id, email FROM public.users WHERE id IN (5, 6, 1001, 1002) ORDER BY id").await,
        [
            "5|upd@new",
            "6| Upd@Old ",
            "1001|new@writer",
            "1002| Old@Writer "
        ]
    );
    // The new version's column: `up` of what the old version wrote.
    assert_eq!(
        rows("SELECT id, email::text FROM public_01_norm.users WHERE id IN (5, 6, 1001, 1002) ORDER BY id")
            .await,
        ["5| Upd@New ", "6|upd@old", "1001|  New@Writer ", "1002|old@writer"]
    );
    // The old version wrote a moment ago (the test's own writes): complete it knowingly.
    cli.expect(&["complete", "--force"], 0);
}

/// Issue #8, item 5: a session that sets `pgbaton.backfill = 'on'` (the backfill's own setting)
/// no longer switches the dual writes off: its write reaches the new version, `verify` finds no
/// mismatch, and `complete` keeps the application's value.
#[tokio::test]
async fn setting_the_backfill_flag_does_not_skip_the_dual_write_trigger() {
    let cli = Cli::new("forge").await;
    cli.sql(
        "CREATE TABLE users (id int PRIMARY KEY, email text);
         INSERT INTO users SELECT g, 'E' || g FROM generate_series(1, 2000) g;",
    )
    .await;
    let path = cli.file(
        "01_lower.yaml",
        "operations:\n  - alter_column:\n      table: users\n      column: email\n      type: varchar(100)\n      up: lower(email)\n      down: email\n",
    );
    cli.expect(&["start", &path], 0);
    let writer = cli.db.connect().await;
    common::exec(
        &writer,
        "BEGIN; SET LOCAL pgbaton.backfill = 'on';
         UPDATE users SET email = 'Forged@Write' WHERE id = 7;
         INSERT INTO users VALUES (5001, 'Forged@Insert');
         COMMIT;",
    )
    .await;
    cli.expect(&["verify"], 0);
    // The flag does not hide the write from the per-version counts either: complete sees the
    // old version writing (exit 4) until told otherwise.
    cli.expect(&["complete"], 4);
    cli.expect(&["complete", "--force"], 0);
    let rows = cli
        .db
        .client
        .query(
            "SELECT email FROM users WHERE id IN (7, 5001) ORDER BY id",
            &[],
        )
        .await
        .expect("read");
    let emails: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(emails, ["forged@write", "forged@insert"]);
}

/// Issue #8, item 6: what only the server can tell about a file is found by `validate`, `plan`
/// and `start` before any DDL (exit 3, naming the file, line and field): a type that does not
/// exist, an `up` naming a missing column or function or yielding the wrong type, a foreign key
/// between types without an equality, a bad second operation after a good first one.
#[tokio::test]
async fn file_against_database_errors_are_found_before_any_ddl() {
    let cli = Cli::new("prechecks").await;
    cli.sql(
        "CREATE TABLE teams (id int PRIMARY KEY);
         CREATE TABLE users (id int PRIMARY KEY, name text, team text);
         INSERT INTO users SELECT g, 'n' || g, 't' FROM generate_series(1, 50) g;",
    )
    .await;
    let before = common::schema_dump(&cli.db.url, "public");
    let add = |column: &str, ty: &str, up: &str| {
        format!(
            "  - add_column:\n      table: users\n      column:\n        name: {column}\n        type: {ty}\n        nullable: true\n      up: \"{up}\"\n"
        )
    };
    let cases = [
        (
            "01_type.yaml",
            format!("operations:\n{}", add("a", "nosuchtype", "1")),
            "2: operations[0].add_column.column.type: type \"nosuchtype\" does not exist",
        ),
        (
            "02_column.yaml",
            format!("operations:\n{}", add("a", "int", "nope + 1")),
            "2: operations[0].add_column.up: column \"nope\" does not exist",
        ),
        (
            "03_function.yaml",
            format!("operations:\n{}", add("a", "int", "no_such_function(id)")),
            "2: operations[0].add_column.up: function no_such_function(integer) does not exist",
        ),
        (
            "04_result_type.yaml",
            format!("operations:\n{}", add("a", "int", "now()")),
            "2: operations[0].add_column.up: column \"v\" is of type integer but expression is of type timestamp with time zone",
        ),
        (
            "05_second.yaml",
            format!(
                "operations:\n{}{}",
                add("a", "int", "id * 2"),
                "  - alter_column:\n      table: teams\n      column: id\n      type: bigint\n      up: missing_col\n      down: id\n"
            ),
            "9: operations[1].alter_column.up: column \"missing_col\" does not exist",
        ),
        (
            "06_fk.yaml",
            "operations:\n  - alter_column:\n      table: users\n      column: team\n      references:\n        name: users_team_fk\n        table: teams\n        column: id\n      up: team\n      down: team\n".to_string(),
            "2: operations[0].alter_column.references: operator does not exist: integer = text",
        ),
    ];
    for (name, text, expected) in &cases {
        let path = cli.file(name, text);
        for command in ["validate", "plan", "start"] {
            let out = cli.expect(&[command, &path], 3);
            assert!(
                out.contains(&format!("{path}:{expected}")),
                "{command} {name}: expected {path}:{expected}\n{out}"
            );
        }
    }
    assert_eq!(common::schema_dump(&cli.db.url, "public"), before);
    assert_eq!(
        cli.count("SELECT count(*) FROM pgbaton.migrations").await,
        0
    );
}

/// Duplicates only the data can tell: a unique column over duplicate values fails at start
/// naming the duplicated key, and the start is rolled back.
#[tokio::test]
async fn a_unique_column_over_duplicates_names_the_key() {
    let cli = Cli::new("dupes").await;
    cli.sql(
        "CREATE TABLE users (id int PRIMARY KEY, email text);
         INSERT INTO users SELECT g, 'e' || (g % 40) FROM generate_series(1, 50) g;",
    )
    .await;
    let before = common::schema_dump(&cli.db.url, "public");
    let path = cli.file(
        "01_unique.yaml",
        "operations:\n  - alter_column:\n      table: users\n      column: email\n      unique:\n        name: users_email_key\n      up: email\n      down: email\n",
    );
    let out = cli.expect(&["start", &path], 1);
    assert!(
        out.contains("Key (") && out.contains("is duplicated"),
        "{out}"
    );
    assert_eq!(common::schema_dump(&cli.db.url, "public"), before);
}

/// Issue #8, item 8: a role that may not create the version schema, or does not own the table,
/// is refused by a check before the first step (exit 4), and nothing is changed.
#[tokio::test]
async fn missing_privileges_are_found_before_the_first_step() {
    let cli = Cli::new("privileges").await;
    cli.sql(&format!(
        "CREATE TABLE users (id int PRIMARY KEY, name text);
         INSERT INTO users SELECT g, 'n' || g FROM generate_series(1, 50) g;
         DROP ROLE IF EXISTS {r}; CREATE ROLE {r} LOGIN;
         GRANT USAGE ON SCHEMA public TO {r};
         GRANT SELECT, INSERT, UPDATE, DELETE ON users TO {r};
         GRANT USAGE ON SCHEMA pgbaton TO {r};
         GRANT ALL ON ALL TABLES IN SCHEMA pgbaton TO {r};
         GRANT ALL ON ALL SEQUENCES IN SCHEMA pgbaton TO {r};
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         REVOKE CREATE ON DATABASE {db} FROM PUBLIC;",
        r = format!("{}_app", cli.db.name),
        db = cli.db.name
    ))
    .await;
    let before = common::schema_dump(&cli.db.url, "public");
    let path = cli.file(
        "01_add.yaml",
        "operations:\n  - add_column:\n      table: users\n      column:\n        name: age\n        type: int\n        nullable: true\n",
    );
    let role = format!("{}_app", cli.db.name);
    let out = cli.expect(&["start", "--role", &role, &path], 4);
    assert!(
        out.contains("CREATE on the database")
            && out.contains("CREATE on schema \"public\"")
            && out.contains("ownership of \"public\".\"users\""),
        "{out}"
    );
    assert_eq!(common::schema_dump(&cli.db.url, "public"), before);
    assert_eq!(
        cli.count("SELECT count(*) FROM pgbaton.migrations").await,
        0
    );
    cli.sql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await;
}

/// The other side of item 5: pgbaton's own backfill, when it cannot use
/// `session_replication_role` (`TriggerBypass::Setting`), still skips the guarded trigger: its
/// batches record their transaction ids first. A partitioned table keeps the trigger during the
/// fill, so every filled row shows whether the trigger ran (its marker).
#[tokio::test]
async fn the_backfill_itself_still_skips_the_guarded_trigger() {
    use common::lifecycle::{yaml, Env};
    let env = Env::new().await;
    env.sql(
        "CREATE TABLE events (id int NOT NULL, part int NOT NULL, name text, PRIMARY KEY (id, part))
           PARTITION BY LIST (part);
         CREATE TABLE events_1 PARTITION OF events FOR VALUES IN (1);
         CREATE TABLE events_2 PARTITION OF events FOR VALUES IN (2);
         INSERT INTO events SELECT g, 1 + g % 2, 'N' || g FROM generate_series(1, 4000) g;",
    )
    .await;
    let mut settings = env.settings();
    settings.exec.backfill.bypass = pgbaton::backfill::TriggerBypass::Setting;
    let conn = ConnConfig::parse(&env.db.url).expect("url");
    let m = pgbaton::migrator::Migrator::connect(conn, settings)
        .await
        .expect("migrator");
    let mig = yaml(
        "01_lower",
        "operations:\n  - alter_column:\n      table: events\n      column: name\n      type: varchar(50)\n      up: lower(name)\n      down: name\n",
    );
    m.start(&mig, false).await.expect("start");
    let count = |sql: &'static str| common::scalar_i64(&env.db.client, sql);
    assert_eq!(
        count("SELECT count(*) FROM events WHERE _pgbaton_new_name = lower(name)").await,
        4000
    );
    assert_eq!(
        count("SELECT count(*) FROM events WHERE _pgbaton_touched").await,
        0,
        "the trigger ran for the backfill's own rows"
    );
    m.complete().await.expect("complete");
}

/// In depth, at planning time: the probes that ask the server whether a default is volatile or a
/// type change rewrites run each statement alone, so even a fragment that got past the file
/// check could not end their rolled-back transaction and run a statement of its own.
#[tokio::test]
async fn planning_probes_never_run_user_text_as_a_script() {
    use pgbaton::plan::Probe;
    let db = common::fresh_db().await;
    common::exec(&db.client, "CREATE TABLE victims (id int)").await;
    let answers = pgbaton::catalog::probe(
        &db.client,
        &[
            Probe::DefaultIsVolatile {
                type_name: "int".into(),
                expr: "1; COMMIT; DROP TABLE victims; BEGIN".into(),
            },
            Probe::TypeChangeRewrites {
                from: "int; COMMIT; DROP TABLE victims; BEGIN; SELECT 1".into(),
                to: "bigint".into(),
            },
        ],
    )
    .await
    .expect("probe");
    // A probe whose SQL fails is answered with the conservative `true`.
    assert!(answers.iter().all(|(_, answer)| *answer), "{answers:?}");
    assert_eq!(
        common::scalar_i64(
            &db.client,
            "SELECT count(*) FROM pg_class WHERE relname = 'victims'"
        )
        .await,
        1
    );
}
