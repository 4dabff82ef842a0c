//! The star as Delta Lake tables, read by other engines: delta-rs's Python
//! `deltalake`, Polars and DuckDB's `delta` extension each read every star
//! table with exactly the rows `tunelake query` gives, after a first build,
//! an incremental build and a vacuum; `query --as-of` reads earlier versions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestLake, copy_dir, render_rows, sparkify_dataset, stderr, stdout};
use tunelake::sql::STAR_TABLES;

const ENGINES: [&str; 3] = ["deltalake", "polars", "duckdb"];

/// The Python with deltalake, Polars and DuckDB that `.ci/run` installs
/// (`TUNELAKE_TEST_PYTHON`, else `.venv/bin/python` in the repository).
pub(crate) fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let python = std::env::var_os("TUNELAKE_TEST_PYTHON").map_or(venv, PathBuf::from);
    let ok = Command::new(&python)
        .args(["-c", "import deltalake, duckdb, duckdb_extension_delta, polars, pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import deltalake, duckdb, polars and pyarrow: run `python3 -m venv .venv && \
         .venv/bin/pip install -r tests/requirements.txt` (or set TUNELAKE_TEST_PYTHON)",
        python.display()
    );
    python
}

/// The contract's columns of a star table, in order.
fn columns(table: &str) -> Vec<String> {
    let t = STAR_TABLES.iter().find(|t| t.name == table).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let schema = rt.block_on(tunelake::model::contract_schema(t)).unwrap();
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// Every star table as each engine reads it: engine -> table -> sorted rows,
/// and engine -> table -> the Delta version it read (DuckDB does not say).
type Reads = (BTreeMap<String, BTreeMap<String, Vec<String>>>, BTreeMap<String, serde_json::Value>);

fn read_with_engines(lake: &TestLake) -> Reads {
    let out = lake.dir.path().join(format!("engines-{}", fastrand::u64(..)));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/read_delta.py");
    let args: Vec<String> = STAR_TABLES.iter().map(|t| format!("{}:{}", t.name, columns(t.name).join(","))).collect();
    let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/queries");
    let o =
        Command::new(python()).arg(script).arg(lake.layout.root()).arg(&out).arg(queries).args(&args).output().unwrap();
    assert!(o.status.success(), "read_delta.py failed: {}", stderr(&o));
    let mut rows = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for engine in ENGINES {
        let mut tables = BTreeMap::new();
        for t in STAR_TABLES {
            let path = out.join(engine).join(format!("{}.parquet", t.name));
            let mut r = vec![];
            for batch in tunelake::lake::parquet::read(&path, 4096).unwrap() {
                r.extend(render_rows(&batch.unwrap()));
            }
            r.sort();
            tables.insert(t.name.to_string(), r);
        }
        rows.insert(engine.to_string(), tables);
        let v = std::fs::read_to_string(out.join(engine).join("versions.json")).unwrap();
        versions.insert(engine.to_string(), serde_json::from_str(&v).unwrap());
    }
    for q in tunelake::sql::QUERIES {
        let path = out.join("queries").join(format!("{}.parquet", q.name));
        let mut r = vec![];
        for batch in tunelake::lake::parquet::read(&path, 4096).unwrap() {
            r.extend(render_rows(&batch.unwrap()));
        }
        rows.entry("duckdb queries".to_string()).or_default().insert(q.name.to_string(), r);
    }
    (rows, versions)
}

/// Asserts that every engine reads every star table with exactly tunelake's rows.
fn assert_engines_read_the_star(lake: &TestLake, when: &str) {
    let (reads, versions) = read_with_engines(lake);
    let m = lake.manifest();
    let star = m.star().unwrap();
    // Every named query, run by DuckDB over the Delta tables, gives tunelake's answer.
    for q in tunelake::sql::QUERIES {
        let ours: Vec<String> = lake.query(q.text).iter().flat_map(render_rows).collect();
        let theirs = &reads["duckdb queries"][q.name];
        // Sparkify's logs name no albums and record no skips.
        let spotify_only = ["skip_rate", "top_albums"].contains(&q.name);
        assert!(!ours.is_empty() || spotify_only, "{when}: {} has rows", q.name);
        assert_eq!(theirs, &ours, "{when}: DuckDB's answer to {} differs from tunelake's", q.name);
    }
    for t in STAR_TABLES {
        let ours = lake.star_rows(t.name);
        for engine in ENGINES {
            let theirs = &reads[engine][t.name];
            assert_eq!(
                theirs.len(),
                ours.len(),
                "{when}: {engine} reads {} rows of {}, tunelake {}",
                theirs.len(),
                t.name,
                ours.len()
            );
            assert!(theirs == &ours, "{when}: {engine} reads other rows of {} than tunelake", t.name);
        }
        // delta-rs and Polars read the version tunelake's ledger records.
        for engine in ["deltalake", "polars"] {
            assert_eq!(
                versions[engine][t.name].as_u64(),
                star.delta.get(t.name).copied(),
                "{when}: {engine}, {}",
                t.name
            );
        }
    }
}

/// The course's song files and the log files of the days in `days`.
fn course_days(to: &Path, days: std::ops::RangeInclusive<u32>) {
    let data = sparkify_dataset();
    copy_dir(&data.join("song_data"), &to.join("song_data"));
    let logs = to.join("log_data");
    std::fs::create_dir_all(&logs).unwrap();
    for day in days {
        let name = format!("2018-11-{day:02}-events.json");
        std::fs::copy(data.join("log_data/2018/11").join(&name), logs.join(&name)).unwrap();
    }
}

/// The course's first and second halves of November, under `dir`.
fn halves(dir: &Path) -> (PathBuf, PathBuf) {
    let (first, second) = (dir.join("first"), dir.join("second"));
    course_days(&first, 1..=15);
    course_days(&second, 16..=30);
    (first, second)
}

#[test]
fn other_engines_read_every_star_table_as_tunelake_does_across_builds_and_vacuum() {
    python();
    let tmp = tempfile::tempdir().unwrap();
    let (first_half, second_half) = halves(tmp.path());
    let lake = TestLake::new();

    lake.ingest(&first_half);
    let first = lake.build();
    let first_plays = first.rows("fact_plays");
    assert!(first_plays > 2000, "{first_plays}");
    assert_engines_read_the_star(&lake, "after the first build");
    // Only features every engine reads: timestamps without zone (the contract's TIMESTAMP(6)), nothing else.
    let log0 =
        std::fs::read_to_string(lake.layout.abs("star/fact_plays/_delta_log/00000000000000000000.json")).unwrap();
    let protocol = log0.lines().find(|l| l.starts_with("{\"protocol\"")).unwrap();
    let p: serde_json::Value = serde_json::from_str(protocol).unwrap();
    assert_eq!(p["protocol"]["readerFeatures"], serde_json::json!(["timestampNtz"]), "{protocol}");
    assert!(!log0.contains("deletionVectors") && !log0.contains("columnMapping"), "{log0}");
    assert!(log0.contains("\"partitionColumns\":[\"year\",\"month\"]"), "{log0}");

    // The second half: an incremental build replaces November's fact file and layers the dimensions.
    lake.ingest(&second_half);
    let second = lake.build();
    assert!(second.committed && second.full_reason.is_none(), "{second:?}");
    let all_plays = second.rows("fact_plays");
    assert!(all_plays > first_plays);
    let fact_files = walk_parquet(&lake.layout.abs("star/fact_plays"));
    assert!(fact_files.len() >= 2, "the replaced fact file is still on disk: {fact_files:?}");
    assert_engines_read_the_star(&lake, "after an incremental build");
    let m = lake.manifest();
    let versions = &m.star().unwrap().delta;
    assert_eq!(versions["fact_plays"], 1, "one Delta commit per build: {versions:?}");

    // Time travel: the first version, by build version and by time.
    let count = "SELECT count(*) FROM fact_plays";
    let v1 = first.version.to_string();
    let o = lake.cli(&["query", "--as-of", &v1, "--format", "csv", count]);
    assert_eq!(stdout(&o).lines().nth(1), Some(first_plays.to_string().as_str()), "{}", stderr(&o));
    let history = m.history().unwrap();
    let second_run = history.iter().find(|r| r.id == second.version).unwrap();
    let between = history.iter().find(|r| r.id == first.version).unwrap().finished_at.clone();
    assert!(between < second_run.finished_at);
    let o = lake.cli(&["query", "--as-of", &between, "--format", "csv", count]);
    assert_eq!(stdout(&o).lines().nth(1), Some(first_plays.to_string().as_str()), "{}", stderr(&o));
    let o = lake.cli(&["query", "--format", "csv", count]);
    assert_eq!(stdout(&o).lines().nth(1), Some(all_plays.to_string().as_str()));
    let o = lake.cli(&["query", "--as-of", "2000-01-01T00:00:00Z", count]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no star version") && stderr(&o).contains(&v1), "{}", stderr(&o));

    // Vacuum keeps the first version within the retention, and removes it with none.
    let o = lake.cli(&["vacuum", "--dry-run"]);
    assert!(!stdout(&o).contains("star/fact_plays"), "{}", stdout(&o));
    let o = lake.cli(&["vacuum", "--retain", "0s", "--dry-run"]);
    let listed = stdout(&o);
    assert!(listed.contains("star/fact_plays/year=2018/month=11") && listed.contains(" bytes)"), "{listed}");
    assert_eq!(walk_parquet(&lake.layout.abs("star/fact_plays")), fact_files, "a dry run removes nothing");
    let o = lake.cli(&["vacuum", "--retain", "0s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(walk_parquet(&lake.layout.abs("star/fact_plays")).len(), 1);
    assert!(lake.layout.abs("star/fact_plays/_delta_log/00000000000000000000.json").is_file());
    assert_engines_read_the_star(&lake, "after vacuum");
    let o = lake.cli(&["query", "--as-of", &v1, count]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("removed by `tunelake vacuum`"), "{}", stderr(&o));
}

#[test]
fn a_build_that_crashed_between_its_delta_commits_is_ignored_then_rolled_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, second, third) = (tmp.path().join("first"), tmp.path().join("second"), tmp.path().join("third"));
    course_days(&first, 1..=15);
    course_days(&second, 16..=23);
    course_days(&third, 24..=30);
    let lake = TestLake::new();
    lake.ingest(&first);
    let first_plays = lake.build().rows("fact_plays");
    lake.ingest(&second);
    let crashed = lake.build();
    // The crash: the dimensions took the build's commits, the facts did not, and its ledger entry never came.
    std::fs::remove_file(lake.layout.run_entry(crashed.version)).unwrap();
    std::fs::remove_file(lake.layout.abs("star/fact_plays/_delta_log/00000000000000000001.json")).unwrap();
    assert_eq!(tunelake::lake::delta::latest_version(&lake.layout, "dim_users").unwrap(), Some(1));
    assert_eq!(tunelake::lake::delta::latest_version(&lake.layout, "fact_plays").unwrap(), Some(0));
    assert_eq!(
        lake.scalar("SELECT count(*) FROM fact_plays") as u64,
        first_plays,
        "tunelake reads its ledger's version"
    );
    let crashed_users = lake.layout.abs(&format!("star/dim_users/part-{:08}.parquet", crashed.version));
    assert!(crashed_users.is_file());

    lake.ingest(&third);
    let again = lake.build();
    assert!(again.committed && again.version != crashed.version);
    assert!(again.rows("fact_plays") > crashed.rows("fact_plays"), "the third part's plays are there too");
    let m = lake.manifest();
    let delta = &m.star().unwrap().delta;
    assert_eq!((delta["fact_plays"], delta["dim_users"]), (1, 2), "rolled forward from where each table was");
    for t in STAR_TABLES {
        let latest = tunelake::lake::delta::latest_version(&lake.layout, t.name).unwrap();
        assert_eq!(latest, delta.get(t.name).copied(), "{} is in step with the ledger", t.name);
    }
    assert_engines_read_the_star(&lake, "after rolling forward");

    // The crashed build's dimension file is in no ledger version, but a Delta
    // reader may have started on it: vacuum keeps it for the retention.
    let o = lake.cli(&["vacuum"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(crashed_users.is_file(), "{}", stdout(&o));
    let o = lake.cli(&["vacuum", "--retain", "0s"]);
    assert!(stdout(&o).contains(&crashed_users.display().to_string()), "{}", stdout(&o));
    assert!(!crashed_users.exists());
    assert_engines_read_the_star(&lake, "after vacuum");
}

#[test]
fn a_lake_built_before_delta_is_published_by_the_next_build() {
    let lake = TestLake::new();
    lake.ingest(&crate::common::sample());
    let built = lake.build();
    // As an older tunelake left it: no Delta logs, no Delta versions in the ledger.
    for t in STAR_TABLES {
        std::fs::remove_dir_all(lake.layout.abs(&format!("star/{}/_delta_log", t.name))).unwrap();
    }
    let entry = lake.layout.run_entry(built.version);
    let mut run: serde_json::Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    run["star"].as_object_mut().unwrap().remove("delta");
    std::fs::write(&entry, serde_json::to_vec(&run).unwrap()).unwrap();
    assert!(lake.manifest().star().unwrap().delta.is_empty());

    let again = lake.build();
    assert_eq!(again.rows("fact_plays"), built.rows("fact_plays"));
    let m = lake.manifest();
    assert_eq!(m.star().unwrap().delta.len(), STAR_TABLES.len(), "every table is published");
    assert_eq!(
        m.star().unwrap().tables,
        m.history().unwrap().iter().find(|r| r.id == built.version).unwrap().star.as_ref().unwrap().tables
    );
    assert_engines_read_the_star(&lake, "after publishing");
    // And then nothing more to do.
    let runs = m.run_count();
    lake.build();
    assert_eq!(lake.manifest().run_count(), runs);
}

#[test]
fn a_reader_during_a_build_sees_whole_versions_and_no_play_without_its_dimensions() {
    let tmp = tempfile::tempdir().unwrap();
    let (first_half, second_half) = halves(tmp.path());
    let lake = TestLake::new();
    lake.ingest(&first_half);
    let before = lake.build().rows("fact_plays");
    lake.ingest(&second_half);

    let (stop, out) = (tmp.path().join("stop"), tmp.path().join("reads.json"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/read_delta.py");
    let mut reader =
        Command::new(python()).arg(script).arg("loop").arg(lake.layout.root()).arg(&stop).arg(&out).spawn().unwrap();
    // The build starts once the reader has read the star before it.
    let ready = tmp.path().join("reads.json.ready");
    let waited = std::time::Instant::now();
    while !ready.exists() {
        assert!(reader.try_wait().unwrap().is_none(), "the reader stopped before its first read");
        assert!(waited.elapsed().as_secs() < 300, "the reader made no first read in 300 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let build = lake.cli(&["--progress", "off", "build"]);
    std::fs::write(&stop, b"").unwrap();
    assert!(reader.wait().unwrap().success());
    assert!(build.status.success(), "{}", stderr(&build));
    let after = lake.manifest().star().unwrap().tables["fact_plays"].iter().map(|p| p.rows).sum::<u64>();
    assert!(after > before);

    let reads: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(reads.len() >= 2, "{reads:?}");
    for r in &reads {
        let plays = r["plays"].as_u64().unwrap();
        assert!(plays == before || plays == after, "a read saw {plays} plays: neither version ({before}, {after})");
        assert_eq!(r["version"].as_u64().unwrap(), if plays == before { 0 } else { 1 }, "{r}");
        assert_eq!(r["missing"], 0, "a read saw plays whose dimension rows were missing: {r}");
    }
    assert_eq!(reads.last().unwrap()["plays"].as_u64(), Some(after), "the last read, after the build, sees it");
}

fn walk_parquet(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.ends_with("_delta_log") {
            continue;
        } else if p.is_dir() {
            out.extend(walk_parquet(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Issue 21, item 5: the model's SQL runs on another engine. DuckDB runs
/// every `sql/model/*.sql` in tunelake's order over the lake's staging files,
/// with the changes tests/it/model_in_duckdb.py lists (docs/scale.md), and
/// every star table equals tunelake's, row for row.
#[test]
fn the_model_sql_runs_in_duckdb_over_staging_and_gives_tunelakes_star() {
    let lake = TestLake::new();
    lake.ingest(&crate::common::sample());
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spotify_export");
    let mut m = lake.manifest();
    tunelake::source::ingest_spotify_export(&lake.layout, &mut m, &fixtures, None, "test").unwrap();
    lake.build();
    let m = lake.manifest();
    let out = lake.dir.path().join("model-in-duckdb");
    std::fs::create_dir_all(&out).unwrap();
    // Each staging table's live files; a table no source filled is one empty file of its schema.
    let staging: Vec<String> = tunelake::lake::staging::tables()
        .into_iter()
        .map(|(name, schema)| {
            let mut files: Vec<String> =
                m.staging_files(name).iter().map(|f| lake.layout.abs(&f.path).display().to_string()).collect();
            if files.is_empty() {
                let empty = out.join(format!("{name}.empty.parquet"));
                tunelake::lake::parquet::write_batches(&empty, &schema, []).unwrap();
                files.push(empty.display().to_string());
            }
            format!("{name}={}", files.join(","))
        })
        .collect();
    // tunelake's order: the global helpers, the helpers per slice of months,
    // the monthly star tables, the summaries (monthly, then reduced), the dimensions.
    let monthly = STAR_TABLES.iter().filter(|t| t.month_partition_by.is_some()).map(|t| t.name);
    let dimensions = STAR_TABLES.iter().filter(|t| t.month_partition_by.is_none()).map(|t| t.name);
    let order: Vec<&str> = tunelake::sql::GLOBAL_HELPERS
        .iter()
        .map(|f| f.name)
        .chain(tunelake::sql::SLICE_HELPERS.iter().map(|h| h.file.name))
        .chain(monthly)
        .chain(tunelake::sql::SUMMARIES.iter().map(|s| s.monthly.name))
        .chain(tunelake::sql::SUMMARIES.iter().map(|s| s.all.name))
        .chain(dimensions)
        .collect();
    let stars: Vec<String> = STAR_TABLES.iter().map(|t| format!("{}:{}", t.name, columns(t.name).join(","))).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/model_in_duckdb.py");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/model");
    let o = Command::new(python())
        .arg(script)
        .arg(&out)
        .arg(model)
        .arg(tunelake::model::build::BuildOptions::default().duration_tolerance_s.to_string())
        .arg(order.join(","))
        .args(&staging)
        .arg("--")
        .args(&stars)
        .output()
        .unwrap();
    assert!(o.status.success(), "model_in_duckdb.py failed: {}", stderr(&o));
    for t in STAR_TABLES {
        let mut theirs = vec![];
        for batch in tunelake::lake::parquet::read(&out.join(format!("{}.parquet", t.name)), 4096).unwrap() {
            theirs.extend(render_rows(&batch.unwrap()));
        }
        theirs.sort();
        let ours = lake.star_rows(t.name);
        assert!(!ours.is_empty() || ["dim_audiobooks"].contains(&t.name), "{} has rows", t.name);
        assert_eq!(theirs, ours, "DuckDB's {} differs from tunelake's", t.name);
    }
}
