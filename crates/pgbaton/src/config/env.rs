//! The process environment pgbaton resolves connection settings from: `PG*` variables, the OS
//! user, the home directory and which default socket directories hold a server socket.

use super::*;

/// The process environment as resolution sees it: variables, the OS user, the home directory and
/// which Unix sockets exist. Tests build one from a map, so they never touch the real environment
/// and stay parallel-safe.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub(super) vars: BTreeMap<String, String>,
    pub(super) os_user: Option<String>,
    pub(super) os_user_error: Option<String>,
    pub(super) home: Option<PathBuf>,
    pub(super) sockets: SocketProbe,
}

#[derive(Debug, Clone)]
pub(super) enum SocketProbe {
    /// Look at the file system.
    Filesystem,
    /// Only these socket files exist (tests).
    Fixed(std::collections::BTreeSet<PathBuf>),
}

impl Default for SocketProbe {
    fn default() -> Self {
        SocketProbe::Fixed(Default::default())
    }
}

impl Environment {
    /// The real process environment: `PG*`, `PGBATON_*` and `DATABASE_URL` variables, the OS user,
    /// `$HOME`, and the file system for socket probing.
    pub fn from_process() -> Environment {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("PG") || k == "DATABASE_URL")
            .collect();
        let (os_user, os_user_error) = match whoami::username() {
            Ok(u) => (Some(u), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        Environment {
            vars,
            os_user,
            os_user_error,
            home,
            sockets: SocketProbe::Filesystem,
        }
    }

    /// An environment holding only `vars`: no OS user, no home directory, no Unix sockets.
    pub fn from_vars<I, K, V>(vars: I) -> Environment
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Environment {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..Environment::default()
        }
    }

    pub fn with_os_user(mut self, user: impl Into<String>) -> Environment {
        self.os_user = Some(user.into());
        self.os_user_error = None;
        self
    }

    /// The variable's value, `None` when unset or empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(super) fn socket_exists(&self, dir: &Path, port: u16) -> bool {
        let socket = dir.join(format!(".s.PGSQL.{port}"));
        match &self.sockets {
            SocketProbe::Filesystem => {
                use std::os::unix::fs::FileTypeExt;
                std::fs::metadata(&socket)
                    .map(|m| m.file_type().is_socket())
                    .unwrap_or(false)
            }
            SocketProbe::Fixed(sockets) => sockets.contains(&socket),
        }
    }

    /// Pretend a server socket exists in `dir` for `port` (tests of the default-host probe);
    /// switches off probing the real file system.
    pub fn with_socket(mut self, dir: impl AsRef<Path>, port: u16) -> Environment {
        let socket = dir.as_ref().join(format!(".s.PGSQL.{port}"));
        match &mut self.sockets {
            SocketProbe::Fixed(sockets) => {
                sockets.insert(socket);
            }
            SocketProbe::Filesystem => {
                self.sockets = SocketProbe::Fixed([socket].into_iter().collect());
            }
        }
        self
    }
}
