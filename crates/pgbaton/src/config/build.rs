//! From parsed options and the environment to a [`ConnConfig`]: each option group (hosts, password,
//! TLS, timeouts, session) is read by a function of its own from [`Given`].

use super::*;

/// The libpq options in effect: the connection string's (last one wins), then the environment's
/// for what the string leaves unset; empty values count as unset, as in libpq.
struct Given {
    values: BTreeMap<&'static str, (String, Origin)>,
    source_name: String,
}

impl Given {
    fn collect(source: &ConfigSource, pairs: Vec<(String, String)>, env: &Environment) -> Given {
        let mut values: BTreeMap<&'static str, (String, Origin)> = BTreeMap::new();
        for (k, v) in pairs {
            if let Some(spec) = spec(&k) {
                values.insert(spec.key, (v, Origin::ConnString));
            }
        }
        for spec in OPTIONS {
            if let (false, Some(var)) = (values.contains_key(spec.key), spec.env) {
                if let Some(v) = env.var(var) {
                    values.insert(spec.key, (v.to_string(), Origin::Env(var)));
                }
            }
        }
        values.retain(|_, (v, _)| !v.is_empty());
        Given {
            values,
            source_name: source.to_string(),
        }
    }

    /// An option's value and where it came from (the source's name or the variable's).
    fn get(&self, key: &str) -> Option<(&str, String)> {
        self.values.get(key).map(|(v, o)| {
            let origin = match o {
                Origin::ConnString => self.source_name.clone(),
                Origin::Env(var) => var.to_string(),
            };
            (v.as_str(), origin)
        })
    }

    fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(|(v, _)| v.to_string())
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some((v, origin)) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| invalid(key, v, origin, "an integer")),
        }
    }

    /// Options libpq has and pgbaton refuses rather than ignores.
    fn refuse_unsupported(&self) -> Result<(), ConfigError> {
        for spec in OPTIONS {
            if let (Support::No(why), Some((_, origin))) = (spec.support, self.get(spec.key)) {
                return Err(ConfigError::Unsupported {
                    key: spec.key.into(),
                    origin,
                    why: why.into(),
                });
            }
        }
        Ok(())
    }
}

fn invalid(key: &str, value: &str, origin: String, expected: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.into(),
        value: value.into(),
        origin,
        expected: expected.into(),
    }
}

pub(super) fn build(
    source: ConfigSource,
    pairs: Vec<(String, String)>,
    env: &Environment,
) -> Result<ConnConfig, ConfigError> {
    let mut given = Given::collect(&source, pairs, env);
    given.refuse_unsupported()?;

    let user = match given.get("user") {
        Some((u, _)) => u.to_string(),
        None => env.os_user.clone().ok_or_else(|| {
            ConfigError::NoUser(
                env.os_user_error
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            )
        })?,
    };
    let dbname = given
        .get("dbname")
        .map(|(d, _)| d.to_string())
        .unwrap_or_else(|| user.clone());
    let mut targets = targets(&given, env)?;
    let (password, password_origin) = match given.values.get("password") {
        Some((p, o)) => (Some(Secret(p.clone())), Some(*o)),
        None => (None, None),
    };
    if password.is_none() {
        passfile_passwords(&given, env, &mut targets, &dbname, &user);
    }
    let tls = tls_settings(&given, env)?;
    refuse_gss_and_encodings(&given)?;
    let timeouts = Timeouts::read(&given)?;
    let target_session_attrs = target_session_attrs(&given)?;
    let channel_binding = channel_binding(&given)?;
    let load_balance_random = load_balance_random(&given)?;

    let options = given.text("options");
    let application_name = given.text("application_name");
    let fallback_application_name = given.text("fallback_application_name");
    // Secrets live only in `password`, whose Debug hides them.
    given.values.remove("password");
    given.values.remove("sslpassword");
    Ok(ConnConfig {
        source,
        targets,
        user,
        dbname,
        password,
        password_origin,
        options,
        application_name,
        fallback_application_name,
        tls,
        connect_timeout: timeouts.connect_timeout,
        keepalives: timeouts.keepalives,
        keepalives_idle: timeouts.keepalives_idle,
        keepalives_interval: timeouts.keepalives_interval,
        keepalives_count: timeouts.keepalives_count,
        tcp_user_timeout: timeouts.tcp_user_timeout,
        target_session_attrs,
        channel_binding,
        load_balance_random,
        role: None,
        given: given.values,
    })
}

/// `host`, `hostaddr` and `port`: one target per host (or address), ports one for all or one each.
fn targets(given: &Given, env: &Environment) -> Result<Vec<Target>, ConfigError> {
    let host_list: Option<Vec<&str>> = given.get("host").map(|(h, _)| h.split(',').collect());
    let addr_list: Option<(Vec<&str>, String)> = given
        .get("hostaddr")
        .map(|(a, o)| (a.split(',').collect(), o));
    let n = host_list
        .as_ref()
        .map(Vec::len)
        .or(addr_list.as_ref().map(|(a, _)| a.len()))
        .unwrap_or(1);
    if let (Some(hosts), Some((addrs, origin))) = (&host_list, &addr_list) {
        if hosts.len() != addrs.len() {
            return Err(ConfigError::InvalidValue {
                key: "hostaddr".into(),
                value: addrs.join(","),
                origin: origin.clone(),
                expected: format!("{} addresses, one per host", hosts.len()),
            });
        }
    }
    let ports: Vec<u16> = match given.get("port") {
        None => vec![DEFAULT_PORT],
        Some((p, origin)) => {
            let list = p
                .split(',')
                .map(|s| {
                    let s = s.trim();
                    if s.is_empty() {
                        Ok(DEFAULT_PORT)
                    } else {
                        s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                            invalid("port", s, origin.clone(), "a port number (1-65535)")
                        })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            if list.len() != 1 && list.len() != n {
                return Err(invalid(
                    "port",
                    p,
                    origin,
                    &format!("one port, or {n} (one per host)"),
                ));
            }
            list
        }
    };
    let mut targets = Vec::with_capacity(n);
    for i in 0..n {
        let port = ports
            .get(i)
            .or(ports.first())
            .copied()
            .unwrap_or(DEFAULT_PORT);
        let hostaddr = match &addr_list {
            Some((addrs, origin)) => match addrs.get(i).map(|a| a.trim()).filter(|a| !a.is_empty())
            {
                Some(a) => Some(a.parse::<IpAddr>().map_err(|_| {
                    invalid(
                        "hostaddr",
                        a,
                        origin.clone(),
                        "a numeric IPv4 or IPv6 address",
                    )
                })?),
                None => None,
            },
            None => None,
        };
        let host = match host_list.as_ref().and_then(|h| h.get(i)).map(|h| h.trim()) {
            Some(h) if h.starts_with('/') => Some(HostName::Unix(PathBuf::from(h))),
            Some(h) if !h.is_empty() => Some(HostName::Tcp(h.to_string())),
            _ if hostaddr.is_some() => None,
            _ => Some(default_host(env, port)),
        };
        targets.push(Target {
            host,
            hostaddr,
            port,
            passfile_password: None,
        });
    }

    Ok(targets)
}

/// No password given: each target's `.pgpass` match, if any.
fn passfile_passwords(
    given: &Given,
    env: &Environment,
    targets: &mut [Target],
    dbname: &str,
    user: &str,
) {
    let passfile = given
        .get("passfile")
        .map(|(p, _)| PathBuf::from(p))
        .or_else(|| env.home.as_ref().map(|h| h.join(".pgpass")));
    if let Some(path) = passfile {
        if let Some(entries) = read_passfile(&path) {
            for t in targets.iter_mut() {
                let host = pgpass_host(t);
                t.passfile_password = entries
                    .iter()
                    .find(|e| e.matches(&host, t.port, dbname, user))
                    .map(|e| Secret(e.password.clone()));
            }
        }
    }
}

/// `sslmode` and the other TLS options.
fn tls_settings(given: &Given, env: &Environment) -> Result<TlsSettings, ConfigError> {
    let mut tls = TlsSettings::default();
    let root_system = given.get("sslrootcert").is_some_and(|(r, _)| r == "system");
    tls.mode = match given.get("sslmode") {
        Some((m, origin)) => SslMode::parse(m).ok_or_else(|| {
            invalid(
                "sslmode",
                m,
                origin,
                "disable, allow, prefer, require, verify-ca or verify-full",
            )
        })?,
        None => match given.get("requiressl") {
            Some(("1", _)) => SslMode::Require,
            Some(("0", _)) | None if root_system => SslMode::VerifyFull,
            Some(("0", _)) | None => SslMode::Prefer,
            Some((v, origin)) => return Err(invalid("requiressl", v, origin, "0 or 1")),
        },
    };
    if root_system && tls.mode != SslMode::VerifyFull {
        let origin = given
            .get("sslmode")
            .map(|(_, o)| o)
            .unwrap_or_else(|| given.source_name.clone());
        return Err(invalid(
            "sslmode",
            tls.mode.as_str(),
            origin,
            "verify-full with sslrootcert=system (weaker modes would ignore the system roots)",
        ));
    }
    tls.root_certs = match given.get("sslrootcert") {
        Some(("system", _)) => Some(RootCerts::System),
        Some((path, _)) => Some(RootCerts::File(PathBuf::from(path))),
        None => env
            .home
            .as_ref()
            .map(|h| h.join(".postgresql/root.crt"))
            .filter(|p| p.is_file())
            .map(RootCerts::File),
    };
    tls.client_cert = client_cert(given, env)?;
    if let Some((v, origin)) = given.get("sslsni") {
        tls.sni = match v {
            "1" => true,
            "0" => false,
            _ => return Err(invalid("sslsni", v, origin, "0 or 1")),
        };
    }
    let tls_version = |key: &str| -> Result<Option<(TlsVersion, bool)>, ConfigError> {
        // (version, whether the value asked for something older than rustls speaks)
        Ok(match given.get(key) {
            None => None,
            Some((v, origin)) => Some(match v.to_ascii_lowercase().as_str() {
                "tlsv1" | "tlsv1.1" => (TlsVersion::Tls12, true),
                "tlsv1.2" => (TlsVersion::Tls12, false),
                "tlsv1.3" => (TlsVersion::Tls13, false),
                _ => {
                    return Err(invalid(
                        key,
                        v,
                        origin,
                        "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3",
                    ))
                }
            }),
        })
    };
    if let Some((v, _)) = tls_version("ssl_min_protocol_version")? {
        tls.min_version = v;
    }
    if let Some((v, older)) = tls_version("ssl_max_protocol_version")? {
        if older {
            let (value, origin) = given.get("ssl_max_protocol_version").unwrap_or_default();
            return Err(ConfigError::Unsupported {
                key: "ssl_max_protocol_version".into(),
                origin,
                why: format!("{value} is obsolete; rustls speaks TLSv1.2 and TLSv1.3"),
            });
        }
        tls.max_version = v;
    }
    if tls.min_version > tls.max_version {
        let (value, origin) = given.get("ssl_min_protocol_version").unwrap_or_default();
        return Err(invalid(
            "ssl_min_protocol_version",
            value,
            origin,
            "at most ssl_max_protocol_version",
        ));
    }
    tls.direct = match given.get("sslnegotiation") {
        None | Some(("postgres", _)) => false,
        Some(("direct", origin)) => {
            if matches!(
                tls.mode,
                SslMode::Disable | SslMode::Allow | SslMode::Prefer
            ) {
                return Err(invalid(
                    "sslmode",
                    tls.mode.as_str(),
                    origin,
                    "require, verify-ca or verify-full with sslnegotiation=direct",
                ));
            }
            true
        }
        Some((v, origin)) => {
            return Err(invalid("sslnegotiation", v, origin, "postgres or direct"))
        }
    };

    Ok(tls)
}

/// The client certificate and key (`sslcert`, `sslkey`, `sslcertmode`), if one is to be sent.
fn client_cert(
    given: &Given,
    env: &Environment,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    let cert_mode = match given.get("sslcertmode") {
        None | Some(("allow", _)) => true,
        Some(("disable", _)) => false,
        Some(("require", origin)) => {
            return Err(ConfigError::Unsupported {
                key: "sslcertmode".into(),
                origin,
                why: "requiring the server to ask for a client certificate is not implemented"
                    .into(),
            })
        }
        Some((v, origin)) => return Err(invalid("sslcertmode", v, origin, "disable or allow")),
    };
    if let Some((pw, origin)) = given.get("sslpassword") {
        if !pw.is_empty() {
            return Err(ConfigError::Unsupported {
                key: "sslpassword".into(),
                origin,
                why: "encrypted client keys are not supported; decrypt the key file".into(),
            });
        }
    }
    let default_cert = env
        .home
        .as_ref()
        .map(|h| h.join(".postgresql/postgresql.crt"));
    let default_key = env
        .home
        .as_ref()
        .map(|h| h.join(".postgresql/postgresql.key"));
    let cert = given
        .get("sslcert")
        .map(|(c, _)| PathBuf::from(c))
        .or_else(|| default_cert.filter(|p| p.is_file()));
    if let (Some(cert), true) = (cert, cert_mode) {
        let key = given
            .get("sslkey")
            .map(|(k, _)| PathBuf::from(k))
            .or(default_key);
        match key {
            Some(key) => return Ok(Some((cert, key))),
            None => {
                return Err(ConfigError::File {
                    what: "client key (sslkey)",
                    path: PathBuf::from("~/.postgresql/postgresql.key"),
                    message: "sslcert is set but no sslkey, and there is no home directory".into(),
                })
            }
        }
    }
    Ok(None)
}

/// GSSAPI encryption and client encodings pgbaton cannot honour.
fn refuse_gss_and_encodings(given: &Given) -> Result<(), ConfigError> {
    // GSSAPI: never used, so "prefer" falls through to the next method as libpq would.
    if let Some((v, origin)) = given.get("gssencmode") {
        match v {
            "disable" | "prefer" => {}
            "require" => {
                return Err(ConfigError::Unsupported {
                    key: "gssencmode".into(),
                    origin,
                    why: "GSSAPI encryption is not implemented".into(),
                })
            }
            _ => {
                return Err(invalid(
                    "gssencmode",
                    v,
                    origin,
                    "disable, prefer or require",
                ))
            }
        }
    }
    if let Some((v, origin)) = given.get("client_encoding") {
        let norm = v.to_ascii_lowercase().replace(['-', '_'], "");
        if !matches!(norm.as_str(), "utf8" | "unicode" | "auto") {
            return Err(ConfigError::Unsupported {
                key: "client_encoding".into(),
                origin,
                why: format!("the client always uses UTF8, not {v}"),
            });
        }
    }

    Ok(())
}

/// Connection timeout, keepalives and TCP user timeout.
struct Timeouts {
    connect_timeout: Option<Duration>,
    keepalives: Option<bool>,
    keepalives_idle: Option<Duration>,
    keepalives_interval: Option<Duration>,
    keepalives_count: Option<u32>,
    tcp_user_timeout: Option<Duration>,
}

impl Timeouts {
    fn read(given: &Given) -> Result<Timeouts, ConfigError> {
        let secs = |n: i64| Duration::from_secs(n.max(0).unsigned_abs());
        let connect_timeout = match given.int("connect_timeout")? {
            None => Some(DEFAULT_CONNECT_TIMEOUT),
            Some(n) if n <= 0 => None,
            Some(1) => Some(Duration::from_secs(2)), // libpq's minimum
            Some(n) => Some(secs(n)),
        };
        let keepalives = given.int("keepalives")?.map(|n| n != 0);
        let keepalives_idle = given.int("keepalives_idle")?.filter(|n| *n > 0).map(secs);
        let keepalives_interval = given
            .int("keepalives_interval")?
            .filter(|n| *n > 0)
            .map(secs);
        let keepalives_count = match given.int("keepalives_count")? {
            Some(n) if n > 0 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            _ => None,
        };
        // libpq's tcp_user_timeout is in milliseconds.
        let tcp_user_timeout = given
            .int("tcp_user_timeout")?
            .filter(|n| *n > 0)
            .map(|n| Duration::from_millis(n.unsigned_abs()));
        Ok(Timeouts {
            connect_timeout,
            keepalives,
            keepalives_idle,
            keepalives_interval,
            keepalives_count,
            tcp_user_timeout,
        })
    }
}

fn target_session_attrs(
    given: &Given,
) -> Result<Option<tokio_postgres::config::TargetSessionAttrs>, ConfigError> {
    Ok(match given.get("target_session_attrs") {
        None => None,
        Some((v, origin)) => {
            use tokio_postgres::config::TargetSessionAttrs as T;
            Some(match v {
                "any" => T::Any,
                "read-write" => T::ReadWrite,
                "read-only" => T::ReadOnly,
                "primary" | "standby" | "prefer-standby" => {
                    return Err(ConfigError::Unsupported {
                        key: "target_session_attrs".into(),
                        origin,
                        why: format!(
                            "\"{v}\" is not implemented (any, read-write and read-only are)"
                        ),
                    })
                }
                _ => {
                    return Err(invalid(
                        "target_session_attrs",
                        v,
                        origin,
                        "any, read-write, read-only, primary, standby or prefer-standby",
                    ))
                }
            })
        }
    })
}

fn channel_binding(
    given: &Given,
) -> Result<Option<tokio_postgres::config::ChannelBinding>, ConfigError> {
    Ok(match given.get("channel_binding") {
        None => None,
        Some((v, origin)) => {
            use tokio_postgres::config::ChannelBinding as C;
            Some(match v {
                "disable" => C::Disable,
                "prefer" => C::Prefer,
                "require" => C::Require,
                _ => {
                    return Err(invalid(
                        "channel_binding",
                        v,
                        origin,
                        "disable, prefer or require",
                    ))
                }
            })
        }
    })
}

fn load_balance_random(given: &Given) -> Result<bool, ConfigError> {
    Ok(match given.get("load_balance_hosts") {
        None | Some(("disable", _)) => false,
        Some(("random", _)) => true,
        Some((v, origin)) => {
            return Err(invalid(
                "load_balance_hosts",
                v,
                origin,
                "disable or random",
            ))
        }
    })
}

/// No host given: the first default socket directory holding the server's socket, else localhost.
pub(super) fn default_host(env: &Environment, port: u16) -> HostName {
    DEFAULT_SOCKET_DIRS
        .iter()
        .map(Path::new)
        .find(|dir| env.socket_exists(dir, port))
        .map(|dir| HostName::Unix(dir.to_path_buf()))
        .unwrap_or_else(|| HostName::Tcp("localhost".into()))
}
