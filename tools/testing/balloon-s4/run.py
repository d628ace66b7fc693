#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""balloon-s4 test runner: builds, QEMU scenarios, and the demo.

  run.py check [--only NAME ...]   every test; ends with "N passed, N failed"
  run.py demo                      one narrated balloon/hibernate/resume
  run.py bench [--iterations N] [--cells MIB:PCT,...]
                                  this virtio_balloon against the in-tree one
  run.py torture [--seed N] [--cycles N] [--phases NAME,...]
                                  torture.py on the debug kernel
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)

import vm                                            # noqa: E402
import bench                                         # noqa: E402
import scenarios                                     # noqa: E402
import kernel_checks                                 # noqa: E402
import deb                                           # noqa: E402
import distro                                        # noqa: E402
import fetch_sid                                     # noqa: E402
import mutants                                       # noqa: E402
import debug_kernel                                  # noqa: E402
import torture                                       # noqa: E402
from sources import copy_sources                     # noqa: E402


def log(msg):
    print(msg, flush=True)


def _ver_key(s):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)]


def header_trees():
    """Debian 12's header trees to build against: newest 6.1 and 6.12."""
    trees = []
    for series in ("6.1.", "6.12."):
        cands = sorted(glob.glob("/usr/src/linux-headers-%s*-amd64" % series),
                       key=_ver_key)
        if cands:
            trees.append(cands[-1])
    return trees


_SID = {}


def sid_kernel():
    """fetch_sid's answer for the newest sid kernel, fetched once per run;
    None (after logging why) when it cannot be had."""
    if "info" not in _SID:
        try:
            _SID["info"] = fetch_sid.fetch(log)
        except (SystemExit, OSError, subprocess.SubprocessError) as e:
            log("sid kernel unavailable: %s" % e)
            _SID["info"] = None
    return _SID["info"]


# The guest series of the debug kernel: the patched 6.12 tree with KASAN,
# kmemleak, lockdep and more (debug_kernel.py, debug.config).
DEBUG = "debug"
# Its guests' waits, measured on it: boot, hibernation and resume take up
# to three times as long as on Debian's kernels under TCG.
DEBUG_TIMEOUT_SCALE = 3
# Page poisoning is built in but off until asked for; it then takes over
# from init_on_free (see debug.config). acpi=noirq: no PCI interrupt
# routing through the ACPI _PRT, which this kernel interprets too slowly
# (debug.config, CONFIG_PCI_MSI).
DEBUG_APPEND = "page_poison=1 acpi=noirq"

# KASAN's shadow (an eighth of memory), kmemleak's objects and lockdep's
# tables: the debug kernel's own cost. Its guests get that much more, so
# the scenarios' targets leave the guest what they leave on Debian's
# kernels.
DEBUG_EXTRA_MB = 192

_DEBUG = {}
_DEBUG_LOCK = threading.Lock()


def debug_kernel_info():
    """debug_kernel.build()'s answer, built at most once per run (other
    guests wait meanwhile only if they boot it); None, with the reason in
    _DEBUG["error"], when there is none."""
    with _DEBUG_LOCK:
        if "info" not in _DEBUG:
            _DEBUG["info"] = None
            if "error" not in _DEBUG:
                try:
                    _DEBUG["info"] = debug_kernel.build(log)
                except (debug_kernel.DebugKernelError, OSError,
                        subprocess.SubprocessError) as e:
                    _DEBUG["error"] = str(e)
                except Exception:                    # a harness bug
                    _DEBUG["error"] = traceback.format_exc()
        return _DEBUG["info"]


def guest_kernel(series):
    """The newest Debian @series kernel whose headers are installed; for
    "sid", the newest kernel in Debian sid (fetch_sid.py); for "debug",
    the debug kernel (built if need be)."""
    if series == "sid":
        info = sid_kernel()
        if not info:
            raise SystemExit("no sid kernel: see fetch_sid.py")
        return info["kver"]
    if series == DEBUG:
        info = debug_kernel_info()
        if not info:
            raise SystemExit("no debug kernel: %s" % _DEBUG["error"])
        return info["kver"]
    for path in sorted(glob.glob("/boot/vmlinuz-%s.*-amd64" % series),
                       key=_ver_key, reverse=True):
        kver = path[len("/boot/vmlinuz-"):]
        if os.path.isdir("/usr/src/linux-headers-%s" % kver):
            return kver
    raise SystemExit("no Debian %s kernel with headers: run deps.sh" % series)


def _vermagic(ko):
    """The vermagic of module file @ko (compressed or not)."""
    data = vm._read_module(ko)
    m = re.search(rb"\0vermagic=([^\0]*)\0", data)
    return m.group(1).decode() if m else None


def build_module(kdir, outdir, w1=True):
    """Build the drivers against @kdir in a copy of the sources.

    Returns (ok, warnings, log text, path of virtio_balloon.ko).
    """
    src = os.path.join(outdir, "src")
    copy_sources(src)
    cmd = ["make", "-C", kdir, "M=" + src, "modules"]
    if w1:
        cmd.append("W=1")
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = r.stdout.decode(errors="replace")
    with open(os.path.join(outdir, "build.log"), "w") as f:
        f.write(text)
    warnings = [ln for ln in text.splitlines()
                if re.search(r"\b(warning|error):", ln)]
    ko = os.path.join(src, "drivers/virtio/virtio_balloon.ko")
    # Debian's kernels have CONFIG_HYPERV: all three modules must be there.
    kos = [ko, os.path.join(src, "arch/x86/hyperv/hv_s4.ko"),
           os.path.join(src, "drivers/hv/hv_balloon.ko")]
    missing = [k for k in kos if not os.path.exists(k)]
    if missing and r.returncode == 0:
        text += "\nnot built: " + " ".join(os.path.relpath(k, src)
                                           for k in missing)
    return r.returncode == 0 and not missing, warnings, text, ko


def untraced(make_guest):
    """@make_guest without the host witness's trace: benchmarks time the
    balloon, and QEMU writing a line per page would be part of it."""
    def make(*args, **kw):
        return make_guest(*args, trace=False, **kw)
    return make


# Guests run side by side, one per core: each QEMU TCG guest has one vCPU
# and keeps one host core busy. BS4_JOBS=1 runs them one at a time.
JOBS = max(1, int(os.environ.get("BS4_JOBS", "0")) or
           min(2, os.cpu_count() or 1))

# Longest first, so that the last job to finish is a short one. The times
# of the previous run (build_dir/scenario-times.json) order the rest.
# The debug kernel's build comes before all, its scenarios after all: a
# cold build then runs beside the other scenarios, on one core.
DEBUG_BUILD = "debug kernel %s" % debug_kernel.TARGET
TORTURE_SMOKE = "torture smoke"
TORTURE_SMOKE_SEED = 1
LONG_JOBS = [DEBUG_BUILD, "debian_hibernate", "s5_ten_cycles@sid",
             "s5_ten_cycles", "s13_hibernate_after_deflate"]


class Runner:
    def __init__(self, build_dir):
        self.build_dir = os.path.abspath(build_dir)
        os.makedirs(self.build_dir, exist_ok=True)
        self.results = []
        self.details = {}
        self.image_lock = threading.Lock()

    def record(self, name, ok, detail="", skipped=False):
        self.results.append((name, ok, skipped))
        if not ok and not skipped:
            # A traceback's last lines, a message's first.
            tb = detail.startswith("Traceback")
            self.details.setdefault(name, []).append(
                detail[-800:] if tb else detail[:800])
        tag = "SKIP" if skipped else ("PASS" if ok else "FAIL")
        log("%s %s%s" % (tag, name, (": " + detail) if detail else ""))

    def builds(self):
        """W=1 builds against every Debian 12 header tree; one test each."""
        kos = {}
        for kdir in header_trees():
            kver = os.path.basename(kdir)[len("linux-headers-"):]
            out = os.path.join(self.build_dir, "kbuild", kver)
            ok, warns, text, ko = build_module(kdir, out)
            detail = "%d warnings (virtio_balloon, hv_balloon, hv_s4)" % \
                len(warns)
            if not ok:
                detail = "build failed:\n" + text[-3000:]
            elif warns:
                detail += ":\n" + "\n".join(warns[:20])
            self.record("build %s W=1" % kver, ok and not warns, detail)
            if ok:
                kos[kver] = ko
        info = sid_kernel()
        if not info:
            self.record("build sid W=1", False, "no sid kernel tree")
            return kos
        out = os.path.join(self.build_dir, "kbuild", info["kver"])
        ok, warns, text, ko = build_module(info["kdir"], out)
        detail = "%d warnings (virtio_balloon, hv_balloon, hv_s4)" % \
            len(warns)
        if ok:
            # The kernel refuses a module whose vermagic differs.
            theirs = glob.glob(os.path.join(info["modules"], "kernel/drivers/"
                                            "virtio/virtio_balloon.ko*"))[0]
            vm_ours = _vermagic(ko)
            vm_theirs = _vermagic(theirs)
            if vm_ours != vm_theirs:
                ok = False
                detail = "vermagic '%s', the kernel's modules have '%s'" % (
                    vm_ours, vm_theirs)
            else:
                detail += ", vermagic '%s'" % vm_ours
        else:
            detail = "build failed:\n" + text[-3000:]
        if warns:
            detail += ":\n" + "\n".join(warns[:20])
        self.record("build %s W=1" % info["kver"], ok and not warns, detail)
        if ok:
            kos[info["kver"]] = ko
        return kos

    def guest_image(self, series, kos):
        """(kernel, initramfs) for a Debian @series guest, built on demand;
        series "sid" is the newest sid kernel, unpacked under BS4_CACHE."""
        kver = guest_kernel(series)
        if series == "sid":
            info = sid_kernel()
            kdir, modroot = info["kdir"], info["modules"]
            vmlinuz = info["vmlinuz"]
        elif series == DEBUG:
            # "ours" is built out of tree against the debug kernel's object
            # tree, as for every other kernel, so KASAN instruments it and
            # compat.h is what runs; "intree" is the series' own module.
            info = debug_kernel_info()
            kdir, modroot = info["kdir"], info["modules"]
            vmlinuz = info["vmlinuz"]
        else:
            kdir = "/usr/src/linux-headers-%s" % kver
            modroot = "/lib/modules/%s" % kver
            vmlinuz = "/boot/vmlinuz-%s" % kver
        if kver not in kos:
            out = os.path.join(self.build_dir, "kbuild", kver)
            ok, _, text, ko = build_module(kdir, out)
            if not ok:
                raise SystemExit("cannot build for the guest:\n" + text)
            kos[kver] = ko
        initrd = os.path.join(self.build_dir, "initrd-%s.gz" % kver)
        if not os.path.exists(initrd):
            # By path: modules.dep may name an updates/ or DKMS copy.
            intree = glob.glob("%s/kernel/drivers/virtio/"
                               "virtio_balloon.ko*" % modroot)[0]
            extra = [os.path.join(os.path.dirname(kos[kver]), "..", "..",
                                  "arch/x86/hyperv/hv_s4.ko")]
            vm.build_initramfs(initrd, kver, kos[kver], intree,
                               [e for e in extra if os.path.exists(e)],
                               modroot=modroot,
                               bins=[self.memwalk()])
        return vmlinuz, initrd

    def memwalk(self):
        """memwalk.c built static for the guest (its busybox has no libc);
        the path of the binary."""
        out = os.path.join(self.build_dir, "bs4-memwalk")
        src = os.path.join(HERE, "memwalk.c")
        if not os.path.exists(out) or \
                os.path.getmtime(out) < os.path.getmtime(src):
            r = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra",
                                "-Werror", "-o", out, src],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            if r.returncode:
                raise SystemExit("cannot build memwalk:\n" +
                                 r.stdout.decode(errors="replace"))
        return out

    def guest_setup(self, kos):
        for old in glob.glob(os.path.join(self.build_dir, "initrd-*.gz")):
            os.unlink(old)
        gdir = os.path.join(self.build_dir, "guests")

        def make_guest(name, series="6.1", **kw):
            # Guests of different scenarios may start at the same time;
            # the module build and initramfs for a kernel happen once.
            with self.image_lock:
                kernel, initrd = self.guest_image(series, kos)
            d = os.path.join(gdir, name)
            shutil.rmtree(d, ignore_errors=True)
            kw.setdefault("mem_mb", scenarios.MEM_MB)
            if series == DEBUG:
                kw["timeout_scale"] = DEBUG_TIMEOUT_SCALE
                kw["mem_mb"] += DEBUG_EXTRA_MB
                # Theirs after ours: a guest may take back what we ask.
                kw["append"] = (DEBUG_APPEND + " " +
                                kw.get("append", "")).strip()
            g = vm.Guest(d, kernel, initrd, log=log, **kw)
            g.debug_kernel = series == DEBUG
            return g
        return guest_kernel("6.1"), make_guest

    def scenarios(self, make_guest, only=None, extra=()):
        """The scenarios on their own kernels, then those of
        scenarios.OTHER_KERNELS again on the kernel named there. A pair is
        recorded, and picked with --only, as NAME@SERIES; --only SERIES
        picks every pair of that series.

        @extra: more (label, callable returning metrics) jobs to run in
        the same pool. Jobs run JOBS at a time; every guest has a
        directory of its own, so they share nothing but the CPU.
        """
        runs = [(fn, fn.__name__, None) for fn in scenarios.SCENARIOS
                if not only or fn.__name__ in only]
        by_name = {fn.__name__: fn for fn in scenarios.SCENARIOS}
        for name, series in getattr(scenarios, "OTHER_KERNELS", []):
            label = "%s@%s" % (name, series)
            if only and label not in only and series not in only:
                continue
            runs.append((by_name[name], label, series))
        jobs = [(label, (lambda fn=fn, label=label, series=series:
                         self._scenario(make_guest, fn, label, series)))
                for fn, label, series in runs] + list(extra)
        if any(series == DEBUG for _, _, series in runs) or \
                any(label == TORTURE_SMOKE for label, _ in extra):
            jobs.append((DEBUG_BUILD, self.debug_build))
        return self._pool(jobs)

    def debug_build(self):
        """The debug kernel, built (or found current) as a test of its own,
        so that a cold build's time is on record and a failed one says why
        once; its scenarios then fail with the same reason."""
        info = debug_kernel_info()
        if not info:
            self.record(DEBUG_BUILD, False, _DEBUG["error"])
        elif info["built"]:
            self.record(DEBUG_BUILD, True, "%s built in %.0fs" % (
                info["kver"], info["secs"]))
        else:
            self.record(DEBUG_BUILD, True, "%s current, not rebuilt" %
                        info["kver"])

    def _pool(self, jobs):
        tfile = os.path.join(self.build_dir, "scenario-times.json")
        try:
            with open(tfile) as f:
                times = json.load(f)
        except (OSError, ValueError):
            times = {}

        def key(job):
            label = job[0]
            if label in LONG_JOBS:
                return (0, LONG_JOBS.index(label))
            # After the debug kernel's build, the longest of them first.
            if label == TORTURE_SMOKE:
                return (2, -times.get(label, 3600))
            if label.endswith("@" + DEBUG):
                return (2, -times.get(label, 300))
            return (1, -times.get(label, 60))
        todo = sorted(jobs, key=key)
        lock = threading.Lock()
        metrics = {}

        def worker():
            while True:
                with lock:
                    if not todo:
                        return
                    label, job = todo.pop(0)
                t0 = time.monotonic()
                try:
                    m = job() or {}
                except SystemExit as e:     # e.g. no module for the guest
                    self.record(label, False, str(e))
                    m = {}
                except Exception:                        # harness bug
                    self.record(label, False, traceback.format_exc())
                    m = {}
                with lock:
                    times[label] = round(time.monotonic() - t0)
                    metrics.update(m)
        log("%d jobs, %d at a time" % (len(todo), JOBS))
        threads = [threading.Thread(target=worker) for _ in range(JOBS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with open(tfile, "w") as f:
            json.dump(times, f, indent=1, sort_keys=True)
        return metrics

    def _scenario(self, make_guest, fn, name, series):
        """Run one scenario and record it; return its metrics."""
        if series is None:
            ctx = scenarios.Ctx(make_guest, log)
        else:
            try:
                guest_kernel(series)
            except SystemExit as e:
                self.record(name, False, str(e))
                return {}
            ctx = scenarios.Ctx(self._on_kernel(make_guest, series), log)
        t0 = time.monotonic()
        try:
            fn(ctx)
            ctx.check_hosts()
            detail = ""
            if series == DEBUG:
                # The last word of every guest still up: its leaks.
                excused = ctx.check_leaks()
                if excused:
                    detail = ", kmemleak: %d objects excused" % excused
            self.record(name, True, "%.0fs%s" % (time.monotonic() - t0,
                                                 detail))
        except (scenarios.Failure, vm.GuestError) as e:
            self.record(name, False, "%s (%.0fs)" % (
                e, time.monotonic() - t0))
        except Exception:                                # harness bug
            self.record(name, False, traceback.format_exc())
        finally:
            ctx.close()
        prefix = "" if series is None else guest_kernel(series) + ": "
        return {prefix + k: v for k, v in ctx.metrics.items()}

    @staticmethod
    def _on_kernel(make_guest, series):
        """make_guest() for guests that all boot the @series kernel,
        whatever kernel the scenario itself asks for."""
        def make(name, **kw):
            kw["series"] = series
            return make_guest("%s@%s" % (name, series), **kw)
        return make

    def dkms(self):
        """DKMS add/build/install for Debian's 6.1 kernel, checked with
        modinfo, then removed again; build-only passes for 6.12 and for
        sid's kernel (against fetch_sid.py's prepared tree)."""
        conf = open(os.path.join(ROOT, "dkms.conf")).read()
        name = re.search(r'^PACKAGE_NAME="(.*)"', conf, re.M).group(1)
        ver = re.search(r'^PACKAGE_VERSION="(.*)"', conf, re.M).group(1)
        pkg = "%s/%s" % (name, ver)
        stage = os.path.join(self.build_dir, "dkms", "%s-%s" % (name, ver))
        shutil.rmtree(os.path.dirname(stage), ignore_errors=True)
        copy_sources(stage)

        def sh(*cmd):
            r = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            return r.returncode, r.stdout.decode(errors="replace")

        def clean():
            sh("dkms", "remove", pkg, "--all")
            shutil.rmtree("/usr/src/%s-%s" % (name, ver), ignore_errors=True)

        if not shutil.which("dkms"):
            self.record("dkms install 6.1", False, "dkms is not installed")
            return
        k61, k612 = guest_kernel("6.1"), guest_kernel("6.12")
        clean()
        try:
            steps = [("dkms", "add", stage),
                     ("dkms", "build", pkg, "-k", k61),
                     ("dkms", "install", pkg, "-k", k61)]
            for cmd in steps:
                rc, out = sh(*cmd)
                if rc:
                    self.record("dkms install 6.1", False,
                                "%s failed:\n%s" % (" ".join(cmd),
                                                     out[-2000:]))
                    return
            _, info = sh("modinfo", "-k", k61, "virtio_balloon")
            fields = dict(re.findall(r"^(\w+):\s+(.*)$", info, re.M))
            want = "/lib/modules/%s/updates/dkms/virtio_balloon.ko" % k61
            problems = []
            if not fields.get("filename", "").startswith(want):
                problems.append("modprobe would load %s" %
                                fields.get("filename"))
            if fields.get("version") != ver:
                problems.append("version %s, want %s" %
                                (fields.get("version"), ver))
            # One parm: line per parameter; the dict keeps only the last.
            parms = re.findall(r"^parm:\s+(\w+):", info, re.M)
            for parm in ("oom_pages", "hib_give_pct"):
                if parm not in parms:
                    problems.append("no %s parameter" % parm)
            for mod in ("hv_s4", "hv_balloon"):
                _, hv = sh("modinfo", "-k", k61, "-F", "filename", mod)
                if not hv.strip().startswith(
                        "%s/%s.ko" % (os.path.dirname(want), mod)):
                    problems.append("%s not installed by DKMS (%s)" %
                                    (mod, hv.strip()))
            self.record("dkms install 6.1", not problems,
                        "; ".join(problems) or "%s %s" % (want, ver))
            rc, out = sh("dkms", "build", pkg, "-k", k612)
            self.record("dkms build 6.12", rc == 0, out[-2000:] if rc else "")
            # sid's kernel is not installed: DKMS builds against the tree
            # fetch_sid.py prepared for it.
            info = sid_kernel()
            if not info:
                self.record("dkms build sid", False, "no sid kernel tree")
                return
            rc, out = sh("dkms", "build", pkg, "-k", info["kver"],
                         "--kernelsourcedir", info["kdir"])
            built = glob.glob("/var/lib/dkms/%s/%s/%s/*/module/*.ko*" % (
                name, ver, info["kver"]))
            self.record("dkms build %s" % info["kver"], rc == 0 and
                        len(built) == 3, out[-2000:] if rc else
                        "%d modules: %s" % (len(built), " ".join(
                            sorted(os.path.basename(b) for b in built))))
        finally:
            clean()

    def torture_smoke(self, make_guest):
        """A short make torture, one test: every phase once, quick (see
        torture.run()), one cycle, a fixed seed. It passes when the report
        counts no failure, leak, splat or checksum failure."""
        t0 = time.monotonic()
        if not debug_kernel_info():
            self.record(TORTURE_SMOKE, False, "no debug kernel: %s" %
                        _DEBUG["error"])
            return {}
        # One lane: the rest of make check has the other core.
        rep = torture.run(self._on_kernel(make_guest, DEBUG), log,
                          seed=TORTURE_SMOKE_SEED, cycles=1, lanes=1,
                          quick=True)
        self.record(TORTURE_SMOKE, not rep.bad(), "%s (%.0fs)" % (
            "; ".join(rep.lines()), time.monotonic() - t0))
        return {}

    def bench_smoke(self, make_guest):
        """One short benchmark iteration, so that make bench cannot rot.
        It passes when every metric got a value for both drivers; the
        values themselves are make bench's business."""
        out = os.path.join(self.build_dir, "bench-smoke")
        t0 = time.monotonic()
        try:
            rows = bench.bench(untraced(make_guest), out, log, quick=True)
        except (bench.BenchError, vm.GuestError) as e:
            self.record("bench smoke", False, str(e))
            return
        missing = ["%s %s" % (r["metric"], r["guest"]) for r in rows
                   if r["intree"] is None or r["ours"] is None]
        log(bench.render(rows))
        self.record("bench smoke", not missing,
                    ("no value: " + ", ".join(missing)) if missing else
                    "%d metrics, %.0fs" % (len(rows), time.monotonic() - t0))

    def summary(self):
        passed = sum(1 for _, ok, sk in self.results if ok and not sk)
        skipped = sum(1 for _, _, sk in self.results if sk)
        failed = len(self.results) - passed - skipped
        # Again at the end, where a long log's tail shows them.
        for name in self.details:
            for detail in self.details[name]:
                log("FAILED: %s: %s" % (name, detail))
        line = "%d passed, %d failed" % (passed, failed)
        if skipped:
            line += ", %d skipped" % skipped
        log(line)
        return 1 if failed else 0


def cmd_check(args):
    r = Runner(args.build_dir)
    kc = kernel_checks.KernelChecks(r.record, log)
    prepared = set()
    if args.only and "kunit" in args.only:
        for t in kc.targets():
            if kc.prepare(t):
                kc.kunit(t)
        return r.summary()
    if not args.only or "kernel" in args.only:
        for t in kc.targets():
            if kc.target(t):
                prepared.add(t)
                kc.kunit(t)
                # One mutant, in the build KUnit just made: incremental.
                if t == "6.12":
                    mutants.smoke(r.build_dir, r.record, log)
        r.dkms()
    if not args.only or "kernel" in args.only or "deb" in args.only:
        deb.test(os.path.join(r.build_dir, "deb"), r.record, log)
    if args.only and ("kernel" in args.only or "deb" in args.only):
        return r.summary()
    kos = {} if args.only else r.builds()
    if not args.only or DEBUG in args.only or "torture" in args.only or \
            any(o.endswith("@" + DEBUG) for o in args.only):
        # The debug kernel is built from the series of this HEAD.
        t = debug_kernel.TARGET
        if t not in prepared and not kc.prepare(t):
            _DEBUG["error"] = "the series did not apply to %s: see " \
                "'series %s: git am'" % (t, t)
    kver, make_guest = r.guest_setup(kos)
    log("guest kernel %s, %d MiB, QEMU TCG" % (kver, scenarios.MEM_MB))
    extra = []
    if not args.only or "debian" in args.only:
        extra.append(("debian_hibernate",
                      lambda: distro.check(r.build_dir, r.record, log)))
    if not args.only or "torture" in args.only:
        extra.append((TORTURE_SMOKE, lambda: r.torture_smoke(make_guest)))
    metrics = r.scenarios(make_guest, args.only, extra)
    # Alone: it times both drivers, and a guest beside it would skew that.
    if not args.only or "bench" in args.only:
        r.bench_smoke(make_guest)
    with open(os.path.join(r.build_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    for k, v in metrics.items():
        log("  %-42s %s" % (k, v))
    return r.summary()


def cmd_demo(args):
    if args.guest == "debian":
        return distro.demo(os.path.abspath(args.build_dir), log)
    r = Runner(args.build_dir)
    t0 = time.monotonic()
    kos = r.builds()
    t_build = time.monotonic() - t0
    kver, make_guest = r.guest_setup(kos)
    g = make_guest("demo")
    phases = [("build modules (6.1 + 6.12, W=1)", t_build)]
    try:
        t = time.monotonic()
        g.boot()
        phases.append(("boot guest to shell", time.monotonic() - t))
        mem0 = g.meminfo()
        digest = scenarios.write_data(g)
        phases.append(("inflate balloon to %d MiB" % scenarios.HALF_MB,
                       scenarios.set_and_wait(g, scenarios.HALF_MB)))
        mem1 = g.meminfo()
        phases.append(("hibernate: echo disk to power-off", g.hibernate()))
        pages = g.need_to_copy()
        t = time.monotonic()
        g.resume()
        phases.append(("resume: new QEMU to shell", time.monotonic() - t))
        mem2 = g.meminfo()
        scenarios.check_data(g, digest)
        drop_mb, drop_us = scenarios.restore_drop_us(g)
        phases.append(("  of which restore dropped %s MiB" % drop_mb,
                       drop_us / 1e6))
        phases.append(("re-inflate to 256 MiB after resume",
                       scenarios.set_and_wait(g, 256)))
        mem3 = g.meminfo()
        scenarios.check_logs(g)
    finally:
        g.kill()

    def mb(m, k):
        return "%7.1f MiB" % (m[k] / vm.MiB)
    log("")
    log("balloon-s4 demo: virtio_balloon across hibernation (guest %s)" % kver)
    log("")
    log("%-34s %14s %14s" % ("", "MemTotal", "MemFree"))
    for label, m in (("booted", mem0),
                     ("balloon %d MiB" % scenarios.HALF_MB, mem1),
                     ("after resume (balloon dropped)", mem2),
                     ("new target 256 MiB", mem3)):
        log("%-34s %14s %14s" % (label, mb(m, "MemTotal"), mb(m, "MemFree")))
    log("")
    log("hibernation image: %d pages (%.1f MiB) with a %d MiB balloon"
        % (pages, pages * 4096 / vm.MiB, scenarios.HALF_MB))
    log("tmpfs data checksum after resume: unchanged")
    log("")
    for label, secs in phases:
        log("%-42s %8.2f s" % (label, secs))
    return 0


def cmd_bench(args):
    try:
        cells = bench.parse_cells(args.cells) if args.cells else None
    except bench.BenchError as e:
        log("bench: %s" % e)
        return 2
    r = Runner(args.build_dir)
    t0 = time.monotonic()
    kos = r.builds()
    if len(kos) < 2:
        return r.summary()
    kver, make_guest = r.guest_setup(kos)
    # Part of the matrix never overwrites the whole one's results.
    out = os.path.join(r.build_dir, "bench-cells" if cells or args.series
                       else "bench")
    series = args.series.split(",") if args.series else None
    if args.append:
        out += "-" + re.sub(r"[^\w.=-]+", "_", args.append)
    rows = bench.bench(untraced(make_guest), out, log,
                       iterations=args.iterations, cells=cells,
                       series=series, append=args.append)
    log("")
    log("guests %s, QEMU TCG; medians of %d iteration(s); %.0f min in all" % (
        ", ".join(guest_kernel(s) for s in series or bench.SERIES),
        args.iterations, (time.monotonic() - t0) / 60))
    log(bench.render(rows))
    log("")
    log("written: %s/bench.csv, bench.json, inflate.png" % out)
    return 0


def cmd_torture(args):
    """make torture: torture.py on the debug kernel, its report, and rc 1
    if a failure, leak, splat or checksum failure was counted."""
    phases = args.phases.split(",") if args.phases else None
    unknown = set(phases or []) - set(torture.PHASES)
    if unknown:
        log("torture: no such phase: %s (there are %s)" % (
            ", ".join(sorted(unknown)), ", ".join(torture.PHASES)))
        return 2
    r = Runner(args.build_dir)
    t0 = time.monotonic()
    kc = kernel_checks.KernelChecks(r.record, log)
    if not kc.prepare(debug_kernel.TARGET):
        log("torture: the series did not apply to %s" % debug_kernel.TARGET)
        return 1
    if not debug_kernel_info():
        log("torture: no debug kernel: %s" % _DEBUG["error"])
        return 1
    _, make_guest = r.guest_setup({})
    rep = torture.run(Runner._on_kernel(make_guest, DEBUG), log,
                      seed=args.seed, cycles=args.cycles, phases=phases,
                      lanes=args.lanes, quick=args.quick)
    log("")
    log("torture on %s, %.0f min:" % (guest_kernel(DEBUG),
                                      (time.monotonic() - t0) / 60))
    for line in rep.lines():
        log("  " + line)
    return 1 if rep.bad() else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("command", choices=["check", "demo", "bench",
                                        "torture"])
    ap.add_argument("--seed", type=int,
                    help="torture: the seed of a run to repeat")
    ap.add_argument("--cycles", type=int, default=50,
                    help="torture: hibernate/resume cycles (default 50)")
    ap.add_argument("--phases", metavar="NAME,...",
                    help="torture: only these of faults, oom, storm, "
                         "reload, cycles")
    ap.add_argument("--quick", action="store_true",
                    help="torture: one reload, and the faulted thaw only "
                         "with every allocation failing (make check's "
                         "smoke run is --quick --lanes 1 --cycles 1 "
                         "--seed 1)")
    ap.add_argument("--lanes", type=int, default=torture.LANES,
                    help="torture: guests taking cycles at once "
                         "(default %d)" % torture.LANES)
    ap.add_argument("--iterations", type=int, default=2,
                    help="bench: rounds of the whole matrix (default 2)")
    ap.add_argument("--cells", metavar="MIB:PCT,...",
                    help="bench: only these cells of the matrix, say "
                         "1024:90,4096:80")
    ap.add_argument("--series", metavar="SERIES,...",
                    help="bench: guest kernels (default 6.12,sid)")
    ap.add_argument("--append", default="",
                    help="bench: more guest kernel parameters, say "
                         "init_on_alloc=0")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--guest", choices=["busybox", "debian"],
                    default="busybox", help="demo: the guest to run")
    ap.add_argument("--only", nargs="*",
                    help="scenario names ('debian' for the Debian 12 guest); "
                         "'kernel' for the series, builds, KUnit, DKMS and "
                         "the .deb; 'kunit' for KUnit alone; 'deb' for the "
                         ".deb alone (check)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        log("warning: not root; QEMU and the builds may still work")
    sys.exit({"check": cmd_check, "demo": cmd_demo, "bench": cmd_bench,
              "torture": cmd_torture}[args.command](args))


if __name__ == "__main__":
    main()
