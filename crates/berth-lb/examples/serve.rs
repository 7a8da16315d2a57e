//! Serves a `DataPlaneConfig` from a JSON file with Berth's data path, no
//! store around it: health transitions are only logged. Used by
//! `bench/lb_throughput.py` until the benchmark drives `berth up` and the
//! ELBv2 API.
//!
//! ```text
//! cargo run --release -p berth-lb --example serve -- CONFIG.json [--threads N] [--certs DIR]
//! ```
//!
//! Runs until SIGINT or SIGTERM, then shuts down gracefully.

#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use berth_core::elb::dataplane::DataPlaneConfig;
use berth_core::elb::TargetHealthRecord;
use berth_lb::{DataPlane, DataPlaneOptions, HealthSink};

struct LogSink;

#[async_trait]
impl HealthSink for LogSink {
    async fn record(&self, tg: &str, ip: &str, port: u16, h: TargetHealthRecord) {
        eprintln!(
            "serve: {tg} {ip}:{port} is {} {}",
            h.state.as_str(),
            h.description.unwrap_or_default()
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    let mut threads = 0usize;
    let mut certs = PathBuf::from("certs");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().ok_or("--threads needs a number")?.parse()?,
            "--certs" => certs = args.next().ok_or("--certs needs a directory")?.into(),
            _ => config = Some(a),
        }
    }
    let path = config.ok_or("usage: serve CONFIG.json [--threads N] [--certs DIR]")?;
    let cfg: DataPlaneConfig = serde_json::from_slice(&std::fs::read(&path)?)
        .map_err(|e| format!("{path}: not a DataPlaneConfig: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        rt.worker_threads(threads);
    }
    rt.enable_all().build()?.block_on(async move {
        let plane = DataPlane::new(DataPlaneOptions::new(certs), Arc::new(LogSink));
        plane.apply(cfg).await;
        for s in plane.status() {
            match &s.error {
                None => eprintln!("serve: {} listener on port {} is up", s.protocol, s.port),
                Some(e) => eprintln!("serve: port {}: {e}", s.port),
            }
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        plane.shutdown().await;
        Ok::<_, std::io::Error>(())
    })?;
    Ok(())
}
