//! `create_table`'s model: the table as the new version's schema sees it, with the indexes and
//! constraints PostgreSQL makes for its columns and constraints, named as PostgreSQL names them.

use super::OpCreateTable;
use crate::ident::{ident_list, Ident, QualName};
use crate::ops::common::{check_sql, implicit_name, serial_base_type, Column, ConstraintType};
use crate::plan::PlanContext;
use crate::schema::{self, Schema, Table};

impl OpCreateTable {
    /// The table as the new version sees it.
    pub(super) fn model(&self, schema: &Schema, ctx: &PlanContext) -> Table {
        let physical = self.physical_name(schema);
        let qual = ctx.qualify(&physical);
        let mut t = Table::new(Ident::new(self.name.as_str()));
        t.physical = physical.clone();
        t.comment = self.comment.clone();
        t.created_here = true;
        let pk = self.primary_key();
        for col in &self.columns {
            let generated = col.generated.as_ref();
            let identity = generated.and_then(|g| g.identity.as_ref().filter(|_| g.is_identity()));
            let mut c = schema::Column::new(Ident::new(col.name.as_str()), model_type(col));
            c.nullable = col.nullable && identity.is_none() && !pk.contains(&col.name.as_str());
            c.default = col.default.as_ref().map(|d| d.as_str().trim().to_string());
            c.identity = identity.map(|i| match i.user_specified_values {
                crate::ops::common::IdentityUserSpecifiedValues::Always => 'a',
                crate::ops::common::IdentityUserSpecifiedValues::ByDefault => 'd',
            });
            c.generated = generated
                .filter(|g| !g.expression.is_empty())
                .map(|g| g.expression.as_str().to_string());
            c.comment = col.comment.clone();
            t.columns.push(c);
        }

        self.model_column_constraints(schema, ctx, &qual, &physical, &mut t);
        self.model_table_constraints(schema, ctx, &qual, &mut t);
        // As the catalog reader marks them: covered alone by a unique index without predicate.
        t.mark_unique_columns();
        t
    }

    /// Constraints declared on columns: `pk`, `unique`, `check`, `references`.
    fn model_column_constraints(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        qual: &QualName,
        physical: &Ident,
        t: &mut Table,
    ) {
        let pk = self.primary_key();
        if self.columns.iter().any(|c| c.pk) {
            let cols: Vec<Ident> = pk.iter().map(|c| Ident::new(*c)).collect();
            let name = implicit_name(physical.as_str(), None, "pkey");
            t.indexes.push(model_index(
                &name,
                &cols,
                true,
                true,
                btree_def(qual, &name, true, &cols),
            ));
            t.constraints.push(model_constraint(
                name,
                schema::ConstraintKind::PrimaryKey,
                cols.clone(),
                format!("PRIMARY KEY ({})", ident_list(&cols)),
            ));
        }
        for col in &self.columns {
            let cols = vec![Ident::new(col.name.as_str())];
            if col.unique {
                let name = implicit_name(physical.as_str(), Some(&col.name), "key");
                t.indexes.push(model_index(
                    &name,
                    &cols,
                    true,
                    false,
                    btree_def(qual, &name, true, &cols),
                ));
                t.constraints.push(model_constraint(
                    name,
                    schema::ConstraintKind::Unique,
                    cols.clone(),
                    format!("UNIQUE ({})", ident_list(&cols)),
                ));
            }
            if let Some(check) = &col.check {
                t.constraints.push(model_constraint(
                    Ident::new(check.name.as_str()),
                    schema::ConstraintKind::Check,
                    cols.clone(),
                    check_sql(&check.constraint, check.no_inherit),
                ));
            }
            if let Some(r) = &col.references {
                let (table, ref_cols) =
                    self.referenced(schema, ctx, &r.table, std::slice::from_ref(&r.column));
                let definition = format!(
                    "FOREIGN KEY ({}) {}",
                    ident_list(&cols),
                    ref_cols
                        .first()
                        .map_or_else(String::new, |rc| r.references_sql(&table, rc))
                );
                let mut k = model_constraint(
                    Ident::new(r.name.as_str()),
                    schema::ConstraintKind::ForeignKey,
                    cols.clone(),
                    definition,
                );
                k.references = Some((table, ref_cols));
                t.constraints.push(k);
            }
        }
    }

    /// The table's `constraints`.
    fn model_table_constraints(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        qual: &QualName,
        t: &mut Table,
    ) {
        for c in &self.constraints {
            let name = Ident::new(c.name.as_str());
            let cols: Vec<Ident> = c.columns.iter().map(Ident::from).collect();
            let body = self.constraint_body(schema, ctx, c);
            match c.type_ {
                ConstraintType::Unique | ConstraintType::PrimaryKey => {
                    let primary = c.type_ == ConstraintType::PrimaryKey;
                    t.indexes.push(model_index(
                        &name,
                        &cols,
                        true,
                        primary,
                        btree_def(qual, &name, true, &cols),
                    ));
                    let kind = if primary {
                        schema::ConstraintKind::PrimaryKey
                    } else {
                        schema::ConstraintKind::Unique
                    };
                    t.constraints.push(model_constraint(name, kind, cols, body));
                }
                ConstraintType::Check => {
                    t.constraints.push(model_constraint(
                        name,
                        schema::ConstraintKind::Check,
                        cols,
                        body,
                    ));
                }
                ConstraintType::ForeignKey => {
                    let mut k =
                        model_constraint(name, schema::ConstraintKind::ForeignKey, cols, body);
                    k.references = c
                        .references
                        .as_ref()
                        .map(|r| self.referenced(schema, ctx, &r.table, &r.columns));
                    t.constraints.push(k);
                }
                ConstraintType::Exclude => {
                    let predicate = c
                        .exclude
                        .as_ref()
                        .filter(|x| !x.predicate.is_empty())
                        .map(|x| x.predicate.as_str().to_string());
                    t.indexes.push(schema::Index {
                        name: name.clone(),
                        // The elements are user SQL: which columns they use is not modelled.
                        columns: Vec::new(),
                        unique: false,
                        primary: false,
                        valid: true,
                        has_expressions: true,
                        predicate,
                        definition: format!("ALTER TABLE {qual} ADD CONSTRAINT {name} {body}"),
                        constraint: Some(name.clone()),
                    });
                    t.constraints.push(model_constraint(
                        name,
                        schema::ConstraintKind::Exclude,
                        cols,
                        body,
                    ));
                }
            }
        }
    }
}

/// The model of an index that backs a constraint of the new table.
fn model_index(
    name: &Ident,
    cols: &[Ident],
    unique: bool,
    primary: bool,
    definition: String,
) -> schema::Index {
    schema::Index {
        name: name.clone(),
        columns: cols.to_vec(),
        unique,
        primary,
        valid: true,
        has_expressions: false,
        predicate: None,
        definition,
        constraint: Some(name.clone()),
    }
}

/// The definition `pg_get_indexdef` gives a plain btree index.
fn btree_def(qual: &QualName, name: &Ident, unique: bool, cols: &[Ident]) -> String {
    format!(
        "CREATE {}INDEX {name} ON {qual} USING btree ({})",
        if unique { "UNIQUE " } else { "" },
        ident_list(cols)
    )
}

fn model_constraint(
    name: Ident,
    kind: schema::ConstraintKind,
    columns: Vec<Ident>,
    definition: String,
) -> schema::Constraint {
    schema::Constraint {
        name,
        kind,
        columns,
        definition,
        validated: true,
        references: None,
    }
}

/// The type as the model records it: the serial pseudo-types are their integer types (the
/// sequence default PostgreSQL adds is not modelled; the base table's default applies through
/// the views).
fn model_type(col: &Column) -> String {
    let written = col.type_.as_str().trim();
    serial_base_type(written).map_or_else(|| written.to_string(), str::to_string)
}
