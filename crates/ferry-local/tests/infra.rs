//! `ferry_local::infra::compare` on real git repositories: what it refuses to judge
//! (no template where the globs point) and the sections around resources that count
//! as meaningful (a mapping value that resources read).
#![allow(clippy::unwrap_used)]

use ferry_config::Infrastructure;
use ferry_core::infra::Verdict;
use ferry_local::GitSource;
use git2::{IndexAddOption, Repository, RepositoryInitOptions, Signature};
use std::fs;
use std::path::Path;

fn init(dir: &Path) -> Repository {
    let mut opts = RepositoryInitOptions::new();
    opts.initial_head("main");
    Repository::init_opts(dir, &opts).unwrap()
}

fn commit_all(repo: &Repository, message: &str) -> String {
    let mut index = repo.index().unwrap();
    index.clear().unwrap();
    index
        .add_all(["*"].iter(), IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("Ada Lovelace", "ada@example.com").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
        .to_string()
}

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn stack(timeout: u32) -> String {
    serde_json::json!({
        "Mappings": {"Env": {"prod": {"Timeout": timeout}}},
        "Resources": {"Jobs": {"Type": "AWS::SQS::Queue",
            "Properties": {"VisibilityTimeout": {"Fn::FindInMap": ["Env", "prod", "Timeout"]}}}}
    })
    .to_string()
}

fn infra(templates: &str, synth: Option<&str>) -> Infrastructure {
    Infrastructure {
        paths: vec!["cfn/**".into()],
        synth: synth.map(str::to_string),
        synth_timeout: None,
        templates: vec![templates.into()],
        migrations: Vec::new(),
    }
}

#[test]
fn a_changed_mapping_value_is_a_meaningful_change() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(dir.path());
    write(dir.path(), "cfn/app.json", &stack(30));
    let first = commit_all(&repo, "first");
    write(dir.path(), "cfn/app.json", &stack(60));
    let second = commit_all(&repo, "timeout");
    let git = GitSource::open(dir.path()).unwrap();
    let c = ferry_local::infra::compare(&git, &infra("cfn/*.json", None), &first, &second).unwrap();
    assert_eq!(c.assessment.verdict, Verdict::Meaningful, "{c:?}");
    assert_eq!(c.diff.sections[0].name, "Mappings.Env");
    let text = ferry_local::infra::describe(&c, &infra("cfn/*.json", None)).join("\n");
    assert!(
        text.contains("~ Mappings.Env in cfn/app.json: modified"),
        "{text}"
    );
}

#[test]
fn templates_globs_that_match_nothing_are_an_error_not_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(dir.path());
    write(dir.path(), "cfn/app.json", &stack(30));
    let first = commit_all(&repo, "first");
    write(dir.path(), "cfn/app.json", &stack(60));
    let second = commit_all(&repo, "timeout");
    let git = GitSource::open(dir.path()).unwrap();
    // Committed templates under a misspelt glob.
    let e = ferry_local::infra::compare(&git, &infra("cfn/*.template.json", None), &first, &second)
        .unwrap_err();
    assert!(
        e.message
            .contains("`infrastructure.templates` (cfn/*.template.json) match no file")
            && e.message.contains("correct the globs"),
        "{}",
        e.message
    );
    // A synth that writes somewhere else than the globs say.
    let e = ferry_local::infra::compare(
        &git,
        &infra(
            "out/*.json",
            Some("mkdir -p elsewhere && cp cfn/app.json elsewhere/"),
        ),
        &first,
        &second,
    )
    .unwrap_err();
    assert!(
        e.message.contains("after `infrastructure.synth`") && e.message.contains("synth command"),
        "{}",
        e.message
    );
    // Unchanged infrastructure files: nothing is synthesized, nothing to refuse.
    write(dir.path(), "README.md", "docs\n");
    let third = commit_all(&repo, "docs");
    let c = ferry_local::infra::compare(&git, &infra("cfn/*.template.json", None), &second, &third)
        .unwrap();
    assert_eq!(c.assessment.verdict, Verdict::NoChange);
}

#[test]
fn a_synth_that_hangs_is_stopped_at_its_timeout_and_the_comparison_fails() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(dir.path());
    write(dir.path(), "cfn/app.json", &stack(30));
    let first = commit_all(&repo, "first");
    write(dir.path(), "cfn/app.json", &stack(60));
    let second = commit_all(&repo, "timeout");
    let git = GitSource::open(dir.path()).unwrap();
    // The synth starts a background child too: the whole group must be stopped.
    let mut hanging = infra("out/*.json", Some("sleep 600 & sleep 600"));
    hanging.synth_timeout = Some(std::time::Duration::from_secs(1));
    let err = ferry_local::infra::compare(&git, &hanging, &first, &second).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("did not finish within 1s"), "{text}");
    assert!(text.contains("infrastructure.synth_timeout"), "{text}");
}

#[test]
fn a_template_over_the_size_bound_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(dir.path());
    write(dir.path(), "cfn/app.json", &stack(30));
    let first = commit_all(&repo, "first");
    // 17 MiB of JSON: a valid document, bigger than any template CloudFormation takes.
    let big = format!(
        "{{\"Resources\": {{}}, \"Metadata\": {{\"pad\": \"{}\"}}}}",
        "x".repeat(17 * 1024 * 1024)
    );
    write(dir.path(), "cfn/app.json", &big);
    let second = commit_all(&repo, "big");
    let git = GitSource::open(dir.path()).unwrap();
    let err = ferry_local::infra::compare(&git, &infra("cfn/*.json", None), &first, &second)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cfn/app.json"), "{err}");
    assert!(err.contains("over the 16 MiB"), "{err}");
}
