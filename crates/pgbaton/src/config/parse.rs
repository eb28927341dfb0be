//! The libpq options pgbaton knows, and the two libpq string forms (URIs and `key=value`).

use super::*;

// ---------------------------------------------------------------------------------------------
// The libpq options pgbaton knows.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Support {
    /// Honoured.
    Yes,
    /// Accepted and without effect (obsolete, or only meaningful for GSSAPI, which is not used).
    Ignored,
    /// Refused with this reason when set.
    No(&'static str),
}

pub(super) struct OptionSpec {
    pub(super) key: &'static str,
    pub(super) env: Option<&'static str>,
    pub(super) support: Support,
}

const fn opt(key: &'static str, env: Option<&'static str>, support: Support) -> OptionSpec {
    OptionSpec { key, env, support }
}

/// libpq's connection options (PostgreSQL 17), in the order URLs are rendered.
pub(super) const OPTIONS: &[OptionSpec] = &[
    opt("host", Some("PGHOST"), Support::Yes),
    opt("hostaddr", Some("PGHOSTADDR"), Support::Yes),
    opt("port", Some("PGPORT"), Support::Yes),
    opt("user", Some("PGUSER"), Support::Yes),
    opt("password", Some("PGPASSWORD"), Support::Yes),
    opt("passfile", Some("PGPASSFILE"), Support::Yes),
    opt("dbname", Some("PGDATABASE"), Support::Yes),
    opt("sslmode", Some("PGSSLMODE"), Support::Yes),
    opt("sslnegotiation", Some("PGSSLNEGOTIATION"), Support::Yes),
    opt("sslrootcert", Some("PGSSLROOTCERT"), Support::Yes),
    opt("sslcert", Some("PGSSLCERT"), Support::Yes),
    opt("sslkey", Some("PGSSLKEY"), Support::Yes),
    opt("sslsni", Some("PGSSLSNI"), Support::Yes),
    opt("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION"), Support::Yes),
    opt("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION"), Support::Yes),
    opt("sslcertmode", Some("PGSSLCERTMODE"), Support::Yes),
    opt("sslpassword", None, Support::Yes),
    opt("requiressl", Some("PGREQUIRESSL"), Support::Yes),
    opt("application_name", Some("PGAPPNAME"), Support::Yes),
    opt("fallback_application_name", None, Support::Yes),
    opt("connect_timeout", Some("PGCONNECT_TIMEOUT"), Support::Yes),
    opt("client_encoding", Some("PGCLIENTENCODING"), Support::Yes),
    opt("keepalives", None, Support::Yes),
    opt("keepalives_idle", None, Support::Yes),
    opt("keepalives_interval", None, Support::Yes),
    opt("keepalives_count", None, Support::Yes),
    opt("tcp_user_timeout", None, Support::Yes),
    opt("target_session_attrs", Some("PGTARGETSESSIONATTRS"), Support::Yes),
    opt("channel_binding", Some("PGCHANNELBINDING"), Support::Yes),
    opt("load_balance_hosts", Some("PGLOADBALANCEHOSTS"), Support::Yes),
    opt("gssencmode", Some("PGGSSENCMODE"), Support::Yes),
    opt("options", Some("PGOPTIONS"), Support::Yes),
    opt("sslcompression", Some("PGSSLCOMPRESSION"), Support::Ignored),
    opt("krbsrvname", Some("PGKRBSRVNAME"), Support::Ignored),
    opt("gsslib", Some("PGGSSLIB"), Support::Ignored),
    opt("gssdelegation", Some("PGGSSDELEGATION"), Support::Ignored),
    opt("service", Some("PGSERVICE"), Support::No("service files (pg_service.conf) are not read; put the settings in the connection string")),
    opt("requirepeer", Some("PGREQUIREPEER"), Support::No("peer-user checks on Unix sockets are not implemented")),
    opt("require_auth", Some("PGREQUIREAUTH"), Support::No("restricting authentication methods is not implemented")),
    opt("sslcrl", Some("PGSSLCRL"), Support::No("certificate revocation lists are not implemented")),
    opt("sslcrldir", Some("PGSSLCRLDIR"), Support::No("certificate revocation lists are not implemented")),
    opt("replication", None, Support::No("replication connections are not used")),
];

pub(super) fn spec(key: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|s| s.key == key)
}

// ---------------------------------------------------------------------------------------------
// Parsing libpq connection strings.

/// Parses a libpq connection string, URI (`postgres://`, `postgresql://`) or `key=value` form,
/// into (key, value) pairs in order (later ones win). Keys are checked against libpq's list.
pub(super) fn parse_conninfo(s: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let s = s.trim();
    let pairs = if let Some(rest) = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
    {
        parse_uri(rest, origin)?
    } else if s.contains('=') {
        parse_keyword_value(s, origin)?
    } else {
        return Err(ConfigError::Syntax {
            origin: origin.into(),
            message: "expected a postgres:// or postgresql:// URL or key=value pairs".into(),
        });
    };
    for (k, _) in &pairs {
        if spec(k).is_none() {
            return Err(ConfigError::UnknownOption {
                key: k.clone(),
                origin: origin.into(),
            });
        }
    }
    Ok(pairs)
}

fn syntax(origin: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Syntax {
        origin: origin.into(),
        message: message.into(),
    }
}

/// libpq's `conninfo_uri_parse_options`, including its multi-host authority
/// (`host1:5432,[::1]:5433`) and query parameters (`?host=/dir&sslmode=require`, `ssl=true`).
fn parse_uri(rest: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut p = rest;

    // userinfo: everything before an '@' that comes before any '/' (as libpq scans it).
    if let Some(i) = p.find(['@', '/']) {
        if p.as_bytes()[i] == b'@' {
            let userinfo = &p[..i];
            p = &p[i + 1..];
            let (user, password) = match userinfo.split_once(':') {
                Some((u, pw)) => (u, Some(pw)),
                None => (userinfo, None),
            };
            let user = percent_decode(user, origin)?;
            if !user.is_empty() {
                pairs.push(("user".into(), user));
            }
            if let Some(pw) = password {
                pairs.push(("password".into(), percent_decode(pw, origin)?));
            }
        }
    }

    // hosts and ports
    let mut hosts: Vec<String> = Vec::new();
    let mut ports: Vec<String> = Vec::new();
    loop {
        let (host, after) = if let Some(inner) = p.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| syntax(origin, "missing \"]\" after an IPv6 host address"))?;
            if end == 0 {
                return Err(syntax(origin, "empty IPv6 host address"));
            }
            let after = &inner[end + 1..];
            if !after.is_empty() && !after.starts_with([':', '/', '?', ',']) {
                return Err(syntax(
                    origin,
                    "unexpected character after an IPv6 host address",
                ));
            }
            (inner[..end].to_string(), after)
        } else {
            let end = p.find([':', '/', '?', ',']).unwrap_or(p.len());
            (percent_decode(&p[..end], origin)?, &p[end..])
        };
        p = after;
        hosts.push(host);
        if let Some(after) = p.strip_prefix(':') {
            let end = after.find(['/', '?', ',']).unwrap_or(after.len());
            ports.push(percent_decode(&after[..end], origin)?);
            p = &after[end..];
        } else {
            ports.push(String::new());
        }
        match p.strip_prefix(',') {
            Some(after) => p = after,
            None => break,
        }
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        pairs.push(("host".into(), hosts.join(",")));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".into(), ports.join(",")));
    }

    // database
    if let Some(after) = p.strip_prefix('/') {
        let end = after.find('?').unwrap_or(after.len());
        let db = percent_decode(&after[..end], origin)?;
        if !db.is_empty() {
            pairs.push(("dbname".into(), db));
        }
        p = &after[end..];
    }

    // query parameters
    if let Some(query) = p.strip_prefix('?') {
        for param in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = param.split_once('=').ok_or_else(|| {
                syntax(
                    origin,
                    format!("missing key/value separator \"=\" in URI query parameter \"{param}\""),
                )
            })?;
            if v.contains('=') {
                return Err(syntax(
                    origin,
                    format!("extra key/value separator \"=\" in URI query parameter \"{k}\""),
                ));
            }
            let k = percent_decode(k, origin)?;
            let v = percent_decode(v, origin)?;
            if k == "ssl" {
                if v == "true" {
                    pairs.push(("sslmode".into(), "require".into()));
                    continue;
                }
                return Err(syntax(
                    origin,
                    format!("invalid value \"{v}\" for URI parameter \"ssl\" (only \"true\")"),
                ));
            }
            pairs.push((k, v));
        }
    } else if !p.is_empty() {
        return Err(syntax(
            origin,
            format!("unexpected \"{p}\" after the host list"),
        ));
    }
    Ok(pairs)
}

/// Strict percent-decoding as libpq does it: `%` must be followed by two hex digits, `%00` is
/// refused; the result must be UTF-8.
fn percent_decode(s: &str, origin: &str) -> Result<String, ConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let value = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    syntax(
                        origin,
                        "invalid percent-encoded token (expected % and two hex digits)",
                    )
                })?;
            if value == 0 {
                return Err(syntax(
                    origin,
                    "forbidden value %00 in percent-encoded value",
                ));
            }
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| syntax(origin, "percent-decoded value is not valid UTF-8"))
}

/// libpq's `conninfo_parse`: `key = value` pairs separated by whitespace; values may be
/// single-quoted; a backslash escapes the next character.
fn parse_keyword_value(s: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(syntax(origin, format!("missing \"=\" after \"{key}\"")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(syntax(origin, "unterminated quoted string")),
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(syntax(origin, "unterminated quoted string")),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}
