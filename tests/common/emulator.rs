//! The local AWS emulator (moto + a strict IMDSv2 stub, `tests/emulator/emulator.py`) as a
//! process of the test, with its control endpoints.

use super::*;

/// The emulator process.
pub struct Emulator {
    child: Child,
    /// moto's base URL.
    pub moto: String,
    /// The IMDS stub's base URL.
    pub imds: String,
    _dir: tempfile::TempDir,
}

impl Emulator {
    /// Starts the emulator with the default instance identity.
    pub fn start() -> Self {
        Self::start_with(serde_json::json!({}))
    }

    /// Starts the emulator with an IMDS config (see `tests/emulator/emulator.py`).
    pub fn start_with(imds: Value) -> Self {
        Self::start_in(None, imds)
    }

    /// Starts the emulator without pinning every request to one account: `sts:AssumeRole` into
    /// another account's role gives credentials that act in that account (`--multi-account`).
    pub fn start_multi_account() -> Self {
        Self::start_full(None, serde_json::json!({}), &["--multi-account"])
    }

    /// Starts the emulator inside a network namespace (its URLs are then only reachable there).
    pub fn start_in(ns: Option<&NetNs>, imds: Value) -> Self {
        Self::start_full(ns, imds, &[])
    }

    fn start_full(ns: Option<&NetNs>, imds: Value, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("imds.json");
        std::fs::write(&cfg, imds.to_string()).unwrap();
        let mut cmd = match ns {
            Some(ns) => ns.command(python()),
            None => Command::new(python()),
        };
        let mut child = cmd
            .arg(repo().join("tests/emulator/emulator.py"))
            .args(args)
            .args(["--exit-on-stdin-eof", "--imds-config"])
            .arg(&cfg)
            .arg("--log")
            .arg(dir.path().join("emulator.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("emulator did not start ({e}): {line:?}"));
        Self {
            child,
            moto: v["moto"].as_str().unwrap().to_string(),
            imds: v["imds"].as_str().unwrap().to_string(),
            _dir: dir,
        }
    }

    /// Replaces the fault rules (`[]` clears).
    pub fn faults(&self, rules: Value) {
        let (status, body) = http(&self.moto, "POST", "/_emulator/faults", Some(&rules));
        assert_eq!(status, 200, "{body}");
    }

    /// Request counts per `service:Action`.
    pub fn stats(&self) -> Value {
        serde_json::from_str(&http(&self.moto, "GET", "/_emulator/stats", None).1).unwrap()
    }

    /// Zeroes the request counts.
    pub fn reset_stats(&self) {
        http(&self.moto, "POST", "/_emulator/stats/reset", None);
        http(&self.imds, "POST", "/_emulator/imds/stats/reset", None);
    }

    /// Request counts of the IMDS stub per path.
    pub fn imds_stats(&self) -> Value {
        serde_json::from_str(&http(&self.imds, "GET", "/_emulator/imds/stats", None).1).unwrap()
    }

    /// Merges into the IMDS stub's live config.
    pub fn imds_config(&self, v: Value) {
        let (status, body) = http(&self.imds, "POST", "/_emulator/imds/config", Some(&v));
        assert_eq!(status, 200, "{body}");
    }

    /// The SDK configuration of the emulator (region us-east-1, test credentials).
    pub fn sdk(&self) -> aws_config::SdkConfig {
        block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(&self.moto)
                .credentials_provider(aws_sdk_iam::config::Credentials::new(
                    "test", "test", None, None, "tests",
                ))
                .load(),
        )
    }

    /// An S3 client on the emulator (path-style: the bucket is not a host name here).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Creates a bucket.
    pub fn bucket(&self, name: &str) {
        block_on(self.s3().create_bucket().bucket(name).send()).unwrap();
    }

    /// Every object of a bucket: (key, bytes), in key order.
    pub fn objects(&self, bucket: &str) -> Vec<(String, Vec<u8>)> {
        let s3 = self.s3();
        block_on(async {
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = s3
                    .list_objects_v2()
                    .bucket(bucket)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .unwrap();
                for o in page.contents() {
                    let key = o.key().unwrap().to_string();
                    let body = s3
                        .get_object()
                        .bucket(bucket)
                        .key(&key)
                        .send()
                        .await
                        .unwrap();
                    let bytes = body.body.collect().await.unwrap().into_bytes().to_vec();
                    out.push((key, bytes));
                }
                token = page.next_continuation_token().map(String::from);
                if token.is_none() {
                    break;
                }
            }
            out.sort();
            out
        })
    }

    /// A CloudWatch Logs client on the emulator.
    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(&self.sdk())
    }

    /// Creates a log group.
    pub fn log_group(&self, name: &str) {
        block_on(self.logs().create_log_group().log_group_name(name).send()).unwrap();
    }

    /// Every event of a log group: (stream, timestamp, message), stream by stream, each in the
    /// stream's order.
    pub fn log_events(&self, group: &str) -> Vec<(String, i64, String)> {
        let logs = self.logs();
        block_on(async {
            let mut out = Vec::new();
            let streams = logs
                .describe_log_streams()
                .log_group_name(group)
                .send()
                .await
                .unwrap();
            for st in streams.log_streams() {
                let name = st.log_stream_name().unwrap().to_string();
                let mut token: Option<String> = None;
                loop {
                    let page = logs
                        .get_log_events()
                        .log_group_name(group)
                        .log_stream_name(&name)
                        .start_from_head(true)
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .unwrap();
                    for e in page.events() {
                        out.push((
                            name.clone(),
                            e.timestamp().unwrap_or_default(),
                            e.message().unwrap_or_default().to_string(),
                        ));
                    }
                    let next = page.next_forward_token().map(String::from);
                    // The same token again: the end of the stream.
                    if page.events().is_empty() || next.is_none() || next == token {
                        break;
                    }
                    token = next;
                }
            }
            out
        })
    }

    /// An SDK configuration acting in `account` through the role `role` assumed there (the
    /// emulator's own account as it is); with `start_multi_account`, calls land in `account`.
    pub fn in_account(&self, account: &str, role: &str) -> aws_config::SdkConfig {
        let base = self.sdk();
        if account == "123456789012" {
            return base;
        }
        let provider = block_on(
            aws_config::sts::AssumeRoleProvider::builder(format!(
                "arn:aws:iam::{account}:role/{role}"
            ))
            .session_name("test-setup")
            .configure(&base)
            .build(),
        );
        base.to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build()
    }

    /// A new KMS signing key (ECC_NIST_P256, SIGN_VERIFY) in the emulator's own account; its id.
    pub fn signing_key(&self) -> String {
        let kms = aws_sdk_kms::Client::new(&self.sdk());
        let out = block_on(
            kms.create_key()
                .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
                .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
                .send(),
        )
        .unwrap();
        out.key_metadata().unwrap().key_id().to_string()
    }

    /// An IAM client on the emulator.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk())
    }

    /// Creates an IAM user with tags.
    pub fn user(&self, name: &str, path: &str, tags: &[(&str, &str)]) {
        let iam = self.iam();
        let mut req = iam.create_user().user_name(name).path(path);
        for (k, v) in tags {
            req = req.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .unwrap(),
            );
        }
        block_on(req.send()).unwrap();
    }

    /// Creates an IAM role with tags.
    pub fn role(&self, name: &str, tags: &[(&str, &str)]) {
        let iam = self.iam();
        let mut req = iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#);
        for (k, v) in tags {
            req = req.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .unwrap(),
            );
        }
        block_on(req.send()).unwrap();
    }

    /// Sets (adds or replaces) one tag of a user.
    pub fn tag_user(&self, name: &str, key: &str, value: &str) {
        let tag = aws_sdk_iam::types::Tag::builder()
            .key(key)
            .value(value)
            .build()
            .unwrap();
        block_on(self.iam().tag_user().user_name(name).tags(tag).send()).unwrap();
    }

    /// Removes one tag of a user.
    pub fn untag_user(&self, name: &str, key: &str) {
        block_on(self.iam().untag_user().user_name(name).tag_keys(key).send()).unwrap();
    }

    /// Writes the Session Manager preferences document.
    pub fn preferences(&self, enabled: bool, default_user: &str) {
        let ssm = aws_sdk_ssm::Client::new(&self.sdk());
        let content = serde_json::json!({
            "schemaVersion": "1.0",
            "description": "Session Manager preferences",
            "sessionType": "Standard_Stream",
            "inputs": {"runAsEnabled": enabled, "runAsDefaultUser": default_user},
        })
        .to_string();
        block_on(
            ssm.create_document()
                .name("SSM-SessionManagerRunShell")
                .document_type(aws_sdk_ssm::types::DocumentType::Session)
                .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
                .content(content)
                .send(),
        )
        .unwrap();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
