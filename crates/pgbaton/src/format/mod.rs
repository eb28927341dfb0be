//! Migration files: reads pgroll's YAML and JSON migration files into [`Migration`]s, with errors
//! that name the file, the line and column, and the field path
//! (`operations[1].add_column.column.nullabel: unknown field; ...`).
//!
//! Both formats take the same two steps. First the text becomes a tree of [`Node`]s that know
//! their line and column: YAML through serde-saphyr's [`Spanned`]; JSON is checked by serde_json
//! (its syntax errors are serde_json's) and then located through the same YAML parser, JSON
//! being YAML. Then a small serde `Deserializer` over the tree fills the typed operations,
//! tracking the field path, so every error says where it is. Values keep JSON's types, as in
//! pgroll, which turns YAML into JSON before decoding: `default: 100` is a number, and a string
//! field rejects it. Last come the checks that need no database: empty identifiers, identifiers
//! over PostgreSQL's 63 bytes, and a `name` that is not the file name.

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::ident::MAX_IDENT_BYTES;
use crate::ops::Op;
pub use crate::path::{FieldPath, PathSeg};

/// The syntax of a migration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Yaml,
    Json,
}

impl FileKind {
    /// `.yaml`/`.yml` are YAML, `.json` is JSON (case-insensitive); anything else is not a
    /// migration file.
    pub fn from_path(path: &Path) -> Option<FileKind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "yaml" | "yml" => Some(FileKind::Yaml),
            "json" => Some(FileKind::Json),
            _ => None,
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Yaml => "YAML",
            FileKind::Json => "JSON",
        })
    }
}

/// One migration file, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Migration {
    /// The migration's name: the file name without its extension.
    pub name: String,
    /// The version schema name the file asks for (`version_schema`), if any.
    pub version_schema: Option<String>,
    pub operations: Vec<Op>,
    /// The path of the file, as given (for messages).
    pub file: String,
    /// The 1-based line of each operation in the file (for messages); `None` when unknown.
    pub op_lines: Vec<Option<usize>>,
    /// The document as JSON, as stored in the state schema.
    pub raw: serde_json::Value,
}

impl Migration {
    /// `file:line` of operation `index`, for messages.
    pub fn op_location(&self, index: usize) -> String {
        match self.op_lines.get(index).copied().flatten() {
            Some(line) => format!("{}:{line}", self.file),
            None => self.file.clone(),
        }
    }
}

/// What is wrong with a value of a migration file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("unknown field; {}", expected_list(.expected))]
    UnknownField { expected: Vec<String> },
    #[error("unknown operation; {}", expected_list(.expected))]
    UnknownOperation { expected: Vec<String> },
    #[error("unknown value {value:?}; {}", expected_list(.expected))]
    UnknownValue {
        value: String,
        expected: Vec<String>,
    },
    #[error("missing required field")]
    MissingField,
    #[error("duplicate field")]
    DuplicateField,
    #[error("expected {expected}, found {found}")]
    InvalidType { expected: String, found: String },
    #[error("expected an operation (a mapping with one key, the operation's name), found {found}")]
    NotAnOperation { found: String },
    #[error("mapping keys must be strings, found {found}")]
    KeyNotString { found: String },
    #[error("name is empty")]
    EmptyName,
    #[error("name {name:?} is {len} bytes long; PostgreSQL's limit is {MAX_IDENT_BYTES}")]
    NameTooLong { name: String, len: usize },
    #[error("{name:?} differs from the file name {stem:?}, which is the migration's name")]
    NameMismatch { name: String, stem: String },
    #[error("{0}")]
    Other(String),
}

fn expected_list(expected: &[String]) -> String {
    if expected.is_empty() {
        "no fields are allowed here".to_owned()
    } else {
        format!("expected one of: {}", expected.join(", "))
    }
}

fn at(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn path_prefix(path: &FieldPath) -> String {
    if path.is_root() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// A migration file that cannot be read or is not a valid migration.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },

    #[error("{file}: not a migration file: expected a .yaml, .yml or .json extension")]
    UnsupportedFile { file: String },

    #[error("{file}: the file name is not valid UTF-8")]
    FileName { file: String },

    /// Malformed YAML or JSON.
    #[error("{file}{}: invalid {kind}: {message}", at(.line, .column))]
    Syntax {
        file: String,
        kind: FileKind,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },

    /// Well-formed, but not a valid migration.
    #[error("{file}{}: {}{problem}", at(.line, .column), path_prefix(.path))]
    Invalid {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        path: FieldPath,
        problem: Box<Problem>,
    },

    #[error("{dir}: {first} and {second} are both migration {name:?}")]
    DuplicateName {
        dir: String,
        name: String,
        first: String,
        second: String,
    },
}

impl FormatError {
    /// The line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            FormatError::Syntax { line, .. } | FormatError::Invalid { line, .. } => *line,
            _ => None,
        }
    }
}

/// Reads one migration file. The migration's name is the file name without its extension.
pub fn load(path: &Path) -> Result<Migration, FormatError> {
    let file = path.display().to_string();
    let kind = FileKind::from_path(path)
        .ok_or_else(|| FormatError::UnsupportedFile { file: file.clone() })?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| FormatError::FileName { file: file.clone() })?
        .to_owned();
    let text = std::fs::read_to_string(path).map_err(|source| FormatError::Io {
        file: file.clone(),
        source,
    })?;
    parse(&file, &name, &text, kind)
}

/// Reads every migration file (`.yaml`, `.yml`, `.json`) of `dir`, in lexical order of file
/// name. Other files (a README, hidden files) and directories are ignored.
pub fn load_dir(dir: &Path) -> Result<Vec<Migration>, FormatError> {
    let dir_label = dir.display().to_string();
    let io = |source| FormatError::Io {
        file: dir_label.clone(),
        source,
    };
    let mut files: Vec<(String, std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            if FileKind::from_path(&path).is_some() {
                return Err(FormatError::FileName {
                    file: path.display().to_string(),
                });
            }
            continue;
        };
        if file_name.starts_with('.') || FileKind::from_path(&path).is_none() {
            continue;
        }
        // Follows symlinks: a linked migration file counts.
        let meta = std::fs::metadata(&path).map_err(|source| FormatError::Io {
            file: path.display().to_string(),
            source,
        })?;
        if meta.is_file() {
            files.push((file_name, path));
        }
    }
    files.sort();
    let mut migrations: Vec<Migration> = Vec::with_capacity(files.len());
    for (_, path) in &files {
        let migration = load(path)?;
        if let Some(earlier) = migrations.iter().find(|m| m.name == migration.name) {
            return Err(FormatError::DuplicateName {
                dir: dir_label,
                name: migration.name,
                first: earlier.file.clone(),
                second: migration.file,
            });
        }
        migrations.push(migration);
    }
    Ok(migrations)
}

/// Parses the text of a migration file. `file_label` names the file in messages; `name` is the
/// migration's name (the file stem).
pub fn parse(
    file_label: &str,
    name: &str,
    text: &str,
    kind: FileKind,
) -> Result<Migration, FormatError> {
    let (mut root, raw) = read_tree(file_label, text, kind)?;

    let invalid = |path: Vec<PathSeg>, loc: Option<Loc>, problem: Problem| FormatError::Invalid {
        file: file_label.to_owned(),
        line: loc.map(|l| l.line),
        column: loc.map(|l| l.column),
        path: FieldPath(path),
        problem: Box::new(problem),
    };

    // A field `pgbaton convert` could not fill: refused before anything runs.
    if let Some((path, message)) = crate::convert::find_placeholder(&raw) {
        let loc = root.locate(&path, false);
        return Err(invalid(path, loc, Problem::Other(message)));
    }
    // User SQL fragments: checked (and their comments removed) before anything reads them.
    let mut path = Vec::new();
    if let Err((path, loc, problem)) = check_fragments(&mut root, &mut path) {
        return Err(invalid(path, loc, problem));
    }

    let doc = Document::deserialize(De {
        node: &root,
        path: Vec::new(),
    })
    .map_err(|e| {
        let (mut path, loc) = e.at.unwrap_or((Vec::new(), root.loc));
        if let Some(field) = e.field {
            path.push(PathSeg::Key(field.to_owned()));
        }
        invalid(path, loc, e.problem)
    })?;

    if let Err((path, loc, problem)) = check_names(&doc, name, &root) {
        return Err(invalid(path, loc, problem));
    }
    let version_schema = doc.version_schema.filter(|s| !s.is_empty());

    // `sql` bodies go through PostgreSQL's parser now, not when their step runs.
    if let Some((path, message)) = crate::sql::check_sql_bodies(&raw) {
        let loc = root.locate(&path, false);
        return Err(invalid(path, loc, Problem::Other(message)));
    }

    let op_lines = (0..doc.operations.len())
        .map(|i| {
            root.locate(
                &[PathSeg::Key("operations".to_owned()), PathSeg::Index(i)],
                false,
            )
            .map(|l| l.line)
        })
        .collect();

    Ok(Migration {
        name: name.to_owned(),
        version_schema,
        operations: doc.operations,
        file: file_label.to_owned(),
        op_lines,
        raw,
    })
}

/// The document's tree, with the location of each node, and its JSON value.
fn read_tree(
    file_label: &str,
    text: &str,
    kind: FileKind,
) -> Result<(Node, serde_json::Value), FormatError> {
    Ok(match kind {
        FileKind::Yaml => {
            let root = yaml_tree(text).map_err(|e| e.into_format_error(file_label, kind))?;
            let raw = root.to_json();
            (root, raw)
        }
        FileKind::Json => {
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                let line = e.line();
                let column = e.column().max(1);
                let message = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                FormatError::Syntax {
                    file: file_label.to_owned(),
                    kind,
                    line: Some(line),
                    column: Some(column),
                    message: message.strip_suffix(&suffix).unwrap_or(&message).to_owned(),
                }
            })?;
            // JSON is YAML: the YAML parser gives the locations. Should it disagree with
            // serde_json on some corner of the syntax, the document is still read, without them.
            let root = match yaml_tree(text) {
                Ok(root) if root.to_json() == raw => root,
                _ => Node::from_json(&raw),
            };
            (root, raw)
        }
    })
}

/// The names the file gives: its `name` is the file's stem, and the version schema and every
/// identifier an operation names are valid names. Returns the first bad one's path, location
/// and problem.
fn check_names(
    doc: &Document,
    name: &str,
    root: &Node,
) -> Result<(), (Vec<PathSeg>, Option<Loc>, Problem)> {
    if let Some(doc_name) = &doc.name {
        if doc_name != name {
            let path = vec![PathSeg::Key("name".to_owned())];
            let loc = root.locate(&path, false);
            return Err((
                path,
                loc,
                Problem::NameMismatch {
                    name: doc_name.clone(),
                    stem: name.to_owned(),
                },
            ));
        }
    }
    if let Some(schema) = doc.version_schema.as_deref().filter(|s| !s.is_empty()) {
        let path = vec![PathSeg::Key("version_schema".to_owned())];
        if let Some(problem) = name_problem(schema) {
            let loc = root.locate(&path, false);
            return Err((path, loc, problem));
        }
    }
    for (i, op) in doc.operations.iter().enumerate() {
        for name_ref in op.names() {
            if let Some(problem) = name_problem(name_ref.name) {
                let mut path = vec![
                    PathSeg::Key("operations".to_owned()),
                    PathSeg::Index(i),
                    PathSeg::Key(op.kind().to_owned()),
                ];
                path.extend(name_ref.field);
                let loc = root.locate(&path, name_ref.is_key);
                return Err((path, loc, problem));
            }
        }
    }
    Ok(())
}

/// Checks every user SQL fragment of the tree (see [`crate::fragment`]) and replaces it with
/// the text to splice. Returns the first bad one's path, location and problem.
fn check_fragments(
    node: &mut Node,
    path: &mut Vec<PathSeg>,
) -> Result<(), (Vec<PathSeg>, Option<Loc>, Problem)> {
    match &mut node.value {
        Value::String(text) => {
            if let Some(kind) = crate::fragment::kind_at(path) {
                match crate::fragment::check(kind, text) {
                    Ok(clean) => *text = clean,
                    Err(why) => return Err((path.clone(), node.loc, Problem::Other(why))),
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(PathSeg::Index(i));
                check_fragments(item, path)?;
                path.pop();
            }
        }
        Value::Map(entries) => {
            for entry in entries.iter_mut() {
                path.push(PathSeg::Key(entry.key.clone()));
                check_fragments(&mut entry.value, path)?;
                path.pop();
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// The problem with an identifier, if any: empty, or longer than PostgreSQL allows.
fn name_problem(name: &str) -> Option<Problem> {
    if name.is_empty() {
        Some(Problem::EmptyName)
    } else if name.len() > MAX_IDENT_BYTES {
        Some(Problem::NameTooLong {
            name: name.to_owned(),
            len: name.len(),
        })
    } else {
        None
    }
}

/// The top level of a migration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version_schema: Option<String>,
    operations: Vec<Op>,
}

mod decode;
mod tree;

use decode::*;
use tree::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_yaml(text: &str) -> Result<Migration, FormatError> {
        parse("m.yaml", "m", text, FileKind::Yaml)
    }

    #[test]
    fn paths_render_like_pgroll_fields() {
        let p = FieldPath(vec![
            PathSeg::Key("operations".into()),
            PathSeg::Index(1),
            PathSeg::Key("add_column".into()),
            PathSeg::Key("column".into()),
        ]);
        assert_eq!(p.to_string(), "operations[1].add_column.column");
    }

    #[test]
    fn locates_keys_and_values() {
        let root = yaml_tree("a:\n  - x: 1\n    y: [2, 3]\n")
            .map_err(|_| "tree")
            .unwrap();
        let path = [
            PathSeg::Key("a".into()),
            PathSeg::Index(0),
            PathSeg::Key("y".into()),
            PathSeg::Index(1),
        ];
        assert_eq!(
            root.locate(&path, false),
            Some(Loc {
                line: 3,
                column: 12
            })
        );
        let key = [
            PathSeg::Key("a".into()),
            PathSeg::Index(0),
            PathSeg::Key("y".into()),
        ];
        assert_eq!(root.locate(&key, true), Some(Loc { line: 3, column: 5 }));
    }

    #[test]
    fn yaml_one_one_booleans_are_strings() {
        let err = parse_yaml("operations:\n  - sql:\n      up: yes\n      onComplete: yes\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.yaml:4:19: operations[0].sql.onComplete: expected a boolean, found the string \"yes\""
        );
        // `up: yes` is the string "yes" (not a boolean), which PostgreSQL's parser then refuses
        // as the body of a `sql` operation, at load.
        let err = parse_yaml("operations:\n  - sql:\n      up: yes\n      onComplete: true\n")
            .unwrap_err();
        assert!(
            err.to_string().contains(
                "m.yaml:3:11: operations[0].sql.up: not valid SQL: syntax error at or near \"yes\""
            ),
            "{err}"
        );
        let m =
            parse_yaml("operations:\n  - sql:\n      up: SELECT 'yes'\n      onComplete: true\n")
                .unwrap();
        assert_eq!(m.op_lines, vec![Some(2)]);
    }
}
