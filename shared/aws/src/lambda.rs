//! What every certpilot Lambda function needs: its invocation's deadline, and settings read
//! from the environment at cold start with errors that name the setting.

use std::time::Duration;

use tokio::time::Instant;

/// The invocation's deadline as a monotonic instant, from the context's `deadline` (ms).
pub fn invocation_deadline(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Instant::now() + Duration::from_millis(remaining_ms(deadline_ms, now_ms))
}

/// Milliseconds left before `deadline`. Lambda sends an epoch time in milliseconds; cargo
/// lambda's local emulator sends the function timeout itself (e.g. 600000), which as an
/// epoch time would be 1970. A value that old is read as the time budget it really is.
fn remaining_ms(deadline: u64, now_ms: u64) -> u64 {
    const A_YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
    if deadline < A_YEAR_MS {
        deadline
    } else {
        deadline.saturating_sub(now_ms)
    }
}

/// This execution environment as a lease owner: `lambda:<log stream>`, unique per
/// environment (the process id where the stream is unknown).
pub fn worker_id() -> String {
    format!(
        "lambda:{}",
        std::env::var("AWS_LAMBDA_LOG_STREAM_NAME")
            .unwrap_or_else(|_| std::process::id().to_string())
    )
}

/// A setting that is missing or malformed; the function refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The variable's value, `None` when unset or blank.
pub fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A required variable.
pub fn required(name: &'static str, what: &str) -> Result<String, ConfigError> {
    var(name).ok_or_else(|| ConfigError {
        name,
        reason: format!("required: {what}"),
    })
}

/// A duration such as `90s` or `1h`, or `default` when unset.
pub fn duration(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    var(name).map_or(Ok(default), |v| {
        humantime::parse_duration(&v).map_err(|e| ConfigError {
            name,
            reason: format!("{v:?} is not a duration such as 1h or 90s: {e}"),
        })
    })
}

/// The findings policy of the functions: `CERTPILOT_FINDINGS_POLICY` (the policy document as
/// JSON, the same as the CLI's `--findings-policy`; the defaults when unset), with the scan
/// interval of `CERTPILOT_SCAN_INTERVAL` (1h), which every function that records findings
/// needs to tell a silent scheduled scan (`scan_stale`).
pub fn findings_policy() -> Result<certpilot_core::policy::findings::FindingsPolicy, ConfigError> {
    const NAME: &str = "CERTPILOT_FINDINGS_POLICY";
    let policy = certpilot_core::policy::findings::FindingsPolicy {
        scan_interval: duration("CERTPILOT_SCAN_INTERVAL", Duration::from_secs(3600))?,
        ..Default::default()
    };
    let Some(text) = var(NAME) else {
        return Ok(policy);
    };
    let bad = |reason: String| ConfigError { name: NAME, reason };
    let document = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    policy.with_settings(document).map_err(bad)
}

/// A positive whole number, or `default` when unset.
pub fn count(name: &'static str, default: usize) -> Result<usize, ConfigError> {
    var(name).map_or(Ok(default), |v| match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError {
            name,
            reason: format!("{v:?} is not a positive whole number"),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_epoch_times_or_budgets() {
        let now = 1_795_000_000_000;
        assert_eq!(remaining_ms(now + 900_000, now), 900_000);
        assert_eq!(remaining_ms(now - 5, now), 0);
        assert_eq!(remaining_ms(600_000, now), 600_000);
    }

    #[test]
    fn bad_settings_are_named() {
        // Names no test process sets: the environment is shared by the whole binary.
        assert_eq!(
            duration("CERTPILOT_TEST_UNSET_DURATION", Duration::from_secs(5)).unwrap(),
            Duration::from_secs(5)
        );
        let err = required("CERTPILOT_TEST_UNSET_TABLE", "the table").unwrap_err();
        assert_eq!(
            err.to_string(),
            "CERTPILOT_TEST_UNSET_TABLE: required: the table"
        );
    }
}

/// Whether a Lambda payload is an SQS batch (an event source mapping) rather than a
/// scheduler tick or a direct invocation.
pub fn is_sqs(payload: &serde_json::Value) -> bool {
    payload["Records"]
        .as_array()
        .and_then(|r| r.first())
        .is_some_and(|r| r["eventSource"] == "aws:sqs")
}

/// `CERTPILOT_ALLOW_NETWORKS`: the networks what was registered through the API may resolve
/// into besides public ones (comma-separated CIDRs), at registration, scans and verification.
pub fn address_policy() -> Result<certpilot_core::policy::address::AddressPolicy, ConfigError> {
    const NAME: &str = "CERTPILOT_ALLOW_NETWORKS";
    let allowed = var(NAME)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| {
                    n.parse::<certpilot_core::policy::address::Network>()
                        .map_err(|reason| ConfigError { name: NAME, reason })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(certpilot_core::policy::address::AddressPolicy { allowed })
}

#[cfg(test)]
mod sqs_tests {
    use super::is_sqs;

    #[test]
    fn sqs_events_are_told_from_ticks() {
        let sqs = serde_json::json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]});
        assert!(is_sqs(&sqs));
        assert!(!is_sqs(
            &serde_json::json!({"detail-type": "Scheduled Event"})
        ));
        assert!(!is_sqs(
            &serde_json::json!({"Records": [{"eventSource": "aws:s3"}]})
        ));
    }
}

/// The `errorType` a function reports for a failure of `class`: `Retryable` when running the
/// same event again can help, `InvalidEvent` when the event itself was at fault,
/// `NonRetryable` when a person must act.
pub fn error_type(class: certpilot_core::ErrorClass) -> &'static str {
    match class {
        certpilot_core::ErrorClass::Retryable => "Retryable",
        certpilot_core::ErrorClass::Input => "InvalidEvent",
        certpilot_core::ErrorClass::Permanent => "NonRetryable",
    }
}

/// The deployment's own channels, from the functions' settings: `CERTPILOT_ALERTS_TOPIC_ARN`
/// (the alerts topic, named `alerts-topic`) and `CERTPILOT_EVENT_BUS` (named `event-bus`).
/// Both take every finding (severity `info` and up): subscribers filter on the topic, rules
/// on the bus.
pub fn alert_channels() -> Result<Vec<certpilot_core::model::channel::Channel>, ConfigError> {
    use certpilot_core::model::channel::{Channel, ChannelKind, check_event_bus, check_topic_arn};
    let every = |name: &str, kind: ChannelKind| Channel {
        name: name.to_owned(),
        kind,
        min_severity: certpilot_core::model::finding::Severity::Info,
        kinds: Vec::new(),
        matches: std::collections::BTreeMap::new(),
    };
    let mut channels = Vec::new();
    if let Some(arn) = var(ALERTS_TOPIC) {
        check_topic_arn(&arn).map_err(|reason| ConfigError {
            name: ALERTS_TOPIC,
            reason: format!("{arn:?} {reason}"),
        })?;
        channels.push(every(
            ALERTS_TOPIC_CHANNEL,
            ChannelKind::Sns { topic_arn: arn },
        ));
    }
    if let Some(bus) = var(EVENT_BUS) {
        check_event_bus(&bus).map_err(|reason| ConfigError {
            name: EVENT_BUS,
            reason: format!("{bus:?} {reason}"),
        })?;
        channels.push(every(EVENT_BUS_CHANNEL, ChannelKind::EventBridge { bus }));
    }
    Ok(channels)
}

/// The setting naming the alerts topic.
pub const ALERTS_TOPIC: &str = "CERTPILOT_ALERTS_TOPIC_ARN";
/// The setting naming the event bus.
pub const EVENT_BUS: &str = "CERTPILOT_EVENT_BUS";
/// The alerts topic's channel name.
pub const ALERTS_TOPIC_CHANNEL: &str = "alerts-topic";
/// The event bus's channel name.
pub const EVENT_BUS_CHANNEL: &str = "event-bus";

/// A run's metrics as one CloudWatch EMF line on standard output (where Lambda's log
/// collector finds it), under the dimension `Function`. With `completed`, the line carries
/// `RunCompleted` = 1: the heartbeat the template's alarms expect once per schedule period
/// (missing data is breaching, so a scheduler that stops is an alarm).
pub fn emit_run_metrics(function: &str, metrics: &[(&str, &str, f64)], completed: bool) {
    let mut all = metrics.to_vec();
    if completed {
        all.push(("RunCompleted", "Count", 1.0));
    }
    print!(
        "{}",
        run_metrics_line(time::OffsetDateTime::now_utc(), function, &all)
    );
}

/// The EMF line of [`emit_run_metrics`].
pub fn run_metrics_line(
    now: time::OffsetDateTime,
    function: &str,
    metrics: &[(&str, &str, f64)],
) -> String {
    certpilot_core::services::metrics::emf_line(
        now,
        &[("Function", function)],
        metrics,
        serde_json::Value::Null,
    )
}

/// Estate metrics (EMF lines from [`certpilot_core::services::metrics::emf`]) on standard
/// output.
pub fn emit_emf(lines: &str) {
    print!("{lines}");
}

#[cfg(test)]
mod emf_tests {
    use super::run_metrics_line;

    #[test]
    fn a_run_line_is_emf_with_the_function_dimension() {
        let now = time::macros::datetime!(2026-12-05 10:00 UTC);
        let line = run_metrics_line(
            now,
            "scan",
            &[
                ("ScanFailures", "Count", 2.0),
                ("RunCompleted", "Count", 1.0),
            ],
        );
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["Function"], "scan");
        assert_eq!(v["ScanFailures"], 2.0);
        assert_eq!(v["RunCompleted"], 1.0);
        let aws = &v["_aws"];
        assert_eq!(aws["Timestamp"], 1_796_464_800_000_i64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "certpilot");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Function"]]));
        assert_eq!(directive["Metrics"][1]["Name"], "RunCompleted");
        assert_eq!(directive["Metrics"][1]["Unit"], "Count");
    }
}
