//! Where new ids come from.
//!
//! The control plane never makes randomness itself: operations that create
//! things (RunTask, host registration) take an [`IdSource`] from the caller.
//! The API layer passes one backed by the OS random generator; tests pass
//! [`SequentialIds`], so every write is reproducible.

use std::sync::atomic::{AtomicU64, Ordering};

/// A source of fresh 128-bit values.
pub trait IdSource: Send + Sync {
    /// A value not handed out before.
    fn next_u128(&self) -> u128;
}

/// Ids from a counter (1, 2, 3, ...): deterministic, for tests.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl SequentialIds {
    /// A counter whose first id is `start + 1`.
    pub fn starting_at(start: u64) -> Self {
        Self(AtomicU64::new(start))
    }
}

impl IdSource for SequentialIds {
    fn next_u128(&self) -> u128 {
        u128::from(self.0.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// 32 lowercase hex digits (an ECS task id).
pub fn hex32(v: u128) -> String {
    format!("{v:032x}")
}

/// UUID text (`8-4-4-4-12` hex digits), version 4 and RFC 4122 variant bits set.
pub fn uuid(v: u128) -> String {
    let v = (v & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `eni-` and 17 hex digits, as EC2 names network interfaces.
pub fn eni(v: u128) -> String {
    format!("eni-{:017x}", v & ((1u128 << 68) - 1))
}

/// `ecs-svc/` and 19 digits (the first not 0), as ECS names deployments.
pub fn deployment(v: u128) -> String {
    const LOW: u128 = 1_000_000_000_000_000_000;
    format!("ecs-svc/{}", LOW + v % (9 * LOW))
}

/// `host-` and 16 hex digits.
pub fn host(v: u128) -> String {
    format!("host-{:016x}", v & u128::from(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let ids = SequentialIds::default();
        assert_eq!(ids.next_u128(), 1);
        assert_eq!(hex32(2), "00000000000000000000000000000002");
        let u = uuid(u128::MAX);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(uuid(0), "00000000-0000-4000-8000-000000000000");
        assert_eq!(eni(u128::MAX), "eni-fffffffffffffffff");
        assert_eq!(host(0xab), "host-00000000000000ab");
        assert_eq!(deployment(0), "ecs-svc/1000000000000000000");
        assert_eq!(deployment(u128::MAX).len(), "ecs-svc/".len() + 19);
    }
}
