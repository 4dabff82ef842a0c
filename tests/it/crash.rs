//! The crash matrix: `ingest`, `build`, `sync` and `run` killed with SIGKILL
//! at points spread over their work (by time, and as they pass their Nth
//! file, fsync, Delta commit or table sent), then the pipeline run again.
//! Every time the lake and PostgreSQL equal an uninterrupted run's (counts
//! and a checksum of the play ids), and `verify` finds nothing wrong.

use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::common::{TestLake, sample, stderr, stdout};
use crate::pg;

/// Plays, distinct users and an md5 of every play id in order, in PostgreSQL.
fn pg_state(url: &str) -> (i64, i64, String) {
    let mut client = Client::connect(url, NoTls).unwrap();
    let row = client
        .query_one(
            "SELECT count(*), (SELECT count(*) FROM dim_users), md5(string_agg(play_id, ',' ORDER BY play_id)) FROM fact_plays",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// The lake's plays and an order-free checksum of their ids, by `tunelake query`.
fn lake_state(lake: &TestLake) -> Vec<String> {
    let sql = "SELECT count(*), count(DISTINCT play_id), min(play_id), max(play_id) FROM fact_plays";
    lake.query(sql).iter().flat_map(crate::common::render_rows).collect()
}

fn command(lake: &TestLake, url: &str, args: &[&str]) -> std::process::Command {
    let mut c = crate::common::tunelake_cmd();
    c.arg("--lake").arg(lake.layout.root()).args(["--progress", "off"]).args(args).env("DATABASE_URL", url);
    c
}

fn spawn(lake: &TestLake, url: &str, args: &[&str]) -> Child {
    let mut c = command(lake, url, args);
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
}

fn finish(lake: &TestLake, url: &str, args: &[&str]) {
    let o = command(lake, url, args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
}

/// Where a step is killed: after a time, or as it passes its Nth crash point
/// (a file written or renamed into place, an fsync, a Delta commit, a table
/// sent; `tunelake::lake::crash_point`).
#[derive(Clone, Copy, Debug)]
enum Kill {
    AfterMs(u64),
    AtPoint(u64),
}

/// A lake (and database) with what `step` needs before it.
fn prepared(step: &str, data: &str) -> (TestLake, String) {
    let lake = TestLake::new();
    let url = pg::server().create_database(&format!("crash_{step}"));
    if step == "build" || step == "sync" {
        finish(&lake, &url, &["ingest", "sparkify", data]);
    }
    if step == "sync" {
        finish(&lake, &url, &["build"]);
    }
    (lake, url)
}

/// How many crash points `args` passes on a prepared lake, uninterrupted.
fn points_passed(step: &str, args: &[&str], data: &str) -> u64 {
    let (lake, url) = prepared(step, data);
    let o = command(&lake, &url, args).env("TUNELAKE_CRASH_TRACE", "1").output().unwrap();
    assert!(o.status.success(), "{step}: {}", stderr(&o));
    stderr(&o).lines().filter(|l| l.starts_with("crash point ")).count() as u64
}

/// `step` killed at `kill`; whether the kill came before the step ended.
fn kill(lake: &TestLake, url: &str, args: &[&str], kill: Kill) -> bool {
    match kill {
        Kill::AfterMs(delay) => {
            let mut child = spawn(lake, url, args);
            std::thread::sleep(Duration::from_millis(delay));
            let finished_first = child.try_wait().unwrap().is_some();
            child.kill().ok(); // SIGKILL
            child.wait().unwrap();
            !finished_first
        }
        Kill::AtPoint(n) => {
            let o = command(lake, url, args).env("TUNELAKE_CRASH_AT", n.to_string()).output().unwrap();
            assert_eq!(o.status.signal(), Some(9), "{args:?} killed itself at point {n}: {}", stderr(&o));
            true
        }
    }
}

#[test]
fn killed_at_any_point_a_run_again_gives_the_same_lake_and_database() {
    let data = sample();
    let data = data.to_str().unwrap();
    // The uninterrupted run.
    let reference = TestLake::new();
    let reference_url = pg::server().create_database("crash_ref");
    finish(&reference, &reference_url, &["run", "--sparkify", data]);
    let (want_lake, want_pg) = (lake_state(&reference), pg_state(&reference_url));
    assert_eq!(want_pg.0, 703);

    let steps: [(&str, &[&str]); 4] = [
        ("ingest", &["ingest", "sparkify", data]),
        ("build", &["build"]),
        ("sync", &["sync"]),
        ("run", &["run", "--sparkify", data]),
    ];
    let (mut killed_by_time, mut killed_by_point) = (0, 0);
    for (name, args) in steps {
        // Spread over the step's work: the first point, the last, and five between.
        let points = points_passed(name, args, data);
        assert!(points >= 3, "{name} passes {points} crash points");
        let by_point = (0..7).map(|k| Kill::AtPoint(1 + k * (points - 1) / 6));
        let by_time = [0u64, 8, 30, 120, 250].map(Kill::AfterMs);
        for at in by_time.into_iter().chain(by_point) {
            let (lake, url) = prepared(name, data);
            let mid_work = kill(&lake, &url, args, at);
            match at {
                Kill::AfterMs(_) => killed_by_time += usize::from(mid_work),
                Kill::AtPoint(_) => killed_by_point += 1,
            }

            // Again, to the end: the whole pipeline.
            finish(&lake, &url, &["run", "--sparkify", data]);
            let at = format!("{name} killed at {at:?} (of {points} points)");
            assert_eq!(lake_state(&lake), want_lake, "{at}: the lake");
            assert_eq!(pg_state(&url), want_pg, "{at}: PostgreSQL");
            let o = command(&lake, &url, &["verify", "--deep"]).output().unwrap();
            assert!(o.status.success(), "{at}: verify: {}", stdout(&o));
        }
    }
    assert_eq!(killed_by_point, 28);
    assert!(killed_by_time >= 8, "only {killed_by_time} of 20 kills by time came before the step ended");
}
