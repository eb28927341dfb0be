//! Types shared by several operations (columns, constraints, references, index fields), exactly
//! as pgroll's `schema.json` defines them, plus [`Names`], which lists the identifiers an
//! operation carries so [`crate::format`] can check them before any schema is needed. What the
//! operations share to plan lives beside it and is re-exported here: look-ups in the schema model
//! with their "does not exist" errors ([`super::lookup`]), the SQL rendering of the shared
//! definitions ([`super::definition_sql`]) and column rewriting on PostgreSQL's parse tree
//! ([`crate::sql::rewrite`]).

use serde::de::{Deserialize, Deserializer};
use std::collections::BTreeMap;

use crate::ident::RawSql;
use crate::path::PathSeg;

pub(crate) use super::definition_sql::{
    check_sql, deferrable_sql, implicit_name, serial_base_type,
};
pub(crate) use super::lookup::{
    find_column, find_column_mut, find_constraint, find_table, find_table_mut, no_column,
    no_column_on, no_table,
};
pub use crate::sql::rewrite::{parse_sql_name, rename_columns_in_sql};

/// A map from column name to an SQL expression (`up`/`down` of the multi-column operations).
/// Ordered by column name, so plans built from it are deterministic.
pub type MultiColumnSql = BTreeMap<String, RawSql>;

/// A field that distinguishes "absent" from an explicit `null` (pgroll's `nullable.Nullable`):
/// `alter_column.default: null` drops the default, while no `default` leaves it alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Nullable<T> {
    /// The field is not in the file.
    #[default]
    Absent,
    /// The field is `null`.
    Null,
    /// The field has a value.
    Value(T),
}

impl<T> Nullable<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Nullable::Absent)
    }

    /// True when the field is in the file, as `null` or as a value.
    pub fn is_present(&self) -> bool {
        !self.is_absent()
    }

    /// The value, if there is one.
    pub fn value(&self) -> Option<&T> {
        match self {
            Nullable::Value(v) => Some(v),
            Nullable::Absent | Nullable::Null => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nullable<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only called when the field is present; `#[serde(default)]` gives `Absent` otherwise.
        Ok(match Option::<T>::deserialize(deserializer)? {
            None => Nullable::Null,
            Some(v) => Nullable::Value(v),
        })
    }
}

/// An enum spelled as an SQL keyword or a pgroll keyword in the file. `ci` variants accept any
/// letter case (pgroll upper-cases these before comparing); the others must match exactly.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($case:ident) {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every accepted spelling, as written in pgroll's schema.
            pub const ALL: &'static [&'static str] = &[$($text),+];

            /// The canonical spelling (the SQL keyword for SQL options).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }

            fn from_text(text: &str) -> Option<$name> {
                $(
                    if keyword_enum!(@eq $case, text, $text) {
                        return Some($name::$variant);
                    }
                )+
                None
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> ::std::result::Result<Self, D::Error>
            where
                D: ::serde::Deserializer<'de>,
            {
                let text = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                $name::from_text(&text).ok_or_else(|| {
                    <D::Error as ::serde::de::Error>::unknown_variant(&text, $name::ALL)
                })
            }
        }
    };
    (@eq ci, $a:expr, $b:expr) => { $a.eq_ignore_ascii_case($b) };
    (@eq exact, $a:expr, $b:expr) => { $a == $b };
}
pub(crate) use keyword_enum;

keyword_enum! {
    /// `ON DELETE` / `ON UPDATE` action of a foreign key.
    #[derive(Default)]
    pub enum ForeignKeyAction (ci) {
        #[default]
        NoAction => "NO ACTION",
        Restrict => "RESTRICT",
        Cascade => "CASCADE",
        SetNull => "SET NULL",
        SetDefault => "SET DEFAULT",
    }
}

keyword_enum! {
    /// `MATCH` type of a foreign key.
    #[derive(Default)]
    pub enum ForeignKeyMatchType (ci) {
        #[default]
        Simple => "SIMPLE",
        Full => "FULL",
        Partial => "PARTIAL",
    }
}

keyword_enum! {
    /// How an identity column treats values the user supplies (`GENERATED ALWAYS` or
    /// `GENERATED BY DEFAULT`).
    #[derive(Default)]
    pub enum IdentityUserSpecifiedValues (ci) {
        #[default]
        Always => "ALWAYS",
        ByDefault => "BY DEFAULT",
    }
}

keyword_enum! {
    /// The kind of a table constraint in `create_table.constraints`.
    pub enum ConstraintType (exact) {
        Unique => "unique",
        Check => "check",
        PrimaryKey => "primary_key",
        ForeignKey => "foreign_key",
        Exclude => "exclude",
    }
}

keyword_enum! {
    /// Sort order of an index element.
    pub enum IndexSort (ci) {
        Asc => "ASC",
        Desc => "DESC",
    }
}

keyword_enum! {
    /// `NULLS FIRST` / `NULLS LAST` of an index element.
    pub enum IndexNulls (ci) {
        First => "FIRST",
        Last => "LAST",
    }
}

/// A check constraint on one column.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConstraint {
    /// Name of the check constraint.
    pub name: String,
    /// The check expression.
    pub constraint: RawSql,
    /// Do not propagate the constraint to child tables.
    #[serde(default)]
    pub no_inherit: bool,
}

/// A unique constraint on one column (`alter_column.unique`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniqueConstraint {
    /// Name of the unique constraint.
    pub name: String,
}

/// A column definition (`add_column.column`, `create_table.columns`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    /// PostgreSQL type of the column, as written (`varchar(255)`, `time with time zone`).
    #[serde(rename = "type")]
    pub type_: RawSql,
    /// pgroll's default is `false`: columns are `NOT NULL` unless they say otherwise.
    #[serde(default)]
    pub nullable: bool,
    /// Part of the primary key.
    #[serde(default)]
    pub pk: bool,
    #[serde(default)]
    pub unique: bool,
    /// Default expression.
    #[serde(default)]
    pub default: Option<RawSql>,
    /// Comment text (a string literal, not SQL).
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub check: Option<CheckConstraint>,
    #[serde(default)]
    pub references: Option<ForeignKeyReference>,
    #[serde(default)]
    pub generated: Option<ColumnGenerated>,
}

/// A generated column: an expression (`GENERATED ALWAYS AS (...) STORED`) or an identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnGenerated {
    /// Generation expression; empty when the column is an identity.
    #[serde(default)]
    pub expression: RawSql,
    #[serde(default)]
    pub identity: Option<ColumnGeneratedIdentity>,
}

/// An identity column.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnGeneratedIdentity {
    /// Sequence options, as in `CREATE SEQUENCE`; empty for none.
    #[serde(default)]
    pub sequence_options: RawSql,
    #[serde(default)]
    pub user_specified_values: IdentityUserSpecifiedValues,
}

/// A foreign key on one column.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignKeyReference {
    /// Name of the foreign key constraint.
    pub name: String,
    /// Referenced table.
    pub table: String,
    /// Referenced column.
    pub column: String,
    #[serde(default)]
    pub match_type: ForeignKeyMatchType,
    #[serde(default)]
    pub on_delete: ForeignKeyAction,
    #[serde(default)]
    pub on_update: ForeignKeyAction,
    #[serde(default)]
    pub deferrable: bool,
    #[serde(default)]
    pub initially_deferred: bool,
}

/// A table-level foreign key reference (`create_table.constraints[].references`,
/// `create_constraint.references`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableForeignKeyReference {
    /// Referenced table.
    pub table: String,
    /// Referenced columns.
    pub columns: Vec<String>,
    #[serde(default)]
    pub match_type: ForeignKeyMatchType,
    #[serde(default)]
    pub on_update: ForeignKeyAction,
    #[serde(default)]
    pub on_delete: ForeignKeyAction,
    /// Columns to set to null or to their default on delete (empty: all of them).
    #[serde(default)]
    pub on_delete_set_columns: Vec<String>,
}

/// Index parameters of a unique, primary key or exclusion constraint.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexParameters {
    /// Tablespace of the index; empty for the default.
    #[serde(default)]
    pub tablespace: String,
    /// Storage parameters (`fillfactor = 70`); empty for none.
    #[serde(default)]
    pub storage_parameters: RawSql,
    /// `INCLUDE` columns.
    #[serde(default)]
    pub include_columns: Vec<String>,
}

/// The definition of an exclusion constraint.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludeConstraint {
    /// Index method (`gist`, `btree`, ...); empty for the default.
    #[serde(default)]
    pub index_method: String,
    /// The elements: `title WITH =, during WITH &&`.
    #[serde(default)]
    pub elements: RawSql,
    /// `WHERE` predicate; empty for none.
    #[serde(default)]
    pub predicate: RawSql,
}

/// A table constraint in `create_table.constraints`. Which fields apply depends on `type`;
/// those rules are checked by the operation's `validate`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: ConstraintType,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub deferrable: bool,
    #[serde(default)]
    pub initially_deferred: bool,
    #[serde(default)]
    pub nulls_not_distinct: bool,
    #[serde(default)]
    pub no_inherit: bool,
    /// Check expression (type `check`); empty otherwise.
    #[serde(default)]
    pub check: RawSql,
    #[serde(default)]
    pub references: Option<TableForeignKeyReference>,
    #[serde(default)]
    pub exclude: Option<ExcludeConstraint>,
    #[serde(default)]
    pub index_parameters: Option<IndexParameters>,
}

/// Operator class of an index element.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexOpclass {
    /// Operator class name (may be schema-qualified); empty for the default.
    #[serde(default)]
    pub name: String,
    /// Operator class parameters (`siglen = 32`).
    #[serde(default)]
    pub params: Vec<RawSql>,
}

/// One element (column) of an index.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexField {
    pub column: String,
    /// Collation (may be schema-qualified); empty for the column's.
    #[serde(default)]
    pub collate: String,
    /// `None` is pgroll's `""`: the default (ascending).
    #[serde(default)]
    pub sort: Option<IndexSort>,
    #[serde(default)]
    pub opclass: Option<IndexOpclass>,
    #[serde(default)]
    pub nulls: Option<IndexNulls>,
}

/// One identifier found in an operation: where it is (relative to the operation's body) and
/// its text. Used to reject empty and over-long names before any schema is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRef<'a> {
    /// Field path inside the operation body, e.g. `column.references.table`.
    pub field: Vec<PathSeg>,
    pub name: &'a str,
    /// True when the name is a mapping key (the column names of `up`/`down` maps).
    pub is_key: bool,
}

/// Collects the [`NameRef`]s of an operation.
#[derive(Debug, Default)]
pub struct Names<'a> {
    prefix: Vec<PathSeg>,
    out: Vec<NameRef<'a>>,
}

impl<'a> Names<'a> {
    pub fn new() -> Self {
        Names::default()
    }

    pub fn into_vec(self) -> Vec<NameRef<'a>> {
        self.out
    }

    fn path(&self, field: &str) -> Vec<PathSeg> {
        let mut p = self.prefix.clone();
        p.push(PathSeg::Key(field.to_owned()));
        p
    }

    /// A name held in `field`.
    pub fn name(&mut self, field: &str, name: &'a str) {
        let field = self.path(field);
        self.out.push(NameRef {
            field,
            name,
            is_key: false,
        });
    }

    /// A name that may be absent.
    pub fn opt(&mut self, field: &str, name: Option<&'a str>) {
        if let Some(name) = name {
            self.name(field, name);
        }
    }

    /// A name that pgroll leaves empty to mean "the default" (e.g. `tablespace`).
    pub fn non_empty(&mut self, field: &str, name: &'a str) {
        if !name.is_empty() {
            self.name(field, name);
        }
    }

    /// A list of names held in `field`.
    pub fn list(&mut self, field: &str, names: &'a [String]) {
        for (i, name) in names.iter().enumerate() {
            let mut p = self.path(field);
            p.push(PathSeg::Index(i));
            self.out.push(NameRef {
                field: p,
                name,
                is_key: false,
            });
        }
    }

    /// The keys of a map held in `field` (column names of `up`/`down`).
    pub fn keys<V>(&mut self, field: &str, map: &'a BTreeMap<String, V>) {
        for key in map.keys() {
            let mut p = self.path(field);
            p.push(PathSeg::Key(key.clone()));
            self.out.push(NameRef {
                field: p,
                name: key,
                is_key: true,
            });
        }
    }

    /// Names inside the structure held in `field`.
    pub fn nested(&mut self, field: &str, f: impl FnOnce(&mut Self)) {
        self.prefix.push(PathSeg::Key(field.to_owned()));
        f(self);
        self.prefix.pop();
    }

    /// Names inside element `index` of the list held in `field`.
    pub fn element(&mut self, field: &str, index: usize, f: impl FnOnce(&mut Self)) {
        self.prefix.push(PathSeg::Key(field.to_owned()));
        self.prefix.push(PathSeg::Index(index));
        f(self);
        self.prefix.pop();
        self.prefix.pop();
    }
}

impl Column {
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("name", &self.name);
        if let Some(check) = &self.check {
            n.nested("check", |n| n.name("name", &check.name));
        }
        if let Some(r) = &self.references {
            n.nested("references", |n| r.names(n));
        }
    }
}

impl ForeignKeyReference {
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("name", &self.name);
        n.name("table", &self.table);
        n.name("column", &self.column);
    }
}

impl TableForeignKeyReference {
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.list("columns", &self.columns);
        n.list("on_delete_set_columns", &self.on_delete_set_columns);
    }
}

impl IndexParameters {
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.non_empty("tablespace", &self.tablespace);
        n.list("include_columns", &self.include_columns);
    }
}

impl Constraint {
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("name", &self.name);
        n.list("columns", &self.columns);
        if let Some(r) = &self.references {
            n.nested("references", |n| r.names(n));
        }
        if let Some(p) = &self.index_parameters {
            n.nested("index_parameters", |n| p.names(n));
        }
    }
}

/// Plan tests of the operations: a small schema, a migration from YAML, its plan rendered as
/// `plan` prints it (without the version schema's view steps, which belong to `views`).
#[cfg(test)]
pub(crate) mod testing {
    use crate::ident::Ident;
    use crate::plan::Plan;
    use crate::plan::{PlanBuilder, PlanContext, PlanError};
    use crate::schema::{Column, Constraint, ConstraintKind, Index, Schema, Table};

    pub fn ctx(server_version_num: i32) -> PlanContext {
        PlanContext {
            migration: "02_test".into(),
            schema: Ident::new("public"),
            version_schema: Ident::new("public_02_test"),
            previous_version_schema: None,
            state_schema: None,
            server_version_num,
            facts: Default::default(),
            missing: Default::default(),
        }
    }

    /// A table with rows, its first column the primary key (`<table>_pkey`); columns are
    /// `(name, type, nullable)`.
    pub fn table(name: &str, columns: &[(&str, &str, bool)]) -> Table {
        let mut t = Table::new(Ident::new(name));
        t.has_rows = true;
        for (col, ty, nullable) in columns {
            let mut c = Column::new(Ident::new(*col), *ty);
            c.nullable = *nullable;
            t.columns.push(c);
        }
        if let Some((pk, _, _)) = columns.first() {
            let pkey = Ident::new(format!("{name}_pkey"));
            t.constraints.push(Constraint {
                name: pkey.clone(),
                kind: ConstraintKind::PrimaryKey,
                columns: vec![Ident::new(*pk)],
                definition: format!("PRIMARY KEY ({})", Ident::new(*pk)),
                validated: true,
                references: None,
            });
            t.indexes.push(Index {
                name: pkey.clone(),
                columns: vec![Ident::new(*pk)],
                unique: true,
                primary: true,
                valid: true,
                has_expressions: false,
                predicate: None,
                definition: String::new(),
                constraint: Some(pkey),
            });
        }
        t
    }

    pub fn schema(tables: Vec<Table>) -> Schema {
        Schema {
            name: Ident::new("public"),
            tables: tables
                .into_iter()
                .map(|t| (t.name.as_str().to_string(), t))
                .collect(),
            server_version_num: 150004,
            opaque: false,
            usage_grantees: Vec::new(),
            dropped_tables: Vec::new(),
        }
    }

    /// Plans `operations` (the YAML of an `operations:` list) the way the planner does, op by op.
    pub fn plan_ops(
        schema: &Schema,
        ctx: &PlanContext,
        operations: &str,
    ) -> Result<(Plan, Schema), PlanError> {
        let text = format!("operations:\n{operations}");
        let migration = crate::format::parse(
            "02_test.yaml",
            "02_test",
            &text,
            crate::format::FileKind::Yaml,
        )
        .map_err(|e| PlanError::new("(parse)", e.to_string()))?;
        let mut schema = schema.clone();
        let mut builder = PlanBuilder::new();
        for op in &migration.operations {
            let op = op.operation();
            op.validate(&schema, ctx)?;
            op.start(&schema, ctx, &mut builder)?;
            op.complete(&schema, ctx, &mut builder)?;
            op.rollback(&schema, ctx, &mut builder)?;
            builder.end_operation();
            op.apply(&mut schema, ctx)?;
        }
        Ok((builder.finish(Vec::new(), Vec::new(), Vec::new()), schema))
    }

    /// The plan as `pgbaton plan` shows it, one section per phase.
    pub fn render(plan: &Plan) -> String {
        let mut out = String::new();
        for (phase, steps) in [
            ("start", &plan.start),
            ("complete", &plan.complete),
            ("rollback", &plan.rollback),
        ] {
            out.push_str(&format!("== {phase}\n"));
            for step in steps {
                if step.title.starts_with("install dual-write trigger") {
                    // The trigger's SQL is `triggers`' to test; the plan only shows where it goes.
                    let head = step.to_string();
                    let head = head.lines().next().unwrap_or_default();
                    out.push_str(&format!(
                        "{head}\n      (trigger function and trigger: see triggers.rs)\n"
                    ));
                } else {
                    out.push_str(&format!("{step}\n"));
                }
            }
        }
        out
    }

    /// Every statement of `steps`, in order.
    pub fn statements(steps: &[crate::step::Step]) -> Vec<String> {
        steps.iter().flat_map(|s| s.statements()).collect()
    }

    /// The error of planning `operations`, as `field: message`.
    pub fn plan_error(schema: &Schema, ctx: &PlanContext, operations: &str) -> String {
        match plan_ops(schema, ctx, operations) {
            Ok((plan, _)) => panic!("expected a planning error, got a plan:\n{}", render(&plan)),
            Err(e) => e.to_string(),
        }
    }
}
