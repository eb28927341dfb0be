//! Versioned schemas: `<schema>_<version>` holds one view per table exposing that version's names
//! (renames and drops applied virtually). Views are simple enough to be auto-updatable, so an
//! application reads and writes through them; `security_invoker` (PG15+) keeps the caller's
//! privileges and row-level security; column defaults are copied onto the views.

use crate::ident::{Ident, Literal, QualName};
use crate::plan::PlanContext;
use crate::schema::{supports_security_invoker, Schema, Table};
use crate::step::{LockLevel, Step, Work};

/// The version schema's name for a migration: `<schema>_<version>`, where the version is the
/// file's `version_schema` when given, else the migration name.
pub fn version_schema_name(schema: &str, version: &str) -> Ident {
    Ident::new(format!("{schema}_{version}"))
}

/// `CREATE VIEW` for one table of a version.
pub fn create_view_sql(schema: &Schema, version_schema: &Ident, table: &Table) -> Vec<String> {
    let cols = table
        .columns
        .iter()
        .map(|c| format!("{} AS {}", c.physical, c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let view = QualName::new(version_schema.clone(), table.name.clone());
    let with = if supports_security_invoker(schema.server_version_num) {
        " WITH (security_invoker = true)"
    } else {
        ""
    };
    let mut sql = vec![format!(
        "CREATE VIEW {view}{with} AS SELECT {cols} FROM {}",
        schema.qualify(table)
    )];
    for c in &table.columns {
        if let Some(default) = &c.default {
            sql.push(format!(
                "ALTER VIEW {view} ALTER COLUMN {} SET DEFAULT {default}",
                c.name
            ));
        }
    }
    for grant in &table.grants {
        if let Some((role, privilege)) = grant.rsplit_once(' ') {
            sql.push(format!("GRANT {privilege} ON {view} TO {role}"));
        }
    }
    if let Some(comment) = &table.comment {
        sql.push(format!(
            "COMMENT ON VIEW {view} IS {}",
            Literal::new(comment)
        ));
    }
    sql
}

/// The step that creates this version's schema with a view per table, in one transaction.
pub fn create_version_steps(schema: &Schema, ctx: &PlanContext) -> Vec<Step> {
    let vs = &ctx.version_schema;
    let mut sql = vec![
        format!("CREATE SCHEMA {vs}"),
        format!(
            "COMMENT ON SCHEMA {vs} IS {}",
            Literal::new(format!(
                "pgbaton version schema of migration {} on schema {}",
                ctx.migration,
                ctx.schema.as_str()
            ))
        ),
    ];
    for role in &schema.usage_grantees {
        sql.push(format!("GRANT USAGE ON SCHEMA {vs} TO {role}"));
    }
    for table in schema.tables.values() {
        sql.extend(create_view_sql(schema, vs, table));
    }
    vec![Step::transaction(
        format!(
            "create version schema {vs} with {} views",
            schema.tables.len()
        ),
        None,
        LockLevel::AccessShare,
        Work::Catalog,
        sql,
    )]
}

/// The step that drops a version schema and its views.
pub fn drop_version_steps(version_schema: &Ident) -> Vec<Step> {
    vec![Step::catalog(
        format!("drop version schema {version_schema}"),
        None,
        LockLevel::None,
        format!("DROP SCHEMA IF EXISTS {version_schema} CASCADE"),
    )]
}
