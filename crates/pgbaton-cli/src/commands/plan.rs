//! `pgbaton plan` and `pgbaton validate`: what a migration would do to the live schema, and
//! whether it fits it; neither changes anything.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use pgbaton::error::{exit, Error};
use pgbaton::migrator::Migrator;
use pgbaton::plan::Plan;
use pgbaton::step::{Phase, Step};

use super::common::{load, Context};
use crate::output::print_json;

/// The phases in the order a plan is printed.
const PHASES: [Phase; 3] = [Phase::Start, Phase::Complete, Phase::Rollback];

#[derive(Args, Debug)]
pub struct PlanArgs {
    pub file: PathBuf,
    /// Output: text, markdown (a pull request comment) or json (same as --json)
    #[arg(long, value_enum, default_value = "text")]
    pub format: PlanFormat,
}

/// Output of `plan`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    pub file: PathBuf,
}

/// `pgbaton plan FILE`.
pub async fn plan(args: PlanArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    print_plan(&migrator, &args.file, args.format, ctx).await
}

/// Plans `file` against the live schema and prints the plan (also `start --dry-run`).
pub async fn print_plan(
    migrator: &Migrator,
    file: &Path,
    format: PlanFormat,
    ctx: &Context,
) -> Result<u8, Error> {
    let m = load(file)?;
    let plan = migrator.plan(&m).await?;
    if format == PlanFormat::Markdown {
        print!("{}", render_plan_markdown(&m.name, &plan));
    } else if ctx.g.json || format == PlanFormat::Json {
        print_json(&plan)?;
    } else {
        print!("{}", render_plan(&m.name, &plan));
    }
    Ok(exit::OK)
}

/// `pgbaton validate FILE`.
pub async fn validate(args: ValidateArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    let m = load(&args.file)?;
    let plan = migrator.validate(&m).await?;
    if ctx.g.json {
        print_json(
            &serde_json::json!({"event": "valid", "migration": m.name, "steps": plan.start.len() + plan.complete.len()}),
        )?;
    } else {
        println!(
            "{}: valid ({} operations)",
            args.file.display(),
            m.operations.len()
        );
    }
    Ok(exit::OK)
}

/// `pgbaton plan` output.
pub fn render_plan(name: &str, plan: &Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for phase in PHASES {
        let steps = plan.phase(phase);
        let _ = writeln!(out, "{phase} of {name}: {} step(s)", steps.len());
        for (i, step) in steps.iter().enumerate() {
            let _ = writeln!(out, "  {:>2}. {step}", i + 1);
        }
    }
    out
}

/// The plan as Markdown, for a pull request comment: one table per phase with each step's lock,
/// what it does under it, and a flag on steps that block the application.
pub fn render_plan_markdown(name: &str, plan: &Plan) -> String {
    let mut out = format!("### pgbaton plan: `{name}`\n\n");
    for phase in PHASES {
        markdown_phase(&mut out, phase, plan.phase(phase));
    }
    let violations = plan.lock_violations();
    if violations.is_empty() {
        out.push_str(
            "No step scans, rewrites or builds while holding a lock that blocks the application.\n",
        );
    } else {
        out.push_str("**Lock rule violations:**\n\n");
        for v in violations {
            out.push_str(&format!("- {v:?}\n"));
        }
    }
    out.push_str("\n<details><summary>SQL of every step</summary>\n\n```sql\n");
    for phase in PHASES {
        out.push_str(&format!("-- {phase}\n"));
        for s in plan.phase(phase) {
            for sql in s.statements() {
                out.push_str(&format!("{sql};\n"));
            }
        }
    }
    out.push_str("```\n\n</details>\n");
    out
}

/// One phase's table of steps.
fn markdown_phase(out: &mut String, phase: Phase, steps: &[Step]) {
    out.push_str(&format!("**{phase}** — {} step(s)\n\n", steps.len()));
    if steps.is_empty() {
        return;
    }
    out.push_str(
        "| # | step | table | lock | work | blocks the app |\n|---|---|---|---|---|---|\n",
    );
    for (i, s) in steps.iter().enumerate() {
        let blocks = if s.lock.blocks_writes() {
            "writes"
        } else {
            "no"
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:?} | {} |\n",
            i + 1,
            s.title.replace('|', "\\|"),
            s.table
                .as_ref()
                .map(|t| format!("`{t}`"))
                .unwrap_or_default(),
            s.lock.name(),
            s.work,
            blocks
        ));
    }
    out.push('\n');
}
