//! Running a command on the host: a `files` target's reload command, the CLI's deploy hook.
//!
//! The command runs under `sh -c` in a process group of its own, so that a timeout or an
//! interrupt ends its children too (a hook's `sleep`, a reload's helpers), not only the shell.
//! It gets the deploy hook's environment ([`hook_env`]). What it prints is either passed on
//! to certpilot's stderr (the CLI's hook, whose stdout belongs to certpilot's JSON rows) or
//! captured, its last lines kept for the error message (a reload command).
//!
//! A command that starts a daemon may leave that daemon holding the output pipe open: once
//! the command itself has exited, the output is read for one more second at most, never
//! until the pipe closes.

use std::ffi::OsString;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::AsyncReadExt;

/// How long a command's process group has between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// How much of a command's output an error message keeps (its end).
const TAIL: usize = 2048;

/// How long output is still read once the command has exited.
const DRAIN: Duration = Duration::from_secs(1);

/// A shell command with its environment and timeout.
#[derive(Clone, Debug)]
pub struct HostCommand {
    /// What it is, for messages ("reload command", "deploy hook").
    pub what: &'static str,
    /// The command line, run by `sh -c`.
    pub line: String,
    /// Extra environment variables.
    pub env: Vec<(&'static str, OsString)>,
    /// How long it may run.
    pub timeout: Duration,
}

/// Where a command's output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// To certpilot's stderr as it comes (stdout included: certpilot's stdout is for data).
    ToStderr,
    /// Captured; its end is returned, and named in the error when the command fails.
    Capture,
}

/// Why a command did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub enum CommandError {
    /// It could not be started.
    Start(String),
    /// It exited unsuccessfully.
    Failed(String),
    /// It ran past its timeout; it and its children were ended.
    TimedOut(String),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Start(m) | CommandError::Failed(m) | CommandError::TimedOut(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for CommandError {}

/// The deploy hook's environment: what a reload or hook script needs to know.
pub fn hook_env(
    id: &str,
    names: &[String],
    fingerprint: &str,
    not_after: time::OffsetDateTime,
    live_dir: Option<&std::path::Path>,
) -> Vec<(&'static str, OsString)> {
    let not_after = not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    vec![
        ("CERTPILOT_ID", id.into()),
        ("CERTPILOT_NAMES", names.join(" ").into()),
        ("CERTPILOT_FINGERPRINT", fingerprint.into()),
        ("CERTPILOT_NOT_AFTER", not_after.into()),
        (
            "CERTPILOT_LIVE_DIR",
            live_dir
                .map(|d| d.as_os_str().to_owned())
                .unwrap_or_default(),
        ),
    ]
}

impl HostCommand {
    /// Runs the command; returns the end of its output when captured.
    pub async fn run(&self, output: Output) -> Result<String, CommandError> {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&self.line)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .process_group(0);
        match output {
            Output::ToStderr => {
                command.stdout(std::io::stderr());
            }
            Output::Capture => {
                command
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
            }
        }
        let what = self.what;
        let line = &self.line;
        let mut child = command
            .spawn()
            .map_err(|e| CommandError::Start(format!("{what} {line:?}: cannot start: {e}")))?;
        let group = ProcessGroup::of(child.id());
        let tail = Arc::new(Mutex::new(Vec::new()));
        let readers: Vec<_> = [
            child.stdout.take().map(|o| Box::new(o) as Box<dyn Pipe>),
            child.stderr.take().map(|e| Box::new(e) as Box<dyn Pipe>),
        ]
        .into_iter()
        .flatten()
        .map(|pipe| tokio::spawn(keep_tail(pipe, tail.clone())))
        .collect();
        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let status = match waited {
            Ok(status) => {
                group.disarm();
                status
            }
            Err(_) => {
                group.end(GRACE).await;
                let _ = child.wait().await;
                drain(readers).await;
                return Err(CommandError::TimedOut(format!(
                    "{what} {line:?} still running after {}; it and its children were ended{}",
                    humantime::format_duration(self.timeout),
                    said(&tail)
                )));
            }
        };
        drain(readers).await;
        match status {
            Ok(status) if status.success() => Ok(text(&tail)),
            Ok(status) => Err(CommandError::Failed(format!(
                "{what} {line:?} failed ({}){}",
                describe(status),
                said(&tail)
            ))),
            Err(e) => Err(CommandError::Failed(format!("{what} {line:?}: {e}"))),
        }
    }
}

trait Pipe: tokio::io::AsyncRead + Unpin + Send {}
impl<T: tokio::io::AsyncRead + Unpin + Send> Pipe for T {}

/// Reads `pipe` to its end, keeping the last [`TAIL`] bytes of everything read in `tail`.
async fn keep_tail(mut pipe: Box<dyn Pipe>, tail: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut t) = tail.lock() {
            t.extend_from_slice(&buf[..n]);
            let excess = t.len().saturating_sub(TAIL);
            t.drain(..excess);
        }
    }
}

/// Gives the readers [`DRAIN`] to finish, then stops them (a daemon the command started may
/// hold the pipe open for ever).
async fn drain(readers: Vec<tokio::task::JoinHandle<()>>) {
    let deadline = tokio::time::Instant::now() + DRAIN;
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout_at(deadline, reader).await.is_err() {
            abort.abort();
        }
    }
}

fn text(tail: &Mutex<Vec<u8>>) -> String {
    tail.lock()
        .map(|t| String::from_utf8_lossy(&t).trim().to_owned())
        .unwrap_or_default()
}

/// `: it said "…"`, or nothing when it was silent.
fn said(tail: &Mutex<Vec<u8>>) -> String {
    let t = text(tail);
    if t.is_empty() {
        String::new()
    } else {
        format!("; it said: {t}")
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// A child started in its own process group; ending the group ends the command's children
/// too (a `sh -c` hook's `sleep`, a service reload's helpers).
pub struct ProcessGroup(Option<Pid>);

impl ProcessGroup {
    /// The group led by the child with this id.
    pub fn of(pid: Option<u32>) -> Self {
        ProcessGroup(pid.and_then(|p| Pid::from_raw(i32::try_from(p).ok()?)))
    }

    fn signal(&self, sig: Signal) {
        if let Some(pid) = self.0 {
            // Gone already is fine: that is what we wanted.
            let _ = rustix::process::kill_process_group(pid, sig);
        }
    }

    /// SIGTERM to the group, then SIGKILL after `grace` to whatever is left.
    pub async fn end(mut self, grace: Duration) {
        self.signal(Signal::TERM);
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            let alive = self
                .0
                .is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok());
            if !alive {
                self.0 = None;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.signal(Signal::KILL);
        self.0 = None;
    }

    /// The command finished: its group needs nothing more.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    /// Dropped while the command still runs (certpilot was interrupted): end the group.
    fn drop(&mut self) {
        self.signal(Signal::TERM);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn command(line: &str, timeout: Duration) -> HostCommand {
        HostCommand {
            what: "reload command",
            line: line.into(),
            env: vec![("CERTPILOT_ID", "shop".into())],
            timeout,
        }
    }

    #[tokio::test]
    async fn output_is_captured_and_a_failure_names_the_command_and_what_it_said() {
        let ok = command("echo reloaded $CERTPILOT_ID", Duration::from_secs(10))
            .run(Output::Capture)
            .await
            .unwrap();
        assert_eq!(ok, "reloaded shop");
        let e = command(
            "echo 'nginx: [emerg] bad key' >&2; exit 3",
            Duration::from_secs(10),
        )
        .run(Output::Capture)
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, CommandError::Failed(_)), "{e:?}");
        assert!(text.contains("exit status 3"), "{text}");
        assert!(text.contains("nginx: [emerg] bad key"), "{text}");
        assert!(text.contains("reload command"), "{text}");
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_ended_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-ran-on");
        let line = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let e = command(&line, Duration::from_millis(300))
            .run(Output::Capture)
            .await
            .unwrap_err();
        assert!(matches!(e, CommandError::TimedOut(_)), "{e:?}");
        assert!(e.to_string().contains("still running after 300ms"), "{e}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!marker.exists(), "the group's child outlived the timeout");
    }

    #[tokio::test]
    async fn a_daemon_holding_the_output_open_does_not_hold_the_command() {
        let started = std::time::Instant::now();
        // The background sleep keeps stdout open after the shell exits.
        let out = command("sleep 20 & echo started", Duration::from_secs(15))
            .run(Output::Capture)
            .await
            .unwrap();
        assert_eq!(out, "started");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
