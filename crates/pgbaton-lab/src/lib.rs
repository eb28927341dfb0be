//! The pgbaton lab: what the demo, the tests and the benchmarks need around the library, and what a
//! user who embeds the library never compiles.
//! - [`cluster`]: a throwaway PostgreSQL server started from the installed binaries.
//! - [`workload`]: concurrent clients of the old and the new release, with latency and a write log.
//! - [`demo`]: `pgbaton demo`, a live migration under load with a report.

pub mod cluster;
pub mod demo;
pub mod workload;
