# SPDX-License-Identifier: GPL-2.0-only
"""make torture: the virtio balloon driver hammered on the debug kernel.

Every phase runs on the debug guest kernel (debug_kernel.py: KASAN,
kmemleak, lockdep, DEBUG_LIST, DEBUG_OBJECTS, page poisoning, fault
injection). What a phase does at random comes from one seed, printed
first and accepted back with --seed, so a failing run can be repeated.

  cycles   hibernate/resume cycles (and some pm_test freeze/thaw ones),
           each with a random balloon before and a random target set by
           the resuming host; a memwalk process (memwalk.c) checks its
           own memory the whole time and a tmpfs file its checksum. The
           cycles are shared out among LANES guests running at once
  oom      deflate-on-oom offered, swap off, a workload bigger than what
           is left beside the balloon: the OOM notifier deflates, nothing
           is killed
  faults   fail_page_alloc and failslab, limited to allocations made from
           virtio_balloon's code, while inflating, deflating, and in the
           freeze/thaw and restore callbacks
  storm    a QMP target every 50 ms across freeze, thaw and restore
  reload   rmmod in the middle of an inflate, insmod again

After each step: QEMU (the host witness), the driver and QMP agree on the
balloon, MemTotal is what the balloon leaves, the workload's data is
intact, and the kernel log holds no new report; kmemleak scans after
every cycle and at the end of each guest.

The report: cycles run, faults injected, faults the driver handled (it
logged the failure and kept a defined state), then failures (a check
that did not hold), leaks, splats and checksum failures, which must all
be 0.
"""

import itertools
import random
import re
import threading
import time
import traceback

import scenarios
import vm
from scenarios import Failure, MiB, check

BPAGES_PER_MB = scenarios.BPAGES_PER_MB
# The workload: anonymous memory memwalk keeps rewriting and checking.
WALK_MB = 64
WALK_STATE = "/tmp/memwalk.state"
DATA_MB = 16
# The guests' memory before the debug kernel's extra (run.py), in MiB.
# Below the scenarios' 1 GiB: the debug kernel's hibernation and restore
# take time by the free page (preallocation, poisoning or clearing every
# free page after the restore), and a cycle a minute less is what lets
# fifty of them fit the hour.
GUEST_MB = scenarios.MEM_MB - 256
# Balloon sizes drawn, in MiB: up to what the debug kernel, the workload
# and the tmpfs file leave room for.
MAX_BALLOON_MB = 384
# Cycles that start with an empty balloon, and with a pm_test freeze and
# thaw first (which costs a preallocation and a copy more).
EMPTY_SHARE = 0.125
THAW_SHARE = 0.15
# Cycles run in this many guests at once: one TCG vCPU, so about one
# host core, each.
LANES = 2
PHASES = ["oom", "storm", "reload", "faults", "cycles"]
# Slab faults armed for a thaw or a restore: more than the callback makes
# allocations, however often the transport retries.
ARMED = 1000
FAULTS = "/sys/kernel/debug"
# What lib/fault-inject.c prints for each fault; with verbose 2 the stack
# follows, where the driver's frames say which of its paths it hit.
FAULT_LINE = "FAULT_INJECTION: forcing a failure."
# Not the frames the unwinder is unsure of ("? fn+0x.."): stale return
# addresses, of functions that are not running.
OUR_FRAME = re.compile(r"\]\s+([\w.]+)\+0x[0-9a-f]+/0x[0-9a-f]+ "
                       r"\[virtio_balloon\]")
# The driver's one line for a failure it handled (vb_send_failed(),
# vb_restore()'s err_broken, remove of a broken device).
DRIVER_FAIL = re.compile(r"virtio_balloon \S+: .*(cannot|failed)")
# pm_test's freeze and thaw in the same VM; the freeze's status is kept.
PM_TEST_DEVICES = ("echo devices > /sys/power/pm_test && "
                   "echo disk > /sys/power/state; rc=$?; "
                   "echo none > /sys/power/pm_test; exit $rc")


class Report:
    def __init__(self, seed):
        self.seed = seed
        self.cycles = 0
        # Cycles whose step failed: with those that passed, all of them.
        self.cycles_failed = 0
        self.thaws = 0
        self.faults = 0
        self.handled = 0
        self.failures = []
        self.leaks = 0
        self.splats = 0
        self.checksum = 0
        # What the splat, leak and checksum counts stand for.
        self.details = []
        self.abandoned_mb = 0

    def add(self, other):
        """Count @other's (another lane's) figures in too."""
        for k in ("cycles", "cycles_failed", "thaws", "faults", "handled",
                  "leaks", "splats", "checksum", "abandoned_mb"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.failures += other.failures
        self.details += other.details

    def bad(self):
        return (len(self.failures) + self.leaks + self.splats +
                self.checksum)

    def lines(self):
        out = ["seed %d" % self.seed,
               "cycles %d (and %d pm_test thaws)" % (self.cycles,
                                                     self.thaws),
               "faults injected %d" % self.faults,
               "failures handled %d" % self.handled,
               "failures %d" % len(self.failures),
               "leaks %d" % self.leaks,
               "splats %d" % self.splats,
               "checksum failures %d" % self.checksum]
        if self.abandoned_mb:
            out.append("MiB left out of use by broken devices %d" %
                       self.abandoned_mb)
        out += ["  " + f for f in self.failures + self.details]
        return out


class Torture:
    """One guest at a time, checked after every step."""

    def __init__(self, make_guest, log, rng, report, init_on_free=False,
                 quick=False):
        self.make_guest = make_guest
        # make check's smoke run: each path once, not each variant.
        self.quick = quick
        self.log = log
        self.rng = rng
        self.r = report
        self.g = None
        self.name = None
        self.boot_kw = {}
        # Guests booted again after a failed step, for their names.
        self.again = 0
        # The debug guests boot with page poisoning, which takes over from
        # init_on_free: page_poison=0, after it, leaves init_on_free on.
        self.init_on_free = init_on_free
        self.base = 0
        self.digest = None
        self.splat_seen = 0
        # MiB the driver left out of use when a broken device went away:
        # MemTotal is short by that much for the rest of the guest's life,
        # and this QEMU still holds those of them it was given (lost_host,
        # in bpages).
        self.lost_mb = 0
        self.lost_host = self.lost_run = 0
        # Driver failure lines this test caused on purpose.
        self.expected_fail_lines = 0

    # -- the guest ---------------------------------------------------

    def boot(self, name, **kw):
        self.close()
        self.name, self.boot_kw = name, dict(kw)
        kw.setdefault("mem_mb", GUEST_MB)
        if self.init_on_free:
            kw["append"] = (kw.get("append", "") + " page_poison=0").strip()
        self.g = self.make_guest("torture-" + name, **kw)
        self.g.boot()
        auto = self.g.sh("dmesg | grep -o 'mem auto-init: stack.*'").strip()
        check(auto.endswith("heap free:%s" % (
            "on" if self.init_on_free else "off")),
            "%s: not what the guest was booted for: %s", name, auto)
        self.base = scenarios.memtotal(self.g)
        self.lost_mb = self.lost_host = 0
        self.splat_seen = 0
        self.expected_fail_lines = 0
        self.digest = scenarios.write_data(self.g, DATA_MB)
        self.g.sh("bs4-memwalk %d %s >/tmp/memwalk.log 2>&1 &" %
                  (WALK_MB, WALK_STATE))
        self.wait_walk()
        return self.g

    def close(self):
        if self.g:
            if self.g.proc and self.g.proc.poll() is None and self.g.agent:
                try:
                    self.wait_walk()
                    self.check_log("at the end")
                    self.leak_scan()
                except (Failure, vm.GuestError) as e:
                    if self._counted(e):
                        self.r.details.append("at the end: %s" % e)
                    else:
                        self.fail("at the end", e)
            self.g.kill()
            self.g = None

    def _counted(self, e):
        """A failure a counter already has: a splat, a leak or a checksum
        the step's own check raised."""
        return re.search(r"kernel reports|kmemleak:|memwalk: MISMATCH|"
                         r"checksum", str(e)) is not None

    def fail(self, what, e):
        msg = "%s: %s" % (what, e)
        self.log("torture: FAIL %s" % msg)
        self.r.failures.append(msg)

    # -- checks ------------------------------------------------------

    def walk_pass(self):
        """memwalk's pass count, after checking that it still runs and
        has found no mismatch."""
        st = self.g.sh("cat %s 2>/dev/null; echo; "
                       "pidof bs4-memwalk || echo gone" % WALK_STATE)
        if "MISMATCH" in st:
            self.r.checksum += 1
            raise Failure("memwalk: %s" % st.strip().splitlines()[0])
        if "gone" in st:
            raise Failure("memwalk is not running: %s" %
                          self.g.sh("cat /tmp/memwalk.log").strip())
        m = re.search(r"pass (\d+)", st)
        return int(m.group(1)) if m else 0

    def wait_walk(self, timeout=120):
        """Two more passes of memwalk from now, without a mismatch: the
        second reads every word after whatever the last step did."""
        deadline = time.monotonic() + timeout * self.g.timeout_scale
        want = self.walk_pass() + 2
        while self.walk_pass() < want:
            check(time.monotonic() < deadline,
                  "memwalk made no two passes in %ds", timeout)
            time.sleep(1)

    def check_data(self):
        now = self.g.sh("md5sum /tmp/data").split()[0]
        if now != self.digest:
            self.r.checksum += 1
            raise Failure("tmpfs checksum %s, was %s" % (now, self.digest))
        self.wait_walk()

    def check_balloon(self, mb, what):
        """Host, driver, QMP and MemTotal say @mb MiB (plus what a broken
        device left behind, for MemTotal)."""
        g = self.g
        g.wait_balloon(mb, timeout=300)
        scenarios.assert_balloon(g, self.base, mb, what + ": ", self.lost_mb)
        # A new QEMU has none of the pages an old one was left with.
        lost = self.lost_host if g.runs == self.lost_run else 0
        scenarios.check_host(g, what + ": ", abandoned=lost)

    def new_splats(self):
        """(reports not seen before, the first of them in one line) in
        every console of the guest: each kernel's whole output, the
        hibernating kernel's after its snapshot and the loader's
        included, which the restored kernel's dmesg does not have."""
        g = self.g
        bad = []
        for run in range(1, len(g.consoles) + 1):
            text = g.console_text(run)
            for m in scenarios.BAD_LOG.finditer(text):
                end = text.find("\n", m.start())
                line = text[text.rfind("\n", 0, m.start()) + 1:
                            end if end >= 0 else len(text)]
                if DRIVER_FAIL.match(line.split("] ", 1)[-1]):
                    continue
                # The stack of a fault armed with verbose 2: the first
                # frames past dump_stack are the injection's own.
                if m.group(0) == "Call Trace" and "should_fail_ex+" in \
                        "\n".join(text[m.start():m.start() + 2000].split(
                            "\n", 8)[:8]):
                    continue
                bad.append((text, m.start()))
        new = bad[self.splat_seen:]
        self.splat_seen = len(bad)
        self.r.splats += len(new)
        return len(new), (scenarios.splat_summary(*new[0]) if new else "")

    def check_log(self, what):
        """No new kernel report; the driver's failure lines only as many
        as this test caused."""
        n, first = self.new_splats()
        check(not n, "%s: %d kernel reports, first: %s", what, n, first)
        lines = [ln for ln in self.g.dmesg().splitlines()
                 if DRIVER_FAIL.search(ln)]
        check(len(lines) <= self.expected_fail_lines,
              "%s: %d driver failure lines, %d expected: %s", what,
              len(lines), self.expected_fail_lines, lines[-1:])

    def leak_scan(self, scans=2):
        """A kmemleak scan; the objects it found are counted. One scan is
        enough where the last one was a cycle ago (kmemleak_report())."""
        _, kept = scenarios.kmemleak_report(self.g, scans)
        # Each object counted once: the next report starts empty.
        self.g.sh("echo clear > /sys/kernel/debug/kmemleak")
        if kept:
            self.r.leaks += len(kept)
            raise Failure("kmemleak: %d unreferenced objects, first: %s" % (
                len(kept), scenarios.leak_summary(kept[0])))

    def step(self, what, fn):
        """Run one step; a failure is counted and the guest replaced."""
        try:
            fn()
            self.check_log(what)
            return True
        except Exception as e:                      # noqa: BLE001
            if not isinstance(e, (Failure, vm.GuestError)):
                # A harness bug, or output it did not expect: counted, and
                # the lane goes on.
                e = Failure("%s: %s" % (type(e).__name__,
                                        traceback.format_exc()))
            before = (self.r.splats, self.r.leaks, self.r.checksum)
            # A report vm.CRASH stopped the guest for is a splat.
            try:
                self.new_splats()
            except OSError:
                pass
            after = (self.r.splats, self.r.leaks, self.r.checksum)
            if after == before and not self._counted(e):
                self.fail(what, e)
            else:
                self.log("torture: FAIL %s: %s" % (what, e))
                self.r.details.append("%s: %s" % (what, e))
            # The leaks of a guest that still answers, counted before it
            # goes (one that does not would only time out).
            try:
                if isinstance(e, Failure) and self.g.proc.poll() is None:
                    self.leak_scan()
            except Failure as leak:
                self.r.details.append("%s: %s" % (what, leak))
            except Exception:                       # noqa: BLE001
                pass
            try:
                self.g.kill()
            except Exception:                       # noqa: BLE001
                pass
            self.g = None
            self.again += 1
            self.boot("%s-again%d" % (self.name.split("-again")[0],
                                      self.again), **self.boot_kw)
            return False

    # -- phases ------------------------------------------------------

    def cycle(self, i):
        """One hibernation resumed in a new QEMU; some are preceded by a
        pm_test freeze and thaw in the same VM. What is drawn for cycle @i
        depends on the seed and @i alone, whichever lane runs it."""
        g = self.g
        t0 = time.monotonic()
        rng = random.Random("%d:cycle:%d" % (self.r.seed, i))
        before = 0 if rng.random() < EMPTY_SHARE else \
            rng.randrange(64, MAX_BALLOON_MB + 1, 16)
        thaw = rng.random() < THAW_SHARE
        after = rng.choice([0, 0, rng.randrange(16, MAX_BALLOON_MB + 1, 16)])
        self.log("torture: cycle %d: balloon %d MiB,%s host target %d MiB "
                 "at resume" % (i, before, " a thaw," if thaw else "",
                                after))
        times = []

        def lap(what):
            times.append("%s %.0f" % (what, time.monotonic() - t0 -
                                      sum(float(t.split()[-1])
                                          for t in times)))
        g.set_balloon(before)
        self.check_balloon(before, "cycle %d before" % i)
        lap("inflate")
        if thaw:
            # The balloon stays through a thaw.
            g.sh(PM_TEST_DEVICES, timeout=300)
            self.check_balloon(before, "cycle %d after thaw" % i)
            self.r.thaws += 1
            lap("thaw")
        g.hibernate()
        lap("hibernate")
        rc = g.resume(balloon_mb=after)
        check(rc == 0, "cycle %d: echo disk returned %d", i, rc)
        lap("resume")
        scenarios.wait_drop_done(g, "cycle %d" % i)
        self.check_balloon(after, "cycle %d after restore" % i)
        lap("balloon")
        self.check_data()
        lap("data")
        self.leak_scan(scans=1)
        lap("kmemleak")
        self.r.cycles += 1
        self.log("torture: cycle %d done in %.0fs (%s s)" % (
            i, time.monotonic() - t0, ", ".join(times)))

    def cycles(self, take, lane):
        """Cycles until take() has no number left for another."""
        i = take()
        if i is not None:
            self.boot("cycles-%d" % lane)
        while i is not None:
            if not self.step("cycle %d" % i, lambda i=i: self.cycle(i)):
                self.r.cycles_failed += 1
            i = take()

    def oom(self):
        """The balloon takes most of the guest; swap off; a workload
        that needs more than is left. The OOM notifier deflates."""
        self.boot("oom", balloon_opts="deflate-on-oom=on")
        g = self.g

        def run():
            g.sh("swapoff /dev/vda")
            balloon = MAX_BALLOON_MB
            g.set_balloon(balloon)
            self.check_balloon(balloon, "oom: inflated")
            avail = g.meminfo()["MemAvailable"] // MiB
            want = avail + 160
            self.log("torture: oom: %d MiB available, workload %d MiB" % (
                avail, want))
            # Past what the heuristic lets one mmap() have (more than
            # MemTotal, with no swap): the pages are what must run out.
            g.sh("echo 1 > /proc/sys/vm/overcommit_memory")
            pid = int(g.sh("bs4-memwalk %d /tmp/oom.state >/tmp/oom.log "
                           "2>&1 & echo $!" % want).split()[-1])
            deadline = time.monotonic() + 300 * g.timeout_scale
            while True:
                st = g.sh("cat /tmp/oom.state 2>/dev/null; echo; "
                          "kill -0 %d && echo running" % pid)
                if "MISMATCH" in st:
                    self.r.checksum += 1
                    raise Failure("oom workload: %s" % st.strip())
                check(st.split()[-1] == "running",
                      "the oom workload is gone: %s",
                      g.sh("cat /tmp/oom.log; dmesg | tail -5"))
                if re.search(r"pass [1-9]", st):
                    break
                check(time.monotonic() < deadline,
                      "oom workload made no pass: %s", st.strip())
                time.sleep(2)
            dbg = g.debugfs()
            check(int(dbg["oom_deflated"]) > 0,
                  "the OOM notifier deflated nothing: %s", dbg)
            dmesg = g.dmesg()
            check("Killed process" not in dmesg and
                  "oom-kill" not in dmesg, "something was OOM-killed")
            check(int(g.sh("pidof bs4-memwalk | wc -w").strip()) == 2,
                  "a workload died: %s", g.sh("cat /tmp/memwalk.log "
                                              "/tmp/oom.log"))
            now = g.balloon_mb()
            check(now < balloon, "balloon still %.1f MiB", now)
            self.log("torture: oom: balloon %d -> %.1f MiB, %s bpages "
                     "to the OOM notifier" % (balloon, now,
                                              dbg["oom_deflated"]))
            g.sh("kill %d; sleep 1; swapon /dev/vda; "
                 "echo 0 > /proc/sys/vm/overcommit_memory" % pid)
            scenarios.check_host(g, "oom: after: ")
            self.check_data()
        self.step("oom", run)

    # -- fault injection ---------------------------------------------

    def _fault_range(self):
        """[start, end) of virtio_balloon's code: its first text symbol in
        /proc/kallsyms, and the first address past its last one that some
        other symbol has (no slack that could take in the next module)."""
        out = self.g.sh(
            "sort /proc/kallsyms | awk '"
            "$2 ~ /^[tT]$/ && /\\[virtio_balloon\\]$/ "
            "{ if (lo == \"\") lo = $1; hi = $1; end = \"\"; next } "
            "hi != \"\" && end == \"\" && $1 != hi { end = $1 } "
            "END { print lo, end }'").split()
        check(len(out) == 2, "virtio_balloon's code not in kallsyms: %s", out)
        lo, hi = (int(a, 16) for a in out)
        check(0 < lo < hi, "virtio_balloon's code at [%x, %x)", lo, hi)
        return lo, hi

    def faults_set(self, which, prob, times, verbose=1):
        """Fail @prob % of @which's allocations made from the driver's
        code, at most @times in all. @verbose 2: each with its stack on
        the console, for faults_by_caller()."""
        lo, hi = self._fault_range()
        d = "%s/%s" % (FAULTS, which)
        extra = {"fail_page_alloc": "echo N > %s/ignore-gfp-wait; "
                                    "echo N > %s/ignore-gfp-highmem; "
                                    "echo 0 > %s/min-order; " % (d, d, d),
                 "failslab": "echo N > %s/ignore-gfp-wait; " % d}[which]
        if verbose > 1:
            # Every stack, not the ratelimit's first few.
            extra += "echo 0 > %s/verbose_ratelimit_interval_ms; " % d
        self.g.sh(extra +
                  "echo 0x%x > %s/require-start; echo 0x%x > %s/require-end; "
                  "echo 32 > %s/stacktrace-depth; echo %d > %s/verbose; "
                  "echo 0 > %s/interval; echo %d > %s/times; "
                  "echo %d > %s/probability" % (lo, d, hi, d, d, verbose, d,
                                                d, times, d, prob, d))

    def faults_arm(self, prob):
        """@prob % of the allocations made from the driver's code fail, up
        to ARMED slab and ARMED page allocations, each with its stack: at
        100 a queue setup cannot succeed, whichever fallback the transport
        tries; below, it may, or fail at a later allocation than the
        first."""
        self.faults_set("failslab", prob, ARMED, verbose=2)
        self.faults_set("fail_page_alloc", prob, ARMED, verbose=2)

    def faults_by_caller(self):
        """{the outermost of the driver's functions on the stack: faults}
        for the faults reported with their stack on every console of the
        guest so far, and the count of those that had none of them."""
        by = {}
        for run in range(1, len(self.g.consoles) + 1):
            chunks = self.g.console_text(run).split(FAULT_LINE)
            for chunk in chunks[1:]:
                frames = OUR_FRAME.findall("\n".join(
                    chunk.splitlines()[:80]))
                key = frames[-1] if frames else "(none)"
                by[key] = by.get(key, 0) + 1
        return by

    def faults_off(self, which, times):
        """Stop @which; return the faults it injected of @times."""
        d = "%s/%s" % (FAULTS, which)
        left = int(self.g.sh("echo 0 > %s/probability; cat %s/times" %
                             (d, d)).strip())
        n = times - left
        self.r.faults += n
        return n

    def faults(self):
        # The 1 GiB of the scenarios: two broken thaws leave 256 MiB out
        # of use in this guest.
        self.boot("faults", mem_mb=scenarios.MEM_MB)
        times = 1000000

        def inflate_deflate():
            g = self.g
            # An inflate round ends at its first failed allocation, and
            # one that got no page waits five seconds: one in a hundred
            # keeps the inflate going, slower. The inflate and deflate
            # paths make no slab allocation of their own (the page lists
            # and the PFN array are the device's, one sg entry needs no
            # indirect descriptor): failslab is armed for any that would
            # appear, and its count is logged, not required.
            short = int(g.debugfs()["alloc_short"])
            self.faults_set("fail_page_alloc", 1, times)
            self.faults_set("failslab", 10, times)
            g.set_balloon(384)
            got = g.wait_balloon(None, timeout=120, stable=10)
            # Past its failed allocations: each costs a round, not the
            # inflate.
            check(got >= 192, "faults: the inflate stopped at %.1f of 384 "
                  "MiB", got)
            g.set_balloon(64)
            self.check_balloon(64, "faults: deflate with faults")
            n = self.faults_off("fail_page_alloc", times)
            n_slab = self.faults_off("failslab", times)
            # Rounds that found no page: the driver backed off and retried.
            short = int(g.debugfs()["alloc_short"]) - short
            self.log("torture: faults: %d page and %d slab allocations "
                     "failed while inflating and deflating; %d rounds "
                     "retried" % (n, n_slab, short))
            check(n > 0, "no page allocation failed while inflating")
            self.r.handled += short
            g.set_balloon(384)
            self.check_balloon(384, "faults: inflate after the faults")
            self.check_data()
        self.step("faults: inflate and deflate", inflate_deflate)

        def thaw(prob):
            g = self.g
            g.set_balloon(128)
            self.check_balloon(128, "faults: before thaw")
            before = self.faults_by_caller()
            self.faults_arm(prob)
            g.sh(PM_TEST_DEVICES, timeout=300)
            self.after_faults("thaw", 128, before, must_break=prob == 100)
        self.step("faults: thaw, every allocation failing",
                  lambda: thaw(100))
        prob = self.rng.choice([20, 35, 50])
        if not self.quick:
            self.step("faults: thaw, %d%% of allocations failing" % prob,
                      lambda: thaw(prob))

        # A guest of its own: the broken device's pages stay out of use.
        self.boot("faults-restore", mem_mb=scenarios.MEM_MB)

        def restore():
            g = self.g
            g.set_balloon(256)
            self.check_balloon(256, "faults: before restore")
            before = self.faults_by_caller()
            # The image holds the armed faults: the restored kernel's own
            # queue setup fails too (the hibernating one's thaw has
            # failed already, after the snapshot).
            self.faults_arm(100)
            g.hibernate()
            g.resume(balloon_mb=128)
            self.after_faults("restore", 128, before, must_break=True)
        self.step("faults: restore", restore)

    def after_faults(self, what, target, before, must_break):
        """After @what with faults armed: the faults hit the driver's
        callback (vb_restore(), thaw and restore alike; the freeze makes no
        allocation). Then either the callback got through and the balloon
        works, or it failed, the driver is broken and said so in one line,
        and rebinding it, the faults off, brings the balloon back to
        @target. (Faults the hibernating kernel took after its snapshot are
        not in the restored kernel's count, but on its console.)"""
        g = self.g
        n = self.faults_off("failslab", ARMED)
        n += self.faults_off("fail_page_alloc", ARMED)
        by = self.faults_by_caller()
        by = {k: v - before.get(k, 0) for k, v in by.items()
              if v != before.get(k, 0)}
        text = g.dmesg()
        lines = [ln for ln in text.splitlines() if DRIVER_FAIL.search(ln)]
        dbg = g.debugfs()
        self.log("torture: faults: %s: %d injected, by the driver's "
                 "outermost frame %s; state %s, %s" % (
                     what, n, by, dbg.get("state"),
                     lines[-1] if len(lines) > self.expected_fail_lines
                     else "no line"))
        # Below 100%, a thaw may draw no failure at all.
        check(n >= 1 or not must_break, "%s: no armed fault was injected",
              what)
        check(by.get("vb_restore", 0) > 0 or not n, "%s: no fault on "
              "vb_restore()'s stack: %s", what, by)
        if dbg.get("state") != "broken":
            check(not must_break, "%s: the driver is %s with every "
                  "allocation failing", what, dbg.get("state"))
            check(len(lines) == self.expected_fail_lines,
                  "%s: got through, yet logged %s", what,
                  lines[self.expected_fail_lines:])
            self.check_balloon(target, "faults: %s got through" % what)
            self.check_data()
            return
        check(len(lines) == self.expected_fail_lines + 1 and
              "%s: cannot" % what in lines[-1],
              "%s: %d driver failure lines, want 1 new from %s: %s", what,
              len(lines) - self.expected_fail_lines, what, lines)
        self.expected_fail_lines += 1
        # Counted in bpages: a give-back for the image leaves no whole MiB.
        held_pages = int(dbg["balloon_pages"])
        held = held_pages / BPAGES_PER_MB
        dev = g.sh("basename $(readlink /sys/bus/virtio/drivers/"
                   "virtio_balloon/virtio*)").strip()
        g.sh("echo %s > /sys/bus/virtio/drivers/virtio_balloon/unbind && "
             "echo %s > /sys/bus/virtio/drivers/virtio_balloon/bind" %
             (dev, dev))
        # Remove of a broken device logs what it could not hand back.
        self.expected_fail_lines += 1 if held else 0
        self.lost_mb += held
        if what == "thaw":
            # The same QEMU: it still holds them.
            if g.runs != self.lost_run:
                self.lost_host, self.lost_run = 0, g.runs
            self.lost_host += held_pages
        self.r.abandoned_mb += round(held)
        self.r.handled += 1
        self.check_balloon(target, "faults: %s, rebound" % what)
        self.check_data()

    # -- target storm ------------------------------------------------

    def storm(self):
        self.boot("storm")
        g = self.g
        stop = threading.Event()
        # Targets QEMU took in each window: the same rng as the rest.
        sent = {}
        window = ["before"]
        rng = random.Random(self.rng.random())

        errors = []

        def blow():
            while not stop.is_set():
                proc, qmp = g.proc, g.qmp
                try:
                    g.set_balloon(rng.randrange(0, MAX_BALLOON_MB + 1, 8))
                    sent[window[0]] = sent.get(window[0], 0) + 1
                except vm.GuestError:
                    pass                    # QEMU gone, or not yet there
                except Exception as e:              # noqa: BLE001
                    # Of a QEMU that is up, connected, and still the
                    # guest's: the storm's own failure, raised again after
                    # join().
                    if proc and proc.poll() is None and qmp and \
                            qmp is g.qmp:
                        errors.append(e)
                        return
                stop.wait(0.05)

        def run():
            t = threading.Thread(target=blow, daemon=True)
            t.start()
            try:
                time.sleep(3)
                window[0] = "freeze and thaw"
                g.sh(PM_TEST_DEVICES, timeout=300)
                window[0] = "hibernation"
                g.hibernate()
                window[0] = "restore"
                g.resume()
                time.sleep(3)
            finally:
                stop.set()
                t.join()
            check(not errors, "storm: QMP failed: %r", errors[:1])
            self.log("torture: storm: targets sent %s" % sent)
            for w in ("freeze and thaw", "hibernation", "restore"):
                check(sent.get(w, 0) > 0, "storm: no target sent during "
                      "the %s", w)
            final = self.rng.randrange(0, MAX_BALLOON_MB + 1, 16)
            scenarios.wait_drop_done(g, "storm")
            g.set_balloon(final)
            self.check_balloon(final, "storm: settled")
            self.check_data()
        self.step("storm", run)

    # -- module reload mid-inflate -----------------------------------

    def reload(self):
        self.boot("reload")
        g = self.g
        n = 1 if self.quick else 3

        def run():
            for i in range(n):
                target = self.rng.randrange(256, MAX_BALLOON_MB + 1, 16)
                g.set_balloon(0)
                self.check_balloon(0, "reload %d: empty" % i)
                inflated = g.host.update().inflates
                g.set_balloon(target)
                # Somewhere in the inflate: wait for a random share of it.
                share = self.rng.uniform(0.1, 0.6)
                dbg = "/sys/kernel/debug/virtio_balloon/*/status"
                held = int(g.sh(
                    "i=0; while [ $i -lt 600 ]; do "
                    "b=$(sed -n 's/^balloon_pages: //p' %s); "
                    "[ \"${b:-0}\" -ge %d ] && break; sleep 0.05; "
                    "i=$((i+1)); done; "
                    "b=$(sed -n 's/^balloon_pages: //p' %s); "
                    "rmmod virtio_balloon && echo $b" % (
                        dbg, int(target * share * BPAGES_PER_MB), dbg),
                    timeout=120).split()[-1])
                check(0 < held < target * BPAGES_PER_MB,
                      "reload %d: rmmod with %d of %d pages, not in the "
                      "middle of the inflate", i, held,
                      target * BPAGES_PER_MB)
                # The host's side, which the read before rmmod cannot
                # vouch for: the pages it got before remove deflated
                # them all.
                deadline = time.monotonic() + 30 * g.timeout_scale
                while g.host.update().held:
                    check(time.monotonic() < deadline, "reload %d: the "
                          "host still holds %d pages after rmmod", i,
                          len(g.host.held))
                    time.sleep(0.5)
                inflated = g.host.inflates - inflated
                check(0 < inflated < target * BPAGES_PER_MB,
                      "reload %d: the host got %d of %d pages before "
                      "rmmod: not in the middle of the inflate", i,
                      inflated, target * BPAGES_PER_MB)
                total = scenarios.memtotal(g)
                check(abs(total - self.base) <= MiB,
                      "reload %d: MemTotal %d after rmmod, was %d", i,
                      total, self.base)
                check(g.balloon_mb() < 1, "reload %d: QMP balloon %.1f "
                      "MiB after rmmod", i, g.balloon_mb())
                g.sh("insmod /lib/balloon/virtio_balloon.ko")
                self.check_balloon(target, "reload %d: after insmod" % i)
            self.check_data()
        self.step("reload", run)


def run(make_guest, log, seed=None, cycles=50, phases=None, lanes=LANES,
        quick=False):
    """The torture run; returns its Report. @phases: names to run
    (default all): cycles, oom, faults, storm, reload. The first lane
    runs the phases other than cycles, then joins the others in taking
    the cycles one by one. @quick: one reload, and the faults phase's
    thaw only with every allocation failing."""
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    log("torture: seed %d (repeat with --seed %d%s%s)" % (
        seed, seed, " --lanes %d" % lanes if lanes != LANES else "",
        " --quick" if quick else ""))
    todo = phases or PHASES
    unknown = set(todo) - set(PHASES)
    if unknown:
        raise ValueError("no such torture phase: %s (there are %s)" % (
            ", ".join(sorted(unknown)), ", ".join(PHASES)))
    n = cycles if "cycles" in todo else 0
    taken = itertools.count()
    lock = threading.Lock()

    def take():
        with lock:
            i = next(taken)
        return i if i < n else None

    # Lanes past the first only take cycles.
    lanes = lanes if n else 1
    reports = [Report(seed) for _ in range(lanes)]
    log_lock = threading.Lock()

    def lane(k):
        def lane_log(msg):
            with log_lock:
                log(msg.replace("torture:", "torture[%d]:" % k, 1)
                    if lanes > 1 else msg)
        # One lane in two with init_on_free, the others page poisoning.
        t = Torture(make_guest, lane_log, random.Random(seed), reports[k],
                    init_on_free=k % 2 == 1, quick=quick)
        try:
            for name in (todo if k == 0 else ["cycles"]):
                t0 = time.monotonic()
                if name == "cycles":
                    t.cycles(take, k)
                else:
                    getattr(t, name)()
                lane_log("torture: %s done in %.0fs" % (
                    name, time.monotonic() - t0))
                t.close()
        except (Failure, vm.GuestError) as e:
            # A guest that could not even boot: this lane cannot go on.
            t.fail("boot", e)
        except BaseException:           # a harness bug, a failed build
            # (SystemExit), which a thread would drop unseen
            t.fail("harness", traceback.format_exc())
        finally:
            try:
                t.close()
            except BaseException:
                t.fail("harness", traceback.format_exc())

    threads = [threading.Thread(target=lane, args=(k,)) for k in
               range(lanes)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    r = reports[0]
    for other in reports[1:]:
        r.add(other)
    if r.cycles + r.cycles_failed < n:
        r.failures.append("%d of %d cycles never ran" % (
            n - r.cycles - r.cycles_failed, n))
    return r
