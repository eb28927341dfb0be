//! TLS settings: libpq's `sslmode` and friends, built into a rustls client configuration.

use super::*;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain connections only.
    Disable,
    /// Plain first; TLS (unverified) only if the server refuses the plain connection.
    Allow,
    /// TLS (unverified) if the server offers it, else plain. libpq's default.
    #[default]
    Prefer,
    /// TLS, encrypted but not verified (verified against the root certificate when one is
    /// configured, as libpq does).
    Require,
    /// TLS, the certificate chain verified; the host name not checked.
    VerifyCa,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    pub(super) fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where verify-* modes take their trust anchors from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// `sslrootcert=<file>` (or `~/.postgresql/root.crt` when it exists): PEM certificates.
    File(PathBuf),
    /// `sslrootcert=system`, or no root file at all: the operating system's trust store.
    System,
}

/// How much of the server certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Encrypt only (libpq's prefer/require without a root certificate).
    None,
    /// The chain up to a trusted root (verify-ca).
    Chain,
    /// The chain and the host name (verify-full).
    Full,
}

/// TLS versions rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The TLS half of a [`ConnConfig`].
///
/// Built on rustls 0.23 through `tokio-postgres-rustls` 0.14: that is the maintained TLS bridge for
/// tokio-postgres 0.7 (its 0.14 line targets rustls 0.23 / tokio-rustls 0.26 and implements
/// `tls-server-end-point` channel binding, so SCRAM-SHA-256-PLUS works), and rustls needs no system
/// OpenSSL. The crypto provider is `ring` (pure Rust plus a little C/asm, no cmake or NASM at build
/// time, unlike `aws-lc-rs`); it is passed explicitly, so no process-wide default provider is
/// installed behind the caller's back. Trust anchors for verify-* come from `sslrootcert`, else the
/// OS store through `rustls-native-certs` (which honours `SSL_CERT_FILE`/`SSL_CERT_DIR` and the
/// distribution's CA bundle, where cloud providers' PostgreSQL CAs are usually installed) rather
/// than `webpki-roots`' compiled-in Mozilla list, which could not be extended by an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `None`: no root certificate configured (verify-* then use the system store).
    pub root_certs: Option<RootCerts>,
    /// `(sslcert, sslkey)`: a client certificate to present.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Send SNI (`sslsni`, default on).
    pub sni: bool,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// `sslnegotiation=direct` (PostgreSQL 17+): TLS handshake without the SSLRequest round trip.
    pub direct: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root_certs: None,
            client_cert: None,
            sni: true,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            direct: false,
        }
    }
}

impl TlsSettings {
    /// How the server certificate is checked in this mode.
    pub fn verification(&self) -> Verification {
        match self.mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => Verification::None,
            // libpq: "if a root CA file exists, sslmode=require behaves like verify-ca".
            SslMode::Require => match self.root_certs {
                Some(RootCerts::File(_)) => Verification::Chain,
                _ => Verification::None,
            },
            SslMode::VerifyCa => Verification::Chain,
            SslMode::VerifyFull => Verification::Full,
        }
    }

    /// The rustls client configuration for these settings (reads certificate files).
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivateKeyDer;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if self.min_version <= TlsVersion::Tls12 && self.max_version >= TlsVersion::Tls12 {
            versions.push(&rustls::version::TLS12);
        }
        if self.max_version >= TlsVersion::Tls13 {
            versions.push(&rustls::version::TLS13);
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| ConfigError::Tls(e.to_string()))?;

        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
            match self.verification() {
                Verification::None => Arc::new(verifier::NoVerification::new(provider.clone())),
                Verification::Chain | Verification::Full => {
                    let roots = Arc::new(self.root_store()?);
                    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                        roots,
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| ConfigError::Tls(e.to_string()))?;
                    if self.verification() == Verification::Full {
                        webpki
                    } else {
                        Arc::new(verifier::ChainOnly::new(webpki))
                    }
                }
            };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);

        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = read_pem_certs(cert, "client certificate (sslcert)")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ConfigError::File {
                    what: "client key (sslkey)",
                    path: key.clone(),
                    message: e.to_string(),
                })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| ConfigError::Tls(format!("client certificate: {e}")))?
            }
        };
        config.enable_sni = self.sni;
        if self.direct {
            // Direct TLS requires the `postgresql` ALPN protocol (PostgreSQL 17+).
            config.alpn_protocols = vec![b"postgresql".to_vec()];
        }
        Ok(config)
    }

    fn root_store(&self) -> Result<rustls::RootCertStore, ConfigError> {
        let mut store = rustls::RootCertStore::empty();
        match &self.root_certs {
            Some(RootCerts::File(path)) => {
                let certs = read_pem_certs(path, "root certificate (sslrootcert)")?;
                let (added, _ignored) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(ConfigError::File {
                        what: "root certificate (sslrootcert)",
                        path: path.clone(),
                        message: "no usable certificate in the file".into(),
                    });
                }
            }
            Some(RootCerts::System) | None => {
                let loaded = rustls_native_certs::load_native_certs();
                let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
                if added == 0 {
                    let why = loaded
                        .errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>();
                    return Err(ConfigError::Tls(format!(
                        "no trusted root certificates in the system store{}; set sslrootcert",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", why.join("; "))
                        }
                    )));
                }
            }
        }
        Ok(store)
    }
}

/// Every PEM certificate in the file at `path`; `what` names the setting in the error.
fn read_pem_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConfigError::File {
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

mod verifier {
    //! The two verifiers rustls does not ship: none (libpq's `require`) and chain-only (`verify-ca`).
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

    /// Accepts any certificate, but still checks the handshake signatures, so the session is
    /// encrypted to whoever holds the presented certificate's key (libpq's `require`).
    #[derive(Debug)]
    pub struct NoVerification(Arc<CryptoProvider>);

    impl NoVerification {
        pub fn new(provider: Arc<CryptoProvider>) -> Self {
            NoVerification(provider)
        }
    }

    impl ServerCertVerifier for NoVerification {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// WebPKI verification minus the host-name check (`verify-ca`). rustls checks the chain
    /// (and revocation) before the name, so a name error means the chain was valid.
    #[derive(Debug)]
    pub struct ChainOnly(Arc<WebPkiServerVerifier>);

    impl ChainOnly {
        pub fn new(inner: Arc<WebPkiServerVerifier>) -> Self {
            ChainOnly(inner)
        }
    }

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            match self.0.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}
