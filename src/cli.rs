//! The command line: clap's derive, and the only place where the stages are
//! wired together. Each command turns its flags into settings, takes the
//! lake's lock if it writes, calls one stage (or several, for `run`), and
//! prints one summary from the metrics the stage returns.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{DEFAULT_LAKE, LakeLocation, Settings};
use crate::error::{Error, Result};
use crate::lake::manifest::{Commit, now_rfc3339};
use crate::lake::remote::Remote;
use crate::lake::{LakeLock, Layout, Manifest, vacuum};
use crate::model::build::{BuildMetrics, BuildOptions};
use crate::model::query::{self, Format};
use crate::progress::{self, ProgressMode};
use crate::sink::{self, SinkError, SyncMetrics, SyncOptions};
use crate::source::spotify_auth::SpotifyConfig;
use crate::source::{self, IngestMetrics};
use crate::{sql, status};

const ABOUT: &str = "Own your listening history: a file-based lake of plays, a star schema built by \
DataFusion, synced to PostgreSQL.";

const EXAMPLES: &str = "\
Examples:
  tunelake run --sparkify data/sample/sparkify       ingest, build and summarise the sample
  tunelake ingest sparkify ../shared/data/sparkify   store a Sparkify folder in the lake
  tunelake build                                     compute the star schema
  tunelake query --name top_tracks                   a named query (--list shows them)
  tunelake query \"SELECT level, count(*) FROM fact_plays GROUP BY level\" --format csv
  tunelake sync --database-url postgresql://me@localhost/music
  tunelake status                                    runs, row counts, accounting";

#[derive(Debug, Parser)]
#[command(name = "tunelake", version, about = ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    /// Where the lake lives: a folder, or s3://bucket/prefix (gs://, az://) with credentials from
    /// AWS_* (AWS_ENDPOINT_URL, AWS_PROFILE), GOOGLE_* or AZURE_*, worked on through a local cache
    /// (TUNELAKE_CACHE, else ~/.cache/tunelake).
    #[arg(long, global = true, env = "TUNELAKE_LAKE", default_value = DEFAULT_LAKE, value_name = "DIR|URL",
          value_parser = crate::config::lake_location)]
    pub lake: LakeLocation,

    /// Progress bars on stderr: auto (when it is a terminal) or off.
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// More logging on stderr (-v info, -vv debug: each model's plan, -vvv trace: each plan as
    /// it ran, with rows, time and memory per operator); TUNELAKE_LOG takes a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to a service once; the tokens are kept in the lake's state/ (mode 0600).
    #[command(subcommand)]
    Auth(AuthTarget),
    /// Store a source's data in the lake: raw bytes plus typed staging.
    #[command(subcommand)]
    Ingest(IngestSource),
    /// Compute the star schema from staging with the SQL in sql/model/.
    #[command(after_help = "Examples:\n  tunelake build\n  tunelake build --force --match-tolerance 0.5")]
    Build(BuildArgs),
    /// Run SQL over the star tables, offline.
    #[command(after_help = "Queries read the star tables and the `plays` view: fact_plays in the period \
        asked for, with local_at, local_date, local_hour, local_weekday (Monday = 0), local_week, local_month and \
        local_year in the zone asked for. Your own named queries are the *.sql files in <lake>/queries.\n\n\
        Examples:\n  tunelake query --list\n  tunelake query --name top_artists --format json\n  \
        tunelake query --name listening_clock --tz Europe/Berlin --since 90d\n  \
        tunelake query --name top_tracks --from 2024-01-01 --to 2024-12-31\n  \
        tunelake query \"SELECT local_hour, count(*) FROM plays GROUP BY 1 ORDER BY 1\"\n  \
        tunelake query --as-of 2026-12-01T18:00:00Z \"SELECT count(*) FROM fact_plays\"")]
    Query(QueryArgs),
    /// Load the star tables into PostgreSQL (COPY + upsert, one transaction).
    #[command(after_help = "The database is --database-url (or DATABASE_URL), completed as libpq does from \
        PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT and ~/.pgpass (mode 0600); \
        TLS follows sslmode: disable, allow, prefer (the default), require, verify-ca, verify-full.\n\n\
        Examples:\n  DATABASE_URL=postgresql://me@localhost/music tunelake sync\n  \
        tunelake sync --database-url postgresql://me@localhost/music --full\n  \
        tunelake sync --database-url 'postgresql://me@db.example.com/music?sslmode=verify-full&sslrootcert=ca.pem'\n  \
        PGHOST=db.example.com PGDATABASE=music PGSSLMODE=require tunelake sync")]
    Sync(SyncArgs),
    /// Show runs, row counts per table and where every record went.
    Status(StatusArgs),
    /// Rebuild staging from raw alone (after a parser fix), then the star.
    Reprocess(ReprocessArgs),
    /// Ingest every given source, build, and sync when a database is configured.
    #[command(after_help = "With a database, the sync starts with the build: into empty tables, each month \
        of plays is loaded as soon as it is built, and all of it is committed in one transaction after the \
        build (or nothing, if the build fails).\n\n\
        Examples:\n  tunelake run --sparkify data/sample/sparkify\n  \
        tunelake run --sparkify ../shared/data/sparkify --database-url postgresql://me@localhost/music")]
    Run(RunArgs),
    /// Remove files no version within the retention needs (debris, replaced star versions).
    #[command(after_help = "Committed raw files and the Delta logs are always kept, and so are the files \
        of the current star version and of the version PostgreSQL last got.\n\n\
        Examples:\n  tunelake vacuum --dry-run\n  tunelake vacuum --retain 30d\n  \
        tunelake vacuum --retain 0s            keep only the current and the synced version")]
    Vacuum(VacuumArgs),
    /// Check that the lake on disk is what its ledger says, and say how to repair what is not.
    #[command(after_help = "Checks every raw file's sha256 and size, that every live staging file and every \
        file of the current star version is there with its rows, that each Delta table is at the version the \
        ledger records, and that every run's accounting adds up. Exits 4 naming each problem and its repair.\n\n\
        Examples:\n  tunelake verify\n  tunelake verify --deep          also hash every star file")]
    Verify(VerifyArgs),
    /// Your listening at a glance, in your time zone; `--html` writes it as one self-contained page.
    #[command(after_help = "Top artists, tracks and albums, time listened, the busiest hour and day, and the \
        Spotify coverage gaps, over the period asked for. With --html, one HTML file that needs no network: the \
        listening clock, time listened per week, the top lists, discoveries per month and the split by kind, \
        as inline SVG.\n\n\
        Examples:\n  tunelake report\n  tunelake report --since 90d --tz Europe/Berlin\n  \
        tunelake report --from 2024-01-01 --to 2024-12-31 --html wrapped-2024.html")]
    Report(ReportArgs),
    /// Remove the lock a run that died left in a bucket (a local lake's lock goes with its process).
    #[command(after_help = "A run on a bucket holds _manifest/LOCK there; a run on this machine takes \
        over a lock its own dead run left, so this is for a run that died on another machine.\n\n\
        Example:\n  tunelake unlock --lake s3://my-bucket/music")]
    Unlock,
    /// Print a shell's completion script for tunelake.
    #[command(
        after_help = "Examples:\n  tunelake completions bash > ~/.local/share/bash-completion/completions/tunelake\n  \
        tunelake completions zsh > ~/.zfunc/_tunelake\n  tunelake completions fish > ~/.config/fish/completions/tunelake.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print tunelake's man page (roff).
    #[command(after_help = "Example:\n  tunelake man > ~/.local/share/man/man1/tunelake.1 && man tunelake")]
    Man,
    /// Copy a lake between a folder and a bucket (either way), checking every file's sha256.
    #[command(after_help = "The destination must hold no lake. Files go in the commit protocol's order \
        (data, then each Delta log, then the ledger, its entries last), so a copy cut short is a lake at an \
        earlier run; each file is read back from the destination and its sha256 compared, and a raw file \
        stored alone must hash to its name. Both ends are locked while it runs.\n\n\
        Examples:\n  tunelake copy-lake data/lake s3://my-bucket/music\n  \
        tunelake copy-lake s3://my-bucket/music /backup/music-lake")]
    CopyLake {
        /// The lake to copy: a folder or a bucket's URL.
        #[arg(value_parser = crate::config::lake_location)]
        from: LakeLocation,
        /// Where to: an empty folder or prefix.
        #[arg(value_parser = crate::config::lake_location)]
        to: LakeLocation,
    },
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Also write the report as one self-contained HTML page here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also compare every star file's sha256 with the ledger's.
    #[arg(long)]
    pub deep: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuthTarget {
    /// Spotify: OAuth 2.0 with PKCE in your browser (or by pasting, with --no-browser).
    #[command(after_help = "Examples:\n  SPOTIFY_CLIENT_ID=<your app's client id> tunelake auth spotify\n  \
        tunelake auth spotify --no-browser          on a headless server: paste the redirect URL back\n\n\
        Register http://127.0.0.1:8888/callback (or your --port) as a redirect URI of your Spotify app.")]
    Spotify {
        #[command(flatten)]
        spotify: SpotifyArgs,
        /// Print the login URL and read the redirect URL from stdin instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
        /// The loopback port of the redirect URI http://127.0.0.1:PORT/callback.
        #[arg(long, default_value_t = 8888)]
        port: u16,
    },
}

/// Where Spotify is and who we are to it.
#[derive(Debug, Clone, Args)]
pub struct SpotifyArgs {
    /// Your Spotify app's client id.
    #[arg(long = "spotify-client-id", env = "SPOTIFY_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// The app's client secret; optional with PKCE, never printed.
    #[arg(
        long = "spotify-client-secret",
        env = "SPOTIFY_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub client_secret: Option<String>,
    /// The Web API's base URL.
    #[arg(long = "spotify-api-url", env = "TUNELAKE_SPOTIFY_API_URL", default_value = SpotifyConfig::DEFAULT_API_URL, value_name = "URL")]
    pub api_url: String,
    /// The accounts service's base URL.
    #[arg(long = "spotify-accounts-url", env = "TUNELAKE_SPOTIFY_ACCOUNTS_URL", default_value = SpotifyConfig::DEFAULT_ACCOUNTS_URL, value_name = "URL")]
    pub accounts_url: String,
    /// The longest Retry-After (seconds) a rate-limited run waits; past it the run stops and resumes next time.
    #[arg(long = "spotify-max-wait", env = "TUNELAKE_SPOTIFY_MAX_WAIT", default_value_t = 60, value_name = "SECONDS")]
    pub max_wait: u64,
    /// Seconds before a request to Spotify times out (and is retried).
    #[arg(long = "spotify-timeout", env = "TUNELAKE_SPOTIFY_TIMEOUT", default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
}

impl SpotifyArgs {
    fn config(&self, port: u16) -> Result<SpotifyConfig> {
        let client_id = self.client_id.clone().filter(|c| !c.trim().is_empty()).ok_or_else(|| {
            Error::Usage(
                "SPOTIFY_CLIENT_ID is not set: create an app at https://developer.spotify.com/dashboard, \
                 add the redirect URI http://127.0.0.1:8888/callback, and export SPOTIFY_CLIENT_ID=<its client id>"
                    .into(),
            )
        })?;
        for url in [&self.api_url, &self.accounts_url] {
            if !(url.starts_with("https://")
                || url.starts_with("http://127.0.0.1")
                || url.starts_with("http://localhost"))
            {
                return Err(Error::Usage(format!("{url}: Spotify URLs must be https (or a local test server)")));
            }
        }
        Ok(SpotifyConfig {
            client_id,
            client_secret: self.client_secret.clone().filter(|s| !s.is_empty()).map(crate::config::Secret::new),
            accounts_url: self.accounts_url.clone(),
            api_url: self.api_url.clone(),
            redirect_port: port,
            max_retry_after: std::time::Duration::from_secs(self.max_wait),
            timeout: std::time::Duration::from_secs(self.timeout.max(1)),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum IngestSource {
    /// Your recently played tracks from the Spotify Web API (run `tunelake auth spotify` once first).
    #[command(after_help = "Examples:\n  tunelake ingest spotify\n  tunelake ingest spotify --max-enrich 200\n\n\
        The API keeps only your last 50 plays: pull at least every few hours (`tunelake run --every 6h`).")]
    Spotify {
        #[command(flatten)]
        spotify: SpotifyArgs,
        /// At most this many track/artist/album lookups per run; the rest continue next run.
        #[arg(long, default_value_t = 50)]
        max_enrich: usize,
    },
    /// A folder in the Sparkify course format: song_data/ and log_data/ inside.
    #[command(after_help = "Example:\n  tunelake ingest sparkify ../shared/data/sparkify\n\n\
        Every *.json under song_data/ is a song file (one or more JSON objects), every *.json under \
        log_data/ an NDJSON event log of any size: a log of 64 MiB or more is read in pieces, so memory \
        does not grow with it. A file stored before (same sha256) is skipped and counted.")]
    Sparkify {
        /// The folder holding song_data/ and log_data/.
        dir: PathBuf,
    },
    /// Spotify's "Download your data" export: the zip, its folder, or one history file.
    #[command(after_help = "Examples:\n  tunelake ingest spotify-export my_spotify_data.zip\n  \
        tunelake ingest spotify-export ~/Downloads/Spotify\\ Extended\\ Streaming\\ History --user alice")]
    SpotifyExport {
        /// The export: a .zip, a folder, or a single history .json file.
        path: PathBuf,
        /// Whose history it is, when the export does not say (no Userdata.json, no `username` in the records).
        #[arg(long, value_name = "SPOTIFY_USERNAME")]
        user: Option<String>,
        /// Only store and stage; do not rebuild the star (which reports duplicates).
        #[arg(long)]
        no_build: bool,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Recompute every month, even if staging and the model are unchanged since the last build.
    #[arg(long)]
    pub force: bool,
    /// Largest difference (seconds) between a play's length and a song's duration that still matches.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub match_tolerance: f64,
    /// Memory DataFusion may use before spilling to disk, in MiB.
    #[arg(long, default_value_t = 384, value_name = "MIB")]
    pub memory_mib: usize,
    /// Staging rows computed together: the build works through the months in
    /// slices of about this many rows; fewer use less memory.
    #[arg(long, default_value_t = 1_000_000, value_name = "ROWS", value_parser = clap::value_parser!(u64).range(1..))]
    pub slice_rows: u64,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL to run (one statement; it may start with a `--` comment).
    #[arg(conflicts_with_all = ["name", "list"], required_unless_present_any = ["name", "list"], allow_hyphen_values = true)]
    pub sql: Option<String>,
    /// Run a named query from sql/queries/.
    #[arg(long, short)]
    pub name: Option<String>,
    /// List the named queries.
    #[arg(long, conflicts_with = "name")]
    pub list: bool,
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Read the star as it was: a build version (`tunelake status` lists them) or an RFC 3339 time.
    #[arg(long, value_name = "VERSION|TIME")]
    pub as_of: Option<query::AsOf>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Your own named queries, `*.sql` files [default: <lake>/queries]
    #[arg(long, value_name = "DIR")]
    pub sql_dir: Option<PathBuf>,
    /// Memory DataFusion may use before spilling to disk, in MiB [default: a
    /// quarter of this machine's memory, at least 384].
    #[arg(long, value_name = "MIB")]
    pub memory_mib: Option<usize>,
}

/// The zone, period and own queries of `query` and `report`.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// The IANA time zone local times are in (Europe/Berlin) [default: this machine's]
    #[arg(long, env = "TUNELAKE_TZ", value_name = "ZONE")]
    pub tz: Option<crate::model::local::Zone>,
    /// Only the plays of the last DURATION, back from now: 90d, 2w, 12h.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub since: Option<std::time::Duration>,
    /// Only the plays on or after this local date.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<chrono::NaiveDate>,
    /// Only the plays on or before this local date.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: Option<chrono::NaiveDate>,
}

impl ScopeArgs {
    pub fn scope(&self) -> query::Scope {
        let zone = self.tz.clone().unwrap_or_else(crate::model::local::Zone::machine);
        let period = crate::model::local::Period::new(self.since, self.from, self.to, &zone, chrono::Utc::now());
        query::Scope { zone, period }
    }
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// PostgreSQL connection URL or `key=value` string (never printed: it may hold a password);
    /// the libpq variables (PGHOST, PGSSLMODE, ...) and ~/.pgpass fill in what it leaves out.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Resend every partition, not only the ones changed since the last sync.
    #[arg(long)]
    pub full: bool,
    /// `json`: one JSON object with the outcome, for a scheduler or a monitoring check.
    #[arg(long, value_enum, default_value_t = Summary::Text)]
    pub format: Summary,
}

/// How a command reports its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Summary {
    /// Lines for a person, as the work goes on.
    Text,
    /// One JSON object at the end, for a program.
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// How many of the latest runs to list.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// `json`: one JSON object (runs, star version, accounting, last sync), for a monitoring check.
    #[arg(long, value_enum, default_value_t = Summary::Text)]
    pub format: Summary,
}

#[derive(Debug, Args)]
pub struct ReprocessArgs {
    /// Only rebuild staging; leave the star as it is.
    #[arg(long)]
    pub no_build: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A Sparkify folder to ingest (song_data/ and log_data/ inside).
    #[arg(long, value_name = "DIR")]
    pub sparkify: Vec<PathBuf>,
    /// A Spotify data export (zip, folder or file) to import.
    #[arg(long, value_name = "PATH")]
    pub spotify_export: Vec<PathBuf>,
    /// Do not pull the Spotify Web API even though `tunelake auth spotify` was run.
    #[arg(long)]
    pub no_spotify: bool,
    /// Repeat every DURATION (e.g. 30m, 6h, 1d) until SIGTERM or Ctrl-C, finishing the step in progress.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub every: Option<std::time::Duration>,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub spotify: SpotifyArgs,
    /// `json`: one JSON object per cycle (ingests, build, sync), for a scheduler.
    #[arg(long, value_enum, default_value_t = Summary::Text)]
    pub format: Summary,
}

/// `90s`, `30m`, `6h`, `1d`.
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let span = parse_span(s)?;
    if span.is_zero() {
        return Err("the interval must be longer than zero".into());
    }
    Ok(span)
}

/// `30s`, `15m`, `6h`, `1d`, `2w` (or `0s`) as a duration.
pub fn parse_span(s: &str) -> std::result::Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{s}` is not a duration like 30m, 6h or 1d"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(format!("`{s}`: the unit must be s, m, h, d or w")),
    };
    n.checked_mul(unit_secs).map(std::time::Duration::from_secs).ok_or_else(|| format!("`{s}` is too long"))
}

#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// List what would be removed and its bytes, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the files of every star version that was current this recently
    /// (`<n>s|m|h|d|w`; `0s` keeps only the current one and the one last synced).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_span)]
    pub retain: std::time::Duration,
}

/// Parses the command line and runs it.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    // Parsing Sparkify logs allocates on every core at once: ingest keeps
    // glibc's arenas per core, so its threads do not queue for a few.
    if !matches!(cli.command, Command::Ingest(IngestSource::Sparkify { .. })) {
        four_malloc_arenas();
    }
    large_buffers_mapped();
    init_tracing(cli.verbose);
    progress::set_mode(cli.progress);
    let command_line = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    execute(cli, &redact_args(&command_line))
}

/// Four malloc arenas for the whole process, for the commands that run
/// DataFusion: one for each thread that allocates at once (the two tokio
/// workers, the thread that waits on the build, and a sync's). DataFusion
/// frees buffers on other threads than the ones that allocated them, and
/// glibc's default of eight arenas per core then keeps that memory; with
/// fewer than four, the threads queue for the arenas' locks (bench/README,
/// "Design measurements"). Called before the process starts any thread.
fn four_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// Buffers of 4 MiB or more get pages of their own, given back when they
/// are freed: glibc would raise that threshold as large buffers are freed
/// and from then on keep a big day file's buffers in every thread's arena.
/// The trim threshold (the free memory an arena keeps before handing it
/// back) is fixed at 8 MiB, so a freed day buffer is reused rather than
/// returned and faulted in again. The build keeps trimming between slices
/// (`model::build`). Called before the process starts any thread.
fn large_buffers_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// The command line as recorded in the manifest, without a database URL.
fn redact_args(line: &str) -> String {
    let mut out = vec![];
    let mut hide_next = false;
    for word in line.split(' ') {
        if hide_next {
            out.push("***");
            hide_next = false;
        } else if word == "--database-url" {
            out.push(word);
            hide_next = true;
        } else if word.starts_with("--database-url=") {
            out.push("--database-url=***");
        } else {
            out.push(word);
        }
    }
    out.join(" ")
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "tunelake=info,warn",
        2 => "tunelake=debug,info",
        _ => "tunelake=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TUNELAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Error::Runtime)
}

/// `tunelake query`: a named query, the user's own, or SQL, over the star.
fn query_command(a: &QueryArgs, layout: &crate::lake::Layout, out: &mut dyn Write) -> Result<()> {
    let sql_dir = a.sql_dir.clone().unwrap_or_else(|| layout.root().join("queries"));
    let named = query::named_queries(Some(&sql_dir))?;
    if a.list {
        for q in &named {
            let yours = q.file.as_ref().map(|f| format!(" (yours: {})", f.display())).unwrap_or_default();
            writeln!(out, "{:<24} {}{yours}", q.name, q.description).map_err(Error::Output)?;
        }
        return Ok(());
    }
    let q = match (&a.name, &a.sql) {
        (Some(name), _) => named
            .into_iter()
            .find(|q| &q.name == name)
            .ok_or_else(|| crate::model::ModelError::UnknownQuery { name: name.clone() })?,
        (None, Some(sql)) => {
            query::NamedQuery { name: "query".into(), description: String::new(), text: sql.clone(), file: None }
        }
        (None, None) => unreachable!("clap requires SQL, --name or --list"),
    };
    let manifest = Manifest::load(layout)?;
    let memory = a.memory_mib.map_or_else(crate::model::query_memory_default, |m| m << 20);
    let scope = a.scope.scope();
    let rt = runtime()?;
    let batches = rt.block_on(async {
        let ctx = query::star_context(layout, &manifest, memory, a.as_of.as_ref(), &scope).await?;
        query::run_named(&ctx, &q).await
    })?;
    query::write(out, &batches, a.format).map_err(Error::Output)?;
    // Said where a person reads it; CSV and JSON stay clean for programs.
    let zone = format!("local times in {}; plays: {}", scope.zone, scope.period.describe(&scope.zone));
    match a.format {
        Format::Table => writeln!(out, "({zone})").map_err(Error::Output)?,
        _ => {
            let _ = writeln!(std::io::stderr(), "({zone})");
        }
    }
    Ok(())
}

/// `tunelake report`: the summary, and the HTML page with `--html`.
fn report_command(a: &ReportArgs, layout: &crate::lake::Layout, out: &mut dyn Write) -> Result<()> {
    let manifest = Manifest::load(layout)?;
    let scope = a.scope.scope();
    let rt = runtime()?;
    let data = rt.block_on(async {
        let memory = crate::model::query_memory_default();
        let ctx = query::star_context(layout, &manifest, memory, None, &scope).await?;
        crate::report::gather(&ctx, &manifest, &scope).await
    })?;
    crate::report::write_text(out, &data).map_err(Error::Output)?;
    if let Some(path) = &a.html {
        let page = crate::report::html::render(&data);
        std::fs::write(path, page.as_bytes()).map_err(crate::lake::LakeError::io("write", path))?;
        writeln!(out, "\nwrote {} ({} KB)", path.display(), page.len().div_ceil(1024)).map_err(Error::Output)?;
    }
    Ok(())
}

/// Runs a parsed command; `command` is what the manifest records.
pub fn execute(cli: Cli, command: &str) -> Result<()> {
    let settings_db = match &cli.command {
        Command::Sync(a) => a.db.database_url.clone(),
        Command::Run(a) => a.db.database_url.clone(),
        _ => None,
    };
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "tunelake",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Command::Man => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            return page.render(&mut std::io::stdout()).map_err(Error::Output);
        }
        _ => {}
    }
    if let Command::CopyLake { from, to } = &cli.command {
        let m = crate::lake::remote::copy::copy_lake(from, to)?;
        println!(
            "copy-lake: {} files ({} bytes) from {from} to {to}, each one's sha256 checked at {to}",
            m.files, m.bytes
        );
        return Ok(());
    }
    match cli.lake.clone() {
        LakeLocation::Local(dir) => execute_on(cli, Settings::new(dir, settings_db), command),
        LakeLocation::Remote(url) => {
            let remote = std::sync::Arc::new(Remote::open(&url)?);
            let mut settings = Settings::new(remote.cache().root().to_path_buf(), settings_db);
            settings.remote = Some(remote.clone());
            match &cli.command {
                Command::Unlock => {
                    match remote.unlock()? {
                        Some(h) => println!("removed the lock of {} on {url}", h.describe()),
                        None => println!("{url} was not locked"),
                    }
                    Ok(())
                }
                // Each cycle pulls and pushes (`run_cycle`).
                Command::Run(_) => execute_on(cli, settings, command),
                c if c.writes() => {
                    let name = c.name();
                    on_remote(&remote, &name, || execute_on(cli, settings, command))
                }
                _ => {
                    remote.refresh()?;
                    execute_on(cli, settings, command)
                }
            }
        }
    }
}

/// Runs `f` on a bucket's cache between a pull and a push, holding the bucket's lock.
/// What `f` committed before failing is pushed too. A push cut short keeps
/// the lock, so that no one commits over the runs it has not sent yet; this
/// cache's next command takes it over and sends them.
fn on_remote(remote: &Remote, what: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let lease = remote.lease(what)?;
    match remote.pull() {
        Ok(m) => tracing::info!(files = m.files, bytes = m.bytes, removed = m.removed, "pulled from the bucket"),
        Err(e) => {
            remote.release(lease)?;
            return Err(e.into());
        }
    }
    let ran = f();
    let m = remote.push()?;
    tracing::info!(files = m.files, bytes = m.bytes, "pushed to the bucket");
    remote.release(lease)?;
    ran
}

impl Command {
    /// Whether the command changes the lake (and so holds a bucket's lock).
    fn writes(&self) -> bool {
        matches!(
            self,
            Command::Ingest(_)
                | Command::Build(_)
                | Command::Sync(_)
                | Command::Reprocess(_)
                | Command::Run(_)
                | Command::Vacuum(_)
        )
    }

    /// The command's name, for a lock's holder.
    fn name(&self) -> String {
        let debug = format!("{self:?}");
        debug.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("command").to_lowercase()
    }
}

/// Runs a command on the lake in `settings` (a folder, or a bucket's cache).
fn execute_on(cli: Cli, settings: Settings, command: &str) -> Result<()> {
    let layout = &settings.layout;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let out: &mut dyn Write = &mut out;
    match cli.command {
        Command::Ingest(IngestSource::Sparkify { dir }) => {
            let _lock = LakeLock::acquire(layout, "ingest")?;
            let mut manifest = Manifest::load(layout)?;
            let m = source::ingest_sparkify(layout, &mut manifest, &dir, Commit::Wait, command)?;
            print_ingest(out, &m).map_err(Error::Output)
        }
        Command::Ingest(IngestSource::SpotifyExport { path, user, no_build }) => {
            export_command(layout, &path, user.as_deref(), no_build, command, out)
        }
        Command::Ingest(IngestSource::Spotify { spotify, max_enrich }) => {
            pull_command(layout, &spotify, max_enrich, command, out)
        }
        Command::Auth(AuthTarget::Spotify { spotify, no_browser, port }) => {
            auth_command(layout, &spotify, no_browser, port, out)
        }
        Command::Build(a) => build_command(layout, &a, command, out),
        Command::Query(a) => query_command(&a, layout, out),
        Command::Sync(a) => sync_command(&settings, &a, command, out),
        Command::Status(a) => status_command(&settings, &a, out),
        Command::Reprocess(a) => reprocess_command(layout, &a, command, out),
        Command::Run(a) => run_command(&settings, &a, command, out),
        Command::Report(a) => report_command(&a, layout, out),
        Command::Verify(a) => verify_command(layout, &a, out),
        Command::Vacuum(a) => vacuum_command(&settings, &a, command, out),
        Command::Unlock => {
            writeln!(out, "{} is a folder: its lock is released when the run holding it ends", layout.root().display())
                .map_err(Error::Output)
        }
        Command::CopyLake { .. } | Command::Completions { .. } | Command::Man => {
            unreachable!("answered before a lake is opened")
        }
    }
}

/// `ingest spotify-export`: the export's history files, then a build unless told not to.
fn export_command(
    layout: &Layout,
    path: &std::path::Path,
    user: Option<&str>,
    no_build: bool,
    command: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let _lock = LakeLock::acquire(layout, "ingest spotify-export")?;
    let mut manifest = Manifest::load(layout)?;
    let m = source::ingest_spotify_export(layout, &mut manifest, path, user, command)?;
    print_ingest(out, &m).map_err(Error::Output)?;
    if !no_build {
        let b = runtime()?.block_on(crate::model::build::build(
            layout,
            &mut manifest,
            &BuildOptions::default(),
            command,
        ))?;
        print_build(out, &b).map_err(Error::Output)?;
    }
    Ok(())
}

/// `ingest spotify`: one pull of the Web API; exit 75 when it stopped early.
fn pull_command(
    layout: &Layout,
    spotify: &SpotifyArgs,
    max_enrich: usize,
    command: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let cfg = spotify.config(8888)?;
    let _lock = LakeLock::acquire(layout, "ingest spotify")?;
    let mut manifest = Manifest::load(layout)?;
    let opts = source::spotify_api::PullOptions { max_enrich };
    let m = source::spotify_api::pull(layout, &mut manifest, &cfg, &opts, command, &std::thread::sleep)?;
    print_pull(out, &m).map_err(Error::Output)?;
    match &m.stopped {
        Some(stop) => Err(stopped_early(stop)),
        None => Ok(()),
    }
}

/// `auth spotify`: the login, tokens kept in the lake's state/ (0600).
fn auth_command(
    layout: &Layout,
    spotify: &SpotifyArgs,
    no_browser: bool,
    port: u16,
    out: &mut dyn Write,
) -> Result<()> {
    let cfg = spotify.config(port)?;
    std::fs::create_dir_all(layout.state_dir())
        .map_err(|e| crate::lake::LakeError::io("create directory", layout.state_dir())(e))?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut say = std::io::stderr();
    source::spotify_auth::login(&cfg, layout, no_browser, &mut input, &mut say)?;
    writeln!(out, "logged in to Spotify; tokens saved in {} (mode 0600)", layout.spotify_token().display())
        .map_err(Error::Output)
}

fn build_command(layout: &Layout, a: &BuildArgs, command: &str, out: &mut dyn Write) -> Result<()> {
    if !(a.match_tolerance >= 0.0 && a.match_tolerance.is_finite()) {
        return Err(Error::Usage(format!(
            "--match-tolerance must be a number of seconds >= 0, not {}",
            a.match_tolerance
        )));
    }
    let opts = BuildOptions {
        duration_tolerance_s: a.match_tolerance,
        memory_limit: a.memory_mib << 20,
        force: a.force,
        slice_rows: a.slice_rows,
        ..BuildOptions::default()
    };
    let _lock = LakeLock::acquire(layout, "build")?;
    let mut manifest = Manifest::load(layout)?;
    let m = runtime()?.block_on(crate::model::build::build(layout, &mut manifest, &opts, command))?;
    print_build(out, &m).map_err(Error::Output)
}

fn sync_command(settings: &Settings, a: &SyncArgs, command: &str, out: &mut dyn Write) -> Result<()> {
    let layout = &settings.layout;
    let url = settings.database_url.as_ref().ok_or(SinkError::NoDatabase)?;
    let _lock = LakeLock::acquire(layout, "sync")?;
    let mut manifest = Manifest::load(layout)?;
    let m = sink::sync(layout, &manifest, url.expose(), &SyncOptions { full: a.full, ..Default::default() })?;
    sink::record(layout, &mut manifest, &m, command)?;
    let mut report = Report::new(out, a.format);
    report.step("sync", &m, |out| print_sync(out, &m))?;
    report.finish()
}

fn status_command(settings: &Settings, a: &StatusArgs, out: &mut dyn Write) -> Result<()> {
    let layout = &settings.layout;
    let manifest = Manifest::load(layout)?;
    let lake = match &settings.remote {
        Some(remote) => remote.url().to_string(),
        None => layout.root().display().to_string(),
    };
    match a.format {
        Summary::Text => status::render(out, &manifest, &lake, a.runs).map_err(Error::Output),
        Summary::Json => writeln!(out, "{}", status::json(&manifest, &lake, a.runs)?).map_err(Error::Output),
    }
}

fn reprocess_command(layout: &Layout, a: &ReprocessArgs, command: &str, out: &mut dyn Write) -> Result<()> {
    let _lock = LakeLock::acquire(layout, "reprocess")?;
    let mut manifest = Manifest::load(layout)?;
    if manifest.raw_files()?.is_empty() {
        return Err(crate::model::ModelError::NothingIngested.into());
    }
    let m = source::reprocess(layout, &mut manifest, command)?;
    writeln!(
        out,
        "reprocess: {} raw files parsed again into {} staging files",
        m.files_already_stored, m.staging_files
    )
    .map_err(Error::Output)?;
    for acc in &m.accounting {
        writeln!(out, "  {}", status::accounting_line(acc)).map_err(Error::Output)?;
    }
    if !a.no_build {
        let m = runtime()?.block_on(crate::model::build::build(
            layout,
            &mut manifest,
            &BuildOptions::default(),
            command,
        ))?;
        print_build(out, &m).map_err(Error::Output)?;
    }
    Ok(())
}

/// `run`: one cycle, or with `--every` one per tick until SIGTERM or Ctrl-C.
fn run_command(settings: &Settings, a: &RunArgs, command: &str, out: &mut dyn Write) -> Result<()> {
    let spotify_on = !a.no_spotify && settings.layout.spotify_token().exists();
    if a.sparkify.is_empty() && a.spotify_export.is_empty() && !spotify_on {
        return Err(Error::Usage(
            "nothing to run: give a source (e.g. `tunelake run --sparkify data/sample/sparkify`) \
             or log in with `tunelake auth spotify`"
                .into(),
        ));
    }
    let spotify = if spotify_on { Some(a.spotify.config(8888)?) } else { None };
    let Some(every) = a.every else {
        return run_cycle(settings, a, spotify.as_ref(), command, out);
    };
    // The step in progress finishes; a second Ctrl-C stops at once.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone()).map_err(Error::Runtime)?;
        signal_hook::flag::register(sig, stop.clone()).map_err(Error::Runtime)?;
    }
    let stopping = || stop.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let started = std::time::Instant::now();
        if a.format == Summary::Text {
            writeln!(out, "--- cycle at {}", now_rfc3339()).map_err(Error::Output)?;
        }
        if let Err(e) = run_cycle(settings, a, spotify.as_ref(), command, out) {
            // A failed cycle is logged and tried again at the next tick.
            tracing::error!(error = %error_chain(&e), "cycle failed; retrying at the next tick");
            let _ = writeln!(std::io::stderr(), "error: {}", error_chain(&e));
        }
        out.flush().map_err(Error::Output)?;
        while !stopping() && started.elapsed() < every {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        if stopping() {
            return writeln!(out, "stopped").map_err(Error::Output);
        }
    }
}

/// `verify`: the lake against its ledger; exit 4 naming each problem and its repair.
fn verify_command(layout: &Layout, a: &VerifyArgs, out: &mut dyn Write) -> Result<()> {
    let _lock = LakeLock::acquire(layout, "verify")?;
    let manifest = Manifest::load(layout)?;
    let delta = crate::lake::verify::DeltaState {
        versions: crate::sql::STAR_TABLES
            .iter()
            .map(|t| Ok((t.name.to_string(), crate::lake::delta::latest_version(layout, t.name)?)))
            .collect::<Result<_>>()?,
        files: runtime()?.block_on(crate::lake::delta::live_files(layout, None))?,
    };
    let m = crate::lake::verify::verify(layout, &manifest, &delta, a.deep)?;
    for p in &m.problems {
        writeln!(out, "problem: {}\n  repair: {}", p.what, p.repair).map_err(Error::Output)?;
    }
    let verdict = if m.problems.is_empty() { "ok".to_string() } else { format!("{} problem(s)", m.problems.len()) };
    writeln!(
        out,
        "verify: {} raw files ({} bytes), {} staging files, {} star files{}: {verdict}",
        m.raw_files,
        m.raw_bytes,
        m.staging_files,
        m.star_files,
        if a.deep { " (hashed)" } else { "" },
    )
    .map_err(Error::Output)?;
    if !m.problems.is_empty() {
        return Err(crate::lake::LakeError::Damaged { problems: m.problems.len() }.into());
    }
    Ok(())
}

/// `vacuum`: what no version within the retention needs, removed (in the bucket too) and recorded.
fn vacuum_command(settings: &Settings, a: &VacuumArgs, command: &str, out: &mut dyn Write) -> Result<()> {
    let layout = &settings.layout;
    let _lock = LakeLock::acquire(layout, "vacuum")?;
    let mut manifest = Manifest::load(layout)?;
    let retain = chrono::Duration::from_std(a.retain).map_err(|_| Error::Usage("--retain is too long".into()))?;
    let cutoff = (chrono::Utc::now() - retain).timestamp_millis();
    let delta_live = runtime()?.block_on(crate::lake::delta::live_files(layout, Some(cutoff)))?;
    let opts = vacuum::VacuumOptions { retain, dry_run: a.dry_run, delta_live };
    let m = vacuum::vacuum(layout, &manifest, &opts)?;
    if !a.dry_run {
        if let Some(remote) = &settings.remote {
            let rels: Vec<String> = m
                .files
                .iter()
                .filter_map(|(f, _)| Some(f.strip_prefix(layout.root()).ok()?.to_string_lossy().into_owned()))
                .collect();
            remote.delete(&rels)?;
        }
        vacuum::record(layout, &mut manifest, &m, command)?;
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for (f, bytes) in &m.files {
        writeln!(out, "{verb} {} ({bytes} bytes)", f.display()).map_err(Error::Output)?;
    }
    let dry = if a.dry_run { " (dry run)" } else { "" };
    writeln!(out, "vacuum: {} files, {} bytes{dry}", m.files.len(), m.bytes).map_err(Error::Output)
}

/// One error and its causes on one line.
fn error_chain(e: &Error) -> String {
    e.messages().join(": ")
}

/// What a command reports: text as the work goes on, or (`--format json`)
/// one JSON object when it is done.
struct Report<'a> {
    out: &'a mut dyn Write,
    json: Option<serde_json::Map<String, serde_json::Value>>,
}

impl<'a> Report<'a> {
    fn new(out: &'a mut dyn Write, format: Summary) -> Self {
        Report { out, json: (format == Summary::Json).then(serde_json::Map::new) }
    }

    /// A step's outcome: its text now, or `value` under `key`.
    fn step<T: serde::Serialize>(
        &mut self,
        key: &str,
        value: &T,
        text: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        self.value(key, value);
        self.text(text)
    }

    /// As [`Report::step`], for a step that may come several times: `key` holds a list.
    fn step_of_many<T: serde::Serialize>(
        &mut self,
        key: &str,
        value: &T,
        text: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        if let Some(json) = &mut self.json {
            let list = json.entry(key).or_insert_with(|| serde_json::Value::Array(vec![]));
            if let serde_json::Value::Array(list) = list {
                list.push(serde_json::to_value(value).expect("a summary serializes"));
            }
        }
        self.text(text)
    }

    fn value<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        if let Some(json) = &mut self.json {
            json.insert(key.into(), serde_json::to_value(value).expect("a summary serializes"));
        }
    }

    fn text(&mut self, text: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
        if self.json.is_none() {
            text(self.out).map_err(Error::Output)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        if let Some(json) = self.json {
            writeln!(self.out, "{}", serde_json::Value::Object(json)).map_err(Error::Output)?;
        }
        Ok(())
    }
}

/// `tunelake run` once: ingest every configured source, build, sync when a database is configured.
fn run_cycle(
    settings: &Settings,
    a: &RunArgs,
    spotify: Option<&SpotifyConfig>,
    command: &str,
    out: &mut dyn Write,
) -> Result<()> {
    match &settings.remote {
        Some(remote) => on_remote(remote, "run", || cycle(settings, a, spotify, command, out)),
        None => cycle(settings, a, spotify, command, out),
    }
}

/// One ingest, build and sync on the lake in `settings`.
fn cycle(
    settings: &Settings,
    a: &RunArgs,
    spotify: Option<&SpotifyConfig>,
    command: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let layout = &settings.layout;
    let _lock = LakeLock::acquire(layout, "run")?;
    let mut manifest = Manifest::load(layout)?;
    let mut report = Report::new(out, a.format);
    report.value("cycle_at", &now_rfc3339());
    for dir in &a.sparkify {
        // Its files are synced while the next steps go on; the next commit waits for them.
        let m = source::ingest_sparkify(layout, &mut manifest, dir, Commit::Behind, command)?;
        report.step_of_many("ingest", &m, |out| print_ingest(out, &m))?;
    }
    for path in &a.spotify_export {
        let m = source::ingest_spotify_export(layout, &mut manifest, path, None, command)?;
        report.step_of_many("ingest", &m, |out| print_ingest(out, &m))?;
    }
    // A pull that stopped early still lets the cycle build and sync what it
    // has; the cycle then says so with its exit code.
    let mut stopped = None;
    if let Some(cfg) = spotify {
        let opts = source::spotify_api::PullOptions { max_enrich: 50 };
        let m = source::spotify_api::pull(layout, &mut manifest, cfg, &opts, command, &std::thread::sleep)?;
        report.step("spotify_pull", &m, |out| print_pull(out, &m))?;
        stopped = m.stopped;
    }
    // With a database, the sync's transaction opens now and loads each month
    // file the build writes while the build goes on (`sink::Loader`); it
    // commits after the build, or rolls back if the build fails.
    let mut loader =
        settings.database_url.as_ref().map(|url| sink::Loader::start(layout, url.expose(), &SyncOptions::default()));
    let opts = match &loader {
        Some(loader) => BuildOptions {
            on_star_part: Some(loader.hook()),
            slice_rows: crate::model::build::LOADING_SLICE_ROWS,
            ..Default::default()
        },
        None => BuildOptions::default(),
    };
    let rt = runtime()?;
    let m = rt.block_on(crate::model::build::build(layout, &mut manifest, &opts, command))?;
    if let Some(loader) = &mut loader {
        loader.built(&manifest);
    }
    report.step("build", &m, |out| print_build(out, &m))?;
    let top = rt.block_on(top_artists(layout, &manifest))?;
    drop(rt);
    report.text(|out| {
        writeln!(out, "\ntop artists:")?;
        query::write(out, &top, Format::Table)
    })?;
    finish_sync(layout, &mut manifest, loader, command, &mut report)?;
    if let Some(stop) = &stopped {
        report.value("stopped", stop);
    }
    report.finish()?;
    match &stopped {
        Some(stop) => Err(stopped_early(stop)),
        None => Ok(()),
    }
}

/// The five most played artists, which a cycle prints.
async fn top_artists(layout: &Layout, manifest: &Manifest) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
    let scope = query::Scope::default();
    let ctx = query::star_context(layout, manifest, crate::model::DEFAULT_MEMORY_LIMIT, None, &scope).await?;
    let top = sql::query("top_artists").expect("registered").text;
    Ok(query::run(&ctx, &format!("SELECT * FROM ({top}) LIMIT 5")).await?)
}

/// Commits the cycle's sync and records it, or says there was none to do.
fn finish_sync(
    layout: &Layout,
    manifest: &mut Manifest,
    loader: Option<sink::Loader>,
    command: &str,
    report: &mut Report<'_>,
) -> Result<()> {
    match loader {
        Some(loader) => {
            let m = loader.finish()?;
            sink::record(layout, manifest, &m, command)?;
            report.step("sync", &m, |out| print_sync(out, &m))?;
        }
        None => {
            report.value("sync", &serde_json::Value::Null);
            report.text(|out| {
                writeln!(
                    out,
                    "\nno database configured: skipped sync (set DATABASE_URL or --database-url to load PostgreSQL)\n\
                     next: `tunelake query --list`, `tunelake status`"
                )
            })?;
        }
    }
    Ok(())
}

/// The error a Spotify pull that stopped early ends its command with (exit 75).
fn stopped_early(stop: &source::spotify_api::Stop) -> Error {
    Error::StoppedEarly(match stop {
        source::spotify_api::Stop::QuotaExceeded => "Spotify stopped the pull: QUOTA_EXCEEDED for this app".into(),
        source::spotify_api::Stop::RateLimited { retry_after_s } => {
            format!("Spotify stopped the pull: rate limited for {retry_after_s} s, past --spotify-max-wait")
        }
    })
}

fn print_pull(out: &mut dyn Write, m: &source::spotify_api::PullMetrics) -> std::io::Result<()> {
    writeln!(
        out,
        "ingest spotify: user {}: {} page(s), {} items, {} new plays, {} rejected; {} looked up, {} left for next time; {} requests",
        if m.user.is_empty() { "not known (Spotify did not answer /v1/me)" } else { &m.user },
        m.pages,
        m.items,
        m.plays_new,
        m.rejected,
        m.enriched,
        m.enrich_left,
        m.requests
    )?;
    for g in &m.gaps {
        writeln!(
            out,
            "  coverage gap: plays between {} and {} may be lost (the API keeps only the last 50; pull more often)",
            g.from, g.to
        )?;
    }
    match &m.stopped {
        Some(source::spotify_api::Stop::QuotaExceeded) => writeln!(
            out,
            "  stopped: Spotify says QUOTA_EXCEEDED for this app; what was received is stored, the rest waits for the next run"
        )?,
        Some(source::spotify_api::Stop::RateLimited { retry_after_s }) => writeln!(
            out,
            "  stopped: rate limited (Retry-After {retry_after_s} s is past --spotify-max-wait); the next run resumes"
        )?,
        None => {}
    }
    Ok(())
}

/// An ingest's summary: the files stored, then where every record went.
fn print_ingest(out: &mut dyn Write, m: &IngestMetrics) -> std::io::Result<()> {
    let mb = m.bytes_new as f64 / 1e6;
    let (new, old) = (m.files_new, m.files_already_stored);
    if !m.files.is_empty() {
        // An export names each history file it found and what became of it.
        writeln!(
            out,
            "ingest spotify-export: {} history files: {new} new ({mb:.1} MB), {old} already stored",
            m.files.len()
        )?;
        for f in &m.files {
            writeln!(out, "  {}: {f}", f.origin)?;
        }
    } else if m.committed {
        writeln!(out, "ingest: run {}: {new} new files ({mb:.1} MB) stored, {old} already stored", m.run)?;
    } else {
        return writeln!(out, "ingest: nothing new: all {old} files are already stored; the lake is unchanged");
    }
    for acc in &m.accounting {
        writeln!(out, "  {}", status::accounting_line(acc))?;
    }
    print_rejects(out, m)
}

/// The first rejected or changed records of an ingest, by file and line.
fn print_rejects(out: &mut dyn Write, m: &IngestMetrics) -> std::io::Result<()> {
    for r in m.rejects.iter().take(10) {
        writeln!(out, "  {} {}:{}: {}", r.outcome(), r.file, r.line, r.reason)?;
    }
    let total: u64 = m.accounting.iter().map(|a| a.rejected + a.nul_removed).sum();
    if total > 10 {
        writeln!(out, "  ... {} more (`tunelake status` lists them)", total - 10)?;
    }
    Ok(())
}

fn print_build(out: &mut dyn Write, m: &BuildMetrics) -> std::io::Result<()> {
    if m.committed {
        writeln!(out, "build: star version {}", m.version)?;
    } else {
        writeln!(
            out,
            "build: star version {} is up to date (staging and model unchanged; --force rebuilds)",
            m.version
        )?;
    }
    if m.committed {
        match &m.full_reason {
            Some(why) => writeln!(out, "  computed all {} month(s) ({why})", m.months)?,
            None => writeln!(
                out,
                "  computed {} of {} month(s){} (the others kept their files); {}",
                m.months_computed,
                m.months,
                if m.catalogue_changed { ", with those whose plays new catalogue songs change" } else { "" },
                if m.layered.is_empty() {
                    "dimensions recomputed".to_string()
                } else {
                    format!("{}: new keys added as a layer; other dimensions recomputed", m.layered.join(", "))
                }
            )?,
        }
    }
    for t in &m.tables {
        writeln!(out, "  {:<20} {:>10} rows  {} file(s), {} unchanged", t.name, t.rows, t.parts, t.parts_unchanged)?;
    }
    for (what, n) in m.duplicates.iter().filter(|(_, n)| **n > 0) {
        writeln!(out, "  duplicates: {n} ({what})")?;
    }
    if m.plays > 0 {
        writeln!(
            out,
            "  song match rate: {} of {} Sparkify plays ({:.2}%)",
            m.matched,
            m.plays,
            100.0 * m.match_rate()
        )?;
    }
    Ok(())
}

fn print_sync(out: &mut dyn Write, m: &SyncMetrics) -> std::io::Result<()> {
    writeln!(
        out,
        "sync: lake version {} to {}: {} parts sent ({} rows), {} unchanged, {} removed; {} rows inserted or changed, {} deleted",
        m.lake_version,
        m.target,
        m.parts_sent,
        m.rows_sent,
        m.parts_unchanged,
        m.parts_removed,
        m.rows_changed.values().sum::<u64>(),
        m.rows_deleted
    )?;
    if m.parts_sent_during_build > 0 {
        writeln!(out, "  {} of the parts were sent while the build was still running", m.parts_sent_during_build)?;
    }
    if !m.migrations_applied.is_empty() {
        writeln!(out, "  applied: {}", m.migrations_applied.join(", "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_command_lines_hide_database_urls() {
        assert_eq!(redact_args("sync --database-url postgresql://u:pw@h/d --full"), "sync --database-url *** --full");
        assert_eq!(redact_args("sync --database-url=postgresql://u:pw@h/d"), "sync --database-url=***");
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
