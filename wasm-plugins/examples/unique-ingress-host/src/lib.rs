//! An Ingress may not claim a host that another Ingress already serves:
//! two teams routing the same name would take each other's traffic.
//!
//! A context-aware policy: it reads every Ingress of the cluster, so it
//! needs the grant
//!
//! ```yaml
//! grants:
//!   - cluster: [networking.k8s.io/v1/ingresses]
//! match:
//!   kinds: [networking.k8s.io/Ingress]
//!   operations: [CREATE, UPDATE]
//! ```
//!
//! An update of an Ingress never conflicts with the Ingress itself.

use portcullis_policy_sdk::serde_json::Value;
use portcullis_policy_sdk::{Policy, Request, Verdict, cluster, export_policy};

/// The resource the policy reads.
const INGRESSES: &str = "networking.k8s.io/v1/ingresses";

/// No settings.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {}

struct UniqueIngressHost;

impl Policy for UniqueIngressHost {
    type Settings = Settings;

    fn validate(request: &Request, _: &Settings) -> Verdict {
        if request.kind.kind != "Ingress" {
            return Verdict::allow();
        }
        let Some(Ok(ingress)) = request.object_as::<Value>() else {
            return Verdict::allow();
        };
        let itself = (
            request.namespace.clone().unwrap_or_default(),
            request.name.clone().unwrap_or_default(),
        );
        let conflicts = conflicts(&ingress, &itself, &cluster::list(INGRESSES, None, None));
        if conflicts.is_empty() {
            Verdict::allow()
        } else {
            Verdict::deny(conflicts.join("; "))
        }
    }
}

export_policy!(UniqueIngressHost);

/// The hosts of an Ingress's rules.
fn hosts(ingress: &Value) -> Vec<&str> {
    ingress["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|rule| rule["host"].as_str())
        .filter(|host| !host.is_empty())
        .collect()
}

/// One line per host of `ingress` that another of `others` already has.
/// `itself` (namespace, name) is the Ingress being written.
pub fn conflicts(ingress: &Value, itself: &(String, String), others: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    for host in hosts(ingress) {
        for other in others {
            let metadata = &other["metadata"];
            let namespace = metadata["namespace"].as_str().unwrap_or_default();
            let name = metadata["name"].as_str().unwrap_or_default();
            if (namespace, name) == (itself.0.as_str(), itself.1.as_str()) {
                continue;
            }
            if hosts(other).contains(&host) {
                found.push(format!(
                    "host {host:?} is already served by Ingress {namespace}/{name}"
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy_sdk::serde_json::json;

    fn ingress(namespace: &str, name: &str, hosts: &[&str]) -> Value {
        json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"rules": hosts.iter().map(|host| json!({"host": host})).collect::<Vec<_>>()},
        })
    }

    fn itself(namespace: &str, name: &str) -> (String, String) {
        (namespace.into(), name.into())
    }

    #[test]
    fn a_host_served_elsewhere_is_a_conflict_and_the_ingress_itself_is_not() {
        let others = [
            ingress("shop", "web", &["shop.example.com"]),
            ingress("blog", "web", &["blog.example.com", "www.example.com"]),
        ];
        let new = ingress("team-b", "web", &["www.example.com", "new.example.com"]);
        assert_eq!(
            conflicts(&new, &itself("team-b", "web"), &others),
            ["host \"www.example.com\" is already served by Ingress blog/web"]
        );
        // An update of blog/web keeps its own hosts.
        let update = ingress("blog", "web", &["blog.example.com", "www.example.com"]);
        assert!(conflicts(&update, &itself("blog", "web"), &others).is_empty());
        // Rules without a host (the default backend) claim nothing.
        let catch_all = json!({"spec": {"rules": [{"http": {}}]}});
        assert!(conflicts(&catch_all, &itself("x", "y"), &others).is_empty());
    }
}
