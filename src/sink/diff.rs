//! Row-level difference between the part file PostgreSQL last received and
//! the part that replaces it, so a changed partition sends only the rows
//! that changed. Rows are compared by a 128-bit hash: DataFusion's column-wise
//! `create_hashes` with two independently seeded states, the whole row to
//! find what changed, the primary key to find what is gone. The old file is
//! read once; memory is two hash sets and the old file's key columns.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState as StdRandomState};
use std::path::{Path, PathBuf};

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

fn batches(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch, LakeError>>, LakeError> {
    let reader = parquet::read(path, 16 * 1024)?;
    let p = path.to_path_buf();
    Ok(reader.map(move |b| b.map_err(|source| LakeError::ArrowRead { path: p.clone(), source })))
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

/// The rows of the files `new` that differ from those of `old`, and the keys
/// of `old` that `new` lacks. Each side is the union of its files.
pub fn diff(old: &[PathBuf], new: &[PathBuf], key: &[String], table: &str) -> Result<Diff, SinkError> {
    let h = Hasher2::new();
    let mut old_rows: HashSet<u128> = HashSet::new();
    let mut old_keys: Vec<(RecordBatch, Vec<u128>)> = vec![];
    for b in old.iter().map(|p| batches(p)).collect::<Result<Vec<_>, _>>()?.into_iter().flatten() {
        let b = b?;
        old_rows.extend(h.rows(b.columns(), b.num_rows(), table)?);
        let keys = b.project(&key_columns(&b, key, table)?).expect("key columns exist");
        let hashes = h.rows(keys.columns(), keys.num_rows(), table)?;
        old_keys.push((keys, hashes));
    }
    let mut new_keys: HashSet<u128> = HashSet::new();
    let mut upserts = vec![];
    let mut columns: Vec<String> = vec![];
    for path in new {
        let reader = parquet::read(path, 16 * 1024)?;
        columns = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
        for b in reader.map(|b| b.map_err(|source| LakeError::ArrowRead { path: path.clone(), source })) {
            let b = b?;
            let idx = key_columns(&b, key, table)?;
            let keys: Vec<ArrayRef> = idx.iter().map(|&i| b.column(i).clone()).collect();
            new_keys.extend(h.rows(&keys, b.num_rows(), table)?);
            let mask: BooleanArray =
                h.rows(b.columns(), b.num_rows(), table)?.iter().map(|r| Some(!old_rows.contains(r))).collect();
            if mask.true_count() > 0 {
                upserts.push(filter_record_batch(&b, &mask).expect("mask matches the batch"));
            }
        }
    }
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

    fn file(dir: &Path, name: &str, ids: &[i64], names: &[&str]) -> std::path::PathBuf {
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
}
