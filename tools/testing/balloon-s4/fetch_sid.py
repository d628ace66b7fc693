#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The newest kernel in Debian sid, without touching the machine's apt.

  fetch_sid.py [--json]     fetch, unpack and prepare; print what was used

apt runs on a private source list, package lists and archive cache under
$BS4_CACHE/sid: the system's sources, lists and dpkg database are never
read or written. "Newest" is decided at run time: the linux-source-X.Y
package with the highest X.Y, and the linux-image-*-amd64 of the same
Debian version (the split linux-base, linux-binary and linux-modules
packages it depends on come along), plus its linux-headers package for
Module.symvers. Everything is unpacked with dpkg-deb -x.

Sid's header tree wants gcc-16, which Debian 12 lacks, so modules are
built against a tree prepared from linux-source with the image's own
config and Module.symvers (prepare_kbuild()). The package lists are
refreshed once a day (or with BS4_SID_UPDATE=1); a second run with fresh
lists downloads and unpacks nothing.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

CACHE = os.environ.get("BS4_CACHE", "/var/cache/balloon-s4")
SID = os.path.join(CACHE, "sid")
MIRROR = os.environ.get("BS4_SID_MIRROR", "http://deb.debian.org/debian")
LISTS_MAX_AGE = 24 * 3600

# A mirror that serves a snapshot of sid (as the test machines' does) has
# a Release file past its Valid-Until date, which apt refuses: "Release
# file ... is expired". Only then, and with a warning, is the update
# retried without the date check, for these private lists alone; the
# signature is still checked. _apt_update() fills this in.
SNAPSHOT_OK = []

# Config options a different compiler may flip without changing what a
# module must look like to load; anything else that differs is reported.
CC_DEPENDENT = re.compile(r"^CONFIG_(CC_|GCC_|CLANG_|AS_|LD_|RUST|RUSTC_|"
                          r"PAHOLE_|TOOLS_SUPPORT_|HAVE_|ARCH_HAS_|"
                          r"DEBUG_INFO_BTF|GCC_PLUGIN|LLD_|CC_HAS_|AS_HAS_|"
                          r"OBJTOOL_|KCSAN|GENDWARFKSYMS|"
                          r"[A-Z0-9_]*_COMPILE_TEST)")


def _ver_key(s):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)]


def _apt_opts():
    return ["-o", "Dir::Etc::SourceList=" + os.path.join(SID, "sources.list"),
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", "Dir::State::Lists=" + os.path.join(SID, "lists"),
            "-o", "Dir::State::Status=/dev/null",
            "-o", "Dir::Cache=" + os.path.join(SID, "apt-cache"),
            "-o", "Debug::NoLocking=1"]


def _run(cmd, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    r = subprocess.run(cmd, text=True, **kw)
    if r.returncode:
        raise SystemExit("%s failed:\n%s" % (" ".join(cmd),
                                             (r.stdout or "")[-3000:]))
    return r.stdout


def _apt_update(opts, log):
    """apt-get update on private lists, accepting an expired snapshot."""
    try:
        _run(["apt-get"] + opts + SNAPSHOT_OK + ["update"])
    except SystemExit as e:
        if SNAPSHOT_OK or "is expired" not in str(e):
            raise
        log("sid: WARNING: the mirror's Release file is past its "
            "Valid-Until date (a snapshot?); updating without that check")
        SNAPSHOT_OK.extend(["-o", "Acquire::Check-Valid-Until=false"])
        _run(["apt-get"] + opts + SNAPSHOT_OK + ["update"])


def update_lists(log):
    """The private sid package lists, refreshed when older than a day."""
    for d in ("lists/partial", "apt-cache/archives/partial", "debs"):
        os.makedirs(os.path.join(SID, d), exist_ok=True)
    src = os.path.join(SID, "sources.list")
    line = "deb %s sid main\n" % MIRROR
    if not os.path.exists(src) or open(src).read() != line:
        with open(src, "w") as f:
            f.write(line)
    stamp = os.path.join(SID, "lists.stamp")
    fresh = os.path.exists(stamp) and \
        time.time() - os.path.getmtime(stamp) < LISTS_MAX_AGE
    if fresh and os.environ.get("BS4_SID_UPDATE") != "1":
        return
    log("sid: apt-get update (private lists under %s)" % SID)
    _apt_update(_apt_opts(), log)
    with open(stamp, "w") as f:
        f.write("%d\n" % time.time())


def _show(pkg):
    """The Version and Depends fields of @pkg's newest sid entry."""
    out = _run(["apt-cache"] + _apt_opts() + ["show", pkg])
    best = None
    for stanza in out.split("\n\n"):
        f = dict(re.findall(r"^([\w-]+): (.*)$", stanza, re.M))
        if f.get("Package") == pkg and (best is None or _ver_key(
                f["Version"]) > _ver_key(best["Version"])):
            best = f
    if best is None:
        raise SystemExit("sid has no package %s" % pkg)
    return best


def pick_packages():
    """(series, debian version, kernel ABI name, [packages]) for the
    newest linux-source in sid."""
    names = _run(["apt-cache"] + _apt_opts() + ["pkgnames", "linux-"]).split()
    srcs = sorted((n for n in names if re.match(r"^linux-source-\d+\.\d+$", n)),
                  key=_ver_key)
    if not srcs:
        raise SystemExit("no linux-source-X.Y in sid")
    series = srcs[-1][len("linux-source-"):]
    version = _show(srcs[-1])["Version"]
    upstream = version.split("-")[0]
    # linux-image-7.2.13+deb14-amd64, or ...-amd64-unsigned; not -rt,
    # -cloud or -dbg. The one of the source's Debian version wins.
    cands = []
    for n in names:
        m = re.match(r"^linux-image-(%s[-+][\w.+]*?-amd64)(-unsigned)?$"
                     % re.escape(upstream), n)
        if m and not re.search(r"-(rt|cloud)-amd64", n):
            f = _show(n)
            if f["Version"] == version:
                cands.append((m.group(2) is not None, m.group(1), n, f))
    if not cands:
        raise SystemExit("no linux-image-%s*-amd64 %s in sid" %
                         (upstream, version))
    # Prefer the signed image: it is what Debian users boot.
    cands.sort()
    _, kabi, image, fields = cands[0]
    pkgs = [srcs[-1], image]
    for dep in re.split(r",\s*", fields.get("Depends", "")):
        dep = dep.split()[0]
        if dep.startswith("linux-") and kabi in dep:
            pkgs.append(dep)
    pkgs.append("linux-headers-" + kabi)
    return series, version, kabi, pkgs


def download_and_unpack(pkgs, version, kabi, log):
    """Each package's .deb under sid/debs, unpacked into sid/<kabi>/root
    once; returns that root."""
    debs = os.path.join(SID, "debs")
    root = os.path.join(SID, kabi, "root")
    os.makedirs(root, exist_ok=True)
    want = {p: "%s_%s_" % (p, version.replace(":", "%3a")) for p in pkgs}
    have = os.listdir(debs)
    missing = [p for p in pkgs if not any(h.startswith(want[p]) for h in have)]
    if missing:
        log("sid: downloading " + " ".join(missing))
        _run(["apt-get"] + _apt_opts() + SNAPSHOT_OK + ["download"] + missing,
             cwd=debs)
    for p in pkgs:
        deb = [h for h in os.listdir(debs) if h.startswith(want[p])][0]
        stamp = os.path.join(root, ".unpacked-" + deb)
        if not os.path.exists(stamp):
            _run(["dpkg-deb", "-x", os.path.join(debs, deb), root])
            open(stamp, "w").close()
    # dpkg-deb -x runs no maintainer scripts: make modules.dep here.
    if not os.path.exists(os.path.join(root, "usr/lib/modules", kabi,
                                       "modules.dep")):
        _run(["depmod", "-b", os.path.join(root, "usr"), kabi])
    return root


def _config(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^(CONFIG_\w+)=(.*)$", line)
            n = re.match(r"^# (CONFIG_\w+) is not set$", line)
            if m:
                out[m.group(1)] = m.group(2)
            elif n:
                out[n.group(1)] = "n"
    return out


def prepare_kbuild(series, kabi, root, log):
    """A kernel tree that builds modules Debian's @kabi kernel loads.

    linux-source-@series unpacked, the image's config made consistent
    for this machine's gcc with olddefconfig, KERNELRELEASE set to @kabi
    (vermagic), modules_prepare, and the headers package's
    Module.symvers (the kernel's exports). Redone when the config or
    source changes. Returns (tree, [config differences that matter]).
    """
    kb = os.path.join(SID, kabi, "kbuild")
    modroot = os.path.join(root, "usr/lib/modules", kabi)
    cfg = os.path.join(modroot, "config")
    symvers = os.path.join(root, "usr/src/linux-headers-%s" % kabi,
                           "Module.symvers")
    tarball = os.path.join(root, "usr/src/linux-source-%s.tar.xz" % series)
    ident = "%s %d\n%s %d\n" % (tarball, os.path.getsize(tarball), cfg,
                                os.path.getsize(cfg))
    stamp = os.path.join(SID, kabi, "kbuild.stamp")
    notes = os.path.join(SID, kabi, "kbuild.notes")
    if os.path.exists(stamp) and open(stamp).read() == ident and \
            os.path.exists(os.path.join(kb, "Module.symvers")):
        with open(notes) as f:
            return kb, f.read().splitlines()
    log("sid: preparing a build tree for %s from linux-source-%s" %
        (kabi, series))
    shutil.rmtree(kb, ignore_errors=True)
    tmp = kb + ".unpack"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    _run(["tar", "-xf", tarball, "-C", tmp])
    os.rename(os.path.join(tmp, "linux-source-" + series), kb)
    os.rmdir(tmp)
    shutil.copy(cfg, os.path.join(kb, ".config"))
    make = ["make", "-C", kb, "KERNELRELEASE=" + kabi]
    _run(make + ["olddefconfig"], env=kbuild_env())
    theirs, mine = _config(cfg), _config(os.path.join(kb, ".config"))
    diff = sorted(k for k in set(theirs) | set(mine)
                  if theirs.get(k, "n") != mine.get(k, "n"))
    important = ["%s: %s -> %s" % (k, theirs.get(k, "n"), mine.get(k, "n"))
                 for k in diff if not CC_DEPENDENT.match(k)]
    for k in ("CONFIG_MODULE_SIG_FORCE", "CONFIG_MODVERSIONS",
              "CONFIG_MODULE_UNLOAD", "CONFIG_PREEMPT_DYNAMIC",
              "CONFIG_RANDSTRUCT_NONE"):
        if theirs.get(k, "n") != mine.get(k, "n"):
            raise SystemExit("olddefconfig changed %s (%s -> %s): modules "
                             "would not load" % (k, theirs.get(k, "n"),
                                                 mine.get(k, "n")))
    _run(make + ["-j2", "modules_prepare"], env=kbuild_env())
    shutil.copy(symvers, os.path.join(kb, "Module.symvers"))
    with open(notes, "w") as f:
        f.write("\n".join(important) + ("\n" if important else ""))
    with open(stamp, "w") as f:
        f.write(ident)
    return kb, important


def sparse(log=print):
    """A sparse that newer kernels accept (they want __typeof_unqual__,
    which Debian 12's 0.6.4 lacks): sid's source package, built once
    under $BS4_CACHE/sid/sparse. Returns the binary's path."""
    base = os.path.join(SID, "sparse")
    built = glob.glob(os.path.join(base, "sparse-*", "sparse"))
    if built:
        return sorted(built, key=_ver_key)[-1]
    for d in ("src-lists/partial", "src-cache/archives/partial", "dl"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    src = os.path.join(base, "sources.list")
    with open(src, "w") as f:
        f.write("deb-src %s sid main\n" % MIRROR)
    opts = ["-o", "Dir::Etc::SourceList=" + src,
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", "Dir::State::Lists=" + os.path.join(base, "src-lists"),
            "-o", "Dir::State::Status=/dev/null",
            "-o", "Dir::Cache=" + os.path.join(base, "src-cache"),
            "-o", "Debug::NoLocking=1"]
    log("sid: building sparse from sid's source package")
    _apt_update(opts, log)
    dl = os.path.join(base, "dl")
    _run(["apt-get"] + opts + SNAPSHOT_OK +
         ["source", "--download-only", "sparse"],
         cwd=dl)
    orig = glob.glob(os.path.join(dl, "sparse_*.orig.tar.*"))[0]
    _run(["tar", "-xf", orig, "-C", base])
    tree = [d for d in glob.glob(os.path.join(base, "sparse-*"))
            if os.path.isdir(d)][0]
    _run(["make", "-C", tree, "-j2", "sparse", "HAVE_SQLITE=no",
          "HAVE_LIBXML=no", "HAVE_GTK=no", "HAVE_LLVM=no"])
    return os.path.join(tree, "sparse")


def kbuild_env():
    """No rustc from the user's PATH: Debian's config wants Rust, which
    this tree cannot honour, and Kconfig must drop it every time alike."""
    path = ":".join(p for p in os.environ.get("PATH", "").split(":")
                    if ".cargo" not in p and "rustup" not in p)
    return dict(os.environ, PATH=path or "/usr/bin:/bin")


def fetch(log=print):
    """Fetch and prepare the newest sid kernel; returns a dict of paths."""
    update_lists(log)
    series, version, kabi, pkgs = pick_packages()
    root = download_and_unpack(pkgs, version, kabi, log)
    kdir, notes = prepare_kbuild(series, kabi, root, log)
    info = {
        "series": series,
        "version": version,
        "kver": kabi,
        "packages": pkgs,
        "root": root,
        "modules": os.path.join(root, "usr/lib/modules", kabi),
        "vmlinuz": os.path.join(root, "usr/lib/modules", kabi, "vmlinuz"),
        "source": os.path.join(root, "usr/src/linux-source-%s.tar.xz" %
                               series),
        "kdir": kdir,
        "config_changes": notes,
    }
    with open(os.path.join(SID, "current.json"), "w") as f:
        json.dump(info, f, indent=1)
    log("sid: newest is linux-source-%s %s; guest kernel %s" % (
        series, version, kabi))
    return info


def main():
    quiet = "--json" in sys.argv[1:]
    info = fetch(log=(lambda m: print(m, file=sys.stderr)) if quiet
                 else print)
    if quiet:
        print(json.dumps(info, indent=1))
    else:
        for k in ("kdir", "vmlinuz", "modules", "source"):
            print("%-8s %s" % (k, info[k]))
        for n in info["config_changes"]:
            print("config  " + n)


if __name__ == "__main__":
    main()
