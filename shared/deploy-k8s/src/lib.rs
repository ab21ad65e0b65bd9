//! certpilot's Kubernetes deploy target, a folder of the same shape as the others:
//! [`secret`] writes a `kubernetes.io/tls` secret in each cluster and namespace a deployment
//! lists (each one unit), so that one certificate issued once is synced everywhere.

pub mod eks;
pub mod secret;
