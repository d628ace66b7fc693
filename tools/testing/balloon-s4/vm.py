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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20

# Modules the guest needs; their dependencies come from modules.dep.
GUEST_MODULES = ["virtio_pci", "virtio_blk"]


class GuestError(Exception):
    pass


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
                    modroot=None):
    """Write a gzip'd initramfs for Debian kernel @kver to @out.

    @extra_kos are loaded at every fresh boot, before the balloon driver.
    @modroot is the kernel's module directory when it is not
    /lib/modules/@kver (a kernel unpacked elsewhere).
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
    with gzip.open(out, "wb", compresslevel=1) as f:
        f.write(cp.finish())


class Qmp:
    """Minimal QMP client: one command at a time, events kept aside."""

    def __init__(self, path, timeout=30):
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
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
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
                 driver="ours", machine="pc", extra=(), log=print):
        self.dir = workdir
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
            "-append", "console=ttyS0,115200 no_console_suspend panic=-1 "
                       "bs4.driver=%s" % self.driver,
            "-drive", "file=%s,if=virtio,format=raw,cache=unsafe" % self.swap,
            "-device", "virtio-balloon-pci,id=balloon0",
            "-serial", "file:%s" % self.console,
            "-chardev", "socket,id=agent,path=%s,server=on,wait=off"
            % agent_path,
            "-serial", "chardev:agent",
            "-qmp", "unix:%s,server=on,wait=off" % qmp_path,
        ] + self.extra
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

    def resume(self, balloon_mb=0, timeout=300):
        """Start the next QEMU on the swap disk; the guest must resume.

        @balloon_mb is set before the guest runs at all. Returns the rc of
        the command that hibernated the guest.
        """
        if self.pending is None:
            raise GuestError("resume() without a hibernated guest")
        self._launch()
        if balloon_mb:
            self.set_balloon(balloon_mb)
        self.qmp.cmd("cont")
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

    def console_text(self, run=None):
        path = self.consoles[-1 if run is None else run - 1]
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")

    # -- agent ---------------------------------------------------------

    def _wait_marker(self, seq, timeout):
        pat = re.compile(rb"@@BS4 (\d+) (\d+)@@\r?\n")
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
                raise GuestError("guest did not answer #%d in %ds" %
                                 (seq, timeout))
            if self.proc.poll() is not None:
                raise GuestError("QEMU exited while waiting for #%d" % seq)
            try:
                data = self.agent.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise GuestError("agent connection closed")
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

    def hibernate(self, timeout=300, setup=""):
        """echo disk > /sys/power/state; wait for QEMU to power off.

        Returns the seconds from the command to power-off.
        """
        t0 = time.monotonic()
        self.pending = self._send(setup + "echo disk > /sys/power/state")
        deadline = t0 + timeout
        done = re.compile(rb"@@BS4 %d (\d+)@@" % self.pending)
        self.agent.settimeout(0.1)
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise GuestError("guest did not power off in %ds" % timeout)
            # The command answering means hibernation failed in the guest.
            m = done.search(self.rxbuf)
            if m:
                raise GuestError("hibernation failed in the guest (rc %s)"
                                 % m.group(1).decode())
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
                raise GuestError("balloon at %.1f MiB, wanted %s after %ds" %
                                 (cur, balloon_mb, timeout))
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

        7.x prints "Need to copy" only with pm_debug_messages; there the
        count the swap writer logs (the same pages plus the image's few
        metadata pages) stands in for it.
        """
        text = self.console_text(run)
        m = re.findall(r"Need to copy (\d+) pages", text) or \
            re.findall(r"saving image data \((\d+) pages\)", text)
        if not m:
            raise GuestError("no 'Need to copy' line in console %s" % run)
        return int(m[-1])
