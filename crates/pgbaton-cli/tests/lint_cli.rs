//! `pgbaton lint`, `convert` and `plan --format` from the command line: exit codes, output
//! formats, standard input, the config file, inline acceptance, pgroll files.

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn pgbaton(args: &[&str], stdin: Option<&str>, dir: &std::path::Path) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgbaton"));
    c.args(args)
        .current_dir(dir)
        .env_remove("PGBATON_PG_URL")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run pgbaton");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pgbaton-lint-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

const HAZARD: &str = "ALTER TABLE users ADD COLUMN n int;\nCREATE INDEX users_n ON users (n);\n";

#[test]
fn exit_codes_formats_and_stdin() {
    let d = tempdir("formats");
    std::fs::write(d.join("m.sql"), HAZARD).expect("write");
    std::fs::write(
        d.join("ok.sql"),
        "CREATE INDEX CONCURRENTLY users_n ON users (n);\n",
    )
    .expect("write");

    let (code, out, _) = pgbaton(&["lint", "m.sql"], None, &d);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("m.sql:2:1: index-not-concurrent [SHARE, build]"),
        "{out}"
    );
    assert!(out.contains("   | ^"), "caret: {out}");
    assert!(out.contains("- create_index:"), "fix: {out}");

    let (code, out, _) = pgbaton(&["lint", "ok.sql"], None, &d);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 finding(s) in 1 statement(s)"), "{out}");

    let (code, out, _) = pgbaton(&["lint", "--format", "github", "-"], Some(HAZARD), &d);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("::error file=-,line=2,col=1,title=pgbaton lint: index-not-concurrent::"),
        "{out}"
    );
    assert!(
        !out.trim_end().contains('\n'),
        "one line per finding: {out}"
    );

    let (code, out, _) = pgbaton(&["lint", "--format", "json", "m.sql"], None, &d);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["findings"][0]["rule"], "index-not-concurrent");
    assert_eq!(v["findings"][0]["lock"], "SHARE");
    assert_eq!(v["findings"][0]["line"], 2);
    assert_eq!(v["statements"][0]["lock"], "ACCESS EXCLUSIVE");
    assert_eq!(v["statements"].as_array().map(Vec::len), Some(2));

    let (code, _, err) = pgbaton(&["lint", "missing.sql"], None, &d);
    assert_eq!(code, 3, "{err}");
    let (code, out, _) = pgbaton(&["lint", "-"], Some("ALTER TABLE users ADD COLUMN;"), &d);
    assert_eq!(code, 1);
    assert!(out.contains("syntax-error"), "{out}");
}

#[test]
fn config_file_and_inline_acceptance() {
    let d = tempdir("config");
    std::fs::write(d.join("m.sql"), HAZARD).expect("write");
    std::fs::write(
        d.join("inline.sql"),
        "CREATE INDEX users_n ON users (n); -- pgbaton-lint: allow index-not-concurrent\n",
    )
    .expect("write");
    let (code, out, _) = pgbaton(&["lint", "inline.sql"], None, &d);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 accepted"), "{out}");

    std::fs::write(
        d.join(".pgbaton-lint.yaml"),
        "allow: [index-not-concurrent]\n",
    )
    .expect("w");
    let (code, out, _) = pgbaton(&["lint", "m.sql"], None, &d);
    assert_eq!(code, 0, "{out}");

    std::fs::write(d.join(".pgbaton-lint.yaml"), "allow: [no-such-rule]\n").expect("w");
    let (code, _, err) = pgbaton(&["lint", "m.sql"], None, &d);
    assert_eq!(code, 3);
    assert!(err.contains("no-such-rule"), "{err}");

    // --pg-version: before 11 every default rewrites.
    std::fs::remove_file(d.join(".pgbaton-lint.yaml")).expect("rm");
    let sql = "ALTER TABLE users ADD COLUMN n int DEFAULT 0;";
    let (code, _, _) = pgbaton(&["lint", "-"], Some(sql), &d);
    assert_eq!(code, 0);
    let (code, out, _) = pgbaton(&["lint", "--pg-version", "10", "-"], Some(sql), &d);
    assert_eq!(code, 1);
    assert!(out.contains("volatile-default"), "{out}");
}

#[test]
fn pgroll_files_are_linted() {
    let d = tempdir("pgroll");
    std::fs::write(
        d.join("01_x.yaml"),
        "operations:\n  - add_column:\n      table: users\n      column:\n        name: token\n        type: text\n        nullable: true\n      up: md5(random()::text)\n  - alter_column:\n      table: users\n      column: team\n      type: bigint\n      up: (SELECT id FROM teams WHERE teams.name = team)\n      down: team::text\n  - sql:\n      up: CREATE INDEX users_token ON users (token)\n",
    )
    .expect("write");
    let (code, out, _) = pgbaton(&["lint", "--format", "json", "01_x.yaml"], None, &d);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let rules: Vec<&str> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert_eq!(
        rules,
        [
            "non-immutable-up-down",
            "subselect-per-row",
            "index-not-concurrent"
        ],
        "{out}"
    );
    let lines: Vec<i64> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["line"].as_i64())
        .collect();
    assert_eq!(lines, [8, 13, 16], "{out}");
}

#[test]
fn convert_writes_yaml_json_and_notes() {
    let d = tempdir("convert");
    let sql = "BEGIN;\nALTER TABLE users ADD COLUMN score int DEFAULT 0 NOT NULL;\nALTER TABLE users ALTER COLUMN score DROP DEFAULT;\nALTER TABLE users ALTER COLUMN age TYPE bigint;\nINSERT INTO alembic_version VALUES ('x');\nCOMMIT;\n";
    std::fs::write(d.join("m.sql"), sql).expect("write");
    let (code, out, err) = pgbaton(&["convert", "m.sql"], None, &d);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("m.sql:1: dropped: BEGIN"), "{err}");
    assert!(
        err.contains("m.sql:5: dropped:") && err.contains("ORM bookkeeping"),
        "{err}"
    );
    assert!(err.contains("merged: lines 2, 3"), "{err}");
    assert!(
        err.contains("placeholder") && err.contains("operations[1].alter_column.down"),
        "{err}"
    );
    assert!(out.contains("# dropped (line 1): BEGIN"), "{out}");
    assert!(out.contains("up: CAST(age AS bigint)"), "{out}");
    let doc: serde_json::Value = serde_saphyr::from_str(&out).expect("yaml");
    assert_eq!(doc["operations"][0]["add_column"]["up"], "0");
    // The placeholder is refused by validate/start (parsing) and found by lint.
    std::fs::write(d.join("02_m.yaml"), &out).expect("write");
    let (code, lint, _) = pgbaton(&["lint", "02_m.yaml"], None, &d);
    assert_eq!(code, 1);
    assert!(lint.contains("placeholder"), "{lint}");

    // With the earlier migration, the old type is known: no placeholder.
    std::fs::write(
        d.join("schema.sql"),
        "CREATE TABLE users (id int, age int);",
    )
    .expect("w");
    let (code, out, _) = pgbaton(
        &["convert", "--json", "--schema-sql", "schema.sql", "-"],
        Some(sql),
        &d,
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["operations"][1]["alter_column"]["down"],
        "CAST(age AS int)"
    );
}

#[test]
fn start_and_validate_refuse_placeholders() {
    let Some(_) = common::cluster() else { return };
    let db = common::fresh_db_sync();
    let d = tempdir("refuse");
    let sql = "ALTER TABLE users ALTER COLUMN age TYPE bigint;\n";
    let (code, out, _) = pgbaton(&["convert", "-"], Some(sql), &d);
    assert_eq!(code, 0);
    let file = d.join("02_m.yaml");
    std::fs::write(&file, &out).expect("write");
    let file = file.to_string_lossy().into_owned();
    let (code, _) = common::pgbaton_run(&db.url, &["init"]);
    assert_eq!(code, 0);
    for cmd in ["validate", "start", "plan"] {
        let (code, err) = common::pgbaton_run(&db.url, &[cmd, &file]);
        assert_eq!(code, 3, "{cmd}: {err}");
        assert!(
            err.contains("02_m.yaml:") && err.contains("operations[0].alter_column.down"),
            "{cmd}: {err}"
        );
        assert!(err.contains("pgbaton convert"), "{cmd}: {err}");
    }
    // A `sql` body PostgreSQL's parser refuses is reported at load, with the file, line and
    // field, before anything runs.
    let bad = d.join("03_bad.yaml");
    std::fs::write(
        &bad,
        "operations:\n  - sql:\n      up: |\n        CREATE TABLE t (id int);\n        CREATE TABLEE u (id int);\n",
    )
    .expect("write");
    let bad = bad.to_string_lossy().into_owned();
    let (code, err) = common::pgbaton_run(&db.url, &["start", &bad]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("03_bad.yaml:4:") && err.contains("operations[0].sql.up"),
        "{err}"
    );
    assert!(
        err.contains("syntax error at or near \"TABLEE\" (line 2, column 8"),
        "{err}"
    );
    let c = common::block_on_thread({
        let url = db.url.clone();
        async move {
            let c = common::connect(&url).await;
            common::scalar_i64(&c, "SELECT count(*) FROM pg_class WHERE relname = 't'").await
        }
    });
    assert_eq!(c, 0, "nothing ran");
}

#[test]
fn plan_as_markdown() {
    let Some(_) = common::cluster() else { return };
    let db = common::fresh_db_sync();
    let d = tempdir("plan");
    common::block_on_thread({
        let url = db.url.clone();
        async move {
            let c = common::connect(&url).await;
            common::exec(&c, "CREATE TABLE users (id int PRIMARY KEY, name text)").await;
        }
    });
    let file = d.join("01_idx.yaml");
    std::fs::write(
        &file,
        "operations:\n  - create_index:\n      name: users_name\n      table: users\n      columns: [name]\n",
    )
    .expect("write");
    let file = file.to_string_lossy().into_owned();
    let (code, out) = common::pgbaton_run(&db.url, &["plan", &file, "--format", "markdown"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("### pgbaton plan: `01_idx`"), "{out}");
    assert!(
        out.contains("| # | step | table | lock | work | blocks the app |"),
        "{out}"
    );
    assert!(out.contains("SHARE UPDATE EXCLUSIVE"), "{out}");
    assert!(out.contains("CREATE INDEX CONCURRENTLY"), "{out}");
    let (code, out) = common::pgbaton_run(&db.url, &["plan", &file, "--format", "json"]);
    assert_eq!(code, 0, "{out}");
    let _: serde_json::Value = serde_json::from_str(&out).expect("json plan");
}
