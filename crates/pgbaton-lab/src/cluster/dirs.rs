//! The clusters' temporary directories: a new private one per cluster, and the removal of
//! those a killed process left behind.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::user::{server_user, ServerUser};
use super::{io_err, ClusterError};

const DIR_PREFIX: &str = "pgbaton-cluster-";

/// Removes the directories of throwaway clusters whose process is gone (killed before it could
/// clean up) and whose server no longer runs. Only directories owned by this user (or by the
/// server user, when root) are touched. Returns the directories removed.
pub fn remove_stale_dirs() -> Vec<PathBuf> {
    let base = std::env::temp_dir();
    let Ok(entries) = fs::read_dir(&base) else {
        return Vec::new();
    };
    let own_uid = unsafe { libc::geteuid() };
    let server_uid = server_user().ok().flatten().map(|u| u.uid);
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| {
                rest.split('-')
                    .next()
                    .and_then(|pid| pid.parse::<i32>().ok())
            })
        else {
            continue;
        };
        if owner as u32 == std::process::id() || process_alive(owner) {
            continue;
        }
        // symlink_metadata: never follow a link planted in a shared temp directory.
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || (meta.uid() != own_uid && Some(meta.uid()) != server_uid) {
            continue;
        }
        if server_answers(&path) || postmaster_alive(&path.join("data")) {
            continue;
        }
        match fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::debug!(dir = %path.display(), "removed a stale cluster directory");
                removed.push(path);
            }
            Err(e) => {
                tracing::debug!(dir = %path.display(), "could not remove a stale cluster directory: {e}")
            }
        }
    }
    removed
}

/// True when a server still listens on a unix socket in `dir`.
fn server_answers(dir: &Path) -> bool {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(".s.PGSQL.")
                && !name.ends_with(".lock")
                && UnixStream::connect(entry.path()).is_ok()
        })
}

fn postmaster_alive(data_dir: &Path) -> bool {
    fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|text| {
            text.lines()
                .next()
                .and_then(|l| l.trim().parse::<i32>().ok())
        })
        .is_some_and(process_alive)
}

/// True when `pid` names a live (not zombie) process.
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // A zombie (exited, not yet reaped by its new parent) is dead for our purposes.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => true,
    }
}

static DIR_SEQ: AtomicU64 = AtomicU64::new(0);

/// A new, private directory `$TMPDIR/pgbaton-cluster-<pid>-<n>`, owned by the server user.
pub(super) fn create_cluster_dir(run_as: Option<ServerUser>) -> Result<PathBuf, ClusterError> {
    let base = std::env::temp_dir();
    loop {
        let n = DIR_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("{DIR_PREFIX}{}-{n}", std::process::id()));
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                if let Some(user) = run_as {
                    if let Err(e) = std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                    {
                        let _ = fs::remove_dir(&path);
                        return Err(io_err(format!(
                            "handing {} to the server user",
                            path.display()
                        ))(e));
                    }
                }
                return Ok(path);
            }
            // Left by an earlier process with the same pid whose directory is still in use.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(format!("creating {}", path.display()))(e)),
        }
    }
}
