//! HTTP/2 (h2c prior knowledge, to clients and to targets) and HTTPS with
//! ALPN and SNI.

use std::sync::Arc;

use berth_core::elb::TargetHealthState::Healthy;
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::*;

async fn h2_get<T>(io: T, uri: &str) -> (u16, Version, String)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let resp = send
        .send_request(Request::get(uri).body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let (status, version) = (resp.status().as_u16(), resp.version());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_to_clients_and_to_targets() {
    let (b1, b2) = (Backend::start("h1").await, Backend::start("h2").await);
    let port = free_port();
    let mut h2tg = tg("two", quiet_hc(), vec![b2.target(Some(Healthy))]);
    h2tg.protocol_version = "HTTP2".into();
    let cfg = config(
        vec![listener(
            port,
            vec![rule(
                1,
                vec![berth_core::elb::Condition::PathPattern {
                    values: vec!["/two".into()],
                }],
                forward(&[("two", 1)]),
            )],
            forward(&[("one", 1)]),
        )],
        vec![tg("one", quiet_hc(), vec![b1.target(Some(Healthy))]), h2tg],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;

    let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (status, version, body) = h2_get(s, &format!("http://127.0.0.1:{port}/one")).await;
    assert_eq!(
        (status, version, body.as_str()),
        (200, Version::HTTP_2, "h1")
    );
    // An HTTP/2 client to an HTTP/1 target: translated, with a Host.
    let seen = b1.last_seen();
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.headers["host"], format!("127.0.0.1:{port}").as_str());

    let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (status, _, body) = h2_get(s, &format!("http://127.0.0.1:{port}/two")).await;
    assert_eq!((status, body.as_str()), (200, "h2"));
    assert_eq!(b2.last_seen().version, Version::HTTP_2);

    // HTTP/1.1 clients still work on the same listener.
    assert_eq!(get(&client(), port, "/two").await.body, "h2");
    p.shutdown().await;
}

fn write_cert(dir: &std::path::Path, name: &str, names: &[&str]) -> CertificateDer<'static> {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), ck.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), ck.key_pair.serialize_pem()).unwrap();
    ck.cert.der().clone()
}

fn tls_client(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    TlsConnector::from(Arc::new(cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_alpn_h2_and_sni() {
    let dir = tempfile::tempdir().unwrap();
    let main = write_cert(dir.path(), "main", &["localhost", "app.test"]);
    let other = write_cert(dir.path(), "other", &["*.other.test"]);
    let b = Backend::start("b").await;
    let port = free_port();
    let mut l = listener(port, vec![], forward(&[("web", 1)]));
    l.protocol = "HTTPS".into();
    l.certificates = vec![
        "arn:aws:acm:us-east-1:000000000000:certificate/main".into(),
        "arn:aws:acm:us-east-1:000000000000:certificate/other".into(),
    ];
    let cfg = config(
        vec![l],
        vec![tg("web", quiet_hc(), vec![b.target(Some(Healthy))])],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane_with_certs(&sink, dir.path().to_path_buf());
    apply(&p, cfg).await;

    let connector = tls_client(&[main.clone(), other.clone()], &[b"h2", b"http/1.1"]);
    let connect = |sni: &'static str| {
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            connector
                .connect(ServerName::try_from(sni).unwrap(), tcp)
                .await
                .expect("TLS handshake (the certificate must match the name)")
        }
    };

    let tls = connect("app.test").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], main);
    let (status, version, body) = h2_get(tls, "https://app.test/x").await;
    assert_eq!(
        (status, version, body.as_str()),
        (200, Version::HTTP_2, "b")
    );
    let seen = b.last_seen();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["host"], "app.test");

    // SNI picks the other certificate.
    let tls = connect("www.other.test").await;
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], other);
    // An unknown name gets the default (first) certificate.
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let insecure = tls_client(std::slice::from_ref(&main), &[b"http/1.1"]);
    let tls = insecure
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get("/y")
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.version(), Version::HTTP_11);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_listener_without_its_certificate_is_reported_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut l = listener(port, vec![], fixed(200, "tls"));
    l.protocol = "HTTPS".into();
    l.certificates = vec!["arn:aws:acm:us-east-1:000000000000:certificate/late".into()];
    let cfg = config(vec![l], vec![]);
    let sink = Arc::new(MemSink::default());
    let p = plane_with_certs(&sink, dir.path().to_path_buf());
    p.apply(cfg.clone()).await;
    let st = p.status();
    assert_eq!(st.len(), 1);
    assert!(!st[0].bound);
    let err = st[0].error.clone().unwrap();
    assert!(err.contains("late.crt"), "{err}");

    let cert = write_cert(dir.path(), "late", &["localhost"]);
    apply(&p, cfg).await;
    assert_eq!(p.status()[0].error, None);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tls_client(&[cert], &[b"h2"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (status, _, body) = h2_get(tls, "https://localhost/").await;
    assert_eq!((status, body.as_str()), (200, "tls"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Backend::start("ws").await;
    let port = free_port();
    let cfg = config(
        vec![listener(port, vec![], forward(&[("web", 1)]))],
        vec![tg("web", quiet_hc(), vec![b.target(Some(Healthy))])],
    );
    let sink = Arc::new(MemSink::default());
    let p = plane(&sink);
    apply(&p, cfg).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: app\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed after {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"ping"[..], b"and again"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg);
    }
    drop(s);
    p.shutdown().await;
}
