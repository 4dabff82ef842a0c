//! Row-level difference between the part file PostgreSQL last received and
//! the part that replaces it, so a changed partition sends only the rows
//! that changed. Rows are compared by a 128-bit hash: DataFusion's column-wise
//! `create_hashes` with two independently seeded states, the whole row to
//! find what changed, the primary key to find what is gone. The old file is
//! read once; memory is two hash sets and the old file's key columns. Row
//! groups are read and hashed on every core.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState as StdRandomState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatchReader;
use datafusion::common::hash_utils::{RandomState, create_hashes};

use super::SinkError;
use crate::lake::{LakeError, parquet};

/// What changed from one part file to the next.
pub struct Diff {
    /// The new file's columns, in order.
    pub columns: Vec<String>,
    /// Rows of the new file the old one does not have exactly (new or changed).
    pub upserts: Vec<RecordBatch>,
    /// The key columns of the old file's rows whose key the new one lacks.
    pub gone: Vec<RecordBatch>,
}

impl Diff {
    pub fn upsert_rows(&self) -> usize {
        self.upserts.iter().map(RecordBatch::num_rows).sum()
    }
    pub fn gone_rows(&self) -> usize {
        self.gone.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Two hash states seeded from the OS (through std's RandomState).
struct Hasher2(RandomState, RandomState);

impl Hasher2 {
    fn new() -> Self {
        let std = StdRandomState::new();
        Hasher2(RandomState::with_seed(std.hash_one(1u8)), RandomState::with_seed(std.hash_one(2u8)))
    }

    /// One 128-bit hash per row of `columns`.
    fn rows(&self, columns: &[ArrayRef], n: usize, table: &str) -> Result<Vec<u128>, SinkError> {
        let err =
            |e: datafusion::error::DataFusionError| SinkError::Diff { table: table.into(), problem: e.to_string() };
        let (mut a, mut b) = (vec![0u64; n], vec![0u64; n]);
        create_hashes(columns, &self.0, &mut a).map_err(err)?;
        create_hashes(columns, &self.1, &mut b).map_err(err)?;
        Ok(a.into_iter().zip(b).map(|(a, b)| ((a as u128) << 64) | b as u128).collect())
    }
}

fn key_columns(b: &RecordBatch, key: &[String], table: &str) -> Result<Vec<usize>, SinkError> {
    key.iter()
        .map(|k| {
            b.schema().index_of(k).map_err(|_| SinkError::Diff {
                table: table.into(),
                problem: format!("the lake's file has no key column `{k}`"),
            })
        })
        .collect()
}

/// Gives every batch of `files` to `f`, a row group at a time on each core
/// (a month of plays decodes and hashes in half the time on two); what `f`
/// returned, in no particular order.
fn each_batch<T: Send>(
    files: &[PathBuf],
    f: impl Fn(RecordBatch) -> Result<T, SinkError> + Sync,
) -> Result<Vec<T>, SinkError> {
    let mut groups = vec![];
    for path in files {
        groups.extend((0..parquet::row_groups(path)?).map(|g| (path, g)));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let work = || -> Result<Vec<T>, SinkError> {
        let mut out = vec![];
        while let Some(&(path, g)) = groups.get(next.fetch_add(1, Ordering::Relaxed)) {
            for b in parquet::read_row_group(path, g, 16 * 1024)? {
                out.push(f(b.map_err(|source| LakeError::ArrowRead { path: path.clone(), source })?)?);
            }
        }
        Ok(out)
    };
    let results: Vec<Result<Vec<T>, SinkError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cores.min(groups.len())).map(|_| s.spawn(work)).collect();
        // Every worker finishes before any error is returned.
        workers.into_iter().map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut all = vec![];
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

/// The rows of the files `new` that differ from those of `old`, and the keys
/// of `old` that `new` lacks. Each side is the union of its files.
pub fn diff(old: &[PathBuf], new: &[PathBuf], key: &[String], table: &str) -> Result<Diff, SinkError> {
    let h = Hasher2::new();
    let old_batches = each_batch(old, |b| {
        let rows = h.rows(b.columns(), b.num_rows(), table)?;
        let keys = b.project(&key_columns(&b, key, table)?).expect("key columns exist");
        let hashes = h.rows(keys.columns(), keys.num_rows(), table)?;
        Ok((rows, keys, hashes))
    })?;
    let mut old_rows: HashSet<u128> = HashSet::with_capacity(old_batches.iter().map(|b| b.0.len()).sum());
    let mut old_keys: Vec<(RecordBatch, Vec<u128>)> = vec![];
    for (rows, keys, hashes) in old_batches {
        old_rows.extend(rows);
        old_keys.push((keys, hashes));
    }
    let new_batches = each_batch(new, |b| {
        let idx = key_columns(&b, key, table)?;
        let keys: Vec<ArrayRef> = idx.iter().map(|&i| b.column(i).clone()).collect();
        let key_hashes = h.rows(&keys, b.num_rows(), table)?;
        let mask: BooleanArray =
            h.rows(b.columns(), b.num_rows(), table)?.iter().map(|r| Some(!old_rows.contains(r))).collect();
        let upserts = (mask.true_count() > 0).then(|| filter_record_batch(&b, &mask).expect("mask matches the batch"));
        Ok((key_hashes, upserts))
    })?;
    let mut new_keys: HashSet<u128> = HashSet::new();
    let mut upserts = vec![];
    for (key_hashes, rows) in new_batches {
        new_keys.extend(key_hashes);
        upserts.extend(rows);
    }
    // The columns of the new files, from a footer (a file may have no row group).
    let columns = match new.last() {
        Some(path) => parquet::read(path, 1)?.schema().fields().iter().map(|f| f.name().clone()).collect(),
        None => vec![],
    };
    let mut gone = vec![];
    for (keys, hashes) in old_keys {
        let mask: BooleanArray = hashes.iter().map(|k| Some(!new_keys.contains(k))).collect();
        if mask.true_count() > 0 {
            gone.push(filter_record_batch(&keys, &mask).expect("mask matches the batch"));
        }
    }
    Ok(Diff { columns, upserts, gone })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn file(dir: &std::path::Path, name: &str, ids: &[i64], names: &[&str]) -> std::path::PathBuf {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(names.to_vec()))],
        )
        .unwrap();
        let path = dir.join(name);
        parquet::write_batches(&path, &schema, [&b]).unwrap();
        path
    }

    #[test]
    fn finds_new_changed_and_gone_rows() {
        let dir = tempfile::tempdir().unwrap();
        let old = file(dir.path(), "old.parquet", &[1, 2, 3, 4], &["a", "b", "c", "d"]);
        let new = file(dir.path(), "new.parquet", &[1, 2, 4, 5], &["a", "B", "d", "e"]);
        let d = diff(std::slice::from_ref(&old), std::slice::from_ref(&new), &["id".to_string()], "t").unwrap();
        let ids = |bs: &[RecordBatch]| -> Vec<i64> {
            bs.iter()
                .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                .collect()
        };
        assert_eq!(ids(&d.upserts), vec![2, 5], "2 changed, 5 is new");
        assert_eq!(ids(&d.gone), vec![3]);
        let same = diff(std::slice::from_ref(&old), std::slice::from_ref(&old), &["id".to_string()], "t").unwrap();
        assert_eq!((same.upsert_rows(), same.gone_rows()), (0, 0));
        // Each side is the union of its files: a base and a layer of new keys.
        let base = file(dir.path(), "base.parquet", &[1, 2], &["a", "B"]);
        let layer = file(dir.path(), "layer.parquet", &[4, 5], &["d", "e"]);
        let d = diff(&[old.clone(), new.clone()], &[base, layer], &["id".to_string()], "t").unwrap();
        assert_eq!((ids(&d.upserts), ids(&d.gone)), (vec![], vec![3]), "every row of new is in one of the old files");
    }

    /// Files of several row groups, read on several cores, give every change once.
    #[test]
    fn changes_in_every_row_group_are_found_once() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<i64> = (0..140_000).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        let old = file(dir.path(), "old.parquet", &ids, &names.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(parquet::row_groups(&old).unwrap(), 2, "the test needs two row groups");
        let mut new_rows: Vec<(i64, String)> =
            ids.iter().zip(&names).filter(|(i, _)| ![5, 139_000].contains(*i)).map(|(i, n)| (*i, n.clone())).collect();
        for (i, n) in new_rows.iter_mut() {
            if [7, 131_500].contains(i) {
                *n = format!("changed {i}");
            }
        }
        new_rows.extend([(200_000, "a".to_string()), (200_001, "b".to_string())]);
        let (new_ids, new_names): (Vec<i64>, Vec<String>) = new_rows.into_iter().unzip();
        let new = file(dir.path(), "new.parquet", &new_ids, &new_names.iter().map(String::as_str).collect::<Vec<_>>());
        let d = diff(&[old], &[new], &["id".to_string()], "t").unwrap();
        let sorted = |bs: &[RecordBatch]| -> Vec<i64> {
            let mut v: Vec<i64> = bs
                .iter()
                .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                .collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&d.upserts), vec![7, 131_500, 200_000, 200_001]);
        assert_eq!(sorted(&d.gone), vec![5, 139_000]);
        assert_eq!(d.columns, ["id", "name"]);
    }
}
