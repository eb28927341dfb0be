//! An ordered document (pgroll's field order, which serde_json's map would sort away) with
//! YAML and JSON renderings.

/// A value of a migration document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum V {
    Null,
    Str(String),
    Bool(bool),
    List(Vec<V>),
    Map(Vec<(String, V)>),
}

/// Builds a mapping, skipping `None` fields.
#[derive(Default)]
pub struct MapBuilder(Vec<(String, V)>);

impl MapBuilder {
    pub fn new() -> Self {
        MapBuilder::default()
    }

    pub fn put(mut self, key: &str, value: V) -> Self {
        self.0.push((key.to_string(), value));
        self
    }

    pub fn s(self, key: &str, value: impl Into<String>) -> Self {
        self.put(key, V::Str(value.into()))
    }

    pub fn opt(self, key: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.s(key, v),
            None => self,
        }
    }

    pub fn flag(self, key: &str, value: bool) -> Self {
        if value {
            self.put(key, V::Bool(true))
        } else {
            self
        }
    }

    pub fn build(self) -> V {
        V::Map(self.0)
    }
}

impl V {
    /// The mapping's value at `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        match self {
            V::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The mapping's value at `key`, for changing it.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        match self {
            V::Map(m) => m.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets `key` (replacing it, or appending it).
    pub fn set(&mut self, key: &str, value: V) {
        if let V::Map(m) = self {
            match m.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => m.push((key.to_string(), value)),
            }
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        if let V::Map(m) = self {
            m.retain(|(k, _)| k != key);
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            _ => None,
        }
    }

    /// As JSON (key order kept in the text by [`V::to_json_text`]; this value sorts keys).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            V::Null => serde_json::Value::Null,
            V::Str(s) => serde_json::Value::String(s.clone()),
            V::Bool(b) => serde_json::Value::Bool(*b),
            V::List(l) => serde_json::Value::Array(l.iter().map(V::to_json).collect()),
            V::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// Pretty JSON text, in field order.
    pub fn to_json_text(&self, indent: usize) -> String {
        let pad = "  ".repeat(indent + 1);
        let end = "  ".repeat(indent);
        match self {
            V::Null => "null".into(),
            V::Str(s) => json_str(s),
            V::Bool(b) => b.to_string(),
            V::List(l) if l.is_empty() => "[]".into(),
            V::Map(m) if m.is_empty() => "{}".into(),
            V::List(l) => {
                let items: Vec<String> = l
                    .iter()
                    .map(|v| format!("{pad}{}", v.to_json_text(indent + 1)))
                    .collect();
                format!("[\n{}\n{end}]", items.join(",\n"))
            }
            V::Map(m) => {
                let items: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{pad}{}: {}", json_str(k), v.to_json_text(indent + 1)))
                    .collect();
                format!("{{\n{}\n{end}}}", items.join(",\n"))
            }
        }
    }

    /// YAML text, in field order, at `indent` spaces (a block mapping or sequence).
    pub fn to_yaml(&self, indent: usize) -> String {
        let mut out = String::new();
        self.yaml_into(&mut out, indent);
        out
    }

    fn yaml_into(&self, out: &mut String, indent: usize) {
        let pad = " ".repeat(indent);
        match self {
            V::Map(m) => {
                for (k, v) in m {
                    out.push_str(&pad);
                    out.push_str(&yaml_scalar(k));
                    out.push(':');
                    v.yaml_value(out, indent);
                }
            }
            V::List(l) => {
                for v in l {
                    out.push_str(&pad);
                    out.push_str("- ");
                    match v {
                        V::Map(m) if !m.is_empty() => {
                            // The first key on the dash's line, the others aligned under it.
                            let text = v.to_yaml(indent + 2);
                            out.push_str(text.trim_start());
                        }
                        other => {
                            let mut s = String::new();
                            other.yaml_value(&mut s, indent + 2);
                            out.push_str(s.trim_start());
                        }
                    }
                }
            }
            scalar => {
                let mut s = String::new();
                scalar.yaml_value(&mut s, indent);
                out.push_str(s.trim_start());
            }
        }
    }

    /// The value after `key:` (with its newline).
    fn yaml_value(&self, out: &mut String, indent: usize) {
        match self {
            V::Str(s) => {
                out.push(' ');
                out.push_str(&yaml_scalar(s));
                out.push('\n');
            }
            V::Bool(b) => {
                out.push_str(&format!(" {b}\n"));
            }
            V::Null => out.push_str(" null\n"),
            V::List(l) if l.is_empty() => out.push_str(" []\n"),
            V::Map(m) if m.is_empty() => out.push_str(" {}\n"),
            V::List(_) => {
                out.push('\n');
                self.yaml_into(out, indent + 2);
            }
            V::Map(_) => {
                out.push('\n');
                self.yaml_into(out, indent + 2);
            }
        }
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A YAML scalar: plain when that reads back as the same string, else double-quoted (JSON
/// string syntax, which YAML's double-quoted style accepts).
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ' ' | '(' | ')' | '.'))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '(')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
        );
    if plain {
        s.to_string()
    } else {
        json_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_round_trips() {
        let doc = MapBuilder::new()
            .put(
                "operations",
                V::List(vec![MapBuilder::new()
                    .put(
                        "add_column",
                        MapBuilder::new()
                            .s("table", "users")
                            .put(
                                "column",
                                MapBuilder::new()
                                    .s("name", "age")
                                    .s("type", "integer")
                                    .flag("nullable", true)
                                    .s("default", "0")
                                    .build(),
                            )
                            .s("up", "CASE WHEN x: 1 THEN 'a' END")
                            .build(),
                    )
                    .build()]),
            )
            .build();
        let yaml = doc.to_yaml(0);
        assert_eq!(
            yaml,
            "operations:\n  - add_column:\n      table: users\n      column:\n        name: age\n        type: integer\n        nullable: true\n        default: \"0\"\n      up: \"CASE WHEN x: 1 THEN 'a' END\"\n"
        );
        let back: serde_json::Value = serde_saphyr::from_str(&yaml).expect("yaml");
        assert_eq!(back, doc.to_json());
        let back: serde_json::Value = serde_json::from_str(&doc.to_json_text(0)).expect("json");
        assert_eq!(back, doc.to_json());
    }
}
