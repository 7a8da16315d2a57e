//! The ways an ELBv2 operation fails, before they become wire errors.
//!
//! Each variant is one error code of botocore's ELBv2 model (the name minus
//! `Exception`); `berth-api` maps them to the wire in one place
//! (`berth_api::elbv2::error`). The message is the text the client sees: it
//! names the field or resource and says what to do.

use berth_store::StoreError;

/// An ELBv2 operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ElbError {
    /// a parameter is missing, malformed or out of range (`ValidationError`)
    #[error("{0}")]
    Validation(String),
    /// the load balancer does not exist (`LoadBalancerNotFound`)
    #[error("{0}")]
    LoadBalancerNotFound(String),
    /// the target group does not exist (`TargetGroupNotFound`)
    #[error("{0}")]
    TargetGroupNotFound(String),
    /// the listener does not exist (`ListenerNotFound`)
    #[error("{0}")]
    ListenerNotFound(String),
    /// the rule does not exist (`RuleNotFound`)
    #[error("{0}")]
    RuleNotFound(String),
    /// a load balancer of this name exists with other settings
    #[error("{0}")]
    DuplicateLoadBalancerName(String),
    /// a target group of this name exists with other settings
    #[error("{0}")]
    DuplicateTargetGroupName(String),
    /// the load balancer already has a listener on this port
    #[error("{0}")]
    DuplicateListener(String),
    /// a tag key appears twice in one request
    #[error("{0}")]
    DuplicateTagKeys(String),
    /// another rule of the listener has this priority
    #[error("{0}")]
    PriorityInUse(String),
    /// the resource is used by another (a target group a listener forwards to)
    #[error("{0}")]
    ResourceInUse(String),
    /// a target is not a valid address, or not registered
    #[error("{0}")]
    InvalidTarget(String),
    /// the certificate's files do not exist
    #[error("{0}")]
    CertificateNotFound(String),
    /// the request is well formed but cannot be applied (a machine port
    /// another load balancer holds, a feature Berth does not offer)
    #[error("{0}")]
    InvalidConfigurationRequest(String),
    /// an action is not valid (a redirect loop, several terminal actions)
    #[error("{0}")]
    InvalidLoadBalancerAction(String),
    /// the operation is not allowed on this resource (the default rule,
    /// deletion protection)
    #[error("{0}")]
    OperationNotPermitted(String),
    /// a listener protocol an application load balancer does not speak
    #[error("{0}")]
    UnsupportedProtocol(String),
    /// an unknown SSL policy
    #[error("{0}")]
    SslPolicyNotFound(String),
    /// a resource would carry more than 50 tags
    #[error("{0}")]
    TooManyTags(String),
    /// a target group would hold more than its limit of targets
    #[error("{0}")]
    TooManyTargets(String),
    /// a load balancer would have more than its limit of listeners
    #[error("{0}")]
    TooManyListeners(String),
    /// a load balancer would have more than its limit of rules
    #[error("{0}")]
    TooManyRules(String),
    /// more certificates than a listener takes in one call
    #[error("{0}")]
    TooManyCertificates(String),
    /// more actions than a rule takes
    #[error("{0}")]
    TooManyActions(String),
    /// a target group is already used by another load balancer
    #[error("{0}")]
    TargetGroupAssociationLimit(String),
    /// the state store failed
    #[error(transparent)]
    Store(#[from] StoreError),
    /// a stored record could not be decoded
    #[error("stored record {key} is not valid: {reason}")]
    Corrupt {
        /// The store key.
        key: String,
        /// What failed to decode.
        reason: String,
    },
    /// the write kept conflicting with concurrent writers
    #[error("too many concurrent attempts to update {0}; retry the request")]
    Contention(String),
}

impl ElbError {
    /// A `ValidationError`.
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::Validation(msg.into())
    }
}
