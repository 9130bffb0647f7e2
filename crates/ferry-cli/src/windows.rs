//! `ferry freeze`, `ferry unfreeze`, `ferry override`: one-off freezes of an environment
//! and break-glass overrides that let one held run through (a written reason, two
//! people), and what `ferry status` shows of them. The functions that return values and
//! print nothing (`set_freeze`, `lift_freeze`, `request_override`, `confirm_override`,
//! `held_run`, `environment_gate`) are shared with `ferry serve`.

use crate::context::{Project, SystemClock, user};
use crate::error::{CliError, CliResult};
use crate::output::{json, line};
use crate::recovery::known_environment;
use ferry_api::exit;
use ferry_config::Pipeline;
use ferry_core::events::{EventKind, iso8601};
use ferry_core::run::RunView;
use ferry_core::window::{self, BreakGlass, Freeze, Gate};
use ferry_core::{RunId, Timestamp};
use ferry_engine::ports::{Clock, EventFilter, Ledger, Store};

/// How `--until` may be written.
pub const UNTIL_HELP: &str = "write a duration from now (`2h`, `3d`), an instant with its offset (`2026-12-24T08:00:00+01:00`, `2026-12-24T07:00:00Z`), or a local date and time (`2026-12-24 08:00`, `2026-12-24`) read in the environment's `windows.timezone` (UTC without one)";

/// `--until` as an instant after `now`: a duration from now, an RFC 3339 instant, or a
/// civil date (and time) in `zone`.
pub fn parse_until(text: &str, zone: &str, now: Timestamp) -> Result<Timestamp, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("`--until` is empty; {UNTIL_HELP}"));
    }
    let at = if t.starts_with(|c: char| c.is_ascii_digit()) && !t.contains('-') {
        ferry_config::parse_duration(t).map(|d| now.plus(d))?
    } else if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        Timestamp(ts.as_millisecond())
    } else {
        let civil = t
            .parse::<jiff::civil::DateTime>()
            .or_else(|_| t.parse::<jiff::civil::Date>().map(|d| d.at(0, 0, 0, 0)))
            .map_err(|_| format!("`{t}` is neither a duration nor a time; {UNTIL_HELP}"))?;
        let tz = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
        let ts = civil
            .to_zoned(tz)
            .map_err(|e| format!("`{t}` cannot be placed in {zone}: {e}"))?
            .timestamp();
        Timestamp(ts.as_millisecond())
    };
    if at <= now {
        return Err(format!(
            "`--until {t}` ({}) is not in the future; {UNTIL_HELP}",
            iso8601(at)
        ));
    }
    Ok(at)
}

fn zone_of(pipeline: &Pipeline, env: &str) -> String {
    pipeline
        .environment(env)
        .and_then(|e| e.windows.as_ref())
        .map_or_else(|| "UTC".to_string(), |w| w.timezone.clone())
}

fn need_reason(reason: &str, what: &str) -> CliResult<String> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(CliError::new(
            exit::USAGE,
            format!("{what} needs a written reason: add `--reason \"why\"`"),
        ));
    }
    Ok(r.to_string())
}

/// Records a freeze of `env` until `until` (parsed by [`parse_until`]).
pub fn set_freeze(
    pipeline: &Pipeline,
    store: &dyn Ledger,
    env: &str,
    until: &str,
    reason: &str,
    by: &str,
    now: Timestamp,
) -> CliResult<Freeze> {
    known_environment(pipeline, env)?;
    let reason = need_reason(reason, "a freeze")?;
    let until = parse_until(until, &zone_of(pipeline, env), now)
        .map_err(|m| CliError::new(exit::USAGE, m))?;
    Ok(store.freeze(&Freeze {
        id: 0,
        environment: env.to_string(),
        from: now,
        until,
        reason,
        by: by.to_string(),
        lifted_at: None,
        lifted_by: None,
    })?)
}

/// Lifts the freezes of `env`.
pub fn lift_freeze(
    pipeline: &Pipeline,
    store: &dyn Ledger,
    env: &str,
    by: &str,
    now: Timestamp,
) -> CliResult<Vec<Freeze>> {
    known_environment(pipeline, env)?;
    Ok(store.unfreeze(env, by, now)?)
}

/// The run, refusing one that has ended.
fn open_run(store: &dyn Store, run: i64) -> CliResult<RunView> {
    let view = store.load_run(RunId(run))?;
    if view.status.is_terminal() {
        return Err(CliError::conflict(format!(
            "run {run} has already ended ({}); a break-glass override is for a run still on its way",
            view.status
        )));
    }
    Ok(view)
}

/// The environment an override is for: `--env`, or the one the run is held at.
fn override_env(
    pipeline: &Pipeline,
    store: &dyn Store,
    run: i64,
    env: Option<&str>,
) -> CliResult<String> {
    match env {
        Some(e) => {
            known_environment(pipeline, e)?;
            Ok(e.to_string())
        }
        None => match held_run(store, RunId(run))? {
            Some(h) => Ok(h.environment),
            None => Err(CliError::new(
                exit::USAGE,
                format!(
                    "run {run} is not held by a window or a freeze now; name the environment with `--env ENV`"
                ),
            )),
        },
    }
}

/// First person: asks for a break-glass override of `run` in `env` (or where it is held).
pub fn request_override(
    pipeline: &Pipeline,
    store: &dyn Store,
    run: i64,
    env: Option<&str>,
    reason: &str,
    by: &str,
    now: Timestamp,
) -> CliResult<BreakGlass> {
    let reason = need_reason(reason, "a break-glass override")?;
    open_run(store, run)?;
    let env = override_env(pipeline, store, run, env)?;
    Ok(store.request_override(&BreakGlass {
        id: 0,
        run: RunId(run),
        environment: env,
        reason,
        requested_by: by.to_string(),
        requested_at: now,
        confirmed_by: None,
        confirmed_at: None,
    })?)
}

/// Second person: confirms the override (refused for the person who asked).
pub fn confirm_override(
    pipeline: &Pipeline,
    store: &dyn Store,
    run: i64,
    env: Option<&str>,
    by: &str,
    now: Timestamp,
) -> CliResult<BreakGlass> {
    open_run(store, run)?;
    let env = override_env(pipeline, store, run, env)?;
    Ok(store.confirm_override(RunId(run), &env, by, now)?)
}

/// Where and why a run is held now, read from its last `run_held` / `window_opened`
/// event (`None` when it is not held, or has ended).
pub fn held_run(store: &dyn Store, run: RunId) -> CliResult<Option<ferry_api::HeldRun>> {
    let view = store.load_run(run)?;
    if view.status.is_terminal() {
        return Ok(None);
    }
    let events = store.events(&EventFilter {
        run: Some(run),
        ..EventFilter::default()
    })?;
    let last = events
        .into_iter()
        .rev()
        .map(|(_, e)| e)
        .find(|e| matches!(e.kind, EventKind::RunHeld | EventKind::WindowOpened));
    let Some(e) = last.filter(|e| e.kind == EventKind::RunHeld) else {
        return Ok(None);
    };
    let environment = e.environment.clone().unwrap_or_default();
    let text = |k: &str| e.data[k].as_str().map(str::to_string);
    let overrides = store
        .overrides(run)?
        .into_iter()
        .filter(|o| o.environment == environment)
        .collect();
    Ok(Some(ferry_api::HeldRun {
        cause: text("cause").unwrap_or_default(),
        reason: text("reason").unwrap_or_default(),
        opens_at: text("opensAt"),
        environment,
        overrides,
    }))
}

/// The freezes of `env` not over yet, and its gate now when it has windows or a freeze.
pub fn environment_gate(
    pipeline: &Pipeline,
    store: &dyn Store,
    env: &str,
    now: Timestamp,
) -> CliResult<(Vec<Freeze>, Option<Gate>)> {
    let freezes = store.freezes(Some(env), now)?;
    let windows = pipeline.environment(env).and_then(|e| e.windows.as_ref());
    let gate = (windows.is_some() || !freezes.is_empty())
        .then(|| window::gate(windows, &freezes, &[], now));
    Ok((freezes, gate))
}

fn print_freeze(f: &Freeze) {
    line(format!(
        "{} frozen until {} by {}: {}",
        f.environment,
        iso8601(f.until),
        f.by,
        f.reason
    ));
}

/// `ferry freeze ENV --until … --reason … [--by NAME]`.
pub fn freeze(
    project: &Project,
    env: &str,
    until: &str,
    reason: &str,
    by: Option<&str>,
    as_json: bool,
) -> CliResult<i32> {
    let pipeline = project.pipeline()?;
    // The DynamoDB ledger when FERRY_DEPLOYMENTS_TABLE is set (where `ferry step` and
    // the rollback Lambda look), else the project's store.
    let shared = crate::step::Shared::open(project)?;
    let f = set_freeze(
        &pipeline,
        shared.ledger(),
        env,
        until,
        reason,
        &user(by),
        SystemClock.now(),
    )
    .map_err(|e| shared.explain(e))?;
    // On the table: announced on the stack's rollbacks topic too (when set).
    shared.publish(&[f.set_event()]);
    if as_json {
        json(&ferry_api::Freezes { freezes: vec![f] });
    } else {
        print_freeze(&f);
        line(format!(
            "runs reaching {env} wait (holding no lease) and go on by themselves when it ends; `ferry unfreeze {env}` lifts it; rollbacks are never held"
        ));
    }
    Ok(exit::OK)
}

/// `ferry unfreeze ENV [--by NAME]`.
pub fn unfreeze(project: &Project, env: &str, by: Option<&str>, as_json: bool) -> CliResult<i32> {
    let pipeline = project.pipeline()?;
    let shared = crate::step::Shared::open(project)?;
    let who = user(by);
    let lifted = lift_freeze(&pipeline, shared.ledger(), env, &who, SystemClock.now())
        .map_err(|e| shared.explain(e))?;
    shared.publish(&lifted.iter().map(Freeze::lifted_event).collect::<Vec<_>>());
    if as_json {
        json(&ferry_api::Freezes { freezes: lifted });
    } else {
        line(format!(
            "{env} unfrozen by {who} ({} freeze{} lifted); held runs go on when the deployment window allows",
            lifted.len(),
            if lifted.len() == 1 { "" } else { "s" }
        ));
    }
    Ok(exit::OK)
}

/// `ferry override RUN [--env ENV] --reason TEXT` (request) or `--confirm` (second
/// person).
pub fn override_run(
    project: &Project,
    run: i64,
    env: Option<&str>,
    reason: Option<&str>,
    confirm: bool,
    by: Option<&str>,
    as_json: bool,
) -> CliResult<i32> {
    let pipeline = project.pipeline()?;
    let store = project.open_store()?;
    let who = user(by);
    let now = SystemClock.now();
    let o = if confirm {
        confirm_override(&pipeline, &store, run, env, &who, now)?
    } else {
        request_override(&pipeline, &store, run, env, reason.unwrap_or(""), &who, now)?
    };
    if as_json {
        json(&o);
    } else if confirm {
        line(format!(
            "break-glass override of run {run} in {} confirmed by {who} (requested by {}: {}); the run goes on",
            o.environment, o.requested_by, o.reason
        ));
    } else {
        line(format!(
            "break-glass override of run {run} in {} requested by {who}: {}\n  a second person confirms it with `ferry override {run} --env {} --confirm --by NAME`",
            o.environment, o.reason, o.environment
        ));
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: Timestamp = Timestamp(1_769_508_000_000); // 2026-01-27T10:00:00Z

    #[test]
    fn until_takes_durations_instants_and_local_times() {
        assert_eq!(
            parse_until("2h", "UTC", NOW).unwrap(),
            Timestamp(NOW.0 + 7_200_000)
        );
        assert_eq!(
            iso8601(parse_until("2026-01-28T08:00:00+01:00", "UTC", NOW).unwrap()),
            "2026-01-28T07:00:00Z"
        );
        assert_eq!(
            iso8601(parse_until("2026-01-28 08:00", "Europe/Berlin", NOW).unwrap()),
            "2026-01-28T07:00:00Z"
        );
        assert_eq!(
            iso8601(parse_until("2026-07-28", "Europe/Berlin", NOW).unwrap()),
            "2026-07-27T22:00:00Z"
        );
    }

    #[test]
    fn until_in_the_past_or_unreadable_is_refused_with_the_forms() {
        let e = parse_until("2026-01-01T00:00:00Z", "UTC", NOW).unwrap_err();
        assert!(e.contains("not in the future"), "{e}");
        let e = parse_until("next friday", "UTC", NOW).unwrap_err();
        assert!(e.contains("duration from now"), "{e}");
        assert!(parse_until("0s", "UTC", NOW).is_err());
    }
}
