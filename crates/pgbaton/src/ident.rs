//! Quoting. Every identifier and literal that pgbaton writes into SQL passes through this module:
//! [`Ident`] and [`QualName`] render double-quoted, [`Literal`] renders single-quoted, and user SQL
//! (`up`, `down`, `sql`, check expressions, defaults) enters only as [`RawSql`], which is passed
//! through unchanged and never spliced into an identifier position.

use std::fmt;

use serde::{Deserialize, Serialize};

/// PostgreSQL's NAMEDATALEN - 1: the longest identifier, in bytes.
pub const MAX_IDENT_BYTES: usize = 63;

/// An SQL identifier (table, column, schema, constraint, index, ...). `Display` quotes it.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ident(String);

impl Ident {
    pub fn new(name: impl Into<String>) -> Self {
        Ident(name.into())
    }

    /// The unquoted name, as stored in the catalog.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the name fits PostgreSQL's identifier limit.
    pub fn fits(&self) -> bool {
        self.0.len() <= MAX_IDENT_BYTES
    }

    /// The unquoted name as a string literal (for catalog look-ups such as `relname = '...'`).
    pub fn literal(&self) -> Literal {
        Literal::new(&self.0)
    }

    /// A derived name (`prefix` + name), shortened with a stable hash suffix when it would exceed
    /// 63 bytes, so generated names never collide through PostgreSQL's silent truncation.
    pub fn derived(prefix: &str, name: &str) -> Ident {
        let full = format!("{prefix}{name}");
        if full.len() <= MAX_IDENT_BYTES {
            return Ident(full);
        }
        let hash = format!("_{:08x}", fnv1a(full.as_bytes()) as u32);
        let mut cut = MAX_IDENT_BYTES - hash.len();
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        Ident(format!("{}{}", &full[..cut], hash))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote_ident(&self.0))
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", quote_ident(&self.0))
    }
}

impl From<&str> for Ident {
    fn from(s: &str) -> Self {
        Ident::new(s)
    }
}

impl From<String> for Ident {
    fn from(s: String) -> Self {
        Ident(s)
    }
}

impl From<&String> for Ident {
    fn from(s: &String) -> Self {
        Ident(s.clone())
    }
}

/// A schema-qualified name. `Display` renders `"schema"."name"`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QualName {
    pub schema: Ident,
    pub name: Ident,
}

impl QualName {
    pub fn new(schema: impl Into<Ident>, name: impl Into<Ident>) -> Self {
        QualName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `'"schema"."name"'::regclass`, for catalog queries.
    pub fn regclass(&self) -> String {
        format!("{}::regclass", Literal::new(self.to_string()))
    }
}

impl fmt::Display for QualName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

impl fmt::Debug for QualName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// A string literal. `Display` renders it single-quoted (with `E''` when it holds a backslash).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Literal(String);

impl Literal {
    pub fn new(value: impl Into<String>) -> Self {
        Literal(value.into())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote_literal(&self.0))
    }
}

impl fmt::Debug for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// SQL written by the user (an `up`/`down` expression, a `sql` operation, a default, a check).
/// Passed through as written; it is the user's SQL, not something pgbaton composes.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct RawSql(String);

impl RawSql {
    pub fn new(sql: impl Into<String>) -> Self {
        RawSql(sql.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Display for RawSql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RawSql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawSql({:?})", self.0)
    }
}

/// `"name"` with embedded double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `'value'` with embedded single quotes doubled; `E'...'` with backslashes doubled when the value
/// holds a backslash, so the result is right whatever `standard_conforming_strings` is.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Comma-separated quoted identifiers.
pub fn ident_list<'a>(names: impl IntoIterator<Item = &'a Ident>) -> String {
    names
        .into_iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(Ident::new("users").to_string(), "\"users\"");
        assert_eq!(Ident::new("We\"ird Name").to_string(), "\"We\"\"ird Name\"");
        assert_eq!(
            QualName::new("public", "Users").to_string(),
            "\"public\".\"Users\""
        );
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(Literal::new("it's").to_string(), "'it''s'");
        assert_eq!(Literal::new("a\\b").to_string(), "E'a\\\\b'");
    }

    #[test]
    fn derived_names_fit() {
        let long = "x".repeat(63);
        let d = Ident::derived("_pgbaton_new_", &long);
        assert!(d.fits());
        assert_ne!(d, Ident::derived("_pgbaton_new_", &"y".repeat(63)));
        assert_eq!(Ident::derived("_p_", "abc").as_str(), "_p_abc");
        let multi = "é".repeat(40);
        assert!(Ident::derived("_pgbaton_new_", &multi).fits());
    }
}
