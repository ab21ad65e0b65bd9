//! An EC2 fleet managed by SSM, for the `ssm-fleet` kind. moto accepts SSM's calls but runs
//! nothing (and has no `DescribeInstanceInformation` or per-instance results), so this
//! stands in front of it: every request goes on to moto, except what the instances' SSM
//! agents would make true — which managed instances carry which tags
//! (`DescribeInstanceInformation`), and each command's invocation: after moto records a
//! `SendCommand`, the command text runs under `sh` as the instance would run it (the
//! agent's `AWS_SSM_INSTANCE_ID` and `AWS_SSM_REGION_NAME` set, the AWS CLI on `PATH`
//! reaching moto), and `GetCommandInvocation` answers with its status, exit code and
//! output (`InvocationDoesNotExist` until it exists, as SSM does right after a send).
//!
//! Each instance has a directory of its own under [`SsmFleet::root`] and a web server on
//! a loopback address of its own (`127.0.0.N`, all on one port) serving `DIR/fullchain.pem`
//! and reloading when its reload command touches its flag; [`SsmFleet::break_reload`]
//! makes an instance's reload fail, as a bad server configuration would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::certs::Leaf;
use crate::http_mock::{MockServer, Reply, Request, forward};
use crate::servers::FilesServer;

/// One command's run on one instance.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// SSM's status: InProgress, Success or Failed.
    pub status: String,
    /// The script's exit code (-1 while it runs).
    pub code: i32,
    /// What it printed.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
    /// The command text.
    pub script: String,
}

/// An instance as SSM lists it: id, address, tags.
type Listed = (String, String, Vec<(String, String)>);

struct Fleet {
    invocations: BTreeMap<(String, String), Invocation>,
}

/// One instance.
pub struct Instance {
    /// Its id.
    pub id: String,
    /// Its private address.
    pub ip: String,
    tags: Vec<(String, String)>,
    server: FilesServer,
}

/// A running fleet and the SSM in front of moto.
pub struct SsmFleet {
    proxy: MockServer,
    fleet: Arc<Mutex<Fleet>>,
    instances: Vec<Instance>,
    root: tempfile::TempDir,
    port: u16,
}

fn aws_cli() -> PathBuf {
    if let Ok(path) = std::env::var("CERTPILOT_AWS_CLI") {
        return PathBuf::from(path);
    }
    let local = crate::procs::workspace_root().join(".test-env/awscli/bin/aws");
    assert!(
        local.exists(),
        "the AWS CLI the instances run is missing: run scripts/test.sh, or set CERTPILOT_AWS_CLI"
    );
    local
}

fn json_reply(status: u16, v: &Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type".into(), "application/x-amz-json-1.1".into())],
        body: v.to_string(),
    }
}

impl SsmFleet {
    /// A fleet of `instances` (`(id, tags)`) in front of moto at `moto_url`, each serving
    /// `before` from a directory certpilot did not make.
    pub async fn start(
        moto_url: &str,
        instances: &[(&str, &[(&str, &str)])],
        before: &Leaf,
    ) -> SsmFleet {
        let root = tempfile::tempdir().expect("tempdir");
        let port = crate::procs::free_port();
        let mut fleet_instances = Vec::new();
        for (n, (id, tags)) in instances.iter().enumerate() {
            let ip = format!("127.0.0.{}", 10 + n);
            let home = root.path().join(id);
            let live = home.join("live");
            std::fs::create_dir_all(&live).expect("mkdir");
            std::fs::write(live.join("fullchain.pem"), before.chain_pem()).expect("write");
            std::fs::write(live.join("privkey.pem"), before.key_pem()).expect("write");
            let addr: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
            let server = FilesServer::start_at(addr, &live, &home.join("reload")).await;
            fleet_instances.push(Instance {
                id: (*id).to_owned(),
                ip,
                tags: tags
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                server,
            });
        }
        let fleet = Arc::new(Mutex::new(Fleet {
            invocations: BTreeMap::new(),
        }));
        let directory: Vec<Listed> = fleet_instances
            .iter()
            .map(|i| (i.id.clone(), i.ip.clone(), i.tags.clone()))
            .collect();
        let handler = {
            let (fleet, moto) = (fleet.clone(), moto_url.to_owned());
            Arc::new(move |req: Request| {
                let target = req.headers.get("x-amz-target").cloned().unwrap_or_default();
                match target.as_str() {
                    "AmazonSSM.DescribeInstanceInformation" => describe(&directory, &req),
                    "AmazonSSM.GetCommandInvocation" => invocation(&fleet, &req),
                    "AmazonSSM.SendCommand" => {
                        let reply = tokio::task::block_in_place(|| forward(&moto, &req));
                        if reply.status == 200 {
                            run(&fleet, &moto, &req, &reply);
                        }
                        reply
                    }
                    _ => tokio::task::block_in_place(|| forward(&moto, &req)),
                }
            })
        };
        SsmFleet {
            proxy: MockServer::start(handler).await,
            fleet,
            instances: fleet_instances,
            root,
            port,
        }
    }

    /// The endpoint URL the AWS SDK is given (SSM here, everything else moto's).
    pub fn endpoint_url(&self) -> String {
        self.proxy.base_url()
    }

    /// Where the instances' directories are.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The `dir` setting: each instance's `live` directory.
    pub fn dir_setting(&self) -> String {
        format!("{}/{{instance-id}}/live", self.root.path().display())
    }

    /// The `reload` setting: touches the instance's flag unless its reload is broken.
    pub fn reload_setting(&self) -> String {
        let home = format!("{}/{{instance-id}}", self.root.path().display());
        format!(
            "if [ -e '{home}/broken' ]; then echo 'nginx: [emerg] configuration test failed' >&2; exit 1; fi; touch '{home}/reload'"
        )
    }

    /// The port each instance serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Instance `id`'s endpoint (`127.0.0.N:PORT`).
    pub fn target(&self, id: &str) -> String {
        self.instance(id).server.server().target()
    }

    /// The instances.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    fn instance(&self, id: &str) -> &Instance {
        self.instances
            .iter()
            .find(|i| i.id == id)
            .unwrap_or_else(|| panic!("no instance {id}"))
    }

    /// Makes instance `id`'s reload fail (or work again).
    pub fn break_reload(&self, id: &str, broken: bool) {
        let flag = self.root.path().join(id).join("broken");
        if broken {
            std::fs::write(flag, "").expect("write");
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// Every invocation so far, by (command id, instance id).
    pub fn invocations(&self) -> Vec<((String, String), Invocation)> {
        let fleet = self.fleet.lock().expect("lock");
        fleet
            .invocations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn describe(directory: &[Listed], req: &Request) -> Reply {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let filters: Vec<(String, Vec<String>)> = body["Filters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["Key"].as_str().unwrap_or("").to_owned(),
                f["Values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .collect();
    let list: Vec<Value> = directory
        .iter()
        .filter(|(_, _, tags)| {
            filters
                .iter()
                .all(|(key, values)| match key.strip_prefix("tag:") {
                    Some(k) => tags.iter().any(|(tk, tv)| tk == k && values.contains(tv)),
                    None => false,
                })
        })
        .map(|(id, ip, _)| {
            json!({"InstanceId": id, "IPAddress": ip, "PingStatus": "Online",
                "PlatformType": "Linux", "ResourceType": "EC2Instance", "AgentVersion": "3.3.0.0"})
        })
        .collect();
    json_reply(200, &json!({"InstanceInformationList": list}))
}

fn invocation(fleet: &Arc<Mutex<Fleet>>, req: &Request) -> Reply {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let (command, instance) = (
        body["CommandId"].as_str().unwrap_or("").to_owned(),
        body["InstanceId"].as_str().unwrap_or("").to_owned(),
    );
    let fleet = fleet.lock().expect("lock");
    match fleet.invocations.get(&(command.clone(), instance.clone())) {
        None => json_reply(
            400,
            &json!({"__type": "InvocationDoesNotExist", "message": "An error occurred (InvocationDoesNotExist)"}),
        ),
        Some(i) => json_reply(
            200,
            &json!({"CommandId": command, "InstanceId": instance, "DocumentName": "AWS-RunShellScript",
                "PluginName": "aws:runShellScript", "Status": i.status, "StatusDetails": i.status,
                "ResponseCode": i.code, "StandardOutputContent": i.stdout,
                "StandardErrorContent": i.stderr}),
        ),
    }
}

/// Runs the command of `req` (answered by moto with `reply`) on each instance it names.
fn run(fleet: &Arc<Mutex<Fleet>>, moto: &str, req: &Request, reply: &Reply) {
    let sent: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let answer: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    let Some(command) = answer["Command"]["CommandId"].as_str() else {
        return;
    };
    let script: String = sent["Parameters"]["commands"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let region = region_of(req);
    for instance in sent["InstanceIds"].as_array().into_iter().flatten() {
        let Some(instance) = instance.as_str() else {
            continue;
        };
        let key = (command.to_owned(), instance.to_owned());
        fleet.lock().expect("lock").invocations.insert(
            key.clone(),
            Invocation {
                status: "InProgress".into(),
                code: -1,
                stdout: String::new(),
                stderr: String::new(),
                script: script.clone(),
            },
        );
        let (fleet, moto, script, instance, region) = (
            fleet.clone(),
            moto.to_owned(),
            script.clone(),
            instance.to_owned(),
            region.clone(),
        );
        std::thread::spawn(move || {
            let cli = aws_cli();
            let path = format!(
                "{}:{}",
                cli.parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                std::env::var("PATH").unwrap_or_default()
            );
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .env("PATH", path)
                .env("AWS_SSM_INSTANCE_ID", &instance)
                .env("AWS_SSM_REGION_NAME", &region)
                .env("AWS_ENDPOINT_URL", &moto)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env_remove("AWS_PROFILE")
                .output();
            let done = match out {
                Ok(out) => Invocation {
                    status: if out.status.success() {
                        "Success".into()
                    } else {
                        "Failed".into()
                    },
                    code: out.status.code().unwrap_or(-1),
                    // SSM keeps the first 24,000 characters of each stream.
                    stdout: String::from_utf8_lossy(&out.stdout)
                        .chars()
                        .take(24_000)
                        .collect(),
                    stderr: String::from_utf8_lossy(&out.stderr)
                        .chars()
                        .take(8_000)
                        .collect(),
                    script,
                },
                Err(e) => Invocation {
                    status: "Failed".into(),
                    code: -1,
                    stdout: String::new(),
                    stderr: format!("sh: {e}"),
                    script,
                },
            };
            fleet.lock().expect("lock").invocations.insert(key, done);
        });
    }
}

/// The region a request was signed for (its credential scope).
fn region_of(req: &Request) -> String {
    req.headers
        .get("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("us-east-1")
        .to_owned()
}
