/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Out-of-tree compatibility shims.
 *
 * The drivers are written against the newest kernel API they support.
 * Kbuild force-includes this header, in out-of-tree builds only, so the
 * differences between kernels live here and nowhere else. Each shim is a
 * __compat_ function plus a #define that redirects the real name to it;
 * nothing here changes behaviour.
 *
 * Shims are chosen by COMPAT_HAVE_* flags that Kbuild sets by probing the
 * target's headers, not by version: distribution kernels backport APIs.
 * Kbuild also refuses kernels older than 6.1, which need more than this.
 */
#ifndef _BALLOON_S4_COMPAT_H
#define _BALLOON_S4_COMPAT_H

#include <linux/module.h>
#include <linux/virtio_config.h>
#include <uapi/linux/virtio_balloon.h>

/* Out-of-tree modules say which release of this project they are. */
#ifdef BALLOON_S4_VERSION
MODULE_VERSION(BALLOON_S4_VERSION);
#endif

/*
 * find_vqs() took parallel callbacks[]/names[]/ctx[] arrays until it was
 * given one array of struct virtqueue_info (6.11).
 */
#ifndef COMPAT_HAVE_VIRTQUEUE_INFO
#define COMPAT_MAX_VQS 8

struct virtqueue_info {
	const char *name;
	vq_callback_t *callback;
	bool ctx;
};

static inline int __compat_virtio_find_vqs(struct virtio_device *vdev,
					   unsigned int nvqs,
					   struct virtqueue *vqs[],
					   struct virtqueue_info vqs_info[],
					   struct irq_affinity *desc)
{
	vq_callback_t *callbacks[COMPAT_MAX_VQS];
	const char *names[COMPAT_MAX_VQS];
	bool ctx[COMPAT_MAX_VQS];
	unsigned int i;

	if (WARN_ON_ONCE(nvqs > COMPAT_MAX_VQS))
		return -EINVAL;
	for (i = 0; i < nvqs; i++) {
		callbacks[i] = vqs_info[i].callback;
		names[i] = vqs_info[i].name;
		ctx[i] = vqs_info[i].ctx;
	}
	return vdev->config->find_vqs(vdev, nvqs, vqs, callbacks, names, ctx,
				      desc);
}

#define virtio_find_vqs __compat_virtio_find_vqs
#endif

/*
 * Statistics tags 10-15 joined the virtio specification and the uapi
 * header in 6.10; the values are the specification's.
 */
#ifndef VIRTIO_BALLOON_S_OOM_KILL
#define VIRTIO_BALLOON_S_OOM_KILL	10
#define VIRTIO_BALLOON_S_ALLOC_STALL	11
#define VIRTIO_BALLOON_S_ASYNC_SCAN	12
#define VIRTIO_BALLOON_S_DIRECT_SCAN	13
#define VIRTIO_BALLOON_S_ASYNC_RECLAIM	14
#define VIRTIO_BALLOON_S_DIRECT_RECLAIM	15
#endif

/*
 * 7.x renamed <linux/balloon_compaction.h> to <linux/balloon.h> and the
 * option BALLOON_COMPACTION to BALLOON_MIGRATION; Kbuild puts
 * compat/include, whose linux/balloon.h includes the old header, on the
 * include path of kernels without the new one. The balloon core then
 * also took over the list work of a migration: a driver's migratepage()
 * only tells its device, and the core lists the new page, frees the old
 * one and takes its page list lock (balloon_dev_info lost pages_lock).
 * Older cores leave that to the driver, so for them virtio_balloon's
 * callback is wrapped in one that does it afterwards.
 */
#ifndef COMPAT_HAVE_BALLOON_H
#if defined(CONFIG_BALLOON_COMPACTION) && !defined(CONFIG_BALLOON_MIGRATION)
#define CONFIG_BALLOON_MIGRATION 1
#endif

#if defined(COMPAT_VIRTIO_BALLOON) && defined(CONFIG_BALLOON_MIGRATION)
#include <linux/balloon_compaction.h>

static int __compat_vb_migrate_page(struct balloon_dev_info *b_dev_info,
				    struct page *newpage, struct page *page,
				    enum migrate_mode mode);

static inline int vb_migrate_page(struct balloon_dev_info *b_dev_info,
				  struct page *newpage, struct page *page,
				  enum migrate_mode mode)
{
	unsigned long flags;
	int err;

	err = __compat_vb_migrate_page(b_dev_info, newpage, page, mode);
	if (err)
		return err;
	get_page(newpage);
	spin_lock_irqsave(&b_dev_info->pages_lock, flags);
	balloon_page_insert(b_dev_info, newpage);
	b_dev_info->isolated_pages--;
	__count_vm_event(BALLOON_MIGRATE);
	spin_unlock_irqrestore(&b_dev_info->pages_lock, flags);
	balloon_page_finalize(page);
	put_page(page);
	return MIGRATEPAGE_SUCCESS;
}

#define vb_migrate_page(b, newpage, page, mode) \
	__compat_vb_migrate_page(b, newpage, page, mode)
#endif
#endif

/*
 * 7.x counts the pages reclaim scanned and took (PGSCAN_*, PGSTEAL_*) per
 * node, as node statistics; older kernels count them as vm events, and
 * global_node_page_state() of those names would read unrelated node
 * counters. virtio_balloon reads them as 7.x does; for older kernels the
 * four names are routed to the vm event counters. The names are compared
 * as strings, which the compiler folds, so every other node statistic
 * still goes to the kernel's own global_node_page_state(); the casts keep
 * the branch not taken from converting one enum to the other.
 */
#if defined(COMPAT_VIRTIO_BALLOON) && !defined(COMPAT_HAVE_NODE_RECLAIM_STATS)
#include <linux/vmstat.h>

static inline unsigned long __compat_vm_event(enum vm_event_item item)
{
	unsigned long sum = 0;
	int cpu;

	for_each_online_cpu(cpu)
		sum += per_cpu(vm_event_states, cpu).event[item];
	return sum;
}

#define __compat_reclaim_event(name)				\
	(!__builtin_strcmp(name, "PGSCAN_KSWAPD") ||		\
	 !__builtin_strcmp(name, "PGSCAN_DIRECT") ||		\
	 !__builtin_strcmp(name, "PGSTEAL_KSWAPD") ||		\
	 !__builtin_strcmp(name, "PGSTEAL_DIRECT"))

#define global_node_page_state(item)					\
	(__compat_reclaim_event(#item) ? __compat_vm_event((int)(item)) :	\
	 (global_node_page_state)((int)(item)))
#endif

/*
 * Before 7.x, page reporting took order 0 as "the allocator's default";
 * from 7.x on that is PAGE_REPORTING_ORDER_UNSPECIFIED and 0 means 4 KiB.
 */
#if defined(COMPAT_VIRTIO_BALLOON) && !defined(PAGE_REPORTING_ORDER_UNSPECIFIED)
#include <linux/page_reporting.h>
#ifndef PAGE_REPORTING_ORDER_UNSPECIFIED
#define PAGE_REPORTING_ORDER_UNSPECIFIED 0
#endif
#endif

/*
 * Shrinkers became objects the kernel allocates in 6.7: shrinker_alloc(),
 * shrinker_register() and shrinker_free() replaced embedding a struct
 * shrinker and register_shrinker()/unregister_shrinker().
 */
#if defined(COMPAT_VIRTIO_BALLOON) && !defined(COMPAT_HAVE_SHRINKER_ALLOC)
#include <linux/shrinker.h>
#include <linux/slab.h>

struct __compat_shrinker {
	struct shrinker shrinker;
	const char *name;
};

static inline struct shrinker *
__compat_shrinker_alloc(unsigned int flags, const char *name)
{
	struct __compat_shrinker *cs = kzalloc(sizeof(*cs), GFP_KERNEL);

	if (!cs)
		return NULL;
	cs->shrinker.flags = flags;
	cs->name = name;
	return &cs->shrinker;
}

/*
 * The new call cannot fail. The old one can, for lack of memory at module
 * load; the shrinker is then never called, which is said once.
 */
static inline void __compat_shrinker_register(struct shrinker *shrinker)
{
	struct __compat_shrinker *cs =
		container_of(shrinker, struct __compat_shrinker, shrinker);

	if (register_shrinker(shrinker, "%s", cs->name))
		pr_warn("shrinker %s not registered\n", cs->name);
}

static inline void __compat_shrinker_free(struct shrinker *shrinker)
{
	if (!shrinker)
		return;
	unregister_shrinker(shrinker);
	kfree(container_of(shrinker, struct __compat_shrinker, shrinker));
}

/* The name is kept, not formatted: callers pass a plain string. */
#define shrinker_alloc(flags, fmt, ...) __compat_shrinker_alloc(flags, fmt)
#define shrinker_register __compat_shrinker_register
#define shrinker_free __compat_shrinker_free
#endif

/*
 * Pages freed outside LRU reclaim are credited to the reclaimer through
 * current->reclaim_state; 6.4 renamed its reclaimed_slab to reclaimed and
 * added mm_account_reclaimed_pages().
 */
#if defined(COMPAT_VIRTIO_BALLOON) && !defined(COMPAT_HAVE_ACCOUNT_RECLAIMED)
#include <linux/sched.h>
#include <linux/swap.h>

static inline void __compat_mm_account_reclaimed_pages(unsigned long pages)
{
	if (current->reclaim_state)
		current->reclaim_state->reclaimed_slab += pages;
}

#define mm_account_reclaimed_pages __compat_mm_account_reclaimed_pages
#endif

/*
 * Before 6.7 an order-0 refill of a per-CPU list took one batch, and
 * there was no pcp->high_max; 6.7 scales refills up to
 * 2^CONFIG_PCP_BATCH_SCALE_MAX batches (pcp->alloc_factor).
 */
#if defined(COMPAT_VIRTIO_BALLOON) && !defined(COMPAT_HAVE_PCP_ALLOC_FACTOR)
#define VB_PCP_SCALED_REFILL(pcp, batch) ((void)(pcp), (batch))
#endif

/*
 * 7.x sizes allocations from the pointer's type: kzalloc_obj(*p, gfp);
 * older kernels spell it kzalloc(sizeof(*p), gfp).
 */
#ifndef COMPAT_HAVE_KZALLOC_OBJ
#define kzalloc_obj(p, gfp) kzalloc(sizeof(p), gfp)
#endif

/*
 * hv_root_partition was a variable until 7.x made it a function (with
 * hv_l1vh_partition() beside it); the function-like macro leaves the
 * variable's own declaration alone.
 */
#ifndef COMPAT_HAVE_HV_ROOT_PARTITION_FN
#define hv_root_partition() (hv_root_partition)
#endif

/*
 * hv_balloon.c, and only it, is compiled with COMPAT_HV_BALLOON.
 *
 * It defines pr_fmt before its first include, as drivers do; this header
 * came first and pulled in the default, so drop that again.
 *
 * hv_driver.remove() returned int until 6.3. The driver defines a void
 * hv_balloon_remove(): rename that definition (the function-like macro
 * only matches where the name is followed by a parenthesis) and give the
 * driver table an int wrapper under the original name.
 */
#ifdef COMPAT_HV_BALLOON
#undef pr_fmt

#ifndef COMPAT_HAVE_HV_VOID_REMOVE
#include <linux/hyperv.h>

static void __compat_hv_balloon_remove(struct hv_device *hdev);
static inline int hv_balloon_remove(struct hv_device *hdev)
{
	__compat_hv_balloon_remove(hdev);
	return 0;
}

#define hv_balloon_remove(hdev) __compat_hv_balloon_remove(hdev)
#endif
#endif

#endif /* _BALLOON_S4_COMPAT_H */
