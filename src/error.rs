//! The crate's error: one enum per stage, gathered into [`Error`], and the exit
//! code each class of failure maps to. Messages describe their own layer and
//! leave the cause to `source()`; `main` prints the whole chain.

use crate::lake::LakeError;
use crate::lake::remote::RemoteError;
use crate::model::ModelError;
use crate::sink::SinkError;
use crate::source::SourceError;

/// Exit codes by class, so scripts can tell a bad flag from a dead database.
pub mod exit {
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const INPUT: i32 = 3;
    pub const LAKE: i32 = 4;
    pub const DATABASE: i32 = 5;
    pub const NETWORK: i32 = 6;
    /// Stopped early for a reason that will pass (Spotify's quota, a
    /// Retry-After past the limit): try again later (sysexits' EX_TEMPFAIL).
    pub const TEMPFAIL: i32 = 75;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}; what was received is stored, and the next run goes on from there")]
    StoppedEarly(String),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    /// The process exit code for this error's class.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Source(SourceError::NotSparkifyDir { .. } | SourceError::Config(_)) => exit::USAGE,
            Error::Source(
                SourceError::NotLoggedIn
                | SourceError::Reauth
                | SourceError::Auth(_)
                | SourceError::Http { .. }
                | SourceError::Api { .. },
            ) => exit::NETWORK,
            Error::Source(SourceError::Lake(_)) => exit::LAKE,
            Error::Source(_) => exit::INPUT,
            Error::Lake(_) => exit::LAKE,
            Error::Model(
                ModelError::NothingIngested
                | ModelError::NothingBuilt
                | ModelError::UnknownQuery { .. }
                | ModelError::NoSuchVersion { .. }
                | ModelError::ReadOnly { .. },
            ) => exit::USAGE,
            Error::Model(ModelError::Query(_)) => exit::USAGE,
            Error::Model(_) => exit::LAKE,
            Error::Sink(
                crate::sink::SinkError::NothingBuilt
                | crate::sink::SinkError::NoDatabase
                | crate::sink::SinkError::Setting(_)
                | crate::sink::SinkError::BadUrl(_),
            ) => exit::USAGE,
            Error::Sink(_) => exit::DATABASE,
            Error::Remote(RemoteError::Open { .. } | RemoteError::Store { .. }) => exit::NETWORK,
            Error::Remote(RemoteError::Runtime(_)) => exit::FAILURE,
            Error::Remote(_) => exit::LAKE,
            Error::StoppedEarly(_) => exit::TEMPFAIL,
            Error::Output(_) | Error::Runtime(_) => exit::FAILURE,
        }
    }
}

impl Error {
    /// This error's message, then each cause's that does not repeat one
    /// already said (some libraries put their source in their own message).
    pub fn messages(&self) -> Vec<String> {
        let mut said = vec![self.to_string()];
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !said.iter().any(|s| s.contains(&text)) {
                said.push(text);
            }
            cause = c.source();
        }
        said
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
