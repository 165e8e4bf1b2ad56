//! `portcullis-load`: load Portcullis's front doors and report throughput
//! and latency.
//!
//! - `portcullis-load run --address 127.0.0.1:8443 --ca ca.crt --body review.json`
//!   loads a running webhook;
//! - `portcullis-load suite` starts `portcullis serve` itself with no policy,
//!   with `pod-security`, and with five enforcing policies, loads each the
//!   same way, and prints one table: the README's webhook figures;
//! - `portcullis-load hostile-suite` puts a misbehaving test policy in front
//!   of `pod-security`, one behaviour at a time, and measures the latency of
//!   the reviews it does not see while it is fed its own;
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
use portcullis_load::{Connection, Error, Load, Report, Target, run};

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
    /// Start `portcullis serve` with a misbehaving policy in front of
    /// `pod-security`, one behaviour at a time, and measure how much its
    /// requests slow down everyone else's.
    HostileSuite {
        /// The portcullis binary (default: beside this one).
        #[arg(long)]
        portcullis: Option<PathBuf>,
        /// The test policy component (default: build
        /// `tests/policies/test-policy` for wasm32-wasip2 now).
        #[arg(long)]
        test_policy: Option<PathBuf>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Normal reviews per second (open loop).
        #[arg(long, default_value_t = 300.0)]
        rate: f64,
        /// Connections of the normal reviews.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Connections of the hostile reviews (closed loop).
        #[arg(long, default_value_t = 4)]
        hostile_connections: usize,
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
        Action::HostileSuite {
            portcullis,
            test_policy,
            seconds,
            rate,
            connections,
            hostile_connections,
        } => {
            HostileSuite {
                portcullis: portcullis_binary(portcullis)?,
                test_policy: test_policy_component(test_policy)?,
                duration: Duration::from_secs_f64(seconds),
                rate,
                connections,
                hostile_connections,
            }
            .run()
            .await
        }
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

/// Makes the webhook's certificates in `dir/certs` (`ca.crt`, `tls.crt`,
/// `tls.key`) and returns that directory.
fn certificates(portcullis: &Path, dir: &Path) -> Result<PathBuf, Error> {
    let certs = dir.join("certs");
    let status = Command::new(portcullis)
        .args(["certs", "--name", "127.0.0.1", "--out"])
        .arg(&certs)
        .stdout(Stdio::null())
        .status()
        .map_err(|error| format!("cannot run {}: {error}", portcullis.display()))?;
    if !status.success() {
        return Err("portcullis certs failed".into());
    }
    Ok(certs)
}

/// Writes `dir/portcullis.yaml`: the webhook on a free port with the
/// certificates in `certs`, then `policies` (YAML, from `policies:` on).
fn write_config(dir: &Path, certs: &Path, policies: &str) -> Result<PathBuf, Error> {
    let config = dir.join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "cache_dir: {}\nkubernetes:\n  listen: 127.0.0.1:0\n  tls: {{cert: {}, key: {}}}\n{policies}",
            dir.join("cache").display(),
            certs.join("tls.crt").display(),
            certs.join("tls.key").display(),
        ),
    )?;
    Ok(config)
}

async fn suite(portcullis: &Path, shape: &Shape, open_rate: f64) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let certs = certificates(portcullis, dir.path())?;
    let body = typical_review();
    println!(
        "{} connections for {} s closed-loop, then {} reviews/s open-loop; the review creates a 2.5 KB pod\n",
        shape.connections, shape.seconds, open_rate
    );
    println!("| configuration | reviews/s | p50 | p99 | p99 at {open_rate:.0}/s | errors |");
    println!("|---|---|---|---|---|---|");
    for (name, policies) in configurations() {
        let config = write_config(dir.path(), &certs, &policies)?;
        let mut server = Server::start(portcullis, &config)?;
        let target = server.webhook(&certs)?;
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

/// The hostile policy's behaviours, in the table's order (the test policy's
/// names, `tests/policies/test-policy`); `None` is the baseline, the same
/// policy behaving (`allow`).
const HOSTILE_BEHAVIOURS: [Option<&str>; 7] = [
    None,
    Some("sleep"),
    Some("wait-forever"),
    Some("poll"),
    Some("patch-bomb"),
    Some("forge-log"),
    Some("loop"),
];

/// The namespace the hostile policy matches, and its reviews are in.
const HOSTILE_NAMESPACE: &str = "hostile";

/// How long after its end a load may still wait for answers before the row
/// is given up: a policy that is never stopped would otherwise hang the
/// suite, since a load waits for every answer.
const HANG_GRACE: Duration = Duration::from_secs(30);

/// The test policy component: as given, or built now from
/// `tests/policies/test-policy`, so one command reproduces the figures.
fn test_policy_component(given: Option<PathBuf>) -> Result<PathBuf, Error> {
    if let Some(path) = given {
        // The configuration lives in a scratch directory, against which a
        // relative path would be resolved.
        return std::fs::canonicalize(&path)
            .map_err(|error| Error::from(format!("{}: {error}", path.display())));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the workspace")?;
    let target_dir = portcullis_wasm_build::default_target_dir(workspace);
    portcullis_wasm_build::build(workspace, &target_dir, &["test-policy"])
        .map_err(|error| format!("building the test policy: {error}"))?
        .into_iter()
        .next()
        .ok_or_else(|| "building the test policy produced no component".into())
}

/// The hostile suite: does a policy that misbehaves slow down the requests
/// it does not even see?
///
/// For each behaviour, `portcullis serve` runs the test policy behaving so,
/// with a 100 ms deadline, matching only the `hostile` namespace, followed by
/// `pod-security`. Two loads run at once on the one client thread: normal
/// reviews (the typical pod, in its own namespace, judged by `pod-security`
/// alone) at a fixed open-loop rate, whose latency is reported, and hostile
/// reviews (the same pod in `hostile`) closed loop, as fast as the gateway
/// answers them, whose throughput is reported. A hostile review is answered
/// 200 with an AdmissionReview, denying when the policy fails, so only
/// failed requests and other statuses count as errors (of both loads).
///
/// The baseline row drives the same two loads with the same policy in the
/// hostile one's place, behaving (it allows): the hostile reviews then cost
/// what any review with two policies costs, and the p99 ratio isolates what
/// the misbehaviour costs from what merely sharing two cores with a closed
/// loop of other reviews costs. The row after it, normal reviews alone on
/// the same server, shows the latter.
struct HostileSuite {
    portcullis: PathBuf,
    test_policy: PathBuf,
    duration: Duration,
    /// Normal reviews per second.
    rate: f64,
    /// Connections of the normal reviews.
    connections: usize,
    /// Connections of the hostile reviews.
    hostile_connections: usize,
}

/// One configuration's measurements: each load's report, or why there is
/// none.
struct HostileRow {
    normal: Result<Report, Error>,
    hostile: Option<Result<Report, Error>>,
}

impl HostileSuite {
    async fn run(&self) -> Result<(), Error> {
        let dir = tempfile::tempdir()?;
        let certs = certificates(&self.portcullis, dir.path())?;
        let normal_body = typical_review();
        let hostile_body = in_namespace(&normal_body, HOSTILE_NAMESPACE)?;
        println!(
            "normal reviews at {:.0}/s open-loop on {} connections, with hostile reviews closed-loop on {} connections, for {} s; the hostile policy has a 100 ms deadline and sees only the hostile namespace; every review creates a 2.5 KB pod\n",
            self.rate,
            self.connections,
            self.hostile_connections,
            self.duration.as_secs_f64(),
        );
        println!(
            "| hostile policy | normal p50 | normal p99 | p99 ÷ baseline p99 | hostile reviews/s | errors |"
        );
        println!("|---|---|---|---|---|---|");
        let mut baseline_p99 = None;
        for behaviour in HOSTILE_BEHAVIOURS {
            let name = behaviour.unwrap_or("none (the policy allows)");
            let config = write_config(dir.path(), &certs, &self.policies(behaviour))?;
            // A failing policy is logged once per review, thousands of lines
            // a second: to a file, as a deployment would collect them, not
            // over the table and the summaries.
            let log = dir.path().join(format!("{name}.log"));
            let stderr = Stdio::from(std::fs::File::create(&log)?);
            let mut server = match Server::start_with_stderr(&self.portcullis, &config, stderr) {
                Ok(server) => server,
                Err(error) => {
                    // A behaviour the test policy does not know is refused
                    // at start-up; the other rows are still worth having.
                    println!("| {name} | did not start: {error} | | | | |");
                    eprintln!("{name}: portcullis serve did not start: {error}");
                    eprint!("{}", std::fs::read_to_string(&log).unwrap_or_default());
                    continue;
                }
            };
            let target = server.webhook(&certs)?;
            let normal = self.load(&target, &normal_body, self.connections, Some(self.rate));
            let hostile = self.load(&target, &hostile_body, self.hostile_connections, None);
            eprintln!(
                "{name}: a hostile review: {}",
                probe(&target, &hostile_body).await
            );
            // Warm the server (first instances, connection setup) before
            // measuring, with both kinds of review.
            let warm = |load: &Load| Load {
                duration: Duration::from_secs(1),
                rate: None,
                ..load.clone()
            };
            let (warm_normal, warm_hostile) = (warm(&normal), warm(&hostile));
            let (warm_normal, warm_hostile) =
                tokio::join!(bounded(&warm_normal), bounded(&warm_hostile));
            warm_normal?;
            if let Err(error) = warm_hostile {
                eprintln!("{name}: warming with hostile reviews: {error}");
            }
            let (normal_report, hostile_report) = tokio::join!(bounded(&normal), bounded(&hostile));
            let row = HostileRow {
                normal: normal_report,
                hostile: Some(hostile_report),
            };
            if behaviour.is_none() {
                baseline_p99 = row
                    .normal
                    .as_ref()
                    .ok()
                    .map(|report| report.percentile_ms(99.0));
            }
            row.print(name, baseline_p99);
            if behaviour.is_none() {
                let alone = HostileRow {
                    normal: bounded(&normal).await,
                    hostile: None,
                };
                alone.print("none, normal reviews alone", baseline_p99);
            }
            server.stop();
            let logged = std::fs::read_to_string(&log)?;
            eprintln!(
                "{name}: the server logged {} lines, the first: {:?}",
                logged.lines().count(),
                logged.lines().next().unwrap_or_default()
            );
        }
        Ok(())
    }

    /// The policies for one behaviour: the hostile one (behaving, for the
    /// baseline), then `pod-security`.
    fn policies(&self, behaviour: Option<&str>) -> String {
        let hostile = format!(
            "  - name: hostile\n    module: {}\n    settings: {{behaviour: {}}}\n    timeout: 100ms\n    match: {{namespaces: {{include: [{HOSTILE_NAMESPACE}]}}}}\n",
            self.test_policy.display(),
            behaviour.unwrap_or("allow")
        );
        format!("policies:\n{hostile}  - name: pod-security\n    module: builtin:pod-security\n")
    }

    fn load(&self, target: &Target, body: &Bytes, connections: usize, rate: Option<f64>) -> Load {
        Load {
            target: target.clone(),
            method: "POST".into(),
            path: "/validate".into(),
            body: body.clone(),
            status: 200,
            connections,
            duration: self.duration,
            rate,
        }
    }
}

impl HostileRow {
    /// Prints the table row, and each load's summary to stderr.
    fn print(&self, name: &str, baseline_p99: Option<f64>) {
        let (p50, p99, ratio) = match &self.normal {
            Ok(report) => (
                format!("{:.2} ms", report.percentile_ms(50.0)),
                format!("{:.2} ms", report.percentile_ms(99.0)),
                baseline_p99.filter(|baseline| *baseline > 0.0).map_or_else(
                    || "—".to_owned(),
                    |baseline| format!("{:.2}", report.percentile_ms(99.0) / baseline),
                ),
            ),
            Err(error) => (format!("failed: {error}"), "—".into(), "—".into()),
        };
        let hostile = match &self.hostile {
            None => "—".to_owned(),
            Some(Ok(report)) => format!("{:.0}", report.throughput()),
            Some(Err(error)) => format!("failed: {error}"),
        };
        let errors: u64 = [Some(&self.normal), self.hostile.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|report| report.as_ref().ok())
            .map(|report| report.errors)
            .sum();
        println!("| {name} | {p50} | {p99} | {ratio} | {hostile} | {errors} |");
        for (load, report) in [
            ("normal", Some(&self.normal)),
            ("hostile", self.hostile.as_ref()),
        ] {
            match report {
                Some(Ok(report)) => eprintln!("{name}: {load}: {}", summary(report)),
                Some(Err(error)) => eprintln!("{name}: {load}: {error}"),
                None => {}
            }
        }
    }
}

/// The same review, in another namespace (the request's and the object's).
fn in_namespace(review: &Bytes, namespace: &str) -> Result<Bytes, Error> {
    let mut review: serde_json::Value = serde_json::from_slice(review)?;
    for pointer in ["/request/namespace", "/request/object/metadata/namespace"] {
        *review
            .pointer_mut(pointer)
            .ok_or_else(|| format!("the review has no {pointer}"))? = namespace.into();
    }
    Ok(Bytes::from(review.to_string()))
}

/// Runs a load, giving up [`HANG_GRACE`] after its end.
async fn bounded(load: &Load) -> Result<Report, Error> {
    tokio::time::timeout(load.duration + HANG_GRACE, run(load))
        .await
        .map_err(|_| {
            format!(
                "still waiting for answers {} s after the end",
                HANG_GRACE.as_secs()
            )
        })?
}

/// What the gateway answers one review, in a line: shows that the hostile
/// policy saw it, and how it failed.
async fn probe(target: &Target, body: &Bytes) -> String {
    let answer = async {
        let mut connection = Connection::open(target).await?;
        let (status, answer) = connection.post("/validate", body.clone()).await?;
        let answer: serde_json::Value = serde_json::from_slice(&answer)?;
        let response = &answer["response"];
        let mut message = response["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some((cut, _)) = message.char_indices().nth(200) {
            message.truncate(cut);
            message.push('…');
        }
        Ok::<_, Error>(format!(
            "HTTP {status}, allowed {}, message {message:?}",
            response["allowed"]
        ))
    };
    match tokio::time::timeout(HANG_GRACE, answer).await {
        Ok(Ok(line)) => line,
        Ok(Err(error)) => format!("failed: {error}"),
        Err(_) => format!("no answer in {} s", HANG_GRACE.as_secs()),
    }
}

/// A `portcullis serve` process.
struct Server {
    child: Child,
    /// Where it listens first, as it says: `https://…` or `unix://…`.
    address: String,
}

impl Server {
    fn start(portcullis: &Path, config: &Path) -> Result<Self, Error> {
        Self::start_with_stderr(portcullis, config, Stdio::inherit())
    }

    /// The same, with the server's log (its stderr) sent to `stderr`.
    fn start_with_stderr(portcullis: &Path, config: &Path, stderr: Stdio) -> Result<Self, Error> {
        let mut child = Command::new(portcullis)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(stderr)
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

    /// The webhook it serves, trusting the CA in `certs`.
    fn webhook(&self, certs: &Path) -> Result<Target, Error> {
        let address = self
            .address
            .strip_prefix("https://")
            .ok_or_else(|| format!("not the webhook: {}", self.address))?
            .parse()?;
        Target::new(address, "127.0.0.1", &certs.join("ca.crt"))
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
