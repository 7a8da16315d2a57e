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

/// Issues and checks registry tokens (ECR's GetAuthorizationToken).
///
/// A token is `b1.<base64url(payload)>.<hex(hmac-sha256(key, payload))>`,
/// where the payload names the principal and the expiry. Tokens are checked
/// without state: any replica holding the key can verify them.
#[derive(Clone)]
pub struct TokenAuthority {
    key: Vec<u8>,
}

/// How long a registry token is valid (12 hours, as ECR's).
pub const TOKEN_TTL_SECS: i64 = 12 * 3600;

#[derive(Serialize, Deserialize)]
struct TokenPayload {
    /// Principal ARN.
    p: String,
    /// Access key that asked for it.
    k: String,
    /// Expiry, seconds since the epoch.
    e: i64,
}

/// Why a registry token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// the token is not one Berth issued
    #[error("the registry token is not valid; get a new one with `aws ecr get-login-password`")]
    Invalid,
    /// the token has expired
    #[error("the registry token expired; get a new one with `aws ecr get-login-password`")]
    Expired,
}

impl TokenAuthority {
    /// An authority signing with `key` (at least 32 random bytes).
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        use hmac::Mac;
        let mut m = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| {
                <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(b"\0")
                    .expect("hmac takes any key")
            });
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    /// A token for `caller`, valid until `now + TOKEN_TTL_SECS`. Returns the
    /// token and its expiry.
    pub fn issue(&self, caller: &Caller, access_key_id: &str, now: i64) -> (String, i64) {
        use base64::Engine;
        let expires = now + TOKEN_TTL_SECS;
        let payload = serde_json::to_vec(&TokenPayload {
            p: caller.arn.clone(),
            k: access_key_id.to_string(),
            e: expires,
        })
        .unwrap_or_default();
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&payload);
        (
            format!("b1.{b}.{}", hex::encode(self.mac(&payload))),
            expires,
        )
    }

    /// Checks a token; the caller it was issued to.
    pub fn verify(&self, token: &str, now: i64) -> Result<Caller, TokenError> {
        use base64::Engine;
        let mut parts = token.split('.');
        let (Some("b1"), Some(b), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b)
            .map_err(|_| TokenError::Invalid)?;
        let sig = hex::decode(sig).map_err(|_| TokenError::Invalid)?;
        use hmac::Mac;
        let mut m = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.key)
            .map_err(|_| TokenError::Invalid)?;
        m.update(&payload);
        m.verify_slice(&sig).map_err(|_| TokenError::Invalid)?;
        let p: TokenPayload = serde_json::from_slice(&payload).map_err(|_| TokenError::Invalid)?;
        if now > p.e {
            return Err(TokenError::Expired);
        }
        Ok(Caller { arn: p.p })
    }
}

impl KeyRing {
    /// The principal of an access key pair given directly (HTTP Basic with
    /// the access key id as user and the secret as password).
    pub fn check_secret(&self, access_key_id: &str, secret: &str) -> Option<Caller> {
        let k = self.keys.get(access_key_id)?;
        // Constant-time comparison of the secret.
        let a = k.secret_access_key.as_bytes();
        let b = secret.as_bytes();
        let mut diff = u8::from(a.len() != b.len());
        for (x, y) in a.iter().zip(b.iter()) {
            diff |= x ^ y;
        }
        (diff == 0).then(|| Caller {
            arn: k.principal_arn.clone(),
        })
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn tokens_verify_and_expire() {
        let a = TokenAuthority::new(vec![7; 32]);
        let caller = Caller {
            arn: "arn:aws:iam::1:root".into(),
        };
        let (t, exp) = a.issue(&caller, "AKIA", 1000);
        assert_eq!(exp, 1000 + TOKEN_TTL_SECS);
        assert_eq!(a.verify(&t, 1001), Ok(caller));
        assert_eq!(a.verify(&t, exp + 1), Err(TokenError::Expired));
        let other = TokenAuthority::new(vec![8; 32]);
        assert_eq!(other.verify(&t, 1001), Err(TokenError::Invalid));
        assert_eq!(a.verify("b1.e30.00", 1), Err(TokenError::Invalid));
        let mut tampered = t.clone();
        tampered.replace_range(5..6, if &t[5..6] == "A" { "B" } else { "A" });
        assert_eq!(a.verify(&tampered, 1001), Err(TokenError::Invalid));
    }

    #[test]
    fn secrets_compare() {
        let k = AccessKey::generate("arn:p").unwrap();
        let ring = KeyRing::new([k.clone()]);
        assert!(ring
            .check_secret(&k.access_key_id, &k.secret_access_key)
            .is_some());
        assert!(ring.check_secret(&k.access_key_id, "wrong").is_none());
        assert!(ring
            .check_secret("AKIANOPE", &k.secret_access_key)
            .is_none());
    }
}
