//! Defaults for the request types, so a policy's unit tests can build a
//! request by naming only the fields they care about:
//!
//! ```
//! use portcullis_policy_sdk::types::{Container, Request, SecurityContext, Workload};
//!
//! let request = Request {
//!     workload: Some(Workload {
//!         containers: vec![Container {
//!             name: "app".into(),
//!             security_context: SecurityContext { privileged: Some(true), ..Default::default() },
//!             ..Default::default()
//!         }],
//!         ..Default::default()
//!     }),
//!     ..Default::default()
//! };
//! assert_eq!(request.workload.map(|w| w.containers.len()), Some(1));
//! ```
//!
//! The defaults describe nothing in particular: a Kubernetes CREATE of a
//! kind-less object, a regular container, a workload with no containers,
//! every optional setting unset. Records without enum fields derive
//! `Default` (configured in the bindings); these are the others.

use crate::types::{
    Container, ContainerKind, GroupVersionKind, Operation, Origin, Request, SecurityContext,
    UserInfo,
};

impl Default for Request {
    fn default() -> Self {
        Self {
            uid: String::new(),
            origin: Origin::Kubernetes,
            operation: Operation::Create,
            kind: GroupVersionKind::default(),
            resource: String::new(),
            sub_resource: None,
            namespace: None,
            name: None,
            user: UserInfo::default(),
            dry_run: false,
            object: None,
            old_object: None,
            workload: None,
            images: Vec::new(),
        }
    }
}

impl Default for Container {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: ContainerKind::Regular,
            index: 0,
            image: String::new(),
            security_context: SecurityContext::default(),
            ports: Vec::new(),
            volume_mounts: Vec::new(),
            devices: Vec::new(),
            handler_hosts: Vec::new(),
        }
    }
}
