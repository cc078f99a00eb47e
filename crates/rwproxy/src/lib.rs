//! The rwproxy binary's library half: configuration, wiring one node together, logging, the
//! demo cluster, the `status` command, and embedding a node in a Rust app ([`embed`]).
//! `main.rs` only parses the command line.

pub mod config;
pub mod demo;
pub mod embed;
pub mod healthcheck;
pub mod logging;
pub mod node;
pub mod probe;
pub mod signals;
pub mod status;
mod tls;

pub use node::Node;
