#!/bin/sh
# Install Debian's git-lfs when `git lfs` is missing (push/pull and their tests need it).
# Run as root (or with passwordless sudo). Safe to run again: does nothing when git-lfs works.
set -eu

if git lfs version >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "git-lfs is missing; install the Debian package git-lfs as root" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends git-lfs
git lfs version
