# ssm-companion %post ($1: 1 = first install, 2 or more = upgrade). Enables and starts the unit
# on first install; upgrades restart it in %postun. Without a running systemd (an image build in
# a chroot) the unit is only enabled.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
systemd-tmpfiles --create ssm-companion.conf >/dev/null 2>&1 || :
if [ "$1" -eq 1 ]; then
    systemctl enable ssm-companion.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl start ssm-companion.service || :
    fi
fi
