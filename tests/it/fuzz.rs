//! Every parser over hostile input: the corpus in tests/corpus (numbers for
//! text, U+0000, nesting, huge numbers, bad UTF-8, truncation) and generated
//! inputs (proptest). None may panic, and each input is staged or rejected
//! with a reason: the accounting adds up.

use std::path::Path;

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
    assert_eq!(p.rejects.len() as u64, a.rejected);
    assert!(p.rejects.iter().all(|r| !r.reason.is_empty() && r.line >= 1));
    let staged: usize = p.by_date.values().map(|b| b.num_rows()).sum();
    assert_eq!(staged as u64, a.kept);
    p
}

fn check_songs(bytes: &[u8]) -> sparkify::ParsedSongs {
    let p = sparkify::parse_songs(bytes, "sha", "fuzz.json");
    let a = &p.accounting;
    assert_eq!(a.read, a.kept + a.rejected, "{a:?}");
    assert_eq!(p.rows.len() as u64, a.kept);
    assert_eq!(sparkify::songs_batch(&p.rows).num_rows() as u64, a.kept);
    p
}

fn check_export(kind: &str, bytes: &[u8]) -> spotify_export::ParsedStreams {
    let p = spotify_export::parse(kind, bytes, "me", "sha", "fuzz.json");
    let a = &p.accounting;
    assert_eq!(a.read, a.kept + a.rejected, "{kind}: {a:?}");
    assert_eq!(p.batch.num_rows() as u64, a.kept, "{kind}");
    p
}

#[test]
fn the_hostile_corpus_is_staged_or_rejected_with_reasons() {
    let log = check_log(&corpus("sparkify_log.json"));
    assert!(log.accounting.plays >= 3, "{:?}", log.accounting);
    assert!(log.accounting.rejected >= 8, "{:?}", log.rejects);
    let bad_utf8 = check_log(&corpus("sparkify_log_invalid_utf8.json"));
    assert_eq!((bad_utf8.accounting.plays, bad_utf8.accounting.rejected), (1, 2), "{:?}", bad_utf8.rejects);

    let songs = check_songs(&corpus("sparkify_songs.json"));
    assert!(songs.accounting.as_text >= 2 && songs.accounting.kept >= 2, "{:?}", songs.accounting);
    assert!(songs.rejects.iter().all(|r| r.reason.starts_with("not a Sparkify song") || r.reason.contains("song_id")));

    let extended = check_export(spotify_export::KIND_EXTENDED, &corpus("export_extended.json"));
    assert!(extended.accounting.kept >= 1 && extended.accounting.rejected >= 4, "{:?}", extended.rejects);
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
