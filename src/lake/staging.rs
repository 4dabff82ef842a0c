//! The staging tables' names and Arrow schemas: the contract between the
//! parsers that write staging (`source`) and the models that read it
//! (`model`). Changing a schema here is a parser change: `tunelake
//! reprocess` rewrites staging from raw.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const STG_SPARKIFY_EVENTS: &str = "stg_sparkify_events";
pub const STG_SPARKIFY_SONGS: &str = "stg_sparkify_songs";
pub const STG_SPOTIFY_STREAMS: &str = "stg_spotify_streams";
pub const STG_SPOTIFY_API_PLAYS: &str = "stg_spotify_api_plays";
pub const STG_SPOTIFY_API_ENTITIES: &str = "stg_spotify_api_entities";
pub const STG_SPOTIFY_API_USERS: &str = "stg_spotify_api_users";

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

/// The order of the rows in each staging file of stg_sparkify_events that
/// says it is sorted ([`crate::lake::manifest::StagingFile::sorted`]): one
/// day of one raw file, by time, then event id, then line.
pub const SPARKIFY_EVENTS_ORDER: &[&str] = &["ts", "event_id", "raw_sha256", "line"];

/// The order a sorted staging file of `table` is in (none for tables whose files are not sorted).
pub fn order_of(table: &str) -> &'static [&'static str] {
    if table == STG_SPARKIFY_EVENTS { SPARKIFY_EVENTS_ORDER } else { &[] }
}

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

/// Recently-played items from the Spotify Web API, one row per (play,
/// artist of its track): `artist_position` 0 is the primary artist.
pub static SPOTIFY_API_PLAYS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("play_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("played_at", ts_type(), false),
        Field::new("track_id", DataType::Utf8, false),
        Field::new("track_name", DataType::Utf8, false),
        Field::new("duration_ms", DataType::Int64, true),
        Field::new("explicit", DataType::Boolean, true),
        s("album_id"),
        s("album_name"),
        s("album_release_date"),
        Field::new("artist_position", DataType::Int64, false),
        s("artist_id"),
        s("artist_name"),
        s("context_type"),
        s("context_uri"),
        Field::new("raw_sha256", DataType::Utf8, false),
        Field::new("record", DataType::Int64, false),
    ]))
});

/// `/v1/me` as fetched, in fetch order (`seq`): the latest says the user's level.
pub static SPOTIFY_API_USERS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        s("display_name"),
        s("country"),
        s("product"),
        Field::new("seq", DataType::Int64, false),
        Field::new("raw_sha256", DataType::Utf8, false),
    ]))
});

/// Tracks, artists and albums fetched one by one to enrich the model.
pub static SPOTIFY_API_ENTITIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, true),
        s("id"),
        s("name"),
        Field::new("popularity", DataType::Int64, true),
        s("genres"),
        s("release_date"),
        s("album_type"),
        Field::new("duration_ms", DataType::Int64, true),
        s("label"),
        s("raw_sha256"),
    ]))
});

/// Every staging table with its schema.
pub fn tables() -> [(&'static str, SchemaRef); 6] {
    [
        (STG_SPARKIFY_EVENTS, SPARKIFY_EVENTS.clone()),
        (STG_SPARKIFY_SONGS, SPARKIFY_SONGS.clone()),
        (STG_SPOTIFY_STREAMS, SPOTIFY_STREAMS.clone()),
        (STG_SPOTIFY_API_PLAYS, SPOTIFY_API_PLAYS.clone()),
        (STG_SPOTIFY_API_ENTITIES, SPOTIFY_API_ENTITIES.clone()),
        (STG_SPOTIFY_API_USERS, SPOTIFY_API_USERS.clone()),
    ]
}
