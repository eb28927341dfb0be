//! The schema model: what one version of the application sees. Read from the catalog by
//! [`crate::catalog`], then changed in memory operation by operation (`Operation::apply`), so the
//! validation of each operation sees the effects of the ones before it. Names here are the
//! version's (virtual) names; `physical` fields say what the objects are really called.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ident::{Ident, QualName};

/// One version's view of a schema.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The base schema holding the physical tables (e.g. `public`).
    pub name: Ident,
    /// Tables by their name in this version.
    pub tables: BTreeMap<String, Table>,
    /// `server_version_num` of the server (e.g. 150018).
    pub server_version_num: i32,
    /// Set after a `sql` operation: the real schema may differ from this model, so "does not
    /// exist" checks are relaxed for the rest of the migration.
    pub opaque: bool,
    /// Roles (quoted, or `PUBLIC`) with USAGE on the base schema; they get USAGE on version schemas.
    pub usage_grantees: Vec<String>,
    /// Physical names of tables a `drop_table` of this migration hid: they exist until complete,
    /// so a table created later in the same migration must not take their names.
    #[serde(default)]
    pub dropped_tables: Vec<Ident>,
}

impl Schema {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    pub fn table_mut(&mut self, name: &str) -> Option<&mut Table> {
        self.tables.get_mut(name)
    }

    /// The physical, schema-qualified name of a table of this version.
    pub fn qualify(&self, table: &Table) -> QualName {
        QualName::new(self.name.clone(), table.physical.clone())
    }

    /// Finds a constraint by name across tables (constraint names are unique per table only, but
    /// pgroll's operations name the table too; this is for index look-ups).
    pub fn index(&self, name: &str) -> Option<(&Table, &Index)> {
        self.tables.values().find_map(|t| {
            t.indexes
                .iter()
                .find(|i| i.name.as_str() == name)
                .map(|i| (t, i))
        })
    }
}

/// A table as one version sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// The name in this version.
    pub name: Ident,
    /// The physical name.
    pub physical: Ident,
    /// Columns in attnum order, as this version sees them (hidden ones removed).
    pub columns: Vec<Column>,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<Index>,
    pub comment: Option<String>,
    /// `pg_class.relreplident`: d(efault), n(othing), f(ull), i(ndex).
    pub replica_identity: char,
    /// The index used when `replica_identity` is `i`.
    pub replica_identity_index: Option<Ident>,
    /// `pg_class.reltuples` (-1 when never analyzed).
    pub row_estimate: i64,
    /// Whether the table holds at least one row when the catalog was read.
    pub has_rows: bool,
    /// True when created by this migration (nothing to backfill, no old version to serve).
    pub created_here: bool,
    /// Privileges granted on the table to roles other than its owner, as `<quoted role> <PRIVILEGE>`
    /// (`PUBLIC SELECT`); the version schema's views get the same.
    pub grants: Vec<String>,
    /// Columns a `drop_column` of this migration hid from this version: they exist physically
    /// until complete, and `up` expressions of later operations may still read them.
    #[serde(default)]
    pub dropped_columns: Vec<Column>,
    /// A partitioned table (`relkind = 'p'`): its backfill runs with the dual-write trigger in
    /// place (a statement trigger on the parent does not see writes to a partition, so the
    /// write window cannot count them).
    #[serde(default)]
    pub partitioned: bool,
    /// A partition of a partitioned table (`relispartition`): it gets no view in version
    /// schemas (its columns are its parent's, which the parent's view maps; a view of its own
    /// would pin the columns a parent's change drops at complete).
    #[serde(default)]
    pub is_partition: bool,
}

impl Table {
    pub fn new(name: Ident) -> Table {
        Table {
            physical: name.clone(),
            name,
            columns: Vec::new(),
            constraints: Vec::new(),
            indexes: Vec::new(),
            comment: None,
            replica_identity: 'd',
            replica_identity_index: None,
            row_estimate: 0,
            has_rows: false,
            created_here: false,
            grants: Vec::new(),
            dropped_columns: Vec::new(),
            partitioned: false,
            is_partition: false,
        }
    }

    /// Sets `Column::unique` for columns covered alone by a valid unique index without
    /// predicate or expressions (after reading the catalog, or after an index is dropped).
    pub fn mark_unique_columns(&mut self) {
        let unique: Vec<Ident> = self
            .indexes
            .iter()
            .filter(|i| {
                i.unique
                    && i.valid
                    && i.predicate.is_none()
                    && !i.has_expressions
                    && i.columns.len() == 1
            })
            .map(|i| i.columns[0].clone())
            .collect();
        for c in &mut self.columns {
            c.unique = unique.contains(&c.physical);
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name.as_str() == name)
    }

    pub fn column_mut(&mut self, name: &str) -> Option<&mut Column> {
        self.columns.iter_mut().find(|c| c.name.as_str() == name)
    }

    /// The column whose physical name is `physical`.
    pub fn column_by_physical(&self, physical: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.physical.as_str() == physical)
    }

    pub fn constraint(&self, name: &str) -> Option<&Constraint> {
        self.constraints.iter().find(|c| c.name.as_str() == name)
    }

    pub fn primary_key(&self) -> Option<&Constraint> {
        self.constraints
            .iter()
            .find(|c| c.kind == ConstraintKind::PrimaryKey)
    }

    /// The key a backfill can walk: the primary key, else a unique index on NOT NULL columns
    /// without predicate or expressions (physical names). `None` means ctid ranges.
    pub fn backfill_key(&self) -> Option<Vec<Ident>> {
        if let Some(pk) = self.primary_key() {
            return Some(pk.columns.clone());
        }
        self.indexes
            .iter()
            .filter(|i| i.unique && i.valid && i.predicate.is_none() && !i.has_expressions)
            .find(|i| {
                i.columns.iter().all(|c| {
                    self.columns
                        .iter()
                        .any(|col| &col.physical == c && !col.nullable)
                })
            })
            .map(|i| i.columns.clone())
    }
}

/// A column as one version sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The name in this version.
    pub name: Ident,
    /// The physical name.
    pub physical: Ident,
    /// `format_type(atttypid, atttypmod)`, e.g. `character varying(255)`.
    pub type_name: String,
    pub nullable: bool,
    /// The default expression, as `pg_get_expr` prints it.
    pub default: Option<String>,
    /// `a` (always) or `d` (by default) for identity columns.
    pub identity: Option<char>,
    /// The generation expression of a stored generated column.
    pub generated: Option<String>,
    pub comment: Option<String>,
    /// True when a single-column unique constraint or unique index covers exactly this column.
    pub unique: bool,
}

impl Column {
    pub fn new(name: Ident, type_name: impl Into<String>) -> Column {
        Column {
            physical: name.clone(),
            name,
            type_name: type_name.into(),
            nullable: true,
            default: None,
            identity: None,
            generated: None,
            comment: None,
            unique: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    Check,
    Unique,
    PrimaryKey,
    ForeignKey,
    Exclude,
}

impl ConstraintKind {
    /// `pg_constraint.contype`.
    pub fn from_contype(c: char) -> Option<ConstraintKind> {
        Some(match c {
            'c' => ConstraintKind::Check,
            'u' => ConstraintKind::Unique,
            'p' => ConstraintKind::PrimaryKey,
            'f' => ConstraintKind::ForeignKey,
            'x' => ConstraintKind::Exclude,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub name: Ident,
    pub kind: ConstraintKind,
    /// Physical names of the constrained columns (empty for a check on no column).
    pub columns: Vec<Ident>,
    /// `pg_get_constraintdef`.
    pub definition: String,
    pub validated: bool,
    /// For foreign keys: the referenced table (physical) and columns.
    pub references: Option<(QualName, Vec<Ident>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub name: Ident,
    /// Physical names of plain key columns (expression entries are left out).
    pub columns: Vec<Ident>,
    pub unique: bool,
    pub primary: bool,
    pub valid: bool,
    pub has_expressions: bool,
    pub predicate: Option<String>,
    /// `pg_get_indexdef`.
    pub definition: String,
    /// The constraint this index backs, if any.
    pub constraint: Option<Ident>,
}

/// PostgreSQL server version helpers.
pub fn supports_security_invoker(server_version_num: i32) -> bool {
    server_version_num >= 150000
}
