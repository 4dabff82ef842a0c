//! A throwaway PostgreSQL server for the integration tests.
//!
//! [`server()`] starts one server per test process on first use: `initdb` into a fresh
//! temporary directory, then `pg_ctl start` on a free port of 127.0.0.1, with durability
//! switched off (the data is disposable). The binaries come from `PATH`, else from the
//! newest `/usr/lib/postgresql/*/bin`; a missing installation is a loud panic, never a
//! silent skip. PostgreSQL refuses to run as root, so under uid 0 the server tools run as
//! the `postgres` OS user. A static is never dropped, so a detached watchdog shell waits
//! for the test process to exit, then stops the server and deletes the directory.
//! Each test gets its own empty database from [`PgServer::create_database`].
//!
//! [`tls_server()`] is a second server that accepts only TLS on TCP (`hostssl` lines
//! alone in pg_hba.conf), with a CA and a server certificate for 127.0.0.1 and
//! localhost made by `openssl` here, and a role `pwuser` that logs in by password.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use postgres::{Client, NoTls};

const NOT_FOUND: &str = "PostgreSQL server binaries (initdb, pg_ctl) not found: install them \
    with `apt-get install postgresql` (Debian/Ubuntu) or put them on PATH";
const ROOT_WITHOUT_USER: &str = "running as root: create a `postgres` user (apt-get install \
    postgresql creates one) or run the tests as a normal user";

/// A running throwaway server: superuser `postgres`, trust authentication, 127.0.0.1 only.
pub struct PgServer {
    port: u16,
    /// The Unix socket directory, where the tests' own admin connections go.
    socket_dir: String,
    /// For the TLS server: its certificate files.
    pub tls: Option<TlsFiles>,
}

/// The TLS server's certificates (PEM files) and its password login.
pub struct TlsFiles {
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// A CA that signed nothing the server shows.
    pub wrong_ca: PathBuf,
    pub password_user: &'static str,
    /// Made when the server starts, so no password is written in the source.
    pub password: String,
}

/// The process-wide server, started on first call. If it could not be started, every
/// caller panics with the same explanation (startup is attempted only once).
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    match SERVER.get_or_init(|| start(false)) {
        Ok(server) => server,
        Err(msg) => panic!("{msg}"),
    }
}

/// The process-wide TLS-only server, started on first call.
pub fn tls_server() -> &'static PgServer {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    match SERVER.get_or_init(|| start(true)) {
        Ok(server) => server,
        Err(msg) => panic!("{msg}"),
    }
}

impl PgServer {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database named `<prefix>_<counter>_<pid>` and returns its URL,
    /// `postgresql://postgres@127.0.0.1:<port>/<name>`. Usable from async tests too.
    pub fn create_database(&self, prefix: &str) -> String {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{n}_{}", std::process::id())
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let port = self.port;
        let admin = format!("host={} port={port} user=postgres dbname=postgres", self.socket_dir);
        let sql = format!("CREATE DATABASE \"{name}\"");
        // The sync client drives its own Tokio runtime, which panics when nested inside
        // another one: a plain thread keeps this callable from `#[tokio::test]`.
        std::thread::spawn(move || Client::connect(&admin, NoTls)?.batch_execute(&sql))
            .join()
            .expect("thread creating a test database panicked")
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        format!("postgresql://postgres@127.0.0.1:{port}/{name}")
    }
}

fn start(tls: bool) -> Result<PgServer, String> {
    let tools = Tools::find()?;
    let mut builder = tempfile::Builder::new();
    builder.prefix("tunelake-pg-");
    // As root, stay under /tmp so the `postgres` user can reach the directory.
    let tmp = match tools.switch {
        None => builder.tempdir(),
        Some(_) => builder.tempdir_in("/tmp"),
    };
    let dir = tmp.map_err(|e| format!("cannot create a temp dir: {e}"))?.keep();
    let dir_s = dir.to_str().ok_or("temp dir path is not UTF-8")?.to_owned();
    let (data, log) = (format!("{dir_s}/data"), format!("{dir_s}/log"));
    spawn_watchdog(&tools, &dir_s, &data)?;

    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(|e| format!("cannot chmod {dir_s}: {e}"))?;
    if tools.switch.is_some() {
        run(&strings(&["chown", "-R", "postgres", &dir_s]), &dir)?;
    }
    let flags = "-U postgres -A trust --no-sync -E UTF8 --locale=C".split(' ');
    let initdb: Vec<&str> = ["-D", &data].into_iter().chain(flags).collect();
    run(&tools.argv("initdb", &initdb), &dir)?;

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot pick a free port: {e}"))?
        .port();
    let mut opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off",
        sh_quote(&dir_s)
    );
    let tls_files = if tls { Some(make_certificates(&tools, &dir, &data, &mut opts)?) } else { None };
    let pg_ctl = ["-D", &data, "-l", &log, "-o", &opts, "-w", "start"];
    run(&tools.argv("pg_ctl", &pg_ctl), &dir).map_err(|e| {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("PostgreSQL failed to start: {e}\n--- tail of {log} ---\n{tail}")
    })?;
    let server = PgServer { port, socket_dir: dir_s, tls: tls_files };
    if let Some(t) = &server.tls {
        let admin = format!("host={} port={port} user=postgres dbname=postgres", server.socket_dir);
        let sql = format!("CREATE ROLE {} LOGIN SUPERUSER PASSWORD '{}'", t.password_user, t.password);
        std::thread::spawn(move || Client::connect(&admin, NoTls)?.batch_execute(&sql))
            .join()
            .expect("thread creating a role panicked")
            .map_err(|e| format!("cannot create the password role: {e}"))?;
    }
    Ok(server)
}

/// Makes a CA, a server certificate it signs (for 127.0.0.1 and localhost) and a second,
/// unrelated CA with `openssl`; puts the server's pair in the data directory, TCP
/// connections to TLS only, and the settings into `opts`.
fn make_certificates(tools: &Tools, dir: &Path, data: &str, opts: &mut String) -> Result<TlsFiles, String> {
    let tls = dir.join("tls");
    fs::create_dir_all(&tls).map_err(|e| format!("cannot create {}: {e}", tls.display()))?;
    let openssl = find_executable("openssl")
        .ok_or("openssl not found: install it with `apt-get install openssl` (the TLS tests make certificates)")?;
    let openssl = openssl.to_string_lossy().into_owned();
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for ca in ["ca", "wrong-ca"] {
        let (k, c, subj) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN=tunelake test {ca}"));
        let mut argv = vec![openssl.as_str(), "req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &k, "-out", &c];
        argv.extend(key);
        argv.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        run(&strings(&argv), &tls)?;
    }
    let mut req = vec![openssl.as_str(), "req", "-new", "-subj", "/CN=localhost", "-keyout", "server.key"];
    req.extend(key);
    req.extend(["-out", "server.csr"]);
    run(&strings(&req), &tls)?;
    let ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
        keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n";
    fs::write(tls.join("server.ext"), ext).map_err(|e| format!("cannot write server.ext: {e}"))?;
    let sign = [
        &openssl,
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ];
    run(&strings(&sign), &tls)?;
    for f in ["server.pem", "server.key"] {
        fs::copy(tls.join(f), Path::new(data).join(f)).map_err(|e| format!("cannot copy {f}: {e}"))?;
    }
    fs::set_permissions(Path::new(data).join("server.key"), fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod server.key: {e}"))?;
    let hba = "local all all trust\n\
        hostssl all pwuser 127.0.0.1/32 scram-sha-256\n\
        hostssl all all 127.0.0.1/32 trust\n";
    fs::write(Path::new(data).join("pg_hba.conf"), hba).map_err(|e| format!("cannot write pg_hba.conf: {e}"))?;
    if tools.switch.is_some() {
        run(&strings(&["chown", "-R", "postgres", data]), dir)?;
    }
    opts.push_str(" -c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key");
    Ok(TlsFiles {
        ca: tls.join("ca.pem"),
        wrong_ca: tls.join("wrong-ca.pem"),
        password_user: "pwuser",
        password: format!("tl-{}-{}", std::process::id(), fastrand::u64(..)),
    })
}

/// The server binaries, and how to become the `postgres` OS user when we are root:
/// `Some("runuser")` or `Some("su")`.
struct Tools {
    bin: PathBuf,
    switch: Option<&'static str>,
}

impl Tools {
    fn find() -> Result<Tools, String> {
        let bin = find_bin_dir().ok_or(NOT_FOUND)?;
        let uid = Command::new("id").arg("-u").output();
        let uid = uid.map_err(|e| format!("cannot run `id -u`: {e}"))?.stdout;
        if String::from_utf8_lossy(&uid).trim() != "0" {
            return Ok(Tools { bin, switch: None });
        }
        run(&strings(&["id", "-u", "postgres"]), Path::new("/")).map_err(|_| ROOT_WITHOUT_USER)?;
        let runuser = find_executable("runuser").is_some();
        let switch = Some(if runuser { "runuser" } else { "su" });
        Ok(Tools { bin, switch })
    }

    /// The command line running `tool args...` as the right user.
    fn argv(&self, tool: &str, args: &[&str]) -> Vec<String> {
        let mut cmd = vec![self.bin.join(tool).to_string_lossy().into_owned()];
        cmd.extend(args.iter().map(|a| a.to_string()));
        match self.switch {
            None => cmd,
            Some("runuser") => [strings(&["runuser", "-u", "postgres", "--"]), cmd].concat(),
            Some(_) => {
                let line: Vec<String> = cmd.iter().map(|a| sh_quote(a)).collect();
                strings(&["su", "postgres", "-s", "/bin/sh", "-c", &line.join(" ")])
            }
        }
    }
}

/// Runs `argv` in `cwd` (reachable by the `postgres` user), failing with its output.
fn run(argv: &[String], cwd: &Path) -> Result<(), String> {
    let shown = argv.join(" ");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(cwd).stdin(Stdio::null());
    let out = cmd.output().map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let output = String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned();
    Err(format!("`{shown}` failed ({}):\n{output}", out.status))
}

/// Once this process is gone, stop the server and delete `dir`. The watchdog gets its own
/// process group (Ctrl-C on the tests must not kill it) and no inherited stdio (so
/// `cargo test` does not wait on its pipes).
fn spawn_watchdog(tools: &Tools, dir: &str, data: &str) -> Result<(), String> {
    let script = r#"pid=$1 dir=$2; shift 2
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
"$@"; rm -rf "$dir""#;
    (Command::new("sh").args(["-c", script, "pg-watchdog"]))
        .args([&std::process::id().to_string(), dir])
        .args(tools.argv("pg_ctl", &["-D", data, "stop", "-m", "immediate"]))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot spawn the PostgreSQL cleanup watchdog: {e}"))
}

/// A directory with `initdb` and `pg_ctl`, and `postgres` beside the real `pg_ctl`:
/// `PATH` first, then `/usr/lib/postgresql/<version>/bin`, newest version first.
fn find_bin_dir() -> Option<PathBuf> {
    let installed = fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten();
    let mut versions: Vec<(Vec<u32>, PathBuf)> = installed
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    let usable = |d: &PathBuf| {
        let pg_ctl = fs::canonicalize(d.join("pg_ctl")).unwrap_or_default();
        let postgres = pg_ctl.with_file_name("postgres");
        is_executable(&d.join("initdb")) && is_executable(&pg_ctl) && is_executable(&postgres)
    };
    let newest_first = versions.into_iter().rev().map(|(_, d)| d);
    path_dirs().into_iter().chain(newest_first).find(usable)
}

fn path_dirs() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).collect()
}

fn find_executable(name: &str) -> Option<PathBuf> {
    let sbin = ["/usr/sbin", "/sbin"].map(PathBuf::from);
    let mut candidates = path_dirs().into_iter().chain(sbin).map(|d| d.join(name));
    candidates.find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Quotes `s` as one word for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
