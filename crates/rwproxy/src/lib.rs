//! The rwproxy binary's library half: configuration, wiring one node together, logging and the
//! demo cluster, and embedding a node in a Rust app ([`embed`]). `main.rs` only parses the
//! command line.

pub mod config;
pub mod demo;
pub mod embed;
pub mod healthcheck;
pub mod logging;
pub mod node;
pub mod probe;
pub mod signals;
mod tls;

pub use node::Node;
