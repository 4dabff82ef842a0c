//! How a model's output becomes star files: checked against its contract
//! (`sql/schema/<t>.sql`) and cast to its exact types, cut into one file per
//! month of its partition column (whose values must never decrease), and a
//! partition whose bytes equal the previous version's kept as the old file,
//! so that sync sees an unchanged hash. A layered table ([`extended`]) gains
//! one file with the rows of its new keys.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::prelude::DataFrame;
use futures::StreamExt;

use super::plan::month_of;
use super::{ModelError, execute, layer, log_metrics};
use crate::lake::Layout;
use crate::lake::events::{PartHook, StarEvent};
use crate::lake::manifest::StarPart;
use crate::lake::parquet::FileWriter;

/// A layered table's parts after an extension, and the rows its new layer holds.
pub(super) type Extended = (Vec<StarPart>, Vec<RecordBatch>);

/// The parts of a layered table after an extension: `before` plus a layer
/// of the new keys' rows (none without new keys), and those rows; None when
/// rows of known keys change and the table must be written whole.
pub(super) fn extended(
    layout: &Layout,
    table: &str,
    schema: &SchemaRef,
    before: &[StarPart],
    extension: layer::Extension,
    version: u64,
) -> Result<Option<Extended>, ModelError> {
    let rows = match extension {
        layer::Extension::Rows(rows) => rows,
        layer::Extension::Changed(keys) => {
            tracing::info!(table, keys, "rows of keys the table has change: written whole");
            return Ok(None);
        }
    };
    let mut parts = before.to_vec();
    if rows.iter().any(|b| b.num_rows() > 0) {
        let partition = layer::partition(version);
        let rel = Layout::star_rel(table, Some(&partition), version);
        let mut writer = FileWriter::create(&layout.abs(&rel), schema.clone());
        for b in &rows {
            writer.write(b)?;
        }
        let written = writer.finish()?;
        tracing::info!(table, rows = written.rows, "layer of new keys");
        parts.push(StarPart { partition: Some(partition), path: rel, rows: written.rows, sha256: written.sha256 });
    }
    Ok(Some((parts, rows)))
}

/// Where a build writes its tables: the lake, the new star version, the
/// previous version's parts (a part whose bytes did not change keeps its
/// file), and who is told of each part as soon as its file is complete.
#[derive(Clone, Copy)]
pub(super) struct Target<'a> {
    pub layout: &'a Layout,
    pub version: u64,
    pub previous: &'a HashMap<(String, Option<String>), StarPart>,
    pub hook: Option<&'a PartHook>,
}

impl<'a> Target<'a> {
    /// The same, telling no one (helpers and summaries are not the sink's).
    pub fn quiet(self) -> Target<'a> {
        Target { hook: None, ..self }
    }
}

/// Writes a model's output as table `name` of `to`'s star version, by
/// month of column `by` when given. With a contract, the output's columns
/// are checked against it and cast to its exact types. Returns the parts and
/// how many of them equal the previous version's.
pub(super) async fn write_table(
    to: Target<'_>,
    name: &str,
    df: DataFrame,
    contract: Option<&SchemaRef>,
    by: Option<&str>,
) -> Result<(Vec<StarPart>, usize), ModelError> {
    let file = format!("sql/model/{name}.sql");
    let schema: SchemaRef = match contract {
        Some(c) => {
            check_schema(name, c, df.schema().as_arrow())?;
            c.clone()
        }
        None => Arc::new(df.schema().as_arrow().clone()),
    };
    let partition_col = match by {
        Some(c) => Some(schema.index_of(c).map_err(|_| ModelError::Output {
            table: name.into(),
            problem: format!("has no partition column `{c}`"),
        })?),
        None => None,
    };
    let t0 = std::time::Instant::now();
    let (plan, mut stream) = execute(name, &file, df).await?;
    let mut writer = PartitionedWriter {
        layout: to.layout,
        table: name.to_string(),
        version: to.version,
        schema: schema.clone(),
        partition_col,
        current: None,
        last: None,
        parts: vec![],
        unchanged: 0,
        previous: to.previous,
        hook: to.hook,
    };
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|source| ModelError::Sql { file: file.clone(), what: "execution", source })?;
        let batch = if contract.is_some() { conform(name, &schema, batch)? } else { batch };
        writer.write(batch)?;
    }
    writer.close_current()?;
    log_metrics(name, plan.as_ref());
    let rows: u64 = writer.parts.iter().map(|p| p.rows).sum();
    tracing::debug!(table = name, rows, seconds = t0.elapsed().as_secs_f64(), "written");
    Ok((writer.parts, writer.unchanged))
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
pub(super) fn conform(table: &str, contract: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch, ModelError> {
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
    table: String,
    version: u64,
    schema: SchemaRef,
    partition_col: Option<usize>,
    current: Option<(Option<String>, String, FileWriter)>,
    /// The partition column's last value so far: it never decreases, so
    /// each partition's rows come together and in order.
    last: Option<i64>,
    parts: Vec<StarPart>,
    unchanged: usize,
    previous: &'a HashMap<(String, Option<String>), StarPart>,
    hook: Option<&'a PartHook>,
}

impl PartitionedWriter<'_> {
    fn write(&mut self, batch: RecordBatch) -> Result<(), ModelError> {
        let Some(col) = self.partition_col else {
            return self.route(None, &batch);
        };
        let ts = batch.column(col).as_primitive::<TimestampMicrosecondType>().clone();
        let values = ts.values();
        let ordered = self.last.into_iter().chain(values.iter().copied()).is_sorted();
        if !ordered {
            return Err(ModelError::Output {
                table: self.table.clone(),
                problem: format!(
                    "is out of order by `{}`: the model must ORDER BY its partition column",
                    self.schema.field(col).name()
                ),
            });
        }
        self.last = values.last().copied().or(self.last);
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
            let rel = Layout::star_rel(&self.table, partition.as_deref(), self.version);
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
        let key = (self.table.clone(), partition.clone());
        match self.previous.get(&key) {
            // Kept by its recorded hash, when it is still there: a file removed
            // (as `tunelake verify` says to do with a damaged one) is written again.
            Some(prev)
                if prev.sha256 == written.sha256 && prev.path != rel && self.layout.abs(&prev.path).is_file() =>
            {
                let abs = self.layout.abs(&rel);
                std::fs::remove_file(&abs).map_err(crate::lake::LakeError::io("remove", abs))?;
                self.parts.push(prev.clone());
                self.unchanged += 1;
            }
            _ => self.parts.push(StarPart { partition, path: rel, rows: written.rows, sha256: written.sha256 }),
        }
        if let (Some(hook), Some(part)) = (self.hook, self.parts.last()) {
            (hook.0)(StarEvent::Part { table: &self.table, part, version: self.version });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::staging;

    #[test]
    fn rows_out_of_time_order_are_an_output_error_that_names_the_column_and_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let schema = Arc::new(Schema::new(vec![datafusion::arrow::datatypes::Field::new(
            "played_at",
            staging::ts_type(),
            false,
        )]));
        let previous = HashMap::new();
        let mut writer = PartitionedWriter {
            layout: &layout,
            table: "t".into(),
            version: 1,
            schema: schema.clone(),
            partition_col: Some(0),
            current: None,
            last: None,
            parts: vec![],
            unchanged: 0,
            previous: &previous,
            hook: None,
        };
        let batch = |us: Vec<i64>| {
            let ts = datafusion::arrow::array::TimestampMicrosecondArray::from(us);
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ts)]).unwrap()
        };
        // Two months in order, then a row earlier than the last: across batches too.
        writer.write(batch(vec![1_541_030_400_000_000, 1_543_622_400_000_000])).unwrap();
        let err = writer.write(batch(vec![1_541_030_400_000_001])).unwrap_err().to_string();
        assert!(err.contains("out of order by `played_at`") && err.contains("ORDER BY"), "{err}");
        assert!(err.contains("sql/model/t.sql") && !err.contains("contract"), "names the model, no contract: {err}");
        let err = writer.write(batch(vec![1_543_622_400_000_002, 1_543_622_400_000_001])).unwrap_err().to_string();
        assert!(err.contains("out of order"), "{err}");
    }
}
