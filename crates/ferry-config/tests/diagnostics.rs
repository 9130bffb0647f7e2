//! Every kind of problem `ferry validate` reports, as whole rendered diagnostics: each
//! case is a file and the exact text a user sees for it.

use ferry_config::parse;

/// Parses `yaml` (a leading newline is dropped) and compares all its diagnostics, rendered
/// and joined by newlines, with `expected`.
#[track_caller]
fn check(yaml: &str, expected: &str) {
    let yaml = yaml.strip_prefix('\n').unwrap_or(yaml);
    let actual = match parse(yaml, "ferry.yml") {
        Ok(_) => String::new(),
        Err(diags) => {
            let mut lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
            lines.push(String::new());
            lines.join("\n")
        }
    };
    let expected = expected.strip_prefix('\n').unwrap_or(expected);
    assert_eq!(
        actual, expected,
        "\n--- actual ---\n{actual}--- expected ---\n{expected}"
    );
}

#[test]
fn unknown_key_suggests_the_closest_key() {
    check(
        r##"
pipeline: shop
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
      timout: 10m
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:6:7: unknown key `timout` in step `unit`
  help: did you mean `timeout`?
"##,
    );
}

#[test]
fn unknown_key_without_a_close_match_lists_the_allowed_keys() {
    check(
        r##"
pipeline: shop
colour: blue
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:2:1: unknown key `colour` at the top level
  help: allowed keys here: pipeline, source, build, environments, alarms, rollback, notifications, execution_mode, hotfix, server, infrastructure, secrets
"##,
    );
}

#[test]
fn a_synonym_points_at_the_key_meant_and_is_not_reported_as_missing_too() {
    check(
        r##"
pipeline: shop
build:
  steps:
    - name: unit
      command: ./ci/unit.sh
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:5:7: unknown key `command` in step `unit`
  help: did you mean `run`?
"##,
    );
}

#[test]
fn list_where_a_mapping_is_expected() {
    check(
        r##"
pipeline: shop
build:
  - name: unit
    run: ./ci/unit.sh
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:3:3: `build` must be a mapping, found a list
  help: write `key: value` lines indented under it; allowed keys: steps, gates, artifact
"##,
    );
}

#[test]
fn mapping_where_a_list_is_expected() {
    check(
        r##"
pipeline: shop
environments:
  test:
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:3:3: `environments` must be a list, found a mapping
  help: write one item per line, each starting with `- `
"##,
    );
}

#[test]
fn text_where_a_number_is_expected() {
    check(
        r##"
pipeline: shop
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
      reports: {coverage: lcov.info}
  gates:
    coverage_min: eighty
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:8:19: `coverage_min` in `build.gates` must be a number, found the text `eighty`
  help: write a number, like `coverage_min: 80`
"##,
    );
}

#[test]
fn list_where_text_is_expected_and_empty_values() {
    check(
        r##"
pipeline: [a, b]
build:
  steps:
    - name: unit
      run:
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:1:11: `pipeline` must be a text value, found a list
  help: write it like `pipeline: shop-api`
ferry.yml:5:7: `run` in step `unit` is empty
  help: write it like `run: ./ci/test.sh`
"##,
    );
}

#[test]
fn missing_required_keys() {
    check(
        r##"
source:
  branch: main
build:
  steps:
    - name: unit
environments:
  - name: test
  - deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:1:1: missing key `pipeline` at the top level
  help: add `pipeline: shop-api`
ferry.yml:5:7: missing key `run` in step `unit`
  help: add `run: ./ci/test.sh`
ferry.yml:7:5: missing key `deploy` in environment `test`
  help: add `deploy:` with `release:` (ferry unpacks the artifact into a directory) or `command:` (your own deploy command)
ferry.yml:8:5: missing key `name` in environment #2
  help: add `name: staging`
"##,
    );
}

#[test]
fn missing_environments() {
    check(
        r##"
pipeline: shop
"##,
        r##"
ferry.yml:1:1: missing key `environments` at the top level
  help: add `environments:` with at least one environment, like `- name: test` and its `deploy:`
"##,
    );
}

#[test]
fn empty_environments() {
    check(
        r##"
pipeline: shop
environments: []
"##,
        r##"
ferry.yml:2:15: `environments` is empty
  help: add at least one environment, like `- name: test` with its `deploy:`
"##,
    );
}

#[test]
fn durations_that_do_not_parse() {
    check(
        r##"
pipeline: shop
source:
  poll: 5 minutes
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
      timeout: 30
environments:
  - name: test
    approval: {timeout: 1.5h}
    deploy: {command: {run: ./deploy.sh, timeout: 10min}}
    watch: [1m]
"##,
        r##"
ferry.yml:3:9: invalid duration `5 minutes` for `poll` in `source`: missing unit after `5`
  help: write a duration like `30s`, `10m`, `1h30m`
ferry.yml:8:16: invalid duration `30` for `timeout` in step `unit`: missing unit after `30`
  help: write a duration like `30s`, `10m`, `1h30m`
ferry.yml:11:25: invalid duration `1.5h` for `timeout` in `approval` of environment `test`: fractions are not accepted; combine units instead, like `1h30m`
  help: write a duration like `30s`, `10m`, `1h30m`
ferry.yml:12:51: invalid duration `10min` for `timeout` in `deploy.command` of environment `test`: unknown unit `min`
  help: write a duration like `30s`, `10m`, `1h30m`
ferry.yml:13:12: `watch` in environment `test` must be a duration, found a list
  help: write a duration like `30s`, `10m`, `1h30m`
"##,
    );
}

#[test]
fn zero_durations_where_a_wait_is_needed() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    approval: {timeout: 0s}
    deploy: {command: {run: ./deploy.sh}}
    watch: 0s
rollback:
  validate: {stabilize: 0s}
"##,
        r##"
ferry.yml:4:25: `timeout` in `approval` of environment `test` must be longer than zero
  help: write a duration like `30s`, `10m`, `1h30m`
"##,
    );
}

#[test]
fn coverage_min_out_of_range() {
    check(
        r##"
pipeline: shop
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
      reports: {coverage: reports/lcov.info}
  gates:
    coverage_min: 120
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:8:19: `coverage_min` in `build.gates` must be between 0 and 100, found 120
  help: write a percentage of lines, like `coverage_min: 80`
"##,
    );
}

#[test]
fn coverage_gate_without_a_coverage_report() {
    check(
        r##"
pipeline: shop
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
  gates:
    coverage_min: 80
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:7:19: `coverage_min` is set but no build step reports coverage
  help: add `reports: { coverage: <lcov or cobertura file> }` to the step that runs the tests
"##,
    );
}

#[test]
fn alarm_counts() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
alarms:
  - name: a
    external: true
    evaluation_periods: 2
    datapoints_to_alarm: 3
  - name: b
    external: true
    datapoints_to_alarm: 2
  - name: c
    external: true
    period: 0s
    evaluation_periods: 0
    datapoints_to_alarm: -1
  - name: d
    external: true
    evaluation_periods: 1.5
"##,
        r##"
ferry.yml:9:26: `datapoints_to_alarm` in alarm `a` (3) is more than `evaluation_periods` (2)
  help: the alarm fires when `datapoints_to_alarm` of the last `evaluation_periods` datapoints breach; write at most 2, or raise `evaluation_periods`
ferry.yml:12:26: `datapoints_to_alarm` in alarm `b` (2) is more than `evaluation_periods` (1, the default)
  help: the alarm fires when `datapoints_to_alarm` of the last `evaluation_periods` datapoints breach; write at most 1, or raise `evaluation_periods`
ferry.yml:15:13: `period` in alarm `c` must be longer than zero
  help: write a duration like `30s`, `10m`, `1h30m`
ferry.yml:16:25: `evaluation_periods` in alarm `c` must be at least 1
  help: write a whole number of 1 or more, like `evaluation_periods: 1`
ferry.yml:17:26: `datapoints_to_alarm` in alarm `c` must be a whole number, found the number `-1`, out of range
  help: write a whole number, like `datapoints_to_alarm: 1`
ferry.yml:20:25: `evaluation_periods` in alarm `d` must be a whole number, found the number `1.5`
  help: write a whole number, like `evaluation_periods: 1`
"##,
    );
}

#[test]
fn release_deploy_checks() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy:
      release:
        root: .ferry/envs/test
        health: 127.0.0.1:8080/health
        health_timeout: 0s
        keep: 0
  - name: staging
    deploy:
      release:
        start: ./server
"##,
        r##"
ferry.yml:5:7: environment `test` deploys with `release`, which unpacks the build artifact, but `build.artifact` is not set
  help: add `artifact: dist` (the folder your build writes) under `build`, or deploy with `command`
ferry.yml:7:17: `health` in `deploy.release` of environment `test` must be an http:// url, found `127.0.0.1:8080/health`
  help: write it like `http://127.0.0.1:8080/health`
ferry.yml:8:25: `health_timeout` in `deploy.release` of environment `test` must be longer than zero
  help: write a duration like `30s`, `10m`, `1h30m`
ferry.yml:9:15: `keep` in `deploy.release` of environment `test` must be at least 1
  help: write a whole number of 1 or more, like `keep: 1`
ferry.yml:12:7: environment `staging` deploys with `release`, which unpacks the build artifact, but `build.artifact` is not set
  help: add `artifact: dist` (the folder your build writes) under `build`, or deploy with `command`
ferry.yml:13:9: missing key `root` in `deploy.release` of environment `staging`
  help: add `root: .ferry/envs/staging`
"##,
    );
}

#[test]
fn monitor_checks() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
    monitor:
      duration: 20s
      interval: 30s
      alarms: [health]
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
    monitor:
      interval: 0s
alarms:
  - name: health
    http: {url: http://127.0.0.1:8080/health}
"##,
        r##"
ferry.yml:7:17: `interval` in `monitor` of environment `test` (30s) is longer than `duration` (20s)
  help: write an interval of at most 20s
ferry.yml:12:7: missing key `duration` in `monitor` of environment `staging`
  help: add `duration: 5m`
ferry.yml:12:17: `interval` in `monitor` of environment `staging` must be longer than zero
  help: write a duration like `30s`, `10m`, `1h30m`
"##,
    );
}

#[test]
fn environments_out_of_promotion_order() {
    check(
        r##"
pipeline: shop
environments:
  - name: production
    deploy: {command: {run: ./deploy.sh}}
  - name: qa
    deploy: {command: {run: ./deploy.sh}}
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:7:11: environment `staging` comes after `production`
  help: versions are promoted in file order; list them as test → staging → production
ferry.yml:9:11: environment `test` comes after `production`
  help: versions are promoted in file order; list them as test → staging → production
"##,
    );
}

#[test]
fn undefined_alarms_and_environments() {
    check(
        r##"
pipeline: shop
environments:
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
    monitor:
      duration: 1m
      alarms: [stagign-health, latency]
  - name: production
    deploy: {command: {run: ./deploy.sh}}
    monitor:
      duration: 1m
      alarms: errors
alarms:
  - name: staging-health
    http: {url: http://127.0.0.1:8080/health}
    environment: prod
  - name: other
    external: {}
    environment: qa
"##,
        r##"
ferry.yml:7:16: unknown alarm `stagign-health` in `monitor` of environment `staging`
  help: did you mean `staging-health`?
ferry.yml:7:32: unknown alarm `latency` in `monitor` of environment `staging`
  help: define it in the top-level `alarms:` list; defined alarms: staging-health, other
ferry.yml:12:15: unknown alarm `errors` in `monitor` of environment `production`
  help: define it in the top-level `alarms:` list; defined alarms: staging-health, other
ferry.yml:16:18: unknown environment `prod` for `environment` in alarm `staging-health`
  help: did you mean `production`?
ferry.yml:19:18: unknown environment `qa` for `environment` in alarm `other`
  help: environments in this file: staging, production
"##,
    );
}

#[test]
fn undefined_alarm_when_none_are_defined() {
    check(
        r##"
pipeline: shop
environments:
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
    monitor: {duration: 1m, alarms: [health]}
"##,
        r##"
ferry.yml:5:38: unknown alarm `health` in `monitor` of environment `staging`
  help: define it in the top-level `alarms:` list, like `- name: health` with an `http:` source
"##,
    );
}

#[test]
fn duplicate_names() {
    check(
        r##"
pipeline: shop
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
    - name: unit
      run: ./ci/unit2.sh
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
    tests:
      - name: unit
        run: ./ci/smoke.sh
      - name: smoke
        run: ./ci/smoke.sh
      - name: smoke
        run: ./ci/smoke.sh
  - name: test
    deploy: {command: {run: ./deploy.sh}}
alarms:
  - name: health
    external: true
  - name: health
    external: true
"##,
        r##"
ferry.yml:6:13: duplicate step name `unit` in `build` (first at line 4)
  help: give each step its own name
ferry.yml:16:15: duplicate step name `smoke` in environment `test` (first at line 14)
  help: give each step its own name
ferry.yml:18:11: duplicate environment name `test` (first at line 9)
  help: give each environment its own name
ferry.yml:23:11: duplicate alarm name `health` (first at line 21)
  help: give each alarm its own name
"##,
    );
}

#[test]
fn duplicate_keys() {
    check(
        r##"
pipeline: shop
pipeline: shop2
environments:
  - name: test
    deploy:
      command:
        run: ./deploy.sh
        run: ./deploy2.sh
      command: {run: x}
"##,
        r##"
ferry.yml:2:1: duplicate key `pipeline` at the top level (first at line 1)
  help: keep one of them
ferry.yml:8:9: duplicate key `run` in `deploy.command` of environment `test` (first at line 7)
  help: keep one of them
ferry.yml:9:7: duplicate key `command` in `deploy` of environment `test` (first at line 6)
  help: keep one of them
"##,
    );
}

#[test]
fn deploy_with_neither_or_both_kinds() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {}
  - name: staging
    deploy:
      release: {root: /srv/shop}
      command: {run: ./deploy.sh}
  - name: production
    deploy:
      relase: {root: /srv/shop}
"##,
        r##"
ferry.yml:4:13: `deploy` of environment `test` needs `release`, `command`, `s3` or `cloudformation`
  help: add `release:` (ferry unpacks the artifact into a directory), `command:` (your own deploy command), `s3:` (the artifact synced to a bucket) or `cloudformation:` (a template deployed to a stack)
ferry.yml:8:7: `deploy` of environment `staging` has both `release` and `command`
  help: keep one of them: an environment is deployed one way
ferry.yml:11:7: unknown key `relase` in `deploy` of environment `production`
  help: did you mean `release`?
"##,
    );
}

#[test]
fn alarm_with_no_source_or_several() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
alarms:
  - name: none
    period: 10s
  - name: several
    http: {url: http://127.0.0.1/health}
    command: {run: ./check.sh}
    external: true
"##,
        r##"
ferry.yml:6:5: alarm `none` needs a source: `http`, `prometheus`, `command` or `external`
  help: add one, like `http: { url: http://127.0.0.1:8080/health }`
ferry.yml:10:5: alarm `several` has more than one source: `http` and `command`
  help: keep one of them; define another alarm for the other source
ferry.yml:11:5: alarm `several` has more than one source: `http` and `external`
  help: keep one of them; define another alarm for the other source
"##,
    );
}

#[test]
fn alarm_source_details() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
alarms:
  - name: a
    http: {url: http://127.0.0.1/health, expect_status: 700, timeout: 0s, max_latency: fast}
  - name: b
    prometheus: {url: http://127.0.0.1:9090, query: up, comparison: GreaterThan}
  - name: c
    command:
      run: ./errors.sh
      threshold: high
      comparison: >
  - name: d
    external: false
  - name: e
    external: {push: true}
    missing_data: notbreaching
"##,
        r##"
ferry.yml:7:57: `expect_status` in `http` of alarm `a` must be an http status between 100 and 599, found 700
  help: write a status code, like `expect_status: 200`
ferry.yml:7:71: `timeout` in `http` of alarm `a` must be longer than zero
  help: write a duration like `30s`, `10m`, `1h30m`
ferry.yml:7:88: invalid duration `fast` for `max_latency` in `http` of alarm `a`: expected a number at `fast`
  help: write a duration like `30s`, `10m`, `1h30m`
ferry.yml:9:17: missing key `threshold` in `prometheus` of alarm `b`
  help: add `threshold: 5`
ferry.yml:9:69: unknown value `GreaterThan` for `comparison` in `prometheus` of alarm `b`
  help: did you mean `GreaterThanThreshold`?
ferry.yml:13:18: `threshold` in `command` of alarm `c` must be a number, found the text `high`
  help: write a number, like `threshold: 5`
ferry.yml:14:7: `comparison` in `command` of alarm `c` is empty
  help: write one of `">"`, `">="`, `"<"` or `"<="` (quoted: a bare `>` starts a folded text in YAML)
ferry.yml:16:15: `external` of alarm `d` must be `true` or `{}`, found `false`
  help: write `external: true` for an alarm whose state is pushed to `ferry serve`
ferry.yml:18:16: unknown key `push` in `external` of alarm `e`
  help: remove it: no keys are allowed here
ferry.yml:19:19: unknown value `notbreaching` for `missing_data` in alarm `e`
  help: did you mean `not_breaching`?
"##,
    );
}

#[test]
fn step_details() {
    check(
        r##"
pipeline: shop
build:
  steps:
    - name: unit tests
      run: ./ci/unit.sh
      suite: units
      env:
        RUST_LOG: debug
        9LIVES: x
        NESTED: {a: b}
      reports:
        junit: [reports/a.xml, /tmp/b.xml]
        coverage: ../lcov.info
  artifact: /srv/dist
environments:
  - name: build
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:4:13: invalid step name `unit tests`
  help: use letters, digits, `-`, `_` and `.`, starting with a letter or digit, like `unit-tests`
ferry.yml:6:14: unknown value `units` for `suite` in step `unit tests`
  help: did you mean `unit`?
ferry.yml:9:9: invalid environment variable name `9LIVES` in `env` in step `unit tests`
  help: use letters, digits and `_`, not starting with a digit, like `RUST_LOG`
ferry.yml:10:17: the value of `NESTED` in `env` in step `unit tests` must be a text value, found a mapping
  help: write it like `NESTED: value`
ferry.yml:12:32: `junit` in `reports` of step `unit tests` must be a path inside the checkout, found an absolute path `/tmp/b.xml`
  help: write a path or glob relative to the repository root, like `reports/*.xml`
ferry.yml:13:19: `coverage` in `reports` of step `unit tests` must be a path inside the checkout, found a path leaving the checkout `../lcov.info`
  help: write a path relative to the repository root, like `reports/lcov.info`
ferry.yml:14:13: `artifact` in `build` must be a path inside the checkout, found an absolute path `/srv/dist`
  help: write a path relative to the repository root, like `dist`
ferry.yml:16:11: environment name `build` is taken by the build stage
  help: choose another name, like `test`
"##,
    );
}

#[test]
fn notification_checks() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
notifications:
  - webhook: {url: example.com/hook}
    slack: {url: https://hooks.slack.com/x}
  - email: {smtp: smtp.example.com:587, to: []}
  - github: {repo: shop, token_env: ghp_abc-123}
  - pagerduty: {key: x}
  - {}
"##,
        r##"
ferry.yml:7:5: notification #1 has more than one channel: `webhook` and `slack`
  help: write each channel as its own list item, starting with `- `
ferry.yml:8:12: missing key `from` in `email` of notification #2
  help: add `from: ferry@example.com`
ferry.yml:8:45: `to` in `email` of notification #2 is empty
  help: add at least one address, like `to: [team@example.com]`
ferry.yml:9:20: `repo` in `github` of notification #3 must be `owner/name`, found `shop`
  help: write it like `repo: acme/shop-api`
ferry.yml:9:37: `token_env` in `github` of notification #3 must name an environment variable, found `ghp_abc-123`
  help: write the variable's name, not the token, like `token_env: GITHUB_TOKEN`
ferry.yml:10:5: unknown key `pagerduty` in notification #4
  help: allowed keys here: webhook, slack, email, github
ferry.yml:11:5: notification #5 needs a channel: `webhook`, `slack`, `email` or `github`
  help: write it like `- webhook: { url: http://127.0.0.1:9000/events }`
"##,
    );
}

#[test]
fn yaml_syntax_error() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}
"##,
        r##"
ferry.yml:5:1: invalid yaml: while parsing a flow mapping, did not find expected ',' or '}'
  help: check the indentation and quoting here; quote values that contain `: ` or ` #`, or that start with `>`, `|`, `*`, `&`, `!`, `%`, `@`, `{` or `[`
"##,
    );
}

#[test]
fn tabs_for_indentation() {
    check(
        "pipeline: shop\nenvironments:\n\t- name: test\n",
        r##"
ferry.yml:3:2: invalid yaml: tabs disallowed within this context (block indentation)
  help: indent with spaces: YAML does not allow tabs for indentation
"##,
    );
}

#[test]
fn empty_file() {
    check(
        r##"
# nothing yet
"##,
        r##"
ferry.yml:1:1: the pipeline file is empty
  help: start with `pipeline: <name>`; `ferry init` writes a commented starter file
"##,
    );
}

#[test]
fn top_level_list() {
    check(
        r##"
- pipeline: shop
"##,
        r##"
ferry.yml:1:1: a pipeline file must be a mapping of keys like `pipeline:` and `environments:`, found a list
  help: start with `pipeline: <name>`; `ferry init` writes a commented starter file
"##,
    );
}

#[test]
fn second_document() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
---
pipeline: other
"##,
        r##"
ferry.yml:5:1: a second yaml document in the pipeline file
  help: keep one document: remove this `---` and what follows, or merge it into the first
"##,
    );
}

#[test]
fn every_problem_at_once() {
    check(
        r##"
pipeline: shop
source:
  branch: main
  pol: 1m
build:
  steps:
    - name: lint
      run: ./ci/lint.sh
    - name: unit
      run: ./ci/unit.sh
      timeout: 10 minutes
      reports:
        junit: reports/unit.xml
        coverage: reports/lcov.info
    - name: lint
  gates:
    coverage_min: 180
environments:
  - name: staging
    deploy:
      release:
        root: .ferry/envs/staging
        health: localhost:18182/health
    monitor:
      duration: 20s
      interval: 2s
      alarms: [staging-helth]
  - name: test
    deploy:
      command: {run: ./deploy.sh}
  - name: production
    approval:
      timeout: 24h
alarms:
  - name: staging-health
    http: {url: http://127.0.0.1:18182/health}
    evaluation_periods: 3
    datapoints_to_alarm: 4
rollback:
  validate:
    stabilize: soon
"##,
        r##"
ferry.yml:4:3: unknown key `pol` in `source`
  help: did you mean `poll`?
ferry.yml:11:16: invalid duration `10 minutes` for `timeout` in step `unit`: missing unit after `10`
  help: write a duration like `30s`, `10m`, `1h30m`
ferry.yml:15:7: missing key `run` in step `lint`
  help: add `run: ./ci/test.sh`
ferry.yml:15:13: duplicate step name `lint` in `build` (first at line 7)
  help: give each step its own name
ferry.yml:17:19: `coverage_min` in `build.gates` must be between 0 and 100, found 180
  help: write a percentage of lines, like `coverage_min: 80`
ferry.yml:21:7: environment `staging` deploys with `release`, which unpacks the build artifact, but `build.artifact` is not set
  help: add `artifact: dist` (the folder your build writes) under `build`, or deploy with `command`
ferry.yml:23:17: `health` in `deploy.release` of environment `staging` must be an http:// url, found `localhost:18182/health`
  help: write it like `http://127.0.0.1:8080/health`
ferry.yml:27:16: unknown alarm `staging-helth` in `monitor` of environment `staging`
  help: did you mean `staging-health`?
ferry.yml:28:11: environment `test` comes after `staging`
  help: versions are promoted in file order; list them as test → staging → production
ferry.yml:31:5: missing key `deploy` in environment `production`
  help: add `deploy:` with `release:` (ferry unpacks the artifact into a directory) or `command:` (your own deploy command)
ferry.yml:38:26: `datapoints_to_alarm` in alarm `staging-health` (4) is more than `evaluation_periods` (3)
  help: the alarm fires when `datapoints_to_alarm` of the last `evaluation_periods` datapoints breach; write at most 3, or raise `evaluation_periods`
ferry.yml:41:16: invalid duration `soon` for `stabilize` in `rollback.validate`: expected a number at `soon`
  help: write a duration like `30s`, `10m`, `1h30m`
"##,
    );
}

#[test]
fn approval_is_allowed_anywhere_without_warnings() {
    check(
        r##"
pipeline: shop
environments:
  - name: qa
    approval: true
    deploy: {command: {run: ./deploy.sh}}
  - name: test
    approval: {timeout: 1h}
    deploy: {command: {run: ./deploy.sh}}
  - name: production
    deploy: {command: {run: ./deploy.sh}}
"##,
        "",
    );
}

#[test]
fn diagnostics_are_sorted_by_line_and_column_and_carry_the_file_name() {
    let yaml = "pipeline: shop\nenvironments:\n  - name: test\n    deploy: {}\n    colour: red\n  - name: test\n";
    let diags = parse(yaml, "deploy/ferry.yml").expect_err("invalid");
    let positions: Vec<(usize, usize)> = diags.iter().map(|d| (d.line, d.column)).collect();
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    assert_eq!(positions, sorted);
    assert!(diags.len() >= 3);
    assert!(diags.iter().all(|d| d.file == "deploy/ferry.yml"));
    assert!(diags.iter().all(|d| d.help.is_some()));
}

#[test]
fn lenient_forms_parse() {
    let yaml = r##"
pipeline: shop
source: {branch: release, poll: 1m}
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
      suite: integration
      reports: {junit: [a.xml, "b/*.xml"]}
      env: {RUST_LOG: debug, RETRIES: 3, EMPTY: }
environments:
  - name: test
    approval: false
    deploy:
      command:
        run: ./deploy.sh
        rollback: ./rollback.sh
        current_version: ./deploy.sh --current
        timeout: 5m
    monitor: {duration: 5s, alarms: health}
    watch: 10m
alarms:
  - name: health
    command: {run: ./errors.sh, threshold: 0.5, comparison: GreaterThanOrEqualToThreshold}
    missing_data: notBreaching
    environment: test
  - name: pushed
    external:
notifications:
  - email: {smtp: smtp.example.com:587, from: ferry@example.com, to: team@example.com}
  - github: {repo: acme/shop, events: [deployment_failed]}
"##;
    let p = parse(yaml.trim_start(), "ferry.yml").expect("valid");
    assert_eq!(p.source.branch, "release");
    let step = &p.build.steps[0];
    assert_eq!(step.suite, Some(ferry_config::Suite::Integration));
    assert_eq!(step.reports.junit, ["a.xml", "b/*.xml"]);
    assert_eq!(step.env.get("RETRIES").map(String::as_str), Some("3"));
    assert_eq!(step.env.get("EMPTY").map(String::as_str), Some(""));
    let test = p.environment("test").expect("test");
    assert!(test.approval.is_none());
    assert!(test.deploy.can_roll_back());
    let monitor = test.monitor.as_ref().expect("monitor");
    assert_eq!(
        monitor.interval, monitor.duration,
        "default interval capped at duration"
    );
    assert_eq!(monitor.alarms, ["health"]);
    let health = p.alarm("health").expect("health");
    assert_eq!(health.missing_data, ferry_config::MissingData::NotBreaching);
    assert!(matches!(
        health.source,
        ferry_config::AlarmSource::Command {
            threshold: Some(t),
            comparison: ferry_config::Comparison::GreaterThanOrEqual,
            ..
        } if (t - 0.5).abs() < f64::EPSILON
    ));
    assert_eq!(
        p.alarm("pushed").map(|a| &a.source),
        Some(&ferry_config::AlarmSource::External)
    );
    let names: Vec<&str> = p
        .alarms_for("test")
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["health"]);
    assert!(
        matches!(&p.notifications[0], ferry_config::Notification::Email { to, .. } if to == &["team@example.com"])
    );
    assert!(
        matches!(&p.notifications[1], ferry_config::Notification::Github { token_env, .. } if token_env == "GITHUB_TOKEN")
    );
    assert!(p.notifications[1].wants("deployment_failed"));
    assert!(!p.notifications[1].wants("run_started"));
}

#[test]
fn extension_keys_hold_anchors_and_merge_keys_are_explained() {
    check(
        r##"
pipeline: shop
x-deploy: &deploy
  command: {run: ./deploy.sh}
environments:
  - name: test
    deploy: *deploy
  - name: staging
    deploy:
      <<: *deploy
  - name: production
    deploy:
"##,
        r##"
ferry.yml:9:7: unknown key `<<` in `deploy` of environment `staging`
  help: yaml merge keys are not supported; write the keys out, or alias a whole value with `*name`
ferry.yml:11:5: `deploy` of environment `production` is empty
  help: write `key: value` lines indented under it; allowed keys: release, command, s3, cloudformation
"##,
    );
}

#[test]
fn a_value_starting_with_a_quote_must_be_quoted_whole() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy:
      release:
        root: .ferry/envs/test
        start: '/opt/my app/server' --port 8080
"##,
        r##"
ferry.yml:7:37: invalid yaml: invalid trailing content after quoted value
  help: a value that starts with a quote must end with it; put the whole value in quotes of the other kind, like `start: "'./my app' --port 8080"`
"##,
    );
}

#[test]
fn advisory_must_be_true_or_false() {
    check(
        r##"
pipeline: shop
environments:
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
    monitor:
      duration: 1m
      alarms: [health]
      advisory: yes
  - name: production
    deploy: {command: {run: ./deploy.sh}}
    monitor: {duration: 1m, advisory: "true"}
alarms:
  - name: health
    external: true
    advisory: 1
  - name: latency
    external: true
    advisory:
  - name: errors
    external: true
    advisory: [true]
"##,
        r##"
ferry.yml:8:17: `advisory` in `monitor` of environment `staging` must be `true` or `false`, found the text `yes`
  help: write `advisory: true` or `advisory: false`
ferry.yml:11:39: `advisory` in `monitor` of environment `production` must be `true` or `false`, found the text `true`
  help: write `advisory: true` or `advisory: false`, without quotes
ferry.yml:15:15: `advisory` in alarm `health` must be `true` or `false`, found the number `1`
  help: write `advisory: true` or `advisory: false`
ferry.yml:18:5: `advisory` in alarm `latency` is empty
  help: write `advisory: true` or `advisory: false`
ferry.yml:21:15: `advisory` in alarm `errors` must be `true` or `false`, found a list
  help: write `advisory: true` or `advisory: false`
"##,
    );
}

#[test]
fn insufficient_data_is_fail_or_pass() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
    monitor: {duration: 1m, insufficient_data: pas}
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
    monitor: {duration: 1m, insufficient_data: breaching}
  - name: production
    deploy: {command: {run: ./deploy.sh}}
    monitor: {duration: 1m, insufficient_data: [fail]}
"##,
        r##"
ferry.yml:5:48: unknown value `pas` for `insufficient_data` in `monitor` of environment `test`
  help: did you mean `pass`?
ferry.yml:8:48: unknown value `breaching` for `insufficient_data` in `monitor` of environment `staging`
  help: write one of `fail` or `pass` (`fail`: an alarm with no data for the whole window holds the promotion)
ferry.yml:11:48: `insufficient_data` in `monitor` of environment `production` must be one of `fail` or `pass`, found a list
  help: write one of `fail` or `pass` (`fail`: an alarm with no data for the whole window holds the promotion)
"##,
    );
}

#[test]
fn rollback_checks() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
rollback:
  automatic: no
  validate:
    stabilize: 1m
    health_timeout: 0s
"##,
        r##"
ferry.yml:6:14: `automatic` in `rollback` must be `true` or `false`, found the text `no`
  help: write `automatic: true` or `automatic: false`
ferry.yml:9:21: `health_timeout` in `rollback.validate` must be longer than zero
  help: write a duration like `30s`, `10m`, `1h30m`
"##,
    );
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
rollback:
  automatic: "false"
  validate: {health_timeout: 30}
"##,
        r##"
ferry.yml:6:14: `automatic` in `rollback` must be `true` or `false`, found the text `false`
  help: write `automatic: true` or `automatic: false`, without quotes
ferry.yml:7:30: invalid duration `30` for `health_timeout` in `rollback.validate`: missing unit after `30`
  help: write a duration like `30s`, `10m`, `1h30m`
"##,
    );
}

#[test]
fn misspelt_new_keys_suggest_the_right_one() {
    check(
        r##"
pipeline: shop
environments:
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
    monitor:
      duration: 1m
      advisroy: true
      insufficient-data: pass
    wacth: 0s
alarms:
  - name: health
    external: true
    advisary: true
rollback:
  automatc: false
  validate:
    health_timout: 10s
"##,
        r##"
ferry.yml:7:7: unknown key `advisroy` in `monitor` of environment `staging`
  help: did you mean `advisory`?
ferry.yml:8:7: unknown key `insufficient-data` in `monitor` of environment `staging`
  help: did you mean `insufficient_data`?
ferry.yml:9:5: unknown key `wacth` in environment `staging`
  help: did you mean `watch`?
ferry.yml:13:5: unknown key `advisary` in alarm `health`
  help: did you mean `advisory`?
ferry.yml:15:3: unknown key `automatc` in `rollback`
  help: did you mean `automatic`?
ferry.yml:17:5: unknown key `health_timout` in `rollback.validate`
  help: did you mean `health_timeout`?
"##,
    );
}

#[test]
fn advisory_rollback_and_insufficient_data_parse_with_defaults_and_values() {
    let defaults = parse(
        r##"
pipeline: shop
environments:
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
    monitor: {duration: 1m, alarms: [health]}
alarms:
  - name: health
    external: true
"##
        .trim_start(),
        "ferry.yml",
    )
    .expect("valid");
    let monitor = defaults.environments[0].monitor.as_ref().expect("monitor");
    assert!(!monitor.advisory);
    assert_eq!(
        monitor.insufficient_data,
        ferry_config::InsufficientData::Fail
    );
    assert!(!defaults.alarms[0].advisory);
    assert_eq!(defaults.environments[0].watch, None);
    assert!(defaults.rollback.automatic);
    assert_eq!(
        defaults.rollback.validate.health_timeout,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(
        defaults.rollback.validate.stabilize,
        std::time::Duration::from_secs(60)
    );

    let set = parse(
        r##"
pipeline: shop
environments:
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
    monitor:
      duration: 1m
      alarms: [health]
      advisory: true
      insufficient_data: pass
    watch: 0s
alarms:
  - name: health
    external: true
    advisory: true
    environment: staging
rollback:
  automatic: false
  validate:
    health_timeout: 2m
"##
        .trim_start(),
        "ferry.yml",
    )
    .expect("valid");
    let staging = &set.environments[0];
    let monitor = staging.monitor.as_ref().expect("monitor");
    assert!(monitor.advisory);
    assert_eq!(
        monitor.insufficient_data,
        ferry_config::InsufficientData::Pass
    );
    assert_eq!(monitor.insufficient_data.as_str(), "pass");
    assert_eq!(ferry_config::InsufficientData::Fail.as_str(), "fail");
    assert_eq!(staging.watch, Some(std::time::Duration::ZERO));
    assert!(set.alarms[0].advisory);
    assert!(!set.rollback.automatic);
    assert_eq!(
        set.rollback.validate.health_timeout,
        std::time::Duration::from_secs(120)
    );
    assert_eq!(
        set.rollback.validate.stabilize,
        std::time::Duration::from_secs(60),
        "stabilize keeps its default when only health_timeout is set"
    );
}

#[test]
fn a_release_deploy_needs_the_build_artifact() {
    check(
        r##"
pipeline: shop
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
environments:
  - name: test
    deploy:
      release: {root: .ferry/envs/test}
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
  - name: production
    deploy:
      release:
        root: .ferry/envs/production
"##,
        r##"
ferry.yml:9:7: environment `test` deploys with `release`, which unpacks the build artifact, but `build.artifact` is not set
  help: add `artifact: dist` (the folder your build writes) under `build`, or deploy with `command`
ferry.yml:14:7: environment `production` deploys with `release`, which unpacks the build artifact, but `build.artifact` is not set
  help: add `artifact: dist` (the folder your build writes) under `build`, or deploy with `command`
"##,
    );
    // No `build` at all: no artifact either.
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {release: {root: .ferry/envs/test}}
"##,
        r##"
ferry.yml:4:14: environment `test` deploys with `release`, which unpacks the build artifact, but `build.artifact` is not set
  help: add `artifact: dist` (the folder your build writes) under `build`, or deploy with `command`
"##,
    );
}

#[test]
fn a_misspelt_or_invalid_artifact_is_reported_once() {
    check(
        r##"
pipeline: shop
build:
  steps: []
  artifcat: dist
environments:
  - name: test
    deploy: {release: {root: .ferry/envs/test}}
"##,
        r##"
ferry.yml:4:3: unknown key `artifcat` in `build`
  help: did you mean `artifact`?
"##,
    );
    check(
        r##"
pipeline: shop
build:
  steps: []
  artifact: /srv/dist
environments:
  - name: test
    deploy: {release: {root: .ferry/envs/test}}
"##,
        r##"
ferry.yml:4:13: `artifact` in `build` must be a path inside the checkout, found an absolute path `/srv/dist`
  help: write a path relative to the repository root, like `dist`
"##,
    );
    check(
        r##"
pipeline: shop
build: [unit]
environments:
  - name: test
    deploy: {release: {root: .ferry/envs/test}}
"##,
        r##"
ferry.yml:2:8: `build` must be a mapping, found a list
  help: write `key: value` lines indented under it; allowed keys: steps, gates, artifact
"##,
    );
    check(
        r##"
pipeline: shop
build:
  steps: []
  artifact: dist
environments:
  - name: test
    deploy: {release: {root: .ferry/envs/test}}
"##,
        "",
    );
}

#[test]
fn urls_the_built_in_client_fetches_are_plain_http() {
    check(
        r##"
pipeline: shop
build: {steps: [], artifact: dist}
environments:
  - name: test
    deploy:
      release:
        root: .ferry/envs/test
        health: https://127.0.0.1:8443/health
  - name: staging
    deploy:
      release:
        root: .ferry/envs/staging
        health: HTTPS://shop.internal/health
alarms:
  - name: health
    http: {url: "https://shop.example.com/health"}
  - name: plain
    http: {url: http://10.0.0.7:8080/health}
notifications:
  - slack: {url: https://hooks.slack.com/services/T0/B0/X}
"##,
        r##"
ferry.yml:8:17: `health` in `deploy.release` of environment `test` `https://127.0.0.1:8443/health` uses https, but the built-in client speaks plain HTTP only
  help: use an http:// URL (a loopback or internal address), or a `command` alarm that runs curl
ferry.yml:13:17: `health` in `deploy.release` of environment `staging` `HTTPS://shop.internal/health` uses https, but the built-in client speaks plain HTTP only
  help: use an http:// URL (a loopback or internal address), or a `command` alarm that runs curl
ferry.yml:16:17: `url` in `http` of alarm `health` `https://shop.example.com/health` uses https, but the built-in client speaks plain HTTP only
  help: use an http:// URL (a loopback or internal address), or a `command` alarm that runs curl
"##,
    );
}

#[test]
fn each_release_root_is_a_folder_of_its_own() {
    check(
        r##"
pipeline: shop
build: {steps: [], artifact: dist}
environments:
  - name: test
    deploy:
      release: {root: .ferry/envs/test}
  - name: staging
    deploy:
      release: {root: ./.ferry//envs/test/}
  - name: qa
    deploy:
      release: {root: /srv/shop}
  - name: production
    deploy:
      release:
        root: /srv//shop/
"##,
        r##"
ferry.yml:9:23: environment `staging` shares its release root `./.ferry//envs/test/` with environment `test` (line 6)
  help: a release root must be a folder of its own, like `.ferry/envs/staging`
ferry.yml:16:15: environment `production` shares its release root `/srv//shop/` with environment `qa` (line 12)
  help: a release root must be a folder of its own, like `.ferry/envs/production`
"##,
    );
    check(
        r##"
pipeline: shop
build: {steps: [], artifact: dist}
environments:
  - name: test
    deploy: {release: {root: /}}
  - name: staging
    deploy: {release: {root: .}}
  - name: production
    deploy: {release: {root: ""}}
  - name: qa
    deploy: {release: {root: .//}}
  - name: dev
    deploy:
      release:
        root:
  - name: ops
    deploy: {release: {root: //}}
"##,
        r##"
ferry.yml:5:30: `root` in `deploy.release` of environment `test` is `/`, the filesystem root
  help: a release root must be a folder of its own, like `.ferry/envs/test`
ferry.yml:7:30: `root` in `deploy.release` of environment `staging` is `.`, the project folder itself
  help: a release root must be a folder of its own, like `.ferry/envs/staging`
ferry.yml:9:24: `root` in `deploy.release` of environment `production` is empty
  help: a release root must be a folder of its own, like `.ferry/envs/production`
ferry.yml:11:30: `root` in `deploy.release` of environment `qa` is `.//`, the project folder itself
  help: a release root must be a folder of its own, like `.ferry/envs/qa`
ferry.yml:15:9: `root` in `deploy.release` of environment `dev` is empty
  help: a release root must be a folder of its own, like `.ferry/envs/dev`
ferry.yml:17:30: `root` in `deploy.release` of environment `ops` is `//`, the filesystem root
  help: a release root must be a folder of its own, like `.ferry/envs/ops`
"##,
    );
}

#[test]
fn step_names_ferry_takes_for_its_own_steps() {
    check(
        r##"
pipeline: shop
build:
  steps:
    - name: coverage
      run: ./ci/coverage.sh
    - name: artifact
      run: ./ci/pack.sh
    - name: deploy
      run: ./ci/check-deploy-scripts.sh
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
    tests:
      - name: deploy
        run: ./ci/smoke.sh
      - name: approval
        run: ./ci/approval.sh
      - name: monitor
        run: ./ci/monitor.sh
      - name: coverage
        run: ./ci/coverage.sh
"##,
        r##"
ferry.yml:4:13: step name `coverage` is taken by ferry's own coverage step in `build`
  help: rename it, e.g. `coverage-check`
ferry.yml:6:13: step name `artifact` is taken by ferry's own artifact step in `build`
  help: rename it, e.g. `artifact-check`
ferry.yml:14:15: step name `deploy` is taken by ferry's own deploy step in environment `test`
  help: rename it, e.g. `deploy-check`
ferry.yml:16:15: step name `approval` is taken by ferry's own approval step in environment `test`
  help: rename it, e.g. `approval-check`
ferry.yml:18:15: step name `monitor` is taken by ferry's own monitor step in environment `test`
  help: rename it, e.g. `monitor-check`
"##,
    );
}

#[test]
fn server_section_problems() {
    check(
        r##"
pipeline: shop
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
server:
  listen: localhost
  url: https://ferry.example.com
  api_token_file: ""
  sns_topics: [arn:aws:sns:eu-west-1:1234:alarms, "arn:aws:sqs:eu-west-1:123456789012:q"]
  secret: x
"##,
        r##"
ferry.yml:6:11: `listen` in `server` must be an address and port, found `localhost`
  help: write it like `listen: 127.0.0.1:8080` (`0.0.0.0:8080` for every interface)
ferry.yml:7:8: `url` in `server` `https://ferry.example.com` uses https, but the built-in client speaks plain HTTP only
  help: use an http:// URL (a loopback or internal address), or a `command` alarm that runs curl
ferry.yml:8:3: `api_token_file` in `server` is empty
  help: write it like `api_token_file: /etc/ferry/api-token`
ferry.yml:9:16: `arn:aws:sns:eu-west-1:1234:alarms` is not an SNS topic ARN
  help: write it like `arn:aws:sns:eu-west-1:123456789012:ferry-alarms` (the topic's ARN from the SNS console)
ferry.yml:9:51: `arn:aws:sqs:eu-west-1:123456789012:q` is not an SNS topic ARN
  help: write it like `arn:aws:sns:eu-west-1:123456789012:ferry-alarms` (the topic's ARN from the SNS console)
ferry.yml:10:3: unknown key `secret` in `server`
  help: allowed keys here: listen, url, webhook_secret_file, api_token_file, api_tokens_file, sns_topics, sns_certificate_urls
"##,
    );
}

#[test]
fn a_full_server_section_is_read() {
    let p = parse(
        "pipeline: shop\nenvironments:\n  - name: test\n    deploy: {command: {run: ./d.sh}}\nserver:\n  listen: 0.0.0.0:9000\n  url: http://ferry.internal:9000\n  webhook_secret_file: /etc/ferry/webhook\n  api_token_file: secrets/token\n  sns_topics: arn:aws:sns:us-east-1:123456789012:alarms\n",
        "ferry.yml",
    )
    .expect("the file is valid");
    assert_eq!(p.server.listen.as_deref(), Some("0.0.0.0:9000"));
    assert_eq!(p.server.url.as_deref(), Some("http://ferry.internal:9000"));
    assert_eq!(
        p.server.webhook_secret_file.as_deref(),
        Some("/etc/ferry/webhook")
    );
    assert_eq!(p.server.api_token_file.as_deref(), Some("secrets/token"));
    assert_eq!(
        p.server.sns_topics,
        ["arn:aws:sns:us-east-1:123456789012:alarms"]
    );
}

#[test]
fn execution_mode_is_superseded_or_queued() {
    check(
        r##"
pipeline: shop
execution_mode: queue
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:2:17: unknown value `queue` for `execution_mode`
  help: did you mean `queued`?
"##,
    );
    check(
        r##"
pipeline: shop
execution_mode: [queued]
exection_mode: queued
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:2:17: `execution_mode` must be one of `superseded` or `queued`, found a list
  help: write one of `superseded` or `queued` (`superseded`: a newer run overtakes an older one waiting for the same environment; `queued`: runs deploy strictly in order)
ferry.yml:3:1: unknown key `exection_mode` at the top level
  help: did you mean `execution_mode`?
"##,
    );
}

#[test]
fn execution_mode_defaults_to_superseded() {
    let text = "pipeline: shop\nenvironments:\n  - name: test\n    deploy: {command: {run: ./deploy.sh}}\n";
    let p = parse(text, "ferry.yml").expect("valid");
    assert_eq!(p.execution_mode, ferry_config::ExecutionMode::Superseded);
    let p = parse(&format!("execution_mode: queued\n{text}"), "ferry.yml").expect("valid");
    assert_eq!(p.execution_mode, ferry_config::ExecutionMode::Queued);
}

#[test]
fn security_gate_problems() {
    check(
        r##"
pipeline: shop
build:
  steps:
    - name: unit
      run: ./unit.sh
  gates:
    security:
      templates: [../elsewhere/*.json]
      audit:
        - run: npm audit --json
          file: reports/npm.json
        - {}
      allow:
        - id: GHSA-jf85-cpcp-j695
          reason: ok
        - id: RUSTSEC-2024-0001
          reason: "dev dependency; never shipped"
          expires: 2027-02-30
        - package: lodash
      scanners: all
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:8:19: `templates` in `build.gates.security` must name files inside the checkout, found a path leaving the checkout `../elsewhere/*.json`
  help: write a path or glob relative to the repository root, like `templates: [infrastructure/cdk.out/*.template.json]`
ferry.yml:11:17: audit #1 in `build.gates.security` has both `run` and `file`
  help: give one: `run` for a command whose output is the report, `file` for a report the build wrote
ferry.yml:12:11: audit #2 in `build.gates.security` needs `run` or `file`
  help: write it like `- run: npm audit --json` or `- file: reports/cargo-audit.json`
ferry.yml:15:19: the reason in allowlist entry #1 in `build.gates.security` is too short to justify accepting `GHSA-jf85-cpcp-j695`
  help: say why it is safe, e.g. `reason: "dev dependency; never shipped"`
ferry.yml:18:20: `expires` in allowlist entry #2 in `build.gates.security` must be a date `YYYY-MM-DD`, found `2027-02-30`
  help: write it like `expires: 2027-01-31` (it holds through that day; from the next day on the finding blocks again)
ferry.yml:19:11: missing key `id` in allowlist entry #3 in `build.gates.security`
  help: add `id: GHSA-jf85-cpcp-j695`
ferry.yml:19:11: missing key `reason` in allowlist entry #3 in `build.gates.security`
  help: add `reason: "only used in tests; no user input reaches it"`
ferry.yml:20:7: unknown key `scanners` in `build.gates.security`
  help: allowed keys here: templates, rules, builtin_rules, audit, allow, sarif
"##,
    );
}

#[test]
fn a_full_security_gate_is_read() {
    let p = parse(
        "pipeline: shop\nbuild:\n  steps:\n    - name: unit\n      run: ./unit.sh\n  gates:\n    security:\n      templates: infrastructure/cdk.out/*.template.json\n      rules: [policies/team.guard]\n      builtin_rules: false\n      audit:\n        - run: npm audit --json\n        - file: reports/cargo-audit.json\n      allow:\n        - { id: GHSA-jf85-cpcp-j695, package: lodash, reason: \"only in the build tooling\", expires: 2028-02-29 }\nenvironments:\n  - name: test\n    deploy: {command: {run: ./d.sh}}\n",
        "ferry.yml",
    )
    .expect("the file is valid");
    let s = p.build.gates.security.expect("a security gate");
    assert_eq!(s.templates, ["infrastructure/cdk.out/*.template.json"]);
    assert_eq!(s.rules, ["policies/team.guard"]);
    assert!(!s.builtin_rules);
    assert_eq!(
        s.audits,
        [
            ferry_config::AuditSource::Run("npm audit --json".into()),
            ferry_config::AuditSource::File("reports/cargo-audit.json".into())
        ]
    );
    assert_eq!(s.allow.len(), 1);
    assert_eq!(s.allow[0].package.as_deref(), Some("lodash"));
    assert_eq!(s.allow[0].expires.as_deref(), Some("2028-02-29"));
    assert_eq!(s.sarif, None);
}

#[test]
fn the_security_sarif_file_is_read() {
    let p = parse(
        "pipeline: shop\nbuild:\n  steps:\n    - name: unit\n      run: ./unit.sh\n  gates:\n    security:\n      audit: [{file: reports/cargo-audit.json}]\n      sarif: reports/ferry.sarif\nenvironments:\n  - name: test\n    deploy: {command: {run: ./d.sh}}\n",
        "ferry.yml",
    )
    .expect("the file is valid");
    let s = p.build.gates.security.expect("a security gate");
    assert_eq!(s.sarif.as_deref(), Some("reports/ferry.sarif"));
}

#[test]
fn security_sarif_problems() {
    for (value, expected) in [
        (
            "/tmp/ferry.sarif",
            "ferry.yml:8:14: `sarif` in `build.gates.security` must be a path inside the checkout, found an absolute path `/tmp/ferry.sarif`\n  help: write a path relative to the repository root, like `reports/ferry.sarif`",
        ),
        (
            "../out/ferry.sarif",
            "ferry.yml:8:14: `sarif` in `build.gates.security` must be a path inside the checkout, found a path leaving the checkout `../out/ferry.sarif`\n  help: write a path relative to the repository root, like `reports/ferry.sarif`",
        ),
        (
            "reports/*.sarif",
            "ferry.yml:8:14: `sarif` in `build.gates.security` names one file to write, found the glob `reports/*.sarif`\n  help: write the file's path relative to the repository root, like `sarif: reports/ferry.sarif`",
        ),
        (
            "reports/",
            "ferry.yml:8:14: `sarif` in `build.gates.security` names a folder, found `reports/`\n  help: name the file to write in it, like `sarif: reports/ferry.sarif`",
        ),
        (
            "[a, b]",
            "ferry.yml:8:14: `sarif` in `build.gates.security` must be a text value, found a list\n  help: write it like `reports/ferry.sarif`",
        ),
    ] {
        check(
            &format!(
                "\npipeline: shop\nbuild:\n  steps:\n    - name: unit\n      run: ./unit.sh\n  gates:\n    security:\n      sarif: {value}\n      audit: [{{file: a.json}}]\nenvironments:\n  - name: test\n    deploy: {{command: {{run: ./deploy.sh}}}}\n"
            ),
            &format!("\n{expected}\n"),
        );
    }
}

const INFRA_BASE: &str = "pipeline: p
build:
  steps:
    - name: b
      run: 'true'
environments:
  - name: test
    deploy:
      command:
        run: 'true'
";

#[test]
fn infrastructure_keys_get_did_you_mean_and_paths_stay_inside_the_checkout() {
    check(
        &format!(
            "{INFRA_BASE}    infrastructure:\n      deplo: x\ninfrastructure:\n  pths: [infra/**]\n"
        ),
        r##"
ferry.yml:12:7: unknown key `deplo` in `infrastructure` of environment `test`
  help: did you mean `deploy`?
ferry.yml:14:3: unknown key `pths` in `infrastructure`
  help: did you mean `paths`?
"##,
    );
    check(
        &format!("{INFRA_BASE}infrastructure:\n  paths: [../infra/**, /abs]\n  synth: cdk synth\n"),
        r##"
ferry.yml:12:11: `paths` in `infrastructure` must name paths inside the checkout, found a path leaving the checkout `../infra/**`
  help: write a glob relative to the repository root, like `infrastructure/**`
ferry.yml:12:24: `paths` in `infrastructure` must name paths inside the checkout, found an absolute path `/abs`
  help: write a glob relative to the repository root, like `infrastructure/**`
ferry.yml:13:10: `synth` in `infrastructure` writes templates, but `templates` does not say where
  help: add `templates: [infrastructure/cdk.out/*.template.json]` (globs of the synthesized CloudFormation templates)
"##,
    );
}

#[test]
fn infrastructure_wrong_types_and_empty_values() {
    check(
        &format!("{INFRA_BASE}infrastructure:\n  paths: []\n  templates: {{a: 1}}\n  synth: ''\n"),
        r##"
ferry.yml:12:10: `paths` in `infrastructure` lists no files
  help: list the globs of your infrastructure files, like `paths: [infrastructure/**]`
ferry.yml:13:14: `templates` in `infrastructure` must be a list, found a mapping
  help: write one item per line, each starting with `- `
ferry.yml:14:3: `synth` in `infrastructure` is empty
  help: write it like `synth: npx cdk synth --quiet`
"##,
    );
    check(
        &format!("{INFRA_BASE}infrastructure: yes\n"),
        r##"
ferry.yml:11:17: `infrastructure` must be a mapping, found the text `yes`
  help: write `key: value` lines indented under it; allowed keys: paths, synth, synth_timeout, templates, migrations
"##,
    );
    check(
        &format!("{INFRA_BASE}infrastructure:\n  synth: cdk synth\n  templates: out/*.json\n"),
        r##"
ferry.yml:12:3: missing key `paths` in `infrastructure`
  help: add `paths: [infrastructure/**]`
"##,
    );
}

#[test]
fn an_environment_infrastructure_deploy_needs_the_section_and_a_command() {
    check(
        &format!("{INFRA_BASE}    infrastructure:\n      deploy: ./deploy-infra.sh\n"),
        r##"
ferry.yml:12:7: `infrastructure` of environment `test` deploys infrastructure, but the file has no top-level `infrastructure` section
  help: add a top-level `infrastructure:` with `paths:` (globs of your infrastructure files), or remove `infrastructure` here
"##,
    );
    check(
        &format!("{INFRA_BASE}    infrastructure: {{}}\ninfrastructure:\n  paths: infra/**\n"),
        r##"
ferry.yml:11:21: missing key `deploy` in `infrastructure` of environment `test`
  help: add `deploy: npx cdk deploy --all --require-approval never`
"##,
    );
}

#[test]
fn a_complete_infrastructure_section_parses() {
    let yaml = format!(
        "{INFRA_BASE}    infrastructure:\n      deploy: npx cdk deploy --all\ninfrastructure:\n  paths: [infrastructure/**]\n  synth: npx cdk synth --quiet\n  synth_timeout: 5m\n  templates: infrastructure/cdk.out/*.template.json\n  migrations: [migrations/**]\n"
    );
    let p = match parse(&yaml, "ferry.yml") {
        Ok(p) => p,
        Err(d) => panic!("{d:?}"),
    };
    let infra = p.infrastructure.expect("infrastructure");
    assert_eq!(infra.paths, ["infrastructure/**"]);
    assert_eq!(infra.synth.as_deref(), Some("npx cdk synth --quiet"));
    assert_eq!(
        infra.synth_timeout,
        Some(std::time::Duration::from_secs(300))
    );
    assert_eq!(infra.templates, ["infrastructure/cdk.out/*.template.json"]);
    assert_eq!(infra.migrations, ["migrations/**"]);
    assert_eq!(
        p.environments[0]
            .infrastructure
            .as_ref()
            .map(|i| i.deploy.as_str()),
        Some("npx cdk deploy --all")
    );
}

#[test]
fn secrets_name_environment_variables_once_and_pipeline_alarm_names_are_kept() {
    check(
        r##"
pipeline: shop
secrets: [DEPLOY_KEY, "s3cr3t value", DEPLOY_KEY, 9LIVES]
alarms:
  - name: ferry.failed_runs
    http: {url: "http://127.0.0.1:8080/health"}
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"##,
        r##"
ferry.yml:2:23: item #2 of `secrets` is not an environment variable name
  help: name the variable that holds the secret, like `DEPLOY_KEY` (letters, digits and `_`, not starting with a digit); never write the secret itself here
ferry.yml:2:39: `DEPLOY_KEY` is listed twice in `secrets`
  help: list each variable once
ferry.yml:2:51: item #4 of `secrets` is not an environment variable name
  help: name the variable that holds the secret, like `DEPLOY_KEY` (letters, digits and `_`, not starting with a digit); never write the secret itself here
ferry.yml:4:11: alarm name `ferry.failed_runs` starts with `ferry.`, which is kept for the alarms on the pipeline itself (`ferry.failed_runs`, `ferry.rollbacks`)
  help: choose another name, like `staging-health`
"##,
    );
}

#[test]
fn secrets_parse_into_the_model() {
    let p = parse(
        "pipeline: shop\nsecrets: SENTRY_DSN\nbuild:\n  steps:\n    - name: unit\n      run: ./ci/unit.sh\n      env: {DB_PASSWORD: hunter22, MODE: fast, SENTRY_DSN: https://k@sentry}\nenvironments:\n  - name: test\n    deploy: {command: {run: ./deploy.sh}}\n",
        "ferry.yml",
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(p.secrets, ["SENTRY_DSN"]);
    assert_eq!(
        p.secret_env_names(),
        ["SENTRY_DSN", "FERRY_WEBHOOK_SECRET", "FERRY_API_TOKEN"]
    );
    let mut values = p.secret_step_values(|n| n.contains("PASSWORD"));
    values.sort();
    assert_eq!(values, ["https://k@sentry", "hunter22"]);
}

#[test]
fn notification_channels_events_names_and_email_settings() {
    check(
        r##"
pipeline: shop
build: {steps: [{name: unit, run: ./ci/unit.sh}]}
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
notifications:
  - webhook: {name: team, url: http://127.0.0.1:9000/e, events: [deployment_failes, bogus_thing_here]}
  - webhook: {name: team, url: http://127.0.0.1:9001/e}
  - email: {smtp: "smtp.example.com:99999", from: a@example.com, to: [b@example.com], tls: startls, username: ferry}
  - email: {smtp: "ftp://x", from: a@example.com, to: [b@example.com], password_env: not a var}
  - github: {repo: acme/shop, api_url: github.example.com/api/v3}
"##,
        r##"
ferry.yml:7:66: unknown event kind `deployment_failes` in `webhook` of notification #1
  help: did you mean `deployment_failed`?
ferry.yml:7:85: unknown event kind `bogus_thing_here` in `webhook` of notification #1
  help: write event kinds like `deployment_started`, `deployment_succeeded`, `deployment_failed`, `approval_requested`, `rollback_initiated`, `rollback_succeeded`, `rollback_failed`, `incident_opened` or `pipeline_alarm`, or leave `events` out for the defaults
ferry.yml:8:5: notification #2 is the same channel as the one on line 7 (id `team`)
  help: remove one, or give each its own `name:` if both are meant
ferry.yml:9:19: `smtp` in `email` of notification #3 `smtp.example.com:99999` is not a server: `99999` is not a port number (1-65535)
  help: write `HOST:PORT` or a URL, like `smtp: smtp.example.com:587` or `smtp: smtps://smtp.example.com`
ferry.yml:9:92: unknown value `startls` for `tls` in `email` of notification #3
  help: did you mean `starttls`?
ferry.yml:9:111: `username` in `email` of notification #3 needs `password_env` too
  help: add `password_env: SMTP_PASSWORD`, or remove `username` for a server without login
ferry.yml:10:19: `smtp` in `email` of notification #4 `ftp://x` is not a server: its scheme is not `smtp://` or `smtps://`
  help: write `HOST:PORT` or a URL, like `smtp: smtp.example.com:587` or `smtp: smtps://smtp.example.com`
ferry.yml:10:86: `password_env` in `email` of notification #4 must name an environment variable, found `not a var`
  help: write the variable's name, not the password, like `password_env: SMTP_PASSWORD`
ferry.yml:11:40: `api_url` in `github` of notification #5 must be an http:// or https:// url, found `github.example.com/api/v3`
  help: write it like `api_url: https://github.example.com/api/v3`
"##,
    );
}

#[test]
fn notification_defaults_and_ids() {
    let yaml = r##"
pipeline: shop
build: {steps: [{name: unit, run: ./ci/unit.sh}]}
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
notifications:
  - webhook: {url: http://127.0.0.1:9000/e}
  - email: {name: ops-mail, smtp: "smtps://mail.example.com", from: a@example.com, to: [b@example.com, c@example.com], username: ferry, password_env: SMTP_PASSWORD}
  - github: {repo: acme/shop, events: [deployment_started, pipeline_alarm]}
"##;
    let p = parse(yaml.trim_start(), "ferry.yml").expect("valid");
    let hook = &p.notifications[0];
    assert!(hook.id().starts_with("webhook-"));
    assert_eq!(hook.id(), hook.id());
    assert!(hook.wants("deployment_started") && hook.wants("pipeline_alarm"));
    assert!(!hook.wants("step_started"));
    assert_eq!(p.notifications[1].id(), "ops-mail");
    let ferry_config::Notification::Email { smtp, tls, .. } = &p.notifications[1] else {
        panic!("email expected");
    };
    assert_eq!(
        ferry_config::smtp_endpoint(smtp, *tls),
        Ok((
            "mail.example.com".to_string(),
            465,
            ferry_config::SmtpTls::Tls
        ))
    );
    let ferry_config::Notification::Github { api_url, .. } = &p.notifications[2] else {
        panic!("github expected");
    };
    assert_eq!(api_url, "https://api.github.com");
    assert!(!p.notifications[2].wants("deployment_failed"));
}

#[test]
fn a_synth_timeout_that_is_not_a_duration_is_reported() {
    let yaml = format!(
        "{INFRA_BASE}infrastructure:\n  paths: [infrastructure/**]\n  synth: make templates\n  synth_timeout: soon\n  templates: out/*.json\n"
    );
    let d = match parse(&yaml, "ferry.yml") {
        Ok(_) => panic!("accepted `synth_timeout: soon`"),
        Err(d) => d,
    };
    let text = format!("{d:?}");
    assert!(text.contains("synth_timeout"), "{text}");
}

#[test]
fn webhook_urls_carrying_credentials_are_secret_values() {
    let yaml = r##"
pipeline: shop
build: {steps: [{name: unit, run: ./ci/unit.sh}]}
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
notifications:
  - webhook: {url: "http://127.0.0.1:9000/e"}
  - webhook: {url: "https://hooks.example.com/e?token=abc123"}
  - webhook: {url: "https://bot:pa55@hooks.example.com/e"}
  - slack: {url: "https://hooks.slack.com/services/T0/B0/XyZ"}
"##;
    let p = parse(yaml.trim_start(), "ferry.yml").expect("valid");
    assert_eq!(
        p.secret_config_values(),
        [
            "https://hooks.example.com/e?token=abc123",
            "https://bot:pa55@hooks.example.com/e",
            "https://hooks.slack.com/services/T0/B0/XyZ"
        ]
    );
}

#[test]
fn s3_and_cloudformation_deploys_parse_with_their_defaults() {
    use ferry_config::Deploy;
    let p = parse(
        r##"
pipeline: shop
build:
  steps: [{name: unit, run: ./ci/unit.sh}]
  artifact: dist
environments:
  - name: staging
    deploy:
      s3: {bucket: shop-web-releases}
  - name: production
    deploy:
      s3: {bucket: shop-web-releases, prefix: /web/prod/}
  - name: infra
    deploy:
      cloudformation:
        stack: shop-api-infra
        template: cdk.out/shop.template.json
        bucket: shop-templates
        parameters: {InstanceType: t3.small, Count: 3}
        capabilities: [CAPABILITY_IAM, CAPABILITY_AUTO_EXPAND]
        timeout: 45m
  - name: infra2
    deploy:
      cloudformation: {stack: Shop2, template: t.json, bucket: shop-templates}
"##
        .trim_start(),
        "ferry.yml",
    )
    .expect("valid");
    let Deploy::S3(s) = &p.environment("staging").expect("staging").deploy else {
        panic!("s3")
    };
    assert_eq!(s.bucket, "shop-web-releases");
    assert_eq!(s.prefix_for("staging"), "staging");
    let prod = &p.environment("production").expect("production").deploy;
    let Deploy::S3(s) = prod else { panic!("s3") };
    assert_eq!(s.prefix_for("production"), "web/prod");
    assert!(prod.can_roll_back() && prod.needs_aws());
    assert_eq!(prod.kind(), "s3");
    let infra = &p.environment("infra").expect("infra").deploy;
    let Deploy::CloudFormation(c) = infra else {
        panic!("cloudformation")
    };
    assert_eq!(infra.kind(), "cloudformation");
    assert!(infra.can_roll_back() && infra.needs_aws());
    assert_eq!(c.stack, "shop-api-infra");
    assert_eq!(c.template, "cdk.out/shop.template.json");
    assert_eq!(c.parameters.get("Count").map(String::as_str), Some("3"));
    assert_eq!(c.capabilities, ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]);
    assert_eq!(c.timeout, std::time::Duration::from_secs(45 * 60));
    let Deploy::CloudFormation(c) = &p.environment("infra2").expect("infra2").deploy else {
        panic!("cloudformation")
    };
    assert_eq!(c.timeout, std::time::Duration::from_secs(30 * 60));
    assert!(c.parameters.is_empty() && c.capabilities.is_empty());
}

#[test]
fn s3_deploy_names_a_valid_bucket_and_prefix() {
    check(
        r##"
pipeline: shop
build:
  steps: [{name: unit, run: ./ci/unit.sh}]
  artifact: dist
environments:
  - name: a
    deploy: {s3: {bucket: Shop_Releases}}
  - name: b
    deploy: {s3: {bucket: ab}}
  - name: c
    deploy: {s3: {bucket: 192.168.1.2}}
  - name: d
    deploy: {s3: {bucket: -shop}}
  - name: e
    deploy: {s3: {bucket: shop..web}}
  - name: f
    deploy: {s3: {prefix: web}}
  - name: g
    deploy: {s3: {bucket: shop-web, prefix: /}}
  - name: h
    deploy: {s3: {bucket: shop-web, prefix: web//x}}
  - name: i
    deploy: {s3: {bukket: shop-web}}
  - name: j
    deploy: {s3: {bucket: shop-web}}
"##,
        r##"
ferry.yml:7:27: `bucket: Shop_Releases` in `deploy.s3` of environment `a` is not a valid S3 bucket name: only lowercase letters, digits, `-` and `.` are allowed
  help: write 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, like `bucket: shop-web-releases`
ferry.yml:9:27: `bucket: ab` in `deploy.s3` of environment `b` is not a valid S3 bucket name: it must be 3 to 63 characters long
  help: write 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, like `bucket: shop-web-releases`
ferry.yml:11:27: `bucket: 192.168.1.2` in `deploy.s3` of environment `c` is not a valid S3 bucket name: it may not look like an IP address
  help: write 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, like `bucket: shop-web-releases`
ferry.yml:13:27: `bucket: -shop` in `deploy.s3` of environment `d` is not a valid S3 bucket name: it must start and end with a letter or digit
  help: write 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, like `bucket: shop-web-releases`
ferry.yml:15:27: `bucket: shop..web` in `deploy.s3` of environment `e` is not a valid S3 bucket name: `.` may not be next to another `.` or a `-`
  help: write 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, like `bucket: shop-web-releases`
ferry.yml:17:18: missing key `bucket` in `deploy.s3` of environment `f`
  help: add `bucket: shop-web-releases`
ferry.yml:19:45: `prefix` in `deploy.s3` of environment `g` is only `/`
  help: write a folder in the bucket like `prefix: web/production`, or leave `prefix` out (the environment's name)
ferry.yml:21:45: `prefix: web//x` in `deploy.s3` of environment `h` has an empty, `.` or `..` part
  help: write folder names separated by single `/`, like `prefix: web/production`
ferry.yml:23:19: unknown key `bukket` in `deploy.s3` of environment `i`
  help: did you mean `bucket`?
"##,
    );
}

#[test]
fn cloudformation_deploy_checks_stack_template_bucket_parameters_and_capabilities() {
    check(
        r##"
pipeline: shop
environments:
  - name: a
    deploy:
      cloudformation:
        stack: 1shop
        template: ../outside.json
        bucket: Templates
        parameters: {Instance-Type: t3, Tags: [a, b]}
        capabilities: [CAPABILITY_IAM, CAPABILITY_NAMED_IAMS, SUPERPOWERS]
        timeout: soon
  - name: b
    deploy:
      cloudformation: {template: t.json}
  - name: c
    deploy:
      cloudformation: {stack: shop, template: t.json, bucket: shop-t, capabilities: capability_iam}
  - name: d
    deploy:
      s3: {bucket: shop-web}
      cloudformation: {stack: shop, template: t.json, bucket: shop-t}
"##,
        r##"
ferry.yml:6:16: `stack: 1shop` in `deploy.cloudformation` of environment `a` is not a valid CloudFormation stack name
  help: start with a letter, then up to 127 letters, digits and `-`, like `stack: shop-api-production`
ferry.yml:7:19: `template` in `deploy.cloudformation` of environment `a` must be a path inside the checkout, found a path leaving the checkout `../outside.json`
  help: write a path relative to the repository root, like `template: cdk.out/shop-api.template.json`
ferry.yml:8:17: `bucket: Templates` in `deploy.cloudformation` of environment `a` is not a valid S3 bucket name: only lowercase letters, digits, `-` and `.` are allowed
  help: write 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, like `bucket: shop-api-templates`
ferry.yml:9:22: invalid parameter name `Instance-Type` in `parameters` in `deploy.cloudformation` of environment `a`
  help: CloudFormation parameter names are letters and digits only, like `InstanceType`
ferry.yml:9:47: the value of `Tags` in `parameters` in `deploy.cloudformation` of environment `a` must be a text value, found a list
  help: write it like `Tags: value` (a list parameter is one text: `a,b,c`)
ferry.yml:10:40: unknown capability `CAPABILITY_NAMED_IAMS` in `capabilities` in `deploy.cloudformation` of environment `a`
  help: did you mean `CAPABILITY_NAMED_IAM`?
ferry.yml:10:63: unknown capability `SUPERPOWERS` in `capabilities` in `deploy.cloudformation` of environment `a`
  help: write one of `CAPABILITY_IAM`, `CAPABILITY_NAMED_IAM` or `CAPABILITY_AUTO_EXPAND`
ferry.yml:11:18: invalid duration `soon` for `timeout` in `deploy.cloudformation` of environment `a`: expected a number at `soon`
  help: write a duration like `30s`, `10m`, `1h30m`
ferry.yml:14:23: missing key `stack` in `deploy.cloudformation` of environment `b`
  help: add `stack: shop-api-production`
ferry.yml:14:23: missing key `bucket` in `deploy.cloudformation` of environment `b`
  help: add `bucket: shop-api-templates`
ferry.yml:17:85: unknown capability `capability_iam` in `capabilities` in `deploy.cloudformation` of environment `c`
  help: did you mean `CAPABILITY_IAM`?
ferry.yml:21:7: `deploy` of environment `d` has both `s3` and `cloudformation`
  help: keep one of them: an environment is deployed one way
"##,
    );
}

#[test]
fn s3_deploy_needs_the_build_artifact() {
    check(
        r##"
pipeline: shop
build:
  steps: [{name: unit, run: ./ci/unit.sh}]
environments:
  - name: web
    deploy: {s3: {bucket: shop-web}}
"##,
        r##"
ferry.yml:6:14: environment `web` deploys with `s3`, which uploads the build artifact, but `build.artifact` is not set
  help: add `artifact: dist` (the folder your build writes) under `build`
"##,
    );
}
