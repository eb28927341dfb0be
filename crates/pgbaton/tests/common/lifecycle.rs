//! The lifecycle harness every operation's tests use: set up a schema, then
//! start → checks through the old and the new version → rollback → the schema is exactly as
//! before (a `pg_dump --schema-only` comparison, never optional) → checks → start → complete →
//! checks. Checks are data: SQL run through a version's search path, with expected rows or an
//! expected SQLSTATE.

#![allow(dead_code)]

use pgbaton::format::{self, FileKind, Migration};
use pgbaton::migrator::{Migrator, Settings};
/// Expected failures name their SQLSTATE: `Check::Fails(V::New, sql, SqlState::UNIQUE_VIOLATION)`.
pub use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{connect, fresh_db, schema_dump, TestDb};

/// Which version a check runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V {
    /// The version before the migration: the previous version schema, or the base schema when
    /// there is none (the application predating pgbaton).
    Old,
    /// The migration's version schema.
    New,
    /// The base schema, as the physical tables are.
    Base,
}

/// One check.
#[derive(Clone, Debug)]
pub enum Check {
    /// Must succeed.
    Ok(V, &'static str),
    /// Must fail with this SQLSTATE (by name: `SqlState::UNIQUE_VIOLATION`).
    Fails(V, &'static str, SqlState),
    /// Must return exactly these rows, each rendered as its columns joined by `|` (NULL as `NULL`).
    Rows(V, &'static str, &'static [&'static str]),
}

/// A migration from inline YAML.
pub fn yaml(name: &str, text: &str) -> Migration {
    format::parse(&format!("{name}.yaml"), name, text, FileKind::Yaml)
        .unwrap_or_else(|e| panic!("test migration {name} does not parse: {e}"))
}

/// A test database with pgbaton initialized, and a migrator on it.
pub struct Env {
    pub db: TestDb,
    pub schema: String,
}

impl Env {
    pub async fn new() -> Env {
        Env::with_schema("public").await
    }

    pub async fn with_schema(schema: &str) -> Env {
        let db = fresh_db().await;
        if schema != "public" {
            db.client
                .batch_execute(&format!(
                    "CREATE SCHEMA {}",
                    pgbaton::ident::quote_ident(schema)
                ))
                .await
                .expect("create schema");
        }
        let env = Env {
            db,
            schema: schema.to_string(),
        };
        env.migrator().await.init().await.expect("init");
        env
    }

    pub fn settings(&self) -> Settings {
        Settings {
            schema: self.schema.clone(),
            ..Settings::default()
        }
    }

    pub async fn migrator(&self) -> Migrator {
        let conn = pgbaton::config::ConnConfig::parse(&self.db.url).expect("url");
        Migrator::connect(conn, self.settings())
            .await
            .expect("connect migrator")
    }

    /// Starts and completes each migration.
    pub async fn apply(&self, migrations: &[Migration]) {
        let m = self.migrator().await;
        for mig in migrations {
            m.start(mig, true)
                .await
                .unwrap_or_else(|e| panic!("setup migration {} failed: {e}", mig.name));
        }
    }

    pub async fn sql(&self, sql: &str) {
        self.db
            .client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", super::describe(&e)));
    }

    fn base_dump(&self) -> String {
        schema_dump(&self.db.url, &self.schema)
    }

    /// After complete, no column, NOT NULL constraint, trigger or function of the base schema
    /// keeps a name of pgbaton's temporary objects (`_pgbaton_new_<column>` copies, the
    /// triggers and their functions). PostgreSQL 18 names the NOT NULL constraint that
    /// `SET NOT NULL` (or an identity, or a primary key) makes after the column as it is called
    /// at that moment: `users__pgbaton_new_email_not_null` unless pgbaton renames it.
    /// (Objects named after a table created under a temporary name, `_pgbaton_new_<table>...`,
    /// are not checked here.)
    pub async fn assert_no_temporary_names(&self) {
        let client = connect(&self.db.url).await;
        let rows = client
            .query(
                r"SELECT 'column ' || c.relname || '.' || a.attname
                  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                  WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1::text) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                    AND a.attnum > 0 AND NOT a.attisdropped AND a.attname LIKE '%\_pgbaton%'
                  UNION ALL
                  SELECT 'NOT NULL constraint ' || k.conname || ' (' || pg_get_constraintdef(k.oid) || ')'
                  FROM pg_constraint k
                  WHERE k.connamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1::text) AND k.contype = 'n'
                    AND k.conname LIKE '%\_pgbaton%' AND k.conname NOT LIKE '\_pgbaton\_new\_%'
                  UNION ALL
                  SELECT 'trigger ' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                  WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1::text) AND t.tgname LIKE '%\_pgbaton%'
                  UNION ALL
                  SELECT 'function ' || p.proname FROM pg_proc p
                  WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1::text) AND p.proname LIKE '%\_pgbaton%'",
                &[&self.schema],
            )
            .await
            .unwrap_or_else(|e| panic!("{}", super::describe(&e)));
        let leftovers: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert!(
            leftovers.is_empty(),
            "after complete, schema {} still names pgbaton's temporary objects:\n{}",
            self.schema,
            leftovers.join("\n")
        );
    }

    /// The search path of a version.
    async fn search_path(&self, v: V, migration: &Migration) -> String {
        let q = pgbaton::ident::quote_ident;
        match v {
            V::Base => q(&self.schema),
            V::New => format!(
                "{}, {}",
                q(&version_schema(&self.schema, migration)),
                q(&self.schema)
            ),
            V::Old => {
                let m = self.migrator().await;
                let history = m.latest_completed().await.expect("history");
                match history {
                    Some((_, vs)) => format!("{}, {}", q(&vs), q(&self.schema)),
                    None => q(&self.schema),
                }
            }
        }
    }

    /// Runs checks; `migration` names the new version.
    pub async fn check(&self, migration: &Migration, checks: &[Check], stage: &str) {
        let client = connect(&self.db.url).await;
        for check in checks {
            let (v, sql) = match check {
                Check::Ok(v, sql) | Check::Fails(v, sql, _) | Check::Rows(v, sql, _) => (*v, *sql),
            };
            let path = self.search_path(v, migration).await;
            client
                .batch_execute(&format!("SET search_path = {path}"))
                .await
                .expect("set search_path");
            let result = client.simple_query(sql).await;
            match (check, result) {
                (Check::Ok(..), Ok(_)) => {}
                (Check::Ok(..), Err(e)) => {
                    panic!(
                        "[{stage}] {v:?} `{sql}` should succeed: {}",
                        super::describe(&e)
                    )
                }
                (Check::Fails(_, _, code), Err(e)) => {
                    assert_eq!(
                        e.code(),
                        Some(code),
                        "[{stage}] {v:?} `{sql}` should fail with {}, failed with {}",
                        code.code(),
                        super::describe(&e)
                    );
                }
                (Check::Fails(_, _, code), Ok(_)) => {
                    panic!(
                        "[{stage}] {v:?} `{sql}` should fail with {} but succeeded",
                        code.code()
                    )
                }
                (Check::Rows(_, _, expect), Ok(msgs)) => {
                    let rows = render_rows(&msgs);
                    let expect: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
                    assert_eq!(rows, expect, "[{stage}] {v:?} `{sql}`");
                }
                (Check::Rows(..), Err(e)) => {
                    panic!(
                        "[{stage}] {v:?} `{sql}` should return rows: {}",
                        super::describe(&e)
                    )
                }
            }
        }
    }
}

fn render_rows(msgs: &[SimpleQueryMessage]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// `<schema>_<version>` as pgbaton names it.
pub fn version_schema(schema: &str, m: &Migration) -> String {
    format!(
        "{schema}_{}",
        m.version_schema.as_deref().unwrap_or(&m.name)
    )
}

/// One lifecycle case.
pub struct Case {
    /// Migrations applied (started and completed) before the one under test.
    pub setup: Vec<Migration>,
    /// Plain SQL run after setup (e.g. seed rows through the base schema).
    pub seed: &'static str,
    pub migration: Migration,
    pub after_start: Vec<Check>,
    pub after_rollback: Vec<Check>,
    pub after_complete: Vec<Check>,
}

/// Runs the full cycle on a fresh database in schema `public`.
pub async fn run(case: Case) -> Env {
    let env = Env::new().await;
    run_in(&env, case).await;
    env
}

/// Runs the full cycle in `env`.
pub async fn run_in(env: &Env, case: Case) {
    env.apply(&case.setup).await;
    if !case.seed.is_empty() {
        env.sql(case.seed).await;
    }
    let before = env.base_dump();
    let m = env.migrator().await;
    let vs = version_schema(&env.schema, &case.migration);

    m.start(&case.migration, false)
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"));
    env.check(&case.migration, &case.after_start, "after start")
        .await;

    m.rollback(false)
        .await
        .unwrap_or_else(|e| panic!("rollback failed: {e}"));
    let after = env.base_dump();
    assert_eq!(
        before, after,
        "rollback must leave schema {} exactly as it was",
        env.schema
    );
    let exists: bool = env
        .db
        .client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&vs],
        )
        .await
        .expect("query")
        .get(0);
    assert!(!exists, "rollback must drop the version schema {vs}");
    env.check(&case.migration, &case.after_rollback, "after rollback")
        .await;

    m.start(&case.migration, false)
        .await
        .unwrap_or_else(|e| panic!("second start failed: {e}"));
    env.check(&case.migration, &case.after_start, "after second start")
        .await;
    m.complete()
        .await
        .unwrap_or_else(|e| panic!("complete failed: {e}"));
    env.assert_no_temporary_names().await;
    env.check(&case.migration, &case.after_complete, "after complete")
        .await;
}

/// A migration this server cannot run (a feature of a later PostgreSQL major): `start` fails
/// with an error containing each of `expect`, before any DDL (the schema is exactly as before).
pub async fn refused_on_this_server(setup: Vec<Migration>, migration: Migration, expect: &[&str]) {
    let env = Env::new().await;
    env.apply(&setup).await;
    let before = env.base_dump();
    let m = env.migrator().await;
    let err = match m.start(&migration, false).await {
        Ok(_) => panic!("start of {} should fail on this server", migration.name),
        Err(e) => e.to_string(),
    };
    for text in expect {
        assert!(err.contains(text), "error {err:?} should contain {text:?}");
    }
    assert_eq!(
        before,
        env.base_dump(),
        "a refused start must change nothing"
    );
}

/// Runs only setup and returns the database, for error-case tests.
pub async fn setup(setup: Vec<Migration>, seed: &str) -> Env {
    let env = Env::new().await;
    env.apply(&setup).await;
    if !seed.is_empty() {
        env.sql(seed).await;
    }
    env
}

/// A client on the test database (for error tests that compare dumps themselves).
pub async fn client(env: &Env) -> Client {
    connect(&env.db.url).await
}

pub fn dump(env: &Env) -> String {
    env.base_dump()
}

/// The versions of a schema whose version schemas a test builds by hand (no migrator state, so
/// no [`Env::check`]): the same vocabulary — act as [`V::Old`], [`V::New`] or [`V::Base`] — and
/// the same search path per version as [`Env::check`] sets.
#[derive(Clone, Copy, Debug)]
pub struct Versions<'a> {
    /// The base schema, where the tables are.
    pub schema: &'a str,
    /// The previous version schema; `None` when the old version is the base schema (the
    /// application predating pgbaton).
    pub old: Option<&'a str>,
    /// The migration's version schema.
    pub new: &'a str,
}

impl Versions<'_> {
    /// The search path of version `v`.
    pub fn search_path(&self, v: V) -> String {
        let q = pgbaton::ident::quote_ident;
        match (v, self.old) {
            (V::Base, _) | (V::Old, None) => q(self.schema),
            (V::Old, Some(old)) => format!("{}, {}", q(old), q(self.schema)),
            (V::New, _) => format!("{}, {}", q(self.new), q(self.schema)),
        }
    }

    /// Runs `sql` (one or more statements) on `client` as a client of version `v`: with its
    /// search path for the session, reset afterwards.
    pub async fn exec(&self, client: &Client, v: V, sql: &str) {
        super::exec(
            client,
            &format!(
                "SET search_path = {};\n{sql};\nRESET search_path",
                self.search_path(v)
            ),
        )
        .await;
    }
}
