#!/bin/sh
# Makes sure cmocka (the test framework) is installed; installs it through
# apt-get when it can, otherwise says how in one sentence.
for d in /usr/include /usr/local/include; do
    [ -f "$d/cmocka.h" ] && exit 0
done
if command -v apt-get >/dev/null 2>&1; then
    SUDO=
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO=sudo
    echo "cmocka is missing: installing libcmocka-dev with apt-get" >&2
    if { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libcmocka-dev; } >/dev/null 2>&1; then
        exit 0
    fi
fi
echo "The tests need cmocka: install it (Debian/Ubuntu: apt-get install libcmocka-dev) and run make test again." >&2
exit 1
