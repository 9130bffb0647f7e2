//! Deployment windows, freezes and break-glass overrides (seed §13.1): whether a run may
//! deploy into an environment at an instant and, when it may not, why and when it opens
//! next. Pure: `now` and the recorded freezes and overrides are handed in; local time is
//! computed with the time zone database bundled in the binary (jiff), so it is right
//! across daylight saving changes and the wrap-around of the week.
//!
//! The rule: a confirmed break-glass override for the run and environment opens the
//! gate; otherwise it is closed while a freeze is active or the environment's `windows`
//! are closed (outside every `allow` range, or inside a `deny` range). Rollbacks never
//! ask this gate.

use crate::events::{Event, EventKind, iso8601};
use crate::model::RunId;
use crate::time::Timestamp;
use ferry_config::Windows;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How far past the last freeze the next opening is looked for: the rules repeat every
/// week, so a window that opens at all opens within a week and a day (daylight saving
/// shifts included).
const SEARCH: Duration = Duration::from_secs(8 * 24 * 3600);

/// A one-off freeze of an environment (`ferry freeze ENV --until …`): no deployment
/// starts there from `from` until `until`, or until it is lifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub id: i64,
    pub environment: String,
    pub from: Timestamp,
    pub until: Timestamp,
    pub reason: String,
    pub by: String,
    /// Set by `ferry unfreeze`: the freeze ends then.
    pub lifted_at: Option<Timestamp>,
    pub lifted_by: Option<String>,
}

impl Freeze {
    /// Whether the freeze holds deployments at `t`.
    pub fn active_at(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.end()
    }

    /// When it stops holding deployments: its `until`, or when it was lifted.
    pub fn end(&self) -> Timestamp {
        match self.lifted_at {
            Some(l) => l.min(self.until),
            None => self.until,
        }
    }

    /// The `freeze_set` event recording it (both stores append exactly this).
    pub fn set_event(&self) -> Event {
        Event {
            at: self.from,
            kind: EventKind::FreezeSet,
            run: None,
            environment: Some(self.environment.clone()),
            message: format!(
                "environment {} frozen until {} by {}: {}",
                self.environment,
                iso8601(self.until),
                self.by,
                self.reason
            ),
            data: serde_json::json!({
                "event": "freeze_set",
                "freezeId": self.id,
                "environment": self.environment,
                "from": iso8601(self.from),
                "until": iso8601(self.until),
                "reason": self.reason,
                "by": self.by,
            }),
        }
    }

    /// The `freeze_lifted` event of lifting it (`lifted_at`/`lifted_by` set).
    pub fn lifted_event(&self) -> Event {
        let at = self.lifted_at.unwrap_or(self.until);
        let by = self.lifted_by.as_deref().unwrap_or_default();
        Event {
            at,
            kind: EventKind::FreezeLifted,
            run: None,
            environment: Some(self.environment.clone()),
            message: format!(
                "freeze {} of environment {} lifted by {by}; runs held by it go on",
                self.id, self.environment
            ),
            data: serde_json::json!({
                "event": "freeze_lifted",
                "freezeId": self.id,
                "environment": self.environment,
                "until": iso8601(self.until),
                "reason": self.reason,
                "liftedBy": by,
                "timestamp": iso8601(at),
            }),
        }
    }
}

/// A break-glass override: one run may deploy into one environment although its window
/// is closed or it is frozen. It needs a written reason and two people: one requests it,
/// a different one confirms it; only a confirmed override opens the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    pub id: i64,
    pub run: RunId,
    pub environment: String,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: Timestamp,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<Timestamp>,
}

impl BreakGlass {
    /// Why `by` may not confirm this override, if they may not: the person who asked for
    /// it cannot be the second person, and a confirmed override is not confirmed again.
    pub fn refuse_confirmation(&self, by: &str) -> Option<String> {
        if let Some(first) = &self.confirmed_by {
            return Some(format!(
                "the break-glass override of run {} in {} is already confirmed by {first}",
                self.run, self.environment
            ));
        }
        if by.trim().eq_ignore_ascii_case(self.requested_by.trim()) {
            return Some(format!(
                "{by} requested the break-glass override of run {} in {} and cannot also confirm it; a second person must run `ferry override {} --env {} --confirm --by NAME`",
                self.run, self.environment, self.run, self.environment
            ));
        }
        None
    }

    /// Why a second request for the same run and environment is refused.
    pub fn already_requested(&self) -> String {
        match &self.confirmed_by {
            Some(by) => format!(
                "run {} already has a break-glass override for {}, confirmed by {by}",
                self.run, self.environment
            ),
            None => format!(
                "{} already requested a break-glass override of run {} in {}; a second person confirms it with `ferry override {} --env {} --confirm --by NAME`",
                self.requested_by, self.run, self.environment, self.run, self.environment
            ),
        }
    }

    /// The `break_glass_requested` event.
    pub fn requested_event(&self) -> Event {
        Event {
            at: self.requested_at,
            kind: EventKind::BreakGlassRequested,
            run: Some(self.run),
            environment: Some(self.environment.clone()),
            message: format!(
                "break-glass override of run {} in {} requested by {}: {}; a second person must confirm it",
                self.run, self.environment, self.requested_by, self.reason
            ),
            data: self.data("break_glass_requested"),
        }
    }

    /// The `break_glass_confirmed` event (`confirmed_by`/`confirmed_at` set).
    pub fn confirmed_event(&self) -> Event {
        Event {
            at: self.confirmed_at.unwrap_or(self.requested_at),
            kind: EventKind::BreakGlassConfirmed,
            run: Some(self.run),
            environment: Some(self.environment.clone()),
            message: format!(
                "break-glass override of run {} in {} confirmed by {} (requested by {}: {})",
                self.run,
                self.environment,
                self.confirmed_by.as_deref().unwrap_or_default(),
                self.requested_by,
                self.reason
            ),
            data: self.data("break_glass_confirmed"),
        }
    }

    fn data(&self, event: &str) -> serde_json::Value {
        serde_json::json!({
            "event": event,
            "overrideId": self.id,
            "runId": self.run,
            "environment": self.environment,
            "reason": self.reason,
            "requestedBy": self.requested_by,
            "requestedAt": iso8601(self.requested_at),
            "confirmedBy": self.confirmed_by,
            "confirmedAt": self.confirmed_at.map(iso8601),
        })
    }
}

/// Why `ferry unfreeze` finds nothing to lift.
pub fn not_frozen(environment: &str) -> String {
    format!("environment {environment} is not frozen; `ferry status` lists the freezes")
}

/// Why a confirmation finds nothing to confirm.
pub fn not_requested(run: RunId, environment: &str) -> String {
    format!(
        "no break-glass override of run {run} in {environment} was requested; request one first with `ferry override {run} --env {environment} --reason TEXT --by NAME`"
    )
}

/// What holds a run at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A `ferry freeze`.
    Freeze,
    /// The environment's `windows`.
    Window,
}

/// The gate before deploying into an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Gate {
    /// Deploying may start; `override_by` names the confirming person when a break-glass
    /// override is what opened it.
    Open { override_by: Option<String> },
    /// Deploying waits. `opens_at` is the first instant the rules and freezes allow it
    /// (`None`: not within the search, so only an override or a change opens it).
    Closed {
        cause: Cause,
        reason: String,
        opens_at: Option<Timestamp>,
    },
}

impl Gate {
    pub fn is_open(&self) -> bool {
        matches!(self, Gate::Open { .. })
    }
}

/// The gate of `environment` for `run` at `now`: `freezes` are the environment's
/// (lifted ones included, they are ignored from their lifting on), `overrides` the
/// run's for that environment.
pub fn gate(
    windows: Option<&Windows>,
    freezes: &[Freeze],
    overrides: &[BreakGlass],
    now: Timestamp,
) -> Gate {
    if let Some(o) = overrides.iter().find(|o| o.confirmed_by.is_some()) {
        return Gate::Open {
            override_by: o.confirmed_by.clone(),
        };
    }
    let zone = windows.map(zone_of);
    let (cause, mut reason) = match freezes.iter().find(|f| f.active_at(now)) {
        Some(f) => (
            Cause::Freeze,
            format!(
                "frozen until {} by {}: {}",
                iso8601(f.until),
                f.by,
                f.reason
            ),
        ),
        None => match (windows, &zone) {
            (Some(w), Some(z)) => match closed_by_rules(w, z, now) {
                Some(why) => (Cause::Window, why),
                None => return Gate::Open { override_by: None },
            },
            _ => return Gate::Open { override_by: None },
        },
    };
    if let Some(o) = overrides.first() {
        reason.push_str(&format!(
            "; break-glass override requested by {}, waiting for a second person to confirm it",
            o.requested_by
        ));
    }
    Gate::Closed {
        cause,
        reason,
        opens_at: opens_at(windows, freezes, now),
    }
}

/// Whether the rules and freezes allow deploying at `t` (overrides aside).
pub fn open_at(windows: Option<&Windows>, freezes: &[Freeze], t: Timestamp) -> bool {
    if freezes.iter().any(|f| f.active_at(t)) {
        return false;
    }
    match windows {
        None => true,
        Some(w) => closed_by_rules(w, &zone_of(w), t).is_none(),
    }
}

/// The first instant at or after `now` when [`open_at`] holds, within the search (a week
/// and a day past the last freeze).
pub fn opens_at(
    windows: Option<&Windows>,
    freezes: &[Freeze],
    now: Timestamp,
) -> Option<Timestamp> {
    if open_at(windows, freezes, now) {
        return Some(now);
    }
    let last_freeze = freezes
        .iter()
        .map(Freeze::end)
        .filter(|e| *e > now)
        .max()
        .unwrap_or(now);
    let horizon = last_freeze.plus(SEARCH);
    let mut candidates: Vec<Timestamp> = freezes
        .iter()
        .flat_map(|f| [f.from, f.end()])
        .filter(|t| *t > now && *t <= horizon)
        .collect();
    if let Some(w) = windows {
        candidates.extend(boundaries(w, &zone_of(w), now, horizon));
    }
    candidates.sort();
    candidates.dedup();
    candidates
        .into_iter()
        .find(|t| open_at(windows, freezes, *t))
}

/// The zone of the windows; UTC if the name is unknown (the validator refuses unknown
/// names, so this happens only with a hand-built model).
fn zone_of(w: &Windows) -> TimeZone {
    TimeZone::get(&w.timezone).unwrap_or(TimeZone::UTC)
}

/// Seconds since local Monday 00:00 at `t` in `zone`.
fn week_seconds(zone: &TimeZone, t: Timestamp) -> Option<u32> {
    let ts = jiff::Timestamp::from_millisecond(t.0).ok()?;
    let z = ts.to_zoned(zone.clone());
    let day = u32::try_from(z.weekday().to_monday_zero_offset()).ok()?;
    let secs = u32::try_from(z.hour()).ok()? * 3600
        + u32::try_from(z.minute()).ok()? * 60
        + u32::try_from(z.second()).ok()?;
    Some(day * 86_400 + secs)
}

/// Why the windows are closed at `t`, or `None` when they are open.
fn closed_by_rules(w: &Windows, zone: &TimeZone, t: Timestamp) -> Option<String> {
    let Some(s) = week_seconds(zone, t) else {
        return Some("the time is outside the range the time zone database covers".into());
    };
    if let Some(d) = w.deny.iter().find(|r| r.contains(s)) {
        return Some(format!(
            "inside the deployment window's deny range `{}` ({})",
            d.label, w.timezone
        ));
    }
    if !w.allow.is_empty() && !w.allow.iter().any(|r| r.contains(s)) {
        let mut labels: Vec<&str> = w.allow.iter().map(|r| r.label.as_str()).collect();
        labels.dedup();
        return Some(format!(
            "outside the deployment window's allow ranges `{}` ({})",
            labels.join("`, `"),
            w.timezone
        ));
    }
    None
}

/// Every instant in `(now, horizon]` where the open/closed state of the rules may
/// change: each range boundary's local time on each day (both readings of a repeated
/// hour, and the instant after a skipped one), and the zone's own transitions (a
/// boundary inside a skipped hour takes effect at the jump).
fn boundaries(w: &Windows, zone: &TimeZone, now: Timestamp, horizon: Timestamp) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let (Ok(start), Ok(end)) = (
        jiff::Timestamp::from_millisecond(now.0),
        jiff::Timestamp::from_millisecond(horizon.0),
    ) else {
        return out;
    };
    let marks: Vec<(u32, u32)> = w
        .allow
        .iter()
        .chain(&w.deny)
        .flat_map(|r| [r.from, r.to])
        .map(|t| (t.day(), t.minute_of_day()))
        .collect();
    let Ok(mut date) = start.to_zoned(zone.clone()).date().yesterday() else {
        return out;
    };
    let last = end.to_zoned(zone.clone()).date();
    while date <= last {
        let day = u32::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0);
        for (d, minute) in &marks {
            if *d != day {
                continue;
            }
            let (h, m) = (
                i8::try_from(minute / 60).unwrap_or(0),
                i8::try_from(minute % 60).unwrap_or(0),
            );
            let dt: DateTime = date.at(h, m, 0, 0);
            let amb = zone.to_ambiguous_timestamp(dt);
            for ts in [amb.earlier(), amb.later()].into_iter().flatten() {
                out.push(Timestamp(ts.as_millisecond()));
            }
        }
        match date.tomorrow() {
            Ok(d) => date = d,
            Err(_) => break,
        }
    }
    for tr in zone.following(start) {
        if tr.timestamp() > end {
            break;
        }
        out.push(Timestamp(tr.timestamp().as_millisecond()));
    }
    out.retain(|t| *t > now && *t <= horizon);
    out
}

/// The `run_held` event: a run waits at the gate before deploying into `environment`.
pub fn held_event(
    run: RunId,
    environment: &str,
    cause: Cause,
    reason: &str,
    opens_at: Option<Timestamp>,
    at: Timestamp,
) -> Event {
    let until = match opens_at {
        Some(t) => format!("it goes on by itself at {}", iso8601(t)),
        None => "it goes on when the freeze is lifted or a break-glass override is confirmed"
            .to_string(),
    };
    Event {
        at,
        kind: EventKind::RunHeld,
        run: Some(run),
        environment: Some(environment.to_string()),
        message: format!("run {run} held before deploying to {environment}: {reason}; {until}"),
        data: serde_json::json!({
            "event": "run_held",
            "runId": run,
            "environment": environment,
            "cause": cause,
            "reason": reason,
            "opensAt": opens_at.map(iso8601),
            "timestamp": iso8601(at),
        }),
    }
}

/// The `window_opened` event: a held run goes on (`how`: the window opened, the freeze
/// ended, or an override by someone).
pub fn opened_event(run: RunId, environment: &str, how: &str, at: Timestamp) -> Event {
    Event {
        at,
        kind: EventKind::WindowOpened,
        run: Some(run),
        environment: Some(environment.to_string()),
        message: format!("run {run} goes on to deploy to {environment}: {how}"),
        data: serde_json::json!({
            "event": "window_opened",
            "runId": run,
            "environment": environment,
            "how": how,
            "timestamp": iso8601(at),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_config::windows::parse_range;

    /// Milliseconds of a UTC civil time.
    pub(crate) fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
        let dt = jiff::civil::date(y, mo, d).at(h, mi, 0, 0);
        let ts = TimeZone::UTC
            .to_ambiguous_timestamp(dt)
            .compatible()
            .expect("valid");
        Timestamp(ts.as_millisecond())
    }

    fn berlin(deny: &[&str], allow: &[&str]) -> Windows {
        Windows {
            timezone: "Europe/Berlin".into(),
            allow: allow
                .iter()
                .flat_map(|r| parse_range(r).expect("range"))
                .collect(),
            deny: deny
                .iter()
                .flat_map(|r| parse_range(r).expect("range"))
                .collect(),
        }
    }

    #[test]
    fn a_weekend_freeze_window_holds_friday_afternoon_until_monday_morning() {
        let w = berlin(&["Fri 15:00 - Mon 08:00"], &[]);
        // Friday 2026-11-27 16:00 Berlin = 15:00 UTC (CET, +01:00).
        let fri = utc(2026, 11, 27, 15, 0);
        match gate(Some(&w), &[], &[], fri) {
            Gate::Closed {
                cause, opens_at, ..
            } => {
                assert_eq!(cause, Cause::Window);
                // Monday 08:00 Berlin = 07:00 UTC.
                assert_eq!(opens_at, Some(utc(2026, 11, 30, 7, 0)));
            }
            other => panic!("expected closed, got {other:?}"),
        }
        assert!(gate(Some(&w), &[], &[], utc(2026, 11, 30, 7, 0)).is_open());
        assert!(gate(Some(&w), &[], &[], utc(2026, 11, 27, 13, 59)).is_open());
    }

    #[test]
    fn the_window_follows_daylight_saving_time() {
        // 29 March 2026: Berlin moves from +01:00 to +02:00. Monday 30 March 08:00 local
        // is 06:00 UTC; the Monday before (23 March) it is 07:00 UTC.
        let w = berlin(&["Fri 15:00 - Mon 08:00"], &[]);
        assert_eq!(
            opens_at(Some(&w), &[], utc(2026, 3, 27, 15, 0)),
            Some(utc(2026, 3, 30, 6, 0))
        );
        assert_eq!(
            opens_at(Some(&w), &[], utc(2026, 3, 20, 15, 0)),
            Some(utc(2026, 3, 23, 7, 0))
        );
        // 25 October 2026: back to +01:00.
        assert_eq!(
            opens_at(Some(&w), &[], utc(2026, 10, 23, 14, 0)),
            Some(utc(2026, 10, 26, 7, 0))
        );
    }

    #[test]
    fn a_boundary_in_the_skipped_hour_takes_effect_at_the_jump() {
        // Deny Sunday 00:00-02:30 local: on 29 March 2026 02:30 never happens; the
        // clock jumps from 02:00 (01:00 UTC) to 03:00, and the window opens then.
        let w = berlin(&["Sun 00:00-02:30"], &[]);
        assert_eq!(
            opens_at(Some(&w), &[], utc(2026, 3, 28, 23, 30)),
            Some(utc(2026, 3, 29, 1, 0))
        );
    }

    #[test]
    fn allow_ranges_open_on_working_days_only() {
        let w = berlin(&[], &["Mon-Fri 08:00-18:00"]);
        // Saturday noon → Monday 08:00 (07:00 UTC in winter).
        let sat = utc(2026, 11, 28, 11, 0);
        assert_eq!(opens_at(Some(&w), &[], sat), Some(utc(2026, 11, 30, 7, 0)));
        match gate(Some(&w), &[], &[], sat) {
            Gate::Closed { reason, .. } => assert!(reason.contains("allow"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    fn freeze(from: Timestamp, until: Timestamp) -> Freeze {
        Freeze {
            id: 1,
            environment: "production".into(),
            from,
            until,
            reason: "release party".into(),
            by: "alice".into(),
            lifted_at: None,
            lifted_by: None,
        }
    }

    #[test]
    fn a_freeze_holds_until_it_ends_or_is_lifted_then_the_window_decides() {
        let w = berlin(&["Fri 15:00 - Mon 08:00"], &[]);
        let now = utc(2026, 11, 26, 10, 0); // Thursday
        let mut f = freeze(now, utc(2026, 11, 27, 16, 0)); // into Friday's deny range
        match gate(Some(&w), std::slice::from_ref(&f), &[], now) {
            Gate::Closed {
                cause, opens_at, ..
            } => {
                assert_eq!(cause, Cause::Freeze);
                assert_eq!(opens_at, Some(utc(2026, 11, 30, 7, 0)));
            }
            other => panic!("{other:?}"),
        }
        f.lifted_at = Some(utc(2026, 11, 26, 11, 0));
        assert!(
            gate(
                Some(&w),
                std::slice::from_ref(&f),
                &[],
                utc(2026, 11, 26, 11, 0)
            )
            .is_open()
        );
        assert!(
            !gate(
                Some(&w),
                std::slice::from_ref(&f),
                &[],
                utc(2026, 11, 26, 10, 59)
            )
            .is_open()
        );
    }

    #[test]
    fn only_a_confirmed_override_opens_and_never_by_the_same_person() {
        let now = utc(2026, 11, 26, 10, 0);
        let f = freeze(now, utc(2026, 12, 1, 0, 0));
        let mut o = BreakGlass {
            id: 1,
            run: RunId(7),
            environment: "production".into(),
            reason: "hotfix for the outage".into(),
            requested_by: "alice".into(),
            requested_at: now,
            confirmed_by: None,
            confirmed_at: None,
        };
        match gate(
            None,
            std::slice::from_ref(&f),
            std::slice::from_ref(&o),
            now,
        ) {
            Gate::Closed { reason, .. } => assert!(reason.contains("second person"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(o.refuse_confirmation("alice").is_some());
        assert!(o.refuse_confirmation(" Alice ").is_some());
        assert!(o.refuse_confirmation("bob").is_none());
        o.confirmed_by = Some("bob".into());
        o.confirmed_at = Some(now);
        assert_eq!(
            gate(None, &[f], &[o.clone()], now),
            Gate::Open {
                override_by: Some("bob".into())
            }
        );
        assert!(o.refuse_confirmation("carol").is_some());
    }

    #[test]
    fn a_window_that_never_opens_reports_no_time() {
        let w = Windows {
            timezone: "UTC".into(),
            allow: vec![],
            deny: parse_range("daily 00:00-24:00").expect("range"),
        };
        assert_eq!(opens_at(Some(&w), &[], utc(2026, 1, 1, 0, 0)), None);
    }
}
