#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The debug guest kernel: the patched 6.12 tree with the checkers on.

The tree is series.tree_dir("6.12") at branch bs4, with the series
applied (kernel_checks.KernelChecks.prepare() puts it there). The
configuration is debug.config alone on an otherwise empty .config, then
olddefconfig, as kunit.py starts its kernels: a small kernel that builds
in minutes, not a distribution's. Every symbol the fragment names must
come out of olddefconfig with the value written there.

Everything lives under $BS4_CACHE/debug-6.12: the object tree (obj/),
the modules installed for the initramfs (modules/lib/modules/RELEASE)
and a stamp naming the tree's HEAD and the fragment's hash it was built
from. With the stamp current nothing runs; otherwise the build is an
incremental make in obj/.

  debug_kernel.py          build if need be, print what to boot
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "series"))

import series                                        # noqa: E402

TARGET = "6.12"
FRAGMENT = os.path.join(HERE, "debug.config")
BASE = os.path.join(series.CACHE, "debug-" + TARGET)
OBJ = os.path.join(BASE, "obj")
STAGE = os.path.join(BASE, "modules")
STAMP = os.path.join(BASE, "stamp")
LOG = os.path.join(BASE, "build.log")
JOBS = str(os.cpu_count() or 2)

# Beside QEMU guests of the same run: a guest starved of its core fails
# on timing, a build that waits only takes longer.
NICE = ["nice", "-n", "10"]


class DebugKernelError(Exception):
    pass


def config_values(text):
    """{CONFIG_FOO: value} of a .config or fragment; "n" for the lines
    that say a symbol is not set."""
    vals = {}
    for line in text.splitlines():
        m = re.match(r"^(CONFIG_\w+)=(.*)$", line)
        if m:
            vals[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^# (CONFIG_\w+) is not set$", line)
        if m:
            vals[m.group(1)] = "n"
    return vals


def dropped(fragment, config):
    """The fragment's symbols that @config does not have as written, as
    "CONFIG_FOO=y (now n)" strings."""
    have = config_values(config)
    return ["%s=%s (now %s)" % (sym, want, have.get(sym, "n"))
            for sym, want in config_values(fragment).items()
            if have.get(sym, "n") != want]


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _info(built, secs):
    with open(os.path.join(OBJ, "include", "config", "kernel.release")) as f:
        kver = f.read().strip()
    return {"kver": kver, "kdir": OBJ, "built": built, "secs": secs,
            "vmlinuz": os.path.join(OBJ, "arch", "x86", "boot", "bzImage"),
            "modules": os.path.join(STAGE, "lib", "modules", kver)}


def _current(stamp):
    """True if the last build was made from @stamp and left its files."""
    try:
        with open(STAMP) as f:
            if f.read() != stamp:
                return False
        info = _info(False, 0)
    except OSError:
        return False
    return os.path.exists(info["vmlinuz"]) and os.path.exists(
        os.path.join(info["modules"], "modules.dep"))


def _make(tree, args, logf):
    """make in @tree for the object tree, output appended to @logf."""
    cmd = NICE + ["make", "-C", tree, "O=" + OBJ, "-j" + JOBS,
                  # Set, even if empty: else a git tree's release gets "+".
                  "LOCALVERSION="] + args
    logf.write("$ %s\n" % " ".join(cmd))
    logf.flush()
    r = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT)
    if r.returncode:
        logf.flush()
        with open(LOG, errors="replace") as f:
            tail = "\n".join(f.read().splitlines()[-30:])
        raise DebugKernelError("make %s failed (rc %d), see %s:\n%s" % (
            " ".join(args), r.returncode, LOG, tail))


def build(log=print):
    """The debug kernel for the tree as it is, built if need be.

    Returns {"kver", "vmlinuz", "kdir" (the object tree, for out-of-tree
    modules), "modules" (the installed modules' directory), "built"
    (False: the cached kernel was current), "secs"}. Raises
    DebugKernelError with the reason when there is none.
    """
    tree = series.tree_dir(TARGET)
    if not os.path.isdir(os.path.join(tree, ".git")):
        raise DebugKernelError("no %s tree at %s: the series was never "
                               "applied (run.py check prepares it)" %
                               (TARGET, tree))
    branch = series.git(tree, "rev-parse", "--abbrev-ref", "HEAD",
                        capture=True).strip()
    if branch != "bs4":
        raise DebugKernelError("%s is at %s, not at the series (bs4)" %
                               (tree, branch))
    # A mutant left behind would be built into the kernel unseen.
    if series.git(tree, "diff", "--quiet", "HEAD", check=False):
        raise DebugKernelError("%s has local changes" % tree)
    head = series.git(tree, "rev-parse", "HEAD", capture=True).strip()
    stamp = "tree %s\nfragment %s\n" % (head, _sha256(FRAGMENT))
    if _current(stamp):
        return _info(False, 0)

    t0 = time.monotonic()
    cold = not os.path.exists(os.path.join(OBJ, "vmlinux"))
    log("debug kernel: %s build of %s at %s with %s" % (
        "cold" if cold else "incremental", tree, head[:12],
        os.path.relpath(FRAGMENT, ROOT)))
    os.makedirs(OBJ, exist_ok=True)
    if os.path.exists(STAMP):
        os.unlink(STAMP)
    with open(FRAGMENT) as f:
        fragment = f.read()
    with open(LOG, "w") as logf:
        # The fragment alone, then the defaults of everything else: the
        # same .config from the same tree, so make rebuilds only what a
        # change of the tree or the fragment touched.
        with open(os.path.join(OBJ, ".config"), "w") as f:
            f.write(fragment)
        _make(tree, ["olddefconfig"], logf)
        with open(os.path.join(OBJ, ".config")) as f:
            lost = dropped(fragment, f.read())
        if lost:
            raise DebugKernelError(
                "olddefconfig did not keep %d symbols of %s (a dependency "
                "missing, or renamed in this tree): %s" % (
                    len(lost), os.path.basename(FRAGMENT), ", ".join(lost)))
        _make(tree, ["bzImage", "modules"], logf)
        shutil.rmtree(STAGE, ignore_errors=True)
        # depmod runs here too: vm.build_initramfs reads modules.dep.
        _make(tree, ["INSTALL_MOD_PATH=" + STAGE, "modules_install"], logf)
    secs = time.monotonic() - t0
    with open(STAMP, "w") as f:
        f.write(stamp)
    info = _info(True, secs)
    log("debug kernel: %s built in %.0fs" % (info["kver"], secs))
    return info


def main():
    try:
        info = build()
    except DebugKernelError as e:
        raise SystemExit("debug kernel: %s" % e)
    for k in ("kver", "vmlinuz", "modules", "kdir"):
        print("%-8s %s" % (k, info[k]))


if __name__ == "__main__":
    main()
