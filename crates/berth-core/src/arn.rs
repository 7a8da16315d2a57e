//! Amazon Resource Names for the resources Berth manages.
//!
//! Berth uses the `aws` partition and the `ecs` service so that clients and
//! tools which parse ARNs keep working: `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`,
//! `arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION`,
//! `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME`.

use std::fmt;

/// The region and account every ARN of one Berth installation carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The region name, e.g. `us-east-1`.
    pub region: String,
    /// The 12-digit account id created with the data directory.
    pub account: String,
}

impl Scope {
    /// The ARN of a resource in this scope.
    pub fn arn(&self, resource: EcsResource) -> Arn {
        Arn {
            region: self.region.clone(),
            account: self.account.clone(),
            resource,
        }
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`.
    pub fn cluster_arn(&self, name: &str) -> String {
        self.arn(EcsResource::Cluster(name.to_string())).to_string()
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION`.
    pub fn task_definition_arn(&self, family: &str, revision: u32) -> String {
        self.arn(EcsResource::TaskDefinition {
            family: family.to_string(),
            revision,
        })
        .to_string()
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME`.
    pub fn service_arn(&self, cluster: &str, name: &str) -> String {
        self.arn(EcsResource::Service {
            cluster: cluster.to_string(),
            name: name.to_string(),
        })
        .to_string()
    }
}

/// An ECS resource named by an ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcsResource {
    /// `cluster/NAME`
    Cluster(String),
    /// `task-definition/FAMILY:REVISION`
    TaskDefinition {
        /// The family name.
        family: String,
        /// The revision, from 1.
        revision: u32,
    },
    /// `service/CLUSTER/NAME`
    Service {
        /// The cluster name.
        cluster: String,
        /// The service name.
        name: String,
    },
}

/// A parsed ECS ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    /// Region field.
    pub region: String,
    /// Account field.
    pub account: String,
    /// What the ARN names.
    pub resource: EcsResource,
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "arn:aws:ecs:{}:{}:", self.region, self.account)?;
        match &self.resource {
            EcsResource::Cluster(name) => write!(f, "cluster/{name}"),
            EcsResource::TaskDefinition { family, revision } => {
                write!(f, "task-definition/{family}:{revision}")
            }
            EcsResource::Service { cluster, name } => write!(f, "service/{cluster}/{name}"),
        }
    }
}

/// Why a string is not an ECS ARN Berth understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    /// the string is not of the form arn:aws:ecs:REGION:ACCOUNT:TYPE/ID
    #[error("{0:?} is not an ECS ARN (expected arn:aws:ecs:REGION:ACCOUNT:TYPE/ID)")]
    Malformed(String),
    /// the resource type is one Berth does not manage
    #[error("{0:?} names a resource type Berth does not manage (expected cluster/..., service/... or task-definition/...)")]
    UnknownType(String),
}

impl std::str::FromStr for Arn {
    type Err = ArnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || ArnError::Malformed(s.to_string());
        let mut parts = s.splitn(6, ':');
        let (Some("arn"), Some(_partition), Some("ecs"), Some(region), Some(account), Some(rest)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed());
        };
        let (kind, id) = rest.split_once('/').ok_or_else(malformed)?;
        let resource = match kind {
            "cluster" if !id.is_empty() => EcsResource::Cluster(id.to_string()),
            "task-definition" => {
                let (family, rev) = id.rsplit_once(':').ok_or_else(malformed)?;
                let revision = rev.parse().map_err(|_| malformed())?;
                if family.is_empty() {
                    return Err(malformed());
                }
                EcsResource::TaskDefinition {
                    family: family.to_string(),
                    revision,
                }
            }
            "service" => match id.split_once('/') {
                Some((cluster, name))
                    if !cluster.is_empty() && !name.is_empty() && !name.contains('/') =>
                {
                    EcsResource::Service {
                        cluster: cluster.to_string(),
                        name: name.to_string(),
                    }
                }
                _ => return Err(malformed()),
            },
            "cluster" => return Err(malformed()),
            _ => return Err(ArnError::UnknownType(s.to_string())),
        };
        Ok(Arn {
            region: region.to_string(),
            account: account.to_string(),
            resource,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let scope = Scope {
            region: "us-east-1".into(),
            account: "123456789012".into(),
        };
        let a = scope.task_definition_arn("web", 3);
        assert_eq!(
            a,
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3"
        );
        let parsed: Arn = a.parse().unwrap();
        assert_eq!(
            parsed.resource,
            EcsResource::TaskDefinition {
                family: "web".into(),
                revision: 3
            }
        );
        let c: Arn = scope.cluster_arn("prod").parse().unwrap();
        assert_eq!(c.resource, EcsResource::Cluster("prod".into()));
        let s = scope.service_arn("prod", "web");
        assert_eq!(s, "arn:aws:ecs:us-east-1:123456789012:service/prod/web");
        assert_eq!(
            s.parse::<Arn>().unwrap().resource,
            EcsResource::Service {
                cluster: "prod".into(),
                name: "web".into()
            }
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!("arn:aws:s3:::bucket".parse::<Arn>().is_err());
        assert!("arn:aws:ecs:r:a:cluster/".parse::<Arn>().is_err());
        assert!("arn:aws:ecs:r:a:task-definition/web"
            .parse::<Arn>()
            .is_err());
        assert!("arn:aws:ecs:r:a:service/web".parse::<Arn>().is_err());
        assert!(matches!(
            "arn:aws:ecs:r:a:widget/x".parse::<Arn>(),
            Err(ArnError::UnknownType(_))
        ));
    }
}
