//! `portcullis-load docker-suite`: the Docker proxy against the engine's own
//! socket, in the same run — pass-through requests, container creation
//! judged by the shipped hardening policies, and streamed logs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis_load::{Connection, Error, Load, Report, Target, run};

use crate::Server;

/// The shipped hardening configuration.
const HARDENING: &str = include_str!("../../../policies/docker-hardening.yaml");

/// The image the suite's containers run: busybox on an empty base, built
/// locally (the same image the end-to-end tests build).
const IMAGE: &str = "portcullis-test/busybox:1";

/// Label on every container the suite makes, so it can remove them.
const LABEL: &str = "portcullis-bench";

/// What to measure.
pub(crate) struct Suite {
    /// The portcullis binary.
    pub(crate) portcullis: PathBuf,
    /// The engine's socket.
    pub(crate) engine: PathBuf,
    /// Seconds per measurement.
    pub(crate) seconds: f64,
    /// Bytes the logging container writes.
    pub(crate) log_bytes: u64,
}

impl Suite {
    pub(crate) async fn run(&self) -> Result<(), Error> {
        let dir = tempfile::tempdir()?;
        let direct = Target::Unix(self.engine.clone());
        let version = api_version(&direct).await?;
        build_image(&self.engine)?;
        println!(
            "Engine API v{version}; each figure from {} s of closed-loop requests after 1 s of warm-up.\n",
            self.seconds
        );

        // Pass-through: access rules and the audit line, no policy.
        let config = self.config(dir.path(), "pass-through", "policies: []\n")?;
        let mut server = Server::start(&self.portcullis, &config)?;
        let proxy = Target::Unix(unix_path(&server.address)?);
        println!(
            "| request | connections | engine req/s | proxy req/s | engine p50 | proxy p50 | added p50 | engine p99 | proxy p99 |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for path in ["/_ping".to_owned(), format!("/v{version}/containers/json")] {
            for connections in [1, 16] {
                let load = |target: &Target| Load {
                    target: target.clone(),
                    method: "GET".into(),
                    path: path.clone(),
                    body: Bytes::new(),
                    status: 200,
                    connections,
                    duration: Duration::from_secs_f64(self.seconds),
                    rate: None,
                };
                let engine = measure(&load(&direct)).await?;
                let proxied = measure(&load(&proxy)).await?;
                println!(
                    "| `GET {path}` | {connections} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                    engine.throughput(),
                    proxied.throughput(),
                    micros(engine.latency.value_at_percentile(50.0)),
                    micros(proxied.latency.value_at_percentile(50.0)),
                    micros(
                        proxied
                            .latency
                            .value_at_percentile(50.0)
                            .saturating_sub(engine.latency.value_at_percentile(50.0))
                    ),
                    micros(engine.latency.value_at_percentile(99.0)),
                    micros(proxied.latency.value_at_percentile(99.0)),
                );
            }
        }

        // Streaming: the logs of a container that wrote `log_bytes`.
        println!();
        let logs = self.logs(&direct, &proxy, server.pid(), &version).await;
        server.stop();
        logs?;

        // Creation, judged by the shipped hardening policies.
        let hardening = self.config(dir.path(), "hardening", HARDENING)?;
        let mut server = Server::start(&self.portcullis, &hardening)?;
        let proxy = Target::Unix(unix_path(&server.address)?);
        let create = self.create(&direct, &proxy, &version).await;
        server.stop();
        create?;

        // Pressure: the hardening policies, with room for many idle
        // connections from one client.
        let mut pressured: serde_json::Value = serde_saphyr::from_str(HARDENING)?;
        pressured["docker"]["max_connections_per_client"] = 20_000.into();
        let pressured = self.config(dir.path(), "pressure", &pressured.to_string())?;
        let mut server = Server::start(&self.portcullis, &pressured)?;
        let proxy = Target::Unix(unix_path(&server.address)?);
        let pressure = self.pressure(&proxy, &version).await;
        server.stop();
        pressure
    }

    /// `GET /_ping` through the proxy, one connection: quiet; while another
    /// client sends, one after another, the slowest body to read the proxy
    /// accepts (distinct keys up to the value bound, just under the body
    /// cap); and with 10,000 idle connections held open.
    async fn pressure(&self, proxy: &Target, version: &str) -> Result<(), Error> {
        let ping = Load {
            target: proxy.clone(),
            method: "GET".into(),
            path: "/_ping".into(),
            body: Bytes::new(),
            status: 200,
            connections: 1,
            duration: Duration::from_secs_f64(self.seconds),
            rate: None,
        };
        println!(
            "\n`GET /_ping` through the proxy, one connection, policies of `policies/docker-hardening.yaml`, while:\n"
        );
        println!("| other clients | pings/s | p50 | p99 | p99.9 | max | other requests answered |");
        println!("|---|---|---|---|---|---|---|");
        let row = |what: &str, report: &Report, others: String| {
            println!(
                "| {what} | {:.0} | {} | {} | {} | {} | {others} |",
                report.throughput(),
                micros(report.latency.value_at_percentile(50.0)),
                micros(report.latency.value_at_percentile(99.0)),
                micros(report.latency.value_at_percentile(99.9)),
                micros(report.latency.max()),
            );
        };
        row("none", &measure(&ping).await?, "–".into());

        let labels: Vec<String> = (0..250_000).map(|n| format!(r#""k{n}":"""#)).collect();
        let slow = Bytes::from(format!(
            r#"{{"Image": "{IMAGE}", "Labels": {{{}}}, "HostConfig": {{"Privileged": true}}}}"#,
            labels.join(",")
        ));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = {
            let (proxy, stop, slow) = (proxy.clone(), stop.clone(), slow.clone());
            let path = format!("/v{version}/containers/create");
            tokio::spawn(async move {
                let mut answered = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut connection = Connection::open(&proxy).await?;
                    let (status, _) = connection.post(&path, slow.clone()).await?;
                    if status != 403 {
                        return Err::<u64, Error>(format!("the slow body got {status}").into());
                    }
                    answered += 1;
                }
                Ok(answered)
            })
        };
        let report = measure(&ping).await?;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let answered = sender.await.map_err(|error| error.to_string())??;
        row(
            &format!(
                "one sends {:.1} MiB bodies of 250,000 keys, back to back",
                slow.len() as f64 / f64::from(1 << 20)
            ),
            &report,
            format!(
                "{answered} refused ({:.1}/s)",
                answered as f64 / report.elapsed.as_secs_f64()
            ),
        );

        let Target::Unix(socket) = proxy else {
            return Err("the proxy listens on a unix socket".into());
        };
        let mut idle = Vec::with_capacity(10_000);
        while idle.len() < 10_000 {
            match tokio::net::UnixStream::connect(socket).await {
                Ok(stream) => idle.push(stream),
                // The listen backlog is full: let the proxy accept.
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        let report = measure(&ping).await?;
        row("one holds 10,000 idle connections", &report, "–".into());
        drop(idle);
        Ok(())
    }

    /// A configuration: the `docker` section of `base` (or a plain one)
    /// listening in `dir`, in front of the engine, auditing to a file.
    fn config(&self, dir: &Path, name: &str, base: &str) -> Result<PathBuf, Error> {
        let mut config: serde_json::Value = serde_saphyr::from_str(base)?;
        let docker = &mut config["docker"];
        docker["listen"] = format!("unix://{}", dir.join(format!("{name}.sock")).display()).into();
        docker["socket"] = serde_json::json!({"mode": "0600"});
        docker["upstream"] = format!("unix://{}", self.engine.display()).into();
        docker["audit"] = dir
            .join(format!("{name}-audit.log"))
            .display()
            .to_string()
            .into();
        let path = dir.join(format!("{name}.yaml"));
        // JSON is YAML.
        std::fs::write(&path, config.to_string())?;
        Ok(path)
    }

    /// `POST /containers/create` of an ordinary container through the
    /// hardening policies, against the engine; and a privileged one, which
    /// the proxy refuses without asking the engine.
    async fn create(&self, direct: &Target, proxy: &Target, version: &str) -> Result<(), Error> {
        let ordinary = serde_json::json!({
            "Image": IMAGE,
            "Cmd": ["httpd", "-f", "-p", "8080"],
            "Env": ["MODE=production", "LOG_LEVEL=info"],
            "User": "1000",
            "WorkingDir": "/",
            "Labels": {LABEL: "1", "com.example.team": "shop"},
            "ExposedPorts": {"8080/tcp": {}},
            "HostConfig": {
                "PortBindings": {"8080/tcp": [{"HostPort": ""}]},
                "Memory": 268_435_456,
                "RestartPolicy": {"Name": "unless-stopped"},
                "CapDrop": ["NET_RAW"],
                // The engine's default may be the host's (cgroup v1).
                "CgroupnsMode": "private"
            }
        });
        let mut privileged = ordinary.clone();
        privileged["HostConfig"]["Privileged"] = true.into();
        let path = format!("/v{version}/containers/create");
        let load = |target: &Target, body: &serde_json::Value, status| Load {
            target: target.clone(),
            method: "POST".into(),
            path: path.clone(),
            body: Bytes::from(body.to_string()),
            status,
            connections: 1,
            duration: Duration::from_secs_f64(self.seconds),
            rate: None,
        };
        println!(
            "\n`POST /containers/create`, one connection, policies of `policies/docker-hardening.yaml`:\n"
        );
        println!("| container | via | creates/s | p50 | p99 | errors |");
        println!("|---|---|---|---|---|---|");
        for (what, body, status, targets) in [
            (
                "ordinary",
                &ordinary,
                201,
                &[("engine", direct), ("proxy", proxy)][..],
            ),
            (
                "privileged (refused)",
                &privileged,
                403,
                &[("proxy", proxy)],
            ),
        ] {
            for (via, target) in targets {
                let report = measure(&load(target, body, status)).await;
                remove_containers(direct).await?;
                let report = report?;
                println!(
                    "| {what} | {via} | {:.0} | {} | {} | {} |",
                    report.throughput(),
                    micros(report.latency.value_at_percentile(50.0)),
                    micros(report.latency.value_at_percentile(99.0)),
                    report.errors
                );
            }
        }
        Ok(())
    }

    /// Reads the logs of a container that wrote `log_bytes` to stdout, from
    /// the engine and through the proxy, three times each, alternating.
    async fn logs(
        &self,
        direct: &Target,
        proxy: &Target,
        proxy_pid: u32,
        version: &str,
    ) -> Result<(), Error> {
        let mut engine = Connection::open(direct).await?;
        // 1023 characters and a newline per line.
        let script = format!(
            "yes \"$(head -c 1023 /dev/zero | tr '\\0' x)\" | head -c {}",
            self.log_bytes
        );
        // Kept whole, whatever the engine's default log rotation.
        let create = serde_json::json!({
            "Image": IMAGE, "Cmd": ["sh", "-c", script], "Labels": {LABEL: "1"},
            "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {
                "max-size": format!("{}m", (self.log_bytes >> 20) * 2 + 16), "max-file": "1"
            }}}
        });
        let (status, body) = engine
            .post(
                &format!("/v{version}/containers/create"),
                Bytes::from(create.to_string()),
            )
            .await?;
        if status != 201 {
            return Err(format!(
                "cannot create the logging container: {status} {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        let id: serde_json::Value = serde_json::from_slice(&body)?;
        let id = id["Id"].as_str().ok_or("no container id")?.to_owned();
        let result = async {
            let written = Instant::now();
            for step in ["start", "wait"] {
                let (status, body) = engine
                    .post(&format!("/v{version}/containers/{id}/{step}"), Bytes::new())
                    .await?;
                if !(200..300).contains(&status) {
                    return Err(format!("container {step}: {status} {}", String::from_utf8_lossy(&body)).into());
                }
            }
            eprintln!(
                "the container wrote {} MiB of logs in {:.1} s",
                self.log_bytes >> 20,
                written.elapsed().as_secs_f64()
            );
            let path = format!("/v{version}/containers/{id}/logs?stdout=1&follow=1");
            let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            let (mut proxy_cpu, mut proxied_bytes) = (0.0, 0);
            for _ in 0..3 {
                for (index, target) in [direct, proxy].into_iter().enumerate() {
                    let mut connection = Connection::open(target).await?;
                    let cpu = cpu_seconds(proxy_pid)?;
                    let started = Instant::now();
                    let (status, length) = connection.drain(&path).await?;
                    let elapsed = started.elapsed().as_secs_f64();
                    if status != 200 || length < self.log_bytes {
                        return Err(format!("logs: status {status}, {length} bytes").into());
                    }
                    rates[index].push(length as f64 / elapsed / f64::from(1 << 20));
                    if index == 1 {
                        proxy_cpu += cpu_seconds(proxy_pid)? - cpu;
                        proxied_bytes += length;
                    }
                }
            }
            let [engine_rates, proxy_rates] = rates.map(|mut rates| {
                rates.sort_by(f64::total_cmp);
                rates[rates.len() / 2]
            });
            println!(
                "`docker logs -f` of a container that wrote {} MiB (median of 3 reads each): engine {engine_rates:.0} MiB/s, proxy {proxy_rates:.0} MiB/s ({:.1}% of direct); the proxy used {:.2} CPU-seconds per GiB",
                self.log_bytes >> 20,
                proxy_rates / engine_rates * 100.0,
                proxy_cpu / (proxied_bytes as f64 / f64::from(1 << 30)),
            );
            Ok::<_, Error>(())
        }
        .await;
        remove_containers(direct).await?;
        result
    }
}

/// CPU time a process has used, user and system, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("unreadable /proc stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).ok_or("no utime")?.parse::<u64>()?
        + fields.get(12).ok_or("no stime")?.parse::<u64>()?;
    Ok(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// Warms a target for a second, then measures it.
async fn measure(load: &Load) -> Result<Report, Error> {
    run(&Load {
        duration: Duration::from_secs(1),
        ..load.clone()
    })
    .await?;
    run(load).await
}

fn micros(value: u64) -> String {
    if value >= 10_000 {
        format!("{:.1} ms", value as f64 / 1000.0)
    } else {
        format!("{value} µs")
    }
}

fn unix_path(address: &str) -> Result<PathBuf, Error> {
    address
        .strip_prefix("unix://")
        .map(PathBuf::from)
        .ok_or_else(|| format!("not a unix socket: {address}").into())
}

/// The engine's newest API version.
async fn api_version(engine: &Target) -> Result<String, Error> {
    let (status, body) = Connection::open(engine)
        .await
        .map_err(|error| format!("cannot reach the engine: {error}"))?
        .send("GET", "/version", Bytes::new())
        .await?;
    let version: serde_json::Value = serde_json::from_slice(&body)?;
    match version["ApiVersion"].as_str() {
        Some(api) if status == 200 => Ok(api.to_owned()),
        _ => Err(format!("unexpected answer to GET /version: {status} {version}").into()),
    }
}

/// Builds the suite's image from the host's static busybox (Debian's
/// busybox-static) with the docker CLI, straight at the engine.
fn build_image(engine: &Path) -> Result<(), Error> {
    let context = tempfile::tempdir()?;
    std::fs::copy("/bin/busybox", context.path().join("busybox"))
        .map_err(|error| format!("/bin/busybox (install busybox-static): {error}"))?;
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n",
    )?;
    let built = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(context.path())
        .env("DOCKER_HOST", format!("unix://{}", engine.display()))
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .map_err(|error| format!("cannot run the docker CLI: {error}"))?;
    if !built.status.success() {
        return Err(format!(
            "docker build failed: {}",
            String::from_utf8_lossy(&built.stderr)
        )
        .into());
    }
    Ok(())
}

/// Removes every container the suite made.
async fn remove_containers(engine: &Target) -> Result<(), Error> {
    let filters = format!("{{\"label\":[\"{LABEL}\"]}}");
    let mut connection = Connection::open(engine).await?;
    let (status, body) = connection
        .send(
            "GET",
            &format!(
                "/containers/json?all=1&filters={}",
                percent_encode(&filters)
            ),
            Bytes::new(),
        )
        .await?;
    if status != 200 {
        return Err(format!("cannot list the suite's containers: {status}").into());
    }
    let containers: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
    for container in containers {
        if let Some(id) = container["Id"].as_str() {
            connection
                .send("DELETE", &format!("/containers/{id}?force=1"), Bytes::new())
                .await?;
        }
    }
    Ok(())
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
