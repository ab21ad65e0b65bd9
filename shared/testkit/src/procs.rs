//! Third-party servers the tests run as child processes: Pebble (Let's Encrypt's ACME test
//! server) and moto server (AWS APIs). Each is killed when its handle drops, panics included.
//!
//! `scripts/test.sh` installs both; the tests find them through `CERTPILOT_PEBBLE` and
//! `CERTPILOT_MOTO_SERVER`, then `PATH`, then the repository's `.test-env/venv`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certs::Ca;

/// A child process killed on drop.
pub struct ChildGuard {
    child: Child,
    name: &'static str,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildGuard {
    fn ensure_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early with {status}", self.name);
        }
    }
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    // shared/testkit → the workspace root, two levels up.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// Finds a program: the environment variable, then `PATH`, then `.test-env/venv/bin`;
/// panics naming the variable and `scripts/test.sh` when it is nowhere.
pub fn locate(env_var: &str, program: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        let path = PathBuf::from(p);
        // Tests run in their package's directory, so a relative path would not resolve.
        assert!(
            path.is_absolute() && path.is_file(),
            "{env_var}={} must be the absolute path of an existing file",
            path.display()
        );
        return path;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(program);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let venv = workspace_root().join(".test-env/venv/bin").join(program);
    if venv.is_file() {
        return venv;
    }
    panic!("{program} not found (set {env_var}, or run scripts/test.sh, which installs it)");
}

/// Spawns `command` (output discarded) and waits until it listens on `addr`.
fn start_listening(
    mut command: Command,
    name: &'static str,
    addr: SocketAddr,
    within: Duration,
) -> ChildGuard {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", command.get_program()));
    let mut guard = ChildGuard { child, name };
    wait_for_port(addr, &mut guard, within);
    guard
}

fn wait_for_port(addr: SocketAddr, guard: &mut ChildGuard, within: Duration) {
    let start = Instant::now();
    while start.elapsed() < within {
        guard.ensure_running();
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} did not listen on {addr} within {within:?}", guard.name);
}

/// A running Pebble ACME server with its own TLS certificate from a test CA.
pub struct Pebble {
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory_url: String,
    /// The management (root certificate) API address.
    pub management: SocketAddr,
    /// PEM of the CA that issued Pebble's HTTPS certificate.
    pub tls_ca_pem: String,
    /// Where Pebble's HTTPS listener is.
    pub listen: SocketAddr,
}

/// How to run Pebble.
#[derive(Clone, Debug, Default)]
pub struct PebbleOptions {
    /// Port HTTP-01 challenges are validated against.
    pub http_port: u16,
    /// Port TLS-ALPN-01 challenges are validated against.
    pub tls_port: u16,
    /// DNS server Pebble resolves names with (pebble-challtestsrv).
    pub dns_server: Option<SocketAddr>,
    /// Percentage of valid nonces Pebble rejects with `badNonce` (`PEBBLE_WFE_NONCEREJECT`).
    pub nonce_reject: u8,
    /// External Account Binding keys (key id, base64url HMAC); any makes EAB required.
    pub eab: Vec<(String, String)>,
    /// Validity of the default profile's certificates, in seconds (90 days when 0).
    pub validity_secs: u64,
}

impl Pebble {
    /// Starts Pebble on free loopback ports. HTTP-01 challenges are validated against
    /// `http_port`, TLS-ALPN-01 against `tls_port`.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        Self::start_with(&PebbleOptions {
            http_port,
            tls_port,
            ..PebbleOptions::default()
        })
    }

    /// Starts Pebble with `options`.
    pub fn start_with(options: &PebbleOptions) -> Pebble {
        let program = locate("CERTPILOT_PEBBLE", "pebble");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new("Pebble HTTPS test CA");
        let leaf = ca.leaf(&["localhost", "127.0.0.1"]).build();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, leaf.chain_pem()).expect("write cert");
        std::fs::write(&key, leaf.key_pem()).expect("write key");
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let management: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let validity = if options.validity_secs == 0 {
            7_776_000
        } else {
            options.validity_secs
        };
        let eab: serde_json::Map<String, serde_json::Value> = options
            .eab
            .iter()
            .map(|(kid, hmac)| (kid.clone(), serde_json::Value::String(hmac.clone())))
            .collect();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": cert,
                "privateKey": key,
                "httpPort": options.http_port,
                "tlsPort": options.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": !eab.is_empty(),
                "externalAccountMACKeys": eab,
                "profiles": {
                    "default": { "description": "The profile you know and love", "validityPeriod": validity },
                    "shortlived": { "description": "A short-lived cert profile", "validityPeriod": 518_400 }
                }
            }
        });
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let mut command = Command::new(&program);
        command.arg("-config").arg(&config_path);
        if let Some(dns) = options.dns_server {
            command.arg("-dnsserver").arg(dns.to_string());
        }
        // Pebble otherwise sleeps up to 15 s before each validation to mimic load.
        command.env("PEBBLE_VA_NOSLEEP", "1");
        command.env("PEBBLE_WFE_NONCEREJECT", options.nonce_reject.to_string());
        // Pebble reuses valid authorizations by default; each test order should validate.
        command.env("PEBBLE_AUTHZREUSE", "0");
        let guard = start_listening(command, "pebble", listen, Duration::from_secs(20));
        Pebble {
            _guard: guard,
            _dir: dir,
            directory_url: format!("https://{listen}/dir"),
            management,
            tls_ca_pem: ca.root_pem(),
            listen,
        }
    }
}

/// pebble-challtestsrv as a DNS server that answers every A query with 127.0.0.1, so Pebble
/// validates any name against loopback.
pub struct ChallTestSrv {
    _guard: ChildGuard,
    /// Its DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// Its management API.
    pub management: SocketAddr,
}

impl ChallTestSrv {
    /// Starts it on free loopback ports, DNS only.
    pub fn start() -> ChallTestSrv {
        let program = locate("CERTPILOT_CHALLTESTSRV", "pebble-challtestsrv");
        let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let management: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut command = Command::new(&program);
        command
            .args(["-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .arg("-dnsserver")
            .arg(dns.to_string())
            .arg("-management")
            .arg(management.to_string());
        let guard = start_listening(
            command,
            "pebble-challtestsrv",
            management,
            Duration::from_secs(20),
        );
        ChallTestSrv {
            _guard: guard,
            dns,
            management,
        }
    }
}

/// Knot DNS as the authoritative server of one zone that accepts RFC 2136 updates signed with
/// one TSIG key (HMAC-SHA256).
pub struct Knot {
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
    /// Its DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// The zone it serves.
    pub zone: String,
    /// The TSIG key's name.
    pub key_name: String,
    /// The TSIG key's secret, base64.
    pub key_secret: String,
}

impl Knot {
    /// Starts knotd on a free loopback port, serving `zone` with a fresh random TSIG key.
    pub fn start(zone: &str) -> Knot {
        let program = locate("CERTPILOT_KNOTD", "knotd");
        let dir = tempfile::tempdir().expect("tempdir");
        let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).expect("randomness");
        let key_secret = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(secret)
        };
        let key_name = "certpilot-test.".to_owned();
        let d = dir.path().display();
        let config = format!(
            "server:\n    listen: {ip}@{port}\n    rundir: {d}\n\n\
             database:\n    storage: {d}\n\n\
             control:\n    listen: {d}/knot.sock\n\n\
             log:\n  - target: stderr\n    any: warning\n\n\
             key:\n  - id: {key_name}\n    algorithm: hmac-sha256\n    secret: {key_secret}\n\n\
             acl:\n  - id: certpilot-update\n    key: {key_name}\n    action: update\n\n\
             zone:\n  - domain: {zone}\n    storage: {d}\n    file: zone.txt\n    acl: certpilot-update\n    zonefile-sync: -1\n",
            ip = dns.ip(),
            port = dns.port(),
        );
        std::fs::write(dir.path().join("knot.conf"), config).expect("write knot.conf");
        std::fs::write(
            dir.path().join("zone.txt"),
            format!(
                "$ORIGIN {zone}.\n$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n"
            ),
        )
        .expect("write zone");
        let mut command = Command::new(&program);
        command.arg("-c").arg(dir.path().join("knot.conf"));
        let guard = start_listening(command, "knotd", dns, Duration::from_secs(20));
        Knot {
            _guard: guard,
            _dir: dir,
            dns,
            zone: zone.to_owned(),
            key_name,
            key_secret,
        }
    }
}

/// A real HAProxy (Debian's) terminating TLS on a loopback port with `site.pem` (chain and
/// key in one file), its Runtime API on an admin socket: the load balancer the `haproxy`
/// target changes without a reload.
pub struct HaProxy {
    guard: ChildGuard,
    dir: tempfile::TempDir,
    /// Where it terminates TLS.
    pub addr: SocketAddr,
}

impl HaProxy {
    /// Starts it serving `leaf`.
    pub fn start(leaf: &crate::certs::Leaf) -> HaProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        std::fs::write(
            dir.path().join("site.pem"),
            format!("{}{}", leaf.chain_pem(), leaf.key_pem()),
        )
        .expect("write site.pem");
        let d = dir.path().display();
        let config = format!(
            "global\n    stats socket {d}/admin.sock mode 600 level admin\n\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\n\
             frontend tls\n    bind {addr} ssl crt {d}/site.pem\n    default_backend nowhere\n\n\
             backend nowhere\n    server none 127.0.0.1:9\n"
        );
        std::fs::write(dir.path().join("haproxy.cfg"), config).expect("write haproxy.cfg");
        let guard = Self::spawn(dir.path(), addr);
        HaProxy { guard, dir, addr }
    }

    fn spawn(dir: &Path, addr: SocketAddr) -> ChildGuard {
        let program = locate("CERTPILOT_HAPROXY", "haproxy");
        let mut command = Command::new(&program);
        command.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
        start_listening(command, "haproxy", addr, Duration::from_secs(20))
    }

    /// The certificate file it loads at start (`crt`).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("site.pem")
    }

    /// Its admin socket (level admin).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// `127.0.0.1:PORT`.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Its process id: the same before and after a change made without a reload.
    pub fn pid(&self) -> u32 {
        self.guard.child.id()
    }

    /// Stops it and starts it again from its files (what survives a restart).
    pub fn restart(&mut self) {
        let _ = self.guard.child.kill();
        let _ = self.guard.child.wait();
        let _ = std::fs::remove_file(self.socket());
        self.guard = Self::spawn(self.dir.path(), self.addr);
    }
}

/// One moto server for a whole test binary, started on first use.
///
/// A static is never dropped, so the server runs under a shell that kills it when its
/// standard input closes — which the OS does when the test process exits, however it exits.
pub fn shared_moto() -> &'static SharedMoto {
    static MOTO: std::sync::OnceLock<SharedMoto> = std::sync::OnceLock::new();
    MOTO.get_or_init(|| {
        let program = locate("CERTPILOT_MOTO_SERVER", "moto_server");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut child = Command::new("sh")
            .args([
                "-c",
                "\"$0\" -H 127.0.0.1 -p \"$1\" >/dev/null 2>&1 & pid=$!; read _; kill $pid",
            ])
            .arg(&program)
            .arg(addr.port().to_string())
            // ACM-issued certificates leave PENDING_VALIDATION after this many seconds (60
            // by default), so that tests can follow a request to ISSUED.
            .env("MOTO_ACM_VALIDATION_WAIT", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let keepalive = child.stdin.take();
        let mut guard = ChildGuard {
            child,
            name: "moto_server",
        };
        wait_for_port(addr, &mut guard, Duration::from_secs(60));
        // Leak the guard: the shell lives as long as the test process.
        std::mem::forget(guard);
        SharedMoto {
            endpoint_url: format!("http://{addr}"),
            addr,
            _keepalive: std::sync::Mutex::new(keepalive),
        }
    })
}

/// The per-process moto server of [`shared_moto`].
pub struct SharedMoto {
    /// What `AWS_ENDPOINT_URL` should be set to.
    pub endpoint_url: String,
    /// Its address.
    pub addr: SocketAddr,
    _keepalive: std::sync::Mutex<Option<std::process::ChildStdin>>,
}

/// A running moto server: the AWS APIs on one loopback port.
pub struct Moto {
    _guard: ChildGuard,
    /// What `AWS_ENDPOINT_URL` should be set to.
    pub endpoint_url: String,
    /// Its address.
    pub addr: SocketAddr,
}

impl Moto {
    /// Starts moto server on a free loopback port.
    pub fn start() -> Moto {
        let program = locate("CERTPILOT_MOTO_SERVER", "moto_server");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut command = Command::new(&program);
        command.args(["-H", "127.0.0.1", "-p", &addr.port().to_string()]);
        command.env("MOTO_ACM_VALIDATION_WAIT", "2");
        let guard = start_listening(command, "moto_server", addr, Duration::from_secs(60));
        Moto {
            _guard: guard,
            endpoint_url: format!("http://{addr}"),
            addr,
        }
    }
}
