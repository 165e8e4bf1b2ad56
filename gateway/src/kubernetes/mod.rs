//! The Kubernetes front door: the admission webhook (`portcullis serve`),
//! its certificates (`portcullis certs`) and its deployment manifests
//! (`portcullis manifests`). It translates AdmissionReviews to and from the
//! decision core and holds no policy logic.

pub mod certs;
pub mod manifests;
pub mod review;
pub mod server;
