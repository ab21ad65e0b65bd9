//! HAProxy's Runtime API on its admin socket (`stats socket … level admin`): one command per
//! connection, each bounded in time. A certificate is changed in a transaction — `set ssl
//! cert FILE <<` with the new PEM, then `commit ssl cert FILE` — so every new handshake
//! gets the new certificate at once, with no reload and no connection dropped; a failed
//! commit is aborted, leaving the running certificate as it was.

use std::path::{Path, PathBuf};
use std::time::Duration;

use certpilot_core::ports::DeployError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one command may take, connection included.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of an answer that is read.
const MAX_ANSWER: u64 = 1024 * 1024;

/// The admin socket of one HAProxy.
pub(crate) struct Runtime {
    socket: PathBuf,
}

impl Runtime {
    pub(crate) fn new(socket: &Path) -> Self {
        Runtime {
            socket: socket.to_owned(),
        }
    }

    /// Sends `command` (a line, with its payload when it has one) and reads the answer.
    async fn send(&self, command: &str) -> Result<String, DeployError> {
        let exchange = async {
            let mut stream = tokio::net::UnixStream::connect(&self.socket).await?;
            stream.write_all(command.as_bytes()).await?;
            stream.flush().await?;
            let mut answer = String::new();
            (&mut stream)
                .take(MAX_ANSWER)
                .read_to_string(&mut answer)
                .await?;
            Ok::<_, std::io::Error>(answer)
        };
        let verb = command
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer.trim().to_owned()),
            Ok(Err(e)) => Err(DeployError::Target(format!(
                "haproxy: {verb} on {}: {e} (is it HAProxy's admin socket, `stats socket … level admin`, and may this user open it?)",
                self.socket.display()
            ))),
            Err(_) => Err(DeployError::Unavailable(format!(
                "haproxy: {verb} on {}: no answer within {}s",
                self.socket.display(),
                COMMAND_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Puts `pem` (chain and key) in place of the certificate HAProxy loaded from `file`,
    /// in one transaction; aborted when the commit fails.
    pub(crate) async fn replace(&self, file: &Path, pem: &str) -> Result<(), DeployError> {
        let path = file.display();
        let pem = pem.trim_end();
        let set = self
            .send(&format!("set ssl cert {path} <<\n{pem}\n\n"))
            .await?;
        if !set.contains("Transaction created") && !set.contains("Transaction updated") {
            return Err(DeployError::Target(format!(
                "haproxy: set ssl cert {path}: HAProxy said: {set}"
            )));
        }
        let commit = self.send(&format!("commit ssl cert {path}\n")).await?;
        if !commit.contains("Success!") {
            let _ = self.send(&format!("abort ssl cert {path}\n")).await;
            return Err(DeployError::Target(format!(
                "haproxy: commit ssl cert {path}: HAProxy said: {commit}; the transaction was aborted"
            )));
        }
        Ok(())
    }

    /// The serial of the certificate HAProxy serves from `file` (hex, uppercase as HAProxy
    /// prints it), when it says.
    pub(crate) async fn serial(&self, file: &Path) -> Result<Option<String>, DeployError> {
        let shown = self
            .send(&format!("show ssl cert {}\n", file.display()))
            .await?;
        Ok(shown
            .lines()
            .find_map(|l| l.strip_prefix("Serial:"))
            .map(|s| s.trim().to_ascii_uppercase()))
    }
}
