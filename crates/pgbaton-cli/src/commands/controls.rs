//! The running backfills' controls, from any machine: `pause`, `set` and `resume` (which also
//! continues an interrupted start).

use clap::Args;

use pgbaton::backfill::{ControlKey, ControlSetting};
use pgbaton::error::{exit, Error};

use super::common::Context;
use crate::output::print_json;

#[derive(Args, Debug)]
pub struct SetArgs {
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub settings: Vec<ControlSetting>,
}

/// `pgbaton pause`.
pub async fn pause(ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    migrator.pause().await?;
    println!(
        "backfill of schema {} paused (between batches); `pgbaton resume` continues",
        ctx.g.schema
    );
    Ok(exit::OK)
}

/// `pgbaton set KEY=VALUE...`.
pub async fn set(args: SetArgs, ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    let settings = args.settings;
    migrator.set_controls(&settings).await?;
    if ctx.g.json {
        print_json(&serde_json::json!({"event": "set", "settings": settings}))?;
    } else {
        let text = settings
            .iter()
            .map(describe_setting)
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "backfills of schema {}: {text} (from their next batch)",
            ctx.g.schema
        );
    }
    Ok(exit::OK)
}

/// `key=value` as people read it (the latency budget as a percentage).
fn describe_setting(s: &ControlSetting) -> String {
    let value = match s.value {
        Some(v) if s.key == ControlKey::MaxLatencyIncrease => pgbaton::backfill::describe_budget(v),
        Some(v) => format!("{v}"),
        None => "default".into(),
    };
    format!("{}={value}", s.key.name())
}

/// `pgbaton resume`.
pub async fn resume(ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    let continued = migrator.resume().await?;
    ctx.renderer.finish_bar();
    match continued {
        Some(name) => {
            ctx.emit("ready", serde_json::json!({"migration": name}));
            println!("the interrupted start of \"{name}\" was continued and is done")
        }
        None => println!("backfills of schema {} resumed", ctx.g.schema),
    }
    Ok(exit::OK)
}
