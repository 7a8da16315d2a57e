//! CreateListener, DescribeListeners, ModifyListener, DeleteListener.
//!
//! A listener is `/elb/listeners/{lbName}/{listenerId}`. Every listener
//! listens on a port of *this machine*, so a port is claimed once across all
//! load balancers: `/elb/ports/{port}` holds the ARN of the listener that
//! has it, written in the same transaction as the listener (and moved
//! atomically by ModifyListener). The API server's own port is reserved.
//!
//! HTTPS listeners take one certificate, `arn:aws:acm:{region}:{account}:certificate/{name}`,
//! which Berth resolves to `{certs_dir}/{name}.crt` and `{certs_dir}/{name}.key` (PEM).

use std::path::{Path, PathBuf};

use berth_core::elb::{Action, ListenerRecord, LoadBalancerRecord};
use berth_store::{Compare, Op, Txn};

use super::spec::{self, ActionSpec, CertificateSpec, TagSpec};
use super::{arn, backoff, encode, lbs_using, page, page_size, Elb, ElbArn, ElbError, MAX_RETRIES};
use crate::ids::IdSource;
use crate::keys;

/// A load balancer has at most this many listeners (ELBv2's quota).
pub const MAX_LISTENERS_PER_LB: usize = 50;

/// The SSL policy HTTPS listeners get when none is given (ELBv2's default).
pub const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-2016-08";

/// What CreateListener asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateListenerSpec {
    /// The load balancer.
    pub load_balancer_arn: String,
    /// `HTTP` or `HTTPS`.
    pub protocol: Option<String>,
    /// 1–65535, free on this machine.
    pub port: Option<i64>,
    /// HTTPS: an `ELBSecurityPolicy-*` name (recorded).
    pub ssl_policy: Option<String>,
    /// HTTPS: exactly one certificate.
    pub certificates: Vec<CertificateSpec>,
    /// What a request no rule matches gets.
    pub default_actions: Vec<ActionSpec>,
    /// Refused when given (ALPN policies are for TLS listeners).
    pub alpn_policy: Vec<String>,
    /// `MutualAuthentication.Mode` (only `off`).
    pub mutual_authentication_mode: Option<String>,
    /// Tags.
    pub tags: Vec<TagSpec>,
}

/// What ModifyListener changes (absent members stay as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModifyListenerSpec {
    /// The listener.
    pub listener_arn: String,
    /// A new port (the claim moves atomically).
    pub port: Option<i64>,
    /// A new protocol.
    pub protocol: Option<String>,
    /// A new SSL policy.
    pub ssl_policy: Option<String>,
    /// New certificates.
    pub certificates: Option<Vec<CertificateSpec>>,
    /// New default actions.
    pub default_actions: Option<Vec<ActionSpec>>,
    /// Refused when given.
    pub alpn_policy: Vec<String>,
    /// `MutualAuthentication.Mode` (only `off`).
    pub mutual_authentication_mode: Option<String>,
}

/// The certificate and key files of an ACM-style certificate ARN
/// (`arn:aws:acm:{region}:{account}:certificate/{name}` →
/// `{certs_dir}/{name}.crt`, `{certs_dir}/{name}.key`). `None` when the ARN
/// is not of that form or of another region or account.
pub fn certificate_paths(
    certs_dir: &Path,
    region: &str,
    account: &str,
    certificate_arn: &str,
) -> Option<(PathBuf, PathBuf)> {
    let name =
        certificate_arn.strip_prefix(&format!("arn:aws:acm:{region}:{account}:certificate/"))?;
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| {
        (
            certs_dir.join(format!("{name}.crt")),
            certs_dir.join(format!("{name}.key")),
        )
    })
}

fn check_protocol(p: Option<&str>) -> Result<Option<String>, ElbError> {
    match p {
        None => Ok(None),
        Some(p @ ("HTTP" | "HTTPS")) => Ok(Some(p.to_string())),
        Some(p) => Err(ElbError::UnsupportedProtocol(format!(
            "Protocol: application load balancers listen on HTTP or HTTPS, not '{p}'"
        ))),
    }
}

fn check_port(p: i64) -> Result<u16, ElbError> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| ElbError::validation(format!("Port: {p} is out of range (use 1 to 65535)")))
}

fn check_extras(alpn: &[String], mutual: Option<&str>) -> Result<(), ElbError> {
    if !alpn.is_empty() {
        return Err(ElbError::validation(
            "AlpnPolicy: ALPN policies apply to TLS listeners of network load balancers; leave AlpnPolicy out",
        ));
    }
    match mutual {
        None | Some("off") => Ok(()),
        Some(m) => Err(ElbError::validation(format!(
            "MutualAuthentication.Mode: '{m}' is not available in Berth (mutual TLS is not supported; use off)"
        ))),
    }
}

impl Elb {
    /// Checks the certificates of a listener: HTTPS takes exactly one whose
    /// files exist; HTTP takes none. Returns the certificate ARNs.
    async fn check_certificates(
        &self,
        protocol: &str,
        certs: &[CertificateSpec],
    ) -> Result<Vec<String>, ElbError> {
        if protocol == "HTTP" {
            if certs.is_empty() {
                return Ok(Vec::new());
            }
            return Err(ElbError::validation(
                "Certificates: an HTTP listener takes no certificates (use Protocol HTTPS, or leave Certificates out)",
            ));
        }
        match certs.len() {
            0 => {
                return Err(ElbError::validation(format!(
                    "Certificates: an HTTPS listener needs a certificate (CertificateArn=arn:aws:acm:{}:{}:certificate/NAME with NAME.crt and NAME.key in {})",
                    self.scope.region,
                    self.scope.account,
                    self.certs_dir.display()
                )))
            }
            1 => {}
            n => {
                return Err(ElbError::TooManyCertificates(format!(
                    "Certificates: {n} certificates were given; a listener takes exactly one (its default)"
                )))
            }
        }
        let Some(arn) = certs[0].certificate_arn.clone() else {
            return Err(ElbError::validation(
                "Certificates[1].CertificateArn: give the certificate's ARN",
            ));
        };
        let shape = format!(
            "arn:aws:acm:{}:{}:certificate/NAME",
            self.scope.region, self.scope.account
        );
        let Some((crt, key)) = certificate_paths(
            &self.certs_dir,
            &self.scope.region,
            &self.scope.account,
            &arn,
        ) else {
            if arn.starts_with("arn:aws:acm:") && arn.contains(":certificate/") {
                return Err(ElbError::CertificateNotFound(format!(
                    "certificate '{arn}' not found: Berth serves certificates {shape}, NAME being letters, digits, '.', '_' and '-'"
                )));
            }
            return Err(ElbError::validation(format!(
                "Certificates[1].CertificateArn: '{arn}' is not a certificate ARN (expected {shape})"
            )));
        };
        let is_file =
            |p: PathBuf| async move { tokio::fs::metadata(&p).await.is_ok_and(|m| m.is_file()) };
        if !is_file(crt.clone()).await || !is_file(key.clone()).await {
            return Err(ElbError::CertificateNotFound(format!(
                "certificate '{arn}' not found: Berth reads it from {} and {} (PEM); put the certificate chain and its private key there",
                crt.display(),
                key.display()
            )));
        }
        Ok(vec![arn])
    }

    /// Checks the target groups `actions` forward to: each exists
    /// (TargetGroupNotFound) and no other load balancer uses it
    /// (TargetGroupAssociationLimit). Returns their keys and revisions, to
    /// guard the write.
    pub(super) async fn check_forwards(
        &self,
        actions: &[Action],
        lb_arn: &str,
    ) -> Result<Vec<(String, u64)>, ElbError> {
        let groups = spec::forwarded_groups(actions);
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let listeners = self.all_listeners().await?;
        let rules = self.all_rules().await?;
        let mut guards = Vec::new();
        for g in groups {
            let (tg, rev) = self.tg_by_arn("TargetGroupArn", &g).await?;
            let users = lbs_using(
                &tg.arn,
                listeners.iter().map(|(l, _)| l),
                rules.iter().map(|(r, _)| r),
            );
            if let Some(other) = users.iter().find(|u| *u != lb_arn) {
                return Err(ElbError::TargetGroupAssociationLimit(format!(
                    "target group '{}' is already used by load balancer '{other}'; a target group serves one load balancer (create another target group)",
                    tg.name
                )));
            }
            guards.push((keys::elb_tg(&tg.name), rev));
        }
        Ok(guards)
    }

    /// The reserved-port and machine-wide port checks for `port` on `lb`
    /// (`own` is the listener's ARN when it already exists). Returns the
    /// port claim's revision to guard on (0 when free).
    async fn claim_port(
        &self,
        lb: &LoadBalancerRecord,
        port: u16,
        own: Option<&str>,
    ) -> Result<u64, ElbError> {
        if let Some((_, holder)) = self.reserved_ports.iter().find(|(p, _)| *p == port) {
            return Err(ElbError::InvalidConfigurationRequest(format!(
                "Port: port {port} on this machine is taken by {holder}; choose another port for the listener"
            )));
        }
        let Some(kv) = self.store.get(&keys::elb_port(port)).await? else {
            return Ok(0);
        };
        let holder = String::from_utf8_lossy(&kv.value).to_string();
        if Some(holder.as_str()) == own {
            return Ok(kv.mod_revision);
        }
        // A claim whose listener is gone is stale (never left by Berth's
        // own deletes, but harmless to take over).
        let live = match ElbArn::parse(&holder, &self.scope) {
            Ok(ElbArn::Listener { lb_name, id, .. }) => self
                .get_decoded::<ListenerRecord>(&keys::elb_listener(&lb_name, &id))
                .await?
                .filter(|(l, _)| l.arn == holder),
            _ => None,
        };
        match live {
            None => Ok(kv.mod_revision),
            Some((l, _)) if l.lb_name == lb.name => Err(ElbError::DuplicateListener(format!(
                "load balancer '{}' already has a listener on port {port} ({}); use ModifyListener to change it, or choose another port",
                lb.name, l.arn
            ))),
            Some((l, _)) => Err(ElbError::InvalidConfigurationRequest(format!(
                "Port: port {port} on this machine is already used by load balancer '{}' (listener {}); all load balancers share this machine's ports, so choose another port (e.g. {})",
                l.lb_name,
                l.arn,
                suggest_port(port)
            ))),
        }
    }

    /// CreateListener. Creating a listener that exists on the same port
    /// with the same settings returns it.
    pub async fn create_listener(
        &self,
        spec: CreateListenerSpec,
        ids: &dyn IdSource,
    ) -> Result<ListenerRecord, ElbError> {
        let protocol = check_protocol(spec.protocol.as_deref())?.ok_or_else(|| {
            ElbError::validation("Protocol: a listener needs a protocol (HTTP or HTTPS)")
        })?;
        let port =
            check_port(spec.port.ok_or_else(|| {
                ElbError::validation("Port: a listener needs a port (1 to 65535)")
            })?)?;
        check_extras(
            &spec.alpn_policy,
            spec.mutual_authentication_mode.as_deref(),
        )?;
        let ssl_policy = ssl_policy(&protocol, spec.ssl_policy.as_deref(), None)?;
        let certificates = self
            .check_certificates(&protocol, &spec.certificates)
            .await?;
        let default_actions = spec::actions("DefaultActions", &spec.default_actions)?;
        let tags = spec::tags("Tags", &spec.tags)?;
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (lb, lb_rev) = self
                .lb_by_arn("LoadBalancerArn", &spec.load_balancer_arn)
                .await?;
            let existing = self
                .list_decoded::<ListenerRecord>(&keys::elb_lb_listeners(&lb.name))
                .await?;
            if let Some((l, _)) = existing.iter().find(|(l, _)| l.port == port) {
                if l.protocol == protocol
                    && l.certificates == certificates
                    && l.ssl_policy == ssl_policy
                    && l.default_actions == default_actions
                {
                    return Ok(l.clone());
                }
                return Err(ElbError::DuplicateListener(format!(
                    "load balancer '{}' already has a listener on port {port} ({}) with other settings; use ModifyListener to change it",
                    lb.name, l.arn
                )));
            }
            if existing.len() >= MAX_LISTENERS_PER_LB {
                return Err(ElbError::TooManyListeners(format!(
                    "load balancer '{}' has {} listeners, the most it may have",
                    lb.name,
                    existing.len()
                )));
            }
            let claim_rev = self.claim_port(&lb, port, None).await?;
            let tg_guards = self.check_forwards(&default_actions, &lb.arn).await?;
            let id = arn::new_id(ids.next_u128());
            let listener = ListenerRecord {
                arn: arn::listener(&self.scope, &lb.name, &lb.id, &id),
                id: id.clone(),
                load_balancer_arn: lb.arn.clone(),
                lb_name: lb.name.clone(),
                port,
                protocol: protocol.clone(),
                certificates: certificates.clone(),
                ssl_policy: ssl_policy.clone(),
                default_actions: default_actions.clone(),
                tags: tags.clone(),
            };
            let key = keys::elb_listener(&lb.name, &id);
            let lb_key = keys::elb_lb(&lb.name);
            let port_key = keys::elb_port(port);
            let mut txn = Txn::new()
                .when(Compare::ModRevision(lb_key.clone(), lb_rev))
                .when(Compare::ModRevision(key.clone(), 0))
                .when(Compare::ModRevision(port_key.clone(), claim_rev));
            for (k, rev) in tg_guards {
                txn = txn.when(Compare::ModRevision(k, rev));
            }
            // Rewriting the load balancer makes a concurrent delete of it
            // (on another replica) fail its guard instead of orphaning this.
            txn = txn
                .then(Op::Put(key, encode(&listener)))
                .then(Op::Put(port_key, listener.arn.clone().into_bytes()))
                .then(Op::Put(lb_key, encode(&lb)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(listener);
            }
        }
        Err(ElbError::Contention(spec.load_balancer_arn))
    }

    /// DescribeListeners: a load balancer's listeners, or the listeners
    /// named (ListenerNotFound when one does not exist), by port.
    pub async fn describe_listeners(
        &self,
        lb_arn: Option<&str>,
        listener_arns: &[String],
        marker: Option<&str>,
        page_size_given: Option<i64>,
    ) -> Result<(Vec<ListenerRecord>, Option<String>), ElbError> {
        let size = page_size(page_size_given)?;
        let mut found = match (lb_arn, listener_arns.is_empty()) {
            (Some(_), false) => {
                return Err(ElbError::validation(
                    "give LoadBalancerArn or ListenerArns, not both",
                ))
            }
            (None, true) => return Err(ElbError::validation(
                "give LoadBalancerArn or ListenerArns: a load balancer or one or more listeners",
            )),
            (Some(a), true) => {
                let (lb, _) = self.lb_by_arn("LoadBalancerArn", a).await?;
                self.list_decoded::<ListenerRecord>(&keys::elb_lb_listeners(&lb.name))
                    .await?
                    .into_iter()
                    .map(|(l, _)| l)
                    .collect::<Vec<_>>()
            }
            (None, false) => {
                let mut v = Vec::new();
                for a in listener_arns {
                    v.push(self.listener_by_arn("ListenerArns", a).await?.0);
                }
                v
            }
        };
        found.sort_by_key(listener_sort_key);
        found.dedup_by(|a, b| a.arn == b.arn);
        page(found, listener_sort_key, marker, size)
    }

    /// ModifyListener: changes the port (moving the claim), the protocol,
    /// the certificates, the SSL policy or the default actions.
    pub async fn modify_listener(
        &self,
        spec: ModifyListenerSpec,
    ) -> Result<ListenerRecord, ElbError> {
        let new_protocol = check_protocol(spec.protocol.as_deref())?;
        let new_port = spec.port.map(check_port).transpose()?;
        check_extras(
            &spec.alpn_policy,
            spec.mutual_authentication_mode.as_deref(),
        )?;
        let new_actions = spec
            .default_actions
            .as_deref()
            .map(|a| spec::actions("DefaultActions", a))
            .transpose()?;
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (old, rev) = self
                .listener_by_arn("ListenerArn", &spec.listener_arn)
                .await?;
            let (lb, lb_rev) = self
                .lb_by_arn("LoadBalancerArn", &old.load_balancer_arn)
                .await?;
            let mut l = old.clone();
            if let Some(p) = &new_protocol {
                l.protocol.clone_from(p);
            }
            l.certificates = match (&spec.certificates, l.protocol.as_str()) {
                (Some(c), p) => self.check_certificates(p, c).await?,
                (None, "HTTP") => Vec::new(),
                (None, _) if old.certificates.is_empty() => {
                    self.check_certificates("HTTPS", &[]).await?
                }
                (None, _) => old.certificates.clone(),
            };
            l.ssl_policy = ssl_policy(
                &l.protocol,
                spec.ssl_policy.as_deref(),
                old.ssl_policy.as_deref(),
            )?;
            if let Some(a) = &new_actions {
                l.default_actions.clone_from(a);
            }
            let mut txn = Txn::new()
                .when(Compare::ModRevision(
                    keys::elb_listener(&l.lb_name, &l.id),
                    rev,
                ))
                .when(Compare::ModRevision(keys::elb_lb(&lb.name), lb_rev));
            if let Some(port) = new_port.filter(|p| *p != old.port) {
                let siblings = self
                    .list_decoded::<ListenerRecord>(&keys::elb_lb_listeners(&lb.name))
                    .await?;
                if let Some((other, _)) = siblings.iter().find(|(s, _)| s.port == port) {
                    return Err(ElbError::DuplicateListener(format!(
                        "load balancer '{}' already has a listener on port {port} ({})",
                        lb.name, other.arn
                    )));
                }
                let claim_rev = self.claim_port(&lb, port, Some(&l.arn)).await?;
                let new_key = keys::elb_port(port);
                txn = txn
                    .when(Compare::ModRevision(new_key.clone(), claim_rev))
                    .then(Op::Put(new_key, l.arn.clone().into_bytes()));
                let old_key = keys::elb_port(old.port);
                if let Some(kv) = self.store.get(&old_key).await? {
                    if kv.value == l.arn.as_bytes() {
                        txn = txn
                            .when(Compare::ModRevision(old_key.clone(), kv.mod_revision))
                            .then(Op::Delete(old_key));
                    }
                }
                l.port = port;
            }
            for (k, rev) in self.check_forwards(&l.default_actions, &lb.arn).await? {
                txn = txn.when(Compare::ModRevision(k, rev));
            }
            txn = txn.then(Op::Put(keys::elb_listener(&l.lb_name, &l.id), encode(&l)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(l);
            }
        }
        Err(ElbError::Contention(spec.listener_arn))
    }

    /// DeleteListener: deletes it with its rules and its port claim.
    pub async fn delete_listener(&self, listener_arn: &str) -> Result<(), ElbError> {
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (l, rev) = self.listener_by_arn("ListenerArn", listener_arn).await?;
            let txn = self.delete_listener_ops(Txn::new(), &l, rev).await?;
            if self.store.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(ElbError::Contention(listener_arn.to_string()))
    }
}

/// Listeners sort by load balancer, then port.
fn listener_sort_key(l: &ListenerRecord) -> String {
    format!("{}/{:05}", l.lb_name, l.port)
}

/// The SSL policy of a listener: HTTPS gets the given one, else the one it
/// had, else [`DEFAULT_SSL_POLICY`]; HTTP takes none.
fn ssl_policy(
    protocol: &str,
    given: Option<&str>,
    had: Option<&str>,
) -> Result<Option<String>, ElbError> {
    if protocol == "HTTP" {
        return match given {
            None => Ok(None),
            Some(_) => Err(ElbError::validation(
                "SslPolicy: an HTTP listener takes no SSL policy (use Protocol HTTPS, or leave SslPolicy out)",
            )),
        };
    }
    match given {
        Some(p) if p.starts_with("ELBSecurityPolicy-") && p.len() <= 128 => Ok(Some(p.to_string())),
        Some(p) => Err(ElbError::SslPolicyNotFound(format!(
            "SSL policy '{p}' not found; use an ELBSecurityPolicy-* name such as {DEFAULT_SSL_POLICY} (Berth offers rustls' safe defaults whatever the name)"
        ))),
        None => Ok(Some(had.unwrap_or(DEFAULT_SSL_POLICY).to_string())),
    }
}

/// A port to suggest instead of a taken one.
fn suggest_port(port: u16) -> u16 {
    if port < 65535 {
        port + 1
    } else {
        port - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_arns_map_to_files() {
        let d = Path::new("/data/certs");
        assert_eq!(
            certificate_paths(
                d,
                "us-east-1",
                "123456789012",
                "arn:aws:acm:us-east-1:123456789012:certificate/web.example"
            ),
            Some((d.join("web.example.crt"), d.join("web.example.key")))
        );
        for bad in [
            "arn:aws:acm:us-east-1:123456789012:certificate/../etc/passwd",
            "arn:aws:acm:us-east-1:123456789012:certificate/.hidden",
            "arn:aws:acm:us-east-1:123456789012:certificate/",
            "arn:aws:acm:eu-west-1:123456789012:certificate/web",
            "arn:aws:iam::123456789012:server-certificate/web",
        ] {
            assert_eq!(
                certificate_paths(d, "us-east-1", "123456789012", bad),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn ssl_policies() {
        assert_eq!(ssl_policy("HTTP", None, None).unwrap(), None);
        assert!(ssl_policy("HTTP", Some(DEFAULT_SSL_POLICY), None).is_err());
        assert_eq!(
            ssl_policy("HTTPS", None, None).unwrap().as_deref(),
            Some(DEFAULT_SSL_POLICY)
        );
        assert_eq!(
            ssl_policy("HTTPS", None, Some("ELBSecurityPolicy-TLS13-1-2-2021-06"))
                .unwrap()
                .as_deref(),
            Some("ELBSecurityPolicy-TLS13-1-2-2021-06")
        );
        assert!(matches!(
            ssl_policy("HTTPS", Some("Modern"), None),
            Err(ElbError::SslPolicyNotFound(_))
        ));
    }
}
