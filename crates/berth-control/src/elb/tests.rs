//! Tests of the ELBv2 control plane against an in-memory store.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::elb::{
    Action, ActionKind, HealthCheck, ListenerRecord, TargetGroupRecord, TargetHealthRecord,
    TargetHealthState, TargetRecord, WeightedTargetGroup, ATTR_DEREGISTRATION_DELAY,
};
use berth_core::{Scope, Timestamp};
use berth_store::{EmbeddedStore, Op, Store, Txn};

use super::*;
use crate::ecs::encode;
use crate::keys;

pub(super) fn scope() -> Scope {
    Scope {
        region: "us-east-1".into(),
        account: "123456789012".into(),
    }
}

pub(super) fn elb() -> Elb {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
    Elb::new(store, scope())
}

const T0: Timestamp = Timestamp(1_000_000);

fn spec(ip: &str, port: Option<u16>) -> TargetSpec {
    TargetSpec {
        id: ip.into(),
        port,
        availability_zone: None,
    }
}

async fn put<T: serde::Serialize>(e: &Elb, key: String, v: &T) {
    e.store()
        .txn(Txn::new().then(Op::Put(key, encode(v))))
        .await
        .unwrap();
}

/// Writes a target group record directly (the Create API is tested apart).
async fn seed_tg(e: &Elb, name: &str, delay: Option<u32>) -> TargetGroupRecord {
    let id = arn::new_id(name.len() as u128 + 0x100);
    let mut attributes = BTreeMap::new();
    if let Some(d) = delay {
        attributes.insert(ATTR_DEREGISTRATION_DELAY.to_string(), d.to_string());
    }
    let tg = TargetGroupRecord {
        arn: arn::target_group(e.scope(), name, &id),
        name: name.into(),
        id,
        protocol: "HTTP".into(),
        protocol_version: "HTTP1".into(),
        port: 8080,
        vpc_id: None,
        target_type: "ip".into(),
        health_check: HealthCheck::default(),
        attributes,
        tags: BTreeMap::new(),
        created: T0,
    };
    put(e, keys::elb_tg(name), &tg).await;
    tg
}

/// Writes a listener whose default action forwards to `tg_arn`.
async fn seed_listener_forwarding(e: &Elb, tg_arn: &str) {
    let lb_id = arn::new_id(7);
    let id = arn::new_id(8);
    let l = ListenerRecord {
        arn: arn::listener(e.scope(), "web", &lb_id, &id),
        id: id.clone(),
        load_balancer_arn: arn::load_balancer(e.scope(), "web", &lb_id),
        lb_name: "web".into(),
        port: 18080,
        protocol: "HTTP".into(),
        certificates: vec![],
        ssl_policy: None,
        default_actions: vec![Action {
            order: None,
            kind: ActionKind::Forward {
                target_groups: vec![WeightedTargetGroup {
                    target_group_arn: tg_arn.into(),
                    weight: 1,
                }],
                forward_config: false,
                stickiness_seconds: None,
            },
        }],
        tags: BTreeMap::new(),
    };
    put(e, keys::elb_listener("web", &id), &l).await;
}

async fn stored_targets(e: &Elb, tg: &str) -> Vec<TargetRecord> {
    e.store()
        .list(&keys::elb_tg_targets(tg))
        .await
        .unwrap()
        .items
        .iter()
        .map(|kv| serde_json::from_slice(&kv.value).unwrap())
        .collect()
}

#[tokio::test]
async fn register_defaults_port_and_is_idempotent() {
    let e = elb();
    let tg = seed_tg(&e, "api", None).await;
    e.register_targets(&tg.arn, &[spec("10.213.1.2", None)], T0)
        .await
        .unwrap();
    let rev = e.store().revision().await.unwrap();
    // Registering it again (also through the explicit port) writes nothing.
    e.register_targets(
        &tg.arn,
        &[spec("10.213.1.2", Some(8080)), spec("10.213.1.2", None)],
        Timestamp(T0.0 + 5),
    )
    .await
    .unwrap();
    assert_eq!(e.store().revision().await.unwrap(), rev);
    let ts = stored_targets(&e, "api").await;
    assert_eq!(ts.len(), 1);
    assert_eq!((ts[0].id.as_str(), ts[0].port), ("10.213.1.2", 8080));
    assert_eq!(ts[0].registered, T0);
    assert_eq!(ts[0].target_group_arn, tg.arn);
    assert!(ts[0].drain_until.is_none());
}

#[tokio::test]
async fn targets_must_be_ipv4_inside_the_allowed_networks() {
    let e = elb();
    let tg = seed_tg(&e, "api", None).await;
    for bad in ["i-0123456789abcdef0", "10.214.0.5", "::1", "10.213.1"] {
        let err = e
            .register_targets(&tg.arn, &[spec(bad, None)], T0)
            .await
            .unwrap_err();
        match err {
            ElbError::InvalidTarget(m) => {
                assert!(m.contains(bad), "{m}");
                assert!(m.contains("10.213.0.0/16"), "{m}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let err = e
        .register_targets(&tg.arn, &[spec("10.213.0.9", Some(0))], T0)
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::Validation(_)), "{err:?}");
    let err = e.register_targets(&tg.arn, &[], T0).await.unwrap_err();
    assert!(matches!(err, ElbError::Validation(_)), "{err:?}");

    // More networks can be allowed.
    let e2 = e
        .clone()
        .with_target_networks(&["10.213.0.0/16", "127.0.0.0/8"])
        .unwrap();
    e2.register_targets(&tg.arn, &[spec("127.0.0.1", Some(9000))], T0)
        .await
        .unwrap();
    assert!(e.clone().with_target_networks(&["10.213.0.1/16"]).is_err());
}

#[tokio::test]
async fn unknown_or_foreign_target_group_is_not_found_and_malformed_is_invalid() {
    let e = elb();
    let tg = seed_tg(&e, "api", None).await;
    let gone = arn::target_group(e.scope(), "other", &tg.id);
    let err = e
        .register_targets(&gone, &[spec("10.213.0.2", None)], T0)
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::TargetGroupNotFound(_)), "{err:?}");
    // Same name, another id: a group that was deleted and made again.
    let stale = arn::target_group(e.scope(), "api", &arn::new_id(99));
    let err = e.target_group(&stale).await.unwrap_err();
    assert!(matches!(err, ElbError::TargetGroupNotFound(_)), "{err:?}");
    let foreign = tg.arn.replace("us-east-1", "eu-west-1");
    let err = e.target_group(&foreign).await.unwrap_err();
    assert!(matches!(err, ElbError::TargetGroupNotFound(_)), "{err:?}");
    let err = e.target_group("api").await.unwrap_err();
    match err {
        ElbError::Validation(m) => assert!(m.contains("TargetGroupArn"), "{m}"),
        other => panic!("{other:?}"),
    }
    let lb_arn = arn::load_balancer(e.scope(), "api", &tg.id);
    let err = e.target_group(&lb_arn).await.unwrap_err();
    assert!(matches!(err, ElbError::Validation(_)), "{err:?}");
    assert_eq!(e.target_group(&tg.arn).await.unwrap(), tg);
}

#[tokio::test]
async fn deregister_drains_then_expires_with_the_health_record() {
    let e = elb();
    let tg = seed_tg(&e, "api", Some(30)).await;
    e.register_targets(
        &tg.arn,
        &[spec("10.213.1.2", None), spec("10.213.1.3", Some(81))],
        T0,
    )
    .await
    .unwrap();
    put(
        &e,
        keys::elb_health("api", "10.213.1.2", 8080),
        &TargetHealthRecord {
            state: TargetHealthState::Healthy,
            reason: None,
            description: None,
            since: Timestamp(T0.0 + 1),
        },
    )
    .await;
    let t1 = Timestamp(T0.0 + 10_000);
    e.deregister_targets(&tg.arn, &[spec("10.213.1.2", None)], t1)
        .await
        .unwrap();
    let ts = stored_targets(&e, "api").await;
    let drained = ts.iter().find(|t| t.id == "10.213.1.2").unwrap();
    assert_eq!(drained.drain_until, Some(Timestamp(t1.0 + 30_000)));
    // Deregistering again keeps the first deadline.
    e.deregister_targets(
        &tg.arn,
        &[spec("10.213.1.2", None)],
        Timestamp(t1.0 + 5_000),
    )
    .await
    .unwrap();
    let ts = stored_targets(&e, "api").await;
    let drained = ts.iter().find(|t| t.id == "10.213.1.2").unwrap();
    assert_eq!(drained.drain_until, Some(Timestamp(t1.0 + 30_000)));

    assert_eq!(e.expire_drained(Timestamp(t1.0 + 29_999)).await.unwrap(), 0);
    assert_eq!(e.expire_drained(Timestamp(t1.0 + 30_000)).await.unwrap(), 1);
    let ts = stored_targets(&e, "api").await;
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].id, "10.213.1.3");
    assert!(e
        .store()
        .get(&keys::elb_health("api", "10.213.1.2", 8080))
        .await
        .unwrap()
        .is_none());
    assert_eq!(e.expire_drained(Timestamp(i64::MAX)).await.unwrap(), 0);
}

#[tokio::test]
async fn deregister_unknown_target_is_invalid_target() {
    let e = elb();
    let tg = seed_tg(&e, "api", None).await;
    e.register_targets(&tg.arn, &[spec("10.213.1.2", None)], T0)
        .await
        .unwrap();
    let err = e
        .deregister_targets(
            &tg.arn,
            &[spec("10.213.1.2", None), spec("10.213.1.2", Some(9))],
            T0,
        )
        .await
        .unwrap_err();
    match err {
        ElbError::InvalidTarget(m) => assert!(m.contains("10.213.1.2:9"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Nothing was changed by the refused request.
    assert!(stored_targets(&e, "api").await[0].drain_until.is_none());
}

#[tokio::test]
async fn zero_delay_deletes_at_once_and_reregistering_a_draining_target_revives_it() {
    let e = elb();
    let now = Timestamp(T0.0 + 50);
    let quick = seed_tg(&e, "quick", Some(0)).await;
    e.register_targets(&quick.arn, &[spec("10.213.1.2", None)], T0)
        .await
        .unwrap();
    e.deregister_targets(&quick.arn, &[spec("10.213.1.2", None)], now)
        .await
        .unwrap();
    assert!(stored_targets(&e, "quick").await.is_empty());

    let slow = seed_tg(&e, "slow", None).await;
    e.register_targets(&slow.arn, &[spec("10.213.1.2", None)], T0)
        .await
        .unwrap();
    e.deregister_targets(&slow.arn, &[spec("10.213.1.2", None)], now)
        .await
        .unwrap();
    assert_eq!(
        stored_targets(&e, "slow").await[0].drain_until,
        Some(Timestamp(now.0 + 300_000))
    );
    let later = Timestamp(now.0 + 1000);
    e.register_targets(&slow.arn, &[spec("10.213.1.2", None)], later)
        .await
        .unwrap();
    let t = &stored_targets(&e, "slow").await[0];
    assert_eq!((t.drain_until, t.registered), (None, later));
}

#[tokio::test]
async fn describe_target_health_follows_use_drain_and_checks() {
    let e = elb();
    let tg = seed_tg(&e, "api", None).await;
    e.register_targets(
        &tg.arn,
        &[spec("10.213.1.2", None), spec("10.213.1.3", None)],
        T0,
    )
    .await
    .unwrap();
    // No listener forwards to it yet: unused.
    assert!(!e.target_group_in_use(&tg.arn).await.unwrap());
    let all = e.describe_target_health(&tg.arn, None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all
        .iter()
        .all(|d| d.health.state == TargetHealthState::Unused
            && d.health.reason == Some("Target.NotInUse")));
    assert_eq!(all[0].health_check_port, "8080");

    seed_listener_forwarding(&e, &tg.arn).await;
    assert!(e.target_group_in_use(&tg.arn).await.unwrap());
    let all = e.describe_target_health(&tg.arn, None).await.unwrap();
    assert!(all
        .iter()
        .all(|d| d.health.state == TargetHealthState::Initial));

    put(
        &e,
        keys::elb_health("api", "10.213.1.2", 8080),
        &TargetHealthRecord {
            state: TargetHealthState::Healthy,
            reason: None,
            description: None,
            since: Timestamp(T0.0 + 1),
        },
    )
    .await;
    put(
        &e,
        keys::elb_health("api", "10.213.1.3", 8080),
        &TargetHealthRecord {
            state: TargetHealthState::Unhealthy,
            reason: Some("Target.ResponseCodeMismatch".into()),
            description: Some("Health checks failed with these codes: [500]".into()),
            since: Timestamp(T0.0 + 1),
        },
    )
    .await;
    e.deregister_targets(&tg.arn, &[spec("10.213.1.3", None)], T0)
        .await
        .unwrap();
    let all = e.describe_target_health(&tg.arn, None).await.unwrap();
    let states: Vec<_> = all
        .iter()
        .map(|d| (d.target.id.as_str(), d.health.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("10.213.1.2", TargetHealthState::Healthy),
            ("10.213.1.3", TargetHealthState::Draining)
        ]
    );

    // Named targets: a registered one, one without a port, unknown ones.
    let named = e
        .describe_target_health(
            &tg.arn,
            Some(&[
                spec("10.213.1.2", Some(8080)),
                spec("10.213.1.3", None),
                spec("10.213.9.9", None),
                spec("10.213.1.2", Some(81)),
            ]),
        )
        .await
        .unwrap();
    let got: Vec<_> = named
        .iter()
        .map(|d| {
            (
                d.target.id.as_str(),
                d.target.port,
                d.health.state,
                d.health.reason,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("10.213.1.2", 8080, TargetHealthState::Healthy, None),
            (
                "10.213.1.3",
                8080,
                TargetHealthState::Draining,
                Some("Target.DeregistrationInProgress")
            ),
            (
                "10.213.9.9",
                8080,
                TargetHealthState::Unused,
                Some("Target.NotRegistered")
            ),
            (
                "10.213.1.2",
                81,
                TargetHealthState::Unused,
                Some("Target.NotRegistered")
            ),
        ]
    );
    let err = e
        .describe_target_health(&tg.arn, Some(&[spec("i-abc", None)]))
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::InvalidTarget(_)), "{err:?}");
}

#[tokio::test]
async fn too_many_targets() {
    let e = elb();
    let tg = seed_tg(&e, "big", None).await;
    let many: Vec<TargetSpec> = (0..=targets::MAX_TARGETS_PER_GROUP)
        .map(|i| spec(&format!("10.213.{}.{}", i / 250, i % 250 + 2), None))
        .collect();
    let err = e.register_targets(&tg.arn, &many, T0).await.unwrap_err();
    assert!(matches!(err, ElbError::TooManyTargets(_)), "{err:?}");
    assert!(stored_targets(&e, "big").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_all_land() {
    let e = elb();
    let tg = seed_tg(&e, "api", None).await;
    let mut handles = Vec::new();
    for i in 0..16u8 {
        let e = e.clone();
        let arn = tg.arn.clone();
        handles.push(tokio::spawn(async move {
            e.register_targets(&arn, &[spec(&format!("10.213.3.{}", i + 2), None)], T0)
                .await
                .unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(stored_targets(&e, "api").await.len(), 16);
}

#[tokio::test]
async fn records_reads_everything_in_one_listing() {
    let e = elb();
    let tg = seed_tg(&e, "api", None).await;
    seed_listener_forwarding(&e, &tg.arn).await;
    e.register_targets(&tg.arn, &[spec("10.213.1.2", None)], T0)
        .await
        .unwrap();
    let h = TargetHealthRecord {
        state: TargetHealthState::Healthy,
        reason: None,
        description: None,
        since: T0,
    };
    put(&e, keys::elb_health("api", "10.213.1.2", 8080), &h).await;
    // A health record of a group that is gone is left out.
    put(&e, keys::elb_health("gone", "10.213.1.2", 8080), &h).await;
    let (r, rev) = e.records().await.unwrap();
    assert_eq!(rev, e.store().revision().await.unwrap());
    assert_eq!(r.target_groups, vec![tg.clone()]);
    assert_eq!(r.listeners.len(), 1);
    assert_eq!(r.targets.len(), 1);
    assert_eq!(r.health.len(), 1);
    assert_eq!(
        r.health
            .get(&(tg.arn.clone(), "10.213.1.2:8080".to_string())),
        Some(&h)
    );
}
