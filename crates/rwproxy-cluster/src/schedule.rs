//! When a polling source reads next: after `poll`, after [`FAST_POLL`] while requests wait, at
//! once when a request starts waiting, or at once when an outside event asks.

use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Demand;

/// Re-read interval of file and HTTP sources while a request waits for a position.
pub const FAST_POLL: Duration = Duration::from_millis(2);

/// While nobody waits, how often a sleeping source looks whether someone started to. The shared
/// [`Demand`] is a bare counter with no wake-up, so a long `poll` is slept in slices this long;
/// 200 timer ticks a second cost next to nothing and bound the first waiter's extra delay.
pub(crate) const DEMAND_CHECK: Duration = Duration::from_millis(5);

/// Floor for any poll interval: a zero interval would spin a core.
pub(crate) const MIN_POLL: Duration = Duration::from_millis(1);

/// The interval to sleep for, given the configured poll and the current demand. Fast polling
/// never polls slower than the configured poll.
pub(crate) fn interval(poll: Duration, demand: &Demand) -> Duration {
    let base = poll.max(MIN_POLL);
    if demand.active() > 0 {
        FAST_POLL.min(base)
    } else {
        base
    }
}

/// Sleeps until the next read is due. `wake` (LiteFS events) ends the sleep early.
pub(crate) async fn pause(poll: Duration, demand: &Demand, wake: Option<&Notify>) {
    let external = async {
        match wake {
            Some(notify) => notify.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = sleep(poll, demand) => {}
        () = external => {}
    }
}

async fn sleep(poll: Duration, demand: &Demand) {
    // With waiters the interval is FAST_POLL, shorter than one slice: the loop sleeps it once.
    let deadline = Instant::now() + interval(poll, demand);
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep((deadline - now).min(DEMAND_CHECK)).await;
        if demand.active() > 0 {
            // The first waiter: read now rather than at the end of the poll.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn interval_follows_demand_and_is_bounded() {
        let demand = Demand::default();
        let poll = Duration::from_secs(10);
        assert_eq!(interval(poll, &demand), poll);
        let guard = demand.enter();
        assert_eq!(interval(poll, &demand), FAST_POLL);
        assert_eq!(
            interval(Duration::from_micros(1500), &demand),
            Duration::from_micros(1500)
        );
        drop(guard);
        assert_eq!(interval(Duration::ZERO, &demand), MIN_POLL);
    }

    #[tokio::test]
    async fn a_first_waiter_or_an_event_ends_a_long_pause() {
        let demand = Demand::default();
        let poll = Duration::from_secs(10);
        let pausing = tokio::spawn({
            let demand = demand.clone();
            async move { pause(poll, &demand, None).await }
        });
        tokio::task::yield_now().await;
        let _guard = demand.enter();
        tokio::time::timeout(Duration::from_secs(2), pausing)
            .await
            .expect("demand ended the pause")
            .expect("join");

        let notify = Arc::new(Notify::new());
        notify.notify_one(); // a stored permit counts: an event that came during the read
        tokio::time::timeout(
            Duration::from_secs(2),
            pause(poll, &Demand::default(), Some(&notify)),
        )
        .await
        .expect("event ended the pause");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_pause_lasts_the_whole_poll() {
        let start = Instant::now();
        pause(Duration::from_secs(10), &Demand::default(), None).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
    }
}
