//! Reading SQL with PostgreSQL's own parser (libpg_query, through the `pg_query` crate): the
//! server's grammar and lexer, so what pgbaton takes for a column, a string, a comment or a
//! statement boundary is what the server will take for one.
//!
//! - [`parse`], [`parse_expr`]: a whole script, or one expression as a migration file writes it.
//! - [`tokens`]: the server's lexer, for the few places where a node carries no location of its
//!   own (a plain column in an index or a foreign key's column list).
//! - [`column_refs`]: every column reference under a node, with its location.
//! - [`rewrite`]: column rewriting on those locations (copied checks, indexes, foreign keys,
//!   predicates over renamed columns).
//! - [`Source`]: byte offsets to line and column, for messages.

pub mod model;
pub mod rewrite;

use pg_query::protobuf::{self, node::Node as N, KeywordKind, Token as T};

/// A parse or scan error: the server's message and, when it gives one, the byte offset in the
/// text that was parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    pub message: String,
    pub location: Option<usize>,
}

impl SqlError {
    pub fn new(message: impl Into<String>) -> Self {
        SqlError {
            message: message.into(),
            location: None,
        }
    }

    fn from_pg(e: pg_query::Error, text: &str) -> Self {
        let message = match e {
            pg_query::Error::Parse(m) | pg_query::Error::Scan(m) | pg_query::Error::Split(m) => m,
            other => other.to_string(),
        };
        // libpg_query reports "syntax error at or near "x"" without the position in the
        // protobuf API; find it again from the lexer: the first token that the parser refused is
        // not known, so point at the quoted word when it occurs once.
        let location = near_location(&message, text);
        SqlError { message, location }
    }
}

/// The offset of the `at or near "x"` token of a syntax error message, when it can be found.
fn near_location(message: &str, text: &str) -> Option<usize> {
    let near = message.split("at or near \"").nth(1)?;
    let word = near.strip_suffix('"').unwrap_or(near);
    if word.is_empty() {
        return None;
    }
    // The raw lexer (not [`tokens`], whose errors come back here).
    let toks = pg_query::scan_tokens(text).unwrap_or_default();
    toks.iter()
        .map(|t| (t.start.max(0) as usize, t.end.max(0) as usize))
        .find(|&(s, e)| text.get(s..e) == Some(word))
        .map(|(s, _)| s)
        .or_else(|| text.find(word))
}

/// Parses a script of any number of statements.
pub fn parse(sql: &str) -> Result<protobuf::ParseResult, SqlError> {
    pg_query::parse(sql, pg_query::ParserOptions::default())
        .map(|r| r.protobuf)
        .map_err(|e| SqlError::from_pg(e, sql))
}

/// One token of the server's lexer. Comments are tokens too (the lexer keeps them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    pub kind: T,
    /// True for key words (reserved or not), which may be identifiers where the grammar allows.
    pub keyword: bool,
}

impl Token {
    /// A comment.
    pub fn is_comment(&self) -> bool {
        matches!(self.kind, T::SqlComment | T::CComment)
    }

    /// An identifier: a plain or quoted identifier, or a key word used as one.
    pub fn is_ident(&self) -> bool {
        matches!(self.kind, T::Ident | T::Uident) || self.keyword
    }

    /// The single character `c` (`(`, `)`, `,`, `.`).
    pub fn is_char(&self, c: char) -> bool {
        self.kind as i32 == c as i32
    }
}

/// The server's lexer over `sql`.
pub fn tokens(sql: &str) -> Result<Vec<Token>, SqlError> {
    let toks = pg_query::scan_tokens(sql).map_err(|e| SqlError::from_pg(e, sql))?;
    Ok(toks
        .into_iter()
        .map(|t| Token {
            start: t.start.max(0) as usize,
            end: t.end.max(0) as usize,
            kind: T::try_from(t.token).unwrap_or(T::Nul),
            keyword: KeywordKind::try_from(t.keyword_kind)
                .is_ok_and(|k| k != KeywordKind::NoKeyword),
        })
        .collect())
}

/// The tokens that are not comments.
pub fn significant(sql: &str) -> Result<Vec<Token>, SqlError> {
    Ok(tokens(sql)?
        .into_iter()
        .filter(|t| !t.is_comment())
        .collect())
}

/// A column reference found in a parse tree: its fields as the server resolves them (`None` for
/// `*`) and the byte offset of its first token in the parsed text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnRef {
    pub fields: Vec<Option<String>>,
    pub location: usize,
}

impl ColumnRef {
    /// The column's name (the last field), unless it is `*`.
    pub fn column(&self) -> Option<&str> {
        self.fields.last().and_then(|f| f.as_deref())
    }

    /// The qualifier right before the column (`t` of `t.c`, `t` of `s.t.c`).
    pub fn qualifier(&self) -> Option<&str> {
        let n = self.fields.len();
        if n < 2 {
            return None;
        }
        self.fields[n - 2].as_deref()
    }
}

/// A node as JSON, for walks over every node type (the protobuf types implement `Serialize`).
pub fn json<S: serde::Serialize>(node: &S) -> serde_json::Value {
    serde_json::to_value(node).unwrap_or(serde_json::Value::Null)
}

/// Every column reference anywhere under `node` (a JSON view from [`json`]), in document order.
pub fn column_refs(node: &serde_json::Value) -> Vec<ColumnRef> {
    let mut out = Vec::new();
    walk(node, &mut |key, value| {
        if key == "ColumnRef" {
            let fields = value
                .get("fields")
                .and_then(|f| f.as_array())
                .map(|fields| {
                    fields
                        .iter()
                        .map(|f| {
                            f.pointer("/node/String/sval")
                                .and_then(|s| s.as_str())
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let location = value.get("location").and_then(|l| l.as_i64()).unwrap_or(-1);
            if location >= 0 {
                out.push(ColumnRef {
                    fields,
                    location: location as usize,
                });
            }
        }
    });
    out.sort_by_key(|c| c.location);
    out
}

/// Calls `f(key, value)` for every object member under `node`, depth first.
pub fn walk(node: &serde_json::Value, f: &mut impl FnMut(&str, &serde_json::Value)) {
    match node {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                f(k, v);
                walk(v, f);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                walk(v, f);
            }
        }
        _ => {}
    }
}

/// The names of the functions called anywhere under `node`, each as its qualified name parts.
pub fn function_calls(node: &serde_json::Value) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    walk(node, &mut |key, value| {
        if key == "FuncCall" {
            let name = value
                .get("funcname")
                .and_then(|f| f.as_array())
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| p.pointer("/node/String/sval").and_then(|s| s.as_str()))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let location = value.get("location").and_then(|l| l.as_i64()).unwrap_or(0);
            out.push((name, location.max(0) as usize));
        }
    });
    out
}

/// True when a node of kind `kind` (`"SubLink"`, `"SelectStmt"`) occurs under `node`.
pub fn contains(node: &serde_json::Value, kind: &str) -> bool {
    let mut found = false;
    walk(node, &mut |key, _| found |= key == kind);
    found
}

/// Prefix under which [`parse_expr`] parses an expression.
const EXPR_PREFIX: &str = "SELECT ";

/// One SQL expression as a migration file writes it (a `check`, `default`, `up`, `down`,
/// `predicate`), parsed: the expression's node and the offset of the text in what was parsed.
#[derive(Clone, Debug)]
pub struct Expr {
    /// The text that was parsed (the expression behind a prefix).
    pub parsed: String,
    /// Where the expression starts in `parsed`.
    pub offset: usize,
    pub node: protobuf::Node,
}

impl Expr {
    /// The expression's node as JSON.
    pub fn json(&self) -> serde_json::Value {
        json(&self.node)
    }
}

/// Parses `text` as exactly one scalar expression: one statement `SELECT <text>` with one
/// unnamed target and no other clause. Anything else (a second statement, `FROM`, an alias) is
/// an error naming what was found.
pub fn parse_expr(text: &str) -> Result<Expr, SqlError> {
    if text.trim().is_empty() {
        return Err(SqlError::new("empty expression"));
    }
    // A newline ends a trailing `--` comment before anything the parser adds.
    let parsed = format!("{EXPR_PREFIX}{text}\n");
    let offset = EXPR_PREFIX.len();
    let shift = |mut e: SqlError| {
        e.location = e.location.and_then(|l| l.checked_sub(offset));
        e
    };
    let result = parse(&parsed).map_err(shift)?;
    let not_one = || SqlError::new("not one expression");
    let [stmt] = result.stmts.as_slice() else {
        return Err(SqlError::new(format!(
            "not one expression: {} statements",
            result.stmts.len()
        )));
    };
    let Some(N::SelectStmt(select)) = stmt.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
        return Err(not_one());
    };
    let extra = !select.from_clause.is_empty()
        || select.where_clause.is_some()
        || !select.group_clause.is_empty()
        || select.having_clause.is_some()
        || !select.sort_clause.is_empty()
        || select.limit_count.is_some()
        || select.limit_offset.is_some()
        || select.with_clause.is_some()
        || select.into_clause.is_some()
        || !select.distinct_clause.is_empty()
        || !select.window_clause.is_empty()
        || !select.locking_clause.is_empty()
        || select.larg.is_some()
        || !select.values_lists.is_empty();
    let [target] = select.target_list.as_slice() else {
        return Err(not_one());
    };
    let Some(N::ResTarget(res)) = target.node.as_ref() else {
        return Err(not_one());
    };
    if extra || !res.name.is_empty() {
        return Err(SqlError::new(
            "not one expression (found more than an expression: FROM, WHERE, an alias, ...)",
        ));
    }
    let node = res.val.as_deref().cloned().ok_or_else(not_one)?;
    Ok(Expr {
        parsed,
        offset,
        node,
    })
}

/// The first `sql` operation body (`up` or `down`) of a migration document that PostgreSQL's
/// parser refuses: its field path and the parser's message (with the line and column inside the
/// body when the parser gives the place).
pub fn check_sql_bodies(raw: &serde_json::Value) -> Option<(Vec<crate::format::PathSeg>, String)> {
    use crate::format::PathSeg;
    let ops = raw.get("operations")?.as_array()?;
    for (i, op) in ops.iter().enumerate() {
        let Some(body) = op.get("sql") else { continue };
        for key in ["up", "down"] {
            let Some(text) = body.get(key).and_then(|v| v.as_str()) else {
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            if let Err(e) = parse(text) {
                let at = e
                    .location
                    .map(|l| {
                        let (line, col) = Source::new(text).line_col(l);
                        format!(" (line {line}, column {col} of the body)")
                    })
                    .unwrap_or_default();
                let path = vec![
                    PathSeg::Key("operations".into()),
                    PathSeg::Index(i),
                    PathSeg::Key("sql".into()),
                    PathSeg::Key(key.into()),
                ];
                return Some((path, format!("not valid SQL: {}{at}", e.message)));
            }
        }
    }
    None
}

/// Byte offsets of a text to 1-based line and column (columns count characters).
#[derive(Clone, Debug)]
pub struct Source<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { text, line_starts }
    }

    /// `(line, column)` of byte `offset`, both from 1.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// The text of line `line` (from 1), without its newline.
    pub fn line(&self, line: usize) -> &'a str {
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let end = self
            .line_starts
            .get(line)
            .map_or(self.text.len(), |e| e - 1);
        self.text
            .get(start..end)
            .unwrap_or("")
            .trim_end_matches('\r')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_are_one_expression() {
        let e = parse_expr("lower(email) -- trailing comment").expect("expr");
        assert!(matches!(e.node.node, Some(N::FuncCall(_))));
        for bad in [
            "1; DROP TABLE t",
            "1 FROM t",
            "a AS b",
            "1 WHERE true",
            "",
            "(1",
            "1 UNION SELECT 2",
        ] {
            assert!(parse_expr(bad).is_err(), "{bad}");
        }
        let err = parse_expr("a AND OR b").expect_err("syntax");
        assert!(err.message.contains("syntax error"), "{err:?}");
    }

    #[test]
    fn finds_column_references_with_locations() {
        let e = parse_expr("t.a + b /* c */ + \"we.ird\" + f(c) + 'd' + $$e$$").expect("expr");
        let refs = column_refs(&e.json());
        let found: Vec<(Vec<Option<String>>, &str)> = refs
            .iter()
            .map(|r| (r.fields.clone(), &e.parsed[r.location..r.location + 1]))
            .collect();
        assert_eq!(
            found,
            vec![
                (vec![Some("t".into()), Some("a".into())], "t"),
                (vec![Some("b".into())], "b"),
                (vec![Some("we.ird".into())], "\""),
                (vec![Some("c".into())], "c"),
            ]
        );
    }

    #[test]
    fn sql_bodies_are_parsed() {
        let ok = serde_json::json!({"operations": [{"sql": {"up": "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"}}]});
        assert_eq!(check_sql_bodies(&ok), None);
        let bad = serde_json::json!({"operations": [{"create_table": {}}, {"sql": {"up": "SELECT 1", "down": "DROP TABLE t;\nDROP TABLEE u"}}]});
        let (path, message) = check_sql_bodies(&bad).expect("refused");
        assert_eq!(
            crate::format::FieldPath(path).to_string(),
            "operations[1].sql.down"
        );
        assert!(
            message.contains("syntax error at or near \"TABLEE\" (line 2, column 6"),
            "{message}"
        );
    }

    #[test]
    fn lines_and_columns() {
        let s = Source::new("ab\ncdé f\n");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(8), (2, 5));
        assert_eq!(s.line(2), "cdé f");
    }
}
