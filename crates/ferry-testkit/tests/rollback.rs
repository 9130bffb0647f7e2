//! scratch
#![allow(clippy::unwrap_used)]
use ferry_engine::ports::Store;
use ferry_testkit::pipelines::{SHOP, shop};
use ferry_testkit::{Outcome, Sim};
use std::time::Duration;

#[test]
fn explore() {
    let sim = Sim::new(SHOP);
    sim.approve_after("production", Duration::from_secs(1));
    let a = sim.run("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    println!("{:?}", a.status);
    sim.executor.script_for_commit(
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        shop::E2E,
        Outcome::exit(1),
    );
    sim.deployer("staging")
        .fail_rollback_permanently(Some("nope"));
    let b = sim.run("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    println!("{:?} {:?}", b.status, b.reason);
    for r in sim.store.rollbacks(10).unwrap() {
        println!("{r:#?}");
    }
    for e in sim.store.all_events() {
        if e.event.kind.as_str().starts_with("rollback")
            || e.event.kind.as_str().starts_with("incident")
        {
            println!("{}", e.event.message);
        }
    }
    for e in sim.timeline.entries() {
        println!(
            "{:?} {} {} {:?}",
            e.kind,
            e.environment,
            &e.version[..4],
            e.result
        );
    }
    println!("{:?}", sim.store.hold("staging"));
}
