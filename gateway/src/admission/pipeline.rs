//! The pipeline: every matching policy, in configuration order, merged into
//! one decision.
//!
//! All matching policies are evaluated, even after a denial, so the person
//! sees every reason at once. What a policy's verdict does depends on its
//! mode: an `enforce` denial denies, a `warn` denial becomes a warning, an
//! `audit` denial is only recorded. A policy that fails (times out, traps,
//! runs out of memory, returns an invalid verdict) counts as a denial unless
//! its `on_error` is `allow`; but a policy the gateway could not run to
//! the end (the review's time budget was spent, or the memory budget of
//! all evaluations in flight) fails closed whatever its `on_error` says. A
//! review's budget is shared fairly: each policy may use at most an equal
//! share of what is left when it starts, so one slow policy cannot starve
//! the ones after it. Patches of allowed `enforce` policies are
//! applied in order, and the policies after a patch judge the patched object
//! (re-normalized); once every policy has run, those that judged an earlier
//! version judge the final object again, since that is what would run. A
//! patch that does not apply, exceeds the sandbox's patch limits, leaves an
//! object that cannot be read, or keeps changing the object on the second
//! look, is that policy's failure.
//!
//! A [`Pipeline`] is immutable once loaded: a front door holds it for the
//! whole of a request, and a reload builds a new one beside it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Request;
use super::matcher::Matcher;
use super::patch::{self, PatchLimits};
use crate::cluster::{Cluster, CredentialsError, Resource};
use crate::config::{Config, Grant, Mode, ModuleSource, OnError, PolicyConfig};
use crate::policy::{
    EvalError, Grants, Host, Limits, LoadError, MemoryBudget, Module, Verdict, builtin,
};

/// Status code of a denial whose policy gave none.
const DEFAULT_DENIAL_CODE: u16 = 403;

/// The loaded policies of one configuration.
pub struct Pipeline {
    policies: Vec<LoadedPolicy>,
    patch_limits: PatchLimits,
    budget: Arc<MemoryBudget>,
    /// The cluster caches of policies granted `cluster`; kept current for as
    /// long as the pipeline lives.
    cluster: Option<Cluster>,
}

struct LoadedPolicy {
    name: String,
    source: String,
    mode: Mode,
    on_error: OnError,
    limits: Limits,
    matcher: Matcher,
    /// Settings as JSON text, validated by the policy at load.
    settings: String,
    module: Arc<Module>,
}

/// Why a configuration's policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The module cannot be read, compiled or linked.
    #[error("policy `{policy}`: cannot load {module}")]
    Load {
        /// The policy's name.
        policy: String,
        /// Its module source.
        module: String,
        /// What failed.
        #[source]
        source: LoadError,
    },
    /// The policy rejected its settings.
    #[error("policy `{policy}` rejected its settings: {message}")]
    Settings {
        /// The policy's name.
        policy: String,
        /// The policy's explanation.
        message: String,
    },
    /// The policy failed while checking its settings.
    #[error("policy `{policy}` failed while checking its settings")]
    SettingsFailed {
        /// The policy's name.
        policy: String,
        /// How it failed.
        #[source]
        source: EvalError,
    },
    /// Policies are granted `cluster`, but the cluster cannot be read.
    #[error("cluster: cannot read the cluster for the policies granted `cluster`")]
    Cluster(#[source] CredentialsError),
}

/// The outcome of one request.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// HTTP status of a denial; 200 when allowed.
    pub code: u16,
    /// Every reason for a denial, one line per policy.
    pub message: Option<String>,
    /// Warnings for the client, each prefixed with the policy's name.
    pub warnings: Vec<String>,
    /// The patches of the enforcing policies, in order, as one JSON Patch.
    pub patch: Option<json_patch::Patch>,
    /// What each matching policy said.
    pub policies: Vec<PolicyOutcome>,
}

/// What one policy said about a request.
#[derive(Debug, Clone)]
pub struct PolicyOutcome {
    /// The policy's name.
    pub name: String,
    /// Its mode.
    pub mode: Mode,
    /// Its verdict, or how it failed.
    pub outcome: Outcome,
    /// What that did to the decision.
    pub effect: Effect,
    /// How long the evaluation took, instantiation included.
    pub duration: Duration,
}

/// A policy's verdict or failure.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The policy answered.
    Verdict(Verdict),
    /// The policy failed.
    Failed(Arc<EvalError>),
}

impl Outcome {
    /// Whether the policy allowed the request (a failure is not an allowance).
    pub fn allowed(&self) -> bool {
        matches!(self, Outcome::Verdict(verdict) if verdict.allowed)
    }

    /// The policy's message, or the failure's description.
    pub fn message(&self) -> Option<String> {
        match self {
            Outcome::Verdict(verdict) => verdict.message.clone(),
            Outcome::Failed(error) => Some(format!("policy failed: {error}")),
        }
    }
}

/// What a policy's outcome did to the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Nothing stopped the request (an allowance, or a failure ignored by
    /// `on_error: allow`).
    Allow,
    /// The request was denied.
    Deny,
    /// A denial or failure became a warning.
    Warn,
    /// A denial or failure was only recorded.
    Audit,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::Warn => "warn",
            Effect::Audit => "audit",
        })
    }
}

impl Pipeline {
    /// Loads every policy of `config`: compiles (or takes from the cache) each
    /// distinct module once, and has each policy check its settings.
    pub fn load(config: &Config, host: &Host) -> Result<Self, PipelineError> {
        let resources = config.cluster_resources();
        let cluster = if resources.is_empty() {
            None
        } else {
            let settings = config.cluster.clone().unwrap_or_default();
            Some(Cluster::start(&settings, resources).map_err(PipelineError::Cluster)?)
        };
        // Each distinct module is compiled once; policies that share it get
        // their own handle, so its log lines carry the policy's name.
        let mut modules: HashMap<ModuleSource, Module> = HashMap::new();
        let mut policies = Vec::with_capacity(config.policies.len());
        for policy in &config.policies {
            let module = match modules.get(&policy.module) {
                Some(module) => module.named(&policy.name),
                None => {
                    let module = load_module(host, policy)?;
                    modules.insert(policy.module.clone(), module.clone());
                    module
                }
            };
            policies.push(LoadedPolicy::new(
                policy,
                Arc::new(module),
                cluster.as_ref(),
            )?);
        }
        Ok(Self {
            policies,
            patch_limits: PatchLimits::new(
                config.sandbox.max_patch_operations,
                config.sandbox.max_patched_object,
            ),
            budget: host.memory_budget(),
            cluster,
        })
    }

    /// The cluster the policies read, if any policy is granted `cluster`.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// The memory budget the policies' evaluations share.
    pub fn memory_budget(&self) -> Arc<MemoryBudget> {
        self.budget.clone()
    }

    /// How far the policies' patches may change an object.
    pub fn patch_limits(&self) -> PatchLimits {
        self.patch_limits
    }

    /// The loaded policies: name, module source, mode and module digest.
    pub fn summary(&self) -> impl Iterator<Item = (&str, &str, Mode, &str)> {
        self.policies.iter().map(|policy| {
            (
                policy.name.as_str(),
                policy.source.as_str(),
                policy.mode,
                policy.module.digest(),
            )
        })
    }

    /// Decides one request as a mutating webhook would, with no time limit
    /// beyond each policy's own: what `portcullis eval` shows.
    pub fn evaluate(&self, request: &Request) -> Decision {
        self.decide(request, Phase::Mutating, None)
    }

    /// Decides one request. In the [`Phase::Validating`] phase patches are
    /// not applied: the object is judged as it will be stored. With a
    /// `deadline`, no policy runs past it: each gets at most an equal share
    /// of the time left when it starts, and one stopped at its share, or
    /// left without time, fails closed ([`EvalError::OverBudget`],
    /// [`EvalError::NoTime`]).
    pub fn decide(&self, request: &Request, phase: Phase, deadline: Option<Instant>) -> Decision {
        let matching: Vec<&LoadedPolicy> = self
            .policies
            .iter()
            .filter(|policy| policy.matcher.matches(request))
            .collect();
        let limits = self.patch_limits;
        let mutating = phase == Phase::Mutating;
        let mut operations = Vec::new();
        let mut current = Cow::Borrowed(request);
        let mut last_change = None;
        let mut judged: Vec<(Outcome, Duration)> = Vec::with_capacity(matching.len());
        for (index, policy) in matching.iter().enumerate() {
            let share = share(deadline, matching.len() - index);
            let (mut outcome, took) = policy.judge(&current, share);
            if let Some(patch) = patch_to_apply(policy, &outcome).filter(|_| mutating) {
                match patched(&current, patch, limits) {
                    Ok(next) => {
                        operations.extend(patch.0.iter().cloned());
                        current = Cow::Owned(next);
                        last_change = Some(index);
                    }
                    Err(reason) => outcome = invalid(reason),
                }
            }
            judged.push((outcome, took));
        }
        // What would run is the patched object. The policies that judged an
        // earlier version of it judge it again, so a mutation can never slip
        // past a policy listed before it; a patch they still want must change
        // nothing, or the mutations do not settle and that is a failure.
        if let Some(last_change) = last_change {
            let mut rejudged: Vec<(&&LoadedPolicy, &mut (Outcome, Duration))> = matching
                .iter()
                .zip(&mut judged)
                .take(last_change + 1)
                .filter(|(_, (outcome, _))| !matches!(outcome, Outcome::Failed(_)))
                .collect();
            let runs = rejudged.len();
            for (index, (policy, (outcome, took))) in rejudged.iter_mut().enumerate() {
                let (again, more) = policy.judge(&current, share(deadline, runs - index));
                *took += more;
                *outcome = match patch_to_apply(policy, &again)
                    .map(|patch| patched(&current, patch, limits))
                {
                    Some(Ok(next)) if next.object != current.object => invalid(
                        "its patch changes the object again after the other policies' patches; mutations must settle".into(),
                    ),
                    Some(Err(reason)) => invalid(reason),
                    _ => again,
                };
            }
        }
        let mut merge = Merge::default();
        for (policy, (outcome, took)) in matching.iter().zip(judged) {
            merge.add(policy, outcome, took);
        }
        merge.finish(operations)
    }
}

/// Which kind of admission a decision is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A mutating webhook: patches apply, and the decision carries them.
    Mutating,
    /// A validating webhook: the object is final; patches are ignored.
    Validating,
}

fn invalid(reason: String) -> Outcome {
    Outcome::Failed(Arc::new(EvalError::InvalidVerdict(reason)))
}

/// The patch of an allowed verdict of an enforcing policy: the only patches
/// that change the request.
fn patch_to_apply<'o>(
    policy: &LoadedPolicy,
    outcome: &'o Outcome,
) -> Option<&'o json_patch::Patch> {
    match outcome {
        Outcome::Verdict(verdict) if verdict.allowed && policy.mode == Mode::Enforce => {
            verdict.patch.as_ref()
        }
        _ => None,
    }
}

/// The time a policy may take when `runs` policies (itself included) are
/// still to run before `deadline`: an equal share of what is left.
fn share(deadline: Option<Instant>, runs: usize) -> Option<Duration> {
    let left = deadline?.saturating_duration_since(Instant::now());
    Some(left / u32::try_from(runs.max(1)).unwrap_or(u32::MAX))
}

/// The request with `patch` applied to its object, within `limits`, and
/// the workload normalized again.
pub(crate) fn patched(
    request: &Request,
    patch: &json_patch::Patch,
    limits: PatchLimits,
) -> Result<Request, String> {
    let object = request
        .object
        .as_deref()
        .ok_or("a patch was returned but the request has no object")?;
    let mut document: serde_json::Value = serde_json::from_str(object)
        .map_err(|error| format!("the object cannot be patched: {error}"))?;
    let text = patch::apply(&mut document, object.len(), patch, limits)?;
    super::with_object(request, text)
        .map_err(|error| format!("the patched object cannot be read: {error}"))
}

fn load_module(host: &Host, policy: &PolicyConfig) -> Result<Module, PipelineError> {
    let load_error = |source| PipelineError::Load {
        policy: policy.name.clone(),
        module: policy.module.to_string(),
        source,
    };
    match &policy.module {
        ModuleSource::Builtin(name) => {
            // The configuration parser only accepts names of built-ins.
            let wasm = builtin::find(name).unwrap_or_default();
            host.load(&policy.name, wasm).map_err(load_error)
        }
        ModuleSource::File(path) => host.load_file(&policy.name, path).map_err(load_error),
    }
}

impl LoadedPolicy {
    /// Evaluates the policy on `request`, timed, within its `share` of the
    /// review's budget.
    fn judge(&self, request: &Request, share: Option<Duration>) -> (Outcome, Duration) {
        let started = Instant::now();
        let mut limits = self.limits.clone();
        let clipped = share.filter(|share| *share < limits.timeout);
        if let Some(share) = clipped {
            limits.timeout = share;
        }
        let result = if limits.timeout.is_zero() {
            Err(EvalError::NoTime)
        } else {
            match self.module.validate(request, &self.settings, &limits) {
                // Stopped at its share, not at its own deadline: the
                // gateway, not the policy, ran out of time.
                Err(EvalError::Timeout(share)) if clipped.is_some() => {
                    Err(EvalError::OverBudget(share))
                }
                result => result,
            }
        };
        let outcome = match result {
            Ok(verdict) => Outcome::Verdict(verdict),
            Err(error) => Outcome::Failed(Arc::new(error)),
        };
        (outcome, started.elapsed())
    }

    fn new(
        config: &PolicyConfig,
        module: Arc<Module>,
        cluster: Option<&Cluster>,
    ) -> Result<Self, PipelineError> {
        let settings = config.settings.to_string();
        let readable: Vec<Resource> = config.readable().cloned().collect();
        let limits = Limits {
            timeout: config.timeout,
            memory: config.memory,
            grants: Grants {
                clock: config.grants.contains(&Grant::Clock),
                cluster: cluster
                    .filter(|_| !readable.is_empty())
                    .map(|cluster| Arc::new(cluster.access(&readable))),
            },
        };
        match module.validate_settings(&settings, &limits) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(PipelineError::Settings {
                    policy: config.name.clone(),
                    message,
                });
            }
            Err(source) => {
                return Err(PipelineError::SettingsFailed {
                    policy: config.name.clone(),
                    source,
                });
            }
        }
        Ok(Self {
            name: config.name.clone(),
            source: config.module.to_string(),
            mode: config.mode,
            on_error: config.on_error,
            limits,
            matcher: Matcher::new(config.matches.clone()),
            settings,
            module,
        })
    }
}

/// Accumulates the outcomes of one request.
#[derive(Default)]
struct Merge {
    denials: Vec<String>,
    code: Option<u16>,
    warnings: Vec<String>,
    outcomes: Vec<PolicyOutcome>,
}

impl Merge {
    fn add(&mut self, policy: &LoadedPolicy, outcome: Outcome, duration: Duration) {
        let fails = match &outcome {
            Outcome::Verdict(verdict) => !verdict.allowed,
            Outcome::Failed(error) => {
                tracing::warn!(
                    policy = policy.name,
                    kind = ?error.kind(),
                    "{}",
                    crate::policy::escape_controls(&error.to_string())
                );
                error.fails_closed() || policy.on_error == OnError::Deny
            }
        };
        let effect = match (fails, policy.mode) {
            (false, _) => Effect::Allow,
            (true, Mode::Enforce) => Effect::Deny,
            (true, Mode::Warn) => Effect::Warn,
            (true, Mode::Audit) => Effect::Audit,
        };
        let reason = || {
            format!(
                "{}: {}",
                policy.name,
                outcome.message().unwrap_or_else(|| "denied".into())
            )
        };
        match effect {
            Effect::Deny => {
                self.denials.push(reason());
                if let Outcome::Verdict(verdict) = &outcome {
                    self.code = self.code.or(verdict.code);
                }
            }
            // One warning per reason: the API server truncates each warning
            // to 256 characters once they pass 4 KiB together, so a long
            // list of reasons in one would lose its end.
            Effect::Warn => self.warnings.extend(
                split_reasons(&outcome.message().unwrap_or_else(|| "denied".into()))
                    .into_iter()
                    .map(|reason| format!("{}: {reason}", policy.name)),
            ),
            Effect::Allow | Effect::Audit => {}
        }
        if let (Outcome::Verdict(verdict), false) = (&outcome, policy.mode == Mode::Audit) {
            self.warnings.extend(
                verdict
                    .warnings
                    .iter()
                    .map(|warning| format!("{}: {warning}", policy.name)),
            );
        }
        self.outcomes.push(PolicyOutcome {
            name: policy.name.clone(),
            mode: policy.mode,
            outcome,
            effect,
            duration,
        });
    }

    fn finish(self, operations: Vec<json_patch::PatchOperation>) -> Decision {
        let allowed = self.denials.is_empty();
        Decision {
            allowed,
            code: if allowed {
                200
            } else {
                self.code.unwrap_or(DEFAULT_DENIAL_CODE)
            },
            message: (!allowed).then(|| self.denials.join("\n")),
            warnings: self.warnings,
            // A denied request is not mutated.
            patch: (allowed && !operations.is_empty()).then_some(json_patch::Patch(operations)),
            policies: self.outcomes,
        }
    }
}

/// A denial's reasons one by one: a message `header: a (…); b (…)` (the
/// shape of `pod-security`'s, and of upstream Pod Security's) becomes
/// `header: a (…)` and `header: b (…)`, split only at `; ` outside
/// parentheses and brackets. Any other message stays whole.
fn split_reasons(message: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    let bytes = message.as_bytes();
    for (index, byte) in bytes.iter().enumerate() {
        match byte {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b';' if depth == 0 && bytes.get(index + 1) == Some(&b' ') => {
                parts.push(&message[start..index]);
                start = index + 2;
            }
            _ => {}
        }
    }
    parts.push(&message[start..]);
    if parts.len() == 1 {
        return vec![message.to_owned()];
    }
    // The header is what the first reason has before its first `": `.
    let header = parts[0].find("\": ").map_or("", |end| &parts[0][..end + 3]);
    parts
        .iter()
        .enumerate()
        .map(|(index, part)| {
            if index == 0 || header.is_empty() {
                (*part).to_owned()
            } else {
                format!("{header}{part}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denials_reasons_become_one_warning_each() {
        assert_eq!(
            split_reasons(
                r#"violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "a" must set x; y); runAsNonRoot != true (pod must set z)"#
            ),
            [
                r#"violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "a" must set x; y)"#,
                r#"violates PodSecurity "restricted:latest": runAsNonRoot != true (pod must set z)"#,
            ]
        );
        assert_eq!(split_reasons("just one reason"), ["just one reason"]);
        assert_eq!(split_reasons("a; b"), ["a", "b"]);
    }

    #[test]
    fn each_policy_gets_an_equal_share_of_what_is_left() {
        assert_eq!(share(None, 3), None, "no budget, no share");
        let third = share(Some(Instant::now() + Duration::from_secs(3)), 3).expect("a share");
        assert!(third <= Duration::from_secs(1) && third > Duration::from_millis(900));
        let last = share(Some(Instant::now() + Duration::from_secs(1)), 1).expect("a share");
        assert!(
            last > Duration::from_millis(900),
            "the last one gets the rest"
        );
        assert_eq!(
            share(Some(Instant::now()), 2),
            Some(Duration::ZERO),
            "nothing left"
        );
    }
}
