//! Local time, named and own queries, and the report as a person sees it:
//! the HTML page opened in headless Chromium (Debian's `chromium`), its
//! charts measured, its numbers compared with the named queries', and every
//! network request it could make caught by a proxy that must stay idle.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::common::{TestLake, sample, stderr, stdout};

/// One extended-history record ending at `ts` (UTC).
fn stream(ts: &str, track: usize) -> serde_json::Value {
    serde_json::json!({
        "ts": ts, "username": "me", "platform": "ios", "ms_played": 200000, "conn_country": "DE",
        "master_metadata_track_name": format!("Track {track}"), "master_metadata_album_artist_name": "Artist",
        "master_metadata_album_album_name": "Album", "spotify_track_uri": format!("spotify:track:t{track}"),
        "reason_start": "trackdone", "reason_end": "trackdone", "shuffle": false, "skipped": track.is_multiple_of(3),
        "offline": false, "incognito_mode": false
    })
}

/// Plays at the instants where local time is hard: both passes through the
/// repeated hour when clocks go back (2024 and 2025, Berlin, Los Angeles,
/// Sydney), the skipped hour in spring, a 30-minute zone's date line.
const INSTANTS: [&str; 16] = [
    "2024-10-27T00:30:00Z",
    "2024-10-27T01:30:00Z",
    "2025-10-26T00:30:00Z",
    "2025-10-26T01:30:00Z",
    "2025-03-30T01:30:00Z",
    "2024-11-03T08:30:00Z",
    "2024-11-03T09:30:00Z",
    "2025-11-02T08:30:00Z",
    "2025-11-02T09:30:00Z",
    "2024-04-06T15:30:00Z",
    "2024-04-06T16:30:00Z",
    "2025-04-05T15:30:00Z",
    "2025-04-05T16:30:00Z",
    "2024-10-05T16:45:00Z",
    "2024-06-01T18:45:00Z",
    "2024-12-31T23:30:00Z",
];

fn dst_lake() -> TestLake {
    let lake = TestLake::new();
    let dir = lake.dir.path().join("export");
    std::fs::create_dir_all(&dir).unwrap();
    let records: Vec<serde_json::Value> = INSTANTS.iter().enumerate().map(|(i, t)| stream(t, i)).collect();
    std::fs::write(dir.join("Streaming_History_Audio_2024-2025.json"), serde_json::to_vec(&records).unwrap()).unwrap();
    let o = lake.cli(&["--progress", "off", "ingest", "spotify-export", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    lake
}

/// `query --name <name> --tz <zone> --format csv`, rows after the header.
fn named(lake: &TestLake, name: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["query", "--name", name, "--format", "csv"];
    args.extend_from_slice(extra);
    let o = lake.cli(&args);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    stdout(&o).lines().skip(1).map(String::from).collect()
}

/// Issue 23, item 1: each play's local hour, weekday and date in five zones
/// (two with daylight saving on each side of the year, one at half hours
/// with it, one at half hours without) equal chrono-tz's, and every play is
/// counted once.
#[test]
fn local_hours_days_and_weeks_are_right_across_daylight_saving_changes() {
    let lake = dst_lake();
    for zone in ["Europe/Berlin", "America/Los_Angeles", "Australia/Sydney", "Australia/Adelaide", "Asia/Kolkata"] {
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        let local: Vec<_> = INSTANTS
            .iter()
            .map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc).with_timezone(&tz))
            .collect();
        let mut by_hour = std::collections::BTreeMap::<u32, u32>::new();
        let mut by_clock = std::collections::BTreeMap::<(u32, u32), u32>::new();
        let mut by_day = std::collections::BTreeMap::<String, u32>::new();
        for t in &local {
            *by_hour.entry(t.hour()).or_default() += 1;
            *by_clock.entry((t.weekday().num_days_from_monday(), t.hour())).or_default() += 1;
            *by_day.entry(t.date_naive().to_string()).or_default() += 1;
        }
        let want: Vec<String> = by_hour.iter().map(|(h, n)| format!("{h},{n}")).collect();
        assert_eq!(named(&lake, "listening_by_hour", &["--tz", zone]), want, "{zone}");
        let want: Vec<String> = by_clock.iter().map(|((d, h), n)| format!("{d},{h},{n}")).collect();
        assert_eq!(named(&lake, "listening_clock", &["--tz", zone]), want, "{zone}");
        let days: Vec<String> = named(&lake, "time_listened_by_day", &["--tz", zone])
            .iter()
            .map(|r| {
                let c: Vec<&str> = r.split(',').collect();
                format!("{},{}", c[0], c[2])
            })
            .collect();
        let want: Vec<String> = by_day.iter().map(|(d, n)| format!("{d},{n}")).collect();
        assert_eq!(days, want, "{zone}");
        // The report's clock, made from quarter hours of plays, is chrono-tz's too.
        let page = lake.dir.path().join("clock.html");
        let o = lake.cli(&["report", "--tz", zone, "--html", page.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let page = std::fs::read_to_string(&page).unwrap();
        let cells: Vec<u32> = page
            .split("<rect class=\"cell\" data-plays=\"")
            .skip(1)
            .map(|c| c.split('"').next().unwrap().parse().unwrap())
            .collect();
        let want: Vec<u32> =
            (0..7).flat_map(|d| (0..24).map(move |h| (d, h))).map(|k| by_clock.get(&k).copied().unwrap_or(0)).collect();
        assert_eq!(cells, want, "{zone}: the report's clock");
    }
    // The repeated hour in Los Angeles: 01:30 twice, two plays, each once.
    let hours = named(&lake, "listening_by_hour", &["--tz", "America/Los_Angeles"]);
    assert!(hours.contains(&"1,4".to_string()), "{hours:?}");
    // TUNELAKE_TZ is the default, and every table says which zone it used.
    let o = crate::common::tunelake_cmd()
        .arg("--lake")
        .arg(lake.layout.root())
        .args(["query", "--name", "listening_by_hour"])
        .env("TUNELAKE_TZ", "Asia/Kolkata")
        .output()
        .unwrap();
    assert!(stdout(&o).contains("(local times in Asia/Kolkata; plays: all of it)"), "{}", stdout(&o));
    let o = lake.cli(&["query", "--name", "top_tracks", "--tz", "Mars/Olympus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`Mars/Olympus` is not an IANA time zone name"), "{}", stderr(&o));
    // A period in local dates: Berlin's 2024-10-27 holds the two plays of its repeated hour.
    let day =
        named(&lake, "time_listened_by_day", &["--tz", "Europe/Berlin", "--from", "2024-10-27", "--to", "2024-10-27"]);
    assert_eq!(day, ["2024-10-27,0.1,2,2"]);
}

/// Issue 23, item 3: `*.sql` files in `<lake>/queries/` are named queries
/// beside the built-in ones; one that fails names its file.
#[test]
fn your_own_queries_are_listed_and_run_and_a_bad_one_names_its_file() {
    let lake = dst_lake();
    let dir = lake.layout.root().join("queries");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("late_nights.sql"),
        "-- Plays after midnight.\nSELECT count(*) AS plays FROM plays WHERE local_hour < 5\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken.sql"), "-- Not SQL.\nSELEKT nothing\n").unwrap();
    let list = stdout(&lake.cli(&["query", "--list"]));
    assert!(list.contains("late_nights") && list.contains("Plays after midnight. (yours: "), "{list}");
    assert!(list.contains("top_albums") && list.contains("streaks") && list.contains("discoveries"), "{list}");
    assert_eq!(named(&lake, "late_nights", &["--tz", "UTC"]), ["5"]);
    let o = lake.cli(&["query", "--name", "broken"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&dir.join("broken.sql").display().to_string()) && err.contains("SELEKT"), "{err}");
    // --sql-dir points elsewhere.
    let other = lake.dir.path().join("mine");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("n.sql"), "SELECT 7 AS n").unwrap();
    assert_eq!(named(&lake, "n", &["--sql-dir", other.to_str().unwrap()]), ["7"]);
}

/// Debian's Chromium, or a failure saying how to get it.
fn chromium() -> PathBuf {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = Command::new("sh").args(["-c", &format!("command -v {c}")]).output()
            && o.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        }
    }
    panic!("the report test needs Chromium: `apt-get install chromium` (Debian), as .ci/run does");
}

/// A proxy that answers nothing and notes the host of every request sent
/// through it: Chromium sends all its traffic there, so a page that used the
/// network shows up as a host it names.
fn idle_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hosts = Arc::new(Mutex::new(vec![]));
    let seen = hosts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let n = (&stream).read(&mut buf).unwrap_or(0);
            if n == 0 {
                continue; // a connection opened ahead of need and closed unused
            }
            // "CONNECT host:443 HTTP/1.1" or "GET http://host/path HTTP/1.1".
            let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string();
            let target = line.split(' ').nth(1).unwrap_or("").trim_start_matches("http://");
            seen.lock().unwrap().push(target.split(['/', ':']).next().unwrap_or("").to_string());
        }
    });
    (addr, hosts)
}

/// The hosts Chromium itself calls whatever page it shows (sign-in,
/// connectivity and time checks), which flags do not silence; the page
/// names none of them.
fn chromiums_own(host: &str) -> bool {
    [".google.com", ".googleapis.com", ".gvt1.com"].iter().any(|d| host.ends_with(d))
}

/// Runs headless Chromium on `page` through `proxy` with `args`; its stdout.
fn headless(page: &Path, proxy: &str, args: &[&str]) -> String {
    let o = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .args(["--disable-default-apps", "--disable-extensions", "--no-pings", "--window-size=1200,2000"])
        .arg(format!("--proxy-server=http://{proxy}"))
        .arg("--proxy-bypass-list=<-loopback>")
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium: {}", stderr(&o));
    stdout(&o)
}

/// Measures every chart as laid out: each svg's size and its marks, and the
/// top lists' rows, into a `<pre id="measured">` that `--dump-dom` prints.
const MEASURE: &str = r#"<script>
const out = {svgs: {}, tables: {}};
for (const svg of document.querySelectorAll('svg')) {
  const r = svg.getBoundingClientRect();
  const marks = (cls) => [...svg.querySelectorAll('rect.' + cls)];
  const sized = (cls) => marks(cls).filter(m => { const b = m.getBoundingClientRect(); return b.width > 0 && b.height > 0; }).length;
  out.svgs[svg.id] = {w: r.width, h: r.height, bars: marks('bar').length, sized_bars: sized('bar'),
    cells: marks('cell').length, sized_cells: sized('cell'), segments: marks('segment').length, gaps: marks('gap').length,
    plays: marks('cell').map(c => Number(c.dataset.plays))};
}
for (const t of document.querySelectorAll('table')) {
  out.tables[t.id] = [...t.rows].map(r => [r.cells[0].textContent, Number(r.cells[1].textContent)]);
}
out.plays = document.getElementById('total-plays').textContent;
const pre = document.createElement('pre'); pre.id = 'measured'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script></body>"#;

/// Issue 23, items 4 and 5: the report of the sample plus an export, opened
/// in headless Chromium: every chart laid out with its marks, no network
/// request, and the page's numbers those of the named queries.
#[test]
fn the_html_report_renders_offline_in_chromium_with_the_named_queries_numbers() {
    let lake = TestLake::new();
    let (html, page, text) = html_report_of_the_sample_and_an_export(&lake);

    // The named queries, in the same zone.
    let months = berlin(&lake, "time_listened_by_month");
    let plays: i64 = months.iter().map(|r| r.split(',').nth(2).unwrap().parse::<i64>().unwrap()).sum();
    assert!(text.contains(&format!("  {plays} plays (")), "{text}");
    assert!(text.contains("listening report: all of it (local times in Europe/Berlin)"), "{text}");

    let (proxy, hosts) = idle_proxy();
    let m = measured_in_chromium(&lake, &page, &proxy);
    let svg = |id: &str| &m["svgs"][id];
    for id in ["clock", "weeks", "top-artists", "top-tracks", "top-albums", "discoveries", "content"] {
        assert!(svg(id)["w"].as_f64().unwrap() > 100.0 && svg(id)["h"].as_f64().unwrap() > 20.0, "{id}: {}", svg(id));
    }
    assert_clock_holds_listening_clock(&lake, &m);
    assert_weeks_hold_time_listened_by_week(&lake, &m, &page);
    assert_top_lists_hold_the_top_queries(&lake, &m);
    assert_discoveries_and_kinds_hold_their_queries(&lake, &m, &page);
    assert_eq!(m["plays"].as_str(), Some(plays.to_string().as_str()));

    // A screenshot, as a person would see it.
    assert_screenshot_is_a_drawn_page(&lake, &html, &proxy);
    assert!(!page.contains("google"), "the page names none of Chromium's own hosts");
    let asked: Vec<String> = hosts.lock().unwrap().iter().filter(|h| !chromiums_own(h)).cloned().collect();
    assert!(asked.is_empty(), "the report made network requests: {asked:?}");

    // The proxy does catch a page that reaches out.
    let leaky = lake.dir.path().join("leaky.html");
    std::fs::write(&leaky, "<html><body><img src=\"http://example.invalid/x.png\"></body></html>").unwrap();
    headless(&leaky, &proxy, &["--dump-dom"]);
    assert!(hosts.lock().unwrap().iter().any(|h| h == "example.invalid"), "{:?}", hosts.lock().unwrap());
}

/// Ingests the sample and the export fixtures and writes `report --html` in
/// Europe/Berlin; returns the page's path, the page, and what the report printed.
fn html_report_of_the_sample_and_an_export(lake: &TestLake) -> (PathBuf, String, String) {
    lake.ingest(&sample());
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spotify_export");
    let o = lake.cli(&["--progress", "off", "ingest", "spotify-export", fixtures.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = lake.dir.path().join("report.html");
    let o = lake.cli(&["report", "--tz", "Europe/Berlin", "--html", html.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.len() < 2 << 20, "{} bytes", page.len());
    (html, page, stdout(&o))
}

/// A named query's rows in the report's zone.
fn berlin(lake: &TestLake, name: &str) -> Vec<String> {
    named(lake, name, &["--tz", "Europe/Berlin"])
}

/// The page with `MEASURE` added, dumped by headless Chromium: what it measured.
fn measured_in_chromium(lake: &TestLake, page: &str, proxy: &str) -> serde_json::Value {
    let measured_page = lake.dir.path().join("measured.html");
    std::fs::write(&measured_page, page.replace("</body>", MEASURE)).unwrap();
    let dom = headless(&measured_page, proxy, &["--dump-dom"]);
    let json = dom.split("<pre id=\"measured\">").nth(1).and_then(|r| r.split("</pre>").next()).expect("measured");
    let json = json.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
    serde_json::from_str(&json).unwrap()
}

/// The values of a `data-<attr>` on the marks of the page's svg `id`, in order.
fn drawn<T: std::str::FromStr<Err: std::fmt::Debug>>(page: &str, id: &str, attr: &str) -> Vec<T> {
    let re = format!("data-{attr}=\"");
    let svg = page.split(&format!("<svg id=\"{id}\"")).nth(1).unwrap().split("</svg>").next().unwrap();
    svg.split(&re).skip(1).map(|r| r.split('"').next().unwrap().parse().unwrap()).collect()
}

fn assert_clock_holds_listening_clock(lake: &TestLake, m: &serde_json::Value) {
    // The clock: 168 cells laid out, each holding listening_clock's plays.
    let clock_svg = &m["svgs"]["clock"];
    assert_eq!((clock_svg["cells"].as_u64(), clock_svg["sized_cells"].as_u64()), (Some(168), Some(168)));
    let mut clock = vec![0i64; 168];
    for row in berlin(lake, "listening_clock") {
        let c: Vec<i64> = row.split(',').map(|v| v.parse().unwrap()).collect();
        clock[(c[0] * 24 + c[1]) as usize] = c[2];
    }
    let drawn: Vec<i64> = clock_svg["plays"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(drawn, clock);
}

fn assert_weeks_hold_time_listened_by_week(lake: &TestLake, m: &serde_json::Value, page: &str) {
    // A bar per week from the first to the last, drawn where there was listening.
    let weeks = berlin(lake, "time_listened_by_week");
    let first =
        chrono::NaiveDate::parse_from_str(weeks.first().unwrap().split(',').next().unwrap(), "%Y-%m-%d").unwrap();
    let last = chrono::NaiveDate::parse_from_str(weeks.last().unwrap().split(',').next().unwrap(), "%Y-%m-%d").unwrap();
    assert_eq!(m["svgs"]["weeks"]["bars"].as_i64(), Some((last - first).num_days() / 7 + 1));
    let listened = weeks.iter().filter(|r| r.split(',').nth(1).unwrap().parse::<f64>().unwrap() > 0.0).count();
    assert_eq!(m["svgs"]["weeks"]["sized_bars"].as_u64(), Some(listened as u64), "{weeks:?}");
    // Each drawn week holds the query's hours.
    let hours: Vec<f64> = weeks.iter().map(|r| r.split(',').nth(1).unwrap().parse().unwrap()).collect();
    let drawn_hours: Vec<f64> = drawn::<f64>(page, "weeks", "hours").into_iter().filter(|h| *h > 0.0).collect();
    assert_eq!(drawn_hours, hours.into_iter().filter(|h| *h > 0.0).collect::<Vec<_>>());
}

fn assert_top_lists_hold_the_top_queries(lake: &TestLake, m: &serde_json::Value) {
    // The top lists: the queries' first ten rows, name and plays.
    for (table, query, name_cols, plays_col) in
        [("top-artists", "top_artists", 1, 1), ("top-tracks", "top_tracks", 2, 2), ("top-albums", "top_albums", 2, 2)]
    {
        let want: Vec<(String, i64)> = berlin(lake, query)
            .iter()
            .take(10)
            .map(|r| {
                let c = split_csv(r);
                let name =
                    if name_cols == 2 && !c[1].is_empty() { format!("{} - {}", c[0], c[1]) } else { c[0].clone() };
                (name, c[plays_col].parse().unwrap())
            })
            .collect();
        let got: Vec<(String, i64)> = m["tables"][format!("{table}-table")]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap()))
            .collect();
        assert!(!want.is_empty(), "{query} has rows");
        assert_eq!(got, want, "{table}");
        assert_eq!(m["svgs"][table]["sized_bars"].as_u64(), Some(want.len() as u64), "{table}");
    }
}

fn assert_discoveries_and_kinds_hold_their_queries(lake: &TestLake, m: &serde_json::Value, page: &str) {
    // Discoveries and the split by kind: the queries' rows, bar by bar.
    let discoveries: Vec<Vec<i64>> = berlin(lake, "discoveries")
        .iter()
        .map(|r| r.split(',').skip(1).map(|v| v.parse().unwrap()).collect())
        .collect();
    assert!(!discoveries.is_empty());
    assert_eq!(drawn::<i64>(page, "discoveries", "artists"), discoveries.iter().map(|d| d[0]).collect::<Vec<_>>());
    assert_eq!(drawn::<i64>(page, "discoveries", "tracks"), discoveries.iter().map(|d| d[1]).collect::<Vec<_>>());
    assert_eq!(m["svgs"]["discoveries"]["bars"].as_u64(), Some(2 * discoveries.len() as u64));
    let kinds: Vec<i64> =
        berlin(lake, "content_types").iter().map(|r| r.split(',').nth(1).unwrap().parse().unwrap()).collect();
    assert_eq!(drawn::<i64>(page, "content", "plays"), kinds);
    assert_eq!(m["svgs"]["content"]["segments"].as_u64(), Some(kinds.len() as u64));
}

/// A screenshot of the report at the window's size, holding more than a blank page would.
fn assert_screenshot_is_a_drawn_page(lake: &TestLake, html: &Path, proxy: &str) {
    let png = lake.dir.path().join("report.png");
    headless(html, proxy, &[&format!("--screenshot={}", png.display())]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let (w, h) =
        (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1200, 2000));
    assert!(bytes.len() > 30_000, "a blank page compresses to a few KB: {} bytes", bytes.len());
}

/// A CSV row's fields (quoted fields may hold commas and doubled quotes).
fn split_csv(row: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (vec![], String::new(), false);
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Issue 23, item 4: where the Web API history has coverage gaps, the report's
/// totals read "at least" and say why, and the gap is marked on the timeline.
#[test]
fn a_report_over_coverage_gaps_says_at_least_and_marks_them() {
    let d = tunelake::report::ReportData {
        plays: 10,
        hours: 1.0,
        weeks: vec![tunelake::report::Span { start: "2024-01-01".into(), hours: 1.0, plays: 10 }],
        gaps: vec![tunelake::report::Gap {
            user: "me".into(),
            from: "2024-01-02T10:00:00Z".into(),
            to: "2024-01-03T10:00:00Z".into(),
        }],
        ..Default::default()
    };
    let mut text = vec![];
    tunelake::report::write_text(&mut text, &d).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("at least 10 plays") && text.contains("the Spotify Web API shows only the last 50"),
        "{text}"
    );
    assert!(text.contains("me: 2024-01-02T10:00:00Z .. 2024-01-03T10:00:00Z"), "{text}");
    let page = tunelake::report::html::render(&d);
    assert!(page.contains("<b id=\"total-plays\">at least 10</b>") && page.contains("id=\"at-least\""), "{page}");
    assert_eq!(page.matches("<rect class=\"gap\"").count(), 1);
}

/// A report over a period reads the same plays as the named queries over it:
/// totals, the split by kind, and discoveries (first plays ever, counted in
/// the period's months).
#[test]
fn a_report_over_a_period_equals_the_named_queries_over_it() {
    let lake = dst_lake();
    let period = ["--tz", "Europe/Berlin", "--from", "2024-10-01", "--to", "2025-03-31"];
    let html = lake.dir.path().join("period.html");
    let mut args = vec!["report", "--html", html.to_str().unwrap()];
    args.extend_from_slice(&period);
    let o = lake.cli(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let months = named(&lake, "time_listened_by_month", &period);
    let plays: i64 = months.iter().map(|r| r.split(',').nth(2).unwrap().parse::<i64>().unwrap()).sum();
    assert_eq!(plays, 7, "{months:?}");
    assert!(text.contains(&format!("  {plays} plays ({plays} streams)")), "{text}");
    assert!(text.contains("listening report: 2024-10-01 00:00 to 2025-04-01 00:00"), "{text}");
    // The period starts and ends inside UTC months: the top lists add the
    // build's monthly summary of the months covered whole to the plays of the others.
    assert!(lake.layout.root().join("star/_track_months").is_dir(), "the build wrote the monthly summary");
    let tracks = named(&lake, "top_tracks", &period);
    assert_eq!(tracks.len(), 7, "{tracks:?}");
    for row in tracks {
        let f = split_csv(&row);
        assert!(text.contains(&format!(". {} - {} ({})\n", f[0], f[1], f[2])), "{row} in {text}");
    }
    assert_eq!(named(&lake, "top_artists", &period), ["Artist,7,1"]);
    assert!(text.contains("   1. Artist (7)\n"), "{text}");
    let page = std::fs::read_to_string(&html).unwrap();
    let drawn = |attr: &str| -> Vec<String> {
        let svg = page.split("<svg id=\"discoveries\"").nth(1).unwrap().split("</svg>").next().unwrap();
        svg.split(&format!("data-{attr}=\"")).skip(1).map(|r| r.split('"').next().unwrap().to_string()).collect()
    };
    let discoveries = named(&lake, "discoveries", &period);
    let want = |col: usize| discoveries.iter().map(|r| r.split(',').nth(col).unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!((drawn("artists"), drawn("tracks")), (want(1), want(2)), "{discoveries:?}");
}

/// A track whose plays name two artists and two albums (the same URI
/// credited differently across exports) counts for each as the named
/// queries do: the report groups by track first and splits such tracks.
#[test]
fn a_track_credited_to_two_artists_counts_for_each_as_the_named_queries_do() {
    let lake = TestLake::new();
    let dir = lake.dir.path().join("export");
    std::fs::create_dir_all(&dir).unwrap();
    let credited = |i: usize, artist: &str, album: &str, track: usize| {
        let mut s = stream(&format!("2024-05-0{}T1{i}:00:00Z", 1 + i % 5), track);
        s["master_metadata_album_artist_name"] = artist.into();
        s["master_metadata_album_album_name"] = album.into();
        s
    };
    let records = vec![
        credited(0, "Ann", "First", 1),
        credited(1, "Ann", "First", 1),
        credited(2, "Ann", "First", 1),
        credited(3, "Bo", "Second", 1),
        credited(4, "Bo", "Second", 1),
        credited(5, "Ann", "First", 2),
    ];
    std::fs::write(dir.join("Streaming_History_Audio_2024.json"), serde_json::to_vec(&records).unwrap()).unwrap();
    let o = lake.cli(&["--progress", "off", "ingest", "spotify-export", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lake.cli(&["report", "--tz", "UTC"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let artists = named(&lake, "top_artists", &["--tz", "UTC"]);
    assert_eq!(artists, ["Ann,4,1", "Bo,2,1"], "the named query");
    for line in ["   1. Ann (4)\n   2. Bo (2)\n", "   1. First - Ann (4)\n   2. Second - Bo (2)\n"] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert_eq!(named(&lake, "top_albums", &["--tz", "UTC"]), ["First,Ann,4,2", "Second,Bo,2,1"]);
}
