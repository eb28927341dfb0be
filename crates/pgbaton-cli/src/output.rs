//! What every command prints the same way: JSON values on stdout, executor events (step lines,
//! the backfill progress bar) and errors on stderr. Each command renders its own result.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use pgbaton::backfill::Progress;
use pgbaton::error::Error;
use pgbaton::executor::{Event, Observer};

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::Other(format!("cannot render JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Reports the error that ends the command: on stderr with its causes, and with `--json` also
/// as a JSON line on stdout. Returns the exit code.
pub fn report_error(e: &Error, json: bool) -> u8 {
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "error", "error": e.to_string(), "exit_code": e.exit_code()})
        );
    }
    eprintln!("error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }
    e.exit_code()
}

/// Renders executor events: lines on stderr for people (a progress bar for backfills on a
/// terminal), JSON lines on stdout with `--json`.
pub struct Renderer {
    json: bool,
    verbose: u8,
    bar: Mutex<Option<indicatif::ProgressBar>>,
    tty: bool,
}

impl Renderer {
    pub fn new(json: bool, verbose: u8) -> Renderer {
        Renderer {
            json,
            verbose,
            bar: Mutex::new(None),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Removes the progress bar, before the command prints its result.
    pub fn finish_bar(&self) {
        if let Ok(mut bar) = self.bar.lock() {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
        }
    }

    fn line(&self, text: &str) {
        match self
            .bar
            .lock()
            .ok()
            .as_ref()
            .and_then(|b| b.as_ref().cloned())
        {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// An event as a line for people (steps only with `-v`).
    fn human_event(&self, event: &Event<'_>) {
        match event {
            Event::StepStarted { phase, ordinal, total, step } => {
                if self.verbose > 0 {
                    self.line(&format!("{phase} [{}/{total}] {} ...", ordinal + 1, step.title));
                }
            }
            Event::StepSkipped { phase, ordinal, total, step } => {
                self.line(&format!("{phase} [{}/{total}] {} (already done)", ordinal + 1, step.title))
            }
            Event::StepFinished { phase, ordinal, step, elapsed, attempts } => {
                self.finish_bar();
                let retries = if *attempts > 1 { format!(", {attempts} attempts") } else { String::new() };
                self.line(&format!(
                    "{phase} [{}] {} ({}{retries})",
                    ordinal + 1,
                    step.title,
                    human_duration(*elapsed)
                ));
            }
            Event::LockRetry { step, attempt, backoff, blockers } => {
                let who = blockers.iter().map(|b| b.to_string()).collect::<Vec<_>>().join("; ");
                self.line(&format!(
                    "  lock not available for \"{}\" (attempt {attempt}), retrying in {}{}",
                    step.title,
                    human_duration(*backoff),
                    if who.is_empty() { String::new() } else { format!("; held by {who}") }
                ));
            }
            Event::AutovacuumCancelled { step, pids } => self.line(&format!(
                "  cancelled autovacuum worker(s) {pids:?} blocking \"{}\" (PostgreSQL would after deadlock_timeout)",
                step.title
            )),
            Event::Backfill(p) => self.backfill(p),
        }
    }

    /// Backfill progress: a bar on a terminal, else a line with `-v`.
    fn backfill(&self, p: &Progress) {
        if !self.tty {
            if self.verbose > 0 {
                eprintln!("  {p}");
            }
            return;
        }
        let Ok(mut guard) = self.bar.lock() else {
            return;
        };
        let total = p.rows_estimate.unwrap_or(0).max(p.rows_done);
        let bar = guard.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "  backfill {msg} [{bar:30}] {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(p.label());
            bar
        });
        bar.set_length(total);
        bar.set_position(p.rows_done);
    }
}

impl Observer for Renderer {
    fn event(&self, event: &Event<'_>) {
        if self.json {
            println!("{}", json_event(event));
        } else {
            self.human_event(event);
        }
    }
}

/// An event as the JSON line `--json` prints.
fn json_event(event: &Event<'_>) -> serde_json::Value {
    match event {
        Event::StepStarted {
            phase,
            ordinal,
            total,
            step,
        } => serde_json::json!({
            "event": "step_started", "phase": phase, "step": ordinal + 1, "of": total,
            "title": step.title, "lock": step.lock.name(), "work": step.work.name()}),
        Event::StepSkipped {
            phase,
            ordinal,
            total,
            step,
        } => serde_json::json!({
            "event": "step_skipped", "phase": phase, "step": ordinal + 1, "of": total,
            "title": step.title, "reason": "already done (journal)"}),
        Event::StepFinished {
            phase,
            ordinal,
            step,
            elapsed,
            attempts,
        } => serde_json::json!({
            "event": "step_finished", "phase": phase, "step": ordinal + 1, "title": step.title,
            "elapsed_ms": elapsed.as_secs_f64() * 1000.0, "attempts": attempts}),
        Event::LockRetry {
            step,
            attempt,
            backoff,
            blockers,
        } => serde_json::json!({
            "event": "lock_retry", "title": step.title, "attempt": attempt,
            "backoff_ms": backoff.as_millis() as u64,
            "blockers": blockers.iter().map(|b| b.to_string()).collect::<Vec<_>>()}),
        Event::AutovacuumCancelled { step, pids } => serde_json::json!({
            "event": "autovacuum_cancelled", "title": step.title, "pids": pids}),
        Event::Backfill(p) => serde_json::json!({"event": "backfill", "progress": p}),
    }
}

fn human_duration(d: Duration) -> String {
    if d.as_secs() >= 60 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else if d.as_millis() >= 1000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}
