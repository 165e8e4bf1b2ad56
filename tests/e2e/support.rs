//! Shared helpers: running the `portcullis` binary, building test policies
//! from source, locating fixtures.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The repository's root.
pub(crate) fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate lives in the workspace")
}

/// A request file from `tests/requests/`.
pub(crate) fn request(name: &str) -> PathBuf {
    workspace().join("tests/requests").join(name)
}

/// The upstream fixtures (`shared/fixtures`): `$PORTCULLIS_FIXTURES`, or
/// `shared/fixtures` beside the repository.
pub(crate) fn shared_fixtures() -> PathBuf {
    let dir = std::env::var_os("PORTCULLIS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/fixtures"));
    assert!(
        dir.join("pod-security").is_dir(),
        "the upstream fixtures are not at {}; set PORTCULLIS_FIXTURES to the shared/fixtures folder",
        dir.display()
    );
    dir
}

/// A scratch directory under the target directory, removed when dropped.
pub(crate) fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("e2e-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a scratch directory")
}

/// Writes a configuration file into `dir`.
pub(crate) fn config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("portcullis.yaml");
    std::fs::write(&path, yaml).expect("write the configuration");
    path
}

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    /// Exit status.
    pub(crate) status: i32,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

impl Run {
    /// The decisions printed by `eval --output json`, one per request.
    pub(crate) fn decisions(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
            })
            .collect()
    }

    /// The only decision printed.
    pub(crate) fn decision(&self) -> Value {
        let mut decisions = self.decisions();
        assert_eq!(decisions.len(), 1, "expected one decision: {self:?}");
        decisions.remove(0)
    }

    /// The outcome of the named policy in a decision.
    pub(crate) fn policy(decision: &Value, name: &str) -> Value {
        decision["policies"]
            .as_array()
            .and_then(|policies| policies.iter().find(|policy| policy["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no policy `{name}` in {decision}"))
    }
}

/// The shared compilation cache of the test run, so each test does not
/// recompile the built-in policies.
pub(crate) fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("compilation-cache")
}

/// A `portcullis serve` process and where it said it listens.
pub(crate) struct Serving {
    pub(crate) child: Child,
    /// Its `listening on` addresses, in order.
    pub(crate) addresses: Vec<String>,
    /// Kept open so the process never writes to a closed pipe.
    pub(crate) stdout: BufReader<ChildStdout>,
}

/// Starts `portcullis serve --config config` and reads its first
/// `listeners` lines, each `listening on ADDRESS`.
pub(crate) fn serve(config: &Path, listeners: usize) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config"])
        .arg(config)
        .env("PORTCULLIS_CACHE_DIR", cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start portcullis serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let addresses = (0..listeners)
        .map(|_| {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read a line");
            line.trim()
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("not a listening line: {line:?}"))
                .to_owned()
        })
        .collect();
    Serving {
        child,
        addresses,
        stdout,
    }
}

/// Runs `portcullis eval --output json` on `files`, with `config` if given.
pub(crate) fn eval_json(config: Option<&Path>, files: &[PathBuf]) -> Run {
    let mut args: Vec<std::ffi::OsString> = vec!["eval".into(), "--output".into(), "json".into()];
    if let Some(config) = config {
        args.extend(["--config".into(), config.into()]);
    }
    args.extend(files.iter().map(Into::into));
    portcullis(args)
}

/// Runs `portcullis` with `args`; panics if it panicked.
pub(crate) fn portcullis<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    portcullis_with(args, &[])
}

/// Runs `portcullis` with `args` and extra environment variables.
pub(crate) fn portcullis_with<I, S>(args: I, env: &[(&str, &OsStr)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .args(args)
        .env("PORTCULLIS_CACHE_DIR", cache_dir())
        .env_remove("PORTCULLIS_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run portcullis");
    let run = Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    // A panic of the host (a policy's own panics are logged with the
    // stream they were printed on, and are not the host's).
    let host_panic = run
        .stderr
        .lines()
        .any(|line| line.contains("panicked") && !line.contains("stream="));
    assert!(!host_panic, "portcullis panicked: {run:?}");
    assert!(
        (0..=2).contains(&run.status),
        "unexpected exit status: {run:?}"
    );
    run
}

/// `tests/policies/test-policy`, built from source once per test run.
pub(crate) fn test_policy() -> &'static Path {
    static COMPONENT: OnceLock<PathBuf> = OnceLock::new();
    COMPONENT.get_or_init(|| {
        let target_dir = portcullis_wasm_build::default_target_dir(workspace());
        let built = portcullis_wasm_build::build(workspace(), &target_dir, &["test-policy"])
            .unwrap_or_else(|error| panic!("building the test policy: {error}"));
        built.into_iter().next().expect("one component")
    })
}

/// `tests/policies/c-no-privileged`, a policy written in C: bindings
/// generated by wit-bindgen's C generator, compiled by clang against
/// wasi-libc, and made a component by wit-component, once per test run.
pub(crate) fn c_policy() -> &'static Path {
    static COMPONENT: OnceLock<PathBuf> = OnceLock::new();
    COMPONENT.get_or_init(build_c_policy)
}

fn build_c_policy() -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-no-privileged");
    std::fs::create_dir_all(&out).expect("create the C build directory");

    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(workspace().join("wasm-plugins/wit"))
        .expect("parse the WIT package");
    let world = resolve
        .select_world(&[package], Some("policy"))
        .expect("the policy world");
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .expect("generate C bindings");
    for (name, contents) in files.iter() {
        std::fs::write(out.join(name), contents).expect("write the C bindings");
    }

    let core = out.join("policy.core.wasm");
    let sysroot = std::env::var_os("WASI_SYSROOT").unwrap_or_else(|| "/usr".into());
    let status = Command::new(std::env::var_os("CLANG").unwrap_or_else(|| "clang".into()))
        .args([
            "--target=wasm32-wasi",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-mexec-model=reactor",
        ])
        .arg({
            let mut flag = std::ffi::OsString::from("--sysroot=");
            flag.push(&sysroot);
            flag
        })
        .arg("-I")
        .arg(&out)
        .arg("-o")
        .arg(&core)
        .arg(workspace().join("tests/policies/c-no-privileged/policy.c"))
        .arg(out.join("policy.c"))
        .arg(out.join("policy_component_type.o"))
        .status()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run clang ({error}); the C policy needs Debian's clang, lld, wasi-libc and \
                 libclang-rt-14-dev-wasm32"
            )
        });
    assert!(status.success(), "clang failed to build the C policy");

    let module = std::fs::read(&core).expect("read the core module");
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("the module embeds the policy world")
        .validate(true)
        .encode()
        .expect("encode the component");
    let path = out.join("c-no-privileged.wasm");
    std::fs::write(&path, component).expect("write the component");
    path
}

/// A client CA and a client certificate it signed, for `common_name` in
/// `organization`: `client-ca.crt`, `client.crt` and `client.key` in `dir`.
pub(crate) fn client_certificate(dir: &Path, common_name: &str, organization: Option<&str>) {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    ca.distinguished_name.push(DnType::CommonName, "client CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let client_key = KeyPair::generate().expect("key");
    let mut client = CertificateParams::new(vec![common_name.to_owned()]).expect("params");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        client
            .distinguished_name
            .push(DnType::OrganizationName, organization);
    }
    let client_cert = client
        .signed_by(&client_key, &Issuer::from_params(&ca, &ca_key))
        .expect("sign");
    std::fs::create_dir_all(dir).expect("create the certificate directory");
    for (file, contents) in [
        ("client-ca.crt", ca_cert.pem()),
        ("client.crt", client_cert.pem()),
        ("client.key", client_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(file), contents).expect("write");
    }
}
