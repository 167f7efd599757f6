//! S3: the audit objects, written once. `PutObject` with `If-None-Match: *` creates a key that
//! does not exist and refuses one that does (412 `PreconditionFailed`): a retry after a crash
//! that had landed the object is told so, instead of writing it twice.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ObjectCannedAcl, ServerSideEncryption};

use super::fault::CallError;

/// What a conditional put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The object was created.
    Created,
    /// The key already existed (an earlier attempt landed).
    AlreadyThere,
}

/// How objects are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// `aws:kms` or `AES256`; empty: the bucket's default encryption.
    pub sse: String,
    /// The KMS key for `aws:kms` (empty: the account's `aws/s3` key).
    pub kms_key_id: String,
    /// `bucket-owner-full-control`, for a bucket of another account.
    pub bucket_owner_full_control: bool,
}

/// Writes `body` at `key` unless the key exists.
pub async fn put_if_absent(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    opts: &PutOptions,
) -> Result<Put, CallError> {
    let mut req = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .if_none_match("*")
        // Not `Content-Encoding: gzip`: readers must get the .json.gz bytes as they are.
        .content_type("application/gzip")
        .body(ByteStream::from(body));
    if !opts.sse.is_empty() {
        req = req.server_side_encryption(ServerSideEncryption::from(opts.sse.as_str()));
        if !opts.kms_key_id.is_empty() {
            req = req.ssekms_key_id(&opts.kms_key_id);
        }
    }
    if opts.bucket_owner_full_control {
        req = req.acl(ObjectCannedAcl::BucketOwnerFullControl);
    }
    match req.send().await {
        Ok(_) => Ok(Put::Created),
        Err(e) => {
            let err = CallError::from_sdk(&e);
            // Match the code or the status, never the message (S3 and its emulators word it
            // differently).
            match &err.fault {
                super::fault::Fault::Aws { code, status }
                    if code == "PreconditionFailed" || *status == 412 =>
                {
                    Ok(Put::AlreadyThere)
                }
                super::fault::Fault::Http(412) => Ok(Put::AlreadyThere),
                _ => Err(err),
            }
        }
    }
}
