//! How a task or a service's tasks are launched: the `awsvpc` network
//! configuration and the capacity provider strategy, shared by RunTask and
//! the service operations.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A capacity provider strategy item (FARGATE or FARGATE_SPOT).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProviderStrategyItem {
    /// FARGATE or FARGATE_SPOT.
    pub capacity_provider: Option<String>,
    /// Relative share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Tasks placed on this provider first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<i64>,
}

/// The VPC part of a network configuration (accepted and echoed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsVpcConfiguration {
    /// Subnets; the first names the task's attachment subnet.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Security groups (not enforced yet).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// ENABLED or DISABLED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign_public_ip: Option<String>,
}

/// A task's or service's `networkConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfiguration {
    /// The awsvpc settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awsvpc_configuration: Option<AwsVpcConfiguration>,
}

impl NetworkConfiguration {
    /// Checks the limits ECS applies: 1 to 16 subnets, at most 5 security
    /// groups, `assignPublicIp` ENABLED or DISABLED.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let Some(vpc) = &self.awsvpc_configuration else {
            return Ok(());
        };
        if vpc.subnets.is_empty() || vpc.subnets.len() > 16 {
            return Err(ValidationError::invalid(
                "networkConfiguration.awsvpcConfiguration.subnets must list 1 to 16 subnets",
            ));
        }
        if vpc.security_groups.len() > 5 {
            return Err(ValidationError::invalid(
                "networkConfiguration.awsvpcConfiguration.securityGroups may list at most 5 groups",
            ));
        }
        match vpc.assign_public_ip.as_deref() {
            None | Some("ENABLED" | "DISABLED") => Ok(()),
            Some(o) => Err(ValidationError::invalid(format!(
                "assignPublicIp {o:?} is not valid; use ENABLED or DISABLED"
            ))),
        }
    }

    /// The first subnet, which a task's attachment names.
    pub fn first_subnet(&self) -> Option<&str> {
        self.awsvpc_configuration
            .as_ref()
            .and_then(|v| v.subnets.first())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_limits() {
        let mut n = NetworkConfiguration {
            awsvpc_configuration: Some(AwsVpcConfiguration::default()),
        };
        assert!(n.validate().is_err());
        n.awsvpc_configuration.as_mut().unwrap().subnets = vec!["subnet-1".into()];
        assert!(n.validate().is_ok());
        assert_eq!(n.first_subnet(), Some("subnet-1"));
        n.awsvpc_configuration.as_mut().unwrap().assign_public_ip = Some("YES".into());
        assert!(n.validate().is_err());
        assert!(NetworkConfiguration::default().validate().is_ok());
    }
}
