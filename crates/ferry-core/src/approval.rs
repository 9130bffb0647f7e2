//! The production gate: an approval decision, or its timeout, as a pure function of what
//! the store says and the time.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    pub reason: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalState {
    Waiting { deadline: Timestamp },
    Approved { by: String },
    Rejected { by: String, reason: String },
    TimedOut { after: Duration },
}

/// A decision recorded before the deadline counts, even if it is read after it.
pub fn state(
    decision: Option<&Decision>,
    requested: Timestamp,
    timeout: Duration,
    now: Timestamp,
) -> ApprovalState {
    let deadline = requested.plus(timeout);
    match decision {
        Some(d) if d.at <= deadline && d.approved => ApprovalState::Approved { by: d.by.clone() },
        Some(d) if d.at <= deadline => ApprovalState::Rejected {
            by: d.by.clone(),
            reason: d
                .reason
                .clone()
                .unwrap_or_else(|| "no reason given".to_string()),
        },
        _ if now >= deadline => ApprovalState::TimedOut { after: timeout },
        _ => ApprovalState::Waiting { deadline },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(approved: bool, at: i64) -> Decision {
        Decision {
            approved,
            by: "alice".into(),
            reason: None,
            at: Timestamp(at),
        }
    }

    #[test]
    fn waits_then_times_out() {
        let t = Duration::from_secs(10);
        assert!(matches!(
            state(None, Timestamp(0), t, Timestamp(9_999)),
            ApprovalState::Waiting { .. }
        ));
        assert!(matches!(
            state(None, Timestamp(0), t, Timestamp(10_000)),
            ApprovalState::TimedOut { .. }
        ));
    }

    #[test]
    fn decisions_before_the_deadline_count_late_ones_do_not() {
        let t = Duration::from_secs(10);
        assert!(matches!(
            state(Some(&d(true, 5_000)), Timestamp(0), t, Timestamp(20_000)),
            ApprovalState::Approved { .. }
        ));
        assert!(matches!(
            state(Some(&d(false, 5_000)), Timestamp(0), t, Timestamp(6_000)),
            ApprovalState::Rejected { .. }
        ));
        assert!(matches!(
            state(Some(&d(true, 11_000)), Timestamp(0), t, Timestamp(11_000)),
            ApprovalState::TimedOut { .. }
        ));
    }
}
