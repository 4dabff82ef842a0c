//! `tunelake report`: the listening history at a glance, in the listener's
//! time zone. Every figure comes from a named query (sql/queries/) run over
//! the `plays` view of the period asked for, so the report and `query
//! --name` always agree; [`html`] draws the same figures as one
//! self-contained page.

pub mod html;

use std::io::Write;

use chrono::DateTime;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{ArrowPrimitiveType, Float64Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;

use crate::lake::Manifest;
use crate::model::ModelError;
use crate::model::local::Period;
use crate::model::query::{self, Scope};

/// How many entries each top list shows.
pub const TOP: usize = 10;

/// One entry of a top list: what, by whom, how many plays.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub name: String,
    pub by: Option<String>,
    pub plays: i64,
}

/// A span of time on a chart's axis (a week, a month) and its figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start: String,
    pub hours: f64,
    pub plays: i64,
}

/// A Spotify Web API coverage gap: plays between these instants may be missing.
pub use crate::lake::stats::Gap;

/// Everything a report shows.
#[derive(Debug, Clone, Default)]
pub struct ReportData {
    /// The zone, as `local times in ...` names it.
    pub zone: String,
    pub period: String,
    pub plays: i64,
    pub streams: i64,
    pub hours: f64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub top_tracks: Vec<Ranked>,
    pub top_artists: Vec<Ranked>,
    pub top_albums: Vec<Ranked>,
    pub weeks: Vec<Span>,
    pub months: Vec<Span>,
    /// Plays by weekday (Monday = 0) and hour, local time.
    pub clock: [[i64; 24]; 7],
    /// Per month: new artists, new tracks.
    pub discoveries: Vec<(String, i64, i64)>,
    /// Per kind (music, podcasts, audiobooks): plays, streams.
    pub content: Vec<(String, i64, i64)>,
    pub gaps: Vec<Gap>,
}

pub const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

impl ReportData {
    /// The busiest hour of the day (0-23) and its plays, if any were played.
    pub fn busiest_hour(&self) -> Option<(usize, i64)> {
        let by_hour = (0..24).map(|h| (h, self.clock.iter().map(|d| d[h]).sum::<i64>()));
        by_hour.filter(|(_, n)| *n > 0).max_by_key(|&(h, n)| (n, std::cmp::Reverse(h)))
    }

    /// The busiest day of the week (Monday = 0) and its plays.
    pub fn busiest_weekday(&self) -> Option<(usize, i64)> {
        let by_day = self.clock.iter().enumerate().map(|(d, hours)| (d, hours.iter().sum::<i64>()));
        by_day.filter(|(_, n)| *n > 0).max_by_key(|&(d, n)| (n, std::cmp::Reverse(d)))
    }

    /// "" or "at least ": totals are lower bounds where the API history has gaps.
    pub fn at_least(&self) -> &'static str {
        if self.gaps.is_empty() { "" } else { "at least " }
    }

    /// Why totals are lower bounds, when they are.
    pub fn gaps_reason(&self) -> Option<String> {
        (!self.gaps.is_empty()).then(|| {
            format!(
                "the Spotify Web API shows only the last 50 plays, and {} pull(s) found more had been played since \
                 the one before; plays in those spans may be missing (import your Spotify data export to fill them)",
                self.gaps.len()
            )
        })
    }
}

/// The report's first pass, over all of `fact_plays`: per track (with its
/// artist and album) the plays in the period (`{period}`) and its first play
/// ever. The top lists and the discoveries are sums over this small table.
/// A star built with the monthly summary gives it from that instead
/// ([`TRACKS_FROM_MONTHS`]); this is for a star built before it existed.
/// (Grouping by the track alone, with min and max of the artist and album
/// to find tracks credited twice, was twice as slow: bench/README.)
const TRACKS_PASS: &str = "SELECT track_id, artist_id, album_id,
       sum(CASE WHEN counts_as_play AND ({period}) THEN 1 ELSE 0 END) AS plays,
       min(CASE WHEN counts_as_play THEN played_at END) AS first_at
FROM fact_plays
GROUP BY track_id, artist_id, album_id";

/// The same table from the build's monthly summary (`sql/model/_track_months.sql`):
/// its rows of the months the period covers whole (`{whole}`), and the
/// period's plays in the other months (not `{in_whole}`) read from
/// `fact_plays`. The first play ever comes from the summary, which holds
/// every month. About a quarter of the rows of the pass over every play.
const TRACKS_FROM_MONTHS: &str = "SELECT track_id, artist_id, album_id, sum(plays) AS plays, min(first_at) AS first_at
FROM (
    SELECT track_id, artist_id, album_id, CASE WHEN {whole} THEN plays ELSE 0 END AS plays, first_at
    FROM _track_months
    UNION ALL
    SELECT track_id, artist_id, album_id, count(*) AS plays, CAST(NULL AS TIMESTAMP(6)) AS first_at
    FROM fact_plays
    WHERE counts_as_play AND ({period}) AND NOT ({in_whole})
    GROUP BY track_id, artist_id, album_id
)
GROUP BY track_id, artist_id, album_id";

/// The per-track pass for `period`: from the monthly summary when the
/// star has one (`summarized`), else over every play.
fn tracks_pass(period: &Period, summarized: bool) -> String {
    if !summarized {
        return TRACKS_PASS.replace("{period}", &period.predicate());
    }
    TRACKS_FROM_MONTHS
        .replace("{whole}", &whole_months(period, "month"))
        .replace("{in_whole}", &whole_months(period, "played_at"))
        .replace("{period}", &period.predicate())
}

/// Whether `column` (a UTC time) lies in a month that `period` covers
/// whole, as SQL: from the first month start at or after its start to the
/// last month start at or before its end.
fn whole_months(period: &Period, column: &str) -> String {
    use chrono::{Datelike, TimeZone, Utc};
    let month_start =
        |t: &DateTime<Utc>| Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single().expect("a day 1");
    let after = |t: &DateTime<Utc>| {
        let start = month_start(t);
        if start == *t { start } else { month_start(&(start + chrono::Days::new(31))) }
    };
    let literal = |t: DateTime<Utc>| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S"));
    let bounds: Vec<String> = [
        period.from.as_ref().map(|t| format!("{column} >= {}", literal(after(t)))),
        period.to.as_ref().map(|t| format!("{column} < {}", literal(month_start(t)))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if bounds.is_empty() { "TRUE".into() } else { bounds.join(" AND ") }
}

/// The second pass, over the period's plays: per UTC quarter hour and kind.
/// A quarter hour lies in one local hour (checked: [`Zone::quarter_in_one_hour`]),
/// so the local times are taken of these rows instead of every play's.
const QUARTERS_PASS: &str = "SELECT date_bin(INTERVAL '15 minutes', played_at) AS quarter, content_type,
       sum(CASE WHEN counts_as_play THEN 1 ELSE 0 END) AS plays, count(*) AS streams, sum(ms_played) AS ms
FROM fact_plays WHERE {period}
GROUP BY 1, 2";

/// Per local date, hour and kind: time listened, the clock and the split by kind are sums over it.
const HOURS_FROM_QUARTERS: &str = "SELECT CAST(local_time(quarter) AS DATE) AS local_date,
       CAST(date_part('hour', local_time(quarter)) AS INT) AS local_hour, content_type,
       sum(plays) AS plays, sum(streams) AS streams, sum(ms) AS ms
FROM report_quarters
GROUP BY 1, 2, 3";

/// The same from every play, where a quarter hour does not lie in one local
/// hour (an offset of minutes, as some zones had before 1972).
const HOURS_PASS: &str = "SELECT local_date, local_hour, content_type,
       sum(CASE WHEN counts_as_play THEN 1 ELSE 0 END) AS plays, count(*) AS streams, sum(ms_played) AS ms
FROM plays
GROUP BY local_date, local_hour, content_type";

/// Streams without ms_played (the Web API's) count their track's length.
const UNTIMED_PASS: &str = "SELECT p.local_date, sum(t.duration_s) * 1000 AS ms
FROM plays p
JOIN dim_tracks t ON t.track_id = p.track_id
WHERE p.ms_played IS NULL
GROUP BY p.local_date";

/// The figures, each the same rows as the named query it stands for
/// (sql/queries/), from the passes' tables; `{top}` is [`TOP`].
const FIGURES: [(&str, &str); 8] = [
    (
        "top_tracks",
        "SELECT t.title, a.name AS artist, sum(r.plays) AS plays
         FROM report_tracks r JOIN dim_tracks t ON t.track_id = r.track_id
         LEFT JOIN dim_artists a ON a.artist_id = t.artist_id
         WHERE r.plays > 0 GROUP BY t.title, a.name ORDER BY plays DESC, t.title, artist LIMIT {top}",
    ),
    (
        "top_artists",
        "SELECT a.name AS artist, sum(r.plays) AS plays
         FROM report_tracks r JOIN dim_artists a ON a.artist_id = r.artist_id
         WHERE r.plays > 0 GROUP BY a.name ORDER BY plays DESC, artist LIMIT {top}",
    ),
    (
        "top_albums",
        "SELECT al.name AS album, a.name AS artist, sum(r.plays) AS plays
         FROM report_tracks r JOIN dim_albums al ON al.album_id = r.album_id
         LEFT JOIN dim_artists a ON a.artist_id = al.artist_id
         WHERE r.plays > 0 GROUP BY al.album_id, al.name, a.name ORDER BY plays DESC, album, artist LIMIT {top}",
    ),
    ("time_listened_by_week", "week"),
    ("time_listened_by_month", "month"),
    (
        "listening_clock",
        "SELECT CAST((date_part('dow', local_date) + 6) % 7 AS INT) AS weekday, local_hour AS hour, sum(plays) AS plays
         FROM report_hours GROUP BY 1, 2 HAVING sum(plays) > 0 ORDER BY 1, 2",
    ),
    (
        "discoveries",
        "WITH new_tracks AS (
             SELECT CAST(date_trunc('month', local_time(first_at)) AS DATE) AS month, count(*) AS n
             FROM (SELECT min(first_at) AS first_at FROM report_tracks
                   WHERE track_id IS NOT NULL AND first_at IS NOT NULL GROUP BY track_id)
             GROUP BY 1),
         new_artists AS (
             SELECT CAST(date_trunc('month', local_time(first_at)) AS DATE) AS month, count(*) AS n
             FROM (SELECT min(first_at) AS first_at FROM report_tracks
                   WHERE artist_id IS NOT NULL AND first_at IS NOT NULL GROUP BY artist_id)
             GROUP BY 1),
         months AS (SELECT DISTINCT CAST(date_trunc('month', local_date) AS DATE) AS month FROM report_hours)
         SELECT m.month, coalesce(a.n, 0) AS new_artists, coalesce(t.n, 0) AS new_tracks
         FROM months m LEFT JOIN new_artists a ON a.month = m.month LEFT JOIN new_tracks t ON t.month = m.month
         ORDER BY m.month",
    ),
    (
        "content_types",
        "SELECT CASE content_type WHEN 'track' THEN 'music' WHEN 'episode' THEN 'podcasts'
                                  WHEN 'audiobook' THEN 'audiobooks' ELSE 'other' END AS kind,
                sum(plays) AS plays, sum(streams) AS streams
         FROM report_hours GROUP BY 1 ORDER BY plays DESC, kind",
    ),
];

/// Hours, plays and streams per `unit` (week or month) of local dates.
fn time_listened(unit: &str) -> String {
    format!(
        "WITH h AS (SELECT CAST(date_trunc('{unit}', local_date) AS DATE) AS start, sum(ms) AS ms,
                          sum(plays) AS plays, sum(streams) AS streams FROM report_hours GROUP BY 1),
              u AS (SELECT CAST(date_trunc('{unit}', local_date) AS DATE) AS start, sum(ms) AS ms
                    FROM report_untimed GROUP BY 1)
         SELECT h.start, round((coalesce(h.ms, 0) + coalesce(u.ms, 0)) / 3600000.0, 1) AS hours, h.plays, h.streams
         FROM h LEFT JOIN u ON u.start = h.start ORDER BY h.start"
    )
}

/// Runs `sql` and registers its rows as the table `name`; returns them.
async fn pass(ctx: &SessionContext, name: &str, sql: &str) -> Result<Vec<RecordBatch>, ModelError> {
    let t0 = std::time::Instant::now();
    let df = ctx.sql(sql).await.map_err(ModelError::Query)?;
    let schema = df.schema().inner().clone();
    let batches = df.collect().await.map_err(ModelError::Query)?;
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches.clone()]).map_err(ModelError::Query)?;
    ctx.register_table(name, std::sync::Arc::new(table)).map_err(ModelError::Query)?;
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), table = name, "report: pass");
    Ok(batches)
}

/// `report_hours`: per local date, hour and kind, the plays, streams and ms played in the period.
async fn hours(ctx: &SessionContext, scope: &Scope) -> Result<(), ModelError> {
    let quarters = pass(ctx, "report_quarters", &QUARTERS_PASS.replace("{period}", &scope.period.predicate())).await?;
    let starts = quarters.iter().flat_map(|b| {
        let a = b.column(0).as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        a.iter().flatten().collect::<Vec<_>>()
    });
    let sql =
        if starts.into_iter().all(|q| scope.zone.quarter_in_one_hour(q)) { HOURS_FROM_QUARTERS } else { HOURS_PASS };
    pass(ctx, "report_hours", sql).await?;
    Ok(())
}

/// Everything the report shows, over `ctx` (made with `scope`). Two scans of
/// the plays make small tables the figures are sums over, where one query
/// per figure read the plays eight times (bench/README has the figures).
pub async fn gather(ctx: &SessionContext, manifest: &Manifest, scope: &Scope) -> Result<ReportData, ModelError> {
    let t0 = std::time::Instant::now();
    // One after another: at once, the scans fight for the cores and the memory pool (bench/README).
    let summarized = ctx.table_exist("_track_months").map_err(ModelError::Query)?;
    pass(ctx, "report_tracks", &tracks_pass(&scope.period, summarized)).await?;
    hours(ctx, scope).await?;
    pass(ctx, "report_untimed", UNTIMED_PASS).await?;
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "report: passes");
    // At once: each is small, and one's planning and reading of a dimension overlaps another's.
    let figures = FIGURES.iter().map(|(_, sql)| match *sql {
        "week" | "month" => time_listened(sql),
        _ => sql.replace("{top}", &TOP.to_string()),
    });
    let span = "SELECT local_time(min(played_at)), local_time(max(played_at)) FROM plays".to_string();
    let mut results =
        futures::future::try_join_all(figures.chain([span]).map(|sql| async move { query::run(ctx, &sql).await }))
            .await?;
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "report: figures");
    let span = results.pop().expect("the span's rows");
    let [tracks, artists, albums, weeks, months, clock, discoveries, content] =
        <[Vec<RecordBatch>; 8]>::try_from(results).expect("one result per figure");
    let mut data = ReportData {
        zone: scope.zone.to_string(),
        period: scope.period.describe(&scope.zone),
        // top tracks and albums: name, artist, plays; top artists: name, plays.
        top_tracks: ranked(&tracks, Some(1), 2),
        top_artists: ranked(&artists, None, 1),
        top_albums: ranked(&albums, Some(1), 2),
        weeks: every_week(spans(&weeks)),
        months: spans(&months),
        discoveries: text_and_two_counts(&discoveries),
        content: text_and_two_counts(&content),
        gaps: manifest.state().spotify_gaps.clone(),
        ..Default::default()
    };
    for ((day, hour), plays) in ints(&clock, 0).into_iter().zip(ints(&clock, 1)).zip(ints(&clock, 2)) {
        data.clock[day.clamp(0, 6) as usize][hour.clamp(0, 23) as usize] += plays;
    }
    data.plays = data.months.iter().map(|m| m.plays).sum();
    data.hours = data.months.iter().map(|m| m.hours).sum();
    data.streams = data.content.iter().map(|c| c.2).sum();
    let minute = |s: String| s.get(..16).unwrap_or(&s).replace('T', " ");
    data.first = strings(&span, 0).into_iter().next().filter(|s| !s.is_empty()).map(minute);
    data.last = strings(&span, 1).into_iter().next().filter(|s| !s.is_empty()).map(minute);
    Ok(data)
}

/// Rows of a text and two counts (discoveries: month, artists, tracks; content_types: kind, plays, streams).
fn text_and_two_counts(batches: &[RecordBatch]) -> Vec<(String, i64, i64)> {
    let (texts, a, b) = (strings(batches, 0), ints(batches, 1), ints(batches, 2));
    texts.into_iter().zip(a).zip(b).map(|((t, a), b)| (t, a, b)).collect()
}

/// A top list's first [`TOP`] rows: the name in column 0, by whom in column
/// `by` (when the list has one), the plays in column `plays`.
fn ranked(batches: &[RecordBatch], by: Option<usize>, plays: usize) -> Vec<Ranked> {
    let names = strings(batches, 0);
    let by: Vec<Option<String>> = match by {
        Some(i) => strings(batches, i).into_iter().map(|s| Some(s).filter(|s| !s.is_empty())).collect(),
        None => vec![None; names.len()],
    };
    let plays = ints(batches, plays);
    names.into_iter().zip(by).zip(plays).take(TOP).map(|((name, by), plays)| Ranked { name, by, plays }).collect()
}

/// time_listened_by_* rows: start, hours, plays.
fn spans(batches: &[RecordBatch]) -> Vec<Span> {
    let (starts, hours, plays) = (strings(batches, 0), floats(batches, 1), ints(batches, 2));
    starts.into_iter().zip(hours).zip(plays).map(|((start, hours), plays)| Span { start, hours, plays }).collect()
}

/// `weeks` with the weeks nobody played in between them, as zeros: a
/// timeline shows a quiet month as one.
fn every_week(weeks: Vec<Span>) -> Vec<Span> {
    let date = |s: &Span| chrono::NaiveDate::parse_from_str(s.start.get(..10).unwrap_or(""), "%Y-%m-%d").ok();
    let (Some(first), Some(last)) = (weeks.first().and_then(date), weeks.last().and_then(date)) else { return weeks };
    let mut given = weeks.into_iter().peekable();
    let mut out = vec![];
    let mut week = first;
    while week <= last {
        match given.next_if(|s| date(s) == Some(week)) {
            Some(s) => out.push(s),
            None => out.push(Span { start: week.to_string(), hours: 0.0, plays: 0 }),
        }
        week += chrono::Duration::days(7);
    }
    out
}

/// Column `i` of every batch as text ("" for NULL).
pub fn strings(batches: &[RecordBatch], i: usize) -> Vec<String> {
    let mut out = vec![];
    for b in batches {
        let c = b.column(i);
        out.extend(
            (0..c.len())
                .map(|r| if c.is_null(r) { String::new() } else { array_value_to_string(c, r).unwrap_or_default() }),
        );
    }
    out
}

/// Column `i` of every batch as integers (0 for NULL).
pub fn ints(batches: &[RecordBatch], i: usize) -> Vec<i64> {
    numbers::<Int64Type>(batches, i)
}

/// Column `i` of every batch as floats (0 for NULL).
pub fn floats(batches: &[RecordBatch], i: usize) -> Vec<f64> {
    numbers::<Float64Type>(batches, i)
}

/// Column `i` of every batch cast to `T` (the default for NULL).
fn numbers<T: ArrowPrimitiveType>(batches: &[RecordBatch], i: usize) -> Vec<T::Native> {
    let mut out = vec![];
    for b in batches {
        if let Ok(c) = cast(b.column(i), &T::DATA_TYPE) {
            out.extend(c.as_primitive::<T>().iter().map(Option::unwrap_or_default));
        }
    }
    out
}

/// The report as text, for a terminal.
pub fn write_text(out: &mut dyn Write, d: &ReportData) -> std::io::Result<()> {
    let (first, last) = (d.first.as_deref().unwrap_or("-"), d.last.as_deref().unwrap_or("-"));
    writeln!(out, "listening report: {} (local times in {})", d.period, d.zone)?;
    writeln!(
        out,
        "  {}{} plays ({} streams), {}{:.1} hours, {first} .. {last}",
        d.at_least(),
        d.plays,
        d.streams,
        d.at_least(),
        d.hours
    )?;
    if let Some(why) = d.gaps_reason() {
        writeln!(out, "  \"at least\": {why}")?;
    }
    if let (Some((h, hp)), Some((w, wp))) = (d.busiest_hour(), d.busiest_weekday()) {
        writeln!(
            out,
            "  busiest hour {h:02}:00-{:02}:00 ({hp} plays), busiest day {} ({wp} plays)",
            (h + 1) % 24,
            WEEKDAYS[w]
        )?;
    }
    for (title, list) in [("top artists", &d.top_artists), ("top tracks", &d.top_tracks), ("top albums", &d.top_albums)]
    {
        writeln!(out, "\n{title}:")?;
        if list.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for (i, r) in list.iter().enumerate() {
            let by = r.by.as_deref().map(|b| format!(" - {b}")).unwrap_or_default();
            writeln!(out, "  {:>2}. {}{by} ({})", i + 1, r.name, r.plays)?;
        }
    }
    writeln!(out, "\ntime listened per month:")?;
    for m in &d.months {
        writeln!(out, "  {}  {:>8.1} h  {:>7} plays", m.start.get(..7).unwrap_or(&m.start), m.hours, m.plays)?;
    }
    if !d.content.is_empty() {
        let kinds: Vec<String> = d.content.iter().map(|(k, p, _)| format!("{k} {p}")).collect();
        writeln!(out, "\nplays by kind: {}", kinds.join(", "))?;
    }
    writeln!(out, "\ncoverage gaps (Spotify Web API):")?;
    if d.gaps.is_empty() {
        writeln!(out, "  none")?;
    }
    for g in &d.gaps {
        writeln!(out, "  {}: {} .. {}", g.user, g.from, g.to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use datafusion::arrow::array::{BooleanArray, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    /// Plays over three months: a track credited to two artists, a play
    /// under 30 s, a play without a track, plays on both sides of month ends.
    async fn plays_and_their_summary() -> SessionContext {
        let rows = [
            ("2024-01-03T10:00:00Z", Some("t1"), Some("a1"), true),
            ("2024-01-31T23:59:59Z", Some("t1"), Some("a2"), true),
            ("2024-02-01T00:00:00Z", Some("t1"), Some("a1"), true),
            ("2024-02-10T08:00:00Z", Some("t2"), Some("a1"), false),
            ("2024-02-11T08:00:00Z", Some("t2"), Some("a1"), true),
            ("2024-02-20T08:00:00Z", None, None, true),
            ("2024-03-01T00:00:00Z", Some("t3"), Some("a3"), true),
            ("2024-03-15T12:00:00Z", Some("t1"), Some("a2"), true),
        ];
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().timestamp_micros();
        let schema = Arc::new(Schema::new(vec![
            Field::new("played_at", DataType::Timestamp(TimeUnit::Microsecond, None), false),
            Field::new("track_id", DataType::Utf8, true),
            Field::new("artist_id", DataType::Utf8, true),
            Field::new("album_id", DataType::Utf8, true),
            Field::new("counts_as_play", DataType::Boolean, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| at(r.0)))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2))),
                Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.3)))),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("fact_plays", batch).unwrap();
        let summary = crate::sql::STAR_SUMMARIES[0];
        let months = ctx.sql(summary.text).await.unwrap().collect().await.unwrap();
        ctx.register_batch(
            summary.name,
            datafusion::arrow::compute::concat_batches(&months[0].schema(), &months).unwrap(),
        )
        .unwrap();
        ctx
    }

    /// The pass's rows with plays or a first play, as sorted text.
    async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let sql = format!("SELECT * FROM ({sql}) WHERE plays > 0 OR first_at IS NOT NULL");
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let mut out: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(move |i| {
                    let cells: Vec<String> = b.columns().iter().map(|c| array_value_to_string(c, i).unwrap()).collect();
                    cells.join(",")
                })
            })
            .collect();
        out.sort();
        out
    }

    /// The summary's answer equals every play's for periods that cover
    /// months whole, in part, within one month, and not at all.
    #[tokio::test]
    async fn the_tracks_pass_from_the_monthly_summary_equals_the_pass_over_every_play() {
        let ctx = plays_and_their_summary().await;
        let utc = |y, m, d, h| Some(Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap());
        let periods = [
            Period::default(),
            Period { from: utc(2024, 2, 1, 0), to: None },
            Period { from: utc(2024, 1, 20, 0), to: utc(2024, 3, 10, 0) },
            Period { from: None, to: utc(2024, 2, 11, 0) },
            Period { from: utc(2024, 2, 5, 0), to: utc(2024, 2, 15, 0) },
            Period { from: utc(2024, 2, 1, 0), to: utc(2024, 3, 1, 0) },
            Period { from: utc(2025, 1, 1, 0), to: None },
        ];
        for period in periods {
            let every_play = rows(&ctx, &tracks_pass(&period, false)).await;
            let summarized = rows(&ctx, &tracks_pass(&period, true)).await;
            assert_eq!(summarized, every_play, "{period:?}");
        }
        let all = rows(&ctx, &tracks_pass(&Period::default(), true)).await;
        assert!(all.contains(&"t1,a1,,2,2024-01-03T10:00:00".to_string()), "{all:?}");
        assert!(all.contains(&"t1,a2,,2,2024-01-31T23:59:59".to_string()), "{all:?}");
        assert_eq!(
            whole_months(&Period { from: utc(2024, 1, 20, 0), to: utc(2024, 3, 10, 0) }, "m"),
            "m >= TIMESTAMP '2024-02-01 00:00:00' AND m < TIMESTAMP '2024-03-01 00:00:00'"
        );
    }
}
