//! The one place where ELBv2 failures become wire errors: the error code
//! (`<Code>`) and HTTP status of botocore's model (`error.code`,
//! `error.httpStatusCode`).

use berth_control::ElbError;
use http::StatusCode;

/// The code and status of an ELBv2 failure. Every modeled client error is
/// 400; the store failing is the server's fault (500 `InternalFailure`).
pub fn wire(e: &ElbError) -> (StatusCode, &'static str) {
    let code = match e {
        ElbError::Validation(_) => "ValidationError",
        ElbError::LoadBalancerNotFound(_) => "LoadBalancerNotFound",
        ElbError::TargetGroupNotFound(_) => "TargetGroupNotFound",
        ElbError::ListenerNotFound(_) => "ListenerNotFound",
        ElbError::RuleNotFound(_) => "RuleNotFound",
        ElbError::DuplicateLoadBalancerName(_) => "DuplicateLoadBalancerName",
        ElbError::DuplicateTargetGroupName(_) => "DuplicateTargetGroupName",
        ElbError::DuplicateListener(_) => "DuplicateListener",
        ElbError::DuplicateTagKeys(_) => "DuplicateTagKeys",
        ElbError::PriorityInUse(_) => "PriorityInUse",
        ElbError::ResourceInUse(_) => "ResourceInUse",
        ElbError::InvalidTarget(_) => "InvalidTarget",
        ElbError::CertificateNotFound(_) => "CertificateNotFound",
        ElbError::InvalidConfigurationRequest(_) => "InvalidConfigurationRequest",
        ElbError::InvalidLoadBalancerAction(_) => "InvalidLoadBalancerAction",
        ElbError::OperationNotPermitted(_) => "OperationNotPermitted",
        ElbError::UnsupportedProtocol(_) => "UnsupportedProtocol",
        ElbError::SslPolicyNotFound(_) => "SSLPolicyNotFound",
        ElbError::TooManyTags(_) => "TooManyTags",
        ElbError::TooManyTargets(_) => "TooManyTargets",
        ElbError::TooManyListeners(_) => "TooManyListeners",
        ElbError::TooManyRules(_) => "TooManyRules",
        ElbError::TooManyCertificates(_) => "TooManyCertificates",
        ElbError::TooManyActions(_) => "TooManyActions",
        ElbError::TargetGroupAssociationLimit(_) => "TargetGroupAssociationLimit",
        // AWS answers a burst of conflicting writers with Throttling (400),
        // which SDKs retry.
        ElbError::Contention(_) => "Throttling",
        ElbError::Store(_) | ElbError::Corrupt { .. } => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure")
        }
    };
    (StatusCode::BAD_REQUEST, code)
}

/// The code of an operation this endpoint does not know.
pub const INVALID_ACTION: &str = "InvalidAction";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code is one botocore's model declares (or a common Query error).
    #[test]
    fn codes_are_the_models() {
        let model_codes = [
            "ValidationError",
            "LoadBalancerNotFound",
            "TargetGroupNotFound",
            "ListenerNotFound",
            "RuleNotFound",
            "DuplicateLoadBalancerName",
            "DuplicateTargetGroupName",
            "DuplicateListener",
            "DuplicateTagKeys",
            "PriorityInUse",
            "ResourceInUse",
            "InvalidTarget",
            "CertificateNotFound",
            "InvalidConfigurationRequest",
            "InvalidLoadBalancerAction",
            "OperationNotPermitted",
            "UnsupportedProtocol",
            "SSLPolicyNotFound",
            "TooManyTags",
            "TooManyTargets",
            "TooManyListeners",
            "TooManyRules",
            "TooManyCertificates",
            "TooManyActions",
            "TargetGroupAssociationLimit",
            "Throttling",
        ];
        let all = [
            ElbError::Validation(String::new()),
            ElbError::TargetGroupNotFound(String::new()),
            ElbError::SslPolicyNotFound(String::new()),
            ElbError::Contention(String::new()),
        ];
        for e in &all {
            let (status, code) = wire(e);
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(model_codes.contains(&code), "{code}");
        }
        let (status, code) = wire(&ElbError::Corrupt {
            key: "k".into(),
            reason: "r".into(),
        });
        assert_eq!(
            (status, code),
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure")
        );
    }
}
