//! CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer and the
//! load balancer attributes.
//!
//! A load balancer is `/elb/lbs/{name}`. It is `active` as soon as it is
//! written: the data path starts its listeners within about a second.
//! Deleting it deletes its listeners, their rules and their port claims in
//! the same transaction.

use berth_core::elb::{ListenerRecord, LoadBalancerRecord, RuleRecord};
use berth_core::Timestamp;
use berth_store::{Compare, Op, Txn};

use super::spec::{self, TagSpec};
use super::{arn, attributes, backoff, encode, page, page_size, Elb, ElbError, MAX_RETRIES};
use crate::ids::IdSource;
use crate::keys;

/// What CreateLoadBalancer asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateLoadBalancerSpec {
    /// 1–32 alphanumerics and hyphens, not starting with `internal-`.
    pub name: String,
    /// Subnet ids (recorded; one availability zone is shown per subnet).
    pub subnets: Vec<String>,
    /// `SubnetMappings[].SubnetId` (recorded like `subnets`).
    pub subnet_mappings: Vec<String>,
    /// Whether a subnet mapping gave an allocation id or a private or IPv6
    /// address (refused: application load balancers take none).
    pub subnet_mapping_addresses: bool,
    /// Security group ids (recorded).
    pub security_groups: Vec<String>,
    /// `internet-facing` (default) or `internal`.
    pub scheme: Option<String>,
    /// `application` (default); `network` and `gateway` are refused.
    pub lb_type: Option<String>,
    /// `ipv4` (default).
    pub ip_address_type: Option<String>,
    /// Refused when given.
    pub customer_owned_ipv4_pool: Option<String>,
    /// Tags.
    pub tags: Vec<TagSpec>,
}

/// One availability zone of a load balancer as ELBv2 shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityZone {
    /// `{region}a`, `{region}b`, ...
    pub zone_name: String,
    /// The subnet it stands for, if subnets were given.
    pub subnet_id: Option<String>,
}

/// The availability zones shown for a load balancer: one per subnet (zones
/// `a`, `b`, ... of the region), or one `{region}a` zone without subnets.
pub fn availability_zones(lb: &LoadBalancerRecord, region: &str) -> Vec<AvailabilityZone> {
    if lb.subnets.is_empty() {
        return vec![AvailabilityZone {
            zone_name: format!("{region}a"),
            subnet_id: None,
        }];
    }
    lb.subnets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let letter = char::from(b'a' + u8::try_from(i % 26).unwrap_or(0));
            AvailabilityZone {
                zone_name: format!("{region}{letter}"),
                subnet_id: Some(s.clone()),
            }
        })
        .collect()
}

/// Checks a load balancer name as ELBv2 does.
pub fn check_lb_name(name: &str) -> Result<(), ElbError> {
    if name.is_empty() || name.len() > 32 {
        return Err(ElbError::validation(format!(
            "Name: load balancer name '{name}' must be 1 to 32 characters"
        )));
    }
    if !arn::valid_name(name) {
        return Err(ElbError::validation(format!(
            "Name: load balancer name '{name}' may hold only letters, digits and hyphens, and must not begin or end with a hyphen"
        )));
    }
    if name.to_ascii_lowercase().starts_with("internal-") {
        return Err(ElbError::validation(format!(
            "Name: load balancer name '{name}' must not begin with 'internal-'"
        )));
    }
    Ok(())
}

impl Elb {
    /// CreateLoadBalancer. Creating one that exists with the same settings
    /// returns it (as ELBv2 does); with other settings it is
    /// DuplicateLoadBalancerName.
    pub async fn create_load_balancer(
        &self,
        spec: CreateLoadBalancerSpec,
        ids: &dyn IdSource,
        now: Timestamp,
    ) -> Result<LoadBalancerRecord, ElbError> {
        check_lb_name(&spec.name)?;
        match spec.lb_type.as_deref() {
            None | Some("application") => {}
            Some(t @ ("network" | "gateway")) => {
                return Err(ElbError::validation(format!(
                    "Type: Berth serves application load balancers only; '{t}' load balancers are not available (use Type application, or leave it out)"
                )))
            }
            Some(t) => {
                return Err(ElbError::validation(format!(
                    "Type: '{t}' is not a load balancer type (use application)"
                )))
            }
        }
        let scheme = spec
            .scheme
            .clone()
            .unwrap_or_else(|| "internet-facing".into());
        if !matches!(scheme.as_str(), "internet-facing" | "internal") {
            return Err(ElbError::validation(format!(
                "Scheme: '{scheme}' is not valid (use internet-facing or internal)"
            )));
        }
        match spec.ip_address_type.as_deref() {
            None | Some("ipv4") => {}
            Some(t) => {
                return Err(ElbError::validation(format!(
                    "IpAddressType: Berth load balancers are IPv4 only; '{t}' is not available (use ipv4)"
                )))
            }
        }
        if spec.customer_owned_ipv4_pool.is_some() {
            return Err(ElbError::validation(
                "CustomerOwnedIpv4Pool: customer-owned address pools are not available in Berth",
            ));
        }
        if spec.subnet_mapping_addresses {
            return Err(ElbError::validation(
                "SubnetMappings: application load balancers take no allocation ids or fixed addresses; give SubnetId only",
            ));
        }
        if !spec.subnets.is_empty() && !spec.subnet_mappings.is_empty() {
            return Err(ElbError::validation(
                "give Subnets or SubnetMappings, not both",
            ));
        }
        let subnets = if spec.subnets.is_empty() {
            spec.subnet_mappings.clone()
        } else {
            spec.subnets.clone()
        };
        for (field, list) in [
            ("Subnets", &subnets),
            ("SecurityGroups", &spec.security_groups),
        ] {
            for (i, s) in list.iter().enumerate() {
                if s.is_empty() || s.len() > 255 {
                    return Err(ElbError::validation(format!(
                        "{field}[{}]: an id must be 1 to 255 characters",
                        i + 1
                    )));
                }
                if list[..i].contains(s) {
                    return Err(ElbError::validation(format!(
                        "{field}: '{s}' is given more than once"
                    )));
                }
            }
        }
        let tags = spec::tags("Tags", &spec.tags)?;

        let key = keys::elb_lb(&spec.name);
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            if let Some((existing, _)) = self.lb_by_name(&spec.name).await? {
                let same = existing.scheme == scheme
                    && existing.subnets == subnets
                    && existing.security_groups == spec.security_groups
                    && existing.ip_address_type == "ipv4";
                if same {
                    return Ok(existing);
                }
                return Err(ElbError::DuplicateLoadBalancerName(format!(
                    "a load balancer named '{}' already exists with other settings; choose another name or delete it first",
                    spec.name
                )));
            }
            let id = arn::new_id(ids.next_u128());
            let lb = LoadBalancerRecord {
                arn: arn::load_balancer(&self.scope, &spec.name, &id),
                name: spec.name.clone(),
                dns_name: format!(
                    "{}-{id}.{}.elb.localhost",
                    spec.name.to_ascii_lowercase(),
                    self.scope.region
                ),
                id,
                scheme: scheme.clone(),
                lb_type: "application".into(),
                ip_address_type: "ipv4".into(),
                subnets: subnets.clone(),
                security_groups: spec.security_groups.clone(),
                attributes: Default::default(),
                tags: tags.clone(),
                created: now,
            };
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), 0))
                .then(Op::Put(key.clone(), encode(&lb)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(lb);
            }
        }
        Err(ElbError::Contention(key))
    }

    /// DescribeLoadBalancers: all of them (by name), or the ones named by
    /// ARN or by name (LoadBalancerNotFound when one does not exist), a page
    /// at a time.
    pub async fn describe_load_balancers(
        &self,
        arns: &[String],
        names: &[String],
        marker: Option<&str>,
        page_size_given: Option<i64>,
    ) -> Result<(Vec<LoadBalancerRecord>, Option<String>), ElbError> {
        let size = page_size(page_size_given)?;
        if !arns.is_empty() && !names.is_empty() {
            return Err(ElbError::validation(
                "give LoadBalancerArns or Names, not both",
            ));
        }
        if arns.len() > 20 || names.len() > 20 {
            return Err(ElbError::validation(
                "describe at most 20 load balancers by ARN or name per call",
            ));
        }
        let mut found = Vec::new();
        if !arns.is_empty() {
            for a in arns {
                found.push(self.lb_by_arn("LoadBalancerArns", a).await?.0);
            }
        } else if !names.is_empty() {
            for n in names {
                match self.lb_by_name(n).await? {
                    Some((lb, _)) if arn::valid_name(n) => found.push(lb),
                    _ => {
                        return Err(ElbError::LoadBalancerNotFound(format!(
                            "load balancer '{n}' not found"
                        )))
                    }
                }
            }
        } else {
            found = self
                .list_decoded::<LoadBalancerRecord>(keys::ELB_LBS)
                .await?
                .into_iter()
                .map(|(lb, _)| lb)
                .collect();
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found.dedup_by(|a, b| a.arn == b.arn);
        page(found, |lb| lb.name.clone(), marker, size)
    }

    /// DeleteLoadBalancer: deletes it with its listeners, their rules and
    /// their port claims. A load balancer that does not exist is already
    /// deleted (success, as ELBv2 answers). Deletion protection refuses.
    pub async fn delete_load_balancer(&self, lb_arn: &str) -> Result<(), ElbError> {
        // A malformed ARN is still a ValidationError; a foreign one is gone.
        if let Err(e @ ElbError::Validation(_)) =
            self.resolve("LoadBalancerArn", lb_arn, "load balancer")
        {
            return Err(e);
        }
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (lb, lb_rev) = match self.lb_by_arn("LoadBalancerArn", lb_arn).await {
                Ok(v) => v,
                Err(ElbError::LoadBalancerNotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            if attributes::deletion_protected(&lb.attributes) {
                return Err(ElbError::OperationNotPermitted(format!(
                    "load balancer '{}' has deletion protection on; set deletion_protection.enabled to false (ModifyLoadBalancerAttributes) first",
                    lb.name
                )));
            }
            let mut txn = Txn::new()
                .when(Compare::ModRevision(keys::elb_lb(&lb.name), lb_rev))
                .then(Op::Delete(keys::elb_lb(&lb.name)));
            for (l, rev) in self
                .list_decoded::<ListenerRecord>(&keys::elb_lb_listeners(&lb.name))
                .await?
            {
                txn = self.delete_listener_ops(txn, &l, rev).await?;
            }
            if self.store.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(ElbError::Contention(lb_arn.to_string()))
    }

    /// Adds to `txn` the deletion of a listener (guarded by `rev`), its rules
    /// and its port claim (if it still holds it).
    pub(super) async fn delete_listener_ops(
        &self,
        mut txn: Txn,
        l: &ListenerRecord,
        rev: u64,
    ) -> Result<Txn, ElbError> {
        let key = keys::elb_listener(&l.lb_name, &l.id);
        txn = txn
            .when(Compare::ModRevision(key.clone(), rev))
            .then(Op::Delete(key));
        for (r, rrev) in self
            .list_decoded::<RuleRecord>(&keys::elb_listener_rules(&l.id))
            .await?
        {
            let rkey = keys::elb_rule(&l.id, &r.id);
            txn = txn
                .when(Compare::ModRevision(rkey.clone(), rrev))
                .then(Op::Delete(rkey));
        }
        let port_key = keys::elb_port(l.port);
        if let Some(kv) = self.store.get(&port_key).await? {
            if kv.value == l.arn.as_bytes() {
                txn = txn
                    .when(Compare::ModRevision(port_key.clone(), kv.mod_revision))
                    .then(Op::Delete(port_key));
            }
        }
        Ok(txn)
    }

    /// DescribeLoadBalancerAttributes: every attribute, defaults filled in.
    pub async fn load_balancer_attributes(
        &self,
        lb_arn: &str,
    ) -> Result<Vec<(String, String)>, ElbError> {
        let (lb, _) = self.lb_by_arn("LoadBalancerArn", lb_arn).await?;
        Ok(attributes::lb_view(&lb.attributes))
    }

    /// ModifyLoadBalancerAttributes: sets the given attributes (all or none)
    /// and returns every attribute.
    pub async fn modify_load_balancer_attributes(
        &self,
        lb_arn: &str,
        changes: &[(String, String)],
    ) -> Result<Vec<(String, String)>, ElbError> {
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut lb, rev) = self.lb_by_arn("LoadBalancerArn", lb_arn).await?;
            attributes::apply_lb(&mut lb.attributes, changes)?;
            let key = keys::elb_lb(&lb.name);
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(key, encode(&lb)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(attributes::lb_view(&lb.attributes));
            }
        }
        Err(ElbError::Contention(lb_arn.to_string()))
    }
}
