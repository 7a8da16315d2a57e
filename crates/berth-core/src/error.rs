//! Validation failures, classified the way ECS classifies them.

/// Which ECS error type a validation failure becomes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationKind {
    /// `ClientException`: the request is well formed but not acceptable
    /// (an invalid task size, a missing essential container, ...).
    Client,
    /// `InvalidParameterException`: a parameter has a bad format or range.
    InvalidParameter,
}

/// A request Berth refuses, with a message that names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// How the failure is reported on the wire.
    pub kind: ValidationKind,
    /// Lowercase, names the field and says what to do.
    pub message: String,
}

impl ValidationError {
    /// A `ClientException`-class failure.
    pub fn client(message: impl Into<String>) -> Self {
        Self {
            kind: ValidationKind::Client,
            message: message.into(),
        }
    }

    /// An `InvalidParameterException`-class failure.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: ValidationKind::InvalidParameter,
            message: message.into(),
        }
    }
}
