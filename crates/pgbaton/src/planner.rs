//! The top of the planning core: a whole migration file, operation by operation, into one [`Plan`]
//! (start, complete and rollback steps) and the schema as the new version sees it. Everything below
//! it (`plan`, `ops`, `views`, `triggers`, `step`, `schema`, `ident`) is data and pure functions;
//! nothing here performs I/O, and the error is the planner's own.

use crate::format::Migration;
use crate::plan::{Plan, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// Why a migration cannot be planned. Nothing has run when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum PlanFailure {
    /// An operation does not fit the live schema.
    #[error("{file}{}: operations[{index}].{kind}.{}", .line.map(|l| format!(":{l}")).unwrap_or_default(), .source)]
    Invalid {
        file: String,
        line: Option<usize>,
        index: usize,
        kind: &'static str,
        source: PlanError,
    },

    /// A step would scan or rewrite a table under a lock that blocks the application.
    #[error("unsafe plan, refusing to run it: {0}")]
    Unsafe(String),
}

/// Validates and plans a whole migration against `schema` (the live catalog, as the previous
/// version sees it). Returns the plan and the schema as the new version sees it.
pub fn plan_migration(
    migration: &Migration,
    schema: Schema,
    ctx: &PlanContext,
) -> Result<(Plan, Schema), PlanFailure> {
    plan_migrations(&[migration], schema, ctx)
}

/// Validates and plans several files as ONE migration (`migrate --one-version`): the operations
/// of every file, in order, against the schema as the operations before them left it — as if
/// they were one file — so there is one expand, one backfill per table, one version schema
/// (`ctx.version_schema`), one contract and one rollback. Errors name the file and operation.
pub fn plan_migrations(
    migrations: &[&Migration],
    mut schema: Schema,
    ctx: &PlanContext,
) -> Result<(Plan, Schema), PlanFailure> {
    let mut builder = PlanBuilder::new();
    for migration in migrations {
        for (index, op) in migration.operations.iter().enumerate() {
            let operation = op.operation();
            let located = |source: PlanError| PlanFailure::Invalid {
                file: migration.file.clone(),
                line: migration.op_lines.get(index).copied().flatten(),
                index,
                kind: operation.kind(),
                source,
            };
            operation.validate(&schema, ctx).map_err(located)?;
            operation
                .start(&schema, ctx, &mut builder)
                .map_err(located)?;
            operation
                .complete(&schema, ctx, &mut builder)
                .map_err(located)?;
            operation
                .rollback(&schema, ctx, &mut builder)
                .map_err(located)?;
            builder.end_operation();
            operation.apply(&mut schema, ctx).map_err(located)?;
        }
    }
    let version_steps = crate::views::create_version_steps(&schema, ctx);
    builder.set_state_schema(ctx.state_schema.clone());
    builder.set_partitioned(
        schema
            .tables
            .values()
            .filter(|t| t.partitioned)
            .map(|t| schema.qualify(t)),
    );
    let drop_previous = ctx
        .previous_version_schema
        .as_ref()
        .map(crate::views::drop_version_steps)
        .unwrap_or_default();
    let drop_version = crate::views::drop_version_steps(&ctx.version_schema);
    let plan = builder.finish(version_steps, drop_previous, drop_version);
    let violations = plan.lock_violations();
    if !violations.is_empty() {
        return Err(PlanFailure::Unsafe(violations.join("; ")));
    }
    Ok((plan, schema))
}
