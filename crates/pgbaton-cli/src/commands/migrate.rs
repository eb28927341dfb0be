//! A directory of migration files and the database: `migrate` applies the pending ones, `pull`
//! writes the applied ones.

use std::path::PathBuf;

use clap::Args;

use pgbaton::error::{exit, Error};
use pgbaton::migrator::Migrator;

use super::common::Context;
use crate::output::print_json;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    pub dir: PathBuf,
    /// Complete the last one too
    #[arg(long)]
    pub complete: bool,
    /// Start every pending file together as ONE migration: one version schema (named after
    /// the last file), one backfill per table, one `complete`, one `rollback`; the old
    /// release keeps its schema until that complete
    #[arg(long)]
    pub one_version: bool,
    /// Refuse (changing nothing) unless exactly one file is pending
    #[arg(long)]
    pub expect_one: bool,
    /// Accept applied files whose content changed since they were applied (their new
    /// checksum is recorded)
    #[arg(long)]
    pub accept_divergent: bool,
    /// Accept applied migrations that have no file in the directory
    #[arg(long)]
    pub accept_missing: bool,
    /// Print what would run (the combined plan with --one-version) and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    pub dir: PathBuf,
}

/// `pgbaton migrate DIR`: with `--dry-run`, what would run.
pub async fn migrate(args: MigrateArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    if args.dry_run {
        dry_run(&migrator, &args, ctx).await?;
    } else {
        apply(&migrator, &args, ctx).await?;
    }
    Ok(exit::OK)
}

/// `migrate --dry-run`: the combined plan with `--one-version`, else the pending files.
async fn dry_run(migrator: &Migrator, args: &MigrateArgs, ctx: &Context) -> Result<(), Error> {
    if args.one_version {
        let (name, plan) = migrator.plan_one_version(&args.dir).await?;
        if ctx.g.json {
            print_json(&plan)?;
        } else {
            print!("{}", super::plan::render_plan(&name, &plan));
        }
    } else {
        let check = migrator.check_dir(&args.dir).await?;
        if ctx.g.json {
            print_json(&check)?;
        } else {
            print!("{}", render_dir_check(&check));
        }
    }
    Ok(())
}

/// Applies the pending files and says what was applied.
async fn apply(migrator: &Migrator, args: &MigrateArgs, ctx: &Context) -> Result<(), Error> {
    let complete = args.complete;
    let options = pgbaton::one_version::MigrateOptions {
        complete,
        one_version: args.one_version,
        expect_one: args.expect_one,
        accept: pgbaton::history::Accept {
            divergent: args.accept_divergent,
            missing: args.accept_missing,
        },
    };
    let applied = migrator.migrate_with(&args.dir, &options).await?;
    if let Some(last) = applied.last() {
        let fields = serde_json::json!({"migration": last});
        ctx.emit("ready", fields.clone());
        if complete {
            ctx.emit("completed", fields);
        }
    }
    if ctx.g.json {
        return print_json(
            &serde_json::json!({"event": "migrated", "applied": applied, "completed_last": complete}),
        );
    }
    if applied.is_empty() {
        println!(
            "nothing to migrate: the database is up to date with {}",
            args.dir.display()
        );
        return Ok(());
    }
    println!(
        "applied {} migration(s): {}",
        applied.len(),
        applied.join(", ")
    );
    if !complete && args.one_version && applied.len() > 1 {
        println!(
            "they are active as one version: run `pgbaton complete` when the new release is out"
        );
    } else if !complete {
        println!("the last one is active: run `pgbaton complete` when the new release is out");
    }
    Ok(())
}

/// `pgbaton pull DIR`: the paths written.
pub async fn pull(args: PullArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    let written = migrator.pull(&args.dir).await?;
    if ctx.g.json {
        print_json(&written)?;
    } else {
        for p in written {
            println!("{}", p.display());
        }
    }
    Ok(exit::OK)
}

/// The history checked against a directory (`migrate --dry-run`, `status --dir`).
pub fn render_dir_check(c: &pgbaton::one_version::DirCheck) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for f in &c.findings {
        let _ = writeln!(out, "warning: {f}");
    }
    if let Some(order) = &c.order {
        let _ = writeln!(
            out,
            "warning: the history does not match {}: {order}",
            c.dir
        );
    }
    if c.pending.is_empty() {
        let _ = writeln!(out, "pending in {}: none", c.dir);
    } else {
        let _ = writeln!(out, "pending in {}: {}", c.dir, c.pending.join(", "));
    }
    out
}
