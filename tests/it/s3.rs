//! The lake in a bucket: a real S3-compatible server (moto's standalone
//! server from the test venv, which implements conditional puts) on
//! loopback. Ingest, build, query, sync and reprocess on `s3://` give the
//! rows a local lake gives; a second machine (another cache) reads the same;
//! delta-rs's Python `deltalake` and DuckDB read the star from the bucket;
//! a run killed at any point of its upload converges when run again; of two
//! runs at once one wins and the other stops, saying who holds the lake.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::common::{TestLake, sample, sparkify_dataset, stderr, stdout, tunelake_cmd};
use crate::pg;

const KEY_ID: &str = "tunelake-test-key";

/// A moto server on a free loopback port with one bucket, `music`.
struct S3 {
    child: Child,
    endpoint: String,
    secret: String,
    dir: tempfile::TempDir,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    fn start() -> S3 {
        let python = crate::delta::python();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("moto.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{}: cannot start moto's server ({e}); see tests/requirements.txt", python.display())
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto's server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Made at run time: no credential-like literal in the source.
        let secret = format!("s3cret-{}", fastrand::u64(..));
        let s3 = S3 { child, endpoint, secret, dir };
        let o = Command::new(&python)
            .args([
                "-c",
                "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                aws_access_key_id='k', aws_secret_access_key='s').create_bucket(Bucket='music')",
                &s3.endpoint,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "create bucket: {}", stderr(&o));
        s3
    }

    /// `tunelake` on `url` with this server's credentials and the cache `cache` (a machine).
    fn tunelake(&self, url: &str, cache: &str) -> Command {
        let mut c = tunelake_cmd();
        c.args(["--lake", url, "--progress", "off"])
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("TUNELAKE_CACHE", self.dir.path().join(cache));
        c
    }

    fn ok(&self, url: &str, cache: &str, args: &[&str]) -> Output {
        let o = self.tunelake(url, cache).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?} on {url}: {}{}", stdout(&o), stderr(&o));
        o
    }

    fn store(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("music")
            .with_region("us-east-1")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(&self.secret)
            .build()
            .unwrap()
    }

    /// Every object under `prefix`, with its bytes.
    fn objects(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let store = self.store();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let metas: Vec<_> = store.list(Some(&prefix.into())).try_collect().await.unwrap();
            let mut out = vec![];
            for m in metas {
                let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
                out.push((m.location.to_string(), bytes.to_vec()));
            }
            out
        })
    }
}

/// Plays, a checksum of their ids, and the dimensions' rows, as a lake's `query` gives them.
const STATE_SQL: &str = "SELECT (SELECT count(*) FROM fact_plays) AS plays, \
    (SELECT md5(string_agg(play_id, ',' ORDER BY play_id)) FROM fact_plays) AS ids, \
    (SELECT count(*) FROM dim_users) AS users, (SELECT count(*) FROM dim_tracks) AS tracks, \
    (SELECT count(*) FROM dim_artists) AS artists";

fn local_state(lake: &TestLake) -> String {
    let o = lake.cli(&["query", "--format", "csv", STATE_SQL]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn bucket_state(s3: &S3, url: &str, cache: &str) -> String {
    stdout(&s3.ok(url, cache, &["query", "--format", "csv", STATE_SQL]))
}

fn pg_plays(url: &str) -> (i64, String) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let row = client
        .query_one("SELECT count(*), md5(string_agg(play_id, ',' ORDER BY play_id)) FROM fact_plays", &[])
        .unwrap();
    (row.get(0), row.get(1))
}

/// The course data in two halves of days, for a second ingest.
fn halves(dir: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (dir.join("first"), dir.join("second"));
    crate::common::copy_dir(&sparkify_dataset(), &a);
    crate::common::copy_dir(&sparkify_dataset(), &b);
    for (keep, drop) in [(&a, 16..=30), (&b, 1..=15)] {
        for day in drop {
            let _ = std::fs::remove_file(keep.join(format!("log_data/2018/11/2018-11-{day:02}-events.json")));
        }
    }
    (a, b)
}

#[test]
fn a_lake_in_a_bucket_gives_a_local_lakes_rows_through_ingest_build_query_sync_and_reprocess() {
    let s3 = S3::start();
    let url = "s3://music/lakes/mine";
    let local = TestLake::new();
    let (first, second) = halves(s3.dir.path());
    let (db_local, db_bucket) = (pg::server().create_database("s3_local"), pg::server().create_database("s3_bucket"));
    let on_both = |args: &[&str]| {
        let o = local.cli(args);
        assert!(o.status.success(), "{args:?} locally: {}", stderr(&o));
        s3.ok(url, "laptop", args);
    };
    on_both(&["ingest", "sparkify", first.to_str().unwrap()]);
    on_both(&["build"]);
    on_both(&["ingest", "sparkify", second.to_str().unwrap()]);
    on_both(&["build"]);
    assert_eq!(bucket_state(&s3, url, "laptop"), local_state(&local));
    assert!(local_state(&local).lines().nth(1).unwrap().starts_with("6820,"), "{}", local_state(&local));

    // A second machine sees the same lake; the named queries agree.
    assert_eq!(bucket_state(&s3, url, "desktop"), local_state(&local));
    let top = |o: Output| stdout(&o);
    assert_eq!(
        top(s3.ok(url, "desktop", &["query", "--name", "top_tracks", "--format", "csv", "--tz", "UTC"])),
        top(local.cli(&["query", "--name", "top_tracks", "--format", "csv", "--tz", "UTC"]))
    );

    // PostgreSQL gets the same rows from either.
    let sync = |c: &mut Command, db: &str| {
        let o = c.args(["sync", "--database-url", db]).output().unwrap();
        assert!(o.status.success(), "sync: {}", stderr(&o));
    };
    sync(tunelake_cmd().arg("--lake").arg(local.layout.root()), &db_local);
    sync(&mut s3.tunelake(url, "desktop"), &db_bucket);
    assert_eq!(pg_plays(&db_bucket), pg_plays(&db_local));
    assert_eq!(pg_plays(&db_bucket).0, 6820);

    // Reprocess on the first machine, which has not seen the sync's run yet.
    on_both(&["reprocess"]);
    assert_eq!(bucket_state(&s3, url, "desktop"), local_state(&local));
    let status = stdout(&s3.ok(url, "desktop", &["status"]));
    assert!(status.starts_with(&format!("lake: {url}\n")), "{status}");
    assert_eq!(status.matches(" sync ").count(), 1, "the sync's run is in the bucket's ledger once: {status}");

    // Other engines read the star from the bucket: delta-rs's Python `deltalake`, DuckDB over it.
    let script = "import deltalake, duckdb, json, sys\n\
        opts = {'AWS_ENDPOINT_URL': sys.argv[2], 'AWS_ALLOW_HTTP': 'true', 'AWS_ACCESS_KEY_ID': sys.argv[3], \
        'AWS_SECRET_ACCESS_KEY': sys.argv[4], 'AWS_REGION': 'us-east-1'}\n\
        t = {n: deltalake.DeltaTable(sys.argv[1] + '/star/' + n, storage_options=opts).to_pyarrow_dataset() \
        for n in ['fact_plays', 'dim_users', 'dim_tracks', 'dim_artists']}\n\
        fact_plays, dim_users, dim_tracks, dim_artists = (t[n] for n in ['fact_plays', 'dim_users', 'dim_tracks', 'dim_artists'])\n\
        print(duckdb.sql(sys.argv[5]).fetchall())\n";
    let o = Command::new(crate::delta::python())
        .args(["-c", script, url, &s3.endpoint, KEY_ID, &s3.secret, STATE_SQL])
        .output()
        .unwrap();
    assert!(o.status.success(), "deltalake + duckdb: {}", stderr(&o));
    let theirs = stdout(&o);
    let ours: Vec<String> = local_state(&local).lines().nth(1).unwrap().split(',').map(str::to_string).collect();
    let expected = format!("[({}, '{}', {}, {}, {})]\n", ours[0], ours[1], ours[2], ours[3], ours[4]);
    assert_eq!(theirs, expected, "what deltalake + DuckDB read from the bucket");

    // The credentials are nowhere in the bucket or the caches, and no lock is left.
    let objects = s3.objects("lakes/mine");
    assert!(objects.len() > 30, "{}", objects.len());
    assert!(!objects.iter().any(|(k, _)| k.ends_with("_manifest/LOCK")), "a finished run leaves no lock");
    assert!(!objects.iter().any(|(k, _)| k.contains("/state/")), "tokens and cursors stay on the machine");
    for (key, bytes) in &objects {
        assert!(!String::from_utf8_lossy(bytes).contains(&s3.secret), "{key} holds the secret key");
    }
    let out = Command::new("grep").args(["-rl", &s3.secret]).arg(s3.dir.path()).output().unwrap();
    assert!(stdout(&out).trim().is_empty(), "files holding the secret: {}", stdout(&out));
}

#[test]
fn of_two_runs_at_once_on_a_bucket_one_wins_and_the_other_stops_saying_who_holds_it() {
    let s3 = S3::start();
    let url = "s3://music/race";
    let data = sparkify_dataset();
    let first = s3
        .tunelake(url, "one")
        .args(["run", "--sparkify", data.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Start the second once the first holds the bucket's lock.
    let store = s3.store();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    while rt.block_on(store.head(&"race/_manifest/LOCK".into())).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = s3.tunelake(url, "two").args(["run", "--sparkify", data.to_str().unwrap()]).output().unwrap();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(second.status.code(), Some(4), "{}{}", stdout(&second), stderr(&second));
    let msg = stderr(&second);
    assert!(
        msg.contains("s3://music/race is locked by another run (pid ") && msg.contains("`tunelake run` on "),
        "{msg}"
    );
    // The loser runs again and builds on the winner's run: nothing doubled.
    let reference = TestLake::new();
    reference.ingest(&data);
    reference.build();
    s3.ok(url, "two", &["run", "--sparkify", data.to_str().unwrap()]);
    assert_eq!(bucket_state(&s3, url, "two"), local_state(&reference));
    assert_eq!(bucket_state(&s3, url, "three"), local_state(&reference));

    // A lock left by a run that died on another machine is named until `unlock` removes it.
    let holder = r#"{"host":"elsewhere","cache":"/x","pid":7,"command":"build","since":"2026-12-03T00:00:00Z"}"#;
    rt.block_on(store.put(&"race/_manifest/LOCK".into(), holder.as_bytes().to_vec().into())).unwrap();
    let o = s3.tunelake(url, "two").arg("build").output().unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("(pid 7 `tunelake build` on elsewhere since 2026-12-03T00:00:00Z)"), "{}", stderr(&o));
    assert!(stderr(&o).contains("`tunelake unlock --lake s3://music/race`"), "{}", stderr(&o));
    let o = s3.ok(url, "two", &["unlock"]);
    assert!(stdout(&o).starts_with("removed the lock of pid 7"), "{}", stdout(&o));
    s3.ok(url, "two", &["build"]);
}

/// A run on a bucket killed as it passes its Nth crash point.
fn killed_at(s3: &S3, url: &str, cache: &str, args: &[&str], n: u64) {
    let o = s3.tunelake(url, cache).args(args).env("TUNELAKE_CRASH_AT", n.to_string()).output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "point {n}: {}", stderr(&o));
}

#[test]
fn a_run_on_a_bucket_killed_mid_upload_between_delta_commits_or_before_its_ledger_entry_converges() {
    let s3 = S3::start();
    let data = sample();
    let args = ["run", "--sparkify", data.to_str().unwrap()];
    let reference = TestLake::new();
    reference.ingest(&data);
    reference.build();
    let want = local_state(&reference);

    // The points a whole run passes, by what they did.
    let o = s3.tunelake("s3://music/trace", "trace").args(args).env("TUNELAKE_CRASH_TRACE", "1").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let points: Vec<String> =
        stderr(&o).lines().filter(|l| l.starts_with("crash point ")).map(str::to_string).collect();
    let index = |what: &dyn Fn(&str) -> bool| points.iter().position(|p| what(p)).unwrap() as u64 + 1;
    let uploads = index(&|p| p.contains(": uploaded "));
    let mid_upload = uploads + 3;
    let delta_commit = index(&|p| p.contains(": uploaded star/") && p.ends_with(".json") && p.contains("_delta_log"));
    let entry = index(&|p| p.contains(": uploaded _manifest/") && p.ends_with("00000001.json"));
    let cases = [
        ("mid-upload", mid_upload),
        ("after a Delta commit", delta_commit + 1),
        ("before a ledger entry", entry - 1),
        ("after the first entry", entry),
    ];
    for (i, (when, n)) in cases.into_iter().enumerate() {
        let url = format!("s3://music/crash-{i}");
        killed_at(&s3, &url, "machine", &args, n);
        // Nothing half-published is read: a fresh machine sees either no run or whole ones.
        let fresh = s3.tunelake(&url, &format!("fresh-{i}")).args(["status"]).output().unwrap();
        assert!(fresh.status.success(), "{when}: status of the bucket: {}", stderr(&fresh));
        // The same machine runs again (it takes over its dead run's lock); so does another one.
        s3.ok(&url, "machine", &args);
        assert_eq!(bucket_state(&s3, &url, "machine"), want, "{when}");
        s3.ok(&url, "other", &args);
        assert_eq!(bucket_state(&s3, &url, &format!("after-{i}")), want, "{when}: read on a new machine");
        let v = s3.ok(&url, &format!("after-{i}"), &["verify"]);
        assert!(stdout(&v).contains(": ok"), "{when}: {}", stdout(&v));
    }
}

#[test]
fn a_cache_with_a_commit_the_bucket_has_differently_is_refused_by_name() {
    let s3 = S3::start();
    let url = "s3://music/diverged";
    let data = sample();
    s3.ok(url, "one", &["ingest", "sparkify", data.to_str().unwrap()]);
    // Machine two commits a run of its own in its cache, never pushed (as if cut off).
    let two = s3.dir.path().join("two");
    s3.ok(url, "two", &["status"]);
    let cache = std::fs::read_dir(two.join("lakes")).unwrap().next().unwrap().unwrap().path();
    s3.ok(url, "one", &["build"]);
    let o = tunelake_cmd().arg("--lake").arg(&cache).args(["build"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s3.tunelake(url, "two").arg("build").output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("holds committed runs the bucket has differently (_manifest/00000002.json)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_lake_is_copied_to_a_bucket_and_back_with_every_checksum_checked() {
    let s3 = S3::start();
    let local = TestLake::new();
    local.ingest(&sample());
    local.build();
    let want = local_state(&local);
    let url = "s3://music/moved";
    let from = local.layout.root().to_str().unwrap().to_string();
    let o = s3.ok(url, "m", &["copy-lake", &from, url]);
    let said = stdout(&o);
    assert!(
        said.starts_with("copy-lake: ") && said.contains(&format!(" to {url}, each one's sha256 checked")),
        "{said}"
    );
    assert_eq!(bucket_state(&s3, url, "m"), want);

    // Into a folder holding a lake: refused; into a new one: the same lake, verified.
    let o = s3.tunelake(url, "m").args(["copy-lake", url, &from]).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("holds a lake already"), "{}", stderr(&o));
    let back = s3.dir.path().join("back");
    s3.ok(url, "m", &["copy-lake", url, back.to_str().unwrap()]);
    let o = tunelake_cmd().arg("--lake").arg(&back).args(["verify", "--deep"]).output().unwrap();
    assert!(o.status.success() && stdout(&o).contains(": ok"), "{}{}", stdout(&o), stderr(&o));
    let o = tunelake_cmd().arg("--lake").arg(&back).args(["query", "--format", "csv", STATE_SQL]).output().unwrap();
    assert_eq!(stdout(&o), want);
    // The bucket's objects are the folder's files, byte for byte.
    let objects = s3.objects("moved");
    for (key, bytes) in &objects {
        let rel = key.strip_prefix("moved/").unwrap();
        assert_eq!(&std::fs::read(local.layout.root().join(rel)).unwrap(), bytes, "{rel}");
    }

    // A raw file damaged in the source is named, not copied as if whole.
    let raw = objects.iter().find(|(k, _)| k.contains("/raw/") && k.ends_with(".json")).unwrap();
    let rel = raw.0.strip_prefix("moved/").unwrap();
    let mut bytes = raw.1.clone();
    bytes[0] ^= 1;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(s3.store().put(&raw.0.as_str().into(), bytes.into())).unwrap();
    let o =
        s3.tunelake(url, "m").args(["copy-lake", url, s3.dir.path().join("again").to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{url}/{rel}: the sha256 of the bytes differs from its name")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn vacuum_on_a_bucket_removes_debris_and_replaced_files_there() {
    let s3 = S3::start();
    let url = "s3://music/vacuumed";
    let (first, second) = halves(s3.dir.path());
    for half in [&first, &second] {
        s3.ok(url, "m", &["ingest", "sparkify", half.to_str().unwrap()]);
        s3.ok(url, "m", &["build"]);
    }
    let debris = "vacuumed/staging/stg_sparkify_events/date=2018-11-01/part-99999999-00000.parquet";
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(s3.store().put(&debris.into(), b"half a file".to_vec().into())).unwrap();
    let before = bucket_state(&s3, url, "m");
    let star_files = |s3: &S3| s3.objects("vacuumed/star").iter().filter(|(k, _)| k.ends_with(".parquet")).count();
    let star_before = star_files(&s3);

    let o = s3.ok(url, "m", &["vacuum", "--retain", "0s"]);
    assert!(stdout(&o).contains("part-99999999-00000.parquet"), "{}", stdout(&o));
    let keys: Vec<String> = s3.objects("vacuumed").into_iter().map(|(k, _)| k).collect();
    assert!(!keys.iter().any(|k| k == debris), "the debris is gone from the bucket");
    assert!(star_files(&s3) < star_before, "replaced star files are gone: {} of {star_before}", star_files(&s3));
    // Another machine reads the same lake, whole.
    assert_eq!(bucket_state(&s3, url, "other"), before);
    let v = s3.ok(url, "other", &["verify", "--deep"]);
    assert!(stdout(&v).contains(": ok"), "{}", stdout(&v));
}
