//! `--hook CMD`: an executable run for each event of a migration, with the event as one JSON
//! object on its stdin. Events: `started`, `backfill_done` (per table and pass), `throttled`
//! (when a backfill starts being slowed, and for each new reason), `paused`, `resumed`,
//! `ready` (the new version exists: `start` finished), `completed`, `rolled_back`, `failed`.
//!
//! Hooks run one at a time, in the order of the events, on a thread of their own: a slow hook
//! never holds up the migration, and the events it receives are never reordered. `CMD` is run
//! through `sh -c` (so it may carry arguments), with `PGBATON_EVENT` set to the event's name.
//! A hook that fails or exits non-zero is reported on stderr and does not stop the migration.
//! At the end of the command, pending hooks are given up to [`FLUSH_TIMEOUT`] to run.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backfill::{PauseReason, Progress, ProgressState};
use crate::executor::{Event, Observer};
use crate::step::Phase;

/// How long the end of a command waits for the hooks still queued.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `--hook` commands for events, in order.
pub struct Hooks {
    sender: Mutex<Option<mpsc::Sender<Value>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Per table and pass: whether it was throttled (and why) or paused, to report changes.
    seen: Mutex<HashMap<String, TableState>>,
    started: Mutex<bool>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct TableState {
    throttle: Option<&'static str>,
    paused: bool,
    done: bool,
}

impl Hooks {
    /// Starts the thread that runs `commands` (each, in order) for every event.
    pub fn new(commands: Vec<String>) -> Hooks {
        let (sender, receiver) = mpsc::channel::<Value>();
        let thread = std::thread::spawn(move || {
            for event in receiver {
                for command in &commands {
                    run_one(command, &event);
                }
            }
        });
        Hooks {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            seen: Mutex::new(HashMap::new()),
            started: Mutex::new(false),
        }
    }

    /// Queues `event` (a name) with `fields` (merged into the object).
    pub fn emit(&self, event: &str, fields: Value) {
        let mut object = json!({
            "event": event,
            "at": crate::version_writes::format_epoch_ms(crate::version_writes::now_ms()),
        });
        if let (Some(o), Value::Object(extra)) = (object.as_object_mut(), fields) {
            o.extend(extra);
        }
        if let Ok(guard) = self.sender.lock() {
            if let Some(sender) = guard.as_ref() {
                let _ = sender.send(object);
            }
        }
    }

    /// Lets the queued hooks run (up to [`FLUSH_TIMEOUT`]), then stops the thread.
    pub fn flush(&self) {
        if let Ok(mut guard) = self.sender.lock() {
            guard.take();
        }
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            eprintln!("warning: hooks still running after {FLUSH_TIMEOUT:?}; not waiting for them");
        }
    }

    fn backfill(&self, p: &Progress) {
        let key = p.label();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let before = seen.get(&key).cloned().unwrap_or_default();
        let mut now = before.clone();
        let base = || json!({"table": p.table, "pass": p.pass, "rows_done": p.rows_done});
        match &p.state {
            ProgressState::Paused(reason) => {
                now.paused = true;
                if !before.paused {
                    let mut fields = base();
                    fields["reason"] = json!(reason);
                    if let PauseReason::Operator = reason {
                        fields["by"] = json!("operator");
                    }
                    self.emit("paused", fields);
                }
            }
            ProgressState::Running | ProgressState::Done => {
                now.paused = false;
                if before.paused {
                    self.emit("resumed", base());
                }
            }
            ProgressState::LockWait { .. } => {}
        }
        if !matches!(p.state, ProgressState::Paused(_)) {
            now.throttle = p.throttle.as_ref().map(|t| t.kind());
            if let (Some(kind), true) = (now.throttle, now.throttle != before.throttle) {
                let mut fields = base();
                fields["reason"] = json!(kind);
                fields["detail"] = json!(p.throttle.as_ref().map(|t| t.to_string()));
                self.emit("throttled", fields);
            }
        }
        if p.state == ProgressState::Done && !before.done {
            now.done = true;
            self.emit("backfill_done", base());
        }
        seen.insert(key, now);
    }
}

impl Observer for Hooks {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::StepStarted { phase, .. } if *phase == Phase::Start => {
                let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
                if !*started {
                    *started = true;
                    self.emit("started", json!({}));
                }
            }
            Event::Backfill(p) => self.backfill(p),
            _ => {}
        }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.flush();
    }
}

fn run_one(command: &str, event: &Value) {
    let name = event["event"].as_str().unwrap_or_default().to_string();
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PGBATON_EVENT", &name)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: hook {command:?} for {name}: {e}");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = writeln!(stdin, "{event}");
    }
    match child.wait() {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("warning: hook {command:?} for {name} exited with {status}"),
        Err(e) => eprintln!("warning: hook {command:?} for {name}: {e}"),
    }
}
