//! A policy that behaves (or misbehaves) as its settings say, so the test
//! suite can check what the host does with each kind of guest: one that
//! loops forever, exhausts its memory, traps, overflows its stack, answers
//! with an invalid verdict, floods its output, or tries to leave the sandbox.

use std::sync::atomic::{AtomicU32, Ordering};

use portcullis_policy_sdk::serde_json::json;
use portcullis_policy_sdk::{Patch, Policy, Request, Verdict, export_policy, log, pointer};

/// What to do.
#[derive(serde::Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Behaviour {
    /// Allow.
    #[default]
    Allow,
    /// Deny, with a warning.
    Deny,
    /// Allow and add a label `<label>: "true"` to the object.
    Label,
    /// Allow, and make the first container privileged: a mutation that a
    /// validating policy listed earlier must still catch.
    Escalate,
    /// Allow, adding a label whose name depends on how many there are: a
    /// mutation that never settles.
    Restless,
    /// Spin forever.
    Loop,
    /// Allocate until the memory cap stops it.
    Memory,
    /// Panic (a trap).
    Trap,
    /// Recurse until the stack runs out.
    StackOverflow,
    /// Return a patch that cannot apply (removes a path that is not there).
    BadPatch,
    /// Deny with an HTTP status that is not an error status.
    BadCode,
    /// Print a megabyte to stdout and log a lot, then allow.
    Chatty,
    /// Try to read files, the environment and the network; deny listing
    /// whatever worked.
    Escape,
    /// Open host streams without ever closing them.
    Resources,
    /// Report how many times this instance has evaluated a request.
    Count,
    /// Deny unless every image carries a verified attestation whose
    /// predicate has `expected` at the JSON Pointer `field`.
    Attested,
    /// Sleep for an hour (`std::thread::sleep`).
    Sleep,
    /// Block on a clock pollable that is due at the end of time.
    WaitForever,
    /// Poll a list of an hour's and a day's timers.
    Poll,
    /// Sleep in `validate-settings`.
    SleepInSettings,
    /// Spin forever in `validate-settings`.
    LoopInSettings,
    /// Allow with a patch of 2.5 KB that doubles the object 25 times.
    PatchBomb,
    /// Log and print lines that try to pass as the gateway's own.
    ForgeLog,
    /// Allow, annotating what the clocks and the random generators say.
    Clock,
    /// Allocate `megabytes` MiB, touch it, and allow.
    Hoard,
    /// Deny with a message of 40,000 bytes.
    HugeMessage,
    /// Deny with a message that carries terminal escapes.
    Escapes,
    /// Read `resource` from the cluster: the object called `name` when
    /// given, else a list (in `namespace`, matching `selector`, when
    /// given); allow, annotating how many objects were found and their
    /// names.
    ReadCluster,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    behaviour: Behaviour,
    /// Label key for `label`.
    label: Option<String>,
    /// Predicate field (a JSON Pointer) for `attested`.
    field: Option<String>,
    /// The value `field` must have, for `attested`.
    expected: Option<String>,
    /// How much `hoard` allocates.
    megabytes: Option<usize>,
    /// What `read-cluster` lists.
    resource: Option<String>,
    namespace: Option<String>,
    selector: Option<String>,
    name: Option<String>,
}

struct TestPolicy;

static EVALUATIONS: AtomicU32 = AtomicU32::new(0);

impl Policy for TestPolicy {
    type Settings = Settings;

    fn validate_settings(settings: &Settings) -> Result<(), String> {
        match (settings.behaviour, &settings.label) {
            (Behaviour::Label, None) => Err("`label` is required by the label behaviour".into()),
            (Behaviour::SleepInSettings, _) => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(())
            }
            (Behaviour::LoopInSettings, _) => loop {
                std::hint::black_box(());
            },
            _ => Ok(()),
        }
    }

    fn validate(request: &Request, settings: &Settings) -> Verdict {
        match settings.behaviour {
            Behaviour::Allow => Verdict::allow(),
            Behaviour::Deny => {
                Verdict::deny("denied by the test policy").warn("the test policy was here")
            }
            Behaviour::Label => {
                let key = settings.label.as_deref().unwrap_or("checked");
                let labels = request
                    .object_as::<portcullis_policy_sdk::serde_json::Value>()
                    .and_then(Result::ok)
                    .is_some_and(|object| object.pointer("/metadata/labels").is_some());
                let patch = if labels {
                    Patch::new().add(pointer(&["metadata", "labels", key]), "true")
                } else {
                    Patch::new().add("/metadata/labels", json!({ key: "true" }))
                };
                Verdict::allow().patch(patch)
            }
            Behaviour::Escalate => {
                let pointer = request.workload.as_ref().and_then(|workload| {
                    let container = workload.containers.first()?;
                    workload.container_pointer(container)
                });
                match pointer {
                    Some(pointer) => Verdict::allow().patch(Patch::new().add(
                        format!("{pointer}/securityContext"),
                        json!({"privileged": true}),
                    )),
                    None => Verdict::allow(),
                }
            }
            Behaviour::Restless => {
                let labels = request
                    .workload
                    .as_ref()
                    .map_or(0, |workload| workload.labels.len());
                let patch = if labels == 0 {
                    Patch::new().add("/metadata/labels", json!({"restless-0": "true"}))
                } else {
                    Patch::new().add(
                        pointer(&["metadata", "labels", &format!("restless-{labels}")]),
                        "true",
                    )
                };
                Verdict::allow().patch(patch)
            }
            Behaviour::Loop => loop {
                std::hint::black_box(());
            },
            Behaviour::Memory => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Behaviour::Trap => panic!("the test policy panics"),
            Behaviour::StackOverflow => Verdict::deny(format!("depth {}", recurse(0))),
            Behaviour::BadPatch => Verdict::allow().patch(Patch::new().remove("/no/such/path")),
            Behaviour::BadCode => Verdict::deny("a denial with status 200").code(200),
            Behaviour::Chatty => {
                let line = "x".repeat(1023);
                for _ in 0..1024 {
                    println!("{line}");
                }
                for index in 0..1000 {
                    log::info(&format!("log line {index}"));
                }
                Verdict::allow()
            }
            Behaviour::Escape => escape(),
            Behaviour::Resources => hoard_resources(),
            Behaviour::Count => {
                let count = EVALUATIONS.fetch_add(1, Ordering::Relaxed) + 1;
                Verdict::allow().annotate("evaluations", count.to_string())
            }
            Behaviour::Attested => attested(request, settings),
            Behaviour::Sleep => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Verdict::deny("slept for an hour")
            }
            Behaviour::WaitForever => wait_forever(),
            Behaviour::Poll => poll_timers(),
            Behaviour::SleepInSettings | Behaviour::LoopInSettings => Verdict::allow(),
            Behaviour::PatchBomb => {
                let mut patch =
                    Patch::new().add("/metadata/annotations", json!({ "bomb": "x".repeat(1024) }));
                for index in 0..25 {
                    patch = patch.copy(
                        "/metadata/annotations",
                        format!("/metadata/annotations/copy-{index}"),
                    );
                }
                Verdict::allow().patch(patch)
            }
            Behaviour::ForgeLog => {
                log::error("ok\n2026-12-02T00:00:00.000000Z ERROR forged line policy=pod-security");
                println!("stdout\rforged\u{0}line\u{1b}[2K");
                Verdict::allow()
            }
            Behaviour::Clock => clock(),
            Behaviour::Hoard => {
                let megabytes = settings.megabytes.unwrap_or(1);
                let hoard = vec![1u8; megabytes << 20];
                std::hint::black_box(&hoard);
                Verdict::allow()
            }
            Behaviour::HugeMessage => Verdict::deny("x".repeat(40_000)),
            Behaviour::Escapes => {
                Verdict::deny("red \u{1b}[31malert\u{1b}[0m\nsecond line").warn("bell\u{7}")
            }
            Behaviour::ReadCluster => {
                let resource = settings.resource.as_deref().unwrap_or("v1/namespaces");
                let namespace = settings.namespace.as_deref();
                let objects = match &settings.name {
                    Some(name) => portcullis_policy_sdk::cluster::get(resource, namespace, name)
                        .into_iter()
                        .collect(),
                    None => portcullis_policy_sdk::cluster::list(
                        resource,
                        namespace,
                        settings.selector.as_deref(),
                    ),
                };
                let names: Vec<&str> = objects
                    .iter()
                    .filter_map(|object| object["metadata"]["name"].as_str())
                    .collect();
                Verdict::allow()
                    .annotate("objects", objects.len().to_string())
                    .annotate("names", names.join(","))
            }
        }
    }
}

/// Every image's attestations must say `expected` at `field`.
fn attested(request: &Request, settings: &Settings) -> Verdict {
    let field = settings.field.as_deref().unwrap_or_default();
    let expected = settings.expected.as_deref().unwrap_or_default();
    let failing: Vec<String> = request
        .images
        .iter()
        .filter(|image| {
            let attestations = image
                .verification
                .as_ref()
                .map(|verification| verification.attestations.as_slice())
                .unwrap_or_default();
            !attestations.iter().any(|attestation| {
                portcullis_policy_sdk::serde_json::from_str::<
                    portcullis_policy_sdk::serde_json::Value,
                >(&attestation.predicate)
                .ok()
                .and_then(|predicate| predicate.pointer(field).cloned())
                .is_some_and(|value| value == expected)
            })
        })
        .map(|image| image.reference.clone())
        .collect();
    if failing.is_empty() {
        Verdict::allow()
    } else {
        Verdict::deny(format!(
            "no attestation with {field} = {expected} for {}",
            failing.join(", ")
        ))
    }
}

fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[0]
}

/// What the clocks and the random generators say, as annotations.
fn clock() -> Verdict {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    let started = std::time::Instant::now();
    #[cfg(target_arch = "wasm32")]
    let bytes = wasip2::random::random::get_random_bytes(16);
    #[cfg(not(target_arch = "wasm32"))]
    let bytes = vec![0u8; 16];
    // std's HashMap seeds itself from the host's randomness.
    let map: std::collections::HashMap<u8, u8> = (0..16).map(|key| (key, key)).collect();
    let order: Vec<String> = map.keys().map(|key| key.to_string()).collect();
    Verdict::allow()
        .annotate("wall", wall.to_string())
        .annotate("elapsed", started.elapsed().as_nanos().to_string())
        .annotate("random", format!("{bytes:?}"))
        .annotate("hash-order", order.join(","))
}

/// Blocks on a pollable due at the last instant the clock can name.
fn wait_forever() -> Verdict {
    #[cfg(target_arch = "wasm32")]
    wasip2::clocks::monotonic_clock::subscribe_instant(u64::MAX).block();
    Verdict::deny("waited until the end of time")
}

/// Polls an hour's and a day's timers together.
fn poll_timers() -> Verdict {
    #[cfg(target_arch = "wasm32")]
    {
        let hour = wasip2::clocks::monotonic_clock::subscribe_duration(3_600_000_000_000);
        let day = wasip2::clocks::monotonic_clock::subscribe_duration(86_400_000_000_000);
        wasip2::io::poll::poll(&[&hour, &day]);
    }
    Verdict::deny("a timer fired")
}

/// Asks the host for a million stdout handles and keeps them all: each one
/// is host memory the policy's own cap does not cover.
fn hoard_resources() -> Verdict {
    #[cfg(target_arch = "wasm32")]
    for _ in 0..1_000_000 {
        std::mem::forget(wasip2::cli::stdout::get_stdout());
    }
    Verdict::deny("the host handed out a million resources")
}

/// Everything a policy should not be able to reach.
fn escape() -> Verdict {
    let mut reached = Vec::new();
    if std::fs::read_dir("/").is_ok() {
        reached.push("listed /".to_owned());
    }
    if std::fs::read("/etc/passwd").is_ok() {
        reached.push("read /etc/passwd".to_owned());
    }
    if std::fs::write("/tmp/portcullis-escape", b"x").is_ok() {
        reached.push("wrote /tmp/portcullis-escape".to_owned());
    }
    if std::env::current_dir().is_ok_and(|dir| dir.as_os_str().len() > 1) {
        reached.push("found a working directory".to_owned());
    }
    let variables: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
    if !variables.is_empty() {
        reached.push(format!("saw environment variables {variables:?}"));
    }
    if std::env::args().len() > 0 {
        reached.push("saw arguments".to_owned());
    }
    for address in ["127.0.0.1:22", "127.0.0.1:80", "[::1]:80"] {
        if std::net::TcpStream::connect(address).is_ok() {
            reached.push(format!("connected to {address}"));
        }
    }
    if std::net::UdpSocket::bind("127.0.0.1:0").is_ok() {
        reached.push("bound a UDP socket".to_owned());
    }
    if std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)).is_ok() {
        reached.push("resolved localhost".to_owned());
    }
    if reached.is_empty() {
        Verdict::allow()
    } else {
        Verdict::deny(format!(
            "the sandbox let the policy out: {}",
            reached.join("; ")
        ))
    }
}

export_policy!(TestPolicy);
