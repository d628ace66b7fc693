# SPDX-License-Identifier: GPL-2.0-only
"""What an out-of-tree build takes from the repository, and its copy."""

import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

SOURCES = ["Kbuild", "Makefile", "dkms.conf", "compat", "include", "arch",
           "drivers"]


BUILD_OUTPUT = shutil.ignore_patterns(
    "*.o", "*.ko", "*.mod", "*.mod.c", "*.a", ".*.cmd", ".*.d", "*.symvers",
    "modules.order", ".tmp_versions")


def copy_sources(dest, entries=None):
    """A fresh copy in @dest of @entries (default SOURCES) of the
    repository."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    for s in entries or SOURCES:
        p = os.path.join(ROOT, s)
        if os.path.isdir(p):
            # Not what an in-place build left behind.
            shutil.copytree(p, os.path.join(dest, s), ignore=BUILD_OUTPUT)
        else:
            shutil.copy(p, os.path.join(dest, s))
