# SPDX-License-Identifier: GPL-2.0-only
"""A real Debian 12 guest: systemd, its own kernel and initramfs, DKMS.

The busybox guests of vm.py test the driver; this one tests what a user
gets. The disk image is made with debootstrap (systemd, udev,
initramfs-tools, linux-image-amd64, linux-headers-amd64, dkms) and our
balloon-s4-dkms package is installed into it through chroot, so DKMS
builds the modules inside the image as it would on the user's machine,
and update-initramfs puts them into the initramfs. The root filesystem
is written with mkfs.ext4 -d: no loop device, no mount.

QEMU boots the image's own /boot/vmlinuz and /boot/initrd.img with
root=/dev/vdb and resume=/dev/vda (the Guest's swap disk). The guest runs
the harness's agent (the same line protocol as the busybox init) as a
systemd service on ttyS1, so vm.Guest drives it unchanged.

Cache, under $BS4_CACHE/debian-guest (default /var/cache/balloon-s4):
base/ is the configured debootstrap root, built once; image-<hash>/
holds root.img, vmlinuz and initrd.img for one state of the sources
(only the newest is kept). Each guest runs on a qcow2 overlay of root.img.
"""

import glob
import hashlib
import os
import shutil
import subprocess
import time

import deb
import scenarios
import vm

HERE = os.path.dirname(os.path.abspath(__file__))
MIRROR = os.environ.get("BS4_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ["systemd", "systemd-sysv", "udev", "initramfs-tools", "kmod",
            "procps", "linux-image-amd64", "linux-headers-amd64", "dkms"]
ROOT_SIZE = "3G"
# Fixed, so the image of the same sources is the same image.
ROOT_UUID = "6f3c1d9e-5b1a-4c2e-9d7f-b5a0c0ffee01"

AGENT = r"""#!/bin/sh
# balloon-s4 test agent: "SEQ<TAB>COMMAND" in, output and
# "@@BS4 SEQ RC@@" out, on ttyS1 (the protocol of the harness's init).
stty -F /dev/ttyS1 raw -echo
exec </dev/ttyS1 >/dev/ttyS1 2>&1
echo "@@BS4 0 0@@"
while IFS= read -r line; do
	seq=${line%%	*}
	cmd=${line#*	}
	sh -c "$cmd"
	echo "@@BS4 $seq $?@@"
done
"""

AGENT_UNIT = """[Unit]
Description=balloon-s4 test agent on ttyS1
After=systemd-udev-settle.service local-fs.target

[Service]
ExecStart=/usr/local/sbin/bs4-agent
Restart=no

[Install]
WantedBy=multi-user.target
"""

# systemd runs this after every sleep: the host waits for the file.
SLEEP_HOOK = """#!/bin/sh
[ "$1" = post ] && touch /run/bs4-woke
exit 0
"""


class DistroError(Exception):
    pass


def cache_dir():
    return os.path.join(os.environ.get("BS4_CACHE", "/var/cache/balloon-s4"),
                        "debian-guest")


def _run(cmd, log_file, **kw):
    with open(log_file, "a") as f:
        f.write("+ %s\n" % " ".join(cmd))
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kw)
    if r.returncode:
        with open(log_file) as f:
            tail = f.read()[-3000:]
        raise DistroError("%s failed (%d):\n%s" % (cmd[0], r.returncode,
                                                   tail))


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _mounts_under(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        points = [ln.split()[1] for ln in f]
    return sorted((p for p in points
                   if p == path or p.startswith(path + "/")), reverse=True)


def _remove_tree(path):
    """rm -rf @path, but never through a /dev or /sys still mounted in it
    (a run killed inside _Chroot leaves them behind)."""
    for p in _mounts_under(path):
        if subprocess.run(["umount", p]).returncode:
            subprocess.run(["umount", "-l", p])
    left = _mounts_under(path)
    if left:
        raise DistroError("still mounted, not removing %s: %s" %
                          (path, " ".join(left)))
    shutil.rmtree(path, ignore_errors=True)


class _Chroot:
    """/proc, /sys and /dev mounted in @root while in the with block."""

    def __init__(self, root):
        self.root = root
        self.mounted = []

    def __enter__(self):
        for src, dst, args in (("proc", "proc", ["-t", "proc"]),
                               ("sysfs", "sys", ["-t", "sysfs"]),
                               ("/dev", "dev", ["--bind"])):
            path = os.path.join(self.root, dst)
            subprocess.run(["mount"] + args + [src, path], check=True)
            self.mounted.append(path)
        return self

    def __exit__(self, *exc):
        for path in reversed(self.mounted):
            if subprocess.run(["umount", path]).returncode:
                subprocess.run(["umount", "-l", path])
        self.mounted = []
        if _mounts_under(self.root):
            raise DistroError("cannot unmount under %s" % self.root)


def build_base(log):
    """The configured debootstrap root, built once. Returns its path."""
    top = cache_dir()
    base = os.path.join(top, "base")
    if os.path.exists(os.path.join(base, ".bs4-complete")):
        return base
    os.makedirs(top, exist_ok=True)
    tmp = base + ".tmp"
    _remove_tree(tmp)
    blog = os.path.join(top, "base.log")
    if os.path.exists(blog):
        os.unlink(blog)
    # Hard links to the host's downloads spare the mirror.
    debs = os.path.join(top, "debs")
    os.makedirs(debs, exist_ok=True)
    for d in glob.glob("/var/cache/apt/archives/*.deb"):
        dst = os.path.join(debs, os.path.basename(d))
        if not os.path.exists(dst):
            try:
                os.link(d, dst)
            except OSError:
                break
    log("debian guest: debootstrap bookworm (log %s)" % blog)
    t0 = time.monotonic()
    _run(["debootstrap", "--variant=minbase", "--cache-dir=" + debs,
          "--include=" + ",".join(PACKAGES), "bookworm", tmp, MIRROR], blog)
    _write(os.path.join(tmp, "etc/apt/sources.list"),
           "deb %s bookworm main\n"
           "deb http://deb.debian.org/debian-security bookworm-security main\n"
           % MIRROR)
    _write(os.path.join(tmp, "etc/hostname"), "bs4-debian\n")
    _write(os.path.join(tmp, "etc/fstab"),
           "UUID=%s / ext4 defaults 0 1\n/dev/vda none swap sw 0 0\n"
           % ROOT_UUID)
    # initramfs-tools resumes from here, also without resume= on the
    # command line; QEMU passes resume= as well, as a user's grub would.
    _write(os.path.join(tmp, "etc/initramfs-tools/conf.d/resume"),
           "RESUME=/dev/vda\n")
    _write(os.path.join(tmp, "usr/local/sbin/bs4-agent"), AGENT, 0o755)
    _write(os.path.join(tmp, "etc/systemd/system/bs4-agent.service"),
           AGENT_UNIT)
    wants = os.path.join(tmp, "etc/systemd/system/multi-user.target.wants")
    os.makedirs(wants, exist_ok=True)
    os.symlink("/etc/systemd/system/bs4-agent.service",
               os.path.join(wants, "bs4-agent.service"))
    _write(os.path.join(tmp, "usr/lib/systemd/system-sleep/bs4"),
           SLEEP_HOOK, 0o755)
    # No password needed: the agent is the way in.
    with _Chroot(tmp):
        _run(["chroot", tmp, "passwd", "-d", "root"], blog)
    open(os.path.join(tmp, ".bs4-complete"), "w").close()
    os.rename(tmp, base)
    log("debian guest: base root built in %.0fs" % (time.monotonic() - t0))
    return base


def _sources_hash():
    h = hashlib.sha256()
    for s in sorted(deb.SOURCES):
        p = os.path.join(deb.ROOT, s)
        files = [p] if os.path.isfile(p) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs)
        for f in files:
            h.update(os.path.relpath(f, deb.ROOT).encode() + b"\0")
            with open(f, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()[:16]


def build_image(log, build_dir):
    """root.img with our package installed, and the image's kernel and
    initramfs. Returns (dir, kernel release, seconds spent building)."""
    t0 = time.monotonic()
    base = build_base(log)
    top = cache_dir()
    out = os.path.join(top, "image-" + _sources_hash())
    if os.path.exists(os.path.join(out, "root.img")):
        with open(os.path.join(out, "kver")) as f:
            return out, f.read().strip(), 0.0
    for old in glob.glob(os.path.join(top, "image-*")):
        _remove_tree(old)
    os.makedirs(out)
    ilog = os.path.join(out, "build.log")
    debfile, _ = deb.build(os.path.join(build_dir, "deb-guest"))
    work = os.path.join(top, "work")
    _remove_tree(work)
    log("debian guest: installing %s in a copy of the base" %
        os.path.basename(debfile))
    _run(["cp", "-a", base, work], ilog)
    os.unlink(os.path.join(work, ".bs4-complete"))
    shutil.copy(debfile, os.path.join(work, "tmp"))
    inside = "/tmp/" + os.path.basename(debfile)
    with _Chroot(work):
        # DKMS builds for the image's kernel in the package's postinst.
        _run(["chroot", work, "dpkg", "-i", inside], ilog)
        _run(["chroot", work, "update-initramfs", "-u", "-k", "all"], ilog)
    os.unlink(os.path.join(work, inside[1:]))
    kernels = sorted(glob.glob(os.path.join(work, "boot/vmlinuz-*")))
    if not kernels:
        raise DistroError("no kernel in the image")
    kver = os.path.basename(kernels[-1])[len("vmlinuz-"):]
    shutil.copy(kernels[-1], os.path.join(out, "vmlinuz"))
    shutil.copy(os.path.join(work, "boot/initrd.img-" + kver),
                os.path.join(out, "initrd.img"))
    img = os.path.join(out, "root.img.tmp")
    _run(["mkfs.ext4", "-q", "-F", "-L", "bs4root", "-U", ROOT_UUID,
          "-d", work, img, ROOT_SIZE], ilog)
    _remove_tree(work)
    with open(os.path.join(out, "kver"), "w") as f:
        f.write(kver + "\n")
    os.rename(img, os.path.join(out, "root.img"))
    t = time.monotonic() - t0
    log("debian guest: image for %s built in %.0fs" % (kver, t))
    return out, kver, t


def make_guest(image_dir, workdir, log, mem_mb=1024):
    """A vm.Guest booting the Debian image from a fresh overlay."""
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    overlay = os.path.join(workdir, "root.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                    "-b", os.path.join(image_dir, "root.img"), overlay],
                   check=True)
    return vm.Guest(
        workdir, os.path.join(image_dir, "vmlinuz"),
        os.path.join(image_dir, "initrd.img"), mem_mb=mem_mb, log=log,
        extra=["-drive", "file=%s,if=virtio,format=qcow2,cache=unsafe"
               % overlay],
        append="root=UUID=%s rw resume=/dev/vda" % ROOT_UUID)


def hibernate_command():
    """systemctl hibernate returns at once; the agent's answer must wait
    until the guest is back (or hibernation failed)."""
    return ("rm -f /run/bs4-woke; systemctl hibernate && "
            "until [ -e /run/bs4-woke ]; do sleep 0.2; done")


# -- the scenario --------------------------------------------------------

INFLATE_MB = 256
RESUME_MB = 128
DATA_MB = 32


def _check(cond, fmt, *args):
    if not cond:
        raise scenarios.Failure(fmt % args if args else fmt)


def _agree(g, want_mb, what):
    """QMP, the driver's debugfs and MemTotal all say @want_mb."""
    qmp_mb = g.balloon_mb()
    _check(abs(qmp_mb - want_mb) < 1e-9, "%s: QMP balloon %.1f MiB, want %d",
           what, qmp_mb, want_mb)
    dbg = g.debugfs()
    _check(int(dbg["balloon_pages"]) == want_mb * scenarios.BPAGES_PER_MB,
           "%s: driver holds %s pages, QMP says %d MiB", what,
           dbg["balloon_pages"], want_mb)


def _wait_woke(g, timeout=300):
    """Wait for the sleep hook's file after a wake-up from S3.

    The 8250 driver resets the UART's FIFOs on resume, so a command sent
    right after system_wakeup can be lost; ask again until one is
    answered (a late answer to a lost one is dropped by its number).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            rc, _ = g.run("test -e /run/bs4-woke", 10)
            if rc == 0:
                return
        except vm.GuestError as e:
            if "did not answer" not in str(e):
                raise
        _check(time.monotonic() < deadline, "no wake-up after %ds", timeout)
        time.sleep(0.5)


def _write_data(g):
    """Random data on the disk and on tmpfs; returns their checksums."""
    g.sh("for f in /var/tmp/bs4-data /dev/shm/bs4-data; do "
         "dd if=/dev/urandom of=$f bs=1M count=%d 2>/dev/null || exit 1; "
         "done; sync" % DATA_MB)
    return g.sh("md5sum /var/tmp/bs4-data /dev/shm/bs4-data")


def run(g, kver, ver, log):
    """Boot, inflate, hibernate, resume with a new target, suspend.

    Returns (metrics, memory snapshots, phases, image pages) for check()
    and demo().
    """
    m, mems = {}, []

    class Phases(list):
        """Logged as they happen: a failure later keeps the times."""
        def append(self, item):
            log("debian: %-46s %8.2f s" % item)
            super().append(item)
    phases = Phases()
    t = time.monotonic()
    g.boot(timeout=600)
    m["debian boot to agent (s)"] = round(time.monotonic() - t, 1)
    rc, state = g.run("systemctl is-system-running --wait", 600)
    m["debian boot to systemd running (s)"] = round(time.monotonic() - t, 1)
    phases.append(("boot to systemd running", time.monotonic() - t))
    if state.strip() != "running":
        failed = g.sh("systemctl --failed --no-legend --plain")
        raise scenarios.Failure("systemd is %s: %s" % (state.strip(),
                                                       failed.strip()))
    # udev loaded the driver for the device, and it is DKMS's copy.
    _check("virtio_balloon " in g.sh("cat /proc/modules"),
           "virtio_balloon was not autoloaded")
    path = g.sh("modinfo -n virtio_balloon").strip()
    want = "/lib/modules/%s/updates/dkms/virtio_balloon.ko" % kver
    _check(path.startswith(want), "modinfo -n virtio_balloon: %s, want %s",
           path, want)
    loaded = g.sh("cat /sys/module/virtio_balloon/version").strip()
    _check(loaded == ver, "loaded virtio_balloon is version %s, want %s",
           loaded, ver)
    boot_id = g.sh("cat /proc/sys/kernel/random/boot_id").strip()
    mems.append(("booted", g.meminfo()))
    base_total = mems[0][1]["MemTotal"]

    phases.append(("inflate balloon to %d MiB" % INFLATE_MB,
                   scenarios.set_and_wait(g, INFLATE_MB)))
    _agree(g, INFLATE_MB, "inflated")
    mems.append(("balloon %d MiB" % INFLATE_MB, g.meminfo()))
    sums = _write_data(g)

    t_hib = g.hibernate(timeout=600, command=hibernate_command())
    m["debian systemctl hibernate to power-off (s)"] = round(t_hib, 1)
    phases.append(("hibernate: systemctl hibernate to power-off", t_hib))
    pages = g.need_to_copy()
    t = time.monotonic()
    rc = g.resume(balloon_mb=RESUME_MB, timeout=600)
    t_res = time.monotonic() - t
    m["debian resume to agent (s)"] = round(t_res, 1)
    phases.append(("resume: new QEMU (target %d MiB) to shell" % RESUME_MB,
                   t_res))
    _check(rc == 0, "systemctl hibernate returned %d", rc)
    _check(g.sh("cat /proc/sys/kernel/random/boot_id").strip() == boot_id,
           "the guest booted afresh instead of resuming")
    _check(g.sh("md5sum /var/tmp/bs4-data /dev/shm/bs4-data") == sums,
           "data changed across hibernation")
    mems.append(("after resume", g.meminfo()))
    t = time.monotonic()
    g.wait_balloon(RESUME_MB, timeout=180)
    phases.append(("balloon converged to %d MiB" % RESUME_MB,
                   time.monotonic() - t))
    _agree(g, RESUME_MB, "after resume")
    total = g.meminfo()["MemTotal"]
    _check(abs((base_total - total) / vm.MiB - RESUME_MB) <= 10,
           "MemTotal %d KiB after resume, want %d MiB less than %d KiB",
           total >> 10, RESUME_MB, base_total >> 10)
    mems.append(("new target %d MiB" % RESUME_MB, g.meminfo()))

    # Suspend to RAM: QEMU stays up, the balloon must stay put.
    g.sh("rm -f /run/bs4-woke; systemctl suspend")
    deadline = time.monotonic() + 300
    while g.qmp.cmd("query-status")["status"] != "suspended":
        _check(time.monotonic() < deadline, "guest never suspended")
        time.sleep(0.5)
    t = time.monotonic()
    g.qmp.cmd("system_wakeup")
    _wait_woke(g)
    phases.append(("suspend to RAM, system_wakeup to shell",
                   time.monotonic() - t))
    _agree(g, RESUME_MB, "after suspend")

    # The driver said nothing above notice level in this boot's journal.
    # The module loader's taint notices name it too; they are about any
    # unsigned out-of-tree module, not about the driver.
    noise = g.sh("journalctl -b -k -p warning --no-pager -o cat | "
                 "grep -i balloon | grep -v -e 'out-of-tree module taints' "
                 "-e 'module verification failed' || true").strip()
    _check(not noise, "journal: %s", noise)
    scenarios.check_logs(g)
    return m, mems, phases, pages


def check(build_dir, record, log):
    """Build (or reuse) the image and run the scenario: two tests."""
    try:
        image, kver, t_build = build_image(log, build_dir)
    except (DistroError, deb.DebError, subprocess.CalledProcessError) as e:
        record("debian image", False, str(e))
        return {}
    record("debian image", True, "%s, %s" % (
        kver, "built in %.0fs" % t_build if t_build else "cached"))
    metrics = {"debian image build (s)": round(t_build, 1)} if t_build \
        else {}
    g = make_guest(image, os.path.join(build_dir, "guests", "debian"), log)
    t0 = time.monotonic()
    try:
        m, _, _, _ = run(g, kver, deb.version(), log)
        metrics.update(m)
        record("debian_hibernate", True, "%.0fs" % (time.monotonic() - t0))
    except (scenarios.Failure, vm.GuestError) as e:
        record("debian_hibernate", False, str(e))
    finally:
        g.kill()
    return metrics


def demo(build_dir, log):
    """make demo GUEST=debian: the busybox demo's report, on this guest."""
    t0 = time.monotonic()
    image, kver, _ = build_image(log, build_dir)
    phases = [("debian image (built or cached)", time.monotonic() - t0)]
    g = make_guest(image, os.path.join(build_dir, "guests", "debian-demo"),
                   log)
    try:
        _, mems, more, pages = run(g, kver, deb.version(), log)
    finally:
        g.kill()
    phases += more

    def mb(mi, k):
        return "%7.1f MiB" % (mi[k] / vm.MiB)
    log("")
    log("balloon-s4 demo: virtio_balloon across hibernation "
        "(Debian 12 guest, systemd, DKMS, kernel %s)" % kver)
    log("")
    log("%-34s %14s %14s" % ("", "MemTotal", "MemFree"))
    for label, mi in mems:
        log("%-34s %14s %14s" % (label, mb(mi, "MemTotal"),
                                 mb(mi, "MemFree")))
    log("")
    log("hibernation image: %d pages (%.1f MiB) with a %d MiB balloon"
        % (pages, pages * 4096 / vm.MiB, INFLATE_MB))
    log("disk and tmpfs data checksums after resume: unchanged")
    log("")
    for label, secs in phases:
        log("%-46s %8.2f s" % (label, secs))
    return 0
