# ssm-companion %preun ($1: 0 = removal, 1 or more = upgrade): disable and stop the unit on
# removal only.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable ssm-companion.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop ssm-companion.service || :
    fi
fi
