//! Look-ups in the schema model, with the planner's "does not exist" errors. Names in messages
//! are quoted as PostgreSQL quotes identifiers.

use crate::ident::quote_ident;
use crate::plan::PlanError;
use crate::schema::{Schema, Table};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::Ident;

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
}
