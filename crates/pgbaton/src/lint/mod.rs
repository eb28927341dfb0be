//! `pgbaton lint`: judges SQL migrations (and pgroll-format files) without a database. Per
//! statement: the lock it takes, whether it scans, rewrites or builds under it, whether it breaks
//! the release that is still running; a finding per hazard with its line and column, why, and the
//! pgbaton operation that makes the same change safely. Safe statements produce no finding.
//!
//! A finding is accepted with a comment on the statement or on the lines before it:
//! `-- pgbaton-lint: allow set-not-null` (several ids separated by commas, or `all`).

pub mod rules;

use crate::convert::{self, Catalog};
use crate::sql::model::{statements, Change, ConstraintKind};
use crate::sql::Source;
use rules::{judge, Context, Finding, Rule};

/// Project defaults, from a config file (`.pgbaton-lint.yaml`) and the command line.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The PostgreSQL major version the migrations run on.
    #[serde(default = "default_pg")]
    pub pg_version: u32,
    /// Rules never reported.
    #[serde(default)]
    pub allow: Vec<String>,
    /// SQL files of earlier migrations: the tables they create are "existing", with known types.
    #[serde(default)]
    pub schema_sql: Vec<String>,
}

fn default_pg() -> u32 {
    15
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pg_version: default_pg(),
            allow: Vec::new(),
            schema_sql: Vec::new(),
        }
    }
}

/// One finding at a place in a file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The statement, as written (its first line).
    pub statement: String,
    #[serde(flatten)]
    pub finding: Finding,
}

/// A statement's lock and work, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StatementInfo {
    pub file: String,
    pub line: usize,
    pub lock: &'static str,
    pub work: rules::Work,
    pub findings: usize,
}

/// Everything `lint` found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    pub findings: Vec<Located>,
    pub statements: Vec<StatementInfo>,
    /// Findings an inline comment or the config accepted.
    pub accepted: usize,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The rules an `allow` comment in `text` names.
fn allowed_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("pgbaton-lint:") {
        let rest = &text[i + "pgbaton-lint:".len()..];
        let line = rest.lines().next().unwrap_or("").trim();
        let line = line.trim_end_matches("*/").trim();
        if let Some(ids) = line.strip_prefix("allow") {
            out.extend(
                ids.split([',', ' '])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
    }
    out
}

fn is_allowed(rule: Rule, allowed: &[String]) -> bool {
    allowed.iter().any(|a| a == "all" || a == rule.id())
}

/// The catalog of the earlier migrations `options` names.
pub fn base_catalog(options: &Options) -> Result<Catalog, String> {
    let mut catalog = Catalog::default();
    for path in &options.schema_sql {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        catalog
            .learn_script(&text)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(catalog)
}

/// Lints a SQL script.
pub fn lint_sql(file: &str, script: &str, options: &Options, base: &Catalog) -> Report {
    let mut report = Report::default();
    let src = Source::new(script);
    let stmts = match statements(script) {
        Ok(s) => s,
        Err(e) => {
            let (line, column) = e.location.map_or((1, 1), |l| src.line_col(l));
            report.findings.push(Located {
                file: file.into(),
                line,
                column,
                statement: src.line(line).trim().to_string(),
                finding: Finding {
                    rule: Rule::SyntaxError,
                    message: format!("PostgreSQL's parser refuses the file: {}", e.message),
                    lock: crate::step::LockLevel::None,
                    work: rules::Work::Catalog,
                    breaks_release: false,
                    fix: None,
                },
            });
            return report;
        }
    };
    let mut catalog = base.clone();
    let mut in_tx = false;
    let mut not_null_checks: Vec<(String, String)> = Vec::new();
    let mut prev_end = 0;
    for s in &stmts {
        let text = s.text(script);
        let mut allowed = options.allow.clone();
        allowed.extend(allowed_in(script.get(prev_end..s.end).unwrap_or("")));
        let after = script.get(s.end..).unwrap_or("");
        // A comment on the statement's own last line, after the `;`.
        allowed.extend(allowed_in(after.lines().next().unwrap_or("")));
        prev_end = s.end;
        let (line, column) = src.line_col(s.start);
        let mut lock = crate::step::LockLevel::None;
        let mut work = rules::Work::Catalog;
        let mut count = 0;
        for change in &s.changes {
            match change {
                Change::Begin => in_tx = true,
                Change::Commit => in_tx = false,
                _ => {}
            }
            let cx = Context {
                catalog: &catalog,
                pg_version: options.pg_version,
                in_transaction: in_tx,
                not_null_checks: &not_null_checks,
            };
            let (l, w, findings) = judge(change, &cx);
            if l > lock {
                lock = l;
            }
            if w != rules::Work::Catalog {
                work = w;
            }
            for mut f in findings {
                if is_allowed(f.rule, &allowed) {
                    report.accepted += 1;
                    continue;
                }
                f.fix = convert::suggestion(&format!("{text};"), &catalog);
                count += 1;
                report.findings.push(Located {
                    file: file.into(),
                    line,
                    column,
                    statement: text.lines().next().unwrap_or("").to_string(),
                    finding: f,
                });
            }
            note_not_null_check(change, &mut not_null_checks);
            catalog.learn(change, true);
        }
        report.statements.push(StatementInfo {
            file: file.into(),
            line,
            lock: lock.name(),
            work,
            findings: count,
        });
    }
    report
}

/// Remembers `CHECK (col IS NOT NULL)` constraints added validated (or validated later): on
/// PostgreSQL 12+ `SET NOT NULL` then skips its scan.
fn note_not_null_check(change: &Change, out: &mut Vec<(String, String)>) {
    if let Change::AddConstraint { table, constraint } = change {
        if let ConstraintKind::Check(expr) = &constraint.kind {
            if let Some(col) = expr.strip_suffix(" IS NOT NULL") {
                if !constraint.not_valid {
                    out.push((table.clone(), col.trim_matches('"').to_string()));
                }
            }
        }
    }
}

/// Lints a pgroll-format file: the `sql` operations' bodies as SQL, and every `up`/`down`
/// expression (a volatile or stable function gives batches and the trigger different values; a
/// sub-select runs once per row of the backfill).
pub fn lint_pgroll(file: &str, text: &str, options: &Options, base: &Catalog) -> Report {
    let mut report = Report::default();
    let src = Source::new(text);
    let raw: serde_json::Value = if file.ends_with(".json") {
        serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
    } else {
        serde_saphyr::from_str(text).unwrap_or(serde_json::Value::Null)
    };
    let mut push = |line: usize, statement: String, rule: Rule, message: String| {
        if is_allowed(rule, &options.allow) || is_allowed(rule, &allowed_in(src.line(line))) {
            report.accepted += 1;
            return;
        }
        report.findings.push(Located {
            file: file.into(),
            line,
            column: 1,
            statement,
            finding: Finding {
                rule,
                message,
                lock: crate::step::LockLevel::None,
                work: rules::Work::Rows,
                breaks_release: false,
                fix: None,
            },
        });
    };
    // Lines of string values, found in the text (the first occurrence after the last one).
    let line_of = |needle: &str, from: &mut usize| -> usize {
        let first = needle.lines().next().unwrap_or(needle);
        match text.get(*from..).and_then(|t| t.find(first)) {
            Some(i) => {
                *from += i;
                src.line_col(*from).0
            }
            None => 1,
        }
    };
    let mut cursor = 0;
    let (mut sub_findings, mut sub_accepted) = (Vec::new(), 0);
    let ops = raw
        .get("operations")
        .and_then(|o| o.as_array())
        .cloned()
        .unwrap_or_default();
    for op in &ops {
        let Some((kind, body)) = op.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let mut exprs: Vec<(String, String)> = Vec::new();
        for key in ["up", "down"] {
            match body.get(key) {
                Some(serde_json::Value::String(s)) if kind != "sql" => {
                    exprs.push((key.to_string(), s.clone()))
                }
                Some(serde_json::Value::Object(m)) => {
                    for (col, v) in m {
                        if let Some(s) = v.as_str() {
                            exprs.push((format!("{key}.{col}"), s.to_string()));
                        }
                    }
                }
                _ => {}
            }
        }
        for (field, expr) in exprs {
            let line = line_of(&expr, &mut cursor);
            if expr.contains(convert::PLACEHOLDER) {
                push(line, expr.clone(), Rule::Placeholder, format!("{kind}.{field} is a placeholder `pgbaton convert` left: write the expression"));
                continue;
            }
            for (rule, message) in judge_expr(kind, &field, &expr) {
                push(line, expr.clone(), rule, message);
            }
        }
        if kind == "sql" {
            for key in ["up", "down"] {
                if let Some(sql) = body.get(key).and_then(|v| v.as_str()) {
                    let line = line_of(sql, &mut cursor);
                    let mut sub = lint_sql(file, sql, options, base);
                    for f in &mut sub.findings {
                        f.line += line - 1;
                    }
                    sub_accepted += sub.accepted;
                    sub_findings.extend(sub.findings);
                }
            }
        }
    }
    if ops.is_empty() {
        if let Some((_, message)) = convert::find_placeholder(&raw) {
            push(1, String::new(), Rule::Placeholder, message);
        }
    }
    report.accepted += sub_accepted;
    report.findings.extend(sub_findings);
    report.findings.sort_by_key(|f| f.line);
    report
}

/// The findings of one `up`/`down` expression of a pgroll operation.
fn judge_expr(kind: &str, field: &str, expr: &str) -> Vec<(Rule, String)> {
    let parsed =
        crate::sql::parse_expr(expr).or_else(|_| crate::sql::parse_expr(&format!("({expr})")));
    let Ok(e) = parsed else {
        return vec![(
            Rule::SyntaxError,
            format!("{kind}.{field} is not one SQL expression"),
        )];
    };
    let json = e.json();
    let mut out = Vec::new();
    let calls: Vec<String> = crate::sql::function_calls(&json)
        .into_iter()
        .filter_map(|(n, _)| n.last().cloned())
        .filter(|n| rules::VOLATILE.contains(&n.as_str()) || rules::STABLE.contains(&n.as_str()))
        .collect();
    if let Some(f) = calls.first() {
        out.push((Rule::NonImmutableUpDown, format!(
            "{kind}.{field} calls {f}(), which is not immutable: the backfill's batches and the dual-write trigger compute different values for the same row"
        )));
    }
    if crate::sql::contains(&json, "SubLink") {
        out.push((Rule::SubselectPerRow, format!(
            "{kind}.{field} has a sub-select: it runs once per row, in every backfill batch and every trigger call"
        )));
    }
    out
}

/// Lints one file by its extension: `.yaml`, `.yml`, `.json` are pgroll files, anything else
/// (and `-`, standard input) SQL.
pub fn lint_file(file: &str, text: &str, options: &Options, base: &Catalog) -> Report {
    let lower = file.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".json") {
        lint_pgroll(file, text, options, base)
    } else {
        lint_sql(file, text, options, base)
    }
}

/// Human output: `file:line:col: rule: message`, the statement, a caret, the fix.
pub fn render_human(report: &Report, sources: &[(String, String)]) -> String {
    let mut out = String::new();
    for f in &report.findings {
        out.push_str(&format!(
            "{}:{}:{}: {} [{}{}]\n  {}\n",
            f.file,
            f.line,
            f.column,
            f.finding.rule.id(),
            f.finding.lock.name(),
            match f.finding.work {
                rules::Work::Catalog => String::new(),
                w => format!(
                    ", {}",
                    serde_json::to_value(w)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            },
            f.finding.message
        ));
        let line = sources
            .iter()
            .find(|(name, _)| name == &f.file)
            .map(|(_, text)| Source::new(text).line(f.line).to_string())
            .unwrap_or_else(|| f.statement.clone());
        out.push_str(&format!(
            "   | {line}\n   | {}^\n",
            " ".repeat(f.column.saturating_sub(1))
        ));
        match &f.finding.fix {
            Some(fix) => {
                out.push_str("  safe with pgbaton (operations to paste):\n");
                for l in fix.lines() {
                    out.push_str(&format!("    {l}\n"));
                }
            }
            None => out.push_str(&format!(
                "  no pgbaton operation does this safely: split it, or accept it with `-- pgbaton-lint: allow {}`\n",
                f.finding.rule.id()
            )),
        }
    }
    out.push_str(&format!(
        "{} finding(s) in {} statement(s){}\n",
        report.findings.len(),
        report.statements.len(),
        if report.accepted > 0 {
            format!(", {} accepted", report.accepted)
        } else {
            String::new()
        }
    ));
    out
}

/// GitHub Actions workflow annotations.
pub fn render_github(report: &Report) -> String {
    let esc = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let mut out = String::new();
    for f in &report.findings {
        let mut msg = f.finding.message.clone();
        if let Some(fix) = &f.finding.fix {
            msg.push_str("\nSafe with pgbaton:\n");
            msg.push_str(fix);
        }
        out.push_str(&format!(
            "::error file={},line={},col={},title=pgbaton lint: {}::{}\n",
            f.file,
            f.line,
            f.column,
            f.finding.rule.id(),
            esc(&msg)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_of(sql: &str) -> Vec<&'static str> {
        let base = {
            let mut c = Catalog::default();
            c.learn_script("CREATE TABLE users (id bigint PRIMARY KEY, email varchar(50), name text, age int);")
                .expect("schema");
            c
        };
        lint_sql("m.sql", sql, &Options::default(), &base)
            .findings
            .iter()
            .map(|f| f.finding.rule.id())
            .collect()
    }

    #[test]
    fn hazards_and_safe_forms() {
        assert_eq!(
            rules_of("CREATE INDEX i ON users (email);"),
            ["index-not-concurrent"]
        );
        assert!(rules_of("CREATE INDEX CONCURRENTLY i ON users (email);").is_empty());
        assert_eq!(
            rules_of("ALTER TABLE users ALTER COLUMN age TYPE bigint;"),
            ["type-change-rewrite"]
        );
        assert!(rules_of("ALTER TABLE users ALTER COLUMN email TYPE varchar(100);").is_empty());
        assert!(
            rules_of("ALTER TABLE users ADD COLUMN created_at timestamptz DEFAULT now();")
                .is_empty()
        );
        assert_eq!(
            rules_of("ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();"),
            ["volatile-default"]
        );
        // A table created in the same file has no rows and no running release.
        assert!(rules_of("CREATE TABLE t (id int); CREATE INDEX ti ON t (id); ALTER TABLE t ALTER COLUMN id SET NOT NULL;").is_empty());
        assert_eq!(
            rules_of("ALTER TABLE users RENAME COLUMN name TO full_name;"),
            ["rename-in-use"]
        );
        // Accepted inline.
        assert!(rules_of("-- pgbaton-lint: allow rename-in-use\nALTER TABLE users RENAME COLUMN name TO full_name;").is_empty());
        assert_eq!(
            rules_of("BEGIN; CREATE INDEX CONCURRENTLY i ON users (email); COMMIT;"),
            ["concurrent-in-transaction"]
        );
    }

    #[test]
    fn findings_carry_the_fix_and_position() {
        let r = lint_sql(
            "m.sql",
            "SELECT 1;\n  ALTER TABLE users ALTER COLUMN age SET NOT NULL;",
            &Options::default(),
            &Catalog::default(),
        );
        assert_eq!(r.findings.len(), 1);
        let f = &r.findings[0];
        assert_eq!((f.line, f.column), (2, 3));
        let fix = f.finding.fix.as_deref().expect("fix");
        assert!(
            fix.contains("alter_column:") && fix.contains("nullable: false"),
            "{fix}"
        );
    }
}
