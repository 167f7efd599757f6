#!/bin/bash
# private-userdb.sh STATE_DIR CMD [ARGS...]
#
# Runs CMD in a private user database: a mount namespace where /etc, /var/log and /var/mail are
# overlays whose upper layers live in STATE_DIR, /home is STATE_DIR/home and /run is a fresh
# tmpfs. Real shadow-utils, sudo, NSS and pwck see a private database; the host's files are never
# written. Calls with the same STATE_DIR see each other's changes (the upper layers persist).
# Needs root (CAP_SYS_ADMIN). See reference/test-harness.md §4.1.
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
    mount -t overlay overlay -o "lowerdir=/etc,upperdir=$S/etc/upper,workdir=$S/etc/work" /etc
    mount -t overlay overlay -o "lowerdir=/var/log,upperdir=$S/log/upper,workdir=$S/log/work" /var/log
    mount -t overlay overlay -o "lowerdir=/var/mail,upperdir=$S/mail/upper,workdir=$S/mail/work" /var/mail
    mount --bind "$S/home" /home
    mount -t tmpfs tmpfs /run
    exec "$@"
' userdb "$S" "$@"
