#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Mutation testing: does each test catch the bug it exists for?

A mutant is a file under tools/testing/balloon-s4/mutants/ that puts one
realistic bug into a driver, the compat layer or the S4 helper. Its
header says what it breaks and which test must catch it; the change is
an exact snippet of the file and its replacement, matched by text (not
by line numbers, so that it applies to the 6.12 tree's copy of a driver,
which differs from the repository's by its backport, as well as to the
repository's own):

    Breaks: restore never writes `actual` back to the device
    Caught-by: kunit virtio_balloon.vb_test_restore_same_host_tells
    File: drivers/virtio/virtio_balloon.c
    <<<<<<<
    	the original lines, which must occur exactly once
    =======
    	what they become
    >>>>>>>

Caught-by is one of
    kunit GLOB     the KUnit cases GLOB selects (kunit.py's suite.case
                   filter) in the patched tree of --target, built in the
                   KUnit build directory make check itself uses, so that
                   a run recompiles one file, links and boots
    qemu NAME...   QEMU scenarios, run by a mutated copy's own run.py
    build          the W=1 out-of-tree builds against Debian 12's headers

Each mutant is applied alone; it is killed when one of its tests fails:
a failing KUnit case, a KUnit kernel that crashes or hangs (kunit.py
then reports no result), a sanitizer, lockdep or WARN report in the
KUnit kernel's log (make check fails that too), a failing scenario, or
a warning or error in a build. A mutant whose snippet is not found
exactly once is "stale", and one whose kernel does not build is "no
build": either means the list needs mending, and neither counts as
killed.

  mutants.py [--only NAME ...] [--list] [--target 6.12] [--no-prepare]
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
MUTANTS = os.path.join(HERE, "mutants")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "series"))

import kernel_checks                                 # noqa: E402
import series                                        # noqa: E402
from sources import copy_sources                     # noqa: E402

# The mutant make check runs, so that this tool cannot rot: the first bug
# of issue 17, caught by one KUnit case.
SMOKE = "virtio-restore-no-actual"

HUNK = re.compile(r"^<<<<<<<\n(.*?)^=======\n(.*?)^>>>>>>>$", re.M | re.S)


class Mutant:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)[:-len(".mut")]
        with open(path) as f:
            text = f.read()
        fields = dict(re.findall(r"^([A-Z][\w-]*):[ \t]*(.*)$",
                                 text.split("\n<<<<<<<\n")[0], re.M))
        self.breaks = fields.get("Breaks", "")
        self.file = fields.get("File", "")
        caught = fields.get("Caught-by", "").split()
        hunk = HUNK.search(text)
        if not self.breaks or not self.file or not hunk or not caught or \
                caught[0] not in ("kunit", "qemu", "build") or \
                (caught[0] != "build" and len(caught) < 2):
            raise SystemExit("%s: needs Breaks:, Caught-by: (kunit GLOB | "
                             "qemu NAME... | build), File: and one "
                             "<<<<<<< ======= >>>>>>> hunk" % path)
        self.kind, self.args = caught[0], caught[1:]
        self.old, self.new = hunk.group(1), hunk.group(2)
        if self.old == self.new:
            raise SystemExit("%s: the hunk changes nothing" % path)

    @property
    def caught_by(self):
        return " ".join([self.kind] + self.args)

    def apply(self, root):
        """Mutate @root's copy of the file; None, or why it cannot be."""
        path = os.path.join(root, self.file)
        if not os.path.exists(path):
            return "does not apply: no %s" % self.file
        with open(path) as f:
            text = f.read()
        n = text.count(self.old)
        if n != 1:
            return "does not apply: the snippet occurs %d times in %s" % (
                n, self.file)
        with open(path, "w") as f:
            f.write(text.replace(self.old, self.new))
        return None


def load(only=None):
    ms = [Mutant(p) for p in sorted(glob.glob(os.path.join(MUTANTS,
                                                           "*.mut")))]
    if only:
        unknown = set(only) - {m.name for m in ms}
        if unknown:
            raise SystemExit("no such mutant: " + " ".join(sorted(unknown)))
        ms = [m for m in ms if m.name in only]
    return ms


def run(cmd, cwd=None, env=None, timeout=3600):
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        return 124, out + "\n(timed out after %ds)" % timeout
    return r.returncode, r.stdout.decode(errors="replace")


def _tail(text, n=3):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[-300:]


def header_trees():
    """Debian 12's newest 6.1 and 6.12 header trees, as make check's
    builds use them."""
    trees = []
    for ver in ("6.1.", "6.12."):
        cands = sorted(glob.glob("/usr/src/linux-headers-%s*-amd64" % ver),
                       key=lambda s: [int(x) if x.isdigit() else x
                                      for x in re.split(r"(\d+)", s)])
        if cands:
            trees.append(cands[-1])
    return trees


class Mutator:
    def __init__(self, build_dir, target="6.12", prepared=False):
        # Absolute: kunit.py runs in the tree and writes its JSON there.
        self.out = os.path.join(os.path.abspath(build_dir), "mutants")
        os.makedirs(self.out, exist_ok=True)
        self.target = target
        self.prepared = prepared

    def _log(self, m, text):
        with open(os.path.join(self.out, m.name + ".log"), "w") as f:
            f.write(text)

    def prepare_tree(self):
        """The target tree with HEAD's series applied, once per run."""
        if self.prepared:
            return None
        try:
            series.generate(self.target)
        except (subprocess.CalledProcessError, SystemExit) as e:
            return "series %s: %s" % (self.target, e)
        ok, msg = series.apply(self.target)
        if not ok:
            return "series %s does not apply: %s" % (self.target, msg[-500:])
        self.prepared = True
        return None

    def kunit(self, m):
        err = self.prepare_tree()
        if err:
            return "error", err
        tree = series.tree_dir(self.target)
        if series.git(tree, "diff", "--quiet", check=False):
            return "error", "%s has local changes" % tree
        bdir = os.path.join(series.CACHE, "kunit-%s" % self.target)
        jpath = os.path.join(self.out, m.name + ".json")
        if os.path.exists(jpath):
            os.unlink(jpath)
        err = m.apply(tree)
        if err:
            return "stale", err
        try:
            rc, out = run([sys.executable, "tools/testing/kunit/kunit.py",
                           "run", "--arch=x86_64", "--build_dir=" + bdir]
                          + ["--kunitconfig=" + kc
                             for kc in kernel_checks.KUNITCONFIGS]
                          + ["--jobs=" + kernel_checks.JOBS,
                             "--timeout=%d" %
                             kernel_checks.kunit_timeout(bdir)]
                          + kernel_checks.KUNIT_KERNEL_ARGS
                          + ["--json=" + jpath, m.args[0]],
                          cwd=tree, env=kernel_checks.KUNIT_ENV,
                          timeout=5400)
        finally:
            series.git(tree, "checkout", "-q", "--", m.file)
        klog = ""
        if os.path.exists(os.path.join(bdir, "test.log")):
            with open(os.path.join(bdir, "test.log"),
                      errors="replace") as f:
                klog = f.read()
        self._log(m, out + "\n--- kernel log ---\n" + klog)
        cases = []
        if os.path.exists(jpath):
            with open(jpath) as f:
                cases = list(kernel_checks._cases(json.load(f)))
        if not cases and re.search(r"Could not build|error: |Error \d+",
                                   out) and "Starting KUnit" not in out:
            return "no build", _tail(out)
        if "Traceback (most recent call last)" in out:
            return "error", "kunit.py failed: " + _tail(out, 1)
        if not cases:
            return "killed", "no results: the kernel crashed or hung " \
                "(rc %d): %s" % (rc, _tail(klog, 2))
        failed = [n for n, s in cases if s != "PASS"]
        oops = re.search(r"^.*(Oops|Kernel panic|BUG:).*$", klog, re.M)
        if failed:
            return "killed", "%d of %d failed: %s%s" % (
                len(failed), len(cases), ", ".join(failed[:3]),
                ("; " + oops.group(0).strip()[:80]) if oops else "")
        bad = [ln for ln in klog.splitlines()
               if kernel_checks.BAD_KLOG.search(ln)]
        if bad:
            return "killed", "%d cases passed, kernel log: %s" % (
                len(cases), bad[0].strip()[:120])
        return "survived", "%d cases passed" % len(cases)

    def build(self, m):
        src = os.path.join(self.out, m.name, "src")
        copy_sources(src)
        err = m.apply(src)
        if err:
            return "stale", err
        found, text = [], ""
        try:
            for kdir in header_trees():
                rc, out = run(["make", "-C", kdir, "M=" + src, "W=1",
                               "-j" + kernel_checks.JOBS, "modules"])
                text += out
                warn = [ln for ln in out.splitlines()
                        if re.search(r"\b(warning|error|ERROR):", ln)]
                if rc or warn:
                    found.append("%s: %s" % (
                        os.path.basename(kdir)[len("linux-headers-"):],
                        (warn or ["rc %d" % rc])[0].replace(
                            src + "/", "").strip()[:140]))
                run(["make", "-C", kdir, "M=" + src, "clean"])
        finally:
            self._log(m, text)
            shutil.rmtree(os.path.dirname(src), ignore_errors=True)
        if found:
            return "killed", found[0]
        return "survived", "%d header trees built without a warning" % \
            len(header_trees())

    def qemu(self, m):
        """The scenarios, run by a mutated copy of the repository."""
        src = os.path.join(self.out, m.name, "repo")
        shutil.rmtree(src, ignore_errors=True)
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT,
                               check=True, stdout=subprocess.PIPE
                               ).stdout.split(b"\0")
        for f in filter(None, (x.decode() for x in files)):
            if os.path.isfile(os.path.join(ROOT, f)):
                os.makedirs(os.path.join(src, os.path.dirname(f)),
                            exist_ok=True)
                shutil.copy2(os.path.join(ROOT, f), os.path.join(src, f))
        err = m.apply(src)
        if err:
            return "stale", err
        try:
            rc, out = run([sys.executable, os.path.join(
                src, "tools/testing/balloon-s4/run.py"), "check", "--only"]
                + m.args + ["--build-dir", os.path.join(src, "build")],
                cwd=src, timeout=3600)
        finally:
            shutil.rmtree(os.path.dirname(src), ignore_errors=True)
        self._log(m, out)
        if "cannot build" in out:
            return "no build", _tail(out)
        fails = [ln for ln in out.splitlines() if ln.startswith("FAIL ")]
        if fails or rc:
            return "killed", (fails[0] if fails else _tail(out, 1))[:160]
        return "survived", _tail(out, 1)

    def one(self, m):
        t0 = time.monotonic()
        result, detail = getattr(self, m.kind)(m)
        return result, detail, time.monotonic() - t0


def render(rows):
    w = max([len(r[0]) for r in rows] + [6])
    out = ["%-*s  %-8s %5s  %s" % (w, "mutant", "result", "secs",
                                   "caught by: detail")]
    for name, caught, result, detail, secs in rows:
        out.append("%-*s  %-8s %5.0f  %s: %s" % (w, name, result, secs,
                                                 caught, detail))
    killed = sum(1 for r in rows if r[2] == "killed")
    out.append("score: %d of %d mutants killed (%.0f%%)" % (
        killed, len(rows), 100.0 * killed / max(len(rows), 1)))
    return "\n".join(out)


def mutate(build_dir, log, only=None, target="6.12", prepared=False):
    """Run the mutants one at a time; returns the table's rows."""
    mutator = Mutator(build_dir, target, prepared)
    rows = []
    for m in load(only):
        log("mutant %s: %s (%s)" % (m.name, m.breaks, m.caught_by))
        result, detail, secs = mutator.one(m)
        log("  %s in %.0fs: %s" % (result, secs, detail))
        rows.append((m.name, m.caught_by, result, detail, secs))
    return rows


def smoke(build_dir, record, log):
    """make check's one mutant, in the KUnit build make check just made
    for 6.12 (the tree is prepared already): recorded as a test."""
    t0 = time.monotonic()
    try:
        rows = mutate(build_dir, log, [SMOKE], "6.12", prepared=True)
    except (SystemExit, OSError, subprocess.SubprocessError) as e:
        record("mutants smoke: %s killed" % SMOKE, False, str(e))
        return
    _, _, result, detail, _ = rows[0]
    record("mutants smoke: %s killed" % SMOKE, result == "killed",
           "%s: %s (%.0fs)" % (result, detail, time.monotonic() - t0))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", nargs="*", help="mutant names")
    ap.add_argument("--target", default="6.12",
                    help="kernel tree for kunit mutants (default 6.12)")
    ap.add_argument("--no-prepare", action="store_true",
                    help="use the target tree as it is (make check "
                         "prepared it for HEAD)")
    ap.add_argument("--list", action="store_true",
                    help="list the mutants and exit")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    args = ap.parse_args()
    if args.list:
        for m in load(args.only):
            print("%-34s %-58s %s" % (m.name, m.caught_by, m.breaks))
        return 0
    t0 = time.monotonic()
    rows = mutate(args.build_dir, lambda s: print(s, flush=True), args.only,
                  args.target, args.no_prepare)
    print()
    print(render(rows))
    print("%.0f min in all" % ((time.monotonic() - t0) / 60))
    return 0 if all(r[2] == "killed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
