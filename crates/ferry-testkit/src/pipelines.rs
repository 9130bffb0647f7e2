//! Pipeline files the simulations use, in the shape of the reference `ferry.yml`.

/// Build (lint, unit tests with JUnit and LCOV, coverage ≥ 80 %, artifact), then `test`
/// (integration tests), `staging` (e2e tests, 20 s monitor window on `staging-health`)
/// and `production` (approval within 1 h, 20 s monitor window on `production-health`).
/// Alarms: one datapoint per 2 s, ALARM at 2 breaching of the last 3.
pub const SHOP: &str = r#"
pipeline: shop-api
build:
  steps:
    - name: lint
      run: ./ci/lint.sh
    - name: unit
      run: ./ci/unit.sh
      timeout: 10m
      reports:
        junit: reports/unit.xml
        coverage: reports/lcov.info
  gates:
    coverage_min: 80
  artifact: dist
environments:
  - name: test
    deploy:
      command:
        run: ./deploy.sh test
    tests:
      - name: integration
        run: ./ci/integration.sh
        reports:
          junit: reports/integration.xml
  - name: staging
    deploy:
      command:
        run: ./deploy.sh staging
    tests:
      - name: e2e
        run: ./ci/e2e.sh
    monitor:
      duration: 20s
      interval: 2s
      alarms: [staging-health]
  - name: production
    approval:
      timeout: 1h
    deploy:
      command:
        run: ./deploy.sh production
    monitor:
      duration: 20s
      interval: 2s
      alarms: [production-health]
alarms:
  - name: staging-health
    http:
      url: http://127.0.0.1:18182/health
    period: 2s
    evaluation_periods: 3
    datapoints_to_alarm: 2
  - name: production-health
    http:
      url: http://127.0.0.1:18183/health
    period: 2s
    evaluation_periods: 3
    datapoints_to_alarm: 2
"#;

/// The smallest pipeline with two environments and no approval, monitor or artifact:
/// one build step, `test`, then `production`.
pub const TINY: &str = r#"
pipeline: tiny
build:
  steps:
    - name: build
      run: make
environments:
  - name: test
    deploy:
      command:
        run: ./deploy.sh test
  - name: production
    deploy:
      command:
        run: ./deploy.sh production
"#;

/// The commands of [`SHOP`], by step.
pub mod shop {
    pub const LINT: &str = "./ci/lint.sh";
    pub const UNIT: &str = "./ci/unit.sh";
    pub const INTEGRATION: &str = "./ci/integration.sh";
    pub const E2E: &str = "./ci/e2e.sh";
    pub const STAGING_ALARM: &str = "staging-health";
    pub const PRODUCTION_ALARM: &str = "production-health";
    pub const ENVIRONMENTS: [&str; 3] = ["test", "staging", "production"];
}
