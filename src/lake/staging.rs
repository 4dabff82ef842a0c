//! The staging tables' names and Arrow schemas: the contract between the
//! parsers that write staging (`source`) and the models that read it
//! (`model`). Changing a schema here is a parser change: `tunelake
//! reprocess` rewrites staging from raw.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const STG_SPARKIFY_EVENTS: &str = "stg_sparkify_events";
pub const STG_SPARKIFY_SONGS: &str = "stg_sparkify_songs";
pub const STG_SPOTIFY_STREAMS: &str = "stg_spotify_streams";

/// Timestamps in the lake: UTC, microseconds, no zone attached.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

pub static SPARKIFY_EVENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let i = |n: &str| Field::new(n, DataType::Int64, true);
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("ts", ts_type(), false),
        s("user_id"),
        s("auth"),
        s("first_name"),
        s("last_name"),
        s("gender"),
        s("level"),
        s("location"),
        s("user_agent"),
        Field::new("page", DataType::Utf8, false),
        s("method"),
        i("status"),
        Field::new("session_id", DataType::Int64, false),
        Field::new("item_in_session", DataType::Int64, false),
        i("registration_ms"),
        s("artist"),
        s("song"),
        Field::new("length", DataType::Float64, true),
        s("artist_key"),
        s("title_key"),
        Field::new("raw_sha256", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
    ]))
});

pub static SPARKIFY_SONGS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("song_id", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("artist_id", DataType::Utf8, false),
        Field::new("artist_name", DataType::Utf8, false),
        Field::new("artist_location", DataType::Utf8, true),
        Field::new("artist_latitude", DataType::Float64, true),
        Field::new("artist_longitude", DataType::Float64, true),
        Field::new("year", DataType::Int64, true),
        Field::new("duration", DataType::Float64, true),
        Field::new("artist_key", DataType::Utf8, false),
        Field::new("title_key", DataType::Utf8, false),
        Field::new("raw_sha256", DataType::Utf8, false),
        Field::new("record", DataType::Int64, false),
    ]))
});

/// Streams from Spotify's "Download your data" export: extended streaming
/// history (`history = 'extended'`) and account data (`'account'`, minute
/// precision, no URIs). IP addresses and user agents stay in raw only.
pub static SPOTIFY_STREAMS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let b = |n: &str| Field::new(n, DataType::Boolean, true);
    Arc::new(Schema::new(vec![
        Field::new("stream_id", DataType::Utf8, false),
        Field::new("account", DataType::Utf8, false),
        Field::new("ts", ts_type(), false),
        Field::new("ms_played", DataType::Int64, false),
        Field::new("content_type", DataType::Utf8, false),
        Field::new("history", DataType::Utf8, false),
        s("track_uri"),
        s("track_name"),
        s("artist_name"),
        s("album_name"),
        s("episode_uri"),
        s("episode_name"),
        s("show_name"),
        s("audiobook_uri"),
        s("audiobook_title"),
        s("chapter_uri"),
        s("chapter_title"),
        s("reason_start"),
        s("reason_end"),
        b("shuffle"),
        b("skipped"),
        b("offline"),
        Field::new("offline_ts", ts_type(), true),
        b("incognito"),
        s("platform"),
        s("country"),
        s("artist_key"),
        s("title_key"),
        Field::new("raw_sha256", DataType::Utf8, false),
        Field::new("record", DataType::Int64, false),
    ]))
});

/// Every staging table with its schema.
pub fn tables() -> [(&'static str, SchemaRef); 3] {
    [
        (STG_SPARKIFY_EVENTS, SPARKIFY_EVENTS.clone()),
        (STG_SPARKIFY_SONGS, SPARKIFY_SONGS.clone()),
        (STG_SPOTIFY_STREAMS, SPOTIFY_STREAMS.clone()),
    ]
}
