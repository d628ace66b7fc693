#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Install the Debian 12 packages the build and the QEMU harness need.
# Installs only what is missing; runs apt-get update only then.

set -eu

PKGS="make gcc libc6-dev kmod cpio gzip util-linux python3
      qemu-system-x86 busybox-static sparse gnuplot-nox
      python3-ply python3-git python3-docutils dkms xz-utils git linux-source-6.1 linux-source-6.12
      linux-image-amd64 linux-headers-amd64
      linux-image-6.12-amd64 linux-headers-6.12-amd64"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
		grep -q '^install ok installed$' || missing="$missing $p"
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages:$missing (run as root to install)" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
