//! User SQL fragments: every piece of SQL text a migration file puts inside pgbaton's own
//! statements (a column `type`, a `default`, a `check`, `up`/`down`, a `predicate`, storage
//! parameters, ...) is checked here, with PostgreSQL's own parser (`pg_query`), when the file is
//! read: before any schema is read and long before any DDL runs.
//!
//! A fragment must be exactly what its field says, and nothing more:
//! - a type name is one type name (PostgreSQL's type-name grammar, no `SETOF`, no `%TYPE`);
//! - an expression is one scalar expression: `SELECT (<fragment>)` parses to a single statement
//!   whose only part is that one target (no `FROM`, no second target, no `UNION`, no `;`);
//! - storage parameters, sequence options, exclusion elements and operator-class parameters are
//!   the list their clause takes, checked the same way inside a template statement of that clause.
//!
//! The check compares trees: the template is parsed once with the fragment and once with a
//! placeholder, the fragment's slot is blanked in both, and the rest must be identical. So a
//! fragment that closes the template's parenthesis, adds a clause or a statement, is refused.
//!
//! Comments are removed from an accepted fragment (replaced by a space), so a trailing `--`
//! cannot swallow the SQL pgbaton writes after the fragment. The `sql` operation's `up`/`down`
//! are the one place where user text is several statements by design; they are not fragments.

use pg_query::protobuf::{self, node::Node as N, SetOperation};

use crate::path::PathSeg;

/// What a fragment must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One type name: `varchar(255)`, `timestamp with time zone`, `public.mood[]`.
    TypeName,
    /// One scalar expression.
    Expression,
    /// A check constraint: one expression, or pgroll's written form `CHECK (<expression>)`.
    Check,
    /// `fillfactor = 70, autovacuum_enabled = false`: what `WITH (...)` takes.
    StorageParameters,
    /// Identity sequence options: what `GENERATED ... AS IDENTITY (...)` takes.
    SequenceOptions,
    /// Exclusion constraint elements: `room WITH =, during WITH &&`.
    ExcludeElements,
    /// Operator class parameters: `siglen = 32`.
    OpclassParameters,
}

impl Kind {
    /// How the field is described in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::TypeName => "exactly one type name",
            Kind::Expression => "exactly one SQL expression",
            Kind::Check => "exactly one check expression",
            Kind::StorageParameters => "a list of storage parameters (name = value, ...)",
            Kind::SequenceOptions => "a list of sequence options (START 1 INCREMENT 1 ...)",
            Kind::ExcludeElements => "a list of exclusion elements (column WITH operator, ...)",
            Kind::OpclassParameters => "a list of operator class parameters (name = value, ...)",
        }
    }
}

/// Which fields of which operations are fragments, relative to the operation's body. `*` matches
/// any one segment (a list index or a map key).
const FIELDS: &[(&str, &[&str], Kind)] = &[
    ("add_column", &["up"], Kind::Expression),
    ("alter_column", &["type"], Kind::TypeName),
    ("alter_column", &["default"], Kind::Expression),
    ("alter_column", &["check", "constraint"], Kind::Check),
    ("alter_column", &["up"], Kind::Expression),
    ("alter_column", &["down"], Kind::Expression),
    ("create_table", &["constraints", "*", "check"], Kind::Check),
    (
        "create_table",
        &["constraints", "*", "exclude", "elements"],
        Kind::ExcludeElements,
    ),
    (
        "create_table",
        &["constraints", "*", "exclude", "predicate"],
        Kind::Expression,
    ),
    (
        "create_table",
        &["constraints", "*", "index_parameters", "storage_parameters"],
        Kind::StorageParameters,
    ),
    ("create_index", &["predicate"], Kind::Expression),
    (
        "create_index",
        &["storage_parameters"],
        Kind::StorageParameters,
    ),
    (
        "create_index",
        &["columns", "*", "opclass", "params", "*"],
        Kind::OpclassParameters,
    ),
    ("create_constraint", &["check"], Kind::Check),
    ("create_constraint", &["up", "*"], Kind::Expression),
    ("create_constraint", &["down", "*"], Kind::Expression),
    (
        "create_constraint",
        &["index_parameters", "storage_parameters"],
        Kind::StorageParameters,
    ),
    ("drop_column", &["down"], Kind::Expression),
    ("drop_constraint", &["up"], Kind::Expression),
    ("drop_constraint", &["down"], Kind::Expression),
    (
        "drop_multicolumn_constraint",
        &["up", "*"],
        Kind::Expression,
    ),
    (
        "drop_multicolumn_constraint",
        &["down", "*"],
        Kind::Expression,
    ),
];

/// The fields of a column definition (`add_column.column`, `create_table.columns[*]`).
const COLUMN_FIELDS: &[(&[&str], Kind)] = &[
    (&["type"], Kind::TypeName),
    (&["default"], Kind::Expression),
    (&["check", "constraint"], Kind::Check),
    (&["generated", "expression"], Kind::Expression),
    (
        &["generated", "identity", "sequence_options"],
        Kind::SequenceOptions,
    ),
];

fn matches(pattern: &[&str], path: &[PathSeg]) -> bool {
    pattern.len() == path.len()
        && pattern.iter().zip(path).all(|(p, seg)| match seg {
            _ if *p == "*" => true,
            PathSeg::Key(k) => k == p,
            PathSeg::Index(_) => false,
        })
}

/// The kind of fragment at `path` (from the document's root), if that field is one.
pub fn kind_at(path: &[PathSeg]) -> Option<Kind> {
    let [PathSeg::Key(ops), PathSeg::Index(_), PathSeg::Key(op), rest @ ..] = path else {
        return None;
    };
    if ops != "operations" {
        return None;
    }
    if let Some((_, _, kind)) = FIELDS
        .iter()
        .find(|(name, pattern, _)| name == op && matches(pattern, rest))
    {
        return Some(*kind);
    }
    let column = match (op.as_str(), rest) {
        ("add_column", [PathSeg::Key(c), column @ ..]) if c == "column" => column,
        ("create_table", [PathSeg::Key(c), PathSeg::Index(_), column @ ..]) if c == "columns" => {
            column
        }
        _ => return None,
    };
    COLUMN_FIELDS
        .iter()
        .find(|(pattern, _)| matches(pattern, column))
        .map(|(_, kind)| *kind)
}

/// Checks `text` as a fragment of `kind`. Returns the text to splice (comments removed,
/// trimmed), or why it is not one. Blank text is returned as is: the operation decides whether
/// the field may be empty.
pub fn check(kind: Kind, text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Ok(text.to_string());
    }
    let clean = strip_comments(text)?;
    if clean.is_empty() {
        return Err(format!("must be {}, found only a comment", kind.describe()));
    }
    let refused = |why: &str| format!("must be {}: {why}", kind.describe());
    match kind {
        Kind::TypeName => type_name(&clean).map_err(|why| refused(&why))?,
        Kind::Expression => expression(&clean).map_err(|why| refused(&why))?,
        Kind::Check => {
            let written = clean
                .get(..5)
                .is_some_and(|k| k.eq_ignore_ascii_case("check"))
                && clean[5..].trim_start().starts_with('(');
            if written {
                in_template(&clean, &CHECK).map_err(|why| refused(&why))?
            } else {
                expression(&clean).map_err(|why| refused(&why))?
            }
        }
        Kind::StorageParameters => in_template(&clean, &STORAGE).map_err(|why| refused(&why))?,
        Kind::SequenceOptions => in_template(&clean, &SEQUENCE).map_err(|why| refused(&why))?,
        Kind::ExcludeElements => in_template(&clean, &EXCLUDE).map_err(|why| refused(&why))?,
        Kind::OpclassParameters => in_template(&clean, &OPCLASS).map_err(|why| refused(&why))?,
    }
    Ok(clean)
}

/// `text` without its comments (each replaced by one space), trimmed.
fn strip_comments(text: &str) -> Result<String, String> {
    let tokens = pg_query::scan_tokens(text).map_err(message)?;
    let mut out = String::with_capacity(text.len());
    let mut at = 0usize;
    for t in tokens {
        let comment = t.token == protobuf::Token::SqlComment as i32
            || t.token == protobuf::Token::CComment as i32;
        if !comment {
            continue;
        }
        let (start, end) = (t.start as usize, t.end as usize);
        let (Some(before), Some(_)) = (text.get(at..start), text.get(start..end)) else {
            return Err("cannot be split into tokens".into());
        };
        out.push_str(before);
        out.push(' ');
        at = end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    Ok(out.trim().to_string())
}

fn message(e: pg_query::Error) -> String {
    match e {
        pg_query::Error::Parse(m) | pg_query::Error::Scan(m) => m,
        other => other.to_string(),
    }
}

fn parse(sql: &str, options: pg_query::ParserOptions) -> Result<Vec<N>, String> {
    let result = pg_query::parse(sql, options).map_err(message)?;
    let stmts = result.protobuf.stmts;
    if stmts.len() != 1 {
        return Err(format!("found {} statements", stmts.len()));
    }
    Ok(stmts
        .into_iter()
        .filter_map(|s| s.stmt.and_then(|n| n.node))
        .collect())
}

fn type_name(text: &str) -> Result<(), String> {
    in_template(text, &TYPE)
}

fn expression(text: &str) -> Result<(), String> {
    let nodes = parse(&format!("SELECT (\n{text}\n)"), Default::default())?;
    let [N::SelectStmt(select)] = nodes.as_slice() else {
        return Err("not an expression".into());
    };
    let mut rest = (**select).clone();
    let target = match std::mem::take(&mut rest.target_list).as_slice() {
        [protobuf::Node {
            node: Some(N::ResTarget(t)),
        }] => t.clone(),
        _ => return Err("more than one expression".into()),
    };
    if !target.name.is_empty() || !target.indirection.is_empty() {
        return Err("more than one expression".into());
    }
    let implicit_row =
        |r: &protobuf::RowExpr| r.row_format != protobuf::CoercionForm::CoerceExplicitCall as i32;
    if matches!(target.val.as_deref().and_then(|v| v.node.as_ref()), Some(N::RowExpr(r)) if implicit_row(r))
    {
        return Err("a list of values, not one expression".into());
    }
    let bare = protobuf::SelectStmt {
        op: SetOperation::SetopNone as i32,
        limit_option: rest.limit_option,
        ..Default::default()
    };
    if rest != bare {
        return Err("it adds clauses or statements around the expression".into());
    }
    Ok(())
}

/// A statement that takes a fragment in one place: `prefix`, the fragment, `suffix`; a
/// placeholder that fits there; and how to blank the fragment's part of the tree.
struct Template {
    prefix: &'static str,
    suffix: &'static str,
    placeholder: &'static str,
    blank: fn(&mut N) -> Option<()>,
}

fn cast_type(n: &mut N) -> Option<&mut Option<protobuf::TypeName>> {
    let N::SelectStmt(s) = n else { return None };
    let N::ResTarget(t) = s.target_list.first_mut()?.node.as_mut()? else {
        return None;
    };
    match t.val.as_mut()?.node.as_mut()? {
        N::TypeCast(c) => Some(&mut c.type_name),
        _ => None,
    }
}

const TYPE: Template = Template {
    prefix: "SELECT CAST(NULL AS\n",
    suffix: "\n)",
    placeholder: "int",
    blank: |n| {
        let t = cast_type(n)?.take()?;
        // Both parse as type names, but neither is the type of a column.
        (!t.setof && !t.pct_type).then_some(())
    },
};

const STORAGE: Template = Template {
    prefix: "CREATE TABLE t () WITH (\n",
    suffix: "\n)",
    placeholder: "fillfactor = 100",
    blank: |n| match n {
        N::CreateStmt(s) if !s.options.is_empty() => {
            s.options.clear();
            Some(())
        }
        _ => None,
    },
};

const SEQUENCE: Template = Template {
    prefix: "CREATE TABLE t (c int GENERATED ALWAYS AS IDENTITY (\n",
    suffix: "\n))",
    placeholder: "START 1",
    blank: |n| match n {
        N::CreateStmt(s) => match s.table_elts.first_mut()?.node.as_mut()? {
            N::ColumnDef(c) => match c.constraints.first_mut()?.node.as_mut()? {
                N::Constraint(k) => {
                    k.options.clear();
                    Some(())
                }
                _ => None,
            },
            _ => None,
        },
        _ => None,
    },
};

fn added_constraint(n: &mut N) -> Option<&mut protobuf::Constraint> {
    match n {
        N::AlterTableStmt(s) if s.cmds.len() == 1 => match s.cmds[0].node.as_mut()? {
            N::AlterTableCmd(cmd) => match cmd.def.as_mut()?.node.as_mut()? {
                N::Constraint(k) => Some(k),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

const EXCLUDE: Template = Template {
    prefix: "ALTER TABLE t ADD CONSTRAINT c EXCLUDE (\n",
    suffix: "\n)",
    placeholder: "a WITH =",
    blank: |n| {
        let k = added_constraint(n)?;
        (!k.exclusions.is_empty()).then(|| k.exclusions.clear())
    },
};

const CHECK: Template = Template {
    prefix: "ALTER TABLE t ADD\n",
    suffix: "\n",
    placeholder: "CHECK (true)",
    blank: |n| {
        let k = added_constraint(n)?;
        k.raw_expr.take().map(|_| ())
    },
};

const OPCLASS: Template = Template {
    prefix: "CREATE INDEX i ON t (c o (\n",
    suffix: "\n))",
    placeholder: "p = 1",
    blank: |n| match n {
        N::IndexStmt(s) => match s.index_params.first_mut()?.node.as_mut()? {
            N::IndexElem(e) if !e.opclassopts.is_empty() => {
                e.opclassopts.clear();
                Some(())
            }
            _ => None,
        },
        _ => None,
    },
};

fn in_template(text: &str, t: &Template) -> Result<(), String> {
    let tree = |fragment: &str| -> Result<N, String> {
        let sql = format!("{}{fragment}{}", t.prefix, t.suffix);
        let mut nodes = parse(&sql, Default::default())?;
        let mut node = nodes.pop().ok_or("not a statement")?;
        (t.blank)(&mut node).ok_or("not the expected clause")?;
        Ok(node)
    };
    let expected = tree(t.placeholder).map_err(|e| format!("internal template error: {e}"))?;
    if tree(text)? != expected {
        return Err("it adds clauses or statements around the list".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: Kind, text: &str) -> String {
        check(kind, text).unwrap_or_else(|e| panic!("{text:?} refused: {e}"))
    }

    fn refused(kind: Kind, text: &str) -> String {
        match check(kind, text) {
            Ok(clean) => panic!("{text:?} accepted as {clean:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn type_names() {
        for t in [
            "int",
            "varchar(255)",
            "timestamp with time zone",
            "double precision",
            "public.mood[]",
            "\"My Type\"",
            "numeric(10, 2)",
            "int ARRAY",
            "interval day to second",
            "bigserial",
        ] {
            assert_eq!(ok(Kind::TypeName, t), t);
        }
        for t in [
            "int; DROP TABLE victims; --",
            "bigint; DROP TABLE victims; --",
            "int DEFAULT 1",
            "int NOT NULL",
            "SETOF int",
            "users.email%TYPE",
            "int) ; DROP TABLE x; --",
        ] {
            refused(Kind::TypeName, t);
        }
        assert_eq!(ok(Kind::TypeName, "int -- the id"), "int");
        assert_eq!(ok(Kind::TypeName, "/* x */ text"), "text");
    }

    #[test]
    fn expressions() {
        for e in [
            "1",
            "lower(email)",
            "CASE WHEN id = 4242 THEN NULL ELSE 1 END",
            "(SELECT max(id) FROM other WHERE other.x = x)",
            "'a;b' || $$c;d$$",
            "100 / (id - 77777)",
            "a > 0",
        ] {
            assert_eq!(ok(Kind::Expression, e), e);
        }
        for e in [
            "1); DROP TABLE victims; --",
            "1; DROP TABLE victims",
            "1 FROM victims",
            "1) FROM victims WHERE (true",
            "1, 2",
            "1) UNION SELECT (2",
            "a > 0) NOT VALID, ADD CONSTRAINT c CHECK (true",
            "-- only a comment",
            "1 AS x",
            "1) ORDER BY (1",
        ] {
            refused(Kind::Expression, e);
        }
        assert_eq!(ok(Kind::Expression, "lower(email) -- why"), "lower(email)");
    }

    #[test]
    fn checks() {
        assert_eq!(ok(Kind::Check, "a > 0"), "a > 0");
        assert_eq!(ok(Kind::Check, "CHECK (a > 0)"), "CHECK (a > 0)");
        assert_eq!(ok(Kind::Check, "checked"), "checked");
        refused(Kind::Check, "chk > 0); DROP TABLE victims; --");
        refused(Kind::Check, "CHECK (a > 0); DROP TABLE victims");
        refused(Kind::Check, "CHECK (a > 0) OR (b > 0)");
    }

    #[test]
    fn lists() {
        ok(Kind::StorageParameters, "fillfactor = 70");
        ok(
            Kind::StorageParameters,
            "fillfactor=70, autovacuum_enabled=false",
        );
        refused(Kind::StorageParameters, "fillfactor=70); DROP TABLE x; --");
        refused(
            Kind::StorageParameters,
            "fillfactor=70) TABLESPACE pg_default --",
        );
        ok(Kind::SequenceOptions, "START 10 INCREMENT 2");
        refused(Kind::SequenceOptions, "START 10)); DROP TABLE x; --");
        ok(Kind::ExcludeElements, "room WITH =, during WITH &&");
        refused(Kind::ExcludeElements, "room WITH =) WHERE (true");
        ok(Kind::OpclassParameters, "siglen = 32");
        refused(Kind::OpclassParameters, "siglen = 32)); DROP TABLE x; --");
    }

    #[test]
    fn fields() {
        let path = |segs: &[&str]| -> Vec<PathSeg> {
            segs.iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(i) => PathSeg::Index(i),
                    Err(_) => PathSeg::Key(s.to_string()),
                })
                .collect()
        };
        let k = |segs: &[&str]| kind_at(&path(segs));
        assert_eq!(
            k(&["operations", "0", "add_column", "column", "type"]),
            Some(Kind::TypeName)
        );
        assert_eq!(
            k(&[
                "operations",
                "3",
                "create_table",
                "columns",
                "1",
                "check",
                "constraint"
            ]),
            Some(Kind::Check)
        );
        assert_eq!(
            k(&["operations", "0", "create_constraint", "up", "email"]),
            Some(Kind::Expression)
        );
        assert_eq!(k(&["operations", "0", "sql", "up"]), None);
        assert_eq!(
            k(&["operations", "0", "add_column", "column", "name"]),
            None
        );
    }
}
