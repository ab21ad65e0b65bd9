//! Akamai Certificate Provisioning System (CPS), third-party enrollments.

pub mod edgegrid;
