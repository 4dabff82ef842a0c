//! A fast path for event lines: the one shape the Sparkify logs have, a
//! flat JSON object of the event's own keys with string, number and null
//! values, read straight into an [`Event`].
//!
//! It gives the same `Event` serde_json gives, or `None`: an unknown or
//! repeated key, a nested value, a number it cannot read exactly as
//! serde_json does, anything that is not valid JSON. The caller then hands
//! the line to serde_json, which gives the event or the message the reject
//! carries, so every line that is not of the common shape behaves as it
//! always did. serde_json's deserializer was a quarter of an ingest's CPU;
//! this scanner reads a common line in about half its instructions
//! (bench/README, "Design measurements").

use std::borrow::Cow;

use super::Event;

/// The event's keys, as the logs order them. A key's index is its bit in
/// the set of keys seen.
const KEYS: [&str; 18] = [
    "artist",
    "auth",
    "firstName",
    "gender",
    "itemInSession",
    "lastName",
    "length",
    "level",
    "location",
    "method",
    "page",
    "registration",
    "sessionId",
    "song",
    "status",
    "ts",
    "userAgent",
    "userId",
];

/// `line` as an [`Event`], or `None` for serde_json to decide (see the module).
pub(super) fn event(line: &str) -> Option<Event<'_>> {
    let mut s = Scanner { text: line, at: 0 };
    let mut e = blank_event();
    let mut seen = 0u32;
    let mut guess = 0;
    s.skip_ws();
    s.eat(b'{')?;
    s.skip_ws();
    if !s.eat_if(b'}') {
        loop {
            // The logs write the keys in one order: the one expected next
            // is compared in place, and any other is looked up.
            let bit = match KEYS.get(guess) {
                Some(k) if s.eat_key(k) => guess,
                _ => {
                    let key = s.key()?;
                    KEYS.iter().position(|&k| k == key)?
                }
            };
            s.skip_ws();
            s.eat(b':')?;
            s.skip_ws();
            guess = bit + 1;
            match bit {
                0 => e.artist = s.opt_string()?,
                1 => e.auth = s.opt_string()?,
                2 => e.first_name = s.opt_string()?,
                3 => e.gender = s.opt_string()?,
                4 => e.item_in_session = s.int()?,
                5 => e.last_name = s.opt_string()?,
                6 => e.length = s.opt_float()?,
                7 => e.level = s.opt_string()?,
                8 => e.location = s.opt_string()?,
                9 => e.method = s.opt_string()?,
                10 => e.page = s.string()?,
                11 => e.registration = s.opt_float()?,
                12 => e.session_id = s.int()?,
                13 => e.song = s.opt_string()?,
                14 => e.status = s.opt_int()?,
                15 => e.ts = s.int()?,
                16 => e.user_agent = s.opt_string()?,
                17 => e.user_id = s.string_or_int()?,
                _ => return None,
            }
            if seen & (1 << bit) != 0 {
                return None; // serde_json: "duplicate field"
            }
            seen |= 1 << bit;
            s.skip_ws();
            match s.next()? {
                b',' => s.skip_ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.skip_ws();
    // The fields without a default.
    const REQUIRED: u32 = 1 << 4 | 1 << 10 | 1 << 12 | 1 << 15; // itemInSession, page, sessionId, ts
    (s.at == line.len() && seen & REQUIRED == REQUIRED).then_some(e)
}

/// An event with no field read yet. An optional field the line leaves out
/// stays `None`, as serde_json leaves it; a required one left out makes
/// [`event`] give `None`, so its placeholder here is never seen.
#[inline]
fn blank_event<'a>() -> Event<'a> {
    Event {
        artist: None,
        auth: None,
        first_name: None,
        gender: None,
        item_in_session: 0,
        last_name: None,
        length: None,
        level: None,
        location: None,
        method: None,
        page: Cow::Borrowed(""),
        registration: None,
        session_id: 0,
        song: None,
        status: None,
        ts: 0,
        user_agent: None,
        user_id: None,
    }
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes().get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.eat_if(b).then_some(())
    }

    fn eat_if(&mut self, b: u8) -> bool {
        let found = self.bytes().get(self.at) == Some(&b);
        self.at += usize::from(found);
        found
    }

    fn eat_null(&mut self) -> bool {
        let found = self.bytes()[self.at..].starts_with(b"null");
        self.at += if found { 4 } else { 0 };
        found
    }

    /// Whether `key` is next, quoted; if so, it is passed.
    fn eat_key(&mut self, key: &str) -> bool {
        let rest = &self.bytes()[self.at..];
        let found = rest.len() > key.len() + 1
            && rest[0] == b'"'
            && &rest[1..=key.len()] == key.as_bytes()
            && rest[key.len() + 1] == b'"';
        self.at += if found { key.len() + 2 } else { 0 };
        found
    }

    /// A key: a string without escapes (a key with one goes to serde_json).
    fn key(&mut self) -> Option<&'a str> {
        match self.string()? {
            Cow::Borrowed(k) => Some(k),
            Cow::Owned(_) => None,
        }
    }

    /// A string, borrowed from the line unless it has escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.at;
        let mut owned: Option<String> = None;
        loop {
            let rest = &self.bytes()[self.at..];
            let end = special(rest)?;
            if rest[end] < 0x20 {
                return None; // JSON allows no control characters in a string
            }
            let piece = &self.text[self.at..self.at + end];
            self.at += end + 1;
            if rest[end] == b'"' {
                return Some(match owned {
                    None => Cow::Borrowed(&self.text[start..self.at - 1]),
                    Some(mut s) => {
                        s.push_str(piece);
                        Cow::Owned(s)
                    }
                });
            }
            // Room for the rest of the line: the string ends in it, and
            // growing it escape by escape cost 2.7 reallocations a line.
            let s = owned.get_or_insert_with(|| String::with_capacity(rest.len()));
            s.push_str(piece);
            let c = match self.next()? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape()?,
                _ => return None,
            };
            s.push(c);
        }
    }

    /// The character of a `\u` escape whose `\u` is behind: a surrogate pair
    /// makes one character; a lone surrogate goes to serde_json (an error).
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        match first {
            0xD800..=0xDBFF => {
                if !self.bytes()[self.at..].starts_with(b"\\u") {
                    return None;
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return None;
                }
                char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
            }
            _ => char::from_u32(first),
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes().get(self.at..self.at + 4)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + char::from(d).to_digit(16)?;
        }
        self.at += 4;
        Some(v)
    }

    fn opt_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.eat_null() { Some(None) } else { self.string().map(Some) }
    }

    /// A JSON number's text, its grammar checked: `-`, then `0` or digits
    /// not starting with `0`, then an optional fraction and exponent.
    fn number(&mut self) -> Option<Number<'a>> {
        let start = self.at;
        let b = self.bytes();
        let negative = b.get(start) == Some(&b'-');
        let mut at = start + usize::from(negative);
        // The digits' value while it fits (the callers use it up to 19 digits).
        let mut mantissa = 0u64;
        let mut digits = |at: &mut usize| {
            let from = *at;
            while let Some(&d @ b'0'..=b'9') = b.get(*at) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                *at += 1;
            }
            *at - from
        };
        let int_digits = digits(&mut at);
        if int_digits == 0 || (int_digits > 1 && b[at - int_digits] == b'0') {
            return None;
        }
        let mut frac_digits = 0;
        if b.get(at) == Some(&b'.') {
            at += 1;
            frac_digits = digits(&mut at);
            if frac_digits == 0 {
                return None;
            }
        }
        let mut exponent = None;
        if let Some(b'e' | b'E') = b.get(at) {
            at += 1;
            let minus = b.get(at) == Some(&b'-');
            at += usize::from(matches!(b.get(at), Some(b'+' | b'-')));
            let from = at;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == from || at - from > 4 {
                return None;
            }
            let e: i64 = self.text[from..at].parse().ok()?;
            exponent = Some(if minus { -e } else { e });
        }
        self.at = at;
        Some(Number {
            text: &self.text[start..at],
            negative,
            mantissa,
            digits: int_digits + frac_digits,
            frac_digits,
            exponent,
        })
    }

    /// An integer for an `i64` field. serde_json reads `-0` as a float,
    /// which an `i64` field refuses.
    fn int(&mut self) -> Option<i64> {
        let n = self.number()?;
        if n.frac_digits > 0 || n.exponent.is_some() || n.text == "-0" {
            return None;
        }
        if n.digits > 18 {
            return n.text.parse().ok(); // near the ends of i64
        }
        let v = n.mantissa as i64; // at most 18 digits: exact
        Some(if n.negative { -v } else { v })
    }

    fn opt_int(&mut self) -> Option<Option<i64>> {
        if self.eat_null() { Some(None) } else { self.int().map(Some) }
    }

    /// A number for an `f64` field, computed as serde_json computes it
    /// where that is also the correctly rounded value: an integer of up to
    /// 19 digits (serde_json converts the u64; `str::parse` rounds alike),
    /// or at most 15 digits, exact in an f64, times or divided by a power of
    /// ten of at most 22, exact too, in one correctly rounded operation.
    /// Anything else goes to serde_json.
    fn opt_float(&mut self) -> Option<Option<f64>> {
        /// The powers of ten an f64 holds exactly.
        const POW10: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
            1e19, 1e20, 1e21, 1e22,
        ];
        if self.eat_null() {
            return Some(None);
        }
        let n = self.number()?;
        let power = n.exponent.unwrap_or(0) - n.frac_digits as i64;
        let v = if n.digits <= 15 && power.unsigned_abs() <= 22 {
            let m = n.mantissa as f64;
            let v = if power >= 0 { m * POW10[power as usize] } else { m / POW10[power.unsigned_abs() as usize] };
            if n.negative { -v } else { v }
        } else if n.frac_digits == 0 && n.exponent.is_none() && n.digits <= 19 {
            n.text.parse().ok()?
        } else {
            return None;
        };
        Some(Some(v))
    }

    /// `userId`: a string, or an integer written as text (`str_or_int`).
    fn string_or_int(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.bytes().get(self.at)? {
            b'"' => self.string().map(Some),
            b'n' if self.eat_null() => Some(None),
            _ => self.int().map(|v| Some(Cow::Owned(v.to_string()))),
        }
    }
}

/// Where the first `"`, `\\` or control character of `b` is: eight bytes at
/// a time, with the bit tricks for "has a zero byte" and "has a byte less
/// than n" (the lowest byte they flag is exact).
fn special(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let mut chunks = b.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = (zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | x.wrapping_sub(ONES * 0x20) & !x)
            & HIGH;
        if found != 0 {
            return Some(i * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let tail = chunks.remainder();
    tail.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|p| b.len() - tail.len() + p)
}

struct Number<'a> {
    text: &'a str,
    negative: bool,
    /// The value of all the digits, the point ignored, while it fits in a
    /// u64 (at least 19 digits).
    mantissa: u64,
    /// Digits before and after the point.
    digits: usize,
    frac_digits: usize,
    exponent: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scanner's event, or None, next to serde_json's, as text (Debug
    /// shows every field, and -0.0 apart from 0.0).
    fn both(line: &str) -> (Option<String>, Result<String, String>) {
        let fast = event(line).map(|e| format!("{e:?}"));
        let slow = serde_json::from_str::<Event<'_>>(line).map(|e| format!("{e:?}")).map_err(|e| e.to_string());
        (fast, slow)
    }

    /// Whatever the scanner reads, serde_json reads alike.
    fn agrees(line: &str) -> bool {
        let (fast, slow) = both(line);
        if let Some(f) = &fast {
            assert_eq!(Ok(f.clone()), slow, "the scanner and serde_json differ on {line}");
        }
        fast.is_some()
    }

    const LINE: &str = r#"{"artist":"Des'ree","auth":"Logged In","firstName":"Kaylee","gender":"F","itemInSession":1,"lastName":"Summers","length":246.30812,"level":"free","location":"Phoenix-Mesa-Scottsdale, AZ","method":"PUT","page":"NextSong","registration":1540344794796.0,"sessionId":139,"song":"You Gotta Be","status":200,"ts":1541106106796,"userAgent":"\"Mozilla\/5.0 (Windows NT 6.1; WOW64) AppleWebKit\/537.36\"","userId":"8"}"#;

    #[test]
    fn the_logs_own_lines_are_read_as_serde_json_reads_them() {
        assert!(agrees(LINE));
        let e = event(LINE).unwrap();
        assert_eq!(e.user_agent.as_deref(), Some(r#""Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36""#));
        assert!(matches!(e.artist, Some(Cow::Borrowed("Des'ree"))), "a string without escapes is borrowed");
        assert_eq!((e.length, e.registration, e.ts), (Some(246.30812), Some(1540344794796.0), 1541106106796));
        for line in [
            r#"{"artist":null,"auth":"Logged Out","firstName":null,"gender":null,"itemInSession":0,"lastName":null,"length":null,"level":"free","location":null,"method":"GET","page":"Home","registration":null,"sessionId":52,"song":null,"status":200,"ts":1541207073796,"userAgent":null,"userId":""}"#,
            r#"{"artist":"Erdm\u00c3\u0083\u00c2\u00b6bel","page":"NextSong","itemInSession":0,"sessionId":7,"ts":1,"userId":15}"#,
            r#"{"song":"\ud83c\udfb5 \t\n\\ \/ \b\f\r","page":"x","itemInSession":-5,"sessionId":-9223372036854775808,"ts":0}"#,
            r#" { "page" : "x" , "itemInSession" : 0 , "sessionId" : 1 , "ts" : 2 , "length" : 0 , "registration" : -0.0 } "#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"length":1e3,"registration":12345678901234.5e-7}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"length":9999999999999999999,"status":null,"userId":null}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":-1234567890123456789,"length":-0,"registration":1E+2}"#,
            r#"{"page":"x","itemInSession":999999999999999999,"sessionId":1,"ts":2,"length":0.00000000000001}"#,
            r#"{"page":"","itemInSession":0,"sessionId":1,"ts":2,"registration":0.1,"length":-17976931348623.5e-3}"#,
        ] {
            assert!(agrees(line), "the scanner gave up on {line}");
        }
    }

    #[test]
    fn everything_else_goes_to_serde_json() {
        for line in [
            // Not the common shape, but events: serde_json reads them.
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"extra":{"a":[1]}}"#,
            r#"{"p\u0061ge":"x","itemInSession":0,"sessionId":1,"ts":2}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"length":1.2345678901234567}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"length":1e-30}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"length":12345678901234567890}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"length":-1.7976931348623157e308}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"userId":18446744073709551615}"#,
            // Not events: serde_json says why.
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"ts":3}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1}"#,
            r#"{"page":"x","itemInSession":1.0,"sessionId":1,"ts":2}"#,
            r#"{"page":"x","itemInSession":-0,"sessionId":1,"ts":2}"#,
            r#"{"page":"x","itemInSession":01,"sessionId":1,"ts":2}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":9223372036854775808}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"length":1e999}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"length":1.}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"song":"\ud83c"}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"song":"\x"}"#,
            "{\"page\":\"a\u{1}b\",\"itemInSession\":0,\"sessionId\":1,\"ts\":2}",
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2} x"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"song":true}"#,
            r#"{"page":"x","itemInSession":0,"sessionId":1,"ts":2,"song":nul}"#,
            r#"[1,2]"#,
            "",
        ] {
            assert!(!agrees(line), "the scanner read {line}, which is serde_json's to read");
        }
    }

    /// Lines of the logs with a few bytes changed, added or removed: where
    /// the scanner reads one, serde_json reads the same event.
    #[test]
    fn damaged_lines_read_as_serde_json_reads_them_or_go_to_it() {
        let mut rng = fastrand::Rng::with_seed(5);
        let alphabet = br#"{}[]:,"\/ -+.0123456789eEnulltrfabu"#;
        let (mut read, mut handed_on) = (0, 0);
        for _ in 0..20_000 {
            let mut b = LINE.as_bytes().to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..b.len());
                match rng.u8(..3) {
                    0 => b[at] = alphabet[rng.usize(..alphabet.len())],
                    1 => b.insert(at, alphabet[rng.usize(..alphabet.len())]),
                    _ => drop(b.remove(at)),
                }
            }
            let Ok(line) = std::str::from_utf8(&b) else { continue };
            if agrees(line) { read += 1 } else { handed_on += 1 }
        }
        assert!(read > 1000 && handed_on > 1000, "{read} read, {handed_on} handed on");
    }

    #[test]
    fn the_search_finds_the_first_quote_backslash_or_control_character_at_every_offset() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for len in 0..20 {
            for at in 0..=len {
                for special_byte in [b'"', b'\\', 0x00, 0x1F, b'\n'] {
                    // Bytes around the ones searched for: ' ' (0x20), '!' and '#' (beside '"'),
                    // '[' and ']' (beside '\\'), 0x80 and 0xFF (high bits set).
                    let mut b: Vec<u8> = (0..len).map(|i| [b' ', b'!', b'#', b'[', b']', 0x80, 0xFF][i % 7]).collect();
                    if at < len {
                        b[at] = special_byte;
                        if at + 1 < len {
                            b[at + 1] = b'"';
                        }
                    }
                    assert_eq!(special(&b), naive(&b), "{b:?}");
                }
            }
        }
    }

    /// Every line of the sample logs takes the fast path, and reads as
    /// serde_json reads it.
    #[test]
    fn every_line_of_the_sample_logs_takes_the_fast_path() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/sparkify/log_data");
        let mut lines = 0;
        for entry in walk(&dir) {
            let text = std::fs::read_to_string(&entry).unwrap();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                assert!(agrees(line), "{}: the scanner gave up on {line}", entry.display());
                lines += 1;
            }
        }
        assert!(lines > 500, "the sample has its logs under {}: {lines} lines", dir.display());
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = vec![];
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
