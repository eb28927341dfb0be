//! Dual-write triggers on a real server: the SQL `triggers::install_step` renders, written through
//! the base schema (old version), through a version schema of views (new version), and with
//! `SET LOCAL pgbaton.version`; both physical columns must be right after every write.

mod common;

use common::lifecycle::{Versions, V};
use common::{exec, fresh_db};
use pgbaton::ident::{Ident, QualName, RawSql};
use pgbaton::step::{LockLevel, Work};
use pgbaton::triggers::{self, DownOnlyRule, DualWriteRule, TriggerSpec};
use tokio_postgres::Client;

const MIGRATION: &str = "02_widen";
const VERSION: &str = "public_02_widen";
/// The versions of the tests' schema: the base schema `public` is the old version.
const VERSIONS: Versions = Versions {
    schema: "public",
    old: None,
    new: VERSION,
};

fn pairs(p: &[(&str, &str)]) -> Vec<(Ident, Ident)> {
    p.iter()
        .map(|(a, b)| (Ident::new(*a), Ident::new(*b)))
        .collect()
}

/// users(id int PK, email text, name text): `id` int → bigint (`id_new := id`, down `id`), and
/// `email` → upper case (`up: upper(email)`, `down: lower(email)`).
fn users_spec() -> TriggerSpec {
    TriggerSpec {
        table: QualName::new("public", "users"),
        migration: MIGRATION.into(),
        version_schema: Ident::new(VERSION),
        old_scope: pairs(&[("id", "id"), ("email", "email"), ("name", "name")]),
        new_scope: pairs(&[
            ("id", "_pgbaton_new_id"),
            ("email", "_pgbaton_new_email"),
            ("name", "name"),
        ]),
        rules: vec![
            DualWriteRule {
                new_column: Ident::new("_pgbaton_new_id"),
                up: RawSql::new("id"),
                old_column: Some(Ident::new("id")),
                down: Some(RawSql::new("id")),
            },
            DualWriteRule {
                new_column: Ident::new("_pgbaton_new_email"),
                up: RawSql::new("upper(email)"),
                old_column: Some(Ident::new("email")),
                down: Some(RawSql::new("lower(email)")),
            },
        ],
        down_only: Vec::new(),
        marker: Ident::new("_pgbaton_touched"),
    }
}

async fn install(client: &Client, spec: &TriggerSpec) {
    let sql = triggers::install_step(spec, false).statements().join(";\n");
    exec(client, &format!("BEGIN;\n{sql};\nCOMMIT")).await;
}

/// The users table with two rows written before the migration, the new columns, the trigger,
/// and the new version's view schema.
async fn users(client: &Client) {
    exec(
        client,
        "CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL, name text);
         INSERT INTO public.users VALUES (1, 'one@example.com', 'one'), (2, 'two@example.com', 'two');
         ALTER TABLE public.users ADD COLUMN _pgbaton_new_id bigint, ADD COLUMN _pgbaton_new_email text;",
    )
    .await;
    install(client, &users_spec()).await;
    exec(
        client,
        &format!(
            "CREATE SCHEMA {VERSION};
             CREATE VIEW {VERSION}.users AS
               SELECT _pgbaton_new_id AS id, _pgbaton_new_email AS email, name FROM public.users;"
        ),
    )
    .await;
}

#[derive(Debug, PartialEq, Eq)]
struct Row {
    id: i32,
    new_id: Option<i64>,
    email: String,
    new_email: Option<String>,
    name: Option<String>,
    touched: bool,
}

async fn row(client: &Client, id: i32) -> Row {
    let r = client
        .query_one(
            "SELECT id, _pgbaton_new_id, email, _pgbaton_new_email, name, _pgbaton_touched
               FROM public.users WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap_or_else(|e| panic!("row {id}: {}", common::describe(&e)));
    Row {
        id: r.get(0),
        new_id: r.get(1),
        email: r.get(2),
        new_email: r.get(3),
        name: r.get(4),
        touched: r.get(5),
    }
}

fn expect(id: i32, email: &str, new_email: &str, name: &str) -> Row {
    Row {
        id,
        new_id: Some(id.into()),
        email: email.into(),
        new_email: Some(new_email.into()),
        name: Some(name.into()),
        touched: true,
    }
}

#[tokio::test]
async fn old_version_writes_fill_the_new_columns() {
    let db = fresh_db().await;
    let c = &db.client;
    users(c).await;
    VERSIONS
        .exec(
            c,
            V::Old,
            "INSERT INTO users (id, email, name) VALUES (3, 'Three@x.org', 'three')",
        )
        .await;
    assert_eq!(
        row(c, 3).await,
        expect(3, "Three@x.org", "THREE@X.ORG", "three")
    );
    VERSIONS
        .exec(
            c,
            V::Old,
            "UPDATE users SET email = 'one@y.org' WHERE id = 1",
        )
        .await;
    assert_eq!(row(c, 1).await, expect(1, "one@y.org", "ONE@Y.ORG", "one"));
    // An older version schema first in the path is the old version too.
    exec(
        c,
        "CREATE SCHEMA public_01_init;
         CREATE VIEW public_01_init.users AS SELECT id, email, name FROM public.users;",
    )
    .await;
    let after_01_init = Versions {
        old: Some("public_01_init"),
        ..VERSIONS
    };
    after_01_init
        .exec(
            c,
            V::Old,
            "INSERT INTO users VALUES (4, 'four@x.org', 'four')",
        )
        .await;
    assert_eq!(
        row(c, 4).await,
        expect(4, "four@x.org", "FOUR@X.ORG", "four")
    );
}

#[tokio::test]
async fn new_version_writes_fill_the_old_columns() {
    let db = fresh_db().await;
    let c = &db.client;
    users(c).await;
    VERSIONS
        .exec(
            c,
            V::New,
            "INSERT INTO users (id, email, name) VALUES (5, 'FIVE@X.ORG', 'five')",
        )
        .await;
    assert_eq!(
        row(c, 5).await,
        expect(5, "five@x.org", "FIVE@X.ORG", "five")
    );
    VERSIONS
        .exec(
            c,
            V::New,
            "UPDATE users SET email = 'Five@Z.org' WHERE id = 5",
        )
        .await;
    assert_eq!(
        row(c, 5).await,
        expect(5, "five@z.org", "Five@Z.org", "five")
    );
}

#[tokio::test]
async fn the_effective_search_path_decides_not_its_text() {
    let db = fresh_db().await;
    let c = &db.client;
    users(c).await;
    // "$user" does not exist, so the version schema is the effective first: the new version.
    exec(
        c,
        &format!(
            "SET search_path = \"$user\", {VERSION}, public;
             INSERT INTO users (id, email, name) VALUES (6, 'SIX@X.ORG', 'six');
             RESET search_path;"
        ),
    )
    .await;
    assert_eq!(row(c, 6).await, expect(6, "six@x.org", "SIX@X.ORG", "six"));
    // The version schema in the path but not first: the old version.
    exec(
        c,
        &format!(
            "SET search_path = public, {VERSION};
             INSERT INTO users (id, email, name) VALUES (7, 'Seven@x.org', 'seven');
             RESET search_path;"
        ),
    )
    .await;
    assert_eq!(
        row(c, 7).await,
        expect(7, "Seven@x.org", "SEVEN@X.ORG", "seven")
    );
}

#[tokio::test]
async fn set_local_version_overrides_the_search_path() {
    let db = fresh_db().await;
    let c = &db.client;
    users(c).await;
    // Session on the base schema, transaction marked as the new version (a pooled connection),
    // by migration name and by version schema name.
    exec(
        c,
        &format!(
            "BEGIN;
             SET LOCAL pgbaton.version = '{MIGRATION}';
             INSERT INTO {VERSION}.users (id, email, name) VALUES (8, 'EIGHT@X.ORG', 'eight');
             COMMIT;
             BEGIN;
             SET LOCAL pgbaton.version = '{VERSION}';
             INSERT INTO {VERSION}.users (id, email, name) VALUES (9, 'NINE@X.ORG', 'nine');
             COMMIT;"
        ),
    )
    .await;
    assert_eq!(
        row(c, 8).await,
        expect(8, "eight@x.org", "EIGHT@X.ORG", "eight")
    );
    assert_eq!(
        row(c, 9).await,
        expect(9, "nine@x.org", "NINE@X.ORG", "nine")
    );
    // Session on the version schema, transaction marked as the base (old) version.
    VERSIONS
        .exec(
            c,
            V::New,
            "BEGIN;
             SET LOCAL pgbaton.version = 'public';
             INSERT INTO public.users (id, email, name) VALUES (10, 'Ten@x.org', 'ten');
             COMMIT",
        )
        .await;
    assert_eq!(
        row(c, 10).await,
        expect(10, "Ten@x.org", "TEN@X.ORG", "ten")
    );
    // SET LOCAL ends with the transaction: the next one is routed by the search path again.
    exec(
        c,
        "INSERT INTO public.users (id, email, name) VALUES (11, 'Eleven@x.org', 'e')",
    )
    .await;
    assert_eq!(
        row(c, 11).await,
        expect(11, "Eleven@x.org", "ELEVEN@X.ORG", "e")
    );
}

#[tokio::test]
async fn a_write_never_clobbers_what_the_other_version_wrote() {
    let db = fresh_db().await;
    let c = &db.client;
    users(c).await;
    // The new version writes a mixed-case email; the old column gets down() = lower case.
    VERSIONS
        .exec(
            c,
            V::New,
            "INSERT INTO users (id, email, name) VALUES (20, 'MiXed@X.org', 'mixed')",
        )
        .await;
    assert_eq!(
        row(c, 20).await,
        expect(20, "mixed@x.org", "MiXed@X.org", "mixed")
    );
    // Old version: a no-op update and an update of another column leave the new value alone
    // (up(old) would be MIXED@X.ORG).
    VERSIONS
        .exec(c, V::Old, "UPDATE users SET email = email WHERE id = 20")
        .await;
    VERSIONS
        .exec(c, V::Old, "UPDATE users SET name = 'renamed' WHERE id = 20")
        .await;
    assert_eq!(
        row(c, 20).await,
        expect(20, "mixed@x.org", "MiXed@X.org", "renamed")
    );
    // Old version changes the email: now up() applies.
    VERSIONS
        .exec(
            c,
            V::Old,
            "UPDATE users SET email = 'Old@x.org' WHERE id = 20",
        )
        .await;
    assert_eq!(
        row(c, 20).await,
        expect(20, "Old@x.org", "OLD@X.ORG", "renamed")
    );
    // The new version updates the name only: the old column keeps its mixed case (down() of
    // the unchanged new email would lower it).
    VERSIONS
        .exec(c, V::New, "UPDATE users SET name = 'again' WHERE id = 20")
        .await;
    assert_eq!(
        row(c, 20).await,
        expect(20, "Old@x.org", "OLD@X.ORG", "again")
    );
}

#[tokio::test]
async fn rows_from_before_the_migration_are_filled_on_first_write() {
    let db = fresh_db().await;
    let c = &db.client;
    users(c).await;
    // Rows 1 and 2 predate the trigger and are not backfilled: their new columns are empty.
    let before = row(c, 1).await;
    assert_eq!(
        (before.new_id, before.new_email.as_deref(), before.touched),
        (None, None, false)
    );
    // The new version can only find them by a column both versions share.
    VERSIONS
        .exec(
            c,
            V::New,
            "UPDATE users SET name = 'uno' WHERE name = 'one';
             UPDATE users SET email = 'DOS@X.ORG', name = 'dos' WHERE name = 'two'",
        )
        .await;
    // Not set by the writer: derived from the old columns; the old email stays as it was.
    assert_eq!(
        row(c, 1).await,
        expect(1, "one@example.com", "ONE@EXAMPLE.COM", "uno")
    );
    // Set by the writer: kept, and the old column follows through down().
    assert_eq!(row(c, 2).await, expect(2, "dos@x.org", "DOS@X.ORG", "dos"));
}

#[tokio::test]
async fn the_backfill_setting_skips_the_trigger() {
    let db = fresh_db().await;
    let c = &db.client;
    users(c).await;
    exec(
        c,
        "BEGIN;
         SET LOCAL pgbaton.backfill = 'on';
         UPDATE public.users SET _pgbaton_new_email = 'set by backfill' WHERE id = 1;
         COMMIT;",
    )
    .await;
    let r = row(c, 1).await;
    assert_eq!(r.new_email.as_deref(), Some("set by backfill"));
    assert!(
        !r.touched,
        "the trigger did not run, so the row is not marked"
    );
    // An empty setting does not count as on.
    exec(
        c,
        "BEGIN; SET LOCAL pgbaton.backfill = ''; UPDATE public.users SET name = 'x' WHERE id = 1; COMMIT;",
    )
    .await;
    assert!(row(c, 1).await.touched);
}

#[tokio::test]
async fn user_triggers_keep_working() {
    let db = fresh_db().await;
    let c = &db.client;
    exec(
        c,
        "CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL, name text,
                                    updated_at timestamptz);
         CREATE TABLE public.audit (id int, email text, new_email text);
         CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.updated_at := '2000-01-01'; NEW.name := coalesce(NEW.name, 'anon'); RETURN NEW; END $$;
         CREATE FUNCTION public.log() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.audit VALUES (NEW.id, NEW.email, NEW._pgbaton_new_email); RETURN NULL; END $$;
         -- fires before ours (\"A\" < \"_\") and after it (\"z\" > \"_\")
         CREATE TRIGGER \"A stamp\" BEFORE INSERT OR UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION public.stamp();
         CREATE TRIGGER z_log AFTER INSERT OR UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION public.log();
         ALTER TABLE public.users ADD COLUMN _pgbaton_new_id bigint, ADD COLUMN _pgbaton_new_email text;",
    )
    .await;
    let mut spec = users_spec();
    spec.old_scope
        .push((Ident::new("updated_at"), Ident::new("updated_at")));
    spec.new_scope
        .push((Ident::new("updated_at"), Ident::new("updated_at")));
    install(c, &spec).await;
    exec(c, "INSERT INTO users (id, email) VALUES (1, 'a@b.c')").await;
    let r = c
        .query_one(
            "SELECT name, updated_at::date::text, _pgbaton_new_email FROM users",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "anon");
    assert_eq!(r.get::<_, String>(1), "2000-01-01");
    assert_eq!(r.get::<_, String>(2), "A@B.C");
    let audit = c
        .query_one("SELECT id, email, new_email FROM audit", &[])
        .await
        .unwrap();
    assert_eq!(audit.get::<_, i32>(0), 1);
    assert_eq!(
        audit.get::<_, String>(2),
        "A@B.C",
        "the AFTER trigger sees the dual write"
    );
    let names: Vec<String> = c
        .query(
            "SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'public.users'::regclass
              AND NOT tgisinternal ORDER BY tgname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["A stamp", "_pgbaton_dual_write", "z_log"]);
}

#[tokio::test]
async fn install_is_idempotent_and_drop_removes_everything() {
    let db = fresh_db().await;
    let c = &db.client;
    users(c).await;
    install(c, &users_spec()).await;
    let count =
        |sql: &'static str| async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) };
    let triggers_sql = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.users'::regclass AND tgname = '_pgbaton_dual_write'";
    let functions_sql = "SELECT count(*) FROM pg_proc WHERE proname = '_pgbaton_dw_users'";
    assert_eq!(count(triggers_sql).await, 1);
    assert_eq!(count(functions_sql).await, 1);
    exec(c, "INSERT INTO users (id, email) VALUES (30, 'x@y.z')").await;
    assert_eq!(row(c, 30).await.new_email.as_deref(), Some("X@Y.Z"));

    let drop = triggers::drop_sql(&users_spec()).join(";\n");
    exec(c, &format!("BEGIN;\n{drop};\nCOMMIT")).await;
    exec(c, &format!("BEGIN;\n{drop};\nCOMMIT")).await;
    assert_eq!(count(triggers_sql).await, 0);
    assert_eq!(count(functions_sql).await, 0);
    exec(c, "INSERT INTO users (id, email) VALUES (31, 'x@y.z')").await;
    assert_eq!(row(c, 31).await.new_email, None);
}

#[tokio::test]
async fn install_takes_the_declared_lock_and_does_not_rewrite() {
    let db = fresh_db().await;
    let c = &db.client;
    exec(
        c,
        "CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL, name text);
         INSERT INTO public.users SELECT g, 'u' || g, NULL FROM generate_series(1, 1000) g;
         ALTER TABLE public.users ADD COLUMN _pgbaton_new_id bigint, ADD COLUMN _pgbaton_new_email text;",
    )
    .await;
    let step = triggers::install_step(&users_spec(), false);
    assert_eq!(
        (step.lock, step.work),
        (LockLevel::AccessExclusive, Work::Catalog)
    );
    let filenode = || async move {
        c.query_one("SELECT pg_relation_filenode('public.users')::bigint", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = filenode().await;
    let sql = step.statements().join(";\n");
    exec(c, &format!("BEGIN;\n{sql};")).await;
    let modes: Vec<String> = c
        .query(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'
              AND relation = 'public.users'::regclass",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    exec(c, "COMMIT").await;
    let strongest = modes
        .iter()
        .filter_map(|m| {
            [
                LockLevel::AccessShare,
                LockLevel::RowShare,
                LockLevel::RowExclusive,
                LockLevel::ShareUpdateExclusive,
                LockLevel::Share,
                LockLevel::ShareRowExclusive,
                LockLevel::Exclusive,
                LockLevel::AccessExclusive,
            ]
            .into_iter()
            .find(|l| l.pg_locks_mode() == Some(m.as_str()))
        })
        .max();
    assert_eq!(strongest, Some(step.lock), "{modes:?}");
    assert_eq!(
        filenode().await,
        before,
        "the marker column's default is catalog-only"
    );
    let touched: i64 = c
        .query_one(
            "SELECT count(*) FROM public.users WHERE _pgbaton_touched IS FALSE",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(touched, 1000);
}

#[tokio::test]
async fn odd_names_and_types_without_equality() {
    let db = fresh_db().await;
    let c = &db.client;
    // A table and columns named like keywords and like the function's own variables, a json
    // column (no `=` operator), and an add_column rule (no old column, no down).
    exec(
        c,
        "CREATE SCHEMA \"My App\";
         CREATE TABLE \"My App\".\"Odd Table\" (\"select\" int PRIMARY KEY, \"new\" text, doc json,
                                               \"_pgbaton_version\" text);
         INSERT INTO \"My App\".\"Odd Table\" VALUES (1, 'n', '{\"a\": 1}', 'v');
         ALTER TABLE \"My App\".\"Odd Table\" ADD COLUMN \"_pgbaton_new_new\" text,
                                              ADD COLUMN \"_pgbaton_new_full\" text;",
    )
    .await;
    let spec = TriggerSpec {
        table: QualName::new("My App", "Odd Table"),
        migration: "03 odd's".into(),
        version_schema: Ident::new("My App_03 odd's"),
        old_scope: pairs(&[
            ("select", "select"),
            ("new", "new"),
            ("doc", "doc"),
            ("_pgbaton_version", "_pgbaton_version"),
        ]),
        new_scope: pairs(&[
            ("select", "select"),
            ("new", "_pgbaton_new_new"),
            ("doc", "doc"),
            ("_pgbaton_version", "_pgbaton_version"),
            ("full", "_pgbaton_new_full"),
        ]),
        rules: vec![
            DualWriteRule {
                new_column: Ident::new("_pgbaton_new_new"),
                up: RawSql::new("\"new\" || '$_pgbaton_$'"),
                old_column: Some(Ident::new("new")),
                down: Some(RawSql::new("replace(\"new\", '$_pgbaton_$', '')")),
            },
            DualWriteRule {
                new_column: Ident::new("_pgbaton_new_full"),
                up: RawSql::new(
                    "\"select\" || ':' || \"new\" || ':' || _pgbaton_version || ':' || (doc->>'a')",
                ),
                old_column: None,
                down: None,
            },
        ],
        down_only: Vec::new(),
        marker: Ident::new("_pgbaton_touched"),
    };
    install(c, &spec).await;
    exec(
        c,
        "INSERT INTO \"My App\".\"Odd Table\" (\"select\", \"new\", doc, _pgbaton_version)
              VALUES (2, 'two', '{\"a\": 2}', 'w');
         UPDATE \"My App\".\"Odd Table\" SET doc = '{\"a\": 3}' WHERE \"select\" = 1;",
    )
    .await;
    let rows = c
        .query(
            "SELECT \"select\", _pgbaton_new_new, _pgbaton_new_full FROM \"My App\".\"Odd Table\" ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i32, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            (1, "n$_pgbaton_$".to_string(), "1:n:v:3".to_string()),
            (2, "two$_pgbaton_$".to_string(), "2:two:w:2".to_string()),
        ]
    );
    // The new version writes through `pgbaton.version` = the migration name (with a quote).
    exec(
        c,
        "BEGIN;
         SET LOCAL pgbaton.version = '03 odd''s';
         INSERT INTO \"My App\".\"Odd Table\" (\"select\", _pgbaton_new_new, _pgbaton_new_full)
              VALUES (3, 'three$_pgbaton_$', 'mine');
         COMMIT;",
    )
    .await;
    let r = c
        .query_one(
            "SELECT \"new\", _pgbaton_new_full FROM \"My App\".\"Odd Table\" WHERE \"select\" = 3",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "three");
    assert_eq!(
        r.get::<_, String>(1),
        "mine",
        "no down: the new version's value is kept"
    );
}

/// The rows of `sql` (one text column per value, NULL as `NULL`), joined by `|`.
async fn rows(client: &Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", common::describe(&e)))
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL"))
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// `drop_column` with `down`: items(id, sku, label, price); the new version dropped `label`
/// (`down: 'item ' || sku`) and `price` (`down: 0`).
#[tokio::test]
async fn down_only_rules_fill_dropped_columns_for_new_version_writers() {
    let db = fresh_db().await;
    let c = &db.client;
    exec(
        c,
        "CREATE TABLE public.items (id int PRIMARY KEY, sku text NOT NULL, label text,
                                    price numeric(10,2));
         INSERT INTO public.items VALUES (1, 'a1', 'Apple', 1.50), (2, 'b2', 'Banana', 0.25);",
    )
    .await;
    let spec = TriggerSpec {
        table: QualName::new("public", "items"),
        migration: MIGRATION.into(),
        version_schema: Ident::new(VERSION),
        old_scope: pairs(&[
            ("id", "id"),
            ("sku", "sku"),
            ("label", "label"),
            ("price", "price"),
        ]),
        new_scope: pairs(&[("id", "id"), ("sku", "sku")]),
        rules: Vec::new(),
        down_only: vec![
            DownOnlyRule {
                old_column: Ident::new("label"),
                down: RawSql::new("'item ' || sku"),
            },
            DownOnlyRule {
                old_column: Ident::new("price"),
                down: RawSql::new("0"),
            },
        ],
        marker: Ident::new("_pgbaton_touched"),
    };
    install(c, &spec).await;
    exec(
        c,
        &format!(
            "CREATE SCHEMA {VERSION};
             CREATE VIEW {VERSION}.items AS SELECT id, sku FROM public.items;"
        ),
    )
    .await;
    let all = "SELECT id, sku, label, price, _pgbaton_touched FROM public.items ORDER BY id";

    // New version: an insert fills both; an update recomputes what `down` reads, and never
    // resets a constant `down`'s column (row 1 predates the trigger: untouched).
    VERSIONS
        .exec(c, V::New, "INSERT INTO items (id, sku) VALUES (10, 'c3')")
        .await;
    VERSIONS
        .exec(c, V::New, "UPDATE items SET sku = 'a9' WHERE id = 1")
        .await;
    // A write that changes nothing `down` reads leaves both alone.
    VERSIONS
        .exec(c, V::New, "UPDATE items SET sku = sku WHERE id = 2")
        .await;
    assert_eq!(
        rows(c, all).await,
        [
            "1|a9|item a9|1.50|t",
            "2|b2|Banana|0.25|t",
            "10|c3|item c3|0.00|t",
        ]
    );

    // Old version: its own values stay, on insert and on update (the trigger does nothing).
    VERSIONS
        .exec(
            c,
            V::Old,
            "INSERT INTO items VALUES (11, 'd4', 'Durian', 9.99);
             INSERT INTO items (id, sku) VALUES (12, 'e5');
             UPDATE items SET label = 'Cherry', price = 3, sku = 'c4' WHERE id = 10",
        )
        .await;
    assert_eq!(
        rows(
            c,
            "SELECT id, sku, label, price FROM public.items WHERE id >= 10 ORDER BY id"
        )
        .await,
        ["10|c4|Cherry|3.00", "11|d4|Durian|9.99", "12|e5|NULL|NULL"]
    );

    // The new version by `SET LOCAL pgbaton.version`, on a row the old version wrote.
    exec(
        c,
        &format!(
            "BEGIN; SET LOCAL pgbaton.version = '{MIGRATION}';
             UPDATE public.items SET sku = 'd5' WHERE id = 11; COMMIT;"
        ),
    )
    .await;
    assert_eq!(
        rows(
            c,
            "SELECT id, sku, label, price FROM public.items WHERE id = 11"
        )
        .await,
        ["11|d5|item d5|9.99"]
    );
}

/// A down-only rule next to a column copy (`alter_column` + `drop_column` in one migration): it
/// reads the new version's names, so the copy, after the copy's own rule has run.
#[tokio::test]
async fn down_only_rules_read_the_new_version_columns() {
    let db = fresh_db().await;
    let c = &db.client;
    exec(
        c,
        "CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL, name text);
         INSERT INTO public.users VALUES (1, 'one@example.com', 'one'), (2, 'two@example.com', 'two');
         ALTER TABLE public.users ADD COLUMN _pgbaton_new_email text;
         -- what the backfill does before the new version exists
         UPDATE public.users SET _pgbaton_new_email = upper(email);",
    )
    .await;
    let mut spec = users_spec();
    spec.rules.remove(0);
    spec.new_scope = pairs(&[("id", "id"), ("email", "_pgbaton_new_email")]);
    spec.down_only.push(DownOnlyRule {
        old_column: Ident::new("name"),
        down: RawSql::new("'n:' || email"),
    });
    install(c, &spec).await;
    exec(
        c,
        &format!(
            "CREATE SCHEMA {VERSION};
             CREATE VIEW {VERSION}.users AS SELECT id, _pgbaton_new_email AS email FROM public.users;"
        ),
    )
    .await;
    VERSIONS
        .exec(
            c,
            V::New,
            "INSERT INTO users (id, email) VALUES (3, 'MiXed@X.org');
             UPDATE users SET email = 'Q@X.org' WHERE id = 1;
             UPDATE users SET id = id WHERE id = 2",
        )
        .await;
    assert_eq!(
        rows(
            c,
            "SELECT id, email, _pgbaton_new_email, name FROM public.users ORDER BY id"
        )
        .await,
        [
            "1|q@x.org|Q@X.org|n:Q@X.org",
            "2|two@example.com|TWO@EXAMPLE.COM|two",
            "3|mixed@x.org|MiXed@X.org|n:MiXed@X.org",
        ]
    );
    // The old version writes the name itself; its email change reaches the copy through `up`.
    exec(
        c,
        "UPDATE public.users SET email = 'Old@x.org', name = 'mine' WHERE id = 3",
    )
    .await;
    assert_eq!(
        rows(
            c,
            "SELECT id, email, _pgbaton_new_email, name FROM public.users WHERE id = 3"
        )
        .await,
        ["3|Old@x.org|OLD@X.ORG|mine"]
    );
}
