//! What `ferry serve` receives, read without side effects: GitHub webhook deliveries
//! (signature, `push`, `ping`) and alarm events (CloudWatch through EventBridge or SNS,
//! Prometheus Alertmanager).
//!
//! Everything here is pure: bytes and header values in, typed values or a
//! [`HookError`] out. Nothing reads the network, a file or the clock, spawns a thread or
//! panics on bad input (property-tested on random bytes). The HTTP server, the body size
//! limit, delivery ids and what to do with an event belong to `ferry serve`.
//!
//! - [`verify_signature`] checks GitHub's `X-Hub-Signature-256` (HMAC-SHA256,
//!   constant-time); [`parse_github`] reads a delivery into a [`GithubEvent`]; and
//!   [`Push::decision`] says whether a push starts a run ([`PushDecision`]).
//! - [`parse_alarm_event`] reads a CloudWatch alarm state change (EventBridge event, SNS
//!   notification, classic SNS alarm format) or an Alertmanager webhook into
//!   [`AlarmChange`]s.
//! - [`sns_message_type`], [`parse_sns`] and [`sns_string_to_sign`] are the SNS parts;
//!   verifying an SNS signature (X.509) is not done yet, see [`sns`].
//!
//! ```
//! use ferry_hooks::{GithubEvent, State, parse_alarm_event, parse_github};
//!
//! let ping = br#"{"zen": "Design for failure.", "hook_id": 42}"#;
//! assert_eq!(
//!     parse_github("ping", ping)?,
//!     GithubEvent::Ping { zen: "Design for failure.".into(), hook_id: 42 }
//! );
//!
//! let alertmanager = br#"{"version": "4", "status": "firing", "alerts": [{
//!     "status": "firing", "labels": {"alertname": "HighErrorRate", "env": "staging"},
//!     "annotations": {"summary": "5xx above 5%"}, "startsAt": "2024-05-14T09:21:33Z",
//!     "endsAt": "0001-01-01T00:00:00Z"}]}"#;
//! let changes = parse_alarm_event(alertmanager)?;
//! assert_eq!(changes[0].alarm, "HighErrorRate");
//! assert_eq!(changes[0].state, State::Alarm);
//! assert_eq!(changes[0].labels["env"], "staging");
//! # Ok::<(), ferry_hooks::HookError>(())
//! ```

pub mod alarm;
pub mod error;
pub mod github;
mod json;
pub mod sns;
pub mod sns_verify;

pub use alarm::{AlarmChange, Source, State, parse_alarm_event, parse_sns_alarm};
pub use error::HookError;
pub use github::{
    CommitInfo, GithubEvent, IgnoreReason, Push, PushDecision, parse_github, verify_signature,
};
pub use sns::{SnsMessage, SnsType, parse_sns, sns_message_type, sns_string_to_sign};
pub use sns_verify::{
    SnsVerifyError, certificate_der, trusted_certificate_url, trusted_subscribe_url,
    verify_sns_signature,
};
