//! `tunelake query`: SQL over the current star version, offline. The star
//! tables are registered by name from the files the manifest names (never a
//! directory listing, so debris of a crashed build is invisible), and the
//! result is written to stdout as a table, CSV or JSON.

use std::io::Write;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;

use super::{ModelError, contract_schema, register_lake_files, session};
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

/// A context with every star table of the current version registered.
pub async fn star_context(
    layout: &Layout,
    manifest: &Manifest,
    memory_limit: usize,
) -> Result<SessionContext, ModelError> {
    let star = manifest.star().ok_or(ModelError::NothingBuilt)?;
    let ctx =
        session(memory_limit).map_err(|source| ModelError::Sql { file: "session".into(), what: "setup", source })?;
    for table in STAR_TABLES {
        let schema = contract_schema(table).await?;
        let parts = star.tables.get(table.name).map(Vec::as_slice).unwrap_or_default();
        register_lake_files(&ctx, layout, table.name, schema, parts.iter().map(|p| p.path.as_str()))?;
    }
    Ok(ctx)
}

/// Runs one SQL statement over the star and returns its rows.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, ModelError> {
    let df = ctx.sql(sql).await.map_err(ModelError::Query)?;
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
