//! The migration's lifecycle: `start` (expand), `complete` (contract) and `rollback`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use pgbaton::error::{exit, Error};

use super::common::{load, Context};
use super::plan::{print_plan, PlanFormat};
use crate::output::print_json;

#[derive(Args, Debug)]
pub struct StartArgs {
    pub file: PathBuf,
    /// Complete it right after starting
    #[arg(long)]
    pub complete: bool,
    /// Print the steps it would run (as `plan` does) and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct CompleteArgs {
    /// Complete even though the old version wrote recently
    #[arg(long)]
    pub force: bool,
    /// How long the old version must not have written, in seconds
    #[arg(long, env = "PGBATON_OLD_VERSION_QUIET", default_value_t = 60)]
    pub old_version_quiet: u64,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Skip user `sql` down steps that fail, and say what was left
    #[arg(long)]
    pub force: bool,
}

/// `pgbaton start FILE`: the new version ready beside the old one (and completed with
/// `--complete`); with `--dry-run`, its plan.
pub async fn start(args: StartArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    if args.dry_run {
        return print_plan(&migrator, &args.file, PlanFormat::Text, ctx).await;
    }
    let m = load(&args.file)?;
    if migrator.backfills_paused().await.unwrap_or(false) {
        eprintln!(
            "note: backfills of schema {} are paused (`pgbaton pause`): this start waits \
             before its first batch until `pgbaton resume`",
            ctx.g.schema
        );
    }
    let out = migrator.start(&m, args.complete).await?;
    ctx.renderer.finish_bar();
    let fields =
        serde_json::json!({"migration": out.migration, "version_schema": out.version_schema});
    ctx.emit("ready", fields.clone());
    if out.completed {
        ctx.emit("completed", fields);
    }
    if ctx.g.json {
        print_json(&out)?;
    } else if out.completed {
        println!(
            "migration \"{}\" started and completed; version schema: {}",
            out.migration, out.version_schema
        );
    } else {
        println!(
            "migration \"{}\" {}; the new version is ready in schema {}\n\
             point the new release at it (search_path = {}), then run `pgbaton complete`, or `pgbaton rollback`",
            out.migration,
            if out.resumed { "resumed and started" } else { "started" },
            out.version_schema,
            out.version_schema
        );
    }
    Ok(exit::OK)
}

/// `pgbaton complete`: refused while the old version still writes, unless `--force`.
pub async fn complete(args: CompleteArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    let name = if args.force {
        migrator.complete().await?
    } else {
        migrator
            .complete_when_quiet(Duration::from_secs(args.old_version_quiet))
            .await?
    };
    ctx.emit("completed", serde_json::json!({"migration": name}));
    if ctx.g.json {
        print_json(&serde_json::json!({"event": "completed", "migration": name}))?;
    } else {
        println!("migration \"{name}\" completed");
    }
    Ok(exit::OK)
}

/// `pgbaton rollback`: with `--force`, names the failed `down` steps left to undo by hand.
pub async fn rollback(args: RollbackArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    let out = migrator.rollback(args.force).await?;
    ctx.emit(
        "rolled_back",
        serde_json::json!({"migration": out.migration}),
    );
    if ctx.g.json {
        print_json(&out)?;
        return Ok(exit::OK);
    }
    println!("migration \"{}\" rolled back", out.migration);
    for s in &out.skipped {
        println!(
            "  SKIPPED (--force) \"{}\": it failed with: {}\n  undo by hand what it would have undone:\n    {}",
            s.title,
            s.error,
            s.sql.replace('\n', "\n    ")
        );
    }
    Ok(exit::OK)
}
