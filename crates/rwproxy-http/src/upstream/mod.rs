//! Talking to upstreams (the local app, the primary's rwproxy): a small keep-alive pool that
//! knows exactly whether a request left this node, and the header rules of a proxy hop.

pub mod breaker;
pub mod headers;
pub mod multiplex;
pub mod pool;
pub(crate) mod sniff;
pub mod warm;

pub use pool::{Pool, SendError, Target};
