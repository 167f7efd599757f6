use super::*;

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn opts(dir: &Path, strict: bool) -> LoadOptions {
    LoadOptions {
        main: dir.join("etc/config.toml"),
        main_required: false,
        vendor_dir: dir.join("usr/config.d"),
        strict,
    }
}

#[test]
fn defaults_when_nothing_exists() {
    let d = tempfile::tempdir().unwrap();
    let l = load(&opts(d.path(), true)).unwrap();
    assert!(l.files.is_empty());
    assert_eq!(l.settings, Settings::default());
}

#[test]
fn explicit_missing_file_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let mut o = opts(d.path(), true);
    o.main_required = true;
    let e = load(&o).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn layering_order_and_masking() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "usr/config.d/10-defaults.toml",
        "[accounts]\nshell = \"/bin/sh\"\ninterval = \"1m\"\n",
    );
    write(
        d.path(),
        "usr/config.d/20-masked.toml",
        "[accounts]\nsplay = \"1s\"\n",
    );
    write(
        d.path(),
        "etc/config.toml",
        "[accounts]\ninterval = \"2m\"\nextra = [\"a\"]\n",
    );
    write(d.path(), "etc/config.d/20-masked.toml", "");
    write(
        d.path(),
        "etc/config.d/50-cloud-init.toml",
        "[accounts]\nextra = [\"b\", \"c\"]\n",
    );
    write(d.path(), "etc/config.d/README", "not toml, ignored");
    let l = load(&opts(d.path(), true)).unwrap();
    let names: Vec<String> = l
        .files
        .iter()
        .map(|f| f.strip_prefix(d.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "usr/config.d/10-defaults.toml",
            "etc/config.toml",
            "etc/config.d/20-masked.toml",
            "etc/config.d/50-cloud-init.toml"
        ]
    );
    let a = &l.settings.accounts;
    assert_eq!(a.shell, PathBuf::from("/bin/sh"), "vendor default applies");
    assert_eq!(
        a.interval,
        Duration::from_secs(120),
        "main file beats vendor"
    );
    assert_eq!(
        a.extra,
        ["b", "c"],
        "drop-in beats main; arrays are replaced"
    );
    assert_eq!(
        a.splay,
        Duration::from_secs(30),
        "masked vendor file is not read"
    );
}

#[test]
fn unknown_key_is_error_when_strict_warning_when_not() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "etc/config.toml",
        "[accounts]\nintervall = \"5m\"\n",
    );
    let e = load(&opts(d.path(), true)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("config.toml:2:1: key `accounts.intervall`: unknown key `intervall`"),
        "{msg}"
    );
    assert!(msg.contains("`interval`"), "lists the allowed keys: {msg}");
    let l = load(&opts(d.path(), false)).unwrap();
    assert_eq!(l.warnings.len(), 1);
}

#[test]
fn the_critical_shipping_lag_must_exceed_the_warning() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "etc/config.d/50-x.toml",
        "[health]\nshipping_lag_warning = \"1h\"\nshipping_lag_critical = \"10m\"\n",
    );
    let e = load(&opts(d.path(), true)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("50-x.toml:3:25: key `health.shipping_lag_critical`: must be longer than health.shipping_lag_warning (1h)"),
        "{msg}"
    );
    write(
        d.path(),
        "etc/config.d/50-x.toml",
        "[health]\nshipping_lag_warning = \"1m\"\nshipping_lag_critical = \"10m\"\n",
    );
    let s = load(&opts(d.path(), true)).unwrap().settings;
    assert_eq!(s.health.shipping_lag_critical, Duration::from_secs(600));
}

#[test]
fn bad_values_name_file_line_key_and_allowed_values() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "etc/config.d/50-x.toml",
        "[accounts]\nsource = \"ldap\"\ninterval = \"5 parsecs\"\nuid_range = [0, 10]\nsudo_group = \"admins\"\nmax_retire_fraction = 2.0\nextra = [\"Bad Name\"]\n\n[aws]\nendpoint_url = \"localhost:5000\"\n",
    );
    let e = load(&opts(d.path(), true)).unwrap_err();
    let msg = e.to_string();
    for needle in [
        "50-x.toml:2:10: key `accounts.source`: unknown variant `ldap`, expected one of `iam`, `file`, `mapping`",
        "50-x.toml:3:12: key `accounts.interval`: `5 parsecs` is not a duration",
        "50-x.toml:4:13: key `accounts.uid_range`: [0, 10] is not a UID range",
        "50-x.toml:5:14: key `accounts.sudo_group`: `admins` is not in accounts.allowed_groups",
        "50-x.toml:6:23: key `accounts.max_retire_fraction`: 2 is out of range",
        "50-x.toml:7:9: key `accounts.extra`: `Bad Name`",
        "50-x.toml:10:16: key `aws.endpoint_url`: `localhost:5000` is not an http:// or https:// URL",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    assert_eq!(e.issues.len(), 7, "{msg}");
}

#[test]
fn syntax_error_is_located() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "etc/config.toml", "[accounts\n");
    let e = load(&opts(d.path(), true)).unwrap_err();
    assert!(e.to_string().contains("config.toml:1:"), "{e}");
    assert!(e.to_string().contains("TOML syntax error"), "{e}");
}

#[test]
fn read_session_preferences_defaults_follow_the_source() {
    let s = from_str("[accounts]\nsource = \"file\"\n").unwrap();
    assert!(!s.accounts.read_session_preferences);
    let s = from_str("").unwrap();
    assert!(s.accounts.read_session_preferences);
    let s = from_str("[accounts]\nsource = \"file\"\nread_session_preferences = true\n").unwrap();
    assert!(s.accounts.read_session_preferences);
}

#[test]
fn merged_settings_print_as_toml_that_parses_back() {
    let s = from_str(
        "[accounts]\nallowed_groups = [\"docker\", \"ops-sudo\"]\nsudo_group = \"ops-sudo\"\n",
    )
    .unwrap();
    let text = s.to_toml();
    assert!(text.contains("interval = \"5m\""), "{text}");
    assert!(text.contains("retire_grace = \"24h\""), "{text}");
    assert!(text.contains("splay = \"30s\""), "{text}");
    let again = from_str(&text).unwrap();
    assert_eq!(again, s);
}

/// The shipped example config: every key it mentions is a real key with a valid example value.
#[test]
fn shipped_example_config_is_valid_and_complete() {
    let example = include_str!("../../packaging/config.d/10-defaults.toml");
    // Uncomment every `# key = value` line and every `# [section]` header.
    let uncommented: String = example
        .lines()
        .map(|l| {
            let t = l.trim_start();
            match t.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest
                            .split_once(" = ")
                            .is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest
                }
                _ => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let s = from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n---\n{uncommented}"));
    // Every key of Settings appears in the example.
    let all = toml::to_string(&s).unwrap();
    let table: toml::Table = all.parse().unwrap();
    for (section, keys) in &table {
        for (key, value) in keys.as_table().unwrap() {
            // A sub-table (`[audit.s3]`): its header and each of its keys.
            if let Some(sub) = value.as_table() {
                assert!(
                    uncommented.contains(&format!("\n[{section}.{key}]")),
                    "the example config does not document [{section}.{key}]"
                );
                for k in sub.keys() {
                    assert!(
                        uncommented.contains(&format!("\n{k} = ")),
                        "the example config does not document [{section}.{key}] {k}"
                    );
                }
                continue;
            }
            assert!(
                uncommented.contains(&format!("\n{key} = ")),
                "the example config does not document [{section}] {key}"
            );
        }
    }
}

#[test]
fn the_mapping_source_needs_a_bucket_and_public_keys() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "etc/config.toml",
        "[accounts]\nsource = \"mapping\"\n",
    );
    let e = load(&opts(d.path(), true)).unwrap_err().to_string();
    assert!(
        e.contains("config.toml:2:10: key `accounts.source`")
            && e.contains("accounts.mapping.bucket and accounts.mapping.public_keys"),
        "{e}"
    );
    // A key that is not P-256, one that is not PEM, a path that does not exist: each named.
    write(
        d.path(),
        "etc/config.toml",
        "[accounts]\nsource = \"mapping\"\n[accounts.mapping]\nbucket = \"fleet-mapping\"\npublic_keys = [\"/nonexistent/key.pem\"]\naccount = \"12345\"\n",
    );
    let e = load(&opts(d.path(), true)).unwrap_err().to_string();
    assert!(
        e.contains("accounts.mapping.public_keys")
            && e.contains("/nonexistent/key.pem")
            && e.contains("cannot read it"),
        "{e}"
    );
    assert!(e.contains("`12345` is not an AWS account id"), "{e}");
    let pem = d.path().join("key.pem");
    std::fs::write(
        &pem,
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\nq9UdMvZsT1iULWzMzvr0dIn2qvHuWsYt/Z1Hf6vyLR/ZWrJGshdqNXTzMA==\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    write(
        d.path(),
        "etc/config.toml",
        &format!(
            "[accounts]\nsource = \"mapping\"\n[accounts.mapping]\nbucket = \"fleet-mapping\"\npublic_keys = [\"{}\"]\n",
            pem.display()
        ),
    );
    let l = load(&opts(d.path(), true)).unwrap();
    assert_eq!(l.settings.accounts.source, SourceKind::Mapping);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(l.settings.accounts.mapping.prefix, "ssm-companion/mapping");
    assert_eq!(
        l.settings.accounts.mapping.interval,
        std::time::Duration::from_secs(60)
    );
    assert!(!l.settings.accounts.read_session_preferences);
}

#[test]
fn bad_health_values_are_named() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "etc/config.d/60-h.toml",
        "[health]\nservices = [\"ssm\", \"ssmmessages\", \"ssm\"]\nrequired_services = [\"ssn\"]\ntimeout = \"0s\"\n",
    );
    let e = load(&opts(d.path(), true)).unwrap_err();
    let msg = e.to_string();
    for needle in [
        "60-h.toml:2:12: key `health.services`: `ssm` is listed twice",
        "60-h.toml:3:21: key `health.required_services`: `ssn` is not a service the checks know",
        "60-h.toml:4:11: key `health.timeout`",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    assert_eq!(e.issues.len(), 3, "{msg}");
}

#[test]
fn bad_audit_values_are_named() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "etc/config.d/70-a.toml",
        "[audit]\nenabled = true\nredact = [\"password=\\\\S+\", \"(unclosed\"]\nspool_max = \"1TB\"\nrescan_interval = \"0s\"\n",
    );
    let e = load(&opts(d.path(), true)).unwrap_err();
    let msg = e.to_string();
    for needle in [
        "70-a.toml:3:10: key `audit.redact`: pattern 2 `(unclosed` is not a regular expression",
        "70-a.toml:4:13: key `audit.spool_max`: `1TB` is not a size",
        "70-a.toml:5:19: key `audit.rescan_interval`",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    assert_eq!(e.issues.len(), 3, "{msg}");
    write(
        d.path(),
        "etc/config.d/70-a.toml",
        "[audit]\nenabled = true\nspool_max = \"64MiB\"\nredact = [\"token=\\\\S+\"]\n",
    );
    let s = load(&opts(d.path(), true)).unwrap().settings;
    assert!(s.audit.enabled && s.audit.sessions);
    assert_eq!(s.audit.spool_max, 64 << 20);
    assert_eq!(s.audit.redact, ["token=\\S+"]);
}

#[test]
fn bad_cloudwatch_values_are_named() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "etc/config.d/70-cw.toml",
        "[audit.cloudwatch]\nlog_group = \"arn:aws:logs:eu-west-1:123456789012:log-group:x\"\nevents = \"sudo\"\nmax_delay = \"0s\"\n",
    );
    let e = load(&opts(d.path(), true)).unwrap_err();
    let msg = e.to_string();
    for needle in [
        "70-cw.toml:2:13: key `audit.cloudwatch.log_group`: `arn:aws:logs:eu-west-1:123456789012:log-group:x` is not a log group name",
        "give the group's name, not its ARN",
        "70-cw.toml:3:10: key `audit.cloudwatch.events`: `sudo` is not a choice of events; use \"alerts\"",
        "70-cw.toml:4:13: key `audit.cloudwatch.max_delay`",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    assert_eq!(e.issues.len(), 3, "{msg}");
    write(
        d.path(),
        "etc/config.d/70-cw.toml",
        "[audit.cloudwatch]\nlog_group = \"/ssm-companion/audit\"\nevents = \"all\"\n",
    );
    let s = load(&opts(d.path(), true)).unwrap().settings;
    assert_eq!(s.audit.cloudwatch.log_group, "/ssm-companion/audit");
    assert_eq!(
        s.audit.cloudwatch.events,
        crate::config::CloudWatchEvents::All
    );
    assert_eq!(
        s.audit.cloudwatch.max_delay,
        std::time::Duration::from_secs(5)
    );
}

#[test]
fn alert_rules_are_checked_and_a_bad_regex_is_located() {
    let d = tempfile::tempdir().unwrap();
    let rule = |body: &str| {
        format!(
            "[audit]\nenabled = true\n\n[[audit.alert]]\nname = \"ok\"\nmatch = {{ class_uid = 1007 }}\n\n[[audit.alert]]\n{body}\n"
        )
    };
    for (body, needle) in [
        (
            "name = \"bad\"\nregex = { \"process.cmd_line\" = \"(unclosed\" }",
            "70-a.toml:4:1: key `audit.alert`: rule 2 (`bad`): regex for `process.cmd_line`: `(unclosed` is not a regular expression",
        ),
        (
            "name = \"loud\"\nseverity = \"urgent\"\nmatch = { class_uid = 1 }",
            "rule 2 (`loud`): severity `urgent` is not one of informational, low, medium, high, critical",
        ),
        (
            "name = \"all\"",
            "rule 2 (`all`): no `match` and no `regex`",
        ),
        (
            "name = \"ok\"\nmatch = { a = 1 }",
            "a second rule with this name",
        ),
        ("name = \"x y\"\nmatch = { a = 1 }", "name `x y` must be"),
        (
            "name = \"arr\"\nmatch = { a = [1] }",
            "match `a` is a array",
        ),
        (
            "name = \"p\"\nmatch = { \"a..b\" = 1 }",
            "`a..b` is not a field path",
        ),
        (
            "name = \"k\"\nmatch = { a = 1 }\nwhen = 2",
            "key `audit.alert.when`: unknown key `when`",
        ),
    ] {
        write(d.path(), "etc/config.d/70-a.toml", &rule(body));
        let e = load(&opts(d.path(), true)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    write(
        d.path(),
        "etc/config.d/70-a.toml",
        &rule(
            "name = \"sudo\"\nenabled = false\n[[audit.alert]]\nname = \"restarts\"\nseverity = \"high\"\nregex = { \"process.cmd_line\" = 'systemctl\\s+restart' }",
        ),
    );
    let s = load(&opts(d.path(), true)).unwrap().settings;
    assert_eq!(s.audit.alert.len(), 3);
    assert!(!s.audit.alert[1].enabled);
    assert_eq!(s.audit.alert[2].severity_id, 4);
    assert!(s.audit.default_alerts);
}

#[test]
fn uid_range_must_fit_login_defs_and_miss_subordinate_ranges() {
    let d = tempfile::tempdir().unwrap();
    let defs = write(
        d.path(),
        "host/login.defs",
        "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n",
    );
    let subuid = write(d.path(), "host/subuid", "alice:100000:65536\n");
    let subgid = write(d.path(), "host/subgid", "alice:100000:65536\n");
    let paths = format!(
        "[paths]\nlogin_defs = \"{}\"\nsubuid = \"{}\"\nsubgid = \"{}\"\n",
        defs.display(),
        subuid.display(),
        subgid.display()
    );
    // The range of the review: above UID_MAX/GID_MAX and inside alice's subordinate IDs.
    let main = write(
        d.path(),
        "etc/config.toml",
        &format!("[accounts]\nuid_range = [100000, 199999]\n{paths}"),
    );
    let e = load(&opts(d.path(), true)).unwrap_err();
    let msgs: Vec<String> = e.issues.iter().map(|i| i.to_string()).collect();
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    assert!(
        msgs.iter()
            .all(|m| m.contains(&format!("{}:2:", main.display()))),
        "{msgs:#?}"
    );
    assert!(msgs[0].contains("above UID_MAX 60000"), "{}", msgs[0]);
    assert!(msgs[0].contains("within [1000, 60000]"), "{}", msgs[0]);
    assert!(
        msgs[1].contains("subordinate UIDs 100000..165535 of `alice`"),
        "{}",
        msgs[1]
    );
    assert!(msgs[2].contains("subordinate GIDs"), "{}", msgs[2]);
    // Below UID_MIN.
    write(d.path(), "host/login.defs", "UID_MIN 2000\nGID_MIN 2000\n");
    write(
        d.path(),
        "etc/config.toml",
        &format!("[accounts]\nuid_range = [1500, 1900]\n{paths}"),
    );
    let e = load(&opts(d.path(), true)).unwrap_err();
    assert!(e.to_string().contains("below UID_MIN 2000"), "{e}");
    // A range that fits is fine; so is any range with accounts off.
    write(
        d.path(),
        "etc/config.toml",
        &format!("[accounts]\nuid_range = [20000, 59999]\n{paths}"),
    );
    load(&opts(d.path(), true)).unwrap();
    write(
        d.path(),
        "etc/config.toml",
        &format!("[accounts]\nenabled = false\nuid_range = [100000, 199999]\n{paths}"),
    );
    load(&opts(d.path(), true)).unwrap();
    // The default range on a host whose login.defs stops lower: named, pointing at the host file.
    write(d.path(), "host/login.defs", "UID_MAX 29999\n");
    write(d.path(), "etc/config.toml", &paths);
    let e = load(&opts(d.path(), true)).unwrap_err();
    let i = &e.issues[0];
    assert_eq!(i.location.file, defs);
    assert!(
        i.message.contains("the default [20000, 59999]"),
        "{}",
        i.message
    );
}
