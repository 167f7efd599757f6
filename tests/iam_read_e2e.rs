//! End to end: a read of IAM is complete only when it provably is. The AWS SDK against the
//! emulator, whose fault injection damages *successful* answers (tests/emulator/emulator.py,
//! rule key `body`): a page cut short in transit that still parses, `IsTruncated=true` without a
//! `Marker`, a page that gives back the request's own `Marker`, a connection reset in the middle
//! of a body, an empty HTTP 200. Each must make the read incomplete, with a message naming the
//! page and what was wrong, and retire nothing — checked with real shadow-utils and sudo in a
//! private user database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)]

mod common;

use common::{Emulator, Host};
use serde_json::{Value, json};

const NAMES: [&str; 6] = ["ann", "ben", "cat", "dan", "eve", "fay"];

fn problems(doc: &Value) -> String {
    doc["problems"].to_string()
}

#[test]
fn partial_answers_that_look_successful_are_incomplete_reads() {
    require_root!();
    let emu = Emulator::start();
    let host = Host::new();
    // Two principals a page: pages 1 (ann, ben), 2 (cat, dan), 3 (eve, fay). No cap and no
    // grace, so a partial read taken for complete would start retiring at once.
    host.configure(
        &emu,
        "iam_page_size = 2\nretire_confirmations = 1\nretire_grace = \"0s\"\nmax_retire_fraction = 1.0\nallowed_groups = [\"ops-sudo\"]\nsudo_group = \"ops-sudo\"\n",
    );
    for n in NAMES {
        emu.user(
            n,
            "/",
            &[("SSMSessionRunAs", n), ("ssm-companion:groups", "ops-sudo")],
        );
    }
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "create"), NAMES, "{doc:#}");
    assert_eq!(doc["api_calls"], 4, "3 IAM pages + the preferences");

    let cases = [
        // (fault, page, what the problem must say)
        ("truncate", 2, "page 2: failed: "),
        (
            "truncated-without-marker",
            1,
            "page 1: IsTruncated=true but no Marker",
        ),
        (
            "repeat-marker",
            2,
            "page 2: IsTruncated=true with the request's own Marker",
        ),
        ("reset", 3, "page 3: failed: "),
        (
            "empty",
            1,
            "page 1: failed: the answer could not be parsed (HTTP 200, 0 bytes",
        ),
    ];
    for (fault, page, needle) in cases {
        emu.faults(json!([{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": page, "body": fault}]));
        let doc = host.apply(1);
        let text = problems(&doc);
        assert_eq!(doc["complete"], false, "{fault}: {doc:#}");
        assert!(text.contains(needle), "{fault}: {text}");
        assert!(text.contains("incomplete"), "{fault}: {text}");
        assert!(
            Host::steps(&doc, "retire-start").is_empty(),
            "{fault}: nothing is retired: {doc:#}"
        );
        for n in NAMES {
            assert_eq!(
                host.groups(n),
                ["ops-sudo"],
                "{fault}: {n} keeps its groups"
            );
        }
    }
    // What exactly each cut answer says.
    emu.faults(json!([{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 2, "body": "truncate"}]));
    let text = problems(&host.apply(1));
    assert!(
        text.contains("the answer was cut short")
            && text.contains("do not end with </GetAccountAuthorizationDetailsResponse>"),
        "{text}"
    );

    // The answers whole again: complete, nothing to do.
    emu.faults(json!([]));
    let doc = host.apply(0);
    assert_eq!(doc["complete"], true);
    assert_eq!(doc["changes_pending"], false, "{doc:#}");
    // And a real departure is still seen.
    emu.untag_user("fay", "SSMSessionRunAs");
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "retire-start"), ["fay"]);
    host.assert_consistent(&NAMES);
}
