//! `set_replica_identity`: sets a table's replica identity (deprecated by pgroll in favour of
//! raw SQL).
//!
//! Semantics: pgroll's at start — `ALTER TABLE ... REPLICA IDENTITY FULL | NOTHING | DEFAULT |
//! USING INDEX <index>` (a catalog-only change under a brief ACCESS EXCLUSIVE lock), run with the
//! concurrent index builds so an index `create_index` made earlier in the migration can be used;
//! complete has nothing to do. Unlike pgroll (whose rollback does nothing), rollback restores the identity
//! the table had before, from the model (`Table::replica_identity`, `replica_identity_index`).
//!
//! Checked before anything runs: the table exists; type `index` names an index of the table that
//! PostgreSQL accepts as replica identity (unique, valid, not partial, no expressions, on NOT NULL
//! columns); other types take no index. After a `sql` operation (`Schema::opaque`) a table
//! missing from the model is assumed to exist, and its rollback restores nothing (the previous
//! identity is unknown).
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::{Ident, QualName};
use crate::ops::common::{keyword_enum, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{Schema, Table};
use crate::step::{LockLevel, Step};

/// `set_replica_identity`: sets the replica identity of `table`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpSetReplicaIdentity {
    pub table: String,
    pub identity: ReplicaIdentity,
}

/// The replica identity to set. pgroll's schema marks `index` as required, but its documentation
/// and its code need it only for type `index`, so it is optional here.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaIdentity {
    #[serde(rename = "type")]
    pub type_: ReplicaIdentityType,
    #[serde(default)]
    pub index: Option<String>,
}

keyword_enum! {
    /// Replica identity type (any letter case in the file, as pgroll).
    pub enum ReplicaIdentityType (ci) {
        Default => "default",
        Full => "full",
        Nothing => "nothing",
        Index => "index",
    }
}

impl OpSetReplicaIdentity {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "set_replica_identity";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.nested("identity", |n| {
            n.opt("index", self.identity.index.as_deref())
        });
    }
}

impl ReplicaIdentityType {
    /// `pg_class.relreplident` for this type.
    fn code(self) -> char {
        match self {
            ReplicaIdentityType::Default => 'd',
            ReplicaIdentityType::Full => 'f',
            ReplicaIdentityType::Nothing => 'n',
            ReplicaIdentityType::Index => 'i',
        }
    }
}

/// The `REPLICA IDENTITY` clause for `relreplident` code `code` (and its index for `i`).
fn identity_sql(code: char, index: Option<&Ident>) -> Result<String, String> {
    Ok(match (code, index) {
        ('d', _) => "REPLICA IDENTITY DEFAULT".to_string(),
        ('f', _) => "REPLICA IDENTITY FULL".to_string(),
        ('n', _) => "REPLICA IDENTITY NOTHING".to_string(),
        ('i', Some(index)) => format!("REPLICA IDENTITY USING INDEX {index}"),
        ('i', None) => return Err("replica identity INDEX without an index".to_string()),
        (other, _) => return Err(format!("unknown replica identity code '{other}'")),
    })
}

impl OpSetReplicaIdentity {
    fn table<'a>(&self, schema: &'a Schema) -> Option<&'a Table> {
        schema.table(&self.table)
    }

    fn qualify(&self, schema: &Schema, ctx: &PlanContext) -> QualName {
        match self.table(schema) {
            Some(t) => schema.qualify(t),
            None => ctx.qualify(&Ident::new(self.table.as_str())),
        }
    }

    fn index_ident(&self) -> Option<Ident> {
        self.identity.index.as_deref().map(Ident::new)
    }
}

impl Operation for OpSetReplicaIdentity {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let table = self.table(schema);
        if table.is_none() && !schema.opaque {
            return Err(PlanError::new(
                "table",
                format!("table \"{}\" does not exist", self.table),
            ));
        }
        let index = self.identity.index.as_deref();
        if self.identity.type_ != ReplicaIdentityType::Index {
            if let Some(index) = index {
                return Err(PlanError::new(
                    "identity.index",
                    format!(
                        "only type index takes an index (type is {}, index is \"{index}\")",
                        self.identity.type_
                    ),
                ));
            }
            return Ok(());
        }
        let Some(index) = index else {
            return Err(PlanError::new(
                "identity.index",
                "type index needs the name of the index to use",
            ));
        };
        let Some(table) = table else {
            return Ok(()); // opaque: the server checks the index
        };
        let Some(found) = table.indexes.iter().find(|i| i.name.as_str() == index) else {
            return Err(PlanError::new(
                "identity.index",
                format!(
                    "index \"{index}\" does not exist on table \"{}\"",
                    self.table
                ),
            ));
        };
        let nullable = found.columns.iter().find(|c| {
            table
                .column_by_physical(c.as_str())
                .is_some_and(|col| col.nullable)
        });
        let problem = if !found.unique {
            Some("it is not unique".to_string())
        } else if !found.valid {
            Some("it is not valid".to_string())
        } else if found.predicate.is_some() {
            Some("it is partial".to_string())
        } else if found.has_expressions {
            Some("it indexes expressions".to_string())
        } else {
            nullable.map(|c| {
                let name = table
                    .column_by_physical(c.as_str())
                    .map_or(c.as_str(), |col| col.name.as_str());
                format!("column \"{name}\" is nullable")
            })
        };
        if let Some(problem) = problem {
            return Err(PlanError::new(
                "identity.index",
                format!(
                    "index \"{index}\" cannot be the replica identity of table \"{}\": {problem}",
                    self.table
                ),
            ));
        }
        Ok(())
    }

    fn start(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let qual = self.qualify(schema, ctx);
        let index = self.index_ident();
        let clause = identity_sql(self.identity.type_.code(), index.as_ref())
            .map_err(|e| PlanError::new("identity", e))?;
        // With the index builds: an index created earlier in the migration exists by then.
        plan.build(Step::catalog(
            format!("set replica identity of {qual}"),
            Some(qual.clone()),
            LockLevel::AccessExclusive,
            format!("ALTER TABLE {qual} {clause}"),
        ));
        Ok(())
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        Ok(())
    }

    fn rollback(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let Some(table) = self.table(schema) else {
            return Ok(()); // opaque: the previous identity is not known
        };
        let qual = schema.qualify(table);
        let clause = identity_sql(
            table.replica_identity,
            table.replica_identity_index.as_ref(),
        )
        .map_err(|e| PlanError::new("table", format!("table \"{}\": {e}", self.table)))?;
        plan.undo(Step::catalog(
            format!("restore replica identity of {qual}"),
            Some(qual.clone()),
            LockLevel::AccessExclusive,
            format!("ALTER TABLE IF EXISTS {qual} {clause}"),
        ));
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let index = self.index_ident();
        if let Some(table) = schema.table_mut(&self.table) {
            table.replica_identity = self.identity.type_.code();
            table.replica_identity_index = match self.identity.type_ {
                ReplicaIdentityType::Index => index,
                _ => None,
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};
    use crate::schema::Index;
    use crate::step::Action;

    fn index(name: &str, columns: &[&str], unique: bool) -> Index {
        Index {
            name: Ident::new(name),
            columns: columns.iter().map(|c| Ident::new(*c)).collect(),
            unique,
            primary: false,
            valid: true,
            has_expressions: false,
            predicate: None,
            definition: String::new(),
            constraint: None,
        }
    }

    fn base() -> Schema {
        let mut t = table(
            "Fruits \"F\"",
            &[
                ("id", "integer", false),
                ("name", "text", false),
                ("note", "text", true),
            ],
        );
        t.indexes.push(index("Name Idx", &["name"], true));
        t.indexes.push(index("note_idx", &["note"], true));
        t.indexes.push(index("plain_idx", &["name"], false));
        let mut partial = index("partial_idx", &["name"], true);
        partial.predicate = Some("(id > 0)".into());
        t.indexes.push(partial);
        let mut replicated = table("logged", &[("id", "integer", false)]);
        replicated.replica_identity = 'i';
        replicated.replica_identity_index = Some(Ident::new("logged_pkey"));
        schema(vec![t, replicated])
    }

    fn sql(step: &Step) -> String {
        match &step.action {
            Action::Transaction(sql) => sql.join("; "),
            other => panic!("unexpected action {other:?}"),
        }
    }

    #[test]
    fn sets_at_start_and_restores_at_rollback() {
        let ops = "  - set_replica_identity: {table: Fruits \"F\", identity: {type: index, index: Name Idx}}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("index", render(&plan));
        assert!(plan.complete.is_empty());
        let t = after.table("Fruits \"F\"").expect("table");
        assert_eq!(t.replica_identity, 'i');
        assert_eq!(t.replica_identity_index, Some(Ident::new("Name Idx")));

        for (ty, clause) in [
            ("full", "REPLICA IDENTITY FULL"),
            ("NOTHING", "REPLICA IDENTITY NOTHING"),
            ("Default", "REPLICA IDENTITY DEFAULT"),
        ] {
            let ops =
                format!("  - set_replica_identity: {{table: logged, identity: {{type: {ty}}}}}\n");
            let (plan, after) = plan_ops(&base(), &ctx(150004), &ops).unwrap();
            assert_eq!(
                sql(&plan.start[0]),
                format!("ALTER TABLE \"public\".\"logged\" {clause}")
            );
            // The previous identity was the index.
            assert_eq!(
                sql(&plan.rollback[0]),
                "ALTER TABLE IF EXISTS \"public\".\"logged\" REPLICA IDENTITY USING INDEX \"logged_pkey\""
            );
            assert_eq!(plan.start[0].lock, LockLevel::AccessExclusive);
            assert_eq!(
                after
                    .table("logged")
                    .and_then(|t| t.replica_identity_index.clone()),
                None
            );
        }
    }

    #[test]
    fn uses_an_index_created_in_the_same_migration() {
        let ops = "  - create_index: {name: Id Idx, table: logged, unique: true, columns: [{column: id}]}\n  - set_replica_identity: {table: logged, identity: {type: index, index: Id Idx}}\n";
        let (plan, _) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        let titles: Vec<&str> = plan.start.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            vec![
                "create index \"Id Idx\" on \"public\".\"logged\"",
                "set replica identity of \"public\".\"logged\"",
            ]
        );
        // Undone in reverse order: the identity goes back before the index is dropped.
        assert!(plan.rollback[0]
            .title
            .starts_with("restore replica identity"));
    }

    #[test]
    fn validation_errors() {
        let e = |ops: &str| plan_error(&base(), &ctx(150004), ops);
        let t = "Fruits \"F\"";
        assert_eq!(
            e("  - set_replica_identity: {table: nope, identity: {type: full}}\n"),
            "table: table \"nope\" does not exist"
        );
        assert_eq!(
            e("  - set_replica_identity: {table: logged, identity: {type: full, index: logged_pkey}}\n"),
            "identity.index: only type index takes an index (type is full, index is \"logged_pkey\")"
        );
        assert_eq!(
            e("  - set_replica_identity: {table: logged, identity: {type: index}}\n"),
            "identity.index: type index needs the name of the index to use"
        );
        assert_eq!(
            e("  - set_replica_identity: {table: logged, identity: {type: index, index: nope}}\n"),
            "identity.index: index \"nope\" does not exist on table \"logged\""
        );
        for (index, problem) in [
            ("plain_idx", "it is not unique"),
            ("partial_idx", "it is partial"),
            ("note_idx", "column \"note\" is nullable"),
        ] {
            assert_eq!(
                e(&format!(
                    "  - set_replica_identity: {{table: {t}, identity: {{type: index, index: {index}}}}}\n"
                )),
                format!(
                    "identity.index: index \"{index}\" cannot be the replica identity of table \"Fruits \"F\"\": {problem}"
                )
            );
        }
    }
}
