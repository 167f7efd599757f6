//! User and group name rules, shared by the accounts capability and the configuration.
//!
//! A `SSMSessionRunAs` value is used verbatim as the OS user name: the agent passes it to
//! `sh -c "id <user>"` unquoted and sets `HOME=/home/<user>`. So we never map or "fix" a name: a
//! value is either a safe, portable name or it is rejected with a reason. The rule is the
//! conservative intersection of shadow-utils, Debian's `NAME_REGEX` and systemd's user-name
//! guidance: `^[a-z_][a-z0-9_-]{0,31}$`: no uppercase, no leading digit or `-`, no dots, no `$`,
//! no shell metacharacters, at most 32 characters.

use std::fmt;

/// The longest accepted name (`useradd`'s limit on Linux).
pub const MAX_LEN: usize = 32;

/// Names that are never managed, whatever the host has.
pub const RESERVED: &[&str] = &["root", "ssm-user"];

/// Why a name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The value is empty.
    Empty,
    /// The value has leading or trailing whitespace (the agent would use it verbatim).
    Whitespace,
    /// Longer than [`MAX_LEN`] characters.
    TooLong(usize),
    /// The first character is not a lowercase letter or `_`.
    BadStart(char),
    /// A character outside `a-z 0-9 _ -`.
    BadChar(char),
    /// An uppercase ASCII letter.
    Uppercase(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RULE: &str = "names must match ^[a-z_][a-z0-9_-]{0,31}$";
        match self {
            NameError::Empty => write!(f, "the value is empty; {RULE}"),
            NameError::Whitespace => write!(
                f,
                "the value has leading or trailing whitespace; remove it from the tag ({RULE})"
            ),
            NameError::TooLong(n) => {
                write!(
                    f,
                    "the value is {n} characters long; at most {MAX_LEN} are allowed"
                )
            }
            NameError::BadStart(c) if c.is_ascii_digit() => write!(
                f,
                "the value starts with the digit `{c}` (ambiguous with a UID); {RULE}"
            ),
            NameError::BadStart(c) => write!(f, "the value starts with {}; {RULE}", show(*c)),
            NameError::Uppercase(c) => write!(
                f,
                "the value contains the uppercase letter `{c}`; user names are lowercase and the tag is used verbatim, so change the tag ({RULE})"
            ),
            NameError::BadChar(c) => write!(f, "the value contains {}; {RULE}", show(*c)),
        }
    }
}

fn show(c: char) -> String {
    if c == '`' {
        "a backtick".to_string()
    } else if c.is_ascii_graphic() {
        format!("`{c}`")
    } else {
        format!("the character U+{:04X}", u32::from(c))
    }
}

/// Checks the syntax of a user or group name.
pub fn check_syntax(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.trim() != name {
        return Err(NameError::Whitespace);
    }
    let len = name.chars().count();
    if len > MAX_LEN {
        return Err(NameError::TooLong(len));
    }
    if let Some(c) = name.chars().find(char::is_ascii_uppercase) {
        return Err(NameError::Uppercase(c));
    }
    let mut chars = name.chars();
    if let Some(first) = chars.next()
        && !(first.is_ascii_lowercase() || first == '_')
    {
        return Err(NameError::BadStart(first));
    }
    match chars.find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')) {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}

/// True for names that are never managed ([`RESERVED`]).
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

/// Names that belong to the system, now or later: the users and groups that distributions and
/// common server packages create for themselves. An account (and its user private group) made
/// under such a name before the package arrives is *adopted* by the package's maintainer
/// script (`getent group docker || addgroup --system docker`) together with the rights the
/// package gives it (the Docker socket is `root:docker 0660`: root for whoever is in `docker`).
/// So these names are refused as `SSMSessionRunAs` values even when the host lacks them; an
/// account that already exists under one of them is still fine for Run As
/// (`exists-unmanaged`).
///
/// Each entry names where it comes from. Sources (read 2026-12): Debian's `base-passwd`
/// (`passwd.master`, `group.master`, and its README's list of dynamically allocated IDs);
/// Debian 12 and Ubuntu 24.04 cloud images' `/etc/passwd` and `/etc/group` and the
/// `sysusers.d` files of systemd, dbus, polkit, openssh, chrony, apt; the Fedora/RHEL `setup`
/// package's `uidgid` list, which Amazon Linux 2/2023 and RHEL 7-10 share, plus the agents of
/// their cloud images; and the service accounts the Debian and Fedora packages of common server
/// software create (databases, web servers, container runtimes, monitoring and CI agents).
pub const WELL_KNOWN: &[(&str, &str)] = &[
    // Debian base-passwd: static users and groups.
    ("daemon", "base-passwd/setup"),
    ("bin", "base-passwd/setup"),
    ("sys", "base-passwd/setup"),
    ("sync", "base-passwd/setup"),
    ("games", "base-passwd/setup"),
    ("man", "base-passwd/setup"),
    ("lp", "base-passwd/setup"),
    ("mail", "base-passwd/setup"),
    ("news", "base-passwd"),
    ("uucp", "base-passwd"),
    ("proxy", "base-passwd"),
    ("www-data", "base-passwd"),
    ("backup", "base-passwd"),
    ("list", "base-passwd"),
    ("irc", "base-passwd"),
    ("gnats", "base-passwd"),
    ("nobody", "base-passwd/setup"),
    ("nogroup", "base-passwd"),
    ("adm", "base-passwd/setup"),
    ("tty", "base-passwd/setup"),
    ("disk", "base-passwd/setup"),
    ("kmem", "base-passwd/setup"),
    ("dialout", "base-passwd/setup"),
    ("fax", "base-passwd"),
    ("voice", "base-passwd"),
    ("cdrom", "base-passwd/setup"),
    ("floppy", "base-passwd/setup"),
    ("tape", "base-passwd/setup"),
    ("sudo", "base-passwd"),
    ("audio", "base-passwd/setup"),
    ("dip", "base-passwd"),
    ("operator", "base-passwd/setup"),
    ("src", "base-passwd"),
    ("shadow", "base-passwd"),
    ("utmp", "base-passwd/setup"),
    ("video", "base-passwd/setup"),
    ("sasl", "base-passwd"),
    ("plugdev", "base-passwd"),
    ("staff", "base-passwd"),
    ("users", "base-passwd/setup"),
    ("input", "base-passwd/setup"),
    ("kvm", "base-passwd/setup"),
    ("render", "base-passwd/setup"),
    ("sgx", "base-passwd"),
    ("crontab", "Debian cron"),
    ("netdev", "Debian/Ubuntu"),
    ("systemd-journal", "systemd"),
    ("messagebus", "Debian dbus"),
    ("polkitd", "polkit"),
    ("sshd", "openssh"),
    ("ssh", "Debian openssh (old group)"),
    ("ssh_keys", "RHEL openssh"),
    ("tss", "tpm2-tss"),
    ("uuidd", "util-linux"),
    ("tcpdump", "tcpdump"),
    ("avahi", "avahi"),
    ("dnsmasq", "dnsmasq"),
    ("ntp", "ntp"),
    ("chrony", "RHEL chrony"),
    ("syslog", "Ubuntu rsyslog"),
    ("landscape", "Ubuntu landscape"),
    ("pollinate", "Ubuntu pollinate"),
    ("fwupd-refresh", "Ubuntu fwupd"),
    ("usbmux", "usbmuxd"),
    ("lxd", "Ubuntu lxd"),
    ("dhcpcd", "dhcpcd"),
    ("rtkit", "rtkit"),
    ("geoclue", "geoclue"),
    ("colord", "colord"),
    ("pulse", "pulseaudio"),
    ("saned", "sane"),
    ("lightdm", "lightdm"),
    ("gdm", "gdm"),
    ("statd", "nfs-common"),
    ("rpc", "rpcbind"),
    ("rpcuser", "RHEL nfs-utils"),
    ("nfsnobody", "RHEL nfs-utils"),
    ("sssd", "sssd"),
    ("unbound", "unbound"),
    ("dbus", "RHEL dbus"),
    ("lock", "setup"),
    ("mem", "setup"),
    ("wheel", "setup"),
    ("ftp", "setup"),
    ("shutdown", "setup"),
    ("halt", "setup"),
    ("utempter", "setup"),
    ("cockpit-ws", "cockpit"),
    ("cockpit-wsinstance", "cockpit"),
    ("setroubleshoot", "setroubleshoot"),
    ("clevis", "clevis"),
    ("rngd", "Amazon Linux rng-tools"),
    ("libstoragemgmt", "libstoragemgmt"),
    ("ec2-instance-connect", "Amazon Linux ec2-instance-connect"),
    ("postdrop", "postfix"),
    ("postfix", "postfix"),
    ("exim", "exim"),
    ("smmsp", "sendmail"),
    ("dovecot", "dovecot"),
    ("dovenull", "dovecot"),
    ("named", "bind"),
    ("bind", "bind"),
    ("squid", "squid"),
    ("haproxy", "haproxy"),
    ("varnish", "varnish"),
    ("nginx", "nginx"),
    ("apache", "httpd"),
    ("httpd", "httpd"),
    ("tomcat", "tomcat"),
    ("jetty", "jetty"),
    // Agents of cloud images. (Their default users — ec2-user, ubuntu, … — are made by
    // cloud-init at first boot, before ssm-companion runs, so they exist where they matter:
    // `exists-unmanaged`. `admin` is reserved because Ubuntu's /etc/sudoers grants `%admin`.)
    ("admin", "Ubuntu's /etc/sudoers grants %admin sudo"),
    ("cwagent", "amazon-cloudwatch-agent"),
    ("aws-kinesis-agent-user", "aws-kinesis-agent"),
    // Container runtimes and virtualisation (root-equivalent groups).
    ("docker", "docker"),
    ("dockerroot", "RHEL docker"),
    ("containerd", "containerd"),
    ("podman", "podman"),
    ("libvirt", "libvirt"),
    ("libvirt-qemu", "libvirt"),
    ("libvirt-dnsmasq", "libvirt"),
    ("qemu", "qemu"),
    ("incus", "incus"),
    ("incus-admin", "incus"),
    ("lxc", "lxc"),
    // Databases, caches, queues, search.
    ("postgres", "postgresql"),
    ("mysql", "mysql/mariadb"),
    ("redis", "redis"),
    ("valkey", "valkey"),
    ("memcache", "Debian memcached"),
    ("memcached", "memcached"),
    ("mongodb", "mongodb"),
    ("mongod", "mongodb"),
    ("elasticsearch", "elasticsearch"),
    ("opensearch", "opensearch"),
    ("kibana", "kibana"),
    ("logstash", "logstash"),
    ("kafka", "kafka"),
    ("zookeeper", "zookeeper"),
    ("rabbitmq", "rabbitmq"),
    ("cassandra", "cassandra"),
    ("couchdb", "couchdb"),
    ("influxdb", "influxdb"),
    ("clickhouse", "clickhouse"),
    ("etcd", "etcd"),
    ("mssql", "mssql-server"),
    ("oracle", "oracle"),
    ("solr", "solr"),
    // Monitoring, logging, CI and secrets agents.
    ("prometheus", "prometheus"),
    ("node_exporter", "prometheus node exporter"),
    ("grafana", "grafana"),
    ("telegraf", "telegraf"),
    ("nagios", "nagios"),
    ("nrpe", "nrpe"),
    ("zabbix", "zabbix"),
    ("icinga", "icinga"),
    ("collectd", "collectd"),
    ("dd-agent", "datadog"),
    ("datadog", "datadog"),
    ("splunk", "splunk"),
    ("td-agent", "fluentd"),
    ("fluentd", "fluentd"),
    ("fluent-bit", "fluent-bit"),
    ("vector", "vector"),
    ("otelcol", "opentelemetry-collector"),
    ("jenkins", "jenkins"),
    ("gitlab-runner", "gitlab-runner"),
    ("git", "git-daemon/gitlab"),
    ("consul", "consul"),
    ("vault", "vault"),
    ("nomad", "nomad"),
    ("salt", "salt"),
    ("puppet", "puppet"),
    ("chef", "chef"),
    ("ansible", "ansible"),
    ("osquery", "osquery"),
    ("falco", "falco"),
    ("wazuh", "wazuh"),
    ("ossec", "ossec"),
    ("clamav", "clamav"),
    ("tor", "tor"),
    ("openvpn", "openvpn"),
    ("wireguard", "wireguard"),
    ("keepalived", "keepalived"),
];

/// Prefixes reserved as a whole: `systemd-*` (systemd's own service users and groups), and
/// `_*` (Debian's convention for new system accounts: `_apt`, `_chrony`, `_rpc`, `_ssh`, …).
pub const WELL_KNOWN_PREFIXES: &[(&str, &str)] = &[
    ("systemd-", "systemd's service users and groups"),
    (
        "_",
        "Debian's convention for package system accounts (_apt, _chrony, _ssh, …)",
    ),
];

/// Why `name` is reserved, if it is: the operator's list (`accounts.reserved_names`, names or
/// `prefix*`), the host's sysusers.d files (`sysusers`: name → file), or the built-in list.
pub fn reserved_why(
    name: &str,
    configured: &[String],
    sysusers: &std::collections::BTreeMap<String, std::path::PathBuf>,
) -> Option<String> {
    let configured_hit = configured.iter().find(|r| match r.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => r.as_str() == name,
    });
    if let Some(r) = configured_hit {
        return Some(format!(
            "`{name}` is reserved by accounts.reserved_names (`{r}`)"
        ));
    }
    if let Some(file) = sysusers.get(name) {
        return Some(format!(
            "`{name}` is named in {}: systemd-sysusers creates it for a package on this host, and would adopt an account made before it",
            file.display()
        ));
    }
    if let Some((_, source)) = WELL_KNOWN.iter().find(|(n, _)| *n == name) {
        return Some(format!(
            "`{name}` is a well-known system account or group ({source}): a package that arrives later would adopt an account and group of that name, with the rights it gives them"
        ));
    }
    WELL_KNOWN_PREFIXES
        .iter()
        .find(|(p, _)| name.starts_with(p))
        .map(|(p, source)| {
            format!("`{name}` starts with `{p}`, reserved for system accounts ({source})")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hostile values of accounts-lessons.md §6, each with its expected verdict.
    #[test]
    fn hostile_values_are_rejected_one_by_one() {
        let long33 = "a".repeat(33);
        let long256 = "b".repeat(256);
        let cases: &[(&str, Option<&str>)] = &[
            ("", Some("empty")),
            ("   ", Some("whitespace")),
            (" alice", Some("whitespace")),
            ("alice ", Some("whitespace")),
            ("Alice", Some("uppercase")),
            ("jöhn", Some("U+00F6")),
            ("\u{0430}lice", Some("starts with the character U+0430")), // Cyrillic а
            ("1234", Some("digit")),
            ("0day", Some("digit")),
            ("-g", Some("starts with `-`")),
            ("--help", Some("starts with `-`")),
            ("-o", Some("starts with `-`")),
            (".hidden", Some("starts with `.`")),
            (".", Some("starts with `.`")),
            ("..", Some("starts with `.`")),
            ("../root", Some("starts with `.`")),
            ("a/b", Some("`/`")),
            ("a:b", Some("`:`")),
            ("a,b", Some("`,`")),
            ("a=b", Some("`=`")),
            ("a+b", Some("`+`")),
            ("user@example.com", Some("`@`")),
            ("machine$", Some("`$`")),
            ("a;b", Some("`;`")),
            ("$(id)", Some("starts with `$`")),
            ("`id`", Some("starts with a backtick")),
            ("a b", Some("U+0020")),
            ("a\tb", Some("U+0009")),
            ("a\nb", Some("U+000A")),
            (long33.as_str(), Some("33 characters")),
            (long256.as_str(), Some("256 characters")),
            ("alice", None),
            ("_svc", None),
            ("ops-team_2", None),
        ];
        for (value, expect) in cases {
            let got = check_syntax(value);
            match (expect, &got) {
                (None, Ok(())) => {}
                (Some(needle), Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(needle), "{value:?}: {msg:?} lacks {needle:?}");
                }
                _ => panic!("{value:?}: expected {expect:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn exactly_32_characters_is_fine() {
        let name = format!("a{}", "b".repeat(31));
        assert_eq!(name.len(), 32);
        assert_eq!(check_syntax(&name), Ok(()));
    }

    #[test]
    fn reserved_names() {
        assert!(is_reserved("root"));
        assert!(is_reserved("ssm-user"));
        assert!(!is_reserved("alice"));
    }

    #[test]
    fn names_that_belong_to_the_system_now_or_later() {
        let none = std::collections::BTreeMap::new();
        for name in [
            "docker",
            "postgres",
            "www-data",
            "systemd-coredump",
            "_apt",
            "_chrony",
            "wheel",
            "sudo",
            "lxd",
            "admin",
            "nogroup",
        ] {
            assert!(reserved_why(name, &[], &none).is_some(), "{name}");
        }
        for name in ["alice", "bob", "dockerx", "ops-team_2", "postgresql-admin"] {
            assert_eq!(reserved_why(name, &[], &none), None, "{name}");
        }
        let why = reserved_why("docker", &[], &none).unwrap();
        assert!(why.contains("adopt"), "{why}");
        // The operator's list: names and prefixes.
        let configured = vec!["svc-*".to_string(), "deploy".to_string()];
        assert!(
            reserved_why("svc-backup", &configured, &none)
                .unwrap()
                .contains("svc-*")
        );
        assert!(reserved_why("deploy", &configured, &none).is_some());
        assert!(reserved_why("deployer", &configured, &none).is_none());
        // The host's sysusers.d files.
        let sysusers = [("myapp".to_string(), "/usr/lib/sysusers.d/myapp.conf".into())].into();
        assert!(
            reserved_why("myapp", &[], &sysusers)
                .unwrap()
                .contains("/usr/lib/sysusers.d/myapp.conf")
        );
        // Every built-in entry is itself a valid name (else it could never be asked for).
        for (n, _) in WELL_KNOWN {
            assert_eq!(check_syntax(n), Ok(()), "{n}");
        }
    }
}
