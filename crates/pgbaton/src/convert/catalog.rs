//! What `convert` and `lint` know of the tables: from earlier migrations (`--schema-sql`) and
//! the statements read so far.

use std::collections::BTreeMap;

use crate::sql::model::{statements, Change, ColumnSpec};
use crate::sql::SqlError;

/// What the tables look like, as far as SQL seen so far says (earlier migrations given with
/// `--schema-sql`, and the statements before the current one).
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    tables: BTreeMap<String, Vec<ColumnSpec>>,
    /// Tables created by the file being read (as opposed to earlier migrations).
    created_here: Vec<String>,
}

impl Catalog {
    /// Learns the tables of an earlier migration script.
    pub fn learn_script(&mut self, script: &str) -> Result<(), SqlError> {
        for s in statements(script)? {
            for c in &s.changes {
                self.learn(c, false);
            }
        }
        Ok(())
    }

    /// Applies one change to the model. `here`: the change is in the file being read.
    pub fn learn(&mut self, change: &Change, here: bool) {
        match change {
            Change::CreateTable { table, columns, .. } => {
                self.tables.insert(table.clone(), columns.clone());
                if here {
                    self.created_here.push(table.clone());
                }
            }
            Change::AddColumn { table, column } => {
                self.tables
                    .entry(table.clone())
                    .or_default()
                    .push(column.clone());
            }
            Change::DropColumn { table, column } => {
                if let Some(cols) = self.tables.get_mut(table) {
                    cols.retain(|c| &c.name != column);
                }
            }
            Change::AlterType {
                table,
                column,
                type_,
                ..
            } => {
                if let Some(c) = self.column_mut(table, column) {
                    c.type_ = type_.clone();
                }
            }
            Change::SetNotNull { table, column } => {
                if let Some(c) = self.column_mut(table, column) {
                    c.not_null = true;
                }
            }
            Change::DropNotNull { table, column } => {
                if let Some(c) = self.column_mut(table, column) {
                    c.not_null = false;
                }
            }
            Change::Default {
                table,
                column,
                default,
            } => {
                if let Some(c) = self.column_mut(table, column) {
                    c.default = default.clone();
                }
            }
            Change::RenameColumn { table, from, to } => {
                if let Some(c) = self.column_mut(table, from) {
                    c.name = to.clone();
                }
            }
            Change::RenameTable { from, to } => {
                if let Some(cols) = self.tables.remove(from) {
                    self.tables.insert(to.clone(), cols);
                }
                for t in self.created_here.iter_mut().filter(|t| *t == from) {
                    *t = to.clone();
                }
            }
            Change::DropTable { table } => {
                self.tables.remove(table);
            }
            _ => {}
        }
    }

    /// The column, when known.
    pub fn column(&self, table: &str, column: &str) -> Option<&ColumnSpec> {
        self.tables.get(table)?.iter().find(|c| c.name == column)
    }

    fn column_mut(&mut self, table: &str, column: &str) -> Option<&mut ColumnSpec> {
        self.tables
            .get_mut(table)?
            .iter_mut()
            .find(|c| c.name == column)
    }

    /// True when the table was created by the file being read (it has no rows and no running
    /// release uses it).
    pub fn created_here(&self, table: &str) -> bool {
        self.created_here.iter().any(|t| t == table)
    }

    /// True when the table is known (from earlier migrations or this file).
    pub fn knows(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }
}
