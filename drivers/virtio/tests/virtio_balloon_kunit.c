// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for the virtio balloon driver.
 *
 * This file is included at the end of virtio_balloon.c, so the tests reach
 * the driver's internals and always build together with it.
 *
 * The device is a fake: a struct virtio_device whose config ops keep the
 * configuration space in memory and whose find_vqs() creates real split
 * virtqueues. Their notify hook plays the host at once, inside the kick:
 * it walks the available ring, records every PFN it is handed (an xarray
 * of the pages the host holds), returns the buffer on the used ring and
 * raises the queue's interrupt. A statistics buffer is held, as a host
 * does, until the test asks for statistics.
 */

#include <kunit/test.h>
#include <linux/virtio_ring.h>
#include <linux/xarray.h>

#define VBT_QUEUE_SIZE	64

struct vbt_host {
	struct virtio_device vdev;
	struct virtio_balloon_config config;
	u8 status;
	bool fail_find_vqs;

	int role[VB_VQ_NR];		/* enum vb_vq of each queue index */
	u16 last_avail[VB_VQ_NR];
	u16 used_idx[VB_VQ_NR];

	struct xarray held;		/* PFNs the host holds */
	unsigned int requests[VB_VQ_NR];
	unsigned long pfns[VB_VQ_NR];
	unsigned int max_batch;
	unsigned int bad_deflates;	/* PFNs deflated that were not held */
	unsigned int bad_inflates;	/* PFNs inflated twice */

	int stats_head;			/* held statistics buffer, or -1 */
	struct virtio_balloon_stat stats[VB_NR_STATS];
	unsigned int nr_stats;
	unsigned int del_vqs_calls;
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
			if (xa_insert(&h->held, pfn, xa_mk_value(1), GFP_ATOMIC))
				h->bad_inflates++;
		} else if (!xa_erase(&h->held, pfn)) {
			h->bad_deflates++;
		}
	}
}

/* The host: handle every new buffer on @vq, then interrupt. */
static bool vbt_notify(struct virtqueue *vq)
{
	struct vbt_host *h = vbt_host(vq->vdev);
	const struct vring *vr = virtqueue_get_vring(vq);
	int role = h->role[vq->index];
	u16 avail = virtio16_to_cpu(vq->vdev, READ_ONCE(vr->avail->idx));

	virtio_rmb(true);
	while (h->last_avail[vq->index] != avail) {
		u16 slot = h->last_avail[vq->index]++ % vr->num;
		u16 head = virtio16_to_cpu(vq->vdev, vr->avail->ring[slot]);
		const struct vring_desc *d = &vr->desc[head];
		void *buf = phys_to_virt(virtio64_to_cpu(vq->vdev, d->addr));
		u32 len = virtio32_to_cpu(vq->vdev, d->len);

		h->requests[role]++;
		if (role == VB_VQ_INFLATE || role == VB_VQ_DEFLATE) {
			vbt_take_pfns(h, role, buf, len / sizeof(__virtio32));
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
	memcpy((u8 *)&vbt_host(vdev)->config + offset, buf, len);
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
}

static int vbt_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
			struct virtqueue *vqs[],
			struct virtqueue_info vqs_info[],
			struct irq_affinity *desc)
{
	struct vbt_host *h = vbt_host(vdev);
	unsigned int i, q = 0;

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
	return vdev->features;
}

static int vbt_finalize_features(struct virtio_device *vdev)
{
	return 0;
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

static void vbt_release(struct device *dev)
{
	/* The fake host is KUnit-managed memory. */
}

static struct vb_dev *vbt_vb(struct vbt_host *h)
{
	return h->vdev.priv;
}

/* Probe the driver against a fresh fake host with @features. */
static struct vbt_host *vbt_probe(struct kunit *test, u64 features)
{
	struct vbt_host *h;

	h = kunit_kzalloc(test, sizeof(*h), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, h);
	xa_init(&h->held);
	h->stats_head = -1;
	h->vdev.config = &vbt_config_ops;
	h->vdev.features = BIT_ULL(VIRTIO_F_VERSION_1) | features;
	h->vdev.dev.driver = &vb_driver.driver;
	h->vdev.dev.release = vbt_release;
	INIT_LIST_HEAD(&h->vdev.vqs);
	spin_lock_init(&h->vdev.vqs_list_lock);
	device_initialize(&h->vdev.dev);
	dev_set_name(&h->vdev.dev, "vbt-%s", test->name);
	test->priv = h;

	KUNIT_ASSERT_EQ(test, vb_probe(&h->vdev), 0);
	return h;
}

/* Let the balloon work run until it has nothing left to do. */
static void vbt_settle(struct vbt_host *h)
{
	struct vb_dev *vb = vbt_vb(h);
	int i;

	for (i = 0; i < 10000; i++) {
		flush_delayed_work(&vb->balloon_work);
		if (!delayed_work_pending(&vb->balloon_work))
			return;
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

static void vbt_exit(struct kunit *test)
{
	struct vbt_host *h = test->priv;

	if (!h)
		return;
	if (h->vdev.priv)
		vb_remove(&h->vdev);
	xa_destroy(&h->held);
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
 * Compaction moves a ballooned page: the host must be handed the new
 * page and given back the old one, and the balloon must not change size.
 * The driver only talks to the host; listing the new page and freeing the
 * old one is the balloon core's part, which the test plays.
 */
static void vb_test_migrate_moves_page(struct kunit *test)
{
	struct vbt_host *h = vbt_probe(test, 0);
	struct vb_dev *vb = vbt_vb(h);
	struct balloon_dev_info *b = &vb->b_dev_info;
	unsigned long total, pfn, newpfn;
	struct page *page, *newpage;
	LIST_HEAD(isolated);

	vbt_set_target(h, 16 * VB_BPAGES_PER_PAGE);
	total = totalram_pages();
	newpage = alloc_page(GFP_HIGHUSER_MOVABLE);
	KUNIT_ASSERT_NOT_NULL(test, newpage);

	/* Take a ballooned page off the list, as isolation does. */
	KUNIT_ASSERT_EQ(test, balloon_page_list_dequeue(b, &isolated, 1), 1);
	page = list_first_entry(&isolated, struct page, lru);
	list_del(&page->lru);
	pfn = page_to_pfn(page) * VB_BPAGES_PER_PAGE;
	newpfn = page_to_pfn(newpage) * VB_BPAGES_PER_PAGE;

	lock_page(page);
	lock_page(newpage);
	KUNIT_EXPECT_EQ(test, b->migratepage(b, newpage, page, MIGRATE_SYNC),
			0);
	unlock_page(newpage);
	unlock_page(page);

	KUNIT_EXPECT_NOT_NULL(test, xa_load(&h->held, newpfn));
	KUNIT_EXPECT_NULL(test, xa_load(&h->held, pfn));
	KUNIT_EXPECT_EQ(test, h->bad_deflates, 0);
	KUNIT_EXPECT_EQ(test, h->bad_inflates, 0);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 16 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 16 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_MIGRATED], 1UL);
	if (page_zone(page) == page_zone(newpage))
		KUNIT_EXPECT_EQ(test, totalram_pages(), total);

	/* The core's part: the new page joins the balloon, the old goes. */
	balloon_page_enqueue(b, newpage);
	put_page(page);

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
	KUNIT_ASSERT_EQ(test, h->nr_stats, VB_NR_STATS);
	for (i = 0; i < VB_NR_STATS; i++)
		KUNIT_EXPECT_EQ(test, le16_to_cpu((__force __le16)h->stats[i].tag),
				vb_stat_tags[i]);
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
	vb_remove(&h->vdev);
	h->vdev.priv = NULL;

	KUNIT_EXPECT_EQ(test, totalram_pages(), total);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
	KUNIT_EXPECT_EQ(test, h->bad_deflates, 0);
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
	KUNIT_ASSERT_EQ(test, vb_freeze(&h->vdev), 0);

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

/* A new VM: its host holds nothing and wants @target. */
static void vbt_new_host(struct vbt_host *h, u32 target)
{
	xa_destroy(&h->held);
	h->config.num_pages = cpu_to_le32(target);
	h->config.actual = 0;
}

static void vb_test_freeze_thaw_keeps_balloon(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 1000);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	KUNIT_ASSERT_EQ(test, vb_restore(&h->vdev), 0);
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

static void vb_test_restore_drops_balloon(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 1000);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	vbt_new_host(h, 0);
	KUNIT_ASSERT_EQ(test, vb_pm_restore_early(&h->vdev.dev), 0);
	KUNIT_ASSERT_EQ(test, vb_restore(&h->vdev), 0);

	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_RESTORED], 1);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_RESTORE_DROPPED],
			1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
	KUNIT_EXPECT_TRUE(test, list_empty(&vb->b_dev_info.pages));
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 0);
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + 1000);
	/* Without MUST_TELL_HOST, the new host is not bothered. */
	KUNIT_EXPECT_EQ(test, h->requests[VB_VQ_DEFLATE], 0);

	/* The next freeze is a thaw again unless the PM core says otherwise. */
	KUNIT_ASSERT_EQ(test, vb_freeze(&h->vdev), 0);
	KUNIT_ASSERT_EQ(test, vb_restore(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb->counters[VB_CNT_THAWED], 1);
}

static void vb_test_restore_follows_new_target(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 1000);
	struct vb_dev *vb = vbt_vb(h);

	vbt_new_host(h, 300 * VB_BPAGES_PER_PAGE);
	KUNIT_ASSERT_EQ(test, vb_pm_restore_early(&h->vdev.dev), 0);
	KUNIT_ASSERT_EQ(test, vb_restore(&h->vdev), 0);
	vbt_settle(h);

	KUNIT_EXPECT_EQ(test, vb->num_bpages, 300 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_actual(h), 300 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, vbt_held(h), 300 * VB_BPAGES_PER_PAGE);
}

static void vb_test_restore_tells_host_first(struct kunit *test)
{
	struct vbt_host *h;
	struct vb_dev *vb;

	h = vbt_inflate_freeze(test, BIT_ULL(VIRTIO_BALLOON_F_MUST_TELL_HOST),
			       1000);
	vb = vbt_vb(h);
	h->config.num_pages = 0;
	KUNIT_ASSERT_EQ(test, vb_pm_restore_early(&h->vdev.dev), 0);
	KUNIT_ASSERT_EQ(test, vb_restore(&h->vdev), 0);

	/* Every page went back through the deflate queue before restore returned. */
	KUNIT_EXPECT_EQ(test, h->pfns[VB_VQ_DEFLATE], 1000 * VB_BPAGES_PER_PAGE);
	KUNIT_EXPECT_EQ(test, h->bad_deflates, 0);
	KUNIT_EXPECT_TRUE(test, xa_empty(&h->held));
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 0);
}

static void vb_test_restore_failure_is_defined(struct kunit *test)
{
	struct vbt_host *h = vbt_inflate_freeze(test, 0, 1000);
	struct vb_dev *vb = vbt_vb(h);
	unsigned long total = totalram_pages();

	h->fail_find_vqs = true;
	KUNIT_ASSERT_EQ(test, vb_pm_restore_early(&h->vdev.dev), 0);
	KUNIT_EXPECT_EQ(test, vb_restore(&h->vdev), -ENOMEM);

	KUNIT_EXPECT_EQ(test, vb->state, VB_STATE_BROKEN);
	KUNIT_EXPECT_EQ(test, vb->num_bpages, 1000 * VB_BPAGES_PER_PAGE);
	vb_config_changed(&h->vdev);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&vb->balloon_work));

	/* A second freeze/restore cannot revive it and says so. */
	KUNIT_EXPECT_EQ(test, vb_freeze(&h->vdev), 0);
	KUNIT_EXPECT_EQ(test, vb_restore(&h->vdev), -EINVAL);

	/* remove gives the held pages back without a queue to tell. */
	vb_remove(&h->vdev);
	h->vdev.priv = NULL;
	KUNIT_EXPECT_EQ(test, totalram_pages(), total + 1000);
}
#endif /* CONFIG_PM_SLEEP */

static struct kunit_case vb_test_cases[] = {
	KUNIT_CASE(vb_test_inflate_batches),
	KUNIT_CASE(vb_test_deflate_returns_held_pages),
#ifdef CONFIG_BALLOON_MIGRATION
	KUNIT_CASE(vb_test_migrate_moves_page),
#endif
	KUNIT_CASE(vb_test_target_clamped),
	KUNIT_CASE(vb_test_stats_encoding),
	KUNIT_CASE(vb_test_oom_deflates),
	KUNIT_CASE(vb_test_remove_returns_everything),
#ifdef CONFIG_PM_SLEEP
	KUNIT_CASE(vb_test_freeze_thaw_keeps_balloon),
	KUNIT_CASE(vb_test_restore_drops_balloon),
	KUNIT_CASE(vb_test_restore_follows_new_target),
	KUNIT_CASE(vb_test_restore_tells_host_first),
	KUNIT_CASE(vb_test_restore_failure_is_defined),
#endif
	{}
};

static struct kunit_suite vb_test_suite = {
	.name = "virtio_balloon",
	.exit = vbt_exit,
	.test_cases = vb_test_cases,
};

kunit_test_suite(vb_test_suite);
