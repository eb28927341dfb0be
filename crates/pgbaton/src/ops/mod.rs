//! Operations: one file per pgroll operation, each holding the serde struct for its JSON and its
//! [`Operation`] impl, and [`Op`], the exhaustive enum that registers them. Serde's externally
//! tagged enum is exactly pgroll's `{"add_column": {...}}`.

pub mod add_column;
pub mod alter_column;
pub mod common;
pub mod create_constraint;
pub mod create_index;
pub mod create_table;
pub mod definition_sql;
pub mod drop_column;
pub mod drop_constraint;
pub mod drop_index;
pub mod drop_multicolumn_constraint;
pub mod drop_table;
pub mod duplicate;
pub mod lookup;
pub mod not_null_names;
pub mod raw_sql;
pub mod rename_column;
pub mod rename_constraint;
pub mod rename_table;
pub mod set_replica_identity;

pub use add_column::OpAddColumn;
pub use alter_column::OpAlterColumn;
pub use common::{
    CheckConstraint, Column, ColumnGenerated, ColumnGeneratedIdentity, Constraint, ConstraintType,
    ExcludeConstraint, ForeignKeyAction, ForeignKeyMatchType, ForeignKeyReference,
    IdentityUserSpecifiedValues, IndexField, IndexNulls, IndexOpclass, IndexParameters, IndexSort,
    MultiColumnSql, NameRef, Nullable, TableForeignKeyReference, UniqueConstraint,
};
pub use create_constraint::{CreateConstraintType, OpCreateConstraint};
pub use create_index::{IndexMethod, OpCreateIndex};
pub use create_table::OpCreateTable;
pub use drop_column::OpDropColumn;
pub use drop_constraint::OpDropConstraint;
pub use drop_index::OpDropIndex;
pub use drop_multicolumn_constraint::OpDropMultiColumnConstraint;
pub use drop_table::OpDropTable;
pub use raw_sql::OpRawSql;
pub use rename_column::OpRenameColumn;
pub use rename_constraint::OpRenameConstraint;
pub use rename_table::OpRenameTable;
pub use set_replica_identity::{OpSetReplicaIdentity, ReplicaIdentity, ReplicaIdentityType};

use crate::plan::Operation;

/// One operation of a migration, keyed by pgroll's name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum Op {
    #[serde(rename = "add_column")]
    AddColumn(OpAddColumn),
    #[serde(rename = "alter_column")]
    AlterColumn(OpAlterColumn),
    #[serde(rename = "create_constraint")]
    CreateConstraint(OpCreateConstraint),
    #[serde(rename = "create_index")]
    CreateIndex(OpCreateIndex),
    #[serde(rename = "create_table")]
    CreateTable(OpCreateTable),
    #[serde(rename = "drop_column")]
    DropColumn(OpDropColumn),
    #[serde(rename = "drop_constraint")]
    DropConstraint(OpDropConstraint),
    #[serde(rename = "drop_index")]
    DropIndex(OpDropIndex),
    #[serde(rename = "drop_multicolumn_constraint")]
    DropMultiColumnConstraint(OpDropMultiColumnConstraint),
    #[serde(rename = "drop_table")]
    DropTable(OpDropTable),
    #[serde(rename = "sql")]
    RawSql(OpRawSql),
    #[serde(rename = "rename_column")]
    RenameColumn(OpRenameColumn),
    #[serde(rename = "rename_constraint")]
    RenameConstraint(OpRenameConstraint),
    #[serde(rename = "rename_table")]
    RenameTable(OpRenameTable),
    #[serde(rename = "set_replica_identity")]
    SetReplicaIdentity(OpSetReplicaIdentity),
}

impl Op {
    /// Every operation name a file may use, in pgroll's spelling.
    pub const KINDS: &'static [&'static str] = &[
        OpAddColumn::KIND,
        OpAlterColumn::KIND,
        OpCreateConstraint::KIND,
        OpCreateIndex::KIND,
        OpCreateTable::KIND,
        OpDropColumn::KIND,
        OpDropConstraint::KIND,
        OpDropIndex::KIND,
        OpDropMultiColumnConstraint::KIND,
        OpDropTable::KIND,
        OpRawSql::KIND,
        OpRenameColumn::KIND,
        OpRenameConstraint::KIND,
        OpRenameTable::KIND,
        OpSetReplicaIdentity::KIND,
    ];

    /// The operation's planning behaviour.
    pub fn operation(&self) -> &dyn Operation {
        match self {
            Op::AddColumn(op) => op,
            Op::AlterColumn(op) => op,
            Op::CreateConstraint(op) => op,
            Op::CreateIndex(op) => op,
            Op::CreateTable(op) => op,
            Op::DropColumn(op) => op,
            Op::DropConstraint(op) => op,
            Op::DropIndex(op) => op,
            Op::DropMultiColumnConstraint(op) => op,
            Op::DropTable(op) => op,
            Op::RawSql(op) => op,
            Op::RenameColumn(op) => op,
            Op::RenameConstraint(op) => op,
            Op::RenameTable(op) => op,
            Op::SetReplicaIdentity(op) => op,
        }
    }

    /// pgroll's name for the operation: its key in the file (`sql` for raw SQL).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::AddColumn(_) => OpAddColumn::KIND,
            Op::AlterColumn(_) => OpAlterColumn::KIND,
            Op::CreateConstraint(_) => OpCreateConstraint::KIND,
            Op::CreateIndex(_) => OpCreateIndex::KIND,
            Op::CreateTable(_) => OpCreateTable::KIND,
            Op::DropColumn(_) => OpDropColumn::KIND,
            Op::DropConstraint(_) => OpDropConstraint::KIND,
            Op::DropIndex(_) => OpDropIndex::KIND,
            Op::DropMultiColumnConstraint(_) => OpDropMultiColumnConstraint::KIND,
            Op::DropTable(_) => OpDropTable::KIND,
            Op::RawSql(_) => OpRawSql::KIND,
            Op::RenameColumn(_) => OpRenameColumn::KIND,
            Op::RenameConstraint(_) => OpRenameConstraint::KIND,
            Op::RenameTable(_) => OpRenameTable::KIND,
            Op::SetReplicaIdentity(_) => OpSetReplicaIdentity::KIND,
        }
    }

    /// The identifiers (table, column, index, constraint names) the operation names, each with
    /// its field path inside the operation body. [`crate::format`] rejects empty and over-long
    /// ones before any schema is read.
    pub fn names(&self) -> Vec<NameRef<'_>> {
        let mut n = common::Names::new();
        match self {
            Op::AddColumn(op) => op.names(&mut n),
            Op::AlterColumn(op) => op.names(&mut n),
            Op::CreateConstraint(op) => op.names(&mut n),
            Op::CreateIndex(op) => op.names(&mut n),
            Op::CreateTable(op) => op.names(&mut n),
            Op::DropColumn(op) => op.names(&mut n),
            Op::DropConstraint(op) => op.names(&mut n),
            Op::DropIndex(op) => op.names(&mut n),
            Op::DropMultiColumnConstraint(op) => op.names(&mut n),
            Op::DropTable(op) => op.names(&mut n),
            Op::RawSql(op) => op.names(&mut n),
            Op::RenameColumn(op) => op.names(&mut n),
            Op::RenameConstraint(op) => op.names(&mut n),
            Op::RenameTable(op) => op.names(&mut n),
            Op::SetReplicaIdentity(op) => op.names(&mut n),
        }
        n.into_vec()
    }
}
