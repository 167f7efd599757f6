#!/bin/sh
# Installs an aarch64 .deb in a full-system aarch64 VM (qemu-system-aarch64, TCG) running Debian 12
# with real systemd as PID 1, and checks that the service starts, reports READY, syncs accounts
# from the AWS emulator on this machine and records a stand-in session's command with the eBPF
# exec capture (config.d needs [audit] enabled = true). qemu-user cannot run the daemon (any thread creation
# hangs there, cross/README.md), so this is how the aarch64 package is tested.
#
#   scripts/aarch64-vm.sh DEB CONFIG_TOML WORKDIR
#
# CONFIG_TOML becomes /etc/ssm-companion/config.d/50-test.toml in the VM (written before the
# package is installed). The VM reaches this machine's 127.0.0.1 as 10.0.2.2 (qemu's user-mode
# network). Prints the VM's verdict and writes WORKDIR/console.log; exit 0 only when the check in
# the VM passed.
#
# The VM: Debian's arm64 kernel (linux-image-*-arm64, from apt), and as its root file system an
# initramfs made of the first stage of debootstrap for arm64 (scripts/debian-root.sh with
# DEBIAN_ROOT_ARCH=arm64, cached in target/debian-root-arm64) plus the virtio drivers, the package
# and the check. Its /init runs debootstrap's second stage (the packages' configuration, under
# emulation: the slow part), then systemd. Nothing is written outside WORKDIR and target/.
# Environment: AARCH64_VM_TIMEOUT (seconds, default 2400), AARCH64_VM_MEMORY (MiB, default 3072).
set -eu
cd "$(dirname "$0")/.."

die() { printf 'aarch64-vm.sh: %s\n' "$*" >&2; exit 1; }
log() { printf '==> %s\n' "$*"; }

[ $# -eq 3 ] || { echo "usage: $0 DEB CONFIG_TOML WORKDIR" >&2; exit 64; }
DEB=$1 CONFIG=$2 WORK=$3
[ -f "$DEB" ] || die "$DEB: no such package"
[ -f "$CONFIG" ] || die "$CONFIG: no such file"
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, apt)"
for tool in qemu-system-aarch64 cpio gzip; do
    command -v "$tool" >/dev/null || die "$tool is missing: run cross/install-toolchain.sh"
done

# The kernel: the version Debian's linux-image-arm64 points at, cached.
kdir=target/aarch64-vm-kernel
if [ ! -f "$kdir/.complete" ]; then
    dpkg --print-foreign-architectures | grep -qx arm64 || die "arm64 is not an apt architecture: run cross/install-toolchain.sh"
    pkg=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-arm64\).*/\1/p' | head -1)
    [ -n "$pkg" ] || die "no linux-image-*-arm64 in apt's lists (apt-get update?)"
    log "downloading $pkg:arm64"
    rm -rf "$kdir" && mkdir -p "$kdir"
    (cd "$kdir" && apt-get download -q "$pkg:arm64" >/dev/null 2>&1) || die "apt-get download $pkg:arm64 failed"
    dpkg-deb -x "$kdir"/*.deb "$kdir/x"
    rm -f "$kdir"/*.deb
    touch "$kdir/.complete"
fi
kver=$(ls "$kdir/x/lib/modules")
kernel=$kdir/x/boot/vmlinuz-$kver

DEBIAN_ROOT_ARCH=arm64 ./scripts/debian-root.sh target/debian-root-arm64

log "assembling the VM's root"
rm -rf "$WORK/root" && mkdir -p "$WORK"
cp -a target/debian-root-arm64 "$WORK/root"
root=$WORK/root
rm -f "$root/.complete"
# debootstrap --foreign leaves /proc as a symbolic link to the host's.
rm -f "$root/proc" && mkdir -p "$root/proc"
# Only the drivers the VM needs (virtio PCI, network, entropy): the whole tree is 290 MB.
mods=$kdir/x/lib/modules/$kver
(cd "$mods" && find kernel/drivers/virtio kernel/drivers/net/virtio_net.ko kernel/drivers/net/net_failover.ko \
    kernel/net/core/failover.ko kernel/drivers/char/hw_random -name '*.ko*') | while read -r m; do
    mkdir -p "$root/lib/modules/$kver/$(dirname "$m")"
    cp "$mods/$m" "$root/lib/modules/$kver/$m"
done
cp "$mods"/modules.order "$mods"/modules.builtin "$mods"/modules.builtin.modinfo "$root/lib/modules/$kver/"

cat >"$root/init" <<'EOF'
#!/bin/sh
# PID 1 until systemd: debootstrap's second stage (configures the packages), then systemd.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs devtmpfs /dev
started=$(date +%s)
echo "ssmc-vm: debootstrap second stage"
# Progress on the console every minute (it takes minutes under emulation).
(while sleep 60; do echo "ssmc-vm: ... $(tail -1 /var/log/second-stage.log)"; done) &
progress=$!
if ! /debootstrap/debootstrap --second-stage >/var/log/second-stage.log 2>&1; then
    tail -30 /var/log/second-stage.log
    echo "SSMC-VM-RESULT fail: debootstrap --second-stage failed"
    echo o >/proc/sysrq-trigger
fi
kill $progress
echo "ssmc-vm: second stage done in $(($(date +%s) - started)) s"
depmod -a "$(uname -r)"
umount /dev /sys /proc
exec /lib/systemd/systemd
EOF
chmod 755 "$root/init"

mkdir -p "$root/usr/local/sbin" "$root/etc/systemd/network" "$root/etc/systemd/system/multi-user.target.wants" \
    "$root/etc/systemd/system/network-online.target.wants" "$root/etc/ssm-companion/config.d"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n' >"$root/etc/systemd/network/10-vm.network"
ln -sf /lib/systemd/system/systemd-networkd.service "$root/etc/systemd/system/multi-user.target.wants/"
ln -sf /lib/systemd/system/systemd-networkd-wait-online.service "$root/etc/systemd/system/network-online.target.wants/"
echo "127.0.1.1 ssmc-vm" >>"$root/etc/hosts"
echo ssmc-vm >"$root/etc/hostname"
cp "$CONFIG" "$root/etc/ssm-companion/config.d/50-test.toml"
cp "$DEB" "$root/root/ssm-companion.deb"

cat >"$root/usr/local/sbin/ssmc-vm-check" <<'EOF'
#!/bin/sh
# The check, in the VM under systemd: install, READY, accounts synced, sandbox in force, the
# eBPF exec capture loaded and recording a stand-in session's command.
out() { echo "$*" >/dev/console; }
verdict() { out "SSMC-VM-RESULT $*"; systemctl --no-block poweroff; exit 0; }
fail() {
    journalctl -u ssm-companion --no-pager -o cat | tail -30 >/dev/console
    verdict "fail: $*"
}
out "ssmc-vm: $(uname -m), $(systemctl --version | head -1)"
dpkg -i /root/ssm-companion.deb >/root/dpkg.log 2>&1 || { cat /root/dpkg.log >/dev/console; fail "dpkg -i"; }
[ "$(systemctl is-enabled ssm-companion)" = enabled ] || fail "not enabled"
[ "$(systemctl show -p ActiveState --value ssm-companion)" = active ] || fail "not active after dpkg -i (READY)"
out "ssmc-vm: active, $(systemctl show -p StatusText --value ssm-companion)"
# Wait for what the daemon reports (its journal entry, written once useradd has exited), not
# for passwd to change: useradd writes group and gshadow after passwd.
reported() {
    journalctl -o cat MESSAGE_ID=a6f2c4d1b8e94c0e9d57c1f3e2b8a901 SSM_COMPANION_ACTION=create \
        "SSM_COMPANION_USER=$1" SSM_COMPANION_OUTCOME=done | grep -q .
}
i=0
until reported alice && reported bob; do
    i=$((i + 1)); [ $i -lt 300 ] || fail "the creates of alice and bob not reported within 300 s"; sleep 1
done
getent passwd alice >/dev/null && getent passwd bob >/dev/null || fail "alice and bob reported but missing"
[ "$(stat -c %U /home/alice)" = alice ] || fail "no home for alice"
pwck -r -q && grpck -r || fail "pwck/grpck"
pid=$(systemctl show -p MainPID --value ssm-companion)
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || fail "NoNewPrivs"
grep -q '^Seccomp:[[:space:]]*2' "/proc/$pid/status" || fail "no seccomp filter"
# chown, dac_override, fowner, kill; net_admin, sys_ptrace, perfmon, bpf (the exec capture).
grep -q '^CapBnd:[[:space:]]*000000c00008102b' "/proc/$pid/status" || fail "capability bounding set"
i=0
until [ -s /var/lib/ssm-companion/health.json ]; do
    i=$((i + 1)); [ $i -lt 120 ] || fail "no health.json within 120 s"; sleep 1
done
journalctl -u ssm-companion -o cat MESSAGE_ID=a6f2c4d1b8e94c0e9d57c1f3e2b8a901 | grep -q alice || fail "no account event in the journal"
# The exec capture (audit is on in the test's config): the eBPF program loads on this arm64
# kernel under the hardened unit, and a command of a stand-in session is recorded with its argv.
# The worker: a shell under the worker's name whose argv[1], the session id, is the script it runs.
i=0
until ssm-companion audit status --json | tr -d ' \n' | grep -q '"backend":"ebpf"'; do
    i=$((i + 1))
    [ $i -lt 120 ] || { ssm-companion audit status >/dev/console 2>&1; fail "the eBPF exec capture did not start"; }
    sleep 1
done
cp /bin/sh /tmp/ssm-session-worker
echo '/bin/echo marker-arm64 "two words"' >/tmp/vmtest-0a1b2c3d4e5f60718
(cd /tmp && ./ssm-session-worker vmtest-0a1b2c3d4e5f60718 >/dev/null) || fail "the stand-in session"
i=0
until ssm-companion audit tail --json | grep -F "marker-arm64 'two words'" | grep -q '"uid": *"vmtest-0a1b2c3d4e5f60718"'; do
    i=$((i + 1))
    [ $i -lt 120 ] || { ssm-companion audit tail >/dev/console 2>&1; fail "the session's command was not recorded"; }
    sleep 1
done
out "ssmc-vm: exec capture by ebpf: $(ssm-companion audit tail | grep marker-arm64 | head -1)"
verdict "ok: $(ssm-companion version | head -1); accounts alice and bob; exec capture by ebpf; $(systemctl show -p StatusText --value ssm-companion)"
EOF
chmod 755 "$root/usr/local/sbin/ssmc-vm-check"
cat >"$root/etc/systemd/system/ssmc-vm-check.service" <<'EOF'
[Unit]
Description=ssm-companion aarch64 package check
Wants=network-online.target
After=network-online.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/ssmc-vm-check
StandardOutput=journal+console
StandardError=journal+console
EOF
ln -sf /etc/systemd/system/ssmc-vm-check.service "$root/etc/systemd/system/multi-user.target.wants/"

log "packing the initramfs"
(cd "$root" && find . -xdev | cpio -o -H newc --quiet) | gzip -1 >"$WORK/initrd.gz"
rm -rf "$root"

log "booting the aarch64 VM (TCG; the log is $WORK/console.log)"
start=$(date +%s)
rc=0
timeout "${AARCH64_VM_TIMEOUT:-2400}" qemu-system-aarch64 -machine virt -cpu "${AARCH64_VM_CPU:-max,pauth-impdef=on}" -smp 2 \
    -m "${AARCH64_VM_MEMORY:-3072}" -nographic -no-reboot -kernel "$kernel" -initrd "$WORK/initrd.gz" \
    -append "console=ttyAMA0 panic=-1 rdinit=/init" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile= \
    </dev/null >"$WORK/console.log" 2>&1 || rc=$?
rm -f "$WORK/initrd.gz"
verdict=$(grep -a -o 'SSMC-VM-RESULT.*' "$WORK/console.log" | head -1 | tr -d '\r')
log "VM ran $(($(date +%s) - start)) s (qemu exit $rc): ${verdict:-no verdict}"
grep -a 'ssmc-vm:' "$WORK/console.log" | tr -d '\r' || true
case $verdict in
    "SSMC-VM-RESULT ok"*) exit 0 ;;
    *) tail -40 "$WORK/console.log" >&2; exit 1 ;;
esac
