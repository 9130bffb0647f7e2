//! Properties of the approval gate (seed §3.1.5 with N-of-M rules): distinct approvers
//! count once, people the rule excludes and decisions for another artifact never change
//! the outcome, and the outcome is exactly "N distinct valid approvals before a valid
//! rejection and before the deadline".

use ferry_core::Timestamp;
use ferry_core::approval::{ApprovalState, Decision, Parties, Rule, admit, evaluate};
use proptest::prelude::*;
use std::time::Duration;

const PEOPLE: &[&str] = &["alice", "bob", "carol", "dave", "ada", "grace", "mallory"];
const DIGEST: &str = "sha256:aa";

fn parties() -> Parties {
    Parties {
        author: "Ada Lovelace <ada@example.com>".into(),
        triggered_by: "grace".into(),
    }
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        proptest::sample::subsequence(PEOPLE[..6].to_vec(), 0..=6),
        1u32..=3,
        any::<bool>(),
    )
        .prop_map(|(approvers, required, sod)| Rule {
            timeout: Duration::from_secs(100),
            required: if approvers.is_empty() {
                required
            } else {
                required.min(approvers.len() as u32)
            },
            approvers: approvers.into_iter().map(String::from).collect(),
            separation_of_duties: sod,
            remind_before: None,
        })
}

fn decision() -> impl Strategy<Value = Decision> {
    (
        0..PEOPLE.len(),
        prop::bool::weighted(0.8),
        0i64..120_000,
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(who, approved, at, same_digest, void)| Decision {
            approved,
            by: PEOPLE[who].to_string(),
            reason: (!approved).then(|| "no".to_string()),
            at: Timestamp(at),
            digest: Some(if same_digest { DIGEST } else { "sha256:bb" }.to_string()),
            void: void.then(|| "superseded".to_string()),
        })
}

fn decisions() -> impl Strategy<Value = Vec<Decision>> {
    proptest::collection::vec(decision(), 0..12).prop_map(|mut v| {
        v.sort_by_key(|d| d.at);
        v
    })
}

fn gate(r: &Rule, ds: &[Decision], now: i64) -> ApprovalState {
    evaluate(
        r,
        &parties(),
        Some(DIGEST),
        ds,
        Timestamp(0),
        Timestamp(now),
    )
    .0
}

/// The decisions that count, by a direct reading of the rule.
fn valid<'a>(r: &Rule, ds: &'a [Decision]) -> Vec<&'a Decision> {
    ds.iter()
        .filter(|d| d.at <= Timestamp(100_000))
        .filter(|d| d.void.is_none() && d.digest.as_deref() == Some(DIGEST))
        .filter(|d| admit(r, &parties(), &d.by).is_ok())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Approved exactly when `required` distinct valid approvers approved before the
    /// first valid rejection (a person's first decision is theirs).
    #[test]
    fn approved_iff_n_distinct_valid_approvals_came_first(r in rule(), ds in decisions(), now in 0i64..200_000) {
        let mut seen: Vec<&str> = Vec::new();
        let mut approvals = 0u32;
        let mut expected = None;
        for d in valid(&r, &ds) {
            if seen.contains(&d.by.as_str()) { continue; }
            seen.push(&d.by);
            if !d.approved { expected = Some(false); break; }
            approvals += 1;
            if approvals >= r.required { expected = Some(true); break; }
        }
        let s = gate(&r, &ds, now);
        match expected {
            Some(true) => {
                let ApprovalState::Approved { by } = &s else { panic!("expected approved, got {s:?}") };
                prop_assert_eq!(by.len() as u32, r.required);
                let mut distinct = by.clone(); distinct.sort(); distinct.dedup();
                prop_assert_eq!(distinct.len(), by.len(), "an approver counted twice");
            }
            Some(false) => prop_assert!(matches!(s, ApprovalState::Rejected { .. }), "{:?}", s),
            None if now >= 100_000 => prop_assert!(matches!(s, ApprovalState::TimedOut { .. }), "{:?}", s),
            None => prop_assert!(matches!(s, ApprovalState::Waiting { .. }), "{:?}", s),
        }
    }

    /// Decisions by people the rule excludes (not listed, the author, the trigger with
    /// separation of duties), voided ones and ones for another digest never change the
    /// outcome.
    #[test]
    fn excluded_void_and_stale_decisions_change_nothing(r in rule(), ds in decisions(), extra in decisions(), now in 0i64..200_000) {
        let noise: Vec<Decision> = extra
            .into_iter()
            .filter(|d| d.void.is_some() || d.digest.as_deref() != Some(DIGEST) || admit(&r, &parties(), &d.by).is_err())
            .collect();
        let mut mixed = ds.clone();
        mixed.extend(noise);
        mixed.sort_by_key(|d| d.at);
        prop_assert_eq!(gate(&r, &ds, now), gate(&r, &mixed, now));
    }

    /// Repeating someone's decision (after it) never changes the outcome.
    #[test]
    fn repeats_count_once(r in rule(), ds in decisions(), i in any::<prop::sample::Index>(), now in 0i64..200_000) {
        prop_assume!(!ds.is_empty());
        let k = i.index(ds.len());
        let mut again = ds[k].clone();
        again.at = Timestamp(again.at.0 + 1);
        again.approved = !again.approved;
        let mut with = ds.clone();
        with.insert(k + 1, again);
        prop_assert_eq!(gate(&r, &ds, now), gate(&r, &with, now));
    }

    /// Once decided, the outcome does not depend on when the gate is looked at.
    #[test]
    fn decided_gates_stay_decided(r in rule(), ds in decisions(), a in 0i64..200_000, b in 0i64..200_000) {
        let (x, y) = (gate(&r, &ds, a), gate(&r, &ds, b));
        if matches!(x, ApprovalState::Approved { .. } | ApprovalState::Rejected { .. }) {
            prop_assert_eq!(x, y);
        }
    }
}
