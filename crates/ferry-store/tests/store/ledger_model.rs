//! Freezes and incidents, which the `Ledger` trait carries (so the DynamoDB ledger keeps
//! them too): random sequences of freezing, lifting, opening and resolving incidents on
//! the SQLite store and `MemoryStore` side by side, checked after every step against a
//! small model — the same answers (NotFound included) from both stores and the model.

use ferry_core::window::Freeze;
use ferry_core::{Change, RunId, Timestamp};
use ferry_engine::ports::{Ledger, PortErrorKind};
use ferry_testkit::store::MemoryStore;
use proptest::prelude::*;

const ENVS: [&str; 2] = ["staging", "production"];

#[derive(Debug, Clone)]
enum Op {
    Freeze { env: usize, length: i64 },
    Unfreeze { env: usize },
    Open { env: usize },
    Resolve { env: usize },
    Wait(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 1i64..50).prop_map(|(env, length)| Op::Freeze { env, length }),
        (0..2usize).prop_map(|env| Op::Unfreeze { env }),
        (0..2usize).prop_map(|env| Op::Open { env }),
        (0..2usize).prop_map(|env| Op::Resolve { env }),
        (1i64..30).prop_map(Op::Wait),
    ]
}

/// A freeze as the model keeps it: `(environment, from, until, lifted_at)`.
type ModelFreeze = (String, i64, i64, Option<i64>);

fn key(f: &Freeze) -> ModelFreeze {
    (
        f.environment.clone(),
        f.from.0,
        f.until.0,
        f.lifted_at.map(|t| t.0),
    )
}

fn open_at(model: &[ModelFreeze], env: Option<&str>, at: i64) -> Vec<ModelFreeze> {
    model
        .iter()
        .filter(|(e, _, until, lifted)| {
            env.is_none_or(|x| x == e) && *until > at && lifted.is_none_or(|l| l > at)
        })
        .cloned()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn freezes_and_incidents_agree_with_the_model_on_both_stores(ops in prop::collection::vec(op(), 1..30)) {
        let (_dir, sqlite) = crate::support::store();
        let memory = MemoryStore::new();
        let stores: [&dyn Ledger; 2] = [&sqlite, &memory];
        let mut now = 1_000i64;
        let mut freezes: Vec<ModelFreeze> = Vec::new();
        let mut incidents: [Option<i64>; 2] = [None, None];
        for op in ops {
            now += 1;
            match op {
                Op::Wait(d) => now += d,
                Op::Freeze { env, length } => {
                    for s in stores {
                        let f = s.freeze(&Freeze {
                            id: 0,
                            environment: ENVS[env].into(),
                            from: Timestamp(now),
                            until: Timestamp(now + length),
                            reason: "r".into(),
                            by: "ada".into(),
                            lifted_at: None,
                            lifted_by: None,
                        }).unwrap();
                        prop_assert_eq!(f.lifted_at, None);
                    }
                    freezes.push((ENVS[env].into(), now, now + length, None));
                }
                Op::Unfreeze { env } => {
                    let want = open_at(&freezes, Some(ENVS[env]), now);
                    for s in stores {
                        match s.unfreeze(ENVS[env], "bob", Timestamp(now)) {
                            Ok(lifted) => {
                                prop_assert!(!want.is_empty());
                                let mut got: Vec<ModelFreeze> = lifted.iter().map(key).collect();
                                got.iter_mut().for_each(|g| g.3 = None);
                                prop_assert_eq!(&got, &want);
                            }
                            Err(e) => {
                                prop_assert!(want.is_empty(), "{}", e);
                                prop_assert_eq!(e.kind, PortErrorKind::NotFound);
                            }
                        }
                    }
                    for f in freezes.iter_mut() {
                        if f.0 == ENVS[env] && f.2 > now && f.3.is_none_or(|l| l > now) {
                            f.3 = Some(now);
                        }
                    }
                }
                Op::Open { env } => {
                    for s in stores {
                        s.record_rollback(RunId(-1), &[Change::IncidentOpened {
                            environment: ENVS[env].into(),
                            deployment_id: format!("{}#{now}", ENVS[env]),
                            reason: "failed".into(),
                            at: Timestamp(now),
                        }]).unwrap();
                    }
                    if incidents[env].is_none() {
                        incidents[env] = Some(now);
                    }
                }
                Op::Resolve { env } => {
                    for s in stores {
                        match s.resolve(ENVS[env], "ada", Timestamp(now)) {
                            Ok(i) => {
                                prop_assert_eq!(Some(i.opened_at.0), incidents[env]);
                                prop_assert_eq!(i.resolved_at, Some(Timestamp(now)));
                            }
                            Err(e) => {
                                prop_assert_eq!(incidents[env], None, "{}", e);
                                prop_assert_eq!(e.kind, PortErrorKind::NotFound);
                            }
                        }
                    }
                    incidents[env] = None;
                }
            }
            for s in stores {
                for (i, env) in ENVS.iter().enumerate() {
                    let got: Vec<ModelFreeze> = s.freezes(Some(env), Timestamp(now)).unwrap().iter().map(key).collect();
                    prop_assert_eq!(got, open_at(&freezes, Some(env), now));
                    prop_assert_eq!(s.hold(env).unwrap().map(|i| i.opened_at.0), incidents[i]);
                }
                let all = s.freezes(None, Timestamp(now)).unwrap();
                prop_assert_eq!(all.len(), open_at(&freezes, None, now).len());
            }
        }
    }
}
