//! A SQL migration script as a list of changes: each statement of the script (split and parsed
//! by PostgreSQL's parser) classified into what `lint` judges and `convert` turns into operations.
//! An `ALTER TABLE` with several actions gives one [`Change`] per action. Expressions and types
//! are carried as SQL text deparsed from the parse tree (so comments and layout are gone, and
//! what is left is exactly one expression or type name).

use pg_query::protobuf::{
    self, node::Node as N, AlterTableType as At, ConstrType, ObjectType, TransactionStmtKind,
};

use super::{parse, SqlError};

/// One statement of a script.
#[derive(Clone, Debug)]
pub struct Statement {
    /// Byte offset of the statement's first token in the script.
    pub start: usize,
    /// Byte offset after its last character (before the `;`).
    pub end: usize,
    /// What it does.
    pub changes: Vec<Change>,
    /// What of the statement pgroll's operations cannot express (`INCLUDE`, a partition, a
    /// deferrable constraint...): `convert` keeps such a statement as it is.
    pub inexpressible: Option<String>,
}

impl Statement {
    /// The statement's text in `script`.
    pub fn text<'a>(&self, script: &'a str) -> &'a str {
        script.get(self.start..self.end).unwrap_or("").trim()
    }
}

/// A column as a `CREATE TABLE` or `ADD COLUMN` defines it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    /// The type as SQL (`bigint`, `varchar(255)`); `serial` types as written.
    pub type_: String,
    pub not_null: bool,
    pub default: Option<String>,
    pub primary_key: bool,
    pub unique: bool,
    pub check: Option<String>,
    /// `(table, column)` of an inline `REFERENCES`.
    pub references: Option<(String, Option<String>)>,
    /// `ON DELETE` / `ON UPDATE` of the inline `REFERENCES` (`NO ACTION` when not said).
    pub references_actions: (String, String),
    /// `GENERATED ALWAYS AS (expr) STORED`.
    pub generated: Option<String>,
    /// `GENERATED ... AS IDENTITY`.
    pub identity: bool,
}

/// A table constraint (`ADD CONSTRAINT`, or in `CREATE TABLE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstraintSpec {
    pub name: Option<String>,
    pub kind: ConstraintKind,
    pub not_valid: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConstraintKind {
    Check(String),
    ForeignKey {
        columns: Vec<String>,
        table: String,
        ref_columns: Vec<String>,
        on_delete: String,
        on_update: String,
    },
    Unique {
        columns: Vec<String>,
        using_index: Option<String>,
    },
    PrimaryKey {
        columns: Vec<String>,
        using_index: Option<String>,
    },
    Exclude,
    Other,
}

/// An index column: a column name or an expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexKey {
    Column {
        name: String,
        desc: bool,
        nulls_first: Option<bool>,
    },
    Expr(String),
}

/// What a statement (or one action of an `ALTER TABLE`) does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Begin,
    Commit,
    /// `SET`, `SET LOCAL`, `RESET`.
    Set(String),
    CreateTable {
        table: String,
        columns: Vec<ColumnSpec>,
        constraints: Vec<ConstraintSpec>,
    },
    CreateIndex {
        name: String,
        table: String,
        keys: Vec<IndexKey>,
        unique: bool,
        method: String,
        predicate: Option<String>,
        concurrently: bool,
    },
    AddColumn {
        table: String,
        column: ColumnSpec,
    },
    AlterType {
        table: String,
        column: String,
        type_: String,
        using: Option<String>,
    },
    SetNotNull {
        table: String,
        column: String,
    },
    DropNotNull {
        table: String,
        column: String,
    },
    /// `SET DEFAULT expr` (`Some`) or `DROP DEFAULT` (`None`).
    Default {
        table: String,
        column: String,
        default: Option<String>,
    },
    AddConstraint {
        table: String,
        constraint: ConstraintSpec,
    },
    ValidateConstraint {
        table: String,
        name: String,
    },
    DropColumn {
        table: String,
        column: String,
    },
    DropConstraint {
        table: String,
        name: String,
    },
    RenameColumn {
        table: String,
        from: String,
        to: String,
    },
    RenameTable {
        from: String,
        to: String,
    },
    RenameConstraint {
        table: String,
        from: String,
        to: String,
    },
    DropTable {
        table: String,
    },
    DropIndex {
        name: String,
        concurrently: bool,
    },
    Update {
        table: String,
        /// `(column, expression)` of the `SET` list.
        set: Vec<(String, String)>,
        filter: Option<String>,
    },
    Delete {
        table: String,
        filter: Option<String>,
    },
    Insert {
        table: String,
    },
    Truncate {
        tables: Vec<String>,
    },
    /// A rewrite of the whole table under ACCESS EXCLUSIVE: `VACUUM FULL`, `CLUSTER`,
    /// `SET TABLESPACE`, `SET LOGGED/UNLOGGED`, `REFRESH MATERIALIZED VIEW` (not concurrently),
    /// `REINDEX` (not concurrently), `LOCK TABLE`.
    Rewrite {
        table: Option<String>,
        what: String,
    },
    /// `ALTER DOMAIN .. ADD CONSTRAINT`: checks every column of the domain's type.
    DomainConstraint {
        domain: String,
    },
    /// Anything else (`CREATE TYPE`, `CREATE EXTENSION`, `COMMENT`, `GRANT`, functions...):
    /// nothing pgbaton judges; the statement's tag.
    Other {
        tag: String,
        /// The table it touches, when it is an `ALTER TABLE` action pgbaton does not model.
        table: Option<String>,
    },
}

/// Parses `script` into its statements.
pub fn statements(script: &str) -> Result<Vec<Statement>, SqlError> {
    let result = parse(script)?;
    let mut out = Vec::new();
    for raw in &result.stmts {
        let start = raw.stmt_location.max(0) as usize;
        let end = if raw.stmt_len > 0 {
            start + raw.stmt_len as usize
        } else {
            script.len()
        };
        // The parser's start includes the whitespace and comments before the statement.
        let start = start + leading_trivia(script.get(start..end).unwrap_or(""));
        let node = raw.stmt.as_deref().and_then(|n| n.node.as_ref());
        let changes = node.map(classify).unwrap_or_default();
        out.push(Statement {
            start,
            end: end.min(script.len()),
            changes,
            inexpressible: node.and_then(inexpressible),
        });
    }
    Ok(out)
}

/// What of a statement the operations `convert` makes from it could not carry.
fn inexpressible(node: &N) -> Option<String> {
    let has = |cond: bool, what: &str| cond.then(|| what.to_string());
    let found = match node {
        N::IndexStmt(i) => has(!i.index_including_params.is_empty(), "INCLUDE columns")
            .or_else(|| has(!i.options.is_empty(), "storage parameters (WITH ...)"))
            .or_else(|| has(!i.table_space.is_empty(), "a tablespace"))
            .or_else(|| has(i.nulls_not_distinct, "NULLS NOT DISTINCT"))
            .or_else(|| {
                has(
                    i.index_params.iter().any(|p| {
                        matches!(p.node.as_ref(), Some(N::IndexElem(e)) if !e.collation.is_empty() || !e.opclass.is_empty())
                    }),
                    "a collation or operator class",
                )
            }),
        N::CreateStmt(c) => has(!c.inh_relations.is_empty(), "INHERITS")
            .or_else(|| has(c.partbound.is_some() || c.partspec.is_some(), "partitioning"))
            .or_else(|| has(c.of_typename.is_some(), "OF type"))
            .or_else(|| has(!c.options.is_empty(), "storage parameters (WITH ...)"))
            .or_else(|| has(!c.tablespacename.is_empty(), "a tablespace"))
            .or_else(|| has(!c.access_method.is_empty(), "an access method"))
            .or_else(|| {
                has(
                    c.relation.as_ref().is_some_and(|r| r.relpersistence != "p"),
                    "a temporary or unlogged table",
                )
            }),
        _ => None,
    };
    if found.is_some() {
        return found;
    }
    let json = super::json(node);
    let mut what = None;
    super::walk(&json, &mut |key, v| {
        if what.is_some() {
            return;
        }
        let flag = |k: &str| v.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
        match key {
            "Constraint" => {
                if flag("deferrable") || flag("initdeferred") {
                    what = Some("a DEFERRABLE constraint".to_string());
                } else if flag("is_no_inherit") {
                    what = Some("NO INHERIT".to_string());
                } else if matches!(
                    v.get("fk_matchtype").and_then(|m| m.as_str()),
                    Some("f" | "p")
                ) {
                    what = Some("MATCH FULL".to_string());
                } else if !v
                    .get("fk_del_set_cols")
                    .and_then(|c| c.as_array())
                    .is_none_or(|c| c.is_empty())
                {
                    what = Some("ON DELETE SET NULL (columns)".to_string());
                }
            }
            "ColumnDef" => {
                if v.get("coll_clause").is_some_and(|c| !c.is_null()) {
                    what = Some("a column collation".to_string());
                } else if v
                    .get("compression")
                    .and_then(|c| c.as_str())
                    .is_some_and(|c| !c.is_empty())
                    || v.get("storage_name")
                        .and_then(|c| c.as_str())
                        .is_some_and(|c| !c.is_empty())
                {
                    what = Some("column storage or compression".to_string());
                }
            }
            _ => {}
        }
    });
    what
}

/// The length of the whitespace and comments at the start of `text`.
fn leading_trivia(text: &str) -> usize {
    match super::tokens(text) {
        Ok(toks) => toks.iter().find(|t| !t.is_comment()).map_or(0, |t| t.start),
        Err(_) => text.len() - text.trim_start().len(),
    }
}

fn rel(r: Option<&protobuf::RangeVar>) -> String {
    r.map(|r| r.relname.clone()).unwrap_or_default()
}

fn strings(list: &[protobuf::Node]) -> Vec<String> {
    list.iter()
        .filter_map(|n| match n.node.as_ref() {
            Some(N::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

/// The parser's version number, as its parse results carry it.
fn parser_version() -> i32 {
    static VERSION: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| parse("SELECT 1").map(|r| r.version).unwrap_or(0))
}

/// An expression node as SQL text (deparsed under `SELECT`).
pub fn expr_sql(node: &protobuf::Node) -> String {
    let select = protobuf::SelectStmt {
        target_list: vec![protobuf::Node {
            node: Some(N::ResTarget(Box::new(protobuf::ResTarget {
                val: Some(Box::new(node.clone())),
                ..Default::default()
            }))),
        }],
        op: protobuf::SetOperation::SetopNone as i32,
        limit_option: protobuf::LimitOption::Default as i32,
        ..Default::default()
    };
    let result = protobuf::ParseResult {
        version: parser_version(),
        stmts: vec![protobuf::RawStmt {
            stmt: Some(Box::new(protobuf::Node {
                node: Some(N::SelectStmt(Box::new(select))),
            })),
            stmt_location: 0,
            stmt_len: 0,
        }],
    };
    match pg_query::deparse(&result, Default::default()) {
        Ok(sql) => sql.strip_prefix("SELECT ").unwrap_or(&sql).to_string(),
        Err(_) => String::new(),
    }
}

/// A type name as SQL text.
pub fn type_sql(t: &protobuf::TypeName) -> String {
    let cast = protobuf::Node {
        node: Some(N::TypeCast(Box::new(protobuf::TypeCast {
            arg: Some(Box::new(protobuf::Node {
                node: Some(N::AConst(protobuf::AConst {
                    isnull: true,
                    ..Default::default()
                })),
            })),
            type_name: Some(t.clone()),
            location: -1,
        }))),
    };
    let sql = expr_sql(&cast);
    // `NULL::type`, or `CAST(NULL AS type)` for some types.
    if let Some(t) = sql.strip_prefix("NULL::") {
        t.to_string()
    } else if let Some(t) = sql
        .strip_prefix("CAST(NULL AS ")
        .and_then(|t| t.strip_suffix(')'))
    {
        t.to_string()
    } else {
        sql
    }
}

fn column_spec(def: &protobuf::ColumnDef) -> ColumnSpec {
    let mut c = ColumnSpec {
        name: def.colname.clone(),
        type_: def.type_name.as_ref().map(type_sql).unwrap_or_default(),
        not_null: def.is_not_null,
        default: def.raw_default.as_deref().map(expr_sql),
        ..Default::default()
    };
    for con in &def.constraints {
        let Some(N::Constraint(con)) = con.node.as_ref() else {
            continue;
        };
        match ConstrType::try_from(con.contype) {
            Ok(ConstrType::ConstrNotnull) => c.not_null = true,
            Ok(ConstrType::ConstrDefault) => c.default = con.raw_expr.as_deref().map(expr_sql),
            Ok(ConstrType::ConstrPrimary) => {
                c.primary_key = true;
                c.not_null = true;
            }
            Ok(ConstrType::ConstrUnique) => c.unique = true,
            Ok(ConstrType::ConstrCheck) => c.check = con.raw_expr.as_deref().map(expr_sql),
            Ok(ConstrType::ConstrForeign) => {
                c.references = Some((
                    rel(con.pktable.as_ref()),
                    strings(&con.pk_attrs).into_iter().next(),
                ));
                c.references_actions =
                    (fk_action(&con.fk_del_action), fk_action(&con.fk_upd_action));
            }
            Ok(ConstrType::ConstrGenerated) => c.generated = con.raw_expr.as_deref().map(expr_sql),
            Ok(ConstrType::ConstrIdentity) => c.identity = true,
            _ => {}
        }
    }
    c
}

fn fk_action(a: &str) -> String {
    match a {
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        _ => "NO ACTION",
    }
    .to_string()
}

fn constraint_spec(con: &protobuf::Constraint) -> ConstraintSpec {
    let kind = match ConstrType::try_from(con.contype) {
        Ok(ConstrType::ConstrCheck) => {
            ConstraintKind::Check(con.raw_expr.as_deref().map(expr_sql).unwrap_or_default())
        }
        Ok(ConstrType::ConstrForeign) => ConstraintKind::ForeignKey {
            columns: strings(&con.fk_attrs),
            table: rel(con.pktable.as_ref()),
            ref_columns: strings(&con.pk_attrs),
            on_delete: fk_action(&con.fk_del_action),
            on_update: fk_action(&con.fk_upd_action),
        },
        Ok(ConstrType::ConstrUnique) => ConstraintKind::Unique {
            columns: strings(&con.keys),
            using_index: Some(con.indexname.clone()).filter(|s| !s.is_empty()),
        },
        Ok(ConstrType::ConstrPrimary) => ConstraintKind::PrimaryKey {
            columns: strings(&con.keys),
            using_index: Some(con.indexname.clone()).filter(|s| !s.is_empty()),
        },
        Ok(ConstrType::ConstrExclusion) => ConstraintKind::Exclude,
        _ => ConstraintKind::Other,
    };
    ConstraintSpec {
        name: Some(con.conname.clone()).filter(|s| !s.is_empty()),
        kind,
        not_valid: con.skip_validation,
    }
}

fn tag(node: &N) -> String {
    let dbg = format!("{node:?}");
    dbg.split('(').next().unwrap_or("statement").to_string()
}

/// The changes of one parsed statement.
pub fn classify(node: &N) -> Vec<Change> {
    match node {
        N::TransactionStmt(t) => match TransactionStmtKind::try_from(t.kind) {
            Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
                vec![Change::Begin]
            }
            Ok(TransactionStmtKind::TransStmtCommit) => vec![Change::Commit],
            _ => vec![Change::Other {
                tag: "TransactionStmt".into(),
                table: None,
            }],
        },
        N::VariableSetStmt(s) => vec![Change::Set(s.name.clone())],
        N::CreateStmt(c) => {
            let mut columns = Vec::new();
            let mut constraints = Vec::new();
            for elt in &c.table_elts {
                match elt.node.as_ref() {
                    Some(N::ColumnDef(d)) => columns.push(column_spec(d)),
                    Some(N::Constraint(con)) => constraints.push(constraint_spec(con)),
                    _ => {}
                }
            }
            vec![Change::CreateTable {
                table: rel(c.relation.as_ref()),
                columns,
                constraints,
            }]
        }
        N::IndexStmt(i) => vec![create_index(i)],
        N::AlterTableStmt(a) if ObjectType::try_from(a.objtype) == Ok(ObjectType::ObjectTable) => {
            let table = rel(a.relation.as_ref());
            a.cmds
                .iter()
                .filter_map(|c| match c.node.as_ref() {
                    Some(N::AlterTableCmd(cmd)) => Some(alter_cmd(&table, cmd)),
                    _ => None,
                })
                .collect()
        }
        N::RenameStmt(r) => vec![rename(r)],
        N::DropStmt(d) => drop(d),
        N::UpdateStmt(u) => vec![Change::Update {
            table: rel(u.relation.as_ref()),
            set: u
                .target_list
                .iter()
                .filter_map(|t| match t.node.as_ref() {
                    Some(N::ResTarget(r)) => {
                        Some((r.name.clone(), r.val.as_deref().map(expr_sql)?))
                    }
                    _ => None,
                })
                .collect(),
            filter: u.where_clause.as_deref().map(expr_sql),
        }],
        N::DeleteStmt(d) => vec![Change::Delete {
            table: rel(d.relation.as_ref()),
            filter: d.where_clause.as_deref().map(expr_sql),
        }],
        N::InsertStmt(i) => vec![Change::Insert {
            table: rel(i.relation.as_ref()),
        }],
        N::TruncateStmt(t) => vec![Change::Truncate {
            tables: t
                .relations
                .iter()
                .filter_map(|r| match r.node.as_ref() {
                    Some(N::RangeVar(r)) => Some(r.relname.clone()),
                    _ => None,
                })
                .collect(),
        }],
        N::VacuumStmt(_)
        | N::ClusterStmt(_)
        | N::ReindexStmt(_)
        | N::RefreshMatViewStmt(_)
        | N::LockStmt(_) => maintenance(node),
        N::AlterDomainStmt(d) if d.subtype == "C" => vec![Change::DomainConstraint {
            domain: strings(&d.type_name).join("."),
        }],
        other => vec![Change::Other {
            tag: tag(other),
            table: None,
        }],
    }
}

/// `VACUUM`, `CLUSTER`, `REINDEX`, `REFRESH MATERIALIZED VIEW`, `LOCK`: whole-table statements
/// (unless run concurrently, or a plain `VACUUM`).
fn maintenance(node: &N) -> Vec<Change> {
    match node {
        N::VacuumStmt(v) => {
            let full = v.options.iter().any(|o| {
                matches!(o.node.as_ref(), Some(N::DefElem(d)) if d.defname.eq_ignore_ascii_case("full"))
            });
            if full && v.is_vacuumcmd {
                let table = v.rels.iter().find_map(|r| match r.node.as_ref() {
                    Some(N::VacuumRelation(vr)) => vr.relation.as_ref().map(|r| r.relname.clone()),
                    _ => None,
                });
                vec![Change::Rewrite {
                    table,
                    what: "VACUUM FULL".into(),
                }]
            } else {
                vec![Change::Other {
                    tag: "VacuumStmt".into(),
                    table: None,
                }]
            }
        }
        N::ClusterStmt(c) => vec![Change::Rewrite {
            table: c.relation.as_ref().map(|r| r.relname.clone()),
            what: "CLUSTER".into(),
        }],
        N::ReindexStmt(r) => {
            let concurrent = r.params.iter().any(|p| {
                matches!(p.node.as_ref(), Some(N::DefElem(d)) if d.defname.eq_ignore_ascii_case("concurrently"))
            });
            if concurrent {
                vec![Change::Other {
                    tag: "ReindexStmt".into(),
                    table: None,
                }]
            } else {
                vec![Change::Rewrite {
                    table: r.relation.as_ref().map(|r| r.relname.clone()),
                    what: "REINDEX".into(),
                }]
            }
        }
        N::RefreshMatViewStmt(r) if !r.concurrent => vec![Change::Rewrite {
            table: r.relation.as_ref().map(|r| r.relname.clone()),
            what: "REFRESH MATERIALIZED VIEW".into(),
        }],
        N::LockStmt(l) => vec![Change::Rewrite {
            table: l.relations.iter().find_map(|r| match r.node.as_ref() {
                Some(N::RangeVar(r)) => Some(r.relname.clone()),
                _ => None,
            }),
            what: "LOCK TABLE".into(),
        }],
        other => vec![Change::Other {
            tag: tag(other),
            table: None,
        }],
    }
}

fn create_index(i: &protobuf::IndexStmt) -> Change {
    let keys = i
        .index_params
        .iter()
        .filter_map(|p| match p.node.as_ref() {
            Some(N::IndexElem(e)) if !e.name.is_empty() => Some(IndexKey::Column {
                name: e.name.clone(),
                desc: e.ordering == protobuf::SortByDir::SortbyDesc as i32,
                nulls_first: match protobuf::SortByNulls::try_from(e.nulls_ordering) {
                    Ok(protobuf::SortByNulls::SortbyNullsFirst) => Some(true),
                    Ok(protobuf::SortByNulls::SortbyNullsLast) => Some(false),
                    _ => None,
                },
            }),
            Some(N::IndexElem(e)) => e.expr.as_deref().map(|x| IndexKey::Expr(expr_sql(x))),
            _ => None,
        })
        .collect();
    Change::CreateIndex {
        name: i.idxname.clone(),
        table: rel(i.relation.as_ref()),
        keys,
        unique: i.unique,
        method: i.access_method.clone(),
        predicate: i.where_clause.as_deref().map(expr_sql),
        concurrently: i.concurrent,
    }
}

fn alter_cmd(table: &str, cmd: &protobuf::AlterTableCmd) -> Change {
    let table = table.to_string();
    let column = cmd.name.clone();
    let def = cmd.def.as_deref().and_then(|d| d.node.as_ref());
    match At::try_from(cmd.subtype) {
        Ok(At::AtAddColumn) => match def {
            Some(N::ColumnDef(d)) => Change::AddColumn {
                table,
                column: column_spec(d),
            },
            _ => other_alter(table),
        },
        Ok(At::AtAlterColumnType) => match def {
            Some(N::ColumnDef(d)) => Change::AlterType {
                table,
                column,
                type_: d.type_name.as_ref().map(type_sql).unwrap_or_default(),
                using: d.raw_default.as_deref().map(expr_sql),
            },
            _ => other_alter(table),
        },
        Ok(At::AtSetNotNull) => Change::SetNotNull { table, column },
        Ok(At::AtDropNotNull) => Change::DropNotNull { table, column },
        Ok(At::AtColumnDefault) => Change::Default {
            table,
            column,
            default: cmd.def.as_deref().map(expr_sql),
        },
        Ok(At::AtAddConstraint) => match def {
            Some(N::Constraint(c)) => Change::AddConstraint {
                table,
                constraint: constraint_spec(c),
            },
            _ => other_alter(table),
        },
        Ok(At::AtValidateConstraint) => Change::ValidateConstraint {
            table,
            name: column,
        },
        Ok(At::AtDropColumn) => Change::DropColumn { table, column },
        Ok(At::AtDropConstraint) => Change::DropConstraint {
            table,
            name: column,
        },
        Ok(At::AtSetTableSpace) => Change::Rewrite {
            table: Some(table),
            what: "SET TABLESPACE".into(),
        },
        Ok(At::AtSetLogged | At::AtSetUnLogged) => Change::Rewrite {
            table: Some(table),
            what: "SET LOGGED/UNLOGGED".into(),
        },
        Ok(At::AtSetAccessMethod) => Change::Rewrite {
            table: Some(table),
            what: "SET ACCESS METHOD".into(),
        },
        _ => other_alter(table),
    }
}

fn other_alter(table: String) -> Change {
    Change::Other {
        tag: "AlterTableStmt".into(),
        table: Some(table),
    }
}

fn rename(r: &protobuf::RenameStmt) -> Change {
    let table = rel(r.relation.as_ref());
    match ObjectType::try_from(r.rename_type) {
        Ok(ObjectType::ObjectColumn) => Change::RenameColumn {
            table,
            from: r.subname.clone(),
            to: r.newname.clone(),
        },
        Ok(ObjectType::ObjectTable) => Change::RenameTable {
            from: table,
            to: r.newname.clone(),
        },
        Ok(ObjectType::ObjectTabconstraint) => Change::RenameConstraint {
            table,
            from: r.subname.clone(),
            to: r.newname.clone(),
        },
        _ => Change::Other {
            tag: "RenameStmt".into(),
            table: None,
        },
    }
}

fn drop(d: &protobuf::DropStmt) -> Vec<Change> {
    // Each object is a list of name parts; the last is the object's name.
    let names: Vec<String> = d
        .objects
        .iter()
        .filter_map(|o| match o.node.as_ref() {
            Some(N::List(l)) => strings(&l.items).pop(),
            _ => None,
        })
        .collect();
    match ObjectType::try_from(d.remove_type) {
        Ok(ObjectType::ObjectTable) => names
            .into_iter()
            .map(|table| Change::DropTable { table })
            .collect(),
        Ok(ObjectType::ObjectIndex) => names
            .into_iter()
            .map(|name| Change::DropIndex {
                name,
                concurrently: d.concurrent,
            })
            .collect(),
        _ => vec![Change::Other {
            tag: "DropStmt".into(),
            table: None,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_a_script() {
        let script = "BEGIN;\n-- add it\nALTER TABLE users ADD COLUMN age int NOT NULL DEFAULT 0, ALTER COLUMN name TYPE varchar(100) USING name::varchar;\nCREATE INDEX CONCURRENTLY i ON users (lower(email)) WHERE deleted_at IS NULL;\nUPDATE users SET age = 1;\nCOMMIT;";
        let s = statements(script).expect("parse");
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].changes, vec![Change::Begin]);
        assert!(s[1].text(script).starts_with("ALTER TABLE users"));
        assert_eq!(
            s[1].changes[0],
            Change::AddColumn {
                table: "users".into(),
                column: ColumnSpec {
                    name: "age".into(),
                    type_: "int".into(),
                    not_null: true,
                    default: Some("0".into()),
                    ..Default::default()
                }
            }
        );
        assert_eq!(
            s[1].changes[1],
            Change::AlterType {
                table: "users".into(),
                column: "name".into(),
                type_: "varchar(100)".into(),
                using: Some("name::varchar".into()),
            }
        );
        assert!(
            matches!(&s[2].changes[0], Change::CreateIndex { concurrently: true, predicate: Some(p), keys, .. } if p == "deleted_at IS NULL" && keys == &vec![IndexKey::Expr("lower(email)".into())])
        );
        assert!(
            matches!(&s[3].changes[0], Change::Update { filter: None, set, .. } if set == &vec![("age".to_string(), "1".to_string())])
        );
        assert_eq!(s[4].changes, vec![Change::Commit]);
    }
}
