//! SQL rendering of the definitions the operations share (columns, checks, foreign keys, index
//! parameters, generated columns), for the operations that create columns and constraints
//! (`create_table`, `add_column`, `create_constraint`, `alter_column`). Callers pass the physical
//! names they resolved; user SQL (types, defaults, expressions) is passed through.

use super::common::{
    Column, ColumnGenerated, ForeignKeyAction, ForeignKeyMatchType, ForeignKeyReference,
    IndexParameters, TableForeignKeyReference,
};
use crate::ident::RawSql;

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
    use crate::ops::common::{ColumnGeneratedIdentity, IdentityUserSpecifiedValues};

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
