# ssm-companion %postun ($1: 0 = removal, 1 or more = upgrade): restart on upgrade. Removal keeps
# the accounts ssm-companion made, /etc/sudoers.d/ssm-companion and the ledger in
# /var/lib/ssm-companion (see /usr/share/doc/ssm-companion/docs/usage/packaging.md).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart ssm-companion.service || :
    fi
fi
