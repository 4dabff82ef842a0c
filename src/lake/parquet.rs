//! Parquet files in and out of the lake. Writes go to a temp file renamed
//! into place (made durable when the run commits, by [`fsio::sync_files`]) and
//! hash the bytes as they are written, so a file's sha256
//! comes free: equal rows in equal order give equal bytes and equal hashes,
//! which is how build and sync recognise unchanged partitions.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use datafusion::parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use super::{LakeError, fsio, staging};

/// What a finished file holds.
#[derive(Debug, Clone)]
pub struct Written {
    pub rows: u64,
    /// Empty for a scratch or staging file.
    pub sha256: String,
}

/// Hashes what it writes, unless `hasher` is None (scratch and staging
/// files, which nothing compares, so the hashing would be pure cost).
struct HashingWriter<W> {
    inner: W,
    hasher: Option<Sha256>,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary | DataType::LargeBinary)
}

/// Min/max statistics only for the text columns in `keep` (numbers and times
/// keep theirs). Nothing prunes by the other text columns of staging or
/// scratch files, and computing their statistics compares every value.
fn text_statistics_only_for(mut b: WriterPropertiesBuilder, schema: &Schema, keep: &[&str]) -> WriterPropertiesBuilder {
    for f in schema.fields() {
        if is_text(f.data_type()) && !keep.contains(&f.name().as_str()) {
            b = b.set_column_statistics_enabled(ColumnPath::from(f.name().as_str()), EnabledStatistics::None);
        }
    }
    b
}

/// Scratch files live minutes and are read once or twice: no compression;
/// dictionaries for text columns but those the rows are sorted by, which
/// are ids nearly unique (a dictionary of those is pure cost); and text
/// statistics only for those sort columns (DataFusion checks the order by
/// them). The dictionaries (user agents, locations, names) cut the build's
/// peak memory by a fifth in the same time. Row groups of 32Ki rows, a
/// quarter of the lake files', bound what the writer holds.
fn scratch_props(schema: &Schema, sorted_by: &[&str]) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(32 * 1024));
    for f in schema.fields().iter().filter(|f| is_text(f.data_type()) && !sorted_by.contains(&f.name().as_str())) {
        b = b.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true);
    }
    text_statistics_only_for(b, schema, sorted_by).build()
}

/// Lake files: snappy, and dictionaries for text columns only. A dictionary
/// of numbers or times costs more than it saves: timestamps and ids are
/// nearly unique, and small integers (hour, month) compress as well plain,
/// so such dictionaries slow the writer for files no smaller. Snappy
/// everywhere: uncompressed or LZ4 staging made no faster build.
fn lake_props(schema: &Schema) -> WriterPropertiesBuilder {
    let mut b =
        WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(128 * 1024));
    for f in schema.fields() {
        if !is_text(f.data_type()) {
            b = b.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false);
        }
    }
    b
}

/// Writes `batches` (all of `schema`) to `path` atomically (see [`FileWriter`]).
pub fn write_batches<'a>(
    path: &Path,
    schema: &SchemaRef,
    batches: impl IntoIterator<Item = &'a RecordBatch>,
) -> Result<Written, LakeError> {
    FileWriter::create(path, schema.clone()).write_all(batches)
}

/// Writes a staging file of `table`: a lake file, but without a hash
/// (nothing compares staging files by content), and with text statistics
/// only for the columns the build checks its rows' order by ([`staging::order_of`]).
pub fn write_staging<'a>(
    path: &Path,
    table: &str,
    schema: &SchemaRef,
    batches: impl IntoIterator<Item = &'a RecordBatch>,
) -> Result<Written, LakeError> {
    let props = text_statistics_only_for(lake_props(schema), schema, staging::order_of(table)).build();
    FileWriter::new(path, schema.clone(), false, props).write_all(batches)
}

/// A Parquet file being written batch by batch; nothing is visible at `path`
/// until [`FileWriter::finish`] renames it into place. Batches are buffered
/// by the Arrow writer in row groups, so memory is bounded by one row group.
///
/// The bytes depend on the rows alone, not on how they came in batches: the
/// Arrow writer cuts pages only where one of its mini-batches ends, and a
/// mini-batch is `write_batch_size` rows counted from the start of each call,
/// or the whole call where a column has no nulls (or only nulls) in it. So
/// the rows reach it `write_batch_size` at a time from the file's start, and
/// the few left over wait for the next batch. A build whose helpers were held
/// in memory (batches as the query made them) writes the same files as one
/// that read them back from scratch files. Only the hashed lake files are cut
/// this way: scratch and staging files go as they come (nothing compares them).
///
/// No file gets an fsync of its own: a run writes many files, then makes
/// them all durable with one [`fsio::sync_files`] before the manifest
/// entry that names them. Until then a file is debris that `vacuum` removes.
pub struct FileWriter {
    path: std::path::PathBuf,
    schema: SchemaRef,
    inner: Option<(tempfile::NamedTempFile, ArrowWriter<HashingWriter<std::io::BufWriter<File>>>)>,
    rows: u64,
    hashed: bool,
    props: WriterProperties,
    /// Rows not handed to the Arrow writer yet: fewer than one mini-batch.
    pending: Option<RecordBatch>,
}

impl FileWriter {
    fn new(path: &Path, schema: SchemaRef, hashed: bool, props: WriterProperties) -> Self {
        FileWriter { path: path.into(), schema, inner: None, rows: 0, hashed, props, pending: None }
    }

    /// A lake file: hashed, compressed, with every statistic.
    pub fn create(path: &Path, schema: SchemaRef) -> Self {
        let props = lake_props(&schema).build();
        FileWriter::new(path, schema, true, props)
    }

    /// A temp file for intermediate results, written for speed, not size;
    /// its rows are in the order of `sorted_by`.
    pub fn scratch(path: &Path, schema: SchemaRef, sorted_by: &[&str]) -> Self {
        let props = scratch_props(&schema, sorted_by);
        FileWriter::new(path, schema, false, props)
    }

    fn open(&mut self) -> Result<(), LakeError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(LakeError::io("create directory", dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(fsio::TMP_PREFIX)
            .tempfile_in(dir)
            .map_err(LakeError::io("create temp file in", dir))?;
        let file = tmp.reopen().map_err(LakeError::io("open", tmp.path()))?;
        let hasher = self.hashed.then(Sha256::new);
        let hw = HashingWriter { inner: std::io::BufWriter::with_capacity(1 << 20, file), hasher };
        let w = ArrowWriter::try_new(hw, self.schema.clone(), Some(self.props.clone()))
            .map_err(|source| LakeError::ParquetWrite { path: self.path.clone(), source })?;
        self.inner = Some((tmp, w));
        Ok(())
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        if !self.hashed {
            // Scratch and staging files are never compared by their bytes.
            return self.write_whole(batch);
        }
        let chunk = self.props.write_batch_size();
        let mut rest = batch.clone();
        if let Some(head) = self.pending.take() {
            let fill = (chunk - head.num_rows()).min(rest.num_rows());
            let joined = concat_batches(&self.schema, [&head, &rest.slice(0, fill)])
                .map_err(|source| LakeError::ParquetWrite { path: self.path.clone(), source: source.into() })?;
            rest = rest.slice(fill, rest.num_rows() - fill);
            if joined.num_rows() < chunk {
                self.pending = Some(joined);
                return Ok(());
            }
            self.write_whole(&joined)?;
        }
        let whole = rest.num_rows() / chunk * chunk;
        for at in (0..whole).step_by(chunk) {
            self.write_whole(&rest.slice(at, chunk))?;
        }
        if whole < rest.num_rows() {
            self.pending = Some(rest.slice(whole, rest.num_rows() - whole));
        }
        Ok(())
    }

    /// Hands rows to the Arrow writer: for a hashed file, one mini-batch or the file's last rows.
    fn write_whole(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        if self.inner.is_none() {
            self.open()?;
        }
        let (_, w) = self.inner.as_mut().expect("opened above");
        w.write(batch).map_err(|source| LakeError::ParquetWrite { path: self.path.clone(), source })
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes `batches` and finishes the file.
    pub fn write_all<'a>(mut self, batches: impl IntoIterator<Item = &'a RecordBatch>) -> Result<Written, LakeError> {
        for b in batches {
            self.write(b)?;
        }
        self.finish()
    }

    /// Closes the file and renames it into place.
    pub fn finish(mut self) -> Result<Written, LakeError> {
        if let Some(last) = self.pending.take() {
            self.write_whole(&last)?;
        }
        if self.inner.is_none() {
            self.open()?;
        }
        let (tmp, w) = self.inner.take().expect("opened above");
        let path = self.path.clone();
        let hw = w.into_inner().map_err(|source| LakeError::ParquetWrite { path: path.clone(), source })?;
        let HashingWriter { inner, hasher } = hw;
        let file = inner.into_inner().map_err(|e| LakeError::Io {
            op: "write",
            path: path.clone(),
            source: e.into_error(),
        })?;
        drop(file);
        tmp.persist(&path).map_err(|e| LakeError::Io {
            op: "rename into place",
            path: path.clone(),
            source: e.error,
        })?;
        super::crash_point::passed(path.display());
        let sha256 = hasher.map(|h| hex::encode(h.finalize())).unwrap_or_default();
        Ok(Written { rows: self.rows, sha256 })
    }
}

/// Reads a Parquet file batch by batch.
pub fn read(path: &Path, batch_size: usize) -> Result<ParquetRecordBatchReader, LakeError> {
    let file = File::open(path).map_err(LakeError::io("open", path))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(batch_size).build())
        .map_err(|source| LakeError::ParquetRead { path: path.into(), source })
}

/// How many row groups a Parquet file has.
pub fn row_groups(path: &Path) -> Result<usize, LakeError> {
    let file = File::open(path).map_err(LakeError::io("open", path))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map(|b| b.metadata().num_row_groups())
        .map_err(|source| LakeError::ParquetRead { path: path.into(), source })
}

/// Reads row group `group` of a Parquet file batch by batch.
pub fn read_row_group(path: &Path, group: usize, batch_size: usize) -> Result<ParquetRecordBatchReader, LakeError> {
    let file = File::open(path).map_err(LakeError::io("open", path))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_row_groups(vec![group]).with_batch_size(batch_size).build())
        .map_err(|source| LakeError::ParquetRead { path: path.into(), source })
}

/// Reads a Parquet file batch by batch without the columns that are null in
/// every row, by its footer's statistics (a column without them is read):
/// what a COPY need not send. Also returns the file's whole schema.
pub fn read_non_null(path: &Path, batch_size: usize) -> Result<(SchemaRef, ParquetRecordBatchReader), LakeError> {
    let file = File::open(path).map_err(LakeError::io("open", path))?;
    let err = |source| LakeError::ParquetRead { path: path.into(), source };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(err)?;
    let schema = builder.schema().clone();
    let meta = builder.metadata().clone();
    let rows = meta.file_metadata().num_rows();
    let columns = meta.file_metadata().schema_descr();
    let all_null = |c: usize| {
        let nulls: Option<i64> = meta
            .row_groups()
            .iter()
            .map(|rg| rg.column(c).statistics().and_then(|s| s.null_count_opt()).map(|n| n as i64))
            .sum();
        rows > 0 && nulls == Some(rows)
    };
    let keep = (0..columns.num_columns()).filter(|&c| !all_null(c));
    let mask = ProjectionMask::leaves(columns, keep);
    let reader = builder.with_projection(mask).with_batch_size(batch_size).build().map_err(err)?;
    Ok((schema, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatchReader;
    use std::sync::Arc;

    #[test]
    fn text_columns_get_a_dictionary_and_numbers_and_times_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("hour", DataType::Int64, false),
            Field::new("level", DataType::Utf8, false),
        ]));
        let n = 1000;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 24))),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| if i % 2 == 0 { "free" } else { "paid" }))),
            ],
        )
        .unwrap();
        let path = dir.path().join("t.parquet");
        write_batches(&path, &schema, [&batch]).unwrap();
        let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap().metadata().clone();
        let chunk = |i: usize| meta.row_group(0).column(i).dictionary_page_offset();
        assert!(chunk(0).is_none(), "no dictionary for a number column");
        assert!(chunk(1).is_some(), "a dictionary for a text column");
        // Scratch files: for text too, but not for the columns their rows are sorted by (nearly unique ids).
        let scratch = |sorted_by: &[&str]| {
            let path = dir.path().join("s.parquet");
            let mut w = FileWriter::scratch(&path, schema.clone(), sorted_by);
            w.write(&batch).unwrap();
            w.finish().unwrap();
            let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap().metadata().clone();
            (0..2).map(|c| meta.row_group(0).column(c).dictionary_page_offset().is_some()).collect::<Vec<_>>()
        };
        assert_eq!(scratch(&[]), [false, true]);
        assert_eq!(scratch(&["hour", "level"]), [false, false]);
    }

    #[test]
    fn staging_and_scratch_keep_text_statistics_only_for_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let batch = RecordBatch::try_from_iter([
            ("ts", Arc::new(Int64Array::from(vec![1, 2])) as datafusion::arrow::array::ArrayRef),
            ("event_id", Arc::new(StringArray::from(vec!["a", "b"]))),
            ("location", Arc::new(StringArray::from(vec!["x", "y"]))),
        ])
        .unwrap();
        let schema = batch.schema();
        let with_min_max = |path: &Path| -> Vec<bool> {
            let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().metadata().clone();
            let rg = meta.row_group(0);
            (0..3).map(|c| rg.column(c).statistics().is_some_and(|s| s.min_bytes_opt().is_some())).collect()
        };
        // A lake file has every statistic (queries prune by them) and a hash.
        let lake = dir.path().join("lake.parquet");
        assert_eq!(write_batches(&lake, &schema, [&batch]).unwrap().sha256.len(), 64);
        assert_eq!(with_min_max(&lake), [true, true, true]);
        // Staging: numbers, and the text its order names (`staging::order_of`); no hash.
        let stg = dir.path().join("stg.parquet");
        let w = write_staging(&stg, staging::STG_SPARKIFY_EVENTS, &schema, [&batch]).unwrap();
        assert_eq!((w.rows, w.sha256.as_str()), (2, ""));
        assert_eq!(with_min_max(&stg), [true, true, false]);
        let other = dir.path().join("other.parquet");
        write_staging(&other, staging::STG_SPARKIFY_SONGS, &schema, [&batch]).unwrap();
        assert_eq!(with_min_max(&other), [true, false, false]);
        // Scratch: numbers, and the text it is sorted by.
        let scratch = dir.path().join("scratch.parquet");
        let mut w = FileWriter::scratch(&scratch, schema.clone(), &["ts", "location"]);
        w.write(&batch).unwrap();
        w.finish().unwrap();
        assert_eq!(with_min_max(&scratch), [true, false, true]);
    }

    #[test]
    fn the_same_rows_make_the_same_file_however_they_come_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("rare", DataType::Int64, true),
        ]));
        // Enough rows for several pages (20,000 rows at most each) and a
        // dictionary that grows as it goes; `rare` has nulls in a few rows
        // only, so most batches of it have none.
        let n = 70_000;
        let all = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 7919 % 100_003))),
                Arc::new(StringArray::from_iter((0..n).map(|i| (i % 13 != 0).then(|| format!("name {}", i % 5_000))))),
                Arc::new(Int64Array::from_iter((0..n).map(|i| (!(30_000..30_010).contains(&i)).then_some(i)))),
            ],
        )
        .unwrap();
        let cut = |sizes: &[usize]| {
            let (mut out, mut at) = (vec![], 0);
            for size in sizes.iter().cycle() {
                if at == all.num_rows() {
                    break;
                }
                let len = (*size).min(all.num_rows() - at);
                out.push(all.slice(at, len));
                at += len;
            }
            out
        };
        let whole = write_batches(&dir.path().join("whole.parquet"), &schema, [&all]).unwrap();
        for (i, sizes) in
            [vec![1], vec![1000, 24], vec![8192], vec![3, 5000, 1023, 1025], vec![69_999]].iter().enumerate()
        {
            let batches = cut(sizes);
            let written = write_batches(&dir.path().join(format!("{i}.parquet")), &schema, &batches).unwrap();
            assert_eq!((written.rows, &written.sha256), (n as u64, &whole.sha256), "batches of {sizes:?}");
        }
        let back: Vec<RecordBatch> =
            read(&dir.path().join("3.parquet"), 100_000).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(back, vec![all]);
    }

    #[test]
    fn same_rows_same_hash_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(StringArray::from(vec![Some("a"), None]))],
        )
        .unwrap();
        let a = write_batches(&dir.path().join("x/a.parquet"), &schema, [&batch]).unwrap();
        let b = write_batches(&dir.path().join("x/b.parquet"), &schema, [&batch]).unwrap();
        assert_eq!(a.rows, 2);
        assert_eq!(a.sha256, b.sha256);
        let back: Vec<RecordBatch> =
            read(&dir.path().join("x/a.parquet"), 1024).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(back, vec![batch]);
        // No temp debris is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("x")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn columns_null_in_every_row_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let batch = RecordBatch::try_from_iter_with_nullable([
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as datafusion::arrow::array::ArrayRef, false),
            ("some", Arc::new(StringArray::from(vec![Some("a"), None])), true),
            ("none", Arc::new(StringArray::from(vec![None::<&str>, None])), true),
        ])
        .unwrap();
        let schema = batch.schema();
        let names = |s: &Schema| s.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
        let path = dir.path().join("a.parquet");
        write_batches(&path, &schema, [&batch]).unwrap();
        let (whole, reader) = read_non_null(&path, 1024).unwrap();
        assert_eq!(names(&whole), ["id", "some", "none"]);
        assert_eq!(names(&reader.schema()), ["id", "some"]);
        let back: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(back, vec![batch.project(&[0, 1]).unwrap()]);
        // Without rows, nothing is known to be null: every column is read.
        let empty = dir.path().join("empty.parquet");
        write_batches(&empty, &schema, []).unwrap();
        assert_eq!(names(&read_non_null(&empty, 1024).unwrap().1.schema()), ["id", "some", "none"]);
    }
}
