//! Fresh position reads for tokens issued right after a write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rwproxy_cluster::PositionReader;
use rwproxy_core::Reading;
use rwproxy_http::PositionProbe;

/// Adapts the cluster crate's reader to the HTTP layer's probe trait.
#[derive(Debug, Clone)]
pub struct SourceProbe(pub PositionReader);

impl PositionProbe for SourceProbe {
    fn current(&self) -> Pin<Box<dyn Future<Output = Option<Reading>> + Send + '_>> {
        Box::pin(self.0.read())
    }

    fn confirms_primary(&self) -> Pin<Box<dyn Future<Output = Option<bool>> + Send + '_>> {
        Box::pin(self.0.confirms_primary())
    }

    fn reads_positions(&self) -> bool {
        self.0.reads_positions()
    }

    fn confirms_primaries(&self) -> bool {
        self.0.confirms_primaries()
    }
}

/// The probe for a node's cluster source.
pub fn for_source(node: Arc<str>, spec: &rwproxy_cluster::SourceSpec) -> Arc<dyn PositionProbe> {
    Arc::new(SourceProbe(PositionReader::new(node, spec)))
}
