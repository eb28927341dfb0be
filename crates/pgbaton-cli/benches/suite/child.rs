//! Child processes: `pgbaton` and Reshape, their output, time and peak RSS.

use super::*;

pub(crate) struct ChildOut {
    pub(crate) wall: Duration,
    /// Peak resident set size (`ru_maxrss` from `wait4`), in kB.
    pub(crate) max_rss_kb: u64,
    /// Exit code; `None` when killed by a signal.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) fn best(runs: &[f64]) -> Option<f64> {
    runs.iter().copied().reduce(f64::min)
}

impl BackfillResult {
    pub(crate) fn update_s(&self) -> f64 {
        best(&self.update_runs).unwrap_or(f64::NAN)
    }
    pub(crate) fn pgbaton_backfill_s(&self) -> Option<f64> {
        best(&self.pgbaton_backfill_runs)
    }
    pub(crate) fn pgbaton_start_s(&self) -> Option<f64> {
        best(&self.pgbaton_start_runs)
    }
}

pub(crate) fn runs(v: &[f64]) -> String {
    v.iter()
        .map(|s| format!("{s:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ChildOut {
    pub(crate) fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub(crate) fn rss_mb(&self) -> f64 {
        self.max_rss_kb as f64 / 1024.0
    }

    pub(crate) fn failure(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        // An error chain ("Error: ...", "Caused by: ... ERROR: ...") says more than a tail.
        let mut picked: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains("Error") || l.contains("ERROR") || l.starts_with("error"))
            .take(3)
            .collect();
        if picked.is_empty() {
            picked = lines.iter().rev().take(3).rev().copied().collect();
        }
        format!("exit {:?}: {}", self.code, picked.join(" / ")).replace('|', "/")
    }
}

/// Runs `cmd` to completion (killing it after `limit`), with its own peak RSS.
pub(crate) fn run_child_blocking(mut cmd: Command, limit: Option<Duration>) -> Result<ChildOut> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().context("child stdout")?;
    let mut err = child.stderr.take().context("child stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let killer = limit.map(|limit| {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            if rx.recv_timeout(limit).is_err() {
                // SAFETY: plain syscall on our unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        (tx, handle)
    });
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data filled by the kernel; `pid` is our child, reaped here once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if let Some((tx, handle)) = killer {
        let _ = tx.send(());
        let _ = handle.join();
    }
    if rc < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    // The child is reaped: std must not wait for it again.
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    Ok(ChildOut {
        wall,
        max_rss_kb: usage.ru_maxrss.max(0) as u64,
        code,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

pub(crate) async fn run_child(cmd: Command, limit: Option<Duration>) -> Result<ChildOut> {
    tokio::task::spawn_blocking(move || run_child_blocking(cmd, limit))
        .await
        .context("child runner task")?
}

/// What `pgbaton --json start|complete` reported.
#[derive(Default, Debug)]
pub(crate) struct PgbatonRun {
    /// (phase, title, lock, work, elapsed ms, attempts), in order.
    pub(crate) steps: Vec<(String, String, String, String, f64, u64)>,
    pub(crate) lock_retries: u64,
    /// (rows, seconds) of the last backfill progress per table.
    pub(crate) backfill: BTreeMap<String, (u64, f64)>,
    /// The fill pass's reports (every table): after a batch, slowed by the budget, the longest
    /// budget wait (ms), the probe's baseline (ms); and the catch-up's last rows count.
    pub(crate) fill_reports: (u64, u64, f64, Option<f64>),
    pub(crate) catch_up_rows: u64,
    /// The fill pass's last rows done.
    pub(crate) fill_rows: u64,
    pub(crate) error: Option<String>,
}

impl PgbatonRun {
    pub(crate) fn parse(stdout: &str) -> PgbatonRun {
        let mut run = PgbatonRun::default();
        let mut started: BTreeMap<(String, u64), (String, String)> = BTreeMap::new();
        for line in stdout.lines() {
            let Ok(v) = serde_json::from_str::<Json>(line) else {
                continue;
            };
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            match v["event"].as_str() {
                Some("step_started") => {
                    started.insert(
                        (s("phase"), v["step"].as_u64().unwrap_or(0)),
                        (s("lock"), s("work")),
                    );
                }
                Some("step_finished") => {
                    let (lock, work) = started
                        .get(&(s("phase"), v["step"].as_u64().unwrap_or(0)))
                        .cloned()
                        .unwrap_or_default();
                    run.steps.push((
                        s("phase"),
                        s("title"),
                        lock,
                        work,
                        v["elapsed_ms"].as_f64().unwrap_or(0.0),
                        v["attempts"].as_u64().unwrap_or(1),
                    ));
                }
                Some("lock_retry") => run.lock_retries += 1,
                Some("backfill") => {
                    let p = &v["progress"];
                    if p["pass"].as_str() == Some("catch_up") {
                        run.catch_up_rows = p["rows_done"].as_u64().unwrap_or(0);
                    } else {
                        run.fill_rows = run.fill_rows.max(p["rows_done"].as_u64().unwrap_or(0));
                    }
                    if p["pass"].as_str() != Some("catch_up") && p["last_batch_ms"].is_number() {
                        let r = &mut run.fill_reports;
                        r.0 += 1;
                        if p["throttle"]["reason"].as_str() == Some("budget") {
                            r.1 += 1;
                            r.2 = r.2.max(p["throttle"]["delay_ms"].as_f64().unwrap_or(0.0));
                        }
                        if let Some(b) = p["settings"]["probe_baseline_ms"].as_f64() {
                            r.3 = Some(b);
                        }
                    }
                    if p["state"].as_str() == Some("lock_wait") {
                        run.lock_retries += 1;
                    }
                    run.backfill.insert(
                        p["table"].as_str().unwrap_or_default().to_owned(),
                        (
                            p["rows_done"].as_u64().unwrap_or(0),
                            p["elapsed_seconds"].as_f64().unwrap_or(0.0),
                        ),
                    );
                }
                Some("error") => run.error = Some(s("error")),
                _ => {}
            }
        }
        run
    }

    /// Seconds spent in backfill steps.
    pub(crate) fn backfill_s(&self) -> Option<f64> {
        let ms: Vec<f64> = self
            .steps
            .iter()
            .filter(|s| s.3 == "batched backfill")
            .map(|s| s.4)
            .collect();
        (!ms.is_empty()).then(|| ms.iter().sum::<f64>() / 1e3)
    }

    /// The fill and the catch-up of `start`: rows, seconds, how the budget paced it.
    pub(crate) fn fill_stats(&self) -> Option<FillStats> {
        let seconds = |prefix: &str| {
            self.steps
                .iter()
                .filter(|s| s.1.starts_with(prefix))
                .map(|s| s.4 / 1e3)
                .sum::<f64>()
        };
        let fill_s = seconds("backfill ");
        if fill_s == 0.0 {
            return None;
        }
        let rows = self.fill_rows;
        let (batches_reported, slowed_by_budget, max_delay_ms, probe_baseline_ms) =
            self.fill_reports;
        Some(FillStats {
            rows,
            seconds: fill_s,
            batches_reported,
            slowed_by_budget,
            max_delay_ms,
            probe_baseline_ms,
            catch_up_rows: self.catch_up_rows,
            catch_up_seconds: seconds("catch up on "),
        })
    }

    pub(crate) fn exclusive_steps(&self) -> Vec<(String, f64)> {
        self.steps
            .iter()
            .filter(|s| s.2 == "ACCESS EXCLUSIVE")
            .map(|s| (s.1.clone(), s.4))
            .collect()
    }
}
