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
    let tables: Vec<&Table> = schema.tables.values().filter(|t| !t.is_partition).collect();
    for table in &tables {
        sql.extend(create_view_sql(schema, vs, table));
    }
    if schema.opaque {
        sql.push(unknown_tables_views_sql(schema, vs));
    }
    vec![Step::transaction(
        format!(
            "create version schema {vs} with {} view{}",
            tables.len(),
            if tables.len() == 1 { "" } else { "s" }
        ),
        None,
        LockLevel::AccessShare,
        Work::Catalog,
        sql,
    )]
}

/// After a start-time `sql` operation the model may not know every table (the SQL may have
/// created some): this block, run with the other view statements, gives every table of the base
/// schema that the model does not know an identity view, with its defaults and grants, decided
/// from the catalog when the step runs.
fn unknown_tables_views_sql(schema: &Schema, vs: &Ident) -> String {
    let known = schema
        .tables
        .values()
        .map(|t| t.physical.literal().to_string())
        .chain(
            schema
                .dropped_tables
                .iter()
                .map(|t| t.literal().to_string()),
        )
        .collect::<Vec<_>>();
    let known = format!("ARRAY[{}]::text[]", known.join(", "));
    let invoker = if supports_security_invoker(schema.server_version_num) {
        " WITH (security_invoker = true)"
    } else {
        ""
    };
    format!(
        "DO $pgbaton$
DECLARE
    t record;
    d record;
    g record;
    cols text;
BEGIN
    FOR t IN SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = {base} AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname::text <> ALL ({known})
    LOOP
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
          FROM pg_attribute WHERE attrelid = t.oid AND attnum > 0 AND NOT attisdropped;
        EXECUTE format('CREATE VIEW %I.%I{invoker} AS SELECT %s FROM %I.%I', {vs_lit}, t.relname, cols, {base}, t.relname);
        FOR d IN SELECT a.attname, pg_get_expr(ad.adbin, ad.adrelid) AS expr
                   FROM pg_attrdef ad JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
                  WHERE ad.adrelid = t.oid AND a.attgenerated = ''
        LOOP
            EXECUTE format('ALTER VIEW %I.%I ALTER COLUMN %I SET DEFAULT %s', {vs_lit}, t.relname, d.attname, d.expr);
        END LOOP;
        FOR g IN SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END AS role,
                        x.privilege_type
                   FROM pg_class c, aclexplode(c.relacl) x WHERE c.oid = t.oid AND x.grantee <> c.relowner
        LOOP
            EXECUTE format('GRANT %s ON %I.%I TO %s', g.privilege_type, {vs_lit}, t.relname, g.role);
        END LOOP;
    END LOOP;
END
$pgbaton$",
        base = schema.name.literal(),
        vs_lit = vs.literal(),
    )
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
