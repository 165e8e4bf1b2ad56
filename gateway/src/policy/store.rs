//! The per-evaluation store data: WASI with nothing granted (see
//! [`super::sandbox`] for its clocks, randomness and waits), the memory
//! limiter, and the policy's log output.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::{Linker, ResourceTable, WasmStr};
use wasmtime::{ResourceLimiter, StoreContextMut};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::Grants;
use super::bindings::log;
use super::budget::CoreSlot;
use super::sandbox::{
    FixedWallClock, INSECURE_RANDOM_SEED, MAX_RANDOM_BYTES, SeededRandom, StoppedClock,
};
use crate::cluster::{Access, LookupError};

/// The instance that holds the host's `log` function.
const LOG_INTERFACE: &str = "portcullis:policy/log@0.1.0";

/// The instance that holds the host's `cluster` functions.
const CLUSTER_INTERFACE: &str = "portcullis:policy/cluster@0.1.0";

/// How much one evaluation may write to the log (host `log` calls plus
/// stdout and stderr); the rest is dropped and counted.
const LOG_BUDGET: usize = 64 * 1024;

/// Largest table a policy may grow, in elements.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Most host resources (streams, pollables) a policy may hold at once: each
/// lives in host memory, outside the policy's memory cap.
const MAX_RESOURCES: usize = 1_000;

/// Data of one short-lived [`wasmtime::Store`].
pub(crate) struct EvalState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory_limit: usize,
    memory_used: usize,
    /// Set when the policy asked for more memory than its cap; read after a
    /// failed call to report the failure as out-of-memory.
    pub(crate) memory_exceeded: bool,
    pub(crate) log: LogSink,
    /// The core of the long-running share, once the evaluation has run
    /// past its grace period; given back with the store.
    pub(crate) core: Option<CoreSlot>,
    /// What the policy may read of the cluster.
    cluster: Option<Arc<Access>>,
    /// When the evaluation must end: bounds a wait for the cluster cache.
    deadline: Instant,
}

impl EvalState {
    pub(crate) fn new(
        policy: Arc<str>,
        memory_limit: usize,
        grants: &Grants,
        deadline: Instant,
    ) -> Self {
        let log = LogSink::new(policy);
        // WASI preview 2 with nothing granted: the builder's defaults give no
        // preopened directories, no environment, no arguments and no
        // sockets; they are denied here explicitly so a change of default
        // upstream cannot widen the sandbox. Clocks and randomness are the
        // sandbox's own, so that evaluations are deterministic.
        let wasi = WasiCtx::builder()
            .stdout(log.stream(Stream::Stdout))
            .stderr(log.stream(Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FixedWallClock::new(grants.clock))
            .monotonic_clock(StoppedClock)
            .secure_random(SeededRandom::secure())
            .insecure_random(SeededRandom::insecure())
            .insecure_random_seed(INSECURE_RANDOM_SEED)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi,
            table,
            memory_limit,
            memory_used: 0,
            memory_exceeded: false,
            log,
            core: None,
            cluster: grants.cluster.clone(),
            deadline,
        }
    }
}

impl WasiView for EvalState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for EvalState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The cap covers every linear memory of the instance together.
        let total = self
            .memory_used
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.memory_limit {
            // Refuse the growth (memory.grow returns -1) rather than trap:
            // a policy that copes with allocation failure may still answer.
            self.memory_exceeded = true;
            return Ok(false);
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Links the host's `log` function. The message is read in place from the
/// policy's memory and only what fits in the log budget is copied out.
pub(crate) fn link_log(linker: &mut Linker<EvalState>) -> wasmtime::Result<()> {
    linker.instance(LOG_INTERFACE)?.func_wrap(
        "log",
        |store: StoreContextMut<'_, EvalState>, (level, message): (log::Level, WasmStr)| {
            let message = message.to_str(&store)?;
            store
                .data()
                .log
                .write(Stream::Log(level), message.as_bytes());
            Ok(())
        },
    )
}

/// Links the host's `cluster` functions: reads served from the cluster
/// cache of the resources the policy was granted. A refused or failed read
/// ends the evaluation (the error is classified as [`LookupError`]).
pub(crate) fn link_cluster(linker: &mut Linker<EvalState>) -> wasmtime::Result<()> {
    fn access<'a>(state: &'a EvalState, resource: &str) -> Result<&'a Access, LookupError> {
        state
            .cluster
            .as_deref()
            .ok_or_else(|| LookupError::NotGranted(resource.into()))
    }
    let mut cluster = linker.instance(CLUSTER_INTERFACE)?;
    cluster.func_wrap(
        "get",
        |store: StoreContextMut<'_, EvalState>,
         (resource, namespace, name): (String, Option<String>, String)|
         -> wasmtime::Result<(Option<Arc<str>>,)> {
            let state = store.data();
            let found = access(state, &resource)?.get(
                &resource,
                namespace.as_deref(),
                &name,
                state.deadline,
            )?;
            Ok((found,))
        },
    )?;
    cluster.func_wrap(
        "list",
        |store: StoreContextMut<'_, EvalState>,
         (resource, namespace, selector): (String, Option<String>, Option<String>)|
         -> wasmtime::Result<(Vec<Arc<str>>,)> {
            let state = store.data();
            let found = access(state, &resource)?.list(
                &resource,
                namespace.as_deref(),
                selector.as_deref(),
                state.deadline,
            )?;
            Ok((found,))
        },
    )
}

/// Where a line of policy output came from.
#[derive(Clone, Copy)]
enum Stream {
    Log(log::Level),
    Stdout,
    Stderr,
}

/// Forwards a policy's output to `tracing`, tagged with the policy's name,
/// within [`LOG_BUDGET`] bytes per evaluation.
#[derive(Clone)]
pub(crate) struct LogSink {
    inner: Arc<Mutex<LogState>>,
}

struct LogState {
    policy: Arc<str>,
    written: usize,
    dropped: usize,
    /// Unfinished last lines of stdout and stderr: guests write in pieces,
    /// the log gets whole lines.
    pending: [Vec<u8>; 2],
}

impl LogSink {
    fn new(policy: Arc<str>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LogState {
                policy,
                written: 0,
                dropped: 0,
                pending: [Vec::new(), Vec::new()],
            })),
        }
    }

    fn stream(&self, stream: Stream) -> PolicyOutput {
        PolicyOutput {
            sink: self.clone(),
            stream,
        }
    }

    fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut state = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let room = LOG_BUDGET.saturating_sub(state.written);
        let (kept, dropped) = bytes.split_at(bytes.len().min(room));
        state.written += kept.len();
        state.dropped += dropped.len();
        let pending = match stream {
            Stream::Log(_) => {
                state.emit(stream, kept);
                return;
            }
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        state.pending[pending].extend_from_slice(kept);
        while let Some(end) = state.pending[pending]
            .iter()
            .position(|&byte| byte == b'\n')
        {
            let line: Vec<u8> = state.pending[pending].drain(..=end).collect();
            state.emit(stream, &line);
        }
    }

    /// Reports output dropped over the budget, once, at the end of an evaluation.
    pub(crate) fn finish(&self) {
        let state = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.dropped > 0 {
            tracing::warn!(
                policy = &*state.policy,
                dropped_bytes = state.dropped,
                "policy output over the {LOG_BUDGET}-byte budget was dropped"
            );
        }
    }
}

impl LogState {
    fn emit(&self, stream: Stream, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        // A policy writes within one line of the log, always the one tagged
        // with its name: no newline, carriage return or terminal escape of
        // its own reaches the log.
        let text = super::escape_controls(text);
        let policy = &*self.policy;
        match stream {
            Stream::Log(log::Level::Trace) => tracing::trace!(policy, "{text}"),
            Stream::Log(log::Level::Debug) => tracing::debug!(policy, "{text}"),
            Stream::Log(log::Level::Info) => tracing::info!(policy, "{text}"),
            Stream::Log(log::Level::Warn) => tracing::warn!(policy, "{text}"),
            Stream::Log(log::Level::Error) => tracing::error!(policy, "{text}"),
            Stream::Stdout => tracing::info!(policy, stream = "stdout", "{text}"),
            Stream::Stderr => tracing::warn!(policy, stream = "stderr", "{text}"),
        }
    }
}

/// A guest's stdout or stderr: always writable, never blocks, never fails
/// (output past the budget is dropped, so a chatty policy cannot trap on
/// `println!`).
struct PolicyOutput {
    sink: LogSink,
    stream: Stream,
}

impl IsTerminal for PolicyOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PolicyOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(PolicyOutput {
            sink: self.sink.clone(),
            stream: self.stream,
        })
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(PolicyOutput {
            sink: self.sink.clone(),
            stream: self.stream,
        })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PolicyOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for PolicyOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.sink.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for PolicyOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.sink.write(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
