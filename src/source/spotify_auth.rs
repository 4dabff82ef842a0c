//! Logging in to Spotify: OAuth 2.0 Authorization Code with PKCE (RFC 7636)
//! through the `oauth2` crate, a loopback redirect to
//! `http://127.0.0.1:<port>/callback`, and a token cache in the lake's
//! `state/` with mode 0600. An access token lives an hour and is refreshed
//! on the way; a refresh that brings a new refresh token replaces the old
//! one; `invalid_grant` (refresh tokens expire six months after consent)
//! ends with the advice to log in again.
//!
//! Tokens never reach logs or errors: [`TokenCache`]'s `Debug` hides them,
//! and error messages name endpoints and statuses, never bodies with tokens.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::SourceError;
use crate::config::Secret;
use crate::lake::{Layout, fsio};

/// What `/v1/me` and `/v1/me/player/recently-played` need.
pub const SCOPES: &[&str] = &["user-read-recently-played", "user-read-private"];

/// Where Spotify (or the test server standing in for it) lives, and who we are to it.
#[derive(Debug, Clone)]
pub struct SpotifyConfig {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub accounts_url: String,
    pub api_url: String,
    pub redirect_port: u16,
    /// The longest a 429's Retry-After is waited for before the run stops (to resume next time).
    pub max_retry_after: Duration,
    pub timeout: Duration,
}

impl SpotifyConfig {
    pub const DEFAULT_ACCOUNTS_URL: &str = "https://accounts.spotify.com";
    pub const DEFAULT_API_URL: &str = "https://api.spotify.com";

    fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.redirect_port)
    }
}

/// The cached tokens. `Debug` never shows them.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenCache {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    #[serde(default)]
    pub scope: String,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// The blocking HTTP client every Spotify call goes through.
pub fn http_client(cfg: &SpotifyConfig) -> Result<reqwest::blocking::Client, SourceError> {
    reqwest::blocking::Client::builder()
        .timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tunelake/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SourceError::Http { endpoint: "client setup".into(), message: e.to_string() })
}

/// oauth2's HTTP hook, served by our client.
fn oauth_http(
    http: &reqwest::blocking::Client,
) -> impl Fn(oauth2::HttpRequest) -> Result<oauth2::HttpResponse, std::io::Error> + '_ {
    move |req: oauth2::HttpRequest| {
        let (parts, body) = req.into_parts();
        let resp = http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .map_err(|e| std::io::Error::other(e.without_url().to_string()))?;
        let mut builder = oauth2::http::Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            builder = builder.header(k, v);
        }
        let bytes = resp.bytes().map_err(|e| std::io::Error::other(e.without_url().to_string()))?;
        builder.body(bytes.to_vec()).map_err(std::io::Error::other)
    }
}

type Client = BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn oauth_client(cfg: &SpotifyConfig) -> Result<Client, SourceError> {
    let bad = |what: &str| SourceError::Config(format!("{what} is not a valid URL"));
    let accounts = cfg.accounts_url.trim_end_matches('/');
    let mut client = BasicClient::new(ClientId::new(cfg.client_id.clone()))
        .set_auth_uri(AuthUrl::new(format!("{accounts}/authorize")).map_err(|_| bad("the accounts URL"))?)
        .set_token_uri(TokenUrl::new(format!("{accounts}/api/token")).map_err(|_| bad("the accounts URL"))?)
        .set_redirect_uri(RedirectUrl::new(cfg.redirect_uri()).map_err(|_| bad("the redirect URL"))?);
    if let Some(secret) = &cfg.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_string()));
    }
    Ok(client)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn cache_from(resp: &oauth2::basic::BasicTokenResponse, old_refresh: Option<&str>) -> Result<TokenCache, SourceError> {
    let refresh_token = match (resp.refresh_token(), old_refresh) {
        (Some(new), _) => new.secret().clone(),
        (None, Some(old)) => old.to_string(),
        (None, None) => return Err(SourceError::Auth("Spotify sent no refresh token".into())),
    };
    Ok(TokenCache {
        access_token: resp.access_token().secret().clone(),
        refresh_token,
        expires_at: now() + resp.expires_in().map_or(3600, |d| d.as_secs() as i64),
        scope: resp.scopes().map(|s| s.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
    })
}

fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> SourceError {
    match e {
        RequestTokenError::ServerResponse(r) if *r.error() == BasicErrorResponseType::InvalidGrant => {
            SourceError::Reauth
        }
        RequestTokenError::ServerResponse(r) => {
            SourceError::Auth(format!("Spotify refused the token request: {}", r.error()))
        }
        RequestTokenError::Request(e) => {
            SourceError::Http { endpoint: "accounts /api/token".into(), message: e.to_string() }
        }
        RequestTokenError::Parse(_, _) => SourceError::Auth("Spotify's token response could not be read".into()),
        RequestTokenError::Other(m) => SourceError::Auth(m),
    }
}

pub fn save(layout: &Layout, cache: &TokenCache) -> Result<(), SourceError> {
    let bytes = serde_json::to_vec_pretty(cache).expect("tokens serialize");
    fsio::write_private(&layout.spotify_token(), &bytes)?;
    Ok(())
}

pub fn load(layout: &Layout) -> Result<TokenCache, SourceError> {
    let path = layout.spotify_token();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SourceError::NotLoggedIn),
        Err(source) => return Err(SourceError::Read { path, source }),
    };
    serde_json::from_slice(&bytes).map_err(|_| SourceError::Auth(format!("{}: not a token cache", path.display())))
}

/// Where the user's browser must go, and what the callback must bring back.
pub struct LoginStart {
    pub url: String,
    csrf: CsrfToken,
    verifier: oauth2::PkceCodeVerifier,
}

pub fn start_login(cfg: &SpotifyConfig) -> Result<LoginStart, SourceError> {
    let client = oauth_client(cfg)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(SCOPES.iter().map(|s| Scope::new(s.to_string())))
        .set_pkce_challenge(challenge)
        .url();
    Ok(LoginStart { url: url.to_string(), csrf, verifier })
}

/// Takes `code` and `state` out of the redirect URL the browser was sent to.
fn parse_redirect(redirected: &str, expected_state: &str) -> Result<String, SourceError> {
    let url = reqwest::Url::parse(redirected.trim())
        .map_err(|_| SourceError::Auth("that is not the URL the browser was redirected to".into()))?;
    let get = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
    if let Some(err) = get("error") {
        return Err(SourceError::Auth(format!("Spotify did not grant access: {err}")));
    }
    if get("state").as_deref() != Some(expected_state) {
        return Err(SourceError::Auth(
            "the redirect's state does not match this login (a stale or forged redirect)".into(),
        ));
    }
    get("code").ok_or_else(|| SourceError::Auth("the redirect URL has no `code`".into()))
}

/// Completes a login with the redirect URL and caches the tokens.
pub fn finish_login(
    cfg: &SpotifyConfig,
    layout: &Layout,
    start: LoginStart,
    redirected: &str,
) -> Result<TokenCache, SourceError> {
    let code = parse_redirect(redirected, start.csrf.secret())?;
    let http = http_client(cfg)?;
    let resp = oauth_client(cfg)?
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(start.verifier)
        .request(&oauth_http(&http))
        .map_err(token_error)?;
    let cache = cache_from(&resp, None)?;
    save(layout, &cache)?;
    Ok(cache)
}

/// Waits for the browser's redirect on the loopback port; returns the full URL.
pub fn wait_for_callback(listener: &TcpListener, timeout: Duration) -> Result<String, SourceError> {
    let deadline = std::time::Instant::now() + timeout;
    listener.set_nonblocking(true).map_err(|e| SourceError::Auth(format!("loopback listener: {e}")))?;
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).ok();
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line).ok();
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                if !target.starts_with("/callback") {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let body =
                    "<html><body><h1>tunelake is logged in to Spotify.</h1>You can close this window.</body></html>";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                return Ok(format!("http://127.0.0.1:{port}{target}"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > deadline {
                    return Err(SourceError::Auth("no redirect arrived from the browser in time".into()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(SourceError::Auth(format!("loopback listener: {e}"))),
        }
    }
}

/// `tunelake auth spotify`: the whole login, by browser or by pasting.
pub fn login(
    cfg: &SpotifyConfig,
    layout: &Layout,
    no_browser: bool,
    input: &mut dyn BufRead,
    say: &mut dyn Write,
) -> Result<TokenCache, SourceError> {
    let start = start_login(cfg)?;
    let redirected = if no_browser {
        writeln!(
            say,
            "Open this URL in a browser, log in, and paste the URL you are redirected to \
            (it starts with {}):\n\n{}\n",
            cfg.redirect_uri(),
            start.url
        )
        .ok();
        say.flush().ok();
        let mut line = String::new();
        input.read_line(&mut line).map_err(|e| SourceError::Auth(format!("reading the pasted URL: {e}")))?;
        line
    } else {
        let listener = TcpListener::bind(("127.0.0.1", cfg.redirect_port)).map_err(|e| {
            SourceError::Auth(format!(
                "cannot listen on 127.0.0.1:{}: {e} (use --port or --no-browser)",
                cfg.redirect_port
            ))
        })?;
        writeln!(say, "Opening your browser to log in to Spotify; if it does not open, visit:\n\n{}\n", start.url).ok();
        open_browser(&start.url);
        wait_for_callback(&listener, Duration::from_secs(300))?
    };
    finish_login(cfg, layout, start, &redirected)
}

fn open_browser(url: &str) {
    for opener in ["xdg-open", "open"] {
        if std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
        {
            return;
        }
    }
}

/// Refreshes the access token now; a new refresh token replaces the old one.
pub fn refresh(cfg: &SpotifyConfig, layout: &Layout, cache: &TokenCache) -> Result<TokenCache, SourceError> {
    let http = http_client(cfg)?;
    let resp = oauth_client(cfg)?
        .exchange_refresh_token(&RefreshToken::new(cache.refresh_token.clone()))
        .request(&oauth_http(&http))
        .map_err(token_error)?;
    let fresh = cache_from(&resp, Some(&cache.refresh_token))?;
    save(layout, &fresh)?;
    Ok(fresh)
}

/// A valid access token: the cached one, or a refreshed one when it is (about to be) expired.
pub fn access_token(cfg: &SpotifyConfig, layout: &Layout) -> Result<TokenCache, SourceError> {
    let cache = load(layout)?;
    if cache.expires_at - 60 > now() { Ok(cache) } else { refresh(cfg, layout, &cache) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_must_carry_our_state_and_a_code() {
        assert_eq!(parse_redirect("http://127.0.0.1:8888/callback?code=abc&state=s1", "s1").unwrap(), "abc");
        assert!(parse_redirect("http://127.0.0.1:8888/callback?code=abc&state=evil", "s1").is_err());
        let denied = parse_redirect("http://127.0.0.1:8888/callback?error=access_denied&state=s1", "s1");
        assert!(denied.unwrap_err().to_string().contains("access_denied"));
    }

    #[test]
    fn debug_hides_tokens() {
        let t = TokenCache {
            access_token: "AQxyz-access".into(),
            refresh_token: "AQxyz-refresh".into(),
            expires_at: 1,
            scope: String::new(),
        };
        let s = format!("{t:?}");
        assert!(!s.contains("AQxyz"), "{s}");
    }

    #[test]
    fn the_login_url_asks_for_pkce_and_the_scopes() {
        let cfg = SpotifyConfig {
            client_id: "cid".into(),
            client_secret: None,
            accounts_url: "http://127.0.0.1:1".into(),
            api_url: "http://127.0.0.1:1".into(),
            redirect_port: 8888,
            max_retry_after: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        let s = start_login(&cfg).unwrap();
        for want in [
            "code_challenge_method=S256",
            "code_challenge=",
            "user-read-recently-played",
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A8888%2Fcallback",
            "client_id=cid",
        ] {
            assert!(s.url.contains(want), "{want} in {}", s.url);
        }
    }
}
