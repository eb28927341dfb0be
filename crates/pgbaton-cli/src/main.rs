//! The `pgbaton` binary: argument parsing ([`cli`]), one module per command ([`commands`]) and
//! what they print alike ([`output`]), over the `pgbaton` library, with the `demo` command from
//! `pgbaton-lab`.

mod cli;
mod commands;
mod output;

fn main() -> std::process::ExitCode {
    cli::main()
}
