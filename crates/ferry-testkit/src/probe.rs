//! A fake alarm probe: the datapoints of each alarm are scripted in advance and handed
//! out one per sample, in order.

use crate::clock::FakeClock;
use ferry_core::Timestamp;
use ferry_core::alarm::Datapoint;
use ferry_engine::ports::{AlarmProbe, Clock};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One sample taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub alarm: String,
    pub at: Timestamp,
    pub datapoint: Datapoint,
}

#[derive(Default)]
struct Inner {
    scripts: BTreeMap<String, VecDeque<Datapoint>>,
    then: BTreeMap<String, Datapoint>,
    samples: Vec<Sample>,
}

/// An [`AlarmProbe`] whose answers are scripted per alarm name: the queued datapoints
/// first, then the alarm's fallback (`NotBreaching` unless set with
/// [`FakeProbe::then`]).
pub struct FakeProbe {
    clock: Arc<FakeClock>,
    inner: Mutex<Inner>,
}

impl FakeProbe {
    pub fn new(clock: Arc<FakeClock>) -> Self {
        FakeProbe {
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues datapoints for `alarm`, after those already queued.
    pub fn script(&self, alarm: &str, datapoints: impl IntoIterator<Item = Datapoint>) {
        self.lock()
            .scripts
            .entry(alarm.to_string())
            .or_default()
            .extend(datapoints);
    }

    /// Forgets every queued datapoint and every fallback (samples taken are kept): each
    /// alarm is healthy again until scripted.
    pub fn reset(&self) {
        let mut g = self.lock();
        g.scripts.clear();
        g.then.clear();
    }

    /// What `alarm` reports once its queue is empty.
    pub fn then(&self, alarm: &str, datapoint: Datapoint) {
        self.lock().then.insert(alarm.to_string(), datapoint);
    }

    /// Every sample taken, in order.
    pub fn samples(&self) -> Vec<Sample> {
        self.lock().samples.clone()
    }

    /// The samples taken of one alarm.
    pub fn samples_of(&self, alarm: &str) -> Vec<Sample> {
        self.samples()
            .into_iter()
            .filter(|s| s.alarm == alarm)
            .collect()
    }
}

impl AlarmProbe for FakeProbe {
    fn sample(&self, alarm: &ferry_config::Alarm) -> (Datapoint, String) {
        let at = self.clock.now();
        let mut g = self.lock();
        let queued = g.scripts.get_mut(&alarm.name).and_then(VecDeque::pop_front);
        let dp = queued
            .or_else(|| g.then.get(&alarm.name).copied())
            .unwrap_or(Datapoint::NotBreaching);
        g.samples.push(Sample {
            alarm: alarm.name.clone(),
            at,
            datapoint: dp,
        });
        let detail = match dp {
            Datapoint::Breaching => "scripted breaching datapoint",
            Datapoint::NotBreaching => "scripted healthy datapoint",
            Datapoint::Missing => "scripted missing datapoint",
        };
        (dp, detail.to_string())
    }
}
