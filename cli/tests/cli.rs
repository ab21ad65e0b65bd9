//! The `certpilot` binary end to end: real TLS servers on loopback, a real SQLite file, and
//! the outputs and exit codes a person or a script sees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Output;

use certpilot_testkit::certs::{Ca, Leaf};
use certpilot_testkit::servers::{self, Server};
use serde_json::Value;

/// A scratch directory with a store and a CA file; every command runs against it.
struct Env {
    dir: tempfile::TempDir,
    ca_file: PathBuf,
}

impl Env {
    fn new(ca: &Ca) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.root_pem()).unwrap();
        Env { dir, ca_file }
    }

    fn store(&self) -> String {
        format!("sqlite:{}", self.dir.path().join("inventory.db").display())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
            .args(args)
            .env("CERTPILOT_STORE", self.store())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .await
            .expect("certpilot runs")
    }

    /// `certpilot scan ARGS --ca-file CA --format json`, parsed.
    async fn scan_json(&self, args: &[&str]) -> (Vec<Value>, Output) {
        let ca = self.ca_file.display().to_string();
        let mut all = vec!["scan", "--ca-file", &ca, "--format", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all).await;
        (json_lines(&out), out)
    }
}

/// Points `cmd` at moto through the standard AWS configuration, exactly as in production.
fn with_moto(cmd: &mut tokio::process::Command, moto: &certpilot_testkit::procs::SharedMoto) {
    cmd.env("AWS_ENDPOINT_URL", &moto.endpoint_url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE");
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

async fn server_for(ca: &Ca, names: &[&str], days: i64) -> (Server, Leaf) {
    let leaf = ca.leaf(names).expiring_in_days(days).build();
    (servers::tls_default(&leaf).await, leaf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_have_exactly_the_documented_fields() {
    let ca = Ca::new("CLI Root");
    let env = Env::new(&ca);
    let (server, leaf) = server_for(&ca, &["127.0.0.1"], 40).await;
    let closed = servers::closed_port().await;
    let (rows, out) = env
        .scan_json(&[&server.target(), &closed.to_string()])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows.len(), 2);
    let ok = rows
        .iter()
        .find(|r| r["status"] == "ok")
        .expect("an ok row");
    assert_eq!(
        keys(ok),
        vec![
            "address",
            "certificate",
            "chain",
            "days_remaining",
            "elapsed_ms",
            "host",
            "port",
            "scanned_at",
            "status",
            "tags",
            "target",
            "tls",
            "validation"
        ]
    );
    assert_eq!(
        keys(&ok["certificate"]),
        vec![
            "fingerprint_sha256",
            "issuer",
            "key",
            "not_after",
            "not_before",
            "sans",
            "serial",
            "signature_algorithm",
            "subject"
        ]
    );
    assert_eq!(keys(&ok["tls"]), vec!["cipher", "version"]);
    assert_eq!(
        keys(&ok["chain"][0]),
        vec!["fingerprint_sha256", "issuer", "not_after", "subject"]
    );
    assert_eq!(keys(&ok["validation"]), vec!["problems", "trusted"]);
    assert_eq!(ok["certificate"]["fingerprint_sha256"], leaf.fingerprint());
    assert_eq!(ok["validation"]["trusted"], true);
    assert_eq!(ok["days_remaining"], 39);
    assert_eq!(ok["target"], server.target());
    assert!(ok["scanned_at"].as_str().unwrap().ends_with('Z'));

    let err = rows
        .iter()
        .find(|r| r["status"] == "error")
        .expect("an error row");
    assert_eq!(err["error"]["kind"], "refused");
    assert!(err["error"]["message"].is_string());
    assert!(err.get("certificate").is_some_and(Value::is_null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_within_sets_the_exit_status() {
    let ca = Ca::new("Exit Root");
    let env = Env::new(&ca);
    let (soon, _) = server_for(&ca, &["127.0.0.1"], 5).await;
    let (later, _) = server_for(&ca, &["127.0.0.1"], 60).await;
    let (_, out) = env
        .scan_json(&["--fail-within", "14d", &later.target()])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, out) = env
        .scan_json(&["--fail-within", "14d", &later.target(), &soon.target()])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 of 2 results"), "{}", stderr(&out));
    let closed = servers::closed_port().await.to_string();
    let (_, out) = env.scan_json(&["--fail-within", "1d", &closed]).await;
    assert_eq!(out.status.code(), Some(2));
    // Without the flag a failed endpoint is reported, not an error of the command.
    let (_, out) = env.scan_json(&[&closed]).await;
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_exits_1() {
    let ca = Ca::new("Usage Root");
    let env = Env::new(&ca);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["scan".into(), "shop.test:http".into()],
            "port \"http\"",
        ),
        (
            vec!["scan".into(), "gopher://x".into()],
            "unsupported scheme \"gopher\"",
        ),
        (
            vec!["scan".into(), "--timeout".into(), "soon".into(), "x".into()],
            "expected a duration",
        ),
        (
            vec![
                "scan".into(),
                "--resolve".into(),
                "a:443".into(),
                "a".into(),
            ],
            "--resolve \"a:443\"",
        ),
        (
            vec![
                "scan".into(),
                "--ca-file".into(),
                env.path("nope.pem").display().to_string(),
                "x".into(),
            ],
            "nope.pem",
        ),
        (
            vec![
                "scan".into(),
                "--targets".into(),
                env.path("missing.txt").display().to_string(),
            ],
            "missing.txt",
        ),
        (
            vec!["--store".into(), "redis:x".into(), "inventory".into()],
            "unknown store \"redis\"",
        ),
        (
            vec![
                "endpoints".into(),
                "add".into(),
                "a.test".into(),
                "Owner=x".into(),
            ],
            "tag \"Owner=x\"",
        ),
        (
            vec!["endpoints".into(), "remove".into(), "never.test".into()],
            "never.test:443\" not found",
        ),
        (
            vec![
                "scan".into(),
                "--concurrency".into(),
                "0".into(),
                "x".into(),
            ],
            "--concurrency",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.run(&args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let file = env.path("targets.txt");
    std::fs::write(&file, "ok.test\nbad.test owner\n").unwrap();
    let out = env
        .run(&["scan", "--targets", file.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("targets.txt:2: tag \"owner\""),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targets_file_carries_tags_and_resolve_pins_the_address() {
    let ca = Ca::new("File Root");
    let env = Env::new(&ca);
    let (server, leaf) = server_for(&ca, &["shop.test"], 30).await;
    let file = env.path("targets.txt");
    std::fs::write(
        &file,
        format!(
            "# checkout\nshop.test:{} owner=payments env=prod platform=alb  # the shop\n",
            server.port()
        ),
    )
    .unwrap();
    let resolve = format!("shop.test:{}:127.0.0.1", server.port());
    let (rows, out) = env
        .scan_json(&["--targets", file.to_str().unwrap(), "--resolve", &resolve])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["host"], "shop.test");
    assert_eq!(r["address"], server.target());
    assert_eq!(r["tags"]["owner"], "payments");
    assert_eq!(r["tags"]["platform"], "alb");
    assert_eq!(r["certificate"]["fingerprint_sha256"], leaf.fingerprint());
    assert_eq!(
        r["validation"]["trusted"], true,
        "SNI shop.test matched the certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_table_show_the_same_facts() {
    let ca = Ca::new("Format Root");
    let env = Env::new(&ca);
    let leaf = ca.leaf(&["other.test"]).expiring_in_days(3).build();
    let server = servers::tls_default(&leaf).await;
    let ca_file = env.ca_file.display().to_string();
    let target = server.target();

    let out = env
        .run(&["scan", "--ca-file", &ca_file, "--format", "csv", &target])
        .await;
    assert!(out.status.success());
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("target,host,port,address,scanned_at"),
        "{header}"
    );
    let row = lines.next().unwrap();
    assert!(row.contains(&leaf.fingerprint()), "{row}");
    assert!(row.contains(",false,hostname_mismatch,"), "{row}");
    assert_eq!(lines.next(), None);

    let out = env
        .run(&["scan", "--ca-file", &ca_file, "--format", "table", &target])
        .await;
    let text = stdout(&out);
    assert!(text.lines().next().unwrap().starts_with("TARGET"), "{text}");
    let row = text.lines().nth(1).unwrap();
    assert!(
        row.contains(&target) && row.contains("hostname_mismatch"),
        "{row}"
    );
    assert!(
        row.contains("    2  ") || row.contains("    3  "),
        "days left shown: {row}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no colour when NO_COLOR is set or stdout is a pipe"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_endpoints_are_scanned_and_kept_in_the_inventory() {
    let ca = Ca::new("Inventory Root");
    let env = Env::new(&ca);
    let (short, _) = server_for(&ca, &["127.0.0.1"], 10).await;
    let (long, long_leaf) = server_for(&ca, &["127.0.0.1"], 80).await;

    let out = env
        .run(&[
            "endpoints",
            "add",
            &short.target(),
            "owner=payments",
            "env=prod",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("added"));
    let out = env
        .run(&["endpoints", "add", &long.target(), "owner=search"])
        .await;
    assert!(out.status.success());
    let out = env
        .run(&["endpoints", "add", &short.target(), "env=staging"])
        .await;
    assert!(stderr(&out).contains("updated"));

    let out = env.run(&["endpoints", "list", "--format", "json"]).await;
    let listed = json_lines(&out);
    assert_eq!(listed.len(), 2);
    let short_row = listed
        .iter()
        .find(|e| e["target"] == short.target())
        .unwrap();
    assert_eq!(short_row["tags"]["env"], "staging");
    assert_eq!(short_row["tags"]["owner"], "payments");
    assert_eq!(short_row["version"], 2);

    // No targets: the registered endpoints are scanned, with their tags.
    let (rows, out) = env.scan_json(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r["tags"]["owner"] == "search"));

    let out = env.run(&["inventory", "--format", "json"]).await;
    let inv = json_lines(&out);
    assert_eq!(inv.len(), 2);
    for row in &inv {
        assert_eq!(row["registered"], true);
        assert!(row["cert_first_seen"].is_string());
        assert!(row["last_changed"].is_string());
    }

    let out = env
        .run(&["inventory", "--expiring-within", "30d", "--format", "json"])
        .await;
    let expiring = json_lines(&out);
    assert_eq!(expiring.len(), 1);
    assert_eq!(expiring[0]["target"], short.target());
    assert_eq!(expiring[0]["tags"]["owner"], "payments");

    // A second scan of the same certificate keeps its first-seen time.
    let first_seen =
        inv.iter().find(|r| r["target"] == long.target()).unwrap()["cert_first_seen"].clone();
    env.scan_json(&[]).await;
    let out = env.run(&["inventory", "--format", "json"]).await;
    let again = json_lines(&out);
    let row = again.iter().find(|r| r["target"] == long.target()).unwrap();
    assert_eq!(row["cert_first_seen"], first_seen);
    assert_eq!(
        row["certificate"]["fingerprint_sha256"],
        long_leaf.fingerprint()
    );

    let out = env.run(&["inventory", "--format", "table"]).await;
    let table = stdout(&out);
    assert!(
        table.contains("FIRST SEEN") && table.contains("owner=search"),
        "{table}"
    );

    let out = env.run(&["endpoints", "remove", &long.target()]).await;
    assert!(out.status.success());
    let out = env.run(&["inventory", "--format", "json"]).await;
    assert_eq!(json_lines(&out).len(), 1);
    let out = env.run(&["endpoints", "list", "--format", "csv"]).await;
    assert_eq!(stdout(&out).lines().count(), 2, "header and one endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanning_nothing_registered_says_what_to_do() {
    let ca = Ca::new("Empty Root");
    let env = Env::new(&ca);
    let out = env.run(&["scan"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("certpilot endpoints add"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_leaves_the_inventory_alone() {
    let ca = Ca::new("NoRecord Root");
    let env = Env::new(&ca);
    let (server, _) = server_for(&ca, &["127.0.0.1"], 30).await;
    env.scan_json(&["--no-record", &server.target()]).await;
    let out = env.run(&["inventory", "--format", "json"]).await;
    assert!(json_lines(&out).is_empty());
    env.scan_json(&[&server.target()]).await;
    let out = env.run(&["inventory", "--format", "json"]).await;
    assert_eq!(json_lines(&out).len(), 1);
}

/// Drops what differs between two scans of the same thing: times and durations.
fn facts(mut rows: Vec<Value>) -> Vec<Value> {
    for row in &mut rows {
        let map = row.as_object_mut().unwrap();
        for volatile in [
            "scanned_at",
            "elapsed_ms",
            "cert_first_seen",
            "last_changed",
            "last_seen",
        ] {
            map.remove(volatile);
        }
    }
    rows.sort_by_key(|r| (r["target"].to_string(), r["address"].to_string()));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_and_sqlite_stores_record_the_same_facts() {
    let moto = certpilot_testkit::procs::shared_moto();
    let ca = Ca::new("Two Stores Root");
    let env = Env::new(&ca);
    let (server, _) = server_for(&ca, &["127.0.0.1"], 20).await;
    let closed = servers::closed_port().await.to_string();
    let ca_file = env.ca_file.display().to_string();
    let table = format!("cli-{}", std::process::id());
    let dynamo = format!("dynamodb:{table}");
    let sqlite = env.store();

    let mut inventories = Vec::new();
    for store in [sqlite.as_str(), dynamo.as_str()] {
        let run = |args: Vec<&str>| {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"));
            cmd.args(["--store", store]).args(args).env("NO_COLOR", "1");
            with_moto(&mut cmd, moto);
            async move { cmd.output().await.unwrap() }
        };
        let out = run(vec!["init"]).await;
        assert!(out.status.success(), "{store}: {}", stderr(&out));
        for target in [server.target(), closed.clone()] {
            let out = run(vec!["endpoints", "add", &target, "owner=payments"]).await;
            assert!(out.status.success(), "{store}: {}", stderr(&out));
        }
        let out = run(vec!["scan", "--ca-file", &ca_file, "--format", "json"]).await;
        assert!(out.status.success(), "{store}: {}", stderr(&out));
        assert_eq!(json_lines(&out).len(), 2, "{store}");
        let out = run(vec!["inventory", "--format", "json"]).await;
        assert!(out.status.success(), "{store}: {}", stderr(&out));
        inventories.push(facts(json_lines(&out)));
    }
    assert_eq!(inventories[0].len(), 2);
    assert_eq!(
        inventories[0], inventories[1],
        "both stores hold the same facts"
    );
}

/// The README's table of deploy target kinds is what the descriptors say: a kind added, or a
/// setting, key type or permission changed, without the README following fails here.
#[test]
fn the_readme_table_of_deploy_kinds_is_generated_from_the_descriptors() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
        .args(["deploy-kinds", "--markdown"])
        .output()
        .expect("certpilot runs");
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let (_, rest) = readme
        .split_once("<!-- deploy-kinds:begin -->\n")
        .expect("README marks the table's start");
    let (table, _) = rest
        .split_once("<!-- deploy-kinds:end -->")
        .expect("README marks the table's end");
    assert_eq!(
        table.trim(),
        generated.trim(),
        "README.md's deploy kinds table is stale: replace it with `certpilot deploy-kinds --markdown`"
    );
}

/// The README's policy example is a policy the CLI takes, so people can start from it.
#[test]
fn the_readme_findings_policy_is_a_valid_policy() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let (_, rest) = readme
        .split_once("**The findings policy.**")
        .expect("README explains the findings policy");
    let (_, rest) = rest.split_once("```yaml\n").expect("with an example");
    let (example, _) = rest.split_once("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, example).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
        .args(["endpoints", "add", "localhost:443", "--findings-policy"])
        .arg(&file)
        .env(
            "CERTPILOT_STORE",
            format!("sqlite:{}", dir.path().join("db").display()),
        )
        .output()
        .expect("certpilot runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `certpilot findings`: the settled JSON fields, most severe first, filters that name a bad
/// value, and an acknowledgement's life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_are_listed_most_severe_first_filtered_and_acknowledged() {
    use certpilot_core::model::finding::{FindingKind, Severity};
    use certpilot_core::ports::FindingStore;
    use certpilot_testkit::findings_contract::finding;
    let env = Env::new(&Ca::new("Findings CA"));
    let store = certpilot_sqlite::SqliteStore::open(env.path("inventory.db")).unwrap();
    let warning = finding(FindingKind::Validation, "b.example:443", Severity::Warning);
    let critical = finding(FindingKind::Expired, "a.example:443", Severity::Critical);
    store.put_finding(&warning).await.unwrap();
    store.put_finding(&critical).await.unwrap();

    let out = env.run(&["findings", "--format", "json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["key"], critical.key.as_str());
    for field in [
        "key",
        "kind",
        "severity",
        "state",
        "subject",
        "summary",
        "detail",
        "next_step",
        "owner",
        "environment",
        "tags",
        "opened_at",
        "updated_at",
        "resolved_at",
        "acknowledged_until",
    ] {
        assert!(rows[0].get(field).is_some(), "{field} missing: {}", rows[0]);
    }
    assert_eq!(rows[0]["subject"]["type"], "endpoint");
    assert!(rows[0].get("pending").is_none(), "nothing internal");

    let only = env
        .run(&["findings", "--severity", "critical", "--format", "json"])
        .await;
    assert_eq!(json_lines(&only).len(), 1);
    let tagged = env
        .run(&["findings", "--tag", "owner=search", "--format", "json"])
        .await;
    assert!(json_lines(&tagged).is_empty());
    let bad = env.run(&["findings", "--kind", "expirng"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--kind \"expirng\": not a kind"));

    let past = env
        .run(&[
            "findings",
            "ack",
            &critical.key,
            "--until",
            "2001-01-01",
            "--reason",
            "x",
        ])
        .await;
    assert_eq!(past.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&past.stderr).contains("in the past"));
    let acked = env
        .run(&[
            "findings",
            "ack",
            &critical.key,
            "--until",
            "2099-01-01",
            "--reason",
            "host retired",
        ])
        .await;
    assert!(
        acked.status.success(),
        "{}",
        String::from_utf8_lossy(&acked.stderr)
    );
    let stored = store.finding(&critical.key).await.unwrap().unwrap();
    assert_eq!(stored.state.as_str(), "acknowledged");
    assert_eq!(stored.acknowledged_reason.as_deref(), Some("host retired"));
    let unknown = env.run(&["findings", "unack", "expired.nope"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no finding \"expired.nope\""));
    let unacked = env.run(&["findings", "unack", &critical.key]).await;
    assert!(unacked.status.success());
    assert_eq!(
        store
            .finding(&critical.key)
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "open"
    );
}

/// A scan opens a finding for an endpoint whose certificate expires soon, says it once, and
/// resolves it when the endpoint serves a renewed certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_opens_an_expiring_finding_once_and_resolves_it_after_the_renewal() {
    let ca = Ca::new("Expiry CA");
    let env = Env::new(&ca);
    let old = ca.leaf(&["localhost"]).expiring_in_days(10).build();
    let server = servers::Swappable::start().await;
    server.serve(&old);
    let target = format!("localhost:{}", server.server().port());
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let (_, first) = env.scan_json(&[&target]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("certpilot: opened warning expiring:"),
        "{}",
        stderr(&first)
    );
    let listed = env.run(&["findings", "--format", "json"]).await;
    let rows = json_lines(&listed);
    assert_eq!(rows.len(), 1, "one per address: {rows:?}");
    assert_eq!(rows[0]["kind"], "expiring");
    assert_eq!(rows[0]["subject"]["id"], target.as_str());
    // The digest: the open finding and the certificate that expires, under no owner.
    let digest = env.run(&["digest", "--format", "json"]).await;
    assert!(digest.status.success(), "{}", stderr(&digest));
    let digests = json_lines(&digest);
    assert_eq!(digests.len(), 1, "{digests:?}");
    assert_eq!(digests[0]["owner"], "(no owner)");
    assert_eq!(digests[0]["findings"].as_array().unwrap().len(), 1);
    assert_eq!(digests[0]["expiring"][0]["target"], target.as_str());
    let text = env.run(&["digest", "--format", "table"]).await;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("(no owner): 1 open finding; 1 expires within 30 days"),
        "{text}"
    );
    assert!(
        text.contains("expires ") && text.contains(&target),
        "{text}"
    );
    let other = env
        .run(&["digest", "--owner", "payments", "--format", "table"])
        .await;
    assert!(String::from_utf8_lossy(&other.stdout).contains("nothing open"));

    // The same facts again: nothing new is said.
    let (_, again) = env.scan_json(&[&target]).await;
    assert!(
        !stderr(&again).contains("certpilot: opened"),
        "{}",
        stderr(&again)
    );

    // Renewed: resolved, and said so once.
    server.serve(&ca.leaf(&["localhost"]).build());
    let (_, fixed) = env.scan_json(&[&target]).await;
    assert!(
        stderr(&fixed).contains("certpilot: resolved warning expiring:"),
        "{}",
        stderr(&fixed)
    );
    let open = env.run(&["findings", "--format", "json"]).await;
    assert!(json_lines(&open).is_empty());
    let all = env.run(&["findings", "--all", "--format", "json"]).await;
    assert_eq!(json_lines(&all)[0]["state"], "resolved");
}

/// Alerts to Slack and to a signed webhook, from the CLI on the embedded store: an expiring
/// endpoint makes exactly one alert per channel that wants it (routed by owner), a second
/// run none, a reminder once the interval has passed, a 429 is waited out, and the fix one
/// "resolved". Secrets are never printed, and go with their channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_slack_and_webhooks_once_routed_by_owner_reminded_and_resolved() {
    use certpilot_core::ports::FindingStore;
    use certpilot_testkit::slack::MockSlack;
    use certpilot_testkit::webhook_receiver::WebhookReceiver;
    let ca = Ca::new("Alerts CA");
    let env = Env::new(&ca);
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let slack = MockSlack::start().await;
    let search_slack = MockSlack::start().await;
    let receiver = WebhookReceiver::start().await;
    std::fs::write(env.path("payments-slack"), format!("{}\n", slack.url())).unwrap();
    std::fs::write(env.path("search-slack"), search_slack.url()).unwrap();
    std::fs::write(env.path("hook-secret"), &receiver.secret).unwrap();
    let file = |n: &str| env.path(n).display().to_string();

    let add = |args: Vec<String>| {
        let env = &env;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            env.run(&args).await
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let out = add(s(&[
        "channels",
        "add",
        "payments",
        "--slack-webhook-file",
        &file("payments-slack"),
        "--match",
        "owner=payments",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains(&slack.url()),
        "the URL is the secret"
    );
    let out = add(s(&[
        "channels",
        "add",
        "search",
        "--slack-webhook-file",
        &file("search-slack"),
        "--match",
        "owner=search",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = add(s(&[
        "channels",
        "add",
        "router",
        "--webhook",
        &receiver.url(),
        "--secret-file",
        &file("hook-secret"),
        "--min-severity",
        "critical",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Refusals name the input and what is wrong; nothing is stored.
    std::fs::write(env.path("not-a-url"), "hooks.slack.com/services/x").unwrap();
    let bad = add(s(&[
        "channels",
        "add",
        "bad",
        "--slack-webhook-file",
        &file("not-a-url"),
    ]))
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("--slack-webhook-file") && stderr(&bad).contains("not a URL"),
        "{}",
        stderr(&bad)
    );
    std::fs::write(env.path("short-secret"), "whsec_c2hvcnQ=").unwrap();
    let bad = add(s(&[
        "channels",
        "add",
        "bad",
        "--webhook",
        &receiver.url(),
        "--secret-file",
        &file("short-secret"),
    ]))
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("holds 5 bytes"), "{}", stderr(&bad));
    assert!(
        !stderr(&bad).contains("c2hvcnQ"),
        "the secret is not echoed"
    );
    let dup = add(s(&[
        "channels",
        "add",
        "payments",
        "--slack-webhook-file",
        &file("search-slack"),
    ]))
    .await;
    assert_eq!(dup.status.code(), Some(1));
    assert!(
        stderr(&dup).contains("channel \"payments\" exists"),
        "{}",
        stderr(&dup)
    );
    let plain = add(s(&[
        "channels",
        "add",
        "bad",
        "--webhook",
        "http://hooks.example/x",
        "--secret-file",
        &file("hook-secret"),
    ]))
    .await;
    assert_eq!(plain.status.code(), Some(1));
    assert!(stderr(&plain).contains("plain HTTP"), "{}", stderr(&plain));

    let listed = env.run(&["channels", "list", "--format", "json"]).await;
    let rows = json_lines(&listed);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["name"], "payments");
    assert_eq!(rows[0]["destination"], "Slack incoming webhook");
    assert_eq!(rows[0]["match"]["owner"], "payments");
    let printed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !printed.contains("/services/")
            && !printed.contains("/hooks/certpilot")
            && !printed.contains("whsec_"),
        "{printed}"
    );

    // channels test: a sample through the channel, marked as a test.
    let tested = env.run(&["channels", "test", "payments"]).await;
    assert!(tested.status.success(), "{}", stderr(&tested));
    assert_eq!(slack.messages().len(), 1);
    assert!(
        slack.messages()[0]["text"]
            .as_str()
            .unwrap()
            .contains("Test from certpilot")
    );

    // An endpoint of the payments team whose certificate expires in five days: critical.
    let old = ca.leaf(&["localhost"]).expiring_in_days(5).build();
    let server = servers::Swappable::start().await;
    server.serve(&old);
    let target = format!("localhost:{}", server.server().port());
    let registered = env
        .run(&[
            "endpoints",
            "add",
            &target,
            "owner=payments",
            "environment=prod",
        ])
        .await;
    assert!(registered.status.success(), "{}", stderr(&registered));
    slack.rate_limit(1, 1);
    let (_, first) = env.scan_json(&[]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let said = slack.messages();
    assert_eq!(said.len(), 2, "one alert after the test message: {said:?}");
    assert_eq!(
        slack.early_retries(),
        0,
        "the 429's Retry-After was honoured"
    );
    let alert = &said[1];
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .starts_with("New critical: "),
        "{alert}"
    );
    let shown = alert.to_string();
    assert!(
        shown.contains(&target) && shown.contains("days left") && shown.contains("payments"),
        "{shown}"
    );
    assert!(
        search_slack.messages().is_empty(),
        "another owner's channel hears nothing"
    );
    let hooks = receiver.deliveries();
    assert_eq!(hooks.len(), 1, "{:?}", receiver.refusals());
    assert_eq!(hooks[0].body["type"], "finding.opened");
    assert_eq!(
        hooks[0].body["data"]["finding"]["subject"]["id"],
        target.as_str()
    );

    // The same facts again: nothing is sent.
    let (_, again) = env.scan_json(&[]).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(slack.messages().len(), 2);
    assert_eq!(receiver.deliveries().len(), 1);

    // A day later (the store's clock moved back a day): one reminder.
    let store = certpilot_sqlite::SqliteStore::open(env.path("inventory.db")).unwrap();
    let key = hooks[0].body["data"]["finding"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut f = store.finding(&key).await.unwrap().unwrap();
    let day = time::Duration::hours(25);
    f.notified_at = f.notified_at.map(|t| t - day);
    f.opened_at -= day;
    store.put_finding(&f).await.unwrap();
    drop(store);
    let (_, later) = env.scan_json(&[]).await;
    assert!(later.status.success(), "{}", stderr(&later));
    let said = slack.messages();
    assert_eq!(said.len(), 3, "{said:?}");
    assert!(
        said[2]["text"]
            .as_str()
            .unwrap()
            .starts_with("Still open critical: "),
        "{}",
        said[2]
    );
    assert_eq!(receiver.deliveries()[1].body["type"], "finding.reminded");

    // Slack is down for the fix: the run says so (exit 75) and the next run sends it.
    server.serve(&ca.leaf(&["localhost"]).build());
    slack.fail(3);
    let (_, fixed) = env.scan_json(&[]).await;
    assert_eq!(fixed.status.code(), Some(75), "{}", stderr(&fixed));
    assert!(
        stderr(&fixed).contains("payments did not take"),
        "{}",
        stderr(&fixed)
    );
    assert_eq!(receiver.deliveries().len(), 3, "the webhook took it");
    let (_, next) = env.scan_json(&[]).await;
    assert!(next.status.success(), "{}", stderr(&next));
    let said = slack.messages();
    assert_eq!(said.len(), 4, "{said:?}");
    assert!(
        said[3]["text"].as_str().unwrap().starts_with("Resolved: "),
        "{}",
        said[3]
    );
    assert_eq!(
        receiver.deliveries().len(),
        3,
        "the webhook is not told twice"
    );

    // Removing a channel deletes its secret.
    let removed = env.run(&["channels", "remove", "payments"]).await;
    assert!(removed.status.success(), "{}", stderr(&removed));
    let secrets = env.path("secrets").join("certpilot/channels/payments");
    assert!(!secrets.exists(), "{} is left", secrets.display());
    let again = env.run(&["channels", "remove", "payments"]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("no channel \"payments\""));
}

/// `certpilot metrics`: Prometheus text that promtool parses, with ssl_exporter's names and
/// labels, over which the seeds' own rule `(ssl_cert_not_after - time()) / 86400 < 30`
/// fires for the endpoint that expires in 10 days and not for the one with 60; EMF lines
/// with millisecond timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_ssl_exporter_compatible_and_the_seed_rule_fires_on_them() {
    let ca = Ca::new("Metrics CA");
    let env = Env::new(&ca);
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let soon = servers::tls_default(&ca.leaf(&["localhost"]).expiring_in_days(10).build()).await;
    let later = servers::tls_default(
        &ca.leaf(&["localhost", "127.0.0.1"])
            .expiring_in_days(60)
            .build(),
    )
    .await;
    let (rows, out) = env.scan_json(&[&soon.target(), &later.target()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows.len(), 2);

    let file = env.path("textfile/certpilot.prom");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let written = env
        .run(&["metrics", "--textfile", &file.display().to_string()])
        .await;
    assert!(written.status.success(), "{}", stderr(&written));
    let text = std::fs::read_to_string(&file).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");

    let promtool = certpilot_testkit::procs::locate("CERTPILOT_PROMTOOL", "promtool");
    let checked = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // ssl_exporter's labels and formats.
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ssl_cert_not_after{"))
        .collect();
    assert_eq!(series.len(), 2, "{text}");
    let soon_line = series
        .iter()
        .find(|l| l.contains(&format!("instance=\"{}\"", soon.target())))
        .unwrap();
    assert!(
        soon_line.contains("dnsnames=\",localhost,\""),
        "{soon_line}"
    );
    assert!(
        soon_line.contains("issuer_cn=\"Metrics CA\""),
        "{soon_line}"
    );
    let later_line = series
        .iter()
        .find(|l| l.contains(&format!("instance=\"{}\"", later.target())))
        .unwrap();
    assert!(later_line.contains("ips=\",127.0.0.1,\""), "{later_line}");
    let serial = |l: &str| {
        let start = l.find("serial_no=\"").unwrap() + 11;
        l[start..].split('"').next().unwrap().to_owned()
    };
    assert!(
        serial(soon_line).chars().all(|c| c.is_ascii_digit()),
        "decimal: {soon_line}"
    );
    assert!(text.contains(&format!(
        "ssl_probe_success{{instance=\"{}\"",
        soon.target()
    )));
    assert!(
        text.contains(
            "certpilot_finding_open{kind=\"expiring\",severity=\"warning\",owner=\"\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("certpilot_scan_last_run_timestamp_seconds "),
        "{text}"
    );

    // The seeds' rule, unchanged, over these very series at this very time.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Label pairs of one exposition line, read as the format says (values quoted, `\"`
    // escaped), as a YAML flow map.
    let yaml_labels = |line: &str| {
        let inner = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
        let mut pairs = Vec::new();
        let mut rest = inner;
        while let Some((key, after)) = rest.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            // An empty label is no label to Prometheus.
            if !value.is_empty() {
                pairs.push(format!("{}: '{value}'", key.trim_start_matches(',')));
            }
            rest = &after[end..];
        }
        pairs.join(", ")
    };
    // promtool's clock starts at 0 and evaluates every interval up to eval_time: the
    // series are moved back in time with it (by now - 10 minutes), so at eval_time 10m
    // `ssl_cert_not_after - time()` is what it is now.
    let shift = now - 600;
    let series_yaml: String = series
        .iter()
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            let value: i64 = value.parse().unwrap();
            format!(
                "      - series: '{name}'\n        values: '{}+0x10'\n",
                value - shift
            )
        })
        .collect();
    std::fs::write(
        env.path("rules.yml"),
        "groups:\n  - name: certificates\n    rules:\n      - alert: CertificateExpiresSoon\n        expr: (ssl_cert_not_after - time()) / 86400 < 30\n",
    )
    .unwrap();
    std::fs::write(
        env.path("rules_test.yml"),
        format!(
            "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series_yaml}    alert_rule_test:\n      - eval_time: 10m\n        alertname: CertificateExpiresSoon\n        exp_alerts:\n          - exp_labels: {{{}}}\n",
            yaml_labels(soon_line)
        ),
    )
    .unwrap();
    let tested = std::process::Command::new(&promtool)
        .args(["test", "rules", "rules_test.yml"])
        .current_dir(env.path(""))
        .output()
        .unwrap();
    assert!(
        tested.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );

    let emf = env.run(&["metrics", "--format", "emf"]).await;
    assert!(emf.status.success(), "{}", stderr(&emf));
    let lines = json_lines(&emf);
    assert!(lines.len() >= 2 + 3, "{lines:?}");
    let first = &lines[0];
    let ms = first["_aws"]["Timestamp"].as_i64().unwrap();
    assert!((ms / 1000 - now).abs() < 600, "milliseconds: {ms}");
    assert_eq!(
        first["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "certpilot"
    );
    assert!(first["DaysToExpiry"].as_f64().is_some(), "{first}");
}

/// An endpoint that refuses connections is `unreachable` at the third failed scan in a row
/// (not before: one blip pages no one), said once with the error kind, and resolved when it
/// serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_three_scans_in_a_row_is_unreachable_until_it_serves_again() {
    let ca = Ca::new("Unreachable CA");
    let env = Env::new(&ca);
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let port = certpilot_testkit::procs::free_port();
    let target = format!("127.0.0.1:{port}");
    for scan in 1..=2 {
        let (_, out) = env.scan_json(&[&target]).await;
        assert!(
            !stderr(&out).contains("unreachable"),
            "scan {scan}: {}",
            stderr(&out)
        );
    }
    let (_, third) = env.scan_json(&[&target]).await;
    assert_eq!(
        stderr(&third)
            .matches("certpilot: opened warning unreachable:")
            .count(),
        1,
        "{}",
        stderr(&third)
    );
    let listed = json_lines(&env.run(&["findings", "--format", "json"]).await);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["kind"], "unreachable");
    assert!(
        listed[0]["summary"].as_str().unwrap().contains("(refused)"),
        "{}",
        listed[0]
    );
    assert!(
        listed[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("3 scans in a row failed")
    );
    let (_, fourth) = env.scan_json(&[&target]).await;
    assert!(
        !stderr(&fourth).contains("unreachable"),
        "said once: {}",
        stderr(&fourth)
    );

    let _back = servers::tls_on_ports(&ca.leaf(&["127.0.0.1"]).build(), 1, [port]).await;
    let (_, served) = env.scan_json(&[&target]).await;
    assert!(
        stderr(&served).contains("certpilot: resolved warning unreachable:"),
        "{}",
        stderr(&served)
    );
    assert!(json_lines(&env.run(&["findings", "--format", "json"]).await).is_empty());
}

/// A timer that stopped scanning is itself an outage: the renew run that still happens says
/// so, once, and the next full scan resolves it.
#[tokio::test]
async fn a_scan_timer_that_stopped_is_one_critical_finding_until_a_full_scan_runs() {
    use certpilot_core::ports::ScheduleStore as _;
    let ca = Ca::new("Stale CA");
    let env = Env::new(&ca);
    let (server, _) = server_for(&ca, &["127.0.0.1"], 60).await;
    let added = env
        .run(&["endpoints", "add", &server.target(), "owner=payments"])
        .await;
    assert!(added.status.success(), "{}", stderr(&added));
    let renew = || env.run(&["renew", "--scan-interval", "1s"]);
    // Before any full scan there is no schedule to miss.
    let before = renew().await;
    assert!(
        !stderr(&before).contains("scan_stale"),
        "{}",
        stderr(&before)
    );
    // A scan of given targets is no full scan.
    let (_, given) = env
        .scan_json(&[&server.target(), "--scan-interval", "1s"])
        .await;
    assert!(given.status.success(), "{}", stderr(&given));
    let tick = || async {
        certpilot_sqlite::SqliteStore::open(env.path("inventory.db"))
            .unwrap()
            .last_tick()
            .await
            .unwrap()
    };
    assert_eq!(tick().await, None);
    let (_, full) = env.scan_json(&["--scan-interval", "1s"]).await;
    assert!(full.status.success(), "{}", stderr(&full));
    assert!(tick().await.is_some());
    let fresh = renew().await;
    assert!(!stderr(&fresh).contains("scan_stale"), "{}", stderr(&fresh));

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let late = renew().await;
    assert_eq!(
        stderr(&late)
            .matches("certpilot: opened critical scan_stale:")
            .count(),
        1,
        "{}",
        stderr(&late)
    );
    assert!(
        stderr(&late).contains("registered endpoints have not been scanned since"),
        "{}",
        stderr(&late)
    );
    let listed = json_lines(&env.run(&["findings", "--format", "json"]).await);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["kind"], "scan_stale");
    assert_eq!(listed[0]["subject"]["type"], "schedule");
    assert_eq!(listed[0]["severity"], "critical");
    let again = renew().await;
    assert!(
        !stderr(&again).contains("scan_stale"),
        "said once: {}",
        stderr(&again)
    );
    // The daily default does not call a 2-second-old scan late.
    let daily = env.run(&["renew"]).await;
    assert!(
        stderr(&daily).contains("resolved critical scan_stale"),
        "{}",
        stderr(&daily)
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let late = renew().await;
    assert!(
        stderr(&late).contains("reopened critical scan_stale"),
        "{}",
        stderr(&late)
    );
    let (_, resumed) = env.scan_json(&["--scan-interval", "1s"]).await;
    assert!(
        stderr(&resumed).contains("resolved critical scan_stale"),
        "{}",
        stderr(&resumed)
    );
    assert!(json_lines(&env.run(&["findings", "--format", "json"]).await).is_empty());
}

/// A platform team's policy: staging is told late and softly, the payments team early and
/// loudly; a mistake in the policy is named and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_findings_policy_file_sets_thresholds_and_severities_per_environment_and_owner() {
    let ca = Ca::new("Policy CA");
    let env = Env::new(&ca);
    let (staging, _) = server_for(&ca, &["127.0.0.1"], 10).await;
    let (payments, _) = server_for(&ca, &["127.0.0.1"], 10).await;
    let (other, _) = server_for(&ca, &["127.0.0.1"], 10).await;
    for (server, tags) in [
        (&staging, "environment=staging"),
        (&payments, "owner=payments"),
        (&other, "owner=search"),
    ] {
        let added = env.run(&["endpoints", "add", &server.target(), tags]).await;
        assert!(added.status.success(), "{}", stderr(&added));
    }
    let policy = env.path("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - match: {environment: staging}\n    expiring_days: [3]\n  - match: {owner: payments}\n    critical_days: 14\n    severities: {validation: critical}\n",
    )
    .unwrap();
    let bad = env.path("bad.yaml");
    std::fs::write(
        &bad,
        "rules:\n  - match: {owner: payments}\n    critical_day: 14\n",
    )
    .unwrap();
    let policy_arg = policy.display().to_string();
    let bad_arg = bad.display().to_string();

    let refused = env.scan_json(&["--findings-policy", &bad_arg]).await.1;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!(
            "--findings-policy {bad_arg}: unknown field `critical_day`"
        )),
        "{}",
        stderr(&refused)
    );
    assert!(
        json_lines(&env.run(&["inventory", "--format", "json"]).await).is_empty(),
        "nothing scanned, nothing recorded"
    );

    let (_, out) = env.scan_json(&["--findings-policy", &policy_arg]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = json_lines(&env.run(&["findings", "--format", "json"]).await);
    let severity_of = |target: String| {
        listed
            .iter()
            .find(|f| f["subject"]["id"] == target.as_str())
            .map(|f| f["severity"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        severity_of(staging.target()),
        None,
        "10 days is not yet 3: {listed:?}"
    );
    assert_eq!(
        severity_of(payments.target()).as_deref(),
        Some("critical"),
        "payments is critical from 14 days: {listed:?}"
    );
    assert_eq!(
        severity_of(other.target()).as_deref(),
        Some("warning"),
        "{listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_channel_publishes_with_filterable_attributes_and_needs_no_secret() {
    let moto = certpilot_testkit::procs::shared_moto();
    let config = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let name = format!("cli-alerts-{}", std::process::id());
    let (topic, queue) = certpilot_e2e::sns_queue::topic_with_queue(
        &config,
        &name,
        Some(&serde_json::json!({"severity": ["critical"]})),
        true,
    )
    .await;
    let env = Env::new(&Ca::new("SNS Channel Root"));
    let run = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"));
        cmd.args(args)
            .env("CERTPILOT_STORE", env.store())
            .env("NO_COLOR", "1");
        with_moto(&mut cmd, moto);
        async move { cmd.output().await.unwrap() }
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();

    // A mistyped ARN is named before anything is stored.
    let out = run(s(&[
        "channels",
        "add",
        "oncall",
        "--sns-topic",
        "arn:aws:sns:us-east-1:12:x",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--sns-topic"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not an SNS topic ARN"),
        "{}",
        stderr(&out)
    );

    let out = run(s(&[
        "channels",
        "add",
        "oncall",
        "--sns-topic",
        &topic,
        "--min-severity",
        "critical",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(s(&[
        "channels",
        "add",
        "bus",
        "--eventbridge-bus",
        "default",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(s(&["channels", "list", "--format", "json"])).await;
    let listed = json_lines(&out);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let oncall = listed.iter().find(|c| c["name"] == "oncall").unwrap();
    assert_eq!(oncall["type"], "sns");
    assert_eq!(oncall["destination"], format!("SNS {topic}"));
    let bus = listed.iter().find(|c| c["name"] == "bus").unwrap();
    assert_eq!(bus["destination"], "EventBridge bus default");

    // The sample is critical (the channel's least severity), so the filter lets it through.
    let out = run(s(&["channels", "test", "oncall"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let got = certpilot_e2e::sns_queue::drain(&config, &queue).await;
    assert_eq!(got.len(), 1);
    let attrs = got[0].message_attributes().unwrap();
    assert_eq!(attrs["severity"].string_value(), Some("critical"));
    assert_eq!(attrs["kind"].string_value(), Some("expiring"));
    let body: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(body["schema"], 1);
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("Test from certpilot")
    );

    let out = run(s(&["channels", "remove", "oncall"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("removed channel oncall\n"),
        "no secret to speak of: {}",
        stderr(&out)
    );
}
