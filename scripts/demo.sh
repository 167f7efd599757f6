#!/bin/bash
# The demo on an embedded default: builds ssm-companion, starts the local AWS emulator (moto and
# a strict IMDSv2 stub) seeded with example IAM users and roles (examples/demo/seed.json), and
# runs the daemon against a private user database (a mount namespace with overlays over /etc,
# /var/log and /var/mail and a private /home). It prints the plan, lets the daemon sync twice
# while a stand-in Session Manager session starts, runs commands (a 1 ms one, a background job
# that outlives its shell) and sudo on its own pseudo-terminal and ends,
# and shows the accounts it made and the session's audit events (read from a private journald),
# then ships them to the emulator's S3 and queries the objects with DuckDB, and sends the alerts
# to its CloudWatch Logs. Last, the fleet (scripts/demo-fleet.sh): `publish` for an organization of
# three accounts with IAM Identity Center users, and a member account's host applying the signed
# mapping it wrote.
# This machine's own /etc, /home and journal are never changed.
# Run as root on Debian/Ubuntu. Everything it makes is under .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

echo "==> building ssm-companion (release)"
cargo build --release --locked
BIN=$PWD/target/release/ssm-companion
DEMO=$PWD/.demo
rm -rf "$DEMO"
mkdir -p "$DEMO/vendor"

echo "==> building the stand-in ssm-session-worker (tests/support/ssm-session-worker.c)"
gcc -O2 -o "$DEMO/ssm-session-worker" tests/support/ssm-session-worker.c -lutil

echo "==> starting the AWS emulator (moto + IMDSv2 stub) on loopback"
.venv/bin/python tests/emulator/emulator.py --log "$DEMO/emulator.log" >"$DEMO/emulator.json" 2>"$DEMO/emulator.err" &
EMU=$!
trap 'kill $EMU 2>/dev/null || true' EXIT
for _ in $(seq 200); do
    [ -s "$DEMO/emulator.json" ] && break
    sleep 0.1
done
MOTO=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["moto"])' "$DEMO/emulator.json")
IMDS=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["imds"])' "$DEMO/emulator.json")
echo "    moto at $MOTO, IMDSv2 at $IMDS"
.venv/bin/python tests/emulator/seed.py --endpoint "$MOTO" --file examples/demo/seed.json | sed 's/^/    /'
# The bucket the audit events are shipped to.
.venv/bin/python - "$MOTO" <<'PY'
import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
             aws_access_key_id="demo", aws_secret_access_key="demo").create_bucket(Bucket="demo-audit")
print("    bucket demo-audit created in the emulator's S3")
boto3.client("logs", endpoint_url=sys.argv[1], region_name="us-east-1",
             aws_access_key_id="demo", aws_secret_access_key="demo").create_log_group(logGroupName="/ssm-companion/audit")
print("    log group /ssm-companion/audit created in the emulator's CloudWatch Logs")
PY

cat >"$DEMO/config.toml" <<EOF
# The demo's configuration: the emulator's endpoints, a private state directory, and the
# settings an operator would set. Everything else is the default (see packaging/config.d/10-defaults.toml).
[aws]
endpoint_url = "$MOTO"
imds_endpoint = "$IMDS"

[accounts]
interval = "5s"
splay = "0s"
host_groups = ["web"]
allowed_groups = ["docker", "ops-sudo"]
sudo_group = "ops-sudo"

[audit]
enabled = true
rescan_interval = "1s"

[audit.s3]
bucket = "demo-audit"
max_delay = "2s"

# The alerts (the built-in rules: any sudo, a root shell, ...) to CloudWatch Logs, for alarms.
[audit.cloudwatch]
log_group = "/ssm-companion/audit"

[paths]
state_dir = "$DEMO/state"
# A stand-in for amazon-ssm-agent's state directory: the demo writes a session file there.
agent_state_dir = "$DEMO/agent"
EOF

export SSM_COMPANION_VENDOR_CONFIG_DIR="$DEMO/vendor"
# PRIVATE_JOURNAL=1: the namespace has its own journald and devpts, so sudo logs where the
# daemon reads, and the session's terminal is a real pts.
# shellcheck disable=SC2016 # the script runs in the inner bash, which expands its variables
PRIVATE_JOURNAL=1 ./scripts/private-userdb.sh "$DEMO/db" /bin/bash -c '
set -euo pipefail
BIN=$1; CFG=$2; DEMO=$3
ssmc() { "$BIN" --config "$CFG" "$@"; }
# What a typical host already has: a docker group and an image user.
getent group docker >/dev/null || groupadd --system docker
id ec2-user >/dev/null 2>&1 || useradd -m -s /bin/bash ec2-user

echo; echo "==> ssm-companion config check"
ssmc config check | sed "s/^/    /"
echo; echo "==> ssm-companion accounts plan   (what a sync would do; changes nothing)"
ssmc accounts plan
echo; echo "==> ssm-companion run   (the daemon: two syncs and a Session Manager session that runs sudo, then SIGTERM; its log is in .demo/daemon.log)"
"$BIN" --config "$CFG" run 2>"$DEMO/daemon.log" &
DAEMON=$!
# A stand-in session, as the agent runs one: a worker process with the session id as argv[1]
# and a shell on a pseudo-terminal as the Run As user (alice, made by the first sync), which runs
# sudo; its document-state file written to pending/, renamed into current/ while it runs,
# deleted when it ends.
DOCS="$DEMO/agent/i-0123456789abcdef0/document/state"
SID=alice-0c20c0d902585cf86
mkdir -p "$DOCS/pending" "$DOCS/current"
sleep 2
# The shell runs a 1 ms command, a background job that outlives it (its command runs after the
# shell has exited; SIGHUP ignored, as nohup would) and sudo: each is recorded by the exec
# capture, with the session and the IAM principal of alice.
"$DEMO/ssm-session-worker" "$SID" "setpriv --reuid=alice --regid=alice --init-groups /bin/sh -c \"trap \\\"\\\" HUP; sleep 1; /bin/sleep 0.001; (sleep 3; /bin/uname -r) </dev/null >/dev/null 2>&1 & sudo -n /usr/bin/systemctl --version >/dev/null; sleep 2\"" >/dev/null &
WORKER=$!
cat >"$DOCS/pending/$SID" <<JSON
{"DocumentInformation": {"DocumentID": "$SID", "InstanceID": "i-0123456789abcdef0",
  "DocumentName": "SSM-SessionManagerRunShell", "RunAsUser": "alice",
  "SessionOwner": "arn:aws:iam::123456789012:user/alice", "ProcInfo": {"Pid": $WORKER, "StartTime": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"}},
 "DocumentType": "StartSession",
 "InstancePluginsInformation": [{"Configuration": {"SessionId": "$SID", "PluginName": "Standard_Stream",
   "RunAsEnabled": true, "RunAsUser": "alice", "SessionOwner": "arn:aws:iam::123456789012:user/alice"}}]}
JSON
mv "$DOCS/pending/$SID" "$DOCS/current/$SID"
wait "$WORKER"
rm "$DOCS/current/$SID"
# The background job runs its command a second after the session ended.
sleep 3
echo "    [demo] ssm-companion audit flush   (ship everything spooled so far to S3 now)"
ssmc audit flush --timeout 60s | sed "s/^/    /"
kill -TERM "$DAEMON"
wait "$DAEMON"
sed "s/^/    [daemon] /" "$DEMO/daemon.log" | grep -v "^    \[daemon\] $" | head -n 40
echo; echo "==> ssm-companion accounts list"
ssmc accounts list
echo; echo "==> what the host sees"
for u in $(ssmc accounts list --json | python3 -c "import json,sys; print(\" \".join(a[\"name\"] for a in json.load(sys.stdin)[\"accounts\"]))"); do
    printf "    %-40s %s\n" "$(getent passwd "$u")" "$(id -nG "$u")"
done
echo "    sudo for alice: $(sudo -l -U alice | tail -n 1 | sed "s/^ *//")"
echo "    ec2-user (not ours, untouched): $(getent passwd ec2-user)"
echo; echo "==> ssm-companion accounts plan --detailed-exitcode   (exit 0: nothing left to do)"
ssmc accounts plan --detailed-exitcode >/dev/null && echo "    converged"
echo; echo "==> ssm-companion audit tail   (the session, its commands and its sudo, as OCSF events in the spool; --json prints them whole)"
ssmc audit tail | sed "s/^/    /"
echo; echo "==> ssm-companion audit status"
ssmc audit status | sed "s/^/    /"
' demo "$BIN" "$DEMO/config.toml" "$DEMO"

echo; echo "==> the objects in the emulator's S3 (Hive-style keys, gzip JSON Lines; copied to .demo/s3)"
.venv/bin/python - "$MOTO" "$DEMO/s3" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="demo", aws_secret_access_key="demo")
for o in s3.list_objects_v2(Bucket="demo-audit").get("Contents", []):
    path = os.path.join(sys.argv[2], o["Key"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s3.download_file("demo-audit", o["Key"], path)
    print(f"    s3://demo-audit/{o['Key']}  ({o['Size']} bytes)")
PY
echo; echo "==> the alerts in the emulator's CloudWatch Logs (a stream per instance; at least once)"
.venv/bin/python - "$MOTO" <<'PY'
import json, sys, boto3
logs = boto3.client("logs", endpoint_url=sys.argv[1], region_name="us-east-1",
                    aws_access_key_id="demo", aws_secret_access_key="demo")
group = "/ssm-companion/audit"
for st in logs.describe_log_streams(logGroupName=group).get("logStreams", []):
    name = st["logStreamName"]
    for e in logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True)["events"]:
        ev = json.loads(e["message"])
        print(f"    {group}/{name}: {ev.get('type_name')} {ev['metadata'].get('labels')} {ev.get('message')}")
PY
echo; echo "==> DuckDB over them, as Athena would read them (tests/support/duckdb_query.py)"
.venv/bin/python tests/support/duckdb_query.py "$DEMO/s3" \
    "SELECT instance_id, dt, type_name, coalesce(actor.user.name, actor.user.uid) AS who, message FROM audit ORDER BY time" |
    .venv/bin/python -c 'import json, sys
for r in json.load(sys.stdin):
    print("    " + " | ".join(str(r[k]) for k in ("instance_id", "dt", "type_name", "who", "message")))'

echo
# The fleet: publish for an organization (IAM and Identity Center), a host reads the mapping.
./scripts/demo-fleet.sh "$BIN" "$DEMO"

echo
echo "Done. The private user database is under .demo/db, the ledger under .demo/state;"
echo "this machine's own accounts were not touched. Run the tests with: ./scripts/test.sh"
