//! Spotify "Download your data" imports on hand-made fixtures for each key-set
//! variant and edge (tests/fixtures/spotify_export), and on a generated
//! export of 500,000 streams.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::{TestLake, copy_dir, render_rows, stderr, stdout};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spotify_export")
}

fn ingest(lake: &TestLake, path: &Path, user: Option<&str>) -> tunelake::source::IngestMetrics {
    let mut m = lake.manifest();
    tunelake::source::ingest_spotify_export(&lake.layout, &mut m, path, user, "test").unwrap()
}

/// The fixtures without the malformed file.
fn good_export(lake: &TestLake) -> PathBuf {
    let dir = lake.dir.path().join("export");
    for sub in ["old21", "new19", "new23", "account"] {
        copy_dir(&fixtures().join(sub), &dir.join("My Spotify Data").join(sub));
    }
    dir
}

/// A zip of `dir`, entries stored under `top/`.
fn zip_dir(dir: &Path, top: &str, out: &Path) {
    let file = fs::File::create(out).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut stack = vec![dir.to_path_buf()];
    let mut files = vec![];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { files.push(p) }
        }
    }
    files.sort();
    for p in files {
        let name = format!("{top}/{}", p.strip_prefix(dir).unwrap().display());
        zip.start_file(name, opts).unwrap();
        zip.write_all(&fs::read(&p).unwrap()).unwrap();
    }
    zip.finish().unwrap();
}

fn rows(lake: &TestLake, sql: &str) -> Vec<String> {
    lake.query(sql).iter().flat_map(render_rows).collect()
}

#[test]
fn every_variant_parses_and_account_rows_covered_by_extended_history_are_one_play() {
    let lake = TestLake::new();
    let m = ingest(&lake, &good_export(&lake), None);
    assert_eq!(m.files.len(), 7);
    let ext = m.accounting.iter().find(|a| a.stream == "extended").unwrap();
    let acc = m.accounting.iter().find(|a| a.stream == "account").unwrap();
    assert_eq!((ext.read, ext.kept, ext.rejected), (11, 11, 0));
    assert_eq!((acc.read, acc.kept, acc.rejected), (6, 6, 0));
    assert_eq!(ext.first.as_deref(), Some("2019-03-12T08:03:50Z"));
    assert_eq!(ext.last.as_deref(), Some("2025-03-01T10:00:00Z"));
    let b = lake.build();
    assert_eq!(b.duplicates["spotify_export: account-data rows also in extended history"], 3);
    // 11 extended + 6 account - 3 covered.
    assert_eq!(b.rows("fact_plays"), 14);
    assert_eq!(
        rows(
            &lake,
            "SELECT content_type, count(*), sum(CASE WHEN counts_as_play THEN 1 ELSE 0 END) FROM fact_plays GROUP BY content_type ORDER BY content_type"
        ),
        vec!["audiobook|2|2", "episode|3|3", "track|8|7", "unknown|1|0"]
    );
    // Whose history: Userdata.json's username (old records also say so themselves).
    assert_eq!(rows(&lake, "SELECT DISTINCT user_id FROM fact_plays"), vec!["alice"]);
    // Old 21-key records: the id is Spotify's, skipped may be null, shuffle and reasons kept.
    assert_eq!(
        rows(
            &lake,
            "SELECT track_id, ms_played, skipped, shuffle, reason_start, reason_end, platform, country \
                     FROM fact_plays WHERE played_at = TIMESTAMP '2019-03-12 08:03:50'"
        ),
        vec!["63OQupATfueTdZMWTxW03A|12000|true|true|clickrow|fwdbtn|Android OS 9 API 28 (samsung, SM-G960F)|DE"]
    );
    // Account data older than extended history stays, with the Spotify id known by name where there is one.
    assert_eq!(
        rows(
            &lake,
            "SELECT t.title, t.origin, f.ms_played FROM fact_plays f JOIN dim_tracks t USING (track_id) \
                     WHERE f.played_at = TIMESTAMP '2024-08-15 12:00:00'"
        ),
        vec!["Angel|derived|379000"]
    );
    // Genuine repeats minutes apart stay two plays.
    assert_eq!(rows(&lake, "SELECT count(*) FROM fact_plays WHERE track_id = '1a2b3c4d5e6f7g8h9i0jAB'"), vec!["2"]);
    // Episodes with their shows, audiobooks with their chapters, incognito and offline kept.
    assert_eq!(
        rows(&lake, "SELECT name, show_name FROM dim_episodes ORDER BY name"),
        vec!["Episode 12: Lakes|Data Talk", "Episode 40: Parquet|Data Talk", "Video Pod 1|Data Talk"]
    );
    assert_eq!(
        rows(&lake, "SELECT audiobook_title, chapter_title FROM dim_audiobooks ORDER BY chapter_title"),
        vec!["Dune|Chapter 1", "Dune|Chapter 3"]
    );
    assert_eq!(rows(&lake, "SELECT count(*) FROM fact_plays WHERE incognito AND offline"), vec!["1"]);
    // IP addresses and user agents stay in raw: not in staging, not in the star.
    let mut everything: Vec<String> = tunelake::sql::STAR_TABLES.iter().flat_map(|t| lake.star_rows(t.name)).collect();
    for f in lake.manifest().staging_files("stg_spotify_streams") {
        for b in tunelake::lake::parquet::read(&lake.layout.abs(&f.path), 1024).unwrap() {
            everything.extend(render_rows(&b.unwrap()));
        }
    }
    for secret in ["203.0.113.7", "198.51.100.2", "192.0.2.1", "192.0.2.9"] {
        assert!(!everything.iter().any(|r| r.contains(secret)), "{secret} left raw");
    }
    let raw_text: String = lake
        .manifest()
        .raw_files()
        .unwrap()
        .iter()
        .map(|r| fs::read_to_string(lake.layout.abs(&r.path)).unwrap())
        .collect();
    assert!(raw_text.contains("203.0.113.7") && raw_text.contains("an_unknown_new_key"), "raw keeps every byte");
}

#[test]
fn the_same_export_twice_and_overlapping_exports_add_nothing_twice() {
    let lake = TestLake::new();
    let dir = good_export(&lake);
    let zip = lake.dir.path().join("my_spotify_data.zip");
    zip_dir(&dir, "Spotify Account Data", &zip);
    let first = ingest(&lake, &zip, None);
    assert_eq!(first.files_new, 7);
    lake.build();
    let before = lake.star_rows("fact_plays");
    assert_eq!(before.len(), 14);

    // The same zip again: every file is already stored.
    let again = lake.cli(&["ingest", "spotify-export", zip.to_str().unwrap()]);
    let text = stdout(&again);
    assert!(again.status.success(), "{text}{}", stderr(&again));
    assert!(text.contains("7 history files: 0 new") && text.contains("endsong_0.json: already stored"), "{text}");
    assert_eq!(lake.star_rows("fact_plays"), before);

    // A later export overlapping the first: two streams it already has, one new.
    let later = lake.dir.path().join("later");
    fs::create_dir_all(&later).unwrap();
    let old: serde_json::Value =
        serde_json::from_slice(&fs::read(fixtures().join("new19/Streaming_History_Audio_2023-2024_0.json")).unwrap())
            .unwrap();
    let mut streams = old.as_array().unwrap()[..2].to_vec();
    let mut new = streams[1].clone();
    new["ts"] = "2024-10-02T09:00:00Z".into();
    streams.push(new);
    fs::write(later.join("Streaming_History_Audio_2024_0.json"), serde_json::to_vec_pretty(&streams).unwrap()).unwrap();
    ingest(&lake, &later, Some("alice"));
    let b = lake.build();
    assert_eq!(b.duplicates["spotify_export: the same stream in two raw files"], 2);
    assert_eq!(lake.star_rows("fact_plays").len(), 15);
}

#[test]
fn malformed_records_are_rejected_with_file_and_record_number() {
    let lake = TestLake::new();
    let out = lake.cli(&["ingest", "spotify-export", fixtures().join("bad").to_str().unwrap(), "--user", "alice"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("Streaming_History_Audio_2024_2.json: read 5, imported 2, plays 2, rejected 3,"), "{text}");
    for want in [
        "rejected Streaming_History_Audio_2024_2.json:2: record 2: ts `yesterday` is not an RFC 3339 time",
        "record 3: not a streaming history record: missing field `ms_played`",
        "record 5: the file is not a complete JSON array",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let status = stdout(&lake.cli(&["status"]));
    assert!(status.contains("spotify_export extended: read 5 = kept 2 + rejected 3"), "{status}");
    assert!(status.contains("Streaming_History_Audio_2024_2.json:2: record 2: ts `yesterday`"), "{status}");
    assert_eq!(lake.star_rows("fact_plays").len(), 2);
}

#[test]
fn an_export_without_a_username_asks_for_one() {
    let lake = TestLake::new();
    let path = fixtures().join("new19");
    let out = lake.cli(&["ingest", "spotify-export", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot tell whose history this is") && stderr(&out).contains("--user"),
        "{}",
        stderr(&out)
    );
    assert!(lake.manifest().run_count() == 0, "nothing stored");
    let out = lake.cli(&["ingest", "spotify-export", path.to_str().unwrap(), "--user", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows(&lake, "SELECT DISTINCT user_id FROM fact_plays"), vec!["bob"]);
    let out = lake.cli(&["ingest", "spotify-export", lake.dir.path().to_str().unwrap()]);
    assert!(stderr(&out).contains("no streaming history found"), "{}", stderr(&out));
}

/// Writes an extended-history export of `streams` streams in `files` files,
/// one zip, the records of each file in shuffled time order.
fn generate_export(zip_path: &Path, streams: usize, files: usize) {
    let file = fs::File::create(zip_path).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let per_file = streams / files;
    let start = 1_500_000_000i64; // 2017-07-14
    for f in 0..files {
        zip.start_file(format!("Spotify Extended Streaming History/Streaming_History_Audio_{f}.json"), opts).unwrap();
        let mut buf = String::with_capacity(per_file * 600);
        buf.push('[');
        for i in 0..per_file {
            let n = f * per_file + (i * 7919) % per_file; // shuffled within the file
            let ts = chrono::DateTime::from_timestamp(start + n as i64 * 211, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ");
            let track = n % 5003;
            let ms = (n * 37) % 300_000;
            if i > 0 {
                buf.push(',');
            }
            buf.push_str(&format!(
                r#"{{"ts":"{ts}","platform":"android","ms_played":{ms},"conn_country":"SE","ip_addr":"192.0.2.1","master_metadata_track_name":"Track {track}","master_metadata_album_artist_name":"Artist {a}","master_metadata_album_album_name":"Album {a}","spotify_track_uri":"spotify:track:T{track:021}","episode_name":null,"episode_show_name":null,"spotify_episode_uri":null,"audiobook_title":null,"audiobook_uri":null,"audiobook_chapter_uri":null,"audiobook_chapter_title":null,"reason_start":"trackdone","reason_end":"trackdone","shuffle":false,"skipped":false,"offline":false,"offline_timestamp":{off},"incognito_mode":false}}"#,
                a = track % 397,
                off = start + n as i64 * 211 - 200,
            ));
        }
        buf.push(']');
        zip.write_all(buf.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn half_a_million_streams_import_in_chunks_and_an_interrupted_import_finishes_the_same() {
    const STREAMS: usize = 500_000;
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("my_spotify_data.zip");
    generate_export(&zip, STREAMS, 10);

    // One uninterrupted import.
    let whole = TestLake::new();
    let out = whole.cli(&["ingest", "spotify-export", zip.to_str().unwrap(), "--user", "carol"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("spotify_export extended: read 500000 = kept 500000 + rejected 0"), "{text}");
    let facts = whole.star_rows("fact_plays");
    assert_eq!(facts.len(), STREAMS);
    // The build streams: a third of the default memory is enough for half a
    // million streams (two DataFusion partitions ran out of the default).
    let out = whole.cli(&["build", "--force", "--memory-mib", "128"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(whole.star_rows("fact_plays"), facts);

    // An import killed after its first commit, then run again.
    let broken = TestLake::new();
    let mut child = crate::common::tunelake_cmd()
        .args(["--lake", broken.layout.root().to_str().unwrap(), "ingest", "spotify-export"])
        .arg(&zip)
        .args(["--user", "carol", "--no-build"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let entries = broken.layout.abs("_manifest");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let committed = fs::read_dir(&entries)
            .map(|d| d.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".json")).count())
            .unwrap_or(0);
        if committed >= 1 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the import was stopped before it finished");
    let stored = broken.manifest().raw_files().unwrap().len();
    assert!(stored > 0 && stored < 10, "{stored} of 10 files committed before the kill");

    let out = broken.cli(&["ingest", "spotify-export", zip.to_str().unwrap(), "--user", "carol"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!("{} new", 10 - stored)) && text.contains(&format!("{stored} already stored")),
        "{text}"
    );
    assert_eq!(broken.star_rows("fact_plays"), facts, "the same plays as one uninterrupted import");
}
