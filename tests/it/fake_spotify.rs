//! A real HTTP server on 127.0.0.1 that answers like Spotify's accounts
//! service and Web API, for the tests: PKCE is checked, tokens expire and
//! refresh (optionally rotating the refresh token), and faults are injected
//! per path: 429 with Retry-After, QUOTA_EXCEEDED, 5xx, 401, slow answers and
//! invalid_grant. Payloads are shaped like the real ones: `played_at` with
//! milliseconds, `context` often null, `cursors` null on an empty page, no `total`.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    RateLimited { retry_after: u64 },
    QuotaExceeded,
    Unauthorized,
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Play {
    pub played_at_ms: i64,
    pub track: usize,
    pub with_context: bool,
}

pub struct State {
    pub client_id: String,
    pub codes: HashMap<String, String>,
    pub access_token: String,
    pub refresh_token: String,
    pub rotate_refresh: bool,
    pub invalid_grant: bool,
    pub product: String,
    pub plays: Vec<Play>,
    pub faults: VecDeque<(String, Fault)>,
    /// Every request: method and path with query (never headers: they hold tokens).
    pub requests: Vec<String>,
    pub token_grants: Vec<String>,
    pub counter: u64,
}

pub struct FakeSpotify {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

pub const USER: &str = "alice";

/// Track n: id, name, artists (tracks divisible by 3 have two artists), album.
pub fn track_id(n: usize) -> String {
    format!("4iV5W9uYEdYUVa79Axb7{n:02}")
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..chunk.len() + 1 {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn b64std_decode(s: &str) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let vals: Vec<u32> = s.bytes().filter_map(|c| A.iter().position(|&a| a == c).map(|p| p as u32)).collect();
    let mut out = vec![];
    for chunk in vals.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, v)| acc | v << (18 - 6 * i));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn query_params(q: &str) -> HashMap<String, String> {
    q.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), url_decode(v))).collect()
}

fn url_decode(s: &str) -> String {
    let mut out = vec![];
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

impl FakeSpotify {
    pub fn start(plays: Vec<Play>) -> FakeSpotify {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(State {
            client_id: "test-client-id".into(),
            codes: HashMap::new(),
            access_token: "AQ-not-yet".into(),
            refresh_token: "AQ-refresh-0".into(),
            rotate_refresh: false,
            invalid_grant: false,
            product: "premium".into(),
            plays,
            faults: VecDeque::new(),
            requests: vec![],
            token_grants: vec![],
            counter: 0,
        }));
        let s = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                std::thread::spawn(move || handle(stream, &s));
            }
        });
        FakeSpotify { url, state }
    }

    pub fn inject(&self, path_prefix: &str, fault: Fault) {
        self.state.lock().unwrap().faults.push_back((path_prefix.into(), fault));
    }

    pub fn requests(&self, prefix: &str) -> Vec<String> {
        self.state.lock().unwrap().requests.iter().filter(|r| r.contains(prefix)).cloned().collect()
    }

    /// Makes the current access token valid and returns (access, refresh), as a login would.
    pub fn issue_tokens(&self) -> (String, String) {
        let mut s = self.state.lock().unwrap();
        s.counter += 1;
        s.access_token = format!("AQ-access-{}", s.counter);
        (s.access_token.clone(), s.refresh_token.clone())
    }
}

fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &str) {
    let reason = match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Error",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

fn play_json(p: &Play) -> String {
    let t = p.track;
    let played_at = chrono::DateTime::from_timestamp_millis(p.played_at_ms).unwrap().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let mut artists = format!(
        r#"{{"id":"0OdUWJ0sBjDrqHygGUXe{:02}","name":"Artist {}","type":"artist","uri":"spotify:artist:x"}}"#,
        t % 7,
        t % 7
    );
    if t.is_multiple_of(3) {
        artists.push_str(r#",{"id":"3TVXtAsR1Inumwj472S9r4","name":"Drake","type":"artist","uri":"spotify:artist:3TVXtAsR1Inumwj472S9r4"}"#);
    }
    let context = if p.with_context {
        r#"{"type":"playlist","href":"https://api.spotify.com/v1/playlists/37i9","external_urls":{},"uri":"spotify:playlist:37i9dQZF1DXcBWIGoYBM5M"}"#
    } else {
        "null"
    };
    format!(
        r#"{{"track":{{"album":{{"album_type":"album","id":"1DFixLWuPkv3KT3TnV35{:02}","name":"Album {}","release_date":"2019-05-0{}","artists":[]}},"artists":[{artists}],"duration_ms":{},"explicit":false,"id":"{}","name":"Song {t}","popularity":50,"type":"track","uri":"spotify:track:{}"}},"played_at":"{played_at}","context":{context}}}"#,
        t % 5,
        t % 5,
        t % 9 + 1,
        180_000 + t * 1000,
        track_id(t),
        track_id(t),
    )
}

/// One request as the server reads it: the first line, the two headers it
/// needs, the body, and the target split into path and query parameters.
struct Request {
    method: String,
    target: String,
    path: String,
    params: HashMap<String, String>,
    auth: String,
    body: String,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut len = 0;
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or(("", ""));
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap_or(0),
            "authorization" => auth = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let body = String::from_utf8_lossy(&body).to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (path, params) = (path.to_string(), query_params(query));
    Some(Request { method, target, path, params, auth, body })
}

/// Records the request and takes the first fault injected for its path, if any.
fn record_and_take_fault(state: &Mutex<State>, req: &Request) -> Option<Fault> {
    let mut s = state.lock().unwrap();
    s.requests.push(format!("{} {}", req.method, req.target));
    let pos = s.faults.iter().position(|(p, _)| req.path.starts_with(p.as_str()));
    pos.and_then(|i| s.faults.remove(i)).map(|(_, f)| f)
}

/// Answers with the fault and returns true, or (for a slow answer) waits and
/// returns false so the request is then served as usual.
fn answer_fault(stream: &mut TcpStream, fault: Fault) -> bool {
    match fault {
        Fault::Status(code) => respond(stream, code, &[], r#"{"error":{"status":500,"message":"oops"}}"#),
        Fault::RateLimited { retry_after } => respond(stream, 429, &[("Retry-After", retry_after.to_string())], ""),
        Fault::QuotaExceeded => respond(stream, 429, &[], r#"{"error":{"status":429,"message":"QUOTA_EXCEEDED"}}"#),
        Fault::Unauthorized => {
            respond(stream, 401, &[], r#"{"error":{"status":401,"message":"The access token expired"}}"#)
        }
        Fault::Slow(d) => {
            std::thread::sleep(d);
            return false;
        }
    }
    true
}

fn handle(mut stream: TcpStream, state: &Mutex<State>) {
    let Some(req) = read_request(&stream) else { return };
    if let Some(fault) = record_and_take_fault(state, &req)
        && answer_fault(&mut stream, fault)
    {
        return;
    }
    let mut s = state.lock().unwrap();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/authorize") => authorize(&mut stream, &mut s, &req.params),
        ("POST", "/api/token") => token(&mut stream, &mut s, &req),
        ("GET", p) if p.starts_with("/v1/") => web_api(&mut stream, &s, &req),
        _ => respond(&mut stream, 404, &[], ""),
    }
}

/// The accounts service's consent page, granted at once: remembers the PKCE
/// challenge under a new code and redirects back with it.
fn authorize(stream: &mut TcpStream, s: &mut State, params: &HashMap<String, String>) {
    s.counter += 1;
    let code = format!("code-{}", s.counter);
    assert_eq!(params.get("code_challenge_method").map(String::as_str), Some("S256"));
    s.codes.insert(code.clone(), params["code_challenge"].clone());
    let location = format!("{}?code={code}&state={}", params["redirect_uri"], params["state"]);
    respond(stream, 302, &[("Location", location)], "");
}

/// The token endpoint: checks the client and the grant, then issues a new
/// access token (and the refresh token, unless a refresh keeps the old one).
fn token(stream: &mut TcpStream, s: &mut State, req: &Request) {
    let form = query_params(&req.body);
    s.token_grants.push(form.get("grant_type").cloned().unwrap_or_default());
    if let Err(e) = check_client(s, &form, &req.auth).and_then(|()| check_grant(s, &form)) {
        return respond(stream, 400, &[], &format!(r#"{{"error":"{e}","error_description":"{e}"}}"#));
    }
    s.counter += 1;
    s.access_token = format!("AQ-access-{}", s.counter);
    let refresh = if form.get("grant_type").map(String::as_str) == Some("refresh_token") && !s.rotate_refresh {
        String::new()
    } else {
        format!(r#","refresh_token":"{}""#, s.refresh_token)
    };
    let body = format!(
        r#"{{"access_token":"{}","token_type":"Bearer","expires_in":3600,"scope":"user-read-recently-played user-read-private"{refresh}}}"#,
        s.access_token
    );
    respond(stream, 200, &[("Content-Type", "application/json".into())], &body);
}

fn check_client(s: &State, form: &HashMap<String, String>, auth: &str) -> Result<(), &'static str> {
    // A public client sends its id in the form; one with a secret uses HTTP Basic.
    let basic_id = auth
        .strip_prefix("Basic ")
        .map(|b| String::from_utf8_lossy(&b64std_decode(b)).split(':').next().unwrap_or("").to_string());
    if form.get("client_id") != Some(&s.client_id) && basic_id.as_ref() != Some(&s.client_id) {
        return Err("invalid_client");
    }
    Ok(())
}

/// An authorization code must match its PKCE challenge; a refresh token must
/// be the current one (and is rotated when the server is set to).
fn check_grant(s: &mut State, form: &HashMap<String, String>) -> Result<(), &'static str> {
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(challenge) = s.codes.remove(&form["code"]) else {
                return Err("invalid_grant");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if b64url(&Sha256::digest(verifier.as_bytes())) != challenge {
                return Err("invalid_grant");
            }
        }
        Some("refresh_token") => {
            if s.invalid_grant || form.get("refresh_token") != Some(&s.refresh_token) {
                return Err("invalid_grant");
            }
            if s.rotate_refresh {
                s.counter += 1;
                s.refresh_token = format!("AQ-refresh-{}", s.counter);
            }
        }
        _ => return Err("unsupported_grant_type"),
    }
    Ok(())
}

/// The Web API: the bearer token must be the current one; then the profile,
/// the recently played page, or one catalogue object.
fn web_api(stream: &mut TcpStream, s: &State, req: &Request) {
    if req.auth != format!("Bearer {}", s.access_token) {
        return respond(stream, 401, &[], r#"{"error":{"status":401,"message":"Invalid access token"}}"#);
    }
    let p = req.path.as_str();
    let body = if p == "/v1/me" {
        format!(
            r#"{{"country":"SE","display_name":"Alice","id":"{USER}","product":"{}","type":"user","uri":"spotify:user:{USER}","followers":{{"href":null,"total":3}}}}"#,
            s.product
        )
    } else if p == "/v1/me/player/recently-played" {
        recently_played(s, &req.params)
    } else if let Some(body) = catalogue_object(p) {
        body
    } else {
        return respond(stream, 404, &[], r#"{"error":{"status":404,"message":"Not found."}}"#);
    };
    respond(stream, 200, &[("Content-Type", "application/json".to_string())], &body);
}

/// A page of plays after the `after` cursor, newest first, with the page's cursors.
fn recently_played(s: &State, params: &HashMap<String, String>) -> String {
    let limit: usize = params.get("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    let after: i64 = params.get("after").and_then(|a| a.parse().ok()).unwrap_or(i64::MIN);
    // Spotify keeps only the last 50 plays.
    let kept = &s.plays[s.plays.len().saturating_sub(50)..];
    let mut items: Vec<&Play> = kept.iter().filter(|p| p.played_at_ms > after).collect();
    items.sort_by_key(|p| std::cmp::Reverse(p.played_at_ms));
    items.truncate(limit);
    let cursors = match (items.first(), items.last()) {
        (Some(newest), Some(oldest)) => {
            format!(r#"{{"after":"{}","before":"{}"}}"#, newest.played_at_ms, oldest.played_at_ms)
        }
        _ => "null".into(),
    };
    format!(
        r#"{{"items":[{}],"next":null,"cursors":{cursors},"limit":{limit},"href":"{}/v1/me/player/recently-played"}}"#,
        items.iter().map(|p| play_json(p)).collect::<Vec<_>>().join(","),
        "https://api.spotify.com"
    )
}

/// An artist, album or track by id, or None for any other path.
fn catalogue_object(p: &str) -> Option<String> {
    if let Some(id) = p.strip_prefix("/v1/artists/") {
        Some(format!(
            r#"{{"id":"{id}","name":"Artist {id}","genres":["indie","pop"],"popularity":40,"type":"artist"}}"#
        ))
    } else if let Some(id) = p.strip_prefix("/v1/albums/") {
        Some(format!(
            r#"{{"id":"{id}","name":"Album {id}","album_type":"compilation","release_date":"2019","label":"L","popularity":20}}"#
        ))
    } else {
        p.strip_prefix("/v1/tracks/").map(|id| {
            format!(r#"{{"id":"{id}","name":"Song {id}","duration_ms":200000,"popularity":50,"type":"track"}}"#)
        })
    }
}

/// `n` plays a few minutes apart, ending at `end_ms`.
pub fn plays(n: usize, end_ms: i64, first_track: usize) -> Vec<Play> {
    (0..n)
        .map(|i| Play {
            played_at_ms: end_ms - (n - 1 - i) as i64 * 210_123,
            track: first_track + i,
            with_context: i % 2 == 0,
        })
        .collect()
}
