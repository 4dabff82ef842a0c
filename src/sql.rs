//! The SQL files under `sql/`, compiled into the binary so the tool runs from
//! anywhere. One name is the key everywhere: `sql/schema/<t>.sql` (the
//! contract, and the PostgreSQL DDL), `sql/model/<t>.sql` (one SELECT),
//! `star/<t>/` and the PostgreSQL table `<t>`. Model files whose name starts
//! with `_` are helper tables or monthly summaries (see the lists below);
//! `tunelake build` explains the order they run in.

/// One SQL file.
#[derive(Debug, Clone, Copy)]
pub struct SqlFile {
    pub name: &'static str,
    pub text: &'static str,
}

impl SqlFile {
    /// The first `-- ` comment line, as a one-line description.
    pub fn description(&self) -> &'static str {
        first_comment(self.text)
    }
}

/// The first `-- ` comment line of `text`, trimmed.
pub fn first_comment(text: &str) -> &str {
    text.lines().find_map(|l| l.trim().strip_prefix("--")).map(str::trim).unwrap_or("")
}

macro_rules! sql_file {
    ($dir:literal, $name:literal) => {
        SqlFile {
            name: $name,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/", $dir, "/", $name, ".sql")),
        }
    };
}

/// A star table from its `sql/schema/` and `sql/model/` files of the same name.
macro_rules! star_table {
    ($name:literal, $month_partition_by:expr) => {
        StarTable {
            name: $name,
            schema: sql_file!("schema", $name),
            model: sql_file!("model", $name),
            month_partition_by: $month_partition_by,
        }
    };
}

/// A star table: its name and the timestamp column it is partitioned by month on, if any.
#[derive(Debug, Clone, Copy)]
pub struct StarTable {
    pub name: &'static str,
    pub schema: SqlFile,
    pub model: SqlFile,
    pub month_partition_by: Option<&'static str>,
}

/// Helper tables over all of staging, computed once per build into temp
/// files: lookups that span the whole history (the song catalogue, the URIs
/// extended history gives each pair of names).
pub const GLOBAL_HELPERS: &[SqlFile] =
    &[sql_file!("model", "_sparkify_songs"), sql_file!("model", "_spotify_track_uris")];

/// A helper computed for each slice of months, over that slice's staging.
#[derive(Debug, Clone, Copy)]
pub struct SliceHelper {
    pub file: SqlFile,
    /// Kept in the star by month (for the dimensions to read): the timestamp
    /// column that picks the month, and the key that orders rows within it.
    pub kept: Option<(&'static str, &'static str)>,
    /// The columns the model's ORDER BY sorts its output by, if any; the
    /// tables that read it then need not sort it again.
    pub sorted_by: &'static [&'static str],
    /// DataFusion partitions it runs in: 2 reads and aggregates on both
    /// cores (a sort in 2 needs two merge reservations: see `model::build`).
    pub partitions: usize,
    /// A staging table by whose time the helper may be computed in two
    /// halves at once, one per core, into two files: true when each output
    /// row depends only on that table's rows of the same time (copies of an
    /// event share its time) and on tables computed before.
    pub halves_by: Option<&'static str>,
    /// Its joins hash the side the SQL puts first, instead of the smaller
    /// one by DataFusion's estimates: for a model that streams a large
    /// table in order past a small one, which the estimates can misjudge.
    pub joins_as_written: bool,
}

/// Helpers computed per slice of months, in this order, before the monthly star tables.
pub const SLICE_HELPERS: &[SliceHelper] = &[
    SliceHelper {
        file: sql_file!("model", "_sparkify_matches"),
        kept: None,
        sorted_by: &[],
        partitions: 2,
        joins_as_written: false,
        halves_by: None,
    },
    SliceHelper {
        file: sql_file!("model", "_sparkify_plays"),
        kept: None,
        sorted_by: &["ts", "event_id"],
        partitions: 1,
        joins_as_written: true,
        halves_by: Some(crate::lake::staging::STG_SPARKIFY_EVENTS),
    },
    SliceHelper {
        file: sql_file!("model", "_spotify_unique"),
        kept: None,
        sorted_by: &[],
        partitions: 1,
        joins_as_written: false,
        halves_by: None,
    },
    SliceHelper {
        file: sql_file!("model", "_spotify_streams"),
        kept: Some(("ts", "stream_id")),
        sorted_by: &[],
        partitions: 1,
        joins_as_written: false,
        halves_by: None,
    },
    SliceHelper {
        file: sql_file!("model", "_spotify_api_plays"),
        kept: Some(("played_at", "play_id")),
        sorted_by: &[],
        partitions: 1,
        joins_as_written: false,
        halves_by: None,
    },
];

/// A summary for the dimensions: one file computed per month, and one that
/// reduces those over every month (with the same columns, so that it can also
/// reduce its own previous result plus the recomputed months).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub monthly: SqlFile,
    pub all: SqlFile,
}

/// Summaries, computed per slice beside the monthly star tables and kept in
/// the star (the monthly ones by their `month` column); the dimensions read
/// the reduced ones instead of every play. Not synced.
pub const SUMMARIES: &[Summary] = &[
    Summary { monthly: sql_file!("model", "_sparkify_unmatched"), all: sql_file!("model", "_sparkify_unmatched_all") },
    Summary { monthly: sql_file!("model", "_users_by_month"), all: sql_file!("model", "_users_all") },
];

/// Monthly summaries of the monthly star tables, computed in each slice
/// right after them and kept in the star by their `month` column: what the
/// report reads instead of every play. Not synced, not Delta tables.
pub const STAR_SUMMARIES: &[SqlFile] = &[sql_file!("model", "_track_months")];

/// A table a build may extend with a layer of rows for new keys instead of
/// rewriting it (`model/layer.rs`). Its model must give each key's rows from
/// the input rows of that key alone (one row per key, picked by an order).
#[derive(Debug, Clone, Copy)]
pub struct Layered {
    pub table: &'static str,
    /// The column that keys a row (for a bridge, the first column of its key).
    pub key: &'static str,
    /// Where the build's new keys come from: a column of the rows the named
    /// table gained in this build (a layered table), or, for a cumulative
    /// summary, of its monthly table's recomputed months.
    pub keys_from: (&'static str, &'static str),
    /// The tables the model reads, each with its column holding the key; the
    /// model runs over their rows of the new keys only.
    pub inputs: &'static [(&'static str, &'static str)],
}

/// The layered tables, in build order. Users are not among them: every play
/// changes its user's row (last seen), so `dim_users` is rewritten each build.
pub const LAYERED: &[Layered] = &[
    Layered {
        table: "_sparkify_unmatched_all",
        key: "track_id",
        keys_from: ("_sparkify_unmatched", "track_id"),
        inputs: &[("_sparkify_unmatched", "track_id")],
    },
    Layered {
        table: "dim_tracks",
        key: "track_id",
        keys_from: ("_sparkify_unmatched_all", "track_id"),
        inputs: &[
            ("_sparkify_songs", "song_id"),
            ("_sparkify_unmatched_all", "track_id"),
            ("_spotify_streams", "track_id"),
            ("_spotify_api_plays", "track_id"),
        ],
    },
    Layered {
        table: "bridge_track_artists",
        key: "track_id",
        keys_from: ("dim_tracks", "track_id"),
        inputs: &[("dim_tracks", "track_id"), ("stg_spotify_api_plays", "track_id")],
    },
    Layered {
        table: "dim_artists",
        key: "artist_id",
        keys_from: ("_sparkify_unmatched_all", "artist_id"),
        inputs: &[
            ("_sparkify_songs", "artist_id"),
            ("_sparkify_unmatched_all", "artist_id"),
            ("_spotify_streams", "artist_id"),
            ("stg_spotify_api_plays", "artist_id"),
        ],
    },
];

pub fn layered(table: &str) -> Option<&'static Layered> {
    LAYERED.iter().find(|l| l.table == table)
}

/// Whether `sql` names `table` as a whole word outside `--` comments: how
/// the build finds which models read which tables (a table a model names
/// only in a string or a longer word is not read by it).
pub fn reads(sql: &str, table: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    sql.lines().map(|l| l.split("--").next().unwrap_or("")).any(|code| {
        code.match_indices(table).any(|(i, _)| !code[..i].ends_with(word) && !code[i + table.len()..].starts_with(word))
    })
}

/// Every model file that is not a star table, in the order a build runs them.
pub fn internal_models() -> impl Iterator<Item = &'static SqlFile> {
    GLOBAL_HELPERS
        .iter()
        .chain(SLICE_HELPERS.iter().map(|h| &h.file))
        .chain(SUMMARIES.iter().flat_map(|s| [&s.monthly, &s.all]))
        .chain(STAR_SUMMARIES)
}

/// Star tables in build order: a model may read the tables built before it.
/// Those partitioned by month are computed per slice of months (from the
/// slice helpers); the others once, from the monthly summaries and helpers.
pub const STAR_TABLES: &[StarTable] = &[
    star_table!("fact_plays", Some("played_at")),
    star_table!("dim_users", None),
    star_table!("dim_tracks", None),
    star_table!("bridge_track_artists", None),
    star_table!("dim_artists", None),
    star_table!("dim_albums", None),
    star_table!("dim_episodes", None),
    star_table!("dim_audiobooks", None),
    star_table!("dim_time", Some("ts")),
];

/// Named analytics queries (`tunelake query --name <q>`).
pub const QUERIES: &[SqlFile] = &[
    sql_file!("queries", "content_types"),
    sql_file!("queries", "discoveries"),
    sql_file!("queries", "listening_by_hour"),
    sql_file!("queries", "listening_clock"),
    sql_file!("queries", "plays_by_gender"),
    sql_file!("queries", "plays_by_level"),
    sql_file!("queries", "plays_by_location"),
    sql_file!("queries", "recent_plays"),
    sql_file!("queries", "sessions"),
    sql_file!("queries", "skip_rate"),
    sql_file!("queries", "streaks"),
    sql_file!("queries", "time_listened_by_day"),
    sql_file!("queries", "time_listened_by_month"),
    sql_file!("queries", "time_listened_by_week"),
    sql_file!("queries", "top_albums"),
    sql_file!("queries", "top_artists"),
    sql_file!("queries", "top_tracks"),
    sql_file!("queries", "top_users"),
];

/// PostgreSQL-only migrations, applied once each, in order.
pub const POSTGRES_MIGRATIONS: &[SqlFile] = &[
    sql_file!("postgres", "001_indexes"),
    sql_file!("postgres", "002_course_views"),
    sql_file!("postgres", "003_play_ids_byte_order"),
    sql_file!("postgres", "004_fact_plays_key_in_time_order"),
];

pub fn star_table(name: &str) -> Option<&'static StarTable> {
    STAR_TABLES.iter().find(|t| t.name == name)
}

pub fn query(name: &str) -> Option<&'static SqlFile> {
    QUERIES.iter().find(|q| q.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_on_disk(dir: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql").join(dir);
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".sql").to_string())
            .collect();
        names.sort();
        names
    }

    /// A file added under sql/ and not registered here would be silently ignored.
    #[test]
    fn every_sql_file_is_registered() {
        let mut model: Vec<String> = internal_models()
            .map(|f| f.name.to_string())
            .chain(STAR_TABLES.iter().map(|t| t.name.to_string()))
            .collect();
        model.sort();
        assert_eq!(names_on_disk("model"), model);
        let mut schema: Vec<String> = STAR_TABLES.iter().map(|t| t.name.to_string()).collect();
        schema.sort();
        assert_eq!(names_on_disk("schema"), schema);
        assert_eq!(names_on_disk("queries"), QUERIES.iter().map(|q| q.name.to_string()).collect::<Vec<_>>());
        assert_eq!(
            names_on_disk("postgres"),
            POSTGRES_MIGRATIONS.iter().map(|q| q.name.to_string()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn descriptions_come_from_the_first_comment() {
        assert_eq!(query("top_tracks").unwrap().description(), "The 20 most played tracks (plays of 30 s or more).");
    }
}
