//! Every path in the lake is built here, and only here.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

/// The lake's root and the paths under it.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path relative to the root, as stored in the manifest.
    pub fn abs(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn manifest_dir(&self) -> PathBuf {
        self.root.join("_manifest")
    }

    pub fn run_entry(&self, run: u64) -> PathBuf {
        self.manifest_dir().join(format!("{run:08}.json"))
    }

    /// `_manifest/<run>.raw.ndjson`, relative: the raw files a run stored.
    pub fn raw_index_rel(run: u64) -> String {
        format!("_manifest/{run:08}.raw.ndjson")
    }

    /// `_manifest/<run>.raw.sha256`, relative: the sha256 of those raw files alone.
    pub fn raw_digests_rel(run: u64) -> String {
        format!("_manifest/{run:08}.raw.sha256")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.manifest_dir().join("LOCK")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The raw files `tunelake verify` found damaged (`[{"sha256", "path"}]`),
    /// which an ingest of their originals writes again.
    pub fn damaged_raw(&self) -> PathBuf {
        self.state_dir().join("damaged_raw.json")
    }

    /// The Spotify token cache (mode 0600).
    pub fn spotify_token(&self) -> PathBuf {
        self.state_dir().join("spotify_token.json")
    }

    /// `raw/<source>/ingest_date=YYYY-MM-DD`, relative: where a day's raw files go.
    pub fn raw_dir_rel(source: &str, ingest_date: NaiveDate) -> String {
        format!("raw/{source}/ingest_date={ingest_date}")
    }

    /// `raw/<source>/ingest_date=YYYY-MM-DD/<sha256>.json`, relative.
    pub fn raw_rel(source: &str, ingest_date: NaiveDate, sha256: &str) -> String {
        format!("{}/{sha256}.json", Self::raw_dir_rel(source, ingest_date))
    }

    /// `raw/<source>/ingest_date=YYYY-MM-DD/pack-<run>.raw`, relative: a run's small raw files.
    pub fn raw_pack_rel(source: &str, ingest_date: NaiveDate, run: u64) -> String {
        format!("raw/{source}/ingest_date={ingest_date}/pack-{run:08}.raw")
    }

    /// `staging/<table>/date=YYYY-MM-DD/part-<run>-<n>.parquet`, relative.
    pub fn staging_rel(table: &str, date: NaiveDate, run: u64, n: usize) -> String {
        format!("staging/{table}/date={date}/part-{run:08}-{n:05}.parquet")
    }

    /// `staging/<table>/date=YYYY-MM-DD/part-<run>-<n>-<k>.parquet`,
    /// relative: the `k`th staging file written from a big input file `n`,
    /// which is read in pieces.
    pub fn staging_piece_rel(table: &str, date: NaiveDate, run: u64, n: usize, k: usize) -> String {
        format!("staging/{table}/date={date}/part-{run:08}-{n:05}-{k:05}.parquet")
    }

    /// `star/<table>/[<partition>/]part-<version>.parquet`, relative.
    pub fn star_rel(table: &str, partition: Option<&str>, version: u64) -> String {
        match partition {
            Some(p) => format!("star/{table}/{p}/part-{version:08}.parquet"),
            None => format!("star/{table}/part-{version:08}.parquet"),
        }
    }

    /// Hive-style partition of a month: `year=YYYY/month=MM`.
    pub fn month_partition(year: i32, month: u32) -> String {
        format!("year={year:04}/month={month:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_hive_style() {
        let d = NaiveDate::from_ymd_opt(2018, 11, 3).unwrap();
        assert_eq!(Layout::raw_rel("sparkify", d, "ab"), "raw/sparkify/ingest_date=2018-11-03/ab.json");
        assert_eq!(Layout::staging_rel("stg_x", d, 7, 2), "staging/stg_x/date=2018-11-03/part-00000007-00002.parquet");
        assert_eq!(
            Layout::staging_piece_rel("stg_x", d, 7, 2, 3),
            "staging/stg_x/date=2018-11-03/part-00000007-00002-00003.parquet"
        );
        let p = Layout::month_partition(2018, 11);
        assert_eq!(
            Layout::star_rel("fact_plays", Some(&p), 9),
            "star/fact_plays/year=2018/month=11/part-00000009.parquet"
        );
        assert_eq!(Layout::star_rel("dim_users", None, 9), "star/dim_users/part-00000009.parquet");
    }
}
