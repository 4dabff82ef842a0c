//! Stage 3: DataFusion over the lake. [`session`] makes a context set up the
//! way every model and query expects (UTC, plain `Utf8` strings, a memory
//! limit with spilling to disk); [`build`] runs `sql/model/` over staging
//! into a new star version; [`query`] runs SQL over the current star tables.

pub mod build;
mod files;
mod globals;
mod layer;
pub mod local;
mod plan;
mod publish;
pub mod query;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::datasource::ViewTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use crate::lake::manifest::StarPart;
use crate::lake::{LakeError, Layout};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "nothing to build: staging is empty; ingest something first, e.g. `tunelake ingest sparkify data/sample/sparkify`"
    )]
    NothingIngested,
    #[error("nothing built yet: run `tunelake build` first")]
    NothingBuilt,
    #[error("{file}: {what} failed")]
    Sql {
        file: String,
        what: &'static str,
        #[source]
        source: DataFusionError,
    },
    #[error("query failed")]
    Query(#[source] DataFusionError),
    #[error("{table}: the model's output does not match its contract sql/schema/{table}.sql: {problem}")]
    Contract { table: String, problem: String },
    /// Output the build cannot use, from a model with or without a contract
    /// (helpers and summaries have none): a missing column, rows out of order.
    #[error("{table}: the output of sql/model/{table}.sql {problem}")]
    Output { table: String, problem: String },
    #[error("no star version {asked}; the builds are: {versions}")]
    NoSuchVersion { asked: String, versions: String },
    #[error(
        "star version {version} is no longer whole: {path} was removed by `tunelake vacuum` (it keeps the versions \
         of the last `--retain`, 7 days unless told)"
    )]
    Vacuumed { version: u64, path: String },
    #[error(
        "`tunelake query` only reads the star ({statement}): SELECT, WITH, EXPLAIN, SHOW and DESCRIBE run; \
         COPY, CREATE, INSERT, DROP and SET are refused"
    )]
    ReadOnly { statement: String },
    #[error("unknown named query `{name}`; `tunelake query --list` shows them")]
    UnknownQuery { name: String },
    #[error("{file}: your query failed")]
    UserQuery {
        file: PathBuf,
        #[source]
        source: DataFusionError,
    },
    #[error("{path}: cannot read your queries")]
    QueryDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot register as a table")]
    Register {
        path: PathBuf,
        #[source]
        source: DataFusionError,
    },
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// Memory DataFusion may hold before sorts and aggregations spill to disk.
pub const DEFAULT_MEMORY_LIMIT: usize = 384 * 1024 * 1024;

/// What `query` lets DataFusion use before spilling, unless told: a quarter
/// of the machine's memory, and at least [`DEFAULT_MEMORY_LIMIT`]. An
/// analytics query groups millions of keys (artist and user pairs), which
/// spill, and slow down threefold, within the build's limit. The build keeps
/// the small limit: it must stream any history.
pub fn query_memory_default() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: sysconf only reads system configuration.
        let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
        if pages > 0 && page > 0 {
            return ((pages as u64 * page as u64 / 4) as usize).max(DEFAULT_MEMORY_LIMIT);
        }
    }
    DEFAULT_MEMORY_LIMIT
}

/// A DataFusion context as every model and query expects it.
pub fn session(memory_limit: usize) -> Result<SessionContext, DataFusionError> {
    let mut config = SessionConfig::new().with_batch_size(8192).with_information_schema(true);
    let opts = config.options_mut();
    opts.execution.time_zone = Some("UTC".into());
    opts.sql_parser.map_string_types_to_utf8view = false;
    opts.execution.parquet.schema_force_view_types = false;
    // A fair pool gives every spilling operator (sort, aggregate) a share and makes it spill past it.
    let pool = Arc::new(FairSpillPool::new(memory_limit));
    let runtime = RuntimeEnvBuilder::new().with_memory_pool(pool).build_arc()?;
    let local = datafusion::execution::object_store::ObjectStoreUrl::local_filesystem();
    runtime.register_object_store(local.as_ref(), Arc::new(files::InlineFiles::default()));
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// A session with the settings, tables and memory pool of `ctx` (not
/// functions registered on it: the models use built-ins only), whose tables
/// can be replaced without `ctx` seeing it.
pub(super) async fn session_copy(ctx: &SessionContext) -> Result<SessionContext, ModelError> {
    let config = ctx.copied_config();
    let defaults = &config.options().catalog;
    let tables = ctx
        .catalog(&defaults.default_catalog)
        .and_then(|c| c.schema(&defaults.default_schema))
        .map(|s| s.table_names())
        .unwrap_or_default();
    let session = SessionContext::new_with_config_rt(config.clone(), ctx.runtime_env());
    for name in tables {
        let provider = ctx.table_provider(name.as_str()).await.map_err(|source| ModelError::Sql {
            file: name.clone(),
            what: "lookup",
            source,
        })?;
        session
            .register_table(name.as_str(), provider)
            .map_err(|source| ModelError::Register { path: name.into(), source })?;
    }
    Ok(session)
}

/// Sets DataFusion option `name` to `value` for the rest of the session.
pub(crate) async fn set(ctx: &SessionContext, name: &str, value: &str) -> Result<(), ModelError> {
    ctx.sql(&format!("SET {name} = {value}")).await.map_err(|source| ModelError::Sql {
        file: "settings".into(),
        what: "SET",
        source,
    })?;
    Ok(())
}

/// Registers the Parquet files at `paths` as table `name` with `schema`;
/// no files makes an empty table.
pub fn register_files(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    paths: &[PathBuf],
) -> Result<(), ModelError> {
    let provider = files_provider(name, schema, paths)?;
    ctx.register_table(name, provider).map_err(|source| ModelError::Register { path: name.into(), source })?;
    Ok(())
}

/// A table over the Parquet files at `paths` (`name` is for errors).
pub fn files_provider(
    name: &str,
    schema: SchemaRef,
    paths: &[PathBuf],
) -> Result<Arc<dyn datafusion::catalog::TableProvider>, ModelError> {
    sorted_files_provider(name, schema, paths, &[])
}

/// [`files_provider`] for files each sorted by `sorted_by` (ascending), which
/// lets DataFusion skip sorting them again.
pub fn sorted_files_provider(
    name: &str,
    schema: SchemaRef,
    paths: &[PathBuf],
    sorted_by: &[&str],
) -> Result<Arc<dyn datafusion::catalog::TableProvider>, ModelError> {
    if paths.is_empty() {
        return empty_table(name, schema);
    }
    let urls = paths
        .iter()
        .map(|p| {
            let abs = absolute(p);
            ListingTableUrl::parse(abs.to_string_lossy()).map_err(|source| ModelError::Register { path: abs, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    if !sorted_by.is_empty() {
        let order = sorted_by.iter().map(|c| datafusion::prelude::col(*c).sort(true, false)).collect();
        options = options.with_file_sort_order(vec![order]);
    }
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config).map_err(|source| ModelError::Register { path: name.into(), source })?))
}

/// A table with `schema` and no rows, which DataFusion's optimizer sees is
/// empty: a UNION ALL drops the branches that read it, so a lake of one
/// source plans as if the others' SQL were not there (in fact_plays, no merge
/// of three sorted inputs of which two are empty).
pub fn empty_table(name: &str, schema: SchemaRef) -> Result<Arc<dyn datafusion::catalog::TableProvider>, ModelError> {
    let schema = DFSchema::try_from(schema.as_ref().clone())
        .map_err(|source| ModelError::Register { path: name.into(), source })?;
    let plan = LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: false, schema: Arc::new(schema) });
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// Registers lake files (paths relative to the lake root).
pub fn register_lake_files<'a>(
    ctx: &SessionContext,
    layout: &Layout,
    name: &str,
    schema: SchemaRef,
    rel_paths: impl IntoIterator<Item = &'a str>,
) -> Result<(), ModelError> {
    let paths: Vec<PathBuf> = rel_paths.into_iter().map(|p| layout.abs(p)).collect();
    register_files(ctx, name, schema, &paths)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The Arrow schema a `sql/schema/<t>.sql` contract declares.
pub async fn contract_schema(table: &crate::sql::StarTable) -> Result<SchemaRef, ModelError> {
    let file = format!("sql/schema/{}.sql", table.name);
    let ctx =
        session(64 * 1024 * 1024).map_err(|source| ModelError::Sql { file: file.clone(), what: "session", source })?;
    ctx.sql(table.schema.text).await.map_err(|source| ModelError::Sql {
        file: file.clone(),
        what: "CREATE TABLE",
        source,
    })?;
    let df =
        ctx.table(table.name).await.map_err(|source| ModelError::Sql { file, what: "reading the contract", source })?;
    Ok(Arc::new(df.schema().as_arrow().clone()))
}

// The helpers below serve every model module (build, globals, layer, write):
// running a model's SQL, logging its plans, and (re)registering tables.

/// Maps a DataFusion error to [`ModelError::Sql`]: `what` failed in `file`.
fn sql_err(
    file: impl Into<String>,
    what: &'static str,
) -> impl FnOnce(datafusion::error::DataFusionError) -> ModelError {
    let file = file.into();
    move |source| ModelError::Sql { file, what, source }
}

/// Plans `sql`, the text of `file`.
async fn run_sql(ctx: &SessionContext, file: &str, sql: &str) -> Result<DataFrame, ModelError> {
    ctx.sql(sql).await.map_err(sql_err(file, "planning"))
}

/// Registers table `name` over the files of `parts`.
fn register_parts(
    ctx: &SessionContext,
    layout: &Layout,
    name: &str,
    schema: SchemaRef,
    parts: &[StarPart],
) -> Result<(), ModelError> {
    replace_table(ctx, name, parts_provider(layout, name, schema, parts)?)
}

/// Registers `provider` as `name`, in place of the table of that name.
fn replace_table(
    ctx: &SessionContext,
    name: &str,
    provider: Arc<dyn datafusion::catalog::TableProvider>,
) -> Result<(), ModelError> {
    ctx.deregister_table(name).map_err(sql_err(name, "deregister"))?;
    ctx.register_table(name, provider).map_err(|source| ModelError::Register { path: name.into(), source })?;
    Ok(())
}

/// A table over the files of `parts`.
fn parts_provider(
    layout: &Layout,
    name: &str,
    schema: SchemaRef,
    parts: &[StarPart],
) -> Result<Arc<dyn datafusion::catalog::TableProvider>, ModelError> {
    let paths: Vec<PathBuf> = parts.iter().map(|p| layout.abs(&p.path)).collect();
    files_provider(name, schema, &paths)
}

/// Plans and starts `df`, the model of `table` in `file`; with -vv, logs the
/// physical plan DataFusion chose. Pass the plan to [`log_metrics`] once
/// the stream is done.
async fn execute(
    table: &str,
    file: &str,
    df: DataFrame,
) -> Result<(Arc<dyn ExecutionPlan>, SendableRecordBatchStream), ModelError> {
    let task = df.task_ctx();
    let plan = df.create_physical_plan().await.map_err(sql_err(file, "planning"))?;
    if tracing::enabled!(tracing::Level::DEBUG) {
        let shown = datafusion::physical_plan::displayable(plan.as_ref()).indent(true).to_string();
        tracing::debug!(table, plan = %shown, "physical plan");
    }
    let stream = execute_stream(plan.clone(), Arc::new(task)).map_err(sql_err(file, "execution"))?;
    Ok((plan, stream))
}

/// With -vvv, `plan` as it ran: rows, time and memory of each operator.
fn log_metrics(table: &str, plan: &dyn ExecutionPlan) {
    if tracing::enabled!(tracing::Level::TRACE) {
        let shown = DisplayableExecutionPlan::with_metrics(plan).indent(true).to_string();
        tracing::trace!(table, plan = %shown, "plan as run");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[tokio::test]
    async fn a_union_drops_the_branch_over_an_empty_table() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let ctx = session(DEFAULT_MEMORY_LIMIT).unwrap();
        let rows = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![2, 1]))]).unwrap();
        ctx.register_batch("full", rows).unwrap();
        ctx.register_table("empty", empty_table("empty", schema.clone()).unwrap()).unwrap();
        let df = ctx.sql("SELECT x FROM full UNION ALL SELECT x FROM empty WHERE x > 0 ORDER BY x").await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref()).indent(true).to_string();
        assert!(!shown.contains("Union") && !shown.contains("Merge"), "{shown}");
        let batches = df.collect().await.unwrap();
        let x: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(x, [1, 2]);
    }
}
