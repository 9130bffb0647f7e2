//! Properties of the template checks and the bounds scan: no input panics, the bounds
//! hold, and a template that references only what it declares has no dangling finding.

use ferry_scan::guard::{GuardError, Limits, check_bounds};
use ferry_scan::template::{check_template, check_template_with};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary text never panics the checks; it is findings or a refusal.
    #[test]
    fn any_text_is_findings_or_a_refusal(text in "(?s).{0,400}") {
        let _ = check_template("any", &text);
    }

    /// Arbitrary YAML-ish text made of template punctuation never panics either.
    #[test]
    fn template_punctuation_never_panics(parts in prop::collection::vec(
        prop::sample::select(vec!["Resources:", "\n", "  ", "- ", "!Ref ", "!Sub ", "${", "}", "[", "]", "{", "}", "A", "B", ": ", "'", "\"", "#", "&a ", "*a", "DependsOn: ", "Fn::GetAtt", ","]),
        0..80,
    )) {
        let text: String = parts.concat();
        let _ = check_template("punct", &text);
    }

    /// Nesting beyond the limit is always refused, within it never for depth.
    #[test]
    fn flow_nesting_is_refused_exactly_past_the_limit(depth in 1usize..200) {
        let limits = Limits { max_bytes: 1 << 20, max_depth: 64 };
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let refused = matches!(check_bounds("d", text.as_bytes(), limits), Err(GuardError::TooDeep { .. }));
        // One level is the document's line itself (block context).
        prop_assert_eq!(refused, depth + 1 > limits.max_depth);
    }

    /// A chain of queues, each referring to an earlier one in any intrinsic form,
    /// is sound: no finding at all.
    #[test]
    fn references_to_declared_resources_are_never_dangling(forms in prop::collection::vec(0u8..4, 1..40)) {
        let mut text = String::from("Parameters:\n  Stage: {Type: String}\nResources:\n  Q0:\n    Type: AWS::SQS::Queue\n");
        for (i, form) in forms.iter().enumerate() {
            let prev = format!("Q{i}");
            let body = match form {
                0 => format!("    Properties:\n      QueueName: !Ref {prev}\n"),
                1 => format!("    Properties:\n      QueueName: !GetAtt {prev}.QueueName\n"),
                2 => format!("    Properties:\n      QueueName: !Sub '${{{prev}.QueueName}}-${{Stage}}-${{AWS::Region}}'\n"),
                _ => format!("    DependsOn: [{prev}]\n"),
            };
            text.push_str(&format!("  Q{}:\n    Type: AWS::SQS::Queue\n{body}", i + 1));
        }
        let findings = check_template_with("chain.yaml", &text, Limits::default()).expect("within limits");
        prop_assert!(findings.is_empty(), "{:#?}\n{}", findings, text);
    }
}
