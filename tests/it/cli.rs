//! The binary as a user meets it: help with examples, output formats, the
//! README's main command, clear errors with the right exit codes.

use crate::common::{TestLake, sample, stderr, stdout, tunelake_cmd};

#[test]
fn help_shows_examples_for_every_command() {
    let out = tunelake_cmd().arg("--help").output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("Examples:") && text.contains("tunelake run --sparkify data/sample/sparkify"), "{text}");
    for cmd in ["build", "query", "sync", "run", "report", "vacuum", "verify"] {
        let text = stdout(&tunelake_cmd().args([cmd, "--help"]).output().unwrap());
        assert!(text.contains("Examples:"), "{cmd}: {text}");
    }
}

#[test]
fn the_readme_main_command_runs_on_the_sample_without_a_database() {
    let lake = TestLake::new();
    let out = lake.cli(&["run", "--sparkify", sample().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("ingest: run 1: 75 new files"), "{text}");
    assert!(text.contains("fact_plays"), "{text}");
    assert!(text.contains("song match rate: 1 of 703 Sparkify plays"), "{text}");
    assert!(text.contains("top artists:"), "{text}");
    assert!(text.contains("no database configured: skipped sync"), "{text}");
    // Again: nothing new, the star is up to date.
    let text = stdout(&lake.cli(&["run", "--sparkify", sample().to_str().unwrap()]));
    assert!(text.contains("nothing new: all 75 files are already stored"), "{text}");
    assert!(text.contains("is up to date"), "{text}");
}

#[test]
fn queries_come_out_as_table_csv_or_json() {
    let lake = TestLake::new();
    lake.ingest(&sample());
    lake.build();
    let list = stdout(&lake.cli(&["query", "--list"]));
    assert!(
        list.contains("top_tracks") && list.contains("The 20 most played tracks (plays of 30 s or more)."),
        "{list}"
    );
    let csv = stdout(&lake.cli(&[
        "query",
        "SELECT level, count(*) AS n FROM fact_plays GROUP BY level ORDER BY level",
        "--format",
        "csv",
    ]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "level,n");
    assert_eq!(lines.len(), 3, "{csv}");
    let total: i64 = lines[1..].iter().map(|l| l.split(',').nth(1).unwrap().parse::<i64>().unwrap()).sum();
    assert_eq!(total, lake.star_rows("fact_plays").len() as i64);
    let json = stdout(&lake.cli(&["query", "--name", "listening_by_hour", "--format", "json"]));
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.get("hour").is_some() && r.get("plays").is_some()));
    let table = stdout(&lake.cli(&["query", "--name", "top_tracks"]));
    assert!(table.contains("| title") && table.contains("plays"), "{table}");
    // top_tracks counts plays per track before it joins the dimensions: the
    // same answer as counting the joined plays.
    let named = stdout(&lake.cli(&["query", "--name", "top_tracks", "--format", "csv"]));
    let joined = "SELECT t.title, a.name AS artist, count(*) AS plays FROM fact_plays f \
                  JOIN dim_tracks t ON t.track_id = f.track_id LEFT JOIN dim_artists a ON a.artist_id = t.artist_id \
                  WHERE f.counts_as_play GROUP BY t.title, a.name ORDER BY plays DESC, t.title, artist LIMIT 20";
    assert_eq!(named, stdout(&lake.cli(&["query", joined, "--format", "csv"])));
    assert!(named.lines().count() > 5, "{named}");
    // So does top_users, per user.
    let named = stdout(&lake.cli(&["query", "--name", "top_users", "--format", "csv"]));
    let joined = "SELECT u.user_id, u.first_name, u.last_name, u.level, count(*) AS plays FROM fact_plays f \
                  JOIN dim_users u ON u.user_id = f.user_id WHERE f.counts_as_play \
                  GROUP BY u.user_id, u.first_name, u.last_name, u.level ORDER BY plays DESC, u.user_id LIMIT 20";
    assert_eq!(named, stdout(&lake.cli(&["query", joined, "--format", "csv"])));
    assert!(named.lines().count() > 5, "{named}");
    // A small memory limit spills (or refuses) but never changes the answer.
    let roomy = stdout(&lake.cli(&["query", "--name", "top_artists", "--format", "csv"]));
    let small = stdout(&lake.cli(&["query", "--name", "top_artists", "--format", "csv", "--memory-mib", "1"]));
    assert_eq!(roomy.lines().count(), 21, "{roomy}");
    assert_eq!(small, roomy);
    // SQL that opens with a comment is SQL, not a flag.
    let commented = lake.cli(&["query", "-- how many\nSELECT count(*) AS n FROM fact_plays", "--format", "csv"]);
    assert_eq!(stdout(&commented), "n\n703\n", "{}", stderr(&commented));
    // A bad query is a usage error naming the problem.
    let out = lake.cli(&["query", "SELECT nope FROM fact_plays"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn clear_errors_with_exit_codes() {
    let lake = TestLake::new();
    let out = lake.cli(&["ingest", "sparkify", "/nonexistent/folder"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/folder: not a Sparkify folder"), "{}", stderr(&out));
    let out = lake.cli(&["build"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nothing to build"), "{}", stderr(&out));
    let out = lake.cli(&["query", "--name", "nope"]);
    assert!(stderr(&out).contains("unknown named query `nope`"), "{}", stderr(&out));
    let out = lake.cli(&["sync"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no database configured"), "{}", stderr(&out));
}

#[test]
fn a_second_writer_is_told_who_holds_the_lake() {
    let lake = TestLake::new();
    let _held = tunelake::lake::LakeLock::acquire(&lake.layout, "ingest sparkify x").unwrap();
    let out = lake.cli(&["ingest", "sparkify", sample().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(err.contains("is locked by another run") && err.contains("tunelake ingest sparkify x"), "{err}");
}

/// Issue 24: `tunelake query` could write (`COPY ... TO` over a star or raw
/// file) and read any folder (`CREATE EXTERNAL TABLE ... LOCATION '/etc/'`).
#[test]
fn issue_24_query_is_read_only() {
    let lake = TestLake::new();
    lake.ingest(&sample());
    lake.build();
    let m = lake.manifest();
    let star_file = lake.layout.abs(&m.star().unwrap().tables["fact_plays"][0].path);
    let raw_file = lake.layout.abs(&m.raw_files().unwrap()[0].path);
    let before = (std::fs::read(&star_file).unwrap(), std::fs::read(&raw_file).unwrap());
    let refused = [
        format!("COPY (SELECT 1 AS x) TO '{}' STORED AS PARQUET", star_file.display()),
        format!("COPY (SELECT 1 AS x) TO '{}' STORED AS CSV", raw_file.display()),
        "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '/tmp/tunelake-should-not-exist.parquet'".to_string(),
        "CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '/etc/'".to_string(),
        "CREATE TABLE t AS SELECT 1 AS x".to_string(),
        "INSERT INTO fact_plays SELECT * FROM fact_plays".to_string(),
        "DROP TABLE fact_plays".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
    ];
    for sql in &refused {
        let out = lake.cli(&["query", sql]);
        assert_eq!(out.status.code(), Some(2), "{sql}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("only reads the star") && err.contains("refused"), "{sql}: {err}");
    }
    assert!(!std::path::Path::new("/tmp/tunelake-should-not-exist.parquet").exists());
    assert_eq!((std::fs::read(&star_file).unwrap(), std::fs::read(&raw_file).unwrap()), before);
    // What reads still runs, and the lake still builds.
    for sql in [
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "EXPLAIN SELECT count(*) FROM fact_plays",
        "SHOW TABLES",
        "DESCRIBE fact_plays",
    ] {
        let out = lake.cli(&["query", sql]);
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
        assert!(!stdout(&out).is_empty(), "{sql}");
    }
    let b = lake.build_with(&tunelake::model::build::BuildOptions { force: true, ..Default::default() });
    assert_eq!(b.rows("fact_plays"), 703);
}

/// Issue 24: the lock message told users to remove the lock file, which let
/// two writers in while the holder lived; the kernel drops a dead holder's lock.
#[test]
fn issue_24_a_dead_holders_lock_is_taken_over_and_no_one_is_told_to_remove_it() {
    let lake = TestLake::new();
    let lock = lake.layout.lock_file();
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    // Another process holds the lock (flock, as tunelake takes it), then dies by SIGKILL.
    let holder = "import fcntl, sys, time\nf = open(sys.argv[1], 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\n\
                  f.write('pid x `tunelake run` since then')\nf.flush()\nprint('held', flush=True)\ntime.sleep(120)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", holder])
        .arg(&lock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the lock holder");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "held");
    let out = lake.cli(&["ingest", "sparkify", sample().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(err.contains("is locked by another run") && err.contains("tunelake run"), "{err}");
    assert!(!err.contains("remove"), "no advice to remove the lock: {err}");
    child.kill().unwrap();
    child.wait().unwrap();
    let out = lake.cli(&["ingest", "sparkify", sample().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lake.manifest().run_count(), 1);
}

/// Issue 24: an error printed to a closed stderr (`2>&1 | head -1`) panicked
/// now and then (exit 101); a closed stdout is success.
#[test]
fn issue_24_closed_stdout_and_stderr_end_quietly_with_the_right_code() {
    use std::os::fd::FromRawFd;
    // A pipe whose reading end is closed before the process starts: every write fails.
    let closed = || {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        unsafe { libc::close(fds[0]) };
        unsafe { std::process::Stdio::from_raw_fd(fds[1]) }
    };
    let lake = TestLake::new();
    let query = |sql: &str| {
        let mut cmd = tunelake_cmd();
        cmd.arg("--lake").arg(lake.layout.root()).args(["query", sql]).stdout(closed()).stderr(closed());
        cmd.status().unwrap().code()
    };
    for _ in 0..5 {
        assert_eq!(query("SELECT 1"), Some(2), "nothing built: a usage error, not a panic");
    }
    lake.ingest(&sample());
    lake.build();
    assert_eq!(query("SELECT * FROM fact_plays"), Some(0), "a closed stdout is success");
}

/// Issue 21: `--lake s3://...` wrote a local folder named `s3:`, silently.
/// A URL of a scheme tunelake cannot keep a lake in is refused by name.
#[test]
fn a_lake_url_of_another_scheme_is_refused_not_made_a_local_folder() {
    let cwd = tempfile::tempdir().unwrap();
    for (args, env) in [(vec!["--lake", "ftp://host/music"], None), (vec![], Some("https://example.com/music"))] {
        let mut c = tunelake_cmd();
        c.current_dir(cwd.path()).args(&args).args(["ingest", "sparkify", sample().to_str().unwrap()]);
        if let Some(url) = env {
            c.env("TUNELAKE_LAKE", url);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("tunelake keeps a lake in a local folder or in s3://bucket/prefix"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "nothing was written");
}

/// Issue 25, item 6: completion scripts for the usual shells and a man page,
/// each naming every subcommand.
#[test]
fn completions_and_a_man_page_name_every_subcommand() {
    let run = |args: &[&str]| {
        let o = tunelake_cmd().args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.starts_with("_tunelake() {") && bash.contains("complete -F _tunelake"), "{bash}");
    assert!(run(&["completions", "zsh"]).starts_with("#compdef tunelake"));
    let fish = run(&["completions", "fish"]);
    let man = run(&["man"]);
    assert!(man.contains(".TH tunelake 1") && man.contains(".SH SUBCOMMANDS"), "{man}");
    for sub in ["ingest", "build", "query", "sync", "status", "report", "vacuum", "verify", "copy-lake", "unlock"] {
        assert!(bash.contains(sub) && fish.contains(sub), "{sub} in the completions");
        assert!(man.contains(&format!("tunelake\\-{}", sub.replace('-', "\\-"))), "{sub} in the man page");
    }
    let o = tunelake_cmd().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "an unknown shell is a usage error");
}
