#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Turn this repository into a kernel patch series and apply it.

  series.py prepare TARGET       pristine git tree from Debian's linux-source
  series.py generate TARGET      commits on a branch, then git format-patch
  series.py apply TARGET         git am the series on a fresh branch

TARGET is 6.1 or 6.12 (Debian 12's kernels: distribution backports), or
the newest linux-source in Debian sid (7.2 today; "sid" names it), which
tools/testing/balloon-s4/fetch_sid.py fetches: the upstream-facing
series, with get_maintainer.pl's recipients and a cover letter for
reviewers. Trees and patches live under $BS4_CACHE (default
/var/cache/balloon-s4), outside the clone, so that kernel builds in them
stay incremental.

Each patch is one logical change, in an order that builds at every step.
A patch that touches a file the target already has changes that file:
Kconfig entries and MAINTAINERS sections are spliced in, not appended.
Where a target lacks an API the code uses, a hand-kept backport patch from
tools/series/backport/<target>/ adapts the copied file, as a distribution
would; make check builds the result, so a stale backport cannot go unseen.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CACHE = os.environ.get("BS4_CACHE", "/var/cache/balloon-s4")
TESTDIR = os.path.join(ROOT, "tools", "testing", "balloon-s4")
# Debian 12's kernels, for which the series is a distribution backport.
DISTRO_TARGETS = ("6.1", "6.12")
AUTHOR = "balloon-s4 team <team@balloon-s4.invalid>"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "balloon-s4 team",
    "GIT_AUTHOR_EMAIL": "team@balloon-s4.invalid",
    "GIT_COMMITTER_NAME": "balloon-s4 team",
    "GIT_COMMITTER_EMAIL": "team@balloon-s4.invalid",
    "GIT_AUTHOR_DATE": "2026-11-22T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-11-22T00:00:00+00:00",
}
SIGNOFF = "Signed-off-by: " + AUTHOR


def tree_dir(target):
    return os.path.join(CACHE, "trees", "linux-" + target)


def out_dir(target):
    return os.path.join(CACHE, "series", target)


def git(tree, *args, check=True, capture=False):
    env = dict(os.environ, **GIT_ENV)
    r = subprocess.run(["git", "-C", tree] + list(args), env=env,
                       check=check, text=True,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE if capture else None)
    return r.stdout if capture else r.returncode


# -- the patches ---------------------------------------------------------

def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def kconfig_blocks(text):
    """{symbol: block text} for each 'config' entry in a Kconfig file."""
    blocks = {}
    for m in re.finditer(r"^config (\w+)\n(?:(?:\t| {2,}).*\n|\n(?=\t))*",
                         text, re.M):
        blocks[m.group(1)] = m.group(0).rstrip("\n") + "\n"
    return blocks


# Our Kconfig names the symbols of Debian 12's kernels. Newer trees
# renamed some: (tree file that has @new, old text, new text).
KCONFIG_RENAMES = [
    # 7.x: the balloon core's option MEMORY_BALLOON became BALLOON.
    ("mm/Kconfig", "^config BALLOON$", "select MEMORY_BALLOON",
     "select BALLOON"),
    # 7.x: VMBus drivers depend on HYPERV_VMBUS, no longer on HYPERV.
    ("drivers/hv/Kconfig", "^config HYPERV_VMBUS$", "depends on HYPERV\n",
     "depends on HYPERV_VMBUS\n"),
]


def kconfig_for_tree(tree, text):
    """@text with the symbols @tree renamed under their new names."""
    for path, probe, old, new in KCONFIG_RENAMES:
        with open(os.path.join(tree, path)) as f:
            if re.search(probe, f.read(), re.M):
                text = text.replace(old, new)
    return text


def splice_kconfig(tree, path, symbols, after=None):
    """Put our entries for @symbols into @path: replace an existing entry,
    else insert after the entry for @after."""
    ours = kconfig_blocks(kconfig_for_tree(tree, read(path)))
    full = os.path.join(tree, path)
    with open(full) as f:
        text = f.read()
    theirs = kconfig_blocks(text)
    for sym in symbols:
        new = ours[sym]
        if sym in theirs:
            text = text.replace(theirs[sym], new, 1)
        else:
            anchor = kconfig_blocks(text)[after]
            text = text.replace(anchor, anchor + "\n" + new, 1)
        after = sym
    with open(full, "w") as f:
        f.write(text)


def add_line_after(tree, path, anchor_re, line):
    full = os.path.join(tree, path)
    with open(full) as f:
        lines = f.read().split("\n")
    if line in lines:
        return
    for i, ln in enumerate(lines):
        if re.search(anchor_re, ln):
            lines.insert(i + 1, line)
            break
    else:
        raise SystemExit("%s: no line matches %r" % (path, anchor_re))
    with open(full, "w") as f:
        f.write("\n".join(lines))


def copy_file(tree, target, path, dest=None):
    """Copy @path into the tree, then apply its backport for @target."""
    dest = dest or path
    full = os.path.join(tree, dest)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    shutil.copy(os.path.join(ROOT, path), full)
    bp = os.path.join(HERE, "backport", target,
                      path.replace("/", "_") + ".patch")
    if os.path.exists(bp):
        subprocess.run(["patch", "-s", "--no-backup-if-mismatch", full, bp],
                       check=True)


# Order of the keys inside a MAINTAINERS section.
MAINT_KEYS = "MRLSWQBCPTFXNK"


def maintainers_lines():
    """{section: [lines]} from this repository's MAINTAINERS."""
    out, section = {}, None
    for line in read("MAINTAINERS").split("\n"):
        if re.match(r"^[A-Z][A-Z0-9 ()/,.-]+$", line):
            section = line
            out[section] = []
        elif section and re.match(r"^[A-Z]:\t", line):
            out[section].append(line)
    return out


def maintainers_add(tree, want):
    """Add the lines of ours for which @want(section, line) is true to
    their sections, keeping each section's keys in order and F: sorted."""
    full = os.path.join(tree, "MAINTAINERS")
    with open(full) as f:
        text = f.read()
    for section, lines in maintainers_lines().items():
        lines = [ln for ln in lines if want(section, ln)]
        if not lines:
            continue
        m = re.search(r"^%s\n((?:[A-Z]:\t.*\n)+)" % re.escape(section), text,
                      re.M)
        if not m:
            text = maintainers_new_section(text, section, lines)
            continue
        body = m.group(1).splitlines()

        def key(ln):
            return (MAINT_KEYS.index(ln[0]),
                    ln[3:].lower() if ln[0] == "F" else "")
        # Insert each line before the first that sorts after it; the
        # section's own lines keep their order.
        for ln in lines:
            if ln in body:
                continue
            at = next((i for i, b in enumerate(body) if key(b) > key(ln)),
                      len(body))
            body.insert(at, ln)
        text = text[:m.start(1)] + "\n".join(body) + "\n" + text[m.end(1):]
    with open(full, "w") as f:
        f.write(text)


def maintainers_new_section(text, section, lines):
    """Insert @section with @lines before the first section that sorts
    after it, as the file keeps them."""
    for m in re.finditer(r"^([A-Z0-9][^\n]*)\n(?=[A-Z]:\t)", text, re.M):
        if m.group(1).upper() > section.upper():
            block = section + "\n" + "\n".join(lines) + "\n\n"
            return text[:m.start()] + block + text[m.start():]
    raise SystemExit("MAINTAINERS: nowhere to put %r" % section)


def maintainers_for(paths):
    """want() for the F: lines that cover one of @paths."""
    return lambda section, ln: ln.startswith("F:\t") and \
        any(p.startswith(ln[3:]) for p in paths)


# A function prototype at the start of a line: its name.
PROTOTYPE = re.compile(r"^(?!static\b)[a-z_][\w \t*]*?\b(\w+)\((?:[^()]|\n)*\);$",
                       re.M)


def splice_declarations(tree, path, before):
    """Put the prototypes of our header fragment @path into the tree's
    header of the same name: each replaces the tree's prototype of that
    function, or goes before the first line matching @before if the tree
    has none. Only differences become a hunk."""
    full = os.path.join(tree, path)
    with open(full) as f:
        text = f.read()
    for m in PROTOTYPE.finditer(read(path)):
        ours, name = m.group(0), m.group(1)
        theirs = [t for t in PROTOTYPE.finditer(text) if t.group(1) == name]
        if len(theirs) > 1:
            raise SystemExit("%s: %s declared %d times" %
                             (path, name, len(theirs)))
        if theirs:
            t = theirs[0]
            text = text[:t.start()] + ours + text[t.end():]
            continue
        at = re.search(before, text, re.M)
        if not at:
            raise SystemExit("%s: no line matches %r" % (path, before))
        text = text[:at.start()] + ours + "\n" + text[at.start():]
    with open(full, "w") as f:
        f.write(text)


KUNIT_INCLUDE = re.compile(r"\n#ifdef CONFIG_\w+_KUNIT_TEST\n"
                           r"(?:#include \"tests/[^\n]+\"\n)+#endif\n")


def copy_driver(tree, target, path):
    """The driver at @path without its KUnit include, which arrives with
    the tests' own patch."""
    copy_file(tree, target, path)
    full = os.path.join(tree, path)
    with open(full) as f:
        text = f.read()
    with open(full, "w") as f:
        f.write(KUNIT_INCLUDE.sub("", text))


def add_kunit(tree, target, driver, symbol, after):
    """The driver with its include, the tests beside it, their Kconfig
    entry after @after's and their MAINTAINERS F: line."""
    tdir = os.path.join(os.path.dirname(driver), "tests")
    tests = [os.path.join(tdir, f) for f in sorted(os.listdir(
        os.path.join(ROOT, tdir)))]
    copy_file(tree, target, driver)
    for t in tests:
        copy_file(tree, target, t)
    splice_kconfig(tree, os.path.join(os.path.dirname(driver), "Kconfig"),
                   [symbol], after=after)
    maintainers_add(tree, maintainers_for(tests))


def p_virtio_driver(tree, target):
    copy_driver(tree, target, "drivers/virtio/virtio_balloon.c")
    splice_kconfig(tree, "drivers/virtio/Kconfig", ["VIRTIO_BALLOON"])


def p_virtio_kunit(tree, target):
    add_kunit(tree, target, "drivers/virtio/virtio_balloon.c",
              "VIRTIO_BALLOON_KUNIT_TEST", "VIRTIO_BALLOON")


HV_SECTION = "HYPER-V DYNAMIC MEMORY DRIVER"


def p_hv_driver(tree, target):
    copy_driver(tree, target, "drivers/hv/hv_balloon.c")
    # The rewritten driver has no tracepoints.
    os.unlink(os.path.join(tree, "drivers/hv/hv_trace_balloon.h"))
    splice_kconfig(tree, "drivers/hv/Kconfig", ["HYPERV_BALLOON"])
    # The helper the driver asks at probe is declared where the kernel
    # declares it, with the Hyper-V core's other functions.
    splice_declarations(tree, "include/asm-generic/mshyperv.h",
                        r"^#else /\* CONFIG_HYPERV \*/$")
    maintainers_add(tree, lambda section, ln: section == HV_SECTION and
                    ln != "F:\tdrivers/hv/tests/")


def p_hv_kunit(tree, target):
    add_kunit(tree, target, "drivers/hv/hv_balloon.c",
              "HYPERV_BALLOON_KUNIT_TEST", "HYPERV_BALLOON")
    # Where VMBus has its own option (7.x), the driver needs it too;
    # kunit.py refuses options a tree does not have, so only there.
    with open(os.path.join(tree, "drivers/hv/Kconfig")) as f:
        vmbus = re.search(r"^config HYPERV_VMBUS$", f.read(), re.M)
    if vmbus:
        add_line_after(tree, "drivers/hv/tests/.kunitconfig",
                       r"^CONFIG_HYPERV=y$", "CONFIG_HYPERV_VMBUS=y")


def p_docs(tree, target):
    doc = "Documentation/virt/balloon-hibernation.rst"
    copy_file(tree, target, doc)
    add_line_after(tree, "Documentation/virt/index.rst", r"^\s+paravirt_ops$",
                   "   balloon-hibernation")
    maintainers_add(tree, maintainers_for([doc]))


def p_maintainers(tree, target):
    maintainers_add(tree, lambda section, ln: not ln.startswith("F:\t"))


PATCHES = [
    (p_virtio_driver,
     "virtio_balloon: keep the balloon on thaw, drop it on restore",
     """The driver deflated the whole balloon in its freeze callback, asking
the host to back every ballooned page again just before the image is
written, and could not tell thaw from restore afterwards. Page reporting
also kept running on a non-freezable workqueue after freeze had deleted
the virtqueues.

Rework the driver around three distinct transitions:

 - freeze stops every user of the virtqueues (balloon and statistics
   work, free page reporting, the OOM notifier, migration), resets the
   device and deletes the queues, without deflating: ballooned pages
   are PageOffline and never reach the image.
 - thaw re-creates the queues and keeps the balloon.
 - restore re-creates the queues, returns every ballooned page to the
   page allocator (telling the device first only with MUST_TELL_HOST),
   reports an empty balloon and then follows the new host's target.

Virtio hands thaw and restore to one restore() callback; the driver
learns which from its own dev_pm_ops.restore_early(), which the PM core
runs only on PMSG_RESTORE, before the transport resumes the device.

Requests carry up to 4096 PFNs. Inflating keeps 1/32 of guest memory
available and retries, logging once, so an unreachable target kills
nothing. debugfs shows state, sizes and counters."""),
    (p_virtio_kunit,
     "virtio_balloon: add KUnit tests",
     """Drive the driver against a fake virtio device: real split virtqueues
whose notify hook plays the host, recording every PFN it is handed and
completing buffers at once. Cover batching, page accounting, target
clamping, the statistics encoding, and freeze followed by thaw, by
restore, by restore with MUST_TELL_HOST, and by a restore that fails."""),
    (p_hv_driver,
     "Drivers: hv: balloon: rewrite the Dynamic Memory driver",
     """Rewrite hv_balloon around a protocol core that reaches VMBus, the page
allocator and memory hotplug only through a small ops table, so that the
protocol can be tested without a host.

Every host message is now validated before it is used: its size field
against the received length, its type, the fixed part of its type, the
range count of an unballoon request against the payload, and the
transaction id of a response against the request waiting for it. A
message that fails is dropped with a log line and changes no state.

Balloon down frees only pages the driver ballooned; a range the host
names that the driver does not hold is logged and left alone. Balloon up
takes 2 MiB blocks first, falls back to 4 KiB pages, and answers in
responses of at most one page of ranges; an unsendable response gives
its pages back. Hot-add keeps regions with per-block online state, so
that backing granted after a block went online frees its pages at once.

When hv_is_hibernation_supported() says the VM may hibernate, every
balloon-up, balloon-down and hot-add request is answered with "nothing
done", so the host never waits, while pressure reports continue and the
capabilities stay advertised as hosts require. Suspend stops the status
work, waits for the message in hand, closes the channel and drops queued
messages; resume returns any ballooned pages (the new session starts from
an empty balloon), re-opens the channel and negotiates again. A failed
resume leaves the driver in an error state that serves nothing until the
next resume, with one log line.

Free page reporting and the tracepoints are not carried over; the
tracepoint header goes."""),
    (p_hv_kunit,
     "Drivers: hv: balloon: add KUnit tests",
     """Drive the protocol core against a fake host side: it answers version
and capability messages as told, records everything the guest sends,
hands out real pages (refusing 2 MiB blocks, stopping after a budget or
never adjacent, as a case needs) and records hot-add and onlining.

Cover version fallback and refusal, rejected capabilities, balloon up in
full, partly and through the 4 KiB fallback, batching into several
responses, balloon down of held and of foreign ranges, hibernation-mode
refusals, hot-add with later backing and gaps, repeated suspend and
resume, a failed resume, and a table of malformed messages."""),
    (p_docs,
     "Documentation: virt: describe memory balloons across hibernation",
     """Explain what virtio_balloon does on freeze, thaw and restore, why
freeze does not deflate, how thaw is told from restore, and which
pm_test and failure paths the PM core reports as restore. Describe
hv_balloon's hibernation mode and what it does on suspend and resume."""),
    (p_maintainers,
     "MAINTAINERS: add a reviewer for the virtio balloon",
     """Add the team behind the hibernation rework as reviewers of the virtio
balloon, whose tests and documentation the previous patches added to
the section, as they are for the Hyper-V Dynamic Memory driver."""),
]

COVER = """balloon drivers that survive hibernation

Memory balloons and hibernation (ACPI S4) do not mix well today. A
balloon that is inflated when the guest hibernates is either deflated
just before the image is written, making the host back all of it at the
worst moment, or carried into a restored guest whose host has never
seen it.

This series makes virtio_balloon treat freeze, thaw and restore as the
three different events they are: freeze stops every user of the queues
and keeps the balloon (ballooned pages are PageOffline and stay out of
the image), thaw keeps it, restore hands it back to the guest and then
follows the new host.

It also rewrites hv_balloon. Hyper-V keeps no balloon across a guest's
hibernation, so when the VM offers ACPI S4 (hv_is_hibernation_supported(),
unchanged) the driver answers every resize request with "nothing done"
and only reports pressure; suspend closes the channel and resume
negotiates a new session. Every host message is validated first.

Patches:
%(list)s

Testing: KUnit suites (patches 2 and 4; hv_balloon's against a fake
host) run under kunit.py with KASAN, UBSAN and lockdep; the project's QEMU
harness hibernates real Debian 6.1 and 6.12
guests with the balloon at half of memory, resumes them in a new QEMU,
and checks checksums, MemTotal, QMP query-balloon and dmesg.

checkpatch --strict reports 0 errors, 0 warnings and 0 checks on every
patch; W=1 builds of drivers/virtio/ and drivers/hv/ with the drivers =y
and =m, sparse
(C=2) and kernel-doc add no warnings.
%(checks)s
"""

# The cover letter of the upstream-facing series (sid's kernel, today 7.2).
UPSTREAM_COVER = """balloon drivers that survive hibernation

A memory balloon that is inflated when a guest hibernates (ACPI S4) is
handled badly today: virtio_balloon deflates all of it in its freeze
callback, so the host must back every ballooned page just before the
image is written, and after a restore it cannot tell whether the host it
runs on has ever seen the balloon. hv_balloon keeps ballooning while
Hyper-V, which keeps no balloon across a guest's hibernation, may be
about to lose track of it.

Design
------
virtio_balloon treats freeze, thaw and restore as three events:

 - freeze stops every user of the virtqueues (balloon and statistics
   work, free page reporting, the OOM notifier, migration), resets the
   device and deletes the queues, but keeps the balloon: ballooned
   pages are PageOffline and never reach the image.
 - thaw (a failed or aborted hibernation) re-creates the queues and
   keeps the balloon, which the host still holds.
 - restore re-creates the queues, returns every ballooned page to the
   page allocator (telling the device first only with MUST_TELL_HOST),
   reports an empty balloon and follows the new host's target.

Virtio hands thaw and restore to one restore() callback; the driver
learns which from its own dev_pm_ops.restore_early(), which the PM core
runs only for PMSG_RESTORE. The driver follows the balloon core of this
tree (<linux/balloon.h>: the core lists and frees pages on migration, the
driver only tells the device).

hv_balloon is rewritten around a protocol core that validates every
host message before use. When the VM offers S4
(hv_is_hibernation_supported()) it answers every resize request with
"nothing done" and only reports pressure; suspend closes the channel and
resume negotiates a new session from an empty balloon.

Patches:
%(list)s

Results
-------
Measured with QEMU TCG on 1 GiB Debian 6.1 and 6.12 guests with a
512 MiB balloon; the same QEMU scenarios pass on Debian's build of this
tree:

 - the hibernation image is no larger with the balloon than without
   (36245 pages without, 28610 with, on 6.12), where deflating at
   freeze made the host back all 512 MiB first;
 - restore drops the 512 MiB balloon in 93-160 ms;
 - hibernate takes 1.8-2.4 s from "echo disk" to power-off, resume
   6-9 s from QEMU start to a shell; ten cycles in a row keep data
   checksums, MemTotal and the host's view (QMP query-balloon) right;
 - inflate and deflate run at 90k-125k and 420k-580k pages/s, at least
   as fast as the driver this replaces.

Testing
-------
KUnit suites (patches 2 and 4): virtio_balloon against a fake device
with real split virtqueues, hv_balloon against a fake host; both run
under kunit.py with KASAN, UBSAN and lockdep on this tree. A QEMU
harness hibernates real guests, resumes them in a new QEMU and checks
checksums, MemTotal, QMP query-balloon and dmesg. checkpatch --strict
reports no error or warning on any patch (its two CamelCase checks name
the kernel's own __SetPageOffline() and __ClearPageOffline()). The
series builds (W=1, drivers =m) after every patch; W=1 builds of
drivers/virtio/ and drivers/hv/ with the drivers =y and =m, sparse
(C=2) and kernel-doc add no warnings.
"""

# What the cover letter says about a target's backport, if it has one.
BACKPORT_NOTES = {
    "6.1": """
This is the series for 6.1. The driver is written against the current
find_vqs() (struct virtqueue_info, 6.11); here it passes the parallel
callbacks[] and names[] arrays of 6.1 instead, and defines the virtio
statistics tags 10-15 that 6.1's uapi header does not have yet. The
tests' fake device differs in the same way. hv_balloon's remove callback
returns int, as 6.1's struct hv_driver wants.
""",
}


# -- targets -------------------------------------------------------------

def _ver_key(s):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)]


def sid_target(log=None):
    """The series (e.g. "7.2") of the newest linux-source in Debian sid,
    fetched into $BS4_CACHE/sid if need be."""
    sys.path.insert(0, TESTDIR)
    import fetch_sid
    return fetch_sid.fetch(log or (lambda m: print(m, file=sys.stderr)))[
        "series"]


def targets(log=None):
    """Every target: Debian 12's two, then the newest sid kernel's."""
    return DISTRO_TARGETS + (sid_target(log),)


def upstream(target):
    """The upstream-facing series is the one for sid's kernel."""
    return target not in DISTRO_TARGETS


def tarball(target):
    """Debian's linux-source-@target tarball: installed, or unpacked from
    sid by fetch_sid.py (the newest such unpack)."""
    path = "/usr/src/linux-source-%s.tar.xz" % target
    if os.path.exists(path):
        return path
    cands = sorted(glob.glob(os.path.join(
        CACHE, "sid", "*", "root", "usr", "src",
        "linux-source-%s.tar.xz" % target)), key=_ver_key)
    if cands:
        return cands[-1]
    raise SystemExit("linux-source-%s missing: apt-get install it, or run "
                     "tools/testing/balloon-s4/fetch_sid.py for sid's"
                     % target)


# -- commands ------------------------------------------------------------

def prepare(target):
    """The pristine tree for @target, unpacked again when Debian's tarball
    changed since it was made."""
    tree = tree_dir(target)
    tarball_path = tarball(target)
    st = os.stat(tarball_path)
    ident = "%s %d %d\n" % (tarball_path, st.st_size, int(st.st_mtime))
    stamp = os.path.join(os.path.dirname(tree), "linux-%s.source" % target)
    if os.path.isdir(os.path.join(tree, ".git")) and \
            git(tree, "rev-parse", "-q", "--verify", "pristine",
                check=False) == 0 and \
            os.path.exists(stamp) and open(stamp).read() == ident:
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(os.path.dirname(tree), exist_ok=True)
    tmp = tree + ".unpack"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    subprocess.run(["tar", "-xf", tarball_path, "-C", tmp], check=True)
    os.rename(os.path.join(tmp, "linux-source-" + target), tree)
    os.rmdir(tmp)
    git(tree, "init", "-q")
    git(tree, "config", "core.autocrlf", "false")
    git(tree, "add", "-A", "-f")
    git(tree, "commit", "-q", "-m", "Debian linux-source-%s" % target)
    git(tree, "tag", "pristine")
    with open(stamp, "w") as f:
        f.write(ident)
    return tree


def _checkout_fresh(tree, branch):
    git(tree, "checkout", "-q", "-f", "pristine")
    git(tree, "clean", "-q", "-fdx")
    git(tree, "branch", "-q", "-D", branch, check=False, capture=True)
    git(tree, "checkout", "-q", "-b", branch)


def generate(target, checks_note=None):
    """Commit each patch on branch bs4-gen; write the series; return paths."""
    tree = prepare(target)
    _checkout_fresh(tree, "bs4-gen")
    for fn, subject, body in PATCHES:
        fn(tree, target)
        # -f: the kernel's .gitignore hides dotfiles such as .kunitconfig.
        git(tree, "add", "-A", "-f")
        git(tree, "commit", "-q", "-m",
            "%s\n\n%s\n\n%s" % (subject, body, SIGNOFF))
    out = out_dir(target)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    # MAINTAINERS first in each patch: checkpatch then sees that a patch
    # adding files also names them there.
    git(tree, "format-patch", "-q", "--cover-letter", "--no-signature",
        "-O" + os.path.join(HERE, "orderfile"), "--base=pristine",
        "-o", out, "pristine..bs4-gen")
    paths = sorted(os.path.join(out, p) for p in os.listdir(out))
    cover = paths[0]
    with open(cover) as f:
        text = f.read()
    listing = "\n".join("  %d. %s" % (i + 1, s)
                        for i, (_, s, _) in enumerate(PATCHES))
    if checks_note is None:
        checks_note = BACKPORT_NOTES.get(target, "")
    if upstream(target):
        blurb = UPSTREAM_COVER % {"list": listing}
    else:
        blurb = COVER % {"list": listing, "checks": checks_note}
    title, _, rest = blurb.partition("\n")
    text = text.replace("*** SUBJECT HERE ***", title)
    text = text.replace("*** BLURB HERE ***", rest.strip() + "\n")
    with open(cover, "w") as f:
        f.write(text)
    if upstream(target):
        add_recipients(tree, paths)
    return paths


def recipients(tree, patches):
    """(To, Cc) from the tree's scripts/get_maintainer.pl for @patches:
    maintainers and reviewers, then mailing lists."""
    base = ["perl", "scripts/get_maintainer.pl", "--no-rolestats",
            "--no-git", "--no-git-fallback", "--no-substatus"]
    out = []
    for opts in (["--m", "--r", "--no-l"], ["--no-m", "--no-r", "--l"]):
        r = subprocess.run(base + opts + patches, cwd=tree, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode:
            raise SystemExit("get_maintainer.pl failed:\n" + r.stderr)
        out.append([ln.strip() for ln in r.stdout.splitlines()
                    if "@" in ln])
    return out


def add_recipients(tree, paths):
    """To: and Cc: headers, from get_maintainer.pl, on every mail."""
    to, cc = recipients(tree, paths[1:])
    hdr = ""
    if to:
        hdr += "To: " + ",\n    ".join(to) + "\n"
    if cc:
        hdr += "Cc: " + ",\n    ".join(cc) + "\n"
    for p in paths:
        with open(p) as f:
            text = f.read()
        with open(p, "w") as f:
            f.write(text.replace("\nSubject: ", "\n" + hdr + "Subject: ", 1))


def apply(target):
    """git am the generated series on a fresh branch bs4 (checked out)."""
    tree = prepare(target)
    patches = [os.path.join(out_dir(target), p)
               for p in sorted(os.listdir(out_dir(target)))
               if not p.startswith("0000-")]
    _checkout_fresh(tree, "bs4")
    r = subprocess.run(["git", "-C", tree, "am", "-q", "--whitespace=error"]
                       + patches, env=dict(os.environ, **GIT_ENV),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode:
        git(tree, "am", "--abort", check=False)
        return False, r.stdout
    return True, ""


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("prepare", "generate",
                                                  "apply"):
        raise SystemExit(__doc__)
    cmd, target = sys.argv[1:]
    if target == "sid":
        target = sid_target()
    if target not in DISTRO_TARGETS:
        tarball(target)
    if cmd == "prepare":
        print(prepare(target))
    elif cmd == "generate":
        print("\n".join(generate(target)))
    else:
        ok, msg = apply(target)
        print("applied" if ok else msg)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
