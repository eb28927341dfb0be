//! Rendering a [`ConnConfig`] back into a URL: redacted for messages, or with a `search_path` for
//! `pgbaton latest url`.

use super::*;

impl ConnConfig {
    pub(super) fn render_url(
        &self,
        password: PasswordRendering,
        options: Option<String>,
    ) -> String {
        let mut url = String::from("postgresql://");
        url.push_str(&encode(&self.user, USERINFO));
        let pw = match (password, &self.password, self.password_origin) {
            (PasswordRendering::Redacted, Some(_), Some(Origin::ConnString)) => {
                Some("********".to_string())
            }
            (PasswordRendering::FromString, Some(p), Some(Origin::ConnString)) => {
                Some(encode(&p.0, USERINFO))
            }
            _ => None,
        };
        if let Some(pw) = pw {
            url.push(':');
            url.push_str(&pw);
        }
        url.push('@');

        let mut query: Vec<(&str, String)> = Vec::new();
        // TCP hosts (without hostaddr) go in the authority; otherwise everything goes in the
        // query string (`?host=/dir&port=5432`), the only place libpq takes socket paths and
        // hostaddr.
        let authority = self
            .targets
            .iter()
            .all(|t| matches!(t.host, Some(HostName::Tcp(_))) && t.hostaddr.is_none());
        if authority {
            let hosts = self
                .targets
                .iter()
                .map(|t| {
                    let h = match &t.host {
                        Some(HostName::Tcp(h)) => h.as_str(),
                        _ => "",
                    };
                    if h.contains(':') {
                        format!("[{h}]:{}", t.port)
                    } else {
                        format!("{}:{}", encode(h, HOST), t.port)
                    }
                })
                .collect::<Vec<_>>();
            url.push_str(&hosts.join(","));
        } else {
            let hosts: Vec<String> = self
                .targets
                .iter()
                .map(|t| match &t.host {
                    Some(HostName::Tcp(h)) => h.clone(),
                    Some(HostName::Unix(d)) => d.display().to_string(),
                    None => String::new(),
                })
                .collect();
            if hosts.iter().any(|h| !h.is_empty()) {
                query.push(("host", hosts.join(",")));
            }
            let addrs: Vec<String> = self
                .targets
                .iter()
                .map(|t| t.hostaddr.map(|a| a.to_string()).unwrap_or_default())
                .collect();
            if addrs.iter().any(|a| !a.is_empty()) {
                query.push(("hostaddr", addrs.join(",")));
            }
            let ports: Vec<String> = self.targets.iter().map(|t| t.port.to_string()).collect();
            let same = ports.windows(2).all(|w| w[0] == w[1]);
            query.push((
                "port",
                if same {
                    ports.first().cloned().unwrap_or_default()
                } else {
                    ports.join(",")
                },
            ));
        }
        url.push('/');
        url.push_str(&encode(&self.dbname, PATH));

        for spec in OPTIONS {
            if matches!(
                spec.key,
                "host"
                    | "hostaddr"
                    | "port"
                    | "user"
                    | "password"
                    | "dbname"
                    | "options"
                    | "passfile"
            ) || spec.support != Support::Yes
            {
                continue;
            }
            if let Some((value, _)) = self.given.get(spec.key) {
                query.push((spec.key, value.clone()));
            }
        }
        if let Some(o) = options.filter(|o| !o.is_empty()) {
            query.push(("options", o));
        }
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.push_str(&encode(v, QUERY_VALUE));
        }
        url
    }
}

#[derive(Clone, Copy)]
pub(super) enum PasswordRendering {
    Redacted,
    FromString,
}

// Percent-encoding sets: everything but RFC 3986 unreserved characters, plus a few that libpq
// and tokio-postgres read literally where they are (`/` and `,` in query values keep socket
// paths and host lists readable).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
pub(super) const USERINFO: &AsciiSet = UNRESERVED;
const HOST: &AsciiSet = UNRESERVED;
const PATH: &AsciiSet = UNRESERVED;
const QUERY_VALUE: &AsciiSet = &UNRESERVED.remove(b'/').remove(b',');

fn encode(s: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(s, set).to_string()
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a URL path segment).
pub fn encode_path_segment(s: &str) -> String {
    encode(s, PATH)
}

/// `options` with every `search_path` setting removed and `-c search_path=<schema>` appended.
/// Tokens follow the server's options syntax: whitespace separates, a backslash escapes.
pub fn options_with_search_path(options: Option<&str>, schema: &str) -> String {
    let tokens = options.map(split_server_options).unwrap_or_default();
    let mut kept: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t == "-c" && tokens.get(i + 1).is_some_and(|n| sets_search_path(n)) {
            i += 2;
            continue;
        }
        if let Some(rest) = t.strip_prefix("-c").or_else(|| t.strip_prefix("--")) {
            if !rest.is_empty() && sets_search_path(rest) {
                i += 1;
                continue;
            }
        }
        kept.push(t.clone());
        i += 1;
    }
    kept.push("-c".into());
    kept.push(format!("search_path={}", search_path_element(schema)));
    kept.iter()
        .map(|t| escape_server_option(t))
        .collect::<Vec<_>>()
        .join(" ")
}

fn sets_search_path(setting: &str) -> bool {
    let name = setting.split('=').next().unwrap_or_default();
    name.trim().to_ascii_lowercase().replace('-', "_") == "search_path"
}

/// A schema name as written in `search_path`: bare when it is a plain lower-case name (the server
/// would read it back unchanged), otherwise double-quoted.
fn search_path_element(schema: &str) -> String {
    let plain = schema
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        schema.to_string()
    } else {
        quote_ident(schema)
    }
}

fn split_server_options(options: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            in_token = true;
        } else if c.is_whitespace() {
            if in_token {
                tokens.push(std::mem::take(&mut cur));
                in_token = false;
            }
        } else {
            cur.push(c);
            in_token = true;
        }
    }
    if in_token {
        tokens.push(cur);
    }
    tokens
}

fn escape_server_option(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for c in token.chars() {
        if c == '\\' || c.is_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
