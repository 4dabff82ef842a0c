//! The Sparkify app's formats: song metadata (one or more JSON objects per
//! file) and event logs (NDJSON, one event per line). Parsing turns a raw
//! file's bytes into typed staging rows plus an account of every line: kept,
//! filtered by page, or rejected with its line number and reason.
//!
//! Staging keeps every event, not only plays: the users dimension takes each
//! user's latest level from their latest event of any page.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use datafusion::arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use datafusion::arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use datafusion::arrow::record_batch::RecordBatch;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use sha2::{Digest, Sha256};

use super::normalize::{key, key_into, may_hold_nul, repair_mojibake, without_bom};
use crate::lake::manifest::{Accounting, Reject};

mod scan;

pub const SOURCE: &str = "sparkify";
pub const KIND_SONG: &str = "song";
pub const KIND_LOG: &str = "log";
use crate::lake::staging::{SPARKIFY_EVENTS as EVENTS_SCHEMA, SPARKIFY_SONGS as SONGS_SCHEMA};
pub use crate::lake::staging::{STG_SPARKIFY_EVENTS as STG_EVENTS, STG_SPARKIFY_SONGS as STG_SONGS};
/// The page whose events are plays.
pub const PLAY_PAGE: &str = "NextSong";

// ---------------------------------------------------------------- events

/// `userId` is a string in the course's logs; accept a number too.
fn str_or_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or an integer")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(borrow)]
    artist: Option<Cow<'a, str>>,
    #[serde(borrow)]
    auth: Option<Cow<'a, str>>,
    #[serde(borrow)]
    first_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    gender: Option<Cow<'a, str>>,
    item_in_session: i64,
    #[serde(borrow)]
    last_name: Option<Cow<'a, str>>,
    length: Option<f64>,
    #[serde(borrow)]
    level: Option<Cow<'a, str>>,
    #[serde(borrow)]
    location: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    page: Cow<'a, str>,
    registration: Option<f64>,
    session_id: i64,
    #[serde(borrow)]
    song: Option<Cow<'a, str>>,
    status: Option<i64>,
    ts: i64,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "str_or_int")]
    user_id: Option<Cow<'a, str>>,
}

/// The most bytes one text value of an event may hold. Names, locations and
/// user agents are far shorter; one value of many megabytes would make every
/// later build that sorts its month run out of memory, so its line is rejected.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The first text field of `event` longer than [`MAX_TEXT_BYTES`], and its length.
fn oversized(event: &Event<'_>) -> Option<(&'static str, usize)> {
    let fields = [
        ("artist", &event.artist),
        ("auth", &event.auth),
        ("firstName", &event.first_name),
        ("gender", &event.gender),
        ("lastName", &event.last_name),
        ("level", &event.level),
        ("location", &event.location),
        ("method", &event.method),
        ("song", &event.song),
        ("userAgent", &event.user_agent),
        ("userId", &event.user_id),
    ];
    let long = |v: &Option<Cow<'_, str>>| v.as_ref().map_or(0, |s| s.len());
    if event.page.len() > MAX_TEXT_BYTES {
        return Some(("page", event.page.len()));
    }
    fields.into_iter().map(|(name, v)| (name, long(v))).find(|(_, len)| *len > MAX_TEXT_BYTES)
}

/// Removes U+0000 from every text field of `event`; the fields that held one.
fn remove_nul(event: &mut Event<'_>) -> Vec<&'static str> {
    let mut found = vec![];
    if super::normalize::remove_nul(&mut event.page) {
        found.push("page");
    }
    let fields = [
        ("artist", &mut event.artist),
        ("auth", &mut event.auth),
        ("firstName", &mut event.first_name),
        ("gender", &mut event.gender),
        ("lastName", &mut event.last_name),
        ("level", &mut event.level),
        ("location", &mut event.location),
        ("method", &mut event.method),
        ("song", &mut event.song),
        ("userAgent", &mut event.user_agent),
        ("userId", &mut event.user_id),
    ];
    for (name, value) in fields {
        if value.as_mut().is_some_and(super::normalize::remove_nul) {
            found.push(name);
        }
    }
    found
}

/// Column builders for one date's events.
struct EventColumns {
    event_id: StringBuilder,
    ts: TimestampMicrosecondBuilder,
    strings: [StringBuilder; 9], // user_id auth first_name last_name gender level location user_agent page
    method: StringBuilder,
    status: Int64Builder,
    session_id: Int64Builder,
    item_in_session: Int64Builder,
    registration_ms: Int64Builder,
    artist: StringBuilder,
    song: StringBuilder,
    length: Float64Builder,
    artist_key: StringBuilder,
    title_key: StringBuilder,
    raw_sha256: StringBuilder,
    line: Int64Builder,
    /// Where the matching keys are folded before they are appended.
    key: String,
}

impl EventColumns {
    fn new() -> Self {
        EventColumns {
            event_id: StringBuilder::new(),
            ts: TimestampMicrosecondBuilder::new(),
            strings: std::array::from_fn(|_| StringBuilder::new()),
            method: StringBuilder::new(),
            status: Int64Builder::new(),
            session_id: Int64Builder::new(),
            item_in_session: Int64Builder::new(),
            registration_ms: Int64Builder::new(),
            artist: StringBuilder::new(),
            song: StringBuilder::new(),
            length: Float64Builder::new(),
            artist_key: StringBuilder::new(),
            title_key: StringBuilder::new(),
            raw_sha256: StringBuilder::new(),
            line: Int64Builder::new(),
            key: String::new(),
        }
    }

    fn push(&mut self, row: &Row<'_>, raw_sha256: &str) {
        let (e, line) = (&row.event, row.line);
        let user_id = e.user_id.as_deref().filter(|u| !u.is_empty());
        self.event_id.append_value(std::str::from_utf8(&row.id).expect("hex digits are ASCII"));
        self.ts.append_value(e.ts * 1000);
        let fields = [
            user_id,
            e.auth.as_deref(),
            e.first_name.as_deref(),
            e.last_name.as_deref(),
            e.gender.as_deref(),
            e.level.as_deref(),
            e.location.as_deref(),
            e.user_agent.as_deref(),
            Some(&*e.page),
        ];
        for (b, v) in self.strings.iter_mut().zip(fields) {
            b.append_option(v);
        }
        self.method.append_option(e.method.as_deref());
        self.status.append_option(e.status);
        self.session_id.append_value(e.session_id);
        self.item_in_session.append_value(e.item_in_session);
        self.registration_ms.append_option(e.registration.map(|r| r.round() as i64));
        let artist = e.artist.as_deref().map(repair_mojibake);
        let song = e.song.as_deref().map(repair_mojibake);
        for (name, keys) in [(&artist, &mut self.artist_key), (&song, &mut self.title_key)] {
            match name {
                Some(name) => {
                    key_into(name, &mut self.key);
                    keys.append_value(&self.key);
                }
                None => keys.append_null(),
            }
        }
        self.artist.append_option(artist);
        self.song.append_option(song);
        self.length.append_option(e.length);
        self.raw_sha256.append_value(raw_sha256);
        self.line.append_value(line as i64);
    }

    /// The columns, in the order the rows were pushed.
    fn finish(mut self) -> RecordBatch {
        let [user_id, auth, first, last, gender, level, location, agent, page] =
            self.strings.each_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.ts.finish()),
            user_id,
            auth,
            first,
            last,
            gender,
            level,
            location,
            agent,
            page,
            Arc::new(self.method.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.item_in_session.finish()),
            Arc::new(self.registration_ms.finish()),
            Arc::new(self.artist.finish()),
            Arc::new(self.song.finish()),
            Arc::new(self.length.finish()),
            Arc::new(self.artist_key.finish()),
            Arc::new(self.title_key.finish()),
            Arc::new(self.raw_sha256.finish()),
            Arc::new(self.line.finish()),
        ];
        RecordBatch::try_new(EVENTS_SCHEMA.clone(), cols).expect("columns match EVENTS_SCHEMA")
    }
}

/// An event kept, with its id and line, until its day's rows are sorted.
struct Row<'a> {
    event: Event<'a>,
    id: [u8; 32],
    line: u64,
}

/// One day's rows of a file as a staging batch, in staging's order
/// ([`crate::lake::staging::SPARKIFY_EVENTS_ORDER`]: time, event id, line).
/// Logs are written in time order, but events at the same millisecond come
/// in any order of their ids, so nearly every day needs a sort. Sorting the
/// rows' keys before the columns are built costs less than sorting the
/// built columns (`take` of 23 columns).
fn day_batch(rows: &[Row<'_>], raw_sha256: &str) -> RecordBatch {
    let mut order: Vec<(i64, [u8; 32], u64, usize)> =
        rows.iter().enumerate().map(|(i, r)| (r.event.ts, r.id, r.line, i)).collect();
    order.sort_unstable();
    let mut cols = EventColumns::new();
    for &(.., i) in &order {
        cols.push(&rows[i], raw_sha256);
    }
    cols.finish()
}

/// Batches of one file's events of one day (each in staging's order, as
/// [`parse_log_lines`] gives them) as one batch in that order.
pub fn events_in_order(batches: &[RecordBatch]) -> RecordBatch {
    match batches {
        [one] => one.clone(),
        _ => in_time_order(concat_batches(&EVENTS_SCHEMA, batches).expect("batches of EVENTS_SCHEMA")),
    }
}

/// `batch` (one file's events of one day) in staging's order,
/// [`crate::lake::staging::SPARKIFY_EVENTS_ORDER`]: by time, event id and
/// line (one file has one raw_sha256). Logs are written in time order, so
/// this is nearly always a check that finds nothing to do.
fn in_time_order(batch: RecordBatch) -> RecordBatch {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    let column = |name: &str| batch.column_by_name(name).expect("staging has the column").clone();
    let (ts, id, line) = (column("ts"), column("event_id"), column("line"));
    let key = |i: usize| {
        (
            ts.as_primitive::<TimestampMicrosecondType>().value(i),
            id.as_string::<i32>().value(i),
            line.as_primitive::<Int64Type>().value(i),
        )
    };
    if (1..batch.num_rows()).all(|i| key(i - 1) <= key(i)) {
        return batch;
    }
    sorted_by(&batch, &["ts", "event_id", "line"])
}

/// `batch`'s rows sorted by the columns named, ascending, nulls first.
fn sorted_by(batch: &RecordBatch, columns: &[&str]) -> RecordBatch {
    let by: Vec<SortColumn> = columns
        .iter()
        .map(|c| SortColumn { values: batch.column_by_name(c).expect("a staging column").clone(), options: None })
        .collect();
    let order = lexsort_to_indices(&by, None).expect("the sort columns have one length");
    take_record_batch(batch, &order).expect("indices are in range")
}

/// A Sparkify event's id: its natural key (`userId`, `sessionId`,
/// `itemInSession`) and its time `ts` (ms), hashed. The same event seen in two
/// files has the same time; two events that share the three ids at different
/// times (a log whose session ids restart) are two plays. With the time in the
/// key, telling copies apart never looks beyond the event's own month, which
/// is what lets `build` recompute one month alone.
pub fn event_id(user_id: &str, session_id: i64, item_in_session: i64, ts_ms: i64) -> String {
    let mut hex = [0u8; 32];
    String::from(event_id_into(user_id, session_id, item_in_session, ts_ms, &mut hex))
}

/// [`event_id`] written into `out`, without formatting machinery or
/// allocation (it ran once per event: 4 % of an ingest's CPU).
fn event_id_into<'a>(
    user_id: &str,
    session_id: i64,
    item_in_session: i64,
    ts_ms: i64,
    out: &'a mut [u8; 32],
) -> &'a str {
    let mut h = Sha256::new();
    h.update(b"sparkify\x1f");
    h.update(user_id.as_bytes());
    let mut n = itoa::Buffer::new();
    for v in [session_id, item_in_session, ts_ms] {
        h.update(b"\x1f");
        h.update(n.format(v).as_bytes());
    }
    hex::encode_to_slice(&h.finalize()[..16], out).expect("16 bytes are 32 hex digits");
    std::str::from_utf8(out).expect("hex digits are ASCII")
}

/// One log file, parsed.
pub struct ParsedLog {
    /// Rows by UTC date of `ts`, for the `date=` partitions.
    pub by_date: BTreeMap<NaiveDate, RecordBatch>,
    pub accounting: Accounting,
    pub rejects: Vec<Reject>,
}

fn reject(file: &str, line: u64, reason: impl Into<String>) -> Reject {
    Reject::new(file, line, reason)
}

/// Parses an NDJSON event log. `label` names the file in rejects.
pub fn parse_log(bytes: &[u8], raw_sha256: &str, label: &str) -> ParsedLog {
    parse_log_lines(bytes, 1, raw_sha256, label)
}

/// Parses whole lines of an NDJSON event log, the first of which is line
/// `first_line` of its file (a piece of a big file: `super::chunks`). The
/// accounting counts one file for the piece that starts at line 1.
pub fn parse_log_lines(bytes: &[u8], first_line: u64, raw_sha256: &str, label: &str) -> ParsedLog {
    let bytes = if first_line == 1 { without_bom(bytes) } else { bytes };
    let mut log = LogLines::new(label, first_line == 1);
    for (i, line) in lines(bytes).enumerate() {
        let lineno = first_line + i as u64;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        log.acc.read += 1;
        match checked_event(line) {
            Ok(event) => log.keep(lineno, event),
            Err(reason) => log.reject(lineno, reason),
        }
    }
    log.finish(raw_sha256)
}

/// What the lines of one log (or piece of one) have given so far.
struct LogLines<'a> {
    /// The file's name in rejects.
    label: &'a str,
    acc: Accounting,
    rejects: Vec<Reject>,
    days: BTreeMap<NaiveDate, Vec<Row<'a>>>,
    /// Events by page, not plays: counted under the page's own text, named
    /// "page=<page>" once at the end.
    filtered: HashMap<Cow<'a, str>, u64>,
}

impl<'a> LogLines<'a> {
    fn new(label: &'a str, first_piece: bool) -> Self {
        let mut acc = Accounting::new(SOURCE, "events");
        acc.files = u64::from(first_piece);
        LogLines { label, acc, rejects: vec![], days: BTreeMap::new(), filtered: HashMap::new() }
    }

    /// Counts line `lineno` rejected, for `reason`.
    #[inline]
    fn reject(&mut self, lineno: u64, reason: String) {
        self.acc.rejected += 1;
        self.rejects.push(reject(self.label, lineno, reason));
    }

    /// Keeps line `lineno`'s event: counted, given its id, and added to its day.
    #[inline]
    fn keep(&mut self, lineno: u64, checked: CheckedEvent<'a>) {
        let CheckedEvent { event, date, is_play, nul_fields } = checked;
        if is_play {
            self.acc.plays += 1;
        } else {
            *self.filtered.entry(event.page.clone()).or_default() += 1;
        }
        self.acc.kept += 1;
        if !nul_fields.is_empty() {
            self.acc.nul_removed += 1;
            self.rejects.push(Reject::nul_removed(self.label, lineno, &nul_fields));
        }
        let user_id = event.user_id.as_deref().filter(|u| !u.is_empty());
        let mut id = [0u8; 32];
        event_id_into(user_id.unwrap_or(""), event.session_id, event.item_in_session, event.ts, &mut id);
        self.days.entry(date).or_default().push(Row { event, id, line: lineno });
    }

    /// The log parsed: the filtered pages named, each day's rows a batch.
    fn finish(self, raw_sha256: &str) -> ParsedLog {
        let mut acc = self.acc;
        for (page, n) in self.filtered {
            *acc.filtered.entry(format!("page={page}")).or_default() += n;
        }
        let by_date = self.days.into_iter().map(|(d, rows)| (d, day_batch(&rows, raw_sha256))).collect();
        ParsedLog { by_date, accounting: acc, rejects: self.rejects }
    }
}

/// A line's event that passed every check, with what the checks found.
struct CheckedEvent<'a> {
    event: Event<'a>,
    /// UTC date of `ts`.
    date: NaiveDate,
    is_play: bool,
    /// The fields U+0000 was removed from.
    nul_fields: Vec<&'static str>,
}

/// The event on one line (without its line break), or why the line is rejected.
#[inline]
fn checked_event(line: &[u8]) -> Result<CheckedEvent<'_>, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8 at byte {}", e.valid_up_to()))?;
    let mut event: Event<'_> = scan::event(text)
        .map_or_else(|| serde_json::from_str(text), Ok)
        .map_err(|e| format!("not a Sparkify event: {e}"))?;
    let nul_fields = if may_hold_nul(line) { remove_nul(&mut event) } else { vec![] };
    if let Some((field, len)) = oversized(&event) {
        return Err(format!("{field} is {len} bytes, past the {MAX_TEXT_BYTES} a text value may hold"));
    }
    let is_play = event.page == PLAY_PAGE;
    if is_play && let Some(p) = play_problem(&event) {
        return Err(p.to_owned());
    }
    let Some(date) = DateTime::from_timestamp_millis(event.ts)
        .filter(|_| event.ts.checked_mul(1000).is_some())
        .map(|t| t.date_naive())
    else {
        return Err(format!("ts {} is out of range", event.ts));
    };
    Ok(CheckedEvent { event, date, is_play, nul_fields })
}

/// What a play lacks that it must have, if anything.
#[inline]
fn play_problem(event: &Event<'_>) -> Option<&'static str> {
    if event.user_id.as_deref().is_none_or(str::is_empty) {
        Some("NextSong event without userId")
    } else if event.song.as_deref().is_none_or(str::is_empty) {
        Some("NextSong event without song")
    } else if event.artist.as_deref().is_none_or(str::is_empty) {
        Some("NextSong event without artist")
    } else {
        None
    }
}

/// `bytes` split at each `\n`, as `split(|&b| b == b'\n')` splits them
/// (a last piece after the last `\n`, empty or not), found eight bytes at a
/// time instead of one: the split shows in an ingest's profile.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(p) => {
                rest = Some(&r[p + 1..]);
                Some(&r[..p])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

// ---------------------------------------------------------------- songs

#[derive(Deserialize)]
struct SongJson {
    song_id: String,
    title: String,
    artist_id: String,
    artist_name: String,
    artist_location: Option<String>,
    artist_latitude: Option<f64>,
    artist_longitude: Option<f64>,
    year: Option<i64>,
    duration: Option<f64>,
}

/// A song row, ready for staging.
pub struct SongRow {
    json: SongJson,
    raw_sha256: Arc<str>,
    record: u64,
}

pub struct ParsedSongs {
    pub rows: Vec<SongRow>,
    pub accounting: Accounting,
    pub rejects: Vec<Reject>,
}

/// Parses a song file: one JSON object, several objects one after another
/// (NDJSON or concatenated), or an array of them.
pub fn parse_songs(bytes: &[u8], raw_sha256: &str, label: &str) -> ParsedSongs {
    let bytes = without_bom(bytes);
    let mut acc = Accounting::new(SOURCE, "songs");
    acc.files = 1;
    let mut rejects = vec![];
    let mut rows = vec![];
    let sha: Arc<str> = raw_sha256.into();
    let line_at = |offset: usize| bytes[..offset.min(bytes.len())].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let trimmed_start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let values: Vec<(u64, Result<serde_json::Value, serde_json::Error>)> = if bytes.get(trimmed_start) == Some(&b'[') {
        match serde_json::from_slice::<Vec<serde_json::Value>>(bytes) {
            Ok(vs) => vs.into_iter().map(|v| (line_at(trimmed_start), Ok(v))).collect(),
            Err(e) => vec![(e.line() as u64, Err(e))],
        }
    } else {
        let mut out = vec![];
        let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>();
        loop {
            let start = stream.byte_offset();
            match stream.next() {
                None => break,
                Some(Ok(v)) => {
                    let first = bytes[start..].iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
                    out.push((line_at(start + first), Ok(v)));
                }
                Some(Err(e)) => {
                    // The stream cannot resynchronise after a syntax error: the rest is one reject.
                    out.push((e.line() as u64, Err(e)));
                    break;
                }
            }
        }
        out
    };
    let may_hold_nul = super::normalize::may_hold_nul(bytes);
    let mut changed = vec![];
    for (record, (line, value)) in values.into_iter().enumerate() {
        acc.read += 1;
        let mut nul_paths = vec![];
        let parsed = value.and_then(|mut v| {
            acc.as_text += numbers_as_text(&mut v);
            if may_hold_nul {
                nul_paths = super::normalize::remove_nul_json(&mut v);
            }
            serde_json::from_value::<SongJson>(v)
        });
        match parsed {
            Ok(json) if !json.song_id.is_empty() && !json.artist_id.is_empty() => {
                acc.kept += 1;
                rows.push(SongRow { json, raw_sha256: sha.clone(), record: record as u64 + 1 });
                if !nul_paths.is_empty() {
                    changed.push(Reject::nul_removed(label, line, &nul_paths));
                }
            }
            Ok(_) => {
                acc.rejected += 1;
                rejects.push(reject(label, line, "song without song_id or artist_id"));
            }
            Err(e) => {
                acc.rejected += 1;
                rejects.push(reject(label, line, format!("not a Sparkify song: {e}")));
            }
        }
    }
    acc.nul_removed = changed.len() as u64;
    rejects.extend(changed);
    ParsedSongs { rows, accounting: acc, rejects }
}

/// A song's text fields given as numbers (`"artist_name": 112`, as some of
/// the course's song files have) become their text, as the course's pandas
/// loader keeps them; how many did.
fn numbers_as_text(song: &mut serde_json::Value) -> u64 {
    let mut n = 0;
    for field in ["song_id", "title", "artist_id", "artist_name", "artist_location"] {
        if let Some(v) = song.get_mut(field).filter(|v| v.is_number()) {
            *v = serde_json::Value::String(v.to_string());
            n += 1;
        }
    }
    n
}

/// Song batches as one, sorted by song id, raw file and record, so that a
/// reprocess writes the same rows in the same order whatever order the
/// files were parsed in.
pub fn sorted_songs(batches: Vec<RecordBatch>) -> RecordBatch {
    let all = concat_batches(&SONGS_SCHEMA, &batches).expect("batches of SONGS_SCHEMA");
    drop(batches);
    sorted_by(&all, &["song_id", "raw_sha256", "record"])
}

/// Song rows as one staging batch.
pub fn songs_batch(rows: &[SongRow]) -> RecordBatch {
    let mut song_id = StringBuilder::new();
    let mut title = StringBuilder::new();
    let mut artist_id = StringBuilder::new();
    let mut artist_name = StringBuilder::new();
    let mut location = StringBuilder::new();
    let mut lat = Float64Builder::new();
    let mut lon = Float64Builder::new();
    let mut year = Int64Builder::new();
    let mut duration = Float64Builder::new();
    let mut artist_key = StringBuilder::new();
    let mut title_key = StringBuilder::new();
    let mut sha = StringBuilder::new();
    let mut record = Int64Builder::new();
    for r in rows {
        let j = &r.json;
        let t = repair_mojibake(&j.title);
        let a = repair_mojibake(&j.artist_name);
        song_id.append_value(&j.song_id);
        title_key.append_value(key(&t));
        artist_key.append_value(key(&a));
        title.append_value(t);
        artist_id.append_value(&j.artist_id);
        artist_name.append_value(a);
        location.append_option(j.artist_location.as_deref().filter(|l| !l.is_empty()));
        lat.append_option(j.artist_latitude);
        lon.append_option(j.artist_longitude);
        // The course's data writes an unknown year as 0.
        year.append_option(j.year.filter(|&y| y != 0));
        duration.append_option(j.duration);
        sha.append_value(&r.raw_sha256);
        record.append_value(r.record as i64);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(song_id.finish()),
        Arc::new(title.finish()),
        Arc::new(artist_id.finish()),
        Arc::new(artist_name.finish()),
        Arc::new(location.finish()),
        Arc::new(lat.finish()),
        Arc::new(lon.finish()),
        Arc::new(year.finish()),
        Arc::new(duration.finish()),
        Arc::new(artist_key.finish()),
        Arc::new(title_key.finish()),
        Arc::new(sha.finish()),
        Arc::new(record.finish()),
    ];
    RecordBatch::try_new(SONGS_SCHEMA.clone(), cols).expect("columns match SONGS_SCHEMA")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};

    const GOOD: &str = r#"{"artist":"Erdm\u00c3\u0083\u00c2\u00b6bel","auth":"Logged In","firstName":"A","gender":"F","itemInSession":0,"lastName":"B","length":200.5,"level":"free","location":"X","method":"PUT","page":"NextSong","registration":1540919166796.0,"sessionId":7,"song":"Song","status":200,"ts":1541105830796,"userAgent":"\"UA\"","userId":"15"}"#;
    const HOME: &str = r#"{"artist":null,"auth":"Logged Out","firstName":null,"gender":null,"itemInSession":1,"lastName":null,"length":null,"level":"free","location":null,"method":"GET","page":"Home","registration":null,"sessionId":7,"song":null,"status":200,"ts":1541105830796,"userAgent":null,"userId":""}"#;

    #[test]
    fn a_days_events_come_out_by_time_then_event_id_then_line() {
        let line = |session: i64, ts: i64| {
            format!(
                r#"{{"page":"Home","itemInSession":0,"sessionId":{session},"ts":{ts},"userId":"1","level":"free"}}"#
            )
        };
        let t = 1_541_105_830_796;
        let lines = [line(1, t + 2), line(2, t), line(3, t + 1), line(4, t + 1), line(5, t + 1), line(3, t + 1)];
        let p = parse_log(lines.join("\n").as_bytes(), "sha", "x.json");
        let batch = &p.by_date[&NaiveDate::from_ymd_opt(2018, 11, 1).unwrap()];
        let ts = batch
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        let ids = batch.column_by_name("event_id").unwrap().as_string::<i32>();
        let lines = batch.column_by_name("line").unwrap().as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let rows: Vec<(i64, &str, i64)> =
            (0..batch.num_rows()).map(|i| (ts.value(i), ids.value(i), lines.value(i))).collect();
        let mut sorted = rows.clone();
        sorted.sort();
        assert_eq!(rows, sorted);
        assert_eq!(rows.len(), 6);
        assert_eq!((rows[0].2, rows[5].2), (2, 1), "first the earliest event, last the latest");
        let copies: Vec<i64> = rows.iter().filter(|r| r.1 == event_id("1", 3, 0, t + 1)).map(|r| r.2).collect();
        assert_eq!(copies, vec![3, 6], "copies of one event side by side, by line");
    }

    #[test]
    fn lines_split_as_the_slice_split_does() {
        for text in ["", "\n", "a", "a\n", "a\nb", "\n\n", "ab\n\ncd\n", "\r\n x \r\n"] {
            let b = text.as_bytes();
            assert_eq!(lines(b).collect::<Vec<_>>(), b.split(|&c| c == b'\n').collect::<Vec<_>>(), "{text:?}");
        }
    }

    #[test]
    fn malformed_lines_are_rejected_with_line_numbers_and_the_rest_loads() {
        let text = format!("{GOOD}\n{{\"truncated\": \n<html>\n{HOME}\n[1,2]");
        let p = parse_log(text.as_bytes(), "sha", "log_data/x.json");
        assert_eq!(p.accounting.read, 5);
        assert_eq!(p.accounting.plays, 1);
        assert_eq!(p.accounting.filtered_total(), 1);
        assert_eq!(p.accounting.rejected, 3);
        let lines: Vec<u64> = p.rejects.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 3, 5]);
        assert!(p.rejects[0].file == "log_data/x.json");
        let batch = &p.by_date[&NaiveDate::from_ymd_opt(2018, 11, 1).unwrap()];
        assert_eq!(batch.num_rows(), 2);
        let artist = batch.column_by_name("artist").unwrap().as_string::<i32>();
        assert_eq!(artist.value(0), "Erdmöbel");
        let user = batch.column_by_name("user_id").unwrap();
        assert!(user.is_null(1), "an empty userId is stored as null");
    }

    #[test]
    fn a_byte_order_mark_before_the_first_line_or_song_is_skipped() {
        let log = format!("\u{feff}{GOOD}\n{HOME}\n");
        let p = parse_log(log.as_bytes(), "sha", "log_data/bom.json");
        assert_eq!((p.accounting.read, p.accounting.plays, p.accounting.rejected), (2, 1, 0), "{:?}", p.rejects);
        let song = r#"{"song_id":"S","title":"T","artist_id":"A","artist_name":"N","duration":1.0}"#;
        let s = parse_songs(format!("\u{feff}{song}").as_bytes(), "sha", "song_data/bom.json");
        assert_eq!((s.accounting.kept, s.accounting.rejected), (1, 0), "{:?}", s.rejects);
    }

    /// Issue 24: one 50 MB string in a log line ingested fine, then every
    /// incremental build failed with "Resources exhausted".
    #[test]
    fn issue_24_a_text_value_past_the_limit_rejects_its_line_with_the_field() {
        let huge = GOOD.replace("\"song\":\"Song\"", &format!("\"song\":\"{}\"", "x".repeat(50 << 20)));
        let p = parse_log(format!("{huge}\n{GOOD}\n").as_bytes(), "sha", "log_data/big.json");
        assert_eq!((p.accounting.read, p.accounting.plays, p.accounting.rejected), (2, 1, 1));
        assert_eq!((p.rejects[0].file.as_str(), p.rejects[0].line), ("log_data/big.json", 1));
        assert!(p.rejects[0].reason.starts_with("song is 52428800 bytes, past the 65536"), "{:?}", p.rejects);
        let at_limit = GOOD.replace("\"song\":\"Song\"", &format!("\"song\":\"{}\"", "x".repeat(MAX_TEXT_BYTES)));
        assert_eq!(parse_log(at_limit.as_bytes(), "sha", "f").accounting.plays, 1);
    }

    /// Issue 24: real song files of the course's S3 set have `"artist_name": 112`
    /// and `"artist_location": 108`; the song was rejected whole, and the plays it matches lost.
    #[test]
    fn issue_24_numbers_in_a_songs_text_fields_are_kept_as_text_and_counted() {
        let song =
            r#"{"song_id":"S","title":1999,"artist_id":"A","artist_name":112,"artist_location":108,"duration":1.0}"#;
        let s = parse_songs(song.as_bytes(), "sha", "song_data/n.json");
        assert_eq!((s.accounting.kept, s.accounting.rejected, s.accounting.as_text), (1, 0, 3), "{:?}", s.rejects);
        let batch = songs_batch(&s.rows);
        let text = |c: &str| batch.column_by_name(c).unwrap().as_string::<i32>().value(0).to_string();
        assert_eq!(
            (text("title"), text("artist_name"), text("artist_location")),
            ("1999".into(), "112".into(), "108".into())
        );
        // What cannot be text still is an error: an object for a name.
        let bad = r#"{"song_id":"S","title":"T","artist_id":"A","artist_name":{"x":1},"duration":1.0}"#;
        assert_eq!(parse_songs(bad.as_bytes(), "sha", "f").accounting.rejected, 1);
    }

    #[test]
    fn event_ids_hash_the_natural_key_and_the_time() {
        // sha256("sparkify␟15␟7␟0␟1541105830796"), first 16 bytes: play ids already stored depend on it.
        assert_eq!(event_id("15", 7, 0, 1541105830796), "587fa4ad30f661ea788c82014b910a93");
        assert_eq!(event_id("", -3, 12, -5), "a6b630aa6fc9ceaf06bbd30b38b70863");
        let p = parse_log(GOOD.as_bytes(), "sha", "f");
        let batch = &p.by_date[&NaiveDate::from_ymd_opt(2018, 11, 1).unwrap()];
        assert_eq!(
            batch.column_by_name("event_id").unwrap().as_string::<i32>().value(0),
            event_id("15", 7, 0, 1541105830796)
        );
    }

    #[test]
    fn invalid_utf8_is_a_counted_reject() {
        let mut bytes = GOOD.as_bytes().to_vec();
        bytes.extend_from_slice(b"\n{\"a\":\"\xff\"}");
        let p = parse_log(&bytes, "sha", "f");
        assert_eq!((p.accounting.plays, p.accounting.rejected), (1, 1));
        assert!(p.rejects[0].reason.contains("UTF-8"), "{:?}", p.rejects);
    }

    #[test]
    fn a_song_file_with_several_objects_loads_them_all() {
        let one = r#"{"num_songs": 1, "artist_id": "AR1", "artist_latitude": null, "artist_longitude": null, "artist_location": "", "artist_name": "A", "song_id": "SO1", "title": "T", "duration": 1.5, "year": 0}"#;
        let two = one.replace("SO1", "SO2");
        let text = format!("{one}\n{two}");
        let p = parse_songs(text.as_bytes(), "sha", "f");
        assert_eq!((p.accounting.read, p.accounting.kept), (2, 2));
        let arr = format!("[{one}, {two}]");
        assert_eq!(parse_songs(arr.as_bytes(), "sha", "f").rows.len(), 2);
        let concat = format!("{one}{two}{{\"oops\"");
        let p = parse_songs(concat.as_bytes(), "sha", "f");
        assert_eq!((p.accounting.kept, p.accounting.rejected), (2, 1));
        let b = songs_batch(&parse_songs(one.as_bytes(), "sha", "f").rows);
        assert!(b.column_by_name("year").unwrap().is_null(0), "year 0 means unknown");
        assert!(b.column_by_name("artist_location").unwrap().is_null(0));
    }

    #[test]
    fn song_batches_come_out_by_song_id_raw_file_and_record_whatever_the_parse_order() {
        let song = |id: &str| {
            format!(
                r#"{{"artist_id": "AR1", "artist_name": "A", "song_id": "{id}", "title": "T", "duration": 1.5, "year": 2000}}"#
            )
        };
        // Three files, parsed in an order that is none of the ones asked for (records count from 1).
        let files = [
            ("sha-b", format!("{}\n{}", song("SO2"), song("SO1"))),
            ("sha-a", format!("{}\n{}", song("SO2"), song("SO2"))),
            ("sha-c", song("SO0")),
        ];
        let batches: Vec<RecordBatch> =
            files.iter().map(|(sha, text)| songs_batch(&parse_songs(text.as_bytes(), sha, "f").rows)).collect();
        let all = sorted_songs(batches);
        let text = |name: &str| -> Vec<String> {
            all.column_by_name(name).unwrap().as_string::<i32>().iter().map(|v| v.unwrap().to_string()).collect()
        };
        let record = all.column_by_name("record").unwrap().as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let rows: Vec<(String, String, i64)> = text("song_id")
            .into_iter()
            .zip(text("raw_sha256"))
            .zip(record.values().iter().copied())
            .map(|((id, sha), r)| (id, sha, r))
            .collect();
        let expected: Vec<(String, String, i64)> =
            [("SO0", "sha-c", 1), ("SO1", "sha-b", 2), ("SO2", "sha-a", 1), ("SO2", "sha-a", 2), ("SO2", "sha-b", 1)]
                .iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
                .collect();
        assert_eq!(rows, expected);
    }
}
