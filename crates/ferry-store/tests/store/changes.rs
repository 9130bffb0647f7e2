//! Every kind of change round-trips: what `apply` writes, `load_run`, `events`,
//! `test_results` and the deployment queries give back exactly.

use crate::support::{self, Choice, T0, Verdict, apply, artifact, drive, drive_from, start, store};
use ferry_core::run::StepRef;
use ferry_core::{
    Change, DeploymentRecord, DeploymentStatus, Event, EventKind, RollbackLevel, RunId, RunStatus,
    StageStatus, StepStatus, Suite, Timestamp,
};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{EventFilter, PortErrorKind, Store};
use ferry_reports::TestReport;
use serde_json::json;

#[test]
fn a_new_run_loads_as_the_core_builds_it() {
    let (_d, store) = store();
    let run = start(&store, support::THREE_ENVIRONMENTS, T0);
    let view = store.load_run(run.id()).unwrap();
    assert_eq!(view.status, RunStatus::Queued);
    assert_eq!(
        view.stages
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["build", "test", "staging", "production"]
    );
    assert_eq!(
        view.stages[0]
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.kind.as_str()))
            .collect::<Vec<_>>(),
        [
            ("lint", "command"),
            ("unit", "command"),
            ("coverage", "gate"),
            ("artifact", "package")
        ]
    );
}

#[test]
fn a_run_that_passes_everything_is_stored_step_by_step() {
    let (_d, store) = store();
    let run = drive(&store, support::THREE_ENVIRONMENTS, &[Choice::pass()]);
    assert_eq!(run.status(), RunStatus::Succeeded);
    let view = store.load_run(run.id()).unwrap();
    assert_eq!(view.artifact, Some(artifact(run.id())));
    assert!(
        view.stages
            .iter()
            .all(|s| s.status == StageStatus::Succeeded)
    );

    for env in ["test", "staging", "production"] {
        let good = store.last_known_good(env).unwrap().unwrap();
        assert_eq!(good.status, DeploymentStatus::Succeeded);
        assert_eq!(good.run_id, run.id());
        assert_eq!(good.artifact_digest, artifact(run.id()).digest);
        assert_eq!(Some(&good), store.latest_deployment(env).unwrap().as_ref());
    }
    // The core carries the test flags into the records.
    let prod = store.last_known_good("production").unwrap().unwrap();
    assert!(prod.unit_tests_passed && prod.integration_tests_passed && prod.e2e_tests_passed);
    assert_eq!(prod.coverage_percentage, 91.5);
    assert_eq!(
        store.approvals(run.id(), "production").unwrap()[0].by,
        "alice"
    );

    let results = store.test_results(run.id()).unwrap();
    assert_eq!(
        results
            .iter()
            .map(|r| (r.stage, r.step, r.suite))
            .collect::<Vec<_>>(),
        [
            (0, 1, Suite::Unit),
            (1, 1, Suite::Integration),
            // Staging's infrastructure step comes before its deploy.
            (2, 2, Suite::E2e)
        ]
    );
    assert_eq!(results[0].coverage, Some(91.5));
}

#[test]
fn a_second_run_records_the_first_as_previous_version() {
    let (_d, store) = store();
    let first = drive(&store, support::TWO_ENVIRONMENTS, &[Choice::pass()]);
    let before = store.last_known_good("test").unwrap().unwrap();
    assert_eq!(before.previous_version, None);
    assert_eq!(first.status(), RunStatus::Succeeded);

    // Same commit, later: new deployment ids, previous_version from last known good.
    let (name, plan) = support::plan(support::TWO_ENVIRONMENTS);
    let id = store
        .create_run(&support::new_run(&name, &plan, Timestamp(T0.0 + 3_600_000)))
        .unwrap();
    assert_eq!(id, RunId(first.id().0 + 1));
    let mut run = ferry_core::Run::new(
        id,
        &name,
        support::commit(),
        plan,
        Timestamp(T0.0 + 3_600_000),
    );
    let r = StepRef { stage: 1, step: 0 };
    let at = Timestamp(T0.0 + 3_700_000);
    // Jump straight to the deploy of `test`: the core does not care here, the store
    // records what it is told.
    let changes = run.start_deploy(r, at, None, Some(before.version.clone()));
    apply(&store, &run, &changes);
    let latest = store.latest_deployment("test").unwrap().unwrap();
    assert_eq!(latest.status, DeploymentStatus::InProgress);
    assert_eq!(latest.previous_version, Some(before.version.clone()));
    assert_eq!(latest.deployment_id, format!("test#{}", at.0));
    // The newer in-progress one is not known good.
    assert_eq!(store.last_known_good("test").unwrap().unwrap(), before);
}

#[test]
fn a_failing_unit_test_fails_the_run_and_skips_the_rest() {
    let (_d, store) = store();
    let fail = Choice {
        failed_tests: 2,
        ..Choice::pass()
    };
    let run = drive(&store, support::THREE_ENVIRONMENTS, &[Choice::pass(), fail]);
    let view = store.load_run(run.id()).unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    assert!(
        view.reason
            .as_deref()
            .unwrap()
            .starts_with("build/unit: 2 of 42 tests failed"),
        "{view:?}"
    );
    assert_eq!(view.stages[0].steps[1].exit_code, Some(0));
    assert_eq!(view.stages[0].steps[1].status, StepStatus::Failed);
    assert_eq!(view.stages[0].steps[2].status, StepStatus::Skipped);
    assert!(
        view.stages[1..]
            .iter()
            .all(|s| s.status == StageStatus::Skipped)
    );
    assert!(store.deployments(None, 10).unwrap().is_empty());
    let results = store.test_results(run.id()).unwrap();
    assert_eq!(results[0].report.failures.len(), 2);
    assert_eq!(
        results[0].report.failures[1].stack_trace.as_deref(),
        Some("Traceback …\n  line 1\nAssertionError")
    );
}

#[test]
fn a_rejected_approval_fails_the_run_before_production_is_touched() {
    let (_d, store) = store();
    let reject = Choice {
        approval: Verdict::Reject,
        ..Choice::pass()
    };
    let run = drive(&store, support::TWO_ENVIRONMENTS, &[reject]);
    assert_eq!(run.status(), RunStatus::Failed);
    assert!(store.latest_deployment("production").unwrap().is_none());
    assert_eq!(
        store.latest_deployment("test").unwrap().unwrap().status,
        DeploymentStatus::Succeeded
    );
    let d = store.approvals(run.id(), "production").unwrap()[0].clone();
    assert!(!d.approved);
    assert_eq!(d.reason.as_deref(), Some("not on a friday"));
}

#[test]
fn a_failed_deploy_closes_its_deployment_as_failed() {
    let (_d, store) = store();
    // build: lint, unit, coverage, artifact pass; test: deploy fails.
    let mut choices = vec![Choice::pass(); 5];
    choices[4].pass = false;
    let run = drive(&store, support::THREE_ENVIRONMENTS, &choices);
    assert_eq!(run.status(), RunStatus::Failed);
    let d = store.latest_deployment("test").unwrap().unwrap();
    assert_eq!(d.status, DeploymentStatus::Failed);
    assert!(d.end_time.is_some());
    assert!(store.last_known_good("test").unwrap().is_none());
}

#[test]
fn each_change_kind_lands_in_its_columns() {
    let (_d, store) = store();
    let run = start(&store, support::TWO_ENVIRONMENTS, T0);
    let id = run.id();
    let at = Timestamp(T0.0 + 10);
    let event = Event {
        at,
        kind: EventKind::GatePassed,
        run: Some(id),
        environment: Some("test".into()),
        message: "coverage gate passed: 91.5% ≥ 80%".into(),
        data: json!({"gate": "coverage", "coverage": 0.1 + 0.2, "min": 80.0, "nested": [1, null, "ü"]}),
    };
    let record = DeploymentRecord {
        deployment_id: format!("test#{}", at.0),
        environment: "test".into(),
        version: "abc".into(),
        status: DeploymentStatus::InProgress,
        start_time: at.0,
        end_time: None,
        infrastructure_changed: true,
        commit_message: "feat: 'quoted' \"text\"; DROP TABLE runs; --".into(),
        commit_author: "Zoë <z@example.com>".into(),
        pipeline_execution_id: id.execution_id(),
        unit_tests_passed: true,
        integration_tests_passed: false,
        e2e_tests_passed: true,
        coverage_percentage: 83.333_333_333_333_33,
        rollback_reason: Some("alarm test-health in ALARM".into()),
        rollback_level: Some(RollbackLevel::Full),
        rollback_time: Some(at.0 + 5),
        artifact_location: "s3://bucket/run-1.tar".into(),
        expires_at: at.secs() + 90 * 86_400,
        run_id: id,
        artifact_digest: "sha256:00".into(),
        previous_version: Some("def".into()),
        config_digest: Some("sha256:c0ffee".into()),
        template_digests: [
            ("infra/app.yml".to_string(), "sha256:aa".to_string()),
            ("infra/db 'main'.yml".to_string(), "sha256:bb".to_string()),
        ]
        .into(),
        rollback_unsafe: true,
        rollback_unsafe_reason: Some("table Orders (AWS::DynamoDB::Table) replaced".into()),
    };
    let report = TestReport {
        total: 3,
        passed: 1,
        failed: 1,
        errored: 1,
        skipped: 0,
        failures: Vec::new(),
    };
    store
        .apply(
            id,
            &[
                Change::Run {
                    status: RunStatus::Running,
                    reason: None,
                    at,
                },
                Change::Stage {
                    stage: 0,
                    status: StageStatus::Running,
                    at,
                },
                Change::Step {
                    stage: 0,
                    step: 0,
                    status: StepStatus::Running,
                    at,
                    log: Some("/logs/1.log".into()),
                    exit_code: None,
                    reason: None,
                },
                Change::Step {
                    stage: 0,
                    step: 0,
                    status: StepStatus::Failed,
                    at: Timestamp(at.0 + 1),
                    log: Some("/logs/1.log".into()),
                    exit_code: Some(-9),
                    reason: Some("killed by signal 9".into()),
                },
                Change::TestResults {
                    stage: 0,
                    step: 0,
                    suite: Suite::E2e,
                    report: report.clone(),
                    coverage: None,
                },
                Change::Artifact(artifact(id)),
                Change::DeploymentStarted(Box::new(record.clone())),
                Change::Event(event.clone()),
            ],
        )
        .unwrap();
    let view = store.load_run(id).unwrap();
    assert_eq!(view.status, RunStatus::Running);
    assert_eq!(view.started_at, Some(at));
    assert_eq!(view.ended_at, None);
    assert_eq!(view.stages[0].status, StageStatus::Running);
    assert_eq!(view.stages[0].started_at, Some(at));
    let step = &view.stages[0].steps[0];
    assert_eq!(step.status, StepStatus::Failed);
    assert_eq!(
        (step.started_at, step.ended_at),
        (Some(at), Some(Timestamp(at.0 + 1)))
    );
    assert_eq!(step.exit_code, Some(-9));
    assert_eq!(step.reason.as_deref(), Some("killed by signal 9"));
    assert_eq!(step.log.as_deref(), Some("/logs/1.log"));
    assert_eq!(view.artifact, Some(artifact(id)));
    let results = store.test_results(id).unwrap();
    assert_eq!(
        (results[0].suite, &results[0].report, results[0].coverage),
        (Suite::E2e, &report, None)
    );
    assert_eq!(
        store.latest_deployment("test").unwrap(),
        Some(record.clone())
    );
    let events = store.events(&EventFilter::default()).unwrap();
    assert_eq!(events.last().unwrap().1, event);

    let end = Timestamp(at.0 + 100);
    store
        .apply(
            id,
            &[
                Change::DeploymentFinished {
                    deployment_id: record.deployment_id.clone(),
                    status: DeploymentStatus::RolledBack,
                    end_time: end,
                    unit_tests_passed: false,
                    integration_tests_passed: true,
                    e2e_tests_passed: false,
                    coverage_percentage: 12.5,
                },
                Change::Stage {
                    stage: 0,
                    status: StageStatus::Failed,
                    at: end,
                },
                Change::Stage {
                    stage: 1,
                    status: StageStatus::Skipped,
                    at: end,
                },
                Change::Run {
                    status: RunStatus::Failed,
                    reason: Some("build/lint: killed by signal 9".into()),
                    at: end,
                },
            ],
        )
        .unwrap();
    let view = store.load_run(id).unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(
        view.reason.as_deref(),
        Some("build/lint: killed by signal 9")
    );
    assert_eq!((view.started_at, view.ended_at), (Some(at), Some(end)));
    assert_eq!(
        (view.stages[0].started_at, view.stages[0].ended_at),
        (Some(at), Some(end))
    );
    // Skipped never ran: no times.
    assert_eq!(
        (view.stages[1].started_at, view.stages[1].ended_at),
        (None, None)
    );
    let d = store.latest_deployment("test").unwrap().unwrap();
    assert_eq!(
        d,
        DeploymentRecord {
            status: DeploymentStatus::RolledBack,
            end_time: Some(end.0),
            unit_tests_passed: false,
            integration_tests_passed: true,
            e2e_tests_passed: false,
            coverage_percentage: 12.5,
            ..record
        }
    );
}

#[test]
fn a_batch_is_all_or_nothing() {
    let (_d, store) = store();
    let run = start(&store, support::TWO_ENVIRONMENTS, T0);
    let before = store.load_run(run.id()).unwrap();
    let events_before = store.events(&EventFilter::default()).unwrap();
    let err = store
        .apply(
            run.id(),
            &[
                Change::Run {
                    status: RunStatus::Running,
                    reason: None,
                    at: T0,
                },
                Change::Event(Event {
                    at: T0,
                    kind: EventKind::RunStarted,
                    run: Some(run.id()),
                    environment: None,
                    message: "started".into(),
                    data: json!({}),
                }),
                Change::Stage {
                    stage: 9,
                    status: StageStatus::Running,
                    at: T0,
                },
            ],
        )
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::NotFound);
    assert_eq!(err.message, format!("run {} has no stage 9", run.id()));
    assert_eq!(store.load_run(run.id()).unwrap(), before);
    assert_eq!(
        store.events(&EventFilter::default()).unwrap(),
        events_before
    );
}

#[test]
fn changes_to_unknown_things_are_not_found_or_conflicts() {
    let (_d, store) = store();
    let run = start(&store, support::TWO_ENVIRONMENTS, T0);
    let err = store.apply(RunId(99), &[]).unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (
            PortErrorKind::NotFound,
            "run 99 does not exist; `ferry history` lists the runs"
        )
    );
    assert_eq!(
        store.load_run(RunId(99)).unwrap_err().kind,
        PortErrorKind::NotFound
    );

    let step = Change::Step {
        stage: 0,
        step: 7,
        status: StepStatus::Running,
        at: T0,
        log: None,
        exit_code: None,
        reason: None,
    };
    assert_eq!(
        store.apply(run.id(), &[step]).unwrap_err().kind,
        PortErrorKind::NotFound
    );
    let results = Change::TestResults {
        stage: 3,
        step: 0,
        suite: Suite::Unit,
        report: TestReport::default(),
        coverage: Some(1.0),
    };
    assert_eq!(
        store.apply(run.id(), &[results]).unwrap_err().kind,
        PortErrorKind::NotFound
    );
    let finished = Change::DeploymentFinished {
        deployment_id: "test#1".into(),
        status: DeploymentStatus::Succeeded,
        end_time: T0,
        unit_tests_passed: true,
        integration_tests_passed: true,
        e2e_tests_passed: true,
        coverage_percentage: 90.0,
    };
    let err = store.apply(run.id(), &[finished]).unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (PortErrorKind::NotFound, "deployment test#1 does not exist")
    );

    let mut run = run;
    let changes = run.start_deploy(StepRef { stage: 1, step: 0 }, T0, None, None);
    apply(&store, &run, &changes);
    let started = changes
        .iter()
        .find(|c| matches!(c, Change::DeploymentStarted(_)))
        .unwrap()
        .clone();
    let err = store.apply(run.id(), &[started]).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!("deployment test#{} is already recorded", T0.0)
    );
}

#[test]
fn runs_are_listed_newest_first() {
    let (_d, store) = store();
    let done = drive(&store, support::TWO_ENVIRONMENTS, &[Choice::pass()]);
    let waiting = start(&store, support::TWO_ENVIRONMENTS, Timestamp(T0.0 + 1));
    let failed = drive(
        &store,
        support::TWO_ENVIRONMENTS,
        &[Choice {
            abort_before: true,
            ..Choice::pass()
        }],
    );
    assert_eq!(failed.status(), RunStatus::Failed);
    let ids =
        |runs: Vec<ferry_core::run::RunView>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_runs(10, false).unwrap()),
        [failed.id(), waiting.id(), done.id()]
    );
    assert_eq!(
        ids(store.list_runs(2, false).unwrap()),
        [failed.id(), waiting.id()]
    );
    assert_eq!(ids(store.list_runs(10, true).unwrap()), [waiting.id()]);
    assert_eq!(
        store.list_runs(10, false).unwrap()[2],
        store.load_run(done.id()).unwrap()
    );
    assert!(store.list_runs(0, false).unwrap().is_empty());
}

#[test]
fn events_filter_by_run_environment_position_and_count() {
    let (_d, store) = store();
    let a = drive(&store, support::TWO_ENVIRONMENTS, &[Choice::pass()]);
    let b = drive_from(
        &store,
        support::TWO_ENVIRONMENTS,
        &[Choice::pass()],
        Timestamp(T0.0 + 86_400_000),
    );
    let all = store.events(&EventFilter::default()).unwrap();
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "ids ascend");
    let of_a = store
        .events(&EventFilter {
            run: Some(a.id()),
            ..Default::default()
        })
        .unwrap();
    let of_b = store
        .events(&EventFilter {
            run: Some(b.id()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(of_a.len() + of_b.len(), all.len());
    assert_eq!(of_a[0].1.kind, EventKind::RunQueued);
    assert_eq!(of_a.last().unwrap().1.kind, EventKind::RunSucceeded);

    let prod_b = store
        .events(&EventFilter {
            run: Some(b.id()),
            environment: Some("production".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(!prod_b.is_empty());
    assert!(
        prod_b
            .iter()
            .all(|(_, e)| e.environment.as_deref() == Some("production") && e.run == Some(b.id()))
    );
    assert!(
        prod_b
            .iter()
            .any(|(_, e)| e.kind == EventKind::ApprovalGranted)
    );

    let after = all[5].0;
    let page = store
        .events(&EventFilter {
            after_id: Some(after),
            limit: Some(3),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page, all[6..9].to_vec());
}

#[test]
fn deployments_are_newest_first_and_last_known_good_skips_failures() {
    let (_d, store) = store();
    let run = start(&store, support::TWO_ENVIRONMENTS, T0);
    let rec = |env: &str, t: i64, status: DeploymentStatus| DeploymentRecord {
        deployment_id: format!("{env}#{t}"),
        environment: env.into(),
        version: format!("v{t}"),
        status,
        start_time: t,
        end_time: (status != DeploymentStatus::InProgress).then_some(t + 1),
        infrastructure_changed: false,
        commit_message: String::new(),
        commit_author: String::new(),
        pipeline_execution_id: run.id().execution_id(),
        unit_tests_passed: false,
        integration_tests_passed: false,
        e2e_tests_passed: false,
        coverage_percentage: 0.0,
        rollback_reason: None,
        rollback_level: None,
        rollback_time: None,
        artifact_location: String::new(),
        expires_at: 0,
        run_id: run.id(),
        artifact_digest: String::new(),
        previous_version: None,
        config_digest: None,
        template_digests: Default::default(),
        rollback_unsafe: false,
        rollback_unsafe_reason: None,
    };
    let records = [
        rec("test", 10, DeploymentStatus::Succeeded),
        rec("test", 20, DeploymentStatus::Succeeded),
        rec("production", 25, DeploymentStatus::Succeeded),
        rec("test", 30, DeploymentStatus::Failed),
        rec("test", 40, DeploymentStatus::RolledBack),
        rec("test", 50, DeploymentStatus::InProgress),
    ];
    let changes: Vec<Change> = records
        .iter()
        .cloned()
        .map(|d| Change::DeploymentStarted(Box::new(d)))
        .collect();
    store.apply(run.id(), &changes).unwrap();

    assert_eq!(
        store.last_known_good("test").unwrap().unwrap().version,
        "v20"
    );
    assert_eq!(
        store.latest_deployment("test").unwrap().unwrap().version,
        "v50"
    );
    assert_eq!(store.last_known_good("staging").unwrap(), None);
    assert_eq!(store.latest_deployment("staging").unwrap(), None);
    let versions = |v: Vec<DeploymentRecord>| v.into_iter().map(|d| d.version).collect::<Vec<_>>();
    assert_eq!(
        versions(store.deployments(Some("test"), 3).unwrap()),
        ["v50", "v40", "v30"]
    );
    assert_eq!(
        versions(store.deployments(None, 10).unwrap()),
        ["v50", "v40", "v30", "v25", "v20", "v10"]
    );
    assert_eq!(
        versions(store.deployments(Some("production"), 10).unwrap()),
        ["v25"]
    );
    // What runs now: the newest not rolled back (in progress counts).
    assert_eq!(
        store.current_deployment("test").unwrap().unwrap().version,
        "v50"
    );
    assert_eq!(store.current_deployment("staging").unwrap(), None);
    store
        .apply(
            run.id(),
            &[Change::DeploymentRolledBack {
                deployment_id: records[5].deployment_id.clone(),
                reason: "bad".into(),
                level: ferry_core::RollbackLevel::Stage,
                at: ferry_core::Timestamp(60),
            }],
        )
        .unwrap();
    assert_eq!(
        store.current_deployment("test").unwrap().unwrap().version,
        "v30"
    );
}

#[test]
fn text_survives_exactly() {
    let (_d, store) = store();
    let (name, plan) = support::plan(support::TWO_ENVIRONMENTS);
    let mut new = support::new_run(&name, &plan, T0);
    new.commit.message = "emoji 🚀, NUL-free but\ttabs\r\nand CRLF, ' \" ; -- /* */".into();
    new.commit.author = "名前 <x@例え.jp>".into();
    let id = store.create_run(&new).unwrap();
    let view = store.load_run(id).unwrap();
    assert_eq!(view.commit, new.commit);
    assert_eq!(view.pipeline, "tiny");
}
