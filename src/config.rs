//! What the user typed, validated into settings before any I/O. Secrets are
//! wrapped so that `Debug` and logs never show them.

use std::fmt;
use std::path::PathBuf;

use crate::lake::Layout;

/// Where the lake lives when neither `--lake` nor `TUNELAKE_LAKE` says.
pub const DEFAULT_LAKE: &str = "data/lake";

/// `--lake` / `TUNELAKE_LAKE`: a local folder (or a `file://` URL of one).
/// A URL of another scheme would otherwise become a folder named `s3:` in
/// the working directory, silently; object storage is not supported yet.
pub fn lake_path(s: &str) -> Result<PathBuf, String> {
    let scheme = s
        .split_once("://")
        .map(|(scheme, _)| scheme)
        .filter(|scheme| scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)));
    match scheme {
        None => Ok(PathBuf::from(s)),
        Some("file") => Ok(PathBuf::from(&s["file://".len()..])),
        Some(other) => Err(format!(
            "`{s}`: a lake on {other}:// is not supported yet; tunelake keeps its lake in a local folder \
             (copy it to object storage with your usual tools: the star's tables are Delta tables)"
        )),
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
    pub layout: Layout,
    pub database_url: Option<Secret>,
}

impl Settings {
    /// `database_url` is `--database-url` / `DATABASE_URL`; without it, a
    /// libpq environment that names a database (`PGHOST`, `PGDATABASE`) is
    /// the configuration, as an empty connection string ([`crate::sink::connect`]).
    pub fn new(lake: PathBuf, database_url: Option<String>) -> Self {
        let named =
            crate::sink::connect::NAMING_VARS.iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        Settings { layout: Layout::new(lake), database_url: database(database_url, named) }
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
    fn a_lake_is_a_folder_and_object_storage_urls_are_refused() {
        assert_eq!(lake_path("data/lake").unwrap(), PathBuf::from("data/lake"));
        assert_eq!(lake_path("file:///srv/lake").unwrap(), PathBuf::from("/srv/lake"));
        for url in ["s3://bucket/music", "gs://b/m", "az://c/m"] {
            let err = lake_path(url).unwrap_err();
            assert!(err.starts_with(&format!("`{url}`: a lake on ")) && err.contains("not supported yet"), "{err}");
        }
        assert_eq!(lake_path("C:/music").unwrap(), PathBuf::from("C:/music"), "no :// is a path");
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
