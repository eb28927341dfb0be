//! `pgbaton init`: creates the state schema.

use pgbaton::error::{exit, Error};

use super::common::Context;
use crate::output::print_json;

pub async fn run(ctx: &Context) -> Result<u8, Error> {
    let migrator = ctx.connect().await?;
    migrator.init().await?;
    let state_schema = &ctx.g.state_schema;
    if ctx.g.json {
        print_json(&serde_json::json!({"event": "initialized", "state_schema": state_schema}))?;
    } else {
        println!("initialized: state schema \"{state_schema}\" is ready");
    }
    Ok(exit::OK)
}
