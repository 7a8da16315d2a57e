//! A fast keep-alive HTTP/1.1 backend for the load balancer benchmark
//! (`bench/lb_throughput.py`): answers every request with 200 and a short
//! body, on every port given, from one thread.
//!
//! ```text
//! cargo run --release -p berth-lb --example backend -- 127.0.0.1:9001 127.0.0.1:9002
//! ```

#![allow(missing_docs)]

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

static BODY: &[u8] = b"hello from a berth benchmark backend\n";

async fn answer(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut r = Response::new(Full::new(Bytes::from_static(BODY)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(r)
}

async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addrs: Vec<String> = std::env::args().skip(1).collect();
    if addrs.is_empty() {
        return Err("usage: backend ADDR:PORT [ADDR:PORT...]".into());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for a in addrs {
            let l = TcpListener::bind(&a).await?;
            tasks.push(tokio::spawn(serve(l)));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok::<_, std::io::Error>(())
    })?;
    Ok(())
}
