//! `ferry report [--since 30d] [--env ENV] [--json]`: the DORA measures of one
//! environment (default: the last one, production) over a window, as a table or JSON.
//! The measures are `ferry_core::dora`'s; the dashboard's DORA page shows the same.

use crate::context::Project;
use crate::error::{CliError, CliResult};
use ferry_api::exit;
use ferry_config::Pipeline;
use ferry_core::dora::{self, Day, Measures, Window};
use ferry_core::time::human;
use ferry_core::{Timestamp, events::iso8601};
use ferry_engine::ports::Store;
use serde::Serialize;

/// The measures of one environment over one window, and the window's days for charts.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub environment: String,
    #[serde(flatten)]
    pub measures: Measures,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Day>,
}

/// `--since`: a duration back from now (`30d`, `12h`, `1d12h`) or a UTC date
/// (`2026-11-01`, from its midnight). Anything else is a usage error naming both forms.
pub fn parse_since(text: &str, now: Timestamp) -> Result<Window, String> {
    let t = text.trim();
    if let Ok(d) = t.parse::<jiff::civil::Date>() {
        let from = d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|e| format!("`--since {t}`: {e}"))?
            .timestamp()
            .as_millisecond();
        if from >= now.0 {
            return Err(format!(
                "`--since {t}` is not in the past; give an earlier date or a duration like `30d`"
            ));
        }
        return Ok(Window {
            from: Timestamp(from),
            to: now,
        });
    }
    match ferry_config::parse_duration(t) {
        Ok(d) if d.is_zero() => Err(format!(
            "`--since {t}` is an empty window; give a duration like `7d`, `30d` or `90d`, or a date like `2026-11-01`"
        )),
        Ok(d) => Ok(Window {
            from: Timestamp(
                now.0
                    .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            ),
            to: now,
        }),
        Err(e) => Err(format!(
            "`--since {t}`: {e}; or a UTC date like `2026-11-01`"
        )),
    }
}

/// The environment asked for, or the pipeline's last one; an unknown name is not found
/// (exit 5, as for every command that takes `--env`), listing the environments.
pub fn environment(pipeline: &Pipeline, env: Option<&str>) -> CliResult<String> {
    let names: Vec<&str> = pipeline
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    match env {
        Some(e) if names.contains(&e) => Ok(e.to_string()),
        Some(e) => Err(CliError::not_found(format!(
            "no environment `{e}` in the pipeline; its environments are: {}",
            names.join(", ")
        ))),
        None => names
            .last()
            .map(|n| (*n).to_string())
            .ok_or_else(|| CliError::config("the pipeline has no environments")),
    }
}

/// The measures of `environment` over `window`, from the store's samples; with the
/// window's days when `with_days`.
pub fn build(
    store: &dyn Store,
    environment: &str,
    window: Window,
    with_days: bool,
) -> CliResult<Report> {
    let samples = store.dora_samples(environment, window.from)?;
    Ok(Report {
        environment: environment.to_string(),
        measures: dora::measure(&samples, window),
        days: if with_days {
            dora::daily(&samples, window)
        } else {
            Vec::new()
        },
    })
}

/// `ferry report`.
pub fn command(project: &Project, since: &str, env: Option<&str>, as_json: bool) -> CliResult<i32> {
    let now = ferry_engine::ports::Clock::now(&crate::context::SystemClock);
    let window = parse_since(since, now).map_err(|m| CliError::new(exit::USAGE, m))?;
    let (pipeline, _) = project.load()?;
    let environment = environment(&pipeline, env)?;
    let store = project.open_store()?;
    let report = build(&store, &environment, window, false)?;
    if as_json {
        crate::output::json(&report);
    } else {
        crate::output::out(&table(&report, since));
    }
    Ok(exit::OK)
}

/// A rate as a percentage, or "no data".
pub fn percent(r: Option<f64>) -> String {
    r.map_or_else(|| "no data".to_string(), |r| format!("{:.1} %", r * 100.0))
}

/// The terminal table.
pub fn table(r: &Report, since: &str) -> String {
    let m = &r.measures;
    let no = || "no data".to_string();
    let day = |t: Timestamp| iso8601(t).get(..16).unwrap_or_default().replace('T', " ");
    let mut out = format!(
        "DORA measures of {}, since {} ({} → {} UTC, {:.1} days)\n\n",
        r.environment,
        since.trim(),
        day(m.window.from),
        day(m.window.to),
        m.window.days()
    );
    let rows: Vec<(&str, String)> = vec![
        (
            "deployments",
            format!(
                "{} ({} succeeded, {} change failures)",
                m.deployments, m.succeeded, m.change_failures
            ),
        ),
        (
            "deployment frequency",
            m.per_day
                .map_or_else(no, |d| format!("{d:.2} per day ({:.2} per week)", d * 7.0)),
        ),
        (
            "lead time for changes",
            match (m.lead_time_median, m.lead_time_p90) {
                (Some(a), Some(b)) => format!("median {}, p90 {}", human(a), human(b)),
                _ => no(),
            },
        ),
        (
            "time to restore",
            match m.time_to_restore_median {
                Some(t) if m.unrestored > 0 => {
                    format!("median {} ({} not restored)", human(t), m.unrestored)
                }
                Some(t) => format!("median {}", human(t)),
                None if m.unrestored > 0 => {
                    format!("no restore yet ({} not restored)", m.unrestored)
                }
                None => no(),
            },
        ),
        ("change failure rate", percent(m.change_failure_rate)),
        ("deployment success rate", percent(m.success_rate)),
    ];
    out.push_str(&format!("  {:<26} {}\n", "MEASURE", "VALUE"));
    for (k, v) in rows {
        out.push_str(&format!("  {k:<26} {v}\n"));
    }
    if m.deployments == 0 {
        out.push_str(&format!(
            "\nno finished deployment of {} in this window: every measure is \"no data\"\n",
            r.environment
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::dora::DAY_MS;

    #[test]
    fn since_reads_durations_and_dates_and_refuses_the_rest() {
        let now = Timestamp(100 * DAY_MS);
        assert_eq!(
            parse_since("30d", now),
            Ok(Window {
                from: Timestamp(70 * DAY_MS),
                to: now
            })
        );
        assert_eq!(
            parse_since("1970-01-02", now).map(|w| w.from),
            Ok(Timestamp(DAY_MS))
        );
        for bad in ["", "thirty days", "-3d", "0d", "2999-01-01", "30x"] {
            let e = parse_since(bad, now).expect_err("refused");
            assert!(e.contains("--since"), "{bad}: {e}");
        }
    }
}
