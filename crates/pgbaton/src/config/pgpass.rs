//! `.pgpass`: libpq's password file.

use super::*;

// ---------------------------------------------------------------------------------------------
// .pgpass

pub(super) struct PassEntry {
    pub(super) host: String,
    pub(super) port: String,
    pub(super) database: String,
    pub(super) user: String,
    pub(super) password: String,
}

impl PassEntry {
    pub(super) fn matches(&self, host: &str, port: u16, database: &str, user: &str) -> bool {
        let m = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        m(&self.host, host)
            && m(&self.port, &port.to_string())
            && m(&self.database, database)
            && m(&self.user, user)
    }
}

/// The host name `.pgpass` lines are matched against (libpq: `localhost` for the default socket
/// directory, else the host as given, else hostaddr).
pub(super) fn pgpass_host(t: &Target) -> String {
    match (&t.host, t.hostaddr) {
        (Some(HostName::Unix(dir)), _)
            if DEFAULT_SOCKET_DIRS.iter().any(|d| Path::new(d) == dir) =>
        {
            "localhost".into()
        }
        (Some(HostName::Unix(dir)), _) => dir.display().to_string(),
        (Some(HostName::Tcp(h)), _) => h.clone(),
        (None, Some(a)) => a.to_string(),
        (None, None) => "localhost".into(),
    }
}

/// The entries of a password file; `None` when it is missing, unreadable or (like libpq, on Unix)
/// readable by group or others.
pub(super) fn read_passfile(path: &Path) -> Option<Vec<PassEntry>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less; ignoring it",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    Some(parse_passfile(&text))
}

fn parse_passfile(text: &str) -> Vec<PassEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Fields split on unescaped ':'; '\' escapes ':' and '\'. The password is the rest.
        let mut fields: Vec<String> = Vec::with_capacity(5);
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        // A line with fewer than five fields is skipped, as libpq does.
        if let Ok([host, port, database, user, password]) = <[String; 5]>::try_from(fields) {
            entries.push(PassEntry {
                host,
                port,
                database,
                user,
                password,
            });
        }
    }
    entries
}
