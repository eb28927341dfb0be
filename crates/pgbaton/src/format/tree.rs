//! The located tree: YAML (and JSON, being YAML) parsed into [`Node`]s that know their line and
//! column, built from serde-saphyr's spans.

use super::*;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Loc {
    pub(super) line: usize,
    pub(super) column: usize,
}

impl Loc {
    pub(super) fn from_saphyr(loc: &serde_saphyr::Location) -> Option<Loc> {
        let line = usize::try_from(loc.line()).ok().filter(|l| *l > 0)?;
        let column = usize::try_from(loc.column()).ok().filter(|c| *c > 0)?;
        Some(Loc { line, column })
    }
}

/// A value of the document and where it starts.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) loc: Option<Loc>,
    pub(super) value: Value,
}

#[derive(Debug)]
pub(super) enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) key_loc: Option<Loc>,
    pub(super) value: Node,
}

impl Node {
    pub(super) fn to_json(&self) -> serde_json::Value {
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

    pub(super) fn from_json(value: &serde_json::Value) -> Node {
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
    pub(super) fn locate(&self, path: &[PathSeg], key: bool) -> Option<Loc> {
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
    pub(super) fn describe(&self) -> String {
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
pub(super) enum RawNode {
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
pub(super) enum TreeError {
    Yaml(serde_saphyr::Error),
    Key {
        path: Vec<PathSeg>,
        loc: Option<Loc>,
        found: String,
    },
}

impl TreeError {
    pub(super) fn into_format_error(self, file: &str, kind: FileKind) -> FormatError {
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
pub(super) fn yaml_tree(text: &str) -> Result<Node, TreeError> {
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

pub(super) fn build(raw: Spanned<RawNode>, path: &mut Vec<PathSeg>) -> Result<Node, TreeError> {
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
