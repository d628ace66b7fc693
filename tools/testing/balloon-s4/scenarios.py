# SPDX-License-Identifier: GPL-2.0-only
"""End-to-end scenarios: a real guest, a real balloon, real hibernation.

Each scenario takes a Ctx, boots its own guests, and raises Failure (or
GuestError) on the first outcome that is not what the driver promises.
"""

import re
import time

from vm import MiB, GuestError

MEM_MB = 1024
HALF_MB = MEM_MB // 2
BPAGES_PER_MB = MiB // 4096

# Anything here in a console log or in dmesg fails the scenario.
BAD_LOG = re.compile(r"WARNING:|BUG:|BUG |Oops|list_del corruption|"
                     r"Call Trace|kmemleak|memory leak|general protection|"
                     r"Kernel panic|oom-kill|Out of memory|"
                     r"virtio_balloon .*(cannot|failed)")


class Failure(Exception):
    pass


def check(cond, fmt, *args):
    if not cond:
        raise Failure(fmt % args if args else fmt)


class Ctx:
    """What scenarios need: a way to make guests, and a place for numbers."""

    def __init__(self, make_guest, log):
        self.make_guest = make_guest
        self.log = log
        self.metrics = {}
        self.guests = []

    def guest(self, name, **kw):
        g = self.make_guest(name, **kw)
        self.guests.append(g)
        return g

    def close(self):
        for g in self.guests:
            g.kill()
        self.guests = []


def check_logs(g):
    """No warning, oops or leak in this guest's dmesg or any console."""
    texts = [g.dmesg()] if g.proc and g.proc.poll() is None else []
    texts += [g.console_text(i + 1) for i in range(len(g.consoles))]
    for t in texts:
        m = BAD_LOG.search(t)
        if m:
            line = t[t.rfind("\n", 0, m.start()) + 1:t.find("\n", m.end())]
            raise Failure("kernel log: %s" % line.strip())


def memtotal(g):
    return g.meminfo()["MemTotal"]


def assert_balloon(g, base_total, balloon_mb, what=""):
    """QMP, debugfs and MemTotal all say the balloon is @balloon_mb."""
    qmp_mb = g.balloon_mb()
    dbg = g.debugfs()
    total = memtotal(g)
    guest_mb = (base_total - total) / MiB
    tol = MEM_MB / 100
    check(abs(qmp_mb - balloon_mb) <= tol,
          "%sQMP balloon %.1f MiB, target %d MiB", what, qmp_mb, balloon_mb)
    check(abs(guest_mb - balloon_mb) <= tol,
          "%sMemTotal shrank by %.1f MiB, target %d MiB", what, guest_mb,
          balloon_mb)
    check(int(dbg["balloon_pages"]) == round(qmp_mb * BPAGES_PER_MB),
          "%sdriver holds %s pages, QMP says %.1f MiB", what,
          dbg["balloon_pages"], qmp_mb)


def write_data(g, mb=64):
    g.sh("dd if=/dev/urandom of=/tmp/data bs=1M count=%d 2>/dev/null" % mb)
    return g.sh("md5sum /tmp/data").split()[0]


def check_data(g, digest):
    now = g.sh("md5sum /tmp/data").split()[0]
    check(now == digest, "tmpfs checksum %s, was %s", now, digest)


def set_and_wait(g, mb, timeout=180):
    g.set_balloon(mb)
    return g.wait_balloon(mb, timeout)


def hibernate_resume(ctx, g, resume_balloon_mb=0):
    """One S4 cycle; returns (pages in image, hibernate s, resume s)."""
    t_hib = g.hibernate()
    run = g.runs
    pages = g.need_to_copy(run)
    t0 = time.monotonic()
    rc = g.resume(balloon_mb=resume_balloon_mb)
    t_res = time.monotonic() - t0
    check(rc == 0, "echo disk returned %d after resume", rc)
    return pages, t_hib, t_res


def check_first_stats(g):
    """Right after restore, the buffer the driver posted is current."""
    st = g.guest_stats()
    check(st["last-update"] > 0, "no statistics buffer after restore")
    check(st["stats"]["stat-total-memory"] == memtotal(g),
          "first statistics stale: total %d, MemTotal %d",
          st["stats"]["stat-total-memory"], memtotal(g))


def check_stats(g):
    """The host polls statistics; the driver answers with current values."""
    g.qmp.cmd("qom-set", path="/machine/peripheral/balloon0",
              property="guest-stats-polling-interval", value=1)
    first = g.guest_stats()["last-update"]
    deadline = time.monotonic() + 30
    while True:
        st = g.guest_stats()
        if st["last-update"] > first:
            break
        check(time.monotonic() < deadline, "statistics never updated")
        time.sleep(0.5)
    total = memtotal(g)
    check(st["stats"]["stat-total-memory"] == total,
          "stats total %d, MemTotal %d", st["stats"]["stat-total-memory"],
          total)
    check(st["stats"]["stat-available-memory"] > 0, "no available memory")
    check(int(g.debugfs()["stats_sent"]) >= 1, "driver answered no poll")


def restore_drop_us(g):
    m = re.findall(r"restore: returned (\d+) MiB .* in (\d+) us", g.dmesg())
    return (int(m[-1][0]), int(m[-1][1])) if m else (None, None)


# -- scenarios -----------------------------------------------------------

def s1_inflate_deflate(ctx):
    """Several targets up and down: QMP, debugfs and MemTotal agree."""
    g = ctx.guest("s1")
    g.boot()
    base = memtotal(g)
    for mb in (256, 768, 128, 640, 0):
        t = set_and_wait(g, mb)
        assert_balloon(g, base, mb, "target %d MiB: " % mb)
        ctx.metrics["s1 to %d MiB (s)" % mb] = round(t, 2)
    check(memtotal(g) == base, "MemTotal %d after deflating, was %d",
          memtotal(g), base)
    check_logs(g)


def s1_oversize_target(ctx):
    """A target larger than the guest can give: take what can be spared,
    kill nothing, log once, keep retrying, and come back on a lower one."""
    g = ctx.guest("s1-oversize")
    g.boot()
    base = memtotal(g)
    want = MEM_MB - 16
    g.set_balloon(want)
    got = g.wait_balloon(None, timeout=240, stable=12)
    check(HALF_MB < got < want, "balloon settled at %.1f MiB of %d", got,
          want)
    # The driver keeps 1/32 of guest memory available; 10% slack for
    # what the guest allocated since.
    avail = g.meminfo()["MemAvailable"]
    check(avail >= base / 32 * 0.9, "only %.1f MiB available to the guest",
          avail / MiB)
    dbg = g.debugfs()
    check(int(dbg["alloc_short"]) >= 2,
          "no retry after a short inflate (alloc_short=%s)",
          dbg["alloc_short"])
    n = len(re.findall(r"guest can spare", g.dmesg()))
    check(n == 1, "short-inflate message logged %d times, want 1", n)
    assert_balloon(g, base, round(got), "oversize: ")
    ctx.metrics["s1 oversize settled (MiB)"] = round(got, 1)
    set_and_wait(g, 128)
    assert_balloon(g, base, 128, "after oversize: ")
    check_logs(g)


def _hibernate_cycle(ctx, series):
    g = ctx.guest("s2-" + series, series=series)
    g.boot()
    base = memtotal(g)
    digest = write_data(g)

    pages0, _, _ = hibernate_resume(ctx, g)
    check_data(g, digest)

    t_inf = set_and_wait(g, HALF_MB)
    assert_balloon(g, base, HALF_MB, "before S4: ")
    pages1, t_hib, t_res = hibernate_resume(ctx, g)
    check_data(g, digest)
    check(g.balloon_mb() == 0, "QMP balloon %.1f MiB after restore",
          g.balloon_mb())
    check(memtotal(g) == base, "MemTotal %d after restore, was %d",
          memtotal(g), base)
    dbg = g.debugfs()
    # Two restores: the baseline cycle and this one.
    check(dbg["balloon_pages"] == "0" and dbg["restored"] == "2",
          "driver after restore: %s", dbg)
    check(pages1 <= pages0 * 1.05,
          "image %d pages with a %d MiB balloon, %d without", pages1,
          HALF_MB, pages0)
    drop_mb, drop_us = restore_drop_us(g)
    check(drop_mb == HALF_MB, "restore dropped %s MiB, want %d", drop_mb,
          HALF_MB)
    check_first_stats(g)

    t_new = set_and_wait(g, 256)
    assert_balloon(g, base, 256, "after restore: ")

    check_stats(g)

    ctx.metrics.update({("%s %s" % (series, k)): v for k, v in {
        "image pages, no balloon": pages0,
        "image pages, %d MiB balloon" % HALF_MB: pages1,
        "inflate %d MiB (s)" % HALF_MB: round(t_inf, 2),
        "hibernate: echo disk to power-off (s)": round(t_hib, 2),
        "resume: QEMU start to shell (s)": round(t_res, 2),
        "restore: drop %d MiB (ms)" % HALF_MB: round(drop_us / 1000, 1),
        "inflate 256 MiB after restore (s)": round(t_new, 2),
    }.items()})
    check_logs(g)


def s2_hibernate_cycle(ctx):
    """Balloon at half, hibernate, resume in a fresh QEMU: data intact,
    balloon empty, image no larger than without a balloon, queues alive."""
    _hibernate_cycle(ctx, "6.1")


def s2_hibernate_cycle_612(ctx):
    """The same cycle on Debian's 6.12 guest kernel."""
    _hibernate_cycle(ctx, "6.12")


def s3_restore_nonzero_target(ctx):
    """The resuming host already wants a balloon: restore drops the old
    one, then the guest converges to the new target."""
    g = ctx.guest("s3")
    g.boot()
    base = memtotal(g)
    digest = write_data(g)
    set_and_wait(g, HALF_MB)
    hibernate_resume(ctx, g, resume_balloon_mb=256)
    check_data(g, digest)
    g.wait_balloon(256)
    assert_balloon(g, base, 256, "after restore: ")
    dbg = g.debugfs()
    check(int(dbg["restore_dropped"]) == HALF_MB * BPAGES_PER_MB,
          "restore dropped %s pages, want %d", dbg["restore_dropped"],
          HALF_MB * BPAGES_PER_MB)
    check_logs(g)


def _through_transition(ctx, name, command, series="6.1", timeout=120):
    """Balloon at half, data in tmpfs, then the PM transition @command.

    Afterwards the data is intact and the balloon back at the host's
    unchanged target. Returns (guest, MemTotal at boot, debugfs before);
    the caller checks what is particular to the path, then
    _queues_still_work().
    """
    g = ctx.guest(name, series=series)
    g.boot()
    base = memtotal(g)
    digest = write_data(g, 32)
    set_and_wait(g, HALF_MB)
    before = g.debugfs()
    g.sh(command, timeout=timeout)
    check_data(g, digest)
    g.wait_balloon(HALF_MB)
    assert_balloon(g, base, HALF_MB, "after %s: " % name)
    return g, base, before


def _queues_still_work(g, base, name):
    set_and_wait(g, 128)
    assert_balloon(g, base, 128, "queues after %s: " % name)
    check_logs(g)


def s4_pm_test_devices(ctx):
    """Hibernation stopped after the devices froze: a thaw, and the
    balloon never leaves the guest's hands."""
    g, base, before = _through_transition(
        ctx, "s4-devices", "echo devices > /sys/power/pm_test && "
        "echo disk > /sys/power/state && echo none > /sys/power/pm_test")
    dbg = g.debugfs()
    check(dbg["thawed"] == "1" and dbg["restored"] == "0",
          "pm_test=devices: thawed=%s restored=%s", dbg["thawed"],
          dbg["restored"])
    check(dbg["deflated"] == before["deflated"],
          "balloon deflated across a thaw (%s -> %s pages)",
          before["deflated"], dbg["deflated"])
    _queues_still_work(g, base, "thaw")


def s4_pm_test_platform(ctx):
    """Stopped at the platform stage, the PM core resumes devices with
    PMSG_RESTORE; the balloon ends at the host's unchanged target."""
    g, base, _ = _through_transition(
        ctx, "s4-platform", "echo platform > /sys/power/pm_test && "
        "echo disk > /sys/power/state && echo none > /sys/power/pm_test")
    _queues_still_work(g, base, "pm_test=platform")


def s4_test_resume(ctx):
    """test_resume: the image is written and read back in the same VM.

    Runs on 6.12: Debian's 6.1 opens the resume device exclusively in
    test_resume mode, which fails with EBUSY while it is the active swap.
    """
    g, base, _ = _through_transition(
        ctx, "s4-test-resume", "echo test_resume > /sys/power/disk && "
        "echo disk > /sys/power/state && echo platform > /sys/power/disk",
        series="6.12", timeout=300)
    _queues_still_work(g, base, "test_resume")


def s5_ten_cycles(ctx):
    """Ten hibernate/resume cycles, each with another balloon."""
    g = ctx.guest("s5")
    g.boot()
    base = memtotal(g)
    digest = write_data(g, 32)
    times = []
    for i in range(10):
        mb = 64 + 64 * i
        set_and_wait(g, mb)
        assert_balloon(g, base, mb, "cycle %d before S4: " % i)
        _, t_hib, t_res = hibernate_resume(ctx, g)
        check_data(g, digest)
        check(g.balloon_mb() == 0 and memtotal(g) == base,
              "cycle %d: balloon %.1f MiB, MemTotal %d after restore", i,
              g.balloon_mb(), memtotal(g))
        times.append(t_hib + t_res)
    dbg = g.debugfs()
    check(dbg["restored"] == "10", "restored %s times, want 10",
          dbg["restored"])
    ctx.metrics["s5 mean cycle (s)"] = round(sum(times) / len(times), 1)
    check_logs(g)


def s6_unload_inflated(ctx):
    """rmmod with a full balloon gives every page back; reload works."""
    g = ctx.guest("s6")
    g.boot()
    base = memtotal(g)
    set_and_wait(g, HALF_MB)
    g.sh("rmmod virtio_balloon")
    check(memtotal(g) == base, "MemTotal %d after rmmod, was %d",
          memtotal(g), base)
    check(g.balloon_mb() == 0, "QMP balloon %.1f MiB after rmmod",
          g.balloon_mb())
    g.sh("insmod /lib/balloon/virtio_balloon.ko")
    g.wait_balloon(HALF_MB)
    assert_balloon(g, base, HALF_MB, "after reload: ")
    check_logs(g)


def s7_hv_s4_helper(ctx):
    """The Hyper-V S4 helper reads real ACPI tables: S4 offered on the
    default i440fx and q35 machines, not when QEMU disables it. It only
    reports: a guest without S4 still hibernates and resumes."""
    cases = [("pc", [], "Y"),
             ("pc", ["-global", "PIIX4_PM.disable_s4=1"], "N"),
             ("q35", [], "Y"),
             ("q35", ["-global", "ICH9-LPC.disable_s4=1"], "N")]
    for machine, extra, want in cases:
        label = machine + (" " + extra[1] if extra else "")
        g = ctx.guest("s7-" + label.replace(" ", "-").replace("=", ""),
                      machine=machine, extra=extra, mem_mb=512)
        g.boot()
        got = g.sh("cat /sys/module/hv_s4/parameters/"
                   "hibernation_supported").strip()
        check(got == want, "%s: helper says %s, want %s", label, got, want)
        modes = g.sh("cat /sys/power/disk").strip()
        check(("platform" in modes) == (want == "Y"),
              "%s: /sys/power/disk offers '%s'", label, modes)
        if machine == "pc" and want == "N":
            digest = write_data(g, 16)
            g.hibernate()
            check(g.resume() == 0, "%s: hibernation failed", label)
            check_data(g, digest)
        check_logs(g)
        g.kill()


SCENARIOS = [
    s1_inflate_deflate,
    s1_oversize_target,
    s2_hibernate_cycle,
    s2_hibernate_cycle_612,
    s3_restore_nonzero_target,
    s4_pm_test_devices,
    s4_pm_test_platform,
    s4_test_resume,
    s5_ten_cycles,
    s6_unload_inflated,
    s7_hv_s4_helper,
]

# The core scenarios again on another guest kernel, as (scenario, series):
# "sid" is the newest kernel in Debian sid (run.py records NAME@sid).
OTHER_KERNELS = [(name, "sid") for name in (
    "s1_inflate_deflate", "s2_hibernate_cycle", "s3_restore_nonzero_target",
    "s4_pm_test_devices", "s5_ten_cycles", "s6_unload_inflated")]

__all__ = ["Ctx", "Failure", "GuestError", "SCENARIOS", "OTHER_KERNELS",
           "check_logs", "HALF_MB", "MEM_MB"]
