//! The test harness: a real `berth up` process on loopback.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Berth {
    child: Child,
    dir: tempfile::TempDir,
}

impl Berth {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["up", "--no-agent", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("BERTH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let b = Self { child, dir };
        b.wait_ready();
        b
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let endpoint = self.data_dir().join("endpoint");
        while Instant::now() < deadline {
            if let Ok(url) = std::fs::read_to_string(&endpoint) {
                let addr = url.trim().trim_start_matches("http://").to_string();
                if std::net::TcpStream::connect(&addr).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "berth up did not start within 30 s (data dir {})",
            self.data_dir().display()
        );
    }

    /// Runs `berth ARGS --data-dir DIR` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The exports of `berth env`, as (name, value) pairs.
    pub fn env(&self) -> Vec<(String, String)> {
        self.cli(&["env"])
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect()
    }

    pub fn var(&self, name: &str) -> String {
        self.env()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
