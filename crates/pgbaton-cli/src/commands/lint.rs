//! `pgbaton lint` and `pgbaton convert`: arguments, reading files, output. Neither needs a
//! database.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use pgbaton::convert::{convert, Catalog};
use pgbaton::lint::{base_catalog, lint_file, render_github, render_human, Options, Report};

/// Output of `lint`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LintFormat {
    Human,
    Json,
    Github,
}

#[derive(Args, Debug)]
pub struct LintArgs {
    /// SQL migrations (`.sql`, or `-` for standard input) and pgroll-format files (`.yaml`,
    /// `.yml`, `.json`)
    #[arg(required = true)]
    pub files: Vec<String>,
    /// PostgreSQL major version the migrations run on (what is safe differs by major)
    #[arg(long)]
    pub pg_version: Option<u32>,
    /// Output format
    #[arg(long, value_enum, default_value = "human")]
    pub format: LintFormat,
    /// Config file with the project's defaults (`pg_version`, `allow`, `schema_sql`)
    /// [default: .pgbaton-lint.yaml when it exists]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Earlier migrations (SQL): tables they create count as existing, with known column types
    #[arg(long)]
    pub schema_sql: Vec<String>,
    /// Rules never to report (repeatable)
    #[arg(long)]
    pub allow: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The SQL migration (`-` for standard input)
    pub file: String,
    /// Earlier migrations (SQL), to know the old types and defaults of the tables the file changes
    #[arg(long)]
    pub schema_sql: Vec<String>,
    /// Write here instead of standard output
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

fn read(file: &str) -> Result<String, String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("standard input: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))
    }
}

/// The options: the config file, then the command line.
fn options(args: &LintArgs) -> Result<Options, String> {
    let path = args.config.clone().or_else(|| {
        let p = PathBuf::from(".pgbaton-lint.yaml");
        p.exists().then_some(p)
    });
    let mut o = match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_saphyr::from_str::<Options>(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => Options::default(),
    };
    if let Some(v) = args.pg_version {
        o.pg_version = v;
    }
    o.allow.extend(args.allow.iter().cloned());
    o.schema_sql.extend(args.schema_sql.iter().cloned());
    for a in &o.allow {
        if a != "all" && pgbaton::lint::rules::Rule::from_id(a).is_none() {
            return Err(format!("unknown rule {a:?} in allow"));
        }
    }
    Ok(o)
}

/// `pgbaton lint`: exit 0 when clean, 1 on a finding, 3 when a file cannot be read.
pub fn run_lint(args: &LintArgs) -> u8 {
    let result = (|| -> Result<(Report, Vec<(String, String)>), String> {
        let o = options(args)?;
        let base = base_catalog(&o)?;
        let mut report = Report::default();
        let mut sources = Vec::new();
        for f in &args.files {
            let text = read(f)?;
            let r = lint_file(f, &text, &o, &base);
            report.findings.extend(r.findings);
            report.statements.extend(r.statements);
            report.accepted += r.accepted;
            sources.push((f.clone(), text));
        }
        Ok((report, sources))
    })();
    let (report, sources) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return pgbaton::error::exit::INVALID;
        }
    };
    match args.format {
        LintFormat::Human => print!("{}", render_human(&report, &sources)),
        LintFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        LintFormat::Github => print!("{}", render_github(&report)),
    }
    if report.clean() {
        pgbaton::error::exit::OK
    } else {
        pgbaton::error::exit::FAILED
    }
}

/// `pgbaton convert`: the migration on standard output (or `--output`), the notes on stderr.
pub fn run_convert(args: &ConvertArgs, json: bool) -> u8 {
    let result = (|| -> Result<String, String> {
        let mut known = Catalog::default();
        for s in &args.schema_sql {
            known
                .learn_script(&read(s)?)
                .map_err(|e| format!("{s}: {e}"))?;
        }
        let text = read(&args.file)?;
        let conv = convert(&text, &known).map_err(|e| {
            let at = e
                .location
                .map(|l| {
                    let (line, col) = pgbaton::sql::Source::new(&text).line_col(l);
                    format!(":{line}:{col}")
                })
                .unwrap_or_default();
            format!("{}{at}: {}", args.file, e.message)
        })?;
        for n in &conv.notes {
            eprintln!(
                "{}:{}: {}: {}",
                args.file,
                n.line,
                n.kind_label(),
                n.message
            );
        }
        Ok(if json {
            conv.to_json()
        } else {
            conv.to_yaml(&args.file)
        })
    })();
    match result {
        Ok(out) => {
            if let Some(path) = &args.output {
                if let Err(e) = std::fs::write(path, out) {
                    eprintln!("error: {}: {e}", path.display());
                    return pgbaton::error::exit::FAILED;
                }
            } else {
                print!("{out}");
            }
            pgbaton::error::exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            pgbaton::error::exit::INVALID
        }
    }
}
