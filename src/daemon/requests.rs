//! Requests between capabilities, in the daemon's shared layer: the audit capability asks for an
//! accounts sync when a session failed because its Run As user does not exist, without either
//! capability importing the other. Requests live in memory: after a restart the daemon syncs at
//! once anyway (its first sync follows the splay).

use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// A sync asked for: the user a session needed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncRequest {
    /// The OS user the session asked for.
    pub user: String,
    /// Why, for the log (`session <id> of <principal> failed: …`).
    pub why: String,
}

/// The pending requests and the wake-up of the capability that serves them.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    pending: Mutex<Vec<SyncRequest>>,
    notify: Notify,
}

impl Requests {
    /// Asks the accounts capability for a sync.
    pub(crate) fn account_sync(&self, r: SyncRequest) {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded: one request per user is enough.
        if !p.iter().any(|x| x.user == r.user) && p.len() < 100 {
            p.push(r);
        }
        drop(p);
        self.notify.notify_one();
    }

    /// The requests made since the last call.
    pub(crate) fn take(&self) -> Vec<SyncRequest> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Resolves when a request was made (at once if one was made since the last wait).
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_wakes_the_waiter_once_per_user() {
        let r = Requests::default();
        let req = |u: &str| SyncRequest {
            user: u.into(),
            why: "test".into(),
        };
        r.account_sync(req("erin"));
        r.account_sync(req("erin"));
        r.account_sync(req("frank"));
        // The permit stored by notify_one: no wait.
        r.wait().await;
        assert_eq!(r.take(), [req("erin"), req("frank")]);
        assert!(r.take().is_empty());
    }
}
