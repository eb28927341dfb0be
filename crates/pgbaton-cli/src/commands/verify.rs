//! `pgbaton verify`: the dual-written columns against their `up`/`down` expressions.

use clap::Args;

use pgbaton::error::{exit, Error};

use super::common::Context;
use crate::output::print_json;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Rows per batch
    #[arg(long, default_value_t = 10_000)]
    pub batch_size: u32,
    /// How many mismatching keys to show per table
    #[arg(long, default_value_t = 20)]
    pub sample: usize,
}

/// Exits with [`exit::MISMATCH`] when any table has a mismatching row.
pub async fn run(args: VerifyArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    let opts = pgbaton::verify::VerifyOptions {
        batch_size: args.batch_size,
        sample_limit: args.sample,
    };
    let reports = migrator.verify(&opts).await?;
    for r in &reports {
        pgbaton::metrics::record_verify(&r.table, r.mismatched_rows);
    }
    if ctx.g.json {
        print_json(&reports)?;
    } else if reports.is_empty() {
        println!("the active migration keeps no columns in sync: nothing to verify");
    } else {
        for r in &reports {
            println!("{r}");
        }
    }
    if reports.iter().any(|r| !r.is_clean()) {
        return Ok(exit::MISMATCH);
    }
    Ok(exit::OK)
}
