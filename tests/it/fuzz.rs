//! Every parser over hostile input: the corpus in tests/corpus (numbers for
//! text, U+0000, nesting, huge numbers, bad UTF-8, truncation) and generated
//! inputs (proptest). None may panic, and each input is staged or rejected
//! with a reason: the accounting adds up. No staged text holds U+0000.

use std::path::Path;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use proptest::prelude::*;
use tunelake::source::{sparkify, spotify_api, spotify_export};

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name)).unwrap()
}

const EXPORT_KINDS: [&str; 4] = [
    spotify_export::KIND_EXTENDED,
    spotify_export::KIND_ACCOUNT_MUSIC,
    spotify_export::KIND_ACCOUNT_PODCAST,
    spotify_export::KIND_ACCOUNT_AUDIOBOOK,
];

/// Every record of a log is a play, filtered or rejected (with a reason), and the staged rows are the kept ones.
fn check_log(bytes: &[u8]) -> sparkify::ParsedLog {
    let p = sparkify::parse_log(bytes, "sha", "fuzz.json");
    let a = &p.accounting;
    assert_eq!(a.read, a.plays + a.filtered_total() + a.rejected, "{a:?}");
    assert_eq!(a.kept, a.plays + a.filtered_total(), "{a:?}");
    assert_rejects_counted(&p.rejects, a);
    assert!(p.rejects.iter().all(|r| !r.reason.is_empty() && r.line >= 1));
    let staged: usize = p.by_date.values().map(|b| b.num_rows()).sum();
    assert_eq!(staged as u64, a.kept);
    p.by_date.values().for_each(assert_no_nul);
    p
}

/// Each reject and each record changed is listed once, with its reason.
fn assert_rejects_counted(rejects: &[tunelake::lake::manifest::Reject], a: &tunelake::lake::manifest::Accounting) {
    let changed = rejects.iter().filter(|r| r.kept).count() as u64;
    assert_eq!((rejects.len() as u64 - changed, changed), (a.rejected, a.nul_removed), "{rejects:?}");
    assert!(rejects.iter().filter(|r| r.kept).all(|r| r.reason.starts_with("U+0000 removed from ")), "{rejects:?}");
}

/// No text column of `batch` holds U+0000, which PostgreSQL cannot store.
fn assert_no_nul(batch: &RecordBatch) {
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type() == &DataType::Utf8 {
            let values = column.as_string::<i32>().values();
            assert!(!values.contains(&0), "`{}` holds U+0000", field.name());
        }
    }
}

fn check_songs(bytes: &[u8]) -> sparkify::ParsedSongs {
    let p = sparkify::parse_songs(bytes, "sha", "fuzz.json");
    let a = &p.accounting;
    assert_eq!(a.read, a.kept + a.rejected, "{a:?}");
    assert_rejects_counted(&p.rejects, a);
    assert_eq!(p.rows.len() as u64, a.kept);
    let batch = sparkify::songs_batch(&p.rows);
    assert_eq!(batch.num_rows() as u64, a.kept);
    assert_no_nul(&batch);
    p
}

fn check_export(kind: &str, bytes: &[u8]) -> spotify_export::ParsedStreams {
    let p = spotify_export::parse(kind, bytes, "me", "sha", "fuzz.json");
    let a = &p.accounting;
    assert_eq!(a.read, a.kept + a.rejected, "{kind}: {a:?}");
    assert_rejects_counted(&p.rejects, a);
    assert_eq!(p.batch.num_rows() as u64, a.kept, "{kind}");
    assert_no_nul(&p.batch);
    p
}

/// A recently-played page is parsed, or refused with a reason; each of its
/// items is staged or rejected; nothing staged holds U+0000.
fn check_page(page: &serde_json::Value) {
    let bytes = serde_json::to_vec(page).unwrap();
    match spotify_api::parse_page(&bytes, "me", "sha") {
        Ok(p) => {
            let items = page["items"].as_array().map_or(0, Vec::len);
            assert_eq!(p.played_ms.len() + p.rejected.len(), items, "{page}");
            assert!(p.plays.num_rows() >= p.played_ms.len(), "one row per artist, at least one per play");
            assert!(p.rejected.iter().all(|(n, why)| *n >= 1 && *n as usize <= items && !why.is_empty()));
            assert_no_nul(&p.plays);
        }
        Err(why) => assert!(why.starts_with("not a recently-played page: "), "{why}"),
    }
    if let Ok((_, batch, _)) = spotify_api::parse_me(&bytes, 1, "sha") {
        assert_no_nul(&batch);
    }
    for kind in ["tracks", "artists", "albums"] {
        if let Ok((batch, _)) = spotify_api::parse_entity(kind, &bytes, "sha") {
            assert_no_nul(&batch);
        }
    }
}

/// `value` with its `n`-th node (depth first, the root is 0, modulo the
/// count) replaced by `by`: a mutation anywhere in a nested page.
fn replace_node(value: &serde_json::Value, n: usize, by: serde_json::Value) -> serde_json::Value {
    fn count(v: &serde_json::Value) -> usize {
        1 + match v {
            serde_json::Value::Array(a) => a.iter().map(count).sum(),
            serde_json::Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut serde_json::Value, n: &mut usize, by: &mut Option<serde_json::Value>) {
        if *n == 0 {
            *v = by.take().expect("replaced once");
            return;
        }
        *n -= 1;
        let children: Vec<&mut serde_json::Value> = match v {
            serde_json::Value::Array(a) => a.iter_mut().collect(),
            serde_json::Value::Object(o) => o.values_mut().collect(),
            _ => vec![],
        };
        for child in children {
            if by.is_none() {
                return;
            }
            walk(child, n, by);
        }
    }
    let mut out = value.clone();
    let mut n = n % count(value);
    walk(&mut out, &mut n, &mut Some(by));
    out
}

const PAGE: &str = r#"{"items":[
    {"played_at":"2024-01-01T10:00:00.000Z","context":{"type":"playlist","uri":"spotify:playlist:p"},
     "track":{"id":"t1","name":"T","duration_ms":1000,"explicit":false,"artists":[{"id":"a1","name":"A"},{"id":"a2","name":"B"}],
              "album":{"id":"b1","name":"B","release_date":"2020"}}},
    {"played_at":"2024-01-01T09:55:00Z","context":null,
     "track":{"id":"t2","name":"U","duration_ms":2000,"artists":[{"id":"a1","name":"A"}],"album":{"id":"b2","name":"C"}}}],
  "cursors":{"after":"1704103200000","before":"1704102900000"},"next":null,"limit":50}"#;

#[test]
fn a_nul_anywhere_in_a_page_is_removed_and_named_by_item() {
    let mut page: serde_json::Value = serde_json::from_str(PAGE).unwrap();
    page["items"][1]["track"]["name"] = "U\u{0}2".into();
    page["items"][1]["track"]["artists"][0]["name"] = "\u{0}A".into();
    let p = spotify_api::parse_page(&serde_json::to_vec(&page).unwrap(), "me", "sha").unwrap();
    assert_eq!(
        p.nul_removed,
        [(2, vec!["items[1].track.artists[0].name".to_string(), "items[1].track.name".to_string()])]
    );
    let names = p.plays.column_by_name("track_name").unwrap().as_string::<i32>().iter().flatten().collect::<Vec<_>>();
    assert_eq!(names, ["T", "T", "U2"]);
}

#[test]
fn the_hostile_corpus_is_staged_or_rejected_with_reasons() {
    let log = check_log(&corpus("sparkify_log.json"));
    assert!(log.accounting.plays >= 3, "{:?}", log.accounting);
    assert!(log.accounting.rejected >= 8, "{:?}", log.rejects);
    assert!(log.accounting.nul_removed >= 1, "{:?}", log.rejects);
    let bad_utf8 = check_log(&corpus("sparkify_log_invalid_utf8.json"));
    assert_eq!((bad_utf8.accounting.plays, bad_utf8.accounting.rejected), (1, 2), "{:?}", bad_utf8.rejects);

    let songs = check_songs(&corpus("sparkify_songs.json"));
    assert!(songs.accounting.as_text >= 2 && songs.accounting.kept >= 2, "{:?}", songs.accounting);
    assert_eq!(songs.accounting.nul_removed, 1, "{:?}", songs.rejects);
    assert!(
        songs
            .rejects
            .iter()
            .all(|r| r.kept || r.reason.starts_with("not a Sparkify song") || r.reason.contains("song_id"))
    );

    let extended = check_export(spotify_export::KIND_EXTENDED, &corpus("export_extended.json"));
    assert!(extended.accounting.kept >= 1 && extended.accounting.rejected >= 4, "{:?}", extended.rejects);
    assert_eq!(extended.accounting.nul_removed, 1, "{:?}", extended.rejects);
    let account = check_export(spotify_export::KIND_ACCOUNT_MUSIC, &corpus("export_account.json"));
    assert!(account.accounting.kept >= 1 && account.accounting.rejected >= 2, "{:?}", account.rejects);
    let broken = check_export(spotify_export::KIND_ACCOUNT_MUSIC, &corpus("export_broken.json"));
    assert!(broken.accounting.rejected >= 1, "a truncated file is a reject: {:?}", broken.accounting);

    let page = spotify_api::parse_page(&corpus("api_page.json"), "me", "sha");
    if let Ok(p) = page {
        assert!(!p.rejected.is_empty(), "the bad items are rejected with reasons");
    }
    for name in ["sparkify_log.json", "export_extended.json", "api_page.json"] {
        let bytes = corpus(name);
        let _ = spotify_api::parse_me(&bytes, 1, "sha");
        for kind in ["tracks", "artists", "albums"] {
            let _ = spotify_api::parse_entity(kind, &bytes, "sha");
        }
    }
}

/// JSON values of every kind, nested a little.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("a\u{0}b")),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid record of a source with one field replaced by an arbitrary value.
fn mutated(base: &str, field_index: usize, value: serde_json::Value) -> serde_json::Value {
    let mut record: serde_json::Map<String, serde_json::Value> = serde_json::from_str(base).unwrap();
    let key = record.keys().nth(field_index % record.len()).unwrap().clone();
    record.insert(key, value);
    serde_json::Value::Object(record)
}

const EVENT: &str = r#"{"artist":"A","auth":"Logged In","firstName":"F","gender":"F","itemInSession":0,"lastName":"L","length":200.5,"level":"free","location":"X","method":"PUT","page":"NextSong","registration":1540919166796.0,"sessionId":7,"song":"S","status":200,"ts":1541105830796,"userAgent":"UA","userId":"15"}"#;
const SONG: &str = r#"{"num_songs":1,"artist_id":"AR1","artist_latitude":null,"artist_longitude":null,"artist_location":"","artist_name":"A","song_id":"SO1","title":"T","duration":1.5,"year":0}"#;
const STREAM: &str = r#"{"ts":"2024-01-01T10:00:00Z","username":"me","platform":"ios","ms_played":200000,"conn_country":"DE","master_metadata_track_name":"T","master_metadata_album_artist_name":"A","master_metadata_album_album_name":"B","spotify_track_uri":"spotify:track:1","reason_start":"trackdone","reason_end":"trackdone","shuffle":false,"skipped":null,"offline":false,"incognito_mode":false}"#;
const ACCOUNT: &str = r#"{"endTime":"2024-01-01 10:00","artistName":"A","trackName":"T","msPlayed":200000}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_parser(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_log(&bytes);
        check_songs(&bytes);
        for kind in EXPORT_KINDS {
            check_export(kind, &bytes);
        }
        let _ = spotify_api::parse_page(&bytes, "me", "sha");
        let _ = spotify_api::parse_me(&bytes, 1, "sha");
    }

    #[test]
    fn pages_mutated_anywhere_are_parsed_or_refused(node in 0usize..64, value in json_value()) {
        let page: serde_json::Value = serde_json::from_str(PAGE).unwrap();
        check_page(&replace_node(&page, node, value));
    }

    #[test]
    fn records_with_a_field_of_any_type_are_staged_or_rejected(
        field in 0usize..32,
        value in json_value(),
        cut in prop::option::of(0usize..400),
    ) {
        let mut log = serde_json::to_string(&mutated(EVENT, field, value.clone())).unwrap();
        log.push('\n');
        log.push_str(EVENT);
        if let Some(cut) = cut {
            log.truncate(log.floor_char_boundary(cut));
        }
        check_log(log.as_bytes());
        check_songs(serde_json::to_string(&mutated(SONG, field, value.clone())).unwrap().as_bytes());
        let streams = serde_json::to_string(&vec![mutated(STREAM, field, value.clone()), serde_json::from_str(STREAM).unwrap()]).unwrap();
        check_export(spotify_export::KIND_EXTENDED, streams.as_bytes());
        let account = serde_json::to_string(&vec![mutated(ACCOUNT, field, value)]).unwrap();
        for kind in &EXPORT_KINDS[1..] {
            check_export(kind, account.as_bytes());
        }
    }
}
