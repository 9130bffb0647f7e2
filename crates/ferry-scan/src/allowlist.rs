//! The allowlist: findings a person has accepted, each with a justification and
//! perhaps an expiry date after which the finding blocks again.
//!
//! An entry matches a finding when its `id` equals the finding's id or one of its
//! aliases (a CVE or GHSA id the audit reports for the same advisory), ignoring ASCII
//! case, and, when it names a `package`, the finding's package (ignoring ASCII case)
//! or resource logical id. An entry holds through its `expires` day and is expired
//! from the next day on. Entries that do not validate (no reason, a bad date) allow
//! nothing: the allowlist fails closed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::finding::Finding;

/// A calendar day, `YYYY-MM-DD`. Ordered by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// The year, 1 to 9999.
    pub year: u16,
    /// The month, 1 to 12.
    pub month: u8,
    /// The day of the month, 1 to 28–31.
    pub day: u8,
}

impl Date {
    /// A date, if it exists on the calendar.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        ((1..=9999).contains(&year) && (1..=days).contains(&day)).then_some(Date {
            year,
            month,
            day,
        })
    }
}

/// Why a date does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a date: write it as YYYY-MM-DD, e.g. 2027-03-31")]
pub struct DateError(pub String);

impl FromStr for Date {
    type Err = DateError;
    fn from_str(s: &str) -> Result<Date, DateError> {
        let err = || DateError(s.to_string());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u16, DateError> {
            let part = &s[r];
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().map_err(|_| err())
            } else {
                Err(err())
            }
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        Date::new(
            y,
            u8::try_from(m).map_err(|_| err())?,
            u8::try_from(d).map_err(|_| err())?,
        )
        .ok_or_else(err)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One allowlist entry as written (in `ferry.yml`'s `build.gates.security.allowlist`
/// or an allowlist file). Strings are kept as written so [`validate`] can report every
/// problem at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowEntry {
    /// The rule or advisory id it accepts (`GHSA-…`, `RUSTSEC-…`, `PYSEC-…`, `CVE-…`, a
    /// rule name).
    pub id: String,
    /// Only for this package (or resource logical id); any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Why it is accepted: required, not blank.
    #[serde(default)]
    pub reason: String,
    /// The last day it holds, `YYYY-MM-DD`; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// A problem with one allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowlist entry {index} ({id}): {field}: {message}")]
pub struct AllowlistProblem {
    /// The entry's position, from 1.
    pub index: usize,
    /// The entry's id, or `no id`.
    pub id: String,
    /// The key at fault.
    pub field: &'static str,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// Every problem of every entry; empty when the allowlist is valid.
pub fn validate(entries: &[AllowEntry]) -> Vec<AllowlistProblem> {
    let mut problems = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let id = if e.id.trim().is_empty() {
            "no id".to_string()
        } else {
            e.id.trim().to_string()
        };
        let mut problem = |field, message: String| {
            problems.push(AllowlistProblem {
                index: i + 1,
                id: id.clone(),
                field,
                message,
            })
        };
        if e.id.trim().is_empty() {
            problem(
                "id",
                "is empty: write the advisory or rule id it accepts, e.g. `id: GHSA-xxxx-xxxx-xxxx`".into(),
            );
        }
        if e.reason.trim().is_empty() {
            problem(
                "reason",
                "is required: write why this finding is accepted, e.g. `reason: not reachable, we never parse untrusted input`".into(),
            );
        }
        if e.package.as_deref().is_some_and(|p| p.trim().is_empty()) {
            problem(
                "package",
                "is empty: name the package, or leave `package` out to match any".into(),
            );
        }
        if let Some(exp) = &e.expires
            && let Err(err) = exp.trim().parse::<Date>()
        {
            problem("expires", err.to_string());
        }
    }
    problems
}

/// What applying an allowlist has to tell the user besides the findings it allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowNote {
    /// An entry matched findings but expired: they block (or warn) again.
    Expired {
        /// The entry's position, from 1.
        index: usize,
        /// The entry's id.
        id: String,
        /// The last day it held.
        expired: Date,
        /// How many findings it would have allowed.
        findings: usize,
    },
    /// An entry that does not validate allowed nothing.
    Invalid {
        /// The entry's position, from 1.
        index: usize,
        /// The entry's id.
        id: String,
    },
    /// A valid, unexpired entry that matched nothing (it may be stale).
    Unused {
        /// The entry's position, from 1.
        index: usize,
        /// The entry's id.
        id: String,
    },
}

impl fmt::Display for AllowNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowNote::Expired {
                index,
                id,
                expired,
                findings,
            } => write!(
                f,
                "allowlist entry {index} ({id}) expired on {expired}: {findings} finding(s) count again; fix them or renew the entry with a new `expires` and reason"
            ),
            AllowNote::Invalid { index, id } => write!(
                f,
                "allowlist entry {index} ({id}) is not valid and allows nothing"
            ),
            AllowNote::Unused { index, id } => write!(
                f,
                "allowlist entry {index} ({id}) matched no finding; remove it if it is no longer needed"
            ),
        }
    }
}

/// Whether `entry` is about `finding` (its id or one of its aliases and, if given,
/// package), regardless of validity or expiry.
pub fn matches(entry: &AllowEntry, finding: &Finding) -> bool {
    if !finding.is_named(&entry.id) {
        return false;
    }
    match entry.package.as_deref().map(str::trim) {
        None => true,
        Some(p) => {
            let loc = &finding.location;
            loc.package
                .as_deref()
                .is_some_and(|q| q.eq_ignore_ascii_case(p))
                || loc.logical_id.as_deref() == Some(p)
        }
    }
}

/// Applies the allowlist on `today`: each finding matched by a valid, unexpired entry
/// gets `allowed = Some(reason)` (the first such entry's); one matched only by expired
/// entries gets `expired = Some(last day)` (the first such entry's) and counts again.
/// Findings already allowed are left as they are. Returns notes on expired, invalid and
/// unused entries.
pub fn apply(findings: &mut [Finding], entries: &[AllowEntry], today: Date) -> Vec<AllowNote> {
    let invalid: std::collections::HashSet<usize> =
        validate(entries).into_iter().map(|p| p.index - 1).collect();
    let mut used = vec![0usize; entries.len()];
    for finding in findings.iter_mut() {
        if finding.allowed.is_some() {
            continue;
        }
        for (i, e) in entries.iter().enumerate() {
            if invalid.contains(&i) || !matches(e, finding) {
                continue;
            }
            used[i] += 1;
            let expired = e
                .expires
                .as_deref()
                .and_then(|x| x.trim().parse::<Date>().ok())
                .is_some_and(|d| today > d);
            if expired {
                if finding.expired.is_none() {
                    finding.expired = e
                        .expires
                        .as_deref()
                        .and_then(|x| x.trim().parse::<Date>().ok());
                }
            } else {
                finding.allowed = Some(e.reason.trim().to_string());
                finding.expired = None;
                break;
            }
        }
    }
    let mut notes = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let id = e.id.trim().to_string();
        if invalid.contains(&i) {
            notes.push(AllowNote::Invalid { index: i + 1, id });
            continue;
        }
        let expired = e
            .expires
            .as_deref()
            .and_then(|x| x.trim().parse::<Date>().ok())
            .filter(|d| today > *d);
        match expired {
            Some(d) if used[i] > 0 => notes.push(AllowNote::Expired {
                index: i + 1,
                id,
                expired: d,
                findings: used[i],
            }),
            _ if used[i] == 0 => notes.push(AllowNote::Unused { index: i + 1, id }),
            _ => {}
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_order() {
        let d: Date = "2024-02-29".parse().expect("leap day");
        assert_eq!(d.to_string(), "2024-02-29");
        assert!("2023-02-29".parse::<Date>().is_err());
        assert!("2024-13-01".parse::<Date>().is_err());
        assert!("2024-1-01".parse::<Date>().is_err());
        assert!("+024-01-01".parse::<Date>().is_err());
        assert!(Date::new(2024, 1, 31) < Date::new(2024, 2, 1));
    }
}
