//! Row-level difference between the part file PostgreSQL last received and
//! the part that replaces it, so a changed partition sends only the rows
//! that changed. Rows are compared by a 128-bit hash of Arrow's row format
//! (two independently keyed SipHashes): the whole row to find what changed,
//! the primary key to find what is gone. Memory is two hash sets, not the
//! files.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use super::SinkError;
use crate::lake::{LakeError, parquet};

/// What changed from one part file to the next.
pub struct Diff {
    /// Rows of the new file the old one does not have exactly (new or changed).
    pub upserts: Vec<RecordBatch>,
    /// Rows of the old file whose primary key the new one lacks.
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

struct Hasher2(RandomState, RandomState);

impl Hasher2 {
    fn new() -> Self {
        Hasher2(RandomState::new(), RandomState::new())
    }
    fn hash(&self, bytes: &[u8]) -> u128 {
        ((self.0.hash_one(bytes) as u128) << 64) | self.1.hash_one(bytes) as u128
    }
}

fn batches(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch, LakeError>>, LakeError> {
    let reader = parquet::read(path, 16 * 1024)?;
    let p = path.to_path_buf();
    Ok(reader.map(move |b| b.map_err(|source| LakeError::ArrowRead { path: p.clone(), source })))
}

fn rows(batch: &RecordBatch, columns: &[usize], table: &str) -> Result<Rows, SinkError> {
    let fields = columns.iter().map(|&i| SortField::new(batch.schema().field(i).data_type().clone())).collect();
    let arrays: Vec<_> = columns.iter().map(|&i| batch.column(i).clone()).collect();
    let err = |e: datafusion::arrow::error::ArrowError| SinkError::Diff { table: table.into(), problem: e.to_string() };
    let converter = RowConverter::new(fields).map_err(err)?;
    converter.convert_columns(&arrays).map_err(err)
}

/// The rows of `new` that differ from `old`, and the rows of `old` whose `key` is gone.
pub fn diff(old: &Path, new: &Path, key: &[String], table: &str) -> Result<Diff, SinkError> {
    let h = Hasher2::new();
    let index_of = |b: &RecordBatch| -> Result<(Vec<usize>, Vec<usize>), SinkError> {
        let all: Vec<usize> = (0..b.num_columns()).collect();
        let keys = key
            .iter()
            .map(|k| {
                b.schema().index_of(k).map_err(|_| SinkError::Diff {
                    table: table.into(),
                    problem: format!("the lake's file has no key column `{k}`"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((all, keys))
    };
    let mut old_rows: HashSet<u128> = HashSet::new();
    for b in batches(old)? {
        let b = b?;
        let (all, _) = index_of(&b)?;
        let r = rows(&b, &all, table)?;
        old_rows.extend(r.iter().map(|row| h.hash(row.as_ref())));
    }
    let mut new_keys: HashSet<u128> = HashSet::new();
    let mut upserts = vec![];
    for b in batches(new)? {
        let b = b?;
        let (all, keys) = index_of(&b)?;
        let r = rows(&b, &all, table)?;
        let k = rows(&b, &keys, table)?;
        new_keys.extend(k.iter().map(|row| h.hash(row.as_ref())));
        let mask: BooleanArray = r.iter().map(|row| Some(!old_rows.contains(&h.hash(row.as_ref())))).collect();
        if mask.true_count() > 0 {
            upserts.push(filter_record_batch(&b, &mask).expect("mask matches the batch"));
        }
    }
    drop(old_rows);
    let mut gone = vec![];
    for b in batches(old)? {
        let b = b?;
        let (_, keys) = index_of(&b)?;
        let k = rows(&b, &keys, table)?;
        let mask: BooleanArray = k.iter().map(|row| Some(!new_keys.contains(&h.hash(row.as_ref())))).collect();
        if mask.true_count() > 0 {
            gone.push(filter_record_batch(&b, &mask).expect("mask matches the batch"));
        }
    }
    Ok(Diff { upserts, gone })
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
        let d = diff(&old, &new, &["id".to_string()], "t").unwrap();
        let ids = |bs: &[RecordBatch]| -> Vec<i64> {
            bs.iter()
                .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                .collect()
        };
        assert_eq!(ids(&d.upserts), vec![2, 5], "2 changed, 5 is new");
        assert_eq!(ids(&d.gone), vec![3]);
        let same = diff(&old, &old, &["id".to_string()], "t").unwrap();
        assert_eq!((same.upsert_rows(), same.gone_rows()), (0, 0));
    }
}
