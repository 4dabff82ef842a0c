//! The sync itself; see the module docs of `sink` for the protocol.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

use datafusion::arrow::record_batch::{RecordBatch, RecordBatchReader};
use postgres::{Client, Transaction};

use super::loader::{Early, EarlyTable};
use super::{SinkError, copy, diff};
use crate::lake::manifest::{StarPart, now_rfc3339};
use crate::lake::stats::{RunStats, SyncStats};
use crate::lake::{LakeError, Layout, Manifest, Run, RunKind, parquet};
use crate::progress;
use crate::sql::{POSTGRES_MIGRATIONS, STAR_TABLES, StarTable};

#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Resend every partition, changed or not.
    pub full: bool,
    /// From this many rows, a load into an empty table drops its indexes and builds them once afterwards.
    pub bulk_load_rows: u64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions { full: false, bulk_load_rows: 50_000 }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncMetrics {
    pub lake_version: u64,
    pub migrations_applied: Vec<String>,
    pub parts_sent: usize,
    /// Of `parts_sent`, those sent while the build was still running ([`super::Loader`]).
    pub parts_sent_during_build: usize,
    /// Tables whose indexes were built again while the build was still running ([`super::Loader`]).
    pub tables_indexed_during_build: Vec<String>,
    pub parts_unchanged: usize,
    pub parts_removed: usize,
    pub rows_sent: u64,
    /// Rows inserted or changed, per table.
    pub rows_changed: BTreeMap<String, u64>,
    pub rows_deleted: u64,
    pub target: String,
}

const BOOKKEEPING: &str = "
CREATE TABLE IF NOT EXISTS tunelake_migrations (
    name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS tunelake_sync_parts (
    table_name TEXT NOT NULL, part TEXT NOT NULL, sha256 TEXT NOT NULL, rows BIGINT NOT NULL,
    lake_version BIGINT NOT NULL, PRIMARY KEY (table_name, part));
CREATE TABLE IF NOT EXISTS tunelake_syncs (
    id BIGSERIAL PRIMARY KEY, lake_version BIGINT NOT NULL, synced_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    parts_sent INT NOT NULL, rows_sent BIGINT NOT NULL);
";

/// Syncs the current star version into the database at `url`.
pub fn sync(layout: &Layout, manifest: &Manifest, url: &str, opts: &SyncOptions) -> Result<SyncMetrics, SinkError> {
    manifest.star().ok_or(SinkError::NothingBuilt)?;
    let (mut client, target) = connect(url)?;
    let mut tx = client.transaction().map_err(SinkError::sql("BEGIN"))?;
    let mut metrics = SyncMetrics { target, ..Default::default() };
    prepare(&mut tx, &mut metrics)?;
    sync_star(&mut tx, layout, manifest, opts, Early::default(), &mut metrics)?;
    tx.commit().map_err(SinkError::sql("COMMIT"))?;
    crate::lake::crash_point::passed("COMMIT of the sync");
    Ok(metrics)
}

/// Records a committed sync in the ledger: the lake version the database
/// now holds (what the next sync compares with) and where it went.
pub fn record(layout: &Layout, manifest: &mut Manifest, m: &SyncMetrics, command: &str) -> Result<(), LakeError> {
    let mut run = Run::new(manifest.next_run_id(), RunKind::Sync, command, now_rfc3339());
    run.stats = RunStats::Sync(SyncStats {
        lake_version: m.lake_version,
        target: m.target.clone(),
        parts_sent: m.parts_sent as u64,
        rows_sent: m.rows_sent,
    });
    manifest.commit(layout, run)
}

/// Connects to the database `conn` names (completed from the libpq
/// environment: [`super::connect`]); the client and what to call it.
pub(super) fn connect(conn: &str) -> Result<(Client, String), SinkError> {
    let db = super::connect::Database::new(conn)?;
    Ok((db.connect()?, db.target()))
}

/// Takes the sync lock and brings the database's tables up to date.
pub(super) fn prepare(tx: &mut Transaction<'_>, metrics: &mut SyncMetrics) -> Result<(), SinkError> {
    // One sync at a time per database.
    tx.execute("SELECT pg_advisory_xact_lock(7326157)", &[]).map_err(SinkError::sql("taking the sync lock"))?;
    tx.batch_execute(BOOKKEEPING).map_err(SinkError::sql("creating tunelake's bookkeeping tables"))?;
    // What every migration was when applied, read once: a sync usually applies none.
    let recorded: HashMap<String, String> = tx
        .query("SELECT name, sha256 FROM tunelake_migrations", &[])
        .map_err(SinkError::sql("reading the migrations applied"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for table in STAR_TABLES {
        metrics.migrations_applied.extend(super::schema::migrate(tx, table, &recorded)?);
    }
    for m in POSTGRES_MIGRATIONS {
        let name = format!("sql/postgres/{}.sql", m.name);
        if apply_once(tx, &name, m.text, recorded.get(&name))? {
            metrics.migrations_applied.push(name);
        }
    }
    Ok(())
}

/// Sends every star table of the manifest's current version that differs
/// from what the database holds, after what `early` already sent.
pub(super) fn sync_star(
    tx: &mut Transaction<'_>,
    layout: &Layout,
    manifest: &Manifest,
    opts: &SyncOptions,
    mut early: Early,
    metrics: &mut SyncMetrics,
) -> Result<(), SinkError> {
    let star = manifest.star().ok_or(SinkError::NothingBuilt)?;
    metrics.lake_version = star.version;
    let total: u64 = STAR_TABLES.iter().filter_map(|t| star.tables.get(t.name)).map(|p| p.len() as u64).sum();
    let bar = progress::bar(total, "sync");
    // The part files of the versions a database may hold, by content: what a partition held when it was last sent.
    let by_sha: HashMap<&str, &str> = manifest.state().parts().into_iter().collect();
    // What the database holds of every table, read once: a table's sync changes only its own rows.
    let mut synced: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    for r in tx
        .query("SELECT table_name, part, sha256 FROM tunelake_sync_parts", &[])
        .map_err(SinkError::sql("reading the sync state"))?
    {
        synced.entry(r.get(0)).or_default().insert(r.get(1), r.get(2));
    }
    for table in STAR_TABLES {
        let parts: &[StarPart] = star.tables.get(table.name).map(Vec::as_slice).unwrap_or(&[]);
        let before = early.tables.remove(table.name).unwrap_or_default();
        let sent = synced.remove(table.name).unwrap_or_default();
        let job =
            TableJob { layout, table, by_sha: &by_sha, version: star.version, opts, early: &before, bar: &bar, sent };
        sync_table(tx, &job, parts, metrics)?;
        rebuild_indexes(tx, table.name, &before.rebuild)?;
    }
    bar.finish_and_clear();
    tx.execute(
        "INSERT INTO tunelake_syncs (lake_version, parts_sent, rows_sent) VALUES ($1, $2, $3)",
        &[&(star.version as i64), &(metrics.parts_sent as i32), &(metrics.rows_sent as i64)],
    )
    .map_err(SinkError::sql("recording the sync"))?;
    Ok(())
}

/// Runs `text` unless `name` is recorded; refuses a recorded file that changed.
fn apply_once(tx: &mut Transaction<'_>, name: &str, text: &str, recorded: Option<&String>) -> Result<bool, SinkError> {
    let sha = crate::lake::sha256_hex(text.as_bytes());
    match recorded {
        Some(recorded) => {
            if *recorded != sha {
                return Err(SinkError::MigrationChanged { name: name.into(), recorded: recorded.clone(), now: sha });
            }
            Ok(false)
        }
        None => {
            tx.batch_execute(text).map_err(SinkError::sql(format!("applying {name}")))?;
            tx.execute("INSERT INTO tunelake_migrations (name, sha256) VALUES ($1, $2)", &[&name, &sha])
                .map_err(SinkError::sql(format!("recording migration {name}")))?;
            Ok(true)
        }
    }
}

pub(super) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The SQL condition selecting one partition's rows, `TRUE` for a whole table.
pub(super) fn partition_predicate(table: &StarTable, part: &str) -> String {
    let (Some(col), Some(rest)) = (table.month_partition_by, part.strip_prefix("year=")) else {
        return "TRUE".into();
    };
    let (year, month) = rest.split_once("/month=").expect("partitions are year=YYYY/month=MM");
    let (y, m): (i32, u32) = (year.parse().expect("year"), month.parse().expect("month"));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    format!("{c} >= TIMESTAMP '{y:04}-{m:02}-01' AND {c} < TIMESTAMP '{ny:04}-{nm:02}-01'", c = quote_ident(col))
}

fn primary_key(tx: &mut Transaction<'_>, table: &str) -> Result<Vec<String>, SinkError> {
    let rows = tx
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY a.attnum",
            &[&table],
        )
        .map_err(SinkError::sql(format!("{table}: reading the primary key")))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What sync sends as one: a month partition of a partitioned table, or every
/// part of an unpartitioned one (its base and its layers of new keys, whose
/// keys are disjoint, so together they are the table).
pub(super) struct Unit<'a> {
    /// The partition (`year=YYYY/month=MM`), or "" for a whole table.
    pub(super) label: String,
    /// The SQL condition selecting the unit's rows in the table.
    pub(super) pred: String,
    pub(super) parts: Vec<&'a StarPart>,
    /// The parts the database got last time: sync-state name to sha256.
    pub(super) sent: BTreeMap<String, String>,
}

/// When every part the database got is still in `unit`, unchanged: the
/// others, layers of new keys, which are all there is to send. None when a
/// part it got changed or went (or a full sync).
fn appended<'u>(unit: &Unit<'u>, full: bool) -> Option<Vec<&'u StarPart>> {
    (!full
        && !unit.sent.is_empty()
        && unit.sent.iter().all(|(k, sha)| unit.parts.iter().any(|p| &part_name(p) == k && &p.sha256 == sha)))
    .then(|| unit.parts.iter().copied().filter(|p| !unit.sent.contains_key(&part_name(p))).collect())
}

pub(super) fn part_name(p: &StarPart) -> String {
    p.partition.clone().unwrap_or_default()
}

/// What one table's sync works with, besides the transaction and the metrics.
struct TableJob<'a> {
    layout: &'a Layout,
    table: &'a StarTable,
    /// The files of the versions a database may hold, by content.
    by_sha: &'a HashMap<&'a str, &'a str>,
    version: u64,
    opts: &'a SyncOptions,
    /// What the loader sent of this table before the build was done.
    early: &'a EarlyTable,
    bar: &'a indicatif::ProgressBar,
    /// What the database got of the table last time: sync-state name to sha256.
    sent: BTreeMap<String, String>,
}

/// How one changed unit is sent.
struct UnitPlan {
    /// The unit's files in the lake.
    paths: Vec<PathBuf>,
    /// Its new layers, when only layers were added since the database got it.
    appended: Option<Vec<StarPart>>,
    /// The files the database got last time, when the lake still has them.
    before: Option<Vec<PathBuf>>,
    /// Whether the database may hold rows of the unit.
    occupied: bool,
    /// What differs from `before`, computed for an occupied unit that has it.
    difference: Option<Result<diff::Diff, SinkError>>,
}

/// The table's state during a load: its key, whether it began empty, the COPY buffer.
struct Load {
    pk: Vec<String>,
    empty: bool,
    buf: Vec<u8>,
    have_stage: bool,
}

/// Brings one table to the lake's version: partitions gone are deleted,
/// unchanged ones skipped, changed ones sent whole (where the database has
/// none of their rows), as new layers, or as the difference from the files
/// it got last time.
fn sync_table(
    tx: &mut Transaction<'_>,
    job: &TableJob<'_>,
    parts: &[StarPart],
    metrics: &mut SyncMetrics,
) -> Result<(), SinkError> {
    let name = job.table.name;
    let units = units(tx, job, parts, metrics)?;
    let unchanged = |u: &Unit| {
        !job.opts.full
            && u.sent.len() == u.parts.len()
            && u.parts.iter().all(|p| u.sent.get(&part_name(p)) == Some(&p.sha256))
    };
    let (same, changed): (Vec<Unit>, Vec<Unit>) = units.into_iter().partition(unchanged);
    let same_parts: usize = same.iter().map(|u| u.parts.len()).sum();
    // Parts sent earlier in this transaction count as sent, not as unchanged.
    metrics.parts_unchanged += same_parts - same.iter().filter(|u| job.early.sent.contains(&u.label)).count();
    job.bar.inc(same_parts as u64);
    if changed.is_empty() {
        return Ok(());
    }
    let pk = primary_key(tx, name)?;
    let rows: u64 = changed.iter().flat_map(|u| &u.parts).map(|p| p.rows).sum();
    // A table that was empty when this transaction began holds only what it sent.
    let empty = job.early.was_empty || is_empty(tx, name)?;
    // A big load into an empty table builds its indexes once afterwards, which is
    // much faster than keeping them up to date row by row.
    let rebuild = if empty && rows >= job.opts.bulk_load_rows { drop_indexes(tx, name)? } else { vec![] };
    let mut load = Load { pk, empty, buf: Vec::with_capacity(2 * COPY_CHUNK), have_stage: false };
    // Two units at a time: the differences of both are computed at once, one
    // per core, then sent in order. A difference reads both files whole
    // while PostgreSQL waits for it.
    for pair in changed.chunks(2) {
        for (unit, plan) in pair.iter().zip(plans(tx, job, &load, pair)?) {
            send_unit(tx, job, &mut load, unit, plan, metrics)?;
        }
    }
    rebuild_indexes(tx, name, &rebuild)
}

/// The table's units (a month partition each, or the whole table), after
/// deleting the partitions the lake no longer has.
fn units<'p>(
    tx: &mut Transaction<'_>,
    job: &TableJob<'_>,
    parts: &'p [StarPart],
    metrics: &mut SyncMetrics,
) -> Result<Vec<Unit<'p>>, SinkError> {
    let (table, name, synced) = (job.table, job.table.name, &job.sent);
    if table.month_partition_by.is_none() {
        return Ok(vec![Unit {
            label: String::new(),
            pred: "TRUE".into(),
            parts: parts.iter().collect(),
            sent: synced.clone(),
        }]);
    }
    let t = quote_ident(name);
    for (part, _) in synced.iter().filter(|(part, _)| !parts.iter().any(|p| &part_name(p) == *part)) {
        let n = tx
            .execute(&format!("DELETE FROM {t} WHERE {}", partition_predicate(table, part)), &[])
            .map_err(SinkError::sql(format!("{name}: removing partition {part}")))?;
        forget_parts(tx, name, &[part.as_str()])?;
        metrics.rows_deleted += n;
        metrics.parts_removed += 1;
    }
    Ok(parts
        .iter()
        .map(|p| {
            let label = part_name(p);
            Unit {
                pred: partition_predicate(table, &label),
                sent: synced.get(&label).map(|sha| (label.clone(), sha.clone())).into_iter().collect(),
                parts: vec![p],
                label,
            }
        })
        .collect())
}

/// How each unit of `pair` is sent, with the differences of both computed at once.
fn plans(
    tx: &mut Transaction<'_>,
    job: &TableJob<'_>,
    load: &Load,
    pair: &[Unit<'_>],
) -> Result<Vec<UnitPlan>, SinkError> {
    let name = job.table.name;
    let t = quote_ident(name);
    let mut plans = vec![];
    for unit in pair {
        // A table that was empty holds only the partitions this sync sent, each
        // once. Not probing it matters: its indexes are dropped for the load, and
        // each probe would scan every row sent so far.
        let (pred, label) = (&unit.pred, &unit.label);
        let occupied = job.early.sent.contains(label)
            || !load.empty
                && tx
                    .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {t} WHERE {pred})"), &[])
                    .map_err(SinkError::sql(format!("{name}: probing partition {label}")))?
                    .get::<_, bool>(0);
        let before = unit
            .sent
            .values()
            .map(|sha| job.by_sha.get(sha.as_str()).map(|rel| job.layout.abs(rel)).filter(|p| p.is_file()))
            .collect::<Option<Vec<_>>>()
            .filter(|files| !job.opts.full && !files.is_empty());
        plans.push(UnitPlan {
            paths: unit.parts.iter().map(|p| job.layout.abs(&p.path)).collect(),
            appended: appended(unit, job.opts.full).map(|ps| ps.into_iter().cloned().collect()),
            before,
            occupied,
            difference: None,
        });
    }
    let pk = &load.pk;
    let differences: Vec<Option<Result<diff::Diff, SinkError>>> = std::thread::scope(|s| {
        let running: Vec<_> = plans
            .iter()
            .map(|plan| {
                let old = plan.before.as_ref().filter(|_| plan.occupied && plan.appended.is_none())?;
                let new = &plan.paths;
                Some(s.spawn(move || diff::diff(old, new, pk, name)))
            })
            .collect();
        // Both finish before either's error is returned.
        running.into_iter().map(|h| h.map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))).collect()
    });
    for (plan, difference) in plans.iter_mut().zip(differences) {
        plan.difference = difference;
    }
    Ok(plans)
}

/// Sends one changed unit and records it.
fn send_unit(
    tx: &mut Transaction<'_>,
    job: &TableJob<'_>,
    load: &mut Load,
    unit: &Unit<'_>,
    plan: UnitPlan,
    metrics: &mut SyncMetrics,
) -> Result<(), SinkError> {
    let name = job.table.name;
    let unit_rows: u64 = unit.parts.iter().map(|p| p.rows).sum();
    tracing::info!(table = name, partition = %unit.label, parts = unit.parts.len(), rows = unit_rows, direct = !plan.occupied, "sending");
    if !plan.occupied {
        // Nothing of this partition in the database yet (a first sync): COPY straight into the table.
        send_whole(tx, &plan.paths, name, unit, job.version, metrics, &mut load.buf)?;
        job.bar.inc(unit.parts.len() as u64);
        return Ok(());
    }
    let t = quote_ident(name);
    prepare_stage(tx, &t, name, load)?;
    // Parts sent (for a table that gained layers, only those), and the rest.
    let parts_sent = plan.appended.as_ref().map_or(unit.parts.len(), Vec::len);
    metrics.parts_unchanged += unit.parts.len() - parts_sent;
    let Sent { rows: sent, columns, deleted } = match (plan.appended, plan.before.is_some()) {
        (Some(new_parts), _) => send_layers(tx, job, load, &new_parts)?,
        (None, true) => send_difference(tx, &t, name, unit, load, plan.difference)?,
        (None, false) => send_replacing(tx, &t, name, unit, load, &plan.paths)?,
    };
    let changed_rows = if columns.is_empty() { 0 } else { upsert(tx, &t, name, &columns, &load.pk, &unit.label)? };
    record_unit(tx, name, unit, job.version)?;
    metrics.parts_sent += parts_sent;
    metrics.rows_sent += sent;
    metrics.rows_deleted += deleted;
    *metrics.rows_changed.entry(name.to_string()).or_default() += changed_rows;
    job.bar.inc(unit.parts.len() as u64);
    Ok(())
}

/// What went to the staging table: rows, their columns, and rows deleted from the table.
struct Sent {
    rows: u64,
    columns: Vec<String>,
    deleted: u64,
}

/// The temp tables a unit's rows and gone keys are staged in, made once per table and emptied per unit.
fn prepare_stage(tx: &mut Transaction<'_>, t: &str, name: &str, load: &mut Load) -> Result<(), SinkError> {
    if !load.have_stage {
        let keys = load.pk.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS tl_stage; CREATE TEMP TABLE tl_stage (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DROP; \
             DROP TABLE IF EXISTS tl_gone; CREATE TEMP TABLE tl_gone ON COMMIT DROP AS SELECT {keys} FROM {t} WITH NO DATA"
        ))
        .map_err(SinkError::sql(format!("{name}: creating the staging temp tables")))?;
        load.have_stage = true;
    }
    tx.batch_execute("TRUNCATE tl_stage, tl_gone")
        .map_err(SinkError::sql(format!("{name}: TRUNCATE tl_stage, tl_gone")))
}

fn pk_match(pk: &[String]) -> String {
    pk.iter().map(|c| format!("s.{0} = t.{0}", quote_ident(c))).collect::<Vec<_>>().join(" AND ")
}

/// A table that only gained layers of new keys: the new layers' rows.
fn send_layers(
    tx: &mut Transaction<'_>,
    job: &TableJob<'_>,
    load: &mut Load,
    new_parts: &[StarPart],
) -> Result<Sent, SinkError> {
    let name = job.table.name;
    let mut sent = Sent { rows: 0, columns: vec![], deleted: 0 };
    for p in new_parts {
        tracing::info!(table = name, part = %part_name(p), rows = p.rows, "new layer");
        let (n, c) = copy_file(tx, "tl_stage", name, &job.layout.abs(&p.path), &mut load.buf)?;
        (sent.rows, sent.columns) = (sent.rows + n, c);
    }
    Ok(sent)
}

/// The rows that differ from the files the database got, and the keys gone since.
fn send_difference(
    tx: &mut Transaction<'_>,
    t: &str,
    name: &str,
    unit: &Unit<'_>,
    load: &mut Load,
    difference: Option<Result<diff::Diff, SinkError>>,
) -> Result<Sent, SinkError> {
    let d = difference.expect("an occupied unit's difference is computed with its pair")?;
    tracing::info!(table = name, partition = %unit.label, upserts = d.upsert_rows(), gone = d.gone_rows(), "difference");
    let columns = d.columns;
    // A table the lake emptied has no file to take columns from, and nothing to send.
    let rows = if d.upserts.is_empty() {
        0
    } else {
        copy_batches(tx, "tl_stage", name, &columns, d.upserts.into_iter().map(Ok), &mut load.buf)?
    };
    let mut deleted = 0;
    if !d.gone.is_empty() {
        copy_batches(tx, "tl_gone", name, &load.pk, d.gone.into_iter().map(Ok), &mut load.buf)?;
        let on = pk_match(&load.pk);
        deleted = tx
            .execute(&format!("DELETE FROM {t} t USING tl_gone s WHERE {on}"), &[])
            .map_err(SinkError::sql(format!("{name}: deleting rows the lake no longer has")))?;
    }
    Ok(Sent { rows, columns, deleted })
}

/// Every row of the unit's files, and the unit's rows not among them deleted.
fn send_replacing(
    tx: &mut Transaction<'_>,
    t: &str,
    name: &str,
    unit: &Unit<'_>,
    load: &mut Load,
    paths: &[PathBuf],
) -> Result<Sent, SinkError> {
    let mut sent = Sent { rows: 0, columns: vec![], deleted: 0 };
    for path in paths {
        let (n, c) = copy_file(tx, "tl_stage", name, path, &mut load.buf)?;
        (sent.rows, sent.columns) = (sent.rows + n, c);
    }
    let (pred, on) = (&unit.pred, pk_match(&load.pk));
    sent.deleted = tx
        .execute(&format!("DELETE FROM {t} t WHERE {pred} AND NOT EXISTS (SELECT 1 FROM tl_stage s WHERE {on})"), &[])
        .map_err(SinkError::sql(format!("{name}: deleting rows the lake no longer has")))?;
    Ok(sent)
}

/// Whether `table` holds no row (as this transaction sees it).
pub(super) fn is_empty(tx: &mut Transaction<'_>, table: &str) -> Result<bool, SinkError> {
    Ok(tx
        .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {})", quote_ident(table)), &[])
        .map_err(SinkError::sql(format!("{table}: probing")))?
        .get(0))
}

/// COPYs the files of `unit` (`paths`) straight into `table`, which holds
/// none of its rows, records the unit as sent and counts it.
pub(super) fn send_whole(
    tx: &mut Transaction<'_>,
    paths: &[PathBuf],
    table: &str,
    unit: &Unit,
    version: u64,
    metrics: &mut SyncMetrics,
    buf: &mut Vec<u8>,
) -> Result<(), SinkError> {
    for path in paths {
        let (sent, _) = copy_file(tx, &quote_ident(table), table, path, buf)?;
        metrics.rows_sent += sent;
        *metrics.rows_changed.entry(table.to_string()).or_default() += sent;
    }
    record_unit(tx, table, unit, version)?;
    metrics.parts_sent += unit.parts.len();
    Ok(())
}

/// Moves the rows staged in `tl_stage` into table `t`: new keys are
/// inserted, and rows of known keys updated where they differ.
fn upsert(
    tx: &mut Transaction<'_>,
    t: &str,
    name: &str,
    columns: &[String],
    pk: &[String],
    partition: &str,
) -> Result<u64, SinkError> {
    let collist = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let non_key: Vec<&String> = columns.iter().filter(|c| !pk.contains(c)).collect();
    let pk_list = pk.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let upsert = if non_key.is_empty() {
        format!("INSERT INTO {t} ({collist}) SELECT {collist} FROM tl_stage ON CONFLICT ({pk_list}) DO NOTHING")
    } else {
        let set = non_key.iter().map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c))).collect::<Vec<_>>().join(", ");
        let old = non_key.iter().map(|c| format!("{t}.{}", quote_ident(c))).collect::<Vec<_>>().join(", ");
        let new = non_key.iter().map(|c| format!("EXCLUDED.{}", quote_ident(c))).collect::<Vec<_>>().join(", ");
        format!(
            "INSERT INTO {t} ({collist}) SELECT {collist} FROM tl_stage ON CONFLICT ({pk_list}) \
             DO UPDATE SET {set} WHERE ({old}) IS DISTINCT FROM ({new})"
        )
    };
    tx.execute(&upsert, &[]).map_err(SinkError::sql(format!("{name}: upserting partition {partition}")))
}

/// Runs the statements [`drop_indexes`] returned for `table`.
pub(super) fn rebuild_indexes(tx: &mut Transaction<'_>, table: &str, statements: &[String]) -> Result<(), SinkError> {
    for statement in statements {
        tx.batch_execute(statement).map_err(SinkError::sql(format!("{table}: rebuilding an index: {statement}")))?;
    }
    Ok(())
}

/// Drops `table`'s indexes (its primary key included) and returns the
/// statements that recreate them. Runs inside the sync's transaction, so no
/// reader ever sees the table without them.
pub(super) fn drop_indexes(tx: &mut Transaction<'_>, table: &str) -> Result<Vec<String>, SinkError> {
    let rows = tx
        .query(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname::text, \
                    pg_get_constraintdef(c.oid) \
             FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid \
             WHERE i.indrelid = $1::text::regclass",
            &[&table],
        )
        .map_err(SinkError::sql(format!("{table}: reading its indexes")))?;
    let t = quote_ident(table);
    let mut rebuild = vec![];
    for r in rows {
        let index: String = r.get(0);
        let indexdef: String = r.get(1);
        let constraint: Option<String> = r.get(2);
        let constraintdef: Option<String> = r.get(3);
        let (drop, create) = match (constraint, constraintdef) {
            (Some(c), Some(def)) => (
                format!("ALTER TABLE {t} DROP CONSTRAINT {}", quote_ident(&c)),
                format!("ALTER TABLE {t} ADD CONSTRAINT {} {def}", quote_ident(&c)),
            ),
            _ => (format!("DROP INDEX {index}"), indexdef),
        };
        tx.batch_execute(&drop).map_err(SinkError::sql(format!("{table}: {drop}")))?;
        rebuild.push(create);
    }
    Ok(rebuild)
}

/// Sends one Parquet file with binary COPY into `target`; returns the rows
/// sent and the file's columns. Columns null in every row of the file are
/// left out of the COPY (the target's rows get NULL there all the same): a
/// month of Sparkify plays has 13 of fact_plays' 26 columns empty.
fn copy_file(
    tx: &mut Transaction<'_>,
    target: &str,
    table: &str,
    path: &std::path::Path,
    buf: &mut Vec<u8>,
) -> Result<(u64, Vec<String>), SinkError> {
    let (schema, reader) = parquet::read_non_null(path, 16 * 1024)?;
    let names = |s: &datafusion::arrow::datatypes::Schema| s.fields().iter().map(|f| f.name().clone()).collect();
    let (columns, sent): (Vec<String>, Vec<String>) = (names(&schema), names(&reader.schema()));
    let batches = reader.map(|b| b.map_err(|source| crate::lake::LakeError::ArrowRead { path: path.into(), source }));
    let rows = copy_batches(tx, target, table, &sent, batches, buf)?;
    Ok((rows, columns))
}

/// Sends `batches` (with `columns`) with binary COPY into `target`; returns the rows sent.
fn copy_batches(
    tx: &mut Transaction<'_>,
    target: &str,
    table: &str,
    columns: &[String],
    batches: impl Iterator<Item = Result<RecordBatch, crate::lake::LakeError>>,
    buf: &mut Vec<u8>,
) -> Result<u64, SinkError> {
    // The target's columns are checked against the first batch's before the COPY starts.
    let mut batches = batches.peekable();
    if let Some(Ok(first)) = batches.peek() {
        let schema = first.schema();
        let sent = datafusion::arrow::datatypes::Schema::new(
            schema.fields().iter().filter(|f| columns.contains(f.name())).cloned().collect::<Vec<_>>(),
        );
        super::schema::check_columns(table, &super::schema::columns(tx, target)?, &sent)?;
    }
    let collist = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let mut writer = tx
        .copy_in(&format!("COPY {target} ({collist}) FROM STDIN (FORMAT binary)"))
        .map_err(SinkError::sql(format!("{table}: starting COPY")))?;
    let copy_err = |source| SinkError::CopyWrite { table: table.into(), source };
    buf.clear();
    copy::header(buf).map_err(copy_err)?;
    for batch in batches {
        let batch = batch?;
        copy::check_types(table, &batch)?;
        copy::encode(&batch, buf);
        if buf.len() >= COPY_CHUNK {
            send_chunks(&mut writer, buf).map_err(copy_err)?;
        }
    }
    copy::trailer(buf).map_err(copy_err)?;
    send_chunks(&mut writer, buf).map_err(copy_err)?;
    let rows = writer.finish().map_err(SinkError::sql(format!("{table}: COPY into {target}")))?;
    crate::lake::crash_point::passed(format_args!("COPY into {target} ({table})"));
    Ok(rows)
}

/// The most COPY data handed to the connection at once. The postgres crate
/// copies each write into a buffer of that size and sends it off; below
/// glibc's mapping threshold (`cli::large_buffers_mapped`) that buffer comes
/// from the heap, where 4 MiB writes got fresh pages from the system every
/// time.
pub(super) const COPY_CHUNK: usize = 1 << 20;

/// Writes `buf` to the COPY in pieces of at most [`COPY_CHUNK`], and empties it.
fn send_chunks(writer: &mut impl Write, buf: &mut Vec<u8>) -> std::io::Result<()> {
    for piece in buf.chunks(COPY_CHUNK) {
        writer.write_all(piece)?;
    }
    buf.clear();
    Ok(())
}

/// Records that the parts of `unit` are in the database as of lake `version`,
/// and forgets the parts it sent before that the lake no longer has.
fn record_unit(tx: &mut Transaction<'_>, table: &str, unit: &Unit, version: u64) -> Result<(), SinkError> {
    let gone: Vec<&str> =
        unit.sent.keys().filter(|k| !unit.parts.iter().any(|p| &part_name(p) == *k)).map(String::as_str).collect();
    forget_parts(tx, table, &gone)?;
    for part in &unit.parts {
        if unit.sent.get(&part_name(part)) == Some(&part.sha256) {
            continue;
        }
        tx.execute(
            "INSERT INTO tunelake_sync_parts (table_name, part, sha256, rows, lake_version) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (table_name, part) DO UPDATE SET sha256 = EXCLUDED.sha256, rows = EXCLUDED.rows, \
             lake_version = EXCLUDED.lake_version",
            &[&table, &part_name(part), &part.sha256, &(part.rows as i64), &(version as i64)],
        )
        .map_err(SinkError::sql(format!("{table}: recording sync state")))?;
    }
    Ok(())
}

fn forget_parts(tx: &mut Transaction<'_>, table: &str, parts: &[&str]) -> Result<(), SinkError> {
    if parts.is_empty() {
        return Ok(());
    }
    tx.execute("DELETE FROM tunelake_sync_parts WHERE table_name = $1 AND part = ANY($2)", &[&table, &parts])
        .map_err(SinkError::sql(format!("{table}: sync state")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_never_shows_the_password() {
        let t = |conn: &str| super::super::connect::Database::new(conn).unwrap().target();
        assert_eq!(t("postgresql://me:s3cr3t-pw@db.example:6543/music"), "me@db.example:6543/music (sslmode=prefer)");
        assert!(!t("host=x password=s3cr3t-pw user=u dbname=d").contains("s3cr3t"));
    }

    #[test]
    fn month_partitions_become_time_ranges() {
        let t = crate::sql::star_table("fact_plays").unwrap();
        assert_eq!(
            partition_predicate(t, "year=2018/month=12"),
            "\"played_at\" >= TIMESTAMP '2018-12-01' AND \"played_at\" < TIMESTAMP '2019-01-01'"
        );
        assert_eq!(partition_predicate(crate::sql::star_table("dim_users").unwrap(), ""), "TRUE");
    }
}
