//! Access keys and request authentication.
//!
//! Berth issues its own access keys (the admin pair is created with the data
//! directory). A request is authenticated when its SigV4 signature verifies
//! against one of them; the caller then acts as that key's principal.

use std::collections::HashMap;

use berth_control::Caller;
use serde::{Deserialize, Serialize};

use crate::sigv4::{self, AuthError, RequestParts, SecretLookup};

/// An access key pair and the principal it authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKey {
    /// The public half, `AKIA...`.
    pub access_key_id: String,
    /// The secret half.
    pub secret_access_key: String,
    /// The principal's ARN.
    pub principal_arn: String,
}

impl AccessKey {
    /// A fresh random key pair for `principal_arn`.
    pub fn generate(principal_arn: &str) -> Result<Self, getrandom::Error> {
        const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut id = [0u8; 16];
        let mut secret = [0u8; 40];
        getrandom::fill(&mut id)?;
        getrandom::fill(&mut secret)?;
        Ok(Self {
            access_key_id: format!(
                "AKIA{}",
                id.iter()
                    .map(|b| BASE32[usize::from(b % 32)] as char)
                    .collect::<String>()
            ),
            secret_access_key: secret
                .iter()
                .map(|b| SECRET[usize::from(b % 64)] as char)
                .collect(),
            principal_arn: principal_arn.to_string(),
        })
    }
}

/// The access keys the server accepts.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: HashMap<String, AccessKey>,
}

impl KeyRing {
    /// A key ring holding `keys`.
    pub fn new(keys: impl IntoIterator<Item = AccessKey>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|k| (k.access_key_id.clone(), k))
                .collect(),
        }
    }

    /// Authenticates a request: `Ok` with the caller when the signature is
    /// valid for a known key, scoped to `region` and one of `services`.
    pub fn authenticate(
        &self,
        req: &RequestParts<'_>,
        now: i64,
        region: &str,
        services: &[&str],
    ) -> Result<(Caller, sigv4::Verified), AuthError> {
        let v = sigv4::verify(req, self, now, region, services)?;
        let key = self
            .keys
            .get(&v.access_key_id)
            .ok_or(AuthError::UnknownKey)?;
        Ok((
            Caller {
                arn: key.principal_arn.clone(),
            },
            v,
        ))
    }
}

impl SecretLookup for KeyRing {
    fn secret_for(&self, access_key_id: &str) -> Option<String> {
        self.keys
            .get(access_key_id)
            .map(|k| k.secret_access_key.clone())
    }
}
