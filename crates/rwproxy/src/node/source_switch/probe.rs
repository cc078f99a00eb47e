//! The position probe that follows the running cluster source: the pipeline holds this one
//! probe for its whole life, and a source restart swaps what it asks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rwproxy_core::Reading;
use rwproxy_http::{Live, PositionProbe};

/// A [`PositionProbe`] that asks the probe of the source running now.
#[derive(Clone)]
pub(crate) struct SwitchedProbe {
    current: Live<Arc<dyn PositionProbe>>,
}

impl std::fmt::Debug for SwitchedProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchedProbe")
            .field("generation", &self.current.generation())
            .finish_non_exhaustive()
    }
}

impl SwitchedProbe {
    /// Starts out asking `probe`.
    pub(crate) fn new(probe: Arc<dyn PositionProbe>) -> Self {
        SwitchedProbe {
            current: Live::new(probe),
        }
    }

    /// From now on asks `probe`; calls already running finish with the old one.
    pub(crate) fn store(&self, probe: Arc<dyn PositionProbe>) {
        self.current.store(probe);
    }
}

impl PositionProbe for SwitchedProbe {
    fn current(&self) -> Pin<Box<dyn Future<Output = Option<Reading>> + Send + '_>> {
        let probe = self.current.load();
        Box::pin(async move { probe.current().await })
    }

    fn confirms_primary(&self) -> Pin<Box<dyn Future<Output = Option<bool>> + Send + '_>> {
        let probe = self.current.load();
        Box::pin(async move { probe.confirms_primary().await })
    }

    fn reads_positions(&self) -> bool {
        self.current.load().reads_positions()
    }

    fn confirms_primaries(&self) -> bool {
        self.current.load().confirms_primaries()
    }
}
