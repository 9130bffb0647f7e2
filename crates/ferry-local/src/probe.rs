//! The local alarm probe: one datapoint from an HTTP endpoint, a Prometheus query or a
//! command. A probe that cannot answer is a missing datapoint, not a breach: the
//! alarm's missing-data rule decides what that means.

use crate::http::http_get_status;
use ferry_config::{Alarm, AlarmSource};
use ferry_core::alarm::Datapoint;
use ferry_engine::ports::AlarmProbe;
use std::time::Instant;

pub struct LocalProbe;

impl AlarmProbe for LocalProbe {
    fn sample(&self, alarm: &Alarm) -> (Datapoint, String) {
        match &alarm.source {
            AlarmSource::Http {
                url,
                expect_status,
                timeout,
                max_latency,
            } => {
                let t = Instant::now();
                match http_get_status(url, *timeout) {
                    Ok(code) => {
                        let took = t.elapsed();
                        let slow = max_latency.is_some_and(|m| took > m);
                        let detail = format!("status {code} in {}ms", took.as_millis());
                        if code != *expect_status || slow {
                            (Datapoint::Breaching, detail)
                        } else {
                            (Datapoint::NotBreaching, detail)
                        }
                    }
                    // No answer from a health endpoint is the failure it exists to catch.
                    Err(e) => (Datapoint::Breaching, format!("no answer: {e}")),
                }
            }
            AlarmSource::Command {
                run,
                threshold,
                comparison,
            } => {
                let out = std::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(run)
                    .output();
                match (out, threshold) {
                    (Err(e), _) => (Datapoint::Missing, format!("could not run: {e}")),
                    (Ok(o), None) => {
                        if o.status.success() {
                            (Datapoint::NotBreaching, "exit 0".to_string())
                        } else {
                            (
                                Datapoint::Breaching,
                                format!("exit {}", o.status.code().unwrap_or(-1)),
                            )
                        }
                    }
                    (Ok(o), Some(th)) => {
                        let text = String::from_utf8_lossy(&o.stdout);
                        match text
                            .split_whitespace()
                            .last()
                            .and_then(|w| w.parse::<f64>().ok())
                        {
                            Some(v) if comparison.breaches(v, *th) => {
                                (Datapoint::Breaching, format!("value {v}"))
                            }
                            Some(v) => (Datapoint::NotBreaching, format!("value {v}")),
                            None => (Datapoint::Missing, "printed no number".to_string()),
                        }
                    }
                }
            }
            AlarmSource::Prometheus { .. } => (
                Datapoint::Missing,
                "prometheus alarms are not evaluated by this ferry yet".to_string(),
            ),
            AlarmSource::External => (
                Datapoint::Missing,
                "state is pushed from outside".to_string(),
            ),
        }
    }
}
