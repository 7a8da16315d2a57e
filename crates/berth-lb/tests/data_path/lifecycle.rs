//! Applying new configurations while requests are in flight: draining,
//! removal, re-apply, listeners coming and going, bind failures, shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_core::elb::TargetHealthState::Healthy;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_targets_finish_in_flight_requests_and_get_no_new_ones() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = free_port();
    let cfg = |a_draining: bool, a_present: bool| {
        let mut ta = a.target(Some(Healthy));
        ta.draining = a_draining;
        let mut targets = vec![b.target(Some(Healthy))];
        if a_present {
            targets.insert(0, ta);
        }
        config(
            vec![listener(port, vec![], forward(&[("web", 1)]))],
            vec![tg("web", quiet_hc(), targets)],
        )
    };
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg(false, true)).await;
    let c = client();

    // Round robin starts with the first target: a held request on `a`.
    let held = tokio::spawn({
        let c = c.clone();
        async move { get(&c, port, "/hold").await }
    });
    wait_for("a held request on a", || {
        a.holding.load(Ordering::SeqCst) == 1
    })
    .await;

    // Deregistered: new requests all go to b.
    apply(&p, cfg(true, true)).await;
    for _ in 0..6 {
        assert_eq!(get(&c, port, "/").await.body, "b");
    }
    // Removed after the deregistration delay: the request still finishes.
    apply(&p, cfg(true, false)).await;
    for _ in 0..2 {
        assert_eq!(get(&c, port, "/").await.body, "b");
    }
    a.release(1);
    let r = held.await.unwrap();
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "a"));
    assert_eq!(a.hits(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_keeps_connections_health_and_checkers() {
    let b = Backend::start("b").await;
    let port = free_port();
    let base = || {
        config(
            vec![listener(port, vec![], forward(&[("web", 1)]))],
            vec![tg("web", fast_hc(), vec![b.target(None)])],
        )
    };
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, base()).await;
    wait_for("healthy", || sink.states(b.addr.port()) == [Healthy]).await;
    let c = client();
    let held = tokio::spawn({
        let c = c.clone();
        async move { get(&c, port, "/hold").await }
    });
    wait_for("a held request", || b.holding.load(Ordering::SeqCst) == 1).await;

    // The same config again (its stored health still says nothing, as
    // when the store lags): nothing restarts, the target stays healthy.
    for _ in 0..3 {
        apply(&p, base()).await;
        assert_eq!(get(&c, port, "/").await.body, "b");
    }
    // A changed config (a new rule, a second listener) is no different.
    let other = free_port();
    let mut changed = base();
    changed.listeners.get_mut(&port).unwrap().rules.insert(
        0,
        rule(
            1,
            vec![berth_core::elb::Condition::PathPattern {
                values: vec!["/fixed".into()],
            }],
            fixed(200, "fixed"),
        ),
    );
    changed
        .listeners
        .insert(other, listener(other, vec![], fixed(200, "other")));
    apply(&p, changed).await;
    assert_eq!(get(&c, port, "/fixed").await.body, "fixed");
    assert_eq!(get(&c, other, "/").await.body, "other");
    assert_eq!(get(&c, port, "/").await.body, "b");

    // The second listener removed: its port is closed when apply returns;
    // the request in flight on the first was never touched.
    apply(&p, base()).await;
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", other))
        .await
        .is_err());
    b.release(1);
    let r = held.await.unwrap();
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "b"));
    // One transition in all: the checker was never restarted from initial.
    assert_eq!(sink.states(b.addr.port()), [Healthy]);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_reported_and_retried() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let cfg = config(vec![listener(port, vec![], fixed(200, "mine"))], vec![]);
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    p.apply(cfg.clone()).await;
    let st = p.status();
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].port, st[0].bound), (port, false));
    let err = st[0].error.clone().unwrap();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");

    drop(squatter);
    apply(&p, cfg).await;
    assert_eq!(p.status()[0].error, None);
    assert_eq!(get(&client(), port, "/").await.body, "mine");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let b = Backend::start("b").await;
    let port = free_port();
    let cfg = config(
        vec![listener(port, vec![], forward(&[("web", 1)]))],
        vec![tg("web", no_hc(), vec![b.target(None)])],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;
    let c = client();
    let held = tokio::spawn({
        let c = c.clone();
        async move { get(&c, port, "/hold").await }
    });
    wait_for("a held request", || b.holding.load(Ordering::SeqCst) == 1).await;
    let stopping = tokio::spawn({
        let p = p.clone();
        async move { p.shutdown().await }
    });
    // No new connections once stopping...
    wait_for("the port closed", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await;
    assert!(!stopping.is_finished());
    // ...and the request in flight still gets its answer.
    b.release(1);
    let r = held.await.unwrap();
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "b"));
    stopping.await.unwrap();
    assert!(p.status().iter().all(|s| !s.bound));
}
