//! Layers: a global table (a dimension, a cumulative summary) that a build
//! extends with one file of rows for new keys instead of rewriting it whole.
//!
//! Its parts are then a base (no partition) and layers (`layer=<version>`)
//! whose keys are disjoint, so every reader (the next build, `query`, sync,
//! another engine reading the manifest's files) takes their union. A day of
//! new plays mostly brings new keys (tracks no catalogue song matches, their
//! artists) and leaves the rows of known keys as they were: their rows come
//! from their first play. Extending costs the new keys, not the history
//! (only the key columns of the inputs are scanned).
//!
//! The table is written whole again when a known key's rows would change
//! (an earlier play ingested late), when [`may_extend`] says the layers are
//! too many, and in every build that `Plan::layers` does not allow.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, concat, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::prelude::SessionContext;

use super::ModelError;
use crate::lake::manifest::StarPart;

/// Most layers a table keeps before it is written whole again.
pub const MAX_LAYERS: usize = 32;

/// The partition name of the layer a build `version` adds.
pub fn partition(version: u64) -> String {
    format!("layer={version:08}")
}

/// Whether a table made of `parts` may take one more layer: it has a base,
/// fewer than [`MAX_LAYERS`] layers, and its layers hold at most a quarter
/// as many rows as the base (readers then stay as fast as on one file).
pub fn may_extend(parts: &[StarPart]) -> bool {
    let base: u64 = parts.iter().filter(|p| p.partition.is_none()).map(|p| p.rows).sum();
    let layers: Vec<&StarPart> = parts.iter().filter(|p| p.partition.is_some()).collect();
    parts.iter().any(|p| p.partition.is_none())
        && layers.len() < MAX_LAYERS
        && layers.iter().map(|p| p.rows).sum::<u64>() * 4 <= base.max(4096)
}

/// What a model gives for a set of keys, against the rows the table has.
pub enum Extension {
    /// The rows of keys the table lacks (maybe none); the other keys' rows are as the table has them.
    Rows(Vec<RecordBatch>),
    /// This many keys the table has would get other rows.
    Changed(usize),
}

/// A layered table's model, as [`extension`] runs it.
#[derive(Clone, Copy)]
pub struct Model<'a> {
    pub table: &'a str,
    /// `sql/model/<table>.sql`, for errors.
    pub file: &'a str,
    pub sql: &'a str,
    /// The column that keys a row.
    pub key: &'a str,
    /// The tables the model reads, each with its column holding the key.
    pub inputs: &'a [(&'a str, &'a str)],
    /// The table's columns and types.
    pub schema: &'a SchemaRef,
}

/// Runs `model` with each of its inputs restricted to the rows whose key is
/// in `keys`, casts its rows to the table's schema, and sorts them out
/// against the rows `existing` has for the same keys. No keys: no rows.
pub async fn extension(
    ctx: &SessionContext,
    model: &Model<'_>,
    keys: ArrayRef,
    existing: Arc<dyn TableProvider>,
) -> Result<Extension, ModelError> {
    if keys.is_empty() {
        return Ok(Extension::Rows(vec![]));
    }
    // The scans of the inputs then decode the key column first and the other
    // columns only for the rows of the new keys (the join's keys reach the
    // scan as a dynamic filter).
    super::set(ctx, "datafusion.execution.parquet.pushdown_filters", "true").await?;
    let extension = extend(ctx, model, keys, existing).await;
    super::set(ctx, "datafusion.execution.parquet.pushdown_filters", "false").await?;
    extension
}

async fn extend(
    ctx: &SessionContext,
    model: &Model<'_>,
    keys: ArrayRef,
    existing: Arc<dyn TableProvider>,
) -> Result<Extension, ModelError> {
    let Model { file, key, schema, .. } = *model;
    let err = |what: &'static str| super::sql_err(file, what);
    let keys = cast(&keys, &DataType::Utf8).map_err(|e| err("casting keys")(e.into()))?;
    let rows = run_over_keys(ctx, model, keys.clone()).await?;
    let before = existing_rows(ctx, model, &keys, &rows, existing).await?;

    let converter = RowConverter::new(schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())
        .map_err(|e| err("comparing rows")(e.into()))?;
    let (new, old) = (rows_by_key(&converter, &rows, key, file)?, rows_by_key(&converter, &before, key, file)?);
    let changed = old.iter().filter(|(k, rows)| new.get(*k) != Some(*rows)).count();
    if changed > 0 {
        return Ok(Extension::Changed(changed));
    }
    let fresh: HashSet<&str> = new.keys().filter(|k| !old.contains_key(*k)).map(String::as_str).collect();
    Ok(Extension::Rows(rows_of_keys(rows, key, &fresh, file)?))
}

/// Runs `model` with each of its inputs restricted to the rows whose key is
/// in `keys` (each input is put back after), its rows cast to the table's schema.
async fn run_over_keys(
    ctx: &SessionContext,
    model: &Model<'_>,
    keys: ArrayRef,
) -> Result<Vec<RecordBatch>, ModelError> {
    let Model { table, file, sql, inputs, schema, .. } = *model;
    let err = |what: &'static str| super::sql_err(file, what);
    register_keys(ctx, "tl_layer_keys", keys)?;
    let mut originals = vec![];
    for &(input, column) in inputs {
        let original = ctx.table_provider(input).await.map_err(err("reading an input"))?;
        let full = format!("tl_layer_full_{input}");
        super::replace_table(ctx, &full, original.clone())?;
        let view = ctx
            .sql(&format!("SELECT * FROM {full} WHERE {column} IN (SELECT key FROM tl_layer_keys)"))
            .await
            .map_err(err("restricting an input to the new keys"))?
            .into_view();
        super::replace_table(ctx, input, view)?;
        originals.push((input, full, original));
    }
    let rows = match ctx.sql(sql).await {
        Ok(df) => df.collect().await.map_err(err("execution")),
        Err(e) => Err(err("planning")(e)),
    };
    for (input, full, original) in originals {
        super::replace_table(ctx, input, original)?;
        ctx.deregister_table(&full).map_err(err("deregister"))?;
    }
    rows?.into_iter().map(|b| super::write::conform(table, schema, b)).collect()
}

/// The table's rows of the keys asked for and of the keys the model gave:
/// a key it has that the model no longer gives counts as changed.
async fn existing_rows(
    ctx: &SessionContext,
    model: &Model<'_>,
    keys: &ArrayRef,
    rows: &[RecordBatch],
    existing: Arc<dyn TableProvider>,
) -> Result<Vec<RecordBatch>, ModelError> {
    let Model { table, file, key, schema, .. } = *model;
    let err = |what: &'static str| super::sql_err(file, what);
    let result_keys = column_of(rows, key, table)?;
    let asked_or_given = concat(&[keys.as_ref(), result_keys.as_ref()]).map_err(|e| err("casting keys")(e.into()))?;
    register_keys(ctx, "tl_layer_keys", asked_or_given)?;
    super::replace_table(ctx, "tl_layer_existing", existing)?;
    let before = ctx
        .sql(&format!("SELECT * FROM tl_layer_existing WHERE {key} IN (SELECT key FROM tl_layer_keys)"))
        .await
        .map_err(err("planning the existing rows"))?
        .collect()
        .await
        .map_err(err("reading the existing rows"))?;
    ctx.deregister_table("tl_layer_existing").map_err(err("deregister"))?;
    ctx.deregister_table("tl_layer_keys").map_err(err("deregister"))?;
    before.into_iter().map(|b| super::write::conform(table, schema, b)).collect()
}

/// The rows of `batches` by their column `key`, each row as `converter`'s
/// bytes, a key's rows sorted: two keys' rows compare equal as sets.
fn rows_by_key(
    converter: &RowConverter,
    batches: &[RecordBatch],
    key: &str,
    file: &str,
) -> Result<HashMap<String, Vec<Vec<u8>>>, ModelError> {
    let err = |what: &'static str| super::sql_err(file, what);
    let mut out: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for b in batches {
        let ids = b.column_by_name(key).expect("conformed to the schema");
        let ids = cast(ids, &DataType::Utf8).map_err(|e| err("comparing rows")(e.into()))?;
        let ids = ids.as_string::<i32>();
        let converted = converter.convert_columns(b.columns()).map_err(|e| err("comparing rows")(e.into()))?;
        for i in 0..b.num_rows() {
            out.entry(ids.value(i).to_string()).or_default().push(converted.row(i).as_ref().to_vec());
        }
    }
    for rows in out.values_mut() {
        rows.sort();
    }
    Ok(out)
}

/// The rows of `batches` whose column `key` is in `fresh`.
fn rows_of_keys(
    batches: Vec<RecordBatch>,
    key: &str,
    fresh: &HashSet<&str>,
    file: &str,
) -> Result<Vec<RecordBatch>, ModelError> {
    let err = |what: &'static str| super::sql_err(file, what);
    let mut out = vec![];
    for b in batches {
        let ids = cast(b.column_by_name(key).expect("conformed"), &DataType::Utf8)
            .map_err(|e| err("comparing rows")(e.into()))?;
        let ids = ids.as_string::<i32>();
        let keep: UInt32Array = (0..b.num_rows() as u32).filter(|&i| fresh.contains(ids.value(i as usize))).collect();
        if !keep.is_empty() {
            out.push(take_record_batch(&b, &keep).map_err(|e| err("selecting new rows")(e.into()))?);
        }
    }
    Ok(out)
}

/// Column `name` of every batch as one Utf8 array (empty without batches).
pub fn column_of(batches: &[RecordBatch], name: &str, table: &str) -> Result<ArrayRef, ModelError> {
    let problem = |p: String| ModelError::Output { table: table.into(), problem: p };
    let mut parts = vec![];
    for b in batches {
        let c = b.column_by_name(name).ok_or_else(|| problem(format!("has no column `{name}`")))?;
        parts.push(cast(c, &DataType::Utf8).map_err(|e| problem(format!("column `{name}` is not text: {e}")))?);
    }
    if parts.is_empty() {
        return Ok(Arc::new(StringArray::from(Vec::<String>::new())));
    }
    concat(&parts.iter().map(|a| a.as_ref()).collect::<Vec<_>>())
        .map_err(|e| problem(format!("column `{name}` cannot be put together: {e}")))
}

/// Registers `keys` as the one-column table `name` (column `key`).
fn register_keys(ctx: &SessionContext, name: &str, keys: ArrayRef) -> Result<(), ModelError> {
    let schema = Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![keys])
        .map_err(|source| ModelError::Register { path: name.into(), source: source.into() })?;
    let table = MemTable::try_new(schema, vec![vec![batch]])
        .map_err(|source| ModelError::Register { path: name.into(), source })?;
    super::replace_table(ctx, name, Arc::new(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(partition: Option<&str>, rows: u64) -> StarPart {
        StarPart { partition: partition.map(str::to_string), path: String::new(), rows, sha256: String::new() }
    }

    #[test]
    fn layers_stop_at_a_quarter_of_the_base_or_the_most_layers() {
        assert!(!may_extend(&[]), "nothing to extend");
        assert!(may_extend(&[part(None, 100_000)]));
        assert!(may_extend(&[part(None, 100_000), part(Some("layer=1"), 25_000)]));
        assert!(!may_extend(&[part(None, 100_000), part(Some("layer=1"), 25_001)]));
        assert!(may_extend(&[part(None, 10), part(Some("layer=1"), 1_000)]), "small tables take small layers");
        let many: Vec<StarPart> =
            std::iter::once(part(None, 1_000_000)).chain((0..MAX_LAYERS).map(|_| part(Some("layer"), 1))).collect();
        assert!(!may_extend(&many));
        assert_eq!(partition(42), "layer=00000042");
    }
}
