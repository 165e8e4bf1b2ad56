//! The `portcullis` command line: `eval`, `check`, `serve`, `verify`,
//! `certs` and `manifests`.
//!
//! Exit status: 0 allowed (or done), 1 denied, 2 the configuration or an
//! input could not be used.

mod input;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use std::sync::Arc;

use crate::admission::Pipeline;
use crate::config::Config;
use crate::docker::server as proxy;
use crate::kubernetes::server::{self, Webhook};
use crate::kubernetes::{certs, manifests};
use crate::policy::{Compiler, Host, HostOptions, LoadError};
use crate::telemetry::Metrics;
use crate::tls;
use crate::verify::Verifier;

/// Exit status of a denial.
const DENIED: u8 = 1;
/// Exit status of an unusable configuration or input.
const ERROR: u8 = 2;

/// An admission gateway for Kubernetes and Docker.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decide requests offline, as the gateway would.
    ///
    /// Each REQUEST is a file holding an AdmissionReview, a Kubernetes
    /// manifest in YAML or JSON (judged as a CREATE), or a Docker
    /// container-create body (recognised, or forced with --docker).
    Eval {
        /// Configuration file (default: the built-in baseline pod-security policy).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Read every REQUEST as a Docker `POST /containers/create` body.
        #[arg(long)]
        docker: bool,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Request files.
        #[arg(required = true, value_name = "REQUEST")]
        requests: Vec<PathBuf>,
    },
    /// Load the configuration, check every policy's settings, and read the
    /// image-verification keys and trust roots.
    Check {
        /// Configuration file (default: the built-in baseline pod-security policy).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the Kubernetes admission webhook (the configuration's
    /// `kubernetes` section) until SIGTERM or SIGINT.
    Serve {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Verify one image's signatures as the gateway would: resolve it to a
    /// digest, find its signatures and attestations, and say which authority
    /// vouched for it, or why none did.
    ///
    /// Exit status: 0 verified, 1 not, 2 the configuration or the reference
    /// could not be used.
    Verify {
        /// Configuration file with an `images` section.
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// The image reference, as a pod or `docker run` would name it.
        image: String,
    },
    /// Write a CA and a serving certificate for the webhook's Service.
    Certs {
        /// The Service's name.
        #[arg(long, default_value = "portcullis")]
        service: String,
        /// The Service's namespace.
        #[arg(long, default_value = "portcullis-system")]
        namespace: String,
        /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
        #[arg(long)]
        out: PathBuf,
        /// More DNS names or IP addresses for the certificate (repeatable).
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// Days the certificates are valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Issue from the CA in this directory (ca.crt, ca.key) instead of a
        /// new one: renews the serving certificate, keeps the caBundle.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Print the Kubernetes manifests that deploy the webhook.
    Manifests {
        /// Configuration file (its `kubernetes` section is adapted to the pod).
        #[arg(long, short)]
        config: PathBuf,
        /// Namespace to deploy into.
        #[arg(long, default_value = "portcullis-system")]
        namespace: String,
        /// Name of the Deployment, Service and the rest.
        #[arg(long, default_value = "portcullis")]
        name: String,
        /// Container image.
        #[arg(long, default_value = concat!("portcullis:", env!("CARGO_PKG_VERSION")))]
        image: String,
        /// Directory written by `portcullis certs`.
        #[arg(long)]
        certs: PathBuf,
        /// Register a gateway running outside the cluster at this address
        /// (`https://host:port`, which its certificate must name): print
        /// only the webhook configurations, pointing there.
        #[arg(long)]
        url: Option<String>,
    },
    /// Compiles one policy module from stdin within a memory limit (run by
    /// the gateway itself, to bound what a compilation may cost).
    #[command(hide = true)]
    CompileWorker {
        /// Address space the worker may map, in bytes.
        #[arg(long)]
        memory: u64,
    },
}

/// How `eval` prints decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// For a person.
    Text,
    /// One JSON object per request, one per line.
    Json,
}

/// The log filter when `PORTCULLIS_LOG` is unset.
pub const DEFAULT_LOG: &str = "warn,portcullis::cli=info";

/// Sends logs to stderr; `PORTCULLIS_LOG` sets the filter (default
/// [`DEFAULT_LOG`]: warnings, and what `serve` says as it starts and stops).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Runs a command and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::CompileWorker { memory } => return crate::policy::worker_main(memory),
        Command::Eval {
            config,
            docker,
            output,
            requests,
        } => eval(config.as_deref(), docker, output, &requests),
        Command::Check { config } => check(config.as_deref()),
        Command::Serve { config } => serve(&config),
        Command::Verify {
            config,
            output,
            image,
        } => verify(&config, output, &image),
        Command::Certs {
            service,
            namespace,
            out,
            names,
            days,
            ca,
        } => certs(service, namespace, &out, names, days, ca.as_deref()),
        Command::Manifests {
            config,
            namespace,
            name,
            image,
            certs,
            url,
        } => manifests::generate(&manifests::Options {
            config,
            namespace,
            name,
            image,
            certs,
            url,
        })
        .map(|yaml| {
            print!("{yaml}");
            0
        })
        .map_err(Into::into),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("error: {}", crate::error_chain(&*error));
            ExitCode::from(ERROR)
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn load(config: Option<&Path>) -> Result<(Config, Pipeline), Error> {
    let config = match config {
        Some(path) => Config::from_file(path)?,
        None => Config::default_config(),
    };
    let chosen = config
        .cache_dir
        .clone()
        .or_else(|| env_path("PORTCULLIS_CACHE_DIR"));
    // Compiling in a worker bounds its time and memory; without a path to
    // this binary, compile here.
    let compiler = match std::env::current_exe() {
        Ok(program) => Compiler::Worker {
            program,
            timeout: config.sandbox.compile_timeout,
            memory: config.sandbox.compile_memory,
        },
        Err(error) => {
            tracing::warn!("compiling policies without a time or memory budget: {error}");
            Compiler::InProcess
        }
    };
    let options = |cache_dir| HostOptions {
        cache_dir,
        memory_budget: config.sandbox.memory_budget,
        max_module_size: config.sandbox.max_module_size,
        compiler: compiler.clone(),
    };
    let host = match chosen {
        // A cache the operator chose must work.
        Some(dir) => Host::new(&options(Some(dir)))?,
        // The usual place is a convenience: without it, compile every time.
        None => match Host::new(&options(user_cache_dir())) {
            Err(LoadError::Cache(error)) => {
                tracing::warn!(
                    "running without a compilation cache: {}",
                    crate::error_chain(&error)
                );
                Host::new(&options(None))?
            }
            host => host?,
        },
    };
    let pipeline = Pipeline::load(&config, &host)?;
    Ok((config, pipeline))
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// `$XDG_CACHE_HOME/portcullis`, else `~/.cache/portcullis`.
fn user_cache_dir() -> Option<PathBuf> {
    env_path("XDG_CACHE_HOME")
        .map(|dir| dir.join("portcullis"))
        .or_else(|| env_path("HOME").map(|home| home.join(".cache").join("portcullis")))
}

fn eval(
    config: Option<&Path>,
    docker: bool,
    output: Output,
    files: &[PathBuf],
) -> Result<u8, Error> {
    let (_, pipeline) = load(config)?;
    // Policies that read the cluster judge it as listed, not half-known.
    wait_for_cluster(&pipeline)?;
    let mut status = 0;
    for file in files {
        let request = match input::read(file, docker) {
            Ok(request) => request,
            Err(error) => {
                eprintln!("error: {}: {}", file.display(), crate::error_chain(&error));
                status = ERROR;
                continue;
            }
        };
        let decision = pipeline.evaluate(&request);
        if !decision.allowed && status == 0 {
            status = DENIED;
        }
        match output {
            Output::Text => print!("{}", render::text(file, &decision, files.len() > 1)),
            Output::Json => println!("{}", render::json(file, &decision)),
        }
    }
    Ok(status)
}

fn verify(config: &Path, output: Output, image: &str) -> Result<u8, Error> {
    let config = Config::from_file(config)?;
    let images = config
        .images
        .as_ref()
        .ok_or("the configuration has no `images` section: nothing to verify against")?;
    crate::verify::reference::Reference::parse(image)
        .map_err(|error| format!("`{image}` is not an image reference: {error}"))?;
    let verifier = Verifier::new(images)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let verdict = runtime.block_on(verifier.verify(image));
    match output {
        Output::Text => print!("{}", render::verdict(&verdict)),
        Output::Json => println!("{}", serde_json::to_string(&verdict)?),
    }
    Ok(if verdict.verified { 0 } else { DENIED })
}

/// The image verifier of the configuration's `images` section, if any.
fn verifier(config: &Config) -> Result<Option<Arc<Verifier>>, Error> {
    Ok(config
        .images
        .as_ref()
        .map(Verifier::new)
        .transpose()?
        .map(Arc::new))
}

fn serve(config: &Path) -> Result<u8, Error> {
    let (config, pipeline) = load(Some(config))?;
    if config.kubernetes.is_none() && config.docker.is_none() {
        return Err(
            "the configuration has neither a `kubernetes` nor a `docker` section: nothing to serve"
                .into(),
        );
    }
    started(&config, &pipeline);
    let pipeline = Arc::new(pipeline);
    let verifier = verifier(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // One signal stops every front door.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            }
        };
        let mut front_doors = tokio::task::JoinSet::new();
        if let Some(webhook) = &config.kubernetes {
            let tls = tls::server_config(&webhook.tls, &[b"h2", b"http/1.1"])?;
            let listener = tokio::net::TcpListener::bind(webhook.listen)
                .await
                .map_err(|error| format!("cannot listen on {}: {error}", webhook.listen))?;
            let address = listener.local_addr()?;
            let server = Arc::new(Webhook::new(
                pipeline.clone(),
                verifier.clone(),
                Arc::new(Metrics::with_budget(pipeline.memory_budget())),
                webhook,
            ));
            tokio::spawn(tls.reloader.watch());
            tracing::info!(listener = %format!("https://{address}"), "kubernetes webhook listening");
            // Scripts and tests wait for these lines to know where to connect.
            println!("listening on https://{address}");
            front_doors.spawn(server::serve(
                server,
                listener,
                tls.config,
                shutdown(),
                webhook.shutdown_delay,
            ));
        }
        if let Some(docker) = &config.docker {
            let tls = docker
                .tls
                .as_ref()
                .map(|tls| tls::server_config(tls, &[b"http/1.1"]))
                .transpose()?;
            let proxy = Arc::new(proxy::Proxy::new(
                pipeline.clone(),
                verifier.clone(),
                docker,
            )?);
            let (addresses, stopped) = proxy::start(
                proxy,
                docker.clone(),
                tls.as_ref().map(|tls| tls.config.clone()),
                shutdown(),
            )
            .await?;
            for address in addresses {
                tracing::info!(listener = %address, upstream = %docker.upstream, "docker proxy listening");
                println!("listening on {address}");
            }
            if let Some(tls) = tls {
                tokio::spawn(tls.reloader.watch());
            }
            front_doors.spawn(stopped);
        }
        shutdown_signal().await;
        let _ = stop.send(true);
        while front_doors.join_next().await.is_some() {}
        tracing::info!("stopped");
        Ok::<_, Error>(0)
    })
}

/// The start-up summary: the version, and what was loaded.
fn started(config: &Config, pipeline: &Pipeline) {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "portcullis starting");
    for (name, source, mode, digest) in pipeline.summary() {
        tracing::info!(
            policy = name,
            %mode,
            module = source,
            digest = %format!("sha256:{digest}"),
            "policy loaded"
        );
    }
    if let Some(images) = &config.images {
        tracing::info!(rules = images.rules.len(), "image verification on");
    }
    if let Some(cluster) = pipeline.cluster() {
        tracing::info!(
            server = cluster.server(),
            resources = %render::cluster_resources(config),
            "reading the cluster"
        );
    }
}

/// SIGTERM (what Kubernetes sends) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        // Without signal handlers the process can only be killed; serve on.
        _ => std::future::pending().await,
    }
    tracing::info!("shutting down: readiness is off, finishing in-flight reviews");
}

fn certs(
    service: String,
    namespace: String,
    out: &Path,
    names: Vec<String>,
    days: u64,
    ca: Option<&Path>,
) -> Result<u8, Error> {
    let request = certs::Request {
        service,
        namespace,
        extra_names: names,
        validity: std::time::Duration::from_secs(days.saturating_mul(86_400)),
    };
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))
    };
    let ca = match ca {
        Some(dir) => Some(certs::ExistingCa {
            cert: read(dir.join("ca.crt"))?,
            key: read(dir.join("ca.key"))?,
        }),
        None => None,
    };
    let written = certs::generate(&request, ca)?.write(out)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(0)
}

fn check(config: Option<&Path>) -> Result<u8, Error> {
    let (config, pipeline) = load(config)?;
    // Keys, certificates and trust roots are read as `serve` would, and the
    // cluster listed with the gateway's own credentials.
    verifier(&config)?;
    wait_for_cluster(&pipeline)?;
    print!("{}", render::summary(&config, &pipeline));
    Ok(0)
}

/// How long `eval` and `check` wait for the cluster's first lists.
const CLUSTER_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until every cache of the cluster the policies read is listed.
fn wait_for_cluster(pipeline: &Pipeline) -> Result<(), Error> {
    let Some(cluster) = pipeline.cluster() else {
        return Ok(());
    };
    let failed = cluster.wait_until_listed(std::time::Instant::now() + CLUSTER_LIST_TIMEOUT);
    if failed.is_empty() {
        return Ok(());
    }
    let reasons: Vec<String> = failed.iter().map(ToString::to_string).collect();
    Err(format!(
        "cannot read the cluster at {}: {}",
        cluster.server(),
        reasons.join("; ")
    )
    .into())
}
