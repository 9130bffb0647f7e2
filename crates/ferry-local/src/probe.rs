//! The local alarm probe: one datapoint from an HTTP endpoint, a Prometheus query or a
//! command. A probe that cannot answer is a missing datapoint, not a breach: the
//! alarm's missing-data rule decides what that means.

use crate::http::{http_get, http_get_status};
use ferry_config::{Alarm, AlarmSource, Comparison};
use ferry_core::alarm::Datapoint;
use ferry_engine::ports::AlarmProbe;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long one Prometheus query may take, connection included.
pub const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(5);

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
            AlarmSource::Prometheus {
                url,
                query,
                threshold,
                comparison,
            } => sample_prometheus(url, query, *threshold, *comparison),
            AlarmSource::External => (
                Datapoint::Missing,
                "state is pushed from outside".to_string(),
            ),
        }
    }
}

/// One instant query against the Prometheus HTTP API, compared with `threshold`.
fn sample_prometheus(
    base: &str,
    query: &str,
    threshold: f64,
    comparison: Comparison,
) -> (Datapoint, String) {
    let url = query_url(base, query);
    match http_get(&url, PROMETHEUS_TIMEOUT) {
        Ok((status, body)) => judge(status, &body, query, threshold, comparison),
        Err(e) => (
            Datapoint::Missing,
            format!("no answer from Prometheus at {base}: {e} ({query})"),
        ),
    }
}

/// `GET {base}/api/v1/query?query=…` for an instant query; `base` may end with `/`.
fn query_url(base: &str, query: &str) -> String {
    format!(
        "{}/api/v1/query?query={}",
        base.trim_end_matches('/'),
        percent_encode(query)
    )
}

/// Percent-encodes `text` (as UTF-8) for a URL query value: everything but the RFC 3986
/// unreserved characters `A-Z a-z 0-9 - . _ ~` becomes `%XX`.
fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() * 3);
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// The datapoint and its detail for a Prometheus answer (`status` code and JSON `body`).
fn judge(
    status: u16,
    body: &[u8],
    query: &str,
    threshold: f64,
    comparison: Comparison,
) -> (Datapoint, String) {
    match read_value(status, body, comparison) {
        Err(why) => (Datapoint::Missing, format!("{why} ({query})")),
        Ok((value, note)) => {
            let op = comparison.symbol();
            let note = note.map(|n| format!("; {n}")).unwrap_or_default();
            if comparison.breaches(value, threshold) {
                (
                    Datapoint::Breaching,
                    format!("value {value} {op} {threshold} ({query}{note})"),
                )
            } else {
                (
                    Datapoint::NotBreaching,
                    format!("value {value}, not {op} {threshold} ({query}{note})"),
                )
            }
        }
    }
}

/// The value a query answer carries, with a note when it was chosen among several
/// series; or why there is none.
fn read_value(
    status: u16,
    body: &[u8],
    comparison: Comparison,
) -> Result<(f64, Option<String>), String> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    // Prometheus answers errors (bad PromQL: 400, a failed evaluation: 422, …) with a
    // JSON body that says what went wrong; that beats the bare status code.
    if let Some(j) = &json
        && j.get("status").and_then(Value::as_str) == Some("error")
    {
        let error = j
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error text");
        return Err(match j.get("errorType").and_then(Value::as_str) {
            Some(kind) => format!("Prometheus error ({kind}): {error}"),
            None => format!("Prometheus error: {error}"),
        });
    }
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return Err(if text.is_empty() {
            format!("Prometheus answered HTTP {status}")
        } else {
            format!("Prometheus answered HTTP {status}: {}", clip(text, 200))
        });
    }
    let json = json.ok_or_else(|| {
        format!(
            "Prometheus' answer is not JSON: {}",
            clip(String::from_utf8_lossy(body).trim(), 200)
        )
    })?;
    match json.get("status").and_then(Value::as_str) {
        Some("success") => {}
        other => {
            return Err(format!(
                "Prometheus' answer has status {}",
                other.map_or("(none)".to_string(), |s| format!("`{s}`"))
            ));
        }
    }
    let data = json.get("data").ok_or("Prometheus' answer has no `data`")?;
    let result = data.get("result");
    match data.get("resultType").and_then(Value::as_str) {
        Some("scalar") => {
            let v = sample_value(result).ok_or("the scalar result has no value")?;
            if v.is_nan() {
                Err("query returned NaN".into())
            } else {
                Ok((v, None))
            }
        }
        Some("vector") => {
            let series = result
                .and_then(Value::as_array)
                .ok_or("the vector result is not a list")?;
            if series.is_empty() {
                return Err("query returned no series".into());
            }
            let values: Vec<(f64, &Value)> = series
                .iter()
                .filter_map(|s| sample_value(s.get("value")).map(|v| (v, s)))
                .filter(|(v, _)| !v.is_nan())
                .collect();
            let worst = values.iter().copied().reduce(|a, b| {
                let b_worse = match comparison {
                    Comparison::GreaterThan | Comparison::GreaterThanOrEqual => b.0 > a.0,
                    Comparison::LessThan | Comparison::LessThanOrEqual => b.0 < a.0,
                };
                if b_worse { b } else { a }
            });
            let Some((value, from)) = worst else {
                return Err(if series.len() == 1 {
                    "query returned NaN".into()
                } else {
                    format!("query returned {} series, none with a number", series.len())
                });
            };
            if series.len() == 1 {
                return Ok((value, None));
            }
            let which = match comparison {
                Comparison::GreaterThan | Comparison::GreaterThanOrEqual => "max",
                Comparison::LessThan | Comparison::LessThanOrEqual => "min",
            };
            let skipped = series.len() - values.len();
            let skipped = if skipped > 0 {
                format!(", {skipped} without a number skipped")
            } else {
                String::new()
            };
            Ok((
                value,
                Some(format!(
                    "{which} of {} series{skipped}, from {}",
                    series.len(),
                    series_name(from.get("metric"))
                )),
            ))
        }
        Some(other) => Err(format!(
            "query returned a {other}, not an instant vector or scalar"
        )),
        None => Err("Prometheus' answer has no `data.resultType`".into()),
    }
}

/// The number in a `[timestamp, "value"]` pair (`NaN`, `+Inf` and `-Inf` included).
fn sample_value(pair: Option<&Value>) -> Option<f64> {
    match pair?.as_array()?.get(1)? {
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// A series in PromQL notation: `name{label="value",…}`.
fn series_name(metric: Option<&Value>) -> String {
    let Some(labels) = metric.and_then(Value::as_object) else {
        return "{}".to_string();
    };
    let name = labels.get("__name__").and_then(Value::as_str).unwrap_or("");
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={}", Value::String(v.as_str().unwrap_or("").to_owned())))
        .collect();
    if name.is_empty() || !rest.is_empty() {
        format!("{name}{{{}}}", rest.join(","))
    } else {
        name.to_owned()
    }
}

/// At most `max` characters of `text`, with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge_ok(body: &str, threshold: f64, comparison: Comparison) -> (Datapoint, String) {
        judge(200, body.as_bytes(), "q", threshold, comparison)
    }

    fn vector(samples: &[(&str, &str)]) -> String {
        let series: Vec<String> = samples
            .iter()
            .map(|(labels, v)| format!(r#"{{"metric":{labels},"value":[1700000000.123,"{v}"]}}"#))
            .collect();
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            series.join(",")
        )
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(percent_encode("up"), "up");
        assert_eq!(
            percent_encode(r#"sum(rate(http_errors_total{job="api", code=~"5.."}[1m])) > 0.5"#),
            "sum%28rate%28http_errors_total%7Bjob%3D%22api%22%2C%20code%3D~%225..%22%7D%5B1m%5D%29%29%20%3E%200.5"
        );
        assert_eq!(
            percent_encode("a+b&c=d#e/f?%"),
            "a%2Bb%26c%3Dd%23e%2Ff%3F%25"
        );
        assert_eq!(percent_encode("é\n"), "%C3%A9%0A");
        assert_eq!(percent_encode("A-Z_a.z~09"), "A-Z_a.z~09");
    }

    #[test]
    fn query_urls_accept_a_trailing_slash() {
        assert_eq!(
            query_url("http://127.0.0.1:9090", "up == 1"),
            "http://127.0.0.1:9090/api/v1/query?query=up%20%3D%3D%201"
        );
        assert_eq!(
            query_url("http://127.0.0.1:9090/", "up"),
            "http://127.0.0.1:9090/api/v1/query?query=up"
        );
        assert_eq!(
            query_url("http://h/prometheus/", "up"),
            "http://h/prometheus/api/v1/query?query=up"
        );
    }

    #[test]
    fn one_series_is_compared_with_the_threshold() {
        let body = vector(&[(r#"{"job":"api"}"#, "0.73")]);
        let (d, detail) = judge(
            200,
            body.as_bytes(),
            "sum(rate(http_errors_total[1m]))",
            0.5,
            Comparison::GreaterThan,
        );
        assert_eq!(d, Datapoint::Breaching);
        assert_eq!(
            detail,
            "value 0.73 > 0.5 (sum(rate(http_errors_total[1m])))"
        );

        let body = vector(&[("{}", "0.2")]);
        let (d, detail) = judge_ok(&body, 0.5, Comparison::GreaterThan);
        assert_eq!(d, Datapoint::NotBreaching);
        assert_eq!(detail, "value 0.2, not > 0.5 (q)");

        assert_eq!(
            judge_ok(
                &vector(&[("{}", "0.5")]),
                0.5,
                Comparison::GreaterThanOrEqual
            )
            .0,
            Datapoint::Breaching
        );
        assert_eq!(
            judge_ok(&vector(&[("{}", "0.5")]), 0.5, Comparison::GreaterThan).0,
            Datapoint::NotBreaching
        );
        assert_eq!(
            judge_ok(&vector(&[("{}", "+Inf")]), 0.5, Comparison::GreaterThan).0,
            Datapoint::Breaching
        );
    }

    #[test]
    fn several_series_use_the_worst_one() {
        let body = vector(&[
            (r#"{"__name__":"errors","instance":"a"}"#, "3"),
            (r#"{"__name__":"errors","instance":"b"}"#, "9"),
            (r#"{"__name__":"errors","instance":"c"}"#, "1"),
        ]);
        let (d, detail) = judge_ok(&body, 5.0, Comparison::GreaterThan);
        assert_eq!(d, Datapoint::Breaching);
        assert_eq!(
            detail,
            r#"value 9 > 5 (q; max of 3 series, from errors{instance="b"})"#
        );
        let (d, detail) = judge_ok(&body, 0.5, Comparison::LessThanOrEqual);
        assert_eq!(d, Datapoint::NotBreaching);
        assert_eq!(
            detail,
            r#"value 1, not <= 0.5 (q; min of 3 series, from errors{instance="c"})"#
        );
        let (d, _) = judge_ok(&body, 2.0, Comparison::LessThan);
        assert_eq!(d, Datapoint::Breaching);

        // NaN series are skipped; the rest still count.
        let body = vector(&[(r#"{"x":"1"}"#, "NaN"), (r#"{"x":"2"}"#, "4")]);
        let (d, detail) = judge_ok(&body, 5.0, Comparison::GreaterThan);
        assert_eq!(d, Datapoint::NotBreaching);
        assert!(
            detail.contains(r#"1 without a number skipped, from {x="2"}"#),
            "{detail}"
        );
    }

    #[test]
    fn scalars_are_values_too() {
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"2.5"]}}"#;
        assert_eq!(
            judge_ok(body, 2.0, Comparison::GreaterThan),
            (Datapoint::Breaching, "value 2.5 > 2 (q)".to_string())
        );
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"NaN"]}}"#;
        assert_eq!(
            judge_ok(body, 2.0, Comparison::GreaterThan).0,
            Datapoint::Missing
        );
    }

    #[test]
    fn no_value_is_missing_data() {
        let cases: &[(u16, &str, &str)] = &[
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                "query returned no series (q)",
            ),
            (200, &vector(&[("{}", "NaN")]), "query returned NaN (q)"),
            (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:6: parse error: unclosed left parenthesis"}"#,
                "Prometheus error (bad_data): invalid parameter \"query\": 1:6: parse error: unclosed left parenthesis (q)",
            ),
            (
                200,
                r#"{"status":"error","error":"boom"}"#,
                "Prometheus error: boom (q)",
            ),
            (
                503,
                "Service Unavailable",
                "Prometheus answered HTTP 503: Service Unavailable (q)",
            ),
            (404, "", "Prometheus answered HTTP 404 (q)"),
            (200, "<html>", "Prometheus' answer is not JSON: <html> (q)"),
            (
                200,
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                "query returned a matrix, not an instant vector or scalar (q)",
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
                "query returned a string, not an instant vector or scalar (q)",
            ),
            (
                200,
                r#"{"status":"success"}"#,
                "Prometheus' answer has no `data` (q)",
            ),
        ];
        for (status, body, want) in cases {
            let (d, detail) = judge(*status, body.as_bytes(), "q", 1.0, Comparison::GreaterThan);
            assert_eq!(d, Datapoint::Missing, "{body}");
            assert_eq!(&detail, want, "{body}");
        }
    }

    #[test]
    fn series_names_read_like_promql() {
        let m: Value =
            serde_json::from_str(r#"{"__name__":"up","job":"a\"b"}"#).unwrap_or_default();
        assert_eq!(series_name(Some(&m)), r#"up{job="a\"b"}"#);
        let m: Value = serde_json::from_str(r#"{"__name__":"up"}"#).unwrap_or_default();
        assert_eq!(series_name(Some(&m)), "up");
        let m: Value = serde_json::from_str("{}").unwrap_or_default();
        assert_eq!(series_name(Some(&m)), "{}");
    }
}
