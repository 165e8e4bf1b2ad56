//! The Kubernetes front door: AdmissionReview in, decisions out.

pub mod review;
