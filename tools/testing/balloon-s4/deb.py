#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The balloon-s4-dkms Debian package: build it, and test it on the host.

  deb.py OUTDIR        build balloon-s4-dkms_<version>_all.deb in OUTDIR
                       with dpkg-buildpackage and run lintian on it

The package is built from debian/ the Debian way (debhelper, dh-dkms),
in a copy of the sources, so the tree stays clean. test() installs it
on this machine, checks what DKMS built for every kernel with headers,
upgrades it, purges it and checks the kernel's own modules are back.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

from sources import SOURCES as BUILD_SOURCES, copy_sources

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PKG = "balloon-s4-dkms"
MODULES = ("virtio_balloon", "hv_balloon", "hv_s4")
# The package is the out-of-tree build plus its debian/ directory.
SOURCES = BUILD_SOURCES + ["debian"]


class DebError(Exception):
    pass


def sh(*cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    return r.returncode, r.stdout.decode(errors="replace")


def version(root=ROOT):
    """PACKAGE_VERSION from dkms.conf, the one place the version lives."""
    with open(os.path.join(root, "dkms.conf")) as f:
        return re.search(r'^PACKAGE_VERSION="(.*)"', f.read(), re.M).group(1)


def _set_version(src, ver):
    """Give the copy in @src version @ver (dkms.conf and changelog)."""
    p = os.path.join(src, "dkms.conf")
    with open(p) as f:
        text = f.read()
    with open(p, "w") as f:
        f.write(re.sub(r'^PACKAGE_VERSION=".*"', 'PACKAGE_VERSION="%s"' % ver,
                       text, flags=re.M))
    p = os.path.join(src, "debian", "changelog")
    with open(p) as f:
        text = f.read()
    with open(p, "w") as f:
        f.write(re.sub(r"^balloon-s4 \([^)]*\)", "balloon-s4 (%s)" % ver,
                       text, count=1))


def build(outdir, ver=None):
    """Build the .deb in @outdir, as version @ver if given (for tests).

    Returns (path of the .deb, lintian's output). Raises DebError when
    dpkg-buildpackage fails.
    """
    ver = ver or version()
    os.makedirs(outdir, exist_ok=True)
    src = os.path.join(outdir, "balloon-s4-%s" % ver)
    copy_sources(src, SOURCES)
    if ver != version():
        _set_version(src, ver)
    rc, out = sh("dpkg-buildpackage", "-b", "-us", "-uc", cwd=src)
    deb = os.path.join(outdir, "%s_%s_all.deb" % (PKG, ver))
    with open(os.path.join(outdir, "build-%s.log" % ver), "w") as f:
        f.write(out)
    if rc or not os.path.exists(deb):
        raise DebError("dpkg-buildpackage failed:\n" + out[-3000:])
    shutil.rmtree(src)
    # The changes file too: lintian checks the changelog through it.
    changes = glob.glob(os.path.join(outdir, "balloon-s4_%s_*.changes" % ver))
    _, lint = sh("lintian", *(changes or [deb]))
    # Said whenever root runs it, as make check does; not about the package.
    lint = [ln for ln in lint.splitlines()
            if "running with root privileges" not in ln]
    return deb, "\n".join(lint).strip()


def kernels_with_headers():
    """Installed kernels with a build tree that dkms.conf accepts."""
    with open(os.path.join(ROOT, "dkms.conf")) as f:
        accept = re.search(r'^BUILD_EXCLUSIVE_KERNEL="(.*)"', f.read(),
                           re.M).group(1)
    return sorted(k for k in (b.split("/")[3] for b in
                              glob.glob("/lib/modules/*/build/include"))
                  if re.search(accept, k))


def modinfo(kver, mod, field):
    _, out = sh("modinfo", "-k", kver, "-F", field, mod)
    return out.strip()


def check_installed(ver):
    """Problems with what the package installed, for every kernel."""
    problems = []
    kvers = kernels_with_headers()
    if not kvers:
        return ["no installed kernel has headers"]
    for kver in kvers:
        want = "/lib/modules/%s/updates/dkms/" % kver
        for mod in MODULES:
            fn = modinfo(kver, mod, "filename")
            if not fn.startswith(want):
                problems.append("%s %s: modprobe would load %s" %
                                (kver, mod, fn or "nothing"))
                continue
            # Exactly once, also in hv_s4, which is built from two objects.
            v = modinfo(kver, mod, "version").split()
            if v != [ver]:
                problems.append("%s %s: version %s, want %s once" %
                                (kver, mod, " ".join(v) or "none", ver))
    return problems


def check_removed():
    """Problems left after a purge: DKMS copies, or no in-tree module."""
    problems = []
    _, st = sh("dkms", "status", "balloon-s4")
    if st.strip():
        problems.append("dkms still knows: " + st.strip())
    if os.path.exists("/usr/src/balloon-s4-%s" % version()):
        problems.append("/usr/src/balloon-s4-%s left behind" % version())
    for kver in kernels_with_headers():
        for mod in ("virtio_balloon", "hv_balloon"):
            fn = modinfo(kver, mod, "filename")
            if "/kernel/drivers/" not in fn:
                problems.append("%s %s resolves to %s, not the kernel's own"
                                % (kver, mod, fn or "nothing"))
    return problems


def purge():
    sh("dpkg", "--purge", PKG)


def test(outdir, record, log=print):
    """Build, install, upgrade and purge the package; one test each."""
    for tool in ("dpkg-buildpackage", "lintian", "dh_dkms", "dkms"):
        if not shutil.which(tool):
            record("deb build", False, "%s is not installed (make deps)"
                   % tool)
            return
    shutil.rmtree(outdir, ignore_errors=True)
    ver = version()
    try:
        deb, lint = build(outdir)
        deb2, _ = build(outdir, ver + "+bs4test1")
    except DebError as e:
        record("deb build", False, str(e))
        return
    record("deb build and lintian", not lint,
           lint or os.path.basename(deb) + ", lintian clean")
    # A leftover of an interrupted run would make dpkg's job an upgrade.
    purge()
    try:
        rc, out = sh("dpkg", "-i", deb)
        problems = ["dpkg -i failed:\n" + out[-2000:]] if rc else \
            check_installed(ver)
        record("deb install", not problems, "; ".join(problems) or
               "%d modules in updates/dkms for %s" %
               (len(MODULES), ", ".join(kernels_with_headers())))
        if rc:
            return
        rc, out = sh("dpkg", "-i", deb2)
        nver = ver + "+bs4test1"
        problems = ["upgrade failed:\n" + out[-2000:]] if rc else \
            check_installed(nver)
        _, st = sh("dkms", "status", "balloon-s4")
        if "balloon-s4/%s," % ver in st:
            problems.append("old version still in dkms: " + st.strip())
        record("deb upgrade", not problems, "; ".join(problems) or
               "rebuilt as %s" % nver)
    finally:
        rc, out = sh("dpkg", "--purge", PKG)
        problems = ["dpkg --purge failed:\n" + out[-2000:]] if rc else \
            check_removed()
        record("deb purge", not problems,
               "; ".join(problems) or "in-tree modules back")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        deb, lint = build(os.path.abspath(sys.argv[1]))
    except DebError as e:
        sys.exit(str(e))
    print(deb)
    print("lintian: " + (lint or "clean"))
    sys.exit(1 if lint else 0)


if __name__ == "__main__":
    main()
