#!/bin/sh
# Install Debian's chromium when /usr/bin/chromium is missing (the browser tests drive it through
# Playwright). Run as root (or with passwordless sudo). Safe to run again: does nothing when present.
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "chromium is missing; install the Debian package chromium as root" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium
/usr/bin/chromium --version
