//! The audit shipper: the spool's durable records to S3, each exactly once (see
//! [`crate::audit::ship`] for the batches, objects, keys and the ledger).
//!
//! One task beside the audit loop, started by it when `audit.s3.bucket` is set. The loop tells
//! it how far the spool is durable and when an alert was spooled; it tells the loop how far S3
//! has the records, and the loop then deletes the segments wholly shipped. A batch is shipped
//! when it is sealed (by size or by the next record's day), when it holds an alert, when
//! `audit flush` asks, or once its first record waited `audit.s3.max_delay`. An idle host
//! uploads nothing. Failures are retried for ever with a full-jitter backoff (1 s doubling to
//! 5 min), never skipping a batch and never blocking capture: the spool keeps growing up to
//! `audit.spool_max`, and then the sources pause.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::audit::ocsf;
use crate::audit::ship::{self, Intent, Ledger, Place};
use crate::aws::fault::CallError;
use crate::aws::s3::{self, Put, PutOptions};
use crate::config::Settings;
use crate::state::shipping_status::{self, ShippingStatus};

use crate::audit::ship::FLUSH_REQUEST;

/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
pub(super) const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often `audit flush`'s request is looked for while the shipper waits.
const FLUSH_POLL: Duration = Duration::from_secs(1);

/// What the audit loop and the shipper share.
pub(super) struct Link {
    /// The spool's durable sequence number (the loop writes it after each sync).
    pub durable: watch::Receiver<u64>,
    /// How far S3 has the records (the shipper writes it; the loop releases segments).
    pub shipped: watch::Sender<u64>,
    /// An alert was spooled and synced: ship now.
    pub alert: Arc<Notify>,
    /// The shipper's state in a few words, for the status line.
    pub state: watch::Sender<String>,
}

/// Full jitter: a uniform wait up to `base * 2^attempt`, at most [`MAX_BACKOFF`].
pub(super) fn backoff(attempt: u32) -> Duration {
    let cap = MIN_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    cap.mul_f64(fastrand::f64()).max(Duration::from_millis(100))
}

pub(super) fn now_ms(clock: &dyn crate::clock::Clock) -> i64 {
    crate::clock::epoch_ms(clock.now())
}

/// Why an upload failed, for the operator: the remedy for the failures that need one.
fn explain(e: &CallError, bucket: &str) -> String {
    let f = &e.fault;
    if f.is_access_denied() {
        format!(
            "S3 refused PutObject on bucket `{bucket}` (AccessDenied): grant s3:PutObject on the prefix (`ssm-companion iam-policy` prints the statement); retrying"
        )
    } else if matches!(f, crate::aws::fault::Fault::Aws { code, .. } if code == "NoSuchBucket") {
        format!(
            "bucket `{bucket}` does not exist (NoSuchBucket): create it or fix audit.s3.bucket; retrying"
        )
    } else {
        format!(
            "upload to bucket `{bucket}` failed ({}): {e}; retrying",
            f.label()
        )
    }
}

/// When the spool's durable end reached each value the shipper saw: the first mark past the
/// shipped end says how long the oldest unshipped record has waited (to within one wake-up).
pub(super) struct Marks(pub(super) VecDeque<(u64, SystemTime)>);

impl Marks {
    /// Enough for days of outage at one mark per wake-up; past it the last mark is stretched
    /// (its time kept: the waits it gives are then upper bounds, never lower ones).
    const CAP: usize = 4096;

    /// Notes that records through `durable` were there at `now`.
    pub(super) fn note(&mut self, durable: u64, shipped: u64, now: SystemTime) {
        if durable <= shipped || self.0.back().is_some_and(|(s, _)| *s >= durable) {
            return;
        }
        if self.0.len() >= Self::CAP
            && let Some(last) = self.0.back_mut()
        {
            last.0 = durable;
        } else {
            self.0.push_back((durable, now));
        }
    }

    /// Drops the marks S3 now has.
    pub(super) fn shipped(&mut self, shipped: u64) {
        while self.0.front().is_some_and(|(s, _)| *s <= shipped) {
            self.0.pop_front();
        }
    }

    /// When the oldest record not shipped was first seen durable.
    pub(super) fn oldest(&self) -> Option<SystemTime> {
        self.0.front().map(|(_, t)| *t)
    }
}

/// A failure retrying will not fix: permissions, a missing bucket or KMS key, the wrong region.
fn needs_operator(f: &crate::aws::fault::Fault) -> bool {
    f.is_access_denied()
        || matches!(f, crate::aws::fault::Fault::Aws { code, .. }
            if code.starts_with("KMS.") || [
                "NoSuchBucket",
                "InvalidAccessKeyId",
                "AllAccessDisabled",
                "InvalidBucketName",
                "PermanentRedirect",
                "AuthorizationHeaderMalformed",
                "InvalidArgument",
            ].contains(&code.as_str()))
}

/// The last upload failure, while it lasts.
pub(super) struct Failure {
    pub(super) why: String,
    pub(super) cause: String,
    pub(super) needs_operator: bool,
}

/// What a sink has done, for [`status`].
pub(super) struct Done {
    pub(super) shipped_seq: u64,
    pub(super) objects: u64,
    pub(super) bytes: u64,
    pub(super) last_upload_ms: Option<i64>,
}

impl From<&Ledger> for Done {
    fn from(l: &Ledger) -> Self {
        Done {
            shipped_seq: l.shipped_seq,
            objects: l.objects,
            bytes: l.bytes,
            last_upload_ms: l.last_upload_ms,
        }
    }
}

pub(super) fn status(
    done: impl Into<Done>,
    destination: &str,
    durable: u64,
    marks: &Marks,
    failure: &Option<Failure>,
    now: SystemTime,
) -> ShippingStatus {
    let done = done.into();
    ShippingStatus {
        at: now,
        destination: destination.to_string(),
        shipped_seq: done.shipped_seq,
        durable_seq: durable.max(done.shipped_seq),
        objects: done.objects,
        bytes: done.bytes,
        last_upload: done
            .last_upload_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        oldest_unshipped: marks.oldest(),
        error: failure.as_ref().map(|f| f.why.clone()),
        cause: failure.as_ref().map(|f| f.cause.clone()),
        needs_operator: failure.as_ref().is_some_and(|f| f.needs_operator),
    }
}

/// Writes the status for the health check (best effort: a full disk must not stop shipping).
async fn publish(state_dir: &std::path::Path, status: ShippingStatus) {
    publish_as(state_dir, shipping_status::FILE_NAME, status).await;
}

/// Writes a sink's status under `file` (best effort, as [`publish`]).
pub(super) async fn publish_as(
    state_dir: &std::path::Path,
    file: &'static str,
    status: ShippingStatus,
) {
    let dir = state_dir.to_path_buf();
    if let Ok(Err(e)) =
        tokio::task::spawn_blocking(move || shipping_status::save_as(&dir, file, &status)).await
    {
        tracing::debug!("audit: cannot write the status {file}: {e}");
    }
}

/// Loads the ledger; a damaged one is set aside and a new one started (objects already in S3
/// are then found there: 412, no duplicate — at the cost of a new spool id for new ones). An
/// I/O error is retried in the async loop (a stop aborts the wait): that ledger is never replaced.
async fn load_ledger(dir: &std::path::Path) -> Ledger {
    let mut wait = MIN_BACKOFF;
    loop {
        let d = dir.to_path_buf();
        match tokio::task::spawn_blocking(move || Ledger::load(&d)).await {
            Ok(Ok(l)) => return l,
            // Not a ledger (damaged by hand or by the disk): set aside, and a new one started.
            Ok(Err(e @ crate::state::LoadError::Invalid { .. })) => {
                let aside = dir.join(format!("{}.invalid", ship::LEDGER));
                let _ = std::fs::rename(dir.join(ship::LEDGER), &aside);
                tracing::error!(
                    "audit: the shipping ledger is not valid ({e}); kept as {}, a new one started: records still in the spool are shipped again under a new spool id",
                    aside.display()
                );
                return Ledger {
                    spool_id: format!("{:016x}", fastrand::u64(..)),
                    ..Ledger::default()
                };
            }
            // Cannot be read now (I/O): tried again, never replaced.
            Ok(Err(e)) => tracing::error!("audit: cannot read the shipping ledger ({e}); retrying"),
            Err(e) => tracing::error!("audit: reading the shipping ledger failed ({e}); retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

/// The sequence number `audit flush` asks for (the file's content), if it asks.
pub(super) fn flush_target(spool_dir: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(spool_dir.join(FLUSH_REQUEST))
        .ok()
        .map(|t| t.trim().parse().unwrap_or(u64::MAX))
}

/// The shipper (see the module docs). Runs until aborted: every state it needs is in the
/// ledger, so stopping it anywhere is safe.
pub(super) async fn run(
    settings: Arc<Settings>,
    spool_dir: PathBuf,
    device: ocsf::Device,
    cloud: Option<ocsf::Cloud>,
    aws: Arc<crate::aws::Aws>,
    clock: Arc<dyn crate::clock::Clock>,
    mut link: Link,
) {
    let s3conf = settings.audit.s3.clone();
    let mut ledger = load_ledger(&spool_dir).await;
    let durable = *link.durable.borrow();
    let dir = spool_dir.clone();
    let (at, want) = (ledger.shipped_seq, ledger.last_uid.clone());
    let renumbered = tokio::task::spawn_blocking(move || match (at, want) {
        (0, _) | (_, None) => false,
        (at, Some(want)) => ship::uid_at(&dir, at)
            .ok()
            .flatten()
            .is_some_and(|u| u != want),
    })
    .await
    .unwrap_or(false);
    if ledger.shipped_seq > durable || renumbered {
        // The spool holds fewer records than S3 has, or another record where the last one
        // shipped was (it was removed or restored from a backup): its sequence numbers are
        // used again, so its objects get a new spool id.
        tracing::error!(
            "audit: the shipping ledger says seq {} is in S3 but the spool ends at {durable} or holds another record there: shipping the spool again under a new spool id",
            ledger.shipped_seq
        );
        ledger = Ledger {
            spool_id: format!("{:016x}", fastrand::u64(..)),
            ..Ledger::default()
        };
        save(&spool_dir, &ledger).await;
    }
    let _ = link.shipped.send(ledger.shipped_seq);
    let state_dir = settings.paths.state_dir.clone();
    let destination = format!("s3://{}/{}", s3conf.bucket, s3conf.prefix);
    let mut marks = Marks(VecDeque::new());
    let mut failure: Option<Failure> = None;
    if durable > ledger.shipped_seq {
        // Records left from before the start: they have waited since the status says (when it
        // is about the same shipped end), else since now.
        let before = shipping_status::load(&state_dir)
            .ok()
            .flatten()
            .filter(|s| s.shipped_seq == ledger.shipped_seq)
            .and_then(|s| s.oldest_unshipped);
        marks
            .0
            .push_back((durable, before.unwrap_or_else(|| clock.now())));
    }
    let sdk = match aws.sdk() {
        Some(sdk) => sdk.clone(),
        None => {
            let why = aws
                .sdk
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            tracing::error!("audit: cannot ship to S3: {why}");
            let _ = link.state.send(format!("s3 unavailable: {why}"));
            let failure = Some(Failure {
                why: format!("no AWS configuration to ship with: {why}"),
                cause: "config".into(),
                needs_operator: true,
            });
            let st = status(
                &ledger,
                &destination,
                durable,
                &marks,
                &failure,
                clock.now(),
            );
            publish(&settings.paths.state_dir, st).await;
            return;
        }
    };
    let sdk = crate::aws::in_region(sdk, &s3conf.region);
    let client = crate::aws::clients::s3(&sdk);
    let place = Place {
        prefix: s3conf.prefix.clone(),
        account: cloud
            .as_ref()
            .and_then(|c| c.account.as_ref())
            .and_then(|a| a.uid.clone())
            .unwrap_or_default(),
        region: device
            .region
            .clone()
            .or_else(|| sdk.region().map(ToString::to_string))
            .unwrap_or_default(),
        instance: device
            .instance_uid
            .clone()
            .or_else(|| device.hostname.clone())
            .unwrap_or_default(),
    };
    let opts = PutOptions {
        sse: s3conf.sse.clone(),
        kms_key_id: s3conf.kms_key_id.clone(),
        bucket_owner_full_control: s3conf.bucket_owner_full_control,
    };
    let mut waiting_since: Option<Instant> = None;
    let mut attempt = 0u32;
    let mut last_error = String::new();
    let _ = link
        .state
        .send(format!("s3 shipped through seq {}", ledger.shipped_seq));
    let st = status(
        &ledger,
        &destination,
        durable,
        &marks,
        &failure,
        clock.now(),
    );
    publish(&state_dir, st).await;
    loop {
        let durable = *link.durable.borrow_and_update();
        let idle = marks.oldest().is_none();
        marks.note(durable, ledger.shipped_seq, clock.now());
        if idle && marks.oldest().is_some() {
            let st = status(
                &ledger,
                &destination,
                durable,
                &marks,
                &failure,
                clock.now(),
            );
            publish(&state_dir, st).await;
        }
        // `audit flush` asks for everything through its target: done once S3 has it.
        let flush = match flush_target(&spool_dir) {
            Some(target) if target <= ledger.shipped_seq => {
                let _ = std::fs::remove_file(spool_dir.join(FLUSH_REQUEST));
                false
            }
            Some(_) => true,
            None => false,
        };
        if ledger.intent.is_none() && durable <= ledger.shipped_seq {
            // Nothing new: no read of the spool.
            waiting_since = None;
            wait(&mut link, None).await;
            continue;
        }
        // The batch: an intent a crash left, else the next records.
        let dir = spool_dir.clone();
        let shipped = ledger.shipped_seq;
        let intent = ledger.intent.clone();
        let max = usize::try_from(s3conf.max_object_size).unwrap_or(usize::MAX);
        let dev = device.clone();
        let found = tokio::task::spawn_blocking(move || match &intent {
            Some(i) => ship::batch_of(
                &dir,
                i.after.unwrap_or(i.first.saturating_sub(1)),
                i.last,
                &dev,
            ),
            None => ship::next_batch(&dir, shipped, durable, max, &dev),
        })
        .await;
        let batch = match found {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!("audit: cannot read the spool to ship it: {e}");
                let _ = link.state.send(format!("s3 error: {e}"));
                retry_after(&spool_dir, backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
            Err(_) => return,
        };
        let Some(batch) = batch else {
            // Nothing to ship (an intent whose records were released: S3 has them).
            if ledger.intent.take().is_some() {
                save(&spool_dir, &ledger).await;
                continue;
            }
            waiting_since = None;
            wait(&mut link, None).await;
            continue;
        };
        let key = match &ledger.intent {
            Some(i) => i.key.clone(),
            None => {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                let due = since + s3conf.max_delay;
                if !(batch.sealed || batch.alert || flush || Instant::now() >= due) {
                    wait(&mut link, Some(due)).await;
                    continue;
                }
                let key = ship::key(
                    &place,
                    &batch.day,
                    batch.first,
                    batch.last,
                    &ledger.spool_id,
                );
                ledger.intent = Some(Intent {
                    after: Some(ledger.shipped_seq),
                    first: batch.first,
                    last: batch.last,
                    key: key.clone(),
                });
                // The intent is durable before the upload: a crash rebuilds this very object.
                if !save(&spool_dir, &ledger).await {
                    ledger.intent = None;
                    let _ = link
                        .state
                        .send("s3 failing: cannot write the shipping ledger".into());
                    retry_after(&spool_dir, backoff(attempt)).await;
                    attempt = attempt.saturating_add(1);
                    continue;
                }
                key
            }
        };
        let body = ship::object(&batch.lines);
        let len = body.len() as u64;
        match s3::put_if_absent(&client, &s3conf.bucket, &key, body, &opts).await {
            Ok(put) => {
                ledger.shipped_seq = batch.last;
                ledger.intent = None;
                ledger.objects += 1;
                ledger.bytes += len;
                ledger.last_key = Some(key.clone());
                ledger.last_upload_ms = Some(now_ms(clock.as_ref()));
                ledger.last_error = None;
                ledger.last_uid = batch.lines.last().and_then(|l| ship::uid_of(l));
                if !save(&spool_dir, &ledger).await {
                    // Shipped but not noted: the next attempt finds it there (412).
                    let _ = link
                        .state
                        .send("s3 failing: cannot write the shipping ledger".into());
                    continue;
                }
                tracing::info!(
                    "audit: shipped seq {}-{} to s3://{}/{key}{}",
                    batch.first,
                    batch.last,
                    s3conf.bucket,
                    if put == Put::AlreadyThere {
                        " (already there)"
                    } else {
                        ""
                    }
                );
                let _ = link.shipped.send(ledger.shipped_seq);
                let _ = link
                    .state
                    .send(format!("s3 shipped through seq {}", ledger.shipped_seq));
                attempt = 0;
                last_error.clear();
                waiting_since = None;
                marks.shipped(ledger.shipped_seq);
                failure = None;
                let st = status(
                    &ledger,
                    &destination,
                    durable,
                    &marks,
                    &failure,
                    clock.now(),
                );
                publish(&state_dir, st).await;
            }
            Err(e) => {
                let why = explain(&e, &s3conf.bucket);
                if why != last_error {
                    tracing::warn!("audit: {why}");
                    last_error.clone_from(&why);
                    ledger.last_error = Some(why.clone());
                    save(&spool_dir, &ledger).await;
                    failure = Some(Failure {
                        why,
                        cause: e.fault.label(),
                        needs_operator: needs_operator(&e.fault),
                    });
                    let st = status(
                        &ledger,
                        &destination,
                        durable,
                        &marks,
                        &failure,
                        clock.now(),
                    );
                    publish(&state_dir, st).await;
                }
                let _ = link.state.send(format!("s3 failing: {}", e.fault.label()));
                retry_after(&spool_dir, backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Writes the ledger on the blocking pool; false (and logged) when it could not be written.
async fn save(dir: &std::path::Path, ledger: &Ledger) -> bool {
    let dir = dir.to_path_buf();
    let l = ledger.clone();
    match tokio::task::spawn_blocking(move || l.save(&dir)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!("audit: cannot write the shipping ledger: {e}");
            false
        }
        Err(_) => false,
    }
}

/// Waits out a backoff after a failure; a new `audit flush` request ends it early (one try at
/// once, not a retry every second while the request stands).
pub(super) async fn retry_after(spool_dir: &std::path::Path, wait: Duration) {
    let asked = flush_target(spool_dir);
    let until = Instant::now() + wait;
    while Instant::now() < until {
        tokio::time::sleep_until(until.min(Instant::now() + FLUSH_POLL)).await;
        let now = flush_target(spool_dir);
        if now.is_some() && now != asked {
            return;
        }
    }
}

/// Waits for more durable records, an alert, `until`, or the next look for `audit flush`.
pub(super) async fn wait(link: &mut Link, until: Option<Instant>) {
    let poll = Instant::now() + FLUSH_POLL;
    let until = until.map_or(poll, |u| u.min(poll));
    tokio::select! {
        changed = link.durable.changed() => {
            // The loop is gone (it aborts this task next): do not spin.
            if changed.is_err() {
                tokio::time::sleep_until(until).await;
            }
        }
        () = link.alert.notified() => {}
        () = tokio::time::sleep_until(until) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_give_the_wait_of_the_oldest_unshipped_record() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut m = Marks(VecDeque::new());
        m.note(0, 0, at(0));
        assert_eq!(m.oldest(), None, "nothing durable past the shipped end");
        m.note(5, 0, at(1));
        m.note(5, 0, at(2));
        m.note(9, 0, at(3));
        assert_eq!(m.oldest(), Some(at(1)));
        m.shipped(5);
        assert_eq!(
            m.oldest(),
            Some(at(3)),
            "records 6-9 arrived by the second mark"
        );
        m.shipped(9);
        assert_eq!(m.oldest(), None);
        // Full: the last mark stretches and keeps its time (waits are never understated).
        for i in 0..Marks::CAP as u64 + 10 {
            m.note(100 + i, 9, at(10 + i));
        }
        assert_eq!(m.0.len(), Marks::CAP);
        assert_eq!(m.0.back().map(|b| b.0), Some(100 + Marks::CAP as u64 + 9));
        m.shipped(100 + Marks::CAP as u64 - 2);
        assert_eq!(m.oldest(), Some(at(10 + Marks::CAP as u64 - 1)));
    }

    #[test]
    fn failures_an_operator_must_fix_are_told_apart() {
        use crate::aws::fault::Fault;
        let aws = |code: &str, status| Fault::Aws {
            code: code.into(),
            status,
        };
        for f in [
            aws("AccessDenied", 403),
            aws("NoSuchBucket", 404),
            aws("KMS.NotFoundException", 400),
            aws("InvalidAccessKeyId", 403),
            aws("PermanentRedirect", 301),
        ] {
            assert!(needs_operator(&f), "{f:?}");
        }
        for f in [
            aws("SlowDown", 503),
            aws("InternalError", 500),
            Fault::Connect,
            Fault::Timeout,
            Fault::NoCredentials,
            aws("ExpiredToken", 400),
        ] {
            assert!(!needs_operator(&f), "{f:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_flush_request_ends_a_backoff_early_and_a_standing_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        retry_after(dir.path(), Duration::from_secs(60)).await;
        assert!(t.elapsed() >= Duration::from_secs(60));
        // A request standing from before the wait does not shorten it…
        std::fs::write(dir.path().join(FLUSH_REQUEST), "7").unwrap();
        let t = Instant::now();
        retry_after(dir.path(), Duration::from_secs(60)).await;
        assert!(t.elapsed() >= Duration::from_secs(60));
        // …a new one does.
        let d = dir.path().to_path_buf();
        let asker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            std::fs::write(d.join(FLUSH_REQUEST), "9").unwrap();
        });
        let t = Instant::now();
        retry_after(dir.path(), Duration::from_secs(60)).await;
        asker.await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn an_invalid_ledger_is_set_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ship::LEDGER), "{not json").unwrap();
        let l = load_ledger(dir.path()).await;
        assert_eq!(l.shipped_seq, 0);
        assert_eq!(l.spool_id.len(), 16);
        let aside = dir.path().join(format!("{}.invalid", ship::LEDGER));
        assert_eq!(std::fs::read_to_string(aside).unwrap(), "{not json");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_ledger_is_retried_not_replaced_and_a_stop_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: every read fails with an I/O error.
        std::fs::create_dir(dir.path().join(ship::LEDGER)).unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(600), load_ledger(dir.path())).await;
        assert!(waited.is_err(), "an unreadable ledger must not be replaced");
        assert!(dir.path().join(ship::LEDGER).is_dir());
        assert!(
            !dir.path()
                .join(format!("{}.invalid", ship::LEDGER))
                .exists()
        );
    }
}
