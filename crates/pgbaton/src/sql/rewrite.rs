//! Column rewriting on parse-tree locations: the text of an expression, an index or a constraint
//! definition with some column references pointing at other physical columns (a copy made for a
//! type change, a column added or renamed earlier in the same migration).
//!
//! The parser decides what a column reference is (a `ColumnRef` node, an index element's column,
//! a foreign key's column list); the server's lexer finds the token to replace where a node has
//! no location of its own. Everything else is kept byte for byte: string constants, comments,
//! dollar-quoted bodies, function and type names, other relations' columns. When nothing is
//! renamed the text is returned unchanged. A text the parser refuses is returned unchanged too:
//! the server reports the syntax error when the statement runs, and the file loader already
//! refuses such a text before any DDL (see [`crate::sql::parse_expr`]).

use pg_query::protobuf::{node::Node as N, Token as T};

use super::{column_refs, json, parse, parse_expr, significant, ColumnRef, Token};
use crate::ident::{Ident, RawSql};

/// One replacement: the byte range of an identifier token and the column it must name.
type Edit<'r> = (std::ops::Range<usize>, &'r Ident);

/// `text` with each edit's range replaced by its column, quoted.
fn apply_edits(text: &str, mut edits: Vec<Edit<'_>>) -> String {
    edits.sort_by_key(|(r, _)| r.start);
    edits.dedup_by_key(|(r, _)| r.start);
    let mut out = String::with_capacity(text.len() + 16 * edits.len());
    let mut at = 0;
    for (range, to) in edits {
        if range.start < at || range.end > text.len() {
            continue;
        }
        out.push_str(&text[at..range.start]);
        out.push_str(&to.to_string());
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The byte range of the identifier token of the last field of `r` (the column), found by
/// walking the lexer's tokens from the reference's location: `a`, `t . a`, `s.t.a`.
fn column_token(toks: &[Token], r: &ColumnRef) -> Option<std::ops::Range<usize>> {
    let first = toks.iter().position(|t| t.start == r.location)?;
    let last = first + 2 * r.fields.len().checked_sub(1)?;
    let tok = toks.get(last).filter(|t| t.is_ident())?;
    let mut end = tok.end;
    // `U&"x" UESCAPE '!'`: the escape clause belongs to the identifier.
    if tok.kind == T::Uident {
        if let (Some(u), Some(s)) = (toks.get(last + 1), toks.get(last + 2)) {
            if u.kind == T::Uescape {
                end = s.end;
            }
        }
    }
    Some(tok.start..end)
}

/// The edits that point the column references among `refs` (in `text`) at their new columns:
/// `pick` returns the new column of a reference, or `None` to leave it. A reference whose new
/// name is the one it already resolves to is left as written.
fn ref_edits<'r>(
    text: &str,
    refs: &[ColumnRef],
    mut pick: impl FnMut(&ColumnRef) -> Option<&'r Ident>,
) -> Vec<Edit<'r>> {
    let Ok(toks) = significant(text) else {
        return Vec::new();
    };
    refs.iter()
        .filter_map(|r| {
            let to = pick(r)?;
            if Some(to.as_str()) == r.column() {
                return None;
            }
            Some((column_token(&toks, r)?, to))
        })
        .collect()
}

/// The new column of a reference to a column `renames` maps: unqualified, or (with `table`)
/// qualified by the table's name.
fn pick_in<'r>(
    r: &ColumnRef,
    table: Option<&str>,
    renames: &[(&str, &'r Ident)],
) -> Option<&'r Ident> {
    let name = r.column()?;
    let ok = match r.fields.len() {
        1 => true,
        2 => table.is_some() && r.qualifier() == table,
        _ => false,
    };
    if !ok {
        return None;
    }
    renames
        .iter()
        .find(|(from, _)| *from == name)
        .map(|&(_, to)| to)
}

/// A text parsed either as one expression or as a table constraint definition (`CHECK (..)`,
/// as `pg_get_constraintdef` and migration files may write it): the full parsed text, where the
/// user's text starts in it, and the column references of the interesting part.
fn parse_fragment(text: &str) -> Option<(String, usize, Vec<ColumnRef>)> {
    if let Ok(e) = parse_expr(text) {
        let refs = column_refs(&e.json());
        return Some((e.parsed, e.offset, refs));
    }
    const PREFIX: &str = "ALTER TABLE _pgbaton ADD ";
    let parsed = format!("{PREFIX}{text}\n");
    let result = parse(&parsed).ok()?;
    let [stmt] = result.stmts.as_slice() else {
        return None;
    };
    let Some(N::AlterTableStmt(alter)) = stmt.stmt.as_ref()?.node.as_ref() else {
        return None;
    };
    let [cmd] = alter.cmds.as_slice() else {
        return None;
    };
    let Some(N::AlterTableCmd(cmd)) = cmd.node.as_ref() else {
        return None;
    };
    let def = cmd.def.as_deref()?;
    if !matches!(def.node, Some(N::Constraint(_))) {
        return None;
    }
    let refs = column_refs(&json(def));
    Some((parsed, PREFIX.len(), refs))
}

/// Rewrites the column references of a user's SQL expression (a check, an index predicate) from
/// the names a version uses to physical column names: `renames` maps a column name (as the
/// server resolves it) to the physical column it must refer to. Unqualified references and
/// references qualified by `table` are rewritten; function and type names, other relations'
/// columns, strings, comments and dollar-quoted bodies are not (the parser tells them apart).
/// When nothing matches, or the text does not parse, it is returned unchanged, byte for byte.
pub fn rename_columns_in_sql(sql: &RawSql, table: &str, renames: &[(String, Ident)]) -> RawSql {
    let Some((parsed, offset, refs)) = parse_fragment(sql.as_str()) else {
        return sql.clone();
    };
    let renames: Vec<(&str, &Ident)> = renames.iter().map(|(n, to)| (n.as_str(), to)).collect();
    let edits = ref_edits(&parsed, &refs, |r| pick_in(r, Some(table), &renames));
    if edits.is_empty() {
        return sql.clone();
    }
    let out = apply_edits(&parsed, edits);
    RawSql::new(strip_wrapper(&out, offset))
}

/// The user's text back out of a parsed text: after the prefix, without the added newline.
fn strip_wrapper(text: &str, offset: usize) -> String {
    let body = &text[offset..];
    body.strip_suffix('\n').unwrap_or(body).to_string()
}

/// `(from, to)` physical renames as `(name, column)` pairs.
fn by_name(renames: &[(Ident, Ident)]) -> Vec<(&str, &Ident)> {
    renames
        .iter()
        .map(|(from, to)| (from.as_str(), to))
        .collect()
}

/// Rewrites the column references of an expression or a constraint definition (`CHECK (..)` as
/// `pg_get_constraintdef` prints it): each unqualified reference to a column in `renames`
/// (`from` physical name → `to`) names `to` instead. Unchanged when nothing matches or when the
/// text does not parse.
pub fn rewrite_identifiers(sql: &str, renames: &[(Ident, Ident)]) -> String {
    let Some((parsed, offset, refs)) = parse_fragment(sql) else {
        return sql.to_string();
    };
    let renames = by_name(renames);
    let edits = ref_edits(&parsed, &refs, |r| pick_in(r, None, &renames));
    if edits.is_empty() {
        return sql.to_string();
    }
    strip_wrapper(&apply_edits(&parsed, edits), offset)
}

/// The token ranges of the elements of the parenthesised list opening at `toks[open]`, split at
/// its top-level commas, and the index of its closing parenthesis.
fn list_elements(toks: &[Token], open: usize) -> Option<(Vec<std::ops::Range<usize>>, usize)> {
    if !toks.get(open)?.is_char('(') {
        return None;
    }
    let mut depth = 0;
    let mut from = open + 1;
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate().skip(open) {
        if t.is_char('(') || t.is_char('[') {
            depth += 1;
        } else if t.is_char(')') || t.is_char(']') {
            depth -= 1;
            if depth == 0 {
                out.push(from..i);
                return Some((out, i));
            }
        } else if depth == 1 && t.is_char(',') {
            out.push(from..i);
            from = i + 1;
        }
    }
    None
}

/// A parsed `CREATE INDEX` as `pg_get_indexdef` prints it.
struct IndexDef {
    stmt: pg_query::protobuf::IndexStmt,
    toks: Vec<Token>,
    /// Token index of `USING`.
    using: usize,
    /// Element token ranges of the key list and of the `INCLUDE` list.
    keys: Vec<std::ops::Range<usize>>,
    include: Vec<std::ops::Range<usize>>,
}

fn parse_index(def: &str) -> Option<IndexDef> {
    let result = parse(def).ok()?;
    let [stmt] = result.stmts.as_slice() else {
        return None;
    };
    let Some(N::IndexStmt(stmt)) = stmt.stmt.as_ref()?.node.clone() else {
        return None;
    };
    let toks = significant(def).ok()?;
    let using = toks.iter().position(|t| t.kind == T::Using)?;
    // `USING <method> (keys) [INCLUDE (cols)] ...`
    let (keys, close) = list_elements(&toks, using + 2)?;
    let include = match toks.get(close + 1) {
        Some(t) if t.kind == T::Include => list_elements(&toks, close + 2)?.0,
        _ => Vec::new(),
    };
    if keys.len() != stmt.index_params.len() || include.len() != stmt.index_including_params.len() {
        return None;
    }
    Some(IndexDef {
        stmt: *stmt,
        toks,
        using,
        keys,
        include,
    })
}

/// The column of an index element that is a plain column (no expression).
fn elem_name(node: &pg_query::protobuf::Node) -> Option<&str> {
    match node.node.as_ref()? {
        N::IndexElem(e) if !e.name.is_empty() => Some(&e.name),
        _ => None,
    }
}

impl IndexDef {
    /// The edits that rename the columns `renames` maps: plain key columns and `INCLUDE`
    /// columns (by their element's first token), column references in key expressions and in
    /// the predicate (by location).
    fn edits<'r>(&self, def: &str, renames: &[(&str, &'r Ident)]) -> Vec<Edit<'r>> {
        let mut edits = Vec::new();
        let lists = [
            (&self.stmt.index_params, &self.keys),
            (&self.stmt.index_including_params, &self.include),
        ];
        for (params, ranges) in lists {
            for (param, range) in params.iter().zip(ranges) {
                let Some(name) = elem_name(param) else {
                    continue;
                };
                let Some(&(_, to)) = renames.iter().find(|(from, _)| *from == name) else {
                    continue;
                };
                if let Some(t) = self.toks.get(range.start).filter(|t| t.is_ident()) {
                    if to.as_str() != name {
                        edits.push((t.start..t.end, to));
                    }
                }
            }
        }
        let mut refs = Vec::new();
        for p in &self.stmt.index_params {
            if let Some(N::IndexElem(e)) = p.node.as_ref() {
                if let Some(expr) = &e.expr {
                    refs.extend(column_refs(&json(expr.as_ref())));
                }
            }
        }
        if let Some(w) = &self.stmt.where_clause {
            refs.extend(column_refs(&json(w.as_ref())));
        }
        edits.extend(ref_edits(def, &refs, |r| pick_in(r, None, renames)));
        edits
    }

    /// Every column the index names: plain key and `INCLUDE` columns, and the columns its
    /// expressions and predicate reference.
    fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .stmt
            .index_params
            .iter()
            .chain(&self.stmt.index_including_params)
            .filter_map(elem_name)
            .map(str::to_string)
            .collect();
        let mut refs = Vec::new();
        for p in &self.stmt.index_params {
            if let Some(N::IndexElem(e)) = p.node.as_ref() {
                if let Some(expr) = &e.expr {
                    refs.extend(column_refs(&json(expr.as_ref())));
                }
            }
        }
        if let Some(w) = &self.stmt.where_clause {
            refs.extend(column_refs(&json(w.as_ref())));
        }
        out.extend(
            refs.iter()
                .filter(|r| r.fields.len() == 1)
                .filter_map(|r| r.column().map(str::to_string)),
        );
        out
    }
}

/// The part of a `pg_get_indexdef` from `USING` on, with the columns `renames` maps renamed;
/// `None` when the index involves none of them (or the definition does not parse). Storage
/// parameters (`WITH (...)`) and the table are never touched.
pub fn rewrite_index(def: &str, renames: &[(Ident, Ident)]) -> Option<String> {
    let idx = parse_index(def)?;
    let renames = by_name(renames);
    let edits = idx.edits(def, &renames);
    if edits.is_empty() {
        return None;
    }
    let using = idx.toks[idx.using].start;
    let out = apply_edits(def, edits);
    // Edits are all after `USING`: the prefix keeps its length.
    Some(out[using..].to_string())
}

/// True when the index `def` (a `pg_get_indexdef`) involves `column` (physical name) anywhere:
/// as a key, an `INCLUDE` column, in an expression or in its predicate.
pub fn index_involves(def: &str, column: &Ident) -> bool {
    parse_index(def).is_some_and(|idx| idx.columns().iter().any(|c| c == column.as_str()))
}

/// True when a `pg_get_indexdef` is a plain b-tree over columns: each key is one column,
/// optionally `ASC`/`DESC` and `NULLS FIRST`/`LAST`, with no expression, operator class,
/// collation or predicate. (Such an index survives a type change that needs no rewrite; others
/// are rebuilt.)
pub fn is_plain_btree_index(def: &str) -> bool {
    let Some(idx) = parse_index(def) else {
        return false;
    };
    idx.stmt.access_method.eq_ignore_ascii_case("btree")
        && idx.stmt.where_clause.is_none()
        && idx.stmt.index_params.iter().all(|p| match p.node.as_ref() {
            Some(N::IndexElem(e)) => {
                !e.name.is_empty()
                    && e.expr.is_none()
                    && e.collation.is_empty()
                    && e.opclass.is_empty()
                    && e.opclassopts.is_empty()
            }
            _ => false,
        })
}

/// Rewrites a `FOREIGN KEY (..) REFERENCES t(..) ... ON DELETE SET NULL (..)` definition (as
/// `pg_get_constraintdef` prints it): `local` renames apply to the referencing columns (and the
/// `ON DELETE SET NULL/DEFAULT` columns), `remote` to the referenced ones. Unchanged when the
/// definition does not parse.
pub fn rewrite_foreign_key<'r>(
    def: &str,
    local: &'r [(Ident, Ident)],
    remote: &'r [(Ident, Ident)],
) -> String {
    const PREFIX: &str = "ALTER TABLE _pgbaton ADD ";
    let parsed = format!("{PREFIX}{def}");
    let Some(con) = parse(&parsed).ok().and_then(|r| {
        let stmt = r.stmts.into_iter().next()?.stmt?;
        let N::AlterTableStmt(alter) = stmt.node? else {
            return None;
        };
        let N::AlterTableCmd(cmd) = alter.cmds.into_iter().next()?.node? else {
            return None;
        };
        match cmd.def?.node? {
            N::Constraint(c) => Some(c),
            _ => None,
        }
    }) else {
        return def.to_string();
    };
    let Ok(toks) = significant(&parsed) else {
        return def.to_string();
    };
    let names = |list: &[pg_query::protobuf::Node]| -> Vec<String> {
        list.iter()
            .filter_map(|n| match n.node.as_ref() {
                Some(N::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .collect()
    };
    let (local, remote) = (by_name(local), by_name(remote));
    let mut edits: Vec<Edit<'_>> = Vec::new();
    let mut rename_list = |open: usize, cols: &[String], renames: &[(&str, &'r Ident)]| {
        let Some((ranges, _)) = list_elements(&toks, open) else {
            return;
        };
        if ranges.len() != cols.len() {
            return;
        }
        for (range, col) in ranges.iter().zip(cols) {
            let Some(&(_, to)) = renames.iter().find(|(from, _)| from == col) else {
                continue;
            };
            if let Some(t) = toks.get(range.start).filter(|t| t.is_ident()) {
                if to.as_str() != col {
                    edits.push((t.start..t.end, to));
                }
            }
        }
    };
    // `FOREIGN KEY (` .. `)`
    if let Some(k) = toks.iter().position(|t| t.kind == T::Foreign) {
        rename_list(k + 2, &names(&con.fk_attrs), &local);
    }
    // `REFERENCES name[.name] (` .. `)`
    if let Some(r) = toks.iter().position(|t| t.kind == T::References) {
        if let Some(open) = (r + 1..toks.len()).find(|&i| toks[i].is_char('(')) {
            rename_list(open, &names(&con.pk_attrs), &remote);
        }
    }
    // `ON DELETE SET NULL|DEFAULT (` .. `)`
    if !con.fk_del_set_cols.is_empty() {
        if let Some(d) = toks.iter().position(|t| t.kind == T::DeleteP) {
            if let Some(open) = (d + 1..toks.len()).find(|&i| toks[i].is_char('(')) {
                rename_list(open, &names(&con.fk_del_set_cols), &local);
            }
        }
    }
    if edits.is_empty() {
        return def.to_string();
    }
    strip_wrapper(&format!("{}\n", apply_edits(&parsed, edits)), PREFIX.len())
}

/// Parses a possibly schema-qualified SQL name as written in a migration file (a collation or an
/// operator class: `"C"`, `en_US`, `pg_catalog."default"`, `int8_ops`) into its parts, resolved
/// by the parser (unquoted parts fold to lower case). Returns a message when the text is not such
/// a name.
pub fn parse_sql_name(text: &str) -> Result<Vec<Ident>, String> {
    let not_a_name = || format!("\"{text}\" is not a name (expected name or schema.name)");
    const PREFIX: &str = "SELECT 1 COLLATE ";
    if text.trim().is_empty() {
        return Err(not_a_name());
    }
    let parsed = format!("{PREFIX}{text}\n");
    let result = parse(&parsed).map_err(|e| {
        if e.message.contains("zero-length delimited identifier") {
            format!("\"{text}\" is not a valid name")
        } else {
            not_a_name()
        }
    })?;
    let [stmt] = result.stmts.as_slice() else {
        return Err(not_a_name());
    };
    let Some(N::SelectStmt(select)) = stmt.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
        return Err(not_a_name());
    };
    let [target] = select.target_list.as_slice() else {
        return Err(not_a_name());
    };
    let Some(N::ResTarget(res)) = target.node.as_ref() else {
        return Err(not_a_name());
    };
    let Some(N::CollateClause(c)) = res.val.as_ref().and_then(|v| v.node.as_ref()) else {
        return Err(not_a_name());
    };
    let simple_arg = matches!(
        c.arg.as_ref().and_then(|a| a.node.as_ref()),
        Some(N::AConst(_))
    );
    if !res.name.is_empty() || !select.from_clause.is_empty() || !simple_arg {
        return Err(not_a_name());
    }
    let parts: Vec<Ident> = c
        .collname
        .iter()
        .filter_map(|n| match n.node.as_ref() {
            Some(N::String(s)) => Some(Ident::new(s.sval.as_str())),
            _ => None,
        })
        .collect();
    if parts.is_empty() || parts.len() != c.collname.len() {
        return Err(not_a_name());
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renames(pairs: &[(&str, &str)]) -> Vec<(String, Ident)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), Ident::new(*b)))
            .collect()
    }

    fn rw(sql: &str, pairs: &[(&str, &str)]) -> String {
        rename_columns_in_sql(&RawSql::new(sql), "t", &renames(pairs)).to_string()
    }

    fn phys(pairs: &[(&str, &str)]) -> Vec<(Ident, Ident)> {
        pairs
            .iter()
            .map(|(a, b)| (Ident::new(*a), Ident::new(*b)))
            .collect()
    }

    #[test]
    fn renames_column_references_only() {
        let m = [("name", "_new_name"), ("zip", "_new_zip")];
        assert_eq!(
            rw("name = 'alice' OR zip > 0", &m),
            "\"_new_name\" = 'alice' OR \"_new_zip\" > 0"
        );
        // Identifiers containing the name, strings, comments, dollar quotes, calls, casts.
        assert_eq!(
            rw("first_name <> 'name' -- name\n AND length(name) > 0 /* zip /* nested */ zip */", &m),
            "first_name <> 'name' -- name\n AND length(\"_new_name\") > 0 /* zip /* nested */ zip */"
        );
        assert_eq!(
            rw("$$name$$ || $q$zip$q$ || E'\\'name'", &m),
            "$$name$$ || $q$zip$q$ || E'\\'name'"
        );
        assert_eq!(
            rw("zip::name IS NOT NULL", &m),
            "\"_new_zip\"::name IS NOT NULL"
        );
        assert_eq!(
            rw("CAST(zip AS name) = 'x'", &m),
            "CAST(\"_new_zip\" AS name) = 'x'"
        );
        assert_eq!(rw("name(zip)", &m), "name(\"_new_zip\")");
        // Case folding: unquoted names fold, quoted ones match exactly.
        assert_eq!(
            rw("NAME = \"name\" AND \"Name\" = ''", &m),
            "\"_new_name\" = \"_new_name\" AND \"Name\" = ''"
        );
        // Qualified references: by the table, renamed; by anything else, left alone.
        assert_eq!(rw("t.zip > other.zip", &m), "t.\"_new_zip\" > other.zip");
        // Parameters and numbers are not identifiers.
        assert_eq!(
            rw("zip > $1 AND zip < 1e5", &m),
            "\"_new_zip\" > $1 AND \"_new_zip\" < 1e5"
        );
    }

    #[test]
    fn cases_the_token_guesser_got_wrong() {
        // A column named like a function: `left` the column, `left(...)` the function, and a
        // column named like a type used as a column.
        let m = [("left", "_new_left"), ("text", "_new_text")];
        assert_eq!(
            rw("left(text, 2) = text AND \"left\" > ''", &m),
            "left(\"_new_text\", 2) = \"_new_text\" AND \"_new_left\" > ''"
        );
        // A type-named column after a cast, and a type name that is the column's name.
        assert_eq!(
            rw("text::text <> '' AND CAST(text AS text) IS NOT NULL", &m),
            "\"_new_text\"::text <> '' AND CAST(\"_new_text\" AS text) IS NOT NULL"
        );
        // Quoted identifiers with dots: one column named `a.b`, not a qualified name.
        let m = [("a.b", "_new_a.b"), ("b", "_new_b")];
        assert_eq!(
            rw(
                "\"a.b\" > 0 AND a.b > 0 AND \"a\".\"b\" > 0 AND t.\"a.b\" > 0",
                &m
            ),
            "\"_new_a.b\" > 0 AND a.b > 0 AND \"a\".\"b\" > 0 AND t.\"_new_a.b\" > 0"
        );
        // Comments and dollar quotes inside an expression, between a qualifier and its column,
        // and a dollar-quoted string containing what looks like a closing quote and a column.
        let m = [("zip", "_new_zip")];
        assert_eq!(
            rw(
                "t /* zip */ . -- zip\n zip > 0 AND $x$ ' zip $x$ <> zip",
                &m
            ),
            "t /* zip */ . -- zip\n \"_new_zip\" > 0 AND $x$ ' zip $x$ <> \"_new_zip\""
        );
        // A type name before a literal (`date '...'`) and a field of EXTRACT are not columns,
        // even where a column has that name (the token guesser renamed both).
        let m = [("date", "_new_date"), ("year", "_new_year")];
        assert_eq!(
            rw("date '2020-01-01' < date AND EXTRACT(year FROM date) = year", &m),
            "date '2020-01-01' < \"_new_date\" AND EXTRACT(year FROM \"_new_date\") = \"_new_year\""
        );
        let m = [("zip", "_new_zip")];
        // A Unicode-escaped identifier is the column it spells.
        assert_eq!(rw("U&\"zi\\0070\" > 0", &m), "\"_new_zip\" > 0");
        // A key word used as a column name.
        let m = [("user", "_new_user"), ("value", "_new_value")];
        assert_eq!(
            rw("\"user\" <> current_user AND value > 0", &m),
            "\"_new_user\" <> current_user AND \"_new_value\" > 0"
        );
    }

    #[test]
    fn unchanged_text_is_returned_as_is() {
        let sql = RawSql::new("a  >  0");
        assert_eq!(
            rename_columns_in_sql(&sql, "t", &renames(&[("b", "c")])),
            sql
        );
        // A mapping to the same name changes nothing either.
        assert_eq!(
            rename_columns_in_sql(&sql, "t", &renames(&[("a", "a")])),
            sql
        );
        // Text the parser refuses is left for the server to report.
        let bad = RawSql::new("a >");
        assert_eq!(
            rename_columns_in_sql(&bad, "t", &renames(&[("a", "b")])),
            bad
        );
    }

    #[test]
    fn qualifiers_are_not_references() {
        let m = [("zip", "_new_zip")];
        // `zip.code`: `zip` names a relation there, not the column.
        assert_eq!(
            rw("zip.code > 0 AND zip > 0", &m),
            "zip.code > 0 AND \"_new_zip\" > 0"
        );
    }

    #[test]
    fn checks_written_as_constraints() {
        let m = [("a", "_new_a")];
        assert_eq!(rw("CHECK (a > 0)", &m), "CHECK (\"_new_a\" > 0)");
        assert_eq!(rw("check(a > 0)", &m), "check(\"_new_a\" > 0)");
    }

    #[test]
    fn weird_names_are_quoted() {
        assert_eq!(
            rw("\"we\"\"ird\" > 0", &[("we\"ird", "_n_we\"ird")]),
            "\"_n_we\"\"ird\" > 0"
        );
    }

    #[test]
    fn rewrites_constraint_definitions() {
        let r = phys(&[("email", "_pgbaton_new_email")]);
        assert_eq!(
            rewrite_identifiers("CHECK ((length((email)::text) > 3 AND email <> 'email' AND \"email\" IS NOT NULL))", &r),
            "CHECK ((length((\"_pgbaton_new_email\")::text) > 3 AND \"_pgbaton_new_email\" <> 'email' AND \"_pgbaton_new_email\" IS NOT NULL))"
        );
        assert_eq!(
            rewrite_identifiers("email(x) + s.email + 1::email + \"Email\"", &r),
            "email(x) + s.email + 1::email + \"Email\""
        );
        assert_eq!(rewrite_identifiers("EMAIL", &r), "\"_pgbaton_new_email\"");
        assert_eq!(
            rewrite_identifiers("CAST(email AS email) || N'email' || X'0e'", &r),
            "CAST(\"_pgbaton_new_email\" AS email) || N'email' || X'0e'"
        );
    }

    #[test]
    fn rewrites_index_definitions() {
        let r = phys(&[("email", "_pgbaton_new_email")]);
        let def = "CREATE INDEX users_lower_email ON public.users USING btree (lower((email)::text)) WITH (fillfactor='70') WHERE (email IS NOT NULL)";
        assert_eq!(
            rewrite_index(def, &r).as_deref(),
            Some("USING btree (lower((\"_pgbaton_new_email\")::text)) WITH (fillfactor='70') WHERE (\"_pgbaton_new_email\" IS NOT NULL)")
        );
        assert_eq!(
            rewrite_index("CREATE INDEX i ON public.email USING btree (id)", &r),
            None
        );
        // Plain keys (with options), INCLUDE columns, a key named like a function.
        assert_eq!(
            rewrite_index(
                "CREATE UNIQUE INDEX i ON public.t USING btree (id, email DESC NULLS LAST, lower(\"left\")) INCLUDE (email, x)",
                &phys(&[("email", "e2"), ("left", "l2")])
            )
            .as_deref(),
            Some("USING btree (id, \"e2\" DESC NULLS LAST, lower(\"l2\")) INCLUDE (\"e2\", x)")
        );
        assert!(index_involves(def, &Ident::new("email")));
        assert!(!index_involves(def, &Ident::new("lower")));
        assert!(!index_involves(
            "CREATE INDEX i ON public.email USING btree (id)",
            &Ident::new("email")
        ));
    }

    #[test]
    fn recognises_plain_btree_indexes() {
        assert!(is_plain_btree_index(
            "CREATE INDEX i ON public.t USING btree (email)"
        ));
        assert!(is_plain_btree_index(
            "CREATE UNIQUE INDEX i ON public.t USING btree (a DESC NULLS LAST, \"B\") INCLUDE (c)"
        ));
        for def in [
            "CREATE INDEX i ON public.t USING btree (email varchar_pattern_ops)",
            "CREATE INDEX i ON public.t USING btree (email COLLATE \"C\")",
            "CREATE INDEX i ON public.t USING btree (lower(email))",
            "CREATE INDEX i ON public.t USING btree (email) WHERE (email IS NOT NULL)",
            "CREATE INDEX i ON public.t USING hash (email)",
        ] {
            assert!(!is_plain_btree_index(def), "{def}");
        }
    }

    #[test]
    fn rewrites_foreign_keys_per_side() {
        let r = phys(&[("id", "_pgbaton_new_id")]);
        assert_eq!(
            rewrite_foreign_key(
                "FOREIGN KEY (id) REFERENCES users(id) ON DELETE CASCADE",
                &[],
                &r
            ),
            "FOREIGN KEY (id) REFERENCES users(\"_pgbaton_new_id\") ON DELETE CASCADE"
        );
        assert_eq!(
            rewrite_foreign_key("FOREIGN KEY (id) REFERENCES users(id)", &r, &[]),
            "FOREIGN KEY (\"_pgbaton_new_id\") REFERENCES users(id)"
        );
        // A referenced table named like the column, in a schema; ON DELETE SET NULL columns.
        assert_eq!(
            rewrite_foreign_key(
                "FOREIGN KEY (a, id) REFERENCES \"id\".id(x, id) ON DELETE SET NULL (id)",
                &r,
                &[]
            ),
            "FOREIGN KEY (a, \"_pgbaton_new_id\") REFERENCES \"id\".id(x, id) ON DELETE SET NULL (\"_pgbaton_new_id\")"
        );
    }

    #[test]
    fn parses_qualified_names() {
        let p = |s: &str| {
            parse_sql_name(s).map(|v| {
                v.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(".")
            })
        };
        assert_eq!(p("\"C\"").as_deref(), Ok("\"C\""));
        assert_eq!(p("en_US").as_deref(), Ok("\"en_us\""));
        assert_eq!(
            p("pg_catalog.\"default\"").as_deref(),
            Ok("\"pg_catalog\".\"default\"")
        );
        assert_eq!(p(" int8_ops ").as_deref(), Ok("\"int8_ops\""));
        for bad in [
            "x; DROP TABLE t",
            "a.",
            "",
            "\"\"",
            "'C'",
            "C \"alias\"",
            "C || x",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
