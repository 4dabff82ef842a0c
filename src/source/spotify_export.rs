//! Spotify's "Download your data" exports: the lifetime history the API
//! never shows. Two families of files, found by name anywhere in the zip or
//! folder (the top folder's name varies):
//!
//! - extended streaming history, a JSON array per file (`endsong_N.json`,
//!   `Streaming_History_Audio_<years>_N.json`, `Streaming_History_Video_<years>.json`)
//!   in three key sets: 21 keys (`username`, `ip_addr_decrypted`,
//!   `user_agent_decrypted`), 19 keys (late 2024, `ip_addr`), 23 keys (2025+,
//!   four `audiobook_*` fields). `offline_timestamp` is in ms in old files
//!   and in seconds in new ones; records are not sorted by time.
//! - account data (`StreamingHistoryN.json`, `StreamingHistory_music_N.json`,
//!   `_podcast_N.json`, `_audiobook_N.json`): minute-precision `endTime`, names
//!   and `msPlayed`, no URIs.
//!
//! Every record becomes one staging row or one counted reject with its file
//! and record number. Unknown keys are ignored here and kept in raw. IP
//! addresses and user agents are never copied out of raw.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime};
use datafusion::arrow::array::{ArrayRef, BooleanBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use serde::Deserialize;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use super::normalize::key;
use crate::lake::manifest::{Accounting, Reject};
use crate::lake::staging::SPOTIFY_STREAMS;
pub use crate::lake::staging::STG_SPOTIFY_STREAMS as STG_STREAMS;

pub const SOURCE: &str = "spotify_export";
pub const KIND_EXTENDED: &str = "extended";
pub const KIND_ACCOUNT_MUSIC: &str = "account_music";
pub const KIND_ACCOUNT_PODCAST: &str = "account_podcast";
pub const KIND_ACCOUNT_AUDIOBOOK: &str = "account_audiobook";
/// A stream counts as a play from this many milliseconds on.
pub const PLAY_MS: i64 = 30_000;

/// What a file in an export is, by its name alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    History(&'static str),
    /// `Userdata.json`: whose export this is.
    Userdata,
}

fn digits_then_json(s: &str) -> bool {
    s.strip_suffix(".json").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Classifies a file by its base name; `None` for everything else in an export.
pub fn classify(name: &str) -> Option<FileKind> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    if base.eq_ignore_ascii_case("Userdata.json") {
        return Some(FileKind::Userdata);
    }
    if !base.ends_with(".json") {
        return None;
    }
    let kind = if base.strip_prefix("endsong_").is_some_and(digits_then_json)
        || base.starts_with("Streaming_History_Audio_")
        || base.starts_with("Streaming_History_Video_")
    {
        KIND_EXTENDED
    } else if base.strip_prefix("StreamingHistory_music_").is_some_and(digits_then_json)
        || base.strip_prefix("StreamingHistory").is_some_and(digits_then_json)
    {
        KIND_ACCOUNT_MUSIC
    } else if base.strip_prefix("StreamingHistory_podcast_").is_some_and(digits_then_json) {
        KIND_ACCOUNT_PODCAST
    } else if base.strip_prefix("StreamingHistory_audiobook_").is_some_and(digits_then_json) {
        KIND_ACCOUNT_AUDIOBOOK
    } else {
        return None;
    };
    Some(FileKind::History(kind))
}

/// The `username` of a `Userdata.json`, if it has one.
pub fn userdata_username(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Userdata {
        username: Option<String>,
    }
    serde_json::from_slice::<Userdata>(bytes).ok()?.username.filter(|u| !u.trim().is_empty())
}

/// The `username` of the first extended-history record that has one (old exports).
pub fn first_username(bytes: &[u8]) -> Option<String> {
    let mut found = None;
    let _ = for_each_element(bytes, &mut |_, v| {
        if found.is_none() {
            found = v.get("username").and_then(|u| u.as_str()).filter(|u| !u.is_empty()).map(String::from);
        }
    });
    found
}

#[derive(Deserialize)]
struct Extended<'a> {
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow, default)]
    username: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    platform: Option<Cow<'a, str>>,
    ms_played: i64,
    #[serde(borrow, default)]
    conn_country: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    master_metadata_track_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    master_metadata_album_artist_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    master_metadata_album_album_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    spotify_track_uri: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    episode_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    episode_show_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    spotify_episode_uri: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    audiobook_title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    audiobook_uri: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    audiobook_chapter_uri: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    audiobook_chapter_title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason_start: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason_end: Option<Cow<'a, str>>,
    #[serde(default)]
    shuffle: Option<bool>,
    #[serde(default)]
    skipped: Option<bool>,
    #[serde(default)]
    offline: Option<bool>,
    #[serde(default)]
    offline_timestamp: Option<f64>,
    #[serde(default)]
    incognito_mode: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountRow<'a> {
    #[serde(borrow)]
    end_time: Cow<'a, str>,
    ms_played: i64,
    #[serde(borrow, default)]
    artist_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    track_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    podcast_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    episode_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "audiobookTitle")]
    audiobook_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "chapterTitle")]
    chapter_name: Option<Cow<'a, str>>,
}

/// One row's values before they go into the builders.
#[derive(Default)]
struct Row<'a> {
    ts_us: i64,
    ms_played: i64,
    content_type: &'static str,
    history: &'static str,
    track_uri: Option<&'a str>,
    track_name: Option<&'a str>,
    artist_name: Option<&'a str>,
    album_name: Option<&'a str>,
    episode_uri: Option<&'a str>,
    episode_name: Option<&'a str>,
    show_name: Option<&'a str>,
    audiobook_uri: Option<&'a str>,
    audiobook_title: Option<&'a str>,
    chapter_uri: Option<&'a str>,
    chapter_title: Option<&'a str>,
    reason_start: Option<&'a str>,
    reason_end: Option<&'a str>,
    shuffle: Option<bool>,
    skipped: Option<bool>,
    offline: Option<bool>,
    offline_ts_us: Option<i64>,
    incognito: Option<bool>,
    platform: Option<&'a str>,
    country: Option<&'a str>,
}

struct Columns {
    stream_id: StringBuilder,
    account: StringBuilder,
    ts: TimestampMicrosecondBuilder,
    ms_played: Int64Builder,
    content_type: StringBuilder,
    history: StringBuilder,
    strings: [StringBuilder; 13],
    shuffle: BooleanBuilder,
    skipped: BooleanBuilder,
    offline: BooleanBuilder,
    offline_ts: TimestampMicrosecondBuilder,
    incognito: BooleanBuilder,
    platform: StringBuilder,
    country: StringBuilder,
    artist_key: StringBuilder,
    title_key: StringBuilder,
    raw_sha256: StringBuilder,
    record: Int64Builder,
}

impl Columns {
    fn new() -> Self {
        Columns {
            stream_id: StringBuilder::new(),
            account: StringBuilder::new(),
            ts: TimestampMicrosecondBuilder::new(),
            ms_played: Int64Builder::new(),
            content_type: StringBuilder::new(),
            history: StringBuilder::new(),
            strings: std::array::from_fn(|_| StringBuilder::new()),
            shuffle: BooleanBuilder::new(),
            skipped: BooleanBuilder::new(),
            offline: BooleanBuilder::new(),
            offline_ts: TimestampMicrosecondBuilder::new(),
            incognito: BooleanBuilder::new(),
            platform: StringBuilder::new(),
            country: StringBuilder::new(),
            artist_key: StringBuilder::new(),
            title_key: StringBuilder::new(),
            raw_sha256: StringBuilder::new(),
            record: Int64Builder::new(),
        }
    }

    fn push(&mut self, account: &str, r: &Row<'_>, raw_sha256: &str, record: u64) {
        // The natural key: extended (account, ts, uri, ms_played); account data (endTime, artist, track, msPlayed).
        let ident = r.track_uri.or(r.episode_uri).or(r.chapter_uri).or(r.audiobook_uri);
        let id = match ident {
            Some(uri) => stream_id(&[r.history, account, &r.ts_us.to_string(), uri, &r.ms_played.to_string()]),
            None => stream_id(&[
                r.history,
                account,
                &r.ts_us.to_string(),
                r.artist_name.or(r.show_name).or(r.audiobook_title).unwrap_or(""),
                r.track_name.or(r.episode_name).or(r.chapter_title).unwrap_or(""),
                &r.ms_played.to_string(),
            ]),
        };
        self.stream_id.append_value(id);
        self.account.append_value(account);
        self.ts.append_value(r.ts_us);
        self.ms_played.append_value(r.ms_played);
        self.content_type.append_value(r.content_type);
        self.history.append_value(r.history);
        let values = [
            r.track_uri,
            r.track_name,
            r.artist_name,
            r.album_name,
            r.episode_uri,
            r.episode_name,
            r.show_name,
            r.audiobook_uri,
            r.audiobook_title,
            r.chapter_uri,
            r.chapter_title,
            r.reason_start,
            r.reason_end,
        ];
        for (b, v) in self.strings.iter_mut().zip(values) {
            b.append_option(v);
        }
        self.shuffle.append_option(r.shuffle);
        self.skipped.append_option(r.skipped);
        self.offline.append_option(r.offline);
        self.offline_ts.append_option(r.offline_ts_us);
        self.incognito.append_option(r.incognito);
        self.platform.append_option(r.platform);
        self.country.append_option(r.country);
        let (artist, title) = match r.content_type {
            "episode" => (r.show_name, r.episode_name),
            "audiobook" => (r.audiobook_title, r.chapter_title),
            _ => (r.artist_name, r.track_name),
        };
        self.artist_key.append_option(artist.map(key));
        self.title_key.append_option(title.map(key));
        self.raw_sha256.append_value(raw_sha256);
        self.record.append_value(record as i64);
    }

    fn finish(mut self) -> RecordBatch {
        let strings: Vec<ArrayRef> = self.strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.stream_id.finish()),
            Arc::new(self.account.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.ms_played.finish()),
            Arc::new(self.content_type.finish()),
            Arc::new(self.history.finish()),
        ];
        cols.extend(strings);
        cols.extend([
            Arc::new(self.shuffle.finish()) as ArrayRef,
            Arc::new(self.skipped.finish()),
            Arc::new(self.offline.finish()),
            Arc::new(self.offline_ts.finish()),
            Arc::new(self.incognito.finish()),
            Arc::new(self.platform.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.artist_key.finish()),
            Arc::new(self.title_key.finish()),
            Arc::new(self.raw_sha256.finish()),
            Arc::new(self.record.finish()),
        ]);
        RecordBatch::try_new(SPOTIFY_STREAMS.clone(), cols).expect("columns match SPOTIFY_STREAMS")
    }
}

fn stream_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"spotify_export");
    for p in parts {
        h.update(b"\x1f");
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// One history file, parsed.
pub struct ParsedStreams {
    pub batch: RecordBatch,
    pub accounting: Accounting,
    pub rejects: Vec<Reject>,
}

/// Calls `each(record_number, value)` for every element of a top-level JSON
/// array without holding the whole array in memory. An error is a broken
/// file: what came before it was delivered.
fn for_each_element(bytes: &[u8], each: &mut dyn FnMut(u64, serde_json::Value)) -> Result<(), serde_json::Error> {
    struct Seed<'f>(&'f mut dyn FnMut(u64, serde_json::Value));
    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array of streams")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut n = 0;
            while let Some(v) = seq.next_element::<serde_json::Value>()? {
                n += 1;
                (self.0)(n, v);
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Seed(each).deserialize(&mut de)?;
    de.end()
}

fn parse_ts_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_micros())
}

/// Account data's `endTime`: `YYYY-MM-DD HH:MM`, UTC.
fn parse_end_time(s: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

/// `offline_timestamp` is in milliseconds in old files and in seconds in new
/// ones; 0 means none. Values past 10^11 cannot be seconds (year 5138).
fn offline_ts_us(v: f64) -> Option<i64> {
    if !(v.is_finite() && v > 0.0) {
        return None;
    }
    Some(if v >= 1e11 { (v * 1000.0) as i64 } else { (v * 1_000_000.0) as i64 })
}

fn nonempty<'s>(s: &'s Option<Cow<'_, str>>) -> Option<&'s str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Parses one record into `cols`; returns its time, or why it is rejected.
fn parse_record(
    kind: &str,
    n: u64,
    value: &serde_json::Value,
    account: &str,
    raw_sha256: &str,
    cols: &mut Columns,
) -> Result<i64, String> {
    if kind == KIND_EXTENDED {
        let e = Extended::deserialize(value).map_err(|err| format!("not a streaming history record: {err}"))?;
        let row = extended_row(&e)?;
        // Old files name the account on every record.
        cols.push(nonempty(&e.username).unwrap_or(account), &row, raw_sha256, n);
        Ok(row.ts_us)
    } else {
        let a = AccountRow::deserialize(value).map_err(|err| format!("not an account-data record: {err}"))?;
        let row = account_data_row(kind, &a)?;
        cols.push(account, &row, raw_sha256, n);
        Ok(row.ts_us)
    }
}

/// An extended history record as a row, or why it is rejected.
fn extended_row<'e>(e: &'e Extended<'_>) -> Result<Row<'e>, String> {
    let ts_us = parse_ts_rfc3339(&e.ts).ok_or_else(|| format!("ts `{}` is not an RFC 3339 time", e.ts))?;
    if e.ms_played < 0 {
        return Err(format!("negative ms_played {}", e.ms_played));
    }
    Ok(Row {
        ts_us,
        ms_played: e.ms_played,
        content_type: extended_content_type(e),
        history: "extended",
        track_uri: nonempty(&e.spotify_track_uri),
        track_name: nonempty(&e.master_metadata_track_name),
        artist_name: nonempty(&e.master_metadata_album_artist_name),
        album_name: nonempty(&e.master_metadata_album_album_name),
        episode_uri: nonempty(&e.spotify_episode_uri),
        episode_name: nonempty(&e.episode_name),
        show_name: nonempty(&e.episode_show_name),
        audiobook_uri: nonempty(&e.audiobook_uri),
        audiobook_title: nonempty(&e.audiobook_title),
        chapter_uri: nonempty(&e.audiobook_chapter_uri),
        chapter_title: nonempty(&e.audiobook_chapter_title),
        reason_start: nonempty(&e.reason_start),
        reason_end: nonempty(&e.reason_end),
        shuffle: e.shuffle,
        skipped: e.skipped,
        offline: e.offline,
        offline_ts_us: e.offline_timestamp.and_then(offline_ts_us),
        incognito: e.incognito_mode,
        platform: nonempty(&e.platform),
        country: nonempty(&e.conn_country),
    })
}

/// What an extended history record played: an episode, an audiobook, a track, or unknown.
fn extended_content_type(e: &Extended<'_>) -> &'static str {
    if nonempty(&e.spotify_episode_uri).is_some() || nonempty(&e.episode_name).is_some() {
        "episode"
    } else if nonempty(&e.audiobook_chapter_uri).is_some() || nonempty(&e.audiobook_title).is_some() {
        "audiobook"
    } else if nonempty(&e.spotify_track_uri).is_some() || nonempty(&e.master_metadata_track_name).is_some() {
        "track"
    } else {
        "unknown"
    }
}

/// An account-data record of `kind` as a row, or why it is rejected.
fn account_data_row<'a>(kind: &str, a: &'a AccountRow<'_>) -> Result<Row<'a>, String> {
    let ts_us =
        parse_end_time(&a.end_time).ok_or_else(|| format!("endTime `{}` is not `YYYY-MM-DD HH:MM`", a.end_time))?;
    if a.ms_played < 0 {
        return Err(format!("negative msPlayed {}", a.ms_played));
    }
    let mut row = Row { ts_us, ms_played: a.ms_played, history: "account", ..Default::default() };
    match kind {
        KIND_ACCOUNT_PODCAST => {
            row.content_type = "episode";
            row.show_name = nonempty(&a.podcast_name).or(nonempty(&a.artist_name));
            row.episode_name = nonempty(&a.episode_name).or(nonempty(&a.track_name));
        }
        KIND_ACCOUNT_AUDIOBOOK => {
            row.content_type = "audiobook";
            row.audiobook_title = nonempty(&a.audiobook_name).or(nonempty(&a.artist_name));
            row.chapter_title = nonempty(&a.chapter_name).or(nonempty(&a.track_name));
        }
        _ => {
            row.content_type = "track";
            row.artist_name = nonempty(&a.artist_name);
            row.track_name = nonempty(&a.track_name);
        }
    }
    Ok(row)
}

fn rfc3339(us: i64) -> Option<String> {
    DateTime::from_timestamp_micros(us).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Parses one history file of `kind`. `account` names whose export it is
/// when the records do not (`username` in old extended files wins).
pub fn parse(kind: &str, bytes: &[u8], account: &str, raw_sha256: &str, label: &str) -> ParsedStreams {
    let bytes = super::normalize::without_bom(bytes);
    let history = if kind == KIND_EXTENDED { "extended" } else { "account" };
    let mut acc = Accounting::new(SOURCE, history);
    acc.files = 1;
    let mut rejects = vec![];
    let mut cols = Columns::new();
    let mut span = (i64::MAX, i64::MIN);
    let may_hold_nul = super::normalize::may_hold_nul(bytes);
    let mut changed = vec![];
    let result = for_each_element(bytes, &mut |n, mut value| {
        acc.read += 1;
        let nul_paths = if may_hold_nul { super::normalize::remove_nul_json(&mut value) } else { vec![] };
        match parse_record(kind, n, &value, account, raw_sha256, &mut cols) {
            Ok(ts) => {
                acc.kept += 1;
                span = (span.0.min(ts), span.1.max(ts));
                if !nul_paths.is_empty() {
                    changed.push(Reject::nul_removed(label, n, &nul_paths));
                }
            }
            Err(reason) => {
                acc.rejected += 1;
                rejects.push(Reject::new(label, n, format!("record {n}: {reason}")));
            }
        }
    });
    if let Err(e) = result {
        // What came before the break was kept; the rest of the file is one reject.
        acc.read += 1;
        acc.rejected += 1;
        let n = acc.read;
        rejects.push(Reject::new(label, n, format!("record {n}: the file is not a complete JSON array: {e}")));
    }
    acc.nul_removed = changed.len() as u64;
    rejects.extend(changed);
    let batch = cols.finish();
    if batch.num_rows() > 0 {
        acc.first = rfc3339(span.0);
        acc.last = rfc3339(span.1);
        let ms = batch.column_by_name("ms_played").expect("column");
        let ms = datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Int64Type>(ms);
        acc.plays = ms.values().iter().filter(|&&v| v >= PLAY_MS).count() as u64;
    }
    ParsedStreams { batch, accounting: acc, rejects }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimestampMicrosecondType;

    #[test]
    fn files_are_recognised_by_name_anywhere() {
        let h = |k| Some(FileKind::History(k));
        assert_eq!(classify("Spotify Extended Streaming History/endsong_3.json"), h(KIND_EXTENDED));
        assert_eq!(classify("x/Streaming_History_Audio_2019-2021_0.json"), h(KIND_EXTENDED));
        assert_eq!(classify("Streaming_History_Video_2020-2024.json"), h(KIND_EXTENDED));
        assert_eq!(classify("MyData/StreamingHistory0.json"), h(KIND_ACCOUNT_MUSIC));
        assert_eq!(classify("MyData/StreamingHistory_music_12.json"), h(KIND_ACCOUNT_MUSIC));
        assert_eq!(classify("MyData/StreamingHistory_podcast_0.json"), h(KIND_ACCOUNT_PODCAST));
        assert_eq!(classify("MyData/StreamingHistory_audiobook_1.json"), h(KIND_ACCOUNT_AUDIOBOOK));
        assert_eq!(classify("MyData/Userdata.json"), Some(FileKind::Userdata));
        for other in ["MyData/Playlist1.json", "endsong_.json", "StreamingHistory_music_x.json", "ReadMeFirst.pdf"] {
            assert_eq!(classify(other), None, "{other}");
        }
    }

    #[test]
    fn offline_timestamps_in_ms_and_in_seconds_mean_the_same_instant() {
        // 2024-10-01T07:00:30Z, once in ms (old files) and once in seconds (new ones).
        assert_eq!(offline_ts_us(1_727_766_030_000.0), Some(1_727_766_030_000_000));
        assert_eq!(offline_ts_us(1_727_766_030.0), Some(1_727_766_030_000_000));
        assert_eq!(offline_ts_us(0.0), None);
        let json = r#"[{"ts":"2024-10-01T07:03:59Z","ms_played":5,"offline_timestamp":1727766030000,
                       "spotify_track_uri":"spotify:track:a","master_metadata_track_name":"t"},
                      {"ts":"2024-10-01T07:03:58Z","ms_played":5,"offline_timestamp":1727766030,
                       "spotify_track_uri":"spotify:track:b","master_metadata_track_name":"t"}]"#;
        let p = parse(KIND_EXTENDED, json.as_bytes(), "me", "sha", "f");
        let col = p.batch.column_by_name("offline_ts").unwrap().as_primitive::<TimestampMicrosecondType>();
        assert_eq!(col.value(0), col.value(1));
        assert_eq!(p.batch.column_by_name("account").unwrap().as_string::<i32>().value(0), "me");
        assert!(p.batch.column_by_name("skipped").unwrap().is_null(0), "a missing skipped is null");
    }

    #[test]
    fn account_data_end_times_are_minute_precision_utc() {
        let json = r#"[{"endTime":"2019-02-04 21:40","artistName":"A","trackName":"T","msPlayed":2345},
                      {"endTime":"04/02/2019","artistName":"A","trackName":"T","msPlayed":1}]"#;
        let p = parse(KIND_ACCOUNT_MUSIC, json.as_bytes(), "me", "sha", "StreamingHistory0.json");
        assert_eq!((p.accounting.kept, p.accounting.rejected), (1, 1));
        assert_eq!(p.rejects[0].line, 2);
        assert!(p.rejects[0].reason.contains("endTime `04/02/2019`"), "{:?}", p.rejects);
        let ts = p.batch.column_by_name("ts").unwrap().as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_549_316_400_000_000);
        assert_eq!(p.accounting.first.as_deref(), Some("2019-02-04T21:40:00Z"));
        // The same file saved by an editor that starts it with a byte order mark.
        let bom = format!("\u{feff}{json}");
        let p = parse(KIND_ACCOUNT_MUSIC, bom.as_bytes(), "me", "sha", "StreamingHistory0.json");
        assert_eq!((p.accounting.kept, p.accounting.rejected), (1, 1));
    }
}
