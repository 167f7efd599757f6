//! CloudWatch Logs: the audit sink's stream and its batches. `PutLogEvents` has no idempotency
//! key (sequence tokens are gone), so a batch sent again after a crash is stored again: the
//! sink is at least once, and `metadata.uid` tells a reader the repeats.

use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use super::fault::{CallError, Fault};

/// One log event: the event's time (ms since the epoch) and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The message.
    pub message: String,
}

/// Creates the stream in the group; one that exists already is what we want.
pub async fn ensure_stream(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
) -> Result<(), CallError> {
    match client
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = CallError::from_sdk(&e);
            match &err.fault {
                Fault::Aws { code, .. } if code == "ResourceAlreadyExistsException" => Ok(()),
                _ => Err(err),
            }
        }
    }
}

/// Sends `events` (in time order, within the call's limits) to the stream. The events
/// CloudWatch refused for their time (too old, too new, past the group's retention) are
/// counted in the answer: sending them again would not help.
pub async fn put(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    events: &[LogEvent],
) -> Result<usize, CallError> {
    let mut req = client
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(stream);
    for e in events {
        let ev = InputLogEvent::builder()
            .timestamp(e.timestamp)
            .message(e.message.clone())
            .build()
            .map_err(|b| CallError {
                fault: Fault::Other,
                message: format!("a log event could not be built: {b}"),
            })?;
        req = req.log_events(ev);
    }
    match req.send().await {
        Ok(out) => Ok(out.rejected_log_events_info().map_or(0, |r| {
            // Indexes: events before `too_old_end` and `expired_end`, and from `too_new_start`.
            let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
            let old = i64::from(r.too_old_log_event_end_index().unwrap_or(0))
                .max(i64::from(r.expired_log_event_end_index().unwrap_or(0)));
            let new = r
                .too_new_log_event_start_index()
                .map_or(0, |s| n - i64::from(s));
            usize::try_from((old + new).clamp(0, n)).unwrap_or(0)
        })),
        Err(e) => Err(CallError::from_sdk(&e)),
    }
}
