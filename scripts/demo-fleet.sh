#!/bin/bash
# The demo's fleet part (scripts/demo.sh runs it last; it also runs alone):
#   scripts/demo-fleet.sh [BINARY] [DIR]
# starts the AWS emulator with several accounts, seeds an organization with two member
# accounts and IAM Identity Center users (tests/emulator/fleet_seed.py), runs `ssm-companion
# publish` as the organization's management account would, then a host of a member account
# applies the signed mapping (accounts.source = "mapping") in a private user database: one S3
# read, no IAM call. This machine's own /etc, /home and journal are never changed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-$PWD/target/release/ssm-companion}
DEMO=${2:-$PWD/.demo}
FLEET=$DEMO/fleet
rm -rf "$FLEET"
mkdir -p "$FLEET/vendor"
[ -x .venv/bin/python ] || ./scripts/install-deps.sh
[ -x "$BIN" ] || cargo build --release --locked

echo "==> the fleet: a second emulator with several accounts (an organization, IAM Identity Center)"
.venv/bin/python tests/emulator/emulator.py --multi-account --log "$FLEET/emulator.log" \
    >"$FLEET/emulator.json" 2>"$FLEET/emulator.err" &
EMU=$!
trap 'kill $EMU 2>/dev/null || true' EXIT
for _ in $(seq 200); do
    [ -s "$FLEET/emulator.json" ] && break
    sleep 0.1
done
field() { .venv/bin/python -c 'import json,sys; v=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"v": v}))' "$@"; }
MOTO=$(field "$FLEET/emulator.json" 'v["moto"]')
IMDS=$(field "$FLEET/emulator.json" 'v["imds"]')
.venv/bin/python tests/emulator/fleet_seed.py --endpoint "$MOTO" --external-id demo >"$FLEET/seed.json"
MANAGEMENT=$(field "$FLEET/seed.json" 'v["management"]')
MEMBER=$(field "$FLEET/seed.json" 'v["members"][0]')
OTHER=$(field "$FLEET/seed.json" 'v["members"][1]')
KEY=$(field "$FLEET/seed.json" 'v["kms_key_id"]')
echo "    management account $MANAGEMENT (IAM user alice), members $MEMBER (IAM user carol;"
echo "    Identity Center: erin assigned directly, frank through the group platform) and $OTHER"
echo "    (IAM user dave; Identity Center: eve, who has no employee number)."
echo "    Identity Center's attribute for access control: SSMSessionRunAs = \${path:enterprise.employeeNumber}"

cat >"$FLEET/publish.toml" <<EOF
# Where publish runs: the organization's management account.
[aws]
endpoint_url = "$MOTO"
imds_endpoint = "$IMDS"

[publish]
bucket = "fleet-mapping"
kms_key_id = "$KEY"
organizations = true
identity_center = true
external_id = "demo"
EOF
export SSM_COMPANION_VENDOR_CONFIG_DIR="$FLEET/vendor"
echo; echo "==> ssm-companion publish   (every active account of the organization, IAM and Identity Center)"
"$BIN" --config "$FLEET/publish.toml" publish | sed 's/^/    /'
"$BIN" --config "$FLEET/publish.toml" publish --json >"$FLEET/publish.json"
field "$FLEET/publish.json" 'v["public_key"]' >"$FLEET/mapping.pem"
echo "    again: $(field "$FLEET/publish.json" '", ".join(a["account"] + " " + a["outcome"] for a in v["accounts"])')"

cat >"$FLEET/host.toml" <<EOF
# A host of account $MEMBER: it reads its account's signed mapping, never IAM.
[aws]
endpoint_url = "$MOTO"
imds_endpoint = "$IMDS"

[accounts]
source = "mapping"

[accounts.mapping]
bucket = "fleet-mapping"
account = "$MEMBER"
public_keys = ["$FLEET/mapping.pem"]

[paths]
state_dir = "$FLEET/state"
EOF
curl -fsS -X POST "$MOTO/_emulator/stats/reset" >/dev/null
echo; echo "==> a host of $MEMBER: ssm-companion accounts apply   (accounts.source = \"mapping\", in a private user database)"
./scripts/private-userdb.sh "$FLEET/db" "$BIN" --config "$FLEET/host.toml" accounts apply | sed 's/^/    /'
echo "    the host's AWS calls: $(curl -fsS "$MOTO/_emulator/stats")"
echo; echo "==> the host again: nothing to do (the manifest answers 304 Not Modified)"
./scripts/private-userdb.sh "$FLEET/db" "$BIN" --config "$FLEET/host.toml" accounts plan --detailed-exitcode | sed 's/^/    /'
