//! Rules, actions, target choice, forwarded headers, error responses.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_core::elb::dataplane::{DataPlaneConfig, ElbRecords};
use berth_core::elb::{
    Action, ActionKind, Algorithm, Condition, ListenerRecord, LoadBalancerRecord, QueryPair,
    RuleRecord, TargetGroupRecord, TargetHealthRecord, TargetHealthState, TargetRecord,
};
use berth_core::Timestamp;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const LB_ARN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/0123456789abcdef";

fn rule_record(listener_arn: &str, priority: u32, c: Condition, action: Action) -> RuleRecord {
    RuleRecord {
        arn: format!("{listener_arn}/{priority}"),
        id: format!("{priority:016x}"),
        listener_arn: listener_arn.into(),
        priority,
        conditions: vec![c],
        actions: vec![action],
        tags: BTreeMap::new(),
    }
}

/// Every condition kind, priorities and the default, through the records
/// the API stores and `DataPlaneConfig::build`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_match_in_priority_order_then_the_default() {
    let api = Backend::start("api").await;
    let port = free_port();
    let listener_arn = format!("{LB_ARN}/00000000000000aa");
    let q = |k: Option<&str>, v: &str| QueryPair {
        key: k.map(Into::into),
        value: v.into(),
    };
    let records = ElbRecords {
        load_balancers: vec![LoadBalancerRecord {
            arn: LB_ARN.into(),
            name: "web".into(),
            id: "0123456789abcdef".into(),
            dns_name: "web.elb.localhost".into(),
            scheme: "internet-facing".into(),
            lb_type: "application".into(),
            ip_address_type: "ipv4".into(),
            subnets: vec![],
            security_groups: vec![],
            attributes: BTreeMap::new(),
            tags: BTreeMap::new(),
            created: Timestamp(0),
        }],
        listeners: vec![ListenerRecord {
            arn: listener_arn.clone(),
            id: "00000000000000aa".into(),
            load_balancer_arn: LB_ARN.into(),
            lb_name: "web".into(),
            port,
            protocol: "HTTP".into(),
            certificates: vec![],
            ssl_policy: None,
            default_actions: vec![fixed(404, "default")],
            tags: BTreeMap::new(),
        }],
        // Stored out of order: priority decides.
        rules: vec![
            rule_record(
                &listener_arn,
                70,
                Condition::SourceIp {
                    values: vec!["10.0.0.0/8".into()],
                },
                fixed(200, "ten"),
            ),
            rule_record(
                &listener_arn,
                60,
                Condition::QueryString {
                    values: vec![q(Some("lang"), "en us"), q(None, "magic")],
                },
                fixed(200, "query"),
            ),
            rule_record(
                &listener_arn,
                10,
                Condition::PathPattern {
                    values: vec!["/api/*".into()],
                },
                forward(&[("api", 1)]),
            ),
            rule_record(
                &listener_arn,
                5,
                Condition::PathPattern {
                    values: vec!["/api/special?".into()],
                },
                fixed(200, "special"),
            ),
            rule_record(
                &listener_arn,
                20,
                Condition::HostHeader {
                    values: vec!["*.example.com".into()],
                },
                fixed(200, "host"),
            ),
            rule_record(
                &listener_arn,
                30,
                Condition::HttpHeader {
                    name: "X-Env".into(),
                    values: vec!["be?a".into()],
                },
                fixed(200, "header"),
            ),
            rule_record(
                &listener_arn,
                40,
                Condition::HttpRequestMethod {
                    values: vec!["DELETE".into()],
                },
                fixed(200, "method"),
            ),
            rule_record(
                &listener_arn,
                50,
                Condition::SourceIp {
                    values: vec!["127.0.0.0/8".into()],
                },
                fixed(200, "source"),
            ),
        ],
        target_groups: vec![TargetGroupRecord {
            arn: tg_arn("api"),
            name: "api".into(),
            id: "0123456789abcdef".into(),
            protocol: "HTTP".into(),
            protocol_version: "HTTP1".into(),
            port: 80,
            vpc_id: None,
            target_type: "ip".into(),
            health_check: Default::default(),
            attributes: BTreeMap::new(),
            tags: BTreeMap::new(),
            created: Timestamp(0),
        }],
        targets: vec![TargetRecord {
            target_group_arn: tg_arn("api"),
            id: "127.0.0.1".into(),
            port: api.addr.port(),
            availability_zone: None,
            registered: Timestamp(1_000),
            drain_until: None,
        }],
        health: [(
            (tg_arn("api"), format!("127.0.0.1:{}", api.addr.port())),
            TargetHealthRecord {
                state: TargetHealthState::Healthy,
                reason: None,
                description: None,
                since: Timestamp(2_000),
                registered: None,
            },
        )]
        .into(),
    };
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, DataPlaneConfig::build(&records)).await;
    let c = client();

    let with = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}{path}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::<Bytes>::default()).unwrap()
    };

    // Priority 5 wins over 10 for the path both match.
    assert_eq!(get(&c, port, "/api/special1").await.body, "special");
    let r = get(&c, port, "/api/users?x=1").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "api"));
    assert_eq!(api.last_seen().path, "/api/users");
    // Path patterns are case-sensitive: /API/ falls through to "source".
    assert_eq!(get(&c, port, "/API/users").await.body, "source");
    let host = |h: &'static str| with("GET", "/x", &[("host", h)]);
    assert_eq!(send(&c, host("WWW.Example.com:8080")).await.body, "host");
    assert_eq!(send(&c, host("example.com")).await.body, "source");
    assert_eq!(
        send(&c, with("GET", "/x", &[("x-env", "BETA")])).await.body,
        "header"
    );
    assert_eq!(send(&c, with("DELETE", "/x", &[])).await.body, "method");
    // The source-ip rule (50) comes before the query rule (60): the client
    // is on loopback. The query rule is proven in the unit tests and below
    // with a listener without the source rule.
    assert_eq!(get(&c, port, "/x?lang=en%20US").await.body, "source");

    let mut records = records;
    records.rules.retain(|r| r.priority != 50);
    apply(&p, DataPlaneConfig::build(&records)).await;
    assert_eq!(get(&c, port, "/x?lang=en%20US").await.body, "query");
    assert_eq!(get(&c, port, "/x?a=b&k=MAGIC").await.body, "query");
    assert_eq!(get(&c, port, "/x?lang=fr").await.body, "default");
    let r = get(&c, port, "/nothing").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (404, "default"));
    assert_eq!(r.headers["content-type"], "text/plain");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_responses_and_redirects() {
    let port = free_port();
    let redirect =
        |code: u16, protocol: &str, port: &str, host: &str, path: &str, query: &str| Action {
            order: None,
            kind: ActionKind::Redirect {
                protocol: protocol.into(),
                port: port.into(),
                host: host.into(),
                path: path.into(),
                query: query.into(),
                status_code: code,
            },
        };
    let json = Action {
        order: None,
        kind: ActionKind::FixedResponse {
            status_code: 503,
            content_type: Some("application/json".into()),
            message_body: Some("{\"down\":true}".into()),
        },
    };
    let path = |p: &str| {
        vec![Condition::PathPattern {
            values: vec![p.into()],
        }]
    };
    let cfg = config(
        vec![listener(
            port,
            vec![
                rule(
                    1,
                    path("/old/*"),
                    redirect(301, "HTTPS", "443", "#{host}", "/new/#{path}", "#{query}"),
                ),
                rule(
                    2,
                    path("/temp"),
                    redirect(
                        302,
                        "#{protocol}",
                        "#{port}",
                        "other.example",
                        "/#{path}",
                        "from=#{host}",
                    ),
                ),
                rule(3, path("/json"), json),
            ],
            fixed(200, "hello"),
        )],
        vec![],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;
    let c = client();

    let r = send(
        &c,
        Request::get(format!("http://127.0.0.1:{port}/old/a/b?x=1"))
            .header("host", "shop.example:8080")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status.as_u16(), 301);
    assert_eq!(
        r.headers["location"],
        "https://shop.example:443/new/old/a/b?x=1"
    );
    let r = get(&c, port, "/temp").await;
    assert_eq!(r.status.as_u16(), 302);
    assert_eq!(
        r.headers["location"],
        format!("http://other.example:{port}/temp?from=127.0.0.1").as_str()
    );
    let r = get(&c, port, "/json").await;
    assert_eq!(r.status.as_u16(), 503);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.body, "{\"down\":true}");
    let r = get(&c, port, "/").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "hello"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_forward_follows_the_weights() {
    let (a, b, c3) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let port = free_port();
    let h = Some(TargetHealthState::Healthy);
    let cfg = config(
        vec![listener(
            port,
            vec![],
            forward(&[("a", 0), ("b", 1), ("c", 3)]),
        )],
        vec![
            tg("a", quiet_hc(), vec![a.target(h)]),
            tg("b", quiet_hc(), vec![b.target(h)]),
            tg("c", quiet_hc(), vec![c3.target(h)]),
        ],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;
    let c = client();
    for _ in 0..200 {
        assert_eq!(get(&c, port, "/").await.status.as_u16(), 200);
    }
    assert_eq!(a.hits(), 0, "weight 0 gets nothing");
    assert!(
        b.hits() > 0 && c3.hits() > 0,
        "b {} c {}",
        b.hits(),
        c3.hits()
    );
    assert_eq!(b.hits() + c3.hits(), 200);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_over_healthy_targets_only() {
    let bs = [
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    let fresh = Backend::start("fresh").await; // no stored health: initial
    let sick = Backend::start("sick").await;
    let port = free_port();
    let h = Some(TargetHealthState::Healthy);
    let mut targets: Vec<_> = bs.iter().map(|b| b.target(h)).collect();
    targets.push(fresh.target(None));
    targets.push(sick.target(Some(TargetHealthState::Unhealthy)));
    let cfg = config(
        vec![listener(port, vec![], forward(&[("web", 1)]))],
        vec![tg("web", quiet_hc(), targets)],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;
    let c = client();
    for _ in 0..30 {
        assert_eq!(get(&c, port, "/").await.status.as_u16(), 200);
    }
    for b in &bs {
        assert_eq!(b.hits(), 10, "{} got {}", b.name, b.hits());
    }
    assert_eq!(fresh.hits(), 0);
    assert_eq!(sick.hits(), 0);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_requests_prefers_the_idle_target() {
    let (x, y) = (Backend::start("x").await, Backend::start("y").await);
    let port = free_port();
    let mut group = tg("web", no_hc(), vec![x.target(None), y.target(None)]);
    group.algorithm = Algorithm::LeastOutstandingRequests;
    let cfg = config(
        vec![listener(port, vec![], forward(&[("web", 1)]))],
        vec![group],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;
    let c = client();
    let held = tokio::spawn({
        let c = c.clone();
        async move { get(&c, port, "/hold").await }
    });
    wait_for("a held request", || {
        x.holding.load(Ordering::SeqCst) + y.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    let (busy, idle) = if x.holding.load(Ordering::SeqCst) == 1 {
        (&x, &y)
    } else {
        (&y, &x)
    };
    for _ in 0..10 {
        let r = get(&c, port, "/").await;
        assert_eq!(r.body, idle.name);
    }
    assert_eq!(busy.hits(), 1);
    busy.release(1);
    assert_eq!(held.await.unwrap().body, busy.name);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_like_alb() {
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
    let r = send(
        &c,
        Request::get(format!("http://127.0.0.1:{port}/h?q=1"))
            .header("host", "app.example")
            .header("x-forwarded-for", "203.0.113.9")
            .header("connection", "x-private")
            .header("x-private", "secret")
            .header("x-app", "kept")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.headers["x-backend"], "b");
    let seen = b.last_seen();
    let h = &seen.headers;
    assert_eq!(h["host"], "app.example");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-port"], port.to_string().as_str());
    assert_eq!(h["x-app"], "kept");
    assert!(!h.contains_key("x-private"), "hop-by-hop header forwarded");
    let trace = h["x-amzn-trace-id"].to_str().unwrap();
    assert!(trace.starts_with("Root=1-"), "{trace}");
    assert_eq!(trace.len(), "Root=1-".len() + 8 + 1 + 24);

    // Without a previous X-Forwarded-For, it is the client's address; an
    // incoming trace id is kept with the load balancer's own as Self.
    let r = send(
        &c,
        Request::get(format!("http://127.0.0.1:{port}/"))
            .header(
                "x-amzn-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200);
    let h = b.last_seen().headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    let trace = h["x-amzn-trace-id"].to_str().unwrap();
    assert!(trace.starts_with("Self=1-"), "{trace}");
    assert!(
        trace.ends_with(";Root=1-00000000-000000000000000000000000"),
        "{trace}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_like_alb() {
    let port = free_port();
    let garbage = garbage_backend().await;
    let silent = silent_backend().await;
    let refused = closed_port();
    let path = |p: &str| {
        vec![Condition::PathPattern {
            values: vec![p.into()],
        }]
    };
    let mut slow = tg("silent", no_hc(), vec![addr_target(silent, None)]);
    slow.response_timeout_ms = 200;
    let cfg = config(
        vec![listener(
            port,
            vec![
                rule(1, path("/refused"), forward(&[("refused", 1)])),
                rule(2, path("/garbage"), forward(&[("garbage", 1)])),
                rule(3, path("/silent"), forward(&[("silent", 1)])),
                rule(4, path("/nobody"), forward(&[("nobody", 1)])),
                rule(5, path("/empty"), forward(&[("empty", 1)])),
            ],
            fixed(404, "none"),
        )],
        vec![
            tg("refused", no_hc(), vec![addr_target(refused, None)]),
            tg("garbage", no_hc(), vec![addr_target(garbage, None)]),
            slow,
            // Registered but never checked healthy.
            tg("nobody", quiet_hc(), vec![addr_target(refused, None)]),
            tg("empty", quiet_hc(), vec![]),
        ],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;
    let c = client();
    let expect = |r: &Resp, code: u16, title: &str| {
        assert_eq!(r.status.as_u16(), code, "{r:?}");
        assert_eq!(r.headers["content-type"], "text/html");
        assert!(
            r.body.contains(&format!("<title>{code} {title}</title>")),
            "{}",
            r.body
        );
    };
    expect(&get(&c, port, "/refused").await, 502, "Bad Gateway");
    expect(&get(&c, port, "/garbage").await, 502, "Bad Gateway");
    expect(&get(&c, port, "/silent").await, 504, "Gateway Time-out");
    expect(
        &get(&c, port, "/nobody").await,
        503,
        "Service Temporarily Unavailable",
    );
    expect(
        &get(&c, port, "/empty").await,
        503,
        "Service Temporarily Unavailable",
    );

    // Malformed requests: 400, and the listener keeps serving.
    for raw in [
        &b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n"[..], // no Host
        &b"\x16\x03\x01 definitely not http\r\n\r\n"[..],    // garbage
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    }
    assert_eq!(get(&c, port, "/x").await.status.as_u16(), 404);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_targets_are_reused() {
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
    for _ in 0..20 {
        assert_eq!(get(&c, port, "/").await.status.as_u16(), 200);
    }
    assert_eq!(b.hits(), 20);
    assert_eq!(
        b.conns.load(Ordering::SeqCst),
        1,
        "one kept-alive connection"
    );
    p.shutdown().await;
}
