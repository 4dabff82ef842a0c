//! The Spotify Web API source: who the user is (`/v1/me`), what they played
//! (`/v1/me/player/recently-played`, which only ever shows the last 50
//! plays), and the tracks, artists and albums the lake has not seen yet
//! (`/v1/tracks/{id}`, `/v1/artists/{id}`, `/v1/albums/{id}`; the batch
//! `?ids=` endpoints are gone for new apps and are not used).
//!
//! Every response body is stored raw as received. The `after` cursor is
//! kept in the manifest entry that commits the page it came from, so it
//! never runs ahead of a stored page. A full page that does not reach back
//! to the last stored play leaves a coverage gap, recorded with its time
//! range. Faults: 429 waits for Retry-After up to a cap (past it the run
//! stops cleanly and resumes next time), a 429 saying QUOTA_EXCEEDED stops
//! the run, 5xx and timeouts retry with exponential backoff and jitter, and a
//! 401 refreshes the token once.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use datafusion::arrow::array::{ArrayRef, BooleanBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use serde::Deserialize;

use super::normalize::from_json_without_nul;
use sha2::{Digest, Sha256};

use super::spotify_auth::{self, SpotifyConfig, TokenCache};
use super::{Found, Intake, Keeping, SourceError};
use crate::lake::manifest::Commit;
use crate::lake::staging::{SPOTIFY_API_ENTITIES, SPOTIFY_API_PLAYS, SPOTIFY_API_USERS};
pub use crate::lake::stats::Gap;
use crate::lake::{Layout, Manifest};

pub const SOURCE: &str = "spotify_api";
pub const KIND_ME: &str = "me";
pub const KIND_RECENT: &str = "recently_played";
pub const KIND_TRACK: &str = "track";
pub const KIND_ARTIST: &str = "artist";
pub const KIND_ALBUM: &str = "album";
pub const PAGE_LIMIT: usize = 50;
const MAX_ATTEMPTS: u32 = 5;

/// Why a run stopped early; the next run picks up from the last commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    RateLimited { retry_after_s: u64 },
    QuotaExceeded,
}

/// A GET that went through the fault handling.
pub enum Fetched {
    Body(Vec<u8>),
    NotFound,
    Stopped(Stop),
}

/// An authenticated, fault-tolerant client for the Web API.
pub struct Api<'a> {
    cfg: &'a SpotifyConfig,
    layout: &'a Layout,
    http: reqwest::blocking::Client,
    token: TokenCache,
    pub requests: u64,
    sleep: &'a dyn Fn(Duration),
}

impl<'a> Api<'a> {
    pub fn new(cfg: &'a SpotifyConfig, layout: &'a Layout, sleep: &'a dyn Fn(Duration)) -> Result<Self, SourceError> {
        let token = spotify_auth::access_token(cfg, layout)?;
        Ok(Api { cfg, layout, http: spotify_auth::http_client(cfg)?, token, requests: 0, sleep })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        // 0.5 s, 1 s, 2 s, 4 s ... with up to 50 % jitter.
        let base = 500u64 << attempt.min(6);
        Duration::from_millis(base + fastrand::u64(0..=base / 2))
    }

    /// GET `path` (with query) on the API.
    pub fn get(&mut self, path: &str) -> Result<Fetched, SourceError> {
        let url = format!("{}{path}", self.cfg.api_url.trim_end_matches('/'));
        let endpoint = path.split('?').next().unwrap_or(path).to_string();
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.requests += 1;
            let sent = self.http.get(&url).bearer_auth(&self.token.access_token).send();
            let resp = match sent {
                Ok(r) => r,
                Err(e) if attempt < MAX_ATTEMPTS => {
                    tracing::warn!(endpoint = %endpoint, attempt, error = %e.without_url(), "request failed; retrying");
                    (self.sleep)(self.backoff(attempt));
                    continue;
                }
                Err(e) => return Err(SourceError::Http { endpoint, message: e.without_url().to_string() }),
            };
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = match resp.bytes() {
                Ok(b) => b.to_vec(),
                Err(e) if attempt < MAX_ATTEMPTS => {
                    tracing::warn!(endpoint = %endpoint, attempt, error = %e.without_url(), "reading the body failed; retrying");
                    (self.sleep)(self.backoff(attempt));
                    continue;
                }
                Err(e) => return Err(SourceError::Http { endpoint, message: e.without_url().to_string() }),
            };
            match status {
                200 => return Ok(Fetched::Body(body)),
                404 => return Ok(Fetched::NotFound),
                401 if !refreshed => {
                    tracing::info!(endpoint = %endpoint, "401: refreshing the access token once");
                    self.token = spotify_auth::refresh(self.cfg, self.layout, &self.token)?;
                    refreshed = true;
                    attempt -= 1;
                }
                429 => {
                    if String::from_utf8_lossy(&body).contains("QUOTA_EXCEEDED") {
                        return Ok(Fetched::Stopped(Stop::QuotaExceeded));
                    }
                    let wait = retry_after.unwrap_or(1);
                    if Duration::from_secs(wait) > self.cfg.max_retry_after || attempt >= MAX_ATTEMPTS {
                        return Ok(Fetched::Stopped(Stop::RateLimited { retry_after_s: wait }));
                    }
                    tracing::info!(endpoint = %endpoint, wait, "429: waiting as Retry-After says");
                    (self.sleep)(Duration::from_secs(wait));
                }
                500..=599 if attempt < MAX_ATTEMPTS => {
                    tracing::warn!(endpoint = %endpoint, status, attempt, "server error; retrying");
                    (self.sleep)(self.backoff(attempt));
                }
                _ => return Err(SourceError::Api { endpoint, status }),
            }
        }
    }
}

// ------------------------------------------------------------ payloads

#[derive(Deserialize)]
pub struct Me {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    cursors: Option<Cursors>,
}

#[derive(Deserialize)]
struct Cursors {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    track: Track,
    played_at: String,
    #[serde(default)]
    context: Option<Context>,
}

#[derive(Deserialize)]
struct Context {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    uri: Option<String>,
}

#[derive(Deserialize)]
struct Track {
    id: Option<String>,
    name: String,
    #[serde(default)]
    duration_ms: Option<i64>,
    #[serde(default)]
    explicit: Option<bool>,
    #[serde(default)]
    album: Option<Album>,
    #[serde(default)]
    artists: Vec<Artist>,
}

#[derive(Deserialize)]
struct Album {
    id: Option<String>,
    name: String,
    #[serde(default)]
    release_date: Option<String>,
}

#[derive(Deserialize)]
struct Artist {
    id: Option<String>,
    name: String,
}

/// One recently-played page, parsed.
pub struct ParsedPage {
    pub plays: RecordBatch,
    /// played_at of each item, ms.
    pub played_ms: Vec<i64>,
    pub cursor_after: Option<i64>,
    pub track_ids: Vec<String>,
    pub artist_ids: Vec<String>,
    pub album_ids: Vec<String>,
    pub rejected: Vec<(u64, String)>,
    /// Items kept with U+0000 removed: the item's number and the values' paths.
    pub nul_removed: Vec<(u64, Vec<String>)>,
}

fn play_id(user: &str, played_ms: i64, track: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("spotify_api\x1f{user}\x1f{played_ms}\x1f{track}").as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Parses a recently-played body into staging rows (one per item, one row
/// per artist of the track: `artist_position` 0 is the primary artist).
pub fn parse_page(bytes: &[u8], user_id: &str, raw_sha256: &str) -> Result<ParsedPage, String> {
    let (page, nul_paths): (Page, _) =
        from_json_without_nul(bytes).map_err(|e| format!("not a recently-played page: {e}"))?;
    let mut b = PlayColumns::default();
    let mut out = ParsedPage {
        plays: RecordBatch::new_empty(SPOTIFY_API_PLAYS.clone()),
        played_ms: vec![],
        cursor_after: page.cursors.and_then(|c| c.after).and_then(|a| a.parse().ok()),
        track_ids: vec![],
        artist_ids: vec![],
        album_ids: vec![],
        rejected: vec![],
        nul_removed: by_item(nul_paths),
    };
    for (i, item) in page.items.iter().enumerate() {
        let record = i as u64 + 1;
        let Some(ts) = DateTime::parse_from_rfc3339(&item.played_at).ok() else {
            out.rejected.push((record, format!("played_at `{}` is not an RFC 3339 time", item.played_at)));
            continue;
        };
        let Some(track_id) = item.track.id.as_deref() else {
            out.rejected.push((record, "a local file (no track id)".into()));
            continue;
        };
        let ms = ts.timestamp_millis();
        out.played_ms.push(ms);
        let id = play_id(user_id, ms, track_id);
        out.track_ids.push(track_id.to_string());
        if let Some(a) = item.track.album.as_ref().and_then(|a| a.id.clone()) {
            out.album_ids.push(a);
        }
        let artists: Vec<&Artist> = item.track.artists.iter().collect();
        let rows = artists.len().max(1);
        for pos in 0..rows {
            let artist = artists.get(pos);
            if let Some(aid) = artist.and_then(|a| a.id.clone()) {
                out.artist_ids.push(aid);
            }
            b.play_id.append_value(&id);
            b.user_id.append_value(user_id);
            b.played_at.append_value(ts.timestamp_micros());
            b.track_id.append_value(track_id);
            b.track_name.append_value(&item.track.name);
            b.duration_ms.append_option(item.track.duration_ms);
            b.explicit.append_option(item.track.explicit);
            b.album_id.append_option(item.track.album.as_ref().and_then(|a| a.id.as_deref()));
            b.album_name.append_option(item.track.album.as_ref().map(|a| a.name.as_str()));
            b.album_release_date.append_option(item.track.album.as_ref().and_then(|a| a.release_date.as_deref()));
            b.artist_position.append_value(pos as i64);
            b.artist_id.append_option(artist.and_then(|a| a.id.as_deref()));
            b.artist_name.append_option(artist.map(|a| a.name.as_str()));
            b.context_type.append_option(item.context.as_ref().and_then(|c| c.kind.as_deref()));
            b.context_uri.append_option(item.context.as_ref().and_then(|c| c.uri.as_deref()));
            b.raw_sha256.append_value(raw_sha256);
            b.record.append_value(record as i64);
        }
    }
    out.plays = b.finish();
    Ok(out)
}

/// Paths into a page (`items[3].track.name`) grouped by the item's number
/// (1-based, as rejects count records; 0 for a value outside the items).
fn by_item(paths: Vec<String>) -> Vec<(u64, Vec<String>)> {
    let mut out: Vec<(u64, Vec<String>)> = vec![];
    for path in paths {
        let item = path.strip_prefix("items[").and_then(|r| r.split(']').next()).and_then(|n| n.parse::<u64>().ok());
        let record = item.map_or(0, |i| i + 1);
        match out.last_mut() {
            Some((r, p)) if *r == record => p.push(path),
            _ => out.push((record, vec![path])),
        }
    }
    out
}

#[derive(Default)]
struct PlayColumns {
    play_id: StringBuilder,
    user_id: StringBuilder,
    played_at: TimestampMicrosecondBuilder,
    track_id: StringBuilder,
    track_name: StringBuilder,
    duration_ms: Int64Builder,
    explicit: BooleanBuilder,
    album_id: StringBuilder,
    album_name: StringBuilder,
    album_release_date: StringBuilder,
    artist_position: Int64Builder,
    artist_id: StringBuilder,
    artist_name: StringBuilder,
    context_type: StringBuilder,
    context_uri: StringBuilder,
    raw_sha256: StringBuilder,
    record: Int64Builder,
}

impl PlayColumns {
    fn finish(mut self) -> RecordBatch {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.play_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.played_at.finish()),
            Arc::new(self.track_id.finish()),
            Arc::new(self.track_name.finish()),
            Arc::new(self.duration_ms.finish()),
            Arc::new(self.explicit.finish()),
            Arc::new(self.album_id.finish()),
            Arc::new(self.album_name.finish()),
            Arc::new(self.album_release_date.finish()),
            Arc::new(self.artist_position.finish()),
            Arc::new(self.artist_id.finish()),
            Arc::new(self.artist_name.finish()),
            Arc::new(self.context_type.finish()),
            Arc::new(self.context_uri.finish()),
            Arc::new(self.raw_sha256.finish()),
            Arc::new(self.record.finish()),
        ];
        RecordBatch::try_new(SPOTIFY_API_PLAYS.clone(), cols).expect("columns match SPOTIFY_API_PLAYS")
    }
}

/// A `/v1/me` body as one staging row; `seq` orders fetches.
pub fn parse_me(bytes: &[u8], seq: i64, raw_sha256: &str) -> Result<(Me, RecordBatch, Vec<String>), String> {
    let (me, nul_paths): (Me, _) = from_json_without_nul(bytes).map_err(|e| format!("not a Spotify user: {e}"))?;
    let s = |v: Option<&str>| Arc::new(datafusion::arrow::array::StringArray::from(vec![v])) as ArrayRef;
    let cols = vec![
        s(Some(&me.id)),
        s(me.display_name.as_deref()),
        s(me.country.as_deref()),
        s(me.product.as_deref()),
        Arc::new(datafusion::arrow::array::Int64Array::from(vec![seq])) as ArrayRef,
        s(Some(raw_sha256)),
    ];
    let batch = RecordBatch::try_new(SPOTIFY_API_USERS.clone(), cols).expect("columns match SPOTIFY_API_USERS");
    Ok((me, batch, nul_paths))
}

/// An enrichment response (`/v1/tracks|artists|albums/{id}`) as one staging
/// row, and the paths of values U+0000 was removed from.
pub fn parse_entity(kind: &str, bytes: &[u8], raw_sha256: &str) -> Result<(RecordBatch, Vec<String>), String> {
    #[derive(Deserialize)]
    struct Entity {
        id: String,
        name: String,
        #[serde(default)]
        popularity: Option<i64>,
        #[serde(default)]
        genres: Vec<String>,
        #[serde(default)]
        release_date: Option<String>,
        #[serde(default)]
        album_type: Option<String>,
        #[serde(default)]
        duration_ms: Option<i64>,
        #[serde(default)]
        label: Option<String>,
    }
    let (e, nul_paths): (Entity, _) =
        from_json_without_nul(bytes).map_err(|err| format!("not a Spotify {kind}: {err}"))?;
    let s = |v: Option<&str>| Arc::new(datafusion::arrow::array::StringArray::from(vec![v])) as ArrayRef;
    let i = |v: Option<i64>| Arc::new(datafusion::arrow::array::Int64Array::from(vec![v])) as ArrayRef;
    let genres = (!e.genres.is_empty()).then(|| e.genres.join(", "));
    let cols = vec![
        s(Some(kind)),
        s(Some(&e.id)),
        s(Some(&e.name)),
        i(e.popularity),
        s(genres.as_deref()),
        s(e.release_date.as_deref()),
        s(e.album_type.as_deref()),
        i(e.duration_ms),
        s(e.label.as_deref()),
        s(Some(raw_sha256)),
    ];
    let batch = RecordBatch::try_new(SPOTIFY_API_ENTITIES.clone(), cols).expect("columns match SPOTIFY_API_ENTITIES");
    Ok((batch, nul_paths))
}

// ------------------------------------------------------------ the pull

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// At most this many track/artist/album lookups per run; the rest wait for the next.
    pub max_enrich: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PullMetrics {
    pub user: String,
    pub pages: u64,
    pub items: u64,
    pub plays_new: u64,
    pub rejected: u64,
    pub gaps: Vec<Gap>,
    pub enriched: u64,
    pub enrich_left: u64,
    pub stopped: Option<Stop>,
    pub requests: u64,
}

fn rfc3339_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default()
}

/// The cursor and last stored play, as committed by earlier pulls for `user`.
fn committed_cursor(manifest: &Manifest, user: &str) -> (Option<i64>, Option<i64>) {
    let cursor = manifest.state().spotify_cursors.get(user).cloned().unwrap_or_default();
    (cursor.after, cursor.last_played_ms)
}

/// Responses stored one by one as they arrive and committed together, with
/// whatever `stats` the caller adds (a cursor).
fn responses<'a>(layout: &'a Layout, manifest: &Manifest, command: &str) -> Result<Intake<'a>, SourceError> {
    let keeping = Keeping { pack_small: false, report_files: false };
    Intake::new(layout, manifest, SOURCE, command, keeping, indicatif::ProgressBar::hidden())
}

fn found<'s>(kind: &'s str, endpoint: &str, user: Option<&str>) -> Found<'s> {
    Found { index: None, kind, origin: endpoint.into(), account: user.map(String::from) }
}

/// `tunelake ingest spotify`: who the user is, what they played since the
/// last committed cursor, then enrichment of what the lake has not seen.
/// Pages and enrichments are committed separately, so a fault in enrichment
/// loses no play.
pub fn pull(
    layout: &Layout,
    manifest: &mut Manifest,
    cfg: &SpotifyConfig,
    opts: &PullOptions,
    command: &str,
    sleep: &dyn Fn(Duration),
) -> Result<PullMetrics, SourceError> {
    let mut api = Api::new(cfg, layout, sleep)?;
    let mut metrics = PullMetrics::default();
    let mut batch = responses(layout, manifest, command)?;
    let me = match who(&mut api, &batch)? {
        Ok(me) => me,
        Err(stop) => {
            metrics.stopped = Some(stop);
            metrics.requests = api.requests;
            return Ok(metrics);
        }
    };
    metrics.user = me.id.clone();
    let pages = played(&mut api, &batch, &me.id, committed_cursor(manifest, &me.id), &mut metrics)?;
    // Committed with the cursor they advance to: the cursor never runs ahead of a stored page.
    record_cursor(&mut batch, &me.id, &pages, &metrics);
    let accounting = batch.finish(manifest, Commit::Wait)?.accounting;
    metrics.rejected = accounting.iter().map(|a| a.rejected).sum();
    if let Some(e) = pages.failed {
        return Err(e);
    }
    if metrics.stopped.is_none() {
        enrich(layout, manifest, &mut api, opts, command, &mut metrics, &pages.new_ids)?;
    }
    metrics.requests = api.requests;
    Ok(metrics)
}

/// Who the user is (`/v1/me`, offered to `batch`), or why Spotify stopped the run.
fn who(api: &mut Api<'_>, batch: &Intake<'_>) -> Result<Result<Me, Stop>, SourceError> {
    let me_bytes = match api.get("/v1/me")? {
        Fetched::Body(b) => b,
        Fetched::NotFound => return Err(SourceError::Api { endpoint: "/v1/me".into(), status: 404 }),
        Fetched::Stopped(stop) => return Ok(Err(stop)),
    };
    let (me, _): (Me, _) = from_json_without_nul(&me_bytes)
        .map_err(|e| SourceError::Auth(format!("/v1/me answered something that is not a user: {e}")))?;
    batch.offer(found(KIND_ME, "/v1/me", Some(&me.id)), me_bytes)?;
    Ok(Ok(me))
}

/// Where the pages of plays got to.
struct Pages {
    cursor: Option<i64>,
    last_played: Option<i64>,
    /// The tracks, albums and artists they name, as endpoints.
    new_ids: Vec<String>,
    /// The fault that ended them, raised once what came before it is committed.
    failed: Option<SourceError>,
}

/// What `user` played: up to five pages after the committed `(cursor, last
/// played)`, each offered to `batch` as it arrives.
fn played(
    api: &mut Api<'_>,
    batch: &Intake<'_>,
    user: &str,
    (mut cursor, mut last_played): (Option<i64>, Option<i64>),
    metrics: &mut PullMetrics,
) -> Result<Pages, SourceError> {
    let mut new_ids: Vec<String> = vec![];
    let mut failed = None;
    for _ in 0..5 {
        let path = match cursor {
            Some(c) => format!("/v1/me/player/recently-played?limit={PAGE_LIMIT}&after={c}"),
            None => format!("/v1/me/player/recently-played?limit={PAGE_LIMIT}"),
        };
        let bytes = match api.get(&path) {
            Ok(Fetched::Body(b)) => b,
            Ok(Fetched::NotFound) => {
                failed = Some(SourceError::Api { endpoint: "/v1/me/player/recently-played".into(), status: 404 });
                break;
            }
            Ok(Fetched::Stopped(stop)) => {
                metrics.stopped = Some(stop);
                break;
            }
            // What was received before the fault is committed first: no play is lost.
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        metrics.pages += 1;
        // Parsed here for the cursor and the gap check; staged by the shared path.
        let page = parse_page(&bytes, user, "");
        batch.offer(found(KIND_RECENT, &path, Some(user)), bytes)?;
        let Ok(page) = page else { break };
        metrics.items += (page.played_ms.len() + page.rejected.len()) as u64;
        let oldest = page.played_ms.iter().min().copied();
        let newest = page.played_ms.iter().max().copied();
        let full = page.played_ms.len() + page.rejected.len() >= PAGE_LIMIT;
        if let (true, Some(prev), Some(oldest)) = (full, last_played, oldest)
            && oldest > prev
        {
            metrics.gaps.push(Gap { user: user.into(), from: rfc3339_ms(prev), to: rfc3339_ms(oldest) });
        }
        metrics.plays_new += page.played_ms.iter().filter(|&&ms| last_played.is_none_or(|l| ms > l)).count() as u64;
        new_ids.extend(page.track_ids.iter().map(|t| format!("/v1/tracks/{t}")));
        new_ids.extend(page.album_ids.iter().map(|t| format!("/v1/albums/{t}")));
        new_ids.extend(page.artist_ids.iter().map(|t| format!("/v1/artists/{t}")));
        last_played = last_played.max(newest);
        let next = page.cursor_after.or(newest).map(|c| c.max(cursor.unwrap_or(0)));
        let advanced = next.is_some() && next != cursor;
        cursor = next.or(cursor);
        if !full || !advanced {
            break;
        }
    }
    Ok(Pages { cursor, last_played, new_ids, failed })
}

/// The user, cursor, last play, gaps and stop, recorded with the pages' run.
fn record_cursor(batch: &mut Intake<'_>, user: &str, pages: &Pages, metrics: &PullMetrics) {
    batch.stats.spotify_user = Some(user.into());
    batch.stats.spotify_cursor_after = pages.cursor;
    batch.stats.spotify_last_played_ms = pages.last_played;
    batch.stats.spotify_gaps = metrics.gaps.clone();
    batch.stats.stopped = metrics.stopped.as_ref().map(|stop| format!("{stop:?}"));
}

fn enrich(
    layout: &Layout,
    manifest: &mut Manifest,
    api: &mut Api<'_>,
    opts: &PullOptions,
    command: &str,
    metrics: &mut PullMetrics,
    seen_now: &[String],
) -> Result<(), SourceError> {
    use crate::lake::parquet;

    // Everything plays have named, minus what was fetched (or found missing) before.
    let mut wanted: std::collections::BTreeSet<String> = seen_now.iter().cloned().collect();
    for f in manifest.staging_files(crate::lake::staging::STG_SPOTIFY_API_PLAYS) {
        for b in parquet::read(&layout.abs(&f.path), 8192)? {
            let b = b.map_err(|source| crate::lake::LakeError::ArrowRead { path: layout.abs(&f.path), source })?;
            for (col, prefix) in
                [("track_id", "/v1/tracks/"), ("album_id", "/v1/albums/"), ("artist_id", "/v1/artists/")]
            {
                let c = datafusion::arrow::array::AsArray::as_string::<i32>(b.column_by_name(col).expect("column"));
                wanted.extend(c.iter().flatten().map(|id| format!("{prefix}{id}")));
            }
        }
    }
    for r in manifest.raw_files()?.iter().filter(|r| r.source == SOURCE) {
        wanted.remove(&r.origin);
    }
    for missing in &manifest.state().spotify_not_found {
        wanted.remove(missing);
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let total = wanted.len();
    let mut batch = responses(layout, manifest, command)?;
    let mut not_found = vec![];
    let mut failed = None;
    for path in wanted.into_iter().take(opts.max_enrich) {
        let kind = if path.starts_with("/v1/tracks/") {
            KIND_TRACK
        } else if path.starts_with("/v1/albums/") {
            KIND_ALBUM
        } else {
            KIND_ARTIST
        };
        match api.get(&path) {
            Ok(Fetched::Body(bytes)) => {
                batch.offer(found(kind, &path, None), bytes)?;
                metrics.enriched += 1;
            }
            Ok(Fetched::NotFound) => not_found.push(path),
            Ok(Fetched::Stopped(stop)) => {
                metrics.stopped = Some(stop);
                break;
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    metrics.enrich_left = total.saturating_sub(metrics.enriched as usize + not_found.len()) as u64;
    batch.stats.spotify_enriched = Some(metrics.enriched);
    batch.force = !not_found.is_empty();
    batch.stats.spotify_not_found = not_found;
    batch.finish(manifest, Commit::Wait)?;
    failed.map_or(Ok(()), Err)
}
