//! What the user typed, validated into settings before any I/O. Secrets are
//! wrapped so that `Debug` and logs never show them.

use std::fmt;
use std::path::PathBuf;

use crate::lake::Layout;
pub use crate::lake::remote::{LakeLocation, RemoteUrl};

/// Where the lake lives when neither `--lake` nor `TUNELAKE_LAKE` says.
pub const DEFAULT_LAKE: &str = "data/lake";

/// `--lake` / `TUNELAKE_LAKE`: a local folder (or a `file://` URL of one),
/// or a bucket: `s3://bucket/prefix`, `gs://`, `az://` ([`crate::lake::remote`]).
/// Another scheme is refused rather than becoming a folder named `ftp:`.
pub fn lake_location(s: &str) -> Result<LakeLocation, String> {
    let scheme = s
        .split_once("://")
        .map(|(scheme, _)| scheme)
        .filter(|scheme| scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)));
    match scheme {
        None => Ok(LakeLocation::Local(PathBuf::from(s))),
        Some("file") => Ok(LakeLocation::Local(PathBuf::from(&s["file://".len()..]))),
        Some(_) => RemoteUrl::parse(s).map(LakeLocation::Remote),
    }
}

/// A string that must never be printed (a database URL may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The lake the command works on: the folder, or a bucket's cache.
    pub layout: Layout,
    pub database_url: Option<Secret>,
    /// The bucket, when the lake is one; a `run --every` pulls and pushes each cycle.
    pub remote: Option<std::sync::Arc<crate::lake::remote::Remote>>,
}

impl Settings {
    /// `database_url` is `--database-url` / `DATABASE_URL`; without it, a
    /// libpq environment that names a database (`PGHOST`, `PGDATABASE`) is
    /// the configuration, as an empty connection string ([`crate::sink::connect`]).
    pub fn new(lake: PathBuf, database_url: Option<String>) -> Self {
        let named =
            crate::sink::connect::NAMING_VARS.iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        Settings { layout: Layout::new(lake), database_url: database(database_url, named), remote: None }
    }
}

/// The connection string: the one given, else an empty one when the libpq environment names a database.
fn database(url: Option<String>, env_names_one: bool) -> Option<Secret> {
    url.filter(|u| !u.trim().is_empty()).or_else(|| env_names_one.then(String::new)).map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lake_is_a_folder_or_a_bucket_and_other_urls_are_refused() {
        let local = |p: &str| LakeLocation::Local(PathBuf::from(p));
        assert_eq!(lake_location("data/lake").unwrap(), local("data/lake"));
        assert_eq!(lake_location("file:///srv/lake").unwrap(), local("/srv/lake"));
        for url in ["s3://bucket/music", "gs://b/m", "az://c/m"] {
            assert!(matches!(lake_location(url), Ok(LakeLocation::Remote(u)) if u.as_str() == url), "{url}");
        }
        let err = lake_location("ftp://host/music").unwrap_err();
        assert!(err.starts_with("`ftp://host/music`: tunelake keeps a lake in a local folder or in s3://"), "{err}");
        assert_eq!(lake_location("C:/music").unwrap(), local("C:/music"), "no :// is a path");
    }

    #[test]
    fn debug_never_shows_the_database_url() {
        let s = Settings::new("l".into(), Some("postgresql://u:hunter2-secret@h/d".into()));
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(database(Some("  ".into()), false), None);
        assert_eq!(database(None, true), Some(Secret::new("")), "PGHOST or PGDATABASE alone configure one");
        assert_eq!(database(Some("postgresql://h/d".into()), true), Some(Secret::new("postgresql://h/d")));
    }
}
