//! Types shared by several operations (columns, constraints, references, index fields), exactly
//! as pgroll's `schema.json` defines them, plus [`Names`], which lists the identifiers an
//! operation carries so [`crate::format`] can check them before any schema is needed. Also what
//! the operations share to plan: look-ups in the schema model with their "does not exist" errors
//! ([`find_table`], [`find_column`], ...), the SQL tokenizer and column-reference rewriting
//! ([`rename_columns_in_sql`]), and the SQL rendering of the shared definitions.

use serde::de::{Deserialize, Deserializer};
use std::collections::BTreeMap;

use crate::ident::{quote_ident, RawSql};
use crate::path::PathSeg;
use crate::plan::PlanError;
use crate::schema::{Schema, Table};

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

// Look-ups in the schema model, with the planner's "does not exist" errors. Names in messages
// are quoted as PostgreSQL quotes identifiers.

/// `table "<table>" does not exist`, at `field`.
pub(crate) fn no_table(field: &str, table: &str) -> PlanError {
    PlanError::new(
        field,
        format!("table {} does not exist", quote_ident(table)),
    )
}

/// `column "<column>" does not exist in table "<table>"`, at `field`.
pub(crate) fn no_column(field: &str, column: &str, table: &str) -> PlanError {
    PlanError::new(
        field,
        format!(
            "column {} does not exist in table {}",
            quote_ident(column),
            quote_ident(table)
        ),
    )
}

/// `column "<column>" does not exist on table "<table>"` (pgroll's wording, kept by the
/// operations whose messages follow pgroll's), at `field`.
pub(crate) fn no_column_on(field: &str, column: &str, table: &str) -> PlanError {
    PlanError::new(
        field,
        format!(
            "column {} does not exist on table {}",
            quote_ident(column),
            quote_ident(table)
        ),
    )
}

/// Table `name` of the version `schema` models, or [`no_table`] at `field`.
pub(crate) fn find_table<'s>(
    schema: &'s Schema,
    field: &str,
    name: &str,
) -> Result<&'s Table, PlanError> {
    schema.table(name).ok_or_else(|| no_table(field, name))
}

/// [`find_table`], for changing the table.
pub(crate) fn find_table_mut<'s>(
    schema: &'s mut Schema,
    field: &str,
    name: &str,
) -> Result<&'s mut Table, PlanError> {
    schema.table_mut(name).ok_or_else(|| no_table(field, name))
}

/// Column `name` of `table`, or [`no_column`] at `field`.
pub(crate) fn find_column<'t>(
    table: &'t Table,
    field: &str,
    name: &str,
) -> Result<&'t crate::schema::Column, PlanError> {
    table
        .column(name)
        .ok_or_else(|| no_column(field, name, table.name.as_str()))
}

/// [`find_column`], for changing the column.
pub(crate) fn find_column_mut<'t>(
    table: &'t mut Table,
    field: &str,
    name: &str,
) -> Result<&'t mut crate::schema::Column, PlanError> {
    let table_name = table.name.as_str().to_string();
    table
        .column_mut(name)
        .ok_or_else(|| no_column(field, name, &table_name))
}

/// Constraint `name` of `table`, or `constraint "<name>" does not exist on table "<table>"` at
/// `field`.
pub(crate) fn find_constraint<'t>(
    table: &'t Table,
    field: &str,
    name: &str,
) -> Result<&'t crate::schema::Constraint, PlanError> {
    table.constraint(name).ok_or_else(|| {
        PlanError::new(
            field,
            format!(
                "constraint {} does not exist on table {}",
                quote_ident(name),
                quote_ident(table.name.as_str())
            ),
        )
    })
}

// The schema model after a change of indexes.

/// A lexical token of SQL, as far as [`rename_columns_in_sql`], [`parse_sql_name`] and the
/// definition rewriting of [`crate::ops::duplicate`] need to tell tokens apart (PostgreSQL's
/// lexical rules: comments, string constants in all their forms, dollar quoting, quoted
/// identifiers). The tokens of a text, concatenated, are the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SqlToken<'a> {
    /// Whitespace or a comment.
    Space(&'a str),
    /// An identifier or key word: `name` is the identifier as PostgreSQL resolves it (unquoted:
    /// ASCII letters folded to lower case; quoted: as written, `""` unescaped).
    Ident { text: &'a str, name: String },
    /// Anything else: a string constant, a number, an operator, punctuation, a parameter.
    Other(&'a str),
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '$'
}

impl<'a> SqlToken<'a> {
    /// The token as written.
    pub(crate) fn text(&self) -> &'a str {
        match *self {
            SqlToken::Space(text) | SqlToken::Other(text) => text,
            SqlToken::Ident { text, .. } => text,
        }
    }

    /// True for whitespace and comments.
    pub(crate) fn is_space(&self) -> bool {
        matches!(self, SqlToken::Space(_))
    }

    /// True when the token is the key word `word`, unquoted, in any letter case.
    pub(crate) fn is_keyword(&self, word: &str) -> bool {
        matches!(self, SqlToken::Ident { text, .. } if text.eq_ignore_ascii_case(word))
    }
}

/// Splits SQL into tokens. Never fails: an unterminated string, comment or quoted identifier
/// runs to the end of the text (the server reports the error).
pub(crate) fn sql_tokens(sql: &str) -> Vec<SqlToken<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // End of a quoted run starting at `start` (just after the opening quote), with doubled
    // quotes as escapes and, when `backslash`, backslash escapes.
    let quoted_end = |start: usize, quote: u8, backslash: bool| -> usize {
        let mut j = start;
        while j < bytes.len() {
            if backslash && bytes[j] == b'\\' {
                j += 2;
                continue;
            }
            if bytes[j] == quote {
                if bytes.get(j + 1) == Some(&quote) {
                    j += 2;
                    continue;
                }
                return j + 1;
            }
            j += 1;
        }
        bytes.len()
    };
    while i < bytes.len() {
        let rest = &sql[i..];
        let c = rest.chars().next().unwrap_or(' ');
        let start = i;
        if c.is_whitespace() {
            i += rest
                .find(|ch: char| !ch.is_whitespace())
                .unwrap_or(rest.len());
            out.push(SqlToken::Space(&sql[start..i]));
        } else if rest.starts_with("--") {
            i += rest.find('\n').unwrap_or(rest.len());
            out.push(SqlToken::Space(&sql[start..i]));
        } else if rest.starts_with("/*") {
            // Block comments nest in PostgreSQL.
            let mut depth = 0usize;
            let mut j = i;
            while j < bytes.len() {
                if sql[j..].starts_with("/*") {
                    depth += 1;
                    j += 2;
                } else if sql[j..].starts_with("*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            i = j.min(bytes.len());
            out.push(SqlToken::Space(&sql[start..i]));
        } else if c == '\'' {
            i = quoted_end(i + 1, b'\'', false);
            out.push(SqlToken::Other(&sql[start..i]));
        } else if c == '"' {
            i = quoted_end(i + 1, b'"', false);
            let inner = &sql[start + 1..i.saturating_sub(1).max(start + 1)];
            out.push(SqlToken::Ident {
                text: &sql[start..i],
                name: inner.replace("\"\"", "\""),
            });
        } else if (c == 'U' || c == 'u') && (rest.starts_with("U&'") || rest.starts_with("u&'")) {
            i = quoted_end(i + 3, b'\'', false);
            out.push(SqlToken::Other(&sql[start..i]));
        } else if (c == 'U' || c == 'u') && (rest.starts_with("U&\"") || rest.starts_with("u&\"")) {
            // A Unicode-escaped identifier: kept as written and never matched.
            i = quoted_end(i + 3, b'"', false);
            out.push(SqlToken::Other(&sql[start..i]));
        } else if matches!(c, 'E' | 'e' | 'B' | 'b' | 'X' | 'x' | 'N' | 'n')
            && bytes.get(i + 1) == Some(&b'\'')
        {
            i = quoted_end(i + 2, b'\'', matches!(c, 'E' | 'e'));
            out.push(SqlToken::Other(&sql[start..i]));
        } else if c == '$' {
            // `$tag$ ... $tag$` (tag: identifier without `$`, may be empty) or a parameter `$1`.
            let tag_len = rest[1..]
                .find(|ch: char| !(is_ident_start(ch) || ch.is_ascii_digit()))
                .unwrap_or(rest.len() - 1);
            let tag_ok = rest[1..1 + tag_len]
                .chars()
                .next()
                .is_none_or(is_ident_start);
            if tag_ok && rest[1 + tag_len..].starts_with('$') {
                let delim = &rest[..tag_len + 2];
                let body = i + delim.len();
                i = sql[body..]
                    .find(delim)
                    .map_or(bytes.len(), |k| body + k + delim.len());
            } else {
                i += 1 + rest[1..]
                    .find(|ch: char| !ch.is_ascii_digit())
                    .unwrap_or(rest.len() - 1);
            }
            out.push(SqlToken::Other(&sql[start..i]));
        } else if is_ident_start(c) {
            i += rest
                .find(|ch: char| !is_ident_char(ch))
                .unwrap_or(rest.len());
            let text = &sql[start..i];
            out.push(SqlToken::Ident {
                text,
                name: text.to_ascii_lowercase(),
            });
        } else if c.is_ascii_digit()
            || (c == '.' && rest[1..].starts_with(|ch: char| ch.is_ascii_digit()))
        {
            i += rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.' || ch == '_'))
                .unwrap_or(rest.len());
            out.push(SqlToken::Other(&sql[start..i]));
        } else if rest.starts_with("::") {
            i += 2;
            out.push(SqlToken::Other(&sql[start..i]));
        } else {
            i += c.len_utf8();
            out.push(SqlToken::Other(&sql[start..i]));
        }
    }
    out
}

/// Rewrites the column references of a user's SQL expression (a check, an index predicate)
/// from the names a version uses to physical column names: `renames` maps a column name to the
/// physical column it must refer to. Used where an expression must be attached to columns that
/// have other physical names during a migration (a constraint created on a column's copy, an
/// index on a column added or renamed in the same migration), and where no variables can stand
/// in for columns the way they do in the dual-write triggers.
///
/// Works on tokens, never on substrings (see [`column_refs`] for what is a column reference):
/// string constants, comments, dollar-quoted bodies, other identifiers that merely contain a
/// column's name, function names (an identifier followed by `(`), type names (after `::`, `AS`
/// or `COLLATE`), qualifiers (`col.x`) and fields of other relations (`x.col` where `x` is not
/// `table`) are left alone. Unquoted names match case-insensitively (as PostgreSQL folds them),
/// quoted ones exactly. When nothing matches, the text is returned unchanged, byte for byte.
pub fn rename_columns_in_sql(
    sql: &RawSql,
    table: &str,
    renames: &[(String, crate::ident::Ident)],
) -> RawSql {
    let tokens = sql_tokens(sql.as_str());
    let renames: Vec<(&str, &crate::ident::Ident)> = renames
        .iter()
        .map(|(name, to)| (name.as_str(), to))
        .collect();
    let refs = column_refs(&tokens, 0..tokens.len(), Some(table), &renames);
    let changed = refs.iter().any(|&(i, to)| match &tokens[i] {
        SqlToken::Ident { text, name } => to.as_str() != name.as_str() || text.starts_with('"'),
        _ => false,
    });
    if changed {
        RawSql::new(splice(&tokens, 0, &refs))
    } else {
        sql.clone()
    }
}

/// The column references among `tokens[range]` to a column `renames` maps (`(name, physical)`,
/// the name as PostgreSQL resolves it), each as its token index and the physical column it must
/// refer to. The tokens around the range count as context.
///
/// An identifier is a column reference unless it is a function name (followed by `(`), a
/// qualifier (followed by `.`), a type name or a collation (after `::`, `AS` or `COLLATE`), or a
/// field of another relation (after `.`): only `table.col` counts, and with `table` `None` no
/// qualified name does.
pub(crate) fn column_refs<'r>(
    tokens: &[SqlToken<'_>],
    range: std::ops::Range<usize>,
    table: Option<&str>,
    renames: &[(&str, &'r crate::ident::Ident)],
) -> Vec<(usize, &'r crate::ident::Ident)> {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !tokens[i].is_space())
        .collect();
    let at = |pos: Option<usize>| pos.and_then(|p| significant.get(p)).map(|&k| &tokens[k]);
    let mut refs = Vec::new();
    for (pos, &i) in significant.iter().enumerate() {
        if !range.contains(&i) {
            continue;
        }
        let SqlToken::Ident { name, .. } = &tokens[i] else {
            continue;
        };
        let Some(&(_, to)) = renames.iter().find(|(from, _)| from == name) else {
            continue;
        };
        let prev = at(pos.checked_sub(1));
        let after_type_marker = match prev {
            Some(SqlToken::Other("::")) => true,
            Some(t) => t.is_keyword("as") || t.is_keyword("collate"),
            None => false,
        };
        let before_call_or_field = matches!(at(Some(pos + 1)), Some(SqlToken::Other("(" | ".")));
        let qualified = matches!(prev, Some(SqlToken::Other(".")));
        let qualified_by_table = qualified
            && matches!(
                (at(pos.checked_sub(2)), table),
                (Some(SqlToken::Ident { name: q, .. }), Some(t)) if q == t
            );
        if !after_type_marker && !before_call_or_field && (!qualified || qualified_by_table) {
            refs.push((i, to));
        }
    }
    refs
}

/// The text of `tokens[from..]`, with each token `refs` names (by index) replaced by its column,
/// quoted.
pub(crate) fn splice(
    tokens: &[SqlToken<'_>],
    from: usize,
    refs: &[(usize, &crate::ident::Ident)],
) -> String {
    let mut replaced = vec![None; tokens.len()];
    for &(i, to) in refs {
        if let Some(slot) = replaced.get_mut(i) {
            *slot = Some(to);
        }
    }
    let mut out = String::new();
    for (token, to) in tokens.iter().zip(&replaced).skip(from) {
        match to {
            Some(to) => out.push_str(&to.to_string()),
            None => out.push_str(token.text()),
        }
    }
    out
}

/// Parses a possibly schema-qualified SQL name as written in a migration file (a collation or an
/// operator class: `"C"`, `en_US`, `pg_catalog."default"`, `int8_ops`) into its parts, resolved
/// the way PostgreSQL resolves them (unquoted parts fold to lower case). Returns a message when
/// the text is not such a name.
pub fn parse_sql_name(text: &str) -> Result<Vec<crate::ident::Ident>, String> {
    let mut parts = Vec::new();
    let mut expect_part = true;
    for token in sql_tokens(text) {
        match (token, expect_part) {
            (SqlToken::Space(_), _) => {}
            (SqlToken::Ident { text: t, name }, true) => {
                if t.starts_with('"') && (name.is_empty() || !t.ends_with('"') || t.len() < 2) {
                    return Err(format!("\"{text}\" is not a valid name"));
                }
                parts.push(crate::ident::Ident::new(name));
                expect_part = false;
            }
            (SqlToken::Other("."), false) => expect_part = true,
            _ => {
                return Err(format!(
                    "\"{text}\" is not a name (expected name or schema.name)"
                ))
            }
        }
    }
    if parts.is_empty() || expect_part {
        return Err(format!(
            "\"{text}\" is not a name (expected name or schema.name)"
        ));
    }
    Ok(parts)
}

#[cfg(test)]
mod sql_text_tests {
    use super::*;
    use crate::ident::Ident;

    fn renames(pairs: &[(&str, &str)]) -> Vec<(String, Ident)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), Ident::new(*b)))
            .collect()
    }

    fn rw(sql: &str, pairs: &[(&str, &str)]) -> String {
        rename_columns_in_sql(&RawSql::new(sql), "t", &renames(pairs)).to_string()
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
    }

    #[test]
    fn qualifiers_and_unicode_identifiers_are_not_references() {
        let m = [("zip", "_new_zip")];
        // `zip.code`: `zip` names a relation (or a schema) there, not the column.
        assert_eq!(
            rw("zip.code > 0 AND zip > 0", &m),
            "zip.code > 0 AND \"_new_zip\" > 0"
        );
        assert_eq!(rw("U&\"zip\" > 0", &m), "U&\"zip\" > 0");
    }

    #[test]
    fn lookups_name_what_is_missing() {
        let mut t = crate::schema::Table::new(Ident::new("users"));
        t.columns
            .push(crate::schema::Column::new(Ident::new("id"), "integer"));
        let mut s = Schema::default();
        s.tables.insert("users".into(), t);
        assert_eq!(
            find_table(&s, "table", "we\"ird").map(|_| ()),
            Err(PlanError::new(
                "table",
                "table \"we\"\"ird\" does not exist"
            ))
        );
        let t = find_table(&s, "table", "users").expect("users");
        assert!(find_column(t, "column", "id").is_ok());
        assert_eq!(
            find_column(t, "columns[1]", "nope").map(|_| ()),
            Err(PlanError::new(
                "columns[1]",
                "column \"nope\" does not exist in table \"users\""
            ))
        );
        assert_eq!(
            find_constraint(t, "name", "c").map(|_| ()),
            Err(PlanError::new(
                "name",
                "constraint \"c\" does not exist on table \"users\""
            ))
        );
        let t = find_table_mut(&mut s, "table", "users").expect("users");
        assert!(find_column_mut(t, "column", "nope").is_err());
    }

    #[test]
    fn weird_names_are_quoted() {
        assert_eq!(
            rw("\"we\"\"ird\" > 0", &[("we\"ird", "_n_we\"ird")]),
            "\"_n_we\"\"ird\" > 0"
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
        assert!(p("x; DROP TABLE t").is_err());
        assert!(p("a.").is_err());
        assert!(p("").is_err());
        assert!(p("\"\"").is_err());
        assert!(p("'C'").is_err());
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

// SQL rendering of the shared definitions, for the operations that create columns and
// constraints (`create_table`, `add_column`, `create_constraint`, `alter_column`). Callers pass
// the physical names they resolved; user SQL (types, defaults, expressions) is passed through.

/// The serial pseudo-types: the integer type each stands for and its sequence's type.
pub(crate) fn serial_base_type(type_sql: &str) -> Option<&'static str> {
    match type_sql.trim().to_ascii_lowercase().as_str() {
        "smallserial" | "serial2" => Some("smallint"),
        "serial" | "serial4" => Some("integer"),
        "bigserial" | "serial8" => Some("bigint"),
        _ => None,
    }
}

/// ` DEFERRABLE INITIALLY DEFERRED|IMMEDIATE` (with its leading space), or `""`.
pub fn deferrable_sql(deferrable: bool, initially_deferred: bool) -> &'static str {
    match (deferrable, initially_deferred) {
        (false, _) => "",
        (true, false) => " DEFERRABLE INITIALLY IMMEDIATE",
        (true, true) => " DEFERRABLE INITIALLY DEFERRED",
    }
}

/// `CHECK (<expr>)` [` NO INHERIT`]. An expression already written as `CHECK (...)` is kept as
/// written, as pgroll does.
pub fn check_sql(expr: &RawSql, no_inherit: bool) -> String {
    let text = expr.as_str().trim();
    let written = text
        .get(..5)
        .is_some_and(|k| k.eq_ignore_ascii_case("check"))
        && text[5..].trim_start().starts_with('(');
    let mut sql = if written {
        text.to_string()
    } else {
        format!("CHECK ({text})")
    };
    if no_inherit {
        sql.push_str(" NO INHERIT");
    }
    sql
}

/// ` MATCH .. ON DELETE .. [(set columns)] ON UPDATE ..`.
fn fk_actions_sql(
    match_type: ForeignKeyMatchType,
    on_delete: ForeignKeyAction,
    on_delete_set_columns: &[crate::ident::Ident],
    on_update: ForeignKeyAction,
) -> String {
    let set = if on_delete_set_columns.is_empty() {
        String::new()
    } else {
        format!(" ({})", crate::ident::ident_list(on_delete_set_columns))
    };
    format!(" MATCH {match_type} ON DELETE {on_delete}{set} ON UPDATE {on_update}")
}

impl ForeignKeyReference {
    /// `REFERENCES <table> (<column>) MATCH .. ON DELETE .. ON UPDATE .. [DEFERRABLE ..]`, the
    /// column-level form, for the physical names of the referenced table and column.
    pub fn references_sql(
        &self,
        table: &crate::ident::QualName,
        column: &crate::ident::Ident,
    ) -> String {
        format!(
            "REFERENCES {table} ({column}){}{}",
            fk_actions_sql(self.match_type, self.on_delete, &[], self.on_update),
            deferrable_sql(self.deferrable, self.initially_deferred)
        )
    }
}

impl TableForeignKeyReference {
    /// `REFERENCES <table> (<columns>) MATCH .. ON DELETE .. [(set columns)] ON UPDATE ..`, for
    /// the physical names of the referenced table and columns and of the `on_delete_set_columns`
    /// (which are columns of the referencing table). Deferrability belongs to the constraint.
    pub fn references_sql(
        &self,
        table: &crate::ident::QualName,
        columns: &[crate::ident::Ident],
        on_delete_set_columns: &[crate::ident::Ident],
    ) -> String {
        format!(
            "REFERENCES {table} ({}){}",
            crate::ident::ident_list(columns),
            fk_actions_sql(
                self.match_type,
                self.on_delete,
                on_delete_set_columns,
                self.on_update
            )
        )
    }
}

impl IndexParameters {
    /// True when no parameter is set (`index_parameters: {}`).
    pub fn is_empty(&self) -> bool {
        self.tablespace.is_empty()
            && self.storage_parameters.is_empty()
            && self.include_columns.is_empty()
    }

    /// ` INCLUDE (..) WITH (..) USING INDEX TABLESPACE ..` (each part only when set), with the
    /// physical names of the `include_columns`.
    pub fn sql(&self, include: &[crate::ident::Ident]) -> String {
        let mut sql = String::new();
        if !include.is_empty() {
            sql.push_str(&format!(" INCLUDE ({})", crate::ident::ident_list(include)));
        }
        if !self.storage_parameters.is_empty() {
            sql.push_str(&format!(" WITH ({})", self.storage_parameters));
        }
        if !self.tablespace.is_empty() {
            sql.push_str(&format!(
                " USING INDEX TABLESPACE {}",
                crate::ident::Ident::new(self.tablespace.as_str())
            ));
        }
        sql
    }
}

impl ColumnGenerated {
    /// ` GENERATED ALWAYS AS (<expr>) STORED` or ` GENERATED ALWAYS|BY DEFAULT AS IDENTITY
    /// [(<sequence options>)]`; `""` when neither is set.
    pub fn sql(&self) -> String {
        if !self.expression.is_empty() {
            return format!(" GENERATED ALWAYS AS ({}) STORED", self.expression);
        }
        match &self.identity {
            Some(identity) => {
                let mut sql = format!(" GENERATED {} AS IDENTITY", identity.user_specified_values);
                if !identity.sequence_options.is_empty() {
                    sql.push_str(&format!(" ({})", identity.sequence_options));
                }
                sql
            }
            None => String::new(),
        }
    }

    /// True for an identity column (and no generation expression).
    pub fn is_identity(&self) -> bool {
        self.expression.is_empty() && self.identity.is_some()
    }
}

impl Column {
    /// `<physical> <type>[ NOT NULL][ DEFAULT (<default>)][ GENERATED ...]`: the column itself,
    /// without its `pk`, `unique`, `check` and `references` (callers add those, inline or as
    /// table constraints, as their locking rules allow). `not_null` is the caller's decision
    /// (an identity column is NOT NULL without saying so).
    pub fn definition_sql(&self, physical: &crate::ident::Ident, not_null: bool) -> String {
        let mut sql = format!("{physical} {}", self.type_);
        if not_null {
            sql.push_str(" NOT NULL");
        }
        if let Some(default) = &self.default {
            sql.push_str(&format!(" DEFAULT ({default})"));
        }
        if let Some(generated) = &self.generated {
            sql.push_str(&generated.sql());
        }
        sql
    }
}

/// The name PostgreSQL gives an object it names itself (`ChooseRelationName` / `makeObjectName`:
/// `<name1>_<name2>_<label>`, e.g. `users_pkey`, `users_email_key`, `users_id_seq`), with
/// `name1` and `name2` shortened the way PostgreSQL shortens them to fit 63 bytes. PostgreSQL
/// appends a digit when the name is taken; that case is not modelled.
pub fn implicit_name(name1: &str, name2: Option<&str>, label: &str) -> crate::ident::Ident {
    let mut overhead = label.len() + 1;
    if name2.is_some() {
        overhead += 1;
    }
    let avail = crate::ident::MAX_IDENT_BYTES.saturating_sub(overhead);
    let (mut n1, mut n2) = (name1.len(), name2.map_or(0, str::len));
    while n1 + n2 > avail {
        if n1 > n2 {
            n1 -= 1;
        } else {
            n2 -= 1;
        }
    }
    // Cut at a character boundary (pg_mbcliplen).
    let clip = |s: &str, mut n: usize| {
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s[..n].to_string()
    };
    let mut name = clip(name1, n1);
    if let Some(name2) = name2 {
        name.push('_');
        name.push_str(&clip(name2, n2));
    }
    name.push('_');
    name.push_str(label);
    crate::ident::Ident::new(name)
}

#[cfg(test)]
mod sql_render_tests {
    use super::*;
    use crate::ident::{Ident, QualName};

    #[test]
    fn renders_checks() {
        assert_eq!(check_sql(&RawSql::new("a > 0"), false), "CHECK (a > 0)");
        assert_eq!(
            check_sql(&RawSql::new("CHECK (a > 0)"), true),
            "CHECK (a > 0) NO INHERIT"
        );
        assert_eq!(
            check_sql(&RawSql::new("check(a > 0)"), false),
            "check(a > 0)"
        );
        assert_eq!(check_sql(&RawSql::new("checked"), false), "CHECK (checked)");
    }

    #[test]
    fn renders_references() {
        let r = ForeignKeyReference {
            name: "fk".into(),
            table: "t".into(),
            column: "c".into(),
            match_type: ForeignKeyMatchType::Full,
            on_delete: ForeignKeyAction::Cascade,
            on_update: ForeignKeyAction::default(),
            deferrable: true,
            initially_deferred: true,
        };
        assert_eq!(
            r.references_sql(&QualName::new("s", "T"), &Ident::new("c")),
            "REFERENCES \"s\".\"T\" (\"c\") MATCH FULL ON DELETE CASCADE ON UPDATE NO ACTION \
             DEFERRABLE INITIALLY DEFERRED"
        );
        let t = TableForeignKeyReference {
            table: "t".into(),
            columns: vec!["a".into(), "b".into()],
            match_type: ForeignKeyMatchType::Simple,
            on_update: ForeignKeyAction::Restrict,
            on_delete: ForeignKeyAction::SetNull,
            on_delete_set_columns: vec!["x".into()],
        };
        assert_eq!(
            t.references_sql(
                &QualName::new("s", "t"),
                &[Ident::new("a"), Ident::new("b")],
                &[Ident::new("x")]
            ),
            "REFERENCES \"s\".\"t\" (\"a\", \"b\") MATCH SIMPLE ON DELETE SET NULL (\"x\") \
             ON UPDATE RESTRICT"
        );
    }

    #[test]
    fn renders_generated_and_index_parameters() {
        let g = ColumnGenerated {
            expression: RawSql::default(),
            identity: Some(ColumnGeneratedIdentity {
                sequence_options: RawSql::new("START 10"),
                user_specified_values: IdentityUserSpecifiedValues::ByDefault,
            }),
        };
        assert_eq!(g.sql(), " GENERATED BY DEFAULT AS IDENTITY (START 10)");
        let p = IndexParameters {
            tablespace: "pg_default".into(),
            storage_parameters: RawSql::new("fillfactor = 70"),
            include_columns: vec!["n".into()],
        };
        assert_eq!(
            p.sql(&[Ident::new("n")]),
            " INCLUDE (\"n\") WITH (fillfactor = 70) USING INDEX TABLESPACE \"pg_default\""
        );
        assert!(IndexParameters::default().is_empty());
    }

    #[test]
    fn implicit_names_match_postgres() {
        assert_eq!(implicit_name("users", None, "pkey").as_str(), "users_pkey");
        assert_eq!(
            implicit_name("users", Some("email"), "key").as_str(),
            "users_email_key"
        );
        // Checked against PostgreSQL 15: a 72-byte table name and a column "a col".
        let long = format!("Weird \"T\" {}", "x".repeat(62));
        let long = &long[..63];
        assert_eq!(
            implicit_name(long, None, "pkey").as_str(),
            format!("{}_pkey", &long[..58])
        );
        assert_eq!(
            implicit_name(long, Some("a col"), "key").as_str(),
            format!("{}_a col_key", &long[..53])
        );
    }
}
