//! The audit capability: who did what in Session Manager sessions, kept durably on the host and
//! shipped to S3. Its first part is the durable spool every collector writes into.

pub mod spool;
