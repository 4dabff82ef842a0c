//! `tunelake query`: SQL over the current star version, offline. The star
//! tables are registered by name from the files the manifest names (never a
//! directory listing, so debris of a crashed build is invisible), and the
//! result is written to stdout as a table, CSV or JSON.

use std::io::Write;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{SQLOptions, SessionContext};

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

/// A context with every star table of the current version (or the one
/// `as_of` names) registered.
pub async fn star_context(
    layout: &Layout,
    manifest: &Manifest,
    memory_limit: usize,
    as_of: Option<&AsOf>,
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
    Ok(ctx)
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
