//! The star's tables as Delta Lake tables, so that DuckDB, Polars, pandas,
//! Spark and Trino read a consistent version without knowing tunelake.
//!
//! `star/<table>/` is a Delta table: its `_delta_log/` says which of the
//! Parquet files beside it make each version. tunelake writes the files
//! itself ([`super::parquet`]) and commits them here through delta-rs's
//! transaction API: one commit per table and build, adding the files that
//! are new and removing those the build replaced, with partition values
//! (`year`, `month`) and statistics. The commit diffs against the table's
//! own latest version, not tunelake's ledger, so a build that crashed between
//! table commits is rolled forward by the next build.
//!
//! tunelake itself reads the files its ledger names ([`super::manifest`]);
//! the ledger records each table's Delta version beside them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::parquet::file::statistics::Statistics;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, MetadataExt, StructType, Transaction};
use deltalake_core::protocol::{ColumnCountStat, ColumnValueStat, DeltaOperation, SaveMode, Stats};
use deltalake_core::{DeltaTableError, TableProperty};

use super::manifest::StarPart;
use super::{LakeError, Layout, fsio};

/// The partition columns of a table partitioned by month.
pub const MONTH_COLUMNS: [&str; 2] = ["year", "month"];

/// The application id of tunelake's commits: each carries the build version
/// as a Delta `txn`, which ties a Delta version to the build that made it.
pub const APP_ID: &str = "tunelake";

/// Commits between checkpoints: a reader replays at most this many JSON
/// commits, however many builds the table has seen.
const CHECKPOINT_INTERVAL: &str = "10";

/// A star table as a Delta table: its contract and whether it is partitioned by month.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    /// The contract's columns (`sql/schema/<t>.sql`), as the files hold them.
    pub schema: SchemaRef,
    pub by_month: bool,
}

impl TableSpec {
    /// The table's Delta schema: the contract, plus `year` and `month` when
    /// partitioned by month and the contract lacks them. Delta keeps
    /// partition values in its log, not in the files.
    pub fn delta_schema(&self) -> Schema {
        let mut fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        if self.by_month {
            for c in MONTH_COLUMNS {
                if self.schema.field_with_name(c).is_err() {
                    fields.push(Field::new(c, DataType::Int32, false));
                }
            }
        }
        Schema::new(fields)
    }

    fn partition_columns(&self) -> Vec<String> {
        if self.by_month { MONTH_COLUMNS.iter().map(|c| c.to_string()).collect() } else { vec![] }
    }
}

/// What one table's commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableCommit {
    /// The table's Delta version after the commit (unchanged when nothing was to commit).
    pub version: u64,
    pub added: usize,
    pub removed: usize,
}

/// `star/<table>/`, the Delta table's root.
pub fn table_dir(layout: &Layout, table: &str) -> PathBuf {
    layout.abs(&format!("star/{table}"))
}

fn table_url(layout: &Layout, table: &str) -> Result<url::Url, LakeError> {
    let dir =
        std::path::absolute(table_dir(layout, table)).map_err(LakeError::io("resolve", table_dir(layout, table)))?;
    url::Url::from_directory_path(&dir).map_err(|()| LakeError::Io {
        op: "make a URL of",
        path: dir,
        source: std::io::Error::other("not an absolute path"),
    })
}

fn delta_err(table: &str, what: &'static str) -> impl FnOnce(DeltaTableError) -> LakeError {
    let table = table.to_string();
    move |source| LakeError::Delta { table, what, source: Box::new(source) }
}

/// Commits `parts` as the latest version of each table in `stages`: the
/// tables of a stage at once, each stage once the one before is committed
/// (the caller puts dimensions before facts, so that a reader never sees a
/// play whose dimension rows are missing). `build` is the tunelake build
/// version the commits carry. Every file must already be durable. Every
/// table's log is read at once first: only the writes wait for a stage.
pub async fn commit_star(
    layout: &Layout,
    stages: &[Vec<TableSpec>],
    parts: &BTreeMap<String, Vec<StarPart>>,
    build: u64,
) -> Result<BTreeMap<String, TableCommit>, LakeError> {
    let parts_of = |spec: &TableSpec| parts.get(&spec.name).map_or(&[][..], Vec::as_slice);
    let specs: Vec<&TableSpec> = stages.iter().flatten().collect();
    let prepared =
        futures::future::try_join_all(specs.iter().map(|spec| prepare(layout, spec, parts_of(spec)))).await?;
    let mut prepared: HashMap<&str, Prepared> = specs.iter().map(|s| s.name.as_str()).zip(prepared).collect();
    let mut out = BTreeMap::new();
    for stage in stages {
        let commits = stage.iter().map(|spec| {
            let next = prepared.remove(spec.name.as_str()).expect("every table prepared");
            finish(layout, spec, next, build)
        });
        let done = futures::future::try_join_all(commits).await?;
        out.extend(stage.iter().map(|s| s.name.clone()).zip(done));
    }
    Ok(out)
}

/// Commits one table: creates it with `parts` when it has no log yet, else
/// adds what its latest version lacks and removes what `parts` no longer names.
pub async fn commit_table(
    layout: &Layout,
    spec: &TableSpec,
    parts: &[StarPart],
    build: u64,
) -> Result<TableCommit, LakeError> {
    let next = prepare(layout, spec, parts).await?;
    finish(layout, spec, next, build).await
}

/// A table's next commit, worked out from its log.
enum Prepared {
    /// No log yet: the table is created with these files.
    Create(Vec<Add>),
    /// The latest version already holds exactly the parts.
    Same(TableCommit),
    /// What to commit over the table's latest version.
    Next { table: deltalake_core::DeltaTable, actions: Vec<Action>, added: usize, removed: usize },
}

/// Reads table `spec`'s log and works out what its next version adds and
/// removes to hold exactly `parts`.
async fn prepare(layout: &Layout, spec: &TableSpec, parts: &[StarPart]) -> Result<Prepared, LakeError> {
    let name = spec.name.as_str();
    let prefix = format!("star/{name}/");
    let rel = |p: &StarPart| p.path.strip_prefix(&prefix).unwrap_or(&p.path).to_string();
    // A table with no rows yet (no podcasts in Sparkify logs) has no folder but is a table all the same.
    let dir = table_dir(layout, name);
    std::fs::create_dir_all(&dir).map_err(LakeError::io("create", &dir))?;
    if latest_version(layout, name)?.is_none() {
        let adds = parts.iter().map(|p| add_action(layout, spec, p, rel(p))).collect::<Result<Vec<_>, _>>()?;
        return Ok(Prepared::Create(adds));
    }
    let table = deltalake_core::open_table(table_url(layout, name)?).await.map_err(delta_err(name, "opening"))?;
    let snapshot = table.snapshot().map_err(delta_err(name, "reading the log"))?;
    let wanted: HashSet<String> = parts.iter().map(rel).collect();
    let mut current = HashSet::new();
    let mut actions = vec![];
    for file in snapshot.log_data().iter() {
        let path = file.path().to_string();
        if !wanted.contains(&path) {
            actions.push(Action::Remove(file.remove_action(true)));
        }
        current.insert(path);
    }
    let removed = actions.len();
    for p in parts.iter().filter(|p| !current.contains(&rel(p))) {
        actions.push(Action::Add(add_action(layout, spec, p, rel(p))?));
    }
    let added = actions.len() - removed;
    // A release whose contract gained a column commits the new schema with the files that hold it.
    let wanted: StructType = (&spec.delta_schema())
        .try_into_kernel()
        .map_err(|e| delta_err(name, "converting the schema")(DeltaTableError::from(e)))?;
    if *snapshot.schema() != wanted {
        let metadata = snapshot
            .metadata()
            .clone()
            .with_schema(&wanted)
            .map_err(|e| delta_err(name, "changing the schema")(DeltaTableError::from(e)))?;
        actions.push(Action::Metadata(metadata));
    }
    if actions.is_empty() {
        return Ok(Prepared::Same(TableCommit { version: snapshot.version(), added, removed }));
    }
    Ok(Prepared::Next { table, actions, added, removed })
}

/// Writes a prepared commit of table `spec`, carrying build version `build`, and makes it durable.
async fn finish(layout: &Layout, spec: &TableSpec, next: Prepared, build: u64) -> Result<TableCommit, LakeError> {
    let name = spec.name.as_str();
    let props = CommitProperties::default().with_application_transaction(Transaction::new(APP_ID, build as i64));
    let (table, actions, added, removed) = match next {
        Prepared::Create(adds) => return create_table(layout, spec, &table_url(layout, name)?, adds, props).await,
        Prepared::Same(commit) => return Ok(commit),
        Prepared::Next { table, actions, added, removed } => (table, actions, added, removed),
    };
    let snapshot = table.snapshot().map_err(delta_err(name, "reading the log"))?;
    // Expired commit files are looked for when a checkpoint is written, as
    // Spark does, not in every commit (each look lists the whole log).
    let at_checkpoint = (snapshot.version() + 1) % CHECKPOINT_INTERVAL.parse::<u64>().expect("a number") == 0;
    let props = props.with_cleanup_expired_logs((!at_checkpoint).then_some(false));
    let operation = DeltaOperation::Write {
        mode: if removed > 0 { SaveMode::Overwrite } else { SaveMode::Append },
        partition_by: spec.by_month.then(|| spec.partition_columns()),
        predicate: None,
    };
    let version = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(delta_err(name, "committing"))?
        .version();
    sync_commit(layout, name, version)?;
    Ok(TableCommit { version, added, removed })
}

/// A table's first commit: its schema, partition columns, checkpoint
/// interval, and the files of its first version.
async fn create_table(
    layout: &Layout,
    spec: &TableSpec,
    url: &url::Url,
    adds: Vec<Add>,
    props: CommitProperties,
) -> Result<TableCommit, LakeError> {
    let name = spec.name.as_str();
    let added = adds.len();
    let delta_schema: StructType = (&spec.delta_schema())
        .try_into_kernel()
        .map_err(|e| delta_err(name, "converting the schema")(DeltaTableError::from(e)))?;
    let created = deltalake_core::operations::create::CreateBuilder::new()
        .with_location(url.as_str())
        .with_table_name(name)
        .with_columns(delta_schema.fields().cloned())
        .with_partition_columns(spec.partition_columns())
        .with_configuration_property(TableProperty::CheckpointInterval, Some(CHECKPOINT_INTERVAL))
        .with_commit_properties(props)
        .with_actions(adds.into_iter().map(Action::Add))
        .await
        .map_err(delta_err(name, "creating the table"))?;
    let version = created.version().unwrap_or(0);
    sync_commit(layout, name, version)?;
    Ok(TableCommit { version, added, removed: 0 })
}

/// Makes a table's commit file durable before tunelake's ledger names its version.
fn sync_commit(layout: &Layout, table: &str, version: u64) -> Result<(), LakeError> {
    let log = format!("star/{table}/_delta_log/{version:020}.json");
    fsio::sync_files(layout.root(), [log.as_str()])
}

/// The Delta `add` action of a part: its path relative to the table, its
/// partition values, size, time and statistics.
fn add_action(layout: &Layout, spec: &TableSpec, part: &StarPart, rel: String) -> Result<Add, LakeError> {
    let path = layout.abs(&part.path);
    let meta = std::fs::metadata(&path).map_err(LakeError::io("stat", &path))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    let partition_values = match (&part.partition, spec.by_month) {
        (Some(p), true) => month_values(p).ok_or_else(|| LakeError::Corrupt {
            path: path.clone(),
            what: format!("partition `{p}` is not year=YYYY/month=MM"),
        })?,
        _ => HashMap::new(),
    };
    let skip: Vec<&str> = if spec.by_month { MONTH_COLUMNS.to_vec() } else { vec![] };
    Ok(Add {
        path: rel,
        partition_values,
        size: meta.len() as i64,
        modification_time: modified,
        data_change: true,
        stats: Some(file_stats(&path, part.rows, &skip)?),
        ..Default::default()
    })
}

/// `year=2018/month=11` as Delta partition values (`{"year": "2018", "month": "11"}`).
fn month_values(partition: &str) -> Option<HashMap<String, Option<String>>> {
    let mut values = HashMap::new();
    for (kv, column) in partition.split('/').zip(MONTH_COLUMNS) {
        let value: i32 = kv.strip_prefix(column)?.strip_prefix('=')?.parse().ok()?;
        values.insert(column.to_string(), Some(value.to_string()));
    }
    (values.len() == MONTH_COLUMNS.len()).then_some(values)
}

/// A file's Delta statistics from its Parquet footer: the row count, each
/// column's nulls, and the bounds of its integer columns. Strings are left
/// out (Parquet may truncate their bounds) and so are timestamps (engines
/// disagree on the text of a timestamp without zone); a reader then scans
/// the file rather than skip it wrongly.
fn file_stats(path: &std::path::Path, rows: u64, skip: &[&str]) -> Result<String, LakeError> {
    let file = std::fs::File::open(path).map_err(LakeError::io("open", path))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|source| LakeError::ParquetRead { path: path.to_path_buf(), source })?;
    let meta = reader.metadata();
    let mut stats = Stats { num_records: rows as i64, ..Default::default() };
    for (i, column) in meta.file_metadata().schema_descr().columns().iter().enumerate() {
        let name = column.path().string();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let mut nulls = Some(0i64);
        let mut bounds: Option<(i64, i64)> = None;
        let mut integer = true;
        for group in meta.row_groups() {
            let Some(s) = group.column(i).statistics() else {
                nulls = None;
                integer = false;
                continue;
            };
            nulls = nulls.zip(s.null_count_opt()).map(|(a, b)| a + b as i64);
            let range = match s {
                Statistics::Int32(v) => v.min_opt().zip(v.max_opt()).map(|(a, b)| (*a as i64, *b as i64)),
                Statistics::Int64(v) => v.min_opt().zip(v.max_opt()).map(|(a, b)| (*a, *b)),
                _ => {
                    integer = false;
                    None
                }
            };
            if let Some((lo, hi)) = range {
                bounds = Some(bounds.map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi))));
            } else if group.num_rows() > s.null_count_opt().unwrap_or(0) as i64 {
                // A group with values but no bounds: no bounds for the file.
                integer = false;
            }
        }
        let timestamp = column
            .logical_type_ref()
            .is_some_and(|t| matches!(t, datafusion::parquet::basic::LogicalType::Timestamp { .. }))
            || column.converted_type() == datafusion::parquet::basic::ConvertedType::TIMESTAMP_MICROS;
        if let Some(n) = nulls {
            stats.null_count.insert(name.clone(), ColumnCountStat::Value(n));
        }
        if let (true, false, Some((lo, hi))) = (integer, timestamp, bounds) {
            stats.min_values.insert(name.clone(), ColumnValueStat::Value(lo.into()));
            stats.max_values.insert(name, ColumnValueStat::Value(hi.into()));
        }
    }
    Ok(serde_json::to_string(&stats).expect("stats serialize"))
}

/// The latest version of table `name`'s Delta log, from the names of its
/// commit files alone (None without a log): cheap enough for every build.
pub fn latest_version(layout: &Layout, name: &str) -> Result<Option<u64>, LakeError> {
    let log = table_dir(layout, name).join("_delta_log");
    // From the last checkpoint, the commits after it are the next versions up
    // to the first missing: a few files to look for, not a log to list.
    let checkpointed = std::fs::read(log.join("_last_checkpoint"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("version").and_then(|v| v.as_u64()));
    if let Some(mut version) = checkpointed.filter(|v| log.join(format!("{v:020}.json")).is_file()) {
        while log.join(format!("{:020}.json", version + 1)).is_file() {
            version += 1;
        }
        return Ok(Some(version));
    }
    let entries = match std::fs::read_dir(&log) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LakeError::io("list", &log)(e)),
    };
    let mut latest = None;
    for entry in entries {
        let entry = entry.map_err(LakeError::io("list", &log))?;
        let file = entry.file_name();
        let version = file.to_str().and_then(|f| f.strip_suffix(".json")).and_then(|v| v.parse::<u64>().ok());
        latest = latest.max(version);
    }
    Ok(latest)
}

/// The files a Delta reader may still need, relative to the lake root: those
/// of every star table's latest version, and those a commit removed after
/// `removed_after` (ms since the epoch; none without it), which a reader that started on an
/// earlier version may still be reading. This covers versions the ledger
/// never recorded: the commits of a build that crashed before its entry.
pub async fn live_files(layout: &Layout, removed_after: Option<i64>) -> Result<HashSet<String>, LakeError> {
    use futures::StreamExt;
    let mut live = HashSet::new();
    for name in tables(layout)? {
        if latest_version(layout, &name)?.is_none() {
            continue;
        }
        let table = deltalake_core::open_table(table_url(layout, &name)?).await.map_err(delta_err(&name, "opening"))?;
        let snapshot = table.snapshot().map_err(delta_err(&name, "reading the log"))?;
        live.extend(snapshot.log_data().iter().map(|f| format!("star/{name}/{}", f.path())));
        let Some(removed_after) = removed_after else { continue };
        let mut tombstones = snapshot.all_tombstones(table.log_store().as_ref());
        while let Some(removed) = tombstones.next().await {
            let removed = removed.map_err(delta_err(&name, "reading the removed files"))?;
            if removed.deletion_timestamp().is_none_or(|t| t > removed_after) {
                live.insert(format!("star/{name}/{}", removed.path()));
            }
        }
    }
    Ok(live)
}

/// The names of the star's Delta tables: the folders of `star/` with a `_delta_log`.
pub fn tables(layout: &Layout) -> Result<Vec<String>, LakeError> {
    let star = layout.abs("star");
    let entries = match std::fs::read_dir(&star) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(LakeError::io("list", &star)(e)),
    };
    let mut names = vec![];
    for entry in entries {
        let entry = entry.map_err(LakeError::io("list", &star))?;
        if entry.path().join("_delta_log").is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;

    #[test]
    fn stats_count_rows_and_nulls_and_bound_integers_only() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None), false),
            Field::new("month", DataType::Int32, false),
        ]));
        let batch = |ids: Vec<Option<i64>>| {
            let n = ids.len();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(vec![Some("b"); n])),
                    Arc::new(TimestampMicrosecondArray::from(vec![1_000_000; n])),
                    Arc::new(Int32Array::from(vec![11; n])),
                ],
            )
            .unwrap()
        };
        let path = dir.path().join("part.parquet");
        let written = super::super::parquet::write_batches(
            &path,
            &schema,
            [&batch(vec![Some(7), None, Some(-3)]), &batch(vec![Some(40), None])],
        )
        .unwrap();
        let stats: serde_json::Value =
            serde_json::from_str(&file_stats(&path, written.rows, &["month"]).unwrap()).unwrap();
        assert_eq!(stats["numRecords"], 5);
        assert_eq!(stats["nullCount"], serde_json::json!({"id": 2, "name": 0, "ts": 0}));
        assert_eq!(stats["minValues"], serde_json::json!({"id": -3}));
        assert_eq!(stats["maxValues"], serde_json::json!({"id": 40}));
    }

    /// Twelve builds of a one-file table: each commit replaces the file, the
    /// tenth leaves a checkpoint, and the log says which file is current.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_build_replaces_the_files_it_rewrote_and_the_log_is_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let spec = TableSpec { name: "t".into(), schema: schema.clone(), by_month: true };
        for build in 1..=12u64 {
            let ids = Int64Array::from(vec![build as i64; build as usize]);
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap();
            let rel = Layout::star_rel("t", Some("year=2024/month=02"), build);
            let written = super::super::parquet::write_batches(&layout.abs(&rel), &schema, [&batch]).unwrap();
            let part = StarPart {
                partition: Some("year=2024/month=02".into()),
                path: rel,
                rows: written.rows,
                sha256: written.sha256,
            };
            let commit = commit_table(&layout, &spec, std::slice::from_ref(&part), build).await.unwrap();
            let (added, removed) = if build == 1 { (1, 0) } else { (1, 1) };
            assert_eq!(commit, TableCommit { version: build - 1, added, removed });
            // The same parts again: nothing to commit.
            let again = commit_table(&layout, &spec, &[part], build).await.unwrap();
            assert_eq!(again, TableCommit { version: build - 1, added: 0, removed: 0 });
        }
        assert!(dir.path().join("star/t/_delta_log/00000000000000000009.checkpoint.parquet").is_file());
        assert_eq!(latest_version(&layout, "t").unwrap(), Some(11));
        let live = live_files(&layout, None).await.unwrap();
        assert_eq!(live, HashSet::from(["star/t/year=2024/month=02/part-00000012.parquet".to_string()]));
        let table = deltalake_core::open_table(table_url(&layout, "t").unwrap()).await.unwrap();
        let files: Vec<(String, Option<String>)> = table
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| (f.path().to_string(), f.partition_values_map()["month"].clone()))
            .collect();
        assert_eq!(files, [("year=2024/month=02/part-00000012.parquet".to_string(), Some("2".to_string()))]);
        let removed_within_a_day =
            live_files(&layout, Some(chrono::Utc::now().timestamp_millis() - 86_400_000)).await.unwrap();
        assert_eq!(removed_within_a_day.len(), 12, "every file removed since is kept for readers");
    }

    /// Issue 20: a release whose contract gains a nullable column commits the
    /// new schema with the first files that hold it; readers see the column.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_contract_that_gains_a_column_changes_the_table_schema() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let old = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let new = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        let part = |schema: &SchemaRef, build: u64, cols: Vec<Arc<dyn datafusion::arrow::array::Array>>| {
            let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
            let rel = Layout::star_rel("t", None, build);
            let written = super::super::parquet::write_batches(&layout.abs(&rel), schema, [&batch]).unwrap();
            StarPart { partition: None, path: rel, rows: written.rows, sha256: written.sha256 }
        };
        let first = part(&old, 1, vec![Arc::new(Int64Array::from(vec![1]))]);
        let spec = |schema: &SchemaRef| TableSpec { name: "t".into(), schema: schema.clone(), by_month: false };
        commit_table(&layout, &spec(&old), &[first], 1).await.unwrap();
        let second =
            part(&new, 2, vec![Arc::new(Int64Array::from(vec![2])), Arc::new(StringArray::from(vec![Some("n")]))]);
        let commit = commit_table(&layout, &spec(&new), std::slice::from_ref(&second), 2).await.unwrap();
        assert_eq!(commit, TableCommit { version: 1, added: 1, removed: 1 });
        let table = deltalake_core::open_table(table_url(&layout, "t").unwrap()).await.unwrap();
        let names: Vec<String> = table.snapshot().unwrap().schema().fields().map(|f| f.name().to_string()).collect();
        assert_eq!(names, ["id", "note"]);
        // The same schema again: no metadata change, nothing to commit.
        assert_eq!(commit_table(&layout, &spec(&new), &[second], 2).await.unwrap().version, 1);
    }

    #[test]
    fn month_partitions_become_delta_partition_values() {
        let v = month_values("year=2018/month=03").unwrap();
        assert_eq!(v.get("year"), Some(&Some("2018".to_string())));
        assert_eq!(v.get("month"), Some(&Some("3".to_string())));
        assert!(month_values("layer=00000004").is_none());
        assert!(month_values("year=2018").is_none());
    }
}
