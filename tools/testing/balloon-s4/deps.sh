#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Install the Debian 12 packages that every target needs: the out-of-tree
# build, the kernel trees (series, W=1 and sparse builds, KUnit), DKMS and
# the QEMU harness. Installs only what is missing, runs apt-get update only
# then, and afterwards checks that every tool the tests call is on PATH.

set -eu

# Kernel builds (the trees and kunit.py) need flex, bison, bc, libelf-dev
# and libssl-dev; a new Debian 12 machine has none of them. dpkg-buildpackage
# (make deb, the Debian guest) refuses to run without build-essential.
PKGS="make gcc libc6-dev build-essential kmod cpio gzip xz-utils util-linux
      python3 perl git
      flex bison bc libelf-dev libssl-dev
      qemu-system-x86 busybox-static sparse gnuplot-nox dkms
      python3-ply python3-git python3-docutils
      linux-source-6.1 linux-source-6.12
      linux-image-amd64 linux-headers-amd64
      linux-image-6.12-amd64 linux-headers-6.12-amd64
      debootstrap dpkg-dev debhelper dh-dkms lintian qemu-utils e2fsprogs"

# Each tool the tests run, and the package that brings it.
TOOLS="make:make gcc:gcc depmod:kmod cpio:cpio gzip:gzip xz:xz-utils
       python3:python3 perl:perl git:git flex:flex bison:bison bc:bc
       qemu-system-x86_64:qemu-system-x86 sparse:sparse gnuplot:gnuplot-nox
       dkms:dkms rst2pseudoxml:python3-docutils debootstrap:debootstrap
       dpkg-buildpackage:dpkg-dev dh:debhelper dh_dkms:dh-dkms lintian:lintian
       qemu-img:qemu-utils mkfs.ext4:e2fsprogs"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
		grep -q '^install ok installed$' || missing="$missing $p"
done

if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing Debian packages:$missing (run as root to install)" >&2
		exit 1
	fi
	echo "deps: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing
fi

bad=""
for t in $TOOLS; do
	cmd=${t%%:*}
	command -v "$cmd" >/dev/null 2>&1 ||
		command -v "$cmd.py" >/dev/null 2>&1 ||
		bad="$bad $cmd (package ${t#*:})"
done
if [ -n "$bad" ]; then
	echo "deps: not found after installing:$bad" >&2
	exit 1
fi
for h in /usr/include/libelf.h /usr/include/openssl/ssl.h; do
	[ -e "$h" ] || { echo "deps: $h is missing (libelf-dev, libssl-dev)" >&2; exit 1; }
done

# The newest kernel in Debian sid (7.2 today), for its build tree, series,
# KUnit and guest: fetched through a private apt list under $BS4_CACHE,
# never the system's sources. A second run downloads nothing. Without a
# network the tests that need it fail on their own; the rest still run.
python3 "$(dirname "$0")/fetch_sid.py" >/dev/null ||
	echo "deps: could not fetch the sid kernel (see above)" >&2
