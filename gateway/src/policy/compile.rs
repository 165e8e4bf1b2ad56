//! Compiling a module within a budget of time and memory.
//!
//! Cranelift cannot be interrupted, and a component of 100,000 small
//! functions takes it tens of seconds and most of a gigabyte. So the
//! gateway compiles in a child process of its own binary
//! (`portcullis compile-worker`), which caps its address space with
//! `RLIMIT_AS` before it reads the module and is killed when the time
//! budget runs out; the parent never holds more than the compiled bytes.
//! The library compiles in its own process unless told otherwise (tests
//! and benchmarks), with only the size limit.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

/// How modules are compiled.
#[derive(Debug, Clone, Default)]
pub enum Compiler {
    /// In this process, with no bound on time or memory.
    #[default]
    InProcess,
    /// In a `compile-worker` child of `program` (this binary), within
    /// `timeout` and `memory` bytes of address space.
    Worker {
        /// The `portcullis` binary.
        program: PathBuf,
        /// How long a compilation may take.
        timeout: Duration,
        /// How much address space the worker may map.
        memory: u64,
    },
}

/// Why a module could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The bytes are not a valid component.
    #[error("policy module is not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The compilation ran past its time budget.
    #[error(
        "compiling the module took longer than {} s (sandbox.compile_timeout); it was stopped",
        .0.as_secs_f64()
    )]
    Timeout(Duration),
    /// The compilation ran out of its memory budget.
    #[error(
        "compiling the module needed more than {0} bytes of memory (sandbox.compile_memory); it was stopped"
    )]
    OutOfMemory(u64),
    /// The worker could not be run or talked to.
    #[error("the compile worker failed: {0}")]
    Worker(String),
}

/// How often the parent looks whether the worker is done.
const POLL: Duration = Duration::from_millis(5);

impl Compiler {
    /// Compiles `wasm` for `engine`.
    pub(crate) fn compile(&self, engine: &Engine, wasm: &[u8]) -> Result<Component, CompileError> {
        let (program, timeout, memory) = match self {
            Compiler::InProcess => {
                return Component::new(engine, wasm)
                    .map_err(|error| CompileError::Invalid(format!("{error:#}")));
            }
            Compiler::Worker {
                program,
                timeout,
                memory,
            } => (program, *timeout, *memory),
        };
        let worker = |error: std::io::Error| CompileError::Worker(error.to_string());
        let started = Instant::now();
        let mut child = Command::new(program)
            .arg("compile-worker")
            .arg("--memory")
            .arg(memory.to_string())
            .env_remove("PORTCULLIS_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(worker)?;
        // Pipes are drained on their own threads, so neither side blocks
        // on a full pipe while the other waits.
        let mut stdin = child.stdin.take().ok_or_else(|| worker(no_pipe()))?;
        let mut stdout = child.stdout.take().ok_or_else(|| worker(no_pipe()))?;
        let stderr = child.stderr.take().ok_or_else(|| worker(no_pipe()))?;
        let compiled = std::thread::scope(|scope| {
            scope.spawn(move || {
                // A worker that dies early closes its end; its exit status
                // then says why.
                let _ = stdin.write_all(wasm);
            });
            let output = scope.spawn(move || {
                let mut bytes = Vec::new();
                stdout.read_to_end(&mut bytes).map(|_| bytes)
            });
            let errors = scope.spawn(move || {
                let mut text = String::new();
                let _ = stderr.take(64 * 1024).read_to_string(&mut text);
                text
            });
            let status = loop {
                if let Some(status) = child.try_wait().map_err(worker)? {
                    break status;
                }
                if started.elapsed() >= timeout {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(CompileError::Timeout(timeout));
                }
                std::thread::sleep(POLL);
            };
            let bytes = output
                .join()
                .map_err(|_| CompileError::Worker("its output was lost".into()))?
                .map_err(worker)?;
            let errors = errors.join().unwrap_or_default();
            match status.code() {
                Some(0) => Ok(bytes),
                Some(INVALID) => Err(CompileError::Invalid(errors.trim().to_owned())),
                // Killed, or aborted when an allocation failed under the
                // address-space limit.
                _ if errors.contains("memory allocation")
                    || errors.contains("out of memory")
                    || status.code().is_none() =>
                {
                    Err(CompileError::OutOfMemory(memory))
                }
                _ => Err(CompileError::Worker(format!("{status}: {}", errors.trim()))),
            }
        })?;
        // SAFETY: `Component::deserialize` requires the output of
        // `serialize`/`precompile_component` by a compatible engine. These
        // bytes come from this binary's own compile worker, which builds its
        // engine with the same compiler configuration
        // (`super::compiler_config`); wasmtime checks the version and
        // configuration recorded in the artifact and refuses a mismatch.
        #[allow(unsafe_code, reason = "see the SAFETY comment")]
        unsafe { Component::deserialize(engine, &compiled) }
            .map_err(|error| CompileError::Worker(format!("{error:#}")))
    }
}

fn no_pipe() -> std::io::Error {
    std::io::Error::other("no pipe to the worker")
}

/// The worker's exit status for a module that is not a valid component.
const INVALID: i32 = 3;

/// `portcullis compile-worker --memory BYTES`: caps its own address space,
/// reads a component on stdin and writes the compiled artifact to stdout.
pub fn worker_main(memory: u64) -> ExitCode {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let limit = Rlimit {
        current: Some(memory),
        maximum: Some(memory),
    };
    if let Err(error) = setrlimit(Resource::As, limit) {
        eprintln!("cannot limit the compile worker's memory: {error}");
        return ExitCode::from(1);
    }
    let mut wasm = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut wasm) {
        eprintln!("cannot read the module: {error}");
        return ExitCode::from(1);
    }
    let engine = match Engine::new(&super::compiler_config()) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("{error:#}");
            return ExitCode::from(1);
        }
    };
    match engine.precompile_component(&wasm) {
        Ok(compiled) => match std::io::stdout().write_all(&compiled) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("cannot write the compiled module: {error}");
                ExitCode::from(1)
            }
        },
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::from(INVALID as u8)
        }
    }
}
