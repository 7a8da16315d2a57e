//! `berth version`.

/// Prints the version.
pub fn run() -> anyhow::Result<()> {
    println!("berth {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
