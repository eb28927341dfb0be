//! `pgbaton import pgroll`: takes over the migration history of another tool.

use clap::{Args, Subcommand};

use pgbaton::error::{exit, Error};

use super::common::Context;
use crate::output::print_json;

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub from: ImportFrom,
}

#[derive(Subcommand, Debug)]
pub enum ImportFrom {
    /// Record pgroll's completed history of the schema as pgbaton's, so `migrate DIR`
    /// continues with the first file pgroll never applied. Refused, changing nothing, while
    /// pgroll has a migration in progress or when the histories disagree
    Pgroll {
        /// The schema pgroll keeps its state in (`pgroll --pgroll-schema`)
        #[arg(long, default_value = "pgroll")]
        pgroll_schema: String,
    },
}

pub async fn run(args: ImportArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    let ImportFrom::Pgroll { pgroll_schema } = args.from;
    let out = migrator.import_pgroll(&pgroll_schema).await?;
    if ctx.g.json {
        print_json(&out)?;
    } else {
        print!("{}", render_import(&out));
    }
    Ok(exit::OK)
}

fn render_import(o: &pgbaton::pgroll_import::ImportOutcome) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if o.imported.is_empty() {
        let _ = writeln!(
            out,
            "nothing to import: pgbaton already has pgroll's {} migration(s) of schema {}",
            o.already, o.schema
        );
    } else {
        let _ = writeln!(
            out,
            "imported {} migration(s) of schema {} from pgroll ({}): {}",
            o.imported.len(),
            o.schema,
            o.pgroll_schema,
            o.imported.join(", ")
        );
    }
    if !o.inferred.is_empty() {
        let _ = writeln!(
            out,
            "  {} inferred by pgroll from DDL run outside it (kept in the history, not expected as files)",
            o.inferred.join(", ")
        );
    }
    if let Some(vs) = &o.version_schema {
        let _ = writeln!(
            out,
            "  the running release's version schema {vs} keeps working until pgbaton's first `complete`"
        );
    }
    if !o.pgroll_event_triggers.is_empty() {
        let _ = writeln!(
            out,
            "  note: pgroll's event triggers ({}) are still installed and will record pgbaton's DDL as \
             inferred pgroll migrations; drop them once you no longer run pgroll",
            o.pgroll_event_triggers.join(", ")
        );
    }
    out
}
