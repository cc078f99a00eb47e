//! The rwproxy binary's library half: configuration, wiring one node together, logging, the
//! demo cluster, the `status` command, and embedding a node in a Rust app ([`embed`]).
//! `main.rs` only parses the command line.

pub mod config;
pub mod connect_check;
pub mod demo;
pub mod embed;
pub mod healthcheck;
pub mod logging;
pub mod node;
pub mod probe;
pub mod reload_command;
pub mod signals;
pub mod status;
mod tls;

pub use node::Node;

/// The single-threaded runtime of a short client command (`status`, `health`); `None` after
/// saying on stderr why it could not start.
pub(crate) fn command_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            None
        }
    }
}
