//! The statement-level trigger that counts writes per version (see `crate::version_writes` for
//! reading the counts): its SQL, as data for the plan.

use crate::ident::{Ident, Literal, QualName};
use crate::step::{LockLevel, Step, Work};

use super::{TriggerSpec, VERSION_SETTING};

/// The statement-level trigger that counts writes per version.
pub const TRIGGER_NAME: &str = "_pgbaton_version_writes";
const FUNCTION_PREFIX: &str = "_pgbaton_vw_";
const COUNTER_PREFIX: &str = "_pgbaton_vwc_";

/// The sequences of one version on one table.
pub(crate) fn sequences(table: &QualName, new: bool) -> (QualName, QualName) {
    let tag = if new { 'n' } else { 'o' };
    let object = |kind: char| {
        QualName::new(
            table.schema.clone(),
            Ident::derived(&format!("_pgbaton_v{kind}{tag}_"), table.name.as_str()),
        )
    };
    // `c`: the count of statements; `t`: the last write, in epoch milliseconds.
    (object('c'), object('t'))
}

pub(crate) fn object(table: &QualName, prefix: &str) -> QualName {
    QualName::new(
        table.schema.clone(),
        Ident::derived(prefix, table.name.as_str()),
    )
}

/// The step that installs the counting on `spec`'s table, right after its dual-write trigger
/// (idempotent). `CREATE TRIGGER` takes a `SHARE ROW EXCLUSIVE` lock: reads go on meanwhile.
pub fn install_step(spec: &TriggerSpec, state_schema: Option<&Ident>) -> Step {
    Step::transaction(
        format!("count writes per version on {}", spec.table),
        Some(spec.table.clone()),
        LockLevel::ShareRowExclusive,
        Work::Catalog,
        install_sql(spec, state_schema),
    )
}

/// Statements of [`install_step`].
pub fn install_sql(spec: &TriggerSpec, state_schema: Option<&Ident>) -> Vec<String> {
    let table = &spec.table;
    let function = object(table, FUNCTION_PREFIX);
    let counter = object(table, COUNTER_PREFIX);
    let mut sql = Vec::new();
    for new in [false, true] {
        let (count, time) = sequences(table, new);
        sql.push(format!("CREATE SEQUENCE IF NOT EXISTS {count}"));
        sql.push(format!("CREATE SEQUENCE IF NOT EXISTS {time} MINVALUE 0"));
    }
    let (old_count, old_time) = sequences(table, false);
    let (new_count, new_time) = sequences(table, true);
    sql.push(format!(
        "CREATE OR REPLACE FUNCTION {counter}(is_new boolean) RETURNS void LANGUAGE plpgsql \
         SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $_pgbaton_$\n\
         DECLARE\n  now_ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;\n\
         BEGIN\n  IF is_new THEN\n    PERFORM nextval({nc}::regclass);\n    \
         IF (SELECT last_value FROM {new_time}) < now_ms - 1000 THEN\n      \
         PERFORM setval({nt}::regclass, now_ms);\n    END IF;\n  ELSE\n    \
         PERFORM nextval({oc}::regclass);\n    \
         IF (SELECT last_value FROM {old_time}) < now_ms - 1000 THEN\n      \
         PERFORM setval({ot}::regclass, now_ms);\n    END IF;\n  END IF;\nEND\n$_pgbaton_$",
        nc = Literal::new(new_count.to_string()),
        nt = Literal::new(new_time.to_string()),
        oc = Literal::new(old_count.to_string()),
        ot = Literal::new(old_time.to_string()),
    ));
    // The writer's version, as the dual-write trigger decides it (see `triggers`).
    sql.push(format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $_pgbaton_$\n\
         DECLARE\n  v text := coalesce(nullif(current_setting({setting}, true), ''), current_schema());\n\
         BEGIN\n  IF {counted} THEN\n    \
         PERFORM {counter}(v = {schema} OR v = {migration});\n  END IF;\n  RETURN NULL;\nEND\n$_pgbaton_$",
        setting = Literal::new(VERSION_SETTING),
        counted = super::not_a_backfill_sql(state_schema),
        schema = Literal::new(spec.version_schema.as_str()),
        migration = Literal::new(&spec.migration),
    ));
    let trigger = Ident::new(TRIGGER_NAME);
    sql.push(format!("DROP TRIGGER IF EXISTS {trigger} ON {table}"));
    sql.push(format!(
        "CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} \
         FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
    ));
    sql
}

/// Statements that remove the counting from `table` (idempotent; complete and rollback).
pub fn drop_sql(table: &QualName) -> Vec<String> {
    let mut sql = vec![
        format!(
            "DROP TRIGGER IF EXISTS {} ON {table}",
            Ident::new(TRIGGER_NAME)
        ),
        format!(
            "DROP FUNCTION IF EXISTS {}()",
            object(table, FUNCTION_PREFIX)
        ),
        format!(
            "DROP FUNCTION IF EXISTS {}(boolean)",
            object(table, COUNTER_PREFIX)
        ),
    ];
    for new in [false, true] {
        let (count, time) = sequences(table, new);
        sql.push(format!("DROP SEQUENCE IF EXISTS {count}, {time}"));
    }
    sql
}
