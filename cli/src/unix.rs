//! What the CLI asks of the operating system: signals that end a command, the open-file
//! limit, and whether a lease's owner still runs.

use certpilot_core::ports::Liveness;
use rustix::process::Resource;
use tokio::signal::unix::{SignalKind, signal};

/// SIGINT (Ctrl-C) and SIGTERM (`timeout`, systemd, a container stop) end a command the same
/// way: stop starting work, keep what was done, exit 130. Installed by the commands that
/// honour it; the others keep the default action (die at once, having nothing to lose).
pub(crate) struct Shutdown {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Takes over SIGINT and SIGTERM.
    pub(crate) fn install() -> std::io::Result<Shutdown> {
        Ok(Shutdown {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves when either signal arrives.
    pub(crate) async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Raises the soft open-file limit to the hard one (systemd and many shells start at 1024
/// while allowing far more), and returns the soft limit now in force.
pub(crate) fn raise_open_files() -> Option<u64> {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = rustix::process::setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
        }
    }
    rustix::process::getrlimit(Resource::Nofile).current
}

/// Descriptors open now (the store, the runtime, stdio).
fn open_files() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count() as u64)
}

/// How many probes may run at once under the open-file limit `limit`: each holds a socket
/// and may hold a resolver's, and the store, logs and runtime keep some for themselves.
pub(crate) fn probes_within(limit: Option<u64>, wanted: usize) -> usize {
    const RESERVE: u64 = 32;
    let Some(limit) = limit else { return wanted };
    let room = limit.saturating_sub(open_files() + RESERVE) / 2;
    wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// This process, as a lease owner: `cli:HOST:PID:START`. The start time (clock ticks after
/// boot) tells a reused PID from the process that took the lease.
pub(crate) fn lease_owner() -> String {
    let pid = std::process::id();
    format!(
        "cli:{}:{pid}:{}",
        hostname(),
        start_time(pid).unwrap_or_default()
    )
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    // Field 22 of the file, the 20th after the command name.
    rest.split(' ').nth(19).map(str::to_owned)
}

/// Knows which certpilot processes of this host still run.
pub(crate) struct LocalProcesses {
    host: String,
}

impl LocalProcesses {
    pub(crate) fn new() -> Self {
        LocalProcesses { host: hostname() }
    }
}

impl Liveness for LocalProcesses {
    fn is_gone(&self, owner: &str) -> bool {
        let mut parts = owner.split(':');
        let (Some("cli"), Some(host), Some(pid), start) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            // A Lambda invocation or another kind of worker: not ours to judge.
            return false;
        };
        if host != self.host {
            return false;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            return false;
        };
        match start_time(pid) {
            None => true,
            // Leases written before the start time was part of the owner name only have a PID.
            Some(now) => start.is_some_and(|s| !s.is_empty() && s != now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_of_a_process_that_is_gone_is_known_as_such() {
        let live = LocalProcesses::new();
        let me = lease_owner();
        assert!(!live.is_gone(&me), "{me}");
        let host = hostname();
        // PID 0 is never a process; a start time that differs means the PID was reused.
        assert!(live.is_gone(&format!("cli:{host}:999999999:1")));
        let pid = std::process::id();
        assert!(live.is_gone(&format!("cli:{host}:{pid}:1")));
        // Other hosts and other kinds of worker are not ours to judge.
        assert!(!live.is_gone("cli:another-host:999999999:1"));
        assert!(!live.is_gone("lambda:renew:abc"));
    }

    #[test]
    fn probes_fit_the_open_file_limit() {
        assert_eq!(probes_within(None, 64), 64);
        assert_eq!(probes_within(Some(1 << 20), 64), 64);
        assert_eq!(probes_within(Some(8), 64), 1);
        let at_most = probes_within(Some(200), 4096);
        assert!(at_most < 100, "{at_most}");
    }
}
