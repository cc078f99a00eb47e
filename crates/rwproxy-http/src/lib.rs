//! rwproxy-http owns everything that speaks HTTP: the listeners, the request pipeline (health,
//! classification, the consistency wait, routing), the upstream pool that forwards to the local
//! app and to the primary's rwproxy, rwproxy's own responses, metrics and the admin endpoints.

pub mod admin;
pub mod body;
pub mod body_clock;
pub mod consistency;
pub mod freshness;
pub mod head;
pub mod health;
pub mod history;
pub mod hygiene;
pub mod live;
pub mod metrics;
pub mod params;
pub mod peer_auth;
pub mod proxy;
pub mod respond;
pub mod server;
pub mod session;
pub mod tls;
pub mod upstream;

pub use admin::Admin;
pub use body::Body;
pub use consistency::{ConsistencyParams, NoProbe, PositionProbe};
pub use health::{HealthView, SharedHealth};
pub use history::History;
pub use live::{Live, LiveDuration, LiveService};
pub use metrics::Metrics;
pub use params::{HealthParams, PrimaryUrl, ProxyParams};
pub use proxy::{Draining, Proxy, ProxyService, RequestId, RwproxyLayer};
pub use server::{serve, serve_service, serve_with_tls, ListenerLimits};
pub use session::SessionMode;
pub use upstream::headers::ClientInfo;
