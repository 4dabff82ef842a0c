//! `tunelake build`: staging → star, a slice of months at a time.
//!
//! 1. Global helpers (`sql::GLOBAL_HELPERS`: the song catalogue, export track
//!    URIs) are computed once over all of staging.
//! 2. The months to compute are planned (`plan.rs`): all of them on a first
//!    build, a model change, a reprocess or new staging whose effect reaches
//!    every month; otherwise only the months new staging files fall in. A
//!    month not recomputed keeps its files.
//! 3. Each slice of those months (consecutive months up to
//!    [`BuildOptions::slice_rows`] staging rows) registers staging restricted
//!    to its time range (plus `plan::MARGIN_US` each side, for the duplicate
//!    checks that look a few minutes around a play), computes the slice
//!    helpers (the plays in two halves by time, one per core), and writes
//!    the monthly star tables and the kept helpers, by month, while a second
//!    task writes the monthly summaries that read the slice helpers. Staging
//!    that is in time order (`staging::order_of`) is read as one sorted
//!    stream, so the plays are never sorted. Memory follows the slice, not
//!    the history.
//! 4. When a sync loads the star tables as they are written (`tunelake
//!    run`), the monthly summaries that read staging alone come after the
//!    last slice instead, two slices at once: by then the monthly star
//!    tables are complete, and the sync builds their indexes meanwhile.
//! 5. The dimensions run once, over the monthly summaries of every month,
//!    in two lanes at once (the users beside the tracks and artists: models
//!    that read nothing of each other's, `globals.rs`). The tracks,
//!    artists and bridge dimensions (and the summary of unmatched tracks)
//!    usually only gain the rows of new keys, as one more file beside the
//!    ones they have (`layer.rs`).
//!
//! Every table is written by `write.rs`: checked against its
//! `sql/schema/<t>.sql` contract, and a partition whose bytes equal the
//! previous version's is not kept twice (the new version points at the old
//! file, and sync sees an unchanged hash).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Float64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::common::ScalarValue;
use datafusion::prelude::{DataFrame, SessionContext, col, lit};
use futures::StreamExt;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use super::globals::{GlobalInputs, build_globals, global_lanes};
use super::plan::{MARGIN_US, Month, Plan, STAGING, Span, month_of, month_start, next_month, partition_of, plan};
use super::write::{Target, write_table};
use super::{
    ModelError, execute, files_provider, log_metrics, register_lake_files, register_parts, replace_table, run_sql,
    session, session_copy, sorted_files_provider, sql_err,
};
use crate::lake::events::{PartHook, StarEvent};
use crate::lake::manifest::{Run, RunKind, StarPart, StarVersion, now_rfc3339};
use crate::lake::parquet::FileWriter;
use crate::lake::stats::{BuildStats, RunStats};
use crate::lake::{Layout, Manifest, staging};
use crate::progress;
use crate::sql::{GLOBAL_HELPERS, SLICE_HELPERS, STAR_SUMMARIES, STAR_TABLES, SUMMARIES, SqlFile, StarTable, reads};

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Largest difference in seconds between a play's length and a song's duration that still matches.
    pub duration_tolerance_s: f64,
    pub memory_limit: usize,
    /// Rebuild every month even when staging and the model are unchanged since the last build.
    pub force: bool,
    /// Staging rows one slice of months may hold (a single month larger than this is still one slice).
    pub slice_rows: u64,
    /// Staging rows from which a slice's plays are computed in two halves by
    /// time at once, one per core (`SliceHelper::halves_by`).
    pub halves_rows: u64,
    /// Staging rows up to which a slice's helpers (the plays, the matches)
    /// are held in memory instead of written to scratch files and read back.
    pub helpers_in_memory_rows: u64,
    /// Called with each month file of a star table as soon as it is written,
    /// and with each monthly star table once all of it is
    /// (`tunelake run` hands them to a sync that is already loading).
    pub on_star_part: Option<PartHook>,
}

/// Staging rows per slice when a sync takes the month files as the build
/// writes them (`tunelake run` into empty tables): the first months reach
/// PostgreSQL after the first slice, not at the end of the only one. A
/// build alone is faster in fewer slices, so only a loading build uses it.
pub const LOADING_SLICE_ROWS: u64 = 350_000;

/// Staging rows up to which a slice's helpers stay in memory
/// ([`BuildOptions::helpers_in_memory_rows`]): `run`'s slices
/// ([`LOADING_SLICE_ROWS`]) and the slices of an everyday build (a day
/// recomputes its month): a scratch file costs an encode and two decodes
/// (fact_plays and the unmatched tracks read the plays), while a big slice
/// held in memory would double the build's peak, so larger slices keep the
/// files. Memory held this way is outside DataFusion's pool, so a build
/// given less than the default memory keeps the files too.
pub const HELPERS_IN_MEMORY_ROWS: u64 = 400_000;

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            duration_tolerance_s: 2.0,
            memory_limit: super::DEFAULT_MEMORY_LIMIT,
            force: false,
            slice_rows: 1_000_000,
            halves_rows: 100_000,
            helpers_in_memory_rows: HELPERS_IN_MEMORY_ROWS,
            on_star_part: None,
        }
    }
}

/// Bumped when the build's bookkeeping changes; part of the model fingerprint.
const BUILD_FORMAT: &str = "monthly-2";

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableMetrics {
    pub name: String,
    pub rows: u64,
    pub parts: usize,
    /// Parts whose content equals the previous version's and were kept as they were.
    pub parts_unchanged: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BuildMetrics {
    pub version: u64,
    /// False when the star was already built from this staging with this model.
    pub committed: bool,
    pub tables: Vec<TableMetrics>,
    pub plays: u64,
    pub matched: u64,
    /// Records that are a second sighting of a play, by kind; none becomes a fact row.
    pub duplicates: BTreeMap<String, u64>,
    /// Months with plays, and how many of them this build computed.
    pub months: usize,
    pub months_computed: usize,
    /// Why every month was computed, when it was.
    pub full_reason: Option<String>,
    /// New catalogue songs: the months computed include those whose plays they can change.
    pub catalogue_changed: bool,
    /// Dimensions that took the rows of their new keys as a layer (or had no
    /// new keys) instead of being computed again; see `model/layer.rs`.
    pub layered: Vec<String>,
    /// Slice helpers computed in two halves at once (`BuildOptions::halves_rows`), over all slices.
    pub halved: usize,
    /// Slices whose helpers stayed in memory (`BuildOptions::helpers_in_memory_rows`).
    pub in_memory: usize,
}

impl BuildMetrics {
    pub fn match_rate(&self) -> f64 {
        if self.plays == 0 { 0.0 } else { self.matched as f64 / self.plays as f64 }
    }

    pub fn rows(&self, table: &str) -> u64 {
        self.tables.iter().find(|t| t.name == table).map_or(0, |t| t.rows)
    }

    pub(super) fn from_run(run: &Run) -> Self {
        let star = run.star.as_ref().expect("a build run has a star version");
        let stats = run.stats.build().cloned().unwrap_or_default();
        BuildMetrics {
            version: star.version,
            committed: false,
            tables: STAR_TABLES
                .iter()
                .filter_map(|t| star.tables.get(t.name).map(|parts| (t.name, parts)))
                .map(|(name, parts)| TableMetrics {
                    name: name.to_string(),
                    rows: parts.iter().map(|p| p.rows).sum(),
                    parts: parts.len(),
                    parts_unchanged: parts.len(),
                })
                .collect(),
            plays: stats.plays,
            matched: stats.matched,
            months: stats.months.map_or(0, |m| m.len()),
            duplicates: stats.duplicates,
            months_computed: 0,
            full_reason: None,
            catalogue_changed: false,
            layered: vec![],
            halved: 0,
            in_memory: 0,
        }
    }
}

/// A fingerprint of everything that decides the star's rows besides staging.
fn model_hash(opts: &BuildOptions) -> String {
    let mut h = Sha256::new();
    h.update(BUILD_FORMAT.as_bytes());
    for f in crate::sql::internal_models().chain(STAR_TABLES.iter().flat_map(|t| [&t.schema, &t.model])) {
        h.update(f.name.as_bytes());
        h.update(f.text.as_bytes());
    }
    h.update(opts.duration_tolerance_s.to_le_bytes());
    hex::encode(h.finalize())
}

/// The per-month counts a build run recorded (empty before monthly builds).
fn month_stats_of(run: &Run) -> BTreeMap<String, BTreeMap<String, i64>> {
    run.stats.build().and_then(|b| b.months.clone()).unwrap_or_default()
}

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

/// Per-month counts behind the match rate and the duplicate report: (name, rows counted, their time column).
const MONTH_COUNTS: &[(&str, &str, &str)] = &[
    ("sparkify_events", "stg_sparkify_events WHERE page = 'NextSong'", "ts"),
    ("sparkify_plays", "_sparkify_plays", "ts"),
    ("sparkify_matched", "_sparkify_plays WHERE matched", "ts"),
    ("export_streams", "stg_spotify_streams", "ts"),
    ("export_unique", "_spotify_unique", "ts"),
    ("export_covered", "_spotify_streams WHERE duplicate_of IS NOT NULL", "ts"),
    ("api_rows", "stg_spotify_api_plays WHERE artist_position = 0", "played_at"),
    ("api_unique", "_spotify_api_plays", "played_at"),
    ("api_in_export", "_spotify_api_plays WHERE duplicate_of IS NOT NULL", "played_at"),
];

/// The duplicate report from the summed month counts.
fn duplicates_of(c: &BTreeMap<String, i64>) -> BTreeMap<String, u64> {
    let g = |k: &str| c.get(k).copied().unwrap_or(0);
    [
        ("sparkify: the same event in two raw files", g("sparkify_events") - g("sparkify_plays")),
        ("spotify_export: the same stream in two raw files", g("export_streams") - g("export_unique")),
        ("spotify_export: account-data rows also in extended history", g("export_covered")),
        ("spotify_api: the same play in two pages", g("api_rows") - g("api_unique")),
        ("spotify_api: plays a Spotify export also has", g("api_in_export")),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n.max(0) as u64))
    .collect()
}

fn ts_lit(micros: i64) -> datafusion::prelude::Expr {
    lit(ScalarValue::TimestampMicrosecond(Some(micros), None))
}

fn in_range(column: &str, lo: i64, hi: i64) -> datafusion::prelude::Expr {
    col(column).gt_eq(ts_lit(lo)).and(col(column).lt(ts_lit(hi)))
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
    let from = BuiltFrom { staging_run, fingerprint: model_hash(opts) };
    if !opts.force
        && let Some(metrics) = unchanged_build(layout, manifest, &from, command).await?
    {
        return Ok(metrics);
    }

    let started = now_rfc3339();
    let version = manifest.next_run_id();
    let plan = plan(layout, manifest, &from.fingerprint, opts)?;
    let computed = plan.computed();
    tracing::info!(
        months = plan.months.len(),
        computed = computed.len(),
        slices = plan.slices.len(),
        full = plan.full.as_deref().unwrap_or("no"),
        catalogue_changed = plan.catalogue_changed,
        "build plan"
    );
    let ctx = open_session(layout, manifest, opts).await?;
    let scratch = tempfile::Builder::new()
        .prefix("tunelake-build-")
        .tempdir()
        .map_err(crate::lake::LakeError::io("create a temp dir in", std::env::temp_dir()))?;
    let previous_star = manifest.star().cloned().unwrap_or_default();
    let previous = parts_by_partition(&previous_star);
    let target = Target { layout, version, previous: &previous, hook: opts.on_star_part.as_ref() };
    let job = BuildJob { target, plan: &plan, computed: &computed, previous_star: &previous_star, opts };
    let (built, metrics) = build_star(&ctx, job, manifest, scratch.path()).await?;

    let mut run = Run::new(version, RunKind::Build, command, started);
    run.star = Some(built.star);
    record_stats(&mut run, job, from, &metrics, built.month_counts);
    // The files of this version were written without an fsync of their own:
    // they are made durable, then committed to the Delta tables, then the
    // ledger entry that names both is written.
    manifest.sync_written(layout, &run)?;
    let star = run.star.as_mut().expect("set above");
    star.delta = super::publish::publish(layout, star, Some(&previous_star)).await?;
    manifest.commit_synced(layout, run)?;
    Ok(metrics)
}

/// What a build's star is computed from besides the options: the staging
/// run it reads and the model's fingerprint ([`model_hash`]).
struct BuiltFrom {
    staging_run: u64,
    fingerprint: String,
}

/// The last build's metrics when it was built from the same staging with
/// the same model, or those of publishing its star again when the Delta
/// tables are out of step with it; None when the star is to be built.
async fn unchanged_build(
    layout: &Layout,
    manifest: &mut Manifest,
    from: &BuiltFrom,
    command: &str,
) -> Result<Option<BuildMetrics>, ModelError> {
    let Some(last) = manifest.last_build() else { return Ok(None) };
    let built = last.stats.build();
    let same_staging = built.map(|b| b.staging_run) == Some(from.staging_run);
    let same_model = built.map(|b| b.model_hash.as_str()) == Some(from.fingerprint.as_str());
    if !(same_staging && same_model) {
        return Ok(None);
    }
    if super::publish::out_of_step(layout, last.star.as_ref().expect("a build has a star"))? {
        return super::publish::republish(layout, manifest, command).await.map(Some);
    }
    Ok(Some(BuildMetrics::from_run(last)))
}

/// The build's session: every staging file registered, and the
/// parameters of the models as the one-row table `tl_params`.
async fn open_session(layout: &Layout, manifest: &Manifest, opts: &BuildOptions) -> Result<SessionContext, ModelError> {
    let ctx = session(opts.memory_limit).map_err(sql_err("session", "setup"))?;
    // One partition: every model picks rows with lag() over a total order.
    // Two partitions everywhere were faster, but twice the sorters, each
    // holding its merge reservation, ran a big Spotify history out of the
    // build's memory where one partition fits in a third of it. Only
    // `_sparkify_matches`, an aggregate over every event, runs in two
    // (`SliceHelper::partitions`); `_sparkify_plays`
    // streams staging in time order and was no faster in two (its lag()
    // merges them back into one), so it runs as two halves by time, each in
    // a session of its own (`SliceHelper::halves_by`). The monthly summaries
    // are written on another task beside the star tables (`build_slice`).
    super::set(&ctx, "datafusion.execution.target_partitions", "1").await?;
    super::set(&ctx, "datafusion.execution.sort_spill_reservation_bytes", "33554432").await?;
    for (name, schema) in staging::tables() {
        register_lake_files(&ctx, layout, name, schema, manifest.staging_files(name).iter().map(|f| f.path.as_str()))?;
    }
    let params = RecordBatch::try_from_iter([(
        "duration_tolerance_s",
        Arc::new(Float64Array::from(vec![opts.duration_tolerance_s])) as _,
    )])
    .expect("one column");
    ctx.register_batch("tl_params", params).map_err(sql_err("tl_params", "register"))?;
    Ok(ctx)
}

/// Every part of `star`, by table and partition.
fn parts_by_partition(star: &StarVersion) -> HashMap<(String, Option<String>), StarPart> {
    star.tables
        .iter()
        .flat_map(|(t, parts)| parts.iter().map(move |p| ((t.clone(), p.partition.clone()), p.clone())))
        .collect()
}

/// What every step of a build shares besides its session.
#[derive(Clone, Copy)]
struct BuildJob<'a> {
    /// Where the tables are written, beside the previous version's parts.
    target: Target<'a>,
    plan: &'a Plan,
    /// The month partitions this build computes (`Plan::computed`).
    computed: &'a BTreeSet<String>,
    previous_star: &'a StarVersion,
    opts: &'a BuildOptions,
}

/// The star a build puts together: each table's parts, how many of them
/// were kept unchanged, and each month's counts ([`MONTH_COUNTS`]).
struct NewStar {
    star: StarVersion,
    unchanged: HashMap<String, usize>,
    month_counts: BTreeMap<String, BTreeMap<String, i64>>,
}

/// Builds the star in `ctx` ([`open_session`]): the global helpers, the
/// months to compute a slice at a time, then the models over every month;
/// the star and its metrics.
async fn build_star(
    ctx: &SessionContext,
    job: BuildJob<'_>,
    manifest: &Manifest,
    scratch: &Path,
) -> Result<(NewStar, BuildMetrics), ModelError> {
    let BuildJob { target, plan, computed, opts, .. } = job;
    let previous_months = manifest.last_build().map(month_stats_of).unwrap_or_default();
    let star = StarVersion { version: target.version, tables: BTreeMap::new(), delta: BTreeMap::new() };
    let mut built = NewStar { star, unchanged: HashMap::new(), month_counts: BTreeMap::new() };
    build_global_helpers(ctx, job, &mut built).await?;
    // The schema of every monthly table, from planning alone (a table may have no rows).
    let schemas = monthly_schemas(ctx).await?;
    keep_months_not_computed(job, &schemas, previous_months, &mut built);

    let global_tables: Vec<&StarTable> = STAR_TABLES.iter().filter(|t| t.month_partition_by.is_none()).collect();
    let bar = progress::bar((plan.slices.len() + global_tables.len()) as u64, "build");
    // The monthly summaries are written in each slice, beside the star
    // tables. When a sync is loading the star tables as they are written,
    // those that read staging alone come after every slice instead: the
    // sync then builds the tables' indexes while these are computed, not
    // after the build. A build alone is faster with them beside.
    let (beside, after) = match opts.on_star_part {
        Some(_) => monthly_summaries_by_input(),
        None => (SUMMARIES.iter().map(|s| &s.monthly).collect(), vec![]),
    };
    let slices = SliceJob { plan, schemas: &schemas, scratch, summaries: &beside, opts };
    let (halved, in_memory) = build_slices(ctx, target, slices, &bar, &mut built).await?;
    finish_monthly_tables(ctx, job, &after, &mut built).await?;

    register_every_month(ctx, target.layout, manifest, &schemas, &built.star)?;
    let mut metrics = BuildMetrics {
        version: target.version,
        committed: true,
        months: plan.months.len(),
        months_computed: computed.len(),
        full_reason: plan.full.clone(),
        catalogue_changed: plan.catalogue_changed,
        halved,
        in_memory,
        ..Default::default()
    };
    metrics.layered = build_over_every_month(ctx, job, &schemas, &bar, &mut built).await?;
    bar.finish_and_clear();
    count_rows_and_plays(&mut built, &mut metrics);
    Ok((built, metrics))
}

/// Global helpers: their inputs change only in builds that compute every
/// month, or that take new catalogue songs.
async fn build_global_helpers(ctx: &SessionContext, job: BuildJob<'_>, built: &mut NewStar) -> Result<(), ModelError> {
    let BuildJob { target, plan, previous_star, .. } = job;
    for helper in GLOBAL_HELPERS {
        let file = format!("sql/model/{}.sql", helper.name);
        let df = run_sql(ctx, &file, helper.text).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let parts = match previous_star.tables.get(helper.name) {
            Some(parts) if plan.full.is_none() && !plan.catalogue_changed => {
                *built.unchanged.entry(helper.name.to_string()).or_default() += parts.len();
                parts.clone()
            }
            _ => {
                tracing::info!(helper = helper.name, "computing global helper");
                let df = run_sql(ctx, &file, &format!("SELECT * FROM ({}) ORDER BY 1, 2", helper.text)).await?;
                let (parts, same) = write_table(target.quiet(), helper.name, df, None, None).await?;
                *built.unchanged.entry(helper.name.to_string()).or_default() += same;
                parts
            }
        };
        register_parts(ctx, target.layout, helper.name, schema, &parts)?;
        built.star.tables.insert(helper.name.to_string(), parts);
    }
    Ok(())
}

/// Months not computed keep their parts and their counts.
fn keep_months_not_computed(
    job: BuildJob<'_>,
    schemas: &[(String, SchemaRef)],
    previous_months: BTreeMap<String, BTreeMap<String, i64>>,
    built: &mut NewStar,
) {
    let BuildJob { plan, computed, previous_star, .. } = job;
    if plan.full.is_none() {
        for (name, _) in schemas {
            let kept: Vec<StarPart> = previous_star
                .tables
                .get(name)
                .into_iter()
                .flatten()
                .filter(|p| p.partition.as_ref().is_some_and(|m| !computed.contains(m)))
                .cloned()
                .collect();
            *built.unchanged.entry(name.clone()).or_default() += kept.len();
            built.star.tables.insert(name.clone(), kept);
        }
        built.month_counts = previous_months.into_iter().filter(|(m, _)| !computed.contains(m)).collect();
    }
}

/// Builds each slice of the months to compute ([`build_slice`]) into
/// `built`. Returns how many helpers were computed in two halves, and in
/// how many slices the helpers stayed in memory.
async fn build_slices(
    ctx: &SessionContext,
    target: Target<'_>,
    job: SliceJob<'_>,
    bar: &ProgressBar,
    built: &mut NewStar,
) -> Result<(usize, usize), ModelError> {
    let (mut halved, mut in_memory) = (0, 0);
    for (i, months) in job.plan.slices.iter().enumerate() {
        let (lo, hi) = slice_range(months);
        bar.set_message(format!("build {} to {}", partition_of(months[0]), partition_of(*months.last().unwrap())));
        let t0 = std::time::Instant::now();
        let written = build_slice(ctx, target, job, i, (lo, hi)).await?;
        halved += written.halved;
        in_memory += usize::from(written.in_memory);
        let helpers_in_memory = written.in_memory;
        for (name, (parts, same)) in written.parts {
            *built.unchanged.entry(name.clone()).or_default() += same;
            built.star.tables.entry(name).or_default().extend(parts);
        }
        built.month_counts.extend(written.counts);
        tracing::info!(
            slice = i,
            months = months.len(),
            helpers_in_memory,
            seconds = t0.elapsed().as_secs_f64(),
            "slice built"
        );
        bar.inc(1);
        trim_heap();
    }
    Ok((halved, in_memory))
}

/// Puts the parts of the monthly tables in month order, tells a loading
/// sync that the monthly star tables are complete, and writes the monthly
/// summaries that come after the slices (`after`).
async fn finish_monthly_tables(
    ctx: &SessionContext,
    job: BuildJob<'_>,
    after: &[&'static SqlFile],
    built: &mut NewStar,
) -> Result<(), ModelError> {
    let BuildJob { target, plan, opts, .. } = job;
    let (layout, version, previous) = (target.layout, target.version, target.previous);
    for parts in built.star.tables.values_mut() {
        parts.sort_by(|a, b| a.partition.cmp(&b.partition));
    }
    // The monthly star tables are done: a loading sync can build their
    // indexes while the rest of the summaries and the dimensions are computed.
    if let Some(hook) = &opts.on_star_part {
        for t in STAR_TABLES.iter().filter(|t| t.month_partition_by.is_some()) {
            let parts = built.star.tables.get(t.name).map_or(&[][..], Vec::as_slice);
            (hook.0)(StarEvent::Table { table: t.name, parts, version });
        }
    }
    for (name, (parts, same)) in summarize_slices(ctx, layout, plan, after, version, previous, opts).await? {
        *built.unchanged.entry(name.clone()).or_default() += same;
        let all = built.star.tables.entry(name).or_default();
        all.extend(parts);
        all.sort_by(|a, b| a.partition.cmp(&b.partition));
    }
    Ok(())
}

/// The models over every month read staging whole and the monthly tables from all their parts.
fn register_every_month(
    ctx: &SessionContext,
    layout: &Layout,
    manifest: &Manifest,
    schemas: &[(String, SchemaRef)],
    star: &StarVersion,
) -> Result<(), ModelError> {
    for (name, schema) in staging::tables() {
        let paths: Vec<PathBuf> = manifest.staging_files(name).iter().map(|f| layout.abs(&f.path)).collect();
        replace_table(ctx, name, files_provider(name, schema, &paths)?)?;
    }
    for (name, schema) in schemas {
        register_parts(ctx, layout, name, schema.clone(), star.tables.get(name).map_or(&[], Vec::as_slice))?;
    }
    Ok(())
}

/// The cumulative summaries and the dimensions, in lanes that read
/// nothing of each other's (`global_lanes`), one per core, each in a
/// session of its own over the same tables and memory pool. Below the
/// default memory, one lane. Returns the tables that took a layer.
async fn build_over_every_month(
    ctx: &SessionContext,
    job: BuildJob<'_>,
    schemas: &[(String, SchemaRef)],
    bar: &ProgressBar,
    built: &mut NewStar,
) -> Result<Vec<String>, ModelError> {
    let BuildJob { target, plan, computed, previous_star, opts } = job;
    let inputs = Arc::new(GlobalInputs {
        layout: target.layout.clone(),
        version: target.version,
        full: plan.full.is_some(),
        catalogue_changed: plan.catalogue_changed,
        layers: plan.layers,
        computed: computed.clone(),
        previous_star: previous_star.clone(),
        previous: target.previous.clone(),
        schemas: schemas.to_vec(),
        monthly: built.star.tables.clone(),
    });
    let lanes = global_lanes(if opts.memory_limit >= super::DEFAULT_MEMORY_LIMIT { 2 } else { 1 });
    tracing::debug!(lanes = ?lanes.iter().map(|l| l.iter().map(|m| m.name()).collect::<Vec<_>>()).collect::<Vec<_>>(), "models over every month");
    let mut tasks = vec![];
    for lane in lanes {
        let (session, inputs, bar) = (session_copy(ctx).await?, inputs.clone(), bar.clone());
        tasks.push(tokio::spawn(async move { build_globals(&session, &inputs, &lane, &bar).await }));
    }
    let mut lanes_out = vec![];
    for task in tasks {
        // Every lane finishes before any lane's error is returned: no task outlives the build.
        lanes_out.push(task.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    let mut layered = vec![];
    for out in lanes_out {
        let out = out?;
        for (name, parts, same) in out.tables {
            *built.unchanged.entry(name.clone()).or_default() += same;
            built.star.tables.insert(name, parts);
        }
        layered.extend(out.layered);
    }
    layered.sort_by_key(|t| STAR_TABLES.iter().position(|s| s.name == t));
    Ok(layered)
}

/// Each star table's rows and parts (a table without any gets an empty
/// entry), and the plays, matches and duplicates of the month counts.
fn count_rows_and_plays(built: &mut NewStar, metrics: &mut BuildMetrics) {
    for table in STAR_TABLES {
        let parts = built.star.tables.entry(table.name.to_string()).or_default();
        metrics.tables.push(TableMetrics {
            name: table.name.into(),
            rows: parts.iter().map(|p| p.rows).sum(),
            parts: parts.len(),
            parts_unchanged: built.unchanged.get(table.name).copied().unwrap_or(0),
        });
    }
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for counts in built.month_counts.values() {
        for (k, n) in counts {
            *totals.entry(k.clone()).or_default() += n;
        }
    }
    metrics.plays = totals.get("sparkify_plays").copied().unwrap_or(0).max(0) as u64;
    metrics.matched = totals.get("sparkify_matched").copied().unwrap_or(0).max(0) as u64;
    metrics.duplicates = duplicates_of(&totals);
}

/// The stats of a build run: what the next build compares (`unchanged_build`,
/// `month_stats_of`) and what `BuildMetrics::from_run` reads back.
fn record_stats(
    run: &mut Run,
    job: BuildJob<'_>,
    from: BuiltFrom,
    metrics: &BuildMetrics,
    month_counts: BTreeMap<String, BTreeMap<String, i64>>,
) {
    let (BuildJob { plan, computed, opts, .. }, BuiltFrom { staging_run, fingerprint }) = (job, from);
    run.stats = RunStats::Build(BuildStats {
        staging_run,
        model_hash: fingerprint,
        plays: metrics.plays,
        matched: metrics.matched,
        duration_tolerance_s: opts.duration_tolerance_s,
        duplicates: metrics.duplicates.clone(),
        months_computed: computed.len() as u64,
        all_months_because: plan.full.clone(),
        months: Some(month_counts),
    });
}

/// Hands the pages malloc holds free back to the system. What one slice
/// freed otherwise stays in the process, under the next slice's own peak.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's own to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The monthly tables a build keeps by month (monthly star tables, kept
/// helpers, summaries) and their schemas, found by planning each model over
/// empty stand-ins of the helpers before it.
async fn monthly_schemas(ctx: &SessionContext) -> Result<Vec<(String, SchemaRef)>, ModelError> {
    let mut out = vec![];
    for h in SLICE_HELPERS {
        let df = run_sql(ctx, &format!("sql/model/{}.sql", h.file.name), h.file.text).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        replace_table(ctx, h.file.name, files_provider(h.file.name, schema.clone(), &[])?)?;
        if h.kept.is_some() {
            out.push((h.file.name.to_string(), schema));
        }
    }
    for t in STAR_TABLES.iter().filter(|t| t.month_partition_by.is_some()) {
        let schema = super::contract_schema(t).await?;
        replace_table(ctx, t.name, files_provider(t.name, schema.clone(), &[])?)?;
        out.push((t.name.to_string(), schema));
    }
    for s in SUMMARIES.iter().map(|s| &s.monthly).chain(STAR_SUMMARIES) {
        let df = run_sql(ctx, &format!("sql/model/{}.sql", s.name), s.text).await?;
        out.push((s.name.to_string(), Arc::new(df.schema().as_arrow().clone())));
    }
    Ok(out)
}

/// The times a slice of consecutive months covers: from its first month's
/// start to the next month's after its last.
fn slice_range(months: &[Month]) -> (i64, i64) {
    let last = *months.last().expect("a slice has a month");
    (month_start(months[0]), month_start(next_month(last)))
}

/// Where to cut each staging table in two halves: by which column, at what time.
type Cuts = HashMap<&'static str, (&'static str, i64)>;

/// Registers staging restricted to the slice `lo..hi` and its margin (only
/// files that overlap it, filtered by time), in time order where its files
/// are (`staging::order_of`), so that `_sparkify_plays` need not sort.
/// Returns where to cut each table's files in two halves by time, for those
/// with at least `halves_rows` rows (`halfway`), and the rows of the files.
fn restrict_staging(
    ctx: &SessionContext,
    layout: &Layout,
    plan: &Plan,
    (lo, hi): (i64, i64),
    halves_rows: u64,
) -> Result<(Cuts, u64), ModelError> {
    let (mut cuts, mut rows) = (HashMap::new(), 0);
    for (name, schema) in staging::tables() {
        let Some(column) = STAGING.iter().find(|s| s.0 == name).and_then(|s| s.1) else { continue };
        let (from, to) = (lo - MARGIN_US, hi + MARGIN_US);
        let mut spans: Vec<_> =
            plan.spans.iter().filter(|s| s.table == name && s.last >= from && s.first < to).collect();
        // In time order, so that sorted files that do not overlap read as one
        // sorted stream (DataFusion checks their statistics, and sorts when they overlap).
        spans.sort_by(|a, b| (a.first, a.last, &a.path).cmp(&(b.first, b.last, &b.path)));
        let order = staging::order_of(name);
        let sorted = if spans.iter().all(|s| s.sorted) { order } else { &[] };
        if let Some(cut) = halfway(&spans, halves_rows) {
            cuts.insert(name, (column, cut));
        }
        rows += spans.iter().map(|s| s.rows).sum::<u64>();
        let paths: Vec<PathBuf> = spans.iter().map(|s| layout.abs(&s.path)).collect();
        let in_slice = |provider| {
            ctx.read_table(provider)
                .and_then(|df| df.filter(in_range(column, from, to)))
                .map_err(sql_err(name, "restricting to a slice"))
                .map(DataFrame::into_view)
        };
        replace_table(ctx, name, in_slice(sorted_files_provider(name, schema, &paths, sorted)?)?)?;
    }
    Ok((cuts, rows))
}

/// What one slice wrote: parts per table (with how many were unchanged) and counts per month.
struct SliceOutput {
    parts: BTreeMap<String, (Vec<StarPart>, usize)>,
    counts: BTreeMap<String, BTreeMap<String, i64>>,
    /// Helpers computed in two halves.
    halved: usize,
    /// The helpers stayed in memory.
    in_memory: bool,
}

/// What every slice of a build shares besides where it writes.
#[derive(Clone, Copy)]
struct SliceJob<'a> {
    plan: &'a Plan,
    /// The star tables' contracts.
    schemas: &'a [(String, SchemaRef)],
    /// Where helpers too big for memory go.
    scratch: &'a Path,
    /// The monthly summaries written beside the star tables.
    summaries: &'a [&'static SqlFile],
    opts: &'a BuildOptions,
}

async fn build_slice(
    ctx: &SessionContext,
    to: Target<'_>,
    job: SliceJob<'_>,
    slice: usize,
    (lo, hi): (i64, i64),
) -> Result<SliceOutput, ModelError> {
    let (layout, version, previous) = (to.layout, to.version, to.previous);
    let SliceJob { plan, schemas, scratch, summaries, opts } = job;
    let (cuts, rows) = restrict_staging(ctx, layout, plan, (lo, hi), opts.halves_rows)?;
    // Two sorters need two merge reservations: below the default memory, one.
    // And helpers held in memory are outside DataFusion's pool: below the
    // default memory, scratch files.
    let roomy = opts.memory_limit >= super::DEFAULT_MEMORY_LIMIT;
    let in_memory = roomy && rows <= opts.helpers_in_memory_rows;
    let scratch_dir = (!in_memory).then_some(scratch);
    let (scratch_files, halved) = materialize_helpers(ctx, scratch_dir, slice, &cuts, roomy).await?;
    // The monthly summaries that read the slice helpers (never a star table:
    // a test below checks): another task, on the other core, writes them
    // while this one writes the star tables and counts the months.
    let summaries = {
        let (ctx, layout, previous, summaries) = (ctx.clone(), layout.clone(), previous.clone(), summaries.to_vec());
        tokio::spawn(async move { write_summaries(&ctx, &layout, &summaries, (lo, hi), version, &previous).await })
    };
    let mut of_star = vec![];
    let star = write_star_slice(ctx, to, schemas, (lo, hi), &mut of_star).await;
    // Every task finishes before any error is returned: none outlives the build.
    let summaries = summaries.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let mut of_star_written = vec![];
    for task in of_star {
        of_star_written.push(task.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    let (star, counts) = star?;
    let mut out = SliceOutput { parts: star.into_iter().collect(), counts, halved, in_memory };
    out.parts.extend(summaries?);
    for written in of_star_written {
        out.parts.extend(written?);
    }
    for path in scratch_files {
        std::fs::remove_file(&path).map_err(crate::lake::LakeError::io("remove", path))?;
    }
    Ok(out)
}

/// What a slice's tables came to: each table's parts and how many of them
/// equal the previous version's.
type Written = Vec<(String, (Vec<StarPart>, usize))>;

/// Writes the slice's kept helpers and monthly star tables and counts its
/// months. Each summary of the star tables starts on a task of its own (in
/// `of_star`) once the last star table it reads is written, so that it runs
/// on the other core while this one goes on.
async fn write_star_slice(
    ctx: &SessionContext,
    to: Target<'_>,
    schemas: &[(String, SchemaRef)],
    (lo, hi): (i64, i64),
    of_star: &mut Vec<tokio::task::JoinHandle<Result<Written, ModelError>>>,
) -> Result<(Written, BTreeMap<String, BTreeMap<String, i64>>), ModelError> {
    let mut written = vec![];
    for h in SLICE_HELPERS {
        let Some((by, key)) = h.kept else { continue };
        let df = run_sql(ctx, h.file.name, &format!("SELECT * FROM {} ORDER BY {by}, {key}", h.file.name)).await?;
        let df = df.filter(in_range(by, lo, hi)).map_err(sql_err(h.file.name, "planning"))?;
        written.push((h.file.name.to_string(), write_table(to.quiet(), h.file.name, df, None, Some(by)).await?));
    }
    for t in STAR_TABLES {
        let Some(by) = t.month_partition_by else { continue };
        let file = format!("sql/model/{}.sql", t.name);
        let contract = schemas.iter().find(|(n, _)| n == t.name).map(|(_, s)| s.clone()).expect("planned");
        let df = run_sql(ctx, &file, t.model.text).await?;
        let df = df.filter(in_range(by, lo, hi)).map_err(sql_err(file, "planning"))?;
        let (parts, same) = write_table(to, t.name, df, Some(&contract), Some(by)).await?;
        // dim_time reads the fact rows just written, which are in time order
        // (PartitionedWriter checks), so it need not sort them.
        let paths: Vec<PathBuf> = parts.iter().map(|p| to.layout.abs(&p.path)).collect();
        replace_table(ctx, t.name, sorted_files_provider(t.name, contract, &paths, &[by])?)?;
        written.push((t.name.to_string(), (parts, same)));
        for s in STAR_SUMMARIES.iter().filter(|s| last_star_table_read(s) == Some(t.name)) {
            let (ctx, layout, previous, version) = (ctx.clone(), to.layout.clone(), to.previous.clone(), to.version);
            of_star.push(tokio::spawn(async move {
                write_summaries(&ctx, &layout, &[s], (lo, hi), version, &previous).await
            }));
        }
    }
    let t0 = std::time::Instant::now();
    let counts = count_months(ctx, lo, hi).await?;
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "month counts");
    Ok((written, counts))
}

/// The monthly star table a summary of the star tables reads last in build order.
fn last_star_table_read(summary: &SqlFile) -> Option<&'static str> {
    STAR_TABLES.iter().filter(|t| t.month_partition_by.is_some() && reads(summary.text, t.name)).map(|t| t.name).last()
}

/// Computes the slice's helpers, each into memory or, given `scratch`, a
/// scratch file; a helper with a cut in `cuts` as two halves by time.
/// Returns the scratch files and how many helpers were halved.
async fn materialize_helpers(
    ctx: &SessionContext,
    scratch: Option<&Path>,
    slice: usize,
    cuts: &HashMap<&str, (&str, i64)>,
    roomy: bool,
) -> Result<(Vec<PathBuf>, usize), ModelError> {
    let (mut scratch_files, mut halved) = (vec![], 0);
    for h in SLICE_HELPERS {
        let path = scratch.map(|dir| dir.join(format!("{}-{slice}.parquet", h.file.name)));
        ctx.deregister_table(h.file.name).map_err(sql_err(h.file.name, "deregister"))?;
        let partitions = if roomy { h.partitions } else { 1 };
        super::set(ctx, "datafusion.execution.target_partitions", &partitions.to_string()).await?;
        super::set(ctx, "datafusion.optimizer.join_reordering", if h.joins_as_written { "false" } else { "true" })
            .await?;
        let halves = h.halves_by.and_then(|t| cuts.get(t).map(|&(column, cut)| (t, column, cut))).filter(|_| roomy);
        let paths = match halves {
            Some(cut) => {
                halved += 1;
                materialize_halves(ctx, &h.file, h.sorted_by, cut, path.as_deref()).await?
            }
            None => materialize(ctx, &h.file, h.sorted_by, path.as_deref()).await?,
        };
        scratch_files.extend(paths);
        super::set(ctx, "datafusion.execution.target_partitions", "1").await?;
        super::set(ctx, "datafusion.optimizer.join_reordering", "true").await?;
    }
    Ok((scratch_files, halved))
}

/// The monthly summaries that read a slice helper (computed in each slice),
/// and those that read staging alone (computed after the slices).
fn monthly_summaries_by_input() -> (Vec<&'static SqlFile>, Vec<&'static SqlFile>) {
    SUMMARIES.iter().map(|s| &s.monthly).partition(|s| SLICE_HELPERS.iter().any(|h| reads(s.text, h.file.name)))
}

/// Writes the monthly `summaries` of the months in `lo..hi`.
async fn write_summaries(
    ctx: &SessionContext,
    layout: &Layout,
    summaries: &[&SqlFile],
    (lo, hi): (i64, i64),
    version: u64,
    previous: &HashMap<(String, Option<String>), StarPart>,
) -> Result<Vec<(String, (Vec<StarPart>, usize))>, ModelError> {
    let mut written = vec![];
    for s in summaries {
        let file = format!("sql/model/{}.sql", s.name);
        let df = run_sql(ctx, &file, s.text).await?;
        let df = df.filter(in_range("month", lo, hi)).map_err(sql_err(file, "planning"))?;
        written.push((
            s.name.to_string(),
            write_table(Target { layout, version, previous, hook: None }, s.name, df, None, Some("month")).await?,
        ));
    }
    Ok(written)
}

/// Writes the monthly `summaries` that read staging alone, after the star
/// tables: each slice's in a session of its own with staging restricted to
/// it, two slices at once (one per core) when memory is roomy.
async fn summarize_slices(
    ctx: &SessionContext,
    layout: &Layout,
    plan: &Plan,
    summaries: &[&'static SqlFile],
    version: u64,
    previous: &HashMap<(String, Option<String>), StarPart>,
    opts: &BuildOptions,
) -> Result<Vec<(String, (Vec<StarPart>, usize))>, ModelError> {
    let mut written = vec![];
    if summaries.is_empty() {
        return Ok(written);
    }
    let at_once = if opts.memory_limit >= super::DEFAULT_MEMORY_LIMIT { 2 } else { 1 };
    let previous = Arc::new(previous.clone());
    for slices in plan.slices.chunks(at_once) {
        let mut tasks = vec![];
        for months in slices {
            let range = slice_range(months);
            let session = session_copy(ctx).await?;
            restrict_staging(&session, layout, plan, range, u64::MAX)?;
            let (layout, previous, summaries) = (layout.clone(), previous.clone(), summaries.to_vec());
            tasks.push(tokio::spawn(async move {
                write_summaries(&session, &layout, &summaries, range, version, &previous).await
            }));
        }
        let mut results = vec![];
        for task in tasks {
            // Every task finishes before any error is returned: none outlives the build.
            results.push(task.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
        }
        for result in results {
            written.extend(result?);
        }
    }
    Ok(written)
}

/// [`MONTH_COUNTS`] for the months of `lo..hi`, by month partition.
async fn count_months(
    ctx: &SessionContext,
    lo: i64,
    hi: i64,
) -> Result<BTreeMap<String, BTreeMap<String, i64>>, ModelError> {
    let sql = MONTH_COUNTS
        .iter()
        .map(|(what, rows, t)| {
            let cond = if rows.contains(" WHERE ") { " AND" } else { " WHERE" };
            // By day since `lo` (midnight, a month's start), months in Rust:
            // date_trunc('month', ...) per row took twice as long.
            format!(
                "SELECT '{what}' AS what, (CAST({t} AS BIGINT) - {lo}) / {DAY_US} AS day, count(*) AS n \
                 FROM {rows}{cond} {t} >= to_timestamp_micros({lo}) AND {t} < to_timestamp_micros({hi}) GROUP BY 2"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let batches =
        run_sql(ctx, "month counts", &sql).await?.collect().await.map_err(sql_err("month counts", "query"))?;
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for b in batches {
        let what = cast(b.column(0), &DataType::Utf8).expect("names cast to Utf8");
        let what = what.as_string::<i32>();
        let day = cast(b.column(1), &DataType::Int64).expect("days cast to Int64");
        let day = day.as_primitive::<Int64Type>();
        let n = cast(b.column(2), &DataType::Int64).expect("counts cast to Int64");
        let n = n.as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let m = partition_of(month_of(lo + day.value(i) * DAY_US));
            *out.entry(m).or_default().entry(what.value(i).to_string()).or_default() += n.value(i);
        }
    }
    Ok(out)
}

/// Runs a helper model and registers it under its name: kept in memory, or
/// in scratch file `path`. Returns the scratch files written.
async fn materialize(
    ctx: &SessionContext,
    helper: &SqlFile,
    sorted_by: &[&str],
    path: Option<&Path>,
) -> Result<Vec<PathBuf>, ModelError> {
    let (schema, kept) = write_helper(ctx, helper, sorted_by, path).await?;
    let files = kept.file().into_iter().collect();
    register_helper(ctx, helper.name, schema, vec![kept], sorted_by)?;
    Ok(files)
}

/// Where to cut a slice's staging files (in time order) into two halves of
/// rows as equal as a cut between files makes them: the first time of a
/// file. None for a single file or fewer than `min_rows` rows.
fn halfway(spans: &[&Span], min_rows: u64) -> Option<i64> {
    let total: u64 = spans.iter().map(|s| s.rows).sum();
    if total < min_rows {
        return None;
    }
    let (mut before, mut best) = (0u64, None::<(u64, i64)>);
    for s in spans {
        let imbalance = (2 * before).abs_diff(total);
        if before > 0 && best.is_none_or(|(b, _)| imbalance < b) {
            best = Some((imbalance, s.first));
        }
        before += s.rows;
    }
    best.map(|(_, cut)| cut)
}

/// [`materialize`] in two halves at once, one per core (`SliceHelper::halves_by`):
/// each half is its own [`session_copy`] of `ctx`, in which `table` keeps
/// only its rows before `cut`, or from it, by `column`. The two files, in time order, are registered as the helper.
async fn materialize_halves(
    ctx: &SessionContext,
    helper: &'static SqlFile,
    sorted_by: &'static [&'static str],
    (table, column, cut): (&str, &str, i64),
    path: Option<&Path>,
) -> Result<Vec<PathBuf>, ModelError> {
    let mut tasks = vec![];
    for (half, keep) in [col(column).lt(ts_lit(cut)), col(column).gt_eq(ts_lit(cut))].into_iter().enumerate() {
        let session = session_copy(ctx).await?;
        let provider = ctx.table_provider(table).await.map_err(sql_err(table, "lookup"))?;
        let half_of = ctx
            .read_table(provider)
            .and_then(|df| df.filter(keep))
            .map_err(sql_err(table, "restricting to a half"))?
            .into_view();
        replace_table(&session, table, half_of)?;
        let path = path.map(|p| p.with_extension(format!("{half}.parquet")));
        tasks.push(tokio::spawn(async move { write_helper(&session, helper, sorted_by, path.as_deref()).await }));
    }
    let mut written = vec![];
    for task in tasks {
        // Both finish before either's error is returned: no task outlives the build.
        written.push(task.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    let (mut schema, mut halves) = (None, vec![]);
    for w in written {
        let (s, kept) = w?;
        schema = Some(s);
        halves.push(kept);
    }
    let files = halves.iter().filter_map(Kept::file).collect();
    register_helper(ctx, helper.name, schema.expect("two halves"), halves, sorted_by)?;
    Ok(files)
}

/// Where a slice helper's rows wait until the slice's tables are written.
enum Kept {
    File { path: PathBuf, rows: u64 },
    Memory(Vec<RecordBatch>),
}

impl Kept {
    fn file(&self) -> Option<PathBuf> {
        match self {
            Kept::File { path, .. } => Some(path.clone()),
            Kept::Memory(_) => None,
        }
    }
}

/// Registers helper `name` from its parts, in order (the halves in time
/// order): the rows in memory as one sorted partition, or the files.
fn register_helper(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    parts: Vec<Kept>,
    sorted_by: &[&str],
) -> Result<(), ModelError> {
    let (mut files, mut batches) = (vec![], vec![]);
    for part in parts {
        match part {
            // A file without rows has no statistics to show the order by (and
            // no file at all is an empty table the optimizer can see through).
            Kept::File { path, rows } if rows > 0 => files.push(path),
            Kept::File { .. } => {}
            Kept::Memory(b) => batches.extend(b),
        }
    }
    let provider = if batches.is_empty() {
        sorted_files_provider(name, schema, &files, sorted_by)?
    } else {
        let order = sorted_by.iter().map(|c| col(*c).sort(true, false)).collect();
        let table = MemTable::try_new(schema, vec![batches])
            .map_err(|source| ModelError::Register { path: name.into(), source })?;
        Arc::new(if sorted_by.is_empty() { table } else { table.with_sort_order(vec![order]) })
    };
    ctx.register_table(name, provider).map_err(|source| ModelError::Register { path: name.into(), source })?;
    Ok(())
}

/// Runs `helper` in `ctx`, whose rows come in the order of `sorted_by`, into
/// scratch file `path`, or into memory without one; its schema and rows.
async fn write_helper(
    ctx: &SessionContext,
    helper: &SqlFile,
    sorted_by: &[&str],
    path: Option<&Path>,
) -> Result<(SchemaRef, Kept), ModelError> {
    let file = format!("sql/model/{}.sql", helper.name);
    let df = run_sql(ctx, &file, helper.text).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let t0 = std::time::Instant::now();
    let (plan, mut stream) = execute(helper.name, &file, df).await?;
    let mut writer = path.map(|p| FileWriter::scratch(p, schema.clone(), sorted_by));
    let (mut batches, mut rows) = (vec![], 0);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|source| ModelError::Sql { file: file.clone(), what: "execution", source })?;
        rows += batch.num_rows() as u64;
        match &mut writer {
            Some(w) => w.write(&batch)?,
            None => batches.push(batch),
        }
    }
    let kept = match (writer, path) {
        (Some(w), Some(path)) => Kept::File { path: path.to_path_buf(), rows: w.finish()?.rows },
        _ => Kept::Memory(batches),
    };
    log_metrics(helper.name, plan.as_ref());
    let seconds = t0.elapsed().as_secs_f64();
    tracing::debug!(helper = helper.name, in_memory = path.is_none(), rows, seconds, "materialized");
    Ok((schema, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plays_are_halved_between_the_files_where_the_rows_come_out_most_even() {
        let span =
            |first: i64, rows: u64| Span { table: "t", path: String::new(), rows, first, last: first, sorted: true };
        let (a, b, c) = (span(0, 300), span(100, 100), span(200, 100));
        assert_eq!(halfway(&[&a, &b, &c], 1), Some(100), "300 | 200 rather than 400 | 100");
        let (a, b, c) = (span(0, 100), span(100, 100), span(200, 300));
        assert_eq!(halfway(&[&a, &b, &c], 1), Some(200), "200 | 300 rather than 100 | 400");
        assert_eq!(halfway(&[&a, &b, &c], 501), None, "fewer rows than asked");
        assert_eq!(halfway(&[&c], 1), None, "one file");
        let empty = span(0, 0);
        assert_eq!(halfway(&[&empty, &c], 1), None, "one file with rows");
    }

    #[test]
    fn monthly_summaries_and_month_counts_read_no_star_table() {
        assert!(reads("SELECT * FROM fact_plays f", "fact_plays"));
        assert!(reads("FROM a\nJOIN fact_plays", "fact_plays"));
        assert!(!reads("-- reads fact_plays\nSELECT 1", "fact_plays"));
        assert!(!reads("SELECT * FROM _fact_plays_all", "fact_plays"));
        assert!(reads(SUMMARIES[0].monthly.text, "_sparkify_plays"), "a summary that reads a helper is seen");
        assert!(!SLICE_HELPERS.iter().any(|h| reads(SUMMARIES[1].monthly.text, h.file.name)));
        // The users' summary reads staging alone: it is written after the slices.
        let names = |files: Vec<&SqlFile>| files.iter().map(|f| f.name).collect::<Vec<_>>();
        let (beside, after) = monthly_summaries_by_input();
        assert_eq!((names(beside), names(after)), (vec!["_sparkify_unmatched"], vec!["_users_by_month"]));
        // build_slice computes them beside the monthly star tables.
        for t in STAR_TABLES {
            for s in SUMMARIES {
                assert!(!reads(s.monthly.text, t.name), "{} reads {}", s.monthly.name, t.name);
            }
            for (what, rows, _) in MONTH_COUNTS {
                assert!(!reads(rows, t.name), "month count {what} reads {}", t.name);
            }
        }
        // A summary of the star tables starts once the last it reads is written; one that reads none would never.
        for s in STAR_SUMMARIES {
            assert!(last_star_table_read(s).is_some(), "{} reads no monthly star table", s.name);
        }
        assert_eq!(last_star_table_read(&STAR_SUMMARIES[0]), Some("fact_plays"));
    }

    /// `_sparkify_plays` streams the events in time order past the matches,
    /// even when the matches look larger to DataFusion's estimates: with
    /// its joins as written, the events are never hashed, so never sorted.
    #[tokio::test]
    async fn the_plays_stream_past_the_matches_whatever_their_estimated_sizes() {
        use datafusion::arrow::array::{BooleanArray, StringArray};
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::catalog::MemTable;
        use datafusion::logical_expr::SortExpr;
        use datafusion::physical_plan::display::DisplayableExecutionPlan;
        let helper = SLICE_HELPERS.iter().find(|h| h.file.name == "_sparkify_plays").unwrap();
        assert!(helper.joins_as_written);
        let events = staging::tables()[0].1.clone();
        let field = |n: &str| events.field_with_name(n).unwrap().clone();
        let matches_schema = Arc::new(Schema::new(vec![
            field("title_key"),
            field("artist_key"),
            field("length"),
            Field::new("matched", DataType::Boolean, false),
            Field::new("track_id", DataType::Utf8, true),
            Field::new("artist_id", DataType::Utf8, true),
            Field::new("artist_origin", DataType::Utf8, true),
        ]));
        let n: u32 = 5_000;
        let text = |p: &str| Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("{p}{i:08}")))) as _;
        let matches = RecordBatch::try_new(
            matches_schema.clone(),
            vec![
                text("title "),
                text("artist "),
                Arc::new(Float64Array::from_iter_values((0..n).map(f64::from))),
                Arc::new(BooleanArray::from(vec![true; n as usize])),
                text("track "),
                text("artist id "),
                text("catalogue "),
            ],
        )
        .unwrap();
        let order: Vec<SortExpr> =
            staging::order_of(staging::STG_SPARKIFY_EVENTS).iter().map(|c| col(*c).sort(true, false)).collect();
        for as_written in [true, false] {
            let ctx = super::super::session(super::super::DEFAULT_MEMORY_LIMIT).unwrap();
            super::super::set(&ctx, "datafusion.execution.target_partitions", "1").await.unwrap();
            let reorder = if as_written { "false" } else { "true" };
            super::super::set(&ctx, "datafusion.optimizer.join_reordering", reorder).await.unwrap();
            // A few events (in time order), many matches.
            let few = MemTable::try_new(events.clone(), vec![vec![RecordBatch::new_empty(events.clone())]])
                .unwrap()
                .with_sort_order(vec![order.clone()]);
            ctx.register_table("stg_sparkify_events", Arc::new(few)).unwrap();
            ctx.register_batch("_sparkify_matches", matches.clone()).unwrap();
            let plan = ctx.sql(helper.file.text).await.unwrap().create_physical_plan().await.unwrap();
            let shown = DisplayableExecutionPlan::new(plan.as_ref()).indent(true).to_string();
            assert_eq!(!shown.contains("SortExec"), as_written, "joins as written: {as_written}\n{shown}");
        }
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
