/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernels before 7.x call the balloon core's header balloon_compaction.h.
 * Kbuild puts this directory on the include path only for them; the
 * differences in the API are bridged in compat/compat.h.
 */
#ifndef _BALLOON_S4_COMPAT_LINUX_BALLOON_H
#define _BALLOON_S4_COMPAT_LINUX_BALLOON_H

#include <linux/balloon_compaction.h>

#endif
