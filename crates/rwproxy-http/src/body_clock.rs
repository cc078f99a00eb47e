//! The bound on reading a client's request body: a client may pause at most
//! `proxy.body_timeout` between two reads (nginx's `client_body_timeout`), and must keep an
//! average of `proxy.body_min_rate` bytes a second once that first allowance is spent (Apache's
//! `mod_reqtimeout` `MinRate`), so a slow-POST client that sends a byte a second cannot hold a
//! connection and an upstream request for ever.
//!
//! The clock only runs while rwproxy waits on the client: it is checked when a read of the body
//! finds nothing ready, never while the upstream is slow to take what was read.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// `proxy.body_timeout` and `proxy.body_min_rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyTimeouts {
    /// Longest pause between two reads of a body, and the grace before `min_rate` applies;
    /// zero turns both bounds off.
    pub pause: Duration,
    /// Average bytes a second a body must keep after the grace; 0: no rate bound.
    pub min_rate: u64,
}

impl Default for BodyTimeouts {
    fn default() -> Self {
        BodyTimeouts {
            pause: Duration::from_secs(60),
            min_rate: 500,
        }
    }
}

impl BodyTimeouts {
    /// Whether any bound applies.
    pub fn enabled(&self) -> bool {
        !self.pause.is_zero()
    }

    /// The instant a client waited on since `waiting_since` times out, for a body whose first
    /// read was at `started` and which has delivered `received` bytes: the earlier of the pause
    /// bound and the rate bound.
    pub fn deadline(&self, started: Instant, waiting_since: Instant, received: u64) -> Instant {
        let pause_bound = waiting_since + self.pause;
        if self.min_rate == 0 {
            return pause_bound;
        }
        // Each byte buys 1/min_rate s; saturating so a huge body never overflows.
        let earned_ms = received.saturating_mul(1000) / self.min_rate;
        let rate_bound = started + self.pause + Duration::from_millis(earned_ms);
        pause_bound.min(rate_bound)
    }
}

/// The client sent its request body too slowly (`proxy.body_timeout`, `proxy.body_min_rate`).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the client's request body timed out (proxy.body_timeout / proxy.body_min_rate)")]
pub struct BodyTimedOut;

/// One body's clock; see the module's documentation.
#[derive(Debug)]
pub(crate) struct BodyClock {
    limits: BodyTimeouts,
    /// The first read of the body.
    started: Option<Instant>,
    received: u64,
    /// Armed while waiting on the client; kept between waits so that one allocation serves the
    /// whole body.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl BodyClock {
    /// A clock for one body.
    pub(crate) fn new(limits: BodyTimeouts) -> Self {
        BodyClock {
            limits,
            started: None,
            received: 0,
            timer: None,
            waiting: false,
        }
    }

    /// A read of the body delivered `bytes`: the client is not being waited on any more.
    pub(crate) fn progressed(&mut self, bytes: u64) {
        self.started.get_or_insert_with(Instant::now);
        self.received = self.received.saturating_add(bytes);
        self.waiting = false;
    }

    /// A read of the body found nothing ready: `Ready` once the client has been waited on for
    /// too long, else the clock wakes the task when it will have been.
    pub(crate) fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<BodyTimedOut> {
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        if !self.waiting {
            self.waiting = true;
            let deadline = self.limits.deadline(started, now, self.received);
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match &mut self.timer {
            Some(timer) => timer.as_mut().poll(cx).map(|()| BodyTimedOut),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pause_s: u64, min_rate: u64) -> BodyTimeouts {
        BodyTimeouts {
            pause: Duration::from_secs(pause_s),
            min_rate,
        }
    }

    #[test]
    fn a_pause_is_bounded_from_when_the_wait_began() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(100);
        // No rate bound: only the pause counts, however long the body has been going.
        assert_eq!(
            limits(60, 0).deadline(t0, later, 0),
            later + Duration::from_secs(60)
        );
    }

    #[test]
    fn the_rate_bound_cuts_a_trickle_after_the_grace() {
        let t0 = Instant::now();
        // One byte a second for 59 s: 59 bytes earned 118 ms at 500 B/s.
        let now = t0 + Duration::from_secs(59);
        assert_eq!(
            limits(60, 500).deadline(t0, now, 59),
            t0 + Duration::from_secs(60) + Duration::from_millis(118)
        );
    }

    #[test]
    fn a_fast_body_earns_time_and_the_pause_bound_takes_over() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        // 10 MB at 500 B/s earned 20,000 s: the 60 s pause bound is the earlier one.
        assert_eq!(
            limits(60, 500).deadline(t0, now, 10_000_000),
            now + Duration::from_secs(60)
        );
        // Exactly on the boundary the two agree.
        assert_eq!(
            limits(60, 1000).deadline(t0, now, 10_000),
            now + Duration::from_secs(60)
        );
    }

    #[test]
    fn a_huge_count_does_not_overflow() {
        let t0 = Instant::now();
        assert_eq!(
            limits(1, 1).deadline(t0, t0, u64::MAX),
            t0 + Duration::from_secs(1)
        );
    }

    #[test]
    fn zero_pause_is_off() {
        assert!(!limits(0, 500).enabled());
        assert!(limits(1, 0).enabled());
    }

    #[tokio::test]
    async fn the_clock_fires_after_a_pause_and_progress_rearms_it() {
        let pause = Duration::from_millis(300);
        let mut clock = BodyClock::new(BodyTimeouts { pause, min_rate: 0 });
        let started = Instant::now();
        // Two thirds of a pause, then a byte: a new wait starts from there.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(clock.poll_waiting(&mut cx).is_pending());
        tokio::time::sleep(pause * 2 / 3).await;
        assert!(clock.poll_waiting(&mut cx).is_pending());
        clock.progressed(1);
        std::future::poll_fn(|cx| clock.poll_waiting(cx)).await;
        assert!(
            started.elapsed() >= pause * 5 / 3,
            "{:?}",
            started.elapsed()
        );
    }
}
