//! The harness on several PostgreSQL majors: every installed server (`PGBATON_PG_BINDIRS`, the
//! Debian directories, ...) starts and answers as the version it claims, a major that is not
//! installed is a clear error, and the catalog snapshot the schema comparisons rest on sees each
//! kind of change while ignoring what does not change a definition.

mod common;

use pgbaton_lab::cluster::{
    find_bindir_for_major, installed_servers, Cluster, ClusterError, ClusterOptions, ServerVersion,
};

#[test]
fn versions_parse() {
    let v = ServerVersion::parse("postgres (PostgreSQL) 17.10\n").expect("17");
    assert_eq!((v.major, v.full.as_str()), (17, "17.10"));
    let v =
        ServerVersion::parse("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)").expect("15");
    assert_eq!((v.major, v.full.as_str()), (15, "15.18"));
    let v = ServerVersion::parse("postgres (PostgreSQL) 18beta1").expect("18beta1");
    assert_eq!(v.major, 18);
    let v = ServerVersion::parse("postgres (PostgreSQL) 9.6.24").expect("9.6");
    assert_eq!(v.major, 96);
    assert_eq!(ServerVersion::parse("postgres (PostgreSQL)"), None);
}

#[test]
fn every_installed_major_starts_and_answers_as_itself() {
    let installed = installed_servers();
    assert!(!installed.is_empty(), "no PostgreSQL server installed");
    eprintln!(
        "installed: {}",
        installed
            .iter()
            .map(|i| format!("{} ({})", i.version, i.bindir.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for installation in &installed {
        assert_eq!(
            find_bindir_for_major(installation.version.major).expect("found"),
            installation.bindir
        );
        let cluster = Cluster::start(ClusterOptions {
            bindir: Some(installation.bindir.clone()),
            ..ClusterOptions::default()
        })
        .unwrap_or_else(|e| panic!("starting {}: {e}", installation.version));
        assert_eq!(cluster.version(), &installation.version);
        // psql comes from beside the server, or from the installed client when there is none.
        let num: u32 = cluster
            .psql("postgres", "SHOW server_version_num")
            .expect("psql")
            .parse()
            .expect("a number");
        assert_eq!(num / 10000, installation.version.major);
    }
}

#[test]
fn a_major_that_is_not_installed_is_a_clear_error() {
    match find_bindir_for_major(99) {
        Err(e @ ClusterError::MajorNotFound { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("no PostgreSQL 99 server binaries found"),
                "{text}"
            );
            assert!(text.contains(".ci/pg-majors.sh 99"), "{text}");
        }
        other => panic!("expected MajorNotFound, got {other:?}"),
    }
}

async fn snapshot(client: &tokio_postgres::Client) -> String {
    common::catalog::snapshot(client, "app").await.0
}

const BASE: &str = "CREATE SCHEMA app;
    CREATE TABLE app.t (id int PRIMARY KEY, a text NOT NULL DEFAULT 'x', b int CHECK (b > 0), c text);
    CREATE TABLE app.u (id int PRIMARY KEY, t_id int REFERENCES app.t (id));
    CREATE INDEX t_a ON app.t (a);
    CREATE VIEW app.v AS SELECT id, a FROM app.t;
    CREATE FUNCTION app.f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
    CREATE TRIGGER tr BEFORE INSERT ON app.t FOR EACH ROW EXECUTE FUNCTION app.f();
    CREATE SEQUENCE app.s;
    CREATE TYPE app.mood AS ENUM ('sad', 'ok');";

#[tokio::test]
async fn the_catalog_snapshot_sees_each_kind_of_change() {
    let changes = [
        "ALTER TABLE app.t ADD COLUMN d int",
        "ALTER TABLE app.t RENAME COLUMN a TO a2",
        "ALTER TABLE app.t ALTER COLUMN b TYPE bigint",
        "ALTER TABLE app.t ALTER COLUMN a DROP NOT NULL",
        "ALTER TABLE app.t ALTER COLUMN a SET DEFAULT 'y'",
        "ALTER TABLE app.t ALTER COLUMN a SET STATISTICS 500",
        "ALTER TABLE app.t ALTER COLUMN c TYPE text COLLATE \"C\"",
        "ALTER TABLE app.t RENAME CONSTRAINT t_b_check TO b_positive",
        "ALTER TABLE app.t ADD CONSTRAINT b_small CHECK (b < 10) NOT VALID",
        "ALTER TABLE app.u DROP CONSTRAINT u_t_id_fkey",
        "DROP INDEX app.t_a",
        "ALTER INDEX app.t_a RENAME TO t_a2",
        "ALTER TABLE app.t CLUSTER ON t_a",
        "ALTER TABLE app.t REPLICA IDENTITY FULL",
        "ALTER TABLE app.t SET (fillfactor = 70)",
        "ALTER TABLE app.t ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY p ON app.t USING (b > 1)",
        "ALTER TABLE app.t DISABLE TRIGGER tr",
        "DROP TRIGGER tr ON app.t",
        "CREATE OR REPLACE VIEW app.v AS SELECT id, a FROM app.t WHERE id > 0",
        "CREATE OR REPLACE FUNCTION app.f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        "ALTER SEQUENCE app.s INCREMENT BY 2",
        "ALTER SEQUENCE app.s OWNED BY app.t.b",
        "ALTER TYPE app.mood ADD VALUE 'happy'",
        "CREATE DOMAIN app.pos AS int CHECK (VALUE > 0)",
        "COMMENT ON COLUMN app.t.a IS 'the a'",
        "COMMENT ON TABLE app.t IS 'the t'",
        "GRANT SELECT ON app.t TO PUBLIC",
        "CREATE STATISTICS app.st ON a, b FROM app.t",
        "CREATE TEXT SEARCH CONFIGURATION app.ts (COPY = pg_catalog.simple)",
    ];
    for change in changes {
        let db = common::fresh_db().await;
        common::exec(&db.client, BASE).await;
        let before = snapshot(&db.client).await;
        common::exec(&db.client, change).await;
        assert_ne!(
            before,
            snapshot(&db.client).await,
            "the snapshot misses `{change}`"
        );
    }
}

#[tokio::test]
async fn the_catalog_snapshot_ignores_what_leaves_the_definition_as_it_was() {
    let db = common::fresh_db().await;
    common::exec(&db.client, BASE).await;
    let before = snapshot(&db.client).await;
    // A dropped column leaves a gap in attnum; new OIDs for an index built again.
    common::exec(
        &db.client,
        "ALTER TABLE app.t ADD COLUMN tmp int; ALTER TABLE app.t DROP COLUMN tmp;
         DROP INDEX app.t_a; CREATE INDEX t_a ON app.t (a);
         INSERT INTO app.t VALUES (1, 'a', 1, 'c'); SELECT nextval('app.s');",
    )
    .await;
    assert_eq!(before, snapshot(&db.client).await);
    // And the harness's comparison (snapshot, plus pg_dump where it can dump this server).
    let dump = common::schema_dump(&db.url, "app");
    assert!(dump.contains("relation t kind=r"), "{dump}");
    common::exec(&db.client, "ALTER TABLE app.t ALTER COLUMN a DROP DEFAULT").await;
    assert_ne!(dump, common::schema_dump(&db.url, "app"));
}

/// On PostgreSQL 18, the NOT NULL constraints of columns pgbaton added or rebuilt end with the
/// names the server gives when the column is made directly (`<table>_<column>_not_null`, long
/// names shortened as the server shortens them), not after pgbaton's temporary copy.
#[tokio::test]
async fn not_null_constraints_end_with_the_names_postgresql_gives() {
    let table = "a_table_with_quite_a_long_name_for_its_job";
    let column = "a_column_with_a_long_name_too";
    let env = common::lifecycle::Env::new().await;
    env.sql(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, n int); INSERT INTO {table} VALUES (1, 1);
         CREATE SCHEMA direct;
         CREATE TABLE direct.{table} (id int PRIMARY KEY, n int);
         ALTER TABLE direct.{table} ADD COLUMN {column} int NOT NULL DEFAULT 0;
         ALTER TABLE direct.{table} ALTER COLUMN n TYPE bigint, ALTER COLUMN n SET NOT NULL;"
    ))
    .await;
    let migration = common::lifecycle::yaml(
        "02_not_null",
        &format!(
            "operations:
  - add_column:
      table: {table}
      up: '0'
      column: {{name: {column}, type: int, nullable: false, default: '0'}}
  - alter_column:
      table: {table}
      column: n
      type: bigint
      nullable: false
      up: coalesce(n, 0)
      down: n::int
"
        ),
    );
    let m = env.migrator().await;
    m.start(&migration, true).await.expect("start and complete");
    let names = |schema: &str| {
        format!(
            "SELECT string_agg(conname, ', ' ORDER BY conname) FROM pg_constraint
             WHERE conrelid = '{schema}.{table}'::regclass AND contype = 'n'"
        )
    };
    let row = env
        .db
        .client
        .query_one(
            &format!("SELECT ({}), ({})", names("public"), names("direct")),
            &[],
        )
        .await
        .expect("names");
    let (migrated, direct): (Option<String>, Option<String>) = (row.get(0), row.get(1));
    if common::server_major().await >= 18 {
        let direct = direct.expect("PostgreSQL 18 has NOT NULL constraints");
        assert!(direct.contains("_not_null"), "{direct}");
        assert_eq!(migrated.as_deref(), Some(direct.as_str()));
    } else {
        assert_eq!((migrated, direct), (None, None));
    }
}

/// A server directory the server's OS user cannot enter (a cache under `/root` while the
/// tests, as root, run PostgreSQL unprivileged) fails at once with what to fix.
#[test]
fn a_server_directory_the_server_user_cannot_read_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let real = pgbaton_lab::cluster::find_bindir().expect("a server");
    let dir = std::env::temp_dir().join(format!("pgbaton-unreadable-{}", std::process::id()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    for program in ["postgres", "initdb"] {
        std::os::unix::fs::symlink(real.join(program), bin.join(program)).expect("symlink");
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let result = Cluster::start(ClusterOptions {
        bindir: Some(bin),
        ..ClusterOptions::default()
    });
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::remove_dir_all(&dir).expect("cleanup");
    match result {
        Err(e @ ClusterError::ServerNotRunnable { .. }) => {
            let text = e.to_string();
            assert!(text.contains("--version` does not run"), "{text}");
            assert!(text.contains("must be readable and executable"), "{text}");
            if pgbaton_lab::cluster::server_os_user()
                .expect("user")
                .is_some()
            {
                assert!(text.contains("as the server's OS user"), "{text}");
            }
        }
        other => panic!("expected ServerNotRunnable, got {other:?}"),
    }
}
