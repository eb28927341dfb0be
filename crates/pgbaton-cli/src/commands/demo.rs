//! `pgbaton demo`: a live migration under load on a throwaway cluster, with a report.

use std::sync::Arc;

use pgbaton::error::{exit, Error};
use pgbaton_lab::demo::{DemoArgs, Note, NoteSink};

use super::common::Context;
use crate::output::print_json;

/// Notes on stderr (JSON lines on stdout with `--json`), the report at the end. Ctrl-C drops
/// the demo, which removes its cluster (or its schemas of an existing database). Runs before
/// any connection is made: the demo brings its own server.
pub async fn run(args: DemoArgs, ctx: &Context) -> Result<u8, Error> {
    let json = ctx.g.json;
    if let Some(path) = &args.report {
        // Before the run: a report that cannot be written should not cost a whole demo.
        pgbaton_lab::demo::report::check_writable(path)
            .map_err(|e| Error::Other(format!("demo: {e}")))?;
    }
    let options = args.options(ctx.g.postgres_url.clone(), ctx.g.settings().exec);
    let notes: NoteSink = Arc::new(move |note: &Note| {
        if json {
            println!("{}", serde_json::json!({"event": "demo", "note": note}));
        } else {
            eprintln!("{note}");
        }
    });
    let renderer = ctx.renderer.clone();
    let report = tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => {
            return Err(Error::Other(
                "interrupted: the demo's cluster (or its schemas) were removed".into(),
            ));
        }
        result = pgbaton_lab::demo::run(options, renderer, notes) => {
            result.map_err(|e| Error::Other(format!("demo: {e}")))?
        }
    };
    ctx.renderer.finish_bar();
    if json {
        print_json(&report)?;
    } else {
        print!("{report}");
    }
    if let Some(path) = &args.report {
        report
            .write_html(path)
            .map_err(|e| Error::Other(format!("demo: {e}")))?;
        if !json {
            println!("HTML report: {}", path.display());
        }
    }
    Ok(if report.ok() { exit::OK } else { exit::FAILED })
}
