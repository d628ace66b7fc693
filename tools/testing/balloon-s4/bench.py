# SPDX-License-Identifier: GPL-2.0-only
"""make bench: this project's virtio_balloon against the guest kernel's own.

Both drivers run in the same QEMU setup and the same Debian guest kernel,
one run after the other for each guest size and balloon fraction, in
alternating order across iterations, so that a slow patch of the machine
costs both alike. Results are ratios (ours / in-tree) next to the values.

Per run: boot; inflate to the fraction, deflate to 0 and inflate again,
each timed on the guest's clock (/proc/uptime, from just before the QMP
command until MemTotal reached the goal; QMP query-balloon must agree);
QEMU's VmRSS with the balloon inflated and settled; VmRSS sampled from
just before `echo disk` until power-off; "Need to copy N pages" and the
hibernate time. Then the image resumes twice, each time in a new QEMU:
to a host that wants no balloon (time from QEMU start to the first shell
command; how long the PM core measured the balloon's restore callback,
and the disk's as a control; when this driver had the whole balloon
back, from its log line: the in-tree driver has nothing to drop, it
deflated at freeze), and to a host that wants half the old balloon
(resume to usable, and until QMP reports the target). Last, a restore in
the same QEMU (pm_test=core) times the callback once more, without a new
QEMU's first runs of the code.

A target the guest cannot meet ends where the balloon stalls, and the
rates use the size reached. With 90% of memory ballooned the in-tree
driver's guest has no room left to copy its image into ("Image allocation
is N pages short": its deflate in freeze comes after the preallocation);
this driver gives back what the image needs first (issue 15). A cell
whose hibernation fails keeps its inflate and deflate numbers and
"hibernation succeeded" 0. A smaller /sys/power/image_size does
not help: preallocating the image then touches every free page, which
costs the host more than it saves.
"""

import base64
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import threading
import time

import scenarios
import vm

MiB = 1 << 20
PAGE = 4096

# The guest-side stopwatch: waits until MemTotal (kB) compares to a goal,
# or has not moved for about two seconds (a target the guest cannot meet),
# then prints the /proc/uptime readings from the start and from the last
# change, and the final MemTotal.
WATCH = b"""goal=$1
a=$(cut -d " " -f1 /proc/uptime)
b=$a
last=
same=0
while :; do
  t=$(awk "/^MemTotal/ {print \\$2}" /proc/meminfo)
  if [ "$t" $2 "$goal" ]; then
    b=$(cut -d " " -f1 /proc/uptime)
    break
  fi
  if [ "$t" = "$last" ]; then
    same=$((same + 1))
    [ $same -ge 100 ] && break
  else
    same=0
    last=$t
    b=$(cut -d " " -f1 /proc/uptime)
  fi
  usleep 20000
done
echo $a $b $t
"""

FULL = [(1024, 50), (1024, 90), (4096, 50), (4096, 90)]
QUICK = [(1024, 50)]
# Debian 12's newest kernel and sid's (the newest kernel this project
# supports); run.py knows which release "sid" is.
SERIES = ("6.12", "sid")
SERIES_NAMES = {"sid": "7.2"}


class BenchError(Exception):
    pass


def _rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _main_thread_ns(pid):
    """Time QEMU's main thread has run, in ns (schedstat, not the 10 ms
    ticks of stat). With ioeventfd, virtio-pci's default, the balloon's
    queues are handled there; so are QMP and the chardevs, so this is an
    upper bound on the device's own cost."""
    with open("/proc/%d/task/%d/schedstat" % (pid, pid)) as f:
        return int(f.read().split()[0])


class RssSampler(threading.Thread):
    """Peak VmRSS of a process, sampled every 20 ms until it exits."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak = pid, 0

    def run(self):
        while True:
            rss = _rss_kb(self.pid)
            if rss is None:
                return
            self.peak = max(self.peak, rss)
            time.sleep(0.02)


def timed_resize(g, balloon_mb, timeout):
    """Set the balloon; wait for QMP, or for it to stall short of the
    target. Returns (guest seconds to the last MemTotal change, MiB the
    balloon reached by QMP)."""
    base_kb = g.bench_memtotal_kb
    # MemTotal is the managed count; a page or two may lag the balloon.
    slack = 64
    if balloon_mb:
        goal, op = base_kb - balloon_mb * 1024 + slack, "-le"
    else:
        goal, op = base_kb - slack, "-ge"
    # In the foreground: the agent is PID 1, and a background job that
    # ends as an orphan interrupts its read of the next command.
    seq = g._send("sh /tmp/watch.sh %d %s" % (goal, op))
    g.set_balloon(balloon_mb)
    last, since, t0 = None, time.monotonic(), time.monotonic()
    while True:
        cur = g.balloon_mb()
        now = time.monotonic()
        if abs(cur - balloon_mb) < 1e-9:
            break
        if cur != last:
            last, since = cur, now
        elif now - since > 10:
            break
        if now - t0 > timeout:
            raise BenchError("balloon at %.0f of %d MiB after %ds" %
                             (cur, balloon_mb, timeout))
        time.sleep(0.1)
    rc, out = g._wait_marker(seq, 60)
    words = out.split()
    if rc or len(words) < 3:
        raise BenchError("the guest stopwatch failed: %r" % out[-200:])
    a, b = float(words[-3]), float(words[-2])
    return b - a, g.balloon_mb()


def one_run(make_guest, driver, mem_mb, pct, log, series="6.12",
            append=""):
    """Every metric for one driver, guest kernel, size and fraction."""
    balloon_mb = mem_mb * pct // 100
    g = make_guest("bench-%s-%s-%d-%d" % (driver, series, mem_mb, pct),
                   series=series, mem_mb=mem_mb, driver=driver,
                   append=append)
    r = {"driver": driver, "series": series, "mem_mb": mem_mb, "pct": pct,
         "balloon_mb": balloon_mb}
    timeout = 60 + balloon_mb // 8
    try:
        _measure(g, r, balloon_mb, timeout, driver)
    except (BenchError, vm.GuestError, OSError) as e:
        # A cell the guest cannot do (say, hibernating with 90% of a small
        # guest ballooned) stays empty; the error goes under the table,
        # with the guest's last word if it died.
        why = [ln for ln in g.console_text().splitlines()
               if re.search(r"Kernel panic|Out of memory|oom-kill", ln)]
        r["error"] = "%s%s (logs in %s)" % (
            e, ("; console: " + why[-1].strip()) if why else "", g.dir)
        e = r["error"]
        log("  %s %s %d MiB %d%%: %s" % (driver, series, mem_mb, pct, e))
        return r
    finally:
        g.kill()
        if not r.get("error"):
            shutil.rmtree(g.dir, ignore_errors=True)
    log("  %s %s %d MiB %d%%: inflate %.2fs deflate %.2fs image %d pages "
        "RSS %.0f MiB inflated, +%.0f MiB in S4; restore callback %s us "
        "(same QEMU %s us); resume %.1fs, with a target %.1fs, target "
        "reached %.1fs" % (
            driver, series, mem_mb, pct, r["inflate_s"], r["deflate_s"],
            r["image_pages"], r["rss_inflated_mb"], r["rss_growth_mb"],
            r["restore_cb_us"], r.get("restore_cb_warm_us"),
            r["resume_to_usable_s"], r["resume_target_usable_s"],
            r["target_reached_s"]))
    return r


# The PCI functions of the balloon and the disk, by their drivers' names.
PCI_OF = ("for d in virtio_balloon virtio_blk; do "
          "for v in /sys/bus/virtio/drivers/$d/virtio*; do "
          "echo $d $(basename $(dirname $(readlink -f $v))); done; done")


# The PM core's tracepoints around every device callback: they time the
# callbacks into the trace buffer, not onto the serial console, whose
# printing under TCG would be a good part of what is timed.
TRACE = "/sys/kernel/tracing"
TRACE_ON = ("{ [ -d %s/events ] || mount -t tracefs nodev %s; } && "
            "for e in start end; do echo 1 > "
            "%s/events/power/device_pm_callback_$e/enable; done" %
            (TRACE, TRACE, TRACE))


def _pm_cb_us(trace, pci, phase):
    """How long @pci's last @phase callback (PCI bus callback, "restore")
    took, in microseconds, from the PM core's tracepoints in @trace."""
    start = last = None
    for m in re.finditer(
            r"\s(\d+\.\d+): device_pm_callback_(start|end): \S+ (\S+?),"
            r"(.*)$", trace, re.M):
        t, what, dev, rest = float(m.group(1)), m.group(2), m.group(3), \
            m.group(4)
        if dev != pci:
            continue
        if what == "start":
            start = t if rest.endswith("bus [%s]" % phase) and \
                "noirq" not in rest and "early" not in rest else None
        elif start is not None and "err=0" in rest:
            last = round((t - start) * 1e6)
            start = None
    return last


def _drop_ms(g, driver):
    """Milliseconds from the restore callback's start until this driver
    had the whole balloon back (its log line; the drop runs in its work
    after the callback). The in-tree driver has nothing left to drop: it
    deflated in freeze."""
    if driver != "ours":
        return 0.0
    deadline = time.monotonic() + 60
    while True:
        # From the console on the host: a command in the guest would be
        # a task competing with the drop it times.
        _, us = scenarios.restore_drop_us(g, g.console_text())
        if us is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if us is None:
        raise BenchError("no restore line on the console after 60 s")
    return us / 1000


class TargetWatch(threading.Thread):
    """Host seconds from QEMU start until QMP reported @balloon_mb for
    good: the value must then hold for HOLD seconds. A restore's drop
    passes through the target on its way to 0, for one batch."""

    HOLD = 1.0

    def __init__(self, g, balloon_mb, timeout):
        super().__init__(daemon=True)
        self.g, self.want, self.timeout = g, balloon_mb, timeout
        self.secs = None

    def run(self):
        t0 = time.monotonic()
        since = None
        while time.monotonic() - t0 < self.timeout:
            try:
                cur = self.g.balloon_mb()
            except (vm.GuestError, OSError):
                return
            now = time.monotonic()
            if abs(cur - self.want) >= 1e-9:
                since = None
            elif since is None:
                since = now
            elif now - since >= self.HOLD:
                self.secs = since - self.g.t_launch
                return
            time.sleep(0.05)


def _measure(g, r, balloon_mb, timeout, driver):
    """The phases of one_run(), filling @r as they complete."""
    g.boot()
    g.sh("echo %s | base64 -d > /tmp/watch.sh" %
         base64.b64encode(WATCH).decode())
    pci = dict(ln.split() for ln in g.sh(PCI_OF).splitlines()
               if len(ln.split()) == 2)
    if set(pci) != {"virtio_balloon", "virtio_blk"}:
        raise BenchError("no balloon or disk in sysfs: %r" % pci)
    m0 = g.meminfo()
    g.bench_memtotal_kb = m0["MemTotal"] // 1024
    pid = g.proc.pid

    ns0 = _main_thread_ns(pid)
    t, reached = timed_resize(g, balloon_mb, timeout)
    ns1 = _main_thread_ns(pid)
    pages = int(reached * MiB // PAGE)
    if not pages:
        raise BenchError("the balloon took no page (goal %d MiB)" %
                         balloon_mb)
    # The host's share of an inflate (a discard per page); the rest is
    # the guest's, on a vCPU its own watcher keeps busy throughout, so
    # the vCPU's CPU time would only restate the rate.
    r["inflate_host_us_page"] = (ns1 - ns0) / 1e3 / pages
    r["reached_mb"] = reached
    r["inflate_s"] = t
    r["inflate_pages_s"] = pages / t if t > 0 else None
    m1 = g.meminfo()
    # Kernel memory the balloon took beyond its own pages, per page.
    # Not MemFree: page cache and per-cpu lists move it by megabytes.
    extra = m1["SUnreclaim"] - m0["SUnreclaim"]
    r["overhead_bytes_per_page"] = max(extra, 0) / pages
    # What the host pays for a guest that sits with its balloon full.
    time.sleep(2)
    r["rss_inflated_mb"] = (_rss_kb(pid) or 0) / 1024
    t, _ = timed_resize(g, 0, timeout)
    r["deflate_s"] = t
    r["deflate_pages_s"] = pages / t if t > 0 else None
    _, reached = timed_resize(g, balloon_mb, timeout)

    # Devices resume one after another, as on a machine with one CPU
    # they nearly do anyway: an asynchronous resume on one vCPU would
    # interleave other devices' callbacks into the one timed.
    g.sh(TRACE_ON + " && echo 0 > /sys/power/pm_async")
    before = _rss_kb(pid)
    sampler = RssSampler(pid)
    sampler.start()
    # A failed hibernation leaves 0 here and its error under the table.
    r["hibernated"] = 0
    r["hibernate_s"] = g.hibernate(timeout=600)
    r["hibernated"] = 1
    sampler.join(5)
    r["given_back_pages"] = _given_back(g, driver, reached)
    r["rss_before_mb"] = before / 1024
    r["rss_peak_mb"] = sampler.peak / 1024
    r["rss_growth_mb"] = (sampler.peak - before) / 1024
    r["rss_growth_frac"] = r["rss_growth_mb"] / reached
    r["image_pages"] = g.need_to_copy()

    # The same image resumes twice: to a host that wants no balloon, then
    # to one that wants half of the old one.
    image = g.swap + ".image"
    subprocess.run(["cp", "--sparse=always", g.swap, image], check=True)
    pending = g.pending
    g.resume(timeout=600)
    r["resume_to_usable_s"] = g.t_ready - g.t_launch
    r["balloon_back_ms"] = _drop_ms(g, driver)
    text = g.sh("cat %s/trace" % TRACE)
    r["restore_cb_us"] = _pm_cb_us(text, pci["virtio_balloon"], "restore")
    r["restore_cb_blk_us"] = _pm_cb_us(text, pci["virtio_blk"], "restore")
    if r["restore_cb_us"] is None:
        raise BenchError("no restore callback of %s in the trace" %
                         pci["virtio_balloon"])
    g.kill()

    os.replace(image, g.swap)
    g.pending = pending
    half = int(reached) // 2
    watch = TargetWatch(g, half, 300)
    g.resume(balloon_mb=half, timeout=600, after_cont=watch.start)
    r["resume_target_usable_s"] = g.t_ready - g.t_launch
    watch.join(300)
    if watch.is_alive() or watch.secs is None:
        raise BenchError("balloon not at the new target %d MiB" % half)
    r["target_reached_s"] = watch.secs

    # A restore in the same QEMU (pm_test=core resumes with PMSG_RESTORE):
    # the callback's time without a new QEMU's first runs of the code.
    g.set_balloon(int(reached))
    g.wait_balloon(None, timeout=timeout, stable=3)
    g.sh("echo > %s/trace && echo core > /sys/power/pm_test && "
         "echo disk > /sys/power/state; rc=$?; "
         "echo none > /sys/power/pm_test; exit $rc" % TRACE, timeout=300)
    r["restore_cb_warm_us"] = _pm_cb_us(g.sh("cat %s/trace" % TRACE),
                                        pci["virtio_balloon"], "restore")
    g.sh("true")


def _given_back(g, driver, reached_mb):
    """Pages the driver handed back to the guest before the image: ours
    logs its give-back for the image (issue 15); the in-tree driver
    deflates the whole balloon in freeze."""
    if driver != "ours":
        return int(reached_mb * MiB // PAGE)
    m = scenarios.gave_back(g.console_text())
    return m["total"] if m else 0


# (key, label, unit, better): better is "high" or "low".
METRICS = [
    ("reached_mb", "balloon reached", "MiB", "high"),
    ("inflate_pages_s", "inflate rate", "pages/s", "high"),
    ("inflate_host_us_page", "inflate: QEMU main thread time per page",
     "us", "low"),
    ("deflate_pages_s", "deflate rate", "pages/s", "high"),
    ("rss_inflated_mb", "host RSS, balloon inflated", "MiB", "low"),
    ("rss_growth_mb", "host RSS growth in S4", "MiB", "low"),
    ("rss_growth_frac", "host RSS growth in S4 / balloon", "", "low"),
    ("hibernated", "hibernation succeeded", "1/0", "high"),
    ("given_back_pages", "pages given back for S4", "pages", "low"),
    ("image_pages", "image size", "pages", "low"),
    ("hibernate_s", "echo disk to power-off", "s", "low"),
    ("restore_cb_us", "restore callback, new QEMU", "us", "low"),
    ("restore_cb_warm_us", "restore callback, same QEMU", "us", "low"),
    ("restore_cb_blk_us", "virtio-blk's restore callback, new QEMU", "us",
     "low"),
    ("resume_to_usable_s", "resume to usable", "s", "low"),
    ("balloon_back_ms", "balloon back, from the restore callback", "ms",
     "low"),
    ("resume_target_usable_s", "resume to usable, new target", "s", "low"),
    ("target_reached_s", "new target reached, from QEMU start", "s",
     "low"),
    ("overhead_bytes_per_page", "slab per ballooned page", "bytes", "low"),
]


def table(runs):
    """Rows of (metric, size, in-tree, ours, ratio) from median values."""
    rows = []
    cells = sorted({(r["series"], r["mem_mb"], r["pct"]) for r in runs},
                   key=lambda c: (_ver(c[0]), c[1], c[2]))
    for key, label, unit, _ in METRICS:
        for series, mem_mb, pct in cells:
            vals = {}
            for drv in ("intree", "ours"):
                xs = [r[key] for r in runs if r["driver"] == drv and
                      r["series"] == series and r["mem_mb"] == mem_mb and
                      r["pct"] == pct and r.get(key) is not None]
                vals[drv] = statistics.median(xs) if xs else None
            it, us = vals["intree"], vals["ours"]
            ratio = us / it if it and us is not None else None
            rows.append({"metric": label, "unit": unit,
                         "guest": "%s, %d MiB, %d%%" % (
                             SERIES_NAMES.get(series, series), mem_mb, pct),
                         "intree": it, "ours": us, "ratio": ratio})
    return rows


def _ver(series):
    return [int(x) if x.isdigit() else 1 << 30 for x in series.split(".")]


def _fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 1:
        return "%.2f" % v
    return "%.3f" % v


def render(rows):
    head = ("metric", "guest", "in-tree", "ours", "ours/in-tree")
    body = [("%s (%s)" % (r["metric"], r["unit"]) if r["unit"] else
             r["metric"], r["guest"], _fmt(r["intree"]), _fmt(r["ours"]),
             _fmt(r["ratio"])) for r in rows]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(5)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(head, widths)) +
             " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for b in body:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in
                                         zip(b, widths)) + " |")
    return "\n".join(lines)


def plot(runs, out_png, log):
    """Inflate time against balloon size, both drivers (gnuplot)."""
    if not shutil.which("gnuplot"):
        log("  gnuplot missing: no plot")
        return None
    d = os.path.dirname(out_png)
    data = {}
    for drv in ("intree", "ours"):
        pts = {}
        for r in runs:
            if r["driver"] == drv and r.get("inflate_s"):
                pts.setdefault(r["balloon_mb"], []).append(r["inflate_s"])
        path = os.path.join(d, "inflate-%s.dat" % drv)
        with open(path, "w") as f:
            for mb in sorted(pts):
                f.write("%d %.4f\n" % (mb, statistics.median(pts[mb])))
        data[drv] = path
    script = """set terminal png size 800,500
set output '%s'
set title 'Inflate time (guest clock), QEMU TCG'
set xlabel 'balloon size (MiB)'
set ylabel 'seconds'
set key left top
set grid
plot '%s' with linespoints title 'in-tree virtio\\_balloon', \\
     '%s' with linespoints title 'this virtio\\_balloon'
""" % (out_png, data["intree"], data["ours"])
    r = subprocess.run(["gnuplot"], input=script.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode:
        log("  gnuplot failed: %s" % r.stdout.decode(errors="replace"))
        return None
    return out_png


def parse_cells(text):
    """"1024:90,4096:80" -> [(1024, 90), (4096, 80)]: guest MiB and the
    percentage ballooned, for running part of the matrix."""
    cells = []
    for item in text.split(","):
        try:
            mem, pct = (int(x) for x in item.split(":"))
        except ValueError:
            raise BenchError("bad cell %r: want MiB:PERCENT, say 4096:80"
                             % item) from None
        if mem < 256 or not 0 < pct < 100:
            raise BenchError("bad cell %r: at least 256 MiB, 1-99%%" % item)
        cells.append((mem, pct))
    return cells


def bench(make_guest, out_dir, log, quick=False, iterations=1, cells=None,
          series=None, append=""):
    """Run the matrix (or @cells) on each guest kernel of @series; write
    CSV, JSON and the plot; return the rows. @append goes on the guests'
    kernel command line."""
    os.makedirs(out_dir, exist_ok=True)
    runs = []
    matrix = cells or (QUICK if quick else FULL)
    kernels = series or (SERIES[:1] if quick else SERIES)
    for it in range(iterations):
        for ser in kernels:
            for mem_mb, pct in matrix:
                order = ("intree", "ours") if it % 2 == 0 else \
                    ("ours", "intree")
                for drv in order:
                    runs.append(one_run(make_guest, drv, mem_mb, pct, log,
                                        ser, append))
    rows = table(runs)
    for r in runs:
        if r.get("error"):
            log("  no values for %s, %s, %d MiB, %d%%: %s" % (
                r["driver"], r["series"], r["mem_mb"], r["pct"],
                r["error"]))
    with open(os.path.join(out_dir, "bench.json"), "w") as f:
        json.dump({"runs": runs, "table": rows}, f, indent=1)
    with open(os.path.join(out_dir, "bench.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["metric", "unit", "guest",
                                          "intree", "ours", "ratio"])
        w.writeheader()
        w.writerows(rows)
    plot(runs, os.path.join(out_dir, "inflate.png"), log)
    return rows
