# SPDX-License-Identifier: GPL-2.0-only
"""QEMU guests for the balloon-s4 harness: initramfs, QMP and the agent.

A Guest is one virtual machine across any number of QEMU processes: it
keeps its swap disk, so hibernating powers one QEMU off and resume() starts
the next one from the same disk.
"""

import gzip
import io
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20

# Modules the guest needs; their dependencies come from modules.dep. The
# ACPI button driver makes QMP's power button a wakeup event.
GUEST_MODULES = ["virtio_pci", "virtio_blk", "button"]

# QEMU trace events the host witness reads (see HostBalloon).
TRACE_EVENTS = ["virtio_queue_notify", "virtio_set_status",
                "virtio_balloon_handle_output", "virtio_balloon_set_config"]

# A guest that prints one of these is dead or wedged: fail at once.
CRASH = re.compile(r"Kernel panic|Oops|BUG:|INFO: task \S+ blocked for more "
                   r"than|watchdog: BUG")

# Seconds a task may sit in D state before the guest reports it hung; the
# longest legitimate wait in a scenario (an image write) is well below.
HUNG_TASK_SECS = 30


class GuestError(Exception):
    pass


class HostBalloon:
    """What one QEMU's balloon device received, read from its trace.

    The trace names every page frame handed to the balloon's inflate or
    deflate queue (virtio_balloon_handle_output) right after the kick that
    delivered it (virtio_queue_notify, queue 0 inflates, 1 deflates); TCG
    runs both on the vCPU under the big lock, so nothing comes in between.
    From that the host's own view is rebuilt page by page: @held is the
    set of guest-physical addresses the host has taken and not been given
    back. An inflate of a page already held means the guest used the page
    in between without telling the host (@reinflated). A deflate of a page
    this QEMU never took is harmless and only counted (@unknown_deflates):
    a guest may tell a new host about a balloon an old one held.
    """

    _ev = re.compile(r"^(virtio_queue_notify|virtio_set_status|"
                     r"virtio_balloon_set_config) (.*)$")

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.held = set()
        self.inflates = self.deflates = 0
        self.reinflated = []
        self.unknown_deflates = 0
        self.actual = 0
        self.vdev = None
        self.resets = 0
        self.queue = None          # (vdev, queue index) of the last kick
        self.lines = 0

    def update(self):
        """Read what QEMU appended since the last call; return self."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self
        self.offset += len(data)
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        out = "virtio_balloon_handle_output "
        for line in data[:cut].decode(errors="replace").splitlines():
            # Page lines are nearly all of the trace: the fast path.
            if line.startswith(out):
                self.lines += 1
                self._page(int(line[line.rindex(" ") + 1:], 16))
                continue
            m = self._ev.match(line)
            if m:
                self.lines += 1
                self._event(m.group(1), m.group(2))
        return self

    def _page(self, gpa):
        vdev, n = self.queue or (None, -1)
        self.vdev = vdev
        if n == 0:
            self.inflates += 1
            if gpa in self.held:
                self.reinflated.append(gpa)
            self.held.add(gpa)
        elif n == 1:
            self.deflates += 1
            if gpa in self.held:
                self.held.remove(gpa)
            else:
                self.unknown_deflates += 1
        else:
            raise GuestError("balloon page 0x%x after a kick of queue %d: "
                             "trace out of order" % (gpa, n))

    def _event(self, ev, args):
        if ev == "virtio_queue_notify":
            m = re.match(r"vdev (\S+) n (\d+)", args)
            self.queue = (m.group(1), int(m.group(2)))
        elif ev == "virtio_balloon_set_config":
            self.actual = int(re.match(r"actual: (\d+)", args).group(1))
        elif ev == "virtio_set_status":
            m = re.match(r"vdev (\S+) val (\d+)", args)
            if m and m.group(1) == self.vdev and int(m.group(2)) == 0:
                self.resets += 1

    def summary(self):
        return ("host holds %d pages (%d inflated, %d deflated, %d "
                "re-inflated while held, %d unknown deflates), actual %d" %
                (len(self.held), self.inflates, self.deflates,
                 len(self.reinflated), self.unknown_deflates, self.actual))


def module_load_order(kver, wanted, base=None):
    """Paths (under @base, default /lib/modules/@kver) of @wanted and their
    dependencies, dependencies first. Modules built into the kernel are
    left out."""
    base = base or "/lib/modules/%s" % kver
    deps = {}
    with open(os.path.join(base, "modules.dep")) as f:
        for line in f:
            mod, _, rest = line.partition(":")
            deps[mod] = rest.split()

    def name(path):
        return re.sub(r"\.ko(\.\w+)?$", "", os.path.basename(path))
    by_name = {name(m): m for m in deps}
    order = []

    def visit(mod):
        if mod in order:
            return
        for d in deps[mod]:
            visit(d)
        order.append(mod)
    for w in wanted:
        if w in by_name:
            visit(by_name[w])
    return [os.path.join(base, m) for m in order]


def _read_module(path):
    """Module bytes, decompressed: busybox insmod takes plain ELF only."""
    tools = {".xz": ["xz", "-dc"], ".zst": ["zstd", "-dc"]}
    ext = os.path.splitext(path)[1]
    if ext in tools:
        return subprocess.run(tools[ext] + [path], check=True,
                              stdout=subprocess.PIPE).stdout
    with open(path, "rb") as f:
        return f.read()


class _Cpio:
    """A newc cpio archive written in memory."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name, mode, data=b"", nlink=1):
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join("%08x" % v for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0,
            len(name_b), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + name_b)
        self.buf.write(b"\0" * (-(110 + len(name_b)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._entry(name, 0o040755, nlink=2)

    def file(self, name, data, mode=0o644):
        self._entry(name, 0o100000 | mode, data)

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def build_initramfs(out, kver, balloon_ko, intree_ko=None, extra_kos=(),
                    modroot=None, bins=()):
    """Write a gzip'd initramfs for Debian kernel @kver to @out.

    @extra_kos are loaded at every fresh boot, before the balloon driver.
    @modroot is the kernel's module directory when it is not
    /lib/modules/@kver (a kernel unpacked elsewhere). @bins are static
    programs, put in /bin under their own names.
    """
    cp = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules",
              "lib/balloon", "lib/intree", "lib/extra"):
        cp.dir(d)
    with open(shutil.which("busybox") or "/bin/busybox", "rb") as f:
        cp.file("bin/busybox", f.read(), 0o755)
    with open(os.path.join(HERE, "init"), "rb") as f:
        cp.file("init", f.read(), 0o755)
    order = []
    for path in module_load_order(kver, GUEST_MODULES, modroot):
        name = re.sub(r"\.ko(\.\w+)?$", ".ko", os.path.basename(path))
        cp.file("lib/modules/" + name, _read_module(path))
        order.append(name)
    cp.file("lib/modules.order", ("\n".join(order) + "\n").encode())
    with open(balloon_ko, "rb") as f:
        cp.file("lib/balloon/virtio_balloon.ko", f.read())
    if intree_ko:
        cp.file("lib/intree/virtio_balloon.ko", _read_module(intree_ko))
    for ko in extra_kos:
        cp.file("lib/extra/" + os.path.basename(ko), _read_module(ko))
    for path in bins:
        with open(path, "rb") as f:
            cp.file("bin/" + os.path.basename(path), f.read(), 0o755)
    with gzip.open(out, "wb", compresslevel=1) as f:
        f.write(cp.finish())


class Qmp:
    """Minimal QMP client: one command at a time, events kept aside.

    Commands from several threads (the torture's target storm beside the
    scenario) are serialised: one command, then its answer.
    """

    def __init__(self, path, timeout=30):
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self.events = []
        self._read()                       # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.file.readline()
        if not line:
            raise GuestError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        with self.lock:
            try:
                self.file.write(json.dumps(msg).encode() + b"\n")
                self.file.flush()
            except (OSError, ValueError) as e:
                raise GuestError("QMP %s: %s" % (name, e)) from e
            while True:
                r = self._read()
                if "event" in r:
                    self.events.append(r)
                    continue
                if "error" in r:
                    raise GuestError("QMP %s: %s" % (name, r["error"]))
                return r.get("return")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Guest:
    """One VM: a swap disk, a kernel, an initramfs, and its QEMU runs."""

    def __init__(self, workdir, kernel, initrd, mem_mb=1024, smp=1,
                 driver="ours", machine="pc", extra=(), log=print,
                 trace=True, append="", balloon_opts="", timeout_scale=1):
        self.dir = workdir
        # Every wait of this guest's takes this many times longer: a
        # kernel with KASAN and lockdep under TCG is that much slower.
        self.timeout_scale = timeout_scale
        os.makedirs(workdir, exist_ok=True)
        self.kernel, self.initrd = kernel, initrd
        self.mem_mb, self.smp, self.machine = mem_mb, smp, machine
        self.driver, self.extra, self.log = driver, list(extra), log
        self.swap = os.path.join(workdir, "swap.img")
        self.runs = 0
        self.proc = self.qmp = self.agent = None
        self.seq = 0
        self.pending = None
        self.rxbuf = b""
        self.consoles = []
        self.host = None
        self.console_off = 0
        self.trace = trace
        self.append = append
        # A kernel built with the checkers (run.py's debug series): short
        # of room where a production kernel is not.
        self.debug_kernel = False
        self.balloon_dev = "virtio-balloon-pci,id=balloon0"
        if balloon_opts:
            self.balloon_dev += "," + balloon_opts
        if "free-page-hint=on" in balloon_opts:
            # QEMU runs hint requests in an iothread of their own.
            self.extra += ["-object", "iothread,id=bs4io"]
            self.balloon_dev += ",iothread=bs4io"
        with open(self.swap, "wb") as f:
            f.truncate(1024 * MiB)
        os.chmod(self.swap, 0o600)
        # The guest swaps on the disk, not on this file: holes are fine.
        subprocess.run(["mkswap", self.swap], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # -- QEMU process --------------------------------------------------

    def _launch(self):
        self.runs += 1
        run = self.runs
        self.console = os.path.join(self.dir, "console-%d.log" % run)
        self.consoles.append(self.console)
        self.console_off = 0
        trace_args = []
        if self.trace:
            events = os.path.join(self.dir, "trace-events")
            with open(events, "w") as f:
                f.write("\n".join(TRACE_EVENTS) + "\n")
            out = os.path.join(self.dir, "trace-%d.log" % run)
            trace_args = ["-trace", "events=%s,file=%s" % (events, out)]
            # A new QEMU is a new host: it has taken no page yet.
            self.host = HostBalloon(out)
        qmp_path = os.path.join(self.dir, "qmp.sock")
        agent_path = os.path.join(self.dir, "agent.sock")
        for p in (qmp_path, agent_path):
            if os.path.exists(p):
                os.unlink(p)
        args = [
            "qemu-system-x86_64", "-accel", "tcg", "-machine", self.machine,
            "-m", str(self.mem_mb), "-smp", str(self.smp),
            "-nographic", "-nodefaults", "-no-reboot", "-S",
            "-kernel", self.kernel, "-initrd", self.initrd,
            # A vCPU starved by a busy host otherwise fails the boot-time
            # IO-APIC timer check and panics (no_timer_check), and reports
            # pm_test's 5 s busy wait as a soft lockup (watchdog_thresh:
            # a lockup is reported after 60 s instead of 20 s).
            "-append", "console=ttyS0,115200 no_console_suspend panic=-1 "
                       "no_timer_check watchdog_thresh=30 "
                       "sysctl.kernel.hung_task_timeout_secs=%d "
                       "bs4.driver=%s %s" % (
                           HUNG_TASK_SECS * self.timeout_scale, self.driver,
                           self.append),
            "-drive", "file=%s,if=virtio,format=raw,cache=unsafe" % self.swap,
            "-device", self.balloon_dev,
            "-serial", "file:%s" % self.console,
            "-chardev", "socket,id=agent,path=%s,server=on,wait=off"
            % agent_path,
            "-serial", "chardev:agent",
            "-qmp", "unix:%s,server=on,wait=off" % qmp_path,
        ] + trace_args + self.extra
        self.t_launch = time.monotonic()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        for _ in range(200):
            if os.path.exists(qmp_path) and os.path.exists(agent_path):
                break
            if self.proc.poll() is not None:
                raise GuestError("QEMU exited: %s" %
                                 self.proc.stdout.read().decode())
            time.sleep(0.05)
        else:
            raise GuestError("QEMU made no QMP socket in 10s")
        self.qmp = Qmp(qmp_path)
        self.agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.agent.connect(agent_path)
        self.rxbuf = b""

    def boot(self, balloon_mb=0, timeout=120):
        """Start a fresh guest and wait for its agent."""
        self._launch()
        if balloon_mb:
            self.set_balloon(balloon_mb)
        self.qmp.cmd("cont")
        self._wait_marker(0, timeout)
        self.t_ready = time.monotonic()

    def resume(self, balloon_mb=0, timeout=300, after_cont=None):
        """Start the next QEMU on the swap disk; the guest must resume.

        @balloon_mb is set before the guest runs at all. @after_cont is
        called once the guest runs, before waiting for it (a benchmark
        starts its watch there). Returns the rc of the command that
        hibernated the guest.
        """
        if self.pending is None:
            raise GuestError("resume() without a hibernated guest")
        self._launch()
        if balloon_mb:
            self.set_balloon(balloon_mb)
        self.qmp.cmd("cont")
        if after_cont:
            after_cont()
        seq, self.pending = self.pending, None
        rc, out = self._wait_marker(seq, timeout)
        self.t_ready = time.monotonic()
        if "bs4: fresh boot" in self.console_text():
            raise GuestError("guest booted fresh instead of resuming")
        return rc

    def wait_exit(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise GuestError("QEMU still running after %ds" % timeout)
        self._close()

    def _close(self):
        if self.qmp:
            self.qmp.close()
        if self.agent:
            self.agent.close()
        self.qmp = self.agent = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def console_tail(self, lines=40):
        """The last @lines lines of the newest console, for failures."""
        if not self.consoles:
            return ""
        text = self.console_text()
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def fail(self, msg):
        raise GuestError("%s\n--- console tail (%s) ---\n%s" %
                         (msg, os.path.basename(self.console),
                          self.console_tail()))

    def watch_console(self):
        """Fail now if the guest crashed or wedged.

        Every wait loop calls this, so a dead guest costs seconds, not a
        timeout: a panic ends QEMU (panic=-1 with -no-reboot), an oops or
        BUG shows on the console, and a wedged guest's soft-lockup or
        hung-task detector prints within HUNG_TASK_SECS.
        """
        if not self.consoles:
            return
        # Re-read a little of what was seen: a line may have been cut.
        start = max(0, self.console_off - 200)
        with open(self.console, "rb") as f:
            f.seek(start)
            data = f.read()
        self.console_off = start + len(data)
        new = data.decode(errors="replace")
        m = CRASH.search(new)
        if m:
            self.fail("guest crashed: %s" % new[m.start():].split("\n")[0])

    def watch(self):
        """watch_console(), and fail if QEMU is gone."""
        self.watch_console()
        if self.proc.poll() is not None:
            self.fail("QEMU exited (rc %d)" % self.proc.returncode)

    def console_text(self, run=None):
        path = self.consoles[-1 if run is None else run - 1]
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")

    # -- agent ---------------------------------------------------------

    def _wait_marker(self, seq, timeout):
        pat = re.compile(rb"@@BS4 (\d+) (\d+)@@\r?\n")
        timeout *= self.timeout_scale
        deadline = time.monotonic() + timeout
        self.agent.settimeout(1)
        while True:
            m = pat.search(self.rxbuf)
            if m and int(m.group(1)) == seq:
                out = self.rxbuf[:m.start()].decode(errors="replace")
                self.rxbuf = self.rxbuf[m.end():]
                return int(m.group(2)), out
            if m:                      # a stale answer: drop it
                self.rxbuf = self.rxbuf[m.end():]
                continue
            if time.monotonic() > deadline:
                self.fail("guest did not answer #%d in %ds" % (seq, timeout))
            self.watch()
            try:
                data = self.agent.recv(65536)
            except socket.timeout:
                continue
            if not data:
                self.fail("agent connection closed")
            self.rxbuf += data

    def _send(self, command):
        if "\n" in command:
            raise ValueError("agent commands are single lines")
        self.seq += 1
        self.agent.sendall(("%d\t%s\n" % (self.seq, command)).encode())
        return self.seq

    def run(self, command, timeout=120):
        """Run @command in the guest; return (rc, output)."""
        return self._wait_marker(self._send(command), timeout)

    def sh(self, command, timeout=120):
        rc, out = self.run(command, timeout)
        if rc:
            raise GuestError("guest: '%s' failed (%d): %s" %
                             (command, rc, out.strip()[-500:]))
        return out

    def start(self, command):
        """Send @command without waiting; wait_for() takes the answer."""
        return self._send(command)

    def wait_for(self, seq, timeout=120):
        """(rc, output) of the command start() sent as @seq."""
        return self._wait_marker(seq, timeout)

    def status(self):
        """QEMU's run state: running, suspended, paused..."""
        return self.qmp.cmd("query-status")["status"]

    def wait_status(self, want, timeout=60):
        timeout *= self.timeout_scale
        deadline = time.monotonic() + timeout
        while self.status() != want:
            if time.monotonic() > deadline:
                self.fail("QEMU %s, not %s, after %ds" %
                          (self.status(), want, timeout))
            self.watch()
            time.sleep(0.2)

    def qemu_rss(self):
        """Resident memory of the current QEMU process, in bytes."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(),
                                 re.M).group(1)) * 1024

    def hibernate(self, timeout=300, setup="",
                  command="echo disk > /sys/power/state"):
        """Run @command (echo disk); wait for QEMU to power off.

        Returns the seconds from the command to power-off.
        """
        t0 = time.monotonic()
        self.pending = self._send(setup + command)
        timeout *= self.timeout_scale
        deadline = t0 + timeout
        done = re.compile(rb"@@BS4 %d (\d+)@@" % self.pending)
        self.agent.settimeout(0.1)
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.fail("guest did not power off in %ds" % timeout)
            # The command answering means hibernation failed in the guest.
            m = done.search(self.rxbuf)
            if m:
                # Its answer taken: nothing left to resume.
                self.pending = None
                self.fail("hibernation failed in the guest (rc %s): %s"
                          % (m.group(1).decode(), self._hibernate_why(m)))
            self.watch_console()
            try:
                self.rxbuf += self.agent.recv(65536)
            except (socket.timeout, OSError):
                pass
        t = time.monotonic() - t0
        self._close()
        out = self.proc.stdout.read().decode(errors="replace")
        if self.proc.returncode:
            raise GuestError("QEMU failed: %s" % out.strip())
        if re.search(rb"@@BS4 %d " % self.pending, self.rxbuf):
            raise GuestError("hibernation returned instead of powering off")
        return t

    # The kernel's lines that say which step of a hibernation failed.
    HIB_WHY = re.compile(r"PM: |hibernat|swsusp|Freezing|failed|[Ee]rror")

    def _hibernate_why(self, answer):
        """For a hibernation that returned (@answer: its match in rxbuf):
        the shell's error and the kernel's lines about this attempt, from
        its last "hibernation entry" on, in one line; the console tail is
        long, and a summary may cut it."""
        said = self.rxbuf[:answer.start()].decode(errors="replace")
        try:
            _, log = self.run("dmesg | tail -n 200", timeout=30)
            lines = log.splitlines()
            start = max((i for i, ln in enumerate(lines)
                         if "hibernation entry" in ln), default=0)
            why = [ln for ln in lines[start:] if self.HIB_WHY.search(ln)]
        except (GuestError, OSError) as e:
            why = ["(no dmesg: %s)" % str(e).split("\n", 1)[0]]
        return " | ".join(ln.strip() for ln in said.splitlines() + why[-8:]
                          if ln.strip())

    # -- measurements --------------------------------------------------

    def meminfo(self):
        out = self.sh("cat /proc/meminfo")
        return {k: int(v) * 1024 for k, v in
                re.findall(r"^(\w+):\s+(\d+) kB", out, re.M)}

    def set_balloon(self, balloon_mb):
        """Ask for a balloon of @balloon_mb (QMP takes the guest size)."""
        self.qmp.cmd("balloon", value=(self.mem_mb - balloon_mb) * MiB)

    def balloon_mb(self):
        """Balloon size QEMU reports, in MiB (may be fractional)."""
        actual = self.qmp.cmd("query-balloon")["actual"]
        return (self.mem_mb * MiB - actual) / MiB

    def wait_balloon(self, balloon_mb, timeout=180, stable=None):
        """Wait until QEMU reports @balloon_mb; return seconds taken.

        With @stable, instead wait until the size stops changing for that
        many seconds and return the size.
        """
        timeout *= self.timeout_scale
        t0 = time.monotonic()
        last, since = None, t0
        while True:
            cur = self.balloon_mb()
            now = time.monotonic()
            if stable is None and abs(cur - balloon_mb) < 1e-9:
                return now - t0
            if stable is not None:
                if cur != last:
                    last, since = cur, now
                elif now - since >= stable:
                    return cur
            if now - t0 > timeout:
                self.fail("balloon at %.1f MiB, wanted %s after %ds" %
                          (cur, balloon_mb, timeout))
            self.watch()
            time.sleep(0.2)

    def guest_stats(self):
        """The balloon statistics QEMU last received (qom guest-stats)."""
        return self.qmp.cmd("qom-get", path="/machine/peripheral/balloon0",
                            property="guest-stats")

    def debugfs(self):
        out = self.sh("cat /sys/kernel/debug/virtio_balloon/*/status")
        return dict(re.findall(r"^(\w+): (.*?)\s*$", out, re.M))

    def dmesg(self):
        return self.sh("dmesg")

    def need_to_copy(self, run=None):
        """Pages the kernel put in the image written during QEMU run @run.

        7.x prints "Need to copy" only with pm_debug_messages and the
        console at loglevel 8 (the s13 scenarios set both); without them
        the count the swap writer logs stands in for it: the same pages
        less 6.12's zero pages, plus the image's few metadata pages.
        """
        text = self.console_text(run)
        m = re.findall(r"Need to copy (\d+) pages", text) or \
            re.findall(r"saving image data \((\d+) pages\)", text)
        if not m:
            raise GuestError("no 'Need to copy' line in console %s" % run)
        return int(m[-1])
