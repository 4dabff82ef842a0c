//! A lake in object storage (`s3://bucket/prefix`, `gs://`, `az://`).
//!
//! tunelake's commit protocol needs rename, fsync and flock, which object
//! stores do not have; so a command works on a local mirror of the bucket
//! (the cache, [`cache_dir`]) exactly as on a local lake, between a pull that
//! brings the cache up to the bucket and a push that publishes what the
//! command committed ([`mirror`]). The bucket stays a lake other engines read:
//! a push uploads a run's files first, then each Delta commit through
//! delta-rs's log store (`If-None-Match: *`), then the run's ledger entry
//! last, also conditional, so
//! two writers cannot both commit the same version. One writer at a time
//! holds the bucket's `_manifest/LOCK` object ([`Lease`]), itself created
//! with a conditional put.
//!
//! Credentials come from the environment the store's own tools use
//! (`AWS_*` with `AWS_ENDPOINT_URL` and `AWS_PROFILE`'s entries in
//! `~/.aws/credentials`, `GOOGLE_*`, `AZURE_*`); they are never written to
//! the lake, the cache or a message ([`redact`]).

pub mod copy;
pub mod mirror;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode, PutOptions, PutPayload};

use super::{LakeError, Layout};

/// `--lake` as given: a local folder or a bucket's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    Local(PathBuf),
    Remote(RemoteUrl),
}

/// A validated object-store URL: `s3://bucket/prefix` and the like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    url: url::Url,
}

impl RemoteUrl {
    /// Accepts the schemes `object_store` builds a store for from the
    /// environment; a URL with a password in it is refused, so none is ever printed.
    pub fn parse(s: &str) -> Result<RemoteUrl, String> {
        let url = url::Url::parse(s.trim_end_matches('/')).map_err(|e| format!("`{s}`: not a URL ({e})"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("a lake URL must not hold credentials: set AWS_* (or GOOGLE_*, AZURE_*) instead".into());
        }
        match ObjectStoreScheme::parse(&url) {
            Ok((
                ObjectStoreScheme::AmazonS3 | ObjectStoreScheme::GoogleCloudStorage | ObjectStoreScheme::MicrosoftAzure,
                _,
            )) => Ok(RemoteUrl { url }),
            _ => Err(format!(
                "`{s}`: tunelake keeps a lake in a local folder or in s3://bucket/prefix, gs://bucket/prefix \
                 or az://container/prefix"
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }
}

impl std::fmt::Display for LakeLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeLocation::Local(dir) => write!(f, "{}", dir.display()),
            LakeLocation::Remote(url) => write!(f, "{url}"),
        }
    }
}

impl std::fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{url}: cannot open the object store: {message}")]
    Open { url: String, message: String },
    #[error("{url}/{key}: {op} failed: {message}")]
    Store { url: String, op: &'static str, key: String, message: String },
    // Tells how to break the lock only for a holder this machine cannot see.
    #[error(
        "{url} is locked by another run ({holder}); wait for it to finish, or if that run died on its \
             machine, `tunelake unlock --lake {url}` removes the lock"
    )]
    Locked { url: String, holder: String },
    #[error(
        "{url}/{key}: another writer committed this first; what this run uploaded is debris that \
             `tunelake vacuum` removes, and running again builds on the other run"
    )]
    Lost { url: String, key: String },
    #[error(
        "{url}: the cache at {cache} holds committed runs the bucket has differently ({key}); \
             remove the cache folder and run again"
    )]
    Diverged { url: String, cache: PathBuf, key: String },
    #[error("{at} holds no lake (no `_manifest/<run>.json`)")]
    NotALake { at: String },
    #[error("{at} holds a lake already; copy into an empty folder or prefix")]
    NotEmpty { at: String },
    #[error(
        "{at}/{key}: the sha256 of the bytes differs from {what}; nothing is wrong with the source's other \
             files, run `tunelake verify` on it and copy again"
    )]
    Mismatch { at: String, key: String, what: &'static str },
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("cannot start the async runtime for object storage")]
    Runtime(#[source] std::io::Error),
}

/// Removes the credentials in the environment from `text` (an S3 error body
/// may quote the access key it refused).
pub fn redact(text: &str) -> String {
    let mut text = text.to_string();
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY"] {
        if let Ok(v) = std::env::var(var)
            && v.len() >= 4
        {
            text = text.replace(&v, "***");
        }
    }
    text
}

/// The bucket, its prefix, the local cache, and a runtime to drive the store.
pub struct Remote {
    url: RemoteUrl,
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    cache: Layout,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({}, cache {})", self.url, self.cache.root().display())
    }
}

impl Remote {
    /// The store for `url`, configured from the environment, with its cache.
    pub fn open(url: &RemoteUrl) -> Result<Remote, RemoteError> {
        let (store, prefix) = store_for(url)?;
        let rt = runtime()?;
        Ok(Remote { url: url.clone(), store, prefix, cache: Layout::new(cache_dir(url)), rt })
    }

    /// The local mirror the commands work on.
    pub fn cache(&self) -> &Layout {
        &self.cache
    }

    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    /// The object key of a lake-relative path.
    fn key(&self, rel: &str) -> Key {
        key_in(&self.prefix, rel)
    }

    /// The lake-relative path of an object key under the prefix.
    fn rel(&self, key: &Key) -> Option<String> {
        let parts = key.prefix_match(&self.prefix)?;
        Some(parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"))
    }

    fn store_err(&self, op: &'static str, rel: &str) -> impl FnOnce(object_store::Error) -> RemoteError + use<> {
        store_error(self.url.as_str(), op, rel)
    }

    /// Takes the bucket's lock for a writing command, `what`.
    pub fn lease(&self, what: &str) -> Result<Lease, RemoteError> {
        std::fs::create_dir_all(self.cache.root()).map_err(LakeError::io("create directory", self.cache.root()))?;
        // Local processes sharing this cache take turns here; holding this is
        // also how a lock object from this cache is known to be stale.
        let local = super::LakeLock::acquire_at(&self.cache.root().join(mirror::CACHE_LOCK), what)?;
        let holder = Holder {
            host: hostname(),
            cache: self.cache.root().canonicalize().unwrap_or_else(|_| self.cache.root().to_path_buf()),
            pid: std::process::id(),
            command: what.to_string(),
            since: super::manifest::now_rfc3339(),
        };
        let key = self.key(LOCK_REL);
        for attempt in 0..2 {
            if self
                .rt
                .block_on(create_lock(self.store.as_ref(), &key, &holder))
                .map_err(self.store_err("create", LOCK_REL))?
            {
                return Ok(Lease { _local: local });
            }
            let current = self.lock_holder()?;
            let ours_and_dead = current.as_ref().is_some_and(|h| h.host == holder.host && h.cache == holder.cache);
            if attempt > 0 || !ours_and_dead {
                let holder = current.map(|h| h.describe()).unwrap_or_else(|| "unknown".into());
                return Err(RemoteError::Locked { url: self.url.to_string(), holder });
            }
            // Left by a run from this cache that died: nothing else can hold our cache's lock.
            tracing::warn!(url = %self.url, "removing the lock a dead run from this cache left");
            self.rt.block_on(self.store.delete(&key)).map_err(self.store_err("delete", LOCK_REL))?;
        }
        unreachable!("the second attempt returns")
    }

    /// Gives the bucket's lock back.
    pub fn release(&self, lease: Lease) -> Result<(), RemoteError> {
        self.rt.block_on(self.store.delete(&self.key(LOCK_REL))).map_err(self.store_err("delete", LOCK_REL))?;
        drop(lease);
        Ok(())
    }

    /// Who holds the bucket's lock, if anyone.
    pub fn lock_holder(&self) -> Result<Option<Holder>, RemoteError> {
        self.rt.block_on(read_lock(self.store.as_ref(), &self.key(LOCK_REL))).map_err(self.store_err("read", LOCK_REL))
    }

    /// `tunelake unlock`: removes the bucket's lock; returns who held it.
    pub fn unlock(&self) -> Result<Option<Holder>, RemoteError> {
        let holder = self.lock_holder()?;
        if holder.is_some() {
            self.rt.block_on(self.store.delete(&self.key(LOCK_REL))).map_err(self.store_err("delete", LOCK_REL))?;
        }
        Ok(holder)
    }
}

/// The store `url` names, configured from the environment, and the prefix in it.
pub fn store_for(url: &RemoteUrl) -> Result<(Arc<dyn ObjectStore>, Key), RemoteError> {
    let open_err = |message: String| RemoteError::Open { url: url.to_string(), message: redact(&message) };
    let (scheme, prefix) = ObjectStoreScheme::parse(&url.url).map_err(|e| open_err(e.to_string()))?;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let mut b = object_store::aws::AmazonS3Builder::from_env();
            for (key, value) in aws_profile_settings() {
                b = b.with_config(key.parse().map_err(|e: object_store::Error| open_err(e.to_string()))?, value);
            }
            Arc::new(b.with_url(url.as_str()).build().map_err(|e| open_err(e.to_string()))?)
        }
        ObjectStoreScheme::GoogleCloudStorage => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(|e| open_err(e.to_string()))?,
        ),
        ObjectStoreScheme::MicrosoftAzure => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(|e| open_err(e.to_string()))?,
        ),
        _ => return Err(open_err("not an object store".into())),
    };
    Ok((store, prefix))
}

/// Two threads drive the transfers; the work is waiting on the network.
fn runtime() -> Result<tokio::runtime::Runtime, RemoteError> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(RemoteError::Runtime)
}

/// The key of lake-relative `rel` under `prefix`.
fn key_in(prefix: &Key, rel: &str) -> Key {
    if prefix.as_ref().is_empty() { Key::from(rel) } else { Key::from(format!("{prefix}/{rel}")) }
}

/// The error of `op` on `at`/`rel`, with any credential taken out of the store's message.
fn store_error(at: &str, op: &'static str, rel: &str) -> impl FnOnce(object_store::Error) -> RemoteError + use<> {
    let (url, key) = (at.to_string(), rel.to_string());
    move |e| RemoteError::Store { url, op, key, message: redact(&e.to_string()) }
}

/// Creates the lock object `key` for `holder` unless one exists; false if one does.
async fn create_lock(store: &dyn ObjectStore, key: &Key, holder: &Holder) -> Result<bool, object_store::Error> {
    let body = serde_json::to_vec(holder).expect("a holder serializes");
    let create = PutOptions { mode: PutMode::Create, ..Default::default() };
    match store.put_opts(key, PutPayload::from(body), create).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Who the lock object `key` names, if there is one.
async fn read_lock(store: &dyn ObjectStore, key: &Key) -> Result<Option<Holder>, object_store::Error> {
    match async { store.get(key).await?.bytes().await }.await {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| Holder::unreadable()))),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The bucket's lock object, relative to the lake.
const LOCK_REL: &str = "_manifest/LOCK";

/// Held while a writing command runs on a remote lake.
#[derive(Debug)]
pub struct Lease {
    _local: super::LakeLock,
}

/// What the bucket's lock object says about its holder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub host: String,
    pub cache: PathBuf,
    pub pid: u32,
    pub command: String,
    pub since: String,
}

impl Holder {
    fn unreadable() -> Holder {
        Holder { host: "?".into(), cache: PathBuf::new(), pid: 0, command: "?".into(), since: "?".into() }
    }

    pub fn describe(&self) -> String {
        format!("pid {} `tunelake {}` on {} since {}", self.pid, self.command, self.host, self.since)
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { "unknown-host".into() }
}

/// Where the mirror of `url` lives: `TUNELAKE_CACHE`, else
/// `$XDG_CACHE_HOME/tunelake`, else `~/.cache/tunelake`, then one folder per
/// bucket, prefix and endpoint (two servers may hold buckets of one name).
pub fn cache_dir(url: &RemoteUrl) -> PathBuf {
    let base = std::env::var_os("TUNELAKE_CACHE").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("tunelake")
    });
    let endpoint = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).unwrap_or_default();
    let id = &super::sha256_hex(format!("{endpoint} {url}").as_bytes())[..12];
    let readable: String = url
        .as_str()
        .replace("://", "-")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' })
        .collect();
    base.join("lakes").join(format!("{readable}-{id}"))
}

/// `AWS_PROFILE`'s (else `default`'s) keys from the shared credentials and
/// config files, for what the environment does not set: object_store reads
/// only variables.
fn aws_profile_settings() -> Vec<(String, String)> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let file = |var: &str, default: &str| {
        std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| home.join(".aws").join(default))
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let credentials = std::fs::read_to_string(file("AWS_SHARED_CREDENTIALS_FILE", "credentials")).unwrap_or_default();
    let config = std::fs::read_to_string(file("AWS_CONFIG_FILE", "config")).unwrap_or_default();
    let mut found = ini_section(&credentials, &profile);
    let config_section = if profile == "default" { profile.clone() } else { format!("profile {profile}") };
    found.extend(ini_section(&config, &config_section));
    let wanted = [
        ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
        ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        ("aws_session_token", "AWS_SESSION_TOKEN"),
        ("region", "AWS_DEFAULT_REGION"),
        ("endpoint_url", "AWS_ENDPOINT_URL"),
    ];
    let set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    wanted
        .iter()
        .filter(|(_, var)| !(set(var) || *var == "AWS_DEFAULT_REGION" && set("AWS_REGION")))
        .filter_map(|(key, _)| {
            let value = found.iter().rev().find(|(k, _)| k == key)?.1.clone();
            let key = match *key {
                "region" => "aws_region",
                "endpoint_url" => "aws_endpoint",
                k => k,
            };
            Some((key.to_string(), value))
        })
        .collect()
}

/// The `key = value` lines of `[section]` in an INI text.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = vec![];
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if inside
            && !line.starts_with(['#', ';'])
            && let Some((k, v)) = line.split_once('=')
        {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_object_stores_are_accepted_and_others_refused() {
        for ok in ["s3://music/lake", "s3://music", "gs://b/m", "az://container/m", "s3://music/lake/"] {
            assert!(RemoteUrl::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(RemoteUrl::parse("s3://music/lake/").unwrap().as_str(), "s3://music/lake");
        let err = RemoteUrl::parse("ftp://h/x").unwrap_err();
        assert!(err.contains("s3://bucket/prefix"), "{err}");
        let err = RemoteUrl::parse("s3://key:secret@music/lake").unwrap_err();
        assert!(err.contains("must not hold credentials") && !err.contains("secret@"), "{err}");
    }

    #[test]
    fn a_profile_section_is_read_from_ini_text() {
        let text = "[default]\naws_access_key_id = A\n\n[work]\n# note\naws_access_key_id=W\nregion = eu-west-1\n";
        assert_eq!(ini_section(text, "default"), vec![("aws_access_key_id".to_string(), "A".to_string())]);
        assert_eq!(
            ini_section(text, "work"),
            vec![("aws_access_key_id".into(), "W".into()), ("region".into(), "eu-west-1".into())]
        );
        assert!(ini_section(text, "other").is_empty());
    }
}
