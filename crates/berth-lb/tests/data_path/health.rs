//! Health checks: the state machine through real checks, reasons, the
//! sink hearing transitions only, stored health after a restart.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_core::elb::TargetHealthState::{Healthy, Unhealthy};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_transitions_and_reasons() {
    let b = Backend::start("b").await;
    let port = free_port();
    let p_b = b.addr.port();
    let cfg = config(
        vec![listener(port, vec![], forward(&[("web", 1)]))],
        vec![tg("web", fast_hc(), vec![b.target(None)])],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;
    let c = client();

    // initial → healthy after 2 successes.
    wait_for("healthy", || sink.states(p_b) == [Healthy]).await;
    let e = sink.events.lock().unwrap()[0].clone();
    assert_eq!(
        (e.tg, e.ip, e.port),
        (tg_arn("web"), "127.0.0.1".into(), p_b)
    );
    assert_eq!((e.record.reason, e.record.description), (None, None));
    assert_eq!(get(&c, port, "/").await.status.as_u16(), 200);

    // Transitions only: more checks, no more events.
    let seen = b.checks.load(Ordering::SeqCst);
    wait_for("5 more checks", || {
        b.checks.load(Ordering::SeqCst) >= seen + 5
    })
    .await;
    assert_eq!(sink.states(p_b), [Healthy]);

    // healthy → unhealthy on a wrong code.
    b.health.store(500, Ordering::SeqCst);
    wait_for("unhealthy", || sink.states(p_b) == [Healthy, Unhealthy]).await;
    let r = sink.of(p_b)[1].clone();
    assert_eq!(r.reason.as_deref(), Some("Target.ResponseCodeMismatch"));
    assert_eq!(
        r.description.as_deref(),
        Some("Health checks failed with these codes: [500]")
    );
    assert_eq!(get(&c, port, "/").await.status.as_u16(), 503);

    // unhealthy → healthy.
    b.health.store(200, Ordering::SeqCst);
    wait_for("healthy again", || {
        sink.states(p_b) == [Healthy, Unhealthy, Healthy]
    })
    .await;
    assert_eq!(get(&c, port, "/").await.status.as_u16(), 200);

    // A check slower than its timeout (new settings: the checker restarts
    // from the state it had).
    let mut hc = fast_hc();
    hc.timeout_ms = 100;
    apply(
        &p,
        config(
            vec![listener(port, vec![], forward(&[("web", 1)]))],
            vec![tg("web", hc, vec![b.target(None)])],
        ),
    )
    .await;
    b.health_delay_ms.store(1_000, Ordering::SeqCst);
    wait_for("timed out", || sink.states(p_b).len() == 4).await;
    let r = sink.of(p_b)[3].clone();
    assert_eq!(r.state, Unhealthy);
    assert_eq!(r.reason.as_deref(), Some("Target.Timeout"));
    assert_eq!(r.description.as_deref(), Some("Request timed out"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_check_is_failed_health_checks() {
    let port = free_port();
    let refused = closed_port();
    let cfg = config(
        vec![listener(port, vec![], forward(&[("web", 1)]))],
        vec![tg("web", fast_hc(), vec![addr_target(refused, None)])],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;
    wait_for("unhealthy", || sink.states(refused.port()) == [Unhealthy]).await;
    let r = sink.of(refused.port())[0].clone();
    assert_eq!(r.reason.as_deref(), Some("Target.FailedHealthChecks"));
    assert!(r.description.is_some());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_health_is_where_targets_start() {
    let (up, down) = (Backend::start("up").await, Backend::start("down").await);
    let (port, port2) = (free_port(), free_port());
    let mut hc = fast_hc();
    hc.healthy_threshold = 3;
    let cfg = config(
        vec![
            listener(port, vec![], forward(&[("up", 1)])),
            listener(port2, vec![], forward(&[("down", 1)])),
        ],
        vec![
            // Healthy before a restart: serves at once, no event needed.
            tg("up", quiet_hc(), vec![up.target(Some(Healthy))]),
            // Unhealthy before: no requests until it passes its checks.
            tg("down", hc, vec![down.target(Some(Unhealthy))]),
        ],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    down.health.store(500, Ordering::SeqCst);
    apply(&p, cfg).await;
    let c = client();
    assert_eq!(get(&c, port, "/").await.body, "up");
    // Still failing its checks: no requests (and no event: no transition).
    let checks = down.checks.load(Ordering::SeqCst);
    wait_for("3 checks", || {
        down.checks.load(Ordering::SeqCst) >= checks + 3
    })
    .await;
    assert_eq!(get(&c, port2, "/").await.status.as_u16(), 503);
    assert!(sink.states(down.addr.port()).is_empty());
    down.health.store(200, Ordering::SeqCst);
    wait_for("recovered", || sink.states(down.addr.port()) == [Healthy]).await;
    assert_eq!(get(&c, port2, "/").await.body, "down");
    assert!(sink.states(up.addr.port()).is_empty());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matcher_ranges_and_a_separate_health_port() {
    let traffic = Backend::start("traffic").await;
    let checked = Backend::start("checked").await;
    // The traffic port itself would fail its checks...
    traffic.health.store(500, Ordering::SeqCst);
    // ...but the checks go to another port, which answers 204.
    checked.health.store(204, Ordering::SeqCst);
    let port = free_port();
    let mut hc = fast_hc();
    hc.port = Some(checked.addr.port());
    hc.matcher = "200-299".into();
    let cfg = config(
        vec![listener(port, vec![], forward(&[("web", 1)]))],
        vec![tg("web", hc, vec![traffic.target(None)])],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;
    wait_for("healthy", || sink.states(traffic.addr.port()) == [Healthy]).await;
    assert_eq!(traffic.checks.load(Ordering::SeqCst), 0);
    assert_eq!(get(&client(), port, "/").await.body, "traffic");
    p.shutdown().await;
}
