//! The database's tables against tunelake's contracts (`sql/schema/<t>.sql`).
//!
//! A contract may change between releases. The sync reads the contract as
//! PostgreSQL parses it (its CREATE TABLE run as a temp table) and compares
//! it with the table's columns, inside the sync's transaction: what can be
//! migrated safely is (a new table is created, a new nullable column added,
//! a type widened, a NOT NULL dropped), and the table is sent again whole so
//! a new column holds the lake's values when the sync commits; anything else
//! stops the sync with the table, the column and the command to run. Before
//! each COPY, the batch's columns are checked against the target's, so a
//! table altered by hand is named instead of failing as binary data.

use std::collections::HashMap;

use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use postgres::Transaction;

use super::SinkError;
use super::sync::quote_ident;
use crate::sql::StarTable;

/// One column as PostgreSQL has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Column {
    pub name: String,
    /// `pg_type.typname`: `int8`, `varchar`, `timestamp`, ...
    pub typname: String,
    /// `format_type`: `bigint`, `character varying(20)`, ...
    pub shown: String,
    pub typmod: i32,
    pub not_null: bool,
}

/// The columns of `relation` (a quoted name, or a temp table), in order; empty if it does not exist.
pub(super) fn columns(tx: &mut Transaction<'_>, relation: &str) -> Result<Vec<Column>, SinkError> {
    let rows = tx
        .query(
            "SELECT a.attname::text, t.typname::text, format_type(a.atttypid, a.atttypmod), a.atttypmod, a.attnotnull \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&relation],
        )
        .map_err(SinkError::sql(format!("reading the columns of {relation}")))?;
    Ok(rows
        .iter()
        .map(|r| Column { name: r.get(0), typname: r.get(1), shown: r.get(2), typmod: r.get(3), not_null: r.get(4) })
        .collect())
}

/// Brings `table` in the database to its contract (see the module's
/// comment). Returns what it changed, in words; a table created or changed
/// forgets what was sent to it, so this sync sends it whole.
pub(super) fn migrate(
    tx: &mut Transaction<'_>,
    table: &StarTable,
    recorded: &HashMap<String, String>,
) -> Result<Vec<String>, SinkError> {
    let (name, text) = (format!("sql/schema/{}.sql", table.name), table.schema.text);
    let sha = crate::lake::sha256_hex(text.as_bytes());
    if recorded.get(&name) == Some(&sha) {
        return Ok(vec![]);
    }
    let t = quote_ident(table.name);
    let have = columns(tx, &t)?;
    let mut changes = vec![];
    if have.is_empty() {
        tx.batch_execute(text).map_err(SinkError::sql(format!("applying {name}")))?;
        changes.push(name.clone());
    } else {
        let create = contract_ddl(table).ok_or_else(|| SinkError::Setting(format!("{name}: no CREATE TABLE found")))?;
        tx.batch_execute(&format!("DROP TABLE IF EXISTS tl_contract; {create}"))
            .map_err(SinkError::sql(format!("reading {name}")))?;
        let want = columns(tx, "tl_contract")?;
        tx.batch_execute("DROP TABLE tl_contract").map_err(SinkError::sql("dropping tl_contract"))?;
        let (statements, refused) = plan(table.name, &want, &have);
        if !refused.is_empty() {
            return Err(SinkError::SchemaDrift { table: table.name.into(), problems: refused.join("\n  ") });
        }
        for sql in statements {
            tx.batch_execute(&sql).map_err(SinkError::sql(format!("{}: {sql}", table.name)))?;
            changes.push(sql);
        }
        if !changes.is_empty() {
            tx.execute("DELETE FROM tunelake_sync_parts WHERE table_name = $1", &[&table.name])
                .map_err(SinkError::sql(format!("{}: sync state", table.name)))?;
        }
    }
    tx.execute(
        "INSERT INTO tunelake_migrations (name, sha256) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET sha256 = excluded.sha256, applied_at = now()",
        &[&name, &sha],
    )
    .map_err(SinkError::sql(format!("recording migration {name}")))?;
    Ok(changes)
}

/// The contract's CREATE TABLE, creating the temp table `tl_contract` instead.
fn contract_ddl(table: &StarTable) -> Option<String> {
    let code: String =
        table.schema.text.lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let start = code.find(&format!("CREATE TABLE {} (", table.name))?;
    let end = start + code[start..].find(';')?;
    let body = &code[start + "CREATE TABLE ".len() + table.name.len()..end];
    Some(format!("CREATE TEMP TABLE tl_contract{body}"))
}

/// The statements that bring `have` to `want`, and what cannot be done safely.
fn plan(table: &str, want: &[Column], have: &[Column]) -> (Vec<String>, Vec<String>) {
    let t = quote_ident(table);
    let (mut statements, mut refused) = (vec![], vec![]);
    for w in want {
        let c = quote_ident(&w.name);
        match have.iter().find(|h| h.name == w.name) {
            None if !w.not_null => statements.push(format!("ALTER TABLE {t} ADD COLUMN {c} {}", w.shown)),
            None => refused.push(format!(
                "column `{}` ({} NOT NULL) is new and cannot be added to rows that exist: \
                 ALTER TABLE {t} ADD COLUMN {c} {}; then sync again",
                w.name, w.shown, w.shown
            )),
            Some(h) => {
                if h.shown != w.shown {
                    if widens(h, w) {
                        statements.push(format!("ALTER TABLE {t} ALTER COLUMN {c} TYPE {}", w.shown));
                    } else {
                        refused.push(format!(
                            "column `{}` is {} in the database and {} in tunelake's contract, which would narrow \
                             or change it: ALTER TABLE {t} ALTER COLUMN {c} TYPE {} USING {c}::{}; then sync again",
                            w.name, h.shown, w.shown, w.shown, w.shown
                        ));
                    }
                }
                if h.not_null && !w.not_null {
                    statements.push(format!("ALTER TABLE {t} ALTER COLUMN {c} DROP NOT NULL"));
                }
            }
        }
    }
    for h in have.iter().filter(|h| !want.iter().any(|w| w.name == h.name)) {
        refused.push(format!(
            "column `{}` is in the database but not in tunelake's contract: \
             ALTER TABLE {t} DROP COLUMN {} (once nothing reads it); then sync again",
            h.name,
            quote_ident(&h.name)
        ));
    }
    (statements, refused)
}

/// Whether `have` can become `want` keeping every value.
fn widens(have: &Column, want: &Column) -> bool {
    let rank = |t: &str| match t {
        "int2" => Some(1),
        "int4" => Some(2),
        "int8" => Some(3),
        "numeric" => Some(4),
        _ => None,
    };
    match (have.typname.as_str(), want.typname.as_str()) {
        (h, w) if h == w => want.typmod == -1 || (have.typmod != -1 && want.typmod >= have.typmod),
        ("float4", "float8") | ("varchar", "text") | ("bpchar", "varchar" | "text") => true,
        (h, w) => matches!((rank(h), rank(w)), (Some(a), Some(b)) if a < b),
    }
}

/// The PostgreSQL types the binary COPY of an Arrow type can go into (`typname`s).
fn accepts(data_type: &DataType) -> &'static [&'static str] {
    match data_type {
        DataType::Utf8 => &["varchar", "text", "bpchar"],
        DataType::Int64 => &["int8"],
        DataType::Int32 => &["int4"],
        DataType::Float64 => &["float8"],
        DataType::Boolean => &["bool"],
        DataType::Timestamp(TimeUnit::Microsecond, None) => &["timestamp"],
        _ => &[],
    }
}

/// A `typname` as SQL writes it.
fn sql_name(typname: &str) -> &str {
    match typname {
        "int8" => "bigint",
        "int4" => "integer",
        "float8" => "double precision",
        "bool" => "boolean",
        "varchar" => "character varying",
        "timestamp" => "timestamp without time zone",
        other => other,
    }
}

/// Checks that each column of `batch` is in `target` with a type its binary
/// COPY fits, before anything is sent.
pub(super) fn check_columns(table: &str, target: &[Column], batch: &Schema) -> Result<(), SinkError> {
    for f in batch.fields() {
        let expected = accepts(f.data_type());
        let found = target.iter().find(|c| &c.name == f.name());
        let fits = found.is_some_and(|c| expected.contains(&c.typname.as_str()));
        if !fits {
            return Err(SinkError::ColumnType {
                table: table.into(),
                column: f.name().clone(),
                expected: expected.first().map_or_else(|| f.data_type().to_string(), |t| sql_name(t).into()),
                found: found.map_or_else(|| "no such column".to_string(), |c| c.shown.clone()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, typname: &str, shown: &str, typmod: i32, not_null: bool) -> Column {
        Column { name: name.into(), typname: typname.into(), shown: shown.into(), typmod, not_null }
    }

    #[test]
    fn safe_changes_are_planned_and_the_rest_refused_with_the_command() {
        let want = [
            col("id", "varchar", "character varying", -1, true),
            col("n", "int8", "bigint", -1, false),
            col("note", "varchar", "character varying", -1, false),
            col("label", "varchar", "character varying(5)", 9, false),
        ];
        let have = [
            col("id", "varchar", "character varying(20)", 24, true),
            col("n", "int4", "integer", -1, true),
            col("label", "varchar", "character varying(10)", 14, false),
            col("extra", "text", "text", -1, false),
        ];
        let (statements, refused) = plan("t", &want, &have);
        assert_eq!(
            statements,
            [
                "ALTER TABLE \"t\" ALTER COLUMN \"id\" TYPE character varying",
                "ALTER TABLE \"t\" ALTER COLUMN \"n\" TYPE bigint",
                "ALTER TABLE \"t\" ALTER COLUMN \"n\" DROP NOT NULL",
                "ALTER TABLE \"t\" ADD COLUMN \"note\" character varying",
            ]
        );
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(
            refused[0].contains("`label` is character varying(10)") && refused[0].contains("TYPE character varying(5)")
        );
        assert!(refused[1].contains("`extra`") && refused[1].contains("DROP COLUMN \"extra\""));
    }
}
