//! Helpers: a lake in a temp dir driven through the library, the real
//! Sparkify dataset, the built binary, and rows rendered as comparable text.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::util::display::array_value_to_string;
use tunelake::lake::{Layout, Manifest};
use tunelake::model::build::{BuildMetrics, BuildOptions};
use tunelake::sink::{SyncMetrics, SyncOptions};
use tunelake::source::IngestMetrics;

/// The full real course dataset, beside the repository.
pub fn sparkify_dataset() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/sparkify");
    assert!(
        p.join("log_data").is_dir(),
        "the real Sparkify dataset is missing at {}: the tests need the shared/ folder beside the repository",
        p.display()
    );
    p
}

/// The small sample committed under data/.
pub fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/sparkify")
}

/// Copies a Sparkify folder so a test may change it.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

pub struct TestLake {
    pub dir: tempfile::TempDir,
    pub layout: Layout,
}

impl TestLake {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("lake"));
        TestLake { dir, layout }
    }

    pub fn manifest(&self) -> Manifest {
        Manifest::load(&self.layout).unwrap()
    }

    pub fn ingest(&self, dir: &Path) -> IngestMetrics {
        let mut m = self.manifest();
        tunelake::source::ingest_sparkify(
            &self.layout,
            &mut m,
            dir,
            tunelake::lake::manifest::Commit::Wait,
            "test ingest",
        )
        .unwrap()
    }

    pub fn build_with(&self, opts: &BuildOptions) -> BuildMetrics {
        let mut m = self.manifest();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(tunelake::model::build::build(&self.layout, &mut m, opts, "test build")).unwrap()
    }

    pub fn build(&self) -> BuildMetrics {
        self.build_with(&BuildOptions::default())
    }

    pub fn reprocess(&self) -> IngestMetrics {
        let mut m = self.manifest();
        tunelake::source::reprocess(&self.layout, &mut m, "test reprocess").unwrap()
    }

    /// Syncs and records the sync in the ledger, as `tunelake sync` does.
    pub fn sync(&self, url: &str) -> SyncMetrics {
        self.sync_with(url, &SyncOptions::default())
    }

    /// `sync --full`: every partition sent again.
    pub fn sync_full(&self, url: &str) -> SyncMetrics {
        self.sync_with(url, &SyncOptions { full: true, ..Default::default() })
    }

    pub fn sync_with(&self, url: &str, opts: &SyncOptions) -> SyncMetrics {
        let mut m = self.manifest();
        let metrics = tunelake::sink::sync(&self.layout, &m, url, opts).unwrap();
        tunelake::sink::record(&self.layout, &mut m, &metrics, "test sync").unwrap();
        metrics
    }

    pub fn query(&self, sql: &str) -> Vec<RecordBatch> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let m = self.manifest();
        rt.block_on(async {
            let scope = tunelake::model::query::Scope::default();
            let ctx = tunelake::model::query::star_context(&self.layout, &m, 256 << 20, None, &scope).await.unwrap();
            tunelake::model::query::run(&ctx, sql).await.unwrap()
        })
    }

    /// One integer from a query's single cell.
    pub fn scalar(&self, sql: &str) -> i64 {
        let b = self.query(sql);
        array_value_to_string(b[0].column(0), 0).unwrap().parse().unwrap()
    }

    /// Every row of a star table, read from the files of the current
    /// version, rendered as text and sorted.
    pub fn star_rows(&self, table: &str) -> Vec<String> {
        let m = self.manifest();
        let parts = &m.star().expect("built").tables[table];
        let mut rows = vec![];
        for p in parts {
            for batch in tunelake::lake::parquet::read(&self.layout.abs(&p.path), 4096).unwrap() {
                rows.extend(render_rows(&batch.unwrap()));
            }
        }
        rows.sort();
        rows
    }

    /// Builds what changed, then every month again with `--force`, and checks
    /// that both give the same rows in every star table. Returns the first build.
    pub fn build_checked_against_full(&self) -> BuildMetrics {
        let incremental = self.build();
        let rows = |lake: &TestLake| -> Vec<Vec<String>> {
            tunelake::sql::STAR_TABLES.iter().map(|t| lake.star_rows(t.name)).collect()
        };
        let before = rows(self);
        let full = self.build_with(&BuildOptions { force: true, ..Default::default() });
        assert!(full.committed && full.full_reason.is_some());
        let after = rows(self);
        for (t, (a, b)) in tunelake::sql::STAR_TABLES.iter().zip(before.iter().zip(&after)) {
            assert!(a == b, "{}: the build of changed months differs from a build of all months", t.name);
        }
        assert_eq!((incremental.plays, incremental.matched), (full.plays, full.matched));
        assert_eq!(incremental.duplicates, full.duplicates);
        incremental
    }

    /// Runs the binary on this lake.
    pub fn cli(&self, args: &[&str]) -> Output {
        tunelake_cmd().arg("--lake").arg(self.layout.root()).args(args).output().unwrap()
    }
}

pub fn tunelake_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tunelake"));
    c.env_remove("DATABASE_URL").env_remove("TUNELAKE_LAKE").env("TUNELAKE_LOG", "warn");
    // The libpq variables of whoever runs the tests must not reach the tests' databases.
    for v in ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "PGSSLROOTCERT", "PGPASSFILE"] {
        c.env_remove(v);
    }
    c
}

pub fn render_rows(batch: &RecordBatch) -> Vec<String> {
    (0..batch.num_rows())
        .map(|r| {
            batch
                .columns()
                .iter()
                .map(|c| if c.is_null(r) { "NULL".to_string() } else { array_value_to_string(c, r).unwrap() })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The sample's four log files moved to other months (by `days`), under `to/log_data`.
pub fn shifted_logs(to: &Path, files: &[(&str, i64)]) {
    let dir = to.join("log_data");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, days) in files {
        let text = std::fs::read_to_string(sample().join("log_data/2018/11").join(name)).unwrap();
        let mut out = String::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut e: serde_json::Value = serde_json::from_str(line).unwrap();
            let ts = e["ts"].as_i64().unwrap() + days * 86_400_000;
            e["ts"] = ts.into();
            out.push_str(&e.to_string());
            out.push('\n');
        }
        std::fs::write(dir.join(format!("{days}-{name}")), out).unwrap();
    }
}
