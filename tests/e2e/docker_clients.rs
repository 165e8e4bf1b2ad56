//! Who is asking: unix peer credentials and certificate subjects, as access
//! rules, policies and the audit log see them.

use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::docker_support::{Name, Proxy, engine_socket, refused, succeeds, test_image};
use crate::support::{client_certificate, scratch};
use crate::webhook_support::{certificates, runtime};

/// This process's user id.
fn my_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .expect("/proc is mounted")
        .uid()
}

fn audit_lines(proxy: &Proxy) -> Vec<serde_json::Value> {
    proxy
        .audit()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each audit line is JSON"))
        .collect()
}

#[test]
fn unix_clients_are_known_by_their_uid() {
    test_image();
    let me = format!("uid:{}", my_uid());
    let someone_else = format!("uid:{}", my_uid() + 4242);
    // Only I may exec; a policy for me forbids privileged exec, and one for
    // someone else forbids exec as root.
    // Another user must be able to reach the socket: the target directory
    // may sit in a home only root can enter, the system's temporary
    // directory never does.
    let shared = || {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-e2e-")
            .tempdir()
            .expect("create a directory in the system's temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("open the directory to other users");
        dir
    };
    let proxy = Proxy::in_dir(
        shared(),
        &engine_socket(),
        &format!(
            "  socket: {{mode: \"0666\"}}\n  access: {{exec: {{default: deny, clients: {{\"{me}\": write}}}}}}\n"
        ),
        &format!(
            "  - {{name: no-privileged-exec-for-me, module: builtin:host-isolation, settings: {{allow_privileged_exec: false}}, match: {{users: [\"{me}\"]}}}}\n  - {{name: no-root-exec-for-others, module: builtin:host-isolation, settings: {{allow_root_exec: false}}, match: {{users: [\"{someone_else}\"]}}}}\n"
        ),
    );
    let container = Name::new("clients");
    proxy.sleeping(&container, None);
    assert_eq!(
        succeeds(&proxy.docker(&["exec", "-u", "0", &container.0, "id", "-u"])),
        "0\n",
        "the root-exec policy is someone else's"
    );
    refused(
        &proxy.docker(&["exec", "--privileged", &container.0, "true"]),
        "no-privileged-exec-for-me: ",
    );

    // The audit log names me and my process.
    let lines = audit_lines(&proxy);
    let denied = lines
        .iter()
        .find(|line| line["decision"] == "denied")
        .expect("the privileged exec was audited");
    assert_eq!(denied["client"]["name"], me.as_str(), "{denied}");
    assert!(
        denied["pid"].as_i64().is_some_and(|pid| pid > 0),
        "{denied}"
    );
    assert_eq!(denied["policies"][0]["name"], "no-privileged-exec-for-me");

    // Someone else, when this test may become someone else.
    if my_uid() == 0 {
        let home = shared();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777))
            .expect("a home for the other user");
        let as_someone_else = |args: &[&str]| {
            Command::new("docker")
                .args(args)
                .uid(4242)
                .gid(4242)
                .env("HOME", home.path())
                .env("DOCKER_HOST", format!("unix://{}", proxy.socket.display()))
                .stdin(Stdio::null())
                .output()
                .expect("the docker CLI is installed")
        };
        succeeds(&as_someone_else(&["ps"]));
        refused(
            &as_someone_else(&["exec", &container.0, "true"]),
            "uid:4242 may not use exec endpoints",
        );
    }
}

#[test]
fn certificate_holders_are_known_by_their_subject() {
    test_image();
    let dir = scratch();
    let certs = dir.path().join("certs");
    certificates(&certs);
    client_certificate(&certs, "ci", Some("ops"));
    // The docker CLI's names for the client's files.
    let client = dir.path().join("client");
    std::fs::create_dir(&client).expect("mkdir");
    for (from, to) in [
        ("ca.crt", "ca.pem"),
        ("client.crt", "cert.pem"),
        ("client.key", "key.pem"),
    ] {
        std::fs::copy(certs.join(from), client.join(to)).expect("copy");
    }
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "docker:\n  listen: [unix://{}, tcp://127.0.0.1:0]\n  tls: {{cert: certs/tls.crt, key: certs/tls.key, client_ca: certs/client-ca.crt}}\n  upstream: unix://{}\n  audit: audit.log\n  access: {{exec: {{default: deny, clients: {{\"o:ops\": write}}}}, containers: {{default: write, clients: {{\"cn:ci\": read}}}}}}\npolicies: []\n",
            dir.path().join("docker.sock").display(),
            engine_socket().display()
        ),
    )
    .expect("write the configuration");
    let proxy = Proxy::listening(dir, &config, 2);
    let address = proxy.addresses[1].clone();
    assert!(address.starts_with("tcp://127.0.0.1:"), "{address}");
    let over_tls = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &address)
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", &client)
            .stdin(Stdio::null())
            .output()
            .expect("the docker CLI is installed")
    };

    // The organization may exec; the common name may only look at containers.
    let container = Name::new("subject");
    proxy.sleeping(&container, None);
    assert!(succeeds(&over_tls(&["ps"])).contains(&container.0));
    assert_eq!(
        succeeds(&over_tls(&["exec", &container.0, "echo", "in"])),
        "in\n"
    );
    refused(
        &over_tls(&["stop", "-t", "0", &container.0]),
        "cn:ci may not use containers endpoints",
    );
    let audited = audit_lines(&proxy);
    assert!(
        audited.iter().any(|line| line["client"]["name"] == "cn:ci"
            && line["client"]["groups"][0] == "o:ops"),
        "{audited:?}"
    );

    // Without a client certificate there is no conversation at all.
    let socket_address: std::net::SocketAddr = address
        .strip_prefix("tcp://")
        .and_then(|address| address.parse().ok())
        .expect("a socket address");
    let anonymous =
        portcullis_load::Target::new(socket_address, "127.0.0.1", &certs.join("ca.crt"))
            .expect("a TLS client");
    let answer = runtime().block_on(async {
        let mut connection = portcullis_load::Connection::open(&anonymous).await?;
        connection.send("GET", "/_ping", bytes::Bytes::new()).await
    });
    assert!(
        answer.is_err(),
        "a client without a certificate is refused: {answer:?}"
    );
}
