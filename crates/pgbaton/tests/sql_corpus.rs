//! The SQL corpus (tests/fixtures/sql): migrations in the shapes Django, Rails, Alembic, Prisma
//! and Drizzle emit, plus hand-written ones, each statement marked `-- expect: <rule>` or
//! `-- expect: safe`. `lint` must find exactly the expected hazards, statement by statement;
//! `convert` of each file must run start → complete on a real server with data while the old
//! release writes (the workload client of `pgbaton_lab::workload` on `accounts`, its writes logged and
//! read back, plus a writer of `accounts` and `orders` rows the checks know), with no failed query
//! and every row right.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use pgbaton::convert::{convert, Catalog};
use pgbaton::format::{self, FileKind};
use pgbaton::lint::{lint_sql, Options};
use pgbaton::sql::model::statements;
use pgbaton::sql::Source;
use pgbaton_lab::workload::{OpMix, QueryKind, UsersTable, VersionPin, Workload, WorkloadConfig};

const DIR: &str = "tests/fixtures/sql";

fn corpus() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(DIR)
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .filter(|p| !p.ends_with("00_schema.sql"))
        .map(|p| {
            (
                p.file_stem().expect("stem").to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

fn schema_sql() -> String {
    std::fs::read_to_string(format!("{DIR}/00_schema.sql")).expect("schema")
}

fn base_catalog() -> Catalog {
    let mut c = Catalog::default();
    c.learn_script(&schema_sql()).expect("schema parses");
    c
}

/// `(line, expected rules)` of every statement with an `-- expect:` comment before it.
fn expectations(text: &str) -> Vec<(usize, BTreeSet<String>)> {
    let src = Source::new(text);
    let mut out = Vec::new();
    let mut prev = 0;
    for s in statements(text).expect("corpus parses") {
        let before = &text[prev..s.start];
        prev = s.end;
        let mut rules = BTreeSet::new();
        let mut marked = false;
        for l in before.lines() {
            if let Some(e) = l.trim().strip_prefix("-- expect:") {
                marked = true;
                for r in e.split(',').map(str::trim).filter(|r| *r != "safe") {
                    rules.insert(r.to_string());
                }
            }
        }
        if marked {
            out.push((src.line_col(s.start).0, rules));
        }
    }
    out
}

#[test]
fn lint_finds_every_hazard_and_nothing_on_safe_statements() {
    let base = base_catalog();
    let (mut hazards, mut safe, mut total) = (0, 0, 0);
    for (name, text) in corpus() {
        let report = lint_sql(&name, &text, &Options::default(), &base);
        let expected = expectations(&text);
        assert!(!expected.is_empty(), "{name}: no expectations");
        for (line, rules) in &expected {
            let found: BTreeSet<String> = report
                .findings
                .iter()
                .filter(|f| f.line == *line)
                .map(|f| f.finding.rule.id().to_string())
                .collect();
            assert_eq!(
                &found, rules,
                "{name}:{line}: lint found {found:?}, the corpus expects {rules:?}"
            );
            total += 1;
            if rules.is_empty() {
                safe += 1;
            } else {
                hazards += 1;
            }
            // Every finding says why and, where pgbaton has an operation, gives it.
            for f in report.findings.iter().filter(|f| f.line == *line) {
                assert!(!f.finding.message.is_empty());
            }
        }
        // No finding outside the marked statements.
        for f in &report.findings {
            assert!(
                expected.iter().any(|(l, _)| *l == f.line),
                "{name}:{}: unexpected finding {}",
                f.line,
                f.finding.rule.id()
            );
        }
    }
    assert!(total >= 40, "the corpus has {total} statements");
    assert!(
        hazards >= 20 && safe >= 20,
        "{hazards} hazards, {safe} safe"
    );
    // Every SQL hazard class is in the corpus.
    let all: BTreeSet<String> = corpus()
        .iter()
        .flat_map(|(_, t)| expectations(t))
        .flat_map(|(_, r)| r)
        .collect();
    for rule in [
        "type-change-rewrite",
        "index-not-concurrent",
        "foreign-key-validated",
        "check-validated",
        "set-not-null",
        "volatile-default",
        "not-null-without-default",
        "unique-build",
        "exclusion-constraint",
        "rename-in-use",
        "drop-in-use",
        "mass-update",
        "drop-index-not-concurrent",
        "table-rewrite",
        "truncate",
        "domain-constraint",
    ] {
        assert!(all.contains(rule), "no {rule} in the corpus");
    }
}

#[test]
fn fixes_are_operations_that_parse() {
    let base = base_catalog();
    let mut fixes = 0;
    for (name, text) in corpus() {
        for f in lint_sql(&name, &text, &Options::default(), &base).findings {
            let Some(fix) = f.finding.fix else { continue };
            let doc = format!("operations:\n{}", indent(&fix));
            if doc.contains(pgbaton::convert::PLACEHOLDER) {
                continue;
            }
            format::parse("fix.yaml", "fix", &doc, FileKind::Yaml).unwrap_or_else(|e| {
                panic!("{name}:{}: the fix does not parse: {e}\n{doc}", f.line)
            });
            fixes += 1;
        }
    }
    assert!(fixes >= 10, "{fixes} fixes");
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

#[test]
fn placeholders_are_refused_naming_the_field() {
    let text = std::fs::read_to_string(format!("{DIR}/hand_written_misc.sql")).expect("read");
    let conv = convert(&text, &base_catalog()).expect("converts");
    let yaml = conv.to_yaml("hand_written_misc.sql");
    let err = format::parse("misc.yaml", "misc", &yaml, FileKind::Yaml)
        .expect_err("a placeholder is refused");
    let msg = err.to_string();
    assert!(
        msg.contains("operations[0].add_column.up") || msg.contains("add_column.up"),
        "{msg}"
    );
    assert!(msg.contains("placeholder"), "{msg}");
}

/// Rows of the seed.
const ROWS: i64 = 2000;

async fn seed(env: &common::lifecycle::Env) {
    env.sql(&schema_sql()).await;
    env.sql(&format!(
        "INSERT INTO products SELECT g, 'p' || g, g % 50, 'L' || g FROM generate_series(1, 200) g;
         INSERT INTO accounts SELECT g, 'a' || g || '@x.io', 'n' || g, g % 90, 'active' FROM generate_series(1, {ROWS}) g;
         INSERT INTO orders (id, account_id, product_id, total, note)
           SELECT g, 1 + g % {ROWS}, 1 + g % 200, (g % 1000) / 10.0, 'o' || g FROM generate_series(1, {ROWS}) g;
         INSERT INTO legacy_audit SELECT g, 'w' || g FROM generate_series(1, 100) g;"
    ))
    .await;
}

/// A client of the old release: inserts accounts and orders and updates orders, through the
/// base schema, until told to stop. Returns (queries, accounts inserted, orders inserted); each
/// failure is counted in `failures`.
fn writer(
    url: String,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<(u64, i64, i64)> {
    tokio::spawn(async move {
        let client = common::connect(&url).await;
        let (mut queries, mut accounts, mut orders) = (0u64, 0i64, 0i64);
        let mut i = 0i64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let id = 1_000_000 + i;
            let sql = [
                format!("INSERT INTO accounts (id, email, name, age, status) VALUES ({id}, 'w{id}@x.io', 'w{id}', {}, 'new')", id % 90),
                format!("INSERT INTO orders (id, account_id, product_id, total, note) VALUES ({id}, {}, {}, 1.5, 'w')", 1 + i % ROWS, 1 + i % 200),
                format!("UPDATE orders SET note = 'u{i}' WHERE id = {}", 1 + (i * 7) % ROWS),
            ];
            for (k, q) in sql.iter().enumerate() {
                queries += 1;
                match client.batch_execute(q).await {
                    Ok(()) => {
                        if k == 0 {
                            accounts += 1;
                        } else if k == 1 {
                            orders += 1;
                        }
                    }
                    Err(e) => {
                        eprintln!("writer: {q}: {}", common::describe(&e));
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        (queries, accounts, orders)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converted_migrations_run_under_writes() {
    let base = base_catalog();
    let mut ran = 0;
    for (name, text) in corpus() {
        let conv = convert(&text, &base).unwrap_or_else(|e| panic!("{name}: {e}"));
        let yaml = conv.to_yaml(&name);
        let Ok(migration) = format::parse(&format!("{name}.yaml"), &name, &yaml, FileKind::Yaml)
        else {
            // Only the file with a placeholder may be refused (see the test above).
            assert!(
                yaml.contains(pgbaton::convert::PLACEHOLDER),
                "{name} does not parse:\n{yaml}"
            );
            continue;
        };
        let env = common::lifecycle::Env::new().await;
        seed(&env).await;
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let w = writer(env.db.url.clone(), stop.clone(), failures.clone());
        // And the workload client, as the old release: reads, updates and inserts on accounts.
        let accounts_table = UsersTable::new("accounts");
        let mut config = WorkloadConfig::from_url(&env.db.url).expect("url");
        let mix = OpMix {
            read: 40,
            update: 40,
            insert: 20,
            delete: 0,
        };
        config.clients = accounts_table.clients(2, VersionPin::Base, &mix);
        config.max_id = ROWS;
        config.log_writes = true;
        config.prepare = false;
        config.think_time = std::time::Duration::from_millis(2);
        let load = Workload::start(config).await.expect("workload");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let m = env.migrator().await;
        m.start(&migration, false)
            .await
            .unwrap_or_else(|e| panic!("{name}: start failed: {e}\n{yaml}"));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        let (queries, accounts, orders) = w.await.expect("writer");
        let report = load.stop().await;
        m.complete()
            .await
            .unwrap_or_else(|e| panic!("{name}: complete failed: {e}\n{yaml}"));
        assert_eq!(
            failures.load(Ordering::Relaxed),
            0,
            "{name}: failed queries"
        );
        assert!(queries > 30, "{name}: the writer ran {queries} queries");
        assert_eq!(
            report.total.failures, 0,
            "{name}: workload failures: {report}"
        );
        assert!(report.writes_logged > 20, "{name}: {report}");
        let inserted = report
            .writes
            .entries()
            .iter()
            .filter(|e| e.kind == QueryKind::Insert && !e.in_doubt)
            .count() as i64;
        let mismatches = report
            .writes
            .verify_table(&env.db.client, &accounts_table.verify_sql())
            .await
            .expect("read back");
        assert!(
            mismatches.is_empty(),
            "{name}: lost or wrong writes: {mismatches:#?}"
        );
        let c = &env.db.client;
        assert_eq!(
            common::scalar_i64(c, "SELECT count(*) FROM accounts").await,
            ROWS + accounts + inserted,
            "{name}: accounts"
        );
        assert_eq!(
            common::scalar_i64(c, "SELECT count(*) FROM orders").await,
            ROWS + orders,
            "{name}: orders"
        );
        assert_eq!(
            common::scalar_i64(
                c,
                &format!(
                    "SELECT count(*) FROM accounts \
                     WHERE (id <= {ROWS} OR name = 'w' || id) AND age IS DISTINCT FROM id % 90"
                )
            )
            .await,
            0,
            "{name}: ages"
        );
        assert_eq!(
            common::scalar_i64(c, "SELECT count(*) FROM orders WHERE id < 1000000 AND total IS DISTINCT FROM (id % 1000) / 10.0").await,
            0,
            "{name}: totals"
        );
        match name.as_str() {
            "rails_20240101120000" => assert_eq!(
                common::scalar_i64(
                    c,
                    "SELECT count(*) FROM products WHERE sku IS DISTINCT FROM 'SKU-' || id"
                )
                .await,
                0,
                "rails: sku"
            ),
            "django_0002" => assert_eq!(
                common::scalar_i64(
                    c,
                    "SELECT count(*) FROM accounts WHERE score IS DISTINCT FROM 0"
                )
                .await,
                0,
                "django: score"
            ),
            "alembic_0003" => assert_eq!(
                common::scalar_i64(c, "SELECT count(*) FROM orders WHERE ref IS NULL").await,
                0,
                "alembic: ref"
            ),
            _ => {}
        }
        ran += 1;
    }
    assert!(ran >= 5, "{ran} converted files ran");
}
