//! Why a source could not tell the cluster state. The `Display` text becomes
//! `NodeState::problem`, so it must stay the same for the same failure (no timestamps, no lag
//! values): the warning is logged once per change of text.

use std::path::PathBuf;
use std::time::Duration;

/// A source failure; published as the reason of an unknown state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// The LiteFS mount directory is missing or unusable.
    #[error("litefs mount {}: {reason}", path.display())]
    Mount { path: PathBuf, reason: String },
    /// A LiteFS file is missing, unreadable or malformed.
    #[error("litefs file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// A configured database name cannot be a file in the mount.
    #[error("litefs database name {0:?} is not a plain file name")]
    DatabaseName(String),
    /// The blocking read of the mount did not come back in time (a hung FUSE mount).
    #[error("reading the litefs mount did not finish within {0:?}")]
    ReadStuck(Duration),
    /// The blocking read task itself failed.
    #[error("reading the litefs mount failed: {0}")]
    ReadTask(String),
    /// The LiteFS API could not confirm a primary claim.
    #[error("litefs api {url}: {reason}")]
    Api { url: String, reason: String },
    /// The status URL did not give a usable document.
    #[error("status url {url}: {reason}")]
    Status { url: String, reason: String },
    /// The local PostgreSQL server could not be reached or did not answer as expected.
    #[error("postgres {target}: {reason}")]
    Postgres { target: String, reason: String },
    /// The local MySQL or MariaDB server could not be reached or did not answer as expected.
    #[error("mysql {target}: {reason}")]
    Mysql { target: String, reason: String },
    /// The HTTP client could not be built.
    #[error("cannot build http client: {0}")]
    Client(String),
}
