//! Shared by the tests: the example pipelines and their stacks.

#![allow(dead_code)]

use std::collections::BTreeMap;

use ferry_config::Pipeline;
use serde_json::Value;

/// The reference pipeline the project ships (`examples/reference/ferry.yml`).
pub const REFERENCE: &str = include_str!("../../../../examples/reference/ferry.yml");
/// The seed's own pipeline as a ferry.yml (`examples/seed/ferry.yml`).
pub const SEED: &str = include_str!("../../../../examples/seed/ferry.yml");

/// A pipeline deploying with the AWS deploy kinds: `s3:` and `cloudformation:`.
pub const AWS_KINDS: &str = r#"pipeline: shop
build:
  steps: [{name: unit, run: ./ci/unit.sh}]
  artifact: dist
environments:
  - name: web
    deploy:
      s3: {bucket: shop-web-releases, prefix: site/web}
  - name: infra
    deploy:
      cloudformation:
        stack: shop-infra
        template: cdk.out/shop.template.json
        bucket: shop-templates
        capabilities: [CAPABILITY_IAM]
"#;

pub fn pipeline(text: &str) -> Pipeline {
    match ferry_config::parse(text, "ferry.yml") {
        Ok(p) => p,
        Err(d) => panic!("the example does not validate: {d:?}"),
    }
}

pub fn stacks(text: &str, env: Option<&str>) -> BTreeMap<String, Value> {
    let options = ferry_synth::Options {
        env: env.map(String::from),
    };
    ferry_synth::synth(&pipeline(text), &options).expect("synthesizes")
}

/// Every synthesis the checks run over: both examples, whole and scoped to staging, and
/// the AWS deploy kinds' pipeline.
pub fn all() -> Vec<(String, BTreeMap<String, Value>)> {
    let mut out = Vec::new();
    for (label, text) in [("reference", REFERENCE), ("seed", SEED)] {
        out.push((label.to_string(), stacks(text, None)));
        out.push((
            format!("{label} --env staging"),
            stacks(text, Some("staging")),
        ));
    }
    out.push(("aws kinds".to_string(), stacks(AWS_KINDS, None)));
    out
}
