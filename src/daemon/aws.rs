//! One AWS plumbing per daemon ([`Aws`]: the instance identity and the SDK configuration),
//! shared by every capability loop, so a host makes one IMDS identity read and one credential
//! chain however many capabilities run.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::aws::Aws;
use crate::config::{AwsSettings, Settings};

/// The daemon's [`Aws`], loaded on first use and again when needed.
#[derive(Default)]
pub(crate) struct SharedAws {
    current: Mutex<Option<(AwsSettings, Arc<Aws>)>>,
}

impl SharedAws {
    /// The [`Aws`] for `settings`: loaded on first use; loaded again when the `[aws]` settings
    /// changed (a reload), and when the last load lacked the instance identity or an SDK
    /// configuration (IMDS not up yet at boot, a network blip), so one bad start does not
    /// leave the daemon without them for good. Concurrent callers wait for one load.
    pub(crate) async fn get(&self, settings: &Settings) -> Arc<Aws> {
        let mut current = self.current.lock().await;
        if let Some((loaded_for, aws)) = current.as_ref()
            && *loaded_for == settings.aws
            && aws.imds_problem.is_none()
            && aws.sdk.is_ok()
        {
            return aws.clone();
        }
        // The region amazon-ssm-agent uses is the last resort (hybrid hosts whose config,
        // environment and IMDS name none).
        let aws = Arc::new(crate::health::load_aws(settings).await);
        if let Some(p) = &aws.imds_problem {
            // Said once; off EC2 every load finds the same.
            let before = current.as_ref().and_then(|(_, a)| a.imds_problem.as_ref());
            if before != Some(p) {
                tracing::info!("no EC2 instance identity: {p}");
            }
        }
        *current = Some((settings.aws.clone(), aws.clone()));
        aws
    }
}
