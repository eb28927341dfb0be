//! One module per command, or per close group of commands: each holds its clap arguments and
//! the function that runs it, and renders its own result. [`common`] has what they share
//! (connecting, hooks, loading a file); [`crate::output`] what they print alike.
//!
//! - [`init`] — `init`
//! - [`lifecycle`] — `start`, `complete`, `rollback`
//! - [`status`] — `status`, `wait`, `latest`
//! - [`plan`] — `plan`, `validate`
//! - [`migrate`] — `migrate`, `pull`
//! - [`import`] — `import pgroll`
//! - [`controls`] — `pause`, `set`, `resume`
//! - [`verify`] — `verify`
//! - [`lint`] — `lint`, `convert` (no database)
//! - [`demo`] — `demo` (its own server)

pub mod common;
pub mod controls;
pub mod demo;
pub mod import;
pub mod init;
pub mod lifecycle;
pub mod lint;
pub mod migrate;
pub mod plan;
pub mod status;
pub mod verify;
