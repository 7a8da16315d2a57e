//! `berth env`: `eval "$(berth env)"` points the AWS CLI and SDKs at Berth.

use crate::datadir::DataDir;
use crate::Common;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Prints the export lines for the data directory's endpoint and admin key.
pub fn run(c: &Common) -> anyhow::Result<()> {
    let dd = DataDir::open_existing(&c.data_dir)?;
    let endpoint = match c.listen {
        Some(addr) => format!("http://{addr}"),
        None => dd.endpoint(),
    };
    let key = dd.admin_key()?;
    let region = &dd.config.region;
    println!("export AWS_ENDPOINT_URL={}", quote(&endpoint));
    println!("export AWS_ACCESS_KEY_ID={}", quote(&key.access_key_id));
    println!(
        "export AWS_SECRET_ACCESS_KEY={}",
        quote(&key.secret_access_key)
    );
    println!("export AWS_REGION={}", quote(region));
    println!("export AWS_DEFAULT_REGION={}", quote(region));
    let registry = endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    println!("export BERTH_REGISTRY={}", quote(registry));
    Ok(())
}
