//! Connecting to PostgreSQL the way libpq does, so the settings people
//! already have work: the connection string (a URL or `key=value` pairs)
//! first, then the libpq environment (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`), then the
//! password file (`PGPASSFILE`, else `~/.pgpass`, ignored unless only its
//! owner can read it). TLS is rustls, with libpq's `sslmode`s: `disable`,
//! `allow` and `prefer` (TLS when the server offers it, the default),
//! `require` (TLS, the certificate unchecked unless `sslrootcert` is given),
//! `verify-ca` (signed by a trusted CA) and `verify-full` (and issued for
//! the host). The trusted CAs are `sslrootcert`'s file, else
//! `~/.postgresql/root.crt` when it exists, else the system's and the
//! webpki roots (`sslrootcert=system` asks for those). The password is
//! never shown: only [`Database::target`] is.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::Client;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::SinkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = SinkError;

    fn from_str(s: &str) -> Result<Self, SinkError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries without TLS first; offering TLS first is as permissive.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(SinkError::Setting(format!(
                    "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    File(PathBuf),
    System,
}

/// A database to connect to, resolved from the connection string and the environment.
#[derive(Debug, Clone)]
pub struct Database {
    config: postgres::Config,
    ssl: SslMode,
    roots: Roots,
    /// Whether `sslrootcert` was given, which makes `require` check the CA as libpq does.
    roots_given: bool,
}

/// The libpq variables that name a database: with one of them set and no
/// URL, the environment is the configuration.
pub const NAMING_VARS: [&str; 2] = ["PGHOST", "PGDATABASE"];

impl Database {
    /// `conn` (a URL, `key=value` pairs, or empty) completed from the process environment.
    pub fn new(conn: &str) -> Result<Database, SinkError> {
        Database::resolve(conn, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()), home().as_deref())
    }

    fn resolve(conn: &str, env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Result<Database, SinkError> {
        let (rest, sslmode, sslrootcert) = split_ssl(conn);
        let mut config = if rest.trim().is_empty() {
            postgres::Config::new()
        } else {
            postgres::Config::from_str(&rest).map_err(SinkError::BadUrl)?
        };
        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(h) if h.starts_with('/') => config.host_path(h),
                Some(h) => config.host(&h),
                None => config.host("localhost"),
            };
        }
        if config.get_ports().is_empty()
            && let Some(p) = env("PGPORT")
        {
            let port = p.parse().map_err(|_| SinkError::Setting(format!("PGPORT `{p}` is not a port number")))?;
            config.port(port);
        }
        if config.get_user().is_none() {
            let user = env("PGUSER").or_else(|| env("USER")).unwrap_or_else(|| "postgres".into());
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let db = env("PGDATABASE").or_else(|| config.get_user().map(String::from)).unwrap_or_default();
            config.dbname(&db);
        }
        if config.get_password().is_none() {
            let password = env("PGPASSWORD").or_else(|| {
                let file = env("PGPASSFILE").map(PathBuf::from).or_else(|| home.map(|h| h.join(".pgpass")))?;
                pgpass(&file, &config)
            });
            if let Some(p) = password {
                config.password(p);
            }
        }
        let ssl: SslMode = sslmode.or_else(|| env("PGSSLMODE")).as_deref().unwrap_or("prefer").parse()?;
        let rootcert = sslrootcert.or_else(|| env("PGSSLROOTCERT"));
        let roots_given = rootcert.is_some();
        let roots = match rootcert.as_deref() {
            Some("system") => Roots::System,
            Some(file) => Roots::File(PathBuf::from(file)),
            None => match home.map(|h| h.join(".postgresql/root.crt")).filter(|p| p.is_file()) {
                Some(file) => Roots::File(file),
                None => Roots::System,
            },
        };
        config.ssl_mode(match ssl {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        Ok(Database { config, ssl, roots, roots_given })
    }

    /// `user@host:port/dbname (sslmode=...)`: what the messages show, without the password.
    pub fn target(&self) -> String {
        let c = &self.config;
        let host = match c.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        let (user, db) = (c.get_user().unwrap_or("?"), c.get_dbname().unwrap_or("?"));
        format!("{user}@{host}:{port}/{db} (sslmode={})", self.ssl)
    }

    pub fn connect(&self) -> Result<Client, SinkError> {
        let target = self.target();
        let tls = self.tls()?;
        self.config.connect(tls).map_err(|source| {
            let hint = hint(&source, self);
            SinkError::Connect { target, hint, source }
        })
    }

    fn tls(&self) -> Result<Tls, SinkError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verify = match self.ssl {
            SslMode::Disable | SslMode::Prefer => None,
            SslMode::Require if !self.roots_given => None,
            SslMode::Require | SslMode::VerifyCa => Some(false),
            SslMode::VerifyFull => Some(true),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SinkError::Setting(format!("TLS setup: {e}")))?;
        let chain = match verify {
            None => None,
            Some(_) => Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(self.root_store()?),
                    provider.clone(),
                )
                .build()
                .map_err(|e| SinkError::Setting(format!("TLS setup: {e}")))?,
            ),
        };
        let verifier = Arc::new(Verifier { provider, chain, check_name: verify == Some(true) });
        let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
        Ok(Tls(Arc::new(config)))
    }

    fn root_store(&self) -> Result<rustls::RootCertStore, SinkError> {
        let mut store = rustls::RootCertStore::empty();
        match &self.roots {
            Roots::File(path) => {
                let bad = |what: String| SinkError::Setting(format!("sslrootcert {}: {what}", path.display()));
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
                for cert in certs {
                    store.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
                }
                if store.is_empty() {
                    return Err(bad("holds no PEM certificate".into()));
                }
            }
            Roots::System => {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                // The system's store may be missing or partly unreadable; the webpki roots remain.
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = store.add(cert);
                }
            }
        }
        Ok(store)
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// Takes `sslmode` and `sslrootcert` out of a connection string (the
/// postgres crate knows neither `verify-*` nor root files): the rest, and the two values.
fn split_ssl(conn: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    if let Ok(mut url) = url::Url::parse(conn)
        && matches!(url.scheme(), "postgres" | "postgresql")
    {
        let mut kept = vec![];
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "sslmode" => mode = Some(v.into_owned()),
                "sslrootcert" => root = Some(v.into_owned()),
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        return (url.to_string(), mode, root);
    }
    let mut kept = vec![];
    for pair in conn.split_whitespace() {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.trim_matches('\'').to_string()),
            Some(("sslrootcert", v)) => root = Some(v.trim_matches('\'').to_string()),
            _ => kept.push(pair),
        }
    }
    (kept.join(" "), mode, root)
}

/// The password for `config`'s host, port, database and user in a libpq
/// password file: `host:port:database:user:password` lines, `*` matching
/// anything, `\:` and `\\` escaped. Like libpq, a file others can read is ignored.
fn pgpass(file: &Path, config: &postgres::Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            file = %file.display(),
            "password file has group or world access; permissions should be u=rw (0600) or less: ignored"
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let want = [host.as_str(), port.as_str(), config.get_dbname().unwrap_or(""), config.get_user().unwrap_or("")];
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let fields = pgpass_fields(line);
        let [h, p, d, u, password] = <[String; 5]>::try_from(fields).ok()?;
        let matches = [h, p, d, u].iter().zip(want).all(|(f, w)| f == "*" || f == w);
        matches.then_some(password)
    })
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().expect("one field").extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// What to do about a failed connection, when the error says.
fn hint(e: &postgres::Error, db: &Database) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    let roots = match &db.roots {
        Roots::File(p) => format!("the CA in {}", p.display()),
        Roots::System => "a CA the system or webpki trusts (set sslrootcert to your server's CA file)".into(),
    };
    if text.contains("no encryption") {
        ": the server accepts only TLS connections here; use sslmode=require, verify-ca or verify-full".into()
    } else if text.contains("server does not support TLS") {
        format!(": the server does not offer TLS, and sslmode={} requires it", db.ssl)
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        format!(
            ": the server's certificate is not issued for this host name (sslmode={}; verify-ca checks the CA only)",
            db.ssl
        )
    } else if text.contains("UnknownIssuer") || text.contains("unknown issuer") || text.contains("BadSignature") {
        format!(": the server's certificate is not signed by {roots} (sslmode={})", db.ssl)
    } else if text.contains("password") {
        ": check the password (URL, PGPASSWORD or ~/.pgpass, which must be mode 0600)".into()
    } else {
        String::new()
    }
}

/// What a TLS connection checks of the server's certificate: nothing
/// (`require` without a root file, as libpq: still encrypted, and the
/// handshake's signatures are still checked), the chain to a trusted CA
/// (`verify-ca`), or the chain and the host name (`verify-full`).
#[derive(Debug)]
struct Verifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    check_name: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// rustls as the postgres crate's TLS.
#[derive(Clone)]
struct Tls(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = TlsConnector;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<TlsConnector, Self::Error> {
        Ok(TlsConnector { config: self.0.clone(), name: ServerName::try_from(host.to_string())? })
    }
}

struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for TlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream<S>, std::io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(TlsStream(stream))
        })
    }
}

struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(conn: &str, vars: &[(&str, &str)], home: Option<&Path>) -> Database {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Database::resolve(conn, &|k| vars.get(k).cloned(), home).unwrap()
    }

    #[test]
    fn the_connection_string_comes_first_then_the_libpq_environment() {
        let env = [
            ("PGHOST", "db.example"),
            ("PGPORT", "6543"),
            ("PGUSER", "ann"),
            ("PGDATABASE", "music"),
            ("PGSSLMODE", "verify-full"),
            ("PGPASSWORD", "from-env"),
        ];
        let d = resolve("", &env, None);
        assert_eq!(d.target(), "ann@db.example:6543/music (sslmode=verify-full)");
        assert_eq!(d.config.get_password(), Some(&b"from-env"[..]));
        let d = resolve("postgresql://bob:pw@h:5433/other?sslmode=require&sslrootcert=/ca.pem", &env, None);
        assert_eq!(d.target(), "bob@h:5433/other (sslmode=require)");
        assert_eq!((d.roots, d.roots_given), (Roots::File("/ca.pem".into()), true));
        assert_eq!(d.config.get_password(), Some(&b"pw"[..]));
        let d = resolve("host=h sslmode=verify-ca dbname=x", &[], None);
        assert_eq!((d.ssl, d.config.get_dbname()), (SslMode::VerifyCa, Some("x")));
        assert_eq!(resolve("", &[], None).ssl, SslMode::Prefer, "libpq's default");
        let err = Database::resolve("postgresql://h/d?sslmode=verify", &|_| None, None).unwrap_err().to_string();
        assert!(err.contains("sslmode `verify`"), "{err}");
    }

    #[test]
    fn the_password_file_matches_host_port_database_and_user_and_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".pgpass");
        let text = "# comment\nother:*:*:*:nope\nh:5432:music:ann:first\\:one\n*:*:*:ann:fallback\n";
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pw = |conn: &str| resolve(conn, &[], Some(dir.path())).config.get_password().map(|p| p.to_vec());
        assert_eq!(pw("postgresql://ann@h/music"), Some(b"first:one".to_vec()));
        assert_eq!(pw("postgresql://ann@h/other"), Some(b"fallback".to_vec()));
        assert_eq!(pw("postgresql://bob@h/music"), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(pw("postgresql://ann@h/music"), None, "a file others can read is ignored");
    }
}
