//! The lake end to end on the full real Sparkify dataset, without PostgreSQL.

use std::fs;
use std::path::Path;

use crate::common::{TestLake, copy_dir, render_rows, sample, shifted_logs, sparkify_dataset, stderr, stdout};

const STAR: [&str; 5] = ["fact_plays", "dim_users", "dim_tracks", "dim_artists", "dim_time"];

#[test]
fn full_dataset_gives_the_course_figures() {
    let lake = TestLake::new();
    let m = lake.ingest(&sparkify_dataset());
    assert!(m.committed);
    assert_eq!(m.files_new, 101);
    let ev = m.stream("events");
    assert_eq!((ev.read, ev.plays, ev.filtered_total(), ev.rejected), (8056, 6820, 1236, 0));
    assert_eq!(ev.filtered["page=Home"], 806);
    assert_eq!(ev.files, 30);
    let songs = m.stream("songs");
    assert_eq!((songs.read, songs.kept, songs.rejected, songs.files), (71, 71, 0, 71));

    let b = lake.build();
    assert!(b.committed);
    assert_eq!(b.rows("fact_plays"), 6820);
    assert_eq!(b.rows("dim_users"), 97);
    assert_eq!(b.plays, 6820);
    assert_eq!(b.matched, 1, "the course's exact match finds one song");

    assert_eq!(lake.scalar("SELECT count(*) FROM dim_tracks WHERE origin = 'song_data'"), 71);
    assert_eq!(lake.scalar("SELECT count(*) FROM dim_artists WHERE origin = 'song_data'"), 69);
    // The one match: "Setanta matins" by Elena, user 15, ts 1542837407796.
    let matched = lake.query(
        "SELECT f.user_id, CAST(f.played_at AS VARCHAR), t.title, a.name, t.track_id \
         FROM fact_plays f JOIN dim_tracks t USING (track_id) JOIN dim_artists a ON a.artist_id = f.artist_id \
         WHERE t.origin = 'song_data'",
    );
    let rows = render_rows(&matched[0]);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].starts_with("15|2018-11-21T21:56:47.796|Setanta matins|Elena|SO"), "{rows:?}");

    // Latest level from the latest event: 22 paid, 75 free; user 15 ends paid.
    assert_eq!(lake.scalar("SELECT count(*) FROM dim_users WHERE level = 'paid'"), 22);
    assert_eq!(lake.scalar("SELECT count(*) FROM dim_users WHERE level = 'free'"), 75);
    assert_eq!(lake.scalar("SELECT count(*) FROM dim_users WHERE user_id = '15' AND level = 'paid'"), 1);
    // Level at the time of the play: user 15 played both free and paid.
    assert_eq!(lake.scalar("SELECT count(DISTINCT level) FROM fact_plays WHERE user_id = '15'"), 2);
    // One play per event, no duplicates.
    assert_eq!(lake.scalar("SELECT count(DISTINCT play_id) FROM fact_plays"), 6820);
    // dim_time: one row per distinct play time.
    assert_eq!(lake.scalar("SELECT count(DISTINCT played_at) FROM fact_plays"), b.rows("dim_time") as i64);
    // Mojibake repaired: no double-encoded names remain, and Erdmöbel is readable.
    assert_eq!(lake.scalar("SELECT count(*) FROM dim_artists WHERE name LIKE '%Ã%'"), 0);
    assert!(lake.scalar("SELECT count(*) FROM dim_artists WHERE name = 'Erdmöbel'") >= 1);
    // Weekday counts from Monday = 0: 2018-11-05 was a Monday.
    assert_eq!(
        lake.scalar(
            "SELECT max(weekday) FROM dim_time WHERE ts >= TIMESTAMP '2018-11-05' AND ts < TIMESTAMP '2018-11-06'"
        ),
        0
    );
}

#[test]
fn ingesting_and_building_twice_changes_nothing() {
    let lake = TestLake::new();
    lake.ingest(&sparkify_dataset());
    let first = lake.build();
    let before: Vec<Vec<String>> = STAR.iter().map(|t| lake.star_rows(t)).collect();
    let runs = lake.manifest().run_count();

    let again = lake.ingest(&sparkify_dataset());
    assert!(!again.committed, "the same folder stores nothing new");
    assert_eq!(again.files_already_stored, 101);
    assert_eq!(again.files_new, 0);
    let rebuilt = lake.build();
    assert!(!rebuilt.committed, "an unchanged staging is not rebuilt");
    assert_eq!(rebuilt.version, first.version);
    assert_eq!(lake.manifest().run_count(), runs);

    // A forced rebuild gives the same rows, and reuses every unchanged file.
    let forced = lake.build_with(&tunelake::model::build::BuildOptions { force: true, ..Default::default() });
    assert!(forced.committed);
    assert!(forced.tables.iter().all(|t| t.parts == t.parts_unchanged), "{:?}", forced.tables);
    let after: Vec<Vec<String>> = STAR.iter().map(|t| lake.star_rows(t)).collect();
    assert_eq!(before, after);
}

#[test]
fn reprocess_from_raw_gives_the_same_rows() {
    let lake = TestLake::new();
    lake.ingest(&sparkify_dataset());
    lake.build();
    let before: Vec<Vec<String>> = STAR.iter().map(|t| lake.star_rows(t)).collect();
    // Losing staging entirely does not matter: raw is the source of truth.
    fs::remove_dir_all(lake.layout.abs("staging")).unwrap();
    let m = lake.reprocess();
    assert_eq!(m.stream("events").read, 8056);
    assert_eq!(m.stream("events").plays, 6820);
    let b = lake.build();
    assert!(b.committed);
    let after: Vec<Vec<String>> = STAR.iter().map(|t| lake.star_rows(t)).collect();
    assert_eq!(before, after);
    let status = lake.cli(&["status"]);
    let text = crate::common::stdout(&status);
    assert!(text.contains("sparkify events: read 8056 = plays 6820 + filtered 1236 + rejected 0"), "{text}");
}

#[test]
fn small_raw_files_share_a_pack_that_keeps_their_bytes_and_a_damaged_one_stops_reprocess() {
    let lake = TestLake::new();
    lake.ingest(&sample());
    let manifest = lake.manifest();
    let raws = manifest.raw_files().unwrap();
    let pack = "raw/sparkify/ingest_date=";
    let packed: Vec<_> = raws.iter().filter(|r| r.offset.is_some()).collect();
    let alone: Vec<_> = raws.iter().filter(|r| r.offset.is_none()).map(|r| r.origin.as_str()).collect();
    // 71 song files and the two log files under 64 KiB; the other two are stored alone.
    assert_eq!(packed.len(), 73);
    assert!(packed.iter().all(|r| r.path.starts_with(pack) && r.path.ends_with("/pack-00000001.raw")));
    assert_eq!(alone, ["log_data/2018/11/2018-11-02-events.json", "log_data/2018/11/2018-11-21-events.json"]);
    // Every stored file, packed or not, is exactly the input's bytes.
    for r in raws {
        let input = fs::read(sample().join(&r.origin)).unwrap();
        assert_eq!(tunelake::lake::raw::read(&lake.layout, r).unwrap(), input, "{}", r.origin);
    }
    let pack_bytes: u64 = packed.iter().map(|r| r.bytes).sum();
    assert_eq!(fs::metadata(lake.layout.abs(&packed[0].path)).unwrap().len(), pack_bytes);

    // One damaged byte in one packed song: reprocess refuses, naming the pack and the file.
    let victim = packed.iter().find(|r| r.kind == "song").unwrap();
    let path = lake.layout.abs(&victim.path);
    let mut bytes = fs::read(&path).unwrap();
    bytes[victim.offset.unwrap() as usize + 1] ^= 0x20;
    fs::write(&path, bytes).unwrap();
    let out = lake.cli(&["reprocess"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("pack-00000001.raw") && err.contains(&victim.origin) && err.contains("raw file is corrupt"),
        "{err}"
    );
}

#[test]
fn malformed_lines_are_counted_and_the_rest_of_the_file_loads() {
    let lake = TestLake::new();
    let input = lake.dir.path().join("input");
    copy_dir(&sample(), &input);
    let log = input.join("log_data/2018/11/2018-11-02-events.json");
    let mut bytes = fs::read(&log).unwrap();
    let good_lines = bytes.split(|&b| b == b'\n').count() as u64;
    bytes.extend_from_slice(b"\n{\"ts\": 1541\n<html>oops</html>\n\xff\xfe\n[1,2,3]");
    fs::write(&log, &bytes).unwrap();
    // A song file holding two objects.
    let song = input.join("song_data/A/A/A/TRAAAAW128F429D538.json");
    let one = fs::read_to_string(&song).unwrap();
    fs::write(&song, format!("{one}\n{}", one.replace("SOMZWCG12A8C13C480", "SOTWOINONEFILE00"))).unwrap();

    let m = lake.ingest(&input);
    let ev = m.stream("events");
    assert_eq!(ev.rejected, 4);
    assert_eq!(ev.read, ev.plays + ev.filtered_total() + ev.rejected);
    let lines: Vec<(String, u64)> = m.rejects.iter().map(|r| (r.file.clone(), r.line)).collect();
    let file = "log_data/2018/11/2018-11-02-events.json".to_string();
    assert_eq!(lines, (1..=4).map(|i| (file.clone(), good_lines + i)).collect::<Vec<_>>(), "{:?}", m.rejects);
    assert!(m.rejects[2].reason.contains("UTF-8"));
    assert_eq!(m.stream("songs").kept, 72);
    lake.build();
    assert_eq!(lake.scalar("SELECT count(*) FROM dim_tracks WHERE track_id = 'SOTWOINONEFILE00'"), 1);
    // Every good event of the damaged file is in the lake.
    let clean = TestLake::new();
    clean.ingest(&sample());
    clean.build();
    assert_eq!(lake.star_rows("fact_plays"), clean.star_rows("fact_plays"));
    // status keeps the rejects with file and line.
    let text = crate::common::stdout(&lake.cli(&["status"]));
    assert!(text.contains(&format!("{file}:{}:", good_lines + 1)), "{text}");
}

#[test]
fn debris_of_a_crashed_run_is_invisible_and_vacuumed() {
    let lake = TestLake::new();
    lake.ingest(&sample());
    let b = lake.build();
    let plays = b.rows("fact_plays");
    // A crashed ingest: a staging file and a raw file no manifest entry names.
    let m = lake.manifest();
    let live = &m.staging_files("stg_sparkify_events")[0].path;
    let debris = lake.layout.abs(&live.replace("part-", "part-99"));
    fs::copy(lake.layout.abs(live), &debris).unwrap();
    fs::write(lake.layout.abs("_manifest/.tmp-crashed"), b"{\"id\": ").unwrap();
    let torn_raw = lake.layout.abs("raw/sparkify/ingest_date=2000-01-01/deadbeef.json");
    fs::create_dir_all(torn_raw.parent().unwrap()).unwrap();
    fs::write(&torn_raw, b"{\"artist\": \"half").unwrap();
    let orphan_index = lake.layout.abs("_manifest/00009999.raw.ndjson");
    fs::write(&orphan_index, b"{\"sha256\": \"deadbeef\"}\n").unwrap();
    let orphan_digests = lake.layout.abs("_manifest/00009999.raw.sha256");
    fs::write(&orphan_digests, b"deadbeef\n").unwrap();
    let b2 = lake.build_with(&tunelake::model::build::BuildOptions { force: true, ..Default::default() });
    assert_eq!(b2.rows("fact_plays"), plays, "debris is not read");
    let out = crate::common::stdout(&lake.cli(&["vacuum", "--dry-run"]));
    assert!(out.contains(&debris.display().to_string()), "{out}");
    assert!(debris.exists(), "a dry run removes nothing");
    let out = crate::common::stdout(&lake.cli(&["vacuum"]));
    assert!(out.contains("vacuum: 5 files"), "{out}");
    assert!(!debris.exists() && !torn_raw.exists() && !orphan_index.exists() && !orphan_digests.exists());
    // The vacuum is a run in the ledger (a dry run is not).
    let runs = lake.manifest().history().unwrap();
    let last = runs.last().unwrap();
    assert_eq!((last.kind.to_string(), last.stats.vacuum().map(|v| v.files_removed)), ("vacuum".to_string(), Some(5)));
    assert_eq!(runs.iter().filter(|r| r.kind.to_string() == "vacuum").count(), 1);
    let status = crate::common::stdout(&lake.cli(&["status"]));
    assert!(status.contains(" vacuum ") && status.contains("5 files removed ("), "{status}");
    // The committed run's raw index and digest list stay.
    let index = m.history().unwrap()[0].raw_index.clone().unwrap();
    assert!(lake.layout.abs(&index.path).exists() && lake.layout.abs(&index.digests.path).exists());
    // Every committed raw file is still there.
    assert!(lake.manifest().raw_files().unwrap().iter().all(|r| lake.layout.abs(&r.path).exists()));
    assert_eq!(lake.star_rows("fact_plays").len() as u64, plays);
}

#[test]
fn new_catalogue_songs_recompute_only_the_months_with_plays_of_their_artists() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| tmp.path().join(name);
    let (songs, logs, new_songs) = (dir("songs"), dir("logs"), dir("new_songs"));
    copy_dir(&sample().join("song_data"), &songs.join("song_data"));
    let [nov, dec, feb] = three_months_of_logs_with_elena_in_february_only(&logs);
    let elsewhere: Vec<String> = [artists_of(&nov), artists_of(&feb)].concat();
    // A December play whose artist has no play in any other month.
    let play = dec.iter().find(|e| !elsewhere.contains(&e["artist"].as_str().unwrap().to_string())).unwrap();
    let (artist, title, length) =
        (play["artist"].as_str().unwrap(), play["song"].as_str().unwrap(), play["length"].as_f64().unwrap());
    write_song(&new_songs, "a.json", "SONEWTEST0000001", (artist, "ARNEWTEST0000001"), title, length);
    let nobody = ("Nobody Who Ever Played Here", "ARNEWTEST0000002");
    write_song(&new_songs, "b.json", "SONEWTEST0000002", nobody, "Silence", 100.0);

    let lake = TestLake::new();
    lake.ingest(&songs);
    lake.ingest(&logs);
    let before = lake.build();
    assert_eq!(before.months, 3);
    let derived =
        format!("SELECT count(*) FROM dim_tracks WHERE origin = 'derived' AND title = '{}'", title.replace('\'', "''"));
    assert_eq!(lake.scalar(&derived), 1, "{title} by {artist} is not in the sample's catalogue");

    lake.ingest(&new_songs);
    let after = lake.build_checked_against_full();
    assert_eq!((after.months_computed, after.full_reason.clone(), after.catalogue_changed), (1, None, true));
    let fact = after.tables.iter().find(|t| t.name == "fact_plays").unwrap();
    assert_eq!((fact.parts, fact.parts_unchanged), (3, 2), "only December's fact file is new");
    let now_matched = dec.iter().filter(|e| e["artist"] == artist && e["song"] == title).count() as u64;
    assert_eq!(after.matched, before.matched + now_matched);
    assert_eq!(lake.scalar("SELECT count(*) FROM fact_plays WHERE track_id = 'SONEWTEST0000001'"), now_matched as i64);
    assert_eq!(lake.scalar(&derived), 0, "the derived track the new song replaces is gone");
    assert_eq!(lake.scalar("SELECT count(*) FROM dim_tracks WHERE track_id = 'SONEWTEST0000002'"), 1);

    assert_a_song_of_elena_recomputes_february_only_if_her_plays_may_take_it(&lake, tmp.path());
    assert_a_changed_catalogue_song_recomputes_every_month(&lake, &songs, &dir("changed_song"));
}

/// The sample's logs spread over three months under `logs`; their NextSong
/// events, month by month.
fn three_months_of_logs_with_elena_in_february_only(logs: &Path) -> [Vec<serde_json::Value>; 3] {
    // November, December (+31 days) and February (+92 days). Elena, the one
    // catalogue artist with plays in the sample, plays in February only.
    shifted_logs(
        logs,
        &[
            ("2018-11-01-events.json", 0),
            ("2018-11-02-events.json", 31),
            ("2018-11-03-events.json", 92),
            ("2018-11-21-events.json", 92),
        ],
    );
    let plays_of = |file: &str| -> Vec<serde_json::Value> {
        let text = fs::read_to_string(logs.join("log_data").join(file)).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["page"] == "NextSong")
            .collect()
    };
    let (nov, dec) = (plays_of("0-2018-11-01-events.json"), plays_of("31-2018-11-02-events.json"));
    let feb = [plays_of("92-2018-11-03-events.json"), plays_of("92-2018-11-21-events.json")].concat();
    assert!(feb.iter().any(|e| e["artist"] == "Elena") && !nov.iter().chain(&dec).any(|e| e["artist"] == "Elena"));
    [nov, dec, feb]
}

fn artists_of(plays: &[serde_json::Value]) -> Vec<String> {
    plays.iter().map(|e| e["artist"].as_str().unwrap().to_string()).collect()
}

/// One catalogue song file, `dir/song_data/N/<file>`.
fn write_song(dir: &Path, file: &str, id: &str, (artist, artist_id): (&str, &str), title: &str, duration: f64) {
    fs::create_dir_all(dir.join("song_data/N")).unwrap();
    let json = serde_json::json!({"num_songs": 1, "artist_id": artist_id, "artist_latitude": null,
        "artist_longitude": null, "artist_location": "", "artist_name": artist, "song_id": id,
        "title": title, "duration": duration, "year": 0});
    fs::write(dir.join("song_data/N").join(file), json.to_string()).unwrap();
}

fn assert_a_song_of_elena_recomputes_february_only_if_her_plays_may_take_it(lake: &TestLake, tmp: &Path) {
    // Elena again, with a title nobody played and an artist id after hers: no play can change.
    let later = ("Elena", "ZZNEWTEST0000003");
    write_song(&tmp.join("elena_later"), "c.json", "SONEWTEST0000003", later, "Unplayed", 100.0);
    lake.ingest(&tmp.join("elena_later"));
    let later = lake.build_checked_against_full();
    assert_eq!((later.months_computed, later.full_reason.clone(), later.catalogue_changed), (0, None, true));
    assert_eq!(lake.scalar("SELECT count(*) FROM dim_tracks WHERE track_id = 'SONEWTEST0000003'"), 1);
    // With an artist id before hers, Elena's plays may take it: February is computed again.
    let first = ("Elena", "AANEWTEST0000004");
    write_song(&tmp.join("elena_first"), "d.json", "SONEWTEST0000004", first, "Unplayed Too", 100.0);
    lake.ingest(&tmp.join("elena_first"));
    let first = lake.build_checked_against_full();
    assert_eq!((first.months_computed, first.full_reason.clone()), (1, None));
}

fn assert_a_changed_catalogue_song_recomputes_every_month(lake: &TestLake, songs: &Path, changed_song: &Path) {
    // A song file that changes a song the catalogue has can reach any month.
    let known = fs::read_to_string(walk_one(&songs.join("song_data"))).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&known).unwrap();
    v["title"] = "A New Title".into();
    fs::create_dir_all(changed_song.join("song_data")).unwrap();
    fs::write(changed_song.join("song_data/changed.json"), v.to_string()).unwrap();
    lake.ingest(changed_song);
    let changed = lake.build();
    assert_eq!(changed.months_computed, 3);
    assert_eq!(changed.full_reason.as_deref(), Some("a new song file changes a song the catalogue already has"));
}

/// The first file under `dir`, depth first.
fn walk_one(dir: &Path) -> std::path::PathBuf {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    let first = entries.into_iter().next().unwrap();
    if first.is_dir() { walk_one(&first) } else { first }
}

#[test]
fn a_build_of_the_changed_months_equals_a_build_of_all() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = logs_over_three_months_then_a_repeated_file(tmp.path());
    let (step, third) = built_month_by_month(&inputs);

    // The same files at once: in one slice, and one month per slice; and
    // both with the plays computed in two halves by time, two tasks at once.
    use tunelake::model::build::BuildOptions;
    let (whole, w) = built_at_once(&inputs, &BuildOptions::default());
    let (sliced, s) = built_at_once(&inputs, &BuildOptions { slice_rows: 1, ..Default::default() });
    assert_eq!(s.months_computed, 3);
    let (halved, h) = built_at_once(&inputs, &BuildOptions { halves_rows: 1, ..Default::default() });
    let (sliced_halved, sh) =
        built_at_once(&inputs, &BuildOptions { slice_rows: 1, halves_rows: 1, ..Default::default() });
    // The helpers through scratch files instead of memory: the same files, byte for byte.
    let (on_disk, d) = built_at_once(&inputs, &BuildOptions { helpers_in_memory_rows: 0, ..Default::default() });
    let (halved_on_disk, hd) =
        built_at_once(&inputs, &BuildOptions { halves_rows: 1, helpers_in_memory_rows: 0, ..Default::default() });
    // Given less than the default memory, the helpers go to scratch files too.
    let (low_memory, lm) = built_at_once(
        &inputs,
        &BuildOptions { memory_limit: tunelake::model::DEFAULT_MEMORY_LIMIT - 1, ..Default::default() },
    );
    let in_memory = [&w, &s, &h, &sh, &d, &hd, &lm].map(|m| m.in_memory);
    assert_eq!(in_memory, [1, 3, 1, 3, 0, 0, 0], "slices whose helpers stayed in memory");
    assert_eq!(star_hashes(&on_disk), star_hashes(&whole), "helpers in scratch files vs in memory");
    assert_eq!(star_hashes(&halved_on_disk), star_hashes(&halved), "halves in scratch files vs in memory");
    assert_eq!(star_hashes(&low_memory), star_hashes(&whole), "less memory: scratch files, one task");
    assert!(star_hashes(&whole).iter().any(|(t, parts)| t == "fact_plays" && parts.len() == 3));
    // Halves need two files in a slice: all five days at once; one month per
    // slice halves December's two days and February's two copies of one day
    // (both start at the cut, so the first half is empty), not November's one.
    assert_eq!((w.halved, s.halved, h.halved, sh.halved, hd.halved), (0, 0, 1, 2, 1), "slices whose plays were halved");
    for t in STAR {
        let rows = step.star_rows(t);
        assert_eq!(rows, whole.star_rows(t), "{t}: month by month vs all at once");
        assert_eq!(rows, sliced.star_rows(t), "{t}: one slice vs one month per slice");
        assert_eq!(rows, halved.star_rows(t), "{t}: plays in one task vs two halves");
        assert_eq!(rows, sliced_halved.star_rows(t), "{t}: one slice vs one month per slice, in halves");
    }
    for m in [&w, &s, &h, &sh, &d, &hd, &lm] {
        assert_eq!((m.plays, m.matched, &m.duplicates), (third.plays, third.matched, &third.duplicates));
    }
    let copies = third.duplicates["sparkify: the same event in two raw files"];
    assert_eq!(copies, 100, "the repeated file's 100 plays are counted as copies, not plays");
    assert_eq!(step.scalar("SELECT count(*) FROM fact_plays"), third.plays as i64);
    assert_eq!(
        step.scalar("SELECT count(DISTINCT date_trunc('month', played_at)) FROM fact_plays"),
        3,
        "plays in three months"
    );
}

/// The sample's songs, then its logs in three inputs under `tmp`, ingested in this order.
fn logs_over_three_months_then_a_repeated_file(tmp: &Path) -> [std::path::PathBuf; 4] {
    let (songs, early, later, again) = (tmp.join("songs"), tmp.join("early"), tmp.join("later"), tmp.join("again"));
    copy_dir(&sample().join("song_data"), &songs.join("song_data"));
    // November and December 2018, then February 2019, then a late-December
    // day (dirtying December only) that repeats events of another file.
    shifted_logs(&early, &[("2018-11-01-events.json", 0), ("2018-11-02-events.json", 31)]);
    shifted_logs(&later, &[("2018-11-03-events.json", 92)]);
    shifted_logs(&again, &[("2018-11-21-events.json", 30), ("2018-11-03-events.json", 92)]);
    let again_lines = std::fs::read_to_string(again.join("log_data/92-2018-11-03-events.json")).unwrap();
    // One line changed: a new raw file whose other events are copies.
    let changed = again_lines.replacen("\"Logged In\"", "\"Logged  In\"", 1);
    std::fs::write(again.join("log_data/92-2018-11-03-events.json"), changed).unwrap();
    [songs, early, later, again]
}

/// A lake that ingests and builds the inputs one by one, each build computing
/// only the months that changed; returns it and its last build.
fn built_month_by_month(inputs: &[std::path::PathBuf; 4]) -> (TestLake, tunelake::model::build::BuildMetrics) {
    let [songs, early, later, again] = inputs;
    let step = TestLake::new();
    step.ingest(songs);
    step.ingest(early);
    let first = step.build();
    assert_eq!((first.months, first.months_computed), (2, 2));
    assert_eq!(first.full_reason.as_deref(), Some("first build"));
    step.ingest(later);
    let second = step.build();
    assert_eq!((second.months, second.months_computed, second.full_reason.clone()), (3, 1, None));
    let fact = second.tables.iter().find(|t| t.name == "fact_plays").unwrap();
    assert_eq!((fact.parts, fact.parts_unchanged), (3, 2), "only February's fact file is new");
    step.ingest(again);
    let third = step.build_checked_against_full();
    assert_eq!(
        (third.months, third.months_computed, third.full_reason.clone()),
        (3, 2, None),
        "December and February (the repeated file) were recomputed"
    );
    (step, third)
}

/// A lake that ingests every input, then builds once with `opts`.
fn built_at_once(
    inputs: &[std::path::PathBuf; 4],
    opts: &tunelake::model::build::BuildOptions,
) -> (TestLake, tunelake::model::build::BuildMetrics) {
    let lake = TestLake::new();
    for dir in inputs {
        lake.ingest(dir);
    }
    let metrics = lake.build_with(opts);
    (lake, metrics)
}

/// Each star table's files by their sha256.
fn star_hashes(lake: &TestLake) -> Vec<(String, Vec<String>)> {
    let star = lake.manifest().star().cloned().unwrap();
    star.tables.iter().map(|(t, parts)| (t.clone(), parts.iter().map(|p| p.sha256.clone()).collect())).collect()
}

/// One NextSong event as Sparkify logs it.
fn play_json(ts: i64, item: i64, length: f64) -> String {
    serde_json::json!({"artist": "Matched Artist", "auth": "Logged In", "firstName": "Ann", "gender": "F",
        "itemInSession": item, "lastName": "Lee", "length": length, "level": "free", "location": "Here",
        "method": "PUT", "page": "NextSong", "registration": 1.5e12, "sessionId": 7, "song": "Same Title",
        "status": 200, "ts": ts, "userAgent": "test", "userId": "42"})
    .to_string()
}

#[test]
fn a_play_takes_the_closest_song_staging_is_in_time_order_and_a_copy_in_an_overlapping_file_counts_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (songs, logs, more) = (tmp.path().join("songs"), tmp.path().join("logs"), tmp.path().join("more"));
    // Three songs of one title and artist; the tolerance is 2 s.
    fs::create_dir_all(songs.join("song_data/N")).unwrap();
    for (id, duration) in [("SOB", 200.0), ("SOA", 201.0), ("SOC", 230.0)] {
        let json = serde_json::json!({"num_songs": 1, "artist_id": "ARX", "artist_latitude": null,
            "artist_longitude": null, "artist_location": "", "artist_name": "Matched Artist", "song_id": id,
            "title": "Same Title", "duration": duration, "year": 0});
        fs::write(songs.join(format!("song_data/N/{id}.json")), json.to_string()).unwrap();
    }
    let t = 1_541_030_400_000; // 2018-11-01 00:00 UTC, in ms
    // Lines out of time order: 200.4 s is closest to SOB; 200.5 s is as close
    // to SOA as to SOB, and SOA is the smaller id; 215 s matches nothing.
    let day = [play_json(t + 3000, 3, 200.4), play_json(t + 1000, 1, 200.5), play_json(t + 2000, 2, 215.0)];
    fs::create_dir_all(logs.join("log_data")).unwrap();
    fs::write(logs.join("log_data/day.json"), day.join("\n")).unwrap();

    let lake = TestLake::new();
    lake.ingest(&songs);
    lake.ingest(&logs);
    let staged = lake.manifest().staging_files("stg_sparkify_events").into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(staged.len(), 1);
    assert!(staged[0].sorted, "{:?}", staged[0]);
    let rows: Vec<datafusion::arrow::array::RecordBatch> =
        tunelake::lake::parquet::read(&lake.layout.abs(&staged[0].path), 1024).unwrap().map(|b| b.unwrap()).collect();
    let lines: Vec<String> =
        rows.iter().flat_map(|b| render_rows(&b.project(&[b.schema().index_of("line").unwrap()]).unwrap())).collect();
    assert_eq!(lines, ["2", "3", "1"], "staging holds the file's lines in time order");

    let b = lake.build();
    assert_eq!((b.plays, b.matched), (3, 2));
    let tracks = |lake: &TestLake| -> Vec<String> {
        lake.query("SELECT track_id FROM fact_plays ORDER BY played_at").iter().flat_map(render_rows).collect()
    };
    let derived = tracks(&lake)[1].clone();
    assert!(derived.starts_with("TLT"), "{derived}");
    assert_eq!(tracks(&lake), ["SOA", derived.as_str(), "SOB"]);
    let artists: Vec<String> =
        lake.query("SELECT artist_id FROM fact_plays ORDER BY played_at").iter().flat_map(render_rows).collect();
    assert_eq!(artists, ["ARX", "ARX", "ARX"], "the unmatched play takes the catalogue's artist of its name");

    // A second file of the same day: a copy of the 200.5 s play and a play of
    // SOC. The files overlap in time, so the build sorts them, and the copy
    // counts once.
    fs::create_dir_all(more.join("log_data")).unwrap();
    fs::write(more.join("log_data/copy.json"), [play_json(t + 4000, 4, 229.0), day[1].clone()].join("\n")).unwrap();
    lake.ingest(&more);
    let b = lake.build_checked_against_full();
    assert_eq!((b.plays, b.matched), (4, 3));
    assert_eq!(b.duplicates["sparkify: the same event in two raw files"], 1);
    assert_eq!(tracks(&lake), ["SOA", derived.as_str(), "SOB", "SOC"]);
}

#[test]
fn a_user_is_as_their_latest_event_says_and_at_one_time_the_later_session_position_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let t = 1_541_030_400_000; // 2018-11-01 00:00 UTC, in ms
    let event = |user: &str, ts: i64, session: i64, item: i64, last_name: &str, level: &str| {
        serde_json::json!({"artist": null, "auth": "Logged In", "firstName": "Ann", "gender": "F",
            "itemInSession": item, "lastName": last_name, "length": null, "level": level, "location": "Here",
            "method": "GET", "page": "Home", "registration": 1.5e12, "sessionId": session, "song": null,
            "status": 200, "ts": ts, "userAgent": "test", "userId": user})
        .to_string()
    };
    // The winning event is never the file's last line at its time.
    let lines = [
        event("42", t + 1000, 7, 1, "Early", "free"),
        event("42", t + 5000, 7, 3, "Third", "paid"), // same time, later in the session: wins
        event("42", t + 5000, 7, 2, "Second", "free"),
        event("43", t + 5000, 8, 0, "NewSession", "paid"), // same time, later session: wins
        event("43", t + 5000, 7, 9, "OldSession", "free"),
        event("43", t + 2000, 7, 1, "Early", "free"),
        // December: user 44's latest event is in a later month than its first.
        event("44", t + 2000, 7, 1, "November", "free"),
        event("44", t + 2_678_400_000, 9, 1, "December", "paid"),
    ];
    fs::create_dir_all(logs.join("log_data")).unwrap();
    fs::write(logs.join("log_data/users.json"), lines.join("\n")).unwrap();
    let lake = TestLake::new();
    lake.ingest(&logs);
    lake.build();
    let users: Vec<String> = lake
        .query(
            "SELECT user_id, last_name, level, CAST(first_seen AS VARCHAR), CAST(last_seen AS VARCHAR) \
             FROM dim_users ORDER BY user_id",
        )
        .iter()
        .flat_map(render_rows)
        .collect();
    assert_eq!(
        users,
        [
            "42|Third|paid|2018-11-01T00:00:01|2018-11-01T00:00:05",
            "43|NewSession|paid|2018-11-01T00:00:02|2018-11-01T00:00:05",
            "44|December|paid|2018-11-01T00:00:02|2018-12-02T00:00:00",
        ]
    );
}

#[test]
fn staging_written_before_it_was_sorted_builds_the_same_rows() {
    let sorted = TestLake::new();
    sorted.ingest(&sparkify_dataset());
    sorted.build();

    // An older tunelake wrote staging in line order and said nothing of order.
    let old = TestLake::new();
    old.ingest(&sparkify_dataset());
    for entry in fs::read_dir(old.layout.manifest_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let mut entry: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            for f in entry.pointer_mut("/staging/files").and_then(|f| f.as_array_mut()).into_iter().flatten() {
                f.as_object_mut().unwrap().remove("sorted");
            }
            fs::write(&path, serde_json::to_vec_pretty(&entry).unwrap()).unwrap();
        }
    }
    let files = old.manifest().staging_files("stg_sparkify_events").into_iter().cloned().collect::<Vec<_>>();
    assert!(files.len() > 1 && files.iter().all(|f| !f.sorted), "{:?}", files.first());
    // Rows in reverse time order, as a log written backwards would have staged them.
    for f in &files {
        let path = old.layout.abs(&f.path);
        let batches: Vec<_> = tunelake::lake::parquet::read(&path, 1 << 20).unwrap().map(|b| b.unwrap()).collect();
        let batch = datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let reversed = datafusion::arrow::array::UInt32Array::from_iter_values((0..batch.num_rows() as u32).rev());
        let batch = datafusion::arrow::compute::take_record_batch(&batch, &reversed).unwrap();
        tunelake::lake::parquet::write_batches(&path, &batch.schema(), [&batch]).unwrap();
    }
    let b = old.build();
    assert_eq!(b.plays, 6820);
    for table in STAR {
        assert_eq!(old.star_rows(table), sorted.star_rows(table), "{table}");
    }
}

/// A log file of 64 MiB or more (`source::chunks::STREAM_FROM`) is copied
/// into raw/ and staged in pieces: it loads exactly as the same events in
/// small files do, with one staging file per date, its lines keep their
/// numbers, and reprocess reads it the same way.
#[test]
fn a_log_too_big_to_read_whole_is_staged_in_pieces_and_loads_like_small_files() {
    let logs = RepeatedLogs::past_stream_from();
    let lake = TestLake::new();
    let one = sparkify_input(&lake, "one", &[("all.json".into(), logs.big.as_str())]);
    let small: Vec<(String, &str)> =
        logs.small.iter().enumerate().map(|(i, t)| (format!("{i:02}.json"), t.as_str())).collect();
    let many = sparkify_input(&lake, "many", &small);
    let (n, times) = (logs.lines(), logs.times);

    let m = lake.ingest(&one);
    let ev = m.stream("events");
    assert_eq!((ev.files, ev.read, ev.plays, ev.rejected), (1, n + 1, 6820 * times as u64, 1));
    assert_eq!(m.rejects.iter().map(|r| (r.file.as_str(), r.line)).collect::<Vec<_>>(), [("log_data/all.json", n + 1)]);
    let raw = assert_stored_as_received(&lake, &logs.big);
    assert_staged_in_pieces_one_file_per_date(&lake);

    // The same rows as the small files give.
    let parts = TestLake::new();
    let pm = parts.ingest(&many);
    assert_eq!((pm.stream("events").read, pm.stream("events").files), (n + 1, times as u64));
    let star = |l: &TestLake| STAR.iter().map(|t| l.star_rows(t)).collect::<Vec<_>>();
    lake.build();
    parts.build();
    assert_eq!(lake.scalar("SELECT count(*) FROM fact_plays"), 6820 * times);
    assert_eq!(star(&lake), star(&parts));

    // The same file again: already stored, nothing written.
    let again = lake.ingest(&one);
    assert_eq!((again.committed, again.files_already_stored), (false, 1 + 71));
    assert!(no_temp_beside(&lake, &raw));

    // Reprocess reads it in pieces too, and checks it as it goes.
    fs::remove_dir_all(lake.layout.abs("staging")).unwrap();
    let r = lake.reprocess();
    assert_eq!((r.stream("events").read, r.stream("events").files), (n + 1, 1));
    assert_eq!(r.rejects.iter().map(|r| r.line).collect::<Vec<_>>(), [n + 1]);
    lake.build();
    assert_eq!(star(&lake), star(&parts));
    assert_a_damaged_big_file_stops_reprocess_and_is_repaired(&lake, &raw, &logs.big, &one);
}

/// The real logs again and again, each time 30 days later, in time order,
/// until they reach `STREAM_FROM`: one big file, and the same events as one
/// small file per repetition; both end with the same malformed line.
struct RepeatedLogs {
    events: usize,
    times: i64,
    big: String,
    small: Vec<String>,
}

impl RepeatedLogs {
    fn past_stream_from() -> RepeatedLogs {
        use tunelake::source::chunks::{PIECE, STREAM_FROM};
        let mut logs = walk(&sparkify_dataset().join("log_data"));
        logs.sort();
        let events: Vec<serde_json::Value> = logs
            .iter()
            .flat_map(|p| fs::read_to_string(p).unwrap().lines().map(String::from).collect::<Vec<_>>())
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect();
        let (mut big, mut small) = (String::new(), vec![]);
        let mut times = 0;
        while (big.len() as u64) < STREAM_FROM {
            let mut part = String::new();
            for e in &events {
                let mut e = e.clone();
                e["ts"] = (e["ts"].as_i64().unwrap() + times * 30 * 86_400_000).into();
                part.push_str(&e.to_string());
                part.push('\n');
            }
            big.push_str(&part);
            small.push(part);
            times += 1;
        }
        let bad = "{\"ts\": oops}\n";
        big.push_str(bad);
        small.last_mut().unwrap().push_str(bad);
        assert!(big.len() > 3 * PIECE);
        RepeatedLogs { events: events.len(), times, big, small }
    }

    /// The good lines of the big file (the malformed one is line `lines() + 1`).
    fn lines(&self) -> u64 {
        self.events as u64 * self.times as u64
    }
}

/// A Sparkify folder in the lake's temp dir: the real songs and these log files.
fn sparkify_input(lake: &TestLake, name: &str, files: &[(String, &str)]) -> std::path::PathBuf {
    let dir = lake.dir.path().join(name);
    copy_dir(&sparkify_dataset().join("song_data"), &dir.join("song_data"));
    fs::create_dir_all(dir.join("log_data")).unwrap();
    for (file, text) in files {
        fs::write(dir.join("log_data").join(file), text).unwrap();
    }
    dir
}

/// The big file's raw entry, after checking it is stored as received.
fn assert_stored_as_received(lake: &TestLake, big: &str) -> tunelake::lake::manifest::RawFile {
    // Stored exactly as received, under its sha256, with no temp file left.
    let manifest = lake.manifest();
    let raw = manifest.raw_files().unwrap().iter().find(|r| r.origin == "log_data/all.json").unwrap().clone();
    assert_eq!((raw.offset, raw.sha256.as_str()), (None, tunelake::lake::sha256_hex(big.as_bytes()).as_str()));
    assert_eq!(fs::read(lake.layout.abs(&raw.path)).unwrap(), big.as_bytes());
    assert!(no_temp_beside(lake, &raw));
    raw
}

/// No `.tmp-` file in the raw file's folder.
fn no_temp_beside(lake: &TestLake, raw: &tunelake::lake::manifest::RawFile) -> bool {
    let raw_dir = lake.layout.abs(&raw.path).parent().unwrap().to_path_buf();
    fs::read_dir(&raw_dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".tmp-"))
}

fn assert_staged_in_pieces_one_file_per_date(lake: &TestLake) {
    // Staged in pieces (part-<run>-<file>-<k>), one file per date even
    // where a piece ended inside a date.
    let staged = walk(&lake.layout.abs("staging/stg_sparkify_events"));
    let dates: std::collections::BTreeSet<_> = staged.iter().map(|p| p.parent().unwrap().to_path_buf()).collect();
    assert_eq!(staged.len(), dates.len());
    assert!(staged.iter().all(|p| p.file_name().unwrap().to_string_lossy().split('-').count() == 4), "{staged:?}");
    let numbers: std::collections::BTreeSet<_> = staged
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().rsplit('-').next().unwrap().to_string())
        .collect();
    assert_eq!(numbers.len(), staged.len(), "{numbers:?}");
}

/// One bit flipped in the big file's last piece: reprocess stops on it, and
/// ingesting the original again repairs it.
fn assert_a_damaged_big_file_stops_reprocess_and_is_repaired(
    lake: &TestLake,
    raw: &tunelake::lake::manifest::RawFile,
    big: &str,
    one: &Path,
) {
    let path = lake.layout.abs(&raw.path);
    let mut damaged = big.as_bytes().to_vec();
    let at = damaged.len() - tunelake::source::chunks::PIECE / 2;
    damaged[at] ^= 0x01;
    fs::write(&path, damaged).unwrap();
    let out = lake.cli(&["reprocess"]);
    let err = crate::common::stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains(&raw.path) && err.contains("raw file is corrupt"), "{err}");

    // `verify` records it; ingesting the original again (through the copy-in path) repairs it.
    assert_eq!(lake.cli(&["verify"]).status.code(), Some(4));
    let again = lake.cli(&["ingest", "sparkify", one.to_str().unwrap()]);
    assert!(crate::common::stderr(&again).contains("written again from their originals"), "{again:?}");
    assert_eq!(fs::read(&path).unwrap(), big.as_bytes());
    assert!(no_temp_beside(lake, raw));
    let o = lake.cli(&["verify"]);
    assert!(o.status.success(), "{}", crate::common::stdout(&o));
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// Issue 24: a file symlink that loops aborted the whole ingest, and the good
/// files beside it were not stored.
#[test]
fn issue_24_an_unreadable_file_is_one_reject_and_the_rest_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&sample(), &data);
    let logs = data.join("log_data/2018/11");
    std::os::unix::fs::symlink("loop-b.json", logs.join("loop-a.json")).unwrap();
    std::os::unix::fs::symlink("loop-a.json", logs.join("loop-b.json")).unwrap();
    std::os::unix::fs::symlink("nowhere.json", data.join("song_data/dangling.json")).unwrap();
    let lake = TestLake::new();
    let m = lake.ingest(&data);
    assert_eq!(m.files_new, 75, "the good files are stored");
    let events = m.accounting.iter().find(|a| a.stream == "events").unwrap();
    let songs = m.accounting.iter().find(|a| a.stream == "songs").unwrap();
    assert_eq!((events.files_unreadable, songs.files_unreadable), (2, 1));
    assert_eq!(events.plays, 703);
    let mut rejected: Vec<&str> = m.rejects.iter().map(|r| r.file.as_str()).collect();
    rejected.sort();
    assert_eq!(rejected, ["log_data/2018/11/loop-a.json", "log_data/2018/11/loop-b.json", "song_data/dangling.json"]);
    assert!(m.rejects.iter().all(|r| r.reason.starts_with("cannot read the file")), "{:?}", m.rejects);
    assert_eq!(lake.build().rows("fact_plays"), 703);
    let status = crate::common::stdout(&lake.cli(&["status"]));
    assert!(status.contains("2 unreadable (rejected)") && status.contains("loop-a.json"), "{status}");
}

/// Issue 24: a truncated or edited raw file went unnoticed by `status` and
/// `build`; `verify` checks the lake against its ledger and says how to repair it.
#[test]
fn issue_24_verify_names_each_problem_and_its_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&sample(), &data);
    let lake = TestLake::new();
    lake.ingest(&data);
    lake.build();
    let o = lake.cli(&["verify", "--deep"]);
    assert!(o.status.success(), "{}{}", crate::common::stdout(&o), crate::common::stderr(&o));
    assert!(
        crate::common::stdout(&o).contains("verify: 75 raw files") && crate::common::stdout(&o).ends_with(": ok\n")
    );
    assert_verify_finds_a_checkpoint_unlike_its_entries(&lake);

    // A truncated raw log, a staging file gone, an edited star file.
    let d = Damage::done(&lake, &data, tmp.path());
    assert_verify_names_each_problem(&lake, &d);

    // The repairs it names work: the original ingested again replaces the damaged copy.
    let o = lake.cli(&["ingest", "sparkify", data.to_str().unwrap()]);
    assert!(
        o.status.success() && crate::common::stderr(&o).contains("written again from their originals"),
        "{}",
        crate::common::stderr(&o)
    );
    assert_eq!(fs::read(lake.layout.abs(&d.log.path)).unwrap(), fs::read(data.join(&d.log.origin)).unwrap());
    let (start, len) = (d.song.offset.unwrap() as usize, d.song.bytes as usize);
    assert_eq!(fs::read(&d.pack).unwrap()[start..start + len], fs::read(data.join(&d.song.origin)).unwrap());
    assert_eq!(fs::read(&d.pack).unwrap().len(), d.pack_len, "the rest of the pack as it was");
    assert!(!lake.layout.damaged_raw().exists(), "nothing left to repair");
    fs::rename(tmp.path().join("staged.parquet"), lake.layout.abs(&d.staged)).unwrap();
    fs::remove_file(lake.layout.abs(&d.part)).unwrap();
    lake.build_with(&tunelake::model::build::BuildOptions { force: true, ..Default::default() });
    let o = lake.cli(&["verify", "--deep"]);
    assert!(o.status.success(), "{}{}", crate::common::stdout(&o), crate::common::stderr(&o));
}

fn assert_verify_finds_a_checkpoint_unlike_its_entries(lake: &TestLake) {
    // A checkpoint that is not the fold of the entries (two runs have none: make one).
    let mut state = lake.manifest().state().clone();
    state.staging_run += 7;
    let mut raw = tunelake::lake::checkpoint::RawState::default();
    lake.manifest().history().unwrap().iter().for_each(|r| raw.apply(r));
    tunelake::lake::checkpoint::write(&tunelake::lake::checkpoint::encode(&lake.layout, &state, &raw)).unwrap();
    let pointer = lake.layout.manifest_dir().join("_last_checkpoint");
    assert_eq!(lake.manifest().staging_run(), state.staging_run, "the checkpoint is what loading reads");
    let o = lake.cli(&["verify"]);
    assert_eq!(o.status.code(), Some(4));
    let text = crate::common::stdout(&o);
    assert!(text.contains("the ledger's checkpoint differs from its entries") && text.contains("rm '"), "{text}");
    fs::remove_file(&pointer).unwrap();
}

/// What `Damage::done` broke: a raw log truncated, a staging file moved to
/// `tmp/staged.parquet`, a star file and a packed song file each with a byte changed.
struct Damage {
    log: tunelake::lake::manifest::RawFile,
    staged: String,
    part: String,
    song: tunelake::lake::manifest::RawFile,
    pack: std::path::PathBuf,
    pack_len: usize,
}

impl Damage {
    fn done(lake: &TestLake, data: &Path, tmp: &Path) -> Damage {
        let m = lake.manifest();
        let log = m.raw_files().unwrap().iter().find(|r| r.kind == "log" && r.offset.is_none()).unwrap().clone();
        fs::write(lake.layout.abs(&log.path), &fs::read(data.join(&log.origin)).unwrap()[..100]).unwrap();
        let staged = m.staging_files("stg_sparkify_events")[0].path.clone();
        fs::rename(lake.layout.abs(&staged), tmp.join("staged.parquet")).unwrap();
        let part = m.star().unwrap().tables["dim_users"][0].path.clone();
        // A song file packed with the others, one byte changed.
        let song = m.raw_files().unwrap().iter().find(|r| r.kind == "song" && r.offset.is_some()).unwrap().clone();
        let pack = lake.layout.abs(&song.path);
        let mut packed = fs::read(&pack).unwrap();
        packed[song.offset.unwrap() as usize + 3] ^= 0x20;
        fs::write(&pack, &packed).unwrap();
        let mut bytes = fs::read(lake.layout.abs(&part)).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x55;
        fs::write(lake.layout.abs(&part), &bytes).unwrap();
        Damage { log, staged, part, song, pack, pack_len: packed.len() }
    }
}

fn assert_verify_names_each_problem(lake: &TestLake, d: &Damage) {
    let (log, staged, part, song) = (&d.log, &d.staged, &d.part, &d.song);
    let o = lake.cli(&["verify"]);
    assert_eq!(o.status.code(), Some(4));
    let text = crate::common::stdout(&o);
    assert!(text.contains(&format!("problem: {} (from {}): 100 bytes", log.path, log.origin)), "{text}");
    assert!(
        text.contains("repair: ingest the original again") && text.contains(&format!("cp '{}'", log.origin)),
        "{text}"
    );
    assert!(text.contains(&format!("problem: {staged}")) && text.contains("tunelake reprocess"), "{text}");
    assert!(!text.contains(&format!("problem: {part}")), "only --deep hashes the star: {text}");
    assert!(
        text.contains(&format!("problem: {} (from {}): sha256", song.path, song.origin))
            && text.contains(&format!("its bytes are written back at {} of the pack", song.offset.unwrap())),
        "{text}"
    );
    assert!(crate::common::stderr(&o).contains("the lake has 3 problem(s)"), "{}", crate::common::stderr(&o));
    let o = lake.cli(&["verify", "--deep"]);
    let text = crate::common::stdout(&o);
    let rm = format!("repair: remove it, then run `tunelake build --force`: rm '{}'", lake.layout.abs(part).display());
    assert!(text.contains(&format!("problem: {part}: sha256")) && text.contains(&rm), "{text}");
}

/// Issue 20: the ledger grows by a run per command, and loading it must not.
/// After 23 runs the manifest is read from the checkpoint of run 20 and the
/// three entries after it, and everything it says equals a replay of every entry.
#[test]
fn issue_20_a_long_ledger_loads_from_its_checkpoint_and_says_what_every_entry_says() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = TestLake::new();
    copy_dir(&sample().join("song_data"), &tmp.path().join("songs/song_data"));
    lake.ingest(&tmp.path().join("songs"));
    let log = fs::read_to_string(sample().join("log_data/2018/11/2018-11-01-events.json")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    for i in 0..11 {
        let chunk = &lines[i * lines.len() / 11..(i + 1) * lines.len() / 11];
        let dir = tmp.path().join(format!("day{i}/log_data"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("events.json"), chunk.join("\n")).unwrap();
        assert!(lake.ingest(dir.parent().unwrap()).committed);
        assert!(lake.build().committed);
    }
    let m = lake.manifest();
    assert_eq!(m.run_count(), 23);
    assert!(lake.layout.manifest_dir().join("_last_checkpoint").is_file());
    let replayed = tunelake::lake::Manifest::replay(&lake.layout).unwrap();
    let state = |m: &tunelake::lake::Manifest| serde_json::to_value(m.state()).unwrap();
    assert_eq!(state(&m), state(&replayed));
    // The day's partition was compacted when a ninth file would have joined it: the merged file and two since.
    let events = m.staging_files("stg_sparkify_events");
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events[0].path.ends_with("part-00000018-c0000.parquet") && events[0].sorted, "{events:?}");
    let rows: u64 = events.iter().map(|f| f.rows).sum();
    assert_eq!(rows as usize, lines.len(), "every event is in staging once");
    assert_eq!(m.state().staging.len(), 3 + m.staging_files("stg_sparkify_songs").len());

    // The commands read the same lake either way: status lists the same runs, a query counts the same plays.
    let status = crate::common::stdout(&lake.cli(&["status", "--runs", "15"]));
    assert!(status.contains("runs (23 in all, latest 15)") && status.contains("\n  #9 "), "{status}");
    assert!(!status.contains("\n  #8 "), "{status}");
    let plays = lake.scalar("SELECT count(*) FROM fact_plays");
    assert_eq!(plays as usize, lines.iter().filter(|l| l.contains("\"NextSong\"")).count());
    let o = lake.cli(&["verify"]);
    assert!(o.status.success(), "{}{}", crate::common::stdout(&o), crate::common::stderr(&o));
    fs::remove_file(lake.layout.manifest_dir().join("_last_checkpoint")).unwrap();
    assert_eq!(crate::common::stdout(&lake.cli(&["status", "--runs", "15"])), status);
    assert_eq!(lake.scalar("SELECT count(*) FROM fact_plays"), plays);

    // The merged files are debris now, and a build of every month from the compacted staging gives the same star.
    lake.build_checked_against_full();
    let o = lake.cli(&["vacuum", "--dry-run"]);
    let merged_away = crate::common::stdout(&o).lines().filter(|l| l.contains("stg_sparkify_events")).count();
    assert_eq!(merged_away, 8, "{}", crate::common::stdout(&o));

    // A reprocess after the checkpoint replaces staging: the build after it reads the new set only.
    lake.reprocess();
    let rebuilt = lake.build();
    assert_eq!(rebuilt.full_reason.as_deref(), Some("staging was reprocessed"));
    assert_eq!(lake.scalar("SELECT count(*) FROM fact_plays"), plays);
    assert_eq!(state(&lake.manifest()), state(&tunelake::lake::Manifest::replay(&lake.layout).unwrap()));
}

/// Rewrites `lake`'s ledger as the first releases wrote it: run 1 lists its
/// raw files inline (no raw index), run 2's raw index has no digest list,
/// there is no checkpoint and no `_manifest/FORMAT`.
fn as_first_format(lake: &TestLake) {
    let m = lake.layout.manifest_dir();
    let entry = |id: u64| -> serde_json::Value {
        serde_json::from_slice(&fs::read(lake.layout.run_entry(id)).unwrap()).unwrap()
    };
    let mut one = entry(1);
    let index = fs::read_to_string(m.join("00000001.raw.ndjson")).unwrap();
    let listed: Vec<serde_json::Value> = index.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    one.as_object_mut().unwrap().remove("raw_index");
    one["raw"] = listed.into();
    fs::write(lake.layout.run_entry(1), one.to_string()).unwrap();
    let mut two = entry(2);
    two["raw_index"].as_object_mut().unwrap().remove("digests");
    fs::write(lake.layout.run_entry(2), two.to_string()).unwrap();
    for f in ["00000001.raw.ndjson", "00000001.raw.sha256", "00000002.raw.sha256", "FORMAT"] {
        fs::remove_file(m.join(f)).unwrap();
    }
}

/// Issue 25: one ledger format in the code; a lake an earlier tunelake wrote
/// is upgraded once, by the first command, and reads as it did.
#[test]
fn a_lake_of_the_first_ledger_format_is_upgraded_by_the_first_command_and_reads_the_same() {
    let lake = TestLake::new();
    lake.ingest(&sample());
    let later = lake.dir.path().join("later");
    shifted_logs(&later, &[("2018-11-01-events.json", 40)]);
    lake.ingest(&later);
    lake.build();
    let top = |lake: &TestLake| stdout(&lake.cli(&["query", "--name", "top_tracks", "--format", "csv"]));
    let (before, runs) = (top(&lake), lake.manifest().run_count());
    as_first_format(&lake);

    let status = lake.cli(&["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains(&format!("runs ({runs} in all")), "{}", stdout(&status));
    let m = lake.layout.manifest_dir();
    assert_eq!(fs::read_to_string(m.join("FORMAT")).unwrap(), "2\n", "upgraded by the first command");
    let one = fs::read_to_string(lake.layout.run_entry(1)).unwrap();
    assert!(one.contains("00000001.raw.ndjson") && !one.contains("\"raw\""), "{one}");
    assert!(m.join("00000001.raw.sha256").is_file() && m.join("00000002.raw.sha256").is_file());
    assert_eq!(top(&lake), before, "the same star, read through the upgraded ledger");
    let again = lake.cli(&["ingest", "sparkify", sample().to_str().unwrap()]);
    assert!(stdout(&again).contains("nothing new: all 75 files are already stored"), "{}", stdout(&again));
    assert_eq!(lake.manifest().raw_count(), 76, "75 sample files and the shifted log");
}
