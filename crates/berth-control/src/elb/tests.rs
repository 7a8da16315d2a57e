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
            registered: None,
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
            registered: None,
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
            registered: None,
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
        registered: None,
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

// ---- configuration operations ----------------------------------------------

use crate::ids::SequentialIds;

fn lb_spec(name: &str) -> CreateLoadBalancerSpec {
    CreateLoadBalancerSpec {
        name: name.into(),
        subnets: vec!["subnet-1".into(), "subnet-2".into()],
        ..Default::default()
    }
}

fn tg_spec(name: &str) -> CreateTargetGroupSpec {
    CreateTargetGroupSpec {
        name: name.into(),
        protocol: Some("HTTP".into()),
        port: Some(8080),
        vpc_id: Some("vpc-1".into()),
        ..Default::default()
    }
}

fn forward(tg_arn: &str) -> ActionSpec {
    ActionSpec {
        action_type: Some("forward".into()),
        target_group_arn: Some(tg_arn.into()),
        ..Default::default()
    }
}

fn http_listener(lb_arn: &str, port: i64, tg_arn: &str) -> CreateListenerSpec {
    CreateListenerSpec {
        load_balancer_arn: lb_arn.into(),
        protocol: Some("HTTP".into()),
        port: Some(port),
        default_actions: vec![forward(tg_arn)],
        ..Default::default()
    }
}

fn path_rule(listener_arn: &str, priority: i64, path: &str, tg_arn: &str) -> CreateRuleSpec {
    CreateRuleSpec {
        listener_arn: listener_arn.into(),
        conditions: vec![ConditionSpec {
            field: Some("path-pattern".into()),
            values: Some(vec![path.into()]),
            ..Default::default()
        }],
        priority: Some(priority),
        actions: vec![forward(tg_arn)],
        ..Default::default()
    }
}

#[tokio::test]
async fn load_balancers_are_idempotent_and_names_are_unique() {
    let e = elb();
    let ids = SequentialIds::default();
    let lb = e
        .create_load_balancer(lb_spec("web"), &ids, T0)
        .await
        .unwrap();
    assert_eq!(lb.id, "0000000000000001");
    assert_eq!(
        lb.arn,
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0000000000000001"
    );
    assert_eq!(lb.dns_name, "web-0000000000000001.us-east-1.elb.localhost");
    assert_eq!(lb.scheme, "internet-facing");
    let again = e
        .create_load_balancer(lb_spec("web"), &ids, T0)
        .await
        .unwrap();
    assert_eq!(again, lb);
    let mut other = lb_spec("web");
    other.scheme = Some("internal".into());
    let err = e.create_load_balancer(other, &ids, T0).await.unwrap_err();
    assert!(
        matches!(err, ElbError::DuplicateLoadBalancerName(_)),
        "{err:?}"
    );

    let mut nlb = lb_spec("net");
    nlb.lb_type = Some("network".into());
    match e.create_load_balancer(nlb, &ids, T0).await.unwrap_err() {
        ElbError::Validation(m) => assert!(m.contains("application load balancers"), "{m}"),
        other => panic!("{other:?}"),
    }
    for bad in ["internal-x", "-x", "a_b", &"a".repeat(33)] {
        assert!(
            e.create_load_balancer(lb_spec(bad), &ids, T0)
                .await
                .is_err(),
            "{bad}"
        );
    }
    let zones = load_balancers::availability_zones(&lb, "us-east-1");
    assert_eq!(zones[1].zone_name, "us-east-1b");
    assert_eq!(zones[1].subnet_id.as_deref(), Some("subnet-2"));
}

#[tokio::test]
async fn describe_load_balancers_pages_and_reports_missing_names() {
    let e = elb();
    let ids = SequentialIds::default();
    for n in ["c", "a", "b", "d", "e"] {
        e.create_load_balancer(lb_spec(n), &ids, T0).await.unwrap();
    }
    let mut marker: Option<String> = None;
    let mut names = Vec::new();
    loop {
        let (page, next) = e
            .describe_load_balancers(&[], &[], marker.as_deref(), Some(2))
            .await
            .unwrap();
        assert!(page.len() <= 2);
        names.extend(page.into_iter().map(|l| l.name));
        match next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    let err = e
        .describe_load_balancers(&[], &["a".into(), "zz".into()], None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::LoadBalancerNotFound(_)), "{err:?}");
    assert!(e
        .describe_load_balancers(&[], &[], None, Some(401))
        .await
        .is_err());
    assert!(e
        .describe_load_balancers(&[], &[], Some("garbage!"), None)
        .await
        .is_err());
}

#[tokio::test]
async fn ports_are_claimed_once_per_machine() {
    let e = elb().with_reserved_port(7480, "the Berth API");
    let ids = SequentialIds::default();
    let a = e
        .create_load_balancer(lb_spec("a"), &ids, T0)
        .await
        .unwrap();
    let b = e
        .create_load_balancer(lb_spec("b"), &ids, T0)
        .await
        .unwrap();
    let tg = e
        .create_target_group(tg_spec("tg"), &ids, T0)
        .await
        .unwrap();
    let tg2 = e
        .create_target_group(tg_spec("tg2"), &ids, T0)
        .await
        .unwrap();
    let l = e
        .create_listener(http_listener(&a.arn, 8000, &tg.arn), &ids)
        .await
        .unwrap();
    // The same listener again is the same listener.
    let again = e
        .create_listener(http_listener(&a.arn, 8000, &tg.arn), &ids)
        .await
        .unwrap();
    assert_eq!(again, l);
    let claim = e.store().get(&keys::elb_port(8000)).await.unwrap().unwrap();
    assert_eq!(claim.value, l.arn.as_bytes());

    // Same LB, same port, other settings: DuplicateListener.
    let mut other = http_listener(&a.arn, 8000, &tg.arn);
    other.default_actions = vec![ActionSpec {
        action_type: Some("fixed-response".into()),
        fixed_response: Some(spec::FixedResponseSpec {
            status_code: Some("404".into()),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let err = e.create_listener(other, &ids).await.unwrap_err();
    assert!(matches!(err, ElbError::DuplicateListener(_)), "{err:?}");

    // Another LB on the same machine port: refused, naming the holder.
    let err = e
        .create_listener(http_listener(&b.arn, 8000, &tg2.arn), &ids)
        .await
        .unwrap_err();
    match err {
        ElbError::InvalidConfigurationRequest(m) => {
            assert!(
                m.contains("8000") && m.contains("'a'") && m.contains("8001"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    // The API's own port.
    let err = e
        .create_listener(http_listener(&b.arn, 7480, &tg2.arn), &ids)
        .await
        .unwrap_err();
    match err {
        ElbError::InvalidConfigurationRequest(m) => assert!(m.contains("Berth API"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A target group serves one load balancer.
    let err = e
        .create_listener(http_listener(&b.arn, 8001, &tg.arn), &ids)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ElbError::TargetGroupAssociationLimit(_)),
        "{err:?}"
    );
    let lb_b = e
        .create_listener(http_listener(&b.arn, 8001, &tg2.arn), &ids)
        .await
        .unwrap();

    // Moving a listener moves its claim; the old port is free again.
    let moved = e
        .modify_listener(ModifyListenerSpec {
            listener_arn: l.arn.clone(),
            port: Some(8002),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(moved.port, 8002);
    assert!(e
        .store()
        .get(&keys::elb_port(8000))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        e.store()
            .get(&keys::elb_port(8002))
            .await
            .unwrap()
            .unwrap()
            .value,
        l.arn.as_bytes()
    );
    let err = e
        .modify_listener(ModifyListenerSpec {
            listener_arn: l.arn.clone(),
            port: Some(8001),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ElbError::InvalidConfigurationRequest(_)),
        "{err:?}"
    );
    e.create_listener(http_listener(&b.arn, 8000, &tg2.arn), &ids)
        .await
        .unwrap();

    // Protocols other than HTTP(S) are not for application load balancers.
    let mut tcp = http_listener(&a.arn, 9000, &tg.arn);
    tcp.protocol = Some("TCP".into());
    let err = e.create_listener(tcp, &ids).await.unwrap_err();
    assert!(matches!(err, ElbError::UnsupportedProtocol(_)), "{err:?}");

    // Deleting a listener frees its port.
    e.delete_listener(&lb_b.arn).await.unwrap();
    assert!(e
        .store()
        .get(&keys::elb_port(8001))
        .await
        .unwrap()
        .is_none());
    let err = e.delete_listener(&lb_b.arn).await.unwrap_err();
    assert!(matches!(err, ElbError::ListenerNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn https_listeners_need_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let e = elb().with_certs_dir(dir.path());
    let ids = SequentialIds::default();
    let lb = e
        .create_load_balancer(lb_spec("web"), &ids, T0)
        .await
        .unwrap();
    let tg = e
        .create_target_group(tg_spec("tg"), &ids, T0)
        .await
        .unwrap();
    let cert = "arn:aws:acm:us-east-1:123456789012:certificate/site";
    let mut spec = http_listener(&lb.arn, 8443, &tg.arn);
    spec.protocol = Some("HTTPS".into());
    let err = e.create_listener(spec.clone(), &ids).await.unwrap_err();
    assert!(matches!(err, ElbError::Validation(_)), "{err:?}");
    spec.certificates = vec![CertificateSpec {
        certificate_arn: Some(cert.into()),
        is_default: None,
    }];
    match e.create_listener(spec.clone(), &ids).await.unwrap_err() {
        ElbError::CertificateNotFound(m) => {
            assert!(m.contains("site.crt") && m.contains("site.key"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.path().join("site.crt"), "x").unwrap();
    std::fs::write(dir.path().join("site.key"), "x").unwrap();
    let l = e.create_listener(spec, &ids).await.unwrap();
    assert_eq!(l.certificates, vec![cert.to_string()]);
    assert_eq!(l.ssl_policy.as_deref(), Some(listeners::DEFAULT_SSL_POLICY));
    // To HTTP: certificates and policy go.
    let l = e
        .modify_listener(ModifyListenerSpec {
            listener_arn: l.arn.clone(),
            protocol: Some("HTTP".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(l.certificates.is_empty() && l.ssl_policy.is_none());
    // Back to HTTPS without certificates: refused.
    let err = e
        .modify_listener(ModifyListenerSpec {
            listener_arn: l.arn.clone(),
            protocol: Some("HTTPS".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::Validation(_)), "{err:?}");
}

#[tokio::test]
async fn rules_priorities_and_the_default_rule() {
    let e = elb();
    let ids = SequentialIds::default();
    let lb = e
        .create_load_balancer(lb_spec("web"), &ids, T0)
        .await
        .unwrap();
    let tg = e
        .create_target_group(tg_spec("tg"), &ids, T0)
        .await
        .unwrap();
    let l = e
        .create_listener(http_listener(&lb.arn, 8000, &tg.arn), &ids)
        .await
        .unwrap();
    let r10 = e
        .create_rule(path_rule(&l.arn, 10, "/a/*", &tg.arn), &ids)
        .await
        .unwrap();
    let r20 = e
        .create_rule(path_rule(&l.arn, 20, "/b/*", &tg.arn), &ids)
        .await
        .unwrap();
    let err = e
        .create_rule(path_rule(&l.arn, 10, "/c/*", &tg.arn), &ids)
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::PriorityInUse(_)), "{err:?}");
    for bad in [0, 50_001] {
        let err = e
            .create_rule(path_rule(&l.arn, bad, "/c/*", &tg.arn), &ids)
            .await
            .unwrap_err();
        assert!(matches!(err, ElbError::Validation(_)), "{err:?}");
    }

    let (rules, next) = e
        .describe_rules(Some(&l.arn), &[], None, None)
        .await
        .unwrap();
    assert!(next.is_none());
    let prios: Vec<Option<u32>> = rules.iter().map(|r| r.priority).collect();
    assert_eq!(prios, vec![Some(10), Some(20), None]);
    let default = rules.last().unwrap();
    assert!(default.is_default && default.conditions.is_empty());
    assert_eq!(default.arn, arn::default_rule_of(&l.arn));
    // Pages of one.
    let (p1, m1) = e
        .describe_rules(Some(&l.arn), &[], None, Some(1))
        .await
        .unwrap();
    let (p2, m2) = e
        .describe_rules(Some(&l.arn), &[], m1.as_deref(), Some(1))
        .await
        .unwrap();
    let (p3, m3) = e
        .describe_rules(Some(&l.arn), &[], m2.as_deref(), Some(1))
        .await
        .unwrap();
    assert_eq!(
        [&p1[0].arn, &p2[0].arn, &p3[0].arn],
        [&r10.arn, &r20.arn, &default.arn]
    );
    assert!(m3.is_none());

    // Swapping priorities is atomic; a collision changes nothing.
    let swapped = e
        .set_rule_priorities(&[
            (Some(r10.arn.clone()), Some(20)),
            (Some(r20.arn.clone()), Some(10)),
        ])
        .await
        .unwrap();
    assert_eq!(swapped.len(), 2);
    let err = e
        .set_rule_priorities(&[(Some(r10.arn.clone()), Some(10))])
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::PriorityInUse(_)), "{err:?}");
    let (rules, _) = e
        .describe_rules(None, std::slice::from_ref(&r10.arn), None, None)
        .await
        .unwrap();
    assert_eq!(rules[0].priority, Some(20));
    let err = e
        .set_rule_priorities(&[(Some(default.arn.clone()), Some(5))])
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::OperationNotPermitted(_)), "{err:?}");

    // The default rule: its actions are the listener's; it cannot go.
    let fixed = ActionSpec {
        action_type: Some("fixed-response".into()),
        fixed_response: Some(spec::FixedResponseSpec {
            status_code: Some("404".into()),
            content_type: Some("text/plain".into()),
            message_body: Some("nothing here".into()),
        }),
        ..Default::default()
    };
    let v = e
        .modify_rule(ModifyRuleSpec {
            rule_arn: default.arn.clone(),
            actions: Some(vec![fixed.clone()]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(v.is_default);
    let (ls, _) = e
        .describe_listeners(None, std::slice::from_ref(&l.arn), None, None)
        .await
        .unwrap();
    assert!(matches!(
        ls[0].default_actions[0].kind,
        berth_core::elb::ActionKind::FixedResponse {
            status_code: 404,
            ..
        }
    ));
    let err = e.delete_rule(&default.arn).await.unwrap_err();
    assert!(matches!(err, ElbError::OperationNotPermitted(_)), "{err:?}");
    let err = e
        .modify_rule(ModifyRuleSpec {
            rule_arn: default.arn.clone(),
            conditions: Some(vec![ConditionSpec {
                field: Some("path-pattern".into()),
                values: Some(vec!["/x".into()]),
                ..Default::default()
            }]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::OperationNotPermitted(_)), "{err:?}");

    // ModifyRule of an ordinary rule.
    let v = e
        .modify_rule(ModifyRuleSpec {
            rule_arn: r20.arn.clone(),
            actions: Some(vec![fixed]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(v.priority, Some(10));
    e.delete_rule(&r20.arn).await.unwrap();
    let err = e.delete_rule(&r20.arn).await.unwrap_err();
    assert!(matches!(err, ElbError::RuleNotFound(_)), "{err:?}");
    let err = e
        .describe_rules(None, std::slice::from_ref(&r20.arn), None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::RuleNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn target_groups_in_use_cannot_be_deleted_and_lb_delete_cascades() {
    let e = elb();
    let ids = SequentialIds::default();
    let lb = e
        .create_load_balancer(lb_spec("web"), &ids, T0)
        .await
        .unwrap();
    let tg = e
        .create_target_group(tg_spec("tg"), &ids, T0)
        .await
        .unwrap();
    let tg2 = e
        .create_target_group(tg_spec("tg2"), &ids, T0)
        .await
        .unwrap();
    let l = e
        .create_listener(http_listener(&lb.arn, 8000, &tg.arn), &ids)
        .await
        .unwrap();
    e.create_rule(path_rule(&l.arn, 1, "/x", &tg2.arn), &ids)
        .await
        .unwrap();
    let (views, _) = e
        .describe_target_groups(Some(&lb.arn), &[], &[], None, None)
        .await
        .unwrap();
    assert_eq!(views.len(), 2);
    assert!(views
        .iter()
        .all(|v| v.load_balancer_arns == vec![lb.arn.clone()]));
    for arn in [&tg.arn, &tg2.arn] {
        let err = e.delete_target_group(arn).await.unwrap_err();
        assert!(matches!(err, ElbError::ResourceInUse(_)), "{err:?}");
    }

    // Deletion protection holds the load balancer.
    e.modify_load_balancer_attributes(
        &lb.arn,
        &[("deletion_protection.enabled".into(), "true".into())],
    )
    .await
    .unwrap();
    let err = e.delete_load_balancer(&lb.arn).await.unwrap_err();
    assert!(matches!(err, ElbError::OperationNotPermitted(_)), "{err:?}");
    e.modify_load_balancer_attributes(
        &lb.arn,
        &[("deletion_protection.enabled".into(), "false".into())],
    )
    .await
    .unwrap();
    e.delete_load_balancer(&lb.arn).await.unwrap();
    // Everything of the load balancer went with it.
    for prefix in [
        keys::ELB_LBS,
        keys::ELB_LISTENERS,
        keys::ELB_RULES,
        keys::ELB_PORTS,
    ] {
        assert!(
            e.store().list(prefix).await.unwrap().items.is_empty(),
            "{prefix}"
        );
    }
    // Deleting it again succeeds; a malformed ARN does not.
    e.delete_load_balancer(&lb.arn).await.unwrap();
    assert!(matches!(
        e.delete_load_balancer("web").await.unwrap_err(),
        ElbError::Validation(_)
    ));
    // Now the groups are free; their targets go with them.
    e.register_targets(&tg.arn, &[spec("10.213.1.2", None)], T0)
        .await
        .unwrap();
    e.delete_target_group(&tg.arn).await.unwrap();
    assert!(stored_targets(&e, "tg").await.is_empty());
    e.delete_target_group(&tg.arn).await.unwrap();
    let err = e.target_group(&tg.arn).await.unwrap_err();
    assert!(matches!(err, ElbError::TargetGroupNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn target_group_settings_and_duplicates() {
    let e = elb();
    let ids = SequentialIds::default();
    let tg = e
        .create_target_group(tg_spec("tg"), &ids, T0)
        .await
        .unwrap();
    assert_eq!(tg.target_type, "ip");
    assert_eq!(tg.health_check, berth_core::elb::HealthCheck::default());
    assert_eq!(
        e.create_target_group(tg_spec("tg"), &ids, T0)
            .await
            .unwrap(),
        tg
    );
    let mut other = tg_spec("tg");
    other.port = Some(9090);
    let err = e.create_target_group(other, &ids, T0).await.unwrap_err();
    assert!(
        matches!(err, ElbError::DuplicateTargetGroupName(_)),
        "{err:?}"
    );
    let mut inst = tg_spec("inst");
    inst.target_type = Some("instance".into());
    match e.create_target_group(inst, &ids, T0).await.unwrap_err() {
        ElbError::Validation(m) => assert!(m.contains("register by IP"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut grpc = tg_spec("grpc");
    grpc.protocol_version = Some("GRPC".into());
    assert!(e.create_target_group(grpc, &ids, T0).await.is_err());
    let v = e
        .modify_target_group(
            &tg.arn,
            &HealthCheckSpec {
                path: Some("/healthz".into()),
                interval_seconds: Some(5),
                timeout_seconds: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v.record.health_check.path, "/healthz");
    let attrs = e
        .modify_target_group_attributes(
            &tg.arn,
            &[(
                berth_core::elb::ATTR_DEREGISTRATION_DELAY.into(),
                "0".into(),
            )],
        )
        .await
        .unwrap();
    assert!(attrs.contains(&(
        berth_core::elb::ATTR_DEREGISTRATION_DELAY.to_string(),
        "0".to_string()
    )));
    assert_eq!(
        e.target_group(&tg.arn)
            .await
            .unwrap()
            .deregistration_delay_secs(),
        0
    );
    let err = e
        .describe_target_groups(None, &[], &["nope".into()], None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::TargetGroupNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn tags_on_every_kind() {
    let e = elb();
    let ids = SequentialIds::default();
    let mut spec_lb = lb_spec("web");
    spec_lb.tags = vec![TagSpec {
        key: "team".into(),
        value: Some("blue".into()),
    }];
    let lb = e.create_load_balancer(spec_lb, &ids, T0).await.unwrap();
    let tg = e
        .create_target_group(tg_spec("tg"), &ids, T0)
        .await
        .unwrap();
    let l = e
        .create_listener(http_listener(&lb.arn, 8000, &tg.arn), &ids)
        .await
        .unwrap();
    let r = e
        .create_rule(path_rule(&l.arn, 1, "/x", &tg.arn), &ids)
        .await
        .unwrap();
    let all = vec![lb.arn.clone(), tg.arn.clone(), l.arn.clone(), r.arn.clone()];
    e.add_tags(
        &all,
        &[TagSpec {
            key: "env".into(),
            value: Some("prod".into()),
        }],
    )
    .await
    .unwrap();
    let described = e.describe_tags(&all).await.unwrap();
    assert_eq!(described.len(), 4);
    assert_eq!(described[0].1.len(), 2);
    assert!(described
        .iter()
        .all(|(_, t)| t.get("env").map(String::as_str) == Some("prod")));
    e.remove_tags(&all, &["env".into(), "team".into()])
        .await
        .unwrap();
    assert!(e
        .describe_tags(&all)
        .await
        .unwrap()
        .iter()
        .all(|(_, t)| t.is_empty()));
    // Too many tags on one resource: nothing changes anywhere.
    let many: Vec<TagSpec> = (0..50)
        .map(|i| TagSpec {
            key: format!("k{i}"),
            value: None,
        })
        .collect();
    e.add_tags(std::slice::from_ref(&tg.arn), &many)
        .await
        .unwrap();
    let err = e
        .add_tags(
            &[lb.arn.clone(), tg.arn.clone()],
            &[TagSpec {
                key: "one-more".into(),
                value: None,
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ElbError::TooManyTags(_)), "{err:?}");
    assert!(e
        .describe_tags(std::slice::from_ref(&lb.arn))
        .await
        .unwrap()[0]
        .1
        .is_empty());
    let gone = arn::load_balancer(e.scope(), "gone", &lb.id);
    let err = e.describe_tags(&[gone]).await.unwrap_err();
    assert!(matches!(err, ElbError::LoadBalancerNotFound(_)), "{err:?}");
    let err = e.describe_tags(&vec!["x".repeat(3); 21]).await.unwrap_err();
    assert!(matches!(err, ElbError::Validation(_)), "{err:?}");
    // The default rule has no tags.
    let d = arn::default_rule_of(&l.arn);
    assert!(e.describe_tags(std::slice::from_ref(&d)).await.unwrap()[0]
        .1
        .is_empty());
    assert!(e
        .add_tags(
            &[d],
            &[TagSpec {
                key: "a".into(),
                value: None
            }]
        )
        .await
        .is_err());
}
