//! **The request pipeline, top to bottom.** Start reading here: every request rwproxy proxies
//! goes through these layers in this order, each a `tower::Layer` in its own module.
//!
//! | layer | what it does |
//! |---|---|
//! | [`RequestIdLayer`] | one request id per request (the client's when sane), sent upstream and returned |
//! | [`MetricsLayer`] | in-flight gauge; requests by class, route and status; refusals by code |
//! | `SetSensitiveRequestHeaders` (tower-http) and [`AccessLogLayer`], when `log.access` is on | `Cookie` and `Authorization` marked sensitive (never printed by a log of the request); one `rwproxy::access` line per request |
//! | [`CatchPanicLayer`] | a panic becomes `500 internal` |
//! | [`UpgradeLayer`] | WebSocket and other upgrades: a tunnel once the upstream answers `101` |
//! | [`HealthLayer`] | answers the health path |
//! | [`ClassifyLayer`] | read / write / passthrough into the request's extensions |
//! | [`AdmissionLayer`] | body limit (`413 too-large`), the forwarded-by marker and its secret |
//! | [`ConsistencyLayer`] | a read waits for its client's position token |
//! | [`RouteLayer`] | `decide()`: the inner service, the primary, fly-replay, redirect or a refusal |
//! | inner service | the binary: [`AppService`] (the local app over the pool); embedded: the app's own router |
//!
//! The primary forwarder (`forward.rs`) is the route's other leaf; tokens are written in
//! `tokens.rs`.

use std::sync::Arc;

use http::header::{AUTHORIZATION, COOKIE};
use tower::layer::util::{Identity, Stack};
use tower::util::Either;
use tower::{Layer, ServiceBuilder};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use super::access_log::AccessLogLayer;
use super::admission::AdmissionLayer;
use super::app::AppService;
use super::classify::ClassifyLayer;
use super::consistency::ConsistencyLayer;
use super::health::HealthLayer;
use super::metrics::MetricsLayer;
use super::panic::CatchPanicLayer;
use super::request_id::RequestIdLayer;
use super::route::RouteLayer;
use super::upgrade::UpgradeLayer;
use super::Proxy;

/// The layers of [`RwproxyLayer`], outermost last (as `ServiceBuilder` nests them).
type Layers = Stack<
    RouteLayer,
    Stack<
        ConsistencyLayer,
        Stack<
            AdmissionLayer,
            Stack<
                ClassifyLayer,
                Stack<
                    HealthLayer,
                    Stack<
                        UpgradeLayer,
                        Stack<
                            CatchPanicLayer,
                            Stack<
                                Either<
                                    Stack<
                                        AccessLogLayer,
                                        Stack<SetSensitiveRequestHeadersLayer, Identity>,
                                    >,
                                    Identity,
                                >,
                                Stack<MetricsLayer, Stack<RequestIdLayer, Identity>>,
                            >,
                        >,
                    >,
                >,
            >,
        >,
    >,
>;

/// The whole pipeline of one node as one layer: it wraps the service that serves what this
/// node serves itself (the binary's [`AppService`], or an embedding app's router).
///
/// ```
/// # fn demo(proxy: &rwproxy_http::Proxy) {
/// use rwproxy_http::proxy::AppService;
/// // What the binary runs on its proxy listener:
/// let service = tower::ServiceBuilder::new()
///     .layer(proxy.layer())
///     .service(AppService::new(proxy));
/// # let _ = service;
/// # }
/// ```
#[derive(Clone)]
pub struct RwproxyLayer {
    layers: ServiceBuilder<Layers>,
}

impl std::fmt::Debug for RwproxyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RwproxyLayer")
    }
}

impl<S> Layer<S> for RwproxyLayer {
    type Service = <Layers as Layer<S>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.layers.service(inner)
    }
}

/// The binary's service on the proxy listener: the pipeline around the local app.
pub type ProxyService = <RwproxyLayer as Layer<AppService>>::Service;

/// Assembles the pipeline: the one place that says in which order a request meets the layers.
pub(super) fn layers(proxy: &Proxy) -> RwproxyLayer {
    let params = &proxy.shared.params;
    // Only the access log prints anything of a request, so only it pays for the marking.
    let access_log = params.access_log.then(|| {
        let sensitive: Arc<[http::HeaderName]> = Arc::new([COOKIE, AUTHORIZATION]);
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::from_shared(sensitive))
            .layer(AccessLogLayer)
            .into_inner()
    });
    let layers = ServiceBuilder::new()
        .layer(proxy.request_ids.clone())
        .layer(MetricsLayer::new(proxy.shared.metrics.clone()))
        .option_layer(access_log)
        .layer(CatchPanicLayer)
        .layer(UpgradeLayer::new(params.upgrade_idle_timeout))
        .layer(HealthLayer::new(proxy))
        .layer(ClassifyLayer::new(proxy))
        .layer(AdmissionLayer::new(proxy))
        .layer(ConsistencyLayer::new(proxy))
        .layer(RouteLayer::new(proxy));
    RwproxyLayer { layers }
}
