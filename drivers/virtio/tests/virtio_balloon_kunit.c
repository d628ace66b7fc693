// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for the virtio balloon driver.
 *
 * This file is included at the end of virtio_balloon.c, so the tests reach
 * the driver's internals and always build together with it. They check
 * struct vb_dev's state and call about twenty of its static functions;
 * exporting those with VISIBLE_IF_KUNIT to a separate test module would
 * move the structure into a header that nothing else needs.
 *
 * The device is a fake: a struct virtio_device whose config ops keep the
 * configuration space in memory and whose find_vqs() creates real split
 * virtqueues. Their notify hook plays the host at once, inside the kick:
 * it walks the available ring, records every PFN it is handed (an xarray
 * of the pages the host holds), returns the buffer on the used ring and
 * raises the queue's interrupt. A statistics buffer is held, as a host
 * does, until the test asks for statistics.
 *
 * The fake host is also a witness. It checks each deflated page when it
 * is told about it: a page the guest already freed (refcount 0) was reused
 * before the host knew. After every case, vbt_exit() checks that the host
 * holds exactly the pages in the guest's balloon and that actual says so;
 * a case that leaves the device broken says so with vbt_untold().
 *
 * Binding and PM go through the virtio core, as a transport reaches the
 * driver: the fake device is registered on the virtio bus, so the core
 * negotiates features (the driver's validate() included), probes and, on
 * unregistration or vbt_remove(), removes it; freeze and restore go
 * through virtio_device_freeze() and virtio_device_restore(), which a
 * transport's PM callbacks call, and the early restore through the
 * driver's dev_pm_ops, as the PM core calls it. A probe or restore the
 * core fails before the driver's callback, and the status it leaves
 * behind, are then what a real device sees. Configuration changes and PM
 * notifier events call the driver's handlers directly, so that a case can
 * deliver one at any point, also where the core would hold it back.
 */

#include <kunit/test.h>
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/virtio_ring.h>
#include <linux/xarray.h>

#define VBT_QUEUE_SIZE	64
#define VBT_ACTUAL_LOG	64

/* One write of actual, with the inflate requests the host had seen. */
struct vbt_actual_write {
	u32 actual;
	unsigned int inflates;
};

struct vbt_host {
	struct virtio_device vdev;
	struct virtio_balloon_config config;
	u64 device_features;		/* what the device offers */
	u8 status;
	bool fail_find_vqs;
	bool fail_features;		/* the transport's restore fails early */

	int role[VB_VQ_NR];		/* enum vb_vq of each queue index */
	u16 last_avail[VB_VQ_NR];
	u16 used_idx[VB_VQ_NR];

	struct xarray held;		/* PFNs the host holds */
	unsigned int requests[VB_VQ_NR];
	unsigned long pfns[VB_VQ_NR];
	unsigned int max_batch;
	unsigned int bad_deflates;	/* PFNs deflated that were not held */
	unsigned int bad_inflates;	/* PFNs inflated twice */
	unsigned int host_nomem;	/* PFNs the fake could not record */
	unsigned int early_reuse;	/* deflated PFNs already freed */
	bool new_vm;			/* a new host: never saw the balloon */
	unsigned int unknown_deflates;	/* deflates a new host never held */
	bool untold;			/* the case leaves pages untold */

	struct task_struct *caller;	/* deflates here are counted... */
	unsigned int caller_deflates;	/* ...here */

	int stall_deflate;		/* hold this deflate request (1-based) */
	unsigned int break_at[VB_VQ_NR];	/* die taking this request */
	unsigned int hint_pm_after;	/* PM prepare after so many blocks */
	int stalled_head;		/* the held deflate buffer, or -1 */

	struct vbt_actual_write actual_log[VBT_ACTUAL_LOG];
	unsigned int nr_actual_writes;

	u32 hint_cmds[8];		/* command ids sent, in order */
	unsigned int nr_hint_cmds;
	unsigned int hint_blocks;	/* free page blocks hinted */
	unsigned int hint_stop_after;	/* announce STOP after so many blocks */
	bool hint_keep;			/* never return hinted blocks */
	unsigned int hint_bad;		/* hinted blocks the guest had freed */

	int stats_head;			/* held statistics buffer, or -1 */
	struct virtio_balloon_stat stats[VB_NR_STATS];
	unsigned int nr_stats;
	unsigned int del_vqs_calls;
	unsigned long find_vqs_totalram;	/* totalram_pages() at find_vqs */
	bool find_vqs_memalloc;		/* PF_MEMALLOC set at find_vqs */
};

static struct vbt_host *vbt_host(struct virtio_device *vdev)
{
	return container_of(vdev, struct vbt_host, vdev);
}

static void vbt_push_used(struct virtqueue *vq, u16 head, u32 len)
{
	struct vbt_host *h = vbt_host(vq->vdev);
	const struct vring *vr = virtqueue_get_vring(vq);
	u16 idx = h->used_idx[vq->index]++;

	vr->used->ring[idx % vr->num].id = cpu_to_virtio32(vq->vdev, head);
	vr->used->ring[idx % vr->num].len = cpu_to_virtio32(vq->vdev, len);
	virtio_wmb(true);
	vr->used->idx = cpu_to_virtio16(vq->vdev, h->used_idx[vq->index]);
}

static void vbt_take_pfns(struct vbt_host *h, int role, const __virtio32 *p,
			  unsigned int n)
{
	unsigned int i;

	h->max_batch = max(h->max_batch, n);
	h->pfns[role] += n;
	for (i = 0; i < n; i++) {
		unsigned long pfn = virtio32_to_cpu(&h->vdev, p[i]);

		if (role == VB_VQ_INFLATE) {
			int err = xa_insert(&h->held, pfn, xa_mk_value(1),
					    GFP_ATOMIC);

			if (err == -EBUSY)
				h->bad_inflates++;
			else if (err)
				h->host_nomem++;
			continue;
		}
		/* The guest must still own the page it gives back. */
		if (!page_ref_count(pfn_to_page(pfn / VB_BPAGES_PER_PAGE)))
			h->early_reuse++;
		if (xa_erase(&h->held, pfn))
			continue;
		if (h->new_vm)
			h->unknown_deflates++;
		else
			h->bad_deflates++;
	}
}

/*
 * A command id on the free page queue. Like QEMU, the host shows 0 (STOP)
 * in the config once it has taken the id it asked for, without a config
 * change: a run must not take that for the end.
 */
static void vbt_take_hint_cmd(struct vbt_host *h, const __virtio32 *buf)
{
	u32 cmd = virtio32_to_cpu(&h->vdev, *buf);

	if (h->nr_hint_cmds < ARRAY_SIZE(h->hint_cmds))
		h->hint_cmds[h->nr_hint_cmds++] = cmd;
	if (cmd == le32_to_cpu(h->config.free_page_hint_cmd_id))
		h->config.free_page_hint_cmd_id =
			cpu_to_le32(VIRTIO_BALLOON_CMD_ID_STOP);
}

/* What the PM core's notifier chain would tell the driver. */
static void vbt_pm_event(struct vbt_host *h, unsigned long event)
{
	struct notifier_block *nb = &((struct vb_dev *)h->vdev.priv)->pm_nb;

	if (nb->notifier_call)
		nb->notifier_call(nb, event, NULL);
}

/* The host: handle every new buffer on @vq, then interrupt. */
static bool vbt_notify(struct virtqueue *vq)
{
	struct vbt_host *h = vbt_host(vq->vdev);
	const struct vring *vr = virtqueue_get_vring(vq);
	int role = h->role[vq->index];
	u16 avail = virtio16_to_cpu(vq->vdev, READ_ONCE(vr->avail->idx));

	/* A device that dies here: the queue breaks, the buffer untaken. */
	if (h->break_at[role] && h->requests[role] + 1 == h->break_at[role])
		return false;
	virtio_rmb(true);
	while (h->last_avail[vq->index] != avail) {
		u16 slot = h->last_avail[vq->index]++ % vr->num;
		u16 head = virtio16_to_cpu(vq->vdev, vr->avail->ring[slot]);
		const struct vring_desc *d = &vr->desc[head];
		void *buf = phys_to_virt(virtio64_to_cpu(vq->vdev, d->addr));
		u32 len = virtio32_to_cpu(vq->vdev, d->len);

		h->requests[role]++;
		if (role == VB_VQ_DEFLATE && current == h->caller)
			h->caller_deflates++;
		if (role == VB_VQ_INFLATE || role == VB_VQ_DEFLATE) {
			vbt_take_pfns(h, role, buf, len / sizeof(__virtio32));
			if (role == VB_VQ_DEFLATE &&
			    h->requests[role] == h->stall_deflate) {
				h->stalled_head = head;
				continue;
			}
		} else if (role == VB_VQ_FREE_PAGE) {
			if (virtio16_to_cpu(vq->vdev, d->flags) & VRING_DESC_F_WRITE) {
				if (!page_ref_count(virt_to_page(buf)))
					h->hint_bad++;
				if (++h->hint_blocks == h->hint_pm_after)
					vbt_pm_event(h, PM_SUSPEND_PREPARE);
				if (h->hint_blocks == h->hint_stop_after) {
					h->config.free_page_hint_cmd_id =
						cpu_to_le32(VIRTIO_BALLOON_CMD_ID_STOP);
					vb_config_changed(&h->vdev);
				}
				if (h->hint_keep)
					continue;
			} else {
				vbt_take_hint_cmd(h, buf);
			}
		} else if (role == VB_VQ_STATS) {
			h->nr_stats = min_t(u32, len / sizeof(h->stats[0]),
					    VB_NR_STATS);
			memcpy(h->stats, buf, h->nr_stats * sizeof(h->stats[0]));
			h->stats_head = head;
			continue;
		}
		vbt_push_used(vq, head, 0);
	}
	vring_interrupt(0, vq);
	return true;
}

static void vbt_get(struct virtio_device *vdev, unsigned int offset,
		    void *buf, unsigned int len)
{
	memcpy(buf, (u8 *)&vbt_host(vdev)->config + offset, len);
}

static void vbt_set(struct virtio_device *vdev, unsigned int offset,
		    const void *buf, unsigned int len)
{
	struct vbt_host *h = vbt_host(vdev);

	memcpy((u8 *)&h->config + offset, buf, len);
	if (offset == offsetof(struct virtio_balloon_config, actual) &&
	    h->nr_actual_writes < VBT_ACTUAL_LOG) {
		h->actual_log[h->nr_actual_writes].actual =
			le32_to_cpu(h->config.actual);
		h->actual_log[h->nr_actual_writes].inflates =
			h->requests[VB_VQ_INFLATE];
		h->nr_actual_writes++;
	}
}

static u8 vbt_get_status(struct virtio_device *vdev)
{
	return vbt_host(vdev)->status;
}

static void vbt_set_status(struct virtio_device *vdev, u8 status)
{
	vbt_host(vdev)->status = status;
}

static void vbt_reset(struct virtio_device *vdev)
{
	vbt_host(vdev)->status = 0;
}

static void vbt_del_vqs(struct virtio_device *vdev)
{
	struct virtqueue *vq, *n;

	list_for_each_entry_safe(vq, n, &vdev->vqs, list)
		vring_del_virtqueue(vq);
	vbt_host(vdev)->del_vqs_calls++;
	vbt_host(vdev)->stats_head = -1;
}

static int vbt_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
			struct virtqueue *vqs[],
			struct virtqueue_info vqs_info[],
			struct irq_affinity *desc)
{
	struct vbt_host *h = vbt_host(vdev);
	unsigned int i, q = 0;

	h->find_vqs_totalram = totalram_pages();
	h->find_vqs_memalloc = current->flags & PF_MEMALLOC;
	if (h->fail_find_vqs)
		return -ENOMEM;
	for (i = 0; i < nvqs; i++) {
		vqs[i] = NULL;
		if (!vqs_info[i].name)
			continue;
		vqs[i] = vring_create_virtqueue(q, VBT_QUEUE_SIZE, SMP_CACHE_BYTES,
						vdev, true, false, false,
						vbt_notify,
						vqs_info[i].callback,
						vqs_info[i].name);
		if (!vqs[i]) {
			vbt_del_vqs(vdev);
			return -ENOMEM;
		}
		h->role[q] = i;
		h->last_avail[q] = 0;
		h->used_idx[q] = 0;
		q++;
	}
	return 0;
}

static u64 vbt_get_features(struct virtio_device *vdev)
{
	return vbt_host(vdev)->device_features;
}

static int vbt_finalize_features(struct virtio_device *vdev)
{
	return vbt_host(vdev)->fail_features ? -EIO : 0;
}

static const char *vbt_bus_name(struct virtio_device *vdev)
{
	return "kunit";
}

static const struct virtio_config_ops vbt_config_ops = {
	.get = vbt_get,
	.set = vbt_set,
	.get_status = vbt_get_status,
	.set_status = vbt_set_status,
	.reset = vbt_reset,
	.find_vqs = vbt_find_vqs,
	.del_vqs = vbt_del_vqs,
	.get_features = vbt_get_features,
	.finalize_features = vbt_finalize_features,
	.bus_name = vbt_bus_name,
};

/* The last reference to the device goes: so does the fake host. */
static void vbt_release(struct device *dev)
{
	struct vbt_host *h = vbt_host(dev_to_virtio(dev));

	xa_destroy(&h->held);
	kfree(h);
}

/*
 * The core's remove: it calls the driver's, checks that the device was
 * left reset, then acknowledges it again, so a device the driver reset
 * reads back exactly ACKNOWLEDGE.
 */
static void vbt_expect_removed(struct kunit *test, struct vbt_host *h)
{
	KUNIT_EXPECT_NULL(test, h->vdev.dev.driver);
	KUNIT_EXPECT_EQ_MSG(test, h->status, VIRTIO_CONFIG_S_ACKNOWLEDGE,
			    "remove left the device not reset");
	KUNIT_EXPECT_FALSE(test, device_can_wakeup(&h->vdev.dev));
#ifdef CONFIG_PM_SLEEP
	/* An enabled wakeup source would pin the device for good. */
	KUNIT_EXPECT_NULL(test, h->vdev.dev.power.wakeup);
#endif
}

static struct vb_dev *vbt_vb(struct vbt_host *h)
{
	return h->vdev.priv;
}

/*
 * A fresh fake host offering @features, registered on the virtio bus: the
 * core binds the driver to it, or leaves it unbound if probe fails. The
 * host lives as long as its device, which vbt_exit() unregisters.
 */
static struct vbt_host *vbt_register(struct kunit *test, u64 features,
				     bool fail_find_vqs)
{
	struct vbt_host *h;
	int err;

	h = kzalloc_obj(*h, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, h);
	xa_init(&h->held);
	h->stats_head = -1;
	h->stalled_head = -1;
	h->fail_find_vqs = fail_find_vqs;
	h->device_features = BIT_ULL(VIRTIO_F_VERSION_1) | features;
	h->vdev.id.device = VIRTIO_ID_BALLOON;
	h->vdev.config = &vbt_config_ops;
	h->vdev.dev.release = vbt_release;
	err = register_virtio_device(&h->vdev);
	/* Initialised by the core even then: only the last put frees it. */
	if (err)
		put_device(&h->vdev.dev);
	KUNIT_ASSERT_EQ(test, err, 0);
	/* A probe the driver core ran asynchronously has finished. */
	wait_for_device_probe();
	test->priv = h;
	/* Only probe was to fail; a later restore finds its queues. */
	h->fail_find_vqs = false;
	return h;
}

/* Probe the driver, through the core, against a host with @features. */
static struct vbt_host *vbt_probe(struct kunit *test, u64 features)
{
	struct vbt_host *h = vbt_register(test, features, false);

	KUNIT_ASSERT_PTR_EQ_MSG(test, h->vdev.dev.driver, &vb_driver.driver,
				"probe failed");
	KUNIT_ASSERT_NOT_NULL(test, h->vdev.priv);
	return h;
}

/* Unbind the driver through the core, as an unbind from sysfs does. */
static void vbt_remove(struct kunit *test, struct vbt_host *h)
{
	device_release_driver(&h->vdev.dev);
	h->vdev.priv = NULL;
	vbt_expect_removed(test, h);
}

/*
 * Wait until the balloon work has stopped requeueing itself. A run that
 * requeues is not pending while it executes, so "not pending" alone can
 * be seen in the middle of a chain: wait until it is neither pending nor
 * running, twice in a row with a flush between.
 */
static void vbt_settle(struct vbt_host *h)
{
	struct vb_dev *vb = vbt_vb(h);
	int i, idle = 0;

	for (i = 0; i < 10000 && idle < 2; i++) {
		flush_delayed_work(&vb->balloon_work);
		idle = work_busy(&vb->balloon_work.work) ? 0 : idle + 1;
	}
}

static void vbt_set_target(struct vbt_host *h, u32 bpages)
{
	h->config.num_pages = cpu_to_le32(bpages);
	vb_config_changed(&h->vdev);
	vbt_settle(h);
}

static u32 vbt_actual(struct vbt_host *h)
{
	return le32_to_cpu(h->config.actual);
}

static unsigned long vbt_held(struct vbt_host *h)
{
	unsigned long index, n = 0;
	void *entry;

	xa_for_each(&h->held, index, entry)
		n++;
	return n;
}

static unsigned long vbt_ballooned_pages_offline(struct vb_dev *vb)
{
	unsigned long n = 0;
	struct page *page;

	list_for_each_entry(page, &vb->b_dev_info.pages, lru)
		n += PageOffline(page);
	return n;
}

/* The case leaves a broken device: its pages cannot be told to the host. */
static void vbt_untold(struct vbt_host *h)
{
	h->untold = true;
}

/*
 * The witness: the host holds exactly the guest's balloon, actual says how
 * many bpages that is, and nothing was given back before the host knew.
 */
static void vbt_witness(struct kunit *test, struct vbt_host *h)
{
	struct vb_dev *vb = vbt_vb(h);
	unsigned long pfn, online = 0;
	void *entry;

	KUNIT_EXPECT_EQ_MSG(test, h->early_reuse, 0,
			    "pages reused before the host was told");
	KUNIT_EXPECT_EQ(test, h->bad_deflates, 0);
	KUNIT_EXPECT_EQ(test, h->bad_inflates, 0);
	KUNIT_EXPECT_EQ_MSG(test, h->host_nomem, 0,
			    "the fake host ran out of memory: no verdict");
	if (vb && vb->state != VB_STATE_RUNNING) {
		/*
		 * A frozen or broken device is not asked for anything, but
		 * every page it may hold must still be out of the guest's use.
		 */
		xa_for_each(&h->held, pfn, entry) {
			struct page *page = pfn_to_page(pfn / VB_BPAGES_PER_PAGE);

			online += !page_ref_count(page) || !PageOffline(page);
		}
		KUNIT_EXPECT_EQ_MSG(test, online, 0UL,
				    "a page the host holds is back in use");
	}
	if (!vb || vb->state != VB_STATE_RUNNING)
		return;
	/*
	 * The balloon core's list lock is private to it from 7.x on, so
	 * the list is not walked: every page the host holds must still be
	 * offline (in a balloon, not given back), and the host, the
	 * driver's count and actual must agree. Together that is the same
	 * set, unless the driver's own count is wrong, which other cases
	 * check against totalram.
	 */
	mutex_lock(&vb->lock);
	xa_for_each(&h->held, pfn, entry)
		online += !PageOffline(pfn_to_page(pfn / VB_BPAGES_PER_PAGE));
	KUNIT_EXPECT_EQ(test, vb->b_dev_info.isolated_pages, 0UL);
	KUNIT_EXPECT_EQ_MSG(test, online, 0UL,
			    "the host holds pages the guest has back");
	KUNIT_EXPECT_EQ_MSG(test, vbt_held(h), (unsigned long)vb->num_bpages,
			    "the host and the guest count the balloon differently");
	KUNIT_EXPECT_EQ(test, vbt_actual(h), vb->num_bpages);
	mutex_unlock(&vb->lock);
}

static void vbt_exit(struct kunit *test)
{
	struct vbt_host *h = test->priv;
	bool bound;

	if (!h)
		return;
	bound = !!h->vdev.dev.driver;
	if (bound && vbt_vb(h)->state == VB_STATE_RUNNING)
		vbt_settle(h);
	vbt_witness(test, h);
	/* Kept until the checks below are done. */
	get_device(&h->vdev.dev);
	/* The core removes a bound driver first, then drops the device. */
	unregister_virtio_device(&h->vdev);
	h->vdev.priv = NULL;
	if (bound)
		vbt_expect_removed(test, h);
	/* remove told the host about everything, unless it could not. */
	if (!h->untold)
		KUNIT_EXPECT_EQ(test, vbt_held(h), 0UL);
	KUNIT_EXPECT_EQ(test, h->early_reuse, 0);
	put_device(&h->vdev.dev);
}

static void vb_test_inflate_batches(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();
	u32 target = 2 * VB_BATCH_PFNS + 100 * VB_BPAGES_PER_PAGE;

	vbt_set_target(h, target);

	KUNIT_EXPECT_EQ(test, vb->num_bpages, target);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), target);
	KUNIT_EXPECT_EQ(test, h->pfns[VB_VQ_INFLATE], target);
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_INFLATE], 3);
	KUNIT_EXPECT_EQ(test, h->max_batch, VB_BATCH_PFNS);
	KUNIT_EXPECT_EQ(test, h->bad_inflates, 0);
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_DEFLATE], 0);
	KUNIT_EXPECT_EQ(test, totalram_pages(),
			total - target / VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_ballooned_pages_offline(vb),
			target / VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), target);
}

static void vb_test_deflate_returns_held_pages(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	vbt_set_target(h, 1000 * VB_BPAGES_PER_PAGE);
	vbt_set_target(h, 300 * VB_BPAGES_PER_PAGE);

	KUNIT_EXPECT_EQ(test, vb->num_bpages, 300 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 300 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->pfns[VB_VQ_DEFLATE], 700 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->bad_deflates, 0);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total - 300);

	vbt_set_target(h, 0);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
}

#ifdef CONFIG_BALLOON_MIGRATION
/*
 * Balloon 16 pages and take one off the balloon's list, standing in for
 * compaction's isolation. Return it, with a free page to move it to in
 * @newpage.
 */
static struct page *vbt_isolate(struct kunit *test, struct vbt_host *h,
				struct page **newpage)
{
	struct balloon_dev_info *b = &vbt_vb(h)->b_dev_info;
	struct page *page;
	LIST_HEAD(isolated);

	vbt_set_target(h, 16 * VB_BPAGES_PER_PAGE);
	*newpage = alloc_page(GFP_HIGHUSER_MOVABLE);
	KUNIT_ASSERT_NOT_NULL(test, *newpage);
	KUNIT_ASSERT_EQ(test, balloon_page_list_dequeue(b, &isolated, 1), 1);
	page = list_first_entry(&isolated, struct page, lru);
	list_del(&page->lru);
	return page;
}

/* The driver's part of a move, with both pages locked as the core does. */
static int vbt_migrate(struct vbt_host *h, struct page *newpage,
		       struct page *page)
{
	struct balloon_dev_info *b = &vbt_vb(h)->b_dev_info;
	int rc;

	lock_page(page);
	lock_page(newpage);
	rc = b->migratepage(b, newpage, page, MIGRATE_SYNC);
	unlock_page(newpage);
	unlock_page(page);
	return rc;
}

/*
 * The balloon core's part after the driver's: a completed move lists the
 * new page and frees the old one; a refused one puts the old page back
 * and frees its target.
 */
static void vbt_migrate_finish(struct kunit *test, struct vbt_host *h,
			       struct page *newpage, struct page *page,
			       bool moved)
{
	struct balloon_dev_info *b = &vbt_vb(h)->b_dev_info;

	if (moved) {
		balloon_page_enqueue(b, newpage);
		put_page(page);
	} else {
		balloon_page_enqueue(b, page);
		__free_page(newpage);
	}
}

/*
 * Compaction moves a ballooned page: the host must be handed the new
 * page and given back the old one, and the balloon must not change size.
 * The driver only talks to the host; the rest is the balloon core's part,
 * which the test plays.
 */
static void vb_test_migrate_moves_page(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total, pfn, newpfn;
	struct page *page, *newpage;

	page = vbt_isolate(test, h, &newpage);
	total = totalram_pages();
	pfn = page_to_pfn(page) * VB_BPAGES_PER_PAGE;
	newpfn = page_to_pfn(newpage) * VB_BPAGES_PER_PAGE;

	KUNIT_EXPECT_EQ(test, vbt_migrate(h, newpage, page), 0);

	KUNIT_EXPECT_NOT_NULL(test, xa_load(&h->held, newpfn));
	KUNIT_EXPECT_NULL(test, xa_load(&h->held, pfn));
	KUNIT_EXPECT_EQ(test, h->bad_deflates, 0);
	KUNIT_EXPECT_EQ(test, h->bad_inflates, 0);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 16 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 16 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_MIGRATED], 1UL);
	if (page_zone(page) == page_zone(newpage))
		KUNIT_EXPECT_EQ(test, totalram_pages(), total);
	vbt_migrate_finish(test, h, newpage, page, true);

	/* The moved page deflates like any other. */
	vbt_set_target(h, 0);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
}
#endif

static void vb_test_target_clamped(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned int target;

	h->config.num_pages = cpu_to_le32(U32_MAX);
	mutex_lock(&vb->lock);
	target = vb_target(vb);
	mutex_unlock(&vb->lock);
	KUNIT_EXPECT_EQ(test, target,
			min_t(unsigned long, U32_MAX,
			      totalram_pages() * VB_BPAGES_PER_PAGE));

	h->config.num_pages = cpu_to_le32(2 * VB_BPAGES_PER_PAGE + 1);
	mutex_lock(&vb->lock);
	target = vb_target(vb);
	mutex_unlock(&vb->lock);
	KUNIT_EXPECT_EQ(test, target, 2 * VB_BPAGES_PER_PAGE +
			(VB_BPAGES_PER_PAGE == 1));
}

static void vb_test_stats_encoding(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, BIT_ULL(VIRTIO_BALLOON_F_STATS_VQ));
	struct vb_dev *vb = vbt_vb(h);
	struct virtqueue *vq = vb->vqs[VB_VQ_STATS];
	unsigned int i;

	/* The first buffer arrives with the driver. */
	KUNIT_ASSERT_EQ(test, h->requests[VB_VQ_STATS], 1);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_STATS_SENT], 0);
	KUNIT_ASSERT_EQ(test, h->nr_stats, VB_NR_STATS);
	/* Every tag the specification defines (0-15), each once, in order. */
	for (i = 0; i < VB_NR_STATS; i++)
		KUNIT_EXPECT_EQ(test, le16_to_cpu((__force __le16)h->stats[i].tag),
				i);
	KUNIT_EXPECT_EQ(test, le64_to_cpu((__force __le64)h->stats[5].val),
			(u64)totalram_pages() << PAGE_SHIFT);

	/* The host asks again by returning the buffer. */
	vbt_push_used(vq, h->stats_head, 0);
	h->stats_head = -1;
	vring_interrupt(0, vq);
	flush_work(&vb->stats_work);
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_STATS], 2);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_STATS_SENT], 1);
	KUNIT_EXPECT_GE(test, h->stats_head, 0);
	/* Handled: the wakeup event is over. */
	KUNIT_EXPECT_EQ(test, vb->wake_bits, 0);
}

/* The last four tags count pages scanned and reclaimed, but in bytes. */
static void vb_test_stats_reclaim_in_bytes(struct kunit *test)
{
	static const enum node_stat_item item[] = {
		PGSCAN_KSWAPD, PGSCAN_DIRECT, PGSTEAL_KSWAPD, PGSTEAL_DIRECT,
	};
	struct vbt_host *h = vbt_probe(test, BIT_ULL(VIRTIO_BALLOON_F_STATS_VQ));
	struct vb_dev *vb = vbt_vb(h);
	unsigned long before[ARRAY_SIZE(item)], after[ARRAY_SIZE(item)];
	unsigned int i;
	u64 val;

	/*
	 * Make every count non-zero and distinct from the other counters, so
	 * that pages and bytes, or one counter and another, differ. 1000 is
	 * past any per-CPU threshold: the global count moves at once.
	 */
	for (i = 0; i < ARRAY_SIZE(item); i++)
		mod_node_page_state(NODE_DATA(first_online_node), item[i],
				    1000 * (i + 1));
	for (i = 0; i < ARRAY_SIZE(item); i++)
		before[i] = global_node_page_state(item[i]);
	vb_stats_fill(vb);
	for (i = 0; i < ARRAY_SIZE(item); i++)
		after[i] = global_node_page_state(item[i]);

	for (i = 0; i < ARRAY_SIZE(item); i++) {
		KUNIT_EXPECT_EQ(test, virtio16_to_cpu(&h->vdev, vb->stats[12 + i].tag),
				VIRTIO_BALLOON_S_ASYNC_SCAN + i);
		val = virtio64_to_cpu(&h->vdev, vb->stats[12 + i].val);
		KUNIT_EXPECT_EQ(test, val % PAGE_SIZE, 0);
		KUNIT_EXPECT_GE(test, val, (u64)before[i] << PAGE_SHIFT);
		KUNIT_EXPECT_LE(test, val, (u64)after[i] << PAGE_SHIFT);
	}
}

/*
 * poison_val is the 32-bit word free pages are filled with, and PAGE_POISON
 * is kept only when free pages hold a pattern. The harness boots the KUnit
 * kernel with page_poison=1, so the pattern is 0xaa bytes there.
 */
static void vb_test_poison_value(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test,
				       BIT_ULL(VIRTIO_BALLOON_F_PAGE_POISON));
	bool patterned = want_init_on_free() || page_poisoning_enabled_static();

	KUNIT_EXPECT_EQ(test, virtio_has_feature(&h->vdev,
						 VIRTIO_BALLOON_F_PAGE_POISON),
			patterned);
	KUNIT_EXPECT_EQ(test, le32_to_cpu(h->config.poison_val),
			patterned && !want_init_on_free() ? 0xaaaaaaaa : 0);
	/* A skip would hide a failed check above. */
	if (!patterned && test->status != KUNIT_FAILURE)
		kunit_skip(test, "no pattern in free pages (page_poison=1 checks the value)");
}

/* validate: the features this guest can use, whatever the device offers. */
static void vb_test_validate(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct virtio_device *vdev = &h->vdev;
	u64 saved = vdev->features;
	bool patterned = want_init_on_free() || page_poisoning_enabled_static();

	vdev->features = BIT_ULL(VIRTIO_F_ACCESS_PLATFORM) |
			 BIT_ULL(VIRTIO_RING_F_INDIRECT_DESC) |
			 BIT_ULL(VIRTIO_BALLOON_F_PAGE_POISON) |
			 BIT_ULL(VIRTIO_BALLOON_F_REPORTING);
	KUNIT_EXPECT_EQ(test, vb_validate(vdev), 0);
	KUNIT_EXPECT_FALSE(test, virtio_has_feature(vdev, VIRTIO_F_ACCESS_PLATFORM));
	KUNIT_EXPECT_FALSE(test,
			   virtio_has_feature(vdev, VIRTIO_RING_F_INDIRECT_DESC));
	KUNIT_EXPECT_EQ(test,
			virtio_has_feature(vdev, VIRTIO_BALLOON_F_PAGE_POISON),
			patterned);
	KUNIT_EXPECT_TRUE(test, virtio_has_feature(vdev, VIRTIO_BALLOON_F_REPORTING));

	vdev->features = BIT_ULL(VIRTIO_BALLOON_F_REPORTING);
	KUNIT_EXPECT_EQ(test, vb_validate(vdev), 0);
	KUNIT_EXPECT_EQ(test,
			virtio_has_feature(vdev, VIRTIO_BALLOON_F_REPORTING),
			!patterned);
	vdev->features = saved;
}

/* A new target is a wakeup event until the balloon has reached it. */
static void vb_test_target_wakeup_event(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);

	KUNIT_EXPECT_TRUE(test, device_can_wakeup(&h->vdev.dev));
	h->config.num_pages = cpu_to_le32(10 * VB_BPAGES_PER_PAGE);
	vb_config_changed(&h->vdev);
	KUNIT_EXPECT_TRUE(test, READ_ONCE(vb->wake_bits) & VB_WAKE_TARGET ||
			  vb->num_bpages == 10 * VB_BPAGES_PER_PAGE);
	vbt_settle(h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 10 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->wake_bits, 0);
}

static void vb_test_oom_deflates(struct kunit *test)
{
	struct vbt_host *h;
	struct vb_dev *vb;
	unsigned long freed = 0;

	h = vbt_probe(test, BIT_ULL(VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	vb = vbt_vb(h);
	vbt_set_target(h, 1000 * VB_BPAGES_PER_PAGE);
	vb_oom_notify(&vb->oom_nb, 0, &freed);

	KUNIT_EXPECT_EQ(test, freed, oom_pages);
	KUNIT_EXPECT_EQ(test, vb->num_bpages,
			(1000 - oom_pages) * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->pfns[VB_VQ_DEFLATE],
			oom_pages * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), vb->num_bpages);
}

static void vb_test_remove_returns_everything(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	unsigned long total = totalram_pages();

	vbt_set_target(h, 2000 * VB_BPAGES_PER_PAGE);
	/* As an administrator may: remove must take the wakeup source. */
	KUNIT_ASSERT_EQ(test, device_wakeup_enable(&h->vdev.dev), 0);
	vbt_remove(test, h);

	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
	KUNIT_EXPECT_EQ(test, h->bad_deflates, 0);
}

/*
 * A probe that fails leaves the device unbound and marked FAILED by the
 * core, and nothing of the driver behind. Early: the queues cannot be
 * made.
 */
static void vb_test_probe_fails_early(struct kunit *test)
{
	struct vbt_host *h = vbt_register(test, 0, true);

	KUNIT_EXPECT_NULL(test, h->vdev.dev.driver);
	KUNIT_EXPECT_NULL(test, h->vdev.priv);
	KUNIT_EXPECT_TRUE(test, h->status & VIRTIO_CONFIG_S_FAILED);
	KUNIT_EXPECT_EQ(test, h->del_vqs_calls, 0);
}

static int vbt_report_nothing(struct page_reporting_dev_info *pr,
			      struct scatterlist *sg, unsigned int n)
{
	return 0;
}

/*
 * Late: the device is ready, the queues exist and a statistics buffer is
 * posted when page reporting, which takes one device per guest, is
 * already taken. Everything probe set up is undone.
 */
static void vb_test_probe_fails_late(struct kunit *test)
{
	static struct page_reporting_dev_info other = {
		.report = vbt_report_nothing,
	};
	struct vbt_host *h;
	struct dentry *d;
	int err;

	/* The order it asks for sticks for the guest: ask for the default. */
	other.order = pageblock_order;
	KUNIT_ASSERT_EQ(test, page_reporting_register(&other), 0);
	h = vbt_register(test, BIT_ULL(VIRTIO_BALLOON_F_STATS_VQ) |
			 BIT_ULL(VIRTIO_BALLOON_F_PAGE_POISON) |
			 BIT_ULL(VIRTIO_BALLOON_F_REPORTING), false);
	page_reporting_unregister(&other);
	/* The queues were made: this is the late failure, not the early. */
	KUNIT_ASSERT_EQ(test, h->role[2], VB_VQ_STATS);
	/* Read directly: virtio_has_feature() wants a bound driver. */
	KUNIT_ASSERT_TRUE(test, h->vdev.features &
				BIT_ULL(VIRTIO_BALLOON_F_REPORTING));

	KUNIT_EXPECT_NULL(test, h->vdev.dev.driver);
	KUNIT_EXPECT_NULL(test, h->vdev.priv);
	KUNIT_EXPECT_TRUE(test, h->status & VIRTIO_CONFIG_S_FAILED);
	KUNIT_EXPECT_EQ(test, h->del_vqs_calls, 1);
	KUNIT_EXPECT_FALSE(test, device_can_wakeup(&h->vdev.dev));
	d = debugfs_lookup(dev_name(&h->vdev.dev), vb_debugfs_root);
	KUNIT_EXPECT_TRUE(test, IS_ERR_OR_NULL(d));
	if (!IS_ERR_OR_NULL(d))
		dput(d);
	/* Reporting is free again: the driver let go of nothing it lacked. */
	err = page_reporting_register(&other);
	KUNIT_EXPECT_EQ(test, err, 0);
	if (!err)
		page_reporting_unregister(&other);
}

/* Offering hinting keeps the reporting queue where such a device has it. */
static void vb_test_hint_queue_order(struct kunit *test)
{
	/*
	 * PAGE_POISON too, as QEMU offers it: where free pages hold a
	 * pattern, validate() drops reporting without it.
	 */
	struct vbt_host *h = vbt_probe(test, BIT_ULL(VIRTIO_BALLOON_F_STATS_VQ) |
				       BIT_ULL(VIRTIO_BALLOON_F_FREE_PAGE_HINT) |
				       BIT_ULL(VIRTIO_BALLOON_F_PAGE_POISON) |
				       BIT_ULL(VIRTIO_BALLOON_F_REPORTING));

	KUNIT_EXPECT_EQ(test, h->role[2], VB_VQ_STATS);
	KUNIT_EXPECT_EQ(test, h->role[3], VB_VQ_FREE_PAGE);
	KUNIT_EXPECT_EQ(test, h->role[4], VB_VQ_REPORTING);
}

/*
 * A hint run: the command id, free blocks until the host announces STOP
 * (the field reads STOP from the moment the host took the id, as with
 * QEMU), the STOP id to close the run, and every block back in the
 * allocator after.
 * The same id does not start a second run; DONE ends the hinting.
 */
static void vb_test_hint_run(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test,
				       BIT_ULL(VIRTIO_BALLOON_F_FREE_PAGE_HINT));
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	h->hint_stop_after = 8;
	h->config.free_page_hint_cmd_id = cpu_to_le32(7);
	vb_config_changed(&h->vdev);
	flush_work(&vb->hint_work);

	KUNIT_EXPECT_EQ(test, h->nr_hint_cmds, 2);
	KUNIT_EXPECT_EQ(test, h->hint_cmds[0], 7);
	KUNIT_EXPECT_EQ(test, h->hint_cmds[1], VIRTIO_BALLOON_CMD_ID_STOP);
	KUNIT_EXPECT_EQ(test, h->hint_blocks, 8);
	KUNIT_EXPECT_EQ(test, h->hint_bad, 0);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_HINT_RUNS], 1);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_HINTED],
			8UL << VB_HINT_ORDER);
	KUNIT_EXPECT_EQ(test, vb->hint_blocks, 0);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);

	h->config.free_page_hint_cmd_id = cpu_to_le32(7);
	vb_config_changed(&h->vdev);
	flush_work(&vb->hint_work);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_HINT_RUNS], 1);

	h->config.free_page_hint_cmd_id =
		cpu_to_le32(VIRTIO_BALLOON_CMD_ID_DONE);
	vb_config_changed(&h->vdev);
	flush_work(&vb->hint_work);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_HINT_RUNS], 1);
	KUNIT_EXPECT_EQ(test, h->nr_hint_cmds, 2);
}

/* A run that fills the queue still has a descriptor to end the run with. */
static void vb_test_hint_queue_full_stops(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test,
				       BIT_ULL(VIRTIO_BALLOON_F_FREE_PAGE_HINT));
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	h->hint_keep = true;
	h->config.free_page_hint_cmd_id = cpu_to_le32(11);
	vb_config_changed(&h->vdev);
	flush_work(&vb->hint_work);
	KUNIT_EXPECT_EQ(test, h->nr_hint_cmds, 2);
	KUNIT_EXPECT_EQ(test, h->hint_cmds[1], VIRTIO_BALLOON_CMD_ID_STOP);
	KUNIT_EXPECT_EQ(test, h->hint_blocks, VBT_QUEUE_SIZE - 1);

	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb->hint_blocks, 0);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
	h->hint_keep = false;
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
}

/* The OOM notifier takes held hint blocks back first. */
static void vb_test_hint_oom_returns_held(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test,
				       BIT_ULL(VIRTIO_BALLOON_F_FREE_PAGE_HINT));
	struct vb_dev *vb = vbt_vb(h);
	unsigned long freed = 0;
	struct page *page;
	int i;

	/* Without DEFLATE_ON_OOM the balloon itself stays as it is. */
	vbt_set_target(h, 100 * VB_BPAGES_PER_PAGE);
	for (i = 0; i < 2; i++) {
		page = alloc_pages(VB_HINT_GFP, VB_HINT_ORDER);
		KUNIT_ASSERT_NOT_NULL(test, page);
		spin_lock_irq(&vb->hint_lock);
		vb->hint_blocks++;
		spin_unlock_irq(&vb->hint_lock);
		vb_hint_reclaim(vb, page, true);
	}
	vb_oom_notify(&vb->oom_nb, 0, &freed);
	KUNIT_EXPECT_EQ(test, freed, 2UL << VB_HINT_ORDER);
	KUNIT_EXPECT_EQ(test, vb->hint_blocks, 0);
	KUNIT_EXPECT_EQ(test, vb->hint_nr_held, 0);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 100 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 100 * VB_BPAGES_PER_PAGE);
}

#ifdef CONFIG_PM_SLEEP
/* Inflate @pages, freeze, and check that freeze left the balloon alone. */
static struct vbt_host *vbt_inflate_freeze(struct kunit *test, u64 features,
					   unsigned int pages)
{
	struct vbt_host *h = vbt_probe(test, features);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total;

	vbt_set_target(h, pages * VB_BPAGES_PER_PAGE);
	total = totalram_pages();
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);

	KUNIT_EXPECT_EQ(test, vb->state, VB_STATE_FROZEN);
	KUNIT_EXPECT_EQ(test, h->del_vqs_calls, 1);
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_DEFLATE], 0);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, pages * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);

	/* Nothing may run against the deleted queues. */
	vb_config_changed(&h->vdev);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&vb->balloon_work));
	return h;
}

/*
 * Blocks the device has not returned stay out of the allocator, and a
 * freeze takes them all back once the device is reset.
 */
static void vb_test_hint_freeze_reclaims(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test,
				       BIT_ULL(VIRTIO_BALLOON_F_FREE_PAGE_HINT));
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	h->hint_keep = true;
	h->hint_stop_after = 4;
	h->config.free_page_hint_cmd_id = cpu_to_le32(9);
	vb_config_changed(&h->vdev);
	flush_work(&vb->hint_work);
	KUNIT_EXPECT_EQ(test, h->hint_blocks, 4);
	KUNIT_EXPECT_EQ(test, vb->hint_blocks, 4);

	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb->hint_blocks, 0);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);

	/* After thaw, a new id starts a new run. */
	h->hint_keep = false;
	h->hint_blocks = 0;
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	h->config.free_page_hint_cmd_id = cpu_to_le32(10);
	vb_config_changed(&h->vdev);
	flush_work(&vb->hint_work);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_HINT_RUNS], 2);
	KUNIT_EXPECT_EQ(test, vb->hint_blocks, 0);
}

/* A new VM: its host holds nothing and wants @target. */
static void vbt_new_host(struct vbt_host *h, u32 target)
{
	xa_destroy(&h->held);
	h->new_vm = true;
	h->config.num_pages = cpu_to_le32(target);
	h->config.actual = 0;
	/* A new VM's device knows no poison value until the driver says. */
	h->config.poison_val = 0;
}

static void vb_test_freeze_thaw_keeps_balloon(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 1000);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb->state, VB_STATE_RUNNING);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_THAWED], 1);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_RESTORED], 0);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);

	/* The queues work again. */
	vbt_set_target(h, 400 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->pfns[VB_VQ_DEFLATE], 600 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->bad_deflates, 0);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + 600);
}

/*
 * PMSG_RESTORE's early phase, as the PM core reaches it: through the
 * driver's dev_pm_ops, before the transport restores the device.
 */
static int vbt_pm_restore_early(struct vbt_host *h)
{
	return h->vdev.dev.driver->pm->restore_early(&h->vdev.dev);
}

/*
 * The PM core's restore_early() then the transport's restore: @new_vm says
 * whether a new VM with target @target resumes the image, or the same host
 * comes back (a failed or tested hibernation) with its target set to
 * @target. The restore callback itself must not deflate.
 */
static int vbt_restore(struct vbt_host *h, bool new_vm, u32 target)
{
	int err;

	if (new_vm)
		vbt_new_host(h, target);
	else
		h->config.num_pages = cpu_to_le32(target);
	vbt_pm_restore_early(h);
	h->caller = current;
	err = virtio_device_restore(&h->vdev);
	h->caller = NULL;
	return err;
}

/* Run the balloon work until the drop owed since a restore is done. */
static void vbt_finish_drop(struct kunit *test, struct vbt_host *h)
{
	struct vb_dev *vb = vbt_vb(h);
	int i;

	for (i = 0; i < 10000 && READ_ONCE(vb->drop_owed); i++)
		flush_delayed_work(&vb->balloon_work);
	/* A worker may still be finishing the run that ended the drop. */
	flush_delayed_work(&vb->balloon_work);
	KUNIT_ASSERT_FALSE(test, READ_ONCE(vb->drop_owed));
}

static void vb_test_restore_drops_balloon(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 1000);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	KUNIT_ASSERT_EQ(test, vbt_restore(h, true, 0), 0);
	/* The callback left the drop to the balloon work. */
	KUNIT_EXPECT_EQ(test, h->caller_deflates, 0);
	vbt_finish_drop(test, h);

	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_RESTORED], 1);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_RESTORE_DROPPED],
			1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
	KUNIT_EXPECT_TRUE(test, list_empty(&vb->b_dev_info.pages));
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 0);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + 1000);
	/* Told, even without MUST_TELL_HOST: the host may be the old one. */
	KUNIT_EXPECT_EQ(test, h->pfns[VB_VQ_DEFLATE], 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->unknown_deflates, 1000 * VB_BPAGES_PER_PAGE);

	/* The next freeze is a thaw again unless the PM core says otherwise. */
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_THAWED], 1);
	KUNIT_EXPECT_FALSE(test, vb->drop_owed);
}

static void vb_test_restore_follows_new_target(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 1000);
	struct vb_dev *vb = vbt_vb(h);

	KUNIT_ASSERT_EQ(test, vbt_restore(h, true, 300 * VB_BPAGES_PER_PAGE), 0);
	vbt_finish_drop(test, h);
	vbt_settle(h);

	KUNIT_EXPECT_EQ(test, vb->num_bpages, 300 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 300 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 300 * VB_BPAGES_PER_PAGE);
}

/*
 * Issue 10, defect 2 (and issue 17): PMSG_RESTORE with the same host, which
 * still holds the balloon, and a changed target. Every page goes back
 * through the deflate queue, and actual reaches 0 before anything is
 * inflated again.
 */
static void vb_test_restore_same_host_tells(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 1000);
	struct vb_dev *vb = vbt_vb(h);
	unsigned int inflates = h->requests[VB_VQ_INFLATE];
	unsigned int i = h->nr_actual_writes;
	unsigned long total = totalram_pages();
	bool zero_first = false;

	KUNIT_ASSERT_EQ(test, vbt_restore(h, false, 600 * VB_BPAGES_PER_PAGE),
			0);
	KUNIT_EXPECT_EQ(test, h->caller_deflates, 0);
	vbt_finish_drop(test, h);
	vbt_settle(h);

	for (; i < h->nr_actual_writes; i++) {
		if (h->actual_log[i].inflates != inflates)
			break;
		if (!h->actual_log[i].actual)
			zero_first = true;
	}
	KUNIT_EXPECT_TRUE_MSG(test, zero_first,
			      "actual never reached 0 before re-inflating");
	KUNIT_EXPECT_EQ(test, h->pfns[VB_VQ_DEFLATE], 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->bad_deflates, 0);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 600 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 600 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 600 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + 400);
}

static void vb_test_restore_tells_host_first(struct kunit *test)
{
	struct vbt_host *h;
	struct vb_dev *vb;

	h = vbt_inflate_freeze(test, BIT_ULL(VIRTIO_BALLOON_F_MUST_TELL_HOST),
			       1000);
	vb = vbt_vb(h);
	KUNIT_ASSERT_EQ(test, vbt_restore(h, false, 0), 0);
	vbt_finish_drop(test, h);

	KUNIT_EXPECT_EQ(test, h->pfns[VB_VQ_DEFLATE], 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->bad_deflates, 0);
	KUNIT_EXPECT_EQ(test, h->early_reuse, 0);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
}

/*
 * Issue 10, defect 3: the transport's restore fails before vb_restore()
 * runs (here the virtio core's feature negotiation, which the core does
 * before it calls the driver). The next hibernation's thaw still owes the
 * new host the drop.
 */
static void vb_test_restore_owed_across_failed_transport(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 1000);
	struct vb_dev *vb = vbt_vb(h);

	/* The new host wants the same size: only the drop can tell it. */
	vbt_new_host(h, 1000 * VB_BPAGES_PER_PAGE);
	vbt_pm_restore_early(h);
	h->fail_features = true;
	KUNIT_EXPECT_EQ(test, virtio_device_restore(&h->vdev), -EIO);
	h->fail_features = false;
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_RESTORED], 0);
	KUNIT_EXPECT_TRUE(test, h->status & VIRTIO_CONFIG_S_FAILED);
	/* The transport gave up; the device stays frozen. Next S4: */
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);	/* a thaw */
	vbt_finish_drop(test, h);
	vbt_settle(h);

	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_THAWED], 1);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_RESTORE_DROPPED],
			1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->pfns[VB_VQ_DEFLATE], 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 1000 * VB_BPAGES_PER_PAGE);
}

struct vbt_freezer {
	struct vbt_host *h;
	int err;
	struct completion done;
};

static int vbt_freeze_thread(void *data)
{
	struct vbt_freezer *f = data;

	f->err = virtio_device_freeze(&f->h->vdev);
	complete(&f->done);
	return 0;
}

static bool vbt_deflate_stalled(struct vbt_host *h)
{
	return READ_ONCE(h->stalled_head) >= 0;
}

static bool vbt_users_stopped(struct vbt_host *h)
{
	return READ_ONCE(vbt_vb(h)->stopped);
}

/* Wait up to a few seconds for @cond(@h). */
static bool vbt_wait_for(struct vbt_host *h, bool (*cond)(struct vbt_host *))
{
	int i;

	for (i = 0; i < 5000 && !cond(h); i++)
		usleep_range(500, 1000);
	return cond(h);
}

/*
 * Issue 14: a freeze while the restore drop is half done. The host holds
 * its second deflate until the freeze has stopped the balloon work; the
 * freeze then completes with two batches dropped and the rest owed, the
 * counts exact, and the next thaw finishes the drop.
 */
static void vb_test_freeze_during_drop(struct kunit *test)
{
	unsigned int pages = 4 * VB_BATCH_PFNS / VB_BPAGES_PER_PAGE;
	struct vbt_host *h = vbt_inflate_freeze(test, 0, pages);
	struct vb_dev *vb = vbt_vb(h);
	struct virtqueue *vq;
	struct vbt_freezer f = { .h = h };
	struct task_struct *t;

	init_completion(&f.done);
	h->stall_deflate = 2;
	KUNIT_ASSERT_EQ(test, vbt_restore(h, false, 0), 0);
	KUNIT_ASSERT_TRUE(test, vbt_wait_for(h, vbt_deflate_stalled));

	t = kthread_run(vbt_freeze_thread, &f, "vbt-freeze");
	KUNIT_ASSERT_FALSE(test, IS_ERR(t));
	KUNIT_ASSERT_TRUE(test, vbt_wait_for(h, vbt_users_stopped));
	/* Answer the held deflate: the work finishes its batch and stops. */
	vq = vb->vqs[VB_VQ_DEFLATE];
	vbt_push_used(vq, h->stalled_head, 0);
	vring_interrupt(0, vq);
	KUNIT_ASSERT_TRUE(test, wait_for_completion_timeout(&f.done, 10 * HZ));
	KUNIT_ASSERT_EQ(test, f.err, 0);

	KUNIT_EXPECT_EQ(test, vb->state, VB_STATE_FROZEN);
	KUNIT_EXPECT_TRUE(test, vb->drop_owed);
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_DEFLATE], 2);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 2 * VB_BATCH_PFNS);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 2 * VB_BATCH_PFNS);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 2 * VB_BATCH_PFNS);

	h->stall_deflate = 0;
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);	/* a thaw */
	vbt_finish_drop(test, h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
	KUNIT_EXPECT_EQ(test, h->pfns[VB_VQ_DEFLATE], 4 * VB_BATCH_PFNS);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_RESTORE_DROPPED],
			4 * VB_BATCH_PFNS);
}

#ifdef CONFIG_BALLOON_MIGRATION
/* Issue 10, defect 5: compaction leaves a balloon being dropped alone. */
static void vb_test_no_migration_during_drop(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	struct balloon_dev_info *b = &vb->b_dev_info;
	struct page *page, *newpage;

	vbt_set_target(h, 16 * VB_BPAGES_PER_PAGE);
	newpage = alloc_page(GFP_HIGHUSER_MOVABLE);
	KUNIT_ASSERT_NOT_NULL(test, newpage);

	/*
	 * Any ballooned page will do, isolated or not: the driver must
	 * refuse before it touches either page or tells the host anything.
	 */
	mutex_lock(&vb->lock);
	vb->drop_owed = true;
	vb->drop_start = ktime_get();
	page = list_first_entry(&b->pages, struct page, lru);
	mutex_unlock(&vb->lock);

	KUNIT_EXPECT_EQ(test, vbt_migrate(h, newpage, page), -EAGAIN);
	put_page(newpage);

	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_INFLATE], 1);
	h->config.num_pages = 0;
	vb_queue_balloon_work(vb, 0);
	vbt_finish_drop(test, h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
}
#endif

/*
 * Issue 10, defect 1: the kernel that loads a hibernation image. After
 * PM_RESTORE_PREPARE it hands its balloon back to the host, told, and
 * takes nothing more; the PMSG_QUIESCE freeze leaves nothing ballooned.
 * If no image is restored after all, PM_POST_RESTORE brings the target
 * back.
 */
static void vb_test_image_loader_hands_back(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	vbt_set_target(h, 1000 * VB_BPAGES_PER_PAGE);
	vb_pm_notify(&vb->pm_nb, PM_RESTORE_PREPARE, NULL);

	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 0);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);

	/* The host's target does not bring the balloon back meanwhile. */
	vbt_set_target(h, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);

	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);	/* PMSG_QUIESCE */
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 0);

	/* The image could not be restored: PMSG_RECOVER, then the notifier. */
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	vb_pm_notify(&vb->pm_nb, PM_POST_RESTORE, NULL);
	vbt_settle(h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 1000 * VB_BPAGES_PER_PAGE);
}

/* A quiesce freeze hands back what was inflated after the notifier ran. */
static void vb_test_quiesce_hands_back_late_pages(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);

	vbt_set_target(h, 500 * VB_BPAGES_PER_PAGE);
	mutex_lock(&vb->lock);
	vb->handing_back = true;	/* the notifier, racing an inflate */
	mutex_unlock(&vb->lock);
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);

	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 0);
}

static void vb_test_restore_failure_is_defined(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 1000);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	vbt_untold(h);
	h->fail_find_vqs = true;
	/* The virtio core negotiates features before calling us. */
	KUNIT_EXPECT_EQ(test, vbt_restore(h, true, 0), -ENOMEM);

	KUNIT_EXPECT_EQ(test, vb->state, VB_STATE_BROKEN);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);
	vb_config_changed(&h->vdev);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&vb->balloon_work));

	/* A second freeze/restore cannot revive it and says so. */
	KUNIT_EXPECT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, virtio_device_restore(&h->vdev), -EINVAL);

	/*
	 * remove leaves the device reset; the held pages stay out of use, as
	 * a restore may follow an aborted hibernation on the same host.
	 */
	vbt_remove(test, h);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
}

/* Issue 10, defect 5: removing a frozen device leaves it reset. */
static void vb_test_remove_frozen(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 100);
	unsigned long total = totalram_pages();

	vbt_untold(h);
	h->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	vbt_remove(test, h);
	/* The host may hold them and cannot be told: they stay out of use. */
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
}

/* Feature sets for the PM cycle: each feature on and off at least once. */
static const u64 vbt_pm_features[] = {
	0,
	BIT_ULL(VIRTIO_BALLOON_F_MUST_TELL_HOST) |
		BIT_ULL(VIRTIO_BALLOON_F_STATS_VQ) |
		BIT_ULL(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) |
		BIT_ULL(VIRTIO_BALLOON_F_PAGE_POISON) |
		BIT_ULL(VIRTIO_BALLOON_F_REPORTING),
	BIT_ULL(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) |
		BIT_ULL(VIRTIO_BALLOON_F_MUST_TELL_HOST),
	BIT_ULL(VIRTIO_BALLOON_F_STATS_VQ) |
		BIT_ULL(VIRTIO_BALLOON_F_REPORTING),
	BIT_ULL(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) |
		BIT_ULL(VIRTIO_BALLOON_F_PAGE_POISON),
};

static void vbt_pm_features_desc(const u64 *f, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE,
		 "offered: mth=%d stats=%d oom=%d poison=%d reporting=%d",
		 !!(*f & BIT_ULL(VIRTIO_BALLOON_F_MUST_TELL_HOST)),
		 !!(*f & BIT_ULL(VIRTIO_BALLOON_F_STATS_VQ)),
		 !!(*f & BIT_ULL(VIRTIO_BALLOON_F_DEFLATE_ON_OOM)),
		 !!(*f & BIT_ULL(VIRTIO_BALLOON_F_PAGE_POISON)),
		 !!(*f & BIT_ULL(VIRTIO_BALLOON_F_REPORTING)));
}

KUNIT_ARRAY_PARAM(vbt_pm_features, vbt_pm_features, vbt_pm_features_desc);

/*
 * After thaw or restore, every user the negotiated features ask for is
 * back. What was negotiated is what validate() left of the offer.
 */
static void vbt_expect_users(struct kunit *test, struct vbt_host *h,
			     unsigned int stats_posts)
{
	struct vb_dev *vb = vbt_vb(h);
	u64 features = h->vdev.features;
	unsigned long freed = 0;

	KUNIT_EXPECT_EQ(test, vb->state, VB_STATE_RUNNING);
	KUNIT_EXPECT_EQ(test, vb->reporting,
			!!(features & BIT_ULL(VIRTIO_BALLOON_F_REPORTING)));
	if (features & BIT_ULL(VIRTIO_BALLOON_F_STATS_VQ)) {
		KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_STATS], stats_posts);
		KUNIT_EXPECT_GE(test, h->stats_head, 0);
		KUNIT_EXPECT_EQ(test, h->nr_stats, VB_NR_STATS);
	} else {
		KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_STATS], 0);
	}
	if (features & BIT_ULL(VIRTIO_BALLOON_F_PAGE_POISON))
		KUNIT_EXPECT_EQ(test, le32_to_cpu(h->config.poison_val),
				want_init_on_free() ? 0 : 0xaaaaaaaa);
	else
		KUNIT_EXPECT_EQ(test, le32_to_cpu(h->config.poison_val), 0);
	if (features & BIT_ULL(VIRTIO_BALLOON_F_DEFLATE_ON_OOM)) {
		unsigned int held = vb->num_bpages / VB_BPAGES_PER_PAGE;

		vb_oom_notify(&vb->oom_nb, 0, &freed);
		KUNIT_EXPECT_EQ(test, freed,
				min_t(unsigned long, oom_pages, held));
		KUNIT_EXPECT_EQ(test, vb->num_bpages,
				(held - freed) * VB_BPAGES_PER_PAGE);
		/* The host asks again and gets its balloon back. */
		vbt_set_target(h, le32_to_cpu(h->config.num_pages));
	}
}

/*
 * Issue 17: freeze, thaw, freeze, restore with each feature combination.
 * A notifier left registered by freeze makes the thaw fail; a statistics
 * buffer not posted again leaves the host without one.
 */
static void vb_test_pm_cycle_features(struct kunit *test)
{
	const u64 *features = test->param_value;
	struct vbt_host *h = vbt_inflate_freeze(test, *features, 600);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	vbt_settle(h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 600 * VB_BPAGES_PER_PAGE);
	vbt_expect_users(test, h, 2);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 600 * VB_BPAGES_PER_PAGE);

	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_FALSE(test, vb->reporting);
	KUNIT_ASSERT_EQ(test, vbt_restore(h, true, 0), 0);
	vbt_finish_drop(test, h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 0);
	vbt_set_target(h, 200 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 200 * VB_BPAGES_PER_PAGE);
	vbt_expect_users(test, h, 3);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 200 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + 400);
}

/* Issue 15: the image budget, from made-up counters (pages). */
static void vb_test_hib_need_estimate(struct kunit *test)
{
	struct vb_hib_mem m = {
		.guest = 10000, .kernel = 1000, .free = 1500, .pcp = 500,
		.reclaimable = 3000, .reserve = 500, .totalreserve = 800,
		.spanned = 20000, .cpus = 2,
	};
	struct vb_hib_need n;

	/*
	 * In use 8000 + the kernel's 1000, with no credit for the 3000
	 * reclaimable: 9000. A bitmap is one page of bits and one of tree.
	 * The preallocation: 11000 + 2 * reserve 1000 + twelve bitmaps 24 +
	 * 2048 = 14072, and room for twice 1/40 of the image and 256, 962,
	 * against 2 * free 2000 (a drain reaches the per-CPU lists) +
	 * totalreserve 800: short 10234. Its first stage's cap, 11000 + 24 +
	 * 2048 + 962 against 2 * (buddy free 1500 + reclaimable 3000) + 800,
	 * is shorter. The
	 * write, logged only: 2 * 9000 + five bitmaps 10 + PAGES_FOR_IO
	 * 1024 (more than reserve 500 + 128 + 8 per CPU + one writer
	 * thread's 96) + 1/256 of the image 35 + 64 = 19133 against the
	 * 11000 outside the balloon.
	 */
	KUNIT_EXPECT_EQ(test, vb_hib_need(&m, &n), 10234UL);
	KUNIT_EXPECT_EQ(test, n.image, 9000UL);
	KUNIT_EXPECT_EQ(test, n.prealloc, 10234UL);
	KUNIT_EXPECT_EQ(test, n.write, 8133UL);

	/* Enough room: nothing to give back. */
	m.guest = 30000;
	m.free = 24000;
	m.pcp = 1000;
	KUNIT_EXPECT_EQ(test, vb_hib_need(&m, &n), 0UL);
	KUNIT_EXPECT_EQ(test, n.image, 6000UL);

	/*
	 * The preallocation just met, and one page short of it: with no
	 * reserve, 21000 + 24 + 2048 + room 2 * (8984 / 40 + 256) = 24032
	 * against 2 * 12016. The room is asked for as a shortfall of its
	 * own: one free page less asks for two, not for the room again.
	 */
	m.guest = 20000;
	m.free = 12016;
	m.pcp = 0;
	m.reclaimable = 0;
	m.reserve = 0;
	m.totalreserve = 0;
	KUNIT_EXPECT_EQ(test, vb_hib_need(&m, &n), 0UL);
	m.free = 12015;
	KUNIT_EXPECT_EQ(test, vb_hib_need(&m, &n), 2UL);
	KUNIT_EXPECT_EQ(test, n.write, 0UL);

	/*
	 * Plenty free, but most of it on the per-CPU lists: the first stage
	 * takes at most buddy free + reclaimable, 2 * 5000 against
	 * 21000 + 24 + 2048 + room 2 * (8000 / 40 + 256) = 23984.
	 */
	m.free = 5000;
	m.pcp = 8000;
	KUNIT_EXPECT_EQ(test, vb_hib_need(&m, &n), 13984UL);
	KUNIT_EXPECT_EQ(test, n.write, 0UL);
	/*
	 * Given back, and the per-CPU lists kept 1000 of it: the next pass
	 * asks for what they cost (A'), twice 1000, so that the room stays.
	 */
	m.guest += 13984;
	m.free += 13984 - 1000;
	m.pcp += 1000;
	KUNIT_EXPECT_EQ(test, vb_hib_need(&m, &n), 2000UL);
	m.free += 1000;
	m.pcp -= 1000;
	KUNIT_EXPECT_EQ(test, vb_hib_need(&m, &n), 0UL);
	m.guest = 20000;
	m.free = 5000;
	m.pcp = 0;

	/*
	 * The write just met, and one page short of it, with the
	 * preallocation out of the way: image 6000, 12000 + 10 + reserve +
	 * 240 + 23 + 64 against 21000. It is left to the freeze.
	 */
	m.free = 15000;
	m.reserve = 8663;
	m.totalreserve = 100000;
	KUNIT_EXPECT_EQ(test, vb_hib_need(&m, &n), 0UL);
	KUNIT_EXPECT_EQ(test, n.image, 6000UL);
	KUNIT_EXPECT_EQ(test, n.write, 0UL);
	KUNIT_EXPECT_EQ(test, vb_hib_write_short(&m, 6000, ULONG_MAX), 0L);
	m.reserve = 8664;
	KUNIT_EXPECT_EQ(test, vb_hib_write_short(&m, 6000, ULONG_MAX), 1L);
	/* Eight CPUs: 6 * 8 pages more, and three writer threads, 2 * 96. */
	m.cpus = 8;
	KUNIT_EXPECT_EQ(test, vb_hib_write_short(&m, 6000, ULONG_MAX), 241L);
	m.cpus = 2;
	/*
	 * A refill of the per-CPU lists comes on top: their free pages are
	 * not what the watermark checks count.
	 */
	m.pcp_refill = 500;
	KUNIT_EXPECT_EQ(test, vb_hib_write_short(&m, 6000, ULONG_MAX), 501L);
	m.pcp_refill = 0;
	/*
	 * So does what a KASAN kernel keeps in its quarantine, which the
	 * image counts in use too.
	 */
	m.quarantine = 300;
	KUNIT_EXPECT_EQ(test, vb_hib_write_short(&m, 6000, ULONG_MAX), 301L);
	vb_hib_need(&m, &n);
	KUNIT_EXPECT_EQ(test, n.image, 6300UL);
	m.quarantine = 0;
	/*
	 * After the preallocation, what is free may bind instead: the floor
	 * 8664 + 240 + 23 + 64 = 8991 against 600 or 8000 free; with more
	 * free than the 8990 the image leaves, the image binds again.
	 */
	KUNIT_EXPECT_EQ(test, vb_hib_write_short(&m, 6000, 600), 8391L);
	KUNIT_EXPECT_EQ(test, vb_hib_write_short(&m, 6000, 8000), 991L);
	KUNIT_EXPECT_EQ(test, vb_hib_write_short(&m, 6000, 20000), 1L);
	/* Where the watermarks are low, the kernel's PAGES_FOR_IO binds. */
	m.reserve = 0;
	KUNIT_EXPECT_EQ(test, vb_hib_write_short(&m, 9932, ULONG_MAX), 0L);
	KUNIT_EXPECT_EQ(test, vb_hib_write_short(&m, 9933, ULONG_MAX), 2L);

	/* Reclaimable pages are not credited: the image is what is in use. */
	m.guest = 1000;
	m.free = 0;
	m.reclaimable = 5000;
	vb_hib_need(&m, &n);
	KUNIT_EXPECT_EQ(test, n.image, 2000UL);
}

/* Made-up counters under which vb_hib_need() asks for @short pages. */
static void vbt_hib_mem_short(struct vb_hib_mem *m, unsigned long short_by)
{
	struct vb_hib_need n;

	memset(m, 0, sizeof(*m));
	/* Small, so that the need grows from below a few hundred pages. */
	m->guest = 4000;
	m->free = m->guest;
	/* Raise the pages in use until the need is @short_by (or just past). */
	while (m->free && vb_hib_need(m, &n) < short_by)
		m->free--;
}

/*
 * The real allocator is the witness of vb_pcp_refill(): allocating pages
 * in a row without freeing any makes each refill of this CPU's list
 * larger, up to the kernel's scaled maximum (6.7 on: 2,016 pages seen on
 * 6.12), and none of them may take more from the buddy lists than the
 * bound the write's floor counts for its list. Each allocation is made
 * with interrupts off, between two readings of this CPU's lists, so no
 * free lands in between. The zones' walk adds up at least a bound for
 * every CPU.
 */
#define VBT_REFILL_PAGES	8192

static void vb_test_hib_pcp_refill(struct kunit *test)
{
	int count[MAX_NR_ZONES], delta, z, i, n, nid;
	unsigned long bound = 0, seen = 0, refills = 0, flags;
	long excess = LONG_MIN;
	struct per_cpu_pages *pcp;
	struct page **pages;
	struct vb_hib_mem m;
	struct zone *zone;

	pages = kunit_kcalloc(test, VBT_REFILL_PAGES, sizeof(*pages),
			      GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, pages);
	for (n = 0; n < VBT_REFILL_PAGES; n++) {
		local_irq_save(flags);
		nid = numa_node_id();
		for (z = 0; z < MAX_NR_ZONES; z++) {
			zone = &NODE_DATA(nid)->node_zones[z];
			count[z] = populated_zone(zone) && zone->per_cpu_pageset ?
				   this_cpu_ptr(zone->per_cpu_pageset)->count : 0;
		}
		pages[n] = alloc_page(GFP_NOWAIT | __GFP_NOWARN);
		if (!pages[n]) {
			local_irq_restore(flags);
			break;
		}
		zone = page_zone(pages[n]);
		if (page_to_nid(pages[n]) == nid) {
			pcp = this_cpu_ptr(zone->per_cpu_pageset);
			bound = vb_pcp_refill(pcp);
			/* The list gave one page: anything more came in. */
			delta = pcp->count - count[zone_idx(zone)] + 1;
			if (delta > 1) {
				refills++;
				seen = max_t(unsigned long, seen, delta);
				excess = max_t(long, excess,
					       (long)delta - (long)bound);
			}
		}
		local_irq_restore(flags);
	}
	for (i = 0; i < n; i++)
		__free_page(pages[i]);
	KUNIT_ASSERT_GT(test, n, VBT_REFILL_PAGES / 2);
	/* 7.2 built uniprocessor for KUnit refilled page by page. */
	KUNIT_EXPECT_LE_MSG(test, excess, 0L,
			    "a refill took %ld pages more than its bound",
			    excess);

	vb_hib_zones(&m);
	KUNIT_EXPECT_GE(test, m.pcp_refill, bound * num_online_cpus());
	KUNIT_EXPECT_LT(test, m.pcp_refill, totalram_pages());
	kunit_info(test, "largest refill %lu pages of %lu seen, bound %lu, zones %lu\n",
		   seen, refills, bound, m.pcp_refill);
}

/*
 * Issue 15: the give-back deflates only the need, tells the host about
 * every page before the guest has it (the witness in vbt_exit() checks
 * early reuse and agreement), inflates nothing until PM_POST_HIBERNATION,
 * then follows the target again.
 */
static void vb_test_hib_gives_back_need(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total, need;
	struct vb_hib_need n;
	struct vb_hib_mem m;

	vbt_set_target(h, 1000 * VB_BPAGES_PER_PAGE);
	total = totalram_pages();
	vbt_hib_mem_short(&m, 400);
	need = vb_hib_need(&m, &n);
	KUNIT_ASSERT_GE(test, need, 400UL);
	KUNIT_ASSERT_LT(test, need, 1000UL);

	mutex_lock(&vb->lock);
	vb->hib_holding = true;
	KUNIT_EXPECT_EQ(test, vb_hib_give_back(vb, &m, &n),
			(unsigned int)need * VB_BPAGES_PER_PAGE);
	mutex_unlock(&vb->lock);

	KUNIT_EXPECT_EQ(test, vb->num_bpages,
			(1000 - (unsigned int)need) * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), (unsigned long)vb->num_bpages);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), vb->num_bpages);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + need);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_HIB_GIVEN],
			need * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_TRUE(test, vb->hib_reserve_armed);

	/* The host's unchanged target does not take the pages back yet. */
	vbt_set_target(h, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->num_bpages,
			(1000 - (unsigned int)need) * VB_BPAGES_PER_PAGE);

	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);
	vbt_settle(h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_FALSE(test, vb->hib_holding);
}

/*
 * The balloon work allocates before it takes the lock: a give-back that
 * ran in between must not be undone by the batch it allocated.
 */
static void vb_test_hib_holding_stops_inflate(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total;

	vbt_set_target(h, 100 * VB_BPAGES_PER_PAGE);
	total = totalram_pages();
	mutex_lock(&vb->lock);
	vb->hib_holding = true;
	mutex_unlock(&vb->lock);
	KUNIT_EXPECT_EQ(test, vb_inflate(vb, 256 * VB_BPAGES_PER_PAGE,
					 vb->num_bpages), 0U);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 100 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 100UL * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_INFLATE], 1);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);
}

/*
 * Issue 15: a balloon smaller than the need is emptied, told, and comes
 * back whole after a failed hibernation (PM_POST_HIBERNATION).
 */
static void vb_test_hib_gives_back_at_most_all(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	struct vb_hib_need n;
	unsigned long total;
	struct vb_hib_mem m;

	vbt_set_target(h, 300 * VB_BPAGES_PER_PAGE);
	total = totalram_pages();
	vbt_hib_mem_short(&m, 5000);

	mutex_lock(&vb->lock);
	vb->hib_holding = true;
	KUNIT_EXPECT_EQ(test, vb_hib_give_back(vb, &m, &n),
			300 * VB_BPAGES_PER_PAGE);
	mutex_unlock(&vb->lock);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + 300);
	/* Nothing left to take a thaw reserve from. */
	KUNIT_EXPECT_FALSE(test, vb->hib_reserve_armed);

	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);
	vbt_settle(h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 300 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 300UL * VB_BPAGES_PER_PAGE);
}

/* Enough memory: the notifier gives nothing back and arms no reserve. */
static void vb_test_hib_nothing_needed(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	struct vb_hib_mem m = {
		.guest = 100000, .free = 90000, .spanned = 100000,
	};
	struct vb_hib_need n;

	vbt_set_target(h, 100 * VB_BPAGES_PER_PAGE);
	mutex_lock(&vb->lock);
	KUNIT_EXPECT_EQ(test, vb_hib_give_back(vb, &m, &n), 0);
	KUNIT_EXPECT_FALSE(test, vb->hib_reserve_armed);
	mutex_unlock(&vb->lock);
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 100 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_TRUE(test, list_empty(&vb->thaw_reserve));
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
}

/* Arm the freeze's measurement as vb_hib_prepare() does, image given. */
static void vbt_hib_arm(struct vb_dev *vb, unsigned long image,
			long reclaimed)
{
	struct vb_hib_mem m;

	mutex_lock(&vb->lock);
	vb_hib_mem_read(vb, &m);
	vb->hib_holding = true;
	vb->hib_given = 0;
	vb->hib_image0 = image;
	vb->hib_counted0 = m.counted + reclaimed;
	vb->hib_measure = true;
	mutex_unlock(&vb->lock);
}

/*
 * Issue 15: the first freeze after PM_HIBERNATION_PREPARE measures the
 * image and gives back, told, what its write lacks. An image as large as
 * the guest takes the whole balloon, the thaw reserve first; one that
 * reclaim emptied takes nothing, and no reserve either; what was given
 * back before it is taken back, up to the host's target, with the
 * reserve held for thaw. Either way the
 * host and the guest agree, and the balloon refills after
 * PM_POST_HIBERNATION. Assumes the test kernel has some hundreds of pages
 * free beyond what (B) asks for an empty image.
 */
static void vb_test_hib_freeze_measures(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total, res = VB_THAW_RESERVE_PAGES;

	vbt_set_target(h, 1000 * VB_BPAGES_PER_PAGE);
	total = totalram_pages();
	vbt_hib_arm(vb, total * 2, 0);
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_FALSE(test, vb->hib_measure);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 0);
	KUNIT_EXPECT_EQ(test, vb->hib_given, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + 1000 - res);
	KUNIT_EXPECT_FALSE(test, list_empty(&vb->thaw_reserve));
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + 1000);
	/* The power-off freeze after the write measures nothing again. */
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb->hib_given, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);
	vbt_settle(h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);

	total = totalram_pages();
	vbt_hib_arm(vb, 1000, 1000000);
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_FALSE(test, vb->hib_measure);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->hib_given, 0);
	KUNIT_EXPECT_TRUE(test, list_empty(&vb->thaw_reserve));
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);

	/*
	 * 300 pages given back before the preallocation that the image
	 * turned out not to need: the freeze inflates them again, told, and
	 * with that much room left, takes no thaw reserve.
	 */
	vbt_hib_arm(vb, 1000, 1000000);
	mutex_lock(&vb->lock);
	KUNIT_EXPECT_EQ(test, vb_hib_deflate(vb, 300), 300 * VB_BPAGES_PER_PAGE);
	mutex_unlock(&vb->lock);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + 300);
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 1000UL * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->hib_given, 0);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_HIB_TAKEN_BACK],
			300UL * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_TRUE(test, list_empty(&vb->thaw_reserve));
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);
	vbt_settle(h);

	/* The host lowered its target meanwhile: never inflate past it. */
	vbt_hib_arm(vb, 1000, 1000000);
	mutex_lock(&vb->lock);
	KUNIT_EXPECT_EQ(test, vb_hib_deflate(vb, 300), 300 * VB_BPAGES_PER_PAGE);
	mutex_unlock(&vb->lock);
	vbt_set_target(h, 800 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 700 * VB_BPAGES_PER_PAGE);
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 800 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 800UL * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->hib_given, 200 * VB_BPAGES_PER_PAGE);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);
	vbt_settle(h);

	/* Nothing is taken back while a restore's drop is owed. */
	mutex_lock(&vb->lock);
	vb->hib_holding = true;
	mutex_unlock(&vb->lock);
	vbt_set_target(h, 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_ASSERT_EQ(test, vb->num_bpages, 800 * VB_BPAGES_PER_PAGE);
	mutex_lock(&vb->lock);
	vb->hib_given = 100 * VB_BPAGES_PER_PAGE;
	vb->drop_owed = true;
	KUNIT_EXPECT_EQ(test, vb_hib_take_back(vb, 100), 0U);
	vb->drop_owed = false;
	KUNIT_EXPECT_EQ(test, vb_hib_take_back(vb, 100),
			100 * VB_BPAGES_PER_PAGE);
	mutex_unlock(&vb->lock);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 900UL * VB_BPAGES_PER_PAGE);
	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);
}

/*
 * Issue 15: a thaw in a hibernation serves the hibernation shrinker for
 * the image writer, with a new budget, until PM_POST_HIBERNATION or the
 * next freeze; a restore does not.
 */
static void vb_test_hib_thaw_serves_writer(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);

	KUNIT_ASSERT_EQ(test, hib_give_pct, 100U);
	vbt_set_target(h, 100 * VB_BPAGES_PER_PAGE);
	vbt_hib_arm(vb, 4000, 1000000);
	/* The preallocation's service ends at freeze... */
	vb_hib_serve(vb, 100, false);
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_PTR_EQ(test, vb_hib_dev, NULL);
	/* ...and the writer's begins at thaw. */
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	KUNIT_EXPECT_PTR_EQ(test, vb_hib_dev, vb);
	KUNIT_EXPECT_EQ(test, vb->hib_budget,
			4000 / VB_HIB_MARGIN_DIV + VB_HIB_SHRINK_BUDGET);
	/* The power-off freeze after the write ends it. */
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_PTR_EQ(test, vb_hib_dev, NULL);
	/* Restored from the image: not the writer's thaw. */
	KUNIT_ASSERT_EQ(test, vbt_restore(h, true, 0), 0);
	KUNIT_EXPECT_PTR_EQ(test, vb_hib_dev, NULL);
	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);
	vbt_finish_drop(test, h);

	/* A thaw, then PM_POST_HIBERNATION ends it. */
	vbt_set_target(h, 100 * VB_BPAGES_PER_PAGE);
	vbt_hib_arm(vb, 4000, 1000000);
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	KUNIT_EXPECT_PTR_EQ(test, vb_hib_dev, vb);
	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);
	KUNIT_EXPECT_PTR_EQ(test, vb_hib_dev, NULL);
	KUNIT_EXPECT_EQ(test, vb->hib_budget, 0UL);

	/* Outside a hibernation, a thaw serves nothing. */
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	KUNIT_EXPECT_PTR_EQ(test, vb_hib_dev, NULL);
}

/* What the hibernation shrinker tells a task other than the test's. */
struct vbt_elsewhere {
	struct work_struct work;
	struct shrink_control sc;
	unsigned long count;
	unsigned long scan;
};

static void vbt_elsewhere_fn(struct work_struct *work)
{
	struct vbt_elsewhere *e = container_of(work, struct vbt_elsewhere,
					       work);

	e->count = vb_hib_shrink_count(NULL, &e->sc);
	e->scan = vb_hib_shrink_scan(NULL, &e->sc);
}

static void vbt_shrink_elsewhere(struct vbt_elsewhere *e)
{
	e->sc = (struct shrink_control){ .gfp_mask = GFP_KERNEL,
					 .nr_to_scan = VB_HIB_SHRINK_BATCH };
	INIT_WORK_ONSTACK(&e->work, vbt_elsewhere_fn);
	schedule_work(&e->work);
	flush_work(&e->work);
	destroy_work_on_stack(&e->work);
}

/*
 * Issue 15: the hibernation shrinker gives back ballooned pages, told,
 * only to the task that froze processes for the image (PF_SUSPEND_TASK),
 * only for allocations that are not movable (shrink_all_memory() reclaims
 * with a movable mask), only up to its budget, and reports them as
 * reclaimed: that progress is what makes the page allocator drain the
 * per-CPU lists. A freeze ends it.
 */
static void vb_test_hib_shrinker(struct kunit *test)
{
	struct shrink_control sc = { .gfp_mask = GFP_KERNEL };
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	struct reclaim_state rs = {}, *saved;
	struct vbt_elsewhere e;
	unsigned long total;

	vbt_set_target(h, 1000 * VB_BPAGES_PER_PAGE);
	total = totalram_pages();
	vb_hib_serve(vb, 100, false);
	/* Not the task that froze processes. */
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_count(NULL, &sc), 0UL);

	/* Not between PM_HIBERNATION_PREPARE and PM_POST_HIBERNATION. */
	current->flags |= PF_SUSPEND_TASK;
	sc.nr_to_scan = VB_HIB_SHRINK_BATCH;
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_scan(NULL, &sc), SHRINK_STOP);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);
	mutex_lock(&vb->lock);
	vb->hib_holding = true;
	mutex_unlock(&vb->lock);

	KUNIT_EXPECT_EQ(test, vb_hib_shrink_count(NULL, &sc),
			2UL * VB_HIB_SHRINK_BATCH);
	sc.gfp_mask = GFP_HIGHUSER_MOVABLE;
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_count(NULL, &sc), 0UL);
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_scan(NULL, &sc), SHRINK_STOP);
	sc.gfp_mask = GFP_KERNEL;

	/* kswapd or a kworker reclaiming meanwhile gets nothing. */
	vbt_shrink_elsewhere(&e);
	KUNIT_EXPECT_EQ(test, e.count, 0UL);
	KUNIT_EXPECT_EQ(test, e.scan, SHRINK_STOP);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);

	saved = current->reclaim_state;
	current->reclaim_state = &rs;
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_scan(NULL, &sc),
			(unsigned long)VB_HIB_SHRINK_BATCH);
	current->reclaim_state = saved;
	KUNIT_EXPECT_EQ(test, rs.reclaimed, (unsigned long)VB_HIB_SHRINK_BATCH);
	KUNIT_EXPECT_EQ(test, vb->num_bpages,
			(1000 - VB_HIB_SHRINK_BATCH) * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), (unsigned long)vb->num_bpages);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), vb->num_bpages);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + VB_HIB_SHRINK_BATCH);

	/* 100 pages in all, then nothing. */
	sc.nr_to_scan = 64;
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_scan(NULL, &sc), 64UL);
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_count(NULL, &sc),
			2UL * VB_HIB_SHRINK_BATCH);
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_scan(NULL, &sc), 4UL);
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_count(NULL, &sc), 0UL);
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_scan(NULL, &sc), SHRINK_STOP);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_HIB_ON_DEMAND],
			100UL * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_HIB_GIVEN],
			100UL * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 900UL * VB_BPAGES_PER_PAGE);

	/* A freeze ends the service. */
	vb_hib_serve(vb, 100, false);
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_count(NULL, &sc),
			2UL * VB_HIB_SHRINK_BATCH);
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_PTR_EQ(test, vb_hib_dev, NULL);
	KUNIT_EXPECT_EQ(test, vb_hib_shrink_count(NULL, &sc), 0UL);
	current->flags &= ~PF_SUSPEND_TASK;
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);

	vbt_pm_event(h, PM_POST_HIBERNATION);
	vbt_settle(h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);
}

/*
 * Issue 15, as the PM core drives it: PM_HIBERNATION_PREPARE reaches the
 * notifier, which reads the guest's real counters. A balloon grown until
 * the guest can spare no more leaves it short of room for its image; the
 * notifier gives back what vb_hib_need() asks, or the whole balloon if
 * that is less, told, pauses hinting, and keeps the balloon from
 * refilling until PM_POST_HIBERNATION.
 */
static void vb_test_hib_notifier_gives_back(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long spare, need, held, given, total, slack;
	unsigned int saved_pct = hib_give_pct;
	struct vb_hib_need n;
	struct vb_hib_mem m;
	u32 refill;

	spare = vb_spare_pages(0);
	if (spare < 1024)
		kunit_skip(test, "only %lu pages to balloon", spare);
	vbt_set_target(h, (spare - 512) * VB_BPAGES_PER_PAGE);
	held = vb->num_bpages / VB_BPAGES_PER_PAGE;
	KUNIT_ASSERT_GT(test, held, spare / 2);
	vb_hib_mem_read(vb, &m);
	need = vb_hib_need(&m, &n);
	if (!need)
		kunit_skip(test, "a guest this large fits its image anyway");
	total = totalram_pages();

	WRITE_ONCE(hib_give_pct, 100);
	vbt_pm_event(h, PM_HIBERNATION_PREPARE);
	WRITE_ONCE(hib_give_pct, saved_pct);
	given = vb->counters[VB_CNT_HIB_GIVEN] / VB_BPAGES_PER_PAGE;
	kunit_info(test, "image ~%lu pages, need %lu, balloon %lu, given %lu\n",
		   n.image, need, held, given);
	KUNIT_EXPECT_TRUE(test, vb->hib_holding);
	KUNIT_EXPECT_TRUE(test, READ_ONCE(vb->hint_paused));
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + given);
	KUNIT_EXPECT_EQ(test, vb->num_bpages,
			(held - given) * VB_BPAGES_PER_PAGE);
	/*
	 * Only the per-CPU counters move between the test's read and the
	 * notifier's; 1% is well under what the room adds to the need (1/20
	 * of the image and 512 pages) and the hib_give_pct steps a mistake
	 * there would show as. Later passes give again at most twice what
	 * the per-CPU lists took of the give-back, and those pages are still
	 * there.
	 */
	vb_hib_mem_read(vb, &m);
	slack = need / 100 + 64;
	if (need >= held + slack) {
		KUNIT_EXPECT_EQ(test, given, held);
	} else {
		KUNIT_EXPECT_GE(test, given,
				min(need > slack ? need - slack : 0, held));
		KUNIT_EXPECT_LE(test, given,
				min(need + 2 * m.pcp + slack, held));
	}
	/* The shrinker serves the preallocation until PM_POST_HIBERNATION. */
	KUNIT_EXPECT_PTR_EQ(test, vb_hib_dev, vb);
	KUNIT_EXPECT_GE(test, vb->hib_budget, (unsigned long)VB_HIB_SHRINK_BUDGET);
	KUNIT_EXPECT_LE(test, vb->hib_budget, VB_HIB_SHRINK_BUDGET +
			(n.image + slack) / VB_HIB_MARGIN_DIV);

	/* A new target does not take the pages back yet... */
	refill = (held - given + min(given, 1024UL)) * VB_BPAGES_PER_PAGE;
	vbt_set_target(h, refill);
	KUNIT_EXPECT_EQ(test, vb->num_bpages,
			(held - given) * VB_BPAGES_PER_PAGE);

	/* ...until the hibernation is over. */
	vbt_pm_event(h, PM_POST_HIBERNATION);
	KUNIT_EXPECT_PTR_EQ(test, vb_hib_dev, NULL);
	vbt_settle(h);
	KUNIT_EXPECT_FALSE(test, vb->hib_holding);
	KUNIT_EXPECT_FALSE(test, READ_ONCE(vb->hint_paused));
	KUNIT_EXPECT_EQ(test, vb->num_bpages, refill);
}

/*
 * Issue 15: after a give-back, freeze deflates the thaw reserve, told
 * while the queues exist, and thaw hands it to the allocator before it
 * finds the queues.
 */
static void vb_test_thaw_reserve(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total, res = VB_THAW_RESERVE_PAGES;
	unsigned int left;

	vbt_set_target(h, 1000 * VB_BPAGES_PER_PAGE);
	mutex_lock(&vb->lock);
	vb->hib_holding = true;
	vb->hib_reserve_armed = true;
	mutex_unlock(&vb->lock);

	total = totalram_pages();
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	left = (1000 - res) * VB_BPAGES_PER_PAGE;
	KUNIT_EXPECT_EQ(test, vb->num_bpages, left);
	/* Told before the queues went, and not yet the guest's. */
	KUNIT_EXPECT_EQ(test, vbt_held(h), (unsigned long)left);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), left);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
	KUNIT_EXPECT_FALSE(test, list_empty(&vb->thaw_reserve));

	h->find_vqs_totalram = 0;
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, h->find_vqs_totalram, total + res);
	/* Past the watermarks, from the pages just released... */
	KUNIT_EXPECT_TRUE(test, h->find_vqs_memalloc);
	KUNIT_EXPECT_FALSE(test, current->flags & PF_MEMALLOC);
	KUNIT_EXPECT_TRUE(test, list_empty(&vb->thaw_reserve));
	KUNIT_EXPECT_EQ(test, vb->num_bpages, left);

	/* A second freeze in the same hibernation takes no more... */
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, left);
	KUNIT_ASSERT_EQ(test, virtio_device_restore(&h->vdev), 0);
	/* ...and with nothing released, the queues obey the watermarks. */
	KUNIT_EXPECT_FALSE(test, h->find_vqs_memalloc);

	vb_pm_notify(&vb->pm_nb, PM_POST_HIBERNATION, NULL);
	vbt_settle(h);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);

	/* A restore releases a held reserve too, within the watermarks. */
	mutex_lock(&vb->lock);
	vb->hib_reserve_armed = true;
	mutex_unlock(&vb->lock);
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	KUNIT_EXPECT_FALSE(test, list_empty(&vb->thaw_reserve));
	KUNIT_ASSERT_EQ(test, vbt_restore(h, false, 1000 * VB_BPAGES_PER_PAGE),
			0);
	KUNIT_EXPECT_TRUE(test, list_empty(&vb->thaw_reserve));
	KUNIT_EXPECT_FALSE(test, h->find_vqs_memalloc);
	vbt_finish_drop(test, h);
}

/* Issue 15: removing a frozen device frees the thaw reserve it held. */
static void vb_test_thaw_reserve_released_on_remove(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total;

	vbt_set_target(h, 600 * VB_BPAGES_PER_PAGE);
	mutex_lock(&vb->lock);
	vb->hib_reserve_armed = true;
	mutex_unlock(&vb->lock);
	total = totalram_pages();
	KUNIT_ASSERT_EQ(test, virtio_device_freeze(&h->vdev), 0);
	vbt_untold(h);
	vbt_remove(test, h);
	/* The reserve was told at freeze; the rest stays out of use. */
	KUNIT_EXPECT_EQ(test, totalram_pages(),
			total + VB_THAW_RESERVE_PAGES);
}
#endif /* CONFIG_PM_SLEEP */

/*
 * A device that fails a request is trusted with no other, and nothing it
 * may hold is reused. An inflate that never reached it adds nothing to the
 * balloon; a deflate it did not complete leaves the pages in the balloon;
 * removal keeps them out of use, since the host can no longer be told.
 */
static void vb_test_inflate_not_delivered(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total;

	vbt_set_target(h, 64 * VB_BPAGES_PER_PAGE);
	total = totalram_pages();
	virtio_break_device(&h->vdev);
	vbt_set_target(h, 128 * VB_BPAGES_PER_PAGE);

	KUNIT_EXPECT_EQ(test, vb->state, VB_STATE_BROKEN);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 64 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_INFLATE], 1);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 64UL * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);

	vbt_untold(h);
	vbt_remove(test, h);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
}

static void vb_test_deflate_not_completed(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test,
				       BIT_ULL(VIRTIO_BALLOON_F_MUST_TELL_HOST));
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total;

	vbt_set_target(h, 64 * VB_BPAGES_PER_PAGE);
	total = totalram_pages();
	h->break_at[VB_VQ_DEFLATE] = 1;
	vbt_set_target(h, 0);

	KUNIT_EXPECT_EQ(test, vb->state, VB_STATE_BROKEN);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 64 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_ballooned_pages_offline(vb), 64UL);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 64UL * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
	/* Nothing more is asked of a device that failed once. */
	vbt_set_target(h, 32 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_INFLATE], 1);
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_DEFLATE], 0);

	vbt_untold(h);
	vbt_remove(test, h);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
}

#ifdef CONFIG_BALLOON_MIGRATION
/* A move the device fails leaves the old page in the balloon. */
static void vb_test_migrate_device_fails(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	struct page *page, *newpage;
	unsigned long pfn, newpfn;

	page = vbt_isolate(test, h, &newpage);
	pfn = page_to_pfn(page) * VB_BPAGES_PER_PAGE;
	newpfn = page_to_pfn(newpage) * VB_BPAGES_PER_PAGE;

	h->break_at[VB_VQ_DEFLATE] = 1;
	KUNIT_EXPECT_EQ(test, vbt_migrate(h, newpage, page), -EAGAIN);

	KUNIT_EXPECT_EQ(test, vb->state, VB_STATE_BROKEN);
	KUNIT_EXPECT_NOT_NULL(test, xa_load(&h->held, pfn));
	KUNIT_EXPECT_NULL(test, xa_load(&h->held, newpfn));
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_INFLATE], 1);
	vbt_migrate_finish(test, h, newpage, page, false);
	vbt_untold(h);
}

/*
 * The device dies taking the new page: it may hold it, so the move
 * completes and the new page stays in the balloon; the old page was given
 * back and acknowledged first.
 */
static void vb_test_migrate_inflate_fails(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	struct page *page, *newpage;
	unsigned long pfn;

	page = vbt_isolate(test, h, &newpage);
	pfn = page_to_pfn(page) * VB_BPAGES_PER_PAGE;

	h->break_at[VB_VQ_INFLATE] = 2;
	/* Past here the test plays the core's part of a completed move. */
	KUNIT_ASSERT_EQ(test, vbt_migrate(h, newpage, page), 0);

	KUNIT_EXPECT_EQ(test, vb->state, VB_STATE_BROKEN);
	KUNIT_EXPECT_NULL(test, xa_load(&h->held, pfn));
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_DEFLATE], 1);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 16 * VB_BPAGES_PER_PAGE);
	vbt_migrate_finish(test, h, newpage, page, true);
	vbt_untold(h);
}
#endif

#ifdef CONFIG_PM_SLEEP
/*
 * Hinting pauses while a suspend or hibernation is prepared: a freezable
 * work item in a long run would otherwise hold up the freezer.
 */
static void vb_test_hint_paused_for_pm(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test,
				       BIT_ULL(VIRTIO_BALLOON_F_FREE_PAGE_HINT));
	struct vb_dev *vb = vbt_vb(h);

	/* A run in progress ends at PM_SUSPEND_PREPARE. */
	h->hint_pm_after = 3;
	h->hint_stop_after = 32;
	h->config.free_page_hint_cmd_id = cpu_to_le32(5);
	vb_config_changed(&h->vdev);
	flush_work(&vb->hint_work);
	KUNIT_EXPECT_EQ(test, h->hint_blocks, 3);
	KUNIT_EXPECT_EQ(test, h->nr_hint_cmds, 2);
	KUNIT_EXPECT_EQ(test, h->hint_cmds[1], VIRTIO_BALLOON_CMD_ID_STOP);
	KUNIT_EXPECT_EQ(test, vb->hint_blocks, 0);

	/* None starts until the matching POST event. */
	h->config.free_page_hint_cmd_id = cpu_to_le32(6);
	vb_config_changed(&h->vdev);
	flush_work(&vb->hint_work);
	KUNIT_EXPECT_EQ(test, h->nr_hint_cmds, 2);
	vbt_pm_event(h, PM_POST_SUSPEND);
	h->hint_pm_after = 0;
	h->hint_stop_after = h->hint_blocks + 4;
	vb_config_changed(&h->vdev);
	flush_work(&vb->hint_work);
	KUNIT_EXPECT_EQ(test, h->nr_hint_cmds, 4);
	KUNIT_EXPECT_EQ(test, h->hint_cmds[2], 6);
	/*
	 * Four blocks, or fewer where no free pageblock is left: hinting
	 * takes only free ones, and the earlier cases fragment memory (one
	 * block of four on 7.2 once).
	 */
	KUNIT_EXPECT_GE(test, h->hint_blocks, 3);
	KUNIT_EXPECT_LE(test, h->hint_blocks, 7);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_HINT_RUNS], 2);
}
#endif

static struct kunit_case vb_test_cases[] = {
	KUNIT_CASE(vb_test_inflate_batches),
	KUNIT_CASE(vb_test_deflate_returns_held_pages),
#ifdef CONFIG_BALLOON_MIGRATION
	KUNIT_CASE(vb_test_migrate_moves_page),
#endif
	KUNIT_CASE(vb_test_target_clamped),
	KUNIT_CASE(vb_test_stats_encoding),
	KUNIT_CASE(vb_test_stats_reclaim_in_bytes),
	KUNIT_CASE(vb_test_poison_value),
	KUNIT_CASE(vb_test_validate),
	KUNIT_CASE(vb_test_target_wakeup_event),
	KUNIT_CASE(vb_test_oom_deflates),
	KUNIT_CASE(vb_test_remove_returns_everything),
	KUNIT_CASE(vb_test_probe_fails_early),
	KUNIT_CASE(vb_test_probe_fails_late),
	KUNIT_CASE(vb_test_hint_queue_order),
	KUNIT_CASE(vb_test_hint_run),
	KUNIT_CASE(vb_test_hint_queue_full_stops),
	KUNIT_CASE(vb_test_hint_oom_returns_held),
#ifdef CONFIG_PM_SLEEP
	KUNIT_CASE(vb_test_freeze_thaw_keeps_balloon),
	KUNIT_CASE(vb_test_restore_drops_balloon),
	KUNIT_CASE(vb_test_restore_follows_new_target),
	KUNIT_CASE(vb_test_restore_same_host_tells),
	KUNIT_CASE(vb_test_restore_tells_host_first),
	KUNIT_CASE(vb_test_restore_owed_across_failed_transport),
	KUNIT_CASE(vb_test_freeze_during_drop),
	KUNIT_CASE(vb_test_hint_freeze_reclaims),
#ifdef CONFIG_BALLOON_MIGRATION
	KUNIT_CASE(vb_test_no_migration_during_drop),
#endif
	KUNIT_CASE(vb_test_image_loader_hands_back),
	KUNIT_CASE(vb_test_quiesce_hands_back_late_pages),
	KUNIT_CASE(vb_test_restore_failure_is_defined),
	KUNIT_CASE(vb_test_remove_frozen),
	KUNIT_CASE_PARAM(vb_test_pm_cycle_features,
			 vbt_pm_features_gen_params),
	KUNIT_CASE(vb_test_hint_paused_for_pm),
	KUNIT_CASE(vb_test_hib_need_estimate),
	KUNIT_CASE(vb_test_hib_pcp_refill),
	KUNIT_CASE(vb_test_hib_gives_back_need),
	KUNIT_CASE(vb_test_hib_holding_stops_inflate),
	KUNIT_CASE(vb_test_hib_gives_back_at_most_all),
	KUNIT_CASE(vb_test_hib_nothing_needed),
	KUNIT_CASE(vb_test_hib_freeze_measures),
	KUNIT_CASE(vb_test_hib_thaw_serves_writer),
	KUNIT_CASE(vb_test_hib_shrinker),
	KUNIT_CASE(vb_test_hib_notifier_gives_back),
	KUNIT_CASE(vb_test_thaw_reserve),
	KUNIT_CASE(vb_test_thaw_reserve_released_on_remove),
#endif
	KUNIT_CASE(vb_test_inflate_not_delivered),
	KUNIT_CASE(vb_test_deflate_not_completed),
#ifdef CONFIG_BALLOON_MIGRATION
	KUNIT_CASE(vb_test_migrate_device_fails),
	KUNIT_CASE(vb_test_migrate_inflate_fails),
#endif
	{}
};

static struct kunit_suite vb_test_suite = {
	.name = "virtio_balloon",
	.exit = vbt_exit,
	.test_cases = vb_test_cases,
};

kunit_test_suite(vb_test_suite);
