//! `pgbaton import pgroll`: a database that pgroll migrated (its state table with three completed
//! migrations and one it inferred, the latest version schema present) is taken over; `migrate
//! DIR` then applies only the file pgroll never applied, while the release pinned to pgroll's
//! last version schema keeps reading and writing until `complete` retires it. Refused, changing
//! nothing, while pgroll has a migration in progress or when the histories disagree.

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::scalar_i64;
use pgbaton_lab::workload::{OpMix, UsersTable, VersionPin, Workload, WorkloadConfig};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let path = std::env::temp_dir().join(format!(
            "pgbaton-pgroll-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Dir(path)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("write migration");
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn s(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// pgroll's state schema as `pgroll init` leaves it, written for this test from the facts of
/// pgroll v0.16.2's `pkg/state/init.sql` (github.com/xataio/pgroll, commit cdbe9b0f; pgroll's
/// binary cannot be built here and its SQL is not copied into this repository): the schema
/// `pgroll`; its `migrations` table with the same columns, types, defaults and constraints
/// (primary key (schema, name); foreign key (schema, parent) to itself; `migration_type`
/// `varchar(32)` defaulting to `pgroll` and checked against `pgroll`/`inferred`/`baseline`;
/// timestamps as `timestamptz`, as after init's last upgrade step); its three unique indexes
/// (one unfinished migration per schema, one root per schema, a linear history); and the
/// `pgroll_version` table. Left out: init's SQL functions and its two event triggers'
/// function (pgroll code). In their place, an event trigger of this test's own named like
/// pgroll's (`pg_roll_handle_ddl`), which only counts the DDL it would record as an inferred
/// migration, honouring the same session flag `pgroll.no_inferred_migrations` — to show that
/// pgbaton's DDL is not recorded once pgroll is gone.
const PGROLL_INIT: &str = "
CREATE SCHEMA pgroll;
CREATE TABLE pgroll.migrations (
    schema name NOT NULL,
    name text NOT NULL,
    migration jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT current_timestamp,
    updated_at timestamptz NOT NULL DEFAULT current_timestamp,
    parent text,
    done boolean NOT NULL DEFAULT false,
    resulting_schema jsonb NOT NULL DEFAULT '{}'::jsonb,
    migration_type varchar(32) DEFAULT 'pgroll'
        CONSTRAINT migration_type_check CHECK (migration_type IN ('pgroll', 'inferred', 'baseline')),
    PRIMARY KEY (schema, name),
    FOREIGN KEY (schema, parent) REFERENCES pgroll.migrations (schema, name)
);
CREATE UNIQUE INDEX only_one_active ON pgroll.migrations (schema, name, done) WHERE done = false;
CREATE UNIQUE INDEX only_first_migration_without_parent ON pgroll.migrations (schema) WHERE parent IS NULL;
CREATE UNIQUE INDEX history_is_linear ON pgroll.migrations (schema, parent);
CREATE TABLE pgroll.pgroll_version (
    version text NOT NULL PRIMARY KEY,
    initialized_at timestamptz NOT NULL DEFAULT current_timestamp
);
INSERT INTO pgroll.pgroll_version (version) VALUES ('v0.16.2');

CREATE TABLE pgroll.test_ddl_seen (tag text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION pgroll.test_count_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF current_setting('pgroll.no_inferred_migrations', true) = 'TRUE' THEN
        RETURN;
    END IF;
    INSERT INTO pgroll.test_ddl_seen (tag) VALUES (tg_tag);
END
$f$;
CREATE EVENT TRIGGER pg_roll_handle_ddl ON ddl_command_end EXECUTE FUNCTION pgroll.test_count_ddl();
";

/// The schema after pgroll completed 01-03 (and captured an index made outside it), with
/// pgroll's latest version schema: one view per table, its defaults, `security_invoker`.
const PGROLL_APPLIED: &str = "
SET pgroll.no_inferred_migrations = 'TRUE';
CREATE TABLE public.users (
    id bigint PRIMARY KEY,
    full_name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    email text
);
INSERT INTO public.users (id, full_name, email)
    SELECT g, 'user ' || g, 'user' || g || '@example.com' FROM generate_series(1, 20000) g;
CREATE INDEX users_full_name ON public.users (full_name);
CREATE SCHEMA public_03_rename_name;
CREATE VIEW public_03_rename_name.users WITH (security_invoker = true) AS
    SELECT id AS id, full_name AS full_name, created_at AS created_at, email AS email FROM public.users;
ALTER VIEW public_03_rename_name.users ALTER COLUMN created_at SET DEFAULT now();
INSERT INTO pgroll.migrations (schema, name, migration, parent, done, migration_type, created_at, updated_at) VALUES
  ('public', '01_create_users',
   '{\"operations\": [{\"create_table\": {\"name\": \"users\", \"columns\": [
       {\"name\": \"id\", \"type\": \"bigint\", \"pk\": true},
       {\"name\": \"name\", \"type\": \"text\"},
       {\"name\": \"created_at\", \"type\": \"timestamptz\", \"default\": \"now()\"}]}}]}',
   NULL, true, 'pgroll', now() - interval '3 days', now() - interval '3 days'),
  ('public', '02_add_email',
   '{\"operations\": [{\"add_column\": {\"table\": \"users\", \"column\": {\"name\": \"email\", \"type\": \"text\", \"nullable\": true}}}]}',
   '01_create_users', true, 'pgroll', now() - interval '2 days', now() - interval '2 days'),
  ('public', '02_add_email_20261201120000123456',
   '{\"version_schema\": \"sql_5f3c1a2b\", \"operations\": [{\"sql\": {\"up\": \"CREATE INDEX users_full_name ON public.users (name)\"}}]}',
   '02_add_email', true, 'inferred', now() - interval '36 hours', now() - interval '36 hours'),
  ('public', '03_rename_name',
   '{\"operations\": [{\"rename_column\": {\"table\": \"users\", \"from\": \"name\", \"to\": \"full_name\"}}]}',
   '02_add_email_20261201120000123456', true, 'pgroll', now() - interval '1 day', now() - interval '1 day');
RESET pgroll.no_inferred_migrations;
";

/// The team's migration files (pgroll's format): the three pgroll applied, and a fourth.
const FILES: [(&str, &str); 4] = [
    (
        "01_create_users.yaml",
        "operations:
  - create_table:
      name: users
      columns:
        - name: id
          type: bigint
          pk: true
        - name: name
          type: text
        - name: created_at
          type: timestamptz
          default: now()
",
    ),
    (
        "02_add_email.yaml",
        "operations:
  - add_column:
      table: users
      column:
        name: email
        type: text
        nullable: true
",
    ),
    (
        "03_rename_name.yaml",
        "operations:
  - rename_column:
      table: users
      from: name
      to: full_name
",
    ),
    (
        "04_name_length_and_wider_email.yaml",
        "operations:
  - add_column:
      table: users
      up: length(full_name)
      column:
        name: name_length
        type: int
        nullable: true
  - alter_column:
      table: users
      column: email
      type: varchar(320)
      up: email
      down: email
",
    ),
];

const PGROLL_VS: &str = "public_03_rename_name";
const NEW_VS: &str = "public_04_name_length_and_wider_email";

async fn pgroll_db() -> common::TestDb {
    let db = common::fresh_db().await;
    common::exec(&db.client, PGROLL_INIT).await;
    common::exec(&db.client, PGROLL_APPLIED).await;
    db
}

fn files_dir(tag: &str, upto: usize) -> Dir {
    let dir = Dir::new(tag);
    for (name, text) in FILES.iter().take(upto) {
        dir.write(name, text);
    }
    dir
}

async fn schemas(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'public\\_%' OR nspname = 'pgbaton' ORDER BY 1",
        &[],
    )
    .await
    .expect("schemas")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn run(url: &str, args: &[&str]) -> (i32, String) {
    common::pgbaton_run(url, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_then_migrate_applies_only_the_fourth_file_while_pgrolls_release_runs() {
    let db = pgroll_db().await;
    let c = &db.client;
    let url = &db.url;
    let dir = files_dir("takeover", 4);

    // Before the import, pgbaton would apply every file again.
    let (code, out) = run(url, &["import", "pgroll"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("imported 4 migration(s)")
            && out.contains("02_add_email_20261201120000123456"),
        "{out}"
    );
    assert!(out.contains("inferred by pgroll"), "{out}");
    assert!(
        out.contains(PGROLL_VS) && out.contains("pg_roll_handle_ddl"),
        "{out}"
    );
    let rows: Vec<String> = c
        .query(
            "SELECT name || ' ' || status || ' ' || origin || ' ' || version_schema || ' ' || coalesce(parent, '-')
               FROM pgbaton.migrations ORDER BY started_at",
            &[],
        )
        .await
        .expect("history")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        [
            "01_create_users completed pgroll public_01_create_users -",
            "02_add_email completed pgroll public_02_add_email 01_create_users",
            "02_add_email_20261201120000123456 completed pgroll_inferred public_02_add_email 02_add_email",
            "03_rename_name completed pgroll public_03_rename_name 02_add_email_20261201120000123456",
        ]
    );
    let (code, out) = run(url, &["latest", "schema"]);
    assert_eq!((code, out.trim()), (0, PGROLL_VS));
    // A second import finds nothing new.
    let (code, out) = run(url, &["import", "pgroll"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to import"), "{out}");
    let (code, out) = run(url, &["status", "--dir", dir.s()]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
    assert!(
        out.contains("pending in") && out.contains("04_name_length_and_wider_email"),
        "{out}"
    );

    // The running release: pinned to pgroll's last version schema, reading and writing.
    let users = UsersTable::new("users").with_name_column("full_name");
    let mut config = WorkloadConfig::from_url(url).expect("url");
    config.clients = users.clients(
        4,
        VersionPin::SearchPath(PGROLL_VS.into()),
        &OpMix {
            read: 40,
            update: 45,
            insert: 15,
            delete: 0,
        },
    );
    config.max_id = 20_000;
    config.log_writes = true;
    config.prepare = false;
    config.think_time = Duration::from_millis(2);
    config.initial_phase = "before".into();
    let load = Workload::start(config).await.expect("workload");
    tokio::time::sleep(Duration::from_millis(300)).await;

    load.mark_phase("migrate");
    let (code, out) = run(url, &["migrate", dir.s(), "--backfill-batch-size", "2000"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("applied 1 migration(s): 04_name_length_and_wider_email"),
        "only the fourth file: {out}"
    );
    let imported_sums = scalar_i64(
        c,
        "SELECT count(*) FROM pgbaton.migrations WHERE origin = 'pgroll' AND checksum IS NOT NULL",
    )
    .await;
    assert_eq!(
        imported_sums, 3,
        "the files pgroll applied got their checksums on first sight"
    );
    assert_eq!(schemas(c).await, ["pgbaton", PGROLL_VS, NEW_VS]);

    // Both versions side by side: pgroll's release keeps working; the new one sees 04.
    load.mark_phase("both versions");
    tokio::time::sleep(Duration::from_secs(1)).await;
    common::exec(
        c,
        &format!("INSERT INTO {PGROLL_VS}.users (id, full_name, email) VALUES (900001, 'via pgroll view', 'p@example.com')"),
    )
    .await;
    let row = c
        .query_one(
            &format!("SELECT name_length, email::text, pg_typeof(email)::text FROM {NEW_VS}.users WHERE id = 900001"),
            &[],
        )
        .await
        .expect("new version");
    assert_eq!(row.get::<_, Option<i32>>(0), Some(15));
    assert_eq!(row.get::<_, String>(1), "p@example.com");
    assert_eq!(row.get::<_, String>(2), "character varying");
    assert_eq!(
        scalar_i64(c, &format!("SELECT count(*) FROM {NEW_VS}.users WHERE name_length IS DISTINCT FROM length(full_name)")).await,
        0,
        "every row backfilled, the old release's writes kept in step"
    );
    let (code, out) = run(url, &["verify"]);
    assert_eq!(code, 0, "verify: {out}");

    // The rollout is over: the old release stops, complete retires pgroll's version schema.
    let report = load.stop().await;
    eprintln!("{report}");
    // Its last write was a moment ago: complete knowingly (the safe-to-complete window is 60 s).
    let (code, out) = run(url, &["complete", "--force"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(schemas(c).await, ["pgbaton", NEW_VS]);
    assert_eq!(
        report.total.failures, 0,
        "pgroll's release never failed: {report}"
    );
    assert!(report.writes_logged > 300, "{report}");
    let lost = report
        .writes
        .verify_table(c, "SELECT id, full_name FROM public.users")
        .await
        .expect("read back");
    assert!(lost.is_empty(), "lost writes: {lost:#?}");
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM pgroll.test_ddl_seen").await,
        0,
        "pgroll's event trigger did not record pgbaton's DDL"
    );
    common::exec(c, "CREATE TABLE public.by_hand (id int)").await;
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM pgroll.test_ddl_seen").await,
        1,
        "(the test's event trigger does record other DDL)"
    );

    // `pull` writes the whole history, pgroll's part included; latest --local agrees.
    let pulled = Dir::new("pull");
    let (code, out) = run(url, &["pull", pulled.s()]);
    assert_eq!(code, 0, "{out}");
    let mut names: Vec<String> = std::fs::read_dir(pulled.path())
        .expect("read")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "01_create_users.json",
            "02_add_email.json",
            "02_add_email_20261201120000123456.json",
            "03_rename_name.json",
            "04_name_length_and_wider_email.json",
        ]
    );
    // The pulled files are the team's files (not pgroll's rendering of them): migrating the
    // pulled directory finds everything applied and nothing changed.
    for (name, _) in FILES.iter().take(3) {
        let theirs = pgbaton::format::load(&dir.path().join(name)).expect("file");
        let pulled_file = pulled.path().join(name.replace(".yaml", ".json"));
        let pulled_doc = pgbaton::format::load(&pulled_file).expect("pulled");
        assert_eq!(
            pgbaton::history::checksum(&theirs.raw),
            pgbaton::history::checksum(&pulled_doc.raw),
            "{name}"
        );
    }
    let (code, out) = run(url, &["migrate", pulled.s()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to migrate"), "{out}");
    let (code, local) = run(url, &["latest", "schema", "--local", dir.s()]);
    assert_eq!((code, local.trim()), (0, NEW_VS));
    let (code, from_db) = run(url, &["latest", "schema"]);
    assert_eq!((code, from_db.trim()), (0, NEW_VS));
    let (code, out) = run(url, &["migrate", dir.s()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to migrate"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn import_refused_while_pgroll_has_a_migration_in_progress() {
    let db = pgroll_db().await;
    let c = &db.client;
    // pgroll started 04 and has not completed it.
    common::exec(
        c,
        "SET pgroll.no_inferred_migrations = 'TRUE';
         INSERT INTO pgroll.migrations (schema, name, migration, parent, done)
         VALUES ('public', '04_in_flight', '{\"operations\": [{\"sql\": {\"up\": \"SELECT 1\"}}]}', '03_rename_name', false);
         CREATE SCHEMA public_04_in_flight;",
    )
    .await;
    let before = common::schema_dump(&db.url, "public");
    let (code, out) = run(&db.url, &["import", "pgroll"]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("04_in_flight") && out.contains("in progress"),
        "{out}"
    );
    assert!(
        out.contains("pgroll complete") && out.contains("pgroll rollback"),
        "{out}"
    );
    assert!(out.contains("nothing was imported"), "{out}");
    // Nothing changed: not even pgbaton's state schema was created.
    assert_eq!(schemas(c).await, [PGROLL_VS, "public_04_in_flight"]);
    assert_eq!(before, common::schema_dump(&db.url, "public"));

    // Once pgroll completed it, the import takes all five.
    common::exec(
        c,
        "UPDATE pgroll.migrations SET done = true WHERE name = '04_in_flight'",
    )
    .await;
    let (code, out) = run(&db.url, &["import", "pgroll"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported 5 migration(s)"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn import_refused_when_the_histories_disagree_or_pgroll_is_absent() {
    let db = pgroll_db().await;
    let c = &db.client;
    // pgbaton already has a different history for the schema.
    let other = Dir::new("other");
    other.write(
        "01_something_else.yaml",
        "operations:\n  - create_table:\n      name: other\n      columns:\n        - name: id\n          type: int\n          pk: true\n",
    );
    assert_eq!(run(&db.url, &["init"]).0, 0);
    let (code, out) = run(&db.url, &["migrate", other.s(), "--complete"]);
    assert_eq!(code, 0, "{out}");
    let before: i64 = scalar_i64(c, "SELECT count(*) FROM pgbaton.migrations").await;
    let (code, out) = run(&db.url, &["import", "pgroll"]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("disagree")
            && out.contains("01_create_users")
            && out.contains("01_something_else"),
        "{out}"
    );
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM pgbaton.migrations").await,
        before
    );

    // No pgroll state where asked.
    let (code, out) = run(
        &db.url,
        &["import", "pgroll", "--pgroll-schema", "not_pgroll"],
    );
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("no pgroll state in schema not_pgroll"),
        "{out}"
    );

    // Files that disagree with what pgroll applied under the same name are refused by migrate.
    let db = pgroll_db().await;
    let (code, out) = run(&db.url, &["import", "pgroll"]);
    assert_eq!(code, 0, "{out}");
    let dir = files_dir("mismatch", 4);
    dir.write(
        "02_add_email.yaml",
        "operations:\n  - sql:\n      up: ALTER TABLE users ADD COLUMN email text\n",
    );
    let (code, out) = run(&db.url, &["migrate", dir.s()]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("02_add_email") && out.contains("add_column"),
        "{out}"
    );
    assert!(!schemas(&db.client).await.contains(&NEW_VS.to_string()));
}
