//! The audit log: one JSON line per decision, written as it is made.
//!
//! A line records when, through which front door, who (the client's
//! identity and, on a unix socket, its pid), what (method and canonical
//! path), the decision with its reasons, what each policy said, and how long
//! deciding took.

use std::fs::OpenOptions;
use std::io::{self, LineWriter, Write};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::admission::{Decision, Effect, UserInfo};
use crate::config::AuditTarget;

/// Where audit lines go.
pub struct Audit {
    out: Mutex<LineWriter<Box<dyn Write + Send>>>,
}

/// One decision.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// `docker` or `kubernetes`.
    pub front_door: &'static str,
    /// Who asked.
    pub client: &'a UserInfo,
    /// The client's process, when the socket says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Request method.
    pub method: &'a str,
    /// Canonical request path.
    pub path: &'a str,
    /// `allowed` or `denied`.
    pub decision: &'static str,
    /// Why it was denied (or what was warned).
    pub reasons: Vec<String>,
    /// What each policy said.
    pub policies: Vec<PolicyEntry<'a>>,
    /// Time to decide, in microseconds.
    pub duration_us: u128,
}

/// What one policy said.
#[derive(Debug, Serialize)]
pub struct PolicyEntry<'a> {
    /// The policy.
    pub name: &'a str,
    /// What its outcome did.
    pub effect: Effect,
    /// Its evaluation time, in microseconds.
    pub duration_us: u128,
}

impl<'a> Entry<'a> {
    /// An entry for a decision made by access rules or before any policy.
    pub fn new(
        front_door: &'static str,
        client: &'a UserInfo,
        method: &'a str,
        path: &'a str,
    ) -> Self {
        Self {
            front_door,
            client,
            pid: None,
            method,
            path,
            decision: "allowed",
            reasons: Vec::new(),
            policies: Vec::new(),
            duration_us: 0,
        }
    }

    /// Records the pipeline's decision.
    pub fn decision(mut self, decision: &'a Decision) -> Self {
        self.decision = if decision.allowed {
            "allowed"
        } else {
            "denied"
        };
        self.reasons = decision
            .message
            .iter()
            .flat_map(|message| message.lines())
            .map(str::to_owned)
            .collect();
        self.reasons.extend(decision.warnings.iter().cloned());
        self.policies = decision
            .policies
            .iter()
            .map(|policy| PolicyEntry {
                name: &policy.name,
                effect: policy.effect,
                duration_us: policy.duration.as_micros(),
            })
            .collect();
        self
    }

    /// Records a denial made before the pipeline (access rules, bad input).
    pub fn denied(mut self, reason: String) -> Self {
        self.decision = "denied";
        self.reasons = vec![reason];
        self
    }
}

impl Audit {
    /// Opens the target (a file is appended to, created if needed, private).
    pub fn open(target: &AuditTarget) -> io::Result<Self> {
        let out: Box<dyn Write + Send> = match target {
            AuditTarget::Stdout => Box::new(io::stdout()),
            AuditTarget::Stderr => Box::new(io::stderr()),
            AuditTarget::File(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                Box::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .mode(0o600)
                        .open(path)?,
                )
            }
        };
        Ok(Self {
            out: Mutex::new(LineWriter::new(out)),
        })
    }

    /// Writes one line. A failure to write is logged, never fatal: the
    /// decision has been made and stands.
    pub fn record(&self, mut entry: Entry<'_>, duration: Duration) {
        #[derive(Serialize)]
        struct Line<'e, 'a> {
            time: String,
            #[serde(flatten)]
            entry: &'e Entry<'a>,
        }
        entry.duration_us = duration.as_micros();
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = match serde_json::to_string(&Line {
            time,
            entry: &entry,
        }) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!("cannot write the audit log: {error}");
                return;
            }
        };
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = writeln!(out, "{line}") {
            tracing::error!("cannot write the audit log: {error}");
        }
    }
}
