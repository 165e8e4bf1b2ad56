//! Access rules: which endpoint groups a client may read or change, before
//! any policy runs.
//!
//! Each group has a level — `deny`, `read` (GET and HEAD only) or `write`
//! (everything) — optionally overridden for particular clients, named by
//! their identity: `uid:<n>` or `gid:<n>` for unix-socket peers, `cn:<name>`
//! or `o:<organization>` for certificate holders. Groups the configuration
//! does not mention get the safe default: reads allowed except those that
//! leak container contents (archive, export, attach/ws) or profile the
//! engine (debug), writes allowed only where the gateway understands them,
//! and nothing to plugins or swarm management.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use super::route::Group;
use crate::admission::UserInfo;

/// What a client may do with a group of endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Nothing.
    Deny,
    /// GET and HEAD.
    Read,
    /// Everything.
    Write,
}

/// A group's rule: one level, or a default with per-client levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    /// The level for clients not listed.
    pub default: Access,
    /// Levels for particular clients (`uid:0`, `gid:998`, `cn:ci`, `o:ops`).
    pub clients: BTreeMap<String, Access>,
}

impl<'de> Deserialize<'de> for AccessRule {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PerClient {
            default: Access,
            #[serde(default)]
            clients: BTreeMap<String, Access>,
        }

        struct RuleVisitor;

        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = AccessRule;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("`deny`, `read`, `write`, or `{default: …, clients: {…}}`")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<AccessRule, E> {
                let default = Access::deserialize(de::value::StrDeserializer::<E>::new(value))?;
                Ok(AccessRule {
                    default,
                    clients: BTreeMap::new(),
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AccessRule, A::Error> {
                let rule = PerClient::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(AccessRule {
                    default: rule.default,
                    clients: rule.clients,
                })
            }
        }

        deserializer.deserialize_any(RuleVisitor)
    }
}

/// The level of a group the configuration does not mention.
pub fn default_access(group: Group) -> Access {
    match group {
        Group::Ping
        | Group::Containers
        | Group::Attach
        | Group::Exec
        | Group::Images
        | Group::Build => Access::Write,
        Group::System | Group::Volumes | Group::Networks | Group::Services | Group::Secrets => {
            Access::Write
        }
        // Reads that hand out container contents, and the engine's own
        // profiler, which no client of a proxy needs.
        Group::Archive | Group::Export | Group::AttachWs | Group::Debug => Access::Deny,
        // Ways to put an unverified image under a trusted name, and builds
        // whose steps the gateway cannot see.
        Group::ImageImport | Group::Buildkit => Access::Deny,
        // Plugins get whatever privileges they ask for; swarm management
        // reaches every node. Look, don't touch.
        Group::Plugins | Group::Swarm | Group::Distribution | Group::Unknown => Access::Read,
    }
}

/// The access rules of a configuration.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    rules: BTreeMap<Group, AccessRule>,
}

impl AccessRules {
    /// Rules from the configuration's `access` map.
    pub fn new(rules: BTreeMap<Group, AccessRule>) -> Self {
        Self { rules }
    }

    /// The level `client` has on `group`.
    pub fn level(&self, group: Group, client: &UserInfo) -> Access {
        if group == Group::Ping {
            // The CLI cannot even negotiate a version without it.
            return Access::Write;
        }
        let Some(rule) = self.rules.get(&group) else {
            return default_access(group);
        };
        std::iter::once(&client.name)
            .chain(&client.groups)
            .find_map(|identity| rule.clients.get(identity).copied())
            .unwrap_or(rule.default)
    }

    /// Whether `client` may make a request to `group` (`read` for GET and HEAD).
    pub fn allows(&self, group: Group, read: bool, client: &UserInfo) -> bool {
        match self.level(group, client) {
            Access::Deny => false,
            Access::Read => read,
            Access::Write => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uid: u32, gid: u32) -> UserInfo {
        UserInfo {
            name: format!("uid:{uid}"),
            uid: uid.to_string(),
            groups: vec![format!("gid:{gid}")],
        }
    }

    fn rules(yaml: &str) -> AccessRules {
        AccessRules::new(serde_saphyr::from_str(yaml).expect("valid rules"))
    }

    #[test]
    fn the_defaults_allow_reads_but_not_leaks_or_unknown_writes() {
        let rules = AccessRules::default();
        let anyone = client(1000, 1000);
        assert!(rules.allows(Group::Containers, false, &anyone));
        assert!(rules.allows(Group::Unknown, true, &anyone));
        assert!(!rules.allows(Group::Unknown, false, &anyone));
        assert!(!rules.allows(Group::Archive, true, &anyone));
        assert!(!rules.allows(Group::Export, true, &anyone));
        assert!(!rules.allows(Group::AttachWs, true, &anyone));
        assert!(!rules.allows(Group::ImageImport, false, &anyone));
        assert!(!rules.allows(Group::Plugins, false, &anyone));
        assert!(rules.allows(Group::Plugins, true, &anyone));
    }

    #[test]
    fn clients_can_be_given_their_own_level() {
        let configured = rules(
            "exec: {default: deny, clients: {\"uid:0\": write}}\ncontainers: read\narchive: write\n",
        );
        assert!(configured.allows(Group::Exec, false, &client(0, 0)));
        assert!(!configured.allows(Group::Exec, false, &client(1000, 0)));
        assert!(!configured.allows(Group::Containers, false, &client(0, 0)));
        assert!(configured.allows(Group::Containers, true, &client(0, 0)));
        assert!(configured.allows(Group::Archive, true, &client(5, 5)));
        // Ping cannot be denied.
        let closed = rules("ping: deny\n");
        assert!(closed.allows(Group::Ping, true, &client(5, 5)));
    }

    #[test]
    fn bad_rules_say_what_is_expected() {
        let error = serde_saphyr::from_str::<BTreeMap<Group, AccessRule>>("exec: maybe\n")
            .expect_err("invalid");
        assert!(
            error.to_string().contains("unknown variant `maybe`"),
            "{error}"
        );
        let error =
            serde_saphyr::from_str::<BTreeMap<Group, AccessRule>>("exec: {defualt: deny}\n")
                .expect_err("invalid");
        assert!(
            error.to_string().contains("unknown field `defualt`"),
            "{error}"
        );
        let error = serde_saphyr::from_str::<BTreeMap<Group, AccessRule>>("exce: deny\n")
            .expect_err("invalid");
        assert!(
            error.to_string().contains("unknown variant `exce`"),
            "{error}"
        );
    }
}
