# SPDX-License-Identifier: GPL-2.0-only
"""The patch series in real kernel trees: the checks make check runs.

For each target (Debian's linux-source 6.1 and 6.12): generate the series,
git am it onto the pristine tree, checkpatch --strict every patch, build
the touched directories with the drivers =y and =m under W=1, run sparse
and kernel-doc on the project's files, and run the KUnit suites with
kunit.py (KASAN, UBSAN and lockdep on). Trees and build directories live
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
BUILD_OPTS = {
    "y": COMMON_OPTS + ["-e", "KUNIT", "-e", "VIRTIO_BALLOON",
                        "-e", "HYPERV", "-e", "HYPERV_BALLOON"],
    "m": COMMON_OPTS + ["-m", "KUNIT", "-m", "VIRTIO_BALLOON",
                        "-m", "HYPERV", "-m", "HYPERV_BALLOON"],
}

# Debian's python3 has the modules checkpatch's spdxcheck.py needs.
SYS_ENV = dict(os.environ, PATH="/usr/bin:/bin:" + os.environ["PATH"])


def kunit_timeout(bdir):
    """Seconds the KUnit kernel may run: twice what its last clean run
    took, plus 30 s of slack for a loaded machine; 150 s when unknown. A
    wedged kernel then fails in about that time, not after 10 minutes."""
    try:
        with open(bdir + ".secs") as f:
            last = float(f.read())
    except (OSError, ValueError):
        last = 60
    return int(2 * last + 30)


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

    def target(self, t):
        """Every check for one target but KUnit."""
        paths = self.prepare(t)
        if not paths:
            return False
        self.checkpatch(t, paths[1:])
        for mode in ("y", "m"):
            self.build(t, mode)
        self.kerneldoc(t)
        self.rst(t)
        return True

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
        rc, out = run([os.path.join(tree, "scripts/config"), "--file",
                       os.path.join(obj, ".config")] + BUILD_OPTS[mode])
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
        rc, out = run(["make", "-C", tree, "O=" + obj, "C=2", "W=1"] + objs)
        found = [ln for ln in out.splitlines()
                 if ours(ln) and re.search(r"(warning|error):", ln)]
        checked = [f for f in OUR_FILES if "/tests/" not in f and
                   re.search(r"CHECK\s+\S*%s" % re.escape(f), out)]
        self.record("sparse %s C=2" % t,
                    rc == 0 and not found and len(checked) == len(objs),
                    "%d files checked, %d warnings in our files%s" % (
                        len(checked), len(found),
                        ("\n" + "\n".join(found[:20])) if found else ""))

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
        """kunit.py run for each suite; one recorded test per KTAP case."""
        tree = series.tree_dir(t)
        for kc in KUNITCONFIGS:
            suite = os.path.basename(os.path.dirname(os.path.dirname(kc)))
            bdir = os.path.join(series.CACHE, "kunit-%s-%s" % (t, suite))
            jpath = bdir + ".json"
            if os.path.exists(jpath):
                os.unlink(jpath)
            t0 = time.monotonic()
            rc, out = run([sys.executable, "tools/testing/kunit/kunit.py",
                           "run", "--arch=x86_64", "--build_dir=" + bdir,
                           "--kunitconfig=" + kc, "--jobs=" + JOBS,
                           "--timeout=%d" % kunit_timeout(bdir),
                           # An oops ends the VM at once (-no-reboot).
                           "--kernel_args=oops=panic",
                           "--kernel_args=panic=-1",
                           "--json=" + jpath], cwd=tree,
                          timeout=5400)
            secs = time.monotonic() - t0
            m = re.search(r"Elapsed time: .* ([\d.]+)s running", out)
            if m and rc == 0:
                with open(bdir + ".secs", "w") as f:
                    f.write(m.group(1) + "\n")
            self.times["kunit %s %s" % (t, kc)] = secs
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
                self.record("kunit %s %s" % (t, kc), False,
                            "no test results (rc %d)\n%s\n--- console tail "
                            "---\n%s" % (rc, out[-3000:], tail))
                continue
            for name, status in cases:
                self.record("kunit %s %s" % (t, name), status == "PASS",
                            "" if status == "PASS" else
                            "%s; see %s.log" % (status, bdir))
            klog = ""
            if os.path.exists(os.path.join(bdir, "test.log")):
                with open(os.path.join(bdir, "test.log"),
                          errors="replace") as f:
                    klog = f.read()
            bad = [ln for ln in klog.splitlines() if BAD_KLOG.search(ln)]
            self.record("kunit %s %s kernel log clean" % (t, suite),
                        bool(klog) and not bad,
                        "\n".join(bad[:20]) if klog else "no test.log")
            self.log("  kunit %s %s: %d cases in %.0fs" % (t, kc, len(cases),
                                                           secs))


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
