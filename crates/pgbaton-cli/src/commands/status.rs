//! What the database says about the migrations: `status`, `wait` and `latest`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use pgbaton::error::{exit, Error};

use super::common::Context;
use super::migrate::render_dir_check;
use crate::cli::Global;
use crate::output::print_json;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Also check the applied history against this directory: warn about applied files
    /// that changed ("divergent") or disappeared ("missing"), list the pending ones
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(value_enum)]
    pub what: WaitFor,
    /// Give up after this many seconds (exit 1)
    #[arg(long)]
    pub timeout: Option<u64>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    Ready,
    Completed,
}

#[derive(Args, Debug)]
pub struct LatestArgs {
    #[arg(value_enum)]
    pub what: Latest,
    /// Answer from the newest file of this directory, without a database: what a release
    /// built from it should pin (the version `migrate DIR` gives it)
    #[arg(long, value_name = "DIR")]
    pub local: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Latest {
    Schema,
    Migration,
    Url,
}

/// `pgbaton status`: with `--dir`, also the directory's pending and changed files.
pub async fn status(args: StatusArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    let json = ctx.g.json;
    match args.dir {
        None => {
            let mut status = migrator.status().await?;
            if let Some(active) = &mut status.active {
                // Two readings a second apart, for each version's writes per second.
                active.versions = migrator
                    .version_writes(Some(Duration::from_secs(1)))
                    .await?;
            }
            if json {
                print_json(&status)?;
            } else {
                print!("{}", render_status(&status));
            }
        }
        Some(dir) => {
            let status = migrator.status().await?;
            let check = migrator.check_dir(&dir).await?;
            if json {
                print_json(&serde_json::json!({"status": status, "directory": check}))?;
            } else {
                print!("{}", render_status(&status));
                print!("{}", render_dir_check(&check));
            }
        }
    }
    Ok(exit::OK)
}

/// `pgbaton wait ready|completed`.
pub async fn wait(args: WaitArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    let completed = args.what == WaitFor::Completed;
    let (name, vs) = migrator
        .wait_for(
            completed,
            args.timeout.map(Duration::from_secs),
            Duration::from_millis(500),
        )
        .await?;
    let state = if completed { "completed" } else { "ready" };
    if ctx.g.json {
        print_json(&serde_json::json!({"event": state, "migration": name, "version_schema": vs}))?;
    } else {
        println!("migration \"{name}\" is {state}; version schema: {vs}");
    }
    Ok(exit::OK)
}

/// `pgbaton latest schema|migration|url`: from the database, or with `--local` from a
/// directory alone.
pub async fn latest(args: LatestArgs, ctx: &Context) -> Result<u8, Error> {
    if let Some(dir) = &args.local {
        return latest_local(&ctx.g, args.what, dir);
    }
    let migrator = ctx.connect().await?;
    let Some((name, vs)) = migrator.latest().await? else {
        return Err(Error::Other(format!(
            "no migration has been applied to schema {}",
            ctx.g.schema
        )));
    };
    let text = match args.what {
        Latest::Schema => vs,
        Latest::Migration => name,
        Latest::Url => migrator.conn().url_with_search_path(&vs),
    };
    println!("{text}");
    Ok(exit::OK)
}

/// `latest ... --local DIR`: from the directory alone.
fn latest_local(g: &Global, what: Latest, dir: &Path) -> Result<u8, Error> {
    let Some((name, vs)) = pgbaton::one_version::latest_local(dir, &g.schema)? else {
        return Err(Error::Other(format!(
            "{} has no migration file",
            dir.display()
        )));
    };
    let text = match what {
        Latest::Schema => vs,
        Latest::Migration => name,
        Latest::Url => g.conn()?.url_with_search_path(&vs),
    };
    println!("{text}");
    Ok(exit::OK)
}

fn render_status(s: &pgbaton::migrator::Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if !s.initialized {
        let _ = writeln!(
            out,
            "not initialized: run `pgbaton init` (state schema \"{}\")",
            s.state_schema
        );
        return out;
    }
    let _ = writeln!(out, "schema: {}", s.schema);
    if s.backfills_paused {
        let _ = writeln!(
            out,
            "backfills: paused by `pgbaton pause` (`pgbaton resume` lets them go on)"
        );
    }
    let _ = writeln!(
        out,
        "latest completed: {} ({} completed)",
        s.latest.as_deref().unwrap_or("none"),
        s.completed_count
    );
    match &s.active {
        None => {
            let _ = writeln!(out, "active migration: none");
        }
        Some(a) => render_active(&mut out, a),
    }
    out
}

/// The active migration's part of `status`.
fn render_active(out: &mut String, a: &pgbaton::migrator::ActiveStatus) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "active migration: {} ({}) since {}",
        a.name, a.status, a.started_at
    );
    let _ = writeln!(out, "  version schema: {}", a.version_schema);
    if !a.bundled.is_empty() {
        let _ = writeln!(
            out,
            "  one version with: {} (and {})",
            a.bundled.join(", "),
            a.name
        );
    }
    for p in &a.phases {
        let _ = writeln!(out, "  {}: {}/{} steps done", p.phase, p.done, p.total);
        if let Some(f) = &p.failed {
            let _ = writeln!(out, "    failed: {f}");
        }
    }
    for b in &a.backfills {
        let _ = writeln!(out, "  backfill {b}");
    }
    if let Some(c) = &a.controls {
        let _ = writeln!(out, "  controls: {c}");
    }
    for v in &a.versions {
        let _ = writeln!(out, "  writes: {v}");
    }
}
