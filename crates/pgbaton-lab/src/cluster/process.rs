//! Running the PostgreSQL programs: commands with a clean libpq environment, children tied to
//! this process (the kernel stops them when it ends), and the escalating shutdown of a server.

use std::fmt::Write as _;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{io_err, ClusterError};

const FAST_SHUTDOWN_GRACE: Duration = Duration::from_secs(60);
const IMMEDIATE_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Spawns `cmd` as a child that the kernel stops when this process ends (`SIGQUIT` through
/// `PR_SET_PDEATHSIG`, armed from a thread that lives as long as the process), as the servers
/// are: for helper daemons of a test (PgBouncer) that must not outlive it.
pub fn spawn_tied_child(cmd: Command) -> io::Result<Child> {
    spawn_tied(cmd)
}

/// A command for `program`, with stdin closed and the caller's libpq environment (`PGHOST`,
/// `PGDATA`, `PGOPTIONS`, ...) removed, so only the explicit arguments count.
pub(super) fn client_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

pub(super) fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let _ = write!(text, " {}", arg.to_string_lossy());
    }
    text
}

/// Runs a client program to completion; an error carries its output.
pub(super) fn run(mut cmd: Command) -> Result<Output, ClusterError> {
    let description = describe(&cmd);
    let output = cmd
        .output()
        .map_err(io_err(format!("running `{description}`")))?;
    check(description, output)
}

/// Runs a server-side program to completion as a child tied to this process (see [`spawn_tied`]).
pub(super) fn run_tied(mut cmd: Command) -> Result<Output, ClusterError> {
    let description = describe(&cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = spawn_tied(cmd).map_err(io_err(format!("running `{description}`")))?;
    let output = child
        .wait_with_output()
        .map_err(io_err(format!("running `{description}`")))?;
    check(description, output)
}

fn check(command: String, output: Output) -> Result<Output, ClusterError> {
    if output.status.success() {
        return Ok(output);
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    Err(ClusterError::Command {
        command,
        status: output.status.to_string(),
        output: text.trim_end().to_string(),
    })
}

struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

static SPAWNER: Mutex<Option<mpsc::Sender<SpawnRequest>>> = Mutex::new(None);

/// Spawns `cmd` so that the kernel signals it when this process ends: `PR_SET_PDEATHSIG` fires
/// when the *thread* that forked the child exits, so every such child is forked by one thread
/// that lives as long as the process. The signal is `SIGQUIT`, which makes a postmaster shut
/// down immediately and take its backends with it, and kills other programs.
pub(super) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls.
    // It runs after std has switched uid/gid, which clears the death signal, so it is set here.
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGQUIT as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the death signal was armed.
            if libc::getppid() != parent {
                return Err(io::Error::other("the parent process exited during spawn"));
            }
            Ok(())
        });
    }
    let (reply, answer) = mpsc::channel();
    {
        let mut spawner = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = match spawner.as_ref() {
            Some(sender) => sender.clone(),
            None => {
                let (sender, requests) = mpsc::channel::<SpawnRequest>();
                std::thread::Builder::new()
                    .name("pgbaton-cluster-spawner".into())
                    .spawn(move || {
                        // The sender lives in a static, so this loop ends only with the process.
                        for mut request in requests {
                            let _ = request.reply.send(request.command.spawn());
                        }
                    })?;
                *spawner = Some(sender.clone());
                sender
            }
        };
        sender
            .send(SpawnRequest {
                command: cmd,
                reply,
            })
            .map_err(|_| io::Error::other("the cluster spawner thread is gone"))?;
    }
    answer
        .recv()
        .map_err(|_| io::Error::other("the cluster spawner thread is gone"))?
}

/// Fast shutdown (`SIGINT`), then immediate (`SIGQUIT`), then `SIGKILL`, each after a grace period.
pub(super) fn shut_down(child: &mut Child) -> io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let pid = child.id() as libc::pid_t;
    for (signal, grace) in [
        (libc::SIGINT, FAST_SHUTDOWN_GRACE),
        (libc::SIGQUIT, IMMEDIATE_SHUTDOWN_GRACE),
    ] {
        // SAFETY: plain syscall; `pid` is our unreaped child, so it cannot have been reused.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(
            pid,
            signal,
            "the server did not stop within {grace:?}; escalating"
        );
    }
    child.kill()?;
    child.wait()
}
