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

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Where a value is in a document: `operations[1].add_column.column.name`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<PathSeg>);

impl FieldPath {
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSeg::Key(k) if i == 0 => f.write_str(k)?,
                PathSeg::Key(k) => write!(f, ".{k}")?,
                PathSeg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
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
    let (root, raw) = match kind {
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
    };

    let invalid = |path: Vec<PathSeg>, loc: Option<Loc>, problem: Problem| FormatError::Invalid {
        file: file_label.to_owned(),
        line: loc.map(|l| l.line),
        column: loc.map(|l| l.column),
        path: FieldPath(path),
        problem: Box::new(problem),
    };

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

    if let Some(doc_name) = &doc.name {
        if doc_name != name {
            let path = vec![PathSeg::Key("name".to_owned())];
            let loc = root.locate(&path, false);
            return Err(invalid(
                path,
                loc,
                Problem::NameMismatch {
                    name: doc_name.clone(),
                    stem: name.to_owned(),
                },
            ));
        }
    }
    let version_schema = doc.version_schema.filter(|s| !s.is_empty());
    if let Some(schema) = &version_schema {
        let path = vec![PathSeg::Key("version_schema".to_owned())];
        if let Some(problem) = name_problem(schema) {
            let loc = root.locate(&path, false);
            return Err(invalid(path, loc, problem));
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
                return Err(invalid(path, loc, problem));
            }
        }
    }

    // A field `pgbaton convert` could not fill: refused before anything runs.
    if let Some((path, message)) = crate::convert::find_placeholder(&raw) {
        let loc = root.locate(&path, false);
        return Err(invalid(path, loc, Problem::Other(message)));
    }
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

// ---------------------------------------------------------------------------------------------
// The located tree.

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    line: usize,
    column: usize,
}

impl Loc {
    fn from_saphyr(loc: &serde_saphyr::Location) -> Option<Loc> {
        let line = usize::try_from(loc.line()).ok().filter(|l| *l > 0)?;
        let column = usize::try_from(loc.column()).ok().filter(|c| *c > 0)?;
        Some(Loc { line, column })
    }
}

/// A value of the document and where it starts.
#[derive(Debug)]
struct Node {
    loc: Option<Loc>,
    value: Value,
}

#[derive(Debug)]
enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug)]
struct Entry {
    key: String,
    key_loc: Option<Loc>,
    value: Node,
}

impl Node {
    fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::Value::Number(n.clone()),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    fn from_json(value: &serde_json::Value) -> Node {
        let value = match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.clone()),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => {
                Value::Seq(items.iter().map(Node::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| Entry {
                        key: k.clone(),
                        key_loc: None,
                        value: Node::from_json(v),
                    })
                    .collect(),
            ),
        };
        Node { loc: None, value }
    }

    /// The location of the value at `path` (of its key, with `key`), if the tree knows it.
    fn locate(&self, path: &[PathSeg], key: bool) -> Option<Loc> {
        let mut node = self;
        let mut key_loc = None;
        for seg in path {
            match (seg, &node.value) {
                (PathSeg::Key(k), Value::Map(entries)) => {
                    let entry = entries.iter().rev().find(|e| &e.key == k)?;
                    key_loc = entry.key_loc;
                    node = &entry.value;
                }
                (PathSeg::Index(i), Value::Seq(items)) => {
                    node = items.get(*i)?;
                    key_loc = None;
                }
                _ => return None,
            }
        }
        if key {
            key_loc.or(node.loc)
        } else {
            node.loc
        }
    }

    /// How the value reads in "expected ..., found ..." messages.
    fn describe(&self) -> String {
        match &self.value {
            Value::Null => "null".to_owned(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Number(n) => format!("the number {n}"),
            Value::String(s) => {
                const MAX: usize = 40;
                if s.chars().count() > MAX {
                    let cut: String = s.chars().take(MAX).collect();
                    format!("the string {:?}", format!("{cut}..."))
                } else {
                    format!("the string {s:?}")
                }
            }
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(entries) => match entries.len() {
                0 => "an empty mapping".to_owned(),
                1 => "a mapping".to_owned(),
                n => format!(
                    "a mapping with {n} keys ({})",
                    entries
                        .iter()
                        .map(|e| e.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        }
    }
}

/// A YAML value as serde-saphyr delivers it, with the location of every node.
enum RawNode {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;

        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawNode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }

            fn visit_unit<E>(self) -> Result<RawNode, E> {
                Ok(RawNode::Null)
            }

            fn visit_none<E>(self) -> Result<RawNode, E> {
                Ok(RawNode::Null)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
                RawNode::deserialize(d)
            }

            fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
                Ok(RawNode::Bool(v))
            }

            fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
                Ok(RawNode::Number(v.into()))
            }

            fn visit_u64<E>(self, v: u64) -> Result<RawNode, E> {
                Ok(RawNode::Number(v.into()))
            }

            fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawNode, E> {
                i64::try_from(v)
                    .map(|v| RawNode::Number(v.into()))
                    .or_else(|_| u64::try_from(v).map(|v| RawNode::Number(v.into())))
                    .map_err(|_| E::custom(format!("the number {v} is too large")))
            }

            fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
                u64::try_from(v)
                    .map(|v| RawNode::Number(v.into()))
                    .map_err(|_| E::custom(format!("the number {v} is too large")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
                serde_json::Number::from_f64(v)
                    .map(RawNode::Number)
                    .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
            }

            fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
                Ok(RawNode::String(v.to_owned()))
            }

            fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
                Ok(RawNode::String(v))
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawNode, E> {
                String::from_utf8(v.to_vec())
                    .map(RawNode::String)
                    .map_err(|_| E::custom("binary data is not valid UTF-8"))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawNode::Seq(items))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(RawNode::Map(entries))
            }
        }

        deserializer.deserialize_any(RawVisitor)
    }
}

/// An error of the tree-building step: a YAML error, or a key that is not a scalar.
enum TreeError {
    Yaml(serde_saphyr::Error),
    Key {
        path: Vec<PathSeg>,
        loc: Option<Loc>,
        found: String,
    },
}

impl TreeError {
    fn into_format_error(self, file: &str, kind: FileKind) -> FormatError {
        match self {
            TreeError::Yaml(e) => {
                use serde_saphyr::MessageFormatter as _;
                let loc = e.location().as_ref().and_then(Loc::from_saphyr);
                // The user-facing wording, without the location (we print our own) and with
                // control characters from the input made visible.
                let message = serde_saphyr::UserMessageFormatter
                    .format_message(e.without_snippet())
                    .chars()
                    .flat_map(|c| -> Box<dyn Iterator<Item = char>> {
                        if c.is_control() {
                            Box::new(c.escape_debug())
                        } else {
                            Box::new(std::iter::once(c))
                        }
                    })
                    .collect();
                FormatError::Syntax {
                    file: file.to_owned(),
                    kind,
                    line: loc.map(|l| l.line),
                    column: loc.map(|l| l.column),
                    message,
                }
            }
            TreeError::Key { path, loc, found } => FormatError::Invalid {
                file: file.to_owned(),
                line: loc.map(|l| l.line),
                column: loc.map(|l| l.column),
                path: FieldPath(path),
                problem: Box::new(Problem::KeyNotString { found }),
            },
        }
    }
}

/// Parses YAML (or JSON) text into a located tree. YAML 1.2 booleans only (`yes` is a string),
/// duplicate keys and unknown tags are errors, one document per file.
fn yaml_tree(text: &str) -> Result<Node, TreeError> {
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        reject_unsupported_tags: true,
    };
    let raw: Spanned<RawNode> =
        serde_saphyr::from_str_with_options(text, options).map_err(TreeError::Yaml)?;
    let mut path = Vec::new();
    build(raw, &mut path)
}

fn build(raw: Spanned<RawNode>, path: &mut Vec<PathSeg>) -> Result<Node, TreeError> {
    let loc = Loc::from_saphyr(&raw.referenced);
    let value = match raw.value {
        RawNode::Null => Value::Null,
        RawNode::Bool(b) => Value::Bool(b),
        RawNode::Number(n) => Value::Number(n),
        RawNode::String(s) => Value::String(s),
        RawNode::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(PathSeg::Index(i));
                out.push(build(item, path)?);
                path.pop();
            }
            Value::Seq(out)
        }
        RawNode::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let key_loc = Loc::from_saphyr(&key.referenced);
                // Scalar keys read as their text, as pgroll's YAML-to-JSON conversion does.
                let key_text = match key.value {
                    RawNode::String(s) => s,
                    RawNode::Bool(b) => b.to_string(),
                    RawNode::Number(n) => n.to_string(),
                    RawNode::Null => "null".to_owned(),
                    RawNode::Seq(_) | RawNode::Map(_) => {
                        let found = if matches!(key.value, RawNode::Seq(_)) {
                            "a list"
                        } else {
                            "a mapping"
                        };
                        return Err(TreeError::Key {
                            path: path.clone(),
                            loc: key_loc,
                            found: found.to_owned(),
                        });
                    }
                };
                path.push(PathSeg::Key(key_text.clone()));
                let value = build(value, path)?;
                path.pop();
                out.push(Entry {
                    key: key_text,
                    key_loc,
                    value,
                });
            }
            Value::Map(out)
        }
    };
    Ok(Node { loc, value })
}

// ---------------------------------------------------------------------------------------------
// A serde Deserializer over the located tree, tracking the field path.

/// An error of the typed step. `at` is the path and location of the innermost value that
/// failed; `field` is a missing field's name, appended to the path when reported.
#[derive(Debug)]
struct DeError {
    problem: Problem,
    field: Option<&'static str>,
    at: Option<(Vec<PathSeg>, Option<Loc>)>,
}

impl DeError {
    fn new(problem: Problem) -> DeError {
        DeError {
            problem,
            field: None,
            at: None,
        }
    }

    /// Locates the error at `path`, unless a deeper value already did.
    fn or_at(mut self, path: &[PathSeg], loc: Option<Loc>) -> DeError {
        if self.at.is_none() {
            self.at = Some((path.to_vec(), loc));
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.problem, f)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(Problem::Other(msg.to_string()))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(Problem::InvalidType {
            expected: exp.to_string(),
            found: unexp.to_string(),
        })
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(Problem::Other(format!(
            "invalid value {unexp}; expected {exp}"
        )))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        DeError::new(Problem::Other(format!(
            "invalid length {len}; expected {exp}"
        )))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(Problem::UnknownValue {
            value: variant.to_owned(),
            expected: expected.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(Problem::UnknownField {
            expected: expected.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            problem: Problem::MissingField,
            field: Some(field),
            at: None,
        }
    }

    fn duplicate_field(_field: &'static str) -> Self {
        DeError::new(Problem::DuplicateField)
    }
}

fn child(path: &[PathSeg], seg: PathSeg) -> Vec<PathSeg> {
    let mut p = Vec::with_capacity(path.len() + 1);
    p.extend_from_slice(path);
    p.push(seg);
    p
}

/// Deserializes one node; `path` is where it is.
struct De<'n> {
    node: &'n Node,
    path: Vec<PathSeg>,
}

impl De<'_> {
    fn mismatch(&self, expected: &str) -> DeError {
        let mut found = self.node.describe();
        if expected == "a string" && matches!(self.node.value, Value::Number(_) | Value::Bool(_)) {
            found.push_str(" (quote it to make it a string)");
        }
        DeError::new(Problem::InvalidType {
            expected: expected.to_owned(),
            found,
        })
        .or_at(&self.path, self.node.loc)
    }
}

impl<'de> Deserializer<'de> for De<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    match n.as_f64() {
                        Some(f) => visitor.visit_f64(f),
                        None => Err(DeError::new(Problem::Other(format!(
                            "the number {n} is out of range"
                        )))),
                    }
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                path: &self.path,
            }),
            Value::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
        };
        result.map_err(|e: DeError| e.or_at(&self.path, self.node.loc))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Bool(b) => visitor
                .visit_bool(*b)
                .map_err(|e: DeError| e.or_at(&self.path, self.node.loc)),
            _ => Err(self.mismatch("a boolean")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(s) => visitor
                .visit_str(s)
                .map_err(|e: DeError| e.or_at(&self.path, self.node.loc)),
            _ => Err(self.mismatch("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (path, loc) = (self.path.clone(), self.node.loc);
        let result = match &self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        };
        result.map_err(|e: DeError| e.or_at(&path, loc))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor
                .visit_unit()
                .map_err(|e: DeError| e.or_at(&self.path, self.node.loc)),
            _ => Err(self.mismatch("null")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (path, loc) = (self.path.clone(), self.node.loc);
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: DeError| e.or_at(&path, loc))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => visitor
                .visit_seq(SeqDe {
                    items: items.iter().enumerate(),
                    path: &self.path,
                })
                .map_err(|e: DeError| e.or_at(&self.path, self.node.loc)),
            _ => Err(self.mismatch("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => visitor
                .visit_map(MapDe {
                    entries: entries.iter(),
                    value: None,
                    path: &self.path,
                })
                .map_err(|e: DeError| e.or_at(&self.path, self.node.loc)),
            _ => Err(self.mismatch("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    /// Only operations are enums in the file's mapping form: `{add_column: {...}}`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) if entries.len() == 1 => {
                let entry = &entries[0];
                visitor
                    .visit_enum(EnumDe {
                        entry,
                        path: &self.path,
                    })
                    .map_err(|e: DeError| e.or_at(&self.path, self.node.loc))
            }
            _ => Err(DeError::new(Problem::NotAnOperation {
                found: self.node.describe(),
            })
            .or_at(&self.path, self.node.loc)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 bytes byte_buf
    }
}

struct SeqDe<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: &'a [PathSeg],
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = child(self.path, PathSeg::Index(i));
        seed.deserialize(De {
            node,
            path: path.clone(),
        })
        .map(Some)
        .map_err(|e: DeError| e.or_at(&path, node.loc))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, Entry>,
    value: Option<&'a Entry>,
    path: &'a [PathSeg],
}

impl<'de> de::MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let path = child(self.path, PathSeg::Key(entry.key.clone()));
        seed.deserialize(KeyDe {
            key: &entry.key,
            path: &path,
            loc: entry.key_loc,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self.value.take().ok_or_else(|| {
            DeError::new(Problem::Other("a value was read before its key".to_owned()))
        })?;
        let path = child(self.path, PathSeg::Key(entry.key.clone()));
        seed.deserialize(De {
            node: &entry.value,
            path: path.clone(),
        })
        .map_err(|e: DeError| e.or_at(&path, entry.value.loc))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Deserializes a mapping key (a field name, a column name, an operation name).
struct KeyDe<'a> {
    key: &'a str,
    path: &'a [PathSeg],
    loc: Option<Loc>,
}

impl<'de> Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor
            .visit_str(self.key)
            .map_err(|e: DeError| e.or_at(self.path, self.loc))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (path, loc) = (self.path, self.loc);
        visitor
            .visit_some(self)
            .map_err(|e: DeError| e.or_at(path, loc))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (path, loc) = (self.path, self.loc);
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: DeError| e.or_at(path, loc))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// An operation: the single entry of its mapping.
struct EnumDe<'a> {
    entry: &'a Entry,
    path: &'a [PathSeg],
}

impl<'de, 'a> de::EnumAccess<'de> for EnumDe<'a> {
    type Error = DeError;
    type Variant = De<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, De<'a>), DeError> {
        let path = child(self.path, PathSeg::Key(self.entry.key.clone()));
        let variant = seed
            .deserialize(KeyDe {
                key: &self.entry.key,
                path: &path,
                loc: self.entry.key_loc,
            })
            .map_err(|mut e| {
                if let Problem::UnknownValue { expected, .. } = e.problem {
                    e.problem = Problem::UnknownOperation { expected };
                }
                e
            })?;
        Ok((
            variant,
            De {
                node: &self.entry.value,
                path,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for De<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.node.value {
            Value::Null => Ok(()),
            _ => Err(self.mismatch("null")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let (path, loc) = (self.path.clone(), self.node.loc);
        seed.deserialize(self)
            .map_err(|e: DeError| e.or_at(&path, loc))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }
}

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
