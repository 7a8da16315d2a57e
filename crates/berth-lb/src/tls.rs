//! TLS: listener certificates (PEM files named after the ACM ARN, SNI
//! selection) and the connectors to targets (TLS without verification, as
//! ALB does towards its targets). rustls with the ring provider only.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A TCP connector for targets: no Nagle, a connect timeout, any scheme
/// (the TLS layer wraps it for HTTPS).
pub(crate) fn http_connector(connect_timeout: Option<Duration>) -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.enforce_http(false);
    c.set_connect_timeout(connect_timeout);
    c
}

/// A TLS connector for targets: the certificate is not verified; ALPN
/// offers `h2` or `http/1.1` as the target group speaks.
pub(crate) fn https_connector(
    http2: bool,
    connect_timeout: Option<Duration>,
) -> HttpsConnector<HttpConnector> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
        .with_no_client_auth();
    cfg.alpn_protocols.clear();
    let b = HttpsConnectorBuilder::new()
        .with_tls_config(cfg)
        .https_or_http();
    if http2 {
        b.enable_http2()
            .wrap_connector(http_connector(connect_timeout))
    } else {
        b.enable_http1()
            .wrap_connector(http_connector(connect_timeout))
    }
}

/// Accepts any certificate; handshake signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The PEM files of a certificate ARN
/// (`arn:aws:acm:R:A:certificate/{name}` → `{dir}/{name}.crt`, `.key`).
pub(crate) fn cert_paths(dir: &Path, arn: &str) -> Result<(PathBuf, PathBuf), String> {
    let name = arn
        .rsplit_once(":certificate/")
        .map(|(_, n)| n)
        .filter(|n| {
            !n.is_empty()
                && !n.starts_with('.')
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .ok_or_else(|| {
            format!(
                "certificate {arn:?} is not arn:aws:acm:REGION:ACCOUNT:certificate/NAME \
                 (NAME: letters, digits, '-', '_', '.'); use such an ARN"
            )
        })?;
    Ok((
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    ))
}

/// What identifies the loaded state of a listener's certificates: the ARNs,
/// HTTP/2 (ALPN) and each file's size and modification time, so a renewed
/// file is picked up by the next apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsKey {
    arns: Vec<String>,
    http2: bool,
    files: Vec<Option<(u64, SystemTime)>>,
}

impl TlsKey {
    /// Looks at the files (a missing one is part of the key).
    pub fn of(dir: &Path, arns: &[String], http2: bool) -> Self {
        let files = arns
            .iter()
            .flat_map(|a| match cert_paths(dir, a) {
                Ok((c, k)) => vec![Some(c), Some(k)],
                Err(_) => vec![None],
            })
            .map(|p| {
                p.and_then(|p| std::fs::metadata(p).ok())
                    .and_then(|m| Some((m.len(), m.modified().ok()?)))
            })
            .collect();
        Self {
            arns: arns.to_vec(),
            http2,
            files,
        }
    }
}

/// Loads a listener's certificates into a server configuration: SNI picks
/// the certificate whose names match, else the first (the default); ALPN
/// offers `h2` (when HTTP/2 is on) and `http/1.1`.
pub(crate) fn server_config(
    dir: &Path,
    arns: &[String],
    http2: bool,
) -> Result<Arc<ServerConfig>, String> {
    if arns.is_empty() {
        return Err("an HTTPS listener needs a certificate; add one to the listener".into());
    }
    let provider = provider();
    let mut certs = Vec::new();
    for arn in arns {
        let (crt, key) = cert_paths(dir, arn)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&crt)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| {
                format!(
                    "certificate {arn}: cannot read {}: {e}; put the PEM certificate chain there",
                    crt.display()
                )
            })?;
        if chain.is_empty() {
            return Err(format!(
                "certificate {arn}: {} holds no certificate; put the PEM certificate chain there",
                crt.display()
            ));
        }
        let pk = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
            format!(
                "certificate {arn}: cannot read the private key {}: {e}; put the PEM key there",
                key.display()
            )
        })?;
        let names = webpki::EndEntityCert::try_from(&chain[0])
            .map(|c| {
                c.valid_dns_names()
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let ck = CertifiedKey::from_der(chain, pk, &provider).map_err(|e| {
            format!(
                "certificate {arn}: {} and {} do not make a usable key pair: {e}",
                crt.display(),
                key.display()
            )
        })?;
        certs.push((names, Arc::new(ck)));
    }
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certs }));
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(cfg))
}

/// Picks a certificate by SNI: the first whose DNS names match (wildcards
/// cover one label), else the default (the first).
struct SniResolver {
    certs: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field(
                "names",
                &self.certs.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = hello.server_name() {
            if let Some((_, k)) = self
                .certs
                .iter()
                .find(|(names, _)| names.iter().any(|n| dns_matches(n, sni)))
            {
                return Some(k.clone());
            }
        }
        self.certs.first().map(|(_, k)| k.clone())
    }
}

/// `name` (lowercase, maybe `*.x.y`) covers `host`.
fn dns_matches(name: &str, host: &str) -> bool {
    if let Some(suffix) = name.strip_prefix("*.") {
        return match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
            None => false,
        };
    }
    name.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_files() {
        let (c, k) = cert_paths(
            Path::new("/certs"),
            "arn:aws:acm:us-east-1:000000000000:certificate/web-1",
        )
        .unwrap();
        assert_eq!(c, Path::new("/certs/web-1.crt"));
        assert_eq!(k, Path::new("/certs/web-1.key"));
        for bad in [
            "arn:aws:acm:r:a:certificate/../x",
            "arn:aws:acm:r:a:certificate/",
            "not-an-arn",
            "arn:aws:acm:r:a:certificate/a/b",
        ] {
            assert!(cert_paths(Path::new("/c"), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcard_names() {
        assert!(dns_matches("*.example.com", "www.Example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(dns_matches("example.com", "EXAMPLE.com"));
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let e = server_config(
            Path::new("/nonexistent"),
            &["arn:aws:acm:r:a:certificate/web".into()],
            true,
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent/web.crt"), "{e}");
        assert!(server_config(Path::new("/x"), &[], true).is_err());
    }
}
