//! Text repair and the normalized keys that match names across sources.
//!
//! The Sparkify logs hold UTF-8 that was encoded twice ("ErdmÃ\u{83}Â¶bel"):
//! [`repair_mojibake`] undoes it by reading the characters back as Latin-1
//! bytes and decoding them as UTF-8, as many times as that keeps succeeding.
//! [`key`] is what ids are derived from and songs are matched on: repaired,
//! trimmed, case-folded, Unicode NFC, with the logs' `"_ "` for `", "` undone.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// `bytes` without a leading UTF-8 byte order mark, which editors on Windows
/// put before JSON and which JSON does not allow: the raw copy keeps it,
/// the parsers skip it.
pub fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Whether JSON text may hold U+0000 in a string: its only spelling is the
/// escape `\u0000`, so text without it needs no closer look.
pub fn may_hold_nul(json: &[u8]) -> bool {
    memchr::memmem::find(json, b"\\u0000").is_some()
}

/// Removes U+0000 from `s`, which PostgreSQL's text cannot hold (a sync
/// would fail on it for good); whether there was one.
pub fn remove_nul(s: &mut Cow<'_, str>) -> bool {
    if !s.contains('\0') {
        return false;
    }
    *s = Cow::Owned(s.replace('\0', ""));
    true
}

/// Removes U+0000 from every string of `v`; the paths of the values it
/// changed (`items[3].track.name`), to name them in the accounting.
pub fn remove_nul_json(v: &mut serde_json::Value) -> Vec<String> {
    fn walk(v: &mut serde_json::Value, path: &mut String, found: &mut Vec<String>) {
        let len = path.len();
        match v {
            serde_json::Value::String(s) if s.contains('\0') => {
                s.retain(|c| c != '\0');
                found.push(if path.is_empty() { "(the value)".into() } else { path.clone() });
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push_str(&format!("[{i}]"));
                    walk(item, path, found);
                    path.truncate(len);
                }
            }
            serde_json::Value::Object(fields) => {
                for (k, item) in fields.iter_mut() {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(item, path, found);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut found = vec![];
    walk(v, &mut String::new(), &mut found);
    found
}

/// `json` parsed as a `T` with U+0000 removed from its strings first, and
/// the paths of the values that held one.
pub fn from_json_without_nul<T: serde::de::DeserializeOwned>(json: &[u8]) -> serde_json::Result<(T, Vec<String>)> {
    if !may_hold_nul(json) {
        return Ok((serde_json::from_slice(json)?, vec![]));
    }
    let mut v: serde_json::Value = serde_json::from_slice(json)?;
    let paths = remove_nul_json(&mut v);
    Ok((serde_json::from_value(v)?, paths))
}

/// Undoes double (or triple) UTF-8 encoding. Text that is not mojibake comes
/// back borrowed and unchanged.
pub fn repair_mojibake(s: &str) -> Cow<'_, str> {
    let mut current: Cow<'_, str> = Cow::Borrowed(s);
    for _ in 0..3 {
        match undo_once(&current) {
            Some(fixed) => current = Cow::Owned(fixed),
            None => break,
        }
    }
    current
}

/// One round: every char must fit in a byte, at least one must be non-ASCII,
/// and the bytes must be valid UTF-8 (which Latin-1 prose almost never is).
fn undo_once(s: &str) -> Option<String> {
    if s.is_ascii() {
        return None;
    }
    let mut bytes = Vec::with_capacity(s.len());
    for c in s.chars() {
        let c = c as u32;
        if c > 0xFF {
            return None;
        }
        bytes.push(c as u8);
    }
    String::from_utf8(bytes).ok()
}

/// The matching key of a name: repaired, trimmed, lower-cased, NFC, and the
/// Sparkify logs' comma substitute (`"_ "`) read as a comma.
pub fn key(s: &str) -> String {
    let mut out = String::new();
    key_into(s, &mut out);
    out
}

/// [`key`] written into `out`, which is cleared first. An ASCII name (nearly
/// every one) is folded in one pass without allocating: parsing a log calls
/// this twice per play.
pub fn key_into(s: &str, out: &mut String) {
    out.clear();
    let repaired = repair_mojibake(s);
    let trimmed = repaired.trim();
    if !trimmed.is_ascii() {
        let folded = trimmed.replace("_ ", ", ").to_lowercase();
        out.extend(folded.nfc());
        return;
    }
    let mut rest = trimmed;
    while let Some(at) = comma_substitute(rest) {
        out.push_str(&rest[..at]);
        out.push_str(", ");
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out.make_ascii_lowercase();
}

/// Where the first `"_ "` in `s` is. (`str::find` sets up a general
/// substring search for each call: 15 % of the cost of a key.)
fn comma_substitute(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'_', &b[from..]) {
        let at = from + p;
        if b.get(at + 1) == Some(&b' ') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_removed_wherever_it_is_and_its_paths_named() {
        let json = br#"{"a": "x\u0000y", "b": [{"c": "\u0000"}, "ok"], "d": "a literal \\u0000"}"#;
        assert!(may_hold_nul(json) && !may_hold_nul(br#"{"a": "x"}"#));
        let (v, paths): (serde_json::Value, _) = from_json_without_nul(json).unwrap();
        assert_eq!(paths, ["a", "b[0].c"]);
        assert_eq!(v, serde_json::json!({"a": "xy", "b": [{"c": ""}, "ok"], "d": "a literal \\u0000"}));
        let mut s: Cow<'_, str> = Cow::Borrowed("Ja\0ne");
        assert!(remove_nul(&mut s) && s == "Jane" && !remove_nul(&mut s));
    }

    #[test]
    fn repairs_the_logs_double_encoding() {
        assert_eq!(repair_mojibake("Erdm\u{c3}\u{83}\u{c2}\u{b6}bel"), "Erdmöbel");
        // Encoded once only.
        assert_eq!(repair_mojibake("Erdm\u{c3}\u{b6}bel"), "Erdmöbel");
    }

    #[test]
    fn leaves_correct_text_alone() {
        for s in ["Erdmöbel", "¿Dónde va Chichi?", "Montserrat Caballé", "plain", "日本語", ""] {
            assert_eq!(repair_mojibake(s), s);
            assert!(matches!(repair_mojibake(s), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn keys_fold_case_space_nfc_and_commas() {
        assert_eq!(key("  Erdm\u{c3}\u{83}\u{c2}\u{b6}bel "), "erdmöbel");
        assert_eq!(key("Erdmo\u{308}bel"), "erdmöbel"); // decomposed ö
        assert_eq!(key("Te lo agradezco_ pero no"), "te lo agradezco, pero no");
        assert_eq!(key("Te lo agradezco, pero no"), "te lo agradezco, pero no");
    }

    #[test]
    fn the_ascii_fold_is_the_general_one() {
        let general = |s: &str| -> String { s.trim().replace("_ ", ", ").to_lowercase().nfc().collect() };
        let mut out = String::from("left over");
        for s in ["", " ", "ABBA", " The_ Band_ ", "__ A_ _ B", "x_", "_ _ ", "Sigur Rós_ Jónsi", "İ_ K"] {
            key_into(s, &mut out);
            assert_eq!(out, general(s), "{s:?}");
        }
    }
}
