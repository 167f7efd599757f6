#!/bin/bash
# private-userdb.sh STATE_DIR CMD [ARGS...]
#
# Runs CMD in a private user database: a mount namespace where /etc, /var/log and /var/mail are
# overlays whose upper layers live in STATE_DIR, /home is STATE_DIR/home and /run is a fresh
# tmpfs. Real shadow-utils, sudo, NSS and pwck see a private database; the host's files are never
# written. Calls with the same STATE_DIR see each other's changes (the upper layers persist).
# Needs root (CAP_SYS_ADMIN). See reference/test-harness.md §4.1.
#
# With PRIVATE_JOURNAL=1 the namespace also gets a private /dev (its own devpts instance, no
# kmsg) and its own systemd-journald on the fresh /run: syslog(3) from sudo and su lands in a
# journal that `journalctl` in the namespace reads. CMD then runs as a child; journald is
# stopped when it ends (or when this script gets SIGTERM), and CMD's status is returned. Other
# processes join with `nsenter --target <this script's PID> --mount`.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 STATE_DIR CMD [ARGS...]" >&2
    exit 64
fi
S=$(realpath -m "$1")
shift
mkdir -p "$S"/etc/{upper,work} "$S"/log/{upper,work} "$S"/mail/{upper,work} "$S/home"
# shellcheck disable=SC2016 # the script runs in the inner bash, which expands its variables
exec unshare --mount --propagation private -- /bin/bash -c '
    set -e
    S=$1; shift
    # Two calls on one STATE_DIR at the same moment (a daemon and a CLI call) raced: mounting an
    # overlay re-creates its work directory, and the other mount failed with "special device
    # overlay does not exist". The mounts are taken one call at a time.
    exec 9>"$S/.mount.lock"
    flock 9
    mount -t overlay overlay -o "lowerdir=/etc,upperdir=$S/etc/upper,workdir=$S/etc/work" /etc
    mount -t overlay overlay -o "lowerdir=/var/log,upperdir=$S/log/upper,workdir=$S/log/work" /var/log
    mount -t overlay overlay -o "lowerdir=/var/mail,upperdir=$S/mail/upper,workdir=$S/mail/work" /var/mail
    exec 9>&-
    mount --bind "$S/home" /home
    mount -t tmpfs tmpfs /run
    if [ "${PRIVATE_JOURNAL:-}" != 1 ]; then
        exec "$@"
    fi
    mkdir -p /run/systemd/journal /run/log/journal /run/sudo /run/hostdev
    mount --bind /dev /run/hostdev
    mount -t tmpfs -o mode=755 tmpfs /dev
    for d in null zero full random urandom tty; do
        touch "/dev/$d"
        mount --bind "/run/hostdev/$d" "/dev/$d"
    done
    mkdir /dev/pts /dev/shm
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
    ln -s pts/ptmx /dev/ptmx
    ln -s /proc/self/fd /dev/fd
    ln -s /run/systemd/journal/dev-log /dev/log
    umount -l /run/hostdev
    /lib/systemd/systemd-journald 2>/dev/null &
    J=$!
    for _ in $(seq 100); do
        [ -S /run/systemd/journal/dev-log ] && [ -S /run/systemd/journal/socket ] && break
        sleep 0.05
    done
    if ! [ -S /run/systemd/journal/dev-log ]; then
        echo "private-userdb.sh: systemd-journald did not start" >&2
        kill "$J"
        exit 1
    fi
    "$@" &
    C=$!
    trap "kill \$C 2>/dev/null" TERM INT
    rc=0
    wait "$C" || rc=$?
    # A signal interrupts the first wait: wait again for CMD to end.
    wait "$C" 2>/dev/null || true
    kill "$J" 2>/dev/null || true
    wait "$J" 2>/dev/null || true
    exit "$rc"
' userdb "$S" "$@"
