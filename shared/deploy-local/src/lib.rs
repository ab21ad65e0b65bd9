//! certpilot's deploy targets on the host it runs on, and what they share with the CLI.
//!
//! - [`files`]: the `files` kind — the certificate, chain and key written as PEM files into a
//!   version directory of their own, switched in with one atomic rename, then a reload
//!   command (the certbot-and-reload case of a VM).
//! - [`haproxy`]: the `haproxy` kind — HAProxy's certificate file rewritten atomically and the
//!   running process changed through its Runtime API, without a reload.
//! - [`command`]: runs a reload command or a deploy hook in its own process group, with a
//!   timeout and the hook's environment; the CLI's `--deploy-hook` uses it too.

pub mod command;
pub mod files;
pub mod haproxy;
