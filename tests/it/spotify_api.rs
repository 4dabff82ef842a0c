//! The Spotify Web API source against a real local HTTP server standing in
//! for Spotify (`fake_spotify`): login with PKCE, pulls with the `after`
//! cursor, token refresh, every fault the issue names, coverage gaps,
//! enrichment, `run --every`, and no secret in any output.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{TestLake, render_rows, stderr, stdout, tunelake_cmd};
use crate::fake_spotify::{FakeSpotify, Fault, USER, plays, track_id};

const NOW_MS: i64 = 1_763_800_000_000; // 2025-11-22

fn cmd(lake: &TestLake, server: &FakeSpotify) -> Command {
    let mut c = tunelake_cmd();
    c.arg("--lake")
        .arg(lake.layout.root())
        .env("SPOTIFY_CLIENT_ID", "test-client-id")
        .env("TUNELAKE_SPOTIFY_API_URL", &server.url)
        .env("TUNELAKE_SPOTIFY_ACCOUNTS_URL", &server.url)
        .env("TUNELAKE_SPOTIFY_MAX_WAIT", "5")
        .env("TUNELAKE_SPOTIFY_TIMEOUT", "2");
    c
}

/// A logged-in lake: tokens as `tunelake auth spotify` leaves them.
fn logged_in(server: &FakeSpotify) -> TestLake {
    let lake = TestLake::new();
    let (access, refresh) = server.issue_tokens();
    let cache = tunelake::source::spotify_auth::TokenCache {
        access_token: access,
        refresh_token: refresh,
        expires_at: chrono::Utc::now().timestamp() + 3600,
        scope: String::new(),
    };
    tunelake::source::spotify_auth::save(&lake.layout, &cache).unwrap();
    lake
}

/// Marks the cached access token expired (as an hour later); returns the cache as it was.
fn expire_token(lake: &TestLake) -> tunelake::source::spotify_auth::TokenCache {
    let mut cache = tunelake::source::spotify_auth::load(&lake.layout).unwrap();
    cache.expires_at = 0;
    tunelake::source::spotify_auth::save(&lake.layout, &cache).unwrap();
    cache
}

fn ingest(lake: &TestLake, server: &FakeSpotify, extra: &[&str]) -> String {
    let out = cmd(lake, server).args(["ingest", "spotify"]).args(extra).output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    text
}

/// `tunelake ingest spotify` that stops early: exit 75 (try again later).
fn ingest_stopped(lake: &TestLake, server: &FakeSpotify) -> String {
    let out = cmd(lake, server).args(["ingest", "spotify"]).output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(75), "{text}");
    text
}

fn rows(lake: &TestLake, sql: &str) -> Vec<String> {
    lake.query(sql).iter().flat_map(render_rows).collect()
}

#[test]
fn login_with_pkce_then_pulls_advance_the_cursor_into_the_star() {
    let server = FakeSpotify::start(plays(30, NOW_MS, 0));
    let lake = TestLake::new();
    let all = log_in_by_pasting_the_callback(&lake, &server);
    assert!(all.contains("logged in to Spotify"), "{all}");
    assert_eq!(server.state.lock().unwrap().token_grants, vec!["authorization_code"]);
    assert_token_cache_is_private_and_no_token_printed(&lake, &server, &all);

    // First pull: all 30 plays.
    let text = ingest(&lake, &server, &[]);
    assert!(text.contains("user alice: 1 page(s), 30 items, 30 new plays"), "{text}");
    lake.build();
    assert_first_pull_is_in_the_star(&lake);

    // Ten more plays: the next pull asks only for what came after the cursor.
    let newest = server.state.lock().unwrap().plays.last().unwrap().played_at_ms;
    server.state.lock().unwrap().plays.extend(plays(10, NOW_MS + 10 * 300_000, 100));
    let text = ingest(&lake, &server, &[]);
    assert!(text.contains("10 items, 10 new plays"), "{text}");
    assert!(server.requests("recently-played").last().unwrap().contains(&format!("after={newest}")));
    let b = lake.build_checked_against_full();
    assert_eq!(b.full_reason, None, "new Web API plays recompute their own months only");
    assert_eq!(rows(&lake, "SELECT count(*) FROM fact_plays"), vec!["40"]);
    // Nothing is looked up twice.
    let lookups = server.requests("/v1/artists/");
    let mut unique = lookups.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(lookups.len(), unique.len(), "{lookups:?}");
}

/// `tunelake auth spotify --no-browser`, with the user's part played here; returns
/// everything the command said, after checking it succeeded.
fn log_in_by_pasting_the_callback(lake: &TestLake, server: &FakeSpotify) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = cmd(lake, server)
        .args(["auth", "spotify", "--no-browser", "--port", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The user opens the printed URL; Spotify redirects to the loopback callback; they paste it.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "no login URL printed: {said}");
        said.push_str(&line);
        if line.starts_with("http") {
            break line.trim().to_string();
        }
    };
    assert!(url.starts_with(&format!("{}/authorize?", server.url)) && url.contains("code_challenge="), "{url}");
    let browser = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirect = browser.get(&url).send().unwrap();
    let location = redirect.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("http://127.0.0.1:{port}/callback?code=")), "{location}");
    writeln!(child.stdin.take().unwrap(), "{location}").unwrap();
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let all = format!("{}{said}{rest}", stdout(&out));
    assert!(out.status.success(), "{all}");
    all
}

fn assert_token_cache_is_private_and_no_token_printed(lake: &TestLake, server: &FakeSpotify, all: &str) {
    // The token cache is 0600 and no token was printed.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(lake.layout.spotify_token()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (access, refresh) = {
        let s = server.state.lock().unwrap();
        (s.access_token.clone(), s.refresh_token.clone())
    };
    assert!(!all.contains(&access) && !all.contains(&refresh), "a token was printed");
}

/// The 30 plays of the first pull, their user, artists and enrichment, in the star.
fn assert_first_pull_is_in_the_star(lake: &TestLake) {
    assert_eq!(
        rows(lake, "SELECT count(*), min(source), max(source) FROM fact_plays"),
        vec!["30|spotify_api|spotify_api"]
    );
    assert_eq!(
        rows(lake, "SELECT user_id, level, country, display_name FROM dim_users"),
        vec!["alice|premium|SE|Alice"]
    );
    assert_eq!(rows(lake, "SELECT count(*) FROM fact_plays WHERE context_uri IS NULL"), vec!["15"]);
    // Every artist of a track: tracks 0, 3, 6 ... have a second artist.
    assert_eq!(rows(lake, "SELECT count(*) FROM bridge_track_artists WHERE position = 1"), vec!["10"]);
    assert_eq!(
        rows(
            lake,
            &format!(
                "SELECT a.name FROM bridge_track_artists b JOIN dim_artists a USING (artist_id) WHERE b.track_id = '{}' ORDER BY b.position",
                track_id(3)
            )
        ),
        vec!["Artist 3", "Drake"]
    );
    // Enrichment looked the artists up: genres arrive.
    assert!(rows(lake, "SELECT count(*) FROM dim_artists WHERE genres = 'indie, pop'")[0] != "0");
}

#[test]
fn an_expired_token_is_refreshed_and_a_new_refresh_token_replaces_the_old() {
    let server = FakeSpotify::start(plays(5, NOW_MS, 0));
    let lake = logged_in(&server);
    let cache = expire_token(&lake);
    server.state.lock().unwrap().rotate_refresh = true;
    ingest(&lake, &server, &[]);
    let saved = tunelake::source::spotify_auth::load(&lake.layout).unwrap();
    let current = server.state.lock().unwrap().refresh_token.clone();
    assert_ne!(saved.refresh_token, cache.refresh_token);
    assert_eq!(saved.refresh_token, current);
    assert!(saved.expires_at > chrono::Utc::now().timestamp());
    assert_eq!(server.state.lock().unwrap().token_grants, vec!["refresh_token"]);
}

#[test]
fn faults_are_retried_and_no_play_is_lost() {
    let server = FakeSpotify::start(plays(20, NOW_MS, 0));
    let lake = logged_in(&server);
    server.inject("/v1/me/player", Fault::Status(500));
    server.inject("/v1/me/player", Fault::Status(503));
    server.inject("/v1/me", Fault::RateLimited { retry_after: 1 });
    server.inject("/v1/me/player", Fault::Unauthorized);
    server.inject("/v1/me/player", Fault::Slow(Duration::from_secs(3)));
    let text = ingest(&lake, &server, &[]);
    assert!(text.contains("20 new plays"), "{text}");
    let grants = server.state.lock().unwrap().token_grants.clone();
    assert_eq!(grants, vec!["refresh_token"], "a 401 refreshes once");
    assert!(server.requests("recently-played").len() >= 5, "{:?}", server.requests("recently"));
    lake.build();
    assert_eq!(rows(&lake, "SELECT count(*) FROM fact_plays"), vec!["20"]);
}

#[test]
fn a_long_rate_limit_stops_cleanly_and_the_next_run_resumes() {
    let server = FakeSpotify::start(plays(12, NOW_MS, 0));
    let lake = logged_in(&server);
    server.inject("/v1/me/player", Fault::RateLimited { retry_after: 3600 });
    let text = ingest_stopped(&lake, &server);
    assert!(text.contains("stopped: rate limited (Retry-After 3600 s"), "{text}");
    // The cursor did not move past anything unstored.
    let m = lake.manifest();
    assert!(m.history().unwrap().iter().all(|r| r.stats.ingest().is_none_or(|s| s.spotify_cursor_after.is_none())));
    let text = ingest(&lake, &server, &[]);
    assert!(text.contains("12 new plays"), "{text}");

    server.inject("/v1/me/player", Fault::QuotaExceeded);
    let text = ingest_stopped(&lake, &server);
    assert!(text.contains("QUOTA_EXCEEDED"), "{text}");
}

/// Issue 24: with QUOTA_EXCEEDED on every call, `ingest spotify` printed
/// "stopped" with an empty user and exited 0, so a cron job never learned
/// that nothing was pulled. It exits 75 (try again later), and so does `run`.
#[test]
fn issue_24_a_pull_that_stops_early_exits_75_and_says_whose_it_is_not() {
    let server = FakeSpotify::start(plays(4, NOW_MS, 0));
    let lake = logged_in(&server);
    ingest(&lake, &server, &[]);
    for _ in 0..20 {
        server.inject("/v1/", Fault::QuotaExceeded);
    }
    let text = ingest_stopped(&lake, &server);
    assert!(text.contains("user not known (Spotify did not answer /v1/me)"), "{text}");
    assert!(text.contains("QUOTA_EXCEEDED") && text.contains("what was received is stored"), "{text}");
    // `run` builds and reports what it has, then exits 75 as well.
    let out = cmd(&lake, &server).args(["--progress", "off", "run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("top artists:"), "{}", stdout(&out));
    assert_eq!(rows(&lake, "SELECT count(*) FROM fact_plays"), vec!["4"]);
}

#[test]
fn an_expired_refresh_token_asks_for_a_new_login() {
    let server = FakeSpotify::start(plays(3, NOW_MS, 0));
    let lake = logged_in(&server);
    expire_token(&lake);
    server.state.lock().unwrap().invalid_grant = true;
    let out = cmd(&lake, &server).args(["ingest", "spotify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("run `tunelake auth spotify` again"), "{}", stderr(&out));
    // Never logged in at all.
    let fresh = TestLake::new();
    let out = cmd(&fresh, &server).args(["ingest", "spotify"]).output().unwrap();
    assert!(stderr(&out).contains("not logged in to Spotify: run `tunelake auth spotify` first"), "{}", stderr(&out));
}

#[test]
fn a_full_page_that_misses_plays_records_a_coverage_gap() {
    let server = FakeSpotify::start(plays(5, NOW_MS, 0));
    let lake = logged_in(&server);
    ingest(&lake, &server, &[]);
    // 60 plays later: the API shows only the last 50, so 10 are gone for good.
    server.state.lock().unwrap().plays.extend(plays(60, NOW_MS + 60 * 300_000, 100));
    let text = ingest(&lake, &server, &[]);
    assert!(text.contains("coverage gap: plays between"), "{text}");
    let status = stdout(&lake.cli(&["status"]));
    assert!(status.contains("coverage gaps"), "{status}");
    lake.build();
    assert_eq!(rows(&lake, "SELECT count(*) FROM fact_plays"), vec!["55"]);
    // Issue 23: the report says its totals are lower bounds, and why; the API
    // gives no ms_played, so time listened is the tracks' lengths.
    let lengths = rows(
        &lake,
        "SELECT round(sum(t.duration_s) / 3600.0, 1) FROM fact_plays f JOIN dim_tracks t ON t.track_id = f.track_id",
    );
    let text = stdout(&lake.cli(&["report", "--tz", "UTC"]));
    assert!(text.contains(&format!("at least 55 plays (55 streams), at least {} hours", lengths[0])), "{text}");
    assert!(text.contains("\"at least\": the Spotify Web API shows only the last 50 plays"), "{text}");
    assert!(!text.contains("coverage gaps (Spotify Web API):\n  none"), "{text}");
}

#[test]
fn enrichment_respects_its_limit_and_continues_next_run() {
    let server = FakeSpotify::start(plays(10, NOW_MS, 0));
    let lake = logged_in(&server);
    let text = ingest(&lake, &server, &["--max-enrich", "3"]);
    assert!(text.contains("3 looked up"), "{text}");
    let before = server.requests("/v1/tracks/").len()
        + server.requests("/v1/albums/").len()
        + server.requests("/v1/artists/").len();
    assert_eq!(before, 3);
    let text = ingest(&lake, &server, &["--max-enrich", "1000"]);
    assert!(text.contains("0 left for next time"), "{text}");
    let all: Vec<String> =
        ["/v1/tracks/", "/v1/albums/", "/v1/artists/"].iter().flat_map(|p| server.requests(p)).collect();
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(all.len(), unique.len(), "an entity was fetched twice");
    let text = ingest(&lake, &server, &[]);
    assert!(text.contains("0 looked up"), "{text}");
}

#[test]
fn api_plays_an_export_also_has_are_one_play() {
    let server = FakeSpotify::start(plays(4, NOW_MS, 0));
    let lake = logged_in(&server);
    ingest(&lake, &server, &[]);
    // The export has the same two plays (ending 3 s apart from the API's time) and one older.
    let p = server.state.lock().unwrap().plays.clone();
    let ts = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let rec = |ms: i64, track: usize| {
        serde_json::json!({
            "ts": ts(ms), "platform": "android", "ms_played": 150000, "conn_country": "SE", "ip_addr": "192.0.2.1",
            "master_metadata_track_name": format!("Song {track}"), "master_metadata_album_artist_name": "Artist",
            "master_metadata_album_album_name": "Album", "spotify_track_uri": format!("spotify:track:{}", track_id(track)),
            "episode_name": null, "episode_show_name": null, "spotify_episode_uri": null,
            "reason_start": "trackdone", "reason_end": "trackdone", "shuffle": false, "skipped": false,
            "offline": false, "offline_timestamp": 0, "incognito_mode": false
        })
    };
    let export = lake.dir.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    let records = vec![
        rec(p[0].played_at_ms + 3000, p[0].track),
        rec(p[1].played_at_ms - 2000, p[1].track),
        rec(NOW_MS - 86_400_000, 77),
    ];
    std::fs::write(export.join("Streaming_History_Audio_2025_0.json"), serde_json::to_vec(&records).unwrap()).unwrap();
    let mut m = lake.manifest();
    tunelake::source::ingest_spotify_export(&lake.layout, &mut m, &export, Some(USER), "test").unwrap();
    let b = lake.build();
    assert_eq!(b.duplicates["spotify_api: plays a Spotify export also has"], 2);
    assert_eq!(
        rows(&lake, "SELECT source, count(*) FROM fact_plays GROUP BY source ORDER BY source"),
        vec!["spotify_api|2", "spotify_export|3"]
    );
    // Three later Web API plays: the build of their month alone equals a
    // build of every month, and the earlier duplicates stay recognised.
    server.state.lock().unwrap().plays.extend(plays(3, NOW_MS + 3_600_000, 50));
    ingest(&lake, &server, &[]);
    let b = lake.build_checked_against_full();
    assert_eq!(b.full_reason, None);
    assert_eq!(b.duplicates["spotify_api: plays a Spotify export also has"], 2);
    assert_eq!(
        rows(&lake, "SELECT source, count(*) FROM fact_plays GROUP BY source ORDER BY source"),
        vec!["spotify_api|5", "spotify_export|3"]
    );
}

#[test]
fn secrets_never_reach_help_logs_or_errors() {
    let server = FakeSpotify::start(plays(3, NOW_MS, 0));
    let lake = logged_in(&server);
    let secret = "Sup3r-Secret-Client-Value";
    let help =
        cmd(&lake, &server).env("SPOTIFY_CLIENT_SECRET", secret).args(["auth", "spotify", "--help"]).output().unwrap();
    assert!(!stdout(&help).contains(secret) && stdout(&help).contains("--spotify-client-secret"));
    // Debug logging of a pull that refreshes and fails over.
    let cache = expire_token(&lake);
    server.inject("/v1/me/player", Fault::Status(500));
    let out = cmd(&lake, &server)
        .env("SPOTIFY_CLIENT_SECRET", secret)
        .env("TUNELAKE_LOG", "trace")
        .args(["-vv", "ingest", "spotify"])
        .output()
        .unwrap();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{all}");
    let (access, refresh) = {
        let s = server.state.lock().unwrap();
        (s.access_token.clone(), s.refresh_token.clone())
    };
    for s in [secret, access.as_str(), refresh.as_str(), cache.access_token.as_str()] {
        assert!(!all.contains(s), "{s} leaked into the output");
    }
    // And not into the lake's tables or manifest.
    let manifest: String = std::fs::read_dir(lake.layout.abs("_manifest"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(!manifest.contains(&access) && !manifest.contains(secret));
    // An error path: a refused refresh names no token.
    server.state.lock().unwrap().invalid_grant = true;
    let c = expire_token(&lake);
    let out =
        cmd(&lake, &server).env("SPOTIFY_CLIENT_SECRET", secret).args(["-vv", "ingest", "spotify"]).output().unwrap();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains(&c.refresh_token) && !all.contains(secret), "{all}");
}

#[test]
fn run_every_repeats_until_sigterm_and_finishes_the_step() {
    let server = FakeSpotify::start(plays(6, NOW_MS, 0));
    let lake = logged_in(&server);
    let mut child = cmd(&lake, &server)
        .args(["run", "--every", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut cycles = 0;
    let mut text = String::new();
    while cycles < 2 {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "{text}");
        text.push_str(&line);
        if line.starts_with("--- cycle") {
            cycles += 1;
        }
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    std::io::Read::read_to_string(&mut out, &mut text).unwrap();
    assert!(status.success(), "{status:?}\n{text}");
    assert!(text.contains("stopped"), "{text}");
    assert!(text.contains("6 new plays") && text.contains("0 new plays"), "{text}");
}

#[test]
fn a_fault_that_ends_the_run_keeps_what_was_received() {
    // Page one arrives, then the API dies for good on the lookups: the plays are committed anyway.
    let server = FakeSpotify::start(plays(8, NOW_MS, 0));
    let lake = logged_in(&server);
    for _ in 0..5 {
        server.inject("/v1/albums/", Fault::Status(502));
    }
    let out = cmd(&lake, &server).args(["ingest", "spotify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("/v1/albums/"), "{}", stderr(&out));
    lake.build();
    assert_eq!(rows(&lake, "SELECT count(*) FROM fact_plays"), vec!["8"]);
    // The next run continues the lookups and adds no play twice.
    let text = ingest(&lake, &server, &["--max-enrich", "1000"]);
    assert!(text.contains("0 new plays") && text.contains("0 left for next time"), "{text}");
    lake.build();
    assert_eq!(rows(&lake, "SELECT count(*) FROM fact_plays"), vec!["8"]);
}

#[test]
fn the_browser_login_arrives_on_the_loopback_callback() {
    // A stand-in browser: `xdg-open URL` follows Spotify's redirect to the loopback port.
    let server = FakeSpotify::start(plays(2, NOW_MS, 0));
    let lake = TestLake::new();
    let bin = lake.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opener = bin.join("xdg-open");
    std::fs::write(&opener, "#!/bin/sh\nexec curl -s -o /dev/null -L \"$1\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(Command::new("curl").arg("--version").output().is_ok(), "this test needs curl: apt-get install curl");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = cmd(&lake, &server)
        .env("PATH", path)
        .args(["auth", "spotify", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(lake.layout.spotify_token().exists());
    let text = ingest(&lake, &server, &[]);
    assert!(text.contains("2 new plays"), "{text}");
}

#[test]
fn reprocess_of_every_source_gives_the_same_rows() {
    let server = FakeSpotify::start(plays(12, NOW_MS, 0));
    let lake = logged_in(&server);
    ingest(&lake, &server, &[]);
    server.state.lock().unwrap().product = "free".into();
    server.state.lock().unwrap().plays.extend(plays(4, NOW_MS + 4 * 300_000, 50));
    ingest(&lake, &server, &[]);
    lake.ingest(&crate::common::sample());
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spotify_export");
    let mut m = lake.manifest();
    tunelake::source::ingest_spotify_export(&lake.layout, &mut m, &fixtures, None, "test").unwrap();
    lake.build();
    // The level is the latest /v1/me's.
    assert_eq!(rows(&lake, &format!("SELECT level FROM dim_users WHERE user_id = '{USER}'")), vec!["free"]);
    let tables: Vec<&str> = tunelake::sql::STAR_TABLES.iter().map(|t| t.name).collect();
    let before: Vec<Vec<String>> = tables.iter().map(|t| lake.star_rows(t)).collect();
    std::fs::remove_dir_all(lake.layout.abs("staging")).unwrap();
    let out = lake.cli(&["reprocess"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after: Vec<Vec<String>> = tables.iter().map(|t| lake.star_rows(t)).collect();
    for ((t, b), a) in tables.iter().zip(&before).zip(&after) {
        assert_eq!(b, a, "{t} differs after reprocess");
    }
}
