//! The applied history against a directory of migration files: checksums of each file's parsed
//! content, and the check `migrate`, `start` and `status` make before anything runs — which
//! applied file changed ("divergent"), which disappeared ("missing"), and which files are
//! pending. Pure: no I/O here; the migrator reads the history and records what this decides.

use sha2::{Digest, Sha256};

use crate::format::Migration;
use crate::state::{self, MigrationRecord};

/// The checksum of a migration document: SHA-256 (hex) of its canonical JSON — keys sorted at
/// every level, no whitespace, the optional top-level `name` left out (the file name is the
/// migration's name). Re-indenting a YAML file, reordering its keys or converting it to JSON
/// does not change it; changing any value does.
pub fn checksum(document: &serde_json::Value) -> String {
    let mut text = String::new();
    match document {
        serde_json::Value::Object(map) => {
            let mut filtered = serde_json::Map::new();
            for (k, v) in map {
                if k != "name" {
                    filtered.insert(k.clone(), v.clone());
                }
            }
            canonical(&serde_json::Value::Object(filtered), &mut text);
        }
        other => canonical(other, &mut text),
    }
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Canonical JSON: object keys sorted, whatever order the map keeps them in.
fn canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The kinds of a document's operations, in order (`["add_column", "sql"]`): what an imported
/// pgroll record (pgroll stores its own rendering of the file) and the file must agree on.
pub fn operation_kinds(document: &serde_json::Value) -> Vec<String> {
    document
        .get("operations")
        .and_then(|ops| ops.as_array())
        .map(|ops| {
            ops.iter()
                .map(|op| match op.as_object() {
                    Some(o) if o.len() == 1 => o.keys().next().cloned().unwrap_or_default(),
                    _ => "?".to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What to accept deliberately instead of refusing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Accept {
    /// Applied files whose content changed: their new checksum is recorded.
    pub divergent: bool,
    /// Applied migrations without a file in the directory.
    pub missing: bool,
}

/// One disagreement between the history and the directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// An applied file's content changed since it was applied.
    Divergent {
        name: String,
        file: String,
        recorded: String,
        found: String,
    },
    /// An applied migration has no file in the directory.
    Missing { name: String },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Divergent {
                name,
                file,
                recorded,
                found,
            } => write!(
                f,
                "divergent: {file} changed after migration \"{name}\" was applied (checksum {} applied, {} now)",
                short(recorded),
                short(found)
            ),
            Finding::Missing { name } => write!(
                f,
                "missing: migration \"{name}\" was applied but has no file in the directory"
            ),
        }
    }
}

fn short(sum: &str) -> &str {
    sum.get(..12).unwrap_or(sum)
}

/// The outcome of [`reconcile`].
#[derive(Clone, Debug, Default)]
pub struct Reconciled {
    /// Indexes into the files: the pending ones, in order.
    pub pending: Vec<usize>,
    /// Checksums to record: (migration, checksum) for applied files seen for the first time,
    /// and for divergent ones accepted deliberately.
    pub record: Vec<(String, String)>,
    /// Every disagreement found (accepted or not).
    pub findings: Vec<Finding>,
    /// Imported pgroll migrations seen in a file for the first time: (migration, the file's
    /// document), which replaces pgroll's rendering of it so `pull` writes the team's file.
    pub adopt: Vec<(String, serde_json::Value)>,
}

/// A disagreement that is never accepted: the order of the history and the files differ, or
/// an imported pgroll record does not describe the file of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderMismatch(pub String);

/// Matches the applied history (oldest first; rows of any status, of which the completed,
/// active and bundled ones count) against the directory's files (lexical order), by name.
///
/// - An applied migration without a file is `Missing`; pgroll's inferred entries are never
///   expected as files (a file of that name, e.g. written by `pull`, is taken as applied).
/// - An applied file whose checksum differs from the recorded one is `Divergent`. A row
///   without a checksum (applied before checksums existed, or imported from pgroll) gets the
///   file's on first sight: for pgbaton's own rows only if the file still is the document that
///   was applied (else it is divergent), for imported pgroll rows if the operation kinds agree
///   (pgroll stores its own rendering of the file).
/// - Applied files must come first, in the order they were applied; the rest are pending.
pub fn reconcile(
    history: &[MigrationRecord],
    files: &[Migration],
) -> Result<Reconciled, OrderMismatch> {
    let mut out = Reconciled::default();
    let applied: Vec<&MigrationRecord> = history
        .iter()
        .filter(|m| m.status == state::COMPLETED || m.status == state::BUNDLED || m.is_active())
        .collect();
    let mut last_position: Option<(usize, &str)> = None;
    let mut is_applied = vec![false; files.len()];
    for record in &applied {
        let Some(position) = files.iter().position(|f| f.name == record.name) else {
            if record.origin != state::ORIGIN_PGROLL_INFERRED {
                out.findings.push(Finding::Missing {
                    name: record.name.clone(),
                });
            }
            continue;
        };
        let file = &files[position];
        if let Some((before, before_name)) = last_position {
            if position < before {
                return Err(OrderMismatch(format!(
                    "migration \"{}\" was applied after \"{before_name}\", but {} sorts before {}",
                    record.name, file.file, files[before].file
                )));
            }
        }
        last_position = Some((position, &record.name));
        is_applied[position] = true;
        let found = checksum(&file.raw);
        let recorded = match &record.checksum {
            Some(sum) => sum.clone(),
            None if record.origin == state::ORIGIN_PGBATON => {
                let sum = checksum(&record.document);
                out.record.push((record.name.clone(), sum.clone()));
                sum
            }
            None if record.origin == state::ORIGIN_PGROLL_INFERRED => {
                // pgroll made this entry up from DDL run outside it: a file of this name is
                // taken as what was run.
                out.record.push((record.name.clone(), found.clone()));
                found.clone()
            }
            None => {
                let (theirs, ours) = (
                    operation_kinds(&record.document),
                    operation_kinds(&file.raw),
                );
                if theirs != ours {
                    return Err(OrderMismatch(format!(
                        "pgroll applied \"{}\" with operations [{}] but {} has [{}]",
                        record.name,
                        theirs.join(", "),
                        file.file,
                        ours.join(", ")
                    )));
                }
                out.record.push((record.name.clone(), found.clone()));
                out.adopt.push((record.name.clone(), file.raw.clone()));
                found.clone()
            }
        };
        if recorded != found {
            out.findings.push(Finding::Divergent {
                name: record.name.clone(),
                file: file.file.clone(),
                recorded,
                found,
            });
        }
    }
    let first_pending = last_position.map_or(0, |(p, _)| p + 1);
    for (i, file) in files.iter().enumerate().take(first_pending) {
        if !is_applied[i] {
            return Err(OrderMismatch(format!(
                "{} was never applied, but migrations that sort after it were (\"{}\")",
                file.file,
                last_position.map(|(_, n)| n).unwrap_or_default()
            )));
        }
    }
    out.pending = (first_pending..files.len()).collect();
    Ok(out)
}

impl Reconciled {
    /// The findings not covered by `accept`.
    pub fn refused(&self, accept: Accept) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|f| match f {
                Finding::Divergent { .. } => !accept.divergent,
                Finding::Missing { .. } => !accept.missing,
            })
            .collect()
    }

    /// Checksums to record when `accept` lets the run go on: first sights, plus accepted
    /// divergent files.
    pub fn to_record(&self, accept: Accept) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .record
            .iter()
            .filter(|(name, _)| {
                !self
                    .findings
                    .iter()
                    .any(|f| matches!(f, Finding::Divergent { name: n, .. } if n == name))
            })
            .cloned()
            .collect();
        if accept.divergent {
            for f in &self.findings {
                if let Finding::Divergent { name, found, .. } = f {
                    out.push((name.clone(), found.clone()));
                }
            }
        }
        out
    }
}

/// `start FILE` of a file whose migration was applied: refuses naming the file when its
/// content changed since (a clearer answer than "already applied").
pub fn refuse_changed(
    schema: &str,
    applied: &MigrationRecord,
    file: &Migration,
) -> Result<(), crate::error::Error> {
    let recorded = match &applied.checksum {
        Some(sum) => sum.clone(),
        None if applied.origin == state::ORIGIN_PGBATON => checksum(&applied.document),
        None => return Ok(()),
    };
    let found = checksum(&file.raw);
    if recorded == found {
        return Ok(());
    }
    Err(crate::error::Error::Divergent {
        schema: schema.to_string(),
        dir: file.file.clone(),
        findings: vec![Finding::Divergent {
            name: applied.name.clone(),
            file: file.file.clone(),
            recorded,
            found,
        }
        .to_string()],
        flags: "`pgbaton migrate DIR --accept-divergent`".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{parse, FileKind};

    #[test]
    fn reindented_yaml_and_json_have_the_same_checksum() {
        let a = parse(
            "a.yaml",
            "a",
            "operations:\n  - add_column:\n      table: t\n      column: {name: c, type: int, nullable: true}\n",
            FileKind::Yaml,
        )
        .expect("yaml");
        let b = parse(
            "a.yaml",
            "a",
            "operations:\n- add_column:\n    column:\n        nullable: true\n        type: int\n        name: c\n    table: t\n",
            FileKind::Yaml,
        )
        .expect("yaml");
        let c = parse(
            "a.json",
            "a",
            r#"{"name": "a", "operations": [{"add_column": {"table": "t", "column": {"name": "c", "type": "int", "nullable": true}}}]}"#,
            FileKind::Json,
        )
        .expect("json");
        assert_eq!(checksum(&a.raw), checksum(&b.raw));
        assert_eq!(checksum(&a.raw), checksum(&c.raw));
        let d = parse(
            "a.yaml",
            "a",
            "operations:\n  - add_column:\n      table: t\n      column: {name: c, type: bigint, nullable: true}\n",
            FileKind::Yaml,
        )
        .expect("yaml");
        assert_ne!(checksum(&a.raw), checksum(&d.raw));
    }
}
