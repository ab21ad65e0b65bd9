//! `certpilot channels`: where findings are sent, and which each channel takes.

use std::collections::BTreeMap;
use std::process::ExitCode;

use certpilot_app::App;
use certpilot_core::model::channel::{
    Channel, ChannelKind, check_channel_name, check_event_bus, check_topic_arn,
};
use certpilot_core::model::finding::{Severity, Transition};
use certpilot_core::parse_tag;
use certpilot_core::ports::{Notification, SecretValue, StoreError};
use serde_json::json;

use crate::args::{ChannelAddArgs, ChannelsCommand};
use crate::error::{CliError, usage};
use crate::output::{format_or_default, write_records};

/// Runs `certpilot channels …`.
pub async fn channels(app: &App, cmd: ChannelsCommand) -> Result<ExitCode, CliError> {
    match cmd {
        ChannelsCommand::Add(args) => add(app, *args).await,
        ChannelsCommand::List { format } => {
            let all = app.channels().channels().await?;
            if all.is_empty() {
                eprintln!(
                    "no channels: findings are only printed; `certpilot channels add` sends them to Slack, a webhook, SNS or EventBridge"
                );
            }
            write_records(
                format_or_default(format),
                &[
                    "name",
                    "type",
                    "destination",
                    "min_severity",
                    "kinds",
                    "match",
                ],
                all.iter().map(|c| {
                    let kinds: Vec<&str> = c.kinds.iter().map(|k| k.as_str()).collect();
                    let matches: Vec<String> =
                        c.matches.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    (
                        vec![
                            c.name.clone(),
                            c.kind.as_str().to_owned(),
                            destination(c),
                            c.min_severity.as_str().to_owned(),
                            if kinds.is_empty() {
                                "any".to_owned()
                            } else {
                                kinds.join(",")
                            },
                            matches.join(","),
                        ],
                        json!({
                            "name": c.name,
                            "type": c.kind.as_str(),
                            "destination": destination(c),
                            "min_severity": c.min_severity,
                            "kinds": c.kinds,
                            "match": c.matches,
                        }),
                    )
                }),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        ChannelsCommand::Remove { name } => {
            let removed = app.channels().remove_channel(&name).await?;
            let secret = Channel::secret_name_of(&name);
            // The secret goes too, even when the record was already gone (a half-done add).
            let had_secret = app.secrets().delete(&secret).await?;
            if !removed {
                return Err(usage(format!(
                    "no channel {name:?}; `certpilot channels list` shows them"
                )));
            }
            if had_secret {
                eprintln!("removed channel {name} and its secret");
            } else {
                eprintln!("removed channel {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ChannelsCommand::Test { name } => test(app, &name).await,
    }
}

/// What may be shown of where a channel posts: never a Slack URL (it is the secret), a
/// webhook's scheme and host only.
fn destination(c: &Channel) -> String {
    match &c.kind {
        ChannelKind::Slack => "Slack incoming webhook".into(),
        ChannelKind::Webhook { url } => certpilot_notify::shown_url(url),
        ChannelKind::Sns { topic_arn } => format!("SNS {topic_arn}"),
        ChannelKind::EventBridge { bus } => format!("EventBridge bus {bus}"),
    }
}

async fn add(app: &App, args: ChannelAddArgs) -> Result<ExitCode, CliError> {
    check_channel_name(&args.name).map_err(|e| usage(e.to_string()))?;
    let min_severity = Severity::parse(&args.min_severity).ok_or_else(|| {
        usage(format!(
            "--min-severity {:?}: info, warning or critical",
            args.min_severity
        ))
    })?;
    let kinds = super::findings::parse_kinds(&args.kind)?;
    let matches = args
        .matches
        .iter()
        .map(|t| parse_tag(t).map_err(|e| usage(format!("--match {t:?}: {e}"))))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let (kind, secret) = match (
        &args.slack_webhook_file,
        &args.webhook,
        &args.sns_topic,
        &args.eventbridge_bus,
    ) {
        (Some(file), None, None, None) => {
            (ChannelKind::Slack, Some(("--slack-webhook-file", file)))
        }
        (None, Some(url), None, None) => {
            certpilot_notify::check_url(url)
                .map_err(|e| usage(format!("--webhook {url:?}: {e}")))?;
            let file = args
                .secret_file
                .as_ref()
                .ok_or_else(|| usage("--webhook needs --secret-file"))?;
            (
                ChannelKind::Webhook { url: url.clone() },
                Some(("--secret-file", file)),
            )
        }
        (None, None, Some(arn), None) => {
            check_topic_arn(arn).map_err(|e| usage(format!("--sns-topic {arn:?} {e}")))?;
            (
                ChannelKind::Sns {
                    topic_arn: arn.clone(),
                },
                None,
            )
        }
        (None, None, None, Some(bus)) => {
            check_event_bus(bus).map_err(|e| usage(format!("--eventbridge-bus {bus:?} {e}")))?;
            (ChannelKind::EventBridge { bus: bus.clone() }, None)
        }
        _ => {
            return Err(usage(
                "give one of --slack-webhook-file, --webhook with --secret-file, --sns-topic or --eventbridge-bus",
            ));
        }
    };
    let secret = match secret {
        Some((flag, file)) => {
            let secret = crate::context::read_secret_file(flag, file)?;
            certpilot_notify::check_secret(&kind, &secret)
                .map_err(|e| usage(format!("{flag} {}: {e}", file.display())))?;
            Some(secret)
        }
        None => None,
    };
    let channel = Channel {
        name: args.name.clone(),
        kind,
        min_severity,
        kinds,
        matches,
    };
    let exists = || {
        usage(format!(
            "channel {:?} exists; `certpilot channels remove {}` first to replace it",
            channel.name, channel.name
        ))
    };
    if app
        .channels()
        .channels()
        .await?
        .iter()
        .any(|c| c.name == channel.name)
    {
        return Err(exists());
    }
    // The secret first: a channel record never exists without what it needs to send.
    if let Some(secret) = secret {
        app.secrets()
            .put_current(
                &channel.secret_name(),
                &SecretValue::new(secret.into_bytes()),
            )
            .await?;
    }
    match app.channels().add_channel(&channel).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists { .. }) => return Err(exists()),
        Err(e) => return Err(e.into()),
    }
    eprintln!(
        "added channel {} ({}); `certpilot channels test {}` sends a sample",
        channel.name,
        destination(&channel),
        channel.name
    );
    Ok(ExitCode::SUCCESS)
}

async fn test(app: &App, name: &str) -> Result<ExitCode, CliError> {
    let channel = app
        .channels()
        .channels()
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            usage(format!(
                "no channel {name:?}; `certpilot channels list` shows them"
            ))
        })?;
    let notifiers = app.notifiers().await?;
    let notifier = notifiers
        .iter()
        .find(|n| n.name() == name)
        .ok_or_else(|| usage(format!("no channel {name:?}")))?;
    let now = app.clock().now();
    let sample = certpilot_notify::sample(&channel, now);
    let message = Notification {
        transition: Transition::Opened,
        finding: &sample,
        now,
    };
    match notifier.notify(message).await {
        Ok(()) => {
            eprintln!("channel {name} took the sample message");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(CliError::Notify(e)),
    }
}
