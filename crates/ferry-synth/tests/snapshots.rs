//! The synthesized stacks of the two shipped examples, as committed JSON snapshots
//! (`cargo insta review` after a deliberate change).

mod common;

#[test]
fn reference_stacks() {
    for (name, template) in common::stacks(common::REFERENCE, None) {
        insta::assert_json_snapshot!(format!("reference__{name}"), template);
    }
}

#[test]
fn seed_stacks() {
    for (name, template) in common::stacks(common::SEED, None) {
        insta::assert_json_snapshot!(format!("seed__{name}"), template);
    }
}
