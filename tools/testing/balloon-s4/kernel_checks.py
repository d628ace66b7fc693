# SPDX-License-Identifier: GPL-2.0-only
"""The patch series in real kernel trees: the checks make check runs.

For each target (Debian's linux-source 6.1 and 6.12, and the newest
linux-source in Debian sid, 7.2 today): generate the series, git am it
onto the pristine tree, checkpatch --strict every patch, build the
touched directories with the drivers =y and =m under W=1, run sparse and
kernel-doc on the project's files, and run both KUnit suites in one
kunit.py kernel (KASAN, UBSAN and lockdep on). The upstream-facing sid
series is also built at every patch. Trees and build directories live
under $BS4_CACHE so that a second run is incremental.
"""

import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "series"))

import series                                        # noqa: E402
import fetch_sid                                     # noqa: E402

JOBS = str(os.cpu_count() or 2)

# Files of ours in the series, and the directories that hold them.
OUR_FILES = [
    "drivers/virtio/virtio_balloon.c",
    "drivers/virtio/tests/virtio_balloon_kunit.c",
    "drivers/hv/hv_balloon.c",
    "drivers/hv/tests/hv_balloon_kunit.c",
    "drivers/hv/tests/hv_balloon_qemu_kunit.c",
    "drivers/hv/tests/hv_balloon_fuzz_kunit.c",
]
BUILD_DIRS = ["drivers/virtio/", "drivers/hv/"]
KUNITCONFIGS = ["drivers/virtio/tests/.kunitconfig",
                "drivers/hv/tests/.kunitconfig"]
DOCS = ["Documentation/virt/balloon-hibernation.rst"]

# A KUnit case passes on its assertions; these in the kernel log fail the
# run too (UBSAN and lockdep do not fail the running case themselves).
BAD_KLOG = re.compile(r"BUG: |UBSAN: |WARNING: (?!.*Processor Platform)|"
                      r"possible circular locking|possible recursive locking|"
                      r"inconsistent lock state|Call Trace:|kmemleak")

# Options for the =y and =m builds, on top of x86_64_defconfig.
COMMON_OPTS = ["-e", "VIRTIO_MENU", "-e", "VIRTIO_PCI", "-e", "HIBERNATION",
               "-e", "COMPACTION", "-e", "HYPERVISOR_GUEST",
               "-e", "MEMORY_HOTPLUG", "-e", "VIRTIO_BALLOON_KUNIT_TEST",
               "-e", "HYPERV_BALLOON_KUNIT_TEST"]
# HYPERV_VMBUS exists from 7.x on; olddefconfig drops it from older trees.
BUILD_OPTS = {
    "y": COMMON_OPTS + ["-e", "KUNIT", "-e", "VIRTIO_BALLOON",
                        "-e", "HYPERV", "-e", "HYPERV_VMBUS",
                        "-e", "HYPERV_BALLOON"],
    "m": COMMON_OPTS + ["-m", "KUNIT", "-m", "VIRTIO_BALLOON",
                        "-m", "HYPERV", "-m", "HYPERV_VMBUS",
                        "-m", "HYPERV_BALLOON"],
}

# kunit.py's QEMU on TCG only: see tcg/qemu-system-x86_64.
KUNIT_ENV = dict(os.environ, PATH=os.path.join(HERE, "tcg") + ":" +
                 os.environ["PATH"])

# Debian's python3 has the modules checkpatch's spdxcheck.py needs.
SYS_ENV = dict(os.environ, PATH="/usr/bin:/bin:" + os.environ["PATH"])


def kunit_timeout(bdir):
    """Seconds the KUnit kernel may run: three times what its last clean
    run took, plus a minute, since QEMU guests of the same run may share
    the CPUs; 960 s when unknown. A wedged kernel then fails in about
    that time, not after the 90-minute cap."""
    try:
        with open(bdir + ".secs") as f:
            last = float(f.read())
    except (OSError, ValueError):
        last = 300
    return int(3 * last + 60)


# The KUnit kernel's command line. An oops ends the VM at once
# (-no-reboot). Page poisoning gives free pages a pattern, so the virtio
# suite's feature negotiation keeps PAGE_POISON, as on a guest that poisons.
KUNIT_KERNEL_ARGS = ["--kernel_args=oops=panic", "--kernel_args=panic=-1",
                     "--kernel_args=page_poison=1"]


def run(cmd, cwd=None, env=None, timeout=3600):
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace")


def ours(line):
    return any(f in line for f in OUR_FILES)


class KernelChecks:
    def __init__(self, record, log):
        self.record, self.log = record, log
        self.times = {}

    def prepare(self, t):
        """Generate the series and git am it; returns the patch paths."""
        try:
            paths = series.generate(t)
        except (subprocess.CalledProcessError, SystemExit) as e:
            self.record("series %s: generate" % t, False, str(e))
            return None
        self.record("series %s: generate" % t, True,
                    "%d patches" % (len(paths) - 1))
        ok, msg = series.apply(t)
        self.record("series %s: git am" % t, ok, msg[-2000:])
        return paths if ok else None

    def targets(self):
        """Debian 12's targets, then sid's newest (fetched on demand; a
        failure to fetch it is recorded, not fatal)."""
        try:
            return list(series.targets(self.log))
        except (SystemExit, OSError, subprocess.SubprocessError) as e:
            self.record("series sid: fetch the newest kernel", False, str(e))
            return list(series.DISTRO_TARGETS)

    def target(self, t):
        """Every check for one target but KUnit."""
        paths = self.prepare(t)
        if not paths:
            return False
        self.checkpatch(t, paths[1:])
        for mode in ("y", "m"):
            self.build(t, mode)
        if series.upstream(t):
            self.every_patch(t, len(paths) - 1)
        self.kerneldoc(t)
        self.rst(t)
        return True

    def every_patch(self, t, n):
        """The upstream series builds (=m, W=1, no new warning in our
        files) after each of its @n patches, not only at the end."""
        tree = series.tree_dir(t)
        obj = os.path.join(series.CACHE, "obj-%s" % t)
        bad = []
        t0 = time.monotonic()
        try:
            for i in range(n, 0, -1):
                rev = "bs4~%d" % (i - 1)
                series.git(tree, "checkout", "-q", rev)
                rc, out = run(["make", "-C", tree, "O=" + obj, "-j" + JOBS,
                               "W=1", "olddefconfig"] + BUILD_DIRS)
                mine = [ln for ln in out.splitlines() if ours(ln) and
                        re.search(r"\b(warning|error):", ln)]
                if rc or mine:
                    bad.append("after patch %d:\n%s" % (
                        n - i + 1, "\n".join(mine[:10]) or out[-2000:]))
        finally:
            series.git(tree, "checkout", "-q", "bs4")
        self.record("series %s: builds at every patch" % t, not bad,
                    "\n".join(bad) if bad else "%d patches, %.0fs" % (
                        n, time.monotonic() - t0))

    def checkpatch(self, t, patches):
        tree = series.tree_dir(t)
        totals = [0, 0, 0]
        bad = []
        for p in patches:
            _, out = run(["perl", "scripts/checkpatch.pl", "--strict", p],
                         cwd=tree, env=SYS_ENV)
            m = re.search(r"total: (\d+) errors, (\d+) warnings, "
                          r"(\d+) checks", out)
            if not m:
                bad.append("%s: no verdict\n%s" % (os.path.basename(p),
                                                   out[-1000:]))
                continue
            counts = [int(x) for x in m.groups()]
            totals = [a + b for a, b in zip(totals, counts)]
            if counts[0] or counts[1]:
                bad.append("%s:\n%s" % (os.path.basename(p), "\n".join(
                    ln for ln in out.splitlines()
                    if re.match(r"(ERROR|WARNING):", ln))))
        self.record("series %s: checkpatch --strict" % t, not bad,
                    "%d errors, %d warnings, %d checks in %d patches%s"
                    % (totals[0], totals[1], totals[2], len(patches),
                       ("\n" + "\n".join(bad)) if bad else ""))

    def _configure(self, t, mode, obj):
        tree = series.tree_dir(t)
        os.makedirs(obj, exist_ok=True)
        rc, out = run(["make", "-C", tree, "O=" + obj, "x86_64_defconfig"])
        if rc:
            return out
        opts = list(BUILD_OPTS[mode])
        # 7.x made HYPERV (the core) a bool; VMBus and the drivers are
        # the modules there.
        with open(os.path.join(tree, "drivers/hv/Kconfig")) as f:
            if re.search(r"^config HYPERV\n\tbool", f.read(), re.M):
                opts[opts.index("HYPERV") - 1] = "-e"
        rc, out = run([os.path.join(tree, "scripts/config"), "--file",
                       os.path.join(obj, ".config")] + opts)
        if rc:
            return out
        rc, out = run(["make", "-C", tree, "O=" + obj, "olddefconfig"])
        if rc:
            return out
        with open(os.path.join(obj, ".config")) as f:
            cfg = f.read()
        for sym in ("VIRTIO_BALLOON", "HYPERV_BALLOON"):
            want = "CONFIG_%s=%s" % (sym, mode)
            if want not in cfg:
                return "%s not set after olddefconfig" % want
        return None

    def build(self, t, mode):
        """W=1 build of the touched directories, then sparse on ours."""
        tree = series.tree_dir(t)
        obj = os.path.join(series.CACHE, "obj-%s" % t)
        t0 = time.monotonic()
        err = self._configure(t, mode, obj)
        if err:
            self.record("build %s =%s W=1" % (t, mode), False, err[-2000:])
            return
        stamp = time.time()
        rc, out = run(["make", "-C", tree, "O=" + obj, "-j" + JOBS, "W=1"]
                      + BUILD_DIRS)
        stale = [f for f in OUR_FILES if "/tests/" not in f and not (
            os.path.exists(os.path.join(obj, f[:-2] + ".o")) and
            os.path.getmtime(os.path.join(obj, f[:-2] + ".o")) >= stamp)]
        warns = [ln for ln in out.splitlines()
                 if re.search(r"\b(warning|error):", ln)]
        mine = [ln for ln in warns if ours(ln)]
        others = sorted({re.sub(r":\d+(:\d+)?: .*", "", ln).split(
            "/linux-")[-1].split("/", 1)[-1] for ln in warns if not ours(ln)})
        detail = "%d warnings in our files, %d elsewhere in %s%s, %.0fs" % (
            len(mine), len(warns) - len(mine), " ".join(BUILD_DIRS),
            (" (" + ", ".join(others) + ")") if others else "",
            time.monotonic() - t0)
        if rc:
            detail += "\n" + out[-3000:]
        elif mine:
            detail += "\n" + "\n".join(mine[:20])
        if stale:
            detail += "\nnot rebuilt: " + " ".join(stale)
        self.record("build %s =%s W=1" % (t, mode),
                    rc == 0 and not mine and not stale, detail)

        if mode != "y":
            return
        objs = [f[:-2] + ".o" for f in OUR_FILES if "/tests/" not in f]
        rc, out = run(["make", "-C", tree, "O=" + obj, "C=2", "W=1",
                       "CHECK=" + self.checker(tree)] + objs)
        found = [ln for ln in out.splitlines()
                 if ours(ln) and re.search(r"(warning|error):", ln)]
        checked = [f for f in OUR_FILES if "/tests/" not in f and
                   re.search(r"CHECK\s+\S*%s" % re.escape(f), out)]
        self.record("sparse %s C=2" % t,
                    rc == 0 and not found and len(checked) == len(objs),
                    "%d files checked, %d warnings in our files%s" % (
                        len(checked), len(found),
                        ("\n" + "\n".join(found[:20])) if found else ""))

    def checker(self, tree):
        """Debian 12's sparse, or where @tree's kernel wants a newer one
        (7.x checks for __typeof_unqual__), sid's, built from source."""
        rc, out = run(["sh", os.path.join(tree, "scripts/checker-valid.sh"),
                       "sparse"]) if os.path.exists(os.path.join(
                           tree, "scripts/checker-valid.sh")) else (0, "1")
        if rc == 0 and out.strip() == "1":
            return "sparse"
        return fetch_sid.sparse(self.log)

    def kerneldoc(self, t):
        tree = series.tree_dir(t)
        _, usage = run(["perl", "scripts/kernel-doc", "-h"], cwd=tree)
        extra = ["-Wall"] if "-Wall" in usage else []
        rc, out = run(["perl", "scripts/kernel-doc", "-none"] + extra
                      + OUR_FILES, cwd=tree)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        self.record("kernel-doc %s" % t, rc == 0 and not lines,
                    "%d warnings%s" % (len(lines), ("\n" + "\n".join(
                        lines[:20])) if lines else ""))

    def rst(self, t):
        """The documentation parses as reStructuredText without a warning."""
        tree = series.tree_dir(t)
        tool = "/usr/bin/rst2pseudoxml" if os.path.exists(
            "/usr/bin/rst2pseudoxml") else "/usr/bin/rst2pseudoxml.py"
        problems = []
        for doc in DOCS:
            rc, out = run([tool, "--halt=warning", "--report=info",
                           os.path.join(tree, doc), "/dev/null"], env=SYS_ENV)
            if rc:
                problems.append(out.strip()[-1000:])
        self.record("rst %s" % t, not problems, "\n".join(problems))

    def kunit(self, t):
        """One kunit.py kernel per target with both suites (kunit.py
        merges repeated --kunitconfig); one recorded test per KTAP case,
        and one for a kernel log free of sanitizer and lockdep reports."""
        tree = series.tree_dir(t)
        bdir = os.path.join(series.CACHE, "kunit-%s" % t)
        jpath = bdir + ".json"
        if os.path.exists(jpath):
            os.unlink(jpath)
        t0 = time.monotonic()
        rc, out = run([sys.executable, "tools/testing/kunit/kunit.py",
                       "run", "--arch=x86_64", "--build_dir=" + bdir]
                      + ["--kunitconfig=" + kc for kc in KUNITCONFIGS]
                      + ["--jobs=" + JOBS,
                         "--timeout=%d" % kunit_timeout(bdir)]
                      + KUNIT_KERNEL_ARGS
                      + ["--json=" + jpath],
                      cwd=tree, env=KUNIT_ENV, timeout=5400)
        secs = time.monotonic() - t0
        m = re.search(r"Elapsed time: .* ([\d.]+)s running", out)
        if m and rc == 0:
            with open(bdir + ".secs", "w") as f:
                f.write(m.group(1) + "\n")
        self.times["kunit %s" % t] = secs
        with open(bdir + ".log", "w") as f:
            f.write(out)
        cases = []
        if os.path.exists(jpath):
            with open(jpath) as f:
                cases = list(_cases(json.load(f)))
        if not cases:
            tail = ""
            if os.path.exists(os.path.join(bdir, "test.log")):
                with open(os.path.join(bdir, "test.log"),
                          errors="replace") as f:
                    tail = "\n".join(f.read().splitlines()[-40:])
            self.record("kunit %s" % t, False,
                        "no test results (rc %d)\n%s\n--- console tail "
                        "---\n%s" % (rc, out[-3000:], tail))
            return
        for name, status in cases:
            self.record("kunit %s %s" % (t, name), status == "PASS",
                        "" if status == "PASS" else
                        "%s; see %s.log" % (status, bdir))
        suites = {n.split(".")[0] for n, _ in cases}
        if len(suites) < len(KUNITCONFIGS):
            self.record("kunit %s: every suite ran" % t, False,
                        "only %s" % ", ".join(sorted(suites)))
        klog = ""
        if os.path.exists(os.path.join(bdir, "test.log")):
            with open(os.path.join(bdir, "test.log"),
                      errors="replace") as f:
                klog = f.read()
        bad = [ln for ln in klog.splitlines() if BAD_KLOG.search(ln)]
        self.record("kunit %s kernel log clean" % t, bool(klog) and not bad,
                    "\n".join(bad[:20]) if klog else "no test.log")
        self.log("  kunit %s: %d cases in %.0fs" % (t, len(cases), secs))


def _cases(node, prefix=None):
    """(suite.case, status) for every test case in kunit.py's JSON; the
    root group, which kunit.py names itself, is left out of the names."""
    if prefix is None:
        prefix = ""
    else:
        prefix = (prefix + "." if prefix else "") + node.get("name", "")
    for c in node.get("test_cases", []):
        yield (prefix + "." + c["name"]), c["status"]
    for g in node.get("sub_groups", []):
        yield from _cases(g, prefix)
