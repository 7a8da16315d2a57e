//! Image references: `[registry[:port]/]repository[:tag][@digest]`, with
//! Docker's defaults (`docker.io`, `library/`, `latest`).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry assumed when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// The tag assumed when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// `path/of/repo` (lowercase, `/`-separated components).
    pub repository: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The digest, if given (it wins over the tag when pulling).
    pub digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference {input:?} is not valid: {reason}")]
pub struct ReferenceError {
    /// The string given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks a repository name: `/`-separated components of lowercase letters
/// and digits, joined by `.`, `_`, `__` or runs of `-`; at most 255 bytes.
pub fn validate_repository(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "repository name {name:?} must be 1 to 255 characters long"
        ));
    }
    for comp in name.split('/') {
        let ok = !comp.is_empty()
            && comp
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && comp.as_bytes()[0].is_ascii_alphanumeric()
            && comp.as_bytes()[comp.len() - 1].is_ascii_alphanumeric()
            && !comp.contains("..")
            && !comp.contains("._")
            && !comp.contains("_.")
            && !comp.contains("___")
            && !comp.contains(".-")
            && !comp.contains("-.")
            && !comp.contains("_-")
            && !comp.contains("-_");
        if !ok {
            return Err(format!(
                "repository name {name:?} is not valid: use lowercase letters and digits separated by '/', '.', '_' or '-'"
            ));
        }
    }
    Ok(())
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("tag {tag:?} is not valid: use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"))
    }
}

impl Reference {
    /// The tag or digest to ask a registry for: the digest when present,
    /// else the tag, else `latest`.
    pub fn target(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// Whether the registry is on this machine's loopback (where plain HTTP
    /// is allowed without configuration).
    pub fn is_loopback(&self) -> bool {
        is_loopback_authority(&self.registry)
    }
}

/// Whether `host[:port]` names this machine's loopback: `localhost`, an
/// IPv4 address in 127.0.0.0/8 or `[::1]` (not a name like `127.example.com`).
pub fn is_loopback_authority(authority: &str) -> bool {
    let host = host_of(authority);
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host part of `host[:port]` (an IPv6 host keeps its brackets).
pub fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ReferenceError {
            input: s.to_string(),
            reason,
        };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|e| err(e.to_string()))?),
            ),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            validate_tag(t).map_err(err)?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository).map_err(err)?;
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", None)
        );
        assert_eq!(r.target(), "latest");
        let r: Reference = "127.0.0.1:5000/team/app:v1.2".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/app", Some("v1.2"))
        );
        assert!(r.is_loopback());
        let d = Digest::of(b"x");
        let r: Reference = format!("localhost/app@{d}").parse().unwrap();
        assert_eq!(r.digest, Some(d.clone()));
        assert_eq!(r.target(), d.to_string());
        let r: Reference = format!("registry.example.com:443/a/b:t@{d}")
            .parse()
            .unwrap();
        assert_eq!(r.to_string(), format!("registry.example.com:443/a/b:t@{d}"));
        assert!(!r.is_loopback());
        assert!(is_loopback_authority("localhost:5000"));
        assert!(is_loopback_authority("127.0.0.2"));
        assert!(is_loopback_authority("[::1]:5000"));
        assert!(!is_loopback_authority("127.example.com:5000"));
        assert!(!is_loopback_authority("10.0.0.1:5000"));
    }

    #[test]
    fn rejects_bad_names() {
        assert!("UPPER/case".parse::<Reference>().is_err());
        assert!("app:-bad".parse::<Reference>().is_err());
        assert!("a//b".parse::<Reference>().is_err());
        assert!("app@sha256:zz".parse::<Reference>().is_err());
        assert!(validate_repository("a..b").is_err());
        assert!(validate_repository("ok/name-1_2.3").is_ok());
    }
}
