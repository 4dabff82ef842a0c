//! What a build computes: the months staging has rows in, which of them
//! new staging reaches (all of them when a lookup over the whole history
//! changed), and the slices of consecutive months to compute them in.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use chrono::{Datelike, NaiveDate};

use super::ModelError;
use super::build::BuildOptions;
use crate::lake::manifest::StagingFile;
use crate::lake::{Layout, Manifest, staging};

/// How far around a slice its staging reaches: the widest window a model
/// compares plays in (an account-data row and its extended stream: 2 min).
pub const MARGIN_US: i64 = 3_600_000_000;

/// Which months new files of a staging table make a build recompute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Reach {
    /// The months their rows fall in.
    TheirMonths,
    /// Every month; the string says why.
    AllMonths(&'static str),
    /// Catalogue songs: the months with plays they can change (see
    /// [`months_of_new_songs`]), or every month when a new song file changes
    /// a song the catalogue already has.
    ArtistMonths,
    /// None: only the dimensions read them.
    Dimensions,
}

/// Every staging table: the timestamp column slices restrict it by (None: read whole), and its reach.
pub(super) const STAGING: &[(&str, Option<&str>, Reach)] = &[
    (staging::STG_SPARKIFY_EVENTS, Some("ts"), Reach::TheirMonths),
    (staging::STG_SPOTIFY_API_PLAYS, Some("played_at"), Reach::TheirMonths),
    (
        staging::STG_SPOTIFY_STREAMS,
        Some("ts"),
        Reach::AllMonths("a new export can give any month's streams a track URI"),
    ),
    (staging::STG_SPARKIFY_SONGS, None, Reach::ArtistMonths),
    (staging::STG_SPOTIFY_API_USERS, None, Reach::AllMonths("every Web API play takes its user's latest level")),
    (staging::STG_SPOTIFY_API_ENTITIES, None, Reach::Dimensions),
];

/// A month, as (year, month).
pub(super) type Month = (i32, u32);

pub(super) fn month_of(micros: i64) -> Month {
    let days = micros.div_euclid(86_400_000_000);
    let date = NaiveDate::from_num_days_from_ce_opt(days as i32 + 719_163).expect("timestamp within chrono's range");
    (date.year(), date.month())
}

pub(super) fn month_start(m: Month) -> i64 {
    let date = NaiveDate::from_ymd_opt(m.0, m.1, 1).expect("a valid month");
    date.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros()
}

pub(super) fn next_month(m: Month) -> Month {
    if m.1 == 12 { (m.0 + 1, 1) } else { (m.0, m.1 + 1) }
}

pub(super) fn partition_of(m: Month) -> String {
    Layout::month_partition(m.0, m.1)
}

/// The months from the one holding `first` to the one holding `last`.
fn months_between(first: i64, last: i64) -> Vec<Month> {
    let (mut m, end) = (month_of(first), month_of(last));
    let mut out = vec![m];
    while m < end {
        m = next_month(m);
        out.push(m);
    }
    out
}

/// A live staging file of a table restricted by time, with the time its rows span.
#[derive(Debug, Clone)]
pub(super) struct Span {
    pub table: &'static str,
    pub path: String,
    pub rows: u64,
    pub first: i64,
    pub last: i64,
    /// The file's rows are in its table's order (`staging::order_of`).
    pub sorted: bool,
}

/// The smallest and largest value of timestamp `column` in a Parquet file,
/// from its footer statistics (None for a file without rows).
fn time_range(path: &Path, column: &str) -> Result<Option<(i64, i64)>, ModelError> {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use datafusion::parquet::file::statistics::Statistics;
    let bad = |what: String| ModelError::Lake(crate::lake::LakeError::Corrupt { path: path.to_path_buf(), what });
    let file = std::fs::File::open(path).map_err(crate::lake::LakeError::io("open", path))?;
    let reader = SerializedFileReader::new(file).map_err(|e| bad(format!("unreadable Parquet footer: {e}")))?;
    let meta = reader.metadata();
    let Some(idx) = meta.file_metadata().schema_descr().columns().iter().position(|c| c.name() == column) else {
        return Err(bad(format!("no column `{column}`")));
    };
    let mut range: Option<(i64, i64)> = None;
    for rg in meta.row_groups() {
        if rg.num_rows() == 0 {
            continue;
        }
        let (lo, hi) = match rg.column(idx).statistics() {
            Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(lo), Some(hi)) => (*lo, *hi),
                _ => return Err(bad(format!("no min/max statistics for `{column}`"))),
            },
            _ => return Err(bad(format!("no Int64 statistics for `{column}`"))),
        };
        range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
    Ok(range)
}

/// What a build computes.
pub(super) struct Plan {
    /// Why every month is computed (None: only the months of new staging).
    pub full: Option<String>,
    /// New catalogue songs, without computing every month: the global
    /// helpers are computed again, and each cumulative summary is reduced
    /// from every month's summary, not from its previous result (a month
    /// computed again can lose a derived track that a new song now matches).
    pub catalogue_changed: bool,
    /// Layered tables may take a layer of new keys instead of being rewritten
    /// (see `layer.rs`): every month is not computed, the catalogue is
    /// unchanged, and the only new staging is Sparkify events, so the
    /// cumulative summaries are the only inputs of the dimensions that change.
    pub layers: bool,
    /// Slices of months to compute, each consecutive.
    pub slices: Vec<Vec<Month>>,
    /// Every month staging has rows in.
    pub months: BTreeSet<Month>,
    pub spans: Vec<Span>,
}

impl Plan {
    /// The month partitions this build computes.
    pub fn computed(&self) -> BTreeSet<String> {
        self.slices.iter().flatten().map(|m| partition_of(*m)).collect()
    }
}

pub(super) fn plan(
    layout: &Layout,
    manifest: &Manifest,
    fingerprint: &str,
    opts: &BuildOptions,
) -> Result<Plan, ModelError> {
    let previous = manifest.last_build();
    let since = previous.and_then(|r| r.stats.build()).map_or(0, |b| b.staging_run);
    let new_files: HashSet<&str> = manifest.staged_after(since);
    let mut full = every_month_because(manifest, fingerprint, opts.force, since);

    let mut spans = vec![];
    let mut dirty: BTreeSet<Month> = BTreeSet::new();
    let mut months: BTreeSet<Month> = BTreeSet::new();
    let mut new_songs = false;
    let mut only_events = true;
    for &(table, time, reach) in STAGING {
        let files = manifest.staging_files(table);
        let new = files.iter().any(|f| new_files.contains(f.path.as_str()));
        only_events &= !new || table == staging::STG_SPARKIFY_EVENTS;
        match (new, reach, &full) {
            (true, Reach::AllMonths(why), None) => full = Some(format!("new {table}: {why}")),
            (true, Reach::ArtistMonths, None) => new_songs = true,
            _ => {}
        }
        let Some(column) = time else { continue };
        for f in files {
            let Some((first, last)) = time_range(&layout.abs(&f.path), column)? else { continue };
            months.extend(months_between(first, last));
            // New rows of these tables change only rows of their own month:
            // copies share a time, and a Web API play found in an export is
            // marked on the API play's side.
            if new_files.contains(f.path.as_str()) && reach == Reach::TheirMonths {
                dirty.extend(months_between(first, last));
            }
            spans.push(Span { table, path: f.path.clone(), rows: f.rows, first, last, sorted: f.sorted });
        }
    }
    let mut catalogue_changed = false;
    if new_songs && full.is_none() {
        let (added, before): (Vec<_>, Vec<_>) = manifest
            .staging_files(staging::STG_SPARKIFY_SONGS)
            .into_iter()
            .partition(|f| new_files.contains(f.path.as_str()));
        let events = manifest.staging_files(staging::STG_SPARKIFY_EVENTS);
        match months_of_new_songs(layout, &added, &before, &events)? {
            Some(reached) => {
                catalogue_changed = true;
                dirty.extend(reached);
            }
            None => full = Some("a new song file changes a song the catalogue already has".into()),
        }
    }
    let wanted: BTreeSet<Month> = if full.is_some() { months.clone() } else { &dirty & &months };
    let slices = slices_of(&months, &wanted, &spans, opts.slice_rows);
    let layers = full.is_none() && !catalogue_changed && only_events;
    Ok(Plan { full, catalogue_changed, layers, slices, months, spans })
}

/// Why a build must compute every month (`--force`, a first build, a model
/// changed, a reprocess since staging run `since`), or None.
fn every_month_because(manifest: &Manifest, fingerprint: &str, force: bool, since: u64) -> Option<String> {
    if force {
        return Some("--force".to_string());
    }
    let Some(prev) = manifest.last_build() else { return Some("first build".into()) };
    let prev = prev.stats.build();
    if prev.map(|b| b.model_hash.as_str()) != Some(fingerprint) {
        Some("the model changed since the last build".into())
    } else if prev.is_none_or(|b| b.months.is_none()) {
        Some("the last build kept no monthly bookkeeping".into())
    } else if manifest.state().replaced_run > since {
        Some("staging was reprocessed".into())
    } else {
        None
    }
}

/// The `wanted` months in runs of consecutive months of at most about
/// `slice_rows` staging rows each (a file's rows spread evenly over the
/// months it spans).
fn slices_of(months: &BTreeSet<Month>, wanted: &BTreeSet<Month>, spans: &[Span], slice_rows: u64) -> Vec<Vec<Month>> {
    let mut estimate: BTreeMap<Month, f64> = BTreeMap::new();
    for s in spans {
        let ms = months_between(s.first, s.last);
        for m in &ms {
            *estimate.entry(*m).or_default() += s.rows as f64 / ms.len() as f64;
        }
    }
    let mut slices: Vec<Vec<Month>> = vec![];
    let mut current: Vec<Month> = vec![];
    let mut rows = 0.0;
    for m in months {
        let est = estimate.get(m).copied().unwrap_or(0.0);
        if !wanted.contains(m) || (!current.is_empty() && rows + est > slice_rows as f64) {
            if !current.is_empty() {
                slices.push(std::mem::take(&mut current));
            }
            rows = 0.0;
        }
        if wanted.contains(m) {
            current.push(*m);
            rows += est;
        }
    }
    if !current.is_empty() {
        slices.push(current);
    }
    slices
}

/// The months whose plays new catalogue songs (`added`) can change, or None
/// when one of them has a song id the catalogue (`before`) already has. A
/// play changes when a new song has its title and artist (it may match
/// now), or when it names an artist whose catalogue id changes: a name the
/// catalogue lacked, or a new song with a smaller artist id for the name
/// (`_sparkify_plays` takes the smallest).
fn months_of_new_songs(
    layout: &Layout,
    added: &[&StagingFile],
    before: &[&StagingFile],
    events: &[&StagingFile],
) -> Result<Option<BTreeSet<Month>>, ModelError> {
    use datafusion::arrow::array::{Array, AsArray};
    let mut ids: HashSet<String> = HashSet::new();
    let mut pairs: HashSet<(String, String)> = HashSet::new();
    let mut new_min: BTreeMap<String, String> = BTreeMap::new();
    for f in added {
        read_columns(&layout.abs(&f.path), &["song_id", "artist_id", "artist_key", "title_key"], |b| {
            let [song, artist, key, title] = [0, 1, 2, 3].map(|i| b[i].as_string::<i32>());
            for i in 0..song.len() {
                ids.insert(song.value(i).to_string());
                pairs.insert((key.value(i).to_string(), title.value(i).to_string()));
                keep_min(&mut new_min, key.value(i), artist.value(i));
            }
        })?;
    }
    let mut known = false;
    let mut old_min: BTreeMap<String, String> = BTreeMap::new();
    for f in before {
        read_columns(&layout.abs(&f.path), &["song_id", "artist_id", "artist_key"], |b| {
            let [song, artist, key] = [0, 1, 2].map(|i| b[i].as_string::<i32>());
            for i in 0..song.len() {
                known |= ids.contains(song.value(i));
                if new_min.contains_key(key.value(i)) {
                    keep_min(&mut old_min, key.value(i), artist.value(i));
                }
            }
        })?;
    }
    if known {
        return Ok(None);
    }
    let renamed: HashSet<&str> = new_min
        .iter()
        .filter(|(key, new)| old_min.get(*key).is_none_or(|old| *new < old))
        .map(|(key, _)| key.as_str())
        .collect();
    let mut months = BTreeSet::new();
    for f in events {
        read_columns(&layout.abs(&f.path), &["ts", "artist_key", "title_key"], |b| {
            let ts = b[0].as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
            let (key, title) = (b[1].as_string::<i32>(), b[2].as_string::<i32>());
            for i in 0..ts.len() {
                if key.is_null(i) {
                    continue;
                }
                let k = key.value(i);
                let reached = renamed.contains(k)
                    || (!title.is_null(i) && pairs.contains(&(k.to_string(), title.value(i).to_string())));
                if reached {
                    months.insert(month_of(ts.value(i)));
                }
            }
        })?;
    }
    Ok(Some(months))
}

/// Keeps the smallest artist id seen for `key` (what `_sparkify_plays` takes).
fn keep_min(mins: &mut BTreeMap<String, String>, key: &str, id: &str) {
    match mins.get_mut(key) {
        Some(min) if id < min.as_str() => *min = id.to_string(),
        Some(_) => {}
        None => {
            mins.insert(key.to_string(), id.to_string());
        }
    }
}

/// Reads `columns` of the Parquet file at `path`, in that order, batch by batch.
fn read_columns(
    path: &Path,
    columns: &[&str],
    mut each: impl FnMut(&[datafusion::arrow::array::ArrayRef]),
) -> Result<(), ModelError> {
    use datafusion::parquet::arrow::ProjectionMask;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let read_err = |source| ModelError::Lake(crate::lake::LakeError::ParquetRead { path: path.to_path_buf(), source });
    let file = std::fs::File::open(path).map_err(crate::lake::LakeError::io("open", path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(read_err)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let reader = builder.with_projection(mask).with_batch_size(65_536).build().map_err(read_err)?;
    for batch in reader {
        let batch = batch.map_err(|source| {
            ModelError::Lake(crate::lake::LakeError::ArrowRead { path: path.to_path_buf(), source })
        })?;
        // The projection keeps the file's column order; hand them over in the order asked for.
        let missing = |c: &str| {
            ModelError::Lake(crate::lake::LakeError::Corrupt {
                path: path.to_path_buf(),
                what: format!("no column `{c}`"),
            })
        };
        let ordered = columns
            .iter()
            .map(|c| batch.column_by_name(c).cloned().ok_or_else(|| missing(c)))
            .collect::<Result<Vec<_>, _>>()?;
        each(&ordered);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_of_timestamps() {
        assert_eq!(month_of(0), (1970, 1));
        assert_eq!(month_of(1_541_105_830_796_000), (2018, 11));
        assert_eq!(month_of(-1), (1969, 12));
    }

    #[test]
    fn every_staging_table_has_a_reach() {
        for (name, _) in staging::tables() {
            assert!(STAGING.iter().any(|s| s.0 == name), "{name}");
        }
        assert_eq!(months_between(month_start((2018, 11)), month_start((2019, 2)) + 5).len(), 4);
        assert_eq!(next_month((2018, 12)), (2019, 1));
    }
}
