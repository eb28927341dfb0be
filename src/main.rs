//! The `pgbaton` binary: a thin shell over the library's CLI module.

fn main() -> std::process::ExitCode {
    pgbaton::cli::main()
}
