//! CreateRule, DescribeRules, ModifyRule, DeleteRule, SetRulePriorities.
//!
//! A rule is `/elb/rules/{listenerId}/{ruleId}`; its priority (1–50000) is
//! unique within its listener and lower priorities are evaluated first.
//! Every listener also has a *default rule*, which is not stored: it is the
//! listener's default actions, shown with priority `default` under the ARN
//! whose rule id is the listener's id. ModifyRule on it changes the
//! listener's default actions; it cannot be deleted or reprioritized.

use std::collections::{BTreeMap, BTreeSet};

use berth_core::elb::{Action, Condition, ListenerRecord, RuleRecord};
use berth_store::{Compare, Op, Txn};

use super::spec::{self, ActionSpec, ConditionSpec, TagSpec};
use super::{arn, backoff, encode, page, page_size, Elb, ElbArn, ElbError, MAX_RETRIES};
use crate::ids::IdSource;
use crate::keys;

/// A load balancer has at most this many rules, default rules not counted
/// (ELBv2's quota for application load balancers).
pub const MAX_RULES_PER_LB: usize = 100;

/// The priority sort key of the default rule (after every real priority).
const DEFAULT_SORT: u32 = 99_999;

/// What CreateRule asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateRuleSpec {
    /// The listener.
    pub listener_arn: String,
    /// At least one condition.
    pub conditions: Vec<ConditionSpec>,
    /// 1–50000, free in the listener.
    pub priority: Option<i64>,
    /// Exactly one action.
    pub actions: Vec<ActionSpec>,
    /// Whether `Transforms` were given (refused).
    pub transforms: bool,
    /// Tags.
    pub tags: Vec<TagSpec>,
}

/// What ModifyRule changes (absent members stay as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModifyRuleSpec {
    /// The rule.
    pub rule_arn: String,
    /// New conditions (not for the default rule).
    pub conditions: Option<Vec<ConditionSpec>>,
    /// New actions.
    pub actions: Option<Vec<ActionSpec>>,
    /// Whether `Transforms` were given (refused).
    pub transforms: bool,
}

/// A rule as DescribeRules shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleView {
    /// Its ARN.
    pub arn: String,
    /// The listener's ARN.
    pub listener_arn: String,
    /// `None` for the default rule.
    pub priority: Option<u32>,
    /// Empty for the default rule.
    pub conditions: Vec<Condition>,
    /// The actions.
    pub actions: Vec<Action>,
    /// Whether it is the listener's default rule.
    pub is_default: bool,
}

impl RuleView {
    fn of_rule(r: &RuleRecord) -> Self {
        Self {
            arn: r.arn.clone(),
            listener_arn: r.listener_arn.clone(),
            priority: Some(r.priority),
            conditions: r.conditions.clone(),
            actions: r.actions.clone(),
            is_default: false,
        }
    }

    fn default_of(l: &ListenerRecord) -> Self {
        Self {
            arn: arn::default_rule_of(&l.arn),
            listener_arn: l.arn.clone(),
            priority: None,
            conditions: Vec::new(),
            actions: l.default_actions.clone(),
            is_default: true,
        }
    }

    fn sort_key(&self) -> String {
        format!(
            "{}|{:05}",
            self.listener_arn,
            self.priority.unwrap_or(DEFAULT_SORT)
        )
    }
}

/// What a rule ARN names.
pub(super) enum RuleRef {
    /// A listener's default rule.
    Default(ListenerRecord, u64),
    /// A stored rule.
    Rule(RuleRecord, u64),
}

fn check_priority(field: &str, p: Option<i64>) -> Result<u32, ElbError> {
    let p =
        p.ok_or_else(|| ElbError::validation(format!("{field}: give a priority (1 to 50000)")))?;
    u32::try_from(p)
        .ok()
        .filter(|p| (1..=50_000).contains(p))
        .ok_or_else(|| ElbError::validation(format!("{field}: {p} is out of range (1 to 50000)")))
}

fn refuse_transforms(given: bool) -> Result<(), ElbError> {
    if given {
        Err(ElbError::validation(
            "Transforms: host header and URL rewrites are not supported by Berth; leave Transforms out",
        ))
    } else {
        Ok(())
    }
}

impl Elb {
    /// The rule (or default rule) an ARN names, or RuleNotFound.
    pub(super) async fn rule_by_arn(
        &self,
        field: &str,
        rule_arn: &str,
    ) -> Result<RuleRef, ElbError> {
        let ElbArn::Rule {
            lb_name,
            lb_id,
            listener_id,
            id,
        } = self.resolve(field, rule_arn, "rule")?
        else {
            return Err(super::not_found("rule", rule_arn));
        };
        let missing = || super::not_found("rule", rule_arn);
        if id == listener_id {
            let listener_arn = arn::listener(&self.scope, &lb_name, &lb_id, &listener_id);
            return match self
                .get_decoded::<ListenerRecord>(&keys::elb_listener(&lb_name, &listener_id))
                .await?
            {
                Some((l, rev)) if l.arn == listener_arn => Ok(RuleRef::Default(l, rev)),
                _ => Err(missing()),
            };
        }
        match self
            .get_decoded::<RuleRecord>(&keys::elb_rule(&listener_id, &id))
            .await?
        {
            Some((r, rev)) if r.arn == rule_arn => Ok(RuleRef::Rule(r, rev)),
            _ => Err(missing()),
        }
    }

    /// CreateRule.
    pub async fn create_rule(
        &self,
        spec: CreateRuleSpec,
        ids: &dyn IdSource,
    ) -> Result<RuleView, ElbError> {
        refuse_transforms(spec.transforms)?;
        let priority = check_priority("Priority", spec.priority)?;
        if spec.conditions.is_empty() {
            return Err(ElbError::validation(
                "Conditions: a rule needs at least one condition (the listener's default actions serve everything else)",
            ));
        }
        let conditions = spec::conditions(&spec.conditions)?;
        let actions = spec::actions("Actions", &spec.actions)?;
        let tags = spec::tags("Tags", &spec.tags)?;
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (l, l_rev) = self
                .listener_by_arn("ListenerArn", &spec.listener_arn)
                .await?;
            let rules = self
                .list_decoded::<RuleRecord>(&keys::elb_listener_rules(&l.id))
                .await?;
            if let Some((other, _)) = rules.iter().find(|(r, _)| r.priority == priority) {
                return Err(ElbError::PriorityInUse(format!(
                    "priority {priority} is in use by rule '{}' of this listener; choose another priority or change that rule's with SetRulePriorities",
                    other.arn
                )));
            }
            let lb_rules = self.rules_of_lb(&l.lb_name).await?;
            if lb_rules >= MAX_RULES_PER_LB {
                return Err(ElbError::TooManyRules(format!(
                    "load balancer '{}' has {lb_rules} rules, the most it may have",
                    l.lb_name
                )));
            }
            let tg_guards = self.check_forwards(&actions, &l.load_balancer_arn).await?;
            let mut id = arn::new_id(ids.next_u128());
            while id == l.id {
                id = arn::new_id(ids.next_u128());
            }
            let (lb_name, lb_id) = lb_parts(&l);
            let rule = RuleRecord {
                arn: arn::rule(&self.scope, &lb_name, &lb_id, &l.id, &id),
                id: id.clone(),
                listener_arn: l.arn.clone(),
                priority,
                conditions: conditions.clone(),
                actions: actions.clone(),
                tags: tags.clone(),
            };
            let key = keys::elb_rule(&l.id, &id);
            let l_key = keys::elb_listener(&l.lb_name, &l.id);
            let mut txn = Txn::new()
                .when(Compare::ModRevision(l_key.clone(), l_rev))
                .when(Compare::ModRevision(key.clone(), 0));
            for (k, rev) in tg_guards {
                txn = txn.when(Compare::ModRevision(k, rev));
            }
            // Rewriting the listener serialises rule writes of the listener
            // across replicas (two rules never take one priority) and makes a
            // concurrent delete of the listener fail instead of orphaning this.
            txn = txn
                .then(Op::Put(key, encode(&rule)))
                .then(Op::Put(l_key, encode(&l)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(RuleView::of_rule(&rule));
            }
        }
        Err(ElbError::Contention(spec.listener_arn))
    }

    /// How many rules the listeners of a load balancer have in all.
    async fn rules_of_lb(&self, lb_name: &str) -> Result<usize, ElbError> {
        let mut n = 0;
        for (l, _) in self
            .list_decoded::<ListenerRecord>(&keys::elb_lb_listeners(lb_name))
            .await?
        {
            n += self
                .store
                .list(&keys::elb_listener_rules(&l.id))
                .await?
                .items
                .len();
        }
        Ok(n)
    }

    /// DescribeRules: a listener's rules by priority and then its default
    /// rule, or the rules named (RuleNotFound when one does not exist).
    pub async fn describe_rules(
        &self,
        listener_arn: Option<&str>,
        rule_arns: &[String],
        marker: Option<&str>,
        page_size_given: Option<i64>,
    ) -> Result<(Vec<RuleView>, Option<String>), ElbError> {
        let size = page_size(page_size_given)?;
        let mut views = match (listener_arn, rule_arns.is_empty()) {
            (Some(_), false) => {
                return Err(ElbError::validation(
                    "give ListenerArn or RuleArns, not both",
                ))
            }
            (None, true) => {
                return Err(ElbError::validation(
                    "give ListenerArn or RuleArns: a listener or one or more rules",
                ))
            }
            (Some(a), true) => {
                let (l, _) = self.listener_by_arn("ListenerArn", a).await?;
                let mut v: Vec<RuleView> = self
                    .list_decoded::<RuleRecord>(&keys::elb_listener_rules(&l.id))
                    .await?
                    .iter()
                    .map(|(r, _)| RuleView::of_rule(r))
                    .collect();
                v.push(RuleView::default_of(&l));
                v
            }
            (None, false) => {
                let mut v = Vec::new();
                for a in rule_arns {
                    v.push(match self.rule_by_arn("RuleArns", a).await? {
                        RuleRef::Default(l, _) => RuleView::default_of(&l),
                        RuleRef::Rule(r, _) => RuleView::of_rule(&r),
                    });
                }
                v
            }
        };
        views.sort_by_key(RuleView::sort_key);
        views.dedup_by(|a, b| a.arn == b.arn);
        page(views, RuleView::sort_key, marker, size)
    }

    /// ModifyRule: new conditions and/or actions. On the default rule only
    /// the actions can change (they are the listener's default actions).
    pub async fn modify_rule(&self, spec: ModifyRuleSpec) -> Result<RuleView, ElbError> {
        refuse_transforms(spec.transforms)?;
        let conditions = match &spec.conditions {
            Some(c) if c.is_empty() => {
                return Err(ElbError::validation(
                    "Conditions: a rule needs at least one condition",
                ))
            }
            Some(c) => Some(spec::conditions(c)?),
            None => None,
        };
        let actions = spec
            .actions
            .as_deref()
            .map(|a| spec::actions("Actions", a))
            .transpose()?;
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (txn, view) = match self.rule_by_arn("RuleArn", &spec.rule_arn).await? {
                RuleRef::Default(mut l, rev) => {
                    if conditions.is_some() {
                        return Err(ElbError::OperationNotPermitted(format!(
                            "rule '{}' is the default rule of its listener: it has no conditions to change (only its actions)",
                            spec.rule_arn
                        )));
                    }
                    if let Some(a) = &actions {
                        l.default_actions.clone_from(a);
                    }
                    let mut txn = Txn::new();
                    for (k, r) in self
                        .check_forwards(&l.default_actions, &l.load_balancer_arn)
                        .await?
                    {
                        txn = txn.when(Compare::ModRevision(k, r));
                    }
                    let key = keys::elb_listener(&l.lb_name, &l.id);
                    let txn = txn
                        .when(Compare::ModRevision(key.clone(), rev))
                        .then(Op::Put(key, encode(&l)));
                    (txn, RuleView::default_of(&l))
                }
                RuleRef::Rule(mut r, rev) => {
                    if let Some(c) = &conditions {
                        r.conditions.clone_from(c);
                    }
                    if let Some(a) = &actions {
                        r.actions.clone_from(a);
                    }
                    let (l, l_rev) = self.listener_by_arn("ListenerArn", &r.listener_arn).await?;
                    let mut txn = Txn::new();
                    for (k, gr) in self
                        .check_forwards(&r.actions, &l.load_balancer_arn)
                        .await?
                    {
                        txn = txn.when(Compare::ModRevision(k, gr));
                    }
                    let key = keys::elb_rule(&l.id, &r.id);
                    let txn = txn
                        .when(Compare::ModRevision(key.clone(), rev))
                        .when(Compare::ModRevision(
                            keys::elb_listener(&l.lb_name, &l.id),
                            l_rev,
                        ))
                        .then(Op::Put(key, encode(&r)));
                    (txn, RuleView::of_rule(&r))
                }
            };
            if self.store.txn(txn).await?.succeeded {
                return Ok(view);
            }
        }
        Err(ElbError::Contention(spec.rule_arn))
    }

    /// DeleteRule. The default rule cannot be deleted (OperationNotPermitted).
    pub async fn delete_rule(&self, rule_arn: &str) -> Result<(), ElbError> {
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (r, rev) = match self.rule_by_arn("RuleArn", rule_arn).await? {
                RuleRef::Default(..) => {
                    return Err(ElbError::OperationNotPermitted(format!(
                        "rule '{rule_arn}' is the default rule of its listener and cannot be deleted; change its actions with ModifyRule or delete the listener"
                    )))
                }
                RuleRef::Rule(r, rev) => (r, rev),
            };
            let key = keys::elb_rule(arn::last_segment(&r.listener_arn), &r.id);
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Delete(key));
            if self.store.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(ElbError::Contention(rule_arn.to_string()))
    }

    /// SetRulePriorities: all the changes or none. PriorityInUse when two
    /// rules of one listener would share a priority.
    pub async fn set_rule_priorities(
        &self,
        pairs: &[(Option<String>, Option<i64>)],
    ) -> Result<Vec<RuleView>, ElbError> {
        if pairs.is_empty() {
            return Err(ElbError::validation(
                "RulePriorities: give at least one RuleArn/Priority pair",
            ));
        }
        let mut wanted: Vec<(String, u32)> = Vec::new();
        for (i, (a, p)) in pairs.iter().enumerate() {
            let n = i + 1;
            let a = a.clone().ok_or_else(|| {
                ElbError::validation(format!("RulePriorities[{n}].RuleArn: give the rule's ARN"))
            })?;
            let p = check_priority(&format!("RulePriorities[{n}].Priority"), *p)?;
            if wanted.iter().any(|(w, _)| *w == a) {
                return Err(ElbError::validation(format!(
                    "RulePriorities: rule '{a}' is given more than once"
                )));
            }
            wanted.push((a, p));
        }
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            // The rules named, and every rule of their listeners.
            let mut changed: Vec<RuleRecord> = Vec::new();
            let mut listeners: BTreeSet<String> = BTreeSet::new();
            let mut listener_arns: BTreeSet<String> = BTreeSet::new();
            for (a, p) in &wanted {
                match self.rule_by_arn("RuleArn", a).await? {
                    RuleRef::Default(..) => {
                        return Err(ElbError::OperationNotPermitted(format!(
                            "rule '{a}' is the default rule of its listener; its priority cannot be set"
                        )))
                    }
                    RuleRef::Rule(mut r, _) => {
                        r.priority = *p;
                        listeners.insert(arn::last_segment(&r.listener_arn).to_string());
                        listener_arns.insert(r.listener_arn.clone());
                        changed.push(r);
                    }
                }
            }
            let mut txn = Txn::new();
            // Rewriting the listeners serialises this with CreateRule.
            for la in &listener_arns {
                let (l, rev) = self.listener_by_arn("ListenerArn", la).await?;
                let key = keys::elb_listener(&l.lb_name, &l.id);
                txn = txn
                    .when(Compare::ModRevision(key.clone(), rev))
                    .then(Op::Put(key, encode(&l)));
            }
            for lid in &listeners {
                let all = self
                    .list_decoded::<RuleRecord>(&keys::elb_listener_rules(lid))
                    .await?;
                let mut taken: BTreeMap<u32, String> = BTreeMap::new();
                for (r, rev) in &all {
                    txn = txn.when(Compare::ModRevision(keys::elb_rule(lid, &r.id), *rev));
                    let r = changed.iter().find(|c| c.arn == r.arn).unwrap_or(r);
                    if let Some(other) = taken.insert(r.priority, r.arn.clone()) {
                        return Err(ElbError::PriorityInUse(format!(
                            "priority {} would be held by both rule '{other}' and rule '{}' of one listener; give each rule its own priority",
                            r.priority, r.arn
                        )));
                    }
                }
            }
            for r in &changed {
                let key = keys::elb_rule(arn::last_segment(&r.listener_arn), &r.id);
                txn = txn.then(Op::Put(key, encode(r)));
            }
            if self.store.txn(txn).await?.succeeded {
                let mut views: Vec<RuleView> = changed.iter().map(RuleView::of_rule).collect();
                views.sort_by_key(RuleView::sort_key);
                return Ok(views);
            }
        }
        Err(ElbError::Contention("rule priorities".into()))
    }
}

/// The load balancer name and id of a listener (from its ARN).
fn lb_parts(l: &ListenerRecord) -> (String, String) {
    let lb_id = arn::last_segment(&l.load_balancer_arn).to_string();
    (l.lb_name.clone(), lb_id)
}
