//! Where the PostgreSQL binaries are: the server's (`postgres`, `initdb`) for a major or the
//! default one, every installation found, and the client programs (`psql`, `pg_isready`,
//! `pg_basebackup`) that server directories without them borrow from another.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::process::client_command;
use super::user::ServerUser;
use super::ClusterError;

/// Environment variable naming the directory of the PostgreSQL server binaries.
pub const BINDIR_ENV: &str = "PGBATON_PG_BINDIR";

/// Environment variable listing more server installations, `:`-separated: each entry is a bin
/// directory (with `postgres` and `initdb`) or a directory of them (`<entry>/<name>/bin`, the
/// layout `.ci/pg-majors.sh` fills). See [`installed_servers`].
pub const BINDIRS_ENV: &str = "PGBATON_PG_BINDIRS";

/// Environment variable choosing the major version (e.g. `17`) [`find_bindir`] picks among the
/// [`installed_servers`] when [`BINDIR_ENV`] is not set.
pub const MAJOR_ENV: &str = "PGBATON_PG_MAJOR";

/// Environment variable naming the directory of the client programs (`psql`, `pg_isready`,
/// `pg_basebackup`, `pg_dump`) for server directories that ship none (the npm packages carry
/// only `postgres`, `initdb` and `pg_ctl`). Unset: `pg_config --bindir`, else the highest
/// `/usr/lib/postgresql/<version>/bin` with `psql`.
pub const CLIENT_BINDIR_ENV: &str = "PGBATON_PG_CLIENT_BINDIR";

const DEBIAN_BINDIRS: &str = "/usr/lib/postgresql";

/// Finds the PostgreSQL server binaries: `$PGBATON_PG_BINDIR` (which must hold them when set),
/// else, when `$PGBATON_PG_MAJOR` is set, that major among the [`installed_servers`], else
/// `pg_config --bindir`, else the highest `/usr/lib/postgresql/<version>/bin`.
pub fn find_bindir() -> Result<PathBuf, ClusterError> {
    let mut searched = Vec::new();
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        searched.push(format!(
            "{BINDIR_ENV}={} (no postgres and initdb there)",
            dir.display()
        ));
        return Err(ClusterError::BinariesNotFound { searched });
    }
    if let Some(value) = std::env::var(MAJOR_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        let major = value
            .trim()
            .parse::<u32>()
            .map_err(|_| ClusterError::BadMajor {
                value: value.clone(),
            })?;
        return find_bindir_for_major(major);
    }
    match pg_config_bindir() {
        Ok(dir) if has_server_binaries(&dir) => return Ok(dir),
        Ok(dir) => searched.push(format!(
            "`pg_config --bindir` = {} (no postgres and initdb there)",
            dir.display()
        )),
        Err(why) => searched.push(format!("`pg_config --bindir` ({why})")),
    }
    if let Some(dir) = debian_bindirs()
        .into_iter()
        .rev()
        .find(|dir| has_server_binaries(dir))
    {
        return Ok(dir);
    }
    searched.push(format!(
        "{DEBIAN_BINDIRS}/<version>/bin (none with postgres and initdb)"
    ));
    Err(ClusterError::BinariesNotFound { searched })
}

/// The server binaries of PostgreSQL `major` among the [`installed_servers`].
pub fn find_bindir_for_major(major: u32) -> Result<PathBuf, ClusterError> {
    let installed = installed_servers();
    if let Some(found) = installed.iter().find(|s| s.version.major == major) {
        return Ok(found.bindir.clone());
    }
    Err(ClusterError::MajorNotFound {
        major,
        installed: installed
            .iter()
            .map(|s| format!("{} ({})", s.version.full, s.bindir.display()))
            .collect(),
    })
}

/// A server version as `postgres --version` prints it: `postgres (PostgreSQL) 17.10`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// The major version: 14, 15, ... (for 9.6 and older, the first two parts times ten).
    pub major: u32,
    /// The version number as printed, e.g. `"17.10"` or `"18beta1"`.
    pub full: String,
}

impl ServerVersion {
    /// Parses the output of `postgres --version` (or of `SHOW server_version`).
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let full = text
            .split_whitespace()
            .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?
            .to_string();
        let digits = |s: &str| -> Option<u32> {
            let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            s[..end].parse().ok()
        };
        let mut parts = full.split('.');
        let first = digits(parts.next()?)?;
        let major = if first >= 10 {
            first
        } else {
            first * 10 + parts.next().and_then(digits).unwrap_or(0)
        };
        Some(ServerVersion { major, full })
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgreSQL {}", self.full)
    }
}

/// One installation of the PostgreSQL server binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    pub version: ServerVersion,
    pub bindir: PathBuf,
}

/// Every installed server, one per major (lowest major first), found in this order, the first
/// of a major winning: `$PGBATON_PG_BINDIR`, the entries of `$PGBATON_PG_BINDIRS`, `pg_config
/// --bindir`, `/usr/lib/postgresql/<version>/bin`. Directories whose `postgres --version` does
/// not run are left out.
pub fn installed_servers() -> Vec<Installation> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(list) = std::env::var_os(BINDIRS_ENV) {
        for entry in std::env::split_paths(&list).filter(|e| !e.as_os_str().is_empty()) {
            if has_server_binaries(&entry) {
                candidates.push(entry);
                continue;
            }
            let mut children: Vec<PathBuf> = fs::read_dir(&entry)
                .into_iter()
                .flatten()
                .flatten()
                .map(|child| child.path().join("bin"))
                .collect();
            children.sort();
            candidates.extend(children);
        }
    }
    if let Ok(dir) = pg_config_bindir() {
        candidates.push(dir);
    }
    candidates.extend(debian_bindirs());
    let mut found: Vec<Installation> = Vec::new();
    for bindir in candidates {
        if !has_server_binaries(&bindir) {
            continue;
        }
        let Ok(version) = server_version(&bindir, None) else {
            continue;
        };
        if found.iter().all(|f| f.version.major != version.major) {
            found.push(Installation { version, bindir });
        }
    }
    found.sort_by_key(|f| f.version.major);
    found
}

/// `postgres --version` of `bindir`, run as `run_as` when given (so a directory the server
/// user cannot read fails here, with a message that says so, rather than in `initdb`).
pub(super) fn server_version(
    bindir: &Path,
    run_as: Option<ServerUser>,
) -> Result<ServerVersion, ClusterError> {
    let program = bindir.join("postgres");
    let mut cmd = client_command(&program);
    cmd.arg("--version");
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid).current_dir("/");
    }
    let not_runnable = |detail: String| ClusterError::ServerNotRunnable {
        program: program.clone(),
        as_server_user: run_as.is_some(),
        detail,
    };
    let output = cmd.output().map_err(|e| not_runnable(e.to_string()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let mut detail = format!("{}", output.status);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.trim().is_empty() {
            detail.push_str(&format!(", {}", stderr.trim()));
        }
        return Err(not_runnable(detail));
    }
    ServerVersion::parse(&text).ok_or_else(|| not_runnable(format!("unexpected output {text:?}")))
}

/// `pg_config --bindir`, or why not.
fn pg_config_bindir() -> Result<PathBuf, String> {
    match Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {
            Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        }
        Ok(out) => Err(out.status.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// `/usr/lib/postgresql/<version>/bin`, lowest version first.
fn debian_bindirs() -> Vec<PathBuf> {
    let mut versions: Vec<(Vec<u64>, PathBuf)> = fs::read_dir(DEBIAN_BINDIRS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|p| p.parse::<u64>().ok())
                .collect::<Option<Vec<_>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// `program` beside the server binaries in `bindir`, else in the [`client_bindir`].
pub(super) fn client_program(bindir: &Path, program: &str) -> Result<PathBuf, ClusterError> {
    let beside = bindir.join(program);
    if is_executable(&beside) {
        return Ok(beside);
    }
    let (client_dir, searched) = client_bindir();
    match client_dir {
        Some(dir) if is_executable(&dir.join(program)) => Ok(dir.join(program)),
        _ => Err(ClusterError::ClientNotFound {
            program: program.to_string(),
            bindir: bindir.to_path_buf(),
            searched: searched.clone(),
        }),
    }
}

/// The directory of the client programs for server directories without them: `(the directory,
/// where it was looked for)`. Found once per process.
fn client_bindir() -> &'static (Option<PathBuf>, String) {
    static CLIENT_BINDIR: OnceLock<(Option<PathBuf>, String)> = OnceLock::new();
    CLIENT_BINDIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os(CLIENT_BINDIR_ENV) {
            let dir = PathBuf::from(dir);
            let searched = format!("{CLIENT_BINDIR_ENV}={}", dir.display());
            return (Some(dir), searched);
        }
        let has_psql = |dir: &PathBuf| is_executable(&dir.join("psql"));
        let found = pg_config_bindir()
            .ok()
            .filter(has_psql)
            .or_else(|| debian_bindirs().into_iter().rev().find(has_psql));
        let searched = format!(
            "{CLIENT_BINDIR_ENV} unset; `pg_config --bindir`; {DEBIAN_BINDIRS}/<version>/bin"
        );
        (found, searched)
    })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn has_server_binaries(dir: &Path) -> bool {
    ["postgres", "initdb"]
        .iter()
        .all(|name| is_executable(&dir.join(name)))
}
