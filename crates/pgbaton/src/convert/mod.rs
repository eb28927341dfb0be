//! `pgbaton convert`: a SQL migration (what Django, Rails, Alembic, Prisma, Drizzle... emit) into a
//! pgroll-format migration that pgbaton runs with zero downtime. The whole file at once:
//!
//! - transaction control (`BEGIN`, `COMMIT`), `SET`, Drizzle's `--> statement-breakpoint` and ORM
//!   bookkeeping (`alembic_version`, `django_migrations`, `schema_migrations`, ...) are dropped,
//!   each with a note;
//! - statements on one column merge into one operation where the format allows (`ADD COLUMN` +
//!   `UPDATE .. SET col = expr` + `SET NOT NULL` + `DROP DEFAULT` → one `add_column` with `up`;
//!   `UPDATE .. WHERE col IS NULL` + `SET NOT NULL` → one `alter_column`; `ADD CONSTRAINT ..
//!   NOT VALID` + `VALIDATE CONSTRAINT` → one `create_constraint`);
//! - `up`/`down` are inferred where a sound expression exists (a `USING` clause, the cast the
//!   statement itself implies, the old type or default when known); where none exists the field
//!   holds a [`PLACEHOLDER`] that `start`, `validate` and `lint` refuse, naming the field;
//! - a `DROP COLUMN` + `ADD COLUMN` pair on one table is reported as data loss with the
//!   `rename_column` to use if it was meant as a rename;
//! - anything else becomes a `sql` operation, with a warning. Nothing is lost silently: every
//!   dropped or kept-as-is statement is in the notes, which the output carries as comments.

mod catalog;
mod ops;
pub mod value;

pub use catalog::Catalog;

use crate::sql::model::{statements, Change, Statement};
use crate::sql::{Source, SqlError};
use value::{MapBuilder, V};

/// The marker of a field `convert` could not fill. Files holding it are refused by `start`,
/// `validate` and `lint` (see [`find_placeholder`]).
pub const PLACEHOLDER: &str = "PGBATON-TODO";

/// ORM bookkeeping tables: statements on them record which migrations ran, not schema changes.
const BOOKKEEPING: &[&str] = &[
    "alembic_version",
    "django_migrations",
    "schema_migrations",
    "ar_internal_metadata",
    "_prisma_migrations",
    "__drizzle_migrations",
    "flyway_schema_history",
    "databasechangelog",
    "databasechangeloglock",
    "_sqlx_migrations",
    "knex_migrations",
    "knex_migrations_lock",
];

/// The kind of a [`Note`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// A statement left out of the operations (and why).
    Dropped,
    /// Statements merged into one operation.
    Merged,
    /// A statement kept as a `sql` operation, or another thing to look at.
    Warning,
    /// The file loses data (a drop + add that looks like a rename).
    DataLoss,
    /// A field left as a placeholder.
    Placeholder,
}

/// A note of the conversion, at a line of the SQL file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub line: usize,
    pub kind: NoteKind,
    pub message: String,
}

/// The result of converting a file.
#[derive(Clone, Debug)]
pub struct Conversion {
    /// The operations, each `{kind: {...}}`.
    pub operations: Vec<V>,
    pub notes: Vec<Note>,
}

impl Conversion {
    /// The migration document.
    pub fn document(&self) -> V {
        MapBuilder::new()
            .put("operations", V::List(self.operations.clone()))
            .build()
    }

    /// YAML, with the notes as comments at the top.
    pub fn to_yaml(&self, source: &str) -> String {
        let mut out = format!("# Converted by `pgbaton convert` from {source}.\n");
        if self.notes.iter().any(|n| n.kind == NoteKind::Placeholder) {
            out.push_str(&format!(
                "# Fields holding {PLACEHOLDER} need an expression: start, validate and lint refuse the file until then.\n"
            ));
        }
        for n in &self.notes {
            out.push_str(&format!(
                "# {} (line {}): {}\n",
                n.kind_label(),
                n.line,
                n.message
            ));
        }
        out.push_str(&self.document().to_yaml(0));
        out
    }

    /// JSON (notes are not part of the document: see [`Conversion::notes`]).
    pub fn to_json(&self) -> String {
        format!("{}\n", self.document().to_json_text(0))
    }
}

impl Note {
    pub fn kind_label(&self) -> &'static str {
        match self.kind {
            NoteKind::Dropped => "dropped",
            NoteKind::Merged => "merged",
            NoteKind::Warning => "warning",
            NoteKind::DataLoss => "DATA LOSS",
            NoteKind::Placeholder => "placeholder",
        }
    }
}

/// A placeholder value: the marker and what to write.
fn placeholder(what: &str) -> String {
    format!("{PLACEHOLDER}: {what}")
}

/// The first string holding the [`PLACEHOLDER`] in a migration document, as its field path and
/// a message: files fresh out of `convert` must be finished by hand before they run.
pub fn find_placeholder(raw: &serde_json::Value) -> Option<(Vec<crate::format::PathSeg>, String)> {
    use crate::format::PathSeg;
    fn walk(v: &serde_json::Value, path: &mut Vec<PathSeg>) -> Option<String> {
        match v {
            serde_json::Value::String(s) if s.contains(PLACEHOLDER) => Some(s.clone()),
            serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, x)| {
                path.push(PathSeg::Index(i));
                let r = walk(x, path);
                if r.is_none() {
                    path.pop();
                }
                r
            }),
            serde_json::Value::Object(map) => map.iter().find_map(|(k, x)| {
                path.push(PathSeg::Key(k.clone()));
                let r = walk(x, path);
                if r.is_none() {
                    path.pop();
                }
                r
            }),
            _ => None,
        }
    }
    let mut path = Vec::new();
    let text = walk(raw, &mut path)?;
    Some((
        path,
        format!("this field is a placeholder left by `pgbaton convert` and must be written by hand: {text:?}"),
    ))
}

/// One change of the file, with where it is.
struct Item<'a> {
    line: usize,
    text: &'a str,
    change: Change,
}

/// Converts a SQL migration. `known`: the tables before this file (from earlier migrations).
pub fn convert(script: &str, known: &Catalog) -> Result<Conversion, SqlError> {
    let stmts = statements(script)?;
    let src = Source::new(script);
    let mut notes = Vec::new();
    let breakpoints: Vec<usize> = script
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("--> statement-breakpoint"))
        .map(|(i, _)| i + 1)
        .collect();
    if let Some(&first) = breakpoints.first() {
        notes.push(Note {
            line: first,
            kind: NoteKind::Dropped,
            message: format!(
                "{} Drizzle `--> statement-breakpoint` marker(s): statement boundaries come from the parser",
                breakpoints.len()
            ),
        });
    }
    let mut items = Vec::new();
    for s in &stmts {
        let line = src.line_col(s.start).0;
        if let Some(why) = dropped(s) {
            notes.push(Note {
                line,
                kind: NoteKind::Dropped,
                message: format!("{} — {why}", first_line(s.text(script))),
            });
            continue;
        }
        if let Some(what) = &s.inexpressible {
            // Kept whole, as written: an operation would lose `what`.
            items.push(Item {
                line,
                text: s.text(script),
                change: Change::Other {
                    tag: format!("a statement with {what}, which no pgbaton operation expresses"),
                    table: None,
                },
            });
            continue;
        }
        for change in &s.changes {
            items.push(Item {
                line,
                text: s.text(script),
                change: change.clone(),
            });
        }
    }
    let mut cx = ops::Converter {
        catalog: known.clone(),
        items,
        consumed: Vec::new(),
        notes,
        operations: Vec::new(),
    };
    cx.consumed = vec![false; cx.items.len()];
    cx.run();
    cx.notes.sort_by_key(|n| n.line);
    Ok(Conversion {
        operations: cx.operations,
        notes: cx.notes,
    })
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.len() > 80 {
        let mut cut = 77;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &line[..cut])
    } else {
        line.to_string()
    }
}

/// Why a statement is left out, or `None` to convert it.
fn dropped(s: &Statement) -> Option<String> {
    let mut why = None;
    for c in &s.changes {
        why = match c {
            Change::Begin | Change::Commit => Some(
                "transaction control: pgbaton runs each step in the transaction its lock needs"
                    .to_string(),
            ),
            Change::Set(name) => Some(format!(
                "session setting {name}: pgbaton sets lock_timeout and statement_timeout per step itself"
            )),
            Change::CreateTable { table, .. }
            | Change::Insert { table }
            | Change::Update { table, .. }
            | Change::Delete { table, .. }
                if BOOKKEEPING.contains(&table.as_str()) =>
            {
                Some(format!(
                    "ORM bookkeeping ({table}): pgbaton records its own history in its state schema"
                ))
            }
            _ => return None,
        };
    }
    why
}

/// The operations for one statement on its own, as YAML (what `lint` suggests as the safe
/// way to make the change); `None` when there is no operation for it.
pub fn suggestion(statement: &str, known: &Catalog) -> Option<String> {
    let conv = convert(statement, known).ok()?;
    if conv.operations.is_empty() || conv.operations.iter().all(|o| o.get("sql").is_some()) {
        return None;
    }
    Some(V::List(conv.operations).to_yaml(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(sql: &str) -> Conversion {
        let mut known = Catalog::default();
        known
            .learn_script(
                "CREATE TABLE t (id int PRIMARY KEY, a int, b text NOT NULL, c int DEFAULT 7);",
            )
            .expect("schema");
        convert(sql, &known).expect("converts")
    }

    fn kinds(c: &Conversion) -> Vec<String> {
        c.operations
            .iter()
            .filter_map(|o| match o {
                V::Map(m) => m.first().map(|(k, _)| k.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn merges_statements_on_one_column() {
        let c = conv("ALTER TABLE t ADD COLUMN d int;\nUPDATE t SET d = a * 2;\nALTER TABLE t ALTER COLUMN d SET NOT NULL;");
        assert_eq!(kinds(&c), ["add_column"]);
        let body = c.operations[0].get("add_column").expect("body");
        assert_eq!(body.get("up").and_then(V::as_str), Some("a * 2"));
        assert!(body.get("column").and_then(|c| c.get("nullable")).is_none());
        assert!(c.notes.iter().any(|n| n.kind == NoteKind::Merged));
        // UPDATE .. WHERE col IS NULL + SET NOT NULL: one alter_column.
        let c =
            conv("UPDATE t SET a = 0 WHERE a IS NULL;\nALTER TABLE t ALTER COLUMN a SET NOT NULL;");
        assert_eq!(kinds(&c), ["alter_column"]);
        assert_eq!(
            c.operations[0]
                .get("alter_column")
                .and_then(|b| b.get("up"))
                .and_then(V::as_str),
            Some("COALESCE(a, 0)")
        );
        // NOT VALID + VALIDATE: one create_constraint.
        let c = conv("ALTER TABLE t ADD CONSTRAINT pos CHECK (a > 0) NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT pos;");
        assert_eq!(kinds(&c), ["create_constraint"]);
    }

    #[test]
    fn infers_or_marks_up_and_down() {
        let c = conv("ALTER TABLE t ALTER COLUMN a TYPE bigint;\nALTER TABLE t ALTER COLUMN c DROP NOT NULL;\nALTER TABLE t ALTER COLUMN a SET NOT NULL;");
        let alter = c.operations[0].get("alter_column").expect("alter");
        assert_eq!(
            alter.get("down").and_then(V::as_str),
            Some("CAST(a AS int)")
        );
        let drop_nn = c.operations[1].get("alter_column").expect("drop not null");
        assert_eq!(
            drop_nn.get("down").and_then(V::as_str),
            Some("COALESCE(c, 7)")
        );
        let set_nn = c.operations[2].get("alter_column").expect("set not null");
        assert!(set_nn
            .get("up")
            .and_then(V::as_str)
            .is_some_and(|u| u.starts_with(PLACEHOLDER)));
        assert!(c.notes.iter().any(|n| n.kind == NoteKind::Placeholder
            && n.message.starts_with("operations[2].alter_column.up")));
        // A type change of a column of a table no earlier migration shows: down is a placeholder.
        let c = convert(
            "ALTER TABLE u ALTER COLUMN x TYPE text USING x::text;",
            &Catalog::default(),
        )
        .expect("converts");
        let alter = c.operations[0].get("alter_column").expect("alter");
        assert_eq!(alter.get("up").and_then(V::as_str), Some("x::text"));
        assert!(alter
            .get("down")
            .and_then(V::as_str)
            .is_some_and(|d| d.starts_with(PLACEHOLDER)));
    }

    #[test]
    fn nothing_is_lost_silently() {
        let c = conv("SET statement_timeout = 0;\nCREATE INDEX i ON t (a) INCLUDE (b);\nALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES t (id) DEFERRABLE;\nCREATE EXTENSION IF NOT EXISTS pg_trgm;\nALTER TABLE t DROP COLUMN b;\nALTER TABLE t ADD COLUMN b2 text;");
        assert_eq!(
            kinds(&c),
            ["sql", "sql", "sql", "drop_column", "add_column"]
        );
        let text: Vec<String> = c
            .notes
            .iter()
            .map(|n| format!("{}: {}", n.kind_label(), n.message))
            .collect();
        let all = text.join("\n");
        assert!(all.contains("dropped: SET statement_timeout"), "{all}");
        assert!(all.contains("INCLUDE columns"), "{all}");
        assert!(all.contains("DEFERRABLE"), "{all}");
        assert!(all.contains("CREATE EXTENSION"), "{all}");
        assert!(
            all.contains("DATA LOSS: DROP COLUMN t.b") && all.contains("to: b2"),
            "{all}"
        );
        // drop_column of a NOT NULL column without default: the old release needs a down.
        let d = c.operations[3].get("drop_column").expect("drop");
        assert!(d
            .get("down")
            .and_then(V::as_str)
            .is_some_and(|x| x.starts_with(PLACEHOLDER)));
    }
}
