//! Sync into a real PostgreSQL (started by `pg`): the tables equal the lake's
//! star tables row for row, re-runs add nothing, only changes are sent, and
//! the course's views have the course's exact columns.

use datafusion::arrow::record_batch::RecordBatchReader;
use postgres::types::Type;
use postgres::{Client, NoTls};

use crate::common::{TestLake, copy_dir, sample, shifted_logs, sparkify_dataset};
use crate::pg;

fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap()
}

/// A PostgreSQL value rendered like Arrow's display of the same value.
fn render(row: &postgres::Row, i: usize) -> String {
    let ty = row.columns()[i].type_();
    let s: Option<String> = match *ty {
        Type::VARCHAR | Type::TEXT => row.get(i),
        Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
        Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
        Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(|v| v.to_string()),
        Type::BOOL => row.get::<_, Option<bool>>(i).map(|v| v.to_string()),
        Type::TIMESTAMP => {
            row.get::<_, Option<chrono::NaiveDateTime>>(i).map(|v| v.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
        }
        ref other => panic!("unexpected column type {other}"),
    };
    s.unwrap_or_else(|| "NULL".into())
}

fn pg_rows(client: &mut Client, table: &str, columns: &str) -> Vec<String> {
    let mut rows: Vec<String> = client
        .query(&format!("SELECT {columns} FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| (0..r.len()).map(|i| render(r, i)).collect::<Vec<_>>().join("|"))
        .collect();
    rows.sort();
    rows
}

fn assert_pg_equals_lake(lake: &TestLake, client: &mut Client) {
    for t in tunelake::sql::STAR_TABLES.iter().map(|t| t.name) {
        // In the lake's column order: a column a sync added comes last in the database.
        let m = lake.manifest();
        let first = m.star().unwrap().tables[t].first().map(|p| lake.layout.abs(&p.path));
        let schema = first.map(|f| RecordBatchReader::schema(&tunelake::lake::parquet::read(&f, 1).unwrap()));
        let columns = schema.map_or("*".into(), |s| {
            s.fields().iter().map(|f| format!("\"{}\"", f.name())).collect::<Vec<_>>().join(", ")
        });
        let (want, got) = (lake.star_rows(t), pg_rows(client, t, &columns));
        assert_eq!(want.len(), got.len(), "{t}: row count");
        assert!(want == got, "{t}: first difference {:?}", want.iter().zip(&got).find(|(a, b)| a != b));
    }
}

/// The sample and the Spotify export fixture ingested, built and synced to `url`.
fn sample_and_export_synced(url: &str) -> TestLake {
    let lake = TestLake::new();
    lake.ingest(&sample());
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spotify_export");
    let mut m = lake.manifest();
    tunelake::source::ingest_spotify_export(&lake.layout, &mut m, &fixtures, None, "test").unwrap();
    lake.build();
    lake.sync(url);
    lake
}

/// The sample dataset ingested, built and synced into a new database `db`.
fn sample_synced(db: &str) -> (TestLake, String, Client) {
    let url = pg::server().create_database(db);
    let lake = TestLake::new();
    lake.ingest(&sparkify_dataset());
    lake.build();
    lake.sync(&url);
    let client = connect(&url);
    (lake, url, client)
}

fn count(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn sync_equals_the_lake_row_for_row_and_reruns_add_nothing() {
    let url = pg::server().create_database("sync_full");
    let lake = TestLake::new();
    lake.ingest(&sparkify_dataset());
    lake.build();
    let first = lake.sync(&url);
    assert_eq!(first.parts_unchanged, 0);
    assert!(first.migrations_applied.iter().any(|m| m == "sql/postgres/002_course_views.sql"));
    let mut client = connect(&url);
    assert_pg_equals_lake(&lake, &mut client);
    assert_eq!(count(&mut client, "SELECT count(*) FROM fact_plays"), 6820);
    assert_eq!(count(&mut client, "SELECT count(*) FROM dim_users"), 97);

    // The whole pipeline again: same rows, nothing sent, no duplicates.
    assert!(!lake.ingest(&sparkify_dataset()).committed);
    lake.build();
    let second = lake.sync(&url);
    assert_eq!((second.parts_sent, second.rows_sent), (0, 0));
    assert!(second.migrations_applied.is_empty());
    assert_pg_equals_lake(&lake, &mut client);
    assert_eq!(count(&mut client, "SELECT count(*) FROM songplays"), 6820);
    let version: i64 = client.query_one("SELECT max(lake_version) FROM tunelake_syncs", &[]).unwrap().get(0);
    assert_eq!(version as u64, lake.manifest().star().unwrap().version);

    // --full resends everything and still changes no row.
    let full = lake.sync_full(&url);
    assert!(full.parts_sent >= 5, "{full:?}");
    assert_eq!(full.rows_changed.values().sum::<u64>(), 0, "{:?}", full.rows_changed);
    assert_pg_equals_lake(&lake, &mut client);
}

#[test]
fn course_views_have_the_course_columns_and_answers() {
    let (_lake, _url, mut client) = sample_synced("course_views");
    let columns = |client: &mut Client, view: &str| -> Vec<String> {
        client
            .query(
                "SELECT column_name::text || ' ' || data_type::text FROM information_schema.columns \
                 WHERE table_name = $1 ORDER BY ordinal_position",
                &[&view],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let v = |s: &str| s.split(", ").map(String::from).collect::<Vec<_>>();
    assert_eq!(
        columns(&mut client, "songplays"),
        v("songplay_id integer, start_time timestamp without time zone, user_id integer, level character varying, \
           song_id character varying, artist_id character varying, session_id integer, location character varying, \
           user_agent character varying")
    );
    assert_eq!(
        columns(&mut client, "users"),
        v("user_id integer, first_name character varying, last_name character varying, gender character varying, \
           level character varying")
    );
    assert_eq!(
        columns(&mut client, "songs"),
        v("song_id character varying, title character varying, artist_id character varying, year integer, \
           duration double precision")
    );
    assert_eq!(
        columns(&mut client, "artists"),
        v("artist_id character varying, name character varying, location character varying, \
           latitude double precision, longitude double precision")
    );
    assert_eq!(
        columns(&mut client, "time"),
        v("start_time timestamp without time zone, hour integer, day integer, week integer, month integer, \
           year integer, weekday integer")
    );
    // The course's own questions, unchanged.
    assert_eq!(count(&mut client, "SELECT count(*) FROM songplays"), 6820);
    assert_eq!(count(&mut client, "SELECT count(*) FROM songplays WHERE song_id IS NOT NULL"), 1);
    assert_eq!(count(&mut client, "SELECT count(*) FROM users"), 97);
    assert_eq!(count(&mut client, "SELECT count(*) FROM songs"), 71);
    assert_eq!(count(&mut client, "SELECT count(*) FROM artists"), 69);
    let (song, artist): (String, String) = {
        let r = client
            .query_one(
                "SELECT s.title, a.name FROM songplays sp JOIN songs s USING (song_id) JOIN artists a ON a.artist_id = sp.artist_id",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((song.as_str(), artist.as_str()), ("Setanta matins", "Elena"));
    assert_eq!(count(&mut client, "SELECT count(*) FROM users WHERE level = 'paid'"), 22);
}

#[test]
fn a_new_day_sends_only_what_changed() {
    let url = pg::server().create_database("incremental");
    let lake = TestLake::new();
    let input = lake.dir.path().join("input");
    copy_dir(&sample(), &input);
    // Hold back one day, sync, then add it.
    let held = input.join("log_data/2018/11/2018-11-21-events.json");
    let day = std::fs::read(&held).unwrap();
    std::fs::remove_file(&held).unwrap();
    lake.ingest(&input);
    lake.build();
    let first = lake.sync(&url);
    std::fs::write(&held, &day).unwrap();
    let m = lake.ingest(&input);
    assert_eq!(m.files_new, 1);
    lake.build();
    let second = lake.sync(&url);
    assert!(second.parts_sent < first.parts_sent + 1 && second.parts_sent > 0, "{second:?}");
    // Changed partitions send their difference only: every row sent is new or changed.
    assert_eq!(second.rows_sent, second.rows_changed.values().sum::<u64>(), "{second:?}");
    let all: usize = tunelake::sql::STAR_TABLES.iter().map(|t| lake.star_rows(t.name).len()).sum();
    assert!((second.rows_sent as usize) < all, "{second:?} vs {all} rows in the star");
    // The dimension without changes (tracks from song_data stay; derived ones change) is checked by hash.
    let mut client = connect(&url);
    assert_pg_equals_lake(&lake, &mut client);
    assert_eq!(count(&mut client, "SELECT count(*) FROM fact_plays"), lake.star_rows("fact_plays").len() as i64);
}

/// The parts of `table` in the lake's current star: (partition or "", rows).
fn parts_of(lake: &TestLake, table: &str) -> Vec<(String, u64)> {
    lake.manifest().star().unwrap().tables[table]
        .iter()
        .map(|p| (p.partition.clone().unwrap_or_default(), p.rows))
        .collect()
}

#[test]
fn a_later_month_adds_layers_of_new_keys_and_an_earlier_one_rewrites_the_dimensions() {
    let url = pg::server().create_database("layers");
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| tmp.path().join(name);
    copy_dir(&sample().join("song_data"), &dir("songs").join("song_data"));
    shifted_logs(&dir("autumn"), &[("2018-11-01-events.json", 0), ("2018-11-02-events.json", 31)]);
    shifted_logs(&dir("february"), &[("2018-11-03-events.json", 92)]);
    shifted_logs(&dir("october"), &[("2018-11-21-events.json", -25)]);

    let lake = TestLake::new();
    lake.ingest(&dir("songs"));
    lake.ingest(&dir("autumn"));
    lake.build();
    let first = lake.sync(&url);
    let base = |t: &str| parts_of(&lake, t)[0].1;
    let (tracks, artists) = (base("dim_tracks"), base("dim_artists"));

    // February: its tracks no song matches and nobody played before become a layer.
    lake.ingest(&dir("february"));
    let feb = lake.build();
    assert_eq!((feb.months_computed, feb.full_reason.clone()), (1, None));
    assert_eq!(feb.layered, ["dim_tracks", "bridge_track_artists", "dim_artists"]);
    let layered = ["_sparkify_unmatched_all", "dim_tracks", "bridge_track_artists", "dim_artists"];
    for t in layered {
        let parts = parts_of(&lake, t);
        assert_eq!(parts.len(), 2, "{t}: a base and one layer: {parts:?}");
        assert!(parts[1].0.starts_with("layer=") && parts[1].1 > 0, "{t}: {parts:?}");
    }
    let new_tracks = parts_of(&lake, "dim_tracks")[1].1;
    assert_eq!(base("dim_tracks"), tracks, "the base is the file it was");
    assert_eq!(lake.scalar("SELECT count(*) FROM dim_tracks"), (tracks + new_tracks) as i64);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM (SELECT DISTINCT track_id FROM dim_tracks)"),
        (tracks + new_tracks) as i64,
        "a layer holds new keys only"
    );
    let m = lake.sync(&url);
    assert_eq!(m.rows_changed["dim_tracks"], new_tracks, "{m:?}");
    assert_eq!(m.rows_changed["dim_artists"], parts_of(&lake, "dim_artists")[1].1, "{m:?}");
    assert_eq!(m.rows_deleted, 0, "{m:?}");
    assert!(m.rows_sent < first.rows_sent, "{m:?}");
    let mut client = connect(&url);
    assert_pg_equals_lake(&lake, &mut client);
    assert_same_rows(&lake, &[&dir("songs"), &dir("autumn"), &dir("february")]);

    // October, before every play so far: known tracks get an earlier first
    // play, and the layered tables are written whole again.
    lake.ingest(&dir("october"));
    let oct = lake.build();
    assert_eq!((oct.months, oct.months_computed, oct.full_reason.clone()), (4, 1, None));
    assert!(oct.layered.is_empty(), "{:?}", oct.layered);
    for t in layered {
        assert_eq!(parts_of(&lake, t).len(), 1, "{t}: one file again");
    }
    assert!(base("dim_artists") >= artists);
    lake.sync(&url);
    assert_pg_equals_lake(&lake, &mut client);

    assert_same_rows(&lake, &[&dir("songs"), &dir("autumn"), &dir("february"), &dir("october")]);
}

/// `lake` has the rows of a lake that ingests `inputs` at once and builds once.
fn assert_same_rows(lake: &TestLake, inputs: &[&std::path::Path]) {
    let whole = TestLake::new();
    for d in inputs {
        whole.ingest(d);
    }
    whole.build();
    for t in tunelake::sql::STAR_TABLES {
        assert_eq!(lake.star_rows(t.name), whole.star_rows(t.name), "{}: step by step vs all at once", t.name);
    }
}

#[test]
fn a_new_catalogue_song_sends_the_difference_and_deletes_the_derived_track() {
    let url = pg::server().create_database("new_song");
    let lake = TestLake::new();
    lake.ingest(&sample());
    lake.build();
    lake.sync(&url);
    new_song_for_a_derived_track(&lake, &url);
}

#[test]
fn the_differences_of_several_months_are_sent_each_once() {
    // The same day's plays in three months: a catalogue song then changes
    // rows in each, and sync computes the months' differences two at a time.
    let url = pg::server().create_database("several_months");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("three_months");
    copy_dir(&sample().join("song_data"), &dir.join("song_data"));
    let day = "2018-11-01-events.json";
    shifted_logs(&dir, &[(day, 0), (day, 31), (day, 62)]);
    let lake = TestLake::new();
    lake.ingest(&dir);
    lake.build();
    lake.sync(&url);
    let months = new_song_for_a_derived_track(&lake, &url);
    assert_eq!(months, 3, "the song's plays are in every month");
}

/// Adds to the catalogue the song of a derived track, syncs, and checks that
/// exactly its plays changed in PostgreSQL and the derived track went.
/// Returns how many months its plays are in.
fn new_song_for_a_derived_track(lake: &TestLake, url: &str) -> i64 {
    // A song the catalogue lacked: the plays of it get its ids, its derived track goes.
    let b = lake.query(
        "SELECT f.track_id, t.title, a.name, t.duration_s FROM fact_plays f JOIN dim_tracks t USING (track_id) \
         JOIN dim_artists a ON a.artist_id = f.artist_id WHERE t.origin = 'derived' ORDER BY f.play_id LIMIT 1",
    );
    let cell = |i: usize| datafusion::arrow::util::display::array_value_to_string(b[0].column(i), 0).unwrap();
    let (derived, title, artist, duration) = (cell(0), cell(1), cell(2), cell(3));
    let plays = lake.scalar(&format!("SELECT count(*) FROM fact_plays WHERE track_id = '{derived}'"));
    let months = lake.scalar(&format!(
        "SELECT count(DISTINCT date_trunc('month', played_at)) FROM fact_plays WHERE track_id = '{derived}'"
    ));
    let songs = lake.dir.path().join("new_song/song_data");
    std::fs::create_dir_all(&songs).unwrap();
    let song = serde_json::json!({"num_songs": 1, "artist_id": "ARNEWSONG0001", "artist_latitude": null,
        "artist_longitude": null, "artist_location": "", "artist_name": artist, "song_id": "SONEWSONG0001",
        "title": title, "duration": duration.parse::<f64>().unwrap(), "year": 2001});
    std::fs::write(songs.join("SONEWSONG0001.json"), song.to_string()).unwrap();
    lake.ingest(songs.parent().unwrap());
    let built = lake.build_checked_against_full();
    assert!(built.catalogue_changed && built.full_reason.is_none(), "{built:?}");
    let m = lake.sync(url);
    assert_eq!(m.rows_sent, m.rows_changed.values().sum::<u64>(), "only rows that changed are sent: {m:?}");
    assert_eq!(m.rows_changed["fact_plays"], plays as u64, "{m:?}");
    assert!(m.rows_deleted >= 1, "{m:?}");
    let mut client = connect(url);
    assert_eq!(count(&mut client, &format!("SELECT count(*) FROM dim_tracks WHERE track_id = '{derived}'")), 0);
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM fact_plays WHERE track_id = 'SONEWSONG0001'"),
        plays,
        "the plays now name the catalogue's song"
    );
    assert_pg_equals_lake(lake, &mut client);
    months
}

#[test]
fn rows_the_lake_drops_are_deleted_from_postgres() {
    // A reprocess with a stricter model (tolerance 0) changes facts; sync follows.
    let url = pg::server().create_database("follow_changes");
    let lake = TestLake::new();
    lake.ingest(&sample());
    lake.build();
    lake.sync(&url);
    let mut client = connect(&url);
    // Delete a row behind tunelake's back and add a stray one: --full repairs both.
    client.batch_execute("DELETE FROM dim_users WHERE user_id = (SELECT min(user_id) FROM dim_users)").unwrap();
    client
        .batch_execute(
            "INSERT INTO dim_users (user_id, first_seen, last_seen, source) VALUES ('stray', now(), now(), 'x')",
        )
        .unwrap();
    let m = lake.sync_full(&url);
    assert_eq!(m.rows_deleted, 1);
    assert_eq!(m.rows_changed["dim_users"], 1);
    assert_pg_equals_lake(&lake, &mut client);
}

#[test]
fn the_cli_syncs_and_never_prints_the_password() {
    let url = pg::server().create_database("cli_sync");
    // A password in the URL: trust auth ignores it, the tool must never show it.
    let with_pw = url.replace("postgres@", "postgres:Sup3rSecretPw@");
    let lake = TestLake::new();
    let out = crate::common::tunelake_cmd()
        .args(["--lake", lake.layout.root().to_str().unwrap(), "run", "--sparkify"])
        .arg(sample())
        .env("DATABASE_URL", &with_pw)
        .output()
        .unwrap();
    let (so, se) = (crate::common::stdout(&out), crate::common::stderr(&out));
    assert!(out.status.success(), "{so}\n{se}");
    assert!(so.contains("sync: lake version"), "{so}");
    // A first sync: the month of plays and of times went while the build ran.
    assert!(so.contains("2 of the parts were sent while the build was still running"), "{so}");
    assert!(!so.contains("Sup3rSecretPw") && !se.contains("Sup3rSecretPw"));
    let manifest_text: String = std::fs::read_dir(lake.layout.abs("_manifest"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(!manifest_text.contains("Sup3rSecretPw"), "the manifest must not record the password");
    let mut client = connect(&url);
    assert_pg_equals_lake(&lake, &mut client);

    // A wrong port: a clear error naming the target without the password, exit code 5.
    let bad = with_pw.replace(&format!(":{}/", pg::server().port()), ":1/");
    let out = lake.cli(&["sync", "--database-url", &bad]);
    let se = crate::common::stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{se}");
    assert!(se.contains("cannot connect to PostgreSQL at postgres@127.0.0.1:1/"), "{se}");
    assert!(!se.contains("Sup3rSecretPw"), "{se}");
}

#[test]
fn an_export_and_sparkify_sync_together_and_no_ip_address_reaches_postgres() {
    let url = pg::server().create_database("export_sync");
    let lake = sample_and_export_synced(&url);
    let mut client = connect(&url);
    assert_pg_equals_lake(&lake, &mut client);
    assert_eq!(count(&mut client, "SELECT count(*) FROM fact_plays WHERE source = 'spotify_export'"), 16);
    assert_eq!(count(&mut client, "SELECT count(*) FROM dim_episodes"), 3);
    // The course's views still show the course's data only.
    assert_eq!(count(&mut client, "SELECT count(*) FROM songplays"), 703);
    let dump: String = client
        .query("SELECT f::text FROM fact_plays f UNION ALL SELECT u::text FROM dim_users u", &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    for ip in ["203.0.113.7", "198.51.100.2", "192.0.2.1"] {
        assert!(!dump.contains(ip), "{ip} reached PostgreSQL");
    }
}

#[test]
fn a_bulk_load_into_empty_tables_rebuilds_every_index() {
    let url = pg::server().create_database("bulk_load");
    let lake = TestLake::new();
    lake.ingest(&sample());
    lake.build();
    let opts = tunelake::sink::SyncOptions { bulk_load_rows: 0, ..Default::default() };
    tunelake::sink::sync(&lake.layout, &lake.manifest(), &url, &opts).unwrap();
    let mut client = connect(&url);
    assert_pg_equals_lake(&lake, &mut client);
    assert_eq!(indexes_of(&mut client, "fact_plays"), vec!["fact_plays_pkey"]);
    assert_eq!(primary_key_of(&mut client, "fact_plays"), ["played_at", "play_id"], "in time order");
    // The key is a key again: a duplicate is refused.
    let dup = client.batch_execute("INSERT INTO fact_plays SELECT * FROM fact_plays LIMIT 1");
    let err = dup.unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("duplicate key"), "{err:?}");
}

#[test]
fn a_database_from_before_byte_order_play_ids_is_upgraded_in_place_with_its_rows_and_grants() {
    let (lake, url, mut client) = sample_synced("sync_collation");
    let collation = |c: &mut Client| -> Option<String> {
        c.query_one(
            "SELECT collation_name::text FROM information_schema.columns \
             WHERE table_name = 'fact_plays' AND column_name = 'play_id'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(collation(&mut client).as_deref(), Some("C"), "a new database has byte-order play ids");

    // As an older tunelake left a database: play_id in the database's
    // collation, 003 never applied; and someone may read songplays.
    let views = tunelake::sql::POSTGRES_MIGRATIONS.iter().find(|m| m.name == "002_course_views").unwrap().text;
    client
        .batch_execute(&format!(
            "DROP VIEW songplays, users, songs, artists, time; \
             ALTER TABLE fact_plays ALTER COLUMN play_id TYPE VARCHAR COLLATE \"default\"; {views}; \
             DELETE FROM tunelake_migrations WHERE name = 'sql/postgres/003_play_ids_byte_order.sql'; \
             CREATE ROLE tl_songplays_reader; GRANT SELECT ON songplays TO tl_songplays_reader;"
        ))
        .unwrap();
    assert_eq!(collation(&mut client), None);

    // A view of the user's own on play_id stops the migration, by name, and nothing changes.
    client.batch_execute("CREATE VIEW my_plays AS SELECT play_id FROM fact_plays").unwrap();
    let err = tunelake::sink::sync(&lake.layout, &lake.manifest(), &url, &Default::default()).unwrap_err();
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains("sql/postgres/003_play_ids_byte_order.sql") && chain.contains("my_plays"), "{chain}");
    assert_eq!(collation(&mut client), None);
    client.batch_execute("DROP VIEW my_plays").unwrap();

    let again = lake.sync(&url);
    assert_eq!(again.migrations_applied, ["sql/postgres/003_play_ids_byte_order.sql"]);
    assert_eq!(collation(&mut client).as_deref(), Some("C"));
    assert_pg_equals_lake(&lake, &mut client);
    assert_eq!(count(&mut client, "SELECT count(*) FROM songplays"), 6820);
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM pg_index WHERE indrelid = 'fact_plays'::regclass AND indisprimary"),
        1,
        "play_id is still the primary key"
    );
    let granted: bool = client
        .query_one("SELECT has_table_privilege('tl_songplays_reader', 'songplays', 'SELECT')", &[])
        .unwrap()
        .get(0);
    assert!(granted, "songplays keeps its grants");
}

/// Builds `lake` with a [`tunelake::sink::Loader`] at `url` that takes the
/// month files as the build writes them, then syncs the rest and commits.
fn run_with_loader(lake: &TestLake, url: &str) -> tunelake::sink::SyncMetrics {
    let mut loader = tunelake::sink::Loader::start(&lake.layout, url, &tunelake::sink::SyncOptions::default());
    let opts = tunelake::model::build::BuildOptions { on_star_part: Some(loader.hook()), ..Default::default() };
    let built = lake.build_with(&opts);
    assert!(built.committed);
    loader.built(&lake.manifest());
    loader.finish().unwrap()
}

/// The first column of every row, as text.
fn texts(client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Vec<String> {
    client.query(sql, params).unwrap().iter().map(|r| r.get(0)).collect()
}

/// The columns of `table`'s primary key, in the key's order.
fn primary_key_of(client: &mut Client, table: &str) -> Vec<String> {
    texts(
        client,
        "SELECT a.attname::text FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY k.n",
        &[&table],
    )
}

fn indexes_of(client: &mut Client, table: &str) -> Vec<String> {
    texts(client, "SELECT indexname::text FROM pg_indexes WHERE tablename = $1 ORDER BY 1", &[&table])
}

#[test]
fn a_loader_sends_month_files_while_the_build_runs_and_commits_the_version_built() {
    let url = pg::server().create_database("loader");
    let lake = TestLake::new();
    let input = lake.dir.path().join("three-months");
    shifted_logs(
        &input,
        &[("2018-11-01-events.json", 0), ("2018-11-02-events.json", 31), ("2018-11-03-events.json", 62)],
    );
    copy_dir(&sample().join("song_data"), &input.join("song_data"));
    lake.ingest(&input);
    let first = run_with_loader(&lake, &url);
    // A first sync: every month file of fact_plays and dim_time went while the build ran.
    let monthly: usize = ["fact_plays", "dim_time"].iter().map(|t| parts_of(&lake, t).len()).sum();
    assert_eq!(monthly, 6, "three months of plays and of times");
    assert_eq!(first.parts_sent_during_build, monthly, "{first:?}");
    let star_parts: usize = lake.manifest().star().unwrap().tables.values().map(Vec::len).sum();
    let helpers: usize = lake.manifest().star().unwrap().tables.keys().filter(|t| t.starts_with('_')).count();
    assert!(first.parts_sent <= star_parts - helpers && first.parts_sent > monthly, "{first:?}");
    assert_eq!(first.parts_unchanged, 0, "parts sent during the build are not unchanged ones: {first:?}");
    assert_eq!(first.tables_indexed_during_build, ["fact_plays", "dim_time"], "{first:?}");
    let mut client = connect(&url);
    assert_pg_equals_lake(&lake, &mut client);
    // The indexes dropped for the load are back, and the key refuses a duplicate.
    assert_eq!(indexes_of(&mut client, "fact_plays"), vec!["fact_plays_pkey"]);
    assert_eq!(indexes_of(&mut client, "dim_time"), vec!["dim_time_pkey"]);
    let err = client.batch_execute("INSERT INTO dim_time SELECT * FROM dim_time LIMIT 1").unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("duplicate key"), "{err:?}");
    // What the database records as sent is the committed version's parts.
    let star = lake.manifest().star().unwrap().clone();
    for table in ["fact_plays", "dim_time"] {
        let mut want: Vec<(String, String)> =
            star.tables[table].iter().map(|p| (p.partition.clone().unwrap(), p.sha256.clone())).collect();
        want.sort();
        let got: Vec<(String, String)> = client
            .query(
                "SELECT part, sha256 FROM tunelake_sync_parts WHERE table_name = $1 AND lake_version = $2 ORDER BY 1",
                &[&table, &(star.version as i64)],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(got, want, "{table}");
    }

    // A database that holds rows takes the changes at the end, as `sync` does.
    let more = lake.dir.path().join("more");
    shifted_logs(&more, &[("2018-11-21-events.json", 62), ("2018-11-03-events.json", 93)]);
    lake.ingest(&more);
    let second = run_with_loader(&lake, &url);
    assert_eq!(second.parts_sent_during_build, 0, "{second:?}");
    assert!(second.tables_indexed_during_build.is_empty(), "{second:?}");
    assert!(second.parts_sent > 0 && second.parts_unchanged > 0, "{second:?}");
    assert_pg_equals_lake(&lake, &mut client);
    assert_eq!(parts_of(&lake, "fact_plays").len(), 4);
}

#[test]
fn a_loader_into_an_empty_database_builds_indexes_at_the_end_when_months_were_kept() {
    let url = pg::server().create_database("loader_kept");
    let lake = TestLake::new();
    let input = lake.dir.path().join("two-months");
    shifted_logs(&input, &[("2018-11-01-events.json", 0), ("2018-11-02-events.json", 31)]);
    copy_dir(&sample().join("song_data"), &input.join("song_data"));
    lake.ingest(&input);
    lake.build();
    let more = lake.dir.path().join("third-month");
    shifted_logs(&more, &[("2018-11-03-events.json", 62)]);
    lake.ingest(&more);
    let m = run_with_loader(&lake, &url);
    // Only the new month went early; the kept months came at the end, so the
    // indexes could not be built before then.
    assert_eq!(m.parts_sent_during_build, 2, "a month of plays and of times: {m:?}");
    assert!(m.tables_indexed_during_build.is_empty(), "{m:?}");
    let mut client = connect(&url);
    assert_pg_equals_lake(&lake, &mut client);
    assert_eq!(parts_of(&lake, "fact_plays").len(), 3);
    assert_eq!(indexes_of(&mut client, "fact_plays"), vec!["fact_plays_pkey"]);
    assert_eq!(indexes_of(&mut client, "dim_time"), vec!["dim_time_pkey"]);
}

#[test]
fn a_loader_dropped_before_the_build_is_done_leaves_the_database_as_it_was() {
    let url = pg::server().create_database("loader_dropped");
    let lake = TestLake::new();
    lake.ingest(&sample());
    let loader = tunelake::sink::Loader::start(&lake.layout, &url, &tunelake::sink::SyncOptions::default());
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (hook, counter) = (loader.hook(), sent.clone());
    let counting = tunelake::lake::events::PartHook(std::sync::Arc::new(move |event| {
        if matches!(event, tunelake::lake::events::StarEvent::Part { .. }) {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        (hook.0)(event)
    }));
    lake.build_with(&tunelake::model::build::BuildOptions { on_star_part: Some(counting), ..Default::default() });
    assert!(sent.load(std::sync::atomic::Ordering::Relaxed) >= 2, "the build handed over its month files");
    // As when the build fails: no `built`, the loader goes, even while a copy of its hook lives on.
    let outliving = loader.hook();
    drop(loader);
    drop(outliving);
    let mut client = connect(&url);
    let tables = texts(&mut client, "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'", &[]);
    assert!(tables.is_empty(), "nothing of the abandoned sync stays, not even its tables: {tables:?}");
    // The same lake syncs in full afterwards.
    lake.sync(&url);
    assert_pg_equals_lake(&lake, &mut client);
}

#[test]
fn a_run_that_cannot_reach_the_database_still_builds_and_says_so() {
    let lake = TestLake::new();
    let bad = format!("postgresql://postgres:Sup3rSecretPw@127.0.0.1:1/{}", "nowhere");
    let out = lake.cli(&["run", "--sparkify", sample().to_str().unwrap(), "--database-url", &bad]);
    let (so, se) = (crate::common::stdout(&out), crate::common::stderr(&out));
    assert_eq!(out.status.code(), Some(5), "{so}\n{se}");
    assert!(se.contains("cannot connect to PostgreSQL at postgres@127.0.0.1:1/nowhere"), "{se}");
    assert!(!so.contains("Sup3rSecretPw") && !se.contains("Sup3rSecretPw"));
    assert!(so.contains("build: star version"), "the build is done and committed before the error: {so}");
    assert!(lake.manifest().star().is_some());
}

#[test]
fn a_damaged_star_file_stops_the_sync_naming_it_and_nothing_is_committed() {
    let url = pg::server().create_database("damaged_part");
    let lake = TestLake::new();
    let input = lake.dir.path().join("two-months");
    shifted_logs(&input, &[("2018-11-01-events.json", 0), ("2018-11-02-events.json", 31)]);
    lake.ingest(&input);
    lake.build();
    // The second month of plays loses its footer: the first month is sent before it is read.
    let star = lake.manifest().star().unwrap().clone();
    let damaged = lake.layout.abs(&star.tables["fact_plays"][1].path);
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() - 20]).unwrap();
    let err = tunelake::sink::sync(&lake.layout, &lake.manifest(), &url, &Default::default()).unwrap_err();
    let text = format!("{err}");
    assert!(text.contains(&damaged.display().to_string()), "names the file: {text}");
    let mut client = connect(&url);
    let tables = texts(&mut client, "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'", &[]);
    assert!(tables.is_empty(), "the failed sync left nothing: {tables:?}");
}

/// Issue 24: a text value holding U+0000 (valid JSON `"\u0000"`) was staged,
/// then every sync failed ("invalid byte sequence for encoding UTF8: 0x00"),
/// `--full` and `reprocess` included: PostgreSQL was stuck for good.
#[test]
fn issue_24_a_nul_in_a_text_value_never_blocks_the_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&sample(), &data);
    let log = data.join("log_data/2018/11/2018-11-01-events.json");
    let text = std::fs::read_to_string(&log).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let mut event: serde_json::Value = serde_json::from_str(first).unwrap();
    event["firstName"] = "Ja\u{0}ne".into();
    event["location"] = "Nowhere\u{0}, NW".into();
    std::fs::write(&log, format!("{event}\n{rest}")).unwrap();
    assert!(std::fs::read_to_string(&log).unwrap().contains("\\u0000"));
    let user = event["userId"].as_str().unwrap().to_string();

    let url = pg::server().create_database("nul");
    let lake = TestLake::new();
    lake.ingest(&data);
    // Removed at staging, and counted with its file and line.
    let manifest = lake.manifest();
    let changed: Vec<_> = manifest.state().rejects.iter().filter(|r| r.kept).collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].file.ends_with("2018-11-01-events.json") && changed[0].line == 1, "{changed:?}");
    assert_eq!(changed[0].reason, "U+0000 removed from firstName, location (the record was kept)");
    let events = manifest.state().accounting.iter().find(|a| a.stream == "events").unwrap().clone();
    assert_eq!((events.nul_removed, events.rejected), (1, 0), "{events:?}");
    let mut status = vec![];
    tunelake::status::render(&mut status, &manifest, "lake", 5).unwrap();
    let status = String::from_utf8(status).unwrap();
    assert!(status.contains("(1 kept with U+0000 removed)"), "{status}");
    assert!(status.contains("changed log_data/2018/11/2018-11-01-events.json:1: U+0000 removed"), "{status}");
    lake.build();
    let names = lake.query(&format!("SELECT first_name, location FROM dim_users WHERE user_id = '{user}'"));
    assert_eq!(crate::common::render_rows(&names[0]), ["Jane|Nowhere, NW"]);
    let m = lake.sync(&url);
    assert!(m.rows_sent > 700, "{m:?}");
    let mut client = connect(&url);
    let plays: i64 = client.query_one("SELECT count(*) FROM fact_plays", &[]).unwrap().get(0);
    assert_eq!(plays as u64, lake.star_rows("fact_plays").len() as u64);
    let user_row = client.query_one("SELECT first_name, location FROM dim_users WHERE user_id = $1", &[&user]).unwrap();
    assert_eq!((user_row.get::<_, String>(0), user_row.get::<_, String>(1)), ("Jane".into(), "Nowhere, NW".into()));
    // A full resend works the same.
    let full = lake.sync_full(&url);
    assert_eq!(full.rows_deleted, 0, "{full:?}");
}

/// Issue 22: a release that adds columns to a contract. The database a
/// previous release synced lacks `fact_plays.platform` and `dim_tracks.album_id`
/// and records the old contracts; the next sync adds them inside its
/// transaction and sends the tables again, so they hold the lake's values.
#[test]
fn issue_22_a_contract_that_gains_columns_migrates_the_database_and_backfills_them() {
    let url = pg::server().create_database("evolve");
    let lake = sample_and_export_synced(&url);
    let mut client = connect(&url);
    let platforms = count(&mut client, "SELECT count(platform) FROM fact_plays");
    let albums = count(&mut client, "SELECT count(album_id) FROM dim_tracks");
    assert!(platforms > 0 && albums > 0, "the fixture has values there: {platforms} {albums}");
    client
        .batch_execute(
            "ALTER TABLE fact_plays DROP COLUMN platform; ALTER TABLE dim_tracks DROP COLUMN album_id; \
             UPDATE tunelake_migrations SET sha256 = 'an older contract' \
             WHERE name IN ('sql/schema/fact_plays.sql', 'sql/schema/dim_tracks.sql')",
        )
        .unwrap();

    let metrics = lake.sync(&url);
    assert_eq!(
        metrics.migrations_applied,
        [
            "ALTER TABLE \"fact_plays\" ADD COLUMN \"platform\" character varying",
            "ALTER TABLE \"dim_tracks\" ADD COLUMN \"album_id\" character varying",
        ]
    );
    assert_eq!(count(&mut client, "SELECT count(platform) FROM fact_plays"), platforms);
    assert_eq!(count(&mut client, "SELECT count(album_id) FROM dim_tracks"), albums);
    assert_pg_equals_lake(&lake, &mut client);
    assert_eq!(count(&mut client, "SELECT count(*) FROM songplays"), 703, "the course views still work");
    assert_eq!(lake.sync(&url).migrations_applied, Vec::<String>::new(), "recorded: nothing to do next time");

    // A column the contract does not have, or one narrowed by hand, stops the sync by name.
    client
        .batch_execute(
            "ALTER TABLE dim_albums ADD COLUMN my_notes TEXT; \
             UPDATE tunelake_migrations SET sha256 = 'an older contract' WHERE name = 'sql/schema/dim_albums.sql'",
        )
        .unwrap();
    let err = tunelake::sink::sync(&lake.layout, &lake.manifest(), &url, &Default::default()).unwrap_err().to_string();
    assert!(
        err.contains("dim_albums") && err.contains("`my_notes`") && err.contains("DROP COLUMN \"my_notes\""),
        "{err}"
    );
    client.batch_execute("ALTER TABLE dim_albums DROP COLUMN my_notes").unwrap();

    // An applied migration whose text changed since is refused by name.
    let which = "WHERE name = 'sql/postgres/001_indexes.sql'";
    let applied: String =
        client.query_one(&format!("SELECT sha256 FROM tunelake_migrations {which}"), &[]).unwrap().get(0);
    client.batch_execute(&format!("UPDATE tunelake_migrations SET sha256 = 'edited' {which}")).unwrap();
    let err = tunelake::sink::sync(&lake.layout, &lake.manifest(), &url, &Default::default()).unwrap_err().to_string();
    assert!(err.starts_with("sql/postgres/001_indexes.sql changed after it was applied"), "{err}");
    assert!(err.contains("recorded sha256 edited") && err.contains(&format!("now {applied}")), "{err}");
    client.batch_execute(&format!("UPDATE tunelake_migrations SET sha256 = '{applied}' {which}")).unwrap();

    // Issue 22, item 4: a type changed by hand is named before anything is sent.
    client.batch_execute("ALTER TABLE fact_plays ALTER COLUMN ms_played TYPE integer").unwrap();
    let opts = tunelake::sink::SyncOptions { full: true, ..Default::default() };
    let err = tunelake::sink::sync(&lake.layout, &lake.manifest(), &url, &opts).unwrap_err().to_string();
    assert_eq!(
        err,
        "fact_plays: column `ms_played` is integer in the database, where tunelake sends bigint; nothing was sent"
    );
    assert_pg_equals_lake(&lake, &mut client);
}

/// A database whose `fact_plays` is keyed by play_id alone, as tunelake
/// left it before migration 004, gets the key in time order, with its rows,
/// and the sync goes on upserting and deleting by the new key.
#[test]
fn a_database_keyed_by_play_id_alone_gets_the_key_in_time_order_with_its_rows() {
    let (lake, url, mut client) = sample_synced("sync_time_key");
    assert_eq!(primary_key_of(&mut client, "fact_plays"), ["played_at", "play_id"], "a new database");
    client
        .batch_execute(
            "ALTER TABLE fact_plays DROP CONSTRAINT fact_plays_pkey; \
             ALTER TABLE fact_plays ADD CONSTRAINT fact_plays_pkey PRIMARY KEY (play_id); \
             CREATE INDEX fact_plays_played_at_idx ON fact_plays (played_at); \
             DELETE FROM tunelake_migrations WHERE name = 'sql/postgres/004_fact_plays_key_in_time_order.sql';",
        )
        .unwrap();
    let plays = count(&mut client, "SELECT count(*) FROM fact_plays");

    // A day moved a month on: its plays are gone from one partition and new in another.
    let later = lake.dir.path().join("later");
    shifted_logs(&later, &[("2018-11-01-events.json", 31)]);
    lake.ingest(&later);
    lake.build();
    let again = lake.sync(&url);
    assert_eq!(again.migrations_applied, ["sql/postgres/004_fact_plays_key_in_time_order.sql"]);
    assert_eq!(primary_key_of(&mut client, "fact_plays"), ["played_at", "play_id"]);
    assert_eq!(indexes_of(&mut client, "fact_plays"), vec!["fact_plays_pkey"]);
    assert!(count(&mut client, "SELECT count(*) FROM fact_plays") > plays, "the shifted day's plays were added");
    assert_pg_equals_lake(&lake, &mut client);
}
