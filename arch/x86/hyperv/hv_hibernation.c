// SPDX-License-Identifier: GPL-2.0-only
/*
 * Whether a Hyper-V guest should support hibernation.
 *
 * Hyper-V's Dynamic Memory service keeps no record of ballooned or
 * hot-added memory across a guest's hibernation, so a guest that may
 * hibernate must not balloon or hot-add at all. Linux can hibernate on
 * any machine that can power off, so the guest cannot simply ask whether
 * S4 works. Hyper-V offers the virtual ACPI S4 state only when the
 * administrator enabled it for the VM, which makes its presence the
 * administrator's statement of intent; that is what is tested here.
 */

#include <linux/acpi.h>
#include <linux/export.h>
#include <asm/mshyperv.h>

/*
 * The firmware describes an S4 sleep type, and on a reduced-hardware
 * platform also the sleep control and status registers needed to enter
 * it. The same test as acpi_sleep_state_supported(), which is not
 * exported to modules.
 */
static bool hv_acpi_s4_offered(void)
{
	u8 type_a, type_b;

	if (acpi_disabled)
		return false;
	if (ACPI_FAILURE(acpi_get_sleep_type_data(ACPI_STATE_S4, &type_a,
						  &type_b)))
		return false;
	if (!(acpi_gbl_FADT.flags & ACPI_FADT_HW_REDUCED))
		return true;
	return acpi_gbl_FADT.sleep_control.address &&
	       acpi_gbl_FADT.sleep_status.address;
}

/**
 * hv_is_hibernation_supported() - should this VM support hibernation?
 *
 * The root partition never hibernates. A guest should when its firmware
 * offers ACPI S4 (see the top of this file for why that is the signal).
 * The answer only informs drivers such as hv_balloon; whether hibernation
 * is allowed at all stays the kernel's decision.
 *
 * Return: true if the VM should support hibernation.
 */
bool hv_is_hibernation_supported(void)
{
	return !hv_root_partition() && hv_acpi_s4_offered();
}
EXPORT_SYMBOL_GPL(hv_is_hibernation_supported);
