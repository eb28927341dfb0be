//! pgbaton: zero-downtime PostgreSQL schema migrations with the expand/contract pattern.
//!
//! Layers, top to bottom (data flows down, nothing calls up):
//! - [`migrator`]: the public API (init/start/complete/rollback/status/migrate), holds the advisory lock.
//!   [`one_version`] (`migrate`'s options, several files as one version), [`history`] (checksums,
//!   the history against a directory) and [`pgroll_import`] (taking over from pgroll) extend it.
//! - [`plan`] and [`ops`]: each operation validates against a [`schema::Schema`] and returns
//!   [`step::Step`]s as data; nothing in these modules performs I/O.
//! - [`executor`]: runs steps with lock timeouts, retries and the journal in [`state`].
//! - [`backfill`], [`views`], [`triggers`]: the machinery behind the steps.
//! - [`catalog`]: reads `pg_catalog` into the schema model; [`pg`] and [`config`]: connections.
//! - [`fragment`]: user SQL fragments checked with PostgreSQL's parser when a file is read;
//!   [`precheck`]: the file against the live database before any DDL; [`diagnose`]: names the row
//!   behind a failure.
//!
//! The command line lives in the `pgbaton-cli` crate; throwaway servers, the workload and the demo in
//! `pgbaton-lab`.

pub mod backfill;
pub mod catalog;
pub mod config;
pub mod convert;
pub mod copies;
pub mod diagnose;
pub mod error;
pub mod executor;
pub mod format;
pub mod fragment;
pub mod history;
pub mod hooks;
pub mod ident;
pub mod lint;
pub mod metrics;
pub mod migrator;
pub mod one_version;
pub mod ops;
pub mod path;
pub mod pg;
pub mod pgroll_import;
pub mod plan;
pub mod planner;
pub mod precheck;
pub mod schema;
pub mod sql;
pub mod state;
pub mod step;
pub mod triggers;
pub mod verify;
pub mod version_writes;
pub mod views;

pub use error::{Error, Result};
