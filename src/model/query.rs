//! `tunelake query`: SQL over the current star version, offline. The star
//! tables are registered by name from the files the manifest names (never a
//! directory listing, so debris of a crashed build is invisible), and the
//! result is written to stdout as a table, CSV or JSON.

use std::io::Write;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{SQLOptions, SessionContext};

use super::local::{Period, Zone, register_plays};
use super::{ModelError, contract_schema, register_lake_files, session};
use crate::lake::manifest::StarVersion;
use crate::lake::{Layout, Manifest};
use crate::sql::STAR_TABLES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row (NDJSON).
    Json,
}

/// Which star version a query reads (`--as-of`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsOf {
    /// The version a build made (its run id, as `status` shows it).
    Version(u64),
    /// The version that was current at this instant.
    Time(chrono::DateTime<chrono::Utc>),
}

impl std::str::FromStr for AsOf {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(v) = s.parse::<u64>() {
            return Ok(AsOf::Version(v));
        }
        chrono::DateTime::parse_from_rfc3339(s).map(|t| AsOf::Time(t.with_timezone(&chrono::Utc))).map_err(|_| {
            format!("`{s}` is neither a build version (a number) nor an RFC 3339 time like 2026-12-01T18:00:00Z")
        })
    }
}

/// The star version `as_of` names (the current one without it). Only an
/// `as_of` reads the ledger's history; the current version is in its state.
pub fn star_version(manifest: &Manifest, as_of: Option<&AsOf>) -> Result<StarVersion, ModelError> {
    let current = manifest.star().ok_or(ModelError::NothingBuilt)?;
    let Some(as_of) = as_of else { return Ok(current.clone()) };
    let history = manifest.history()?;
    let builds = || history.iter().filter_map(|r| r.star.as_ref().map(|s| (r, s)));
    let found = match as_of {
        AsOf::Version(v) => builds().map(|(_, s)| s).rfind(|s| s.version == *v),
        AsOf::Time(t) => {
            let t = t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            builds().rfind(|(r, _)| r.finished_at <= t).map(|(_, s)| s)
        }
    };
    found.cloned().ok_or_else(|| {
        let versions: Vec<String> = builds().map(|(r, s)| format!("{} ({})", s.version, r.finished_at)).collect();
        ModelError::NoSuchVersion { asked: format!("{as_of:?}"), versions: versions.join(", ") }
    })
}

/// Where and when queries look: the zone local times are in, and the
/// period of the `plays` view ([`super::local`]).
#[derive(Debug, Clone)]
pub struct Scope {
    pub zone: Zone,
    pub period: Period,
}

impl Default for Scope {
    /// UTC, all of the history.
    fn default() -> Self {
        Scope { zone: Zone { tz: chrono_tz::Tz::UTC, from_machine: false }, period: Period::default() }
    }
}

/// A context with every star table of the current version (or the one
/// `as_of` names) registered, `local_time()` in `scope`'s zone and the
/// `plays` view over its period.
pub async fn star_context(
    layout: &Layout,
    manifest: &Manifest,
    memory_limit: usize,
    as_of: Option<&AsOf>,
    scope: &Scope,
) -> Result<SessionContext, ModelError> {
    let star = star_version(manifest, as_of)?;
    if as_of.is_some()
        && let Some(gone) = star.tables.values().flatten().find(|p| !layout.abs(&p.path).is_file())
    {
        return Err(ModelError::Vacuumed { version: star.version, path: gone.path.clone() });
    }
    let ctx =
        session(memory_limit).map_err(|source| ModelError::Sql { file: "session".into(), what: "setup", source })?;
    for table in STAR_TABLES {
        let schema = contract_schema(table).await?;
        let parts = star.tables.get(table.name).map(Vec::as_slice).unwrap_or_default();
        register_lake_files(&ctx, layout, table.name, schema, parts.iter().map(|p| p.path.as_str()))?;
    }
    // The monthly summaries of the star, where its build wrote them (the report reads them).
    for summary in crate::sql::STAR_SUMMARIES {
        let Some(parts) = star.tables.get(summary.name) else { continue };
        let file = format!("sql/model/{}.sql", summary.name);
        let planned = ctx.sql(summary.text).await.map_err(super::sql_err(file, "planning"))?;
        let schema = std::sync::Arc::new(planned.schema().as_arrow().clone());
        register_lake_files(&ctx, layout, summary.name, schema, parts.iter().map(|p| p.path.as_str()))?;
    }
    scope.zone.register(&ctx);
    register_plays(&ctx, &scope.period).await.map_err(|source| ModelError::Sql {
        file: "the plays view".into(),
        what: "setup",
        source,
    })?;
    Ok(ctx)
}

/// A named query: built in (sql/queries/), or the user's own `.sql` file.
#[derive(Debug, Clone)]
pub struct NamedQuery {
    pub name: String,
    pub description: String,
    pub text: String,
    /// The user's file, for a query of their own.
    pub file: Option<std::path::PathBuf>,
}

/// The built-in queries, then the user's `*.sql` files in `dir` (one of
/// theirs named as a built-in one replaces it). A folder that is not there
/// holds none.
pub fn named_queries(dir: Option<&std::path::Path>) -> Result<Vec<NamedQuery>, ModelError> {
    let mut out: Vec<NamedQuery> = crate::sql::QUERIES
        .iter()
        .map(|q| NamedQuery {
            name: q.name.into(),
            description: q.description().into(),
            text: q.text.into(),
            file: None,
        })
        .collect();
    let Some(dir) = dir else { return Ok(out) };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(ModelError::QueryDir { path: dir.into(), source }),
    };
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file())
        .collect();
    files.sort();
    for path in files {
        let text =
            std::fs::read_to_string(&path).map_err(|source| ModelError::QueryDir { path: path.clone(), source })?;
        let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let description = crate::sql::first_comment(&text).to_string();
        out.retain(|q| q.name != name);
        out.push(NamedQuery { name, description, text, file: Some(path) });
    }
    Ok(out)
}

/// Runs the named query `q`; an error in one of the user's names its file.
pub async fn run_named(ctx: &SessionContext, q: &NamedQuery) -> Result<Vec<RecordBatch>, ModelError> {
    match (run(ctx, &q.text).await, &q.file) {
        (Err(ModelError::Query(source)), Some(file)) => Err(ModelError::UserQuery { file: file.clone(), source }),
        (result, _) => result,
    }
}

/// Runs one SQL statement over the star and returns its rows. The
/// statement is planned, and refused unless it only reads: COPY, DDL
/// (CREATE EXTERNAL TABLE over any folder), DML and SET could replace or
/// read files outside the star, and a query must never change the lake.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, ModelError> {
    let plan = ctx.state().create_logical_plan(sql).await.map_err(ModelError::Query)?;
    let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    read_only
        .verify_plan(&plan)
        .map_err(|e| ModelError::ReadOnly { statement: e.strip_backtrace().replace("Error during planning: ", "") })?;
    let df = ctx.execute_logical_plan(plan).await.map_err(ModelError::Query)?;
    df.collect().await.map_err(ModelError::Query)
}

/// Writes `batches` to `out` in `format`.
pub fn write(out: &mut dyn Write, batches: &[RecordBatch], format: Format) -> Result<(), std::io::Error> {
    let to_io = |e: datafusion::arrow::error::ArrowError| std::io::Error::other(e.to_string());
    match format {
        Format::Table if batches.iter().all(|b| b.num_rows() == 0) => writeln!(out, "(no rows)")?,
        Format::Table => {
            let table = pretty_format_batches(batches).map_err(to_io)?;
            writeln!(out, "{table}")?;
        }
        Format::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            for b in batches {
                w.write(b).map_err(to_io)?;
            }
        }
        Format::Json => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut *out);
            for b in batches {
                w.write(b).map_err(to_io)?;
            }
            w.finish().map_err(to_io)?;
        }
    }
    out.flush()
}
