// SPDX-License-Identifier: GPL-2.0-only
/*
 * Out-of-tree module around hv_is_hibernation_supported().
 *
 * In a kernel tree the helper is part of the Hyper-V core. Out of tree it
 * is this small module, which loads on any x86 guest, Hyper-V or not, and
 * shows its answer in /sys/module/hv_s4/parameters/hibernation_supported.
 */

/* The force-included compat header already brought printk.h's default. */
#undef pr_fmt
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <asm/mshyperv.h>

static bool hibernation_supported;
module_param(hibernation_supported, bool, 0444);
MODULE_PARM_DESC(hibernation_supported,
		 "The VM should support hibernation: ACPI S4 offered, not the root partition (read-only)");

static int __init hv_s4_init(void)
{
	hibernation_supported = hv_is_hibernation_supported();
	pr_info("this VM should %ssupport hibernation\n",
		hibernation_supported ? "" : "not ");
	return 0;
}
module_init(hv_s4_init);

MODULE_DESCRIPTION("Whether this Hyper-V VM should support hibernation");
MODULE_LICENSE("GPL");
