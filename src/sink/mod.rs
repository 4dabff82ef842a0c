//! Stage 4: the star schema into PostgreSQL.
//!
//! [`sync()`] runs in one transaction: it applies `sql/schema/` and
//! `sql/postgres/` (each file once, recorded in `tunelake_migrations`), then
//! for every star partition whose content hash differs from the one recorded
//! in `tunelake_sync_parts` it COPYs the rows (binary) into a temp table,
//! deletes what the partition no longer holds and upserts the rest, changing
//! only rows that differ. The lake version synced is recorded in
//! `tunelake_syncs` in the same transaction. Readers never see half a sync.
//! `tunelake run` opens that transaction before it builds ([`Loader`]) and
//! loads each month file the build writes at once, while the build goes on.
//!
//! The `postgres` crate blocks (and panics inside a tokio runtime): call this
//! outside any runtime.

pub mod connect;
mod copy;
mod diff;
mod loader;
mod schema;
mod sync;

pub use loader::Loader;
pub use sync::{SyncMetrics, SyncOptions, record, sync};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("nothing built yet: run `tunelake build` before `tunelake sync`")]
    NothingBuilt,
    #[error("no database configured: pass --database-url, set DATABASE_URL, or set PGHOST / PGDATABASE")]
    NoDatabase,
    #[error("the database URL is not valid (it is not shown here, as it may hold a password)")]
    BadUrl(#[source] postgres::Error),
    #[error("database settings: {0}")]
    Setting(String),
    #[error("cannot connect to PostgreSQL at {target}{hint}")]
    Connect {
        target: String,
        hint: String,
        #[source]
        source: postgres::Error,
    },
    #[error("{what} failed")]
    Sql {
        what: String,
        #[source]
        source: postgres::Error,
    },
    #[error(
        "{name} changed after it was applied to this database (recorded sha256 {recorded}, now {now}); \
         schema changes go in a new migration under sql/postgres/"
    )]
    MigrationChanged { name: String, recorded: String, now: String },
    #[error(
        "{table}: the database's table differs from tunelake's contract in ways a sync will not change:\n  {problems}"
    )]
    SchemaDrift { table: String, problems: String },
    #[error("{table}: column `{column}` is {found} in the database, where tunelake sends {expected}; nothing was sent")]
    ColumnType { table: String, column: String, expected: String, found: String },
    #[error("{table}: column `{column}` has Arrow type {data_type}, which the binary COPY cannot send")]
    UnsupportedType { table: String, column: String, data_type: String },
    #[error("{table}: writing the COPY stream failed")]
    CopyWrite {
        table: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{table}: comparing with the rows sent before failed: {problem} (`tunelake sync --full` resends everything)"
    )]
    Diff { table: String, problem: String },
    #[error("the sync stopped before the build was done; nothing was committed")]
    Abandoned,
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
}

impl SinkError {
    pub(crate) fn sql(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> Self {
        let what = what.into();
        move |source| SinkError::Sql { what, source }
    }
}
