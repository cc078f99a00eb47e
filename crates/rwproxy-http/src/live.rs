//! The seam of a configuration reload: a value that is swapped whole ([`Live`]), the tower
//! service that follows it ([`LiveService`]), and a duration several tasks share
//! ([`LiveDuration`]).
//!
//! A reload builds a new [`Proxy`](crate::Proxy) (new parameters, the same pools, state and
//! metrics) and stores its stack in a `Live`. Every connection keeps its own copy of the stack
//! and, before each request, compares one counter with the one its copy came with: a request
//! runs entirely under the parameters it started with, and the request path pays one atomic
//! load for being reloadable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;

/// A value replaced whole on reload; cheap to clone (every clone sees the same value).
#[derive(Debug)]
pub struct Live<T> {
    inner: Arc<Slot<T>>,
}

#[derive(Debug)]
struct Slot<T> {
    current: ArcSwap<T>,
    /// Bumped after every store, so a holder of a copy knows it is out of date with one load.
    generation: AtomicU64,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Live<T> {
    /// A live value starting at `value`.
    pub fn new(value: T) -> Self {
        Live {
            inner: Arc::new(Slot {
                current: ArcSwap::from_pointee(value),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// The current value.
    pub fn load(&self) -> Arc<T> {
        self.inner.current.load_full()
    }

    /// Replaces the value: users that load after this see `value`; a request that started
    /// before keeps the one it has.
    pub fn store(&self, value: T) {
        self.inner.current.store(Arc::new(value));
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// How many times the value was replaced.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }
}

/// A tower service that serves each request with the [`Live`] service current when the
/// request arrives. Each clone (one per connection) keeps its own copy and takes the new one
/// at its next `poll_ready` after a store: one atomic load per request otherwise.
#[derive(Debug)]
pub struct LiveService<S> {
    live: Live<S>,
    generation: u64,
    current: S,
}

impl<S: Clone> LiveService<S> {
    /// Follows `live`.
    pub fn new(live: Live<S>) -> Self {
        let generation = live.generation();
        let current = S::clone(&live.load());
        LiveService {
            live,
            generation,
            current,
        }
    }
}

impl<S: Clone> Clone for LiveService<S> {
    fn clone(&self) -> Self {
        LiveService {
            live: self.live.clone(),
            generation: self.generation,
            current: self.current.clone(),
        }
    }
}

impl<S, R> tower::Service<R> for LiveService<S>
where
    S: tower::Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The generation is read before the value: a store between the two gives a newer
        // value under an older number, taken again next time (never an older value kept).
        let generation = self.live.generation();
        if generation != self.generation {
            self.current = S::clone(&self.live.load());
            self.generation = generation;
        }
        self.current.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.current.call(request)
    }
}

/// A duration read by several tasks and changed by a reload (`health.max_lag`: the health
/// endpoints and the task that debounces the verdict read the same one).
#[derive(Clone, Debug)]
pub struct LiveDuration(Arc<AtomicU64>);

impl LiveDuration {
    /// Starts at `value`.
    pub fn new(value: Duration) -> Self {
        LiveDuration(Arc::new(AtomicU64::new(nanos(value))))
    }

    /// The current value.
    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    /// Changes it for every holder.
    pub fn set(&self, value: Duration) {
        self.0.store(nanos(value), Ordering::Relaxed);
    }
}

/// Nanoseconds, saturating (585 years).
fn nanos(value: Duration) -> u64 {
    u64::try_from(value.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::future::{ready, Ready};
    use tower::{Service as _, ServiceExt as _};

    /// Answers its own label: which version of the service served a request.
    #[derive(Clone)]
    struct Label(&'static str);

    impl tower::Service<()> for Label {
        type Response = &'static str;
        type Error = Infallible;
        type Future = Ready<Result<&'static str, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, (): ()) -> Self::Future {
            ready(Ok(self.0))
        }
    }

    async fn answer(connection: &mut LiveService<Label>) -> Result<&'static str, Infallible> {
        connection.ready().await?.call(()).await
    }

    #[tokio::test]
    async fn a_connection_takes_the_new_service_at_its_next_request() {
        let live = Live::new(Label("old"));
        let mut connection = LiveService::new(live.clone());
        assert_eq!(answer(&mut connection).await, Ok("old"));
        live.store(Label("new"));
        assert_eq!(live.generation(), 1);
        assert_eq!(answer(&mut connection).await, Ok("new"));
        // A connection opened later starts with the current one.
        let mut later = LiveService::new(live.clone());
        assert_eq!(answer(&mut later).await, Ok("new"));
    }

    #[tokio::test]
    async fn a_request_started_before_a_store_finishes_under_the_old_service() {
        let live = Live::new(Label("old"));
        let mut connection = LiveService::new(live.clone());
        let in_flight = connection.ready().await.unwrap().call(());
        live.store(Label("new"));
        assert_eq!(in_flight.await, Ok("old"));
    }

    #[test]
    fn a_live_duration_is_shared_by_its_clones() {
        let a = LiveDuration::new(Duration::from_secs(5));
        let b = a.clone();
        b.set(Duration::from_millis(250));
        assert_eq!(a.get(), Duration::from_millis(250));
        assert_eq!(
            LiveDuration::new(Duration::MAX).get(),
            Duration::from_nanos(u64::MAX)
        );
    }
}
