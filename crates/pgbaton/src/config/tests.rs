use super::*;

fn env(vars: &[(&str, &str)]) -> Environment {
    Environment::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .with_os_user("osuser")
}

fn resolve(explicit: Option<&str>, vars: &[(&str, &str)]) -> ConnConfig {
    match ConnConfig::resolve(explicit, &env(vars)) {
        Ok(c) => c,
        Err(e) => panic!("resolve failed: {e}"),
    }
}

fn resolve_err(explicit: Option<&str>, vars: &[(&str, &str)]) -> String {
    match ConnConfig::resolve(explicit, &env(vars)) {
        Ok(c) => panic!("expected an error, got {c}"),
        Err(e) => e.to_string(),
    }
}

fn tcp(t: &Target) -> (&str, u16) {
    match t.host() {
        Some(HostName::Tcp(h)) => (h.as_str(), t.port()),
        other => panic!("expected a TCP host, got {other:?}"),
    }
}

#[test]
fn defaults_without_anything() {
    let c = resolve(None, &[]);
    assert_eq!(c.source(), ConfigSource::LibpqEnvironment);
    assert_eq!(c.user(), "osuser");
    assert_eq!(c.dbname(), "osuser");
    assert_eq!(c.targets().len(), 1);
    assert_eq!(tcp(&c.targets()[0]), ("localhost", 5432));
    assert_eq!(c.application_name(), "pgbaton");
    assert_eq!(c.ssl_mode(), SslMode::Prefer);
    assert_eq!(c.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
    assert!(!c.has_password());
    assert_eq!(c.redacted(), "postgresql://osuser@localhost:5432/osuser");
}

#[test]
fn default_host_prefers_an_existing_socket() {
    let e = env(&[("PGPORT", "5999")]).with_socket("/tmp", 5999);
    let c = ConnConfig::resolve(None, &e).unwrap();
    assert_eq!(c.targets()[0].host(), Some(&HostName::Unix("/tmp".into())));
    assert!(c.targets()[0].is_unix_socket());
    // the socket for another port does not count
    let e = env(&[]).with_socket("/tmp", 5999);
    let c = ConnConfig::resolve(None, &e).unwrap();
    assert_eq!(tcp(&c.targets()[0]), ("localhost", 5432));
    // the Debian directory wins over /tmp
    let e = env(&[])
        .with_socket("/tmp", 5432)
        .with_socket("/var/run/postgresql", 5432);
    let c = ConnConfig::resolve(None, &e).unwrap();
    assert_eq!(
        c.targets()[0].host(),
        Some(&HostName::Unix("/var/run/postgresql".into()))
    );
}

#[test]
fn precedence_explicit_then_pgbaton_then_database_url_then_pg_env() {
    let all = [
        ("PGBATON_PG_URL", "postgres://a@pgbaton-host/a"),
        ("DATABASE_URL", "postgres://b@database-url-host/b"),
        ("PGHOST", "pghost"),
        ("PGUSER", "pguser"),
    ];
    let c = resolve(Some("postgres://x@explicit-host/x"), &all);
    assert_eq!(c.source(), ConfigSource::Explicit);
    assert_eq!(tcp(&c.targets()[0]).0, "explicit-host");
    assert_eq!(c.user(), "x");

    let c = resolve(None, &all);
    assert_eq!(c.source(), ConfigSource::PgbatonPgUrl);
    assert_eq!(tcp(&c.targets()[0]).0, "pgbaton-host");

    let c = resolve(None, &all[1..]);
    assert_eq!(c.source(), ConfigSource::DatabaseUrl);
    assert_eq!(
        (tcp(&c.targets()[0]).0, c.user(), c.dbname()),
        ("database-url-host", "b", "b")
    );

    let c = resolve(None, &all[2..]);
    assert_eq!(c.source(), ConfigSource::LibpqEnvironment);
    assert_eq!(
        (tcp(&c.targets()[0]).0, c.user(), c.dbname()),
        ("pghost", "pguser", "pguser")
    );

    // an empty explicit string or variable counts as unset
    let c = resolve(
        Some("  "),
        &[("PGBATON_PG_URL", ""), ("DATABASE_URL", "postgres://h2/d")],
    );
    assert_eq!(c.source(), ConfigSource::DatabaseUrl);
}

#[test]
fn pg_env_fills_what_the_string_leaves_out() {
    let vars = [
        ("PGHOST", "envhost"),
        ("PGPORT", "6000"),
        ("PGUSER", "envuser"),
        ("PGDATABASE", "envdb"),
        ("PGPASSWORD", "envsecret"),
        ("PGSSLMODE", "require"),
        ("PGAPPNAME", "envapp"),
        ("PGOPTIONS", "-c statement_timeout=0"),
    ];
    let c = resolve(Some("postgresql://urluser@urlhost/urldb"), &vars);
    // the URL names no port, so PGPORT applies (libpq stores no port for such a URL)
    assert_eq!(tcp(&c.targets()[0]), ("urlhost", 6000));
    assert_eq!((c.user(), c.dbname()), ("urluser", "urldb"));
    assert!(c.has_password());
    assert_eq!(c.ssl_mode(), SslMode::Require);
    assert_eq!(c.application_name(), "envapp");
    assert_eq!(c.options(), Some("-c statement_timeout=0"));
    // a password from the environment is never written into URLs
    assert!(!c.url().contains("envsecret"));
    assert!(!c.redacted().contains("envsecret"));

    let c = resolve(None, &vars);
    assert_eq!(tcp(&c.targets()[0]), ("envhost", 6000));
    assert_eq!((c.user(), c.dbname()), ("envuser", "envdb"));
    let tc = c.tokio_config(&c.targets()[0]);
    assert_eq!(tc.get_password(), Some(&b"envsecret"[..]));
    assert_eq!(tc.get_application_name(), Some("envapp"));
    assert_eq!(tc.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
}

#[test]
fn uri_forms() {
    let c = resolve(Some("postgres://u:p%40ss@db.example.com:6543/my%20db?sslmode=verify-full&application_name=app"), &[]);
    assert_eq!(tcp(&c.targets()[0]), ("db.example.com", 6543));
    assert_eq!(
        (c.user(), c.dbname(), c.application_name()),
        ("u", "my db", "app")
    );
    assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(
        c.tokio_config(&c.targets()[0]).get_password(),
        Some(&b"p@ss"[..])
    );

    // unix socket directory in the query string; no host in the authority
    let c = resolve(
        Some("postgresql://user@/db?host=/var/run/postgresql&port=5433"),
        &[],
    );
    assert_eq!(c.targets().len(), 1);
    assert_eq!(
        c.targets()[0].host(),
        Some(&HostName::Unix("/var/run/postgresql".into()))
    );
    assert_eq!(c.targets()[0].port(), 5433);
    // ... and percent-encoded in the authority
    let c = resolve(Some("postgresql://user@%2Ftmp%2Fsock:5434/db"), &[]);
    assert_eq!(
        c.targets()[0].host(),
        Some(&HostName::Unix("/tmp/sock".into()))
    );
    assert_eq!(c.targets()[0].port(), 5434);

    // multiple hosts, IPv6, per-host ports
    let c = resolve(Some("postgres://h1:5001,[::1]:5002,h3/db"), &[]);
    let got: Vec<String> = c.targets().iter().map(|t| t.to_string()).collect();
    assert_eq!(got, ["h1:5001", "[::1]:5002", "h3:5432"]);

    // options with -c search_path
    let c = resolve(
        Some("postgres://h/db?options=-c%20search_path%3Dmy_schema"),
        &[],
    );
    assert_eq!(c.options(), Some("-c search_path=my_schema"));

    // JDBC-style ssl=true
    assert_eq!(
        resolve(Some("postgres://h/db?ssl=true"), &[]).ssl_mode(),
        SslMode::Require
    );

    // no host at all: PGHOST, then the default
    let c = resolve(Some("postgresql:///db"), &[("PGHOST", "/run/pg")]);
    assert_eq!(
        c.targets()[0].host(),
        Some(&HostName::Unix("/run/pg".into()))
    );
}

#[test]
fn tokio_postgres_parses_the_socket_url_form_too() {
    // The form `pgbaton latest url` prints for sockets must work for tokio-postgres apps.
    let c: tokio_postgres::Config = "postgresql://user@/db?host=/var/run/postgresql&port=5432"
        .parse()
        .unwrap();
    assert_eq!(
        c.get_hosts(),
        [tokio_postgres::config::Host::Unix(
            "/var/run/postgresql".into()
        )]
    );
    assert_eq!(c.get_ports(), [5432]);
    assert_eq!(c.get_dbname(), Some("db"));
}

#[test]
fn keyword_value_forms() {
    let c = resolve(
        Some(
            r"host=h1,h2 port = 7000 user=alice dbname='my db' password='it\'s' options='-c search_path=a\,b' sslmode=disable",
        ),
        &[],
    );
    let got: Vec<String> = c.targets().iter().map(|t| t.to_string()).collect();
    assert_eq!(got, ["h1:7000", "h2:7000"]);
    assert_eq!((c.user(), c.dbname()), ("alice", "my db"));
    assert_eq!(
        c.tokio_config(&c.targets()[0]).get_password(),
        Some(&b"it's"[..])
    );
    assert_eq!(c.options(), Some("-c search_path=a,b"));
    assert_eq!(c.ssl_mode(), SslMode::Disable);

    let c = resolve(Some("host=/tmp port=5433 dbname=x"), &[]);
    assert!(c.targets()[0].is_unix_socket());
    assert_eq!(
        c.tokio_config(&c.targets()[0]).get_ssl_mode(),
        tokio_postgres::config::SslMode::Disable
    );

    assert!(resolve_err(Some("host"), &[]).contains("expected a postgres:// or postgresql:// URL"));
    assert!(resolve_err(Some("host=x dbname"), &[]).contains("missing \"=\" after \"dbname\""));
    assert!(resolve_err(Some("host='x"), &[]).contains("unterminated"));
}

#[test]
fn hostaddr_and_port_lists_must_match() {
    let c = resolve(Some("host=a,b hostaddr=10.0.0.1,10.0.0.2 port=1,2"), &[]);
    assert_eq!(c.targets()[1].to_string(), "b (10.0.0.2):2");
    let c = resolve(Some("hostaddr=127.0.0.1 port=5620 sslmode=require"), &[]);
    assert_eq!(c.targets()[0].host(), None);
    // tokio-postgres gets the address as host name, so TLS has a name to work with
    let tc = c.tokio_config(&c.targets()[0]);
    assert_eq!(
        tc.get_hosts(),
        [tokio_postgres::config::Host::Tcp("127.0.0.1".into())]
    );
    assert!(
        resolve_err(Some("host=a,b hostaddr=10.0.0.1"), &[]).contains("2 addresses, one per host")
    );
    assert!(resolve_err(Some("host=a,b,c port=1,2"), &[]).contains("one port, or 3"));
    assert!(resolve_err(Some("host=a port=70000"), &[]).contains("port number"));
    assert!(resolve_err(Some("hostaddr=not-an-ip"), &[]).contains("numeric IPv4 or IPv6"));
}

#[test]
fn every_sslmode() {
    for (mode, want, tokio_mode, verification) in [
        ("disable", SslMode::Disable, "Disable", Verification::None),
        ("allow", SslMode::Allow, "Disable", Verification::None),
        ("prefer", SslMode::Prefer, "Prefer", Verification::None),
        ("require", SslMode::Require, "Require", Verification::None),
        (
            "verify-ca",
            SslMode::VerifyCa,
            "Require",
            Verification::Chain,
        ),
        (
            "verify-full",
            SslMode::VerifyFull,
            "Require",
            Verification::Full,
        ),
    ] {
        let c = resolve(Some(&format!("postgres://h/db?sslmode={mode}")), &[]);
        assert_eq!(c.ssl_mode(), want);
        assert_eq!(c.tls().verification(), verification, "{mode}");
        let tc = c.tokio_config(&c.targets()[0]);
        assert_eq!(format!("{:?}", tc.get_ssl_mode()), tokio_mode, "{mode}");
        // a client configuration can be built for every mode that verifies nothing
        if verification == Verification::None {
            assert!(c.tls().rustls_config().is_ok());
        }
        assert_eq!(
            c.url(),
            format!("postgresql://osuser@h:5432/db?sslmode={mode}")
        );
    }
    assert!(resolve_err(Some("sslmode=verify"), &[]).contains("verify-ca or verify-full"));
    // require with a root certificate behaves like verify-ca (libpq)
    let c = resolve(
        Some("host=h sslmode=require sslrootcert=/nonexistent/root.crt"),
        &[],
    );
    assert_eq!(c.tls().verification(), Verification::Chain);
    let err = match c.tls().rustls_config() {
        Ok(_) => panic!("a missing root certificate file must fail"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("/nonexistent/root.crt"), "{err}");
    // sslrootcert=system implies verify-full and refuses weaker modes
    assert_eq!(
        resolve(Some("host=h sslrootcert=system"), &[]).ssl_mode(),
        SslMode::VerifyFull
    );
    assert!(
        resolve_err(Some("host=h sslrootcert=system sslmode=require"), &[]).contains("verify-full")
    );
    assert!(
        resolve_err(Some("host=h sslnegotiation=direct"), &[]).contains("sslnegotiation=direct")
    );
    let c = resolve(Some("host=h sslnegotiation=direct sslmode=require"), &[]);
    assert!(c.tls().direct);
    assert_eq!(
        c.tls().rustls_config().map(|r| r.alpn_protocols).ok(),
        Some(vec![b"postgresql".to_vec()])
    );
}

#[test]
fn unknown_and_unsupported_options_are_errors() {
    let e = resolve_err(Some("postgres://h/db?sslmdoe=require"), &[]);
    assert!(e.contains("unknown connection option \"sslmdoe\""), "{e}");
    let e = resolve_err(None, &[("PGSERVICE", "prod")]);
    assert!(
        e.contains("\"service\" (from PGSERVICE) is not supported"),
        "{e}"
    );
    let e = resolve_err(Some("host=h requirepeer=postgres"), &[]);
    assert!(e.contains("requirepeer"), "{e}");
    assert!(resolve_err(Some("host=h client_encoding=LATIN1"), &[]).contains("UTF8"));
    // accepted no-ops
    let c = resolve(
        Some("host=h gssencmode=prefer sslcompression=1 client_encoding=UTF8"),
        &[],
    );
    assert_eq!(tcp(&c.targets()[0]).0, "h");
}

#[test]
fn application_name_and_role() {
    let c = resolve(Some("postgres://h/db"), &[]);
    assert_eq!(c.application_name(), DEFAULT_APPLICATION_NAME);
    let c = resolve(Some("postgres://h/db?fallback_application_name=fb"), &[]);
    assert_eq!(c.application_name(), "fb");
    let c = resolve(
        Some("postgres://h/db?fallback_application_name=fb"),
        &[("PGAPPNAME", "env")],
    );
    assert_eq!(c.application_name(), "env");
    let c = resolve(
        Some("postgres://h/db?application_name=mine"),
        &[("PGAPPNAME", "env")],
    );
    assert_eq!(c.application_name(), "mine");
    let c = c.with_role(Some("migrator"));
    assert_eq!(c.role(), Some("migrator"));
    assert_eq!(c.with_role(None::<String>).role(), None);
}

#[test]
fn timeouts_and_keepalives() {
    let c = resolve(
        Some("host=h connect_timeout=1 tcp_user_timeout=1500 keepalives=0 keepalives_count=3"),
        &[],
    );
    assert_eq!(c.connect_timeout(), Some(Duration::from_secs(2)));
    let tc = c.tokio_config(&c.targets()[0]);
    assert_eq!(
        tc.get_tcp_user_timeout(),
        Some(&Duration::from_millis(1500))
    );
    assert!(!tc.get_keepalives());
    assert_eq!(tc.get_keepalives_retries(), Some(3));
    assert_eq!(
        resolve(Some("host=h connect_timeout=0"), &[]).connect_timeout(),
        None
    );
    assert!(resolve_err(Some("host=h connect_timeout=soon"), &[]).contains("an integer"));
}

#[test]
fn redaction() {
    let c = resolve(Some("postgres://alice:s3cret@h:5433/db"), &[]);
    let r = c.redacted();
    assert_eq!(r, "postgresql://alice:********@h:5433/db");
    assert!(!format!("{c:?}").contains("s3cret"));
    assert!(!c.to_string().contains("s3cret"));
    // the password typed into the string is part of the app's URL
    assert_eq!(c.url(), "postgresql://alice:s3cret@h:5433/db");
}

#[test]
fn url_with_search_path_encodes() {
    let c = resolve(
        Some("postgres://alice:p%2Fw%40d@db.example.com/app?sslmode=require"),
        &[],
    );
    assert_eq!(
        c.url_with_search_path("public_07_widen_ids"),
        "postgresql://alice:p%2Fw%40d@db.example.com:5432/app?sslmode=require&options=-c%20search_path%3Dpublic_07_widen_ids"
    );
    // names that need quoting: double quotes, escaped space for the options parser
    let url = c.url_with_search_path("My Schema");
    assert!(
        url.ends_with("options=-c%20search_path%3D%22My%5C%20Schema%22"),
        "{url}"
    );

    // existing options are kept, an existing search_path is replaced
    let c = resolve(
        Some("postgres://h/db?options=-c%20statement_timeout%3D0%20-c%20search_path%3Dold%20--search-path%3Dold2"),
        &[],
    );
    let url = c.url_with_search_path("new");
    assert!(
        url.ends_with("options=-c%20statement_timeout%3D0%20-c%20search_path%3Dnew"),
        "{url}"
    );

    // socket form, and the URL parses back to the same settings
    let c = resolve(
        Some("postgresql://u@/db?host=/var/run/postgresql&port=5433"),
        &[],
    );
    let url = c.url_with_search_path("s");
    assert_eq!(
        url,
        "postgresql://u@/db?host=/var/run/postgresql&port=5433&options=-c%20search_path%3Ds"
    );
    let back = resolve(Some(&url), &[]);
    assert_eq!(back.targets(), c.targets());
    assert_eq!(back.options(), Some("-c search_path=s"));
    let tc: tokio_postgres::Config = url.parse().unwrap();
    assert_eq!(tc.get_options(), Some("-c search_path=s"));
}

#[test]
fn options_search_path_edge_cases() {
    assert_eq!(options_with_search_path(None, "a"), "-c search_path=a");
    assert_eq!(
        options_with_search_path(Some("-csearch_path=x -c work_mem=1MB"), "a"),
        "-c work_mem=1MB -c search_path=a"
    );
    assert_eq!(
        options_with_search_path(Some(r"-c application_name=a\ b"), "UP"),
        r#"-c application_name=a\ b -c search_path="UP""#
    );
    assert_eq!(
        options_with_search_path(None, "we\"ird"),
        r#"-c search_path="we""ird""#
    );
    assert_eq!(options_with_search_path(None, "a$1"), "-c search_path=a$1");
    assert_eq!(
        options_with_search_path(None, "1a"),
        r#"-c search_path="1a""#
    );
}

#[test]
fn passfile() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("pgbaton-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pgpass");
    std::fs::write(
        &path,
        "# comment\nother:*:*:*:nope\nh:5432:db:alice:first\n*:*:*:bob:pa\\:ss\\\\word\nlocalhost:*:*:carol:sock\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let p = path.display().to_string();
    let pw = |c: &ConnConfig| {
        c.tokio_config(&c.targets()[0])
            .get_password()
            .map(|p| p.to_vec())
    };

    let c = resolve(Some("postgres://alice@h/db"), &[("PGPASSFILE", &p)]);
    assert_eq!(pw(&c), Some(b"first".to_vec()));
    assert!(c.has_password());
    assert!(!c.url().contains("first"));
    let c = resolve(Some(&format!("postgres://bob@x/y?passfile={p}")), &[]);
    assert_eq!(pw(&c), Some(b"pa:ss\\word".to_vec()));
    // an explicit password wins
    let c = resolve(Some("postgres://alice:given@h/db"), &[("PGPASSFILE", &p)]);
    assert_eq!(pw(&c), Some(b"given".to_vec()));
    // the default socket directory matches "localhost"
    let c = resolve(
        Some("host=/var/run/postgresql user=carol"),
        &[("PGPASSFILE", &p)],
    );
    assert_eq!(pw(&c), Some(b"sock".to_vec()));
    // no match
    let c = resolve(Some("postgres://dave@h/db"), &[("PGPASSFILE", &p)]);
    assert_eq!(pw(&c), None);
    // group/world readable: ignored, as libpq does
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = resolve(Some("postgres://alice@h/db"), &[("PGPASSFILE", &p)]);
    assert_eq!(pw(&c), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn uri_syntax_errors() {
    assert!(
        resolve_err(Some("postgres://h/db?sslmode"), &[]).contains("missing key/value separator")
    );
    assert!(resolve_err(Some("postgres://h/db?a=b=c"), &[]).contains("extra key/value separator"));
    assert!(resolve_err(Some("postgres://h/d%zzb"), &[]).contains("percent-encoded"));
    assert!(resolve_err(Some("postgres://h/d%00b"), &[]).contains("%00"));
    assert!(resolve_err(Some("postgres://[::1/db"), &[]).contains("\"]\""));
    let e = resolve_err(None, &[("DATABASE_URL", "postgres://h/db?bogus=1")]);
    assert!(e.contains("(from DATABASE_URL)"), "{e}");
}

#[test]
fn no_os_user_is_a_clear_error() {
    let e = Environment::from_vars([("PGHOST", "h")]);
    let err = ConnConfig::resolve(None, &e)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("set PGUSER"), "{err}");
    let c = ConnConfig::resolve(Some("postgres://u@h/db"), &e).unwrap();
    assert_eq!(c.user(), "u");
}
