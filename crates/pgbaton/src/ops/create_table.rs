//! `create_table`: creates a table with its columns, column constraints (pk, unique, check,
//! references, generated/identity, default, comment) and table constraints (unique, check,
//! primary_key, foreign_key, exclude).
//!
//! Semantics (pgroll's): no old version uses the table, so it is created physically at start
//! under its final name, in one short transaction with its comments; its `Table` in the new
//! version's schema is `created_here` (no triggers, no backfill). Rollback drops it. Complete has
//! nothing to do — unless the name was still taken physically at start by a table this migration
//! drops or renames away (`drop_table x` then `create_table x`): then the table is created as
//! `_pgbaton_new_<name>` and renamed at complete, after the old one is gone (table renames and
//! drops run in operation order at complete). (Indexes and
//! sequences PostgreSQL names itself then keep the temporary name's prefix.)
//!
//! Columns are NOT NULL unless `nullable: true` (pgroll's default; `schema.json`). Names in the
//! file are quoted everywhere; types, defaults, checks, generation expressions, sequence options,
//! storage parameters and exclusion elements are user SQL, passed through.
//!
//! After a `sql` operation (`Schema::opaque`), a referenced table missing from the model is
//! assumed to exist under that name (the SQL may have created it): the server checks it.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl, with the SQL of the table here, its checks in `validate` and the table as
//! the new version sees it in `model`.

use serde::Deserialize;

use crate::ident::{ident_list, Ident, Literal, QualName};
use crate::ops::common::{
    check_sql, deferrable_sql, Column, Constraint, ConstraintType, IndexParameters, Names,
};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{Schema, Table};
use crate::step::{LockLevel, Step, Work};

mod model;
mod validate;

/// `create_table`: creates table `name` with `columns` and table `constraints`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCreateTable {
    pub name: String,
    pub columns: Vec<Column>,
    /// Table comment (a string literal, not SQL).
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

/// A referenced table, resolved against the schema.
enum RefTable<'a> {
    /// The table this operation creates (a self-reference).
    Own,
    /// A table of the schema.
    Existing(&'a Table),
    /// Not in the model, after a `sql` operation: assumed to exist under that name.
    Unknown,
}

impl OpCreateTable {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "create_table";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("name", &self.name);
        for (i, column) in self.columns.iter().enumerate() {
            n.element("columns", i, |n| column.names(n));
        }
        for (i, constraint) in self.constraints.iter().enumerate() {
            n.element("constraints", i, |n| constraint.names(n));
        }
    }

    /// The physical name: the table's name, unless a table this migration drops or renames away
    /// still holds it until complete; then a temporary name, renamed at complete.
    fn physical_name(&self, schema: &Schema) -> Ident {
        let taken = |name: &str| {
            schema.dropped_tables.iter().any(|d| d.as_str() == name)
                || schema
                    .tables
                    .values()
                    .any(|t| t.physical.as_str() == name || t.name.as_str() == name)
        };
        if !taken(&self.name) {
            return Ident::new(self.name.as_str());
        }
        let mut n = 1;
        loop {
            let prefix = if n == 1 {
                "_pgbaton_new_".to_string()
            } else {
                format!("_pgbaton_new{n}_")
            };
            let candidate = Ident::derived(&prefix, &self.name);
            if !taken(candidate.as_str()) {
                return candidate;
            }
            n += 1;
        }
    }

    fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Names of the primary key columns, from `pk: true` or a `primary_key` constraint.
    fn primary_key(&self) -> Vec<&str> {
        let from_columns: Vec<&str> = self
            .columns
            .iter()
            .filter(|c| c.pk)
            .map(|c| c.name.as_str())
            .collect();
        if !from_columns.is_empty() {
            return from_columns;
        }
        self.constraints
            .iter()
            .find(|c| c.type_ == ConstraintType::PrimaryKey)
            .map(|c| c.columns.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    fn resolve<'a>(
        &self,
        schema: &'a Schema,
        table: &str,
        field: &str,
    ) -> Result<RefTable<'a>, PlanError> {
        if table == self.name {
            return Ok(RefTable::Own);
        }
        match schema.table(table) {
            Some(t) => Ok(RefTable::Existing(t)),
            None if schema.opaque => Ok(RefTable::Unknown),
            None => Err(PlanError::new(
                field,
                format!("referenced table \"{table}\" does not exist"),
            )),
        }
    }

    /// `REFERENCES` target: the physical table and columns.
    fn referenced(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        table: &str,
        columns: &[String],
    ) -> (QualName, Vec<Ident>) {
        match self.resolve(schema, table, "") {
            Ok(RefTable::Existing(t)) => (
                schema.qualify(t),
                columns
                    .iter()
                    .map(|c| {
                        t.column(c)
                            .map_or_else(|| Ident::new(c.as_str()), |col| col.physical.clone())
                    })
                    .collect(),
            ),
            Ok(RefTable::Own) => (
                ctx.qualify(&self.physical_name(schema)),
                columns.iter().map(Ident::from).collect(),
            ),
            Ok(RefTable::Unknown) | Err(_) => (
                ctx.qualify(&Ident::new(table)),
                columns.iter().map(Ident::from).collect(),
            ),
        }
    }

    /// One column's definition, with its inline constraints.
    fn column_sql(&self, schema: &Schema, ctx: &PlanContext, col: &Column) -> String {
        let identity = col.generated.as_ref().is_some_and(|g| g.is_identity());
        let mut sql =
            col.definition_sql(&Ident::new(col.name.as_str()), !col.nullable && !identity);
        if col.unique {
            sql.push_str(" UNIQUE");
        }
        if let Some(r) = &col.references {
            let (table, columns) =
                self.referenced(schema, ctx, &r.table, std::slice::from_ref(&r.column));
            if let Some(column) = columns.first() {
                sql.push_str(&format!(
                    " CONSTRAINT {} {}",
                    Ident::new(r.name.as_str()),
                    r.references_sql(&table, column)
                ));
            }
        }
        if let Some(check) = &col.check {
            sql.push_str(&format!(
                " CONSTRAINT {} {}",
                Ident::new(check.name.as_str()),
                check_sql(&check.constraint, check.no_inherit)
            ));
        }
        sql
    }

    /// One table constraint (without the `CONSTRAINT <name>` prefix).
    fn constraint_body(&self, schema: &Schema, ctx: &PlanContext, c: &Constraint) -> String {
        let cols: Vec<Ident> = c.columns.iter().map(Ident::from).collect();
        let params = |p: &Option<IndexParameters>| {
            p.as_ref().map_or_else(String::new, |p| {
                let include: Vec<Ident> = p.include_columns.iter().map(Ident::from).collect();
                p.sql(&include)
            })
        };
        let deferrable = deferrable_sql(c.deferrable, c.initially_deferred);
        match c.type_ {
            ConstraintType::Unique => format!(
                "UNIQUE{} ({}){}{deferrable}",
                if c.nulls_not_distinct {
                    " NULLS NOT DISTINCT"
                } else {
                    ""
                },
                ident_list(&cols),
                params(&c.index_parameters)
            ),
            ConstraintType::Check => check_sql(&c.check, c.no_inherit),
            ConstraintType::PrimaryKey => format!(
                "PRIMARY KEY ({}){}{deferrable}",
                ident_list(&cols),
                params(&c.index_parameters)
            ),
            ConstraintType::ForeignKey => match &c.references {
                Some(r) => {
                    let (table, ref_cols) = self.referenced(schema, ctx, &r.table, &r.columns);
                    let set: Vec<Ident> = r.on_delete_set_columns.iter().map(Ident::from).collect();
                    format!(
                        "FOREIGN KEY ({}) {}{deferrable}",
                        ident_list(&cols),
                        r.references_sql(&table, &ref_cols, &set)
                    )
                }
                // Rejected by validate.
                None => format!("FOREIGN KEY ({})", ident_list(&cols)),
            },
            ConstraintType::Exclude => {
                let x = c.exclude.clone().unwrap_or_default();
                let using = if x.index_method.is_empty() {
                    String::new()
                } else {
                    format!(" USING {}", Ident::new(x.index_method.as_str()))
                };
                let predicate = if x.predicate.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE ({})", x.predicate)
                };
                format!(
                    "EXCLUDE{using} ({}){}{predicate}{deferrable}",
                    x.elements,
                    params(&c.index_parameters)
                )
            }
        }
    }

    /// The existing table a foreign key of this table references, if any: creating (and
    /// dropping) the table takes a lock on it.
    fn first_referenced_existing(&self, schema: &Schema) -> Option<QualName> {
        let tables = self
            .columns
            .iter()
            .filter_map(|c| c.references.as_ref().map(|r| r.table.as_str()))
            .chain(
                self.constraints
                    .iter()
                    .filter_map(|c| c.references.as_ref().map(|r| r.table.as_str())),
            );
        for table in tables {
            if table == self.name {
                continue;
            }
            return Some(match schema.table(table) {
                Some(t) => schema.qualify(t),
                None => QualName::new(schema.name.clone(), table),
            });
        }
        None
    }
}

impl Operation for OpCreateTable {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, ctx: &PlanContext) -> Result<(), PlanError> {
        self.validate_table(schema, ctx)
    }

    fn start(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let physical = self.physical_name(schema);
        let qual = ctx.qualify(&physical);
        let mut defs: Vec<String> = self
            .columns
            .iter()
            .map(|c| self.column_sql(schema, ctx, c))
            .collect();
        let pk: Vec<Ident> = self
            .columns
            .iter()
            .filter(|c| c.pk)
            .map(|c| Ident::new(c.name.as_str()))
            .collect();
        if !pk.is_empty() {
            defs.push(format!("PRIMARY KEY ({})", ident_list(&pk)));
        }
        for c in &self.constraints {
            defs.push(format!(
                "CONSTRAINT {} {}",
                Ident::new(c.name.as_str()),
                self.constraint_body(schema, ctx, c)
            ));
        }
        let mut sql = vec![if defs.is_empty() {
            format!("CREATE TABLE {qual} ()")
        } else {
            format!("CREATE TABLE {qual} (\n  {}\n)", defs.join(",\n  "))
        }];
        for col in &self.columns {
            if let Some(comment) = &col.comment {
                sql.push(format!(
                    "COMMENT ON COLUMN {qual}.{} IS {}",
                    Ident::new(col.name.as_str()),
                    Literal::new(comment.as_str())
                ));
            }
        }
        if let Some(comment) = &self.comment {
            sql.push(format!(
                "COMMENT ON TABLE {qual} IS {}",
                Literal::new(comment.as_str())
            ));
        }
        // Nobody sees the new table yet; a foreign key locks the referenced table against
        // writes (SHARE ROW EXCLUSIVE) for the moment the catalog changes.
        let (table, lock) = match self.first_referenced_existing(schema) {
            Some(referenced) => (referenced, LockLevel::ShareRowExclusive),
            None => (qual.clone(), LockLevel::AccessExclusive),
        };
        plan.expand(Step::transaction(
            format!("create table {qual}"),
            Some(table),
            lock,
            Work::Catalog,
            sql,
        ));
        Ok(())
    }

    fn complete(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let physical = self.physical_name(schema);
        if physical.as_str() != self.name {
            let qual = ctx.qualify(&physical);
            plan.contract_rename_table(
                qual.clone(),
                format!(
                    "ALTER TABLE {qual} RENAME TO {}",
                    Ident::new(self.name.as_str())
                ),
            );
        }
        Ok(())
    }

    fn rollback(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let qual = ctx.qualify(&self.physical_name(schema));
        // Dropping a table with a foreign key takes ACCESS EXCLUSIVE on the referenced table.
        let table = self
            .first_referenced_existing(schema)
            .unwrap_or_else(|| qual.clone());
        plan.undo(Step::catalog(
            format!("drop table {qual}"),
            Some(table),
            LockLevel::AccessExclusive,
            format!("DROP TABLE IF EXISTS {qual}"),
        ));
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, ctx: &PlanContext) -> Result<(), PlanError> {
        let table = self.model(schema, ctx);
        schema.tables.insert(self.name.clone(), table);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};
    use crate::schema::{self, ConstraintKind};
    use crate::step::Action;

    /// `owners` (pk `id`, and a unique index on `(id, city)`) and `Weird "T"`.
    fn base() -> Schema {
        let mut owners = table(
            "owners",
            &[
                ("id", "integer", false),
                ("city", "text", false),
                ("note", "text", true),
            ],
        );
        owners.indexes.push(schema::Index {
            name: Ident::new("owners_id_city"),
            columns: vec![Ident::new("id"), Ident::new("city")],
            unique: true,
            primary: false,
            valid: true,
            has_expressions: false,
            predicate: None,
            definition: String::new(),
            constraint: None,
        });
        let weird = table("Weird \"T\"", &[("Key Col", "bigint", false)]);
        schema(vec![owners, weird])
    }

    const EVERY_FIELD: &str = r#"  - create_table:
      name: Pets "Big"
      comment: it's a table
      columns:
        - {name: id, type: bigint, generated: {identity: {user_specified_values: BY DEFAULT, sequence_options: START 10 INCREMENT 5}}}
        - {name: Owner Id, type: integer, nullable: true, references: {name: fk owner, table: owners, column: id, on_delete: CASCADE, on_update: SET NULL, match_type: FULL, deferrable: true, initially_deferred: true}}
        - {name: city, type: text, default: "'chicago'", comment: "where it's from"}
        - {name: Name, type: varchar(100), unique: true, check: {name: name not empty, constraint: length("Name") > 0, no_inherit: true}}
        - {name: loud, type: text, nullable: true, generated: {expression: upper("Name")}}
        - {name: during, type: tsrange, nullable: true}
        - {name: parent, type: bigint, nullable: true, references: {name: parent fk, table: Pets "Big", column: id}}
        - {name: other, type: bigint, nullable: true}
      constraints:
        - {name: Pets pk, type: primary_key, columns: [id], index_parameters: {include_columns: [city], storage_parameters: fillfactor=90}}
        - {name: uq city name, type: unique, columns: [city, Name], nulls_not_distinct: true, deferrable: true}
        - {name: chk, type: check, check: "city <> ''", no_inherit: true}
        - {name: fk owner city, type: foreign_key, columns: [Owner Id, city], references: {table: owners, columns: [id, city], on_delete: SET DEFAULT, on_delete_set_columns: [city], on_update: RESTRICT, match_type: SIMPLE}}
        - {name: fk weird, type: foreign_key, columns: [other], references: {table: Weird "T", columns: [Key Col]}}
        - {name: no overlap, type: exclude, exclude: {index_method: gist, elements: during WITH &&, predicate: during IS NOT NULL}, deferrable: true, initially_deferred: true}
"#;

    #[test]
    fn every_field() {
        let (plan, after) = plan_ops(&base(), &ctx(150004), EVERY_FIELD).unwrap();
        insta::assert_snapshot!("every_field", render(&plan));
        assert!(plan.lock_violations().is_empty());
        // A foreign key to an existing table locks it against writes, briefly.
        assert_eq!(plan.start[0].lock, LockLevel::ShareRowExclusive);
        assert_eq!(plan.start[0].table, Some(QualName::new("public", "owners")));
        assert!(plan.complete.is_empty());

        let t = after
            .table("Pets \"Big\"")
            .expect("the new table is in the new version");
        assert!(t.created_here);
        assert_eq!(t.physical.as_str(), "Pets \"Big\"");
        assert_eq!(t.comment.as_deref(), Some("it's a table"));
        let col = |n: &str| t.column(n).expect(n);
        // NOT NULL unless nullable: true; identity and pk columns are NOT NULL.
        assert!(!col("id").nullable && col("id").identity == Some('d'));
        assert!(col("Owner Id").nullable && !col("city").nullable && !col("Name").nullable);
        assert_eq!(col("city").default.as_deref(), Some("'chicago'"));
        assert_eq!(col("city").comment.as_deref(), Some("where it's from"));
        assert_eq!(col("loud").generated.as_deref(), Some("upper(\"Name\")"));
        assert!(col("Name").unique && col("id").unique && !col("city").unique);
        let pk = t.primary_key().expect("pk");
        assert_eq!(pk.name.as_str(), "Pets pk");
        assert_eq!(pk.columns, vec![Ident::new("id")]);
        let kinds: Vec<(&str, ConstraintKind)> = t
            .constraints
            .iter()
            .map(|c| (c.name.as_str(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("fk owner", ConstraintKind::ForeignKey),
                ("Pets \"Big\"_Name_key", ConstraintKind::Unique),
                ("name not empty", ConstraintKind::Check),
                ("parent fk", ConstraintKind::ForeignKey),
                ("Pets pk", ConstraintKind::PrimaryKey),
                ("uq city name", ConstraintKind::Unique),
                ("chk", ConstraintKind::Check),
                ("fk owner city", ConstraintKind::ForeignKey),
                ("fk weird", ConstraintKind::ForeignKey),
                ("no overlap", ConstraintKind::Exclude),
            ]
        );
        let fk = t.constraint("fk weird").expect("fk");
        assert_eq!(
            fk.references,
            Some((
                QualName::new("public", "Weird \"T\""),
                vec![Ident::new("Key Col")]
            ))
        );
        let indexes: Vec<&str> = t.indexes.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            indexes,
            vec![
                "Pets \"Big\"_Name_key",
                "Pets pk",
                "uq city name",
                "no overlap"
            ]
        );
        // The backfill key of later operations: the primary key.
        assert_eq!(t.backfill_key(), Some(vec![Ident::new("id")]));
    }

    #[test]
    fn pgroll_defaults() {
        let ops = "  - create_table:\n      name: users\n      columns:\n        - {name: id, type: serial, pk: true}\n        - {name: rand, type: varchar(255), pk: true}\n        - {name: name, type: varchar(255), unique: true}\n        - {name: bio, type: text, nullable: true}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("pgroll_defaults", render(&plan));
        assert_eq!(plan.start[0].lock, LockLevel::AccessExclusive);
        assert_eq!(plan.start[0].table, Some(QualName::new("public", "users")));
        let t = after.table("users").expect("users");
        assert_eq!(
            t.column("id").map(|c| c.type_name.as_str()),
            Some("integer")
        );
        assert_eq!(t.primary_key().map(|p| p.name.as_str()), Some("users_pkey"));
        assert_eq!(
            t.primary_key().map(|p| p.columns.clone()),
            Some(vec![Ident::new("id"), Ident::new("rand")])
        );
        assert!(t.column("name").is_some_and(|c| c.unique && !c.nullable));
        assert!(t.column("bio").is_some_and(|c| c.nullable));
        assert!(t
            .indexes
            .iter()
            .any(|i| i.name.as_str() == "users_name_key"));
    }

    #[test]
    fn takes_a_temporary_name_while_the_old_table_exists() {
        // pgroll's "drop table, create table" in one migration: the dropped table keeps its name
        // until complete, so the new one is created aside and renamed after the drop.
        let ops = "  - drop_table: {name: owners}\n  - create_table:\n      name: owners\n      columns:\n        - {name: id, type: integer, pk: true}\n  - rename_table: {from: owners, to: Owners 2}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("drop_create_rename", render(&plan));
        let t = after.table("Owners 2").expect("renamed");
        assert_eq!(t.physical.as_str(), "_pgbaton_new_owners");
        assert!(after.table("owners").is_none());
        // Complete: the old table goes first, then the new one takes the name and the rename.
        let sql: Vec<String> = plan.complete.iter().flat_map(|s| s.statements()).collect();
        assert_eq!(
            sql,
            vec![
                "DROP TABLE IF EXISTS \"public\".\"owners\"",
                "ALTER TABLE \"public\".\"_pgbaton_new_owners\" RENAME TO \"owners\"",
                "ALTER TABLE \"public\".\"owners\" RENAME TO \"Owners 2\"",
            ]
        );
        // Rollback drops the new table under the name it was created with.
        assert!(matches!(&plan.rollback[0].action, Action::Transaction(sql)
            if sql == &["DROP TABLE IF EXISTS \"public\".\"_pgbaton_new_owners\"".to_string()]));
    }

    #[test]
    fn later_operations_see_the_table() {
        let ops = "  - create_table:\n      name: a\n      columns:\n        - {name: id, type: integer, pk: true}\n  - create_table:\n      name: b\n      columns:\n        - {name: a_id, type: integer, references: {name: fk_a, table: a, column: id}}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert!(after.table("a").is_some() && after.table("b").is_some());
        assert!(plan.start[1].statements()[0]
            .contains("CONSTRAINT \"fk_a\" REFERENCES \"public\".\"a\" (\"id\")"));
        // Undone in reverse order: b (which references a) first.
        let titles: Vec<&str> = plan.rollback.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            vec!["drop table \"public\".\"b\"", "drop table \"public\".\"a\""]
        );
        // A second create_table of the same name is refused.
        let err = plan_error(
            &after,
            &ctx(150004),
            "  - create_table:\n      name: a\n      columns: []\n",
        );
        assert_eq!(err, "name: table \"a\" already exists");
    }

    fn err(columns: &str, constraints: &str) -> String {
        let mut ops = format!("  - create_table:\n      name: t\n      columns:\n{columns}");
        if !constraints.is_empty() {
            ops.push_str(&format!("      constraints:\n{constraints}"));
        }
        plan_error(&base(), &ctx(150004), &ops)
    }

    #[test]
    fn validation_errors() {
        let id = "        - {name: id, type: integer}\n";
        let cases: Vec<(String, &str)> = vec![
            (
                plan_error(&base(), &ctx(150004), "  - create_table:\n      name: owners\n      columns: []\n"),
                "name: table \"owners\" already exists",
            ),
            (
                plan_error(&base(), &ctx(150004), "  - create_table:\n      name: owners_pkey\n      columns: []\n"),
                "name: relation \"owners_pkey\" already exists in schema \"public\" (an index of table \"owners\")",
            ),
            (
                err(&format!("{id}        - {{name: x, type: int}}\n        - {{name: id, type: text}}\n"), ""),
                "columns[2].name: duplicate column \"id\" (also columns[0])",
            ),
            (err("        - {name: id, type: ''}\n", ""), "columns[0].type: the column type must not be empty"),
            (
                err("        - {name: id, type: int, pk: true, nullable: true}\n", ""),
                "columns[0].nullable: column \"id\" is part of the primary key and cannot be nullable",
            ),
            (
                err("        - {name: id, type: int, generated: {expression: '1', identity: {}}}\n", ""),
                "columns[0].generated: set either expression or identity, not both",
            ),
            (
                err("        - {name: id, type: int, generated: {}}\n", ""),
                "columns[0].generated: a generated column needs an expression or an identity",
            ),
            (
                err("        - {name: id, type: int, default: '1', generated: {identity: {}}}\n", ""),
                "columns[0].default: column \"id\" is generated and cannot also have a default",
            ),
            (
                err("        - {name: id, type: int, check: {name: c, constraint: ''}}\n", ""),
                "columns[0].check.constraint: the check expression must not be empty",
            ),
            (
                err("        - {name: o, type: int, references: {name: f, table: nope, column: id}}\n", ""),
                "columns[0].references.table: referenced table \"nope\" does not exist",
            ),
            (
                err("        - {name: o, type: int, references: {name: f, table: owners, column: nope}}\n", ""),
                "columns[0].references.column: column \"nope\" does not exist in table \"owners\"",
            ),
            (
                err("        - {name: o, type: text, references: {name: f, table: owners, column: city}}\n", ""),
                "columns[0].references.column: no primary key or unique constraint of table \"owners\" covers exactly (\"city\"); a foreign key must reference one",
            ),
            (
                err("        - {name: o, type: int, references: {name: f, table: t, column: o}}\n", ""),
                "columns[0].references.column: no primary key or unique constraint of table \"t\" covers exactly (\"o\"); a foreign key must reference one",
            ),
            (
                err("        - {name: o, type: int, references: {name: f, table: owners, column: id, match_type: PARTIAL}}\n", ""),
                "columns[0].references.match_type: MATCH PARTIAL is not implemented by PostgreSQL",
            ),
            (
                err("        - {name: o, type: int, references: {name: f, table: owners, column: id, initially_deferred: true}}\n", ""),
                "columns[0].references.initially_deferred: initially_deferred needs deferrable: true",
            ),
            (
                err("        - {name: a, type: int, check: {name: c, constraint: a > 0}}\n        - {name: b, type: int, check: {name: c, constraint: b > 0}}\n", ""),
                "columns[1].check.name: constraint name \"c\" is used twice (also columns[0].check.name)",
            ),
            (
                err(id, "        - {name: u, type: unique}\n"),
                "constraints[0].columns: a unique constraint needs at least one column",
            ),
            (
                err(id, "        - {name: u, type: unique, columns: [nope]}\n"),
                "constraints[0].columns[0]: column \"nope\" is not a column of table \"t\"",
            ),
            (
                err(id, "        - {name: u, type: unique, columns: [id, id]}\n"),
                "constraints[0].columns[1]: column \"id\" is listed twice",
            ),
            (
                err(id, "        - {name: u, type: unique, columns: [id], check: id > 0}\n"),
                "constraints[0].check: does not apply to a unique constraint (\"u\")",
            ),
            (
                err(id, "        - {name: c, type: check}\n"),
                "constraints[0].check: a check constraint needs a check expression",
            ),
            (
                err(id, "        - {name: c, type: check, check: id > 0, deferrable: true}\n"),
                "constraints[0].deferrable: check constraint \"c\" cannot be deferrable",
            ),
            (
                err(id, "        - {name: c, type: check, check: id > 0, index_parameters: {tablespace: x}}\n"),
                "constraints[0].index_parameters: does not apply to a check constraint (\"c\")",
            ),
            (
                err(id, "        - {name: c, type: check, check: id > 0, nulls_not_distinct: true}\n"),
                "constraints[0].nulls_not_distinct: does not apply to a check constraint (\"c\")",
            ),
            (
                err("        - {name: id, type: int, pk: true}\n", "        - {name: p, type: primary_key, columns: [id]}\n"),
                "constraints[0].type: the primary key of table \"t\" is already set by `pk: true` on its columns",
            ),
            (
                err(id, "        - {name: p, type: primary_key, columns: [id]}\n        - {name: q, type: primary_key, columns: [id]}\n"),
                "constraints[1].type: a second primary key (the first is constraints[0])",
            ),
            (
                err("        - {name: id, type: int, nullable: true}\n", "        - {name: p, type: primary_key, columns: [id]}\n"),
                "constraints[0].columns[0]: column \"id\" is nullable and cannot be part of the primary key",
            ),
            (
                err(id, "        - {name: p, type: primary_key, columns: [id], index_parameters: {include_columns: [x]}}\n"),
                "constraints[0].index_parameters.include_columns[0]: column \"x\" is not a column of table \"t\"",
            ),
            (
                err(id, "        - {name: f, type: foreign_key, columns: [id]}\n"),
                "constraints[0].references: a foreign_key constraint needs references",
            ),
            (
                err(id, "        - {name: f, type: foreign_key, columns: [id], references: {table: owners, columns: [id, city]}}\n"),
                "constraints[0].references.columns: 1 referencing column(s) but 2 referenced column(s)",
            ),
            (
                err(id, "        - {name: f, type: foreign_key, columns: [id], references: {table: owners, columns: [nope]}}\n"),
                "constraints[0].references.columns[0]: column \"nope\" does not exist in table \"owners\"",
            ),
            (
                err(id, "        - {name: f, type: foreign_key, columns: [id], references: {table: gone, columns: [id]}}\n"),
                "constraints[0].references.table: referenced table \"gone\" does not exist",
            ),
            (
                err(id, "        - {name: f, type: foreign_key, columns: [id], references: {table: owners, columns: [id], on_delete_set_columns: [id]}}\n"),
                "constraints[0].references.on_delete_set_columns: only applies with on_delete SET NULL or SET DEFAULT",
            ),
            (
                err(&format!("{id}        - {{name: b, type: int}}\n"), "        - {name: f, type: foreign_key, columns: [id], references: {table: owners, columns: [id], on_delete: SET NULL, on_delete_set_columns: [b]}}\n"),
                "constraints[0].references.on_delete_set_columns[0]: column \"b\" is not one of the constraint's columns",
            ),
            (
                err(id, "        - {name: x, type: exclude}\n"),
                "constraints[0].exclude: an exclude constraint needs exclude.elements",
            ),
            (
                err(id, "        - {name: x, type: exclude, exclude: {index_method: gist}}\n"),
                "constraints[0].exclude.elements: an exclude constraint needs elements (e.g. `room WITH =, during WITH &&`)",
            ),
            (
                err(id, "        - {name: x, type: exclude, columns: [id], exclude: {elements: id WITH =}}\n"),
                "constraints[0].columns: an exclude constraint names its columns in exclude.elements, not in columns",
            ),
            (
                err(id, "        - {name: owners_pkey, type: unique, columns: [id]}\n"),
                "constraints[0].name: relation \"owners_pkey\" already exists in schema \"public\" (an index of table \"owners\")",
            ),
            (
                err(id, "        - {name: x, type: check, check: id > 0}\n        - {name: x, type: unique, columns: [id]}\n"),
                "constraints[1].name: constraint name \"x\" is used twice (also constraints[0].name)",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        // PostgreSQL 14 has no NULLS NOT DISTINCT nor ON DELETE SET NULL (columns).
        let ops = "  - create_table:\n      name: t\n      columns:\n        - {name: id, type: integer}\n      constraints:\n        - {name: u, type: unique, columns: [id], nulls_not_distinct: true}\n";
        assert_eq!(
            plan_error(&base(), &ctx(140010), ops),
            "constraints[0].nulls_not_distinct: NULLS NOT DISTINCT needs PostgreSQL 15 or later"
        );
        assert!(plan_ops(&base(), &ctx(150004), ops).is_ok());
    }

    #[test]
    fn opaque_schema_trusts_unknown_references() {
        let mut s = base();
        s.opaque = true;
        let ops = "  - create_table:\n      name: t\n      columns:\n        - {name: u, type: int, references: {name: f, table: made by sql, column: id}}\n";
        let (plan, _) = plan_ops(&s, &ctx(150004), ops).unwrap();
        assert!(plan.start[0].statements()[0]
            .contains("REFERENCES \"public\".\"made by sql\" (\"id\")"));
    }
}
