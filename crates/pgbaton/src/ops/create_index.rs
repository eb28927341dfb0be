//! `create_index`: builds an index with `CREATE [UNIQUE] INDEX CONCURRENTLY` at start (never
//! blocking writes), drops it concurrently on rollback; complete has nothing to do. As in pgroll,
//! the index is physical, so both versions use it (and a unique one constrains both).
//!
//! The serde struct follows pgroll's `schema.json`; `columns` also accepts the two older forms
//! pgroll files use (a list of column names, and a mapping from column name to its settings).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::ident::{Ident, QualName, RawSql};
use crate::ops::common::{
    keyword_enum, parse_sql_name, rename_columns_in_sql, IndexField, IndexNulls, IndexOpclass,
    IndexSort, Names,
};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{Index, Schema, Table};
use crate::step::{LockLevel, Step};

/// `create_index`: builds index `name` on `columns` of `table`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCreateIndex {
    pub name: String,
    pub table: String,
    /// The index elements, in order. pgroll's current form is a list of `{column, ...}`; a list
    /// of plain column names and a mapping `{column: {settings}}` (older pgroll) are accepted too.
    #[serde(deserialize_with = "index_columns")]
    pub columns: Vec<IndexField>,
    /// `WHERE` predicate of a partial index; empty for none.
    #[serde(default)]
    pub predicate: RawSql,
    #[serde(default)]
    pub method: IndexMethod,
    /// Storage parameters (`fillfactor = 70`); empty for none.
    #[serde(default)]
    pub storage_parameters: RawSql,
    #[serde(default)]
    pub unique: bool,
}

keyword_enum! {
    /// Index access method.
    #[derive(Default)]
    pub enum IndexMethod (ci) {
        #[default]
        Btree => "btree",
        Hash => "hash",
        Gist => "gist",
        Spgist => "spgist",
        Gin => "gin",
        Brin => "brin",
    }
}

/// The settings of one element in the mapping form of `columns` (the column is the key).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFieldSettings {
    #[serde(default)]
    collate: String,
    #[serde(default)]
    sort: Option<IndexSort>,
    #[serde(default)]
    opclass: Option<IndexOpclass>,
    #[serde(default)]
    nulls: Option<IndexNulls>,
}

impl IndexFieldSettings {
    fn into_field(self, column: String) -> IndexField {
        IndexField {
            column,
            collate: self.collate,
            sort: self.sort,
            opclass: self.opclass,
            nulls: self.nulls,
        }
    }
}

/// One element of the list form: `- column: name ...` or just `- name`.
struct ListElement(IndexField);

impl<'de> Deserialize<'de> for ListElement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ElementVisitor;
        impl<'de> Visitor<'de> for ElementVisitor {
            type Value = ListElement;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an index element (`column: name`, with optional settings) or a column name",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ListElement, E> {
                Ok(ListElement(
                    IndexFieldSettings::default().into_field(v.to_owned()),
                ))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ListElement, A::Error> {
                IndexField::deserialize(de::value::MapAccessDeserializer::new(map)).map(ListElement)
            }
        }
        deserializer.deserialize_any(ElementVisitor)
    }
}

fn index_columns<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IndexField>, D::Error> {
    struct ColumnsVisitor;
    impl<'de> Visitor<'de> for ColumnsVisitor {
        type Value = Vec<IndexField>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of index elements (`- column: name`) or a mapping from column name to its settings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<IndexField>, A::Error> {
            let mut out = Vec::new();
            while let Some(ListElement(field)) = seq.next_element()? {
                out.push(field);
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<IndexField>, A::Error> {
            let mut out = Vec::new();
            while let Some(column) = map.next_key::<String>()? {
                let settings: Option<IndexFieldSettings> = map.next_value()?;
                out.push(settings.unwrap_or_default().into_field(column));
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(ColumnsVisitor)
}

impl OpCreateIndex {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "create_index";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("name", &self.name);
        n.name("table", &self.table);
        for (i, field) in self.columns.iter().enumerate() {
            n.element("columns", i, |n| n.name("column", &field.column));
        }
    }

    fn table<'s>(&self, schema: &'s Schema) -> Result<&'s Table, PlanError> {
        schema.table(&self.table).ok_or_else(|| {
            PlanError::new("table", format!("table \"{}\" does not exist", self.table))
        })
    }

    /// The `CREATE INDEX CONCURRENTLY` statement, over the table's physical names.
    fn create_sql(&self, schema: &Schema, table: &Table) -> Result<String, PlanError> {
        let mut elements = Vec::with_capacity(self.columns.len());
        for (i, field) in self.columns.iter().enumerate() {
            let column = table.column(&field.column).ok_or_else(|| {
                PlanError::new(
                    format!("columns[{i}].column"),
                    format!(
                        "column \"{}\" does not exist in table \"{}\"",
                        field.column, self.table
                    ),
                )
            })?;
            elements.push(render_element(i, field, &column.physical)?);
        }
        let mut sql = format!(
            "CREATE {}INDEX CONCURRENTLY {} ON {} USING {} ({})",
            if self.unique { "UNIQUE " } else { "" },
            Ident::new(self.name.as_str()),
            schema.qualify(table),
            self.method,
            elements.join(", "),
        );
        if !self.storage_parameters.is_empty() {
            sql.push_str(&format!(" WITH ({})", self.storage_parameters));
        }
        if !self.predicate.is_empty() {
            sql.push_str(&format!(
                " WHERE ({})",
                physical_predicate(&self.predicate, table)
            ));
        }
        Ok(sql)
    }

    fn index_name(&self, schema: &Schema) -> QualName {
        QualName::new(schema.name.clone(), Ident::new(self.name.as_str()))
    }
}

/// The predicate over physical column names (a column added or renamed earlier in the same
/// migration has another physical name than the one the file uses).
fn physical_predicate(predicate: &RawSql, table: &Table) -> RawSql {
    let renames: Vec<(String, Ident)> = table
        .columns
        .iter()
        .filter(|c| c.name != c.physical)
        .map(|c| (c.name.as_str().to_string(), c.physical.clone()))
        .collect();
    if renames.is_empty() {
        return predicate.clone();
    }
    rename_columns_in_sql(predicate, table.name.as_str(), &renames)
}

/// One index element: `"col" [COLLATE c] [opclass [(params)]] [ASC|DESC] [NULLS FIRST|LAST]`.
/// Collation and operator class names are parsed as SQL names and re-quoted, so they cannot
/// carry anything else into the statement.
fn render_element(i: usize, field: &IndexField, physical: &Ident) -> Result<String, PlanError> {
    let mut sql = physical.to_string();
    if !field.collate.is_empty() {
        let name = parse_sql_name(&field.collate)
            .map_err(|m| PlanError::new(format!("columns[{i}].collate"), m))?;
        sql.push_str(&format!(" COLLATE {}", join_name(&name)));
    }
    if let Some(opclass) = &field.opclass {
        if opclass.name.is_empty() {
            if !opclass.params.is_empty() {
                return Err(PlanError::new(
                    format!("columns[{i}].opclass.name"),
                    "operator class parameters need the operator class name",
                ));
            }
        } else {
            let name = parse_sql_name(&opclass.name)
                .map_err(|m| PlanError::new(format!("columns[{i}].opclass.name"), m))?;
            sql.push_str(&format!(" {}", join_name(&name)));
            let params: Vec<&str> = opclass
                .params
                .iter()
                .map(|p| p.as_str().trim())
                .filter(|p| !p.is_empty())
                .collect();
            if !params.is_empty() {
                sql.push_str(&format!(" ({})", params.join(", ")));
            }
        }
    }
    if let Some(sort) = field.sort {
        sql.push_str(&format!(" {sort}"));
    }
    if let Some(nulls) = field.nulls {
        sql.push_str(&format!(" NULLS {nulls}"));
    }
    Ok(sql)
}

fn join_name(parts: &[Ident]) -> String {
    parts
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// PostgreSQL 14.0 to 14.3 can silently corrupt indexes built with `CONCURRENTLY` (fixed in
/// 14.4): refuse to build one there.
pub(crate) fn refuse_broken_concurrent_builds(
    ctx: &PlanContext,
    field: &str,
) -> Result<(), PlanError> {
    if (140000..140004).contains(&ctx.server_version_num) {
        return Err(PlanError::new(
            field,
            format!(
                "the server runs PostgreSQL 14.{} and pgbaton builds indexes with CREATE INDEX CONCURRENTLY, \
                 which can silently corrupt indexes before 14.4; upgrade the server to 14.4 or later",
                ctx.server_version_num - 140000
            ),
        ));
    }
    Ok(())
}

impl Operation for OpCreateIndex {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, ctx: &PlanContext) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        if self.columns.is_empty() {
            return Err(PlanError::new(
                "columns",
                "an index needs at least one column",
            ));
        }
        // Checks every column and renders every element (collations, operator classes).
        self.create_sql(schema, table)?;
        if self.unique && self.method != IndexMethod::Btree {
            return Err(PlanError::new(
                "unique",
                format!(
                    "a unique index must use method btree; {} does not support unique indexes",
                    self.method
                ),
            ));
        }
        // Index names are unique across the schema (they share the namespace of relations).
        // An INVALID index of this name on the same table is the leftover of a failed build:
        // the build drops and rebuilds it.
        if let Some((owner, index)) = schema.index(&self.name) {
            let leftover = !index.valid && owner.physical == table.physical;
            if !leftover {
                return Err(PlanError::new(
                    "name",
                    format!(
                        "index \"{}\" already exists (on table \"{}\")",
                        self.name,
                        owner.name.as_str()
                    ),
                ));
            }
        }
        if let Some(other) = schema.table(&self.name) {
            return Err(PlanError::new(
                "name",
                format!(
                    "\"{}\" is already the name of table \"{}\" in the schema",
                    self.name,
                    other.name.as_str()
                ),
            ));
        }
        refuse_broken_concurrent_builds(ctx, "name")
    }

    fn start(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        let qualified = schema.qualify(table);
        let sql = self.create_sql(schema, table)?;
        plan.build(Step::create_index_concurrently(
            format!(
                "create index {} on {qualified}",
                Ident::new(self.name.as_str())
            ),
            qualified,
            self.index_name(schema),
            sql,
        ));
        Ok(())
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        // The index serves both versions from start on; nothing changes at complete.
        Ok(())
    }

    fn rollback(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        let index = self.index_name(schema);
        plan.undo(Step::concurrent(
            format!("drop index {index}"),
            Some(schema.qualify(table)),
            LockLevel::ShareUpdateExclusive,
            format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"),
        ));
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        let definition = self.create_sql(schema, table)?;
        let columns: Vec<Ident> = self
            .columns
            .iter()
            .filter_map(|f| table.column(&f.column).map(|c| c.physical.clone()))
            .collect();
        let predicate = (!self.predicate.is_empty()).then(|| self.predicate.to_string());
        let single_unique = self.unique
            && predicate.is_none()
            && columns.len() == 1
            && self.method == IndexMethod::Btree;
        let index = Index {
            name: Ident::new(self.name.as_str()),
            columns: columns.clone(),
            unique: self.unique,
            primary: false,
            valid: true,
            has_expressions: false,
            predicate,
            definition,
            constraint: None,
        };
        let name = self.table.clone();
        let Some(table) = schema.table_mut(&name) else {
            return Err(PlanError::new(
                "table",
                format!("table \"{name}\" does not exist"),
            ));
        };
        table.indexes.retain(|i| i.name.as_str() != self.name);
        table.indexes.push(index);
        if single_unique {
            if let Some(col) = table.columns.iter_mut().find(|c| c.physical == columns[0]) {
                col.unique = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};
    use crate::step::Action;

    fn fruits() -> Schema {
        let mut t = table(
            "fruits",
            &[
                ("id", "integer", false),
                ("name", "text", false),
                ("Weird \"Col\"", "text", true),
            ],
        );
        t.columns[1].comment = Some("the name".into());
        schema(vec![t])
    }

    #[test]
    fn plans_a_plain_index() {
        let (plan, after) = plan_ops(
            &fruits(),
            &ctx(150004),
            "  - create_index:\n      name: idx_fruits_name\n      table: fruits\n      columns:\n        - column: name\n",
        )
        .unwrap();
        insta::assert_snapshot!("plain", render(&plan));
        let idx = after.index("idx_fruits_name").unwrap().1;
        assert_eq!(idx.columns, vec![Ident::new("name")]);
        assert!(idx.valid && !idx.unique);
    }

    #[test]
    fn plans_every_field() {
        let ops = r#"  - create_index:
      name: 'Idx "Odd"'
      table: fruits
      unique: true
      columns:
        - column: name
          collate: '"C"'
          opclass:
            name: pg_catalog.text_pattern_ops
          sort: DESC
          nulls: LAST
        - column: 'Weird "Col"'
          sort: asc
      predicate: id > 10
      storage_parameters: fillfactor = 70
"#;
        let (plan, after) = plan_ops(&fruits(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("every_field", render(&plan));
        assert!(after.index("Idx \"Odd\"").unwrap().1.unique);
    }

    #[test]
    fn accepts_the_older_column_forms() {
        let map = "  - create_index:\n      name: i\n      table: fruits\n      columns:\n        name: {sort: DESC}\n        id:\n";
        let (plan, _) = plan_ops(&fruits(), &ctx(150004), map).unwrap();
        let sql = plan.start[0].statements().join("");
        assert!(sql.contains("(\"name\" DESC, \"id\")"), "{sql}");
        let list =
            "  - create_index:\n      name: i\n      table: fruits\n      columns: [id, name]\n";
        let (plan, _) = plan_ops(&fruits(), &ctx(150004), list).unwrap();
        let sql = plan.start[0].statements().join("");
        assert!(sql.contains("USING btree (\"id\", \"name\")"), "{sql}");
    }

    #[test]
    fn hash_index_with_storage_parameters_and_opclass_params() {
        let ops = "  - create_index:\n      name: i\n      table: fruits\n      method: hash\n      storage_parameters: fillfactor = 70\n      columns:\n        - column: name\n        - column: id\n          opclass: {name: int4_ops, params: ['a = 1', 'b = 2']}\n";
        let (plan, _) = plan_ops(&fruits(), &ctx(150004), ops).unwrap();
        assert_eq!(
            plan.start[0].statements(),
            vec!["CREATE INDEX CONCURRENTLY \"i\" ON \"public\".\"fruits\" USING hash (\"name\", \"id\" \"int4_ops\" (a = 1, b = 2)) WITH (fillfactor = 70)".to_string()]
        );
    }

    #[test]
    fn uses_physical_names_of_columns_added_in_the_same_migration() {
        let mut s = fruits();
        let t = s.table_mut("fruits").unwrap();
        let mut c = crate::schema::Column::new(Ident::new("price"), "numeric");
        c.physical = Ident::new("_pgbaton_new_price");
        t.columns.push(c);
        let ops = "  - create_index:\n      name: i\n      table: fruits\n      columns: [{column: price}]\n      predicate: price > 0 AND name <> 'price'\n";
        let (plan, after) = plan_ops(&s, &ctx(150004), ops).unwrap();
        assert_eq!(
            plan.start[0].statements(),
            vec!["CREATE INDEX CONCURRENTLY \"i\" ON \"public\".\"fruits\" USING btree (\"_pgbaton_new_price\") WHERE (\"_pgbaton_new_price\" > 0 AND name <> 'price')".to_string()]
        );
        assert_eq!(
            after.index("i").unwrap().1.columns,
            vec![Ident::new("_pgbaton_new_price")]
        );
    }

    #[test]
    fn the_build_does_not_block_writes() {
        let (plan, _) = plan_ops(
            &fruits(),
            &ctx(150004),
            "  - create_index: {name: i, table: fruits, columns: [{column: id}]}\n",
        )
        .unwrap();
        assert!(plan.lock_violations().is_empty());
        assert!(matches!(
            plan.start[0].action,
            Action::CreateIndexConcurrently { .. }
        ));
        assert!(plan.complete.is_empty());
        assert_eq!(plan.rollback.len(), 1);
        assert!(matches!(
            plan.rollback[0].action,
            Action::NonTransactional(_)
        ));
    }

    #[test]
    fn validation_errors_name_the_field() {
        let s = fruits();
        let c = ctx(150004);
        let op = |body: &str| format!("  - create_index: {{{body}}}\n");
        assert_eq!(
            plan_error(&s, &c, &op("name: i, table: nope, columns: [{column: id}]")),
            "table: table \"nope\" does not exist"
        );
        assert_eq!(
            plan_error(
                &s,
                &c,
                &op("name: i, table: fruits, columns: [{column: id}, {column: nope}]")
            ),
            "columns[1].column: column \"nope\" does not exist in table \"fruits\""
        );
        assert_eq!(
            plan_error(&s, &c, &op("name: i, table: fruits, columns: []")),
            "columns: an index needs at least one column"
        );
        assert_eq!(
            plan_error(
                &s,
                &c,
                &op("name: fruits_pkey, table: fruits, columns: [{column: id}]")
            ),
            "name: index \"fruits_pkey\" already exists (on table \"fruits\")"
        );
        assert_eq!(
            plan_error(
                &s,
                &c,
                &op("name: fruits, table: fruits, columns: [{column: id}]")
            ),
            "name: \"fruits\" is already the name of table \"fruits\" in the schema"
        );
        assert!(plan_error(
            &s,
            &c,
            &op("name: i, table: fruits, columns: [{column: id, collate: 'x; drop'}]")
        )
        .starts_with("columns[0].collate: "));
        assert_eq!(
            plan_error(
                &s,
                &c,
                &op("name: i, table: fruits, columns: [{column: id, opclass: {params: [a]}}]")
            ),
            "columns[0].opclass.name: operator class parameters need the operator class name"
        );
        assert!(plan_error(
            &s,
            &c,
            &op("name: i, table: fruits, unique: true, method: gin, columns: [{column: id}]")
        )
        .starts_with("unique: "));
        // Two operations creating the same index.
        let twice = op("name: i, table: fruits, columns: [{column: id}]").repeat(2);
        assert_eq!(
            plan_error(&s, &c, &twice),
            "name: index \"i\" already exists (on table \"fruits\")"
        );
    }

    #[test]
    fn an_invalid_leftover_of_the_same_name_is_rebuilt() {
        let mut s = fruits();
        s.table_mut("fruits").unwrap().indexes.push(Index {
            name: Ident::new("i"),
            columns: vec![Ident::new("name")],
            unique: true,
            primary: false,
            valid: false,
            has_expressions: false,
            predicate: None,
            definition: String::new(),
            constraint: None,
        });
        let (_, after) = plan_ops(
            &s,
            &ctx(150004),
            "  - create_index: {name: i, table: fruits, columns: [{column: id}]}\n",
        )
        .unwrap();
        let t = after.table("fruits").unwrap();
        assert_eq!(
            t.indexes.iter().filter(|i| i.name.as_str() == "i").count(),
            1
        );
        assert!(after.index("i").unwrap().1.valid);
    }

    #[test]
    fn refuses_postgres_14_before_14_4() {
        let s = fruits();
        let op = "  - create_index: {name: i, table: fruits, columns: [{column: id}]}\n";
        for v in [140000, 140003] {
            assert!(plan_error(&s, &ctx(v), op).contains("before 14.4"));
        }
        for v in [130010, 140004, 170000] {
            assert!(plan_ops(&s, &ctx(v), op).is_ok());
        }
    }
}
