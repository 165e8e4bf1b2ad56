//! The WebAssembly policy host.
//!
//! One [`Host`] owns the wasmtime [`Engine`] and [`Linker`] for the whole
//! process. Loading a policy compiles it once (or takes it from the on-disk
//! cache) and links it into an `InstancePre`; every evaluation then gets a
//! fresh [`Store`] and instance from the pooling allocator, so nothing leaks
//! from one request to the next, under two limits: a deadline enforced by
//! epoch interruption (the engine's epoch ticks every millisecond) and a cap
//! on linear memory enforced by a resource limiter. WASI cannot make a
//! policy wait, and its clocks and randomness are fixed (see [`sandbox`]),
//! so a deadline binds wherever the time goes and the same request gets the
//! same answer. What one call may copy out of a policy's memory is bounded
//! (wasmtime's hostcall fuel, counted before each copy), and a verdict is
//! checked against its bounds before any of it reaches a client.
//! Failures come back as a typed [`EvalError`], classified by trap code and
//! store state, never by the text of an error message.

pub mod bindings;
mod budget;
pub mod builtin;
mod cache;
mod compile;
pub mod sandbox;
mod store;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::Linker;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use self::budget::CoreShare;
pub use self::budget::{BudgetUse, MemoryBudget};
pub use self::cache::CacheError;
use self::cache::CompileCache;
pub use self::compile::{CompileError, Compiler, worker_main};
use self::sandbox::WaitRefused;
use self::store::EvalState;
use crate::cluster::LookupError;
use crate::sha256_hex;
use bindings::types::Request;
use bindings::{Policy, PolicyPre};

/// How often the engine's epoch advances: the granularity of deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How long an evaluation runs before it counts as long-running and must
/// take its turn on the cores long evaluations share (see `budget`).
const LONG_RUNNING_AFTER: Duration = Duration::from_millis(5);

/// The most memory a policy may be given; the pooling allocator sizes its
/// slots for it.
pub const MAX_MEMORY: u64 = 1 << 30;

/// What all evaluations in flight may reserve together, unless configured.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

/// The largest module accepted, unless configured.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 64 << 20;

/// Evaluations that may run at once (the pooling allocator's slots); more
/// wait for a slot within their deadline, as for the memory budget.
const MAX_CONCURRENT_INSTANCES: u32 = 256;

/// Bounds on what a verdict may carry back to a client.
const MAX_MESSAGE_BYTES: usize = 32 * 1024;
const MAX_WARNINGS: usize = 64;
const MAX_WARNING_BYTES: usize = 4 * 1024;
const MAX_ANNOTATIONS: usize = 64;
const MAX_ANNOTATION_BYTES: usize = 4 * 1024;
const MAX_PATCH_BYTES: usize = 1024 * 1024;
/// The most one call may copy out of the guest: a verdict at its bounds
/// fits, with room to spare.
const MAX_COPIED_BYTES: usize = 2 * MAX_PATCH_BYTES;

/// Options for creating a [`Host`].
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Where compiled policies are cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Memory all evaluations in flight may reserve together.
    pub memory_budget: u64,
    /// Largest module accepted, in bytes.
    pub max_module_size: u64,
    /// How modules are compiled, and within what budget.
    pub compiler: Compiler,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            max_module_size: DEFAULT_MAX_MODULE_SIZE,
            compiler: Compiler::InProcess,
        }
    }
}

/// What one evaluation of a policy may use: its deadline, its memory and
/// what it was granted beyond the sandbox.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock time one evaluation may take.
    pub timeout: Duration,
    /// Linear memory one instance may use, in bytes.
    pub memory: u64,
    /// What the policy may see beyond the deterministic sandbox.
    pub grants: Grants,
}

/// What a policy may see beyond the deterministic sandbox; nothing by
/// default.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// The wall clock reads the moment the evaluation began instead of the
    /// Unix epoch. Decisions then depend on when they are made.
    pub clock: bool,
    /// The cluster objects the policy may read; without it, every read is
    /// refused.
    pub cluster: Option<Arc<crate::cluster::Access>>,
}

/// Why a host could not be created or a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The wasmtime engine rejected its configuration.
    #[error("failed to configure the WebAssembly engine")]
    Engine(#[source] wasmtime::Error),
    /// Without the thread that advances the epoch no deadline would fire.
    #[error("cannot start the thread that enforces policy deadlines")]
    Ticker(#[source] std::io::Error),
    /// The compilation cache cannot be used.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The module is larger than the host accepts (and was not read past
    /// the limit).
    #[error("policy module is larger than the limit of {limit} bytes (sandbox.max_module_size)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// A policy file cannot be read.
    #[error("cannot read policy module {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component, or compiling
    /// them ran out of its budget.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The component does not fit the `portcullis:policy` world, or imports
    /// something the sandbox does not grant.
    #[error(
        "policy module does not implement the portcullis:policy@0.1.0 world with only the imports it grants"
    )]
    Link(#[source] wasmtime::Error),
}

/// Why an evaluation produced no verdict.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The policy ran past its deadline and was stopped.
    #[error("policy ran past its deadline of {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The policy tried to wait, which would only have ended at its
    /// deadline.
    #[error("policy was stopped: {0}")]
    Waited(WaitRefused),
    /// The policy asked for more memory than its cap.
    #[error("policy exceeded its memory limit of {} bytes", .0)]
    OutOfMemory(u64),
    /// The policy trapped (a panic, an unreachable instruction, a stack
    /// overflow, an out-of-bounds access, …).
    #[error("policy trapped: {detail}")]
    Trap {
        /// The trap code, when the failure was a WebAssembly trap.
        code: Option<Trap>,
        /// What wasmtime reported, for the operator.
        detail: String,
    },
    /// The policy answered, but not with a usable verdict.
    #[error("policy returned an invalid verdict: {0}")]
    InvalidVerdict(String),
    /// A read of the cluster failed: not granted, a malformed selector, or
    /// a cache out of step with the API server.
    #[error("{0}")]
    Cluster(LookupError),
    /// The request's time budget ran out before the policy could run.
    #[error("no time was left in the review's budget to run the policy")]
    NoTime,
    /// The policy was stopped at its share of the review's time budget,
    /// before its own deadline.
    #[error("policy was stopped at its {} ms share of the review's time budget", .0.as_millis())]
    OverBudget(Duration),
    /// The evaluations in flight held the whole memory budget until the
    /// policy's deadline.
    #[error("the gateway was busy: evaluations in flight held the whole sandbox memory budget")]
    Busy,
    /// A fresh instance could not be created (for example, too many
    /// evaluations at once).
    #[error("policy could not be instantiated: {0}")]
    Instantiate(String),
}

/// The kind of an [`EvalError`], for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// [`EvalError::Timeout`], [`EvalError::Waited`], [`EvalError::NoTime`]
    /// and [`EvalError::OverBudget`].
    Timeout,
    /// [`EvalError::OutOfMemory`].
    Memory,
    /// [`EvalError::Trap`] and [`EvalError::Instantiate`].
    Trap,
    /// [`EvalError::InvalidVerdict`].
    Invalid,
    /// [`EvalError::Busy`].
    Overload,
    /// [`EvalError::Cluster`].
    Cluster,
}

impl ErrorKind {
    /// `timeout`, `memory`, `trap`, `invalid`, `overload` or `cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Memory => "memory",
            ErrorKind::Trap => "trap",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Overload => "overload",
            ErrorKind::Cluster => "cluster",
        }
    }
}

impl EvalError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EvalError::Timeout(_)
            | EvalError::Waited(_)
            | EvalError::NoTime
            | EvalError::OverBudget(_) => ErrorKind::Timeout,
            EvalError::Busy => ErrorKind::Overload,
            EvalError::OutOfMemory(_) => ErrorKind::Memory,
            EvalError::Trap { .. } | EvalError::Instantiate(_) => ErrorKind::Trap,
            EvalError::InvalidVerdict(_) => ErrorKind::Invalid,
            EvalError::Cluster(_) => ErrorKind::Cluster,
        }
    }

    /// Whether the gateway, not the policy, failed to run it to the end (a
    /// review's time budget or the sandbox's memory budget was spent), or
    /// the policy reached for what it was not granted. Such a failure
    /// denies whatever the policy's `on_error` says, or a slow neighbour
    /// could get a request past it.
    pub fn fails_closed(&self) -> bool {
        matches!(
            self,
            EvalError::NoTime
                | EvalError::OverBudget(_)
                | EvalError::Busy
                | EvalError::Cluster(LookupError::NotGranted(_))
        )
    }
}

/// A policy's verdict, checked: bounded in size, with a parsed patch.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// Why, for a person.
    pub message: Option<String>,
    /// HTTP status of a denial (400–599).
    pub code: Option<u16>,
    /// Warnings for the client.
    pub warnings: Vec<String>,
    /// Changes to the object.
    pub patch: Option<json_patch::Patch>,
    /// Audit annotations.
    pub annotations: Vec<(String, String)>,
}

/// The process-wide WebAssembly host.
pub struct Host {
    engine: Engine,
    linker: Linker<EvalState>,
    cache: Option<CompileCache>,
    ticker: Arc<EpochTicker>,
    budget: Arc<MemoryBudget>,
    cores: Arc<CoreShare>,
    max_module_size: u64,
    compiler: Compiler,
}

impl Host {
    /// Creates the engine, its linker and, if configured, the compilation cache.
    pub fn new(options: &HostOptions) -> Result<Self, LoadError> {
        let engine = Engine::new(&engine_config()).map_err(LoadError::Engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(LoadError::Engine)?;
        sandbox::link(&mut linker).map_err(LoadError::Engine)?;
        store::link_log(&mut linker).map_err(LoadError::Engine)?;
        store::link_cluster(&mut linker).map_err(LoadError::Engine)?;
        let cache = options
            .cache_dir
            .as_deref()
            .map(|dir| CompileCache::open(dir, &engine))
            .transpose()?;
        let ticker = EpochTicker::start(engine.clone()).map_err(LoadError::Ticker)?;
        Ok(Self {
            engine,
            linker,
            cache,
            ticker: Arc::new(ticker),
            budget: Arc::new(MemoryBudget::new(
                options.memory_budget,
                MAX_CONCURRENT_INSTANCES,
            )),
            cores: Arc::new(CoreShare::half_of_the_machine()),
            max_module_size: options.max_module_size,
            compiler: options.compiler.clone(),
        })
    }

    /// The memory budget the evaluations of this host's modules share.
    pub fn memory_budget(&self) -> Arc<MemoryBudget> {
        self.budget.clone()
    }

    /// Loads a policy from a component's bytes.
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<Module, LoadError> {
        let size = u64::try_from(wasm.len()).unwrap_or(u64::MAX);
        if size > self.max_module_size {
            return Err(LoadError::TooLarge {
                limit: self.max_module_size,
            });
        }
        let digest = sha256_hex(wasm);
        let compile = || self.compiler.compile(&self.engine, wasm);
        let component = match &self.cache {
            Some(cache) => cache.load(&self.engine, &digest, compile),
            None => compile(),
        }?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(LoadError::Link)?;
        let pre = PolicyPre::new(pre).map_err(LoadError::Link)?;
        Ok(Module {
            name: name.into(),
            digest,
            pre,
            budget: self.budget.clone(),
            cores: self.cores.clone(),
            _ticker: self.ticker.clone(),
        })
    }

    /// Loads a policy from a `.wasm` file, reading no more of it than the
    /// size limit allows.
    pub fn load_file(&self, name: &str, path: &Path) -> Result<Module, LoadError> {
        use std::io::Read as _;
        let read_error = |source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut wasm = Vec::new();
        file.take(self.max_module_size.saturating_add(1))
            .read_to_end(&mut wasm)
            .map_err(read_error)?;
        self.load(name, &wasm)
    }
}

/// What the compiled code depends on: the same in the host and in the
/// compile worker, so the worker's artifacts load in the host.
fn compiler_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config
}

fn engine_config() -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
        // A Rust component holds its own module plus a few small adapter
        // modules; other toolchains use more.
        .total_core_instances(MAX_CONCURRENT_INSTANCES * 8)
        .max_core_instances_per_component(16)
        .total_memories(MAX_CONCURRENT_INSTANCES * 2)
        .max_memories_per_component(2)
        .total_tables(MAX_CONCURRENT_INSTANCES * 4)
        .max_tables_per_component(8)
        .max_memory_size(MAX_MEMORY as usize);
    let mut config = compiler_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// A loaded policy: compiled, linked, ready to instantiate. Cloning shares
/// the compiled code.
#[derive(Clone)]
pub struct Module {
    name: Arc<str>,
    digest: String,
    pre: PolicyPre<EvalState>,
    budget: Arc<MemoryBudget>,
    cores: Arc<CoreShare>,
    /// Deadlines need the epoch to keep advancing for as long as a module
    /// can run, even after the [`Host`] that loaded it is gone.
    _ticker: Arc<EpochTicker>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// The same compiled policy under another name (the name tags its log
    /// lines), sharing the compiled code.
    pub fn named(&self, name: &str) -> Module {
        Module {
            name: name.into(),
            ..self.clone()
        }
    }

    /// The sha256 of the component, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Creates a fresh instance and drops it, calling nothing: what every
    /// evaluation pays before the policy runs. A readiness probe, and the
    /// baseline of the benchmarks.
    pub fn instantiate(&self, limits: &Limits) -> Result<(), EvalError> {
        self.call(limits, |_, _| Ok(()))
    }

    /// Asks the policy whether it accepts `settings` (JSON text).
    pub fn validate_settings(
        &self,
        settings: &str,
        limits: &Limits,
    ) -> Result<Result<(), String>, EvalError> {
        let answer = self.call(limits, |store, policy| {
            policy.call_validate_settings(store, settings)
        })?;
        Ok(answer.map_err(|message| {
            if message.len() > MAX_MESSAGE_BYTES {
                format!("(a settings error longer than {MAX_MESSAGE_BYTES} bytes)")
            } else {
                escape_controls(&message).into_owned()
            }
        }))
    }

    /// Evaluates one request under `settings` (JSON text).
    pub fn validate(
        &self,
        request: &Request,
        settings: &str,
        limits: &Limits,
    ) -> Result<Verdict, EvalError> {
        let verdict = self.call(limits, |store, policy| {
            policy.call_validate(store, request, settings)
        })?;
        check(verdict)
    }

    /// Runs `f` on a fresh instance under `limits`.
    fn call<R>(
        &self,
        limits: &Limits,
        f: impl FnOnce(&mut Store<EvalState>, &Policy) -> wasmtime::Result<R>,
    ) -> Result<R, EvalError> {
        let started = Instant::now();
        let memory = limits.memory.min(MAX_MEMORY);
        // Held until the store is dropped, whatever happens in between.
        let _reservation = self
            .budget
            .reserve(memory, started + limits.timeout)
            .ok_or(EvalError::Busy)?;
        let left = limits.timeout.saturating_sub(started.elapsed());
        let memory = usize::try_from(memory).unwrap_or(usize::MAX);
        let deadline = Instant::now() + left;
        let state = EvalState::new(self.name.clone(), memory, &limits.grants, deadline);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| state);
        // The first deadline is the end of the grace period; from there the
        // evaluation goes on only with a core of the long-running share,
        // and stops at its own deadline.
        store.set_epoch_deadline(deadline_ticks(left.min(LONG_RUNNING_AFTER)));
        let cores = self.cores.clone();
        store.epoch_deadline_callback(move |mut state| {
            if Instant::now() >= deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            if state.data().core.is_none() {
                match cores.acquire(deadline) {
                    Some(core) => state.data_mut().core = Some(core),
                    None => return Ok(UpdateDeadline::Interrupt),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            Ok(UpdateDeadline::Continue(deadline_ticks(left)))
        });
        // What one call may copy out of the guest (a verdict's strings and
        // lists, or a log message), counted as it is read and refused
        // before the copy when over.
        store.set_hostcall_fuel(MAX_COPIED_BYTES);

        let result = match self.pre.instantiate(&mut store) {
            Ok(policy) => {
                f(&mut store, &policy).map_err(|error| classify(&error, store.data(), limits))
            }
            Err(error) => Err(match classify(&error, store.data(), limits) {
                EvalError::Trap { code: None, detail } => EvalError::Instantiate(detail),
                other => other,
            }),
        };
        store.data().log.finish();
        result
    }
}

/// Escapes the control characters of text a policy wrote (newlines,
/// carriage returns, NUL, terminal escapes, Unicode line separators) as
/// `\u{…}`, so that it cannot start a line of its own in a log or drive a
/// terminal.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let is_control = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_control(c) {
            escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// Epoch ticks for a timeout: rounded up, plus one because the first tick
/// may come at any moment after the deadline is set.
fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = timeout.as_nanos().div_ceil(tick).max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
}

fn classify(error: &wasmtime::Error, state: &EvalState, limits: &Limits) -> EvalError {
    let trap = error.downcast_ref::<Trap>().copied();
    if state.memory_exceeded {
        EvalError::OutOfMemory(limits.memory)
    } else if error.downcast_ref::<WaitRefused>().is_some() {
        EvalError::Waited(WaitRefused)
    } else if let Some(lookup) = error.downcast_ref::<LookupError>() {
        EvalError::Cluster(lookup.clone())
    } else if trap == Some(Trap::Interrupt) {
        EvalError::Timeout(limits.timeout)
    } else {
        // The full error carries the guest's backtrace: for the operator's
        // log, not for the client's denial message.
        tracing::debug!("policy failure: {error:?}");
        EvalError::Trap {
            code: trap,
            detail: match trap {
                Some(trap) => trap.to_string(),
                None => error.root_cause().to_string(),
            },
        }
    }
}

/// Checks what a guest returned before any of it reaches a client. (The
/// copy out of the guest was already bounded by the store's hostcall fuel.)
fn check(verdict: bindings::types::Verdict) -> Result<Verdict, EvalError> {
    let invalid = |reason: String| Err(EvalError::InvalidVerdict(reason));
    if let Some(code) = verdict.code
        && !(400..=599).contains(&code)
    {
        return invalid(format!(
            "status code {code} is not an error status (400-599)"
        ));
    }
    if verdict
        .message
        .as_ref()
        .is_some_and(|message| message.len() > MAX_MESSAGE_BYTES)
    {
        return invalid(format!("message is longer than {MAX_MESSAGE_BYTES} bytes"));
    }
    if verdict.warnings.len() > MAX_WARNINGS {
        return invalid(format!("more than {MAX_WARNINGS} warnings"));
    }
    if verdict
        .warnings
        .iter()
        .any(|warning| warning.len() > MAX_WARNING_BYTES)
    {
        return invalid(format!(
            "a warning is longer than {MAX_WARNING_BYTES} bytes"
        ));
    }
    if verdict.annotations.len() > MAX_ANNOTATIONS {
        return invalid(format!("more than {MAX_ANNOTATIONS} annotations"));
    }
    if verdict
        .annotations
        .iter()
        .any(|(key, value)| key.len().max(value.len()) > MAX_ANNOTATION_BYTES)
    {
        return invalid(format!(
            "an annotation's key or value is longer than {MAX_ANNOTATION_BYTES} bytes"
        ));
    }
    let patch = match verdict.patch {
        None => None,
        Some(patch) if patch.len() > MAX_PATCH_BYTES => {
            return invalid(format!("patch is larger than {MAX_PATCH_BYTES} bytes"));
        }
        Some(patch) => match serde_json::from_str::<json_patch::Patch>(&patch) {
            Ok(patch) => Some(patch),
            Err(error) => return invalid(format!("patch is not an RFC 6902 JSON Patch: {error}")),
        },
    };
    Ok(Verdict {
        allowed: verdict.allowed,
        // Lines and tabs are the message's own; no other control character
        // reaches a client's terminal or log. Text without any (nearly all)
        // is kept as it came.
        message: verdict.message.map(|message| {
            if !message.chars().any(|c| c.is_control() && c != '\n') {
                return message;
            }
            message
                .split('\n')
                .map(|line| escape_controls(&line.replace('\t', "    ")).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        }),
        code: verdict.code,
        warnings: verdict.warnings.into_iter().map(escaped).collect(),
        patch,
        annotations: verdict.annotations,
    })
}

/// `text` with its control characters escaped, reusing it when it has none.
fn escaped(text: String) -> String {
    match escape_controls(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(escaped) => escaped,
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("portcullis-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    // Keep the epoch equal to the milliseconds elapsed, not
                    // to the number of sleeps: a sleep lasts a little longer
                    // than asked, and the error would add up over a deadline.
                    let started = Instant::now();
                    let mut epoch: u128 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        let due = started.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                        while epoch < due {
                            engine.increment_epoch();
                            epoch += 1;
                        }
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict() -> bindings::types::Verdict {
        bindings::types::Verdict {
            allowed: false,
            message: Some("no".into()),
            code: None,
            warnings: Vec::new(),
            patch: None,
            annotations: Vec::new(),
        }
    }

    fn invalid(verdict: bindings::types::Verdict) -> String {
        match check(verdict) {
            Err(EvalError::InvalidVerdict(reason)) => reason,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn a_plain_verdict_passes_with_its_patch_parsed() {
        let checked = check(bindings::types::Verdict {
            allowed: true,
            patch: Some(r#"[{"op": "add", "path": "/metadata/labels/a", "value": "b"}]"#.into()),
            code: Some(451),
            ..verdict()
        })
        .expect("valid");
        assert_eq!(checked.patch.map(|patch| patch.0.len()), Some(1));
        assert_eq!(checked.code, Some(451));
    }

    #[test]
    fn what_a_client_would_choke_on_is_refused() {
        assert!(
            invalid(bindings::types::Verdict {
                code: Some(200),
                ..verdict()
            })
            .contains("200")
        );
        assert!(
            invalid(bindings::types::Verdict {
                code: Some(600),
                ..verdict()
            })
            .contains("600")
        );
        let garbage = bindings::types::Verdict {
            patch: Some("{not a patch".into()),
            ..verdict()
        };
        assert!(invalid(garbage).contains("not an RFC 6902 JSON Patch"));
        let unknown_op = bindings::types::Verdict {
            patch: Some(r#"[{"op": "frobnicate", "path": "/a"}]"#.into()),
            ..verdict()
        };
        assert!(invalid(unknown_op).contains("not an RFC 6902 JSON Patch"));
        let long = bindings::types::Verdict {
            message: Some("x".repeat(MAX_MESSAGE_BYTES + 1)),
            ..verdict()
        };
        assert!(invalid(long).contains("message is longer"));
        let many = bindings::types::Verdict {
            warnings: vec![String::new(); MAX_WARNINGS + 1],
            ..verdict()
        };
        assert!(invalid(many).contains("warnings"));
        let annotations = bindings::types::Verdict {
            annotations: vec![(String::new(), String::new()); MAX_ANNOTATIONS + 1],
            ..verdict()
        };
        assert!(invalid(annotations).contains("annotations"));
        let long_key = bindings::types::Verdict {
            annotations: vec![("k".repeat(MAX_ANNOTATION_BYTES + 1), String::new())],
            ..verdict()
        };
        assert!(invalid(long_key).contains("annotation's key or value"));
    }

    #[test]
    fn a_verdicts_text_cannot_carry_terminal_escapes() {
        let checked = check(bindings::types::Verdict {
            message: Some("one\n\u{1b}[31mtwo\tthree".into()),
            warnings: vec!["a\nb".into()],
            ..verdict()
        })
        .expect("valid");
        assert_eq!(
            checked.message.as_deref(),
            Some("one\n\\u{1b}[31mtwo    three")
        );
        assert_eq!(checked.warnings, ["a\\u{a}b"]);
    }

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_kept() {
        assert!(matches!(
            escape_controls("privileged (container \"a\")"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("ok\n2026-01-01 ERROR forged\u{0}\u{1b}[31m\u{2028}"),
            "ok\\u{a}2026-01-01 ERROR forged\\u{0}\\u{1b}[31m\\u{2028}"
        );
    }

    #[test]
    fn deadlines_round_up_and_add_a_tick() {
        assert_eq!(deadline_ticks(Duration::from_millis(250)), 251);
        assert_eq!(deadline_ticks(Duration::from_micros(1500)), 3);
        assert_eq!(deadline_ticks(Duration::from_nanos(1)), 2);
    }

    #[test]
    fn modules_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Module>();
        shared::<Host>();
    }
}
