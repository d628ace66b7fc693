/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The lines of the kernel's <asm-generic/mshyperv.h> that this project
 * relies on, as that header has them.
 *
 * tools/series/series.py splices each declaration below into the kernel's
 * own header, in the CONFIG_HYPERV part where it belongs: it replaces the
 * kernel's declaration of the same function, so the series shows any
 * difference, and adds one the kernel lacks.
 *
 * The out-of-tree build (Kbuild) includes this file explicitly, after the
 * kernel's headers and only in the objects that need it: include/ is never
 * put on the include path, where it would hide the kernel's own header.
 */
#ifndef _BALLOON_S4_ASM_GENERIC_MSHYPERV_H
#define _BALLOON_S4_ASM_GENERIC_MSHYPERV_H

#include <linux/types.h>

bool hv_is_hibernation_supported(void);

#endif /* _BALLOON_S4_ASM_GENERIC_MSHYPERV_H */
