//! Issue 22: PostgreSQL as people run it. The sync against a server that
//! accepts only TLS (`pg::tls_server`, certificates made by the test): each
//! `sslmode` connects or fails with a message that says why, and the libpq
//! environment and password file configure it without a URL.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use crate::common::{TestLake, sample, stderr, stdout, tunelake_cmd};
use crate::pg;

fn built_lake() -> TestLake {
    let lake = TestLake::new();
    lake.ingest(&sample());
    lake.build();
    lake
}

fn sync(lake: &TestLake, conn: &str, env: &[(&str, &str)]) -> Output {
    let mut c = tunelake_cmd();
    c.arg("--lake").arg(lake.layout.root()).args(["--progress", "off", "sync"]);
    if !conn.is_empty() {
        c.args(["--database-url", conn]);
    }
    c.envs(env.iter().copied()).output().unwrap()
}

/// Plays in the database, and whether this connection is encrypted.
fn plays_over_tls(conn: &str) -> (i64, bool) {
    let conn = conn.to_string();
    std::thread::spawn(move || {
        let db = tunelake::sink::connect::Database::new(&conn).unwrap();
        let mut client = db.connect().unwrap();
        let plays: i64 = client.query_one("SELECT count(*) FROM fact_plays", &[]).unwrap().get(0);
        let ssl: bool =
            client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().get(0);
        (plays, ssl)
    })
    .join()
    .unwrap()
}

#[test]
fn issue_22_each_sslmode_connects_or_says_why_not() {
    let server = pg::tls_server();
    let tls = server.tls.as_ref().unwrap();
    let url = server.create_database("tls_modes");
    let (ca, wrong_ca) = (tls.ca.to_str().unwrap(), tls.wrong_ca.to_str().unwrap());
    let lake = built_lake();
    let plays = lake.scalar("SELECT count(*) FROM fact_plays");

    // require: encrypted, and the rows arrive.
    let o = sync(&lake, &format!("{url}?sslmode=require"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(sslmode=require)"), "{}", stdout(&o));
    assert_eq!(plays_over_tls(&format!("{url}?sslmode=require")), (plays, true));

    // verify-full with the CA that signed the server's certificate (127.0.0.1 is in it).
    let full = format!("{url}?sslmode=verify-full&sslrootcert={ca}");
    let o = sync(&lake, &full, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(plays_over_tls(&full), (plays, true));
    // prefer, libpq's default: TLS when offered.
    let o = sync(&lake, &url, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // verify-full with another CA: refused, saying whose CA.
    let o = sync(&lake, &format!("{url}?sslmode=verify-full&sslrootcert={wrong_ca}"), &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("the server's certificate is not signed by the CA in {wrong_ca}")),
        "{}",
        stderr(&o)
    );

    // verify-full with a host name the certificate is not for (reached at 127.0.0.1).
    let (port, db) = (server.port(), url.rsplit('/').next().unwrap());
    let other =
        format!("host=db.example.net hostaddr=127.0.0.1 port={port} user=postgres dbname={db} sslrootcert={ca}");
    let o = sync(&lake, &format!("{other} sslmode=verify-full"), &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("not issued for this host name"), "{}", stderr(&o));
    // verify-ca checks the CA only: the same connection works.
    let o = sync(&lake, &format!("{other} sslmode=verify-ca"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // disable against a server that takes only TLS.
    let o = sync(&lake, &format!("{url}?sslmode=disable"), &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("the server accepts only TLS connections here; use sslmode=require"), "{}", stderr(&o));
    // A mode libpq does not know is a usage error.
    let o = sync(&lake, &format!("{url}?sslmode=verify"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("sslmode `verify` is not one of"), "{}", stderr(&o));
}

#[test]
fn issue_22_the_libpq_environment_and_pgpass_configure_the_sync_and_the_password_stays_secret() {
    let server = pg::tls_server();
    let tls = server.tls.as_ref().unwrap();
    let url = server.create_database("tls_env");
    let db = url.rsplit('/').next().unwrap().to_string();
    let port = server.port().to_string();
    let lake = built_lake();
    let plays = lake.scalar("SELECT count(*) FROM fact_plays");
    let tmp = tempfile::tempdir().unwrap();
    let pgpass = tmp.path().join("pgpass");
    fs::write(&pgpass, format!("# the tests' server\n127.0.0.1:{port}:*:{}:{}\n", tls.password_user, tls.password))
        .unwrap();
    fs::set_permissions(&pgpass, fs::Permissions::from_mode(0o600)).unwrap();
    let env = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", tls.password_user),
        ("PGDATABASE", db.as_str()),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", tls.ca.to_str().unwrap()),
        ("PGPASSFILE", pgpass.to_str().unwrap()),
    ];

    // No URL at all: the environment names the database, the password file logs in.
    let o = sync(&lake, "", &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("pwuser@127.0.0.1:{port}/{db} (sslmode=verify-full)")), "{}", stdout(&o));
    let with_pw = format!("postgresql://{}:{}@127.0.0.1:{port}/{db}?sslmode=require", tls.password_user, tls.password);
    assert_eq!(plays_over_tls(&with_pw), (plays, true));
    // The status names the target, never the password; no file of the lake holds it.
    let status = stdout(&lake.cli(&["status"]));
    assert!(status.contains("pwuser@127.0.0.1"), "{status}");
    for entry in walk(lake.layout.root()) {
        let bytes = fs::read(&entry).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&tls.password), "{} holds the password", entry.display());
    }
    assert!(!stdout(&o).contains(&tls.password) && !stderr(&o).contains(&tls.password));

    // A password file others can read is ignored, as libpq does, and the failure says where to look.
    fs::set_permissions(&pgpass, fs::Permissions::from_mode(0o644)).unwrap();
    let o = sync(&lake, "", &env);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("group or world access") && err.contains("password"), "{err}");
    assert!(!err.contains(&tls.password), "{err}");
    // PGPASSWORD works without the file.
    let mut with_password = env.to_vec();
    with_password.push(("PGPASSWORD", &tls.password));
    let o = sync(&lake, "", &with_password);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains(&tls.password) && !stderr(&o).contains(&tls.password));

    // --database-url comes first: its database wins over PGDATABASE, the environment fills the rest.
    let o = sync(&lake, "dbname=no_such_db", &with_password);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("pwuser@127.0.0.1:{port}/no_such_db (sslmode=verify-full)")),
        "{}",
        stderr(&o)
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { files.extend(walk(&p)) } else { files.push(p) }
    }
    files
}

/// Issue 22, item 5: `status`, `sync` and `run` report to a program with `--format json`.
#[test]
fn issue_22_status_sync_and_run_report_as_json() {
    let url = pg::server().create_database("json_report");
    let lake = TestLake::new();
    let json = |o: &Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", stderr(o));
        let text = stdout(o);
        assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    let o = lake.cli(&["run", "--sparkify", sample().to_str().unwrap(), "--database-url", &url, "--format", "json"]);
    let run = json(&o);
    assert_eq!(run["ingest"].as_array().unwrap().len(), 1);
    assert_eq!(run["ingest"][0]["files_new"], 75);
    let version = run["build"]["version"].as_u64().unwrap();
    assert_eq!(run["sync"]["lake_version"], version);
    let plays = lake.scalar("SELECT count(*) FROM fact_plays");
    assert_eq!(run["sync"]["rows_changed"]["fact_plays"], plays);

    let sync = json(&lake.cli(&["sync", "--database-url", &url, "--format", "json"]));
    assert_eq!((sync["sync"]["lake_version"].as_u64(), sync["sync"]["parts_sent"].as_u64()), (Some(version), Some(0)));
    assert!(sync["sync"]["target"].as_str().unwrap().starts_with("postgres@127.0.0.1:"), "{sync}");

    let status = json(&lake.cli(&["status", "--format", "json"]));
    assert_eq!(status["run_count"], 4, "{status}");
    assert_eq!(status["star"]["version"], version);
    assert_eq!(status["star"]["tables"]["fact_plays"]["rows"], plays);
    assert_eq!(status["star"]["staging_changed_since"], false);
    assert_eq!(status["last_sync"]["lake_version"], version);
    assert_eq!(status["last_sync"]["run"], 4);
    let events = status["accounting"].as_array().unwrap().iter().find(|a| a["stream"] == "events").unwrap();
    assert_eq!(events["plays"], plays);
    assert!(!status.to_string().contains("password"));
}
