//! AddTags, RemoveTags, DescribeTags on load balancers, target groups,
//! listeners and rules. The tags live in each resource's record; a
//! listener's default rule (which has no record) carries none.

use std::collections::BTreeMap;

use berth_core::elb::{ListenerRecord, LoadBalancerRecord, RuleRecord, TargetGroupRecord};
use berth_store::{Compare, Op, Txn};

use super::rules::RuleRef;
use super::spec::{self, TagSpec, MAX_TAGS};
use super::{backoff, encode, Elb, ElbArn, ElbError, MAX_RETRIES};
use crate::keys;

/// DescribeTags, AddTags and RemoveTags take at most this many ARNs.
pub const MAX_TAG_RESOURCES: usize = 20;

/// A taggable record, its key and mod revision.
enum Tagged {
    Lb(LoadBalancerRecord),
    Tg(TargetGroupRecord),
    Listener(ListenerRecord),
    Rule(RuleRecord),
    DefaultRule,
}

impl Tagged {
    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            Self::Lb(r) => Some(&r.tags),
            Self::Tg(r) => Some(&r.tags),
            Self::Listener(r) => Some(&r.tags),
            Self::Rule(r) => Some(&r.tags),
            Self::DefaultRule => None,
        }
    }

    fn tags_mut(&mut self) -> Option<&mut BTreeMap<String, String>> {
        match self {
            Self::Lb(r) => Some(&mut r.tags),
            Self::Tg(r) => Some(&mut r.tags),
            Self::Listener(r) => Some(&mut r.tags),
            Self::Rule(r) => Some(&mut r.tags),
            Self::DefaultRule => None,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Lb(r) => encode(r),
            Self::Tg(r) => encode(r),
            Self::Listener(r) => encode(r),
            Self::Rule(r) => encode(r),
            Self::DefaultRule => Vec::new(),
        }
    }
}

fn check_arns(arns: &[String]) -> Result<(), ElbError> {
    if arns.is_empty() {
        return Err(ElbError::validation(
            "ResourceArns: give at least one resource ARN",
        ));
    }
    if arns.len() > MAX_TAG_RESOURCES {
        return Err(ElbError::validation(format!(
            "ResourceArns: {} ARNs were given; give at most {MAX_TAG_RESOURCES}",
            arns.len()
        )));
    }
    Ok(())
}

impl Elb {
    /// The record an ARN names, its key and its mod revision.
    async fn tagged(&self, resource_arn: &str) -> Result<(String, Tagged, u64), ElbError> {
        let kind = match ElbArn::parse(resource_arn, &self.scope) {
            Ok(a) => a.kind(),
            Err(super::arn::ArnProblem::Foreign) => {
                // Well formed, not here: NotFound of its kind.
                let kind = if resource_arn.contains(":targetgroup/") {
                    "target group"
                } else if resource_arn.contains(":listener-rule/") {
                    "rule"
                } else if resource_arn.contains(":listener/") {
                    "listener"
                } else {
                    "load balancer"
                };
                return Err(super::not_found(kind, resource_arn));
            }
            Err(super::arn::ArnProblem::Malformed) => {
                return Err(ElbError::validation(format!(
                    "ResourceArns: '{resource_arn}' is not the ARN of a load balancer, target group, listener or rule"
                )))
            }
        };
        Ok(match kind {
            "load balancer" => {
                let (r, rev) = self.lb_by_arn("ResourceArns", resource_arn).await?;
                (keys::elb_lb(&r.name), Tagged::Lb(r), rev)
            }
            "target group" => {
                let (r, rev) = self.tg_by_arn("ResourceArns", resource_arn).await?;
                (keys::elb_tg(&r.name), Tagged::Tg(r), rev)
            }
            "listener" => {
                let (r, rev) = self.listener_by_arn("ResourceArns", resource_arn).await?;
                (
                    keys::elb_listener(&r.lb_name, &r.id),
                    Tagged::Listener(r),
                    rev,
                )
            }
            _ => match self.rule_by_arn("ResourceArns", resource_arn).await? {
                RuleRef::Default(..) => (String::new(), Tagged::DefaultRule, 0),
                RuleRef::Rule(r, rev) => {
                    let lid = super::arn::last_segment(&r.listener_arn).to_string();
                    (keys::elb_rule(&lid, &r.id), Tagged::Rule(r), rev)
                }
            },
        })
    }

    /// Applies `f` to the tags of every resource named, in one transaction.
    async fn retag(
        &self,
        arns: &[String],
        f: impl Fn(&str, &mut BTreeMap<String, String>) -> Result<(), ElbError>,
    ) -> Result<(), ElbError> {
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let mut txn = Txn::new();
            for a in arns {
                let (key, mut rec, rev) = self.tagged(a).await?;
                let Some(tags) = rec.tags_mut() else {
                    return Err(ElbError::validation(format!(
                        "ResourceArns: '{a}' is the default rule of a listener, which Berth does not tag; tag the listener instead"
                    )));
                };
                f(a, tags)?;
                txn = txn
                    .when(Compare::ModRevision(key.clone(), rev))
                    .then(Op::Put(key, rec.encode()));
            }
            if self.store.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(ElbError::Contention("tags".into()))
    }

    /// AddTags: adds or replaces tags on every resource named (all or none).
    pub async fn add_tags(&self, arns: &[String], tags: &[TagSpec]) -> Result<(), ElbError> {
        check_arns(arns)?;
        if tags.is_empty() {
            return Err(ElbError::validation("Tags: give at least one tag"));
        }
        let new = spec::tags("Tags", tags)?;
        self.retag(arns, |arn, existing| {
            let after = existing.len() + new.keys().filter(|k| !existing.contains_key(*k)).count();
            if after > MAX_TAGS {
                return Err(ElbError::TooManyTags(format!(
                    "'{arn}' would carry {after} tags; a resource carries at most {MAX_TAGS} (remove some with RemoveTags)"
                )));
            }
            existing.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
            Ok(())
        })
        .await
    }

    /// RemoveTags: removes tags by key from every resource named.
    pub async fn remove_tags(&self, arns: &[String], tag_keys: &[String]) -> Result<(), ElbError> {
        check_arns(arns)?;
        if tag_keys.is_empty() {
            return Err(ElbError::validation("TagKeys: give at least one tag key"));
        }
        self.retag(arns, |_, existing| {
            for k in tag_keys {
                existing.remove(k);
            }
            Ok(())
        })
        .await
    }

    /// DescribeTags: the tags of every resource named, in request order.
    pub async fn describe_tags(
        &self,
        arns: &[String],
    ) -> Result<Vec<(String, BTreeMap<String, String>)>, ElbError> {
        check_arns(arns)?;
        let mut out = Vec::new();
        for a in arns {
            let (_, rec, _) = self.tagged(a).await?;
            out.push((a.clone(), rec.tags().cloned().unwrap_or_default()));
        }
        Ok(out)
    }
}
