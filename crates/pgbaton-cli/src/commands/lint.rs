//! Command-line glue of `lint`, `convert` and `plan --format`: arguments, reading files, output.
//! No database is needed for `lint` and `convert`.

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

/// Output of `plan`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
}

/// The plan as Markdown, for a pull request comment: one table per phase with each step's lock,
/// what it does under it, and a flag on steps that block the application.
pub fn render_plan_markdown(name: &str, plan: &pgbaton::plan::Plan) -> String {
    let mut out = format!("### pgbaton plan: `{name}`\n\n");
    let violations = plan.lock_violations();
    for phase in [
        pgbaton::step::Phase::Start,
        pgbaton::step::Phase::Complete,
        pgbaton::step::Phase::Rollback,
    ] {
        let steps = plan.phase(phase);
        out.push_str(&format!("**{phase}** — {} step(s)\n\n", steps.len()));
        if steps.is_empty() {
            continue;
        }
        out.push_str(
            "| # | step | table | lock | work | blocks the app |\n|---|---|---|---|---|---|\n",
        );
        for (i, s) in steps.iter().enumerate() {
            let blocks = if s.lock.blocks_writes() {
                "writes"
            } else {
                "no"
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:?} | {} |\n",
                i + 1,
                s.title.replace('|', "\\|"),
                s.table
                    .as_ref()
                    .map(|t| format!("`{t}`"))
                    .unwrap_or_default(),
                s.lock.name(),
                s.work,
                blocks
            ));
        }
        out.push('\n');
    }
    if violations.is_empty() {
        out.push_str(
            "No step scans, rewrites or builds while holding a lock that blocks the application.\n",
        );
    } else {
        out.push_str("**Lock rule violations:**\n\n");
        for v in violations {
            out.push_str(&format!("- {v:?}\n"));
        }
    }
    out.push_str("\n<details><summary>SQL of every step</summary>\n\n```sql\n");
    for phase in [
        pgbaton::step::Phase::Start,
        pgbaton::step::Phase::Complete,
        pgbaton::step::Phase::Rollback,
    ] {
        out.push_str(&format!("-- {phase}\n"));
        for s in plan.phase(phase) {
            for sql in s.statements() {
                out.push_str(&format!("{sql};\n"));
            }
        }
    }
    out.push_str("```\n\n</details>\n");
    out
}
