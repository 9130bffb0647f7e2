//! The notification dispatcher: moves events from the store's outbox to the channels
//! (DESIGN invariant 4). It decides nothing itself: the store says what is due
//! (`Store::outbox_fill`, `outbox_claim`), a [`Notifier`] sends, and the core's
//! [`DeliveryPolicy`] says what to record after each attempt.
//!
//! Per channel, deliveries go oldest first; a channel whose delivery failed is left
//! alone for the rest of a pass (its next delivery waits for the retry schedule rather
//! than hammering a receiver that is down). A process killed between sending and
//! recording leaves the delivery reserved until its claim ends (`DeliveryPolicy::claim`)
//! and then sends it again: at least once, with the same event id.

use crate::ports::{
    Attempt, Clock, Notifier, OutboxChannel, OutboxCounts, OutboxFilter, PortResult, Store,
};
use ferry_core::notify::{DeliveryPolicy, DeliveryStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Deliveries newly enqueued from the events.
    pub enqueued: usize,
    pub delivered: usize,
    pub failed: usize,
    /// Channels whose receiver failed transiently in this pass (down, refusing, 5xx).
    pub down: Vec<String>,
}

/// Sends what the outbox holds for a set of channels.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    channels: Vec<Arc<dyn Notifier>>,
    policy: DeliveryPolicy,
}

impl Dispatcher {
    /// A dispatcher for `channels` with the seed's policy.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        channels: Vec<Arc<dyn Notifier>>,
    ) -> Self {
        Dispatcher {
            store,
            clock,
            channels,
            policy: DeliveryPolicy::default(),
        }
    }

    /// The same with another delivery policy (tests use short waits).
    pub fn with_policy(mut self, policy: DeliveryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether there is any channel at all.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The ids of the channels.
    pub fn channel_ids(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.id().to_string()).collect()
    }

    /// Enqueues the events recorded since each channel's cursor. The first call for a
    /// channel the store has never seen starts it at the newest event.
    pub fn fill(&self) -> PortResult<usize> {
        if self.channels.is_empty() {
            return Ok(0);
        }
        let channels: Vec<OutboxChannel> = self
            .channels
            .iter()
            .map(|c| OutboxChannel {
                id: c.id().to_string(),
                kinds: c.kinds().to_vec(),
            })
            .collect();
        self.store.outbox_fill(&channels, self.clock.now())
    }

    /// Enqueues new events, then tries every due delivery once.
    pub fn pass(&self) -> PortResult<Pass> {
        let mut pass = Pass {
            enqueued: self.fill()?,
            ..Pass::default()
        };
        for channel in &self.channels {
            let ids = [channel.id().to_string()];
            loop {
                let now = self.clock.now();
                let claimed = self
                    .store
                    .outbox_claim(&ids, now, now.plus(self.policy.claim), 1)?;
                let Some(item) = claimed.into_iter().next() else {
                    break;
                };
                let attempt = channel.deliver(item.event_id, &item.event);
                let now = self.clock.now();
                let settle = self.policy.settle(&item, &attempt, now);
                self.store.outbox_settle(item.id, &settle, now)?;
                match attempt {
                    Attempt::Delivered(_) => pass.delivered += 1,
                    Attempt::Transient(_) => {
                        pass.failed += 1;
                        pass.down.push(ids[0].clone());
                        break;
                    }
                    Attempt::Permanent(_) => {
                        pass.failed += 1;
                        break;
                    }
                }
            }
        }
        Ok(pass)
    }

    /// Deliveries of these channels not delivered and not dead.
    pub fn pending(&self) -> PortResult<u64> {
        let ids = self.channel_ids();
        Ok(self
            .store
            .outbox_counts()?
            .iter()
            .filter(|c| ids.contains(&c.channel))
            .map(|c| c.pending)
            .sum())
    }

    /// Passes until nothing of these channels is pending (delivered, or dead letters
    /// left for later), until every channel still owed something has failed
    /// transiently during the flush (its receiver is down: waiting for it would only
    /// hold the command up), or until `within` has passed. Returns what is still
    /// pending: it stays in the store for the next ferry process.
    pub fn flush(&self, within: Duration) -> PortResult<u64> {
        let deadline = self.clock.now().plus(within);
        let mut down: Vec<String> = Vec::new();
        loop {
            let pass = self.pass()?;
            down.extend(pass.down);
            let ids = self.channel_ids();
            let owed: Vec<OutboxCounts> = self
                .store
                .outbox_counts()?
                .into_iter()
                .filter(|c| ids.contains(&c.channel) && c.pending > 0)
                .collect();
            let left: u64 = owed.iter().map(|c| c.pending).sum();
            let all_down = owed.iter().all(|c| down.contains(&c.channel));
            if left == 0 || all_down || self.clock.now() >= deadline {
                return Ok(left);
            }
            self.clock.sleep(Duration::from_millis(100));
        }
    }

    /// Dead letters of these channels (for messages after a flush).
    pub fn dead(&self) -> PortResult<usize> {
        let ids = self.channel_ids();
        Ok(self
            .store
            .outbox(&OutboxFilter {
                status: Some(DeliveryStatus::Dead),
                ..OutboxFilter::default()
            })?
            .iter()
            .filter(|i| ids.contains(&i.channel))
            .count())
    }

    /// Runs passes on a thread of its own every `every` until stopped.
    pub fn spawn(self: Arc<Self>, every: Duration) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let me = Arc::clone(&self);
        let handle = std::thread::Builder::new()
            .name("ferry-notify".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    // A store error (busy, briefly unavailable) is tried again next pass;
                    // nothing is lost, the outbox is in the store.
                    let _ = me.pass();
                    let mut slept = Duration::ZERO;
                    while slept < every && !flag.load(Ordering::SeqCst) {
                        let step = Duration::from_millis(50).min(every);
                        me.clock.sleep(step);
                        slept += step;
                    }
                }
            })
            .ok();
        Running {
            dispatcher: self,
            stop,
            handle,
        }
    }
}

/// A dispatcher running on its thread.
pub struct Running {
    dispatcher: Arc<Dispatcher>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops the thread, then flushes for at most `within`; returns what is still
    /// pending (it stays in the outbox for the next ferry process).
    pub fn finish(mut self, within: Duration) -> PortResult<u64> {
        self.halt();
        self.dispatcher.flush(within)
    }

    /// The dispatcher.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}
