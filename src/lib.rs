//! pgbaton: zero-downtime PostgreSQL schema migrations with the expand/contract pattern.
//!
//! Layers, top to bottom (data flows down, nothing calls up):
//! - [`migrator`]: the public API (init/start/complete/rollback/status/migrate), holds the advisory lock.
//! - [`plan`] and [`ops`]: each operation validates against a [`schema::Schema`] and returns
//!   [`step::Step`]s as data; nothing in these modules performs I/O.
//! - [`executor`]: runs steps with lock timeouts, retries and the journal in [`state`].
//! - [`backfill`], [`views`], [`triggers`]: the machinery behind the steps.
//! - [`catalog`]: reads `pg_catalog` into the schema model; [`pg`] and [`config`]: connections.
//! - [`cluster`], [`workload`]: a throwaway PostgreSQL server and a concurrent client workload,
//!   shared by `pgbaton demo`, the benchmarks and the tests.

pub mod backfill;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod convert;
pub mod copies;
pub mod demo;
pub mod error;
pub mod executor;
pub mod format;
pub mod ident;
pub mod lint;
pub mod migrator;
pub mod ops;
pub mod pg;
pub mod plan;
pub mod schema;
pub mod sql;
pub mod state;
pub mod step;
pub mod triggers;
pub mod verify;
pub mod views;
pub mod workload;

pub use error::{Error, Result};
