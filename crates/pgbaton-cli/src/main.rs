//! The `pgbaton` binary: argument parsing and rendering ([`cli`]) over the `pgbaton` library, with the
//! `demo` command from `pgbaton-lab`.

mod cli;
mod lint_cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
