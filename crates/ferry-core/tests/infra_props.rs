//! Properties of the semantic template diff (`ferry_core::infra`): a template compared
//! with itself has no difference, key order and `Metadata` never matter, and the verdict
//! is rollback-unsafe exactly when a stateful resource loses data or a migration changed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use ferry_core::infra::{
    ChangeKind, Verdict, assess, diff_templates, is_stateful, requires_replacement,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const TYPES: &[&str] = &[
    "AWS::DynamoDB::Table",
    "AWS::S3::Bucket",
    "AWS::Lambda::Function",
    "AWS::SQS::Queue",
    "AWS::IAM::Role",
];
const PROPS: &[&str] = &[
    "TableName",
    "BillingMode",
    "BucketName",
    "Timeout",
    "QueueName",
    "Description",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (0u32..100).prop_map(|n| json!(n)),
        "[a-z]{0,6}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[A-Z][a-z]{0,4}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn resource() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(TYPES),
        prop::collection::btree_map(prop::sample::select(PROPS), value(), 0..4),
    )
        .prop_map(|(t, props)| {
            let props: Map<String, Value> =
                props.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            json!({"Type": t, "Properties": props})
        })
}

fn template() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map("[A-Z][a-z]{0,3}", resource(), 0..5),
        prop::collection::btree_map("[A-Z][a-z]{0,3}", value(), 0..3),
    )
        .prop_map(|(res, outs)| {
            let res: Map<String, Value> = res.into_iter().collect();
            let outs: Map<String, Value> = outs
                .into_iter()
                .map(|(k, v)| (k, json!({ "Value": v })))
                .collect();
            json!({"Resources": res, "Outputs": outs})
        })
}

fn set(t: Value) -> BTreeMap<String, Value> {
    BTreeMap::from([("app.template.json".to_string(), t)])
}

/// The same JSON with every object's keys written in reverse order.
fn reorder(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.reverse();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), reorder(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(reorder).collect()),
        other => other.clone(),
    }
}

/// Adds (or changes) `Metadata` on every resource.
fn with_metadata(t: &Value, tag: &str) -> Value {
    let mut t = t.clone();
    if let Some(res) = t.get_mut("Resources").and_then(Value::as_object_mut) {
        for r in res.values_mut() {
            if let Some(r) = r.as_object_mut() {
                r.insert(
                    "Metadata".into(),
                    json!({"aws:cdk:path": tag, "aws:asset:path": format!("asset.{tag}")}),
                );
            }
        }
    }
    t
}

proptest! {
    #[test]
    fn a_template_compared_with_itself_has_no_difference(t in template()) {
        let d = diff_templates(&set(t.clone()), &set(t));
        prop_assert!(d.is_empty());
        prop_assert_eq!(assess(&d, &[]).verdict, Verdict::NoChange);
    }

    #[test]
    fn key_order_and_metadata_never_matter(a in template(), b in template(), tag in "[a-z]{1,5}") {
        let plain = diff_templates(&set(a.clone()), &set(b.clone()));
        let noisy = diff_templates(&set(with_metadata(&a, "one")), &set(reorder(&with_metadata(&b, &tag))));
        prop_assert_eq!(plain, noisy);
    }

    #[test]
    fn the_diff_is_empty_exactly_when_the_templates_are_equal(a in template(), b in template()) {
        let d = diff_templates(&set(a.clone()), &set(b.clone()));
        prop_assert_eq!(d.is_empty(), a == b);
    }

    #[test]
    fn rollback_unsafe_exactly_when_a_stateful_resource_is_replaced_or_removed(a in template(), b in template()) {
        let d = diff_templates(&set(a), &set(b));
        let loses = d.resources.iter().any(|r| r.stateful && matches!(r.kind, ChangeKind::Removed | ChangeKind::Replaced));
        prop_assert_eq!(assess(&d, &[]).verdict == Verdict::RollbackUnsafe, loses);
        for r in &d.resources {
            if r.kind == ChangeKind::Replaced {
                let by_property = r.paths.iter().any(|p| {
                    let top = p.trim_start_matches("Properties.").split(['.', '[']).next().unwrap_or("");
                    p.starts_with("Properties.") && requires_replacement(&r.resource_type, top)
                });
                prop_assert!(by_property || r.replaced_because.as_deref().is_some_and(|w| w.starts_with("type ")));
            }
            let type_changed = r.replaced_because.as_deref().is_some_and(|w| w.starts_with("type "));
            if !type_changed {
                prop_assert_eq!(r.stateful, is_stateful(&r.resource_type));
            }
        }
    }
}
