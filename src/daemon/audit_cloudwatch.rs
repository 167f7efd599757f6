//! The CloudWatch Logs sink: the spool's events (alerts, or all) to a stream per instance, for
//! metric filters and alarms (see [`crate::audit::cloudwatch`] for the calls and the cursor).
//!
//! One task beside the audit loop and the S3 shipper, started when
//! `audit.cloudwatch.log_group` is set, with the same link: it is told how far the spool is
//! durable and when an alert was spooled, and says how far it has sent (the loop deletes a
//! segment once every sink is past it). An alert goes at once, other events within
//! `audit.cloudwatch.max_delay`. Failures are retried for ever with the shipper's backoff, from
//! the call that failed; after a crash the batch in flight is sent again whole (at least once).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::time::Instant;

use super::audit_ship::{
    self, Done, Failure, Link, MAX_BACKOFF, MIN_BACKOFF, Marks, backoff, now_ms, retry_after, wait,
};
use crate::audit::cloudwatch::{self, Cursor};
use crate::audit::{ocsf, ship};
use crate::aws::fault::{CallError, Fault};
use crate::aws::logs;
use crate::config::Settings;
use crate::state::shipping_status::CLOUDWATCH_FILE;

/// A batch read from the spool at most this big (its calls are cut to the API's limits).
const BATCH_BYTES: usize = 4 << 20;

impl From<&Cursor> for Done {
    fn from(c: &Cursor) -> Self {
        Done {
            shipped_seq: c.sent_seq,
            objects: c.calls,
            bytes: c.bytes,
            last_upload_ms: c.last_put_ms,
        }
    }
}

/// A failure retrying will not fix: permissions, a missing log group, bad credentials.
fn needs_operator(f: &Fault) -> bool {
    f.is_access_denied()
        || matches!(f, Fault::Aws { code, .. } if [
            "ResourceNotFoundException",
            "UnrecognizedClientException",
            "InvalidParameterException",
        ].contains(&code.as_str()))
}

/// Why a call failed, for the operator.
fn explain(e: &CallError, group: &str) -> String {
    match &e.fault {
        f if f.is_access_denied() => format!(
            "CloudWatch Logs refused the log group `{group}` (AccessDenied): grant logs:CreateLogStream and logs:PutLogEvents on it (`ssm-companion iam-policy` prints the statement); retrying"
        ),
        Fault::Aws { code, .. } if code == "ResourceNotFoundException" => format!(
            "log group `{group}` does not exist (ResourceNotFoundException): create it (`aws logs create-log-group --log-group-name {group}`) or fix audit.cloudwatch.log_group; retrying"
        ),
        f => format!(
            "sending to log group `{group}` failed ({}): {e}; retrying",
            f.label()
        ),
    }
}

/// The cursor (see [`Cursor::begin`]); a disk that fails is retried in the async loop (a stop
/// aborts the wait).
async fn load_cursor(dir: &std::path::Path, group: &str, region: &str, start: u64) -> Cursor {
    let mut wait = MIN_BACKOFF;
    loop {
        let (d, g, r) = (dir.to_path_buf(), group.to_string(), region.to_string());
        match tokio::task::spawn_blocking(move || Cursor::begin(&d, &g, &r, start)).await {
            Ok(Ok((c, None))) => return c,
            Ok(Ok((c, Some(why)))) => {
                tracing::info!(
                    "audit: the CloudWatch Logs sink to `{group}` starts after seq {} ({why})",
                    c.sent_seq
                );
                return c;
            }
            Ok(Err(e)) => {
                tracing::error!("audit: cannot read the CloudWatch cursor ({e}); retrying")
            }
            Err(e) => {
                tracing::error!("audit: reading the CloudWatch cursor failed ({e}); retrying")
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

/// Writes the cursor on the blocking pool; false (and logged) when it could not be written.
async fn save(dir: &std::path::Path, cursor: &Cursor) -> bool {
    let dir = dir.to_path_buf();
    let c = cursor.clone();
    match tokio::task::spawn_blocking(move || c.save(&dir)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!("audit: cannot write the CloudWatch cursor: {e}");
            false
        }
        Err(_) => false,
    }
}

/// The sink (see the module docs). `start`: the spool's durable end before this run appended
/// anything (a new cursor starts there). Runs until aborted: a stop anywhere at worst sends
/// the batch in flight again.
pub(super) async fn run(
    settings: Arc<Settings>,
    spool_dir: PathBuf,
    device: ocsf::Device,
    aws: Arc<crate::aws::Aws>,
    clock: Arc<dyn crate::clock::Clock>,
    start: u64,
    mut link: Link,
) {
    let conf = settings.audit.cloudwatch.clone();
    let group = conf.log_group.clone();
    let state_dir = settings.paths.state_dir.clone();
    let mut cursor = load_cursor(&spool_dir, &group, &conf.region, start).await;
    let durable = *link.durable.borrow();
    let _ = link.shipped.send(cursor.sent_seq);
    let stream = cloudwatch::stream_name(
        device
            .instance_uid
            .as_deref()
            .or(device.hostname.as_deref())
            .unwrap_or_default(),
    );
    let destination = format!("cloudwatch://{group}/{stream}");
    let mut marks = Marks(VecDeque::new());
    let mut failure: Option<Failure> = None;
    let publish = |cursor: &Cursor, durable: u64, marks: &Marks, failure: &Option<Failure>| {
        let st = audit_ship::status(cursor, &destination, durable, marks, failure, clock.now());
        audit_ship::publish_as(&state_dir, CLOUDWATCH_FILE, st)
    };
    // What the last status said waited since when: a status saying records wait is written
    // again after each batch, so it never keeps an old wait once they were sent.
    let mut published_wait = marks.oldest();
    let Some(sdk) = aws.sdk().cloned() else {
        let why = aws
            .sdk
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::error!("audit: cannot send to CloudWatch Logs: {why}");
        let _ = link.state.send(format!("cloudwatch unavailable: {why}"));
        let failure = Some(Failure {
            why: format!("no AWS configuration to send with: {why}"),
            cause: "config".into(),
            needs_operator: true,
        });
        publish(&cursor, durable, &marks, &failure).await;
        return;
    };
    let client = crate::aws::clients::logs(&crate::aws::in_region(sdk, &conf.region));
    let mut stream_ready = false;
    let mut waiting_since: Option<Instant> = None;
    let mut attempt = 0u32;
    let mut last_error = String::new();
    let _ = link
        .state
        .send(format!("cloudwatch sent through seq {}", cursor.sent_seq));
    publish(&cursor, durable, &marks, &failure).await;
    // A batch whose calls did not all succeed: retried from the call that failed, so the
    // calls before it are not stored again.
    let mut pending: Option<Pending> = None;
    loop {
        let durable = *link.durable.borrow_and_update();
        marks.note(durable, cursor.sent_seq, clock.now());
        let p = match pending.take() {
            Some(p) => p,
            None => {
                if durable <= cursor.sent_seq {
                    waiting_since = None;
                    wait(&mut link, None).await;
                    continue;
                }
                let dir = spool_dir.clone();
                let (sent, dev) = (cursor.sent_seq, device.clone());
                let found = tokio::task::spawn_blocking(move || {
                    ship::next_batch(&dir, sent, durable, BATCH_BYTES, &dev)
                })
                .await;
                let batch = match found {
                    Ok(Ok(Some(b))) => b,
                    Ok(Ok(None)) => {
                        waiting_since = None;
                        wait(&mut link, None).await;
                        continue;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(
                            "audit: cannot read the spool to send it to CloudWatch: {e}"
                        );
                        let _ = link.state.send(format!("cloudwatch error: {e}"));
                        retry_after(&spool_dir, backoff(attempt)).await;
                        attempt = attempt.saturating_add(1);
                        continue;
                    }
                    Err(_) => return,
                };
                let calls = cloudwatch::calls(&batch.lines, conf.events, now_ms(clock.as_ref()));
                if !calls.calls.is_empty() {
                    // Alerts go at once; the rest waits up to max_delay to share calls.
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    let due = since + conf.max_delay;
                    if !(batch.sealed || batch.alert || Instant::now() >= due) {
                        wait(&mut link, Some(due)).await;
                        continue;
                    }
                }
                if calls.out_of_range > 0 || calls.cut > 0 {
                    tracing::warn!(
                        "audit: seq {}-{}: {} event(s) left out of CloudWatch Logs for their time (over 14 days old or 2 hours ahead), {} cut to 256 KiB; S3 has them whole",
                        batch.first,
                        batch.last,
                        calls.out_of_range,
                        calls.cut
                    );
                }
                Pending {
                    first: batch.first,
                    last: batch.last,
                    last_uid: batch.lines.last().and_then(|l| ship::uid_of(l)),
                    calls: calls.calls,
                    done: 0,
                    refused: 0,
                }
            }
        };
        let mut p = p;
        let mut result = Ok(());
        if p.done < p.calls.len() && !stream_ready {
            result = logs::ensure_stream(&client, &group, &stream).await;
            stream_ready = result.is_ok();
        }
        let mut stream_gone = false;
        while result.is_ok() && p.done < p.calls.len() {
            match logs::put(&client, &group, &stream, &p.calls[p.done]).await {
                Ok(n) => {
                    p.refused += n;
                    p.done += 1;
                }
                Err(e) => {
                    // The stream went away after it was made: made again at the next try.
                    stream_gone = matches!(&e.fault, Fault::Aws { code, .. } if code == "ResourceNotFoundException");
                    result = Err(e);
                }
            }
        }
        match result {
            Ok(()) => {
                let events: usize = p.calls.iter().map(Vec::len).sum();
                if p.refused > 0 {
                    tracing::warn!(
                        "audit: CloudWatch Logs refused {} event(s) of seq {}-{} for their time (older than the group's retention?); S3 has them",
                        p.refused,
                        p.first,
                        p.last
                    );
                }
                cursor.sent_seq = p.last;
                cursor.last_uid.clone_from(&p.last_uid);
                if events > 0 {
                    cursor.events += (events - p.refused.min(events)) as u64;
                    cursor.calls += p.calls.len() as u64;
                    cursor.bytes += p
                        .calls
                        .iter()
                        .flatten()
                        .map(|e| e.message.len() as u64)
                        .sum::<u64>();
                    cursor.last_put_ms = Some(now_ms(clock.as_ref()));
                    tracing::info!(
                        "audit: sent {events} event(s) of seq {}-{} to CloudWatch Logs {group}/{stream}",
                        p.first,
                        p.last
                    );
                }
                // Not written: sent again after a restart (at least once).
                save(&spool_dir, &cursor).await;
                let _ = link.shipped.send(cursor.sent_seq);
                let _ = link
                    .state
                    .send(format!("cloudwatch sent through seq {}", cursor.sent_seq));
                attempt = 0;
                last_error.clear();
                waiting_since = None;
                marks.shipped(cursor.sent_seq);
                if failure.take().is_some() || events > 0 || published_wait.is_some() {
                    publish(&cursor, durable, &marks, &failure).await;
                    published_wait = marks.oldest();
                }
            }
            Err(e) => {
                let (why, operator) = if stream_gone && stream_ready {
                    (
                        format!(
                            "log stream `{stream}` of `{group}` was not found (deleted?): made again at the next try"
                        ),
                        false,
                    )
                } else {
                    (explain(&e, &group), needs_operator(&e.fault))
                };
                if stream_gone {
                    stream_ready = false;
                }
                if why != last_error {
                    tracing::warn!("audit: {why}");
                    last_error.clone_from(&why);
                    failure = Some(Failure {
                        why,
                        cause: e.fault.label(),
                        needs_operator: operator,
                    });
                    publish(&cursor, durable, &marks, &failure).await;
                    published_wait = marks.oldest();
                }
                let _ = link
                    .state
                    .send(format!("cloudwatch failing: {}", e.fault.label()));
                pending = Some(p);
                retry_after(&spool_dir, backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// A batch on its way: its range, its calls, and how many of them succeeded.
struct Pending {
    first: u64,
    last: u64,
    last_uid: Option<String>,
    calls: Vec<Vec<logs::LogEvent>>,
    done: usize,
    refused: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_an_operator_must_fix_are_told_apart() {
        let aws = |code: &str, status| Fault::Aws {
            code: code.into(),
            status,
        };
        for f in [
            aws("AccessDeniedException", 400),
            aws("ResourceNotFoundException", 400),
            aws("UnrecognizedClientException", 400),
        ] {
            assert!(needs_operator(&f), "{f:?}");
        }
        for f in [
            aws("ThrottlingException", 400),
            aws("ServiceUnavailableException", 503),
            Fault::Connect,
            Fault::Timeout,
        ] {
            assert!(!needs_operator(&f), "{f:?}");
        }
        let e = CallError {
            fault: aws("ResourceNotFoundException", 400),
            message: "The specified log group does not exist.".into(),
        };
        assert!(
            explain(&e, "/audit").contains("aws logs create-log-group --log-group-name /audit")
        );
    }
}
