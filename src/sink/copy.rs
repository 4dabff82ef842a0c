//! PostgreSQL's binary COPY format, written straight from Arrow columns:
//! a header, then per row a field count and per field a length and the value
//! in network byte order, then a trailer. No per-row allocation, no text
//! escaping, no parsing on the server side.

use std::io::Write;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType};

use super::SinkError;

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const TRAILER: &[u8] = &(-1i16).to_be_bytes();
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

pub fn header(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(HEADER)
}

pub fn trailer(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(TRAILER)
}

/// Checks that every column of `batch` can be sent.
pub fn check_types(table: &str, batch: &RecordBatch) -> Result<(), SinkError> {
    for (f, _) in batch.schema().fields().iter().zip(batch.columns()) {
        match f.data_type() {
            DataType::Utf8 | DataType::Int64 | DataType::Int32 | DataType::Float64 | DataType::Boolean => {}
            DataType::Timestamp(TimeUnit::Microsecond, None) => {}
            other => {
                return Err(SinkError::UnsupportedType {
                    table: table.into(),
                    column: f.name().clone(),
                    data_type: other.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Appends the rows of `batch` to `buf` (types checked by [`check_types`]).
pub fn encode(batch: &RecordBatch, buf: &mut Vec<u8>) {
    let ncols = batch.num_columns() as i16;
    let cols = batch.columns();
    for row in 0..batch.num_rows() {
        buf.extend_from_slice(&ncols.to_be_bytes());
        for col in cols {
            if col.is_null(row) {
                buf.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            match col.data_type() {
                DataType::Utf8 => {
                    let v = col.as_string::<i32>().value(row).as_bytes();
                    buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    buf.extend_from_slice(v);
                }
                DataType::Int64 => {
                    buf.extend_from_slice(&8i32.to_be_bytes());
                    buf.extend_from_slice(&col.as_primitive::<Int64Type>().value(row).to_be_bytes());
                }
                DataType::Int32 => {
                    buf.extend_from_slice(&4i32.to_be_bytes());
                    buf.extend_from_slice(&col.as_primitive::<Int32Type>().value(row).to_be_bytes());
                }
                DataType::Float64 => {
                    buf.extend_from_slice(&8i32.to_be_bytes());
                    buf.extend_from_slice(&col.as_primitive::<Float64Type>().value(row).to_be_bytes());
                }
                DataType::Boolean => {
                    buf.extend_from_slice(&1i32.to_be_bytes());
                    buf.push(col.as_boolean().value(row) as u8);
                }
                DataType::Timestamp(TimeUnit::Microsecond, None) => {
                    let us = col.as_primitive::<TimestampMicrosecondType>().value(row) - PG_EPOCH_OFFSET_US;
                    buf.extend_from_slice(&8i32.to_be_bytes());
                    buf.extend_from_slice(&us.to_be_bytes());
                }
                _ => unreachable!("check_types admits only the types above"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;

    #[test]
    fn encodes_nulls_strings_ints_bools_and_timestamps() {
        let batch = RecordBatch::try_from_iter([
            ("s", Arc::new(StringArray::from(vec![Some("ab"), None])) as _),
            ("i", Arc::new(Int64Array::from(vec![1, -1])) as _),
            ("b", Arc::new(BooleanArray::from(vec![true, false])) as _),
            ("t", Arc::new(TimestampMicrosecondArray::from(vec![PG_EPOCH_OFFSET_US + 1, 0])) as _),
        ])
        .unwrap();
        check_types("t", &batch).unwrap();
        let mut buf = vec![];
        encode(&batch, &mut buf);
        let mut want = vec![];
        want.extend_from_slice(&4i16.to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice(b"ab");
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&1i64.to_be_bytes());
        want.extend_from_slice(&1i32.to_be_bytes());
        want.push(1);
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&1i64.to_be_bytes());
        assert_eq!(&buf[..want.len()], &want[..]);
        // Second row starts with a null string.
        assert_eq!(&buf[want.len() + 2..want.len() + 6], &(-1i32).to_be_bytes());
    }
}
