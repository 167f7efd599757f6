#!/bin/bash
# systemd-ns.sh: boot real systemd as PID 1 in private namespaces, on this machine's own root fs.
#
#   systemd-ns.sh start STATE_DIR [UNIT_FILE...]   boot; prints the leader PID (host view) on stdout
#   systemd-ns.sh exec  STATE_DIR CMD [ARG...]     run CMD inside (systemctl, journalctl, dpkg, ...); CMD's rc
#   systemd-ns.sh stop  STATE_DIR                  power off, then remove every mount/cgroup/process
#   systemd-ns.sh status STATE_DIR                 print the leader PID and `is-system-running`; rc 1 if not up
#
# How it works (needs root with CAP_SYS_ADMIN; see reference/test-harness.md §6):
#   - a fresh cgroup `systemd-ns-<hash of STATE_DIR>` in the cgroup2 hierarchy (/sys/fs/cgroup/unified on
#     hybrid hosts, /sys/fs/cgroup on unified hosts) and, on hybrid hosts, in the v1 name=systemd hierarchy;
#   - `unshare --pid --mount --uts --ipc --cgroup [--net]` with private propagation: nothing is ever mounted
#     in the host's mount namespace and nothing on the host's file systems is written except STATE_DIR;
#   - a tmpfs root in which /etc, /usr, /var and /opt are overlays (lower = the host's directories,
#     upper = STATE_DIR/upper/...), /run, /tmp, /root, /home, /srv, /mnt, /media are tmpfs, /bin /sbin /lib
#     /lib64 are the merged-usr symlinks, a private /dev (tmpfs + bind-mounted null zero full random urandom
#     tty, new devpts instance, shm, mqueue), proc (with /proc/sys and /proc/sysrq-trigger read-only),
#     read-only sysfs and a private cgroup2 mount (rooted at our cgroup by the cgroup namespace);
#   - pivot_root into it, drop CAP_SYS_MODULE, SYS_TIME, SYS_RAWIO, SYSLOG, WAKE_ALARM, AUDIT_CONTROL, AUDIT_READ
#     from the bounding set (so no module loading, clock setting, host audit stream, debugfs),
#     and exec `/lib/systemd/systemd --system --unit=systemd-ns.target` with container=systemd-ns.
#     systemd-ns.target only pulls sysinit.target (journald, tmpfiles, sysusers, ...): none of the host's
#     enabled units (multi-user.target, timers.target, getty.target, ...) are started.
#
# UNIT_FILEs are copied into the container's /etc/systemd/system before boot (installed, not enabled or
# started: do that with `exec STATE_DIR systemctl enable --now NAME`). A directory argument is copied as is
# (e.g. foo.service.d/ drop-ins).
#
# STATE_DIR keeps, after stop: upper/{etc,usr,var,opt} (everything the container wrote, e.g. the journal
# under upper/var/log/journal/<machine-id>: `journalctl -D ...`), console.log (errors of the namespace
# set-up; systemd itself logs to the journal) and boot.log (boot time, failed units if degraded).
# Remove it with `rm -rf STATE_DIR` when done. Starting again with the same STATE_DIR reuses the upper
# layers (like a reboot; the machine-id changes); use a fresh STATE_DIR for a pristine system.
# STATE_DIR must not be under /etc, /usr, /var or /opt (overlayfs refuses an upper dir inside its lower dir).
#
# Environment:
#   SYSTEMD_NS_TIMEOUT=60        seconds `start` waits for running/degraded
#   SYSTEMD_NS_STOP_TIMEOUT=30   seconds `stop` waits for poweroff before SIGKILL-ing the namespace
#   SYSTEMD_NS_NET=host|private  host (default): share the host's network namespace (units can reach
#                                services on the host's 127.0.0.1); private: own netns with only lo
#   SYSTEMD_NS_BIND="SRC[:DST] ..."     host paths bind-mounted read-only inside (space separated)
#   SYSTEMD_NS_BIND_RW="SRC[:DST] ..."  same, read-write
#   SYSTEMD_NS_OVERLAY_EXTRA="DIR ..."  extra host top-level dirs to overlay (default: none)
#   SYSTEMD_NS_LOWER=DIR         a root file system (e.g. from debootstrap) to boot instead of the host's:
#                                its etc, usr, var, opt are the overlays' lower layers and its bin, sbin, lib*
#                                links or directories are used (default: the host's /)
# Files can also be passed in through stdin: `systemd-ns.sh exec S sh -c 'cat >/tmp/x.deb' <x.deb`.
set -euo pipefail

SELF=$(realpath "$0")
PROG=${0##*/}

die() { echo "$PROG: $*" >&2; exit 1; }
usage() {
    sed -n '2,7p' "$SELF" | sed 's/^# \{0,1\}//' >&2
    exit 64
}

[ $# -ge 2 ] || usage
CMD=$1
S=$(realpath -m "$2")
shift 2

[ "$(id -u)" = 0 ] || die "must run as root"

NAME=systemd-ns-$(printf '%s' "$S" | sha256sum | cut -c1-12)

cgroup2_root() {
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        echo /sys/fs/cgroup
    elif [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then
        echo /sys/fs/cgroup/unified
    else
        die "no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"
    fi
}

# cgroup dirs belonging to this container (existing ones only)
cgroup_dirs() {
    local c
    for c in "$(cgroup2_root)/$NAME" "/sys/fs/cgroup/systemd/$NAME"; do
        [ -d "$c" ] && echo "$c"
    done
    return 0
}

# A PID from STATE_DIR counts only while it is alive AND still in our cgroup (guards against PID reuse after a crash).
alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && grep -q "/$NAME\(/\|\$\)" "/proc/$1/cgroup" 2>/dev/null
}
readpid() {
    if [ -f "$S/$1" ]; then cat "$S/$1" 2>/dev/null || true; fi
}

# The leader is the first child of the unshare process (PID 1 inside the namespace).
find_leader() {
    local upid=$1 first=""
    read -r first _ <"/proc/$upid/task/$upid/children" 2>/dev/null || true
    echo "$first"
}

in_ns() {
    local leader=$1
    shift
    nsenter -t "$leader" -a -r -w \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        TERM="${TERM:-dumb}" SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

# ---------------------------------------------------------------------------------------------------------
# Runs as PID 1 of the new PID namespace, in the new mount namespace, before systemd.
ns_init() {
    local R=$S/root d src dst spec L
    : "${SYSTEMD_NS_OVERLAY_EXTRA:=}" "${SYSTEMD_NS_BIND:=}" "${SYSTEMD_NS_BIND_RW:=}" "${SYSTEMD_NS_LOWER:=}"
    L=${SYSTEMD_NS_LOWER%/}
    mount --make-rprivate /
    mkdir -p "$R"
    mount -t tmpfs -o mode=0755 "$NAME-root" "$R"
    for d in etc usr var opt $SYSTEMD_NS_OVERLAY_EXTRA; do
        [ -d "$L/$d" ] || continue
        mkdir -p "$R/$d" "$S/upper/$d" "$S/work/$d"
        mount -t overlay overlay -o "lowerdir=$L/$d,upperdir=$S/upper/$d,workdir=$S/work/$d" "$R/$d"
    done
    for d in bin sbin lib lib32 lib64 libx32; do
        if [ -L "$L/$d" ]; then
            ln -s "$(readlink "$L/$d")" "$R/$d"
        elif [ -d "$L/$d" ]; then # not merged-usr: read-only bind
            mkdir -p "$R/$d"
            mount --rbind "$L/$d" "$R/$d"
            mount -o remount,bind,ro "$R/$d"
        fi
    done
    for d in run tmp root home srv mnt media; do
        mkdir -p "$R/$d"
        case $d in
            tmp) mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/$d" ;;
            root) mount -t tmpfs -o mode=0700 tmpfs "$R/$d" ;;
            run) mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$R/$d" ;;
            *) mount -t tmpfs -o mode=0755 tmpfs "$R/$d" ;;
        esac
    done
    mkdir -p "$R/boot" "$R/proc" "$R/sys" "$R/dev"

    mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
    for d in sys sysrq-trigger; do
        [ -e "$R/proc/$d" ] || continue
        mount --bind "$R/proc/$d" "$R/proc/$d"
        mount -o remount,bind,ro,nosuid,nodev,noexec "$R/proc/$d"
    done
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
    mount -t cgroup2 -o rw,nosuid,nodev,noexec,nsdelegate cgroup2 "$R/sys/fs/cgroup" 2>/dev/null ||
        mount -t cgroup2 -o rw,nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"

    mount -t tmpfs -o mode=0755,nosuid "$NAME-dev" "$R/dev"
    for d in null zero full random urandom tty; do
        touch "$R/dev/$d"
        mount --bind "/dev/$d" "$R/dev/$d"
    done
    mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$R/dev/pts"
    ln -s pts/ptmx "$R/dev/ptmx"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
    mount -t mqueue -o nosuid,nodev,noexec mqueue "$R/dev/mqueue"
    ln -s /proc/self/fd "$R/dev/fd"
    ln -s /proc/self/fd/0 "$R/dev/stdin"
    ln -s /proc/self/fd/1 "$R/dev/stdout"
    ln -s /proc/self/fd/2 "$R/dev/stderr"
    # /dev/console: systemd writes its status lines there. A regular file is not a tty, so systemd falls
    # back to /dev/null for its stdio; its log still goes to the journal and, until journald is up, here.
    touch "$R/dev/console"
    mount --bind "$S/console.log" "$R/dev/console"

    for spec in $SYSTEMD_NS_BIND $SYSTEMD_NS_BIND_RW; do
        src=${spec%%:*}
        dst=${spec#*:}
        [ -e "$src" ] || { echo "systemd-ns: bind source $src missing" >&2; exit 1; }
        if [ -d "$src" ]; then mkdir -p "$R$dst"; else mkdir -p "$(dirname "$R$dst")"; touch "$R$dst"; fi
        mount --rbind "$src" "$R$dst"
        case " $SYSTEMD_NS_BIND " in
            *" $spec "*) mount -o remount,bind,ro "$R$dst" ;;
        esac
    done

    # identity: own hostname and machine-id (not first boot, so no systemd-firstboot prompt)
    hostname "$NAME"
    echo "$NAME" >"$R/etc/hostname"
    grep -q "[[:space:]]$NAME\$" "$R/etc/hosts" 2>/dev/null || printf '127.0.1.1\t%s\n' "$NAME" >>"$R/etc/hosts"
    rm -f "$R/etc/machine-id"
    tr -d '-' </proc/sys/kernel/random/uuid >"$R/etc/machine-id"

    # our boot target: sysinit.target only, nothing the host enabled
    mkdir -p "$R/etc/systemd/system"
    cat >"$R/etc/systemd/system/systemd-ns.target" <<'EOF'
[Unit]
Description=systemd-ns test boot target (sysinit only)
Requires=sysinit.target
After=sysinit.target
AllowIsolate=yes
EOF
    if [ -d "$S/units" ]; then
        cp -a "$S/units/." "$R/etc/systemd/system/"
    fi

    cd "$R"
    mkdir -p .oldroot
    pivot_root . .oldroot
    cd /
    umount -l /.oldroot
    rmdir /.oldroot
    exec env -i container=systemd-ns PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        setpriv --bounding-set -sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-audit_control,-audit_read \
        /lib/systemd/systemd --system --unit=systemd-ns.target \
        --show-status=no
}

# ---------------------------------------------------------------------------------------------------------
cleanup() {
    local upid leader c p
    upid=$(readpid unshare.pid)
    leader=$(readpid leader.pid)
    # 1. kill the whole PID namespace (SIGKILL to its init kills every process in it)
    for p in $leader $upid; do
        if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    # 2. anything left in our cgroups (e.g. a process moved there by hand)
    for _ in $(seq 1 50); do
        local -a left=()
        for c in $(cgroup_dirs); do
            # shellcheck disable=SC2207 # PIDs, one per line
            left+=($(find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null || true))
        done
        for p in $upid $leader; do
            if alive "$p"; then left+=("$p"); fi
        done
        [ ${#left[@]} -eq 0 ] && break
        kill -KILL "${left[@]}" 2>/dev/null || true
        sleep 0.1
    done
    # 3. remove the cgroup trees, leaves first
    for c in $(cgroup_dirs); do
        for _ in $(seq 1 50); do
            find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [ -d "$c" ] || break
            sleep 0.1
        done
        [ -d "$c" ] && echo "$PROG: could not remove cgroup $c" >&2
    done
    # 4. the root mount point lives only in the (now dead) mount namespace; remove the empty dir
    if mountpoint -q "$S/root" 2>/dev/null; then umount -l "$S/root" || true; fi
    rmdir "$S/root" 2>/dev/null || true
    rm -f "$S/unshare.pid" "$S/leader.pid"
    return 0
}

cmd_start() {
    local f upid leader state="" t0 deadline cg2 timeout=${SYSTEMD_NS_TIMEOUT:-60}
    case "$S/" in
        /etc/* | /usr/* | /var/* | /opt/*) die "STATE_DIR $S must not be under /etc, /usr, /var or /opt" ;;
    esac
    upid=$(readpid unshare.pid)
    alive "$upid" && die "a container is already running for $S (unshare pid $upid)"
    cleanup # leftovers of an earlier half-failed run
    cg2=$(cgroup2_root)
    [ -x "${SYSTEMD_NS_LOWER:-}/lib/systemd/systemd" ] || die "${SYSTEMD_NS_LOWER:-}/lib/systemd/systemd not found (apt-get install systemd)"
    mkdir -p "$S"
    rm -rf "$S/units"
    mkdir -p "$S/units"
    for f in "$@"; do
        [ -e "$f" ] || die "unit file $f not found"
        cp -a "$f" "$S/units/"
    done
    : >"$S/console.log"
    : >"$S/boot.log"

    mkdir "$cg2/$NAME"
    [ -d /sys/fs/cgroup/systemd ] && [ "$cg2" != /sys/fs/cgroup ] && mkdir -p "/sys/fs/cgroup/systemd/$NAME"

    local netflag=""
    case ${SYSTEMD_NS_NET:-host} in
        host) ;;
        private) netflag=--net ;;
        *) die "SYSTEMD_NS_NET must be host or private" ;;
    esac

    t0=$(date +%s%N)
    # setsid: own session, survives the caller; stdio to console.log
    # shellcheck disable=SC2016 # $$ and $1.. are expanded by the inner bash
    SYSTEMD_NS_OVERLAY_EXTRA=${SYSTEMD_NS_OVERLAY_EXTRA:-} SYSTEMD_NS_BIND=${SYSTEMD_NS_BIND:-} \
        SYSTEMD_NS_BIND_RW=${SYSTEMD_NS_BIND_RW:-} SYSTEMD_NS_LOWER=${SYSTEMD_NS_LOWER:-} \
        setsid bash -c '
            set -e
            echo $$ >"$1/cgroup.procs"
            [ -z "$2" ] || echo $$ >"$2/cgroup.procs"
            echo $$ >"$3/unshare.pid.tmp" && mv "$3/unshare.pid.tmp" "$3/unshare.pid"
            shift 3
            exec "$@"' _ "$cg2/$NAME" "$([ -d "/sys/fs/cgroup/systemd/$NAME" ] && echo "/sys/fs/cgroup/systemd/$NAME")" "$S" \
        unshare --pid --mount --uts --ipc --cgroup $netflag --propagation private --kill-child \
        "$SELF" __init "$S" </dev/null >>"$S/console.log" 2>&1 &
    disown $! 2>/dev/null || true
    # the launcher writes its own PID (it execs unshare) once it sits in our cgroup
    for _ in $(seq 1 100); do
        upid=$(readpid unshare.pid)
        [ -n "$upid" ] && break
        sleep 0.05
    done

    deadline=$(($(date +%s) + timeout))
    leader=""
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if ! alive "$upid"; then
            break
        fi
        if [ -z "$leader" ]; then
            leader=$(find_leader "$upid")
            [ -n "$leader" ] && echo "$leader" >"$S/leader.pid"
        fi
        # PID 1 is systemd once the init script has exec'ed it
        if [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ]; then
            state=$(in_ns "$leader" systemctl is-system-running 2>/dev/null || true)
            case $state in
                running | degraded) break ;;
            esac
        fi
        sleep 0.1
    done
    t0=$((($(date +%s%N) - t0) / 1000000))
    printf 'state=%s after %d.%03d s\n' "${state:-none}" $((t0 / 1000)) $((t0 % 1000)) >>"$S/boot.log"
    case $state in
        running | degraded) ;;
        *)
            echo "$PROG: boot failed (state '${state:-none}'); console output:" >&2
            tail -n 40 "$S/console.log" >&2 || true
            cleanup
            exit 1
            ;;
    esac
    if [ "$state" = degraded ]; then
        in_ns "$leader" systemctl --failed --no-legend >>"$S/boot.log" 2>&1 || true
    fi
    echo "$leader"
}

cmd_exec() {
    local leader
    [ $# -ge 1 ] || usage
    leader=$(readpid leader.pid)
    alive "$leader" || die "no container running for $S"
    in_ns "$leader" "$@"
}

cmd_status() {
    local leader
    leader=$(readpid leader.pid)
    alive "$leader" || { echo "stopped"; return 1; }
    echo "$leader $(in_ns "$leader" systemctl is-system-running 2>/dev/null || true)"
}

cmd_stop() {
    local upid leader deadline timeout=${SYSTEMD_NS_STOP_TIMEOUT:-30}
    upid=$(readpid unshare.pid)
    leader=$(readpid leader.pid)
    if alive "$leader" && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ]; then
        in_ns "$leader" systemctl poweroff --no-block >/dev/null 2>&1 || true
        deadline=$(($(date +%s) + timeout))
        while alive "$upid" || alive "$leader"; do
            [ "$(date +%s)" -ge "$deadline" ] && { echo "$PROG: poweroff timed out, killing" >&2; break; }
            sleep 0.1
        done
    fi
    cleanup
}

case $CMD in
    start) cmd_start "$@" ;;
    exec) cmd_exec "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    __init) ns_init ;;
    *) usage ;;
esac
