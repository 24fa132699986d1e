//! The one error type of the `thresher` library.

use std::path::PathBuf;

/// Everything that can stop a command. Messages say what, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The I/O error is part of the message rather than a `source`, so that
    /// `{:#}` chains do not print it twice.
    #[error("{what} '{location}': {cause}")]
    Io {
        what: &'static str,
        location: String,
        cause: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{0}")]
    Storage(String),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Stage(#[from] thresher_stages::Error),
    #[error(transparent)]
    Manifest(#[from] thresher_manifests::Error),
    /// A stage's outputs were made with another configuration.
    #[error("{0}")]
    ConfigChanged(String),
    /// A step cannot start because an earlier step or stage is incomplete.
    #[error("{0}")]
    NotReady(String),
    /// More records were quarantined than `max_error_rate` allows.
    #[error("{0}")]
    TooManyErrors(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(what: &'static str, location: impl std::fmt::Display, cause: std::io::Error) -> Self {
        Error::Io {
            what,
            location: location.to_string(),
            cause,
        }
    }
}
