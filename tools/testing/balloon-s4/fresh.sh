#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# make check-fresh: run the README's set-up and `make check` on a new
# Debian 12 machine, as root, the way a new user would.
#
# The machine is a chroot. A minimal Debian 12 root (debootstrap
# --variant=minbase, the smallest system apt can still manage) is built once
# and kept under $BS4_CACHE/fresh/base; every run starts from a fresh copy
# of it, so nothing a previous run installed or built can hide a missing
# package: the kernel trees, KUnit builds and the harness's own cache
# (/var/cache/balloon-s4 inside the root) are cold. Only downloads are
# saved: the host's /var/cache/apt/archives is hard-linked into the copy,
# and apt still installs every package.
#
# Usage: fresh.sh [REPO]   (default: the repository this script is in)
# Prints make check's last line and exits with its status.

set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=${1:-$(cd "$HERE/../../.." && pwd)}
CACHE=${BS4_CACHE:-/var/cache/balloon-s4}
TOP=$CACHE/fresh
BASE=$TOP/base
ROOT=$TOP/root
LOG=$TOP/check.log
MIRROR=${BS4_MIRROR:-http://deb.debian.org/debian}

if [ "$(id -u)" != 0 ]; then
	echo "check-fresh: must run as root (debootstrap, chroot)" >&2
	exit 1
fi
for t in debootstrap:debootstrap chroot:coreutils git:git; do
	command -v "${t%%:*}" >/dev/null 2>&1 || {
		echo "check-fresh: ${t%%:*} not found (package ${t#*:}; make deps)" >&2
		exit 1
	}
done

# Paths under $1 that are mount points, deepest first.
mounts_under() {
	awk -v p="$1" '$2 == p || index($2, p "/") == 1 { print $2 }' \
		/proc/self/mounts | sort -r
}

unmount_root() {
	for m in $(mounts_under "$ROOT"); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
}

# Never delete a tree that still has the host's /dev or /sys mounted in it.
remove_root() {
	unmount_root
	if [ -n "$(mounts_under "$ROOT")" ]; then
		echo "check-fresh: cannot unmount under $ROOT:" >&2
		mounts_under "$ROOT" >&2
		exit 1
	fi
	rm -rf "$ROOT"
}

mkdir -p "$TOP"
if [ ! -e "$BASE/.bs4-complete" ]; then
	echo "check-fresh: building a minimal Debian 12 root in $BASE"
	rm -rf "$BASE.tmp"
	mkdir -p "$TOP/debs"
	debootstrap --variant=minbase --cache-dir="$TOP/debs" \
		bookworm "$BASE.tmp" "$MIRROR"
	touch "$BASE.tmp/.bs4-complete"
	rm -rf "$BASE"
	mv "$BASE.tmp" "$BASE"
fi

remove_root
trap 'unmount_root' EXIT
trap 'exit 130' INT TERM
t0=$(date +%s)
cp -a "$BASE" "$ROOT"
rm -f "$ROOT/.bs4-complete"

# What the Debian installer leaves behind: main, security and updates.
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
deb $MIRROR bookworm-updates main
EOF
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# Saves downloads only: hard links, so apt in the root never touches the
# host's cache or its lock.
cp -al /var/cache/apt/archives/*.deb "$ROOT/var/cache/apt/archives/" \
	2>/dev/null || true

# A clean clone of HEAD: committed work only, no build products.
rev=$(git -C "$REPO" rev-parse HEAD)
git clone -q --no-checkout "$REPO" "$ROOT/root/balloon-s4"
git -C "$ROOT/root/balloon-s4" checkout -q --detach "$rev"
echo "check-fresh: $(git -C "$REPO" log -1 --format='%h %s' "$rev")"

mount -t proc proc "$ROOT/proc"
for d in sys dev; do
	mount --rbind "/$d" "$ROOT/$d"
	# Unmounting our copy must not unmount the host's /dev/pts and friends.
	mount --make-rslave "$ROOT/$d"
done

# The README's "On a new machine" set-up, then make check.
set +e
env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	chroot "$ROOT" /bin/sh -ec '
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		apt-get install -y -q make
		cd /root/balloon-s4
		make check
	' >"$LOG" 2>&1
rc=$?
set -e
t1=$(date +%s)
unmount_root

echo "check-fresh: log in $LOG, $(( (t1 - t0) / 60 )) min $(( (t1 - t0) % 60 )) s"
# make check's own last line; make adds its "Error" line after it.
last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOG" | tail -n 1)
if [ -z "$last" ]; then
	echo "check-fresh: make check did not finish; the log ends:"
	tail -n 20 "$LOG"
	[ "$rc" != 0 ] || rc=1
	exit "$rc"
fi
echo "$last"
case "$last" in
*" passed, 0 failed"*) ;;
*) [ "$rc" != 0 ] || rc=1 ;;
esac
exit "$rc"
