//! `portcullis-load`: load Portcullis's front doors and report throughput
//! and latency.
//!
//! - `portcullis-load run --address 127.0.0.1:8443 --ca ca.crt --body review.json`
//!   loads a running webhook;
//! - `portcullis-load suite` starts `portcullis serve` itself with no policy,
//!   with `pod-security`, and with five enforcing policies, loads each the
//!   same way, and prints one table: the README's webhook figures;
//! - `portcullis-load docker-suite` puts the Docker proxy beside the engine's
//!   own socket: the README's proxy figures.

mod docker;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use portcullis_load::{Error, Load, Report, Target, run};

/// The typical pod of the benchmarks, as an AdmissionReview.
const TYPICAL_POD: &str = include_str!("../../requests/typical-pod.json");

#[derive(Parser)]
#[command(name = "portcullis-load", about = "Load Portcullis's front doors")]
struct Cli {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Load a running server: the webhook over HTTPS (`--address`, `--ca`),
    /// or the Docker proxy or engine over a unix socket (`--unix`).
    Run {
        /// Server address (HTTPS).
        #[arg(long, required_unless_present = "unix", requires = "ca")]
        address: Option<SocketAddr>,
        /// Name to verify the server certificate against.
        #[arg(long, default_value = "127.0.0.1")]
        server_name: String,
        /// CA certificate (PEM).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Unix socket (plain HTTP).
        #[arg(long, conflicts_with = "address")]
        unix: Option<PathBuf>,
        /// Request method.
        #[arg(long, default_value = "POST")]
        method: String,
        /// Request body (default for POST: a review of a typical 2.5 KB pod;
        /// for other methods: none).
        #[arg(long)]
        body: Option<PathBuf>,
        /// Request path.
        #[arg(long, default_value = "/validate")]
        path: String,
        /// The status every answer should have.
        #[arg(long, default_value_t = 200)]
        status: u16,
        #[command(flatten)]
        shape: Shape,
    },
    /// Start `portcullis serve` with three configurations and load each.
    Suite {
        /// The portcullis binary (default: beside this one).
        #[arg(long)]
        portcullis: Option<PathBuf>,
        #[command(flatten)]
        shape: Shape,
        /// Total requests per second of the open-loop run.
        #[arg(long, default_value_t = 1000.0)]
        open_rate: f64,
    },
    /// Start `portcullis serve` with a Docker proxy and measure it against
    /// the engine's own socket.
    DockerSuite {
        /// The portcullis binary (default: beside this one).
        #[arg(long)]
        portcullis: Option<PathBuf>,
        /// The engine's socket (default: `$DOCKER_HOST` if it names a unix
        /// socket, else /var/run/docker.sock).
        #[arg(long)]
        engine: Option<PathBuf>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// MiB of logs the streaming container writes.
        #[arg(long, default_value_t = 1024)]
        log_mib: u64,
    },
}

#[derive(clap::Args, Clone)]
struct Shape {
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Total requests per second (open loop); absent: as fast as answered.
    #[arg(long)]
    rate: Option<f64>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One thread: the client shares the machine with the server, and one
    // core of client is plenty for a few thousand requests a second.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(command(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn command(command: Action) -> Result<(), Error> {
    match command {
        Action::Run {
            address,
            server_name,
            ca,
            unix,
            method,
            body,
            path,
            status,
            shape,
        } => {
            let body = match body {
                Some(file) => Bytes::from(std::fs::read(file)?),
                None if method == "POST" => typical_review(),
                None => Bytes::new(),
            };
            let target = match (unix, address, ca) {
                (Some(socket), _, _) => Target::Unix(socket),
                (None, Some(address), Some(ca)) => Target::new(address, &server_name, &ca)?,
                _ => return Err("give --unix, or --address and --ca".into()),
            };
            let load = Load {
                target,
                method,
                path,
                body,
                status,
                connections: shape.connections,
                duration: Duration::from_secs_f64(shape.seconds),
                rate: shape.rate,
            };
            let report = run(&load).await?;
            println!("{}", summary(&report));
            Ok(())
        }
        Action::Suite {
            portcullis,
            shape,
            open_rate,
        } => suite(&portcullis_binary(portcullis)?, &shape, open_rate).await,
        Action::DockerSuite {
            portcullis,
            engine,
            seconds,
            log_mib,
        } => {
            docker::Suite {
                portcullis: portcullis_binary(portcullis)?,
                engine: engine.unwrap_or_else(|| {
                    std::env::var("DOCKER_HOST")
                        .ok()
                        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
                        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
                }),
                seconds,
                log_bytes: log_mib << 20,
            }
            .run()
            .await
        }
    }
}

/// The portcullis binary: as given, or beside this one.
fn portcullis_binary(given: Option<PathBuf>) -> Result<PathBuf, Error> {
    match given {
        Some(path) => Ok(path),
        None => Ok(std::env::current_exe()?
            .parent()
            .ok_or("cannot locate this program's directory")?
            .join("portcullis")),
    }
}

/// An AdmissionReview creating the typical pod.
fn typical_review() -> Bytes {
    let pod: serde_json::Value = serde_json::from_str(TYPICAL_POD).unwrap_or_default();
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "2d0ef6f3-9a8e-4c5b-8f1d-6a7b0c9d8e7f",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "name": "checkout-7d9f8b6c5-x2x7q", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": false
        }
    });
    Bytes::from(review.to_string())
}

fn summary(report: &Report) -> String {
    format!(
        "{} ok, {} errors in {:.1} s: {:.0} reviews/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        report.ok,
        report.errors,
        report.elapsed.as_secs_f64(),
        report.throughput(),
        report.percentile_ms(50.0),
        report.percentile_ms(90.0),
        report.percentile_ms(99.0),
        report.percentile_ms(99.9),
        report.latency.max() as f64 / 1000.0,
    )
}

/// The three configurations of the suite: name and policies.
fn configurations() -> [(&'static str, String); 3] {
    let pod_security = |name: &str, level: &str, version: &str| {
        format!(
            "  - {{name: {name}, module: builtin:pod-security, settings: {{level: {level}, version: {version}}}}}\n"
        )
    };
    [
        ("no policy", "policies: []\n".to_owned()),
        (
            "pod-security",
            format!(
                "policies:\n{}",
                pod_security("pod-security", "baseline", "latest")
            ),
        ),
        (
            "five enforcing policies",
            format!(
                "policies:\n{}{}{}{}{}",
                pod_security("baseline", "baseline", "latest"),
                pod_security("restricted", "restricted", "latest"),
                pod_security("baseline-v1-30", "baseline", "v1.30"),
                pod_security("restricted-v1-30", "restricted", "v1.30"),
                pod_security("restricted-v1-25", "restricted", "v1.25"),
            ),
        ),
    ]
}

async fn suite(portcullis: &Path, shape: &Shape, open_rate: f64) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    let status = Command::new(portcullis)
        .args(["certs", "--name", "127.0.0.1", "--out"])
        .arg(&certs)
        .stdout(Stdio::null())
        .status()
        .map_err(|error| format!("cannot run {}: {error}", portcullis.display()))?;
    if !status.success() {
        return Err("portcullis certs failed".into());
    }
    let body = typical_review();
    println!(
        "{} connections for {} s closed-loop, then {} reviews/s open-loop; the review creates a 2.5 KB pod\n",
        shape.connections, shape.seconds, open_rate
    );
    println!("| configuration | reviews/s | p50 | p99 | p99 at {open_rate:.0}/s | errors |");
    println!("|---|---|---|---|---|---|");
    for (name, policies) in configurations() {
        let config = dir.path().join("portcullis.yaml");
        std::fs::write(
            &config,
            format!(
                "cache_dir: {}\nkubernetes:\n  listen: 127.0.0.1:0\n  tls: {{cert: {}, key: {}}}\n{policies}",
                dir.path().join("cache").display(),
                certs.join("tls.crt").display(),
                certs.join("tls.key").display(),
            ),
        )?;
        let mut server = Server::start(portcullis, &config)?;
        let address = server
            .address
            .strip_prefix("https://")
            .ok_or_else(|| format!("not the webhook: {}", server.address))?
            .parse()?;
        let target = Target::new(address, "127.0.0.1", &certs.join("ca.crt"))?;
        let load = |rate| Load {
            target: target.clone(),
            method: "POST".into(),
            path: "/validate".into(),
            body: body.clone(),
            status: 200,
            connections: shape.connections,
            duration: Duration::from_secs_f64(shape.seconds),
            rate,
        };
        // Warm the server (first instances, connection setup) before measuring.
        run(&Load {
            duration: Duration::from_secs(1),
            ..load(None)
        })
        .await?;
        let closed = run(&load(shape.rate)).await?;
        let open = run(&load(Some(open_rate))).await?;
        server.stop();
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            closed.throughput(),
            closed.percentile_ms(50.0),
            closed.percentile_ms(99.0),
            open.percentile_ms(99.0),
            closed.errors + open.errors,
        );
        eprintln!("{name}: closed loop: {}", summary(&closed));
        eprintln!("{name}: open loop: {}", summary(&open));
    }
    Ok(())
}

/// A `portcullis serve` process.
struct Server {
    child: Child,
    /// Where it listens first, as it says: `https://…` or `unix://…`.
    address: String,
}

impl Server {
    fn start(portcullis: &Path, config: &Path) -> Result<Self, Error> {
        let mut child = Command::new(portcullis)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run {}: {error}", portcullis.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("unexpected first line from portcullis serve: {line:?}"))?
            .to_owned();
        Ok(Self { child, address })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        // SIGTERM, as Kubernetes would stop it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
