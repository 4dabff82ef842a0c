//! The crash matrix: `ingest`, `build`, `sync` and `run` killed with SIGKILL
//! at points spread over their work, then the pipeline run again to its end.
//! Every time the lake and PostgreSQL equal an uninterrupted run's (counts
//! and a checksum of the play ids), and `verify` finds nothing wrong.

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

fn spawn(lake: &TestLake, url: &str, args: &[&str]) -> Child {
    let mut c = crate::common::tunelake_cmd();
    c.arg("--lake").arg(lake.layout.root()).args(["--progress", "off"]).args(args).env("DATABASE_URL", url);
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
}

fn finish(lake: &TestLake, url: &str, args: &[&str]) {
    let mut c = crate::common::tunelake_cmd();
    let o = c.arg("--lake").arg(lake.layout.root()).args(args).env("DATABASE_URL", url).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
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
    let delays_ms = [0u64, 3, 8, 15, 30, 60, 120, 250];
    let mut killed_mid_work = 0;
    for (name, args) in steps {
        for delay in delays_ms {
            let lake = TestLake::new();
            let url = pg::server().create_database(&format!("crash_{name}"));
            // What the step needs before it.
            if name == "build" || name == "sync" {
                finish(&lake, &url, &["ingest", "sparkify", data]);
            }
            if name == "sync" {
                finish(&lake, &url, &["build"]);
            }
            let mut child = spawn(&lake, &url, args);
            std::thread::sleep(Duration::from_millis(delay));
            let finished_first = child.try_wait().unwrap().is_some();
            child.kill().ok(); // SIGKILL
            child.wait().unwrap();
            killed_mid_work += usize::from(!finished_first);

            // Again, to the end: the whole pipeline.
            finish(&lake, &url, &["run", "--sparkify", data]);
            let at = format!("{name} killed after {delay} ms");
            assert_eq!(lake_state(&lake), want_lake, "{at}: the lake");
            assert_eq!(pg_state(&url), want_pg, "{at}: PostgreSQL");
            let o = crate::common::tunelake_cmd()
                .arg("--lake")
                .arg(lake.layout.root())
                .args(["verify", "--deep"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{at}: verify: {}", stdout(&o));
        }
    }
    assert!(killed_mid_work >= 16, "only {killed_mid_work} of 32 kills came before the step ended");
}
