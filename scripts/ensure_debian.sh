#!/bin/sh
# Install a Debian package when a check command fails; does nothing when the check passes.
#   sh scripts/ensure_debian.sh "git lfs version" git-lfs     # push/pull and their tests
#   sh scripts/ensure_debian.sh "test -x /usr/bin/chromium" chromium   # the browser tests
# Run as root (or with passwordless sudo).
set -eu
check=$1
package=$2

if sh -c "$check" >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "$package is missing; install the Debian package $package as root" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "$package"
sh -c "$check"
