#!/bin/sh
# tests/need-package.sh HEADER PACKAGE WHAT: makes sure a library the build
# needs is installed (its HEADER under /usr/include or /usr/local/include);
# installs the Debian PACKAGE through apt-get when it can, otherwise says
# how in one sentence. WHAT says who needs it.
header=$1 package=$2 what=$3
for d in /usr/include /usr/local/include; do
    [ -f "$d/$header" ] && exit 0
done
if command -v apt-get >/dev/null 2>&1; then
    SUDO=
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO=sudo
    echo "$package is missing: installing it with apt-get ($what needs it)" >&2
    if { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$package"; } >/dev/null 2>&1; then
        exit 0
    fi
fi
echo "$what needs $package: install it (Debian/Ubuntu: apt-get install $package) and run make again." >&2
exit 1
