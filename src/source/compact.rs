//! Staging compaction. A date partition of a table whose new rows change
//! only their own month (Sparkify events, Web API plays) holds at most
//! [`COMPACT_AT`] files: the run that would add one more merges the
//! partition's live files and its own into one, in the table's order, and
//! its ledger entry removes the merged ones from the live set
//! (`StagingChange::removed`). So a history of many small runs (`run --every
//! 6h` for a year) costs a build as few files as one big ingest, and the
//! build reads the same rows. The merged files become debris for `vacuum`.

use std::collections::BTreeSet;

use datafusion::arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use datafusion::arrow::record_batch::RecordBatch;

use crate::lake::manifest::{StagingChange, StagingFile};
use crate::lake::{LakeError, Layout, Manifest, parquet, staging};

/// The most files a compacted partition holds.
pub const COMPACT_AT: usize = 8;

/// The tables compacted: new rows of them change only their own month's star.
const TABLES: [&str; 2] = [staging::STG_SPARKIFY_EVENTS, staging::STG_SPOTIFY_API_PLAYS];

/// Merges each partition `change` adds files to that would then hold more
/// than [`COMPACT_AT`] files; returns how many partitions it merged.
pub fn compact(layout: &Layout, manifest: &Manifest, run: u64, change: &mut StagingChange) -> Result<usize, LakeError> {
    if change.replace {
        return Ok(0);
    }
    let dir_of = |path: &str| path.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_string());
    let mut merged = 0;
    for table in TABLES {
        let dirs: BTreeSet<String> =
            change.files.iter().filter(|f| f.table == table).map(|f| dir_of(&f.path)).collect();
        for dir in dirs {
            let in_dir = |f: &&StagingFile| f.table == table && dir_of(&f.path) == dir;
            let live: Vec<StagingFile> = manifest.staging_files(table).into_iter().filter(in_dir).cloned().collect();
            let new: Vec<StagingFile> = change.files.iter().filter(in_dir).cloned().collect();
            if live.len() + new.len() <= COMPACT_AT {
                continue;
            }
            let rel = format!("{dir}/part-{run:08}-c{merged:04}.parquet");
            let file = merge(layout, table, live.iter().chain(&new), &rel)?;
            for f in &new {
                // Written by this run and named by nothing: gone now rather than left to vacuum.
                let _ = std::fs::remove_file(layout.abs(&f.path));
            }
            change.files.retain(|f| !new.iter().any(|n| n.path == f.path));
            change.files.push(file);
            change.removed.extend(live.into_iter().map(|f| f.path));
            merged += 1;
        }
    }
    change.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(merged)
}

/// Writes the rows of `files` to `rel` as one file, in the table's order when it has one.
fn merge<'a>(
    layout: &Layout,
    table: &str,
    files: impl Iterator<Item = &'a StagingFile>,
    rel: &str,
) -> Result<StagingFile, LakeError> {
    let mut batches: Vec<RecordBatch> = vec![];
    for f in files {
        let path = layout.abs(&f.path);
        for b in parquet::read(&path, 64 * 1024)? {
            batches.push(b.map_err(|source| LakeError::ArrowRead { path: path.clone(), source })?);
        }
    }
    let path = layout.abs(rel);
    let arrow = |source| LakeError::ArrowRead { path: path.clone(), source };
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| LakeError::Corrupt { path: path.clone(), what: "no rows to merge".into() })?;
    let mut all = concat_batches(&schema, &batches).map_err(arrow)?;
    let order = staging::order_of(table);
    if !order.is_empty() {
        let by: Vec<SortColumn> = order
            .iter()
            .map(|c| SortColumn { values: all.column_by_name(c).expect("a staging column").clone(), options: None })
            .collect();
        let indices = lexsort_to_indices(&by, None).map_err(arrow)?;
        all = take_record_batch(&all, &indices).map_err(arrow)?;
    }
    let w = parquet::write_staging(&path, table, &schema, [&all])?;
    Ok(StagingFile { table: table.into(), path: rel.into(), rows: w.rows, sorted: !order.is_empty() })
}
