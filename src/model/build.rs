//! `tunelake build`: staging → star. Registers the live staging files and the
//! helper views, runs each `sql/model/<t>.sql` as a stream, checks every batch
//! against the `sql/schema/<t>.sql` contract, and writes the table as a new
//! version (by month where the table is partitioned). A partition whose bytes
//! equal the previous version's is not kept twice: the new version points at
//! the old file, and sync sees an unchanged hash and sends nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::{ModelError, register_files, register_lake_files, session};
use crate::lake::manifest::{Run, RunKind, StarPart, StarVersion, now_rfc3339};
use crate::lake::parquet::FileWriter;
use crate::lake::{Layout, Manifest, staging};
use crate::progress;
use crate::sql::{MODEL_HELPERS, STAR_TABLES, StarTable};

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Largest difference in seconds between a play's length and a song's duration that still matches.
    pub duration_tolerance_s: f64,
    pub memory_limit: usize,
    /// Rebuild even when staging and the model are unchanged since the last build.
    pub force: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { duration_tolerance_s: 2.0, memory_limit: super::DEFAULT_MEMORY_LIMIT, force: false }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TableMetrics {
    pub name: String,
    pub rows: u64,
    pub parts: usize,
    /// Parts whose content equals the previous version's and were kept as they were.
    pub parts_unchanged: usize,
}

#[derive(Debug, Clone, Default)]
pub struct BuildMetrics {
    pub version: u64,
    /// False when the star was already built from this staging with this model.
    pub committed: bool,
    pub tables: Vec<TableMetrics>,
    pub plays: u64,
    pub matched: u64,
    /// Records that are a second sighting of a play, by kind; none becomes a fact row.
    pub duplicates: BTreeMap<String, u64>,
}

impl BuildMetrics {
    pub fn match_rate(&self) -> f64 {
        if self.plays == 0 { 0.0 } else { self.matched as f64 / self.plays as f64 }
    }

    pub fn rows(&self, table: &str) -> u64 {
        self.tables.iter().find(|t| t.name == table).map_or(0, |t| t.rows)
    }

    fn from_run(run: &Run) -> Self {
        let star = run.star.as_ref().expect("a build run has a star version");
        let stat = |k: &str| run.stats.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        BuildMetrics {
            version: star.version,
            committed: false,
            tables: star
                .tables
                .iter()
                .map(|(name, parts)| TableMetrics {
                    name: name.clone(),
                    rows: parts.iter().map(|p| p.rows).sum(),
                    parts: parts.len(),
                    parts_unchanged: parts.len(),
                })
                .collect(),
            plays: stat("plays"),
            matched: stat("matched"),
            duplicates: run
                .stats
                .get("duplicates")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
        }
    }
}

/// A fingerprint of everything that decides the star's rows besides staging.
fn model_hash(opts: &BuildOptions) -> String {
    let mut h = Sha256::new();
    for f in MODEL_HELPERS.iter().chain(STAR_TABLES.iter().flat_map(|t| [&t.schema, &t.model])) {
        h.update(f.name.as_bytes());
        h.update(f.text.as_bytes());
    }
    h.update(opts.duration_tolerance_s.to_le_bytes());
    hex::encode(h.finalize())
}

pub async fn build(
    layout: &Layout,
    manifest: &mut Manifest,
    opts: &BuildOptions,
    command: &str,
) -> Result<BuildMetrics, ModelError> {
    let staging_run = manifest.staging_run();
    if staging_run == 0 {
        return Err(ModelError::NothingIngested);
    }
    let fingerprint = model_hash(opts);
    if !opts.force {
        if let Some(last) = manifest.last_build() {
            let same_staging = last.stats.get("staging_run").and_then(|v| v.as_u64()) == Some(staging_run);
            let same_model = last.stats.get("model_hash").and_then(|v| v.as_str()) == Some(fingerprint.as_str());
            if same_staging && same_model {
                return Ok(BuildMetrics::from_run(last));
            }
        }
    }

    let started = now_rfc3339();
    let version = manifest.next_run_id();
    let ctx = session(opts.memory_limit).map_err(|source| ModelError::Sql {
        file: "session".into(),
        what: "setup",
        source,
    })?;
    for (name, schema) in staging::tables() {
        register_lake_files(&ctx, layout, name, schema, manifest.staging_files(name).iter().map(|f| f.path.as_str()))?;
    }
    let params = RecordBatch::try_from_iter([(
        "duration_tolerance_s",
        Arc::new(Float64Array::from(vec![opts.duration_tolerance_s])) as _,
    )])
    .expect("one column");
    ctx.register_batch("tl_params", params).map_err(|source| ModelError::Sql {
        file: "tl_params".into(),
        what: "register",
        source,
    })?;
    // Helper tables are computed once into temp Parquet files that the star
    // models then read (each may be read several times).
    let scratch = tempfile::Builder::new()
        .prefix("tunelake-build-")
        .tempdir()
        .map_err(crate::lake::LakeError::io("create a temp dir in", std::env::temp_dir()))?;
    for helper in MODEL_HELPERS {
        tracing::info!(helper = helper.name, "computing helper table");
        materialize(&ctx, helper, &scratch.path().join(format!("{}.parquet", helper.name))).await?;
    }

    let previous: HashMap<(String, Option<String>), StarPart> = manifest
        .star()
        .map(|s| {
            s.tables
                .iter()
                .flat_map(|(t, parts)| parts.iter().map(move |p| ((t.clone(), p.partition.clone()), p.clone())))
                .collect()
        })
        .unwrap_or_default();

    // The star tables come out sorted (by month, for the partitioned writer).
    // One partition sorts with spilling and a bounded merge; with two, the
    // final merge of both sorted halves cannot spill and ran out of memory at
    // 5M events.
    for setting in [
        "SET datafusion.execution.target_partitions = 1",
        "SET datafusion.execution.sort_spill_reservation_bytes = 33554432",
    ] {
        ctx.sql(setting).await.map_err(|source| ModelError::Sql { file: "settings".into(), what: "SET", source })?;
    }
    let bar = progress::bar(STAR_TABLES.len() as u64, "build");
    let mut star = StarVersion { version, tables: BTreeMap::new() };
    let mut metrics = BuildMetrics { version, committed: true, ..Default::default() };
    for table in STAR_TABLES {
        bar.set_message(format!("build {}", table.name));
        let t0 = std::time::Instant::now();
        let (parts, tm, schema) = build_table(&ctx, layout, table, version, &previous).await?;
        tracing::info!(
            table = table.name,
            rows = tm.rows,
            files = tm.parts,
            unchanged = tm.parts_unchanged,
            seconds = t0.elapsed().as_secs_f64(),
            "built"
        );
        // Later models may read the tables built before them (dim_time reads fact_plays).
        ctx.deregister_table(table.name).map_err(|source| ModelError::Sql {
            file: table.name.into(),
            what: "deregister",
            source,
        })?;
        register_lake_files(&ctx, layout, table.name, schema, parts.iter().map(|p| p.path.as_str()))?;
        metrics.tables.push(tm);
        star.tables.insert(table.name.to_string(), parts);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let (plays, matched) = match_counts(&ctx).await?;
    metrics.plays = plays;
    metrics.matched = matched;
    metrics.duplicates = duplicate_counts(&ctx).await?;

    let mut run = Run::new(version, RunKind::Build, command, started);
    run.star = Some(star);
    run.stats.insert("staging_run".into(), staging_run.into());
    run.stats.insert("model_hash".into(), fingerprint.into());
    run.stats.insert("plays".into(), plays.into());
    run.stats.insert("matched".into(), matched.into());
    run.stats.insert("duration_tolerance_s".into(), opts.duration_tolerance_s.into());
    run.stats.insert("duplicates".into(), serde_json::to_value(&metrics.duplicates).expect("counts serialize"));
    manifest.commit(layout, run)?;
    Ok(metrics)
}

/// Runs a helper model into `path` and registers it under its name.
async fn materialize(
    ctx: &SessionContext,
    helper: &crate::sql::SqlFile,
    path: &std::path::Path,
) -> Result<(), ModelError> {
    let file = format!("sql/model/{}.sql", helper.name);
    let df = ctx.sql(helper.text).await.map_err(|source| ModelError::Sql {
        file: file.clone(),
        what: "planning",
        source,
    })?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df.execute_stream().await.map_err(|source| ModelError::Sql {
        file: file.clone(),
        what: "execution",
        source,
    })?;
    let mut writer = FileWriter::create(path, schema.clone());
    while let Some(batch) = stream.next().await {
        writer.write(&batch.map_err(|source| ModelError::Sql { file: file.clone(), what: "execution", source })?)?;
    }
    writer.finish()?;
    register_files(ctx, helper.name, schema, &[path.to_path_buf()])
}

/// The records the helpers recognised as second sightings of a play.
async fn duplicate_counts(ctx: &SessionContext) -> Result<BTreeMap<String, u64>, ModelError> {
    let checks = [
        (
            "sparkify: the same event in two raw files",
            "SELECT (SELECT count(*) FROM stg_sparkify_events WHERE page = 'NextSong') - (SELECT count(*) FROM _sparkify_plays)",
        ),
        (
            "spotify_export: the same stream in two raw files",
            "SELECT (SELECT count(*) FROM stg_spotify_streams) - (SELECT count(*) FROM _spotify_unique)",
        ),
        (
            "spotify_export: account-data rows also in extended history",
            "SELECT count(*) FROM _spotify_streams WHERE duplicate_of IS NOT NULL",
        ),
        (
            "spotify_api: the same play in two pages",
            "SELECT (SELECT count(*) FROM stg_spotify_api_plays WHERE artist_position = 0) \
             - (SELECT count(*) FROM _spotify_api_plays)",
        ),
        (
            "spotify_api: plays a Spotify export also has",
            "SELECT count(*) FROM _spotify_api_plays WHERE duplicate_of IS NOT NULL",
        ),
    ];
    let mut out = BTreeMap::new();
    for (what, sql) in checks {
        let err = |source| ModelError::Sql { file: "duplicate counts".into(), what: "query", source };
        let batches = ctx.sql(sql).await.map_err(err)?.collect().await.map_err(err)?;
        let c = cast(batches[0].column(0), &DataType::Int64).expect("counts cast to Int64");
        let n = c.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0);
        out.insert(what.to_string(), n.max(0) as u64);
    }
    Ok(out)
}

/// Sparkify plays, and those whose track came from the song catalogue.
async fn match_counts(ctx: &SessionContext) -> Result<(u64, u64), ModelError> {
    let sql = "SELECT count(*) AS plays, \
               CAST(coalesce(sum(CASE WHEN t.origin = 'song_data' THEN 1 ELSE 0 END), 0) AS BIGINT) AS matched \
               FROM fact_plays f LEFT JOIN dim_tracks t ON t.track_id = f.track_id WHERE f.source = 'sparkify'";
    let err = |source| ModelError::Sql { file: "match rate".into(), what: "query", source };
    let batches = ctx.sql(sql).await.map_err(err)?.collect().await.map_err(err)?;
    let b = &batches[0];
    let get = |i: usize| {
        let c = cast(b.column(i), &DataType::Int64).expect("counts cast to Int64");
        c.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0) as u64
    };
    Ok((get(0), get(1)))
}

async fn build_table(
    ctx: &SessionContext,
    layout: &Layout,
    table: &StarTable,
    version: u64,
    previous: &HashMap<(String, Option<String>), StarPart>,
) -> Result<(Vec<StarPart>, TableMetrics, SchemaRef), ModelError> {
    let file = format!("sql/model/{}.sql", table.name);
    let contract = super::contract_schema(table).await?;
    let df = ctx.sql(table.model.text).await.map_err(|source| ModelError::Sql {
        file: file.clone(),
        what: "planning",
        source,
    })?;
    check_schema(table.name, &contract, df.schema().as_arrow())?;
    let mut stream = df.execute_stream().await.map_err(|source| ModelError::Sql {
        file: file.clone(),
        what: "execution",
        source,
    })?;
    let partition_col = match table.month_partition_by {
        Some(c) => Some(contract.index_of(c).map_err(|_| ModelError::Contract {
            table: table.name.into(),
            problem: format!("partition column `{c}` is missing"),
        })?),
        None => None,
    };
    let mut writer = PartitionedWriter {
        layout,
        table: table.name,
        version,
        schema: contract.clone(),
        partition_col,
        current: None,
        seen: HashSet::new(),
        parts: vec![],
        unchanged: 0,
        previous,
    };
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|source| ModelError::Sql { file: file.clone(), what: "execution", source })?;
        let batch = conform(table.name, &contract, batch)?;
        writer.write(batch)?;
    }
    writer.close_current()?;
    let tm = TableMetrics {
        name: table.name.into(),
        rows: writer.parts.iter().map(|p| p.rows).sum(),
        parts: writer.parts.len(),
        parts_unchanged: writer.unchanged,
    };
    Ok((writer.parts, tm, contract))
}

fn same_family(a: &DataType, b: &DataType) -> bool {
    let string = |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
    a == b || (string(a) && string(b))
}

/// Names, order and types must match the contract (string encodings aside).
fn check_schema(table: &str, contract: &Schema, got: &Schema) -> Result<(), ModelError> {
    let problem = |p: String| ModelError::Contract { table: table.into(), problem: p };
    let want: Vec<&str> = contract.fields().iter().map(|f| f.name().as_str()).collect();
    let have: Vec<&str> = got.fields().iter().map(|f| f.name().as_str()).collect();
    if want != have {
        return Err(problem(format!("columns are [{}], the contract has [{}]", have.join(", "), want.join(", "))));
    }
    for (w, g) in contract.fields().iter().zip(got.fields()) {
        if !same_family(w.data_type(), g.data_type()) {
            return Err(problem(format!(
                "column `{}` is {}, the contract says {}",
                w.name(),
                g.data_type(),
                w.data_type()
            )));
        }
    }
    Ok(())
}

/// Casts a model batch to the contract's exact types and checks NOT NULL.
fn conform(table: &str, contract: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch, ModelError> {
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (field, col) in contract.fields().iter().zip(batch.columns()) {
        if !field.is_nullable() && col.null_count() > 0 {
            return Err(ModelError::Contract {
                table: table.into(),
                problem: format!(
                    "column `{}` is NOT NULL but the model produced {} nulls",
                    field.name(),
                    col.null_count()
                ),
            });
        }
        cols.push(if col.data_type() == field.data_type() {
            col.clone()
        } else {
            cast(col, field.data_type()).map_err(|e| ModelError::Contract {
                table: table.into(),
                problem: format!("column `{}`: {e}", field.name()),
            })?
        });
    }
    RecordBatch::try_new(contract.clone(), cols)
        .map_err(|e| ModelError::Contract { table: table.into(), problem: e.to_string() })
}

/// Writes one table's stream into one file per month partition (or one file).
struct PartitionedWriter<'a> {
    layout: &'a Layout,
    table: &'static str,
    version: u64,
    schema: SchemaRef,
    partition_col: Option<usize>,
    current: Option<(Option<String>, String, FileWriter)>,
    seen: HashSet<Option<String>>,
    parts: Vec<StarPart>,
    unchanged: usize,
    previous: &'a HashMap<(String, Option<String>), StarPart>,
}

fn month_of(micros: i64) -> (i32, u32) {
    let days = micros.div_euclid(86_400_000_000);
    let date = NaiveDate::from_num_days_from_ce_opt(days as i32 + 719_163).expect("timestamp within chrono's range");
    (date.year(), date.month())
}

impl PartitionedWriter<'_> {
    fn write(&mut self, batch: RecordBatch) -> Result<(), ModelError> {
        let Some(col) = self.partition_col else {
            return self.route(None, &batch);
        };
        let ts = batch.column(col).as_primitive::<TimestampMicrosecondType>().clone();
        let mut start = 0;
        while start < batch.num_rows() {
            let month = month_of(ts.value(start));
            let mut end = start + 1;
            while end < batch.num_rows() && month_of(ts.value(end)) == month {
                end += 1;
            }
            let partition = Layout::month_partition(month.0, month.1);
            self.route(Some(partition), &batch.slice(start, end - start))?;
            start = end;
        }
        Ok(())
    }

    fn route(&mut self, partition: Option<String>, batch: &RecordBatch) -> Result<(), ModelError> {
        if self.current.as_ref().map(|c| &c.0) != Some(&partition) {
            self.close_current()?;
            if !self.seen.insert(partition.clone()) {
                return Err(ModelError::Contract {
                    table: self.table.into(),
                    problem: format!(
                        "rows of partition {} came out of order: the model must ORDER BY its partition column",
                        partition.as_deref().unwrap_or("-")
                    ),
                });
            }
            let rel = Layout::star_rel(self.table, partition.as_deref(), self.version);
            let w = FileWriter::create(&self.layout.abs(&rel), self.schema.clone());
            self.current = Some((partition, rel, w));
        }
        let (_, _, w) = self.current.as_mut().expect("set above");
        w.write(batch)?;
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), ModelError> {
        let Some((partition, rel, w)) = self.current.take() else {
            return Ok(());
        };
        let written = w.finish()?;
        let key = (self.table.to_string(), partition.clone());
        match self.previous.get(&key) {
            Some(prev) if prev.sha256 == written.sha256 && prev.path != rel => {
                let abs = self.layout.abs(&rel);
                std::fs::remove_file(&abs).map_err(crate::lake::LakeError::io("remove", abs))?;
                self.parts.push(prev.clone());
                self.unchanged += 1;
            }
            _ => self.parts.push(StarPart { partition, path: rel, rows: written.rows, sha256: written.sha256 }),
        }
        Ok(())
    }
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
    fn every_star_table_has_a_valid_contract() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for t in STAR_TABLES {
            let s = rt.block_on(super::super::contract_schema(t)).unwrap();
            assert!(s.fields().len() > 2, "{}", t.name);
            if let Some(c) = t.month_partition_by {
                assert_eq!(s.field_with_name(c).unwrap().data_type(), &staging::ts_type(), "{}", t.name);
            }
        }
    }
}
