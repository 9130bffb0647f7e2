//! The approval gate (seed §3.1.5), as pure functions of the rule, the people involved,
//! the decisions recorded so far and the time.
//!
//! A rule asks for `required` distinct approvals (N of M) from its `approvers` (anyone
//! when none are listed). With separation of duties, the commit's author and whoever
//! triggered the run may not decide. Each decision is bound to the artifact digest the
//! person saw: a decision for another digest, or one voided (the run was superseded or
//! cancelled, the artifact changed), does not count. One valid rejection ends the gate;
//! no decision by the deadline times it out. Decisions are taken in the order they were
//! recorded, so the outcome never depends on when the gate is looked at.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    pub reason: Option<String>,
    pub at: Timestamp,
    /// The artifact digest the person saw when deciding (`None`: the run has no artifact).
    #[serde(default)]
    pub digest: Option<String>,
    /// Why the decision no longer counts (the run was superseded or cancelled, the
    /// artifact changed), once it was voided.
    #[serde(default)]
    pub void: Option<String>,
}

/// An environment's approval rule, as planned for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// No decision by then: the gate times out.
    #[serde(with = "crate::approval::millis")]
    pub timeout: Duration,
    /// Who may decide; empty: anyone who can reach `ferry approve` or the API.
    pub approvers: Vec<String>,
    /// Distinct approvals needed (N of M), at least 1.
    pub required: u32,
    /// The commit's author and the run's trigger may not decide.
    pub separation_of_duties: bool,
    /// One `approval_reminder` this long before the timeout.
    #[serde(default, with = "crate::approval::opt_millis")]
    pub remind_before: Option<Duration>,
}

impl Rule {
    /// The rule a `ferry.yml` approval section describes.
    pub fn from_config(a: &ferry_config::Approval) -> Rule {
        Rule {
            timeout: a.timeout,
            approvers: a.approvers.clone(),
            required: a.required.max(1),
            separation_of_duties: a.separation_of_duties,
            remind_before: a.remind_before,
        }
    }

    /// The same rule for a hotfix: at least [`ferry_config::HOTFIX_APPROVALS`] distinct
    /// approvals.
    pub fn for_hotfix(mut self) -> Rule {
        self.required = self.required.max(ferry_config::HOTFIX_APPROVALS);
        self
    }

    /// When the reminder is due, if the rule has one.
    pub fn reminder_at(&self, requested: Timestamp) -> Option<Timestamp> {
        let r = self.remind_before?;
        let deadline = requested.plus(self.timeout);
        (r < self.timeout).then(|| {
            Timestamp(deadline.millis() - i64::try_from(r.as_millis()).unwrap_or(i64::MAX))
        })
    }

    /// `alice, bob or carol`, or `anyone` when no approvers are listed.
    pub fn who(&self) -> String {
        if self.approvers.is_empty() {
            return "anyone".to_string();
        }
        let n = self.approvers.len();
        match n {
            1 => self.approvers[0].clone(),
            _ => format!(
                "{} or {}",
                self.approvers[..n - 1].join(", "),
                self.approvers[n - 1]
            ),
        }
    }
}

/// The people a run involves besides its approvers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parties {
    /// The commit's author as git records it: `Name <email>`.
    pub author: String,
    /// Who or what started the run.
    pub triggered_by: String,
}

/// Why a person may not decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not among the listed approvers.
    NotAnApprover { by: String, approvers: Vec<String> },
    /// Separation of duties: the commit's author.
    Author { by: String, author: String },
    /// Separation of duties: who triggered the run.
    Triggerer { by: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAnApprover { by, approvers } => write!(
                f,
                "{by} is not an approver here: `approval.approvers` lists {}",
                approvers.join(", ")
            ),
            Refusal::Author { by, author } => write!(
                f,
                "{by} wrote the commit ({author}): separation of duties (`approval.separation_of_duties`) lets someone else decide"
            ),
            Refusal::Triggerer { by } => write!(
                f,
                "{by} triggered the run: separation of duties (`approval.separation_of_duties`) lets someone else decide"
            ),
        }
    }
}

/// Names compare without case and surrounding space.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    !a.is_empty() && a.eq_ignore_ascii_case(b)
}

/// Whether `by` is the author `Name <email>`: the whole text, the name, the email or
/// the email's local part (a login name usually is); separation of duties errs towards
/// refusing.
fn is_author(by: &str, author: &str) -> bool {
    if same(by, author) {
        return true;
    }
    match author.split_once('<') {
        Some((name, rest)) => {
            let email = rest.trim_end().trim_end_matches('>');
            let local = email.split('@').next().unwrap_or("");
            same(by, name) || same(by, email) || same(by, local)
        }
        None => false,
    }
}

/// Whether `by` may decide under `rule`.
pub fn admit(rule: &Rule, parties: &Parties, by: &str) -> Result<(), Refusal> {
    if !rule.approvers.is_empty() && !rule.approvers.iter().any(|a| same(a, by)) {
        return Err(Refusal::NotAnApprover {
            by: by.to_string(),
            approvers: rule.approvers.clone(),
        });
    }
    if rule.separation_of_duties {
        if is_author(by, &parties.author) {
            return Err(Refusal::Author {
                by: by.to_string(),
                author: parties.author.clone(),
            });
        }
        if same(by, &parties.triggered_by) {
            return Err(Refusal::Triggerer { by: by.to_string() });
        }
    }
    Ok(())
}

/// How the gate read one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counted {
    /// The `k`th distinct valid approval.
    Approval { k: u32 },
    /// The valid rejection that ended the gate.
    Rejection,
    /// The person may not decide.
    Refused(String),
    /// Voided, or made for another artifact digest.
    Void(String),
    /// This person already decided.
    Repeated,
    /// Recorded after the deadline, or after the gate was already decided.
    Ignored,
}

/// The gate's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalState {
    /// Still open: the valid approvals so far, by whom, and the deadline.
    Waiting {
        deadline: Timestamp,
        approvals: Vec<String>,
        required: u32,
    },
    /// `required` distinct valid approvals, by these people in order.
    Approved {
        by: Vec<String>,
    },
    Rejected {
        by: String,
        reason: String,
    },
    TimedOut {
        after: Duration,
    },
}

/// The gate over `decisions` (in the order they were recorded) for a run whose artifact
/// has `digest`, and how each decision counted.
pub fn evaluate(
    rule: &Rule,
    parties: &Parties,
    digest: Option<&str>,
    decisions: &[Decision],
    requested: Timestamp,
    now: Timestamp,
) -> (ApprovalState, Vec<Counted>) {
    let deadline = requested.plus(rule.timeout);
    let required = rule.required.max(1);
    let mut approvals: Vec<String> = Vec::new();
    let mut decided_by: Vec<&str> = Vec::new();
    let mut state: Option<ApprovalState> = None;
    let mut counted = Vec::with_capacity(decisions.len());
    for d in decisions {
        let c = if state.is_some() || d.at > deadline {
            Counted::Ignored
        } else if let Some(why) = &d.void {
            Counted::Void(why.clone())
        } else if d.digest.as_deref() != digest {
            Counted::Void(format!(
                "made for artifact {}, the run's is {}",
                d.digest.as_deref().unwrap_or("none"),
                digest.unwrap_or("none")
            ))
        } else if let Err(r) = admit(rule, parties, &d.by) {
            Counted::Refused(r.to_string())
        } else if decided_by.iter().any(|b| same(b, &d.by)) {
            Counted::Repeated
        } else if d.approved {
            decided_by.push(&d.by);
            approvals.push(d.by.trim().to_string());
            let k = u32::try_from(approvals.len()).unwrap_or(u32::MAX);
            if k >= required {
                state = Some(ApprovalState::Approved {
                    by: approvals.clone(),
                });
            }
            Counted::Approval { k }
        } else {
            decided_by.push(&d.by);
            state = Some(ApprovalState::Rejected {
                by: d.by.clone(),
                reason: d
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".to_string()),
            });
            Counted::Rejection
        };
        counted.push(c);
    }
    let state = state.unwrap_or(if now >= deadline {
        ApprovalState::TimedOut {
            after: rule.timeout,
        }
    } else {
        ApprovalState::Waiting {
            deadline,
            approvals,
            required,
        }
    });
    (state, counted)
}

/// `1 of 2 approvals (alice); waiting for bob or carol` — what a partial approval says.
pub fn progress(rule: &Rule, parties: &Parties, approvals: &[String]) -> String {
    let required = rule.required.max(1);
    let k = approvals.len();
    let got = if approvals.is_empty() {
        String::new()
    } else {
        format!(" ({})", approvals.join(", "))
    };
    let left = (required as usize).saturating_sub(k);
    let who = if rule.approvers.is_empty() {
        if rule.separation_of_duties {
            "anyone but the commit's author and the run's trigger".to_string()
        } else {
            "anyone".to_string()
        }
    } else {
        let open: Vec<&str> = rule
            .approvers
            .iter()
            .filter(|a| !approvals.iter().any(|b| same(a, b)))
            .filter(|a| admit(rule, parties, a).is_ok())
            .map(String::as_str)
            .collect();
        match open.len() {
            0 => "nobody else allowed".to_string(),
            1 => open[0].to_string(),
            n => format!("{} or {}", open[..n - 1].join(", "), open[n - 1]),
        }
    };
    let noun = if required == 1 {
        "approval"
    } else {
        "approvals"
    };
    if left == 0 {
        format!("{k} of {required} {noun}{got}")
    } else {
        format!("{k} of {required} {noun}{got}; waiting for {left} more from {who}")
    }
}

/// A web link to a commit: `<repository>/commit/<sha>` (GitHub, GitLab: `/-/commit/`).
pub fn commit_url(repository: &str, sha: &str) -> String {
    let base = repository.trim_end_matches('/');
    let base = base.strip_suffix(".git").unwrap_or(base);
    if base.contains("gitlab") {
        format!("{base}/-/commit/{sha}")
    } else {
        format!("{base}/commit/{sha}")
    }
}

/// The web address of a repository from a git remote URL, when it is on GitHub or
/// GitLab: `git@github.com:o/r.git`, `ssh://git@gitlab.com/o/r`, `https://github.com/o/r.git`.
pub fn web_repository(remote: &str) -> Option<String> {
    let r = remote.trim();
    let (host, path) = if let Some(rest) = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
        .or_else(|| r.strip_prefix("ssh://"))
        .or_else(|| r.strip_prefix("git://"))
    {
        let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let (host, path) = rest.split_once('/')?;
        (host.split(':').next().unwrap_or(host), path)
    } else {
        let (user_host, path) = r.split_once(':')?;
        let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
        (host, path)
    };
    let host = host.to_ascii_lowercase();
    if !(host == "github.com" || host == "gitlab.com" || host.starts_with("gitlab.")) {
        return None;
    }
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let ok = path.split('/').count() >= 2
        && path.split('/').all(|s| {
            !s.is_empty()
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    ok.then(|| format!("https://{host}/{path}"))
}

/// Durations as milliseconds in JSON (event payloads carry the rule).
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(required: u32, approvers: &[&str]) -> Rule {
        Rule {
            timeout: Duration::from_secs(10),
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            required,
            separation_of_duties: true,
            remind_before: None,
        }
    }

    fn parties() -> Parties {
        Parties {
            author: "Ada Lovelace <ada@example.com>".into(),
            triggered_by: "grace".into(),
        }
    }

    fn d(approved: bool, by: &str, at: i64) -> Decision {
        Decision {
            approved,
            by: by.into(),
            reason: None,
            at: Timestamp(at),
            digest: Some("sha256:aa".into()),
            void: None,
        }
    }

    fn state(r: &Rule, ds: &[Decision], now: i64) -> ApprovalState {
        evaluate(
            r,
            &parties(),
            Some("sha256:aa"),
            ds,
            Timestamp(0),
            Timestamp(now),
        )
        .0
    }

    #[test]
    fn waits_then_times_out() {
        let r = rule(1, &[]);
        assert!(matches!(
            state(&r, &[], 9_999),
            ApprovalState::Waiting { .. }
        ));
        assert!(matches!(
            state(&r, &[], 10_000),
            ApprovalState::TimedOut { .. }
        ));
    }

    #[test]
    fn decisions_before_the_deadline_count_late_ones_do_not() {
        let r = rule(1, &[]);
        assert!(matches!(
            state(&r, &[d(true, "alice", 5_000)], 20_000),
            ApprovalState::Approved { .. }
        ));
        assert!(matches!(
            state(&r, &[d(false, "alice", 5_000)], 6_000),
            ApprovalState::Rejected { .. }
        ));
        assert!(matches!(
            state(&r, &[d(true, "alice", 11_000)], 11_000),
            ApprovalState::TimedOut { .. }
        ));
    }

    #[test]
    fn two_of_three_counts_distinct_people() {
        let r = rule(2, &["alice", "bob", "carol"]);
        let ds = [d(true, "alice", 1), d(true, "Alice", 2)];
        let (s, c) = evaluate(
            &r,
            &parties(),
            Some("sha256:aa"),
            &ds,
            Timestamp(0),
            Timestamp(3),
        );
        assert_eq!(
            s,
            ApprovalState::Waiting {
                deadline: Timestamp(10_000),
                approvals: vec!["alice".into()],
                required: 2
            }
        );
        assert_eq!(c, [Counted::Approval { k: 1 }, Counted::Repeated]);
        assert_eq!(
            state(&r, &[d(true, "alice", 1), d(true, "carol", 2)], 3),
            ApprovalState::Approved {
                by: vec!["alice".into(), "carol".into()]
            }
        );
    }

    #[test]
    fn strangers_authors_and_triggerers_are_refused_with_the_rule() {
        let r = rule(1, &["alice", "ada", "grace"]);
        let p = parties();
        assert!(matches!(
            admit(&r, &p, "mallory"),
            Err(Refusal::NotAnApprover { .. })
        ));
        for by in ["ada", "Ada Lovelace", "ADA@example.com"] {
            let r = Rule {
                approvers: vec![],
                ..r.clone()
            };
            assert!(
                matches!(admit(&r, &p, by), Err(Refusal::Author { .. })),
                "{by}"
            );
        }
        assert!(matches!(
            admit(&r, &p, "grace"),
            Err(Refusal::Triggerer { .. })
        ));
        assert_eq!(admit(&r, &p, "alice"), Ok(()));
        let open = Rule {
            separation_of_duties: false,
            ..r
        };
        assert_eq!(admit(&open, &p, "grace"), Ok(()));
        let msg = admit(&rule(1, &["alice", "bob"]), &p, "mallory")
            .expect_err("mallory is not listed")
            .to_string();
        assert_eq!(
            msg,
            "mallory is not an approver here: `approval.approvers` lists alice, bob"
        );
    }

    #[test]
    fn approvals_for_another_digest_or_voided_do_not_count() {
        let r = rule(1, &[]);
        let mut other = d(true, "alice", 1);
        other.digest = Some("sha256:bb".into());
        let mut void = d(true, "bob", 2);
        void.void = Some("the run was superseded".into());
        let (s, c) = evaluate(
            &r,
            &parties(),
            Some("sha256:aa"),
            &[other, void],
            Timestamp(0),
            Timestamp(3),
        );
        assert!(matches!(s, ApprovalState::Waiting { .. }));
        assert!(matches!(&c[0], Counted::Void(w) if w.contains("sha256:bb")));
        assert_eq!(c[1], Counted::Void("the run was superseded".into()));
    }

    #[test]
    fn progress_names_who_is_still_needed() {
        let r = rule(2, &["alice", "bob", "ada"]);
        assert_eq!(
            progress(&r, &parties(), &["alice".into()]),
            "1 of 2 approvals (alice); waiting for 1 more from bob"
        );
        assert_eq!(
            progress(&r, &parties(), &["alice".into(), "bob".into()]),
            "2 of 2 approvals (alice, bob)"
        );
    }

    #[test]
    fn reminder_comes_before_the_deadline() {
        let r = Rule {
            remind_before: Some(Duration::from_secs(4)),
            ..rule(1, &[])
        };
        assert_eq!(r.reminder_at(Timestamp(1_000)), Some(Timestamp(7_000)));
        assert_eq!(rule(1, &[]).reminder_at(Timestamp(0)), None);
    }

    #[test]
    fn commit_links_from_remotes() {
        for (remote, web) in [
            (
                "git@github.com:acme/shop.git",
                Some("https://github.com/acme/shop"),
            ),
            (
                "https://github.com/acme/shop.git",
                Some("https://github.com/acme/shop"),
            ),
            (
                "https://token@github.com/acme/shop",
                Some("https://github.com/acme/shop"),
            ),
            (
                "ssh://git@gitlab.com/acme/sub/shop.git",
                Some("https://gitlab.com/acme/sub/shop"),
            ),
            ("/srv/git/shop.git", None),
            ("https://example.com/acme/shop.git", None),
            ("git@github.com:acme/../x", None),
        ] {
            assert_eq!(web_repository(remote).as_deref(), web, "{remote}");
        }
        assert_eq!(
            commit_url("https://github.com/acme/shop/", "abc"),
            "https://github.com/acme/shop/commit/abc"
        );
        assert_eq!(
            commit_url("https://gitlab.com/acme/shop", "abc"),
            "https://gitlab.com/acme/shop/-/commit/abc"
        );
    }
}
