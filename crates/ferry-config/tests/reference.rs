//! The reference pipeline file and the starter file parse cleanly into the expected model.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_config::{
    Alarm, AlarmSource, Approval, Build, Deploy, Environment, ExecutionMode, Gates, Hotfix,
    InsufficientData, MissingData, Monitor, Notification, Pipeline, ReleaseDeploy, Reports,
    Rollback, RollbackValidate, STARTER, Source, Step, parse,
};

const REFERENCE: &str = include_str!("fixtures/reference.yml");

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn parse_clean(source: &str) -> Pipeline {
    match parse(source, "ferry.yml") {
        Ok(p) => p,
        Err(diags) => {
            let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
            panic!("unexpected diagnostics:\n{}", text.join("\n"));
        }
    }
}

fn step(name: &str, run: &str) -> Step {
    Step {
        name: name.into(),
        run: run.into(),
        timeout: None,
        reports: Reports::default(),
        env: BTreeMap::new(),
        suite: None,
    }
}

fn release(env: &str, port: u16) -> Deploy {
    Deploy::Release(ReleaseDeploy {
        root: format!(".ferry/envs/{env}"),
        start: Some(format!("python3 server.py --port {port}")),
        health: Some(format!("http://127.0.0.1:{port}/health")),
        health_timeout: secs(30),
        keep: 5,
    })
}

fn health_alarm(name: &str, port: u16) -> Alarm {
    Alarm {
        name: name.into(),
        source: AlarmSource::Http {
            url: format!("http://127.0.0.1:{port}/health"),
            expect_status: 200,
            timeout: secs(1),
            max_latency: None,
        },
        period: secs(2),
        evaluation_periods: 3,
        datapoints_to_alarm: 2,
        missing_data: MissingData::Missing,
        environment: None,
        advisory: false,
    }
}

#[test]
fn reference_file_parses_into_the_expected_model() {
    let p = parse_clean(REFERENCE);
    let unit = Step {
        timeout: Some(secs(600)),
        reports: Reports {
            junit: vec!["reports/unit.xml".into()],
            coverage: Some("reports/lcov.info".into()),
        },
        ..step("unit", "./ci/unit.sh")
    };
    let integration = Step {
        reports: Reports {
            junit: vec!["reports/integration.xml".into()],
            coverage: None,
        },
        ..step("integration", "./ci/integration.sh http://127.0.0.1:18181")
    };
    let expected = Pipeline {
        name: "shop-api".into(),
        source: Source {
            branch: "main".into(),
            poll: None,
            repository: None,
        },
        build: Build {
            steps: vec![step("lint", "./ci/lint.sh"), unit],
            gates: Gates {
                coverage_min: Some(80.0),
                security: None,
            },
            artifact: Some("dist".into()),
        },
        environments: vec![
            Environment {
                name: "test".into(),
                approval: None,
                deploy: release("test", 18181),
                tests: vec![integration],
                monitor: None,
                watch: None,
                windows: None,
                infrastructure: None,
            },
            Environment {
                name: "staging".into(),
                approval: None,
                deploy: release("staging", 18182),
                tests: vec![step("e2e", "./ci/e2e.sh http://127.0.0.1:18182")],
                monitor: Some(Monitor {
                    duration: secs(20),
                    interval: secs(2),
                    alarms: vec!["staging-health".into()],
                    advisory: false,
                    insufficient_data: InsufficientData::Fail,
                }),
                watch: None,
                windows: None,
                infrastructure: None,
            },
            Environment {
                name: "production".into(),
                approval: Some(Approval {
                    timeout: secs(24 * 3600),
                    ..Approval::default()
                }),
                deploy: release("production", 18183),
                tests: vec![],
                monitor: Some(Monitor {
                    duration: secs(20),
                    interval: secs(2),
                    alarms: vec!["production-health".into()],
                    advisory: false,
                    insufficient_data: InsufficientData::Fail,
                }),
                watch: None,
                windows: None,
                infrastructure: None,
            },
        ],
        alarms: vec![
            health_alarm("staging-health", 18182),
            health_alarm("production-health", 18183),
        ],
        rollback: Rollback {
            validate: RollbackValidate {
                stabilize: secs(2),
                health_timeout: secs(30),
            },
            automatic: true,
        },
        hotfix: Hotfix::default(),
        notifications: vec![Notification::Webhook {
            name: None,
            url: "http://127.0.0.1:18199/events".into(),
            events: vec![],
        }],
        server: ferry_config::Server::default(),
        execution_mode: ExecutionMode::Superseded,
        infrastructure: None,
        secrets: Vec::new(),
    };
    assert_eq!(p, expected);
}

#[test]
fn lookups_and_helpers() {
    let p = parse_clean(REFERENCE);
    assert_eq!(p.environment("staging").map(|e| e.tests.len()), Some(1));
    assert!(p.environment("qa").is_none());
    assert_eq!(
        p.alarm("production-health").map(|a| a.evaluation_periods),
        Some(3)
    );
    assert!(p.alarm("nope").is_none());
    assert_eq!(
        p.previous_environment("production")
            .map(|e| e.name.as_str()),
        Some("staging")
    );
    assert!(p.previous_environment("test").is_none());
    let names: Vec<&str> = p
        .alarms_for("staging")
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["staging-health"]);
    let prod = p.environment("production").unwrap();
    assert_eq!(prod.deploy.kind(), "release");
    assert_eq!(prod.deploy.health(), Some("http://127.0.0.1:18183/health"));
    assert!(prod.deploy.can_roll_back());
    assert!(p.notifications[0].wants("deployment_failed"));
}

#[test]
fn model_serializes_to_json() {
    let p = parse_clean(REFERENCE);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["name"], "shop-api");
    assert_eq!(
        json["environments"][0]["deploy"]["release"]["root"],
        ".ferry/envs/test"
    );
    assert_eq!(json["alarms"][0]["missing_data"], "missing");
    assert_eq!(json["alarms"][0]["advisory"], false);
    let monitor = &json["environments"][1]["monitor"];
    assert_eq!(monitor["advisory"], false);
    assert_eq!(monitor["insufficient_data"], "fail");
    assert_eq!(json["rollback"]["automatic"], true);
    assert_eq!(
        json["rollback"]["validate"]["health_timeout"],
        serde_json::json!({"secs": 30, "nanos": 0})
    );
    assert_eq!(
        json["notifications"][0]["webhook"]["url"],
        "http://127.0.0.1:18199/events"
    );
}

#[test]
fn starter_file_parses_cleanly() {
    let p = parse_clean(STARTER);
    let names: Vec<&str> = p.environments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["test", "staging", "production"]);
    assert!(p.environment("production").unwrap().approval.is_some());
    assert_eq!(p.build.steps.len(), 1);
    assert_eq!(p.rollback, Rollback::default());
    assert!(p.rollback.automatic);
    assert_eq!(p.rollback.validate.health_timeout, secs(30));
}

/// Every `# key: value` line of the starter is valid when uncommented (except the
/// `release:`, `s3:` and `cloudformation:` blocks, the alternatives to `command:`), so the
/// file teaches only what ferry accepts.
#[test]
fn starter_file_parses_with_every_option_uncommented() {
    let mut out = String::new();
    let mut alternative: Option<usize> = None;
    for line in STARTER.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let Some(rest) = trimmed.strip_prefix("# ") else {
            alternative = None;
            out.push_str(line);
            out.push('\n');
            continue;
        };
        if ["release:", "s3:", "cloudformation:"]
            .iter()
            .any(|k| rest.starts_with(k))
        {
            alternative = Some(indent);
        } else if alternative == Some(indent) && rest.starts_with(' ') {
            // still inside the alternative block
        } else {
            alternative = None;
        }
        // Option lines look like `# key:` or `# - key:`; prose does not.
        let is_option = rest
            .trim_start()
            .trim_start_matches("- ")
            .split_once(':')
            .is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if is_option && alternative.is_none() {
            out.push_str(&" ".repeat(indent));
            out.push_str(rest);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    let p = parse_clean(&out);
    assert_eq!(p.alarms.len(), 1);
    assert_eq!(p.notifications.len(), 4);
    let staging = p.environment("staging").unwrap();
    let monitor = staging.monitor.as_ref().unwrap();
    assert!(!monitor.advisory);
    assert_eq!(monitor.insufficient_data, InsufficientData::Fail);
    assert_eq!(staging.watch, Some(secs(30 * 60)));
    let windows = p
        .environment("production")
        .unwrap()
        .windows
        .as_ref()
        .unwrap();
    assert_eq!((windows.allow.len(), windows.deny.len()), (5, 1));
    assert!(!p.alarms[0].advisory);
    assert!(p.build.gates.coverage_min.is_some());
    assert_eq!(p.source.poll, Some(secs(60)));
    assert!(p.rollback.automatic);
    assert_eq!(p.rollback.validate.health_timeout, secs(30));
}

/// The starter's commented `s3:` and `cloudformation:` alternatives are valid when they
/// replace `command:` (with an artifact for `s3:`).
#[test]
fn starter_aws_deploy_alternatives_parse() {
    for kind in ["s3", "cloudformation"] {
        let mut out = String::new();
        let mut lines = STARTER.lines().peekable();
        let mut replaced = false;
        while let Some(line) = lines.next() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            if !replaced && trimmed.starts_with("command:") {
                // Skip the `command:` block: the lines indented deeper than it.
                while lines.peek().is_some_and(|l| {
                    l.len() - l.trim_start().len() > indent && !l.trim_start().starts_with('#')
                }) {
                    lines.next();
                }
                for alt in STARTER.lines().skip_while(|l| {
                    !l.trim_start()
                        .strip_prefix("# ")
                        .is_some_and(|r| r.starts_with(&format!("{kind}:")))
                }) {
                    let t = alt.trim_start();
                    let Some(rest) = t.strip_prefix("# ") else {
                        break;
                    };
                    let alt_indent = alt.len() - t.len();
                    if alt_indent != indent
                        || (!rest.starts_with(&format!("{kind}:")) && !rest.starts_with("  "))
                    {
                        break;
                    }
                    let code = rest.split("  #").next().unwrap_or(rest).trim_end();
                    if !code.trim().is_empty() {
                        out.push_str(&" ".repeat(indent));
                        out.push_str(code);
                        out.push('\n');
                    }
                }
                replaced = true;
                continue;
            }
            if trimmed.starts_with("# artifact:") {
                out.push_str(&" ".repeat(indent));
                out.push_str(&trimmed[2..]);
                out.push('\n');
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        assert!(replaced, "the starter has a `command:` block");
        let p = parse_clean(&out);
        assert_eq!(p.environments[0].deploy.kind(), kind, "{out}");
    }
}
