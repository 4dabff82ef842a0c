//! The lake end to end on the full real Sparkify dataset, without PostgreSQL.

use std::fs;

use crate::common::{TestLake, copy_dir, render_rows, sample, sparkify_dataset};

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
    let runs = lake.manifest().runs.len();

    let again = lake.ingest(&sparkify_dataset());
    assert!(!again.committed, "the same folder stores nothing new");
    assert_eq!(again.files_already_stored, 101);
    assert_eq!(again.files_new, 0);
    let rebuilt = lake.build();
    assert!(!rebuilt.committed, "an unchanged staging is not rebuilt");
    assert_eq!(rebuilt.version, first.version);
    assert_eq!(lake.manifest().runs.len(), runs);

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
    let b2 = lake.build_with(&tunelake::model::build::BuildOptions { force: true, ..Default::default() });
    assert_eq!(b2.rows("fact_plays"), plays, "debris is not read");
    let out = crate::common::stdout(&lake.cli(&["vacuum", "--dry-run"]));
    assert!(out.contains(&debris.display().to_string()), "{out}");
    assert!(debris.exists(), "a dry run removes nothing");
    let out = crate::common::stdout(&lake.cli(&["vacuum"]));
    assert!(out.contains("vacuum: 3 files"), "{out}");
    assert!(!debris.exists() && !torn_raw.exists());
    // Every committed raw file is still there.
    assert!(lake.manifest().raw_files().all(|r| lake.layout.abs(&r.path).exists()));
    assert_eq!(lake.star_rows("fact_plays").len() as u64, plays);
}
