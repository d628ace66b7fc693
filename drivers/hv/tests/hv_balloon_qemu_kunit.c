// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for the Hyper-V Dynamic Memory driver against a second,
 * independent fake host: one that behaves as QEMU's hv-balloon device is
 * documented to behave (QEMU 8.2 and later, hw/hyperv/hv-balloon.c).
 *
 * The first fake (hv_balloon_kunit.c) answers whatever the guest sends
 * and lets each case inject one request at a time. This one is a host
 * with a state machine of its own, and it drives the guest:
 *
 *  - a channel opens only on a host that was reset (a new VM); closing it
 *    leaves the host waiting for the next reset;
 *  - it answers a version request only while negotiating, accepting the
 *    WIN7 to WIN10 protocols, then one capabilities report, which it
 *    always accepts; then it waits (50 s in QEMU, a call here) before its
 *    first request;
 *  - it takes status reports in any state but closed;
 *  - to shrink the guest it sends a balloon request and takes responses
 *    until one comes without HV_DM_MORE_PAGES; a response without ranges
 *    means "the guest is at its minimum" and ends the operation; when
 *    the responses came to less than it asked, it asks again for the rest;
 *  - to grow it back it sends a series of unballoon requests of one range
 *    each, as fast as the ring takes them, every one but the last with
 *    HV_DM_MORE_PAGES, and waits for one response after the last;
 *  - to hot-add it sends one request per chunk of up to 2 GiB, with the
 *    region equal to the range, and goes on to the next chunk only when
 *    the whole chunk was added; a partial answer ends the operation;
 *  - any message that comes in a state that does not expect it is
 *    ignored, and counted here as @unexpected.
 *
 * Both fakes drive the same protocol core through struct hv_dm_ops.
 */

enum hvq_state {
	HVQ_CLOSED,			/* after a reset: the channel may open */
	HVQ_WAIT_RESET,			/* after close: until the next reset */
	HVQ_VERSION,
	HVQ_CAPS,
	HVQ_POST_INIT_WAIT,
	HVQ_IDLE,
	HVQ_BALLOON_REPLY_WAIT,
	HVQ_UNBALLOON_REPLY_WAIT,
	HVQ_HOT_ADD_REPLY_WAIT,
};

/* QEMU's largest balloon request, and its hot-add chunk. */
#define HVQ_BALLOON_CHUNK	585728UL
#define HVQ_HA_CHUNK		(SZ_2G / HV_HYP_PAGE_SIZE)

struct hvq_host {
	struct hv_dm dm;
	struct kunit *test;

	struct mutex lock;		/* protects the host's state below */
	enum hvq_state state;
	u32 trans_id;			/* one per operation, as in QEMU */
	u64 caps;
	struct xarray removed;		/* hpages the guest gave up */
	unsigned long removed_nr;
	unsigned long balloon_diff;	/* still to take in this operation */
	unsigned long ha_start;		/* the rest of the memory to add */
	unsigned long ha_count;
	unsigned long ha_current;	/* the chunk awaiting its answer */
	unsigned long ha_used;

	/* What it saw. */
	unsigned int unexpected;
	unsigned int duplicates;	/* pages the guest gave twice */
	unsigned int balloon_reqs, unballoon_reqs, hot_add_reqs;
	unsigned int balloon_resps, unballoon_resps, hot_add_resps;
	unsigned int statuses;
	u64 last_committed;

	/* The guest's side of the world. */
	long budget;			/* pages alloc() hands out; <0: any */
	bool scatter;			/* no two single pages adjacent */
	struct list_head spares;
	unsigned int adds;
};

static struct hvq_host *hvq_of(struct hv_dm *dm)
{
	return container_of(dm, struct hvq_host, dm);
}

/* Host to guest: the channel callback's path. */
static void hvq_post(struct hvq_host *h, void *msg)
{
	hv_dm_receive(&h->dm, msg, ((struct hv_dm_hdr *)msg)->size);
}

static void hvq_post_balloon(struct hvq_host *h)
{
	struct hv_dm_balloon_req req = {
		.hdr = { .type = HV_DM_BALLOON_REQUEST, .size = sizeof(req),
			 .trans_id = h->trans_id },
		.num_pages = min(h->balloon_diff, HVQ_BALLOON_CHUNK),
	};

	lockdep_assert_held(&h->lock);
	h->state = HVQ_BALLOON_REPLY_WAIT;
	h->balloon_reqs++;
	hvq_post(h, &req);
}

static void hvq_post_hot_add(struct hvq_host *h)
{
	unsigned long align = (1UL << FIELD_GET(HV_DM_CAP_HOT_ADD_ALIGN,
						h->caps)) * (SZ_1M / HV_HYP_PAGE_SIZE);
	unsigned long chunk = align >= HVQ_HA_CHUNK ? align :
			      ALIGN_DOWN(HVQ_HA_CHUNK, align);
	struct hv_dm_hot_add_req req = {
		.hdr = { .type = HV_DM_HOT_ADD_REQUEST, .size = sizeof(req),
			 .trans_id = h->trans_id },
	};

	lockdep_assert_held(&h->lock);
	h->ha_current = min(h->ha_count, chunk);
	req.range = hv_dm_range(h->ha_start, h->ha_current);
	req.region = req.range;
	h->state = HVQ_HOT_ADD_REPLY_WAIT;
	h->hot_add_reqs++;
	hvq_post(h, &req);
}

/* Take the lowest run of removed hpages, at most @max long. */
static bool hvq_pop_range(struct hvq_host *h, unsigned long max,
			  unsigned long *start, unsigned long *count)
{
	unsigned long pfn = 0;

	if (!xa_find(&h->removed, &pfn, ULONG_MAX, XA_PRESENT))
		return false;
	*start = pfn;
	*count = 0;
	while (*count < max && xa_load(&h->removed, pfn)) {
		xa_erase(&h->removed, pfn++);
		(*count)++;
	}
	h->removed_nr -= *count;
	return true;
}

static void hvq_balloon_resp(struct hvq_host *h,
			     const struct hv_dm_balloon_resp *resp, u32 len)
{
	u32 nr = FIELD_GET(HV_DM_RESP_RANGE_COUNT, resp->flags);
	bool more = resp->flags & HV_DM_MORE_PAGES;
	unsigned long pfn, count, i, got = 0;
	u32 r;

	if (h->state != HVQ_BALLOON_REPLY_WAIT || len < sizeof(*resp) ||
	    len < sizeof(*resp) + (u64)nr * sizeof(u64)) {
		h->unexpected++;
		return;
	}
	h->balloon_resps++;
	if (!nr) {
		/* The guest is at its minimum. */
		more = false;
		h->balloon_diff = 0;
	}
	for (r = 0; r < nr; r++) {
		hv_dm_range_get(resp->ranges[r], &pfn, &count);
		for (i = 0; i < count; i++) {
			if (xa_load(&h->removed, pfn + i)) {
				h->duplicates++;
				continue;
			}
			xa_store(&h->removed, pfn + i, xa_mk_value(1),
				 GFP_KERNEL);
			got++;
		}
	}
	h->removed_nr += got;
	h->balloon_diff -= min(got, h->balloon_diff);
	if (more)
		return;
	h->trans_id++;
	if (h->balloon_diff)
		hvq_post_balloon(h);
	else
		h->state = HVQ_IDLE;
}

static void hvq_hot_add_resp(struct hvq_host *h,
			     const struct hv_dm_hot_add_resp *resp, u32 len)
{
	unsigned long got = resp->page_count;

	if (h->state != HVQ_HOT_ADD_REPLY_WAIT || len < sizeof(*resp)) {
		h->unexpected++;
		return;
	}
	h->hot_add_resps++;
	h->trans_id++;
	if (resp->result) {
		got = min(got, h->ha_current);
		h->ha_used += got;
		h->ha_start += got;
		h->ha_count -= got;
	}
	/* Nothing or part of the chunk: this memory is done with. */
	if (!resp->result || got < h->ha_current || !h->ha_count) {
		h->ha_count = 0;
		h->state = HVQ_IDLE;
		return;
	}
	hvq_post_hot_add(h);
}

static void hvq_answer(struct hvq_host *h, const struct hv_dm_hdr *hdr,
		       u16 type, bool accepted)
{
	struct hv_dm_version_resp resp = {
		.hdr = { .type = type, .size = sizeof(resp),
			 .trans_id = hdr->trans_id },
		.flags = accepted ? HV_DM_ACCEPTED : 0,
	};

	hvq_post(h, &resp);
}

/* Guest to host. */
static int hvq_send(struct hv_dm *dm, void *msg, u32 len)
{
	struct hvq_host *h = hvq_of(dm);
	const struct hv_dm_hdr *hdr = msg;

	KUNIT_EXPECT_EQ(h->test, (u32)hdr->size, len);
	mutex_lock(&h->lock);
	if (h->state == HVQ_CLOSED || h->state == HVQ_WAIT_RESET) {
		mutex_unlock(&h->lock);
		return -EINVAL;
	}
	switch (hdr->type) {
	case HV_DM_VERSION_REQUEST: {
		const struct hv_dm_version_req *req = msg;
		bool ok = req->version >= HV_DM_VERSION_WIN7 &&
			  req->version <= HV_DM_VERSION_WIN10;

		if (h->state != HVQ_VERSION || len < sizeof(*req)) {
			h->unexpected++;
			break;
		}
		hvq_answer(h, hdr, HV_DM_VERSION_RESPONSE, ok);
		if (ok)
			h->state = HVQ_CAPS;
		break;
	}
	case HV_DM_CAPABILITIES_REPORT:
		if (h->state != HVQ_CAPS ||
		    len < sizeof(struct hv_dm_caps_report)) {
			h->unexpected++;
			break;
		}
		h->caps = ((const struct hv_dm_caps_report *)msg)->caps;
		hvq_answer(h, hdr, HV_DM_CAPABILITIES_RESPONSE, true);
		h->state = HVQ_POST_INIT_WAIT;
		break;
	case HV_DM_STATUS_REPORT:
		if (len < sizeof(struct hv_dm_status)) {
			h->unexpected++;
			break;
		}
		h->statuses++;
		h->last_committed =
			((const struct hv_dm_status *)msg)->num_committed;
		break;
	case HV_DM_BALLOON_RESPONSE:
		hvq_balloon_resp(h, msg, len);
		break;
	case HV_DM_UNBALLOON_RESPONSE:
		if (h->state != HVQ_UNBALLOON_REPLY_WAIT) {
			h->unexpected++;
			break;
		}
		h->unballoon_resps++;
		h->trans_id++;
		h->state = HVQ_IDLE;
		break;
	case HV_DM_HOT_ADD_RESPONSE:
		hvq_hot_add_resp(h, msg, len);
		break;
	default:
		h->unexpected++;
	}
	mutex_unlock(&h->lock);
	return 0;
}

static int hvq_open(struct hv_dm *dm)
{
	struct hvq_host *h = hvq_of(dm);
	int ret = 0;

	mutex_lock(&h->lock);
	if (h->state == HVQ_CLOSED)
		h->state = HVQ_VERSION;
	else
		ret = -EINVAL;
	mutex_unlock(&h->lock);
	return ret;
}

static void hvq_close(struct hv_dm *dm)
{
	struct hvq_host *h = hvq_of(dm);

	mutex_lock(&h->lock);
	if (h->state != HVQ_CLOSED)
		h->state = HVQ_WAIT_RESET;
	mutex_unlock(&h->lock);
}

static struct page *hvq_alloc(struct hv_dm *dm, unsigned int order)
{
	struct hvq_host *h = hvq_of(dm);
	gfp_t gfp = GFP_HIGHUSER | __GFP_NORETRY | __GFP_NOWARN;
	struct page *page;

	if (h->budget >= 0 && h->budget < (1L << order))
		return NULL;
	if (h->scatter && order)
		return NULL;
	if (h->scatter) {
		page = alloc_pages(gfp, 1);
		if (page) {
			split_page(page, 1);
			list_add(&page[1].lru, &h->spares);
		}
	} else {
		page = alloc_pages(gfp, order);
	}
	if (page && h->budget >= 0)
		h->budget -= 1L << order;
	return page;
}

static int hvq_add_memory(struct hv_dm *dm, unsigned long start_pfn,
			  unsigned long nr_pages)
{
	hvq_of(dm)->adds++;
	return 0;
}

static void hvq_online(struct hv_dm *dm, unsigned long pfn)
{
}

static const struct hv_dm_ops hvq_ops = {
	.open		= hvq_open,
	.close		= hvq_close,
	.send		= hvq_send,
	.alloc		= hvq_alloc,
	.add_memory	= hvq_add_memory,
	.online		= hvq_online,
	.meminfo	= hv_balloon_meminfo,
};

/* A VM reset: the host forgets everything and the channel may open. */
static void hvq_reset(struct hvq_host *h)
{
	mutex_lock(&h->lock);
	xa_destroy(&h->removed);
	h->removed_nr = 0;
	h->trans_id = 0;
	h->balloon_diff = 0;
	h->ha_count = 0;
	h->state = HVQ_CLOSED;
	mutex_unlock(&h->lock);
}

static struct hvq_host *hvq_new(struct kunit *test, bool hibernation)
{
	struct hvq_host *h = kunit_kzalloc(test, sizeof(*h), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, h);
	h->test = test;
	h->budget = -1;
	mutex_init(&h->lock);
	xa_init(&h->removed);
	INIT_LIST_HEAD(&h->spares);
	h->state = HVQ_CLOSED;
	hv_dm_init(&h->dm, &hvq_ops, hibernation, true, HVB_BLOCK);
	test->priv = h;
	return h;
}

static void hvq_exit(struct kunit *test)
{
	struct hvq_host *h = test->priv;
	struct page *page, *tmp;

	if (!h)
		return;
	hv_dm_stop(&h->dm);
	hv_dm_destroy(&h->dm);
	xa_destroy(&h->removed);
	list_for_each_entry_safe(page, tmp, &h->spares, lru) {
		list_del(&page->lru);
		__free_page(page);
	}
}

/* Until the guest has handled everything and the host sends no more. */
static void hvq_settle(struct hvq_host *h)
{
	unsigned int i;

	for (i = 0; i < 10000; i++) {
		flush_work(&h->dm.rx_work);
		if (!READ_ONCE(h->dm.rx_len) && !work_pending(&h->dm.rx_work))
			return;
	}
	KUNIT_FAIL(h->test, "the guest never caught up with the host");
}

static enum hvq_state hvq_state(struct hvq_host *h)
{
	enum hvq_state s;

	mutex_lock(&h->lock);
	s = h->state;
	mutex_unlock(&h->lock);
	return s;
}

/* Negotiated, and the post-init wait over. */
static struct hvq_host *hvq_ready(struct kunit *test, bool hibernation)
{
	struct hvq_host *h = hvq_new(test, hibernation);

	KUNIT_ASSERT_EQ(test, hv_dm_start(&h->dm), 0);
	KUNIT_ASSERT_EQ(test, hvq_state(h), HVQ_POST_INIT_WAIT);
	mutex_lock(&h->lock);
	h->state = HVQ_IDLE;
	mutex_unlock(&h->lock);
	return h;
}

/*
 * Start an operation: the host must be idle. Returns false, unlocked,
 * when it is not (no assertion under the lock: the exit handler takes it).
 */
static bool hvq_begin(struct hvq_host *h)
{
	mutex_lock(&h->lock);
	if (h->state == HVQ_IDLE)
		return true;
	mutex_unlock(&h->lock);
	KUNIT_FAIL(h->test, "host busy in state %d", h->state);
	return false;
}

/* The host wants @pages fewer hpages in the guest. */
static void hvq_shrink(struct hvq_host *h, unsigned long pages)
{
	if (!hvq_begin(h))
		return;
	h->balloon_diff = pages;
	hvq_post_balloon(h);
	mutex_unlock(&h->lock);
	hvq_settle(h);
}

/* The host gives @pages ballooned hpages back, one range a request. */
static void hvq_grow(struct hvq_host *h, unsigned long pages)
{
	struct {
		struct hv_dm_unballoon_req req;
		u64 range;
	} msg = {};
	unsigned long start, count;

	if (!hvq_begin(h))
		return;
	pages = min(pages, h->removed_nr);
	while (pages && hvq_pop_range(h, min(pages, HVQ_HA_CHUNK), &start,
				      &count)) {
		pages -= count;
		msg.req.hdr.type = HV_DM_UNBALLOON_REQUEST;
		msg.req.hdr.size = sizeof(msg);
		msg.req.hdr.trans_id = h->trans_id;
		msg.req.range_count = 1;
		msg.req.flags = pages ? HV_DM_MORE_PAGES : 0;
		msg.range = hv_dm_range(start, count);
		h->state = pages ? HVQ_IDLE : HVQ_UNBALLOON_REPLY_WAIT;
		h->unballoon_reqs++;
		hvq_post(h, &msg);
	}
	mutex_unlock(&h->lock);
	hvq_settle(h);
}

/* A memory device of @count hpages at @start is plugged. */
static void hvq_plug(struct hvq_host *h, unsigned long start,
		     unsigned long count)
{
	KUNIT_EXPECT_TRUE(h->test, h->caps & HV_DM_CAP_HOT_ADD);
	if (!hvq_begin(h))
		return;
	h->ha_start = start;
	h->ha_count = count;
	h->ha_used = 0;
	hvq_post_hot_add(h);
	mutex_unlock(&h->lock);
	hvq_settle(h);
}

static void hv_balloon_qemu_test_connect(struct kunit *test)
{
	struct hvq_host *h = hvq_new(test, false);
	u64 align;

	KUNIT_ASSERT_EQ(test, hv_dm_start(&h->dm), 0);
	KUNIT_EXPECT_EQ(test, h->dm.version, (u32)HV_DM_VERSION_WIN10);
	KUNIT_EXPECT_EQ(test, hvq_state(h), HVQ_POST_INIT_WAIT);
	KUNIT_EXPECT_TRUE(test, h->caps & HV_DM_CAP_BALLOON);
	KUNIT_EXPECT_TRUE(test, h->caps & HV_DM_CAP_HOT_ADD);
	/* Read first: sparse takes FIELD_GET() in a KUnit macro as too long. */
	align = FIELD_GET(HV_DM_CAP_HOT_ADD_ALIGN, h->caps);
	KUNIT_EXPECT_EQ(test, align, 1ULL);
	/* Reports start at once, and the host takes them while it waits. */
	flush_delayed_work(&h->dm.status_work);
	KUNIT_EXPECT_GE(test, h->statuses, 1U);
	KUNIT_EXPECT_EQ(test, h->unexpected, 0U);
}

static void hv_balloon_qemu_test_balloon(struct kunit *test)
{
	struct hvq_host *h = hvq_ready(test, false);
	unsigned long ram = totalram_pages();

	hvq_shrink(h, 3000);
	KUNIT_EXPECT_EQ(test, hvq_state(h), HVQ_IDLE);
	KUNIT_EXPECT_EQ(test, h->removed_nr, 3000UL);
	KUNIT_EXPECT_EQ(test, h->dm.balloon_pages, 3000UL);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 3000UL);
	KUNIT_EXPECT_EQ(test, h->balloon_reqs, 1U);
	KUNIT_EXPECT_EQ(test, h->trans_id, 1U);

	hvq_grow(h, 3000);
	KUNIT_EXPECT_EQ(test, hvq_state(h), HVQ_IDLE);
	KUNIT_EXPECT_EQ(test, h->dm.balloon_pages, 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_EQ(test, h->unballoon_resps, 1U);
	KUNIT_EXPECT_EQ(test, h->duplicates, 0U);
	KUNIT_EXPECT_EQ(test, h->unexpected, 0U);
}

/*
 * The guest gives less than asked: the host asks again for the rest, and
 * the empty answer ends it.
 */
static void hv_balloon_qemu_test_balloon_short(struct kunit *test)
{
	struct hvq_host *h = hvq_ready(test, false);

	h->budget = 700;
	hvq_shrink(h, 3000);
	KUNIT_EXPECT_EQ(test, hvq_state(h), HVQ_IDLE);
	KUNIT_EXPECT_EQ(test, h->removed_nr, 700UL);
	KUNIT_EXPECT_EQ(test, h->dm.balloon_pages, 700UL);
	KUNIT_EXPECT_EQ(test, h->balloon_reqs, 2U);
	KUNIT_EXPECT_EQ(test, h->balloon_diff, 0UL);
	KUNIT_EXPECT_EQ(test, h->unexpected, 0U);
}

/*
 * Scattered pages come back as one request per page, all sent before the
 * guest handled the first. Every one must be served, and the series
 * answered once.
 */
static void hv_balloon_qemu_test_unballoon_burst(struct kunit *test)
{
	struct hvq_host *h = hvq_ready(test, false);
	unsigned long ram = totalram_pages();

	h->scatter = true;
	hvq_shrink(h, 1200);
	KUNIT_ASSERT_EQ(test, h->removed_nr, 1200UL);
	KUNIT_EXPECT_EQ(test, h->balloon_resps, 3U);

	hvq_grow(h, 1200);
	KUNIT_EXPECT_EQ(test, h->unballoon_reqs, 1200U);
	KUNIT_EXPECT_EQ(test, hvq_state(h), HVQ_IDLE);
	KUNIT_EXPECT_EQ(test, h->unballoon_resps, 1U);
	KUNIT_EXPECT_EQ(test, h->dm.balloon_pages, 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&h->dm, HV_DM_C_LOST), 0UL);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&h->dm, HV_DM_C_UNBALLOONED),
			1200UL);
	KUNIT_EXPECT_EQ(test, h->unexpected, 0U);
}

/* 2 GiB and 6 MiB of new memory: two chunks, each its own region. */
static void hv_balloon_qemu_test_hot_add(struct kunit *test)
{
	struct hvq_host *h = hvq_ready(test, false);
	const unsigned long pages = HVQ_HA_CHUNK + 3 * HVB_BLOCK;

	hvq_plug(h, HVB_HA_PFN, pages);
	KUNIT_EXPECT_EQ(test, hvq_state(h), HVQ_IDLE);
	KUNIT_EXPECT_EQ(test, h->hot_add_reqs, 2U);
	KUNIT_EXPECT_EQ(test, h->ha_used, pages);
	KUNIT_EXPECT_EQ(test, h->adds, (unsigned int)(pages / HVB_BLOCK));
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&h->dm, HV_DM_C_HOT_ADDED), pages);

	/* The guest reports the new memory as committed until it is online. */
	hv_dm_post_status(&h->dm);
	KUNIT_EXPECT_GE(test, h->last_committed, (u64)pages);
	KUNIT_EXPECT_EQ(test, h->unexpected, 0U);
}

/*
 * In hibernation mode: an empty balloon response ends the operation
 * without a second request, and a refused hot-add drops the memory.
 */
static void hv_balloon_qemu_test_hibernation(struct kunit *test)
{
	struct hvq_host *h = hvq_ready(test, true);

	hvq_shrink(h, 1000);
	KUNIT_EXPECT_EQ(test, hvq_state(h), HVQ_IDLE);
	KUNIT_EXPECT_EQ(test, h->balloon_reqs, 1U);
	KUNIT_EXPECT_EQ(test, h->removed_nr, 0UL);
	KUNIT_EXPECT_EQ(test, h->dm.balloon_pages, 0UL);

	hvq_plug(h, HVB_HA_PFN, 4 * HVB_BLOCK);
	KUNIT_EXPECT_EQ(test, hvq_state(h), HVQ_IDLE);
	KUNIT_EXPECT_EQ(test, h->hot_add_reqs, 1U);
	KUNIT_EXPECT_EQ(test, h->ha_used, 0UL);
	KUNIT_EXPECT_EQ(test, h->adds, 0U);
	KUNIT_EXPECT_EQ(test, h->unexpected, 0U);
}

/*
 * Restore: a new host after a reset. The old balloon goes back to the
 * guest, and the new host sees a fresh session. Without a reset the
 * channel does not open; the driver stays off until it does.
 */
static void hv_balloon_qemu_test_restore(struct kunit *test)
{
	struct hvq_host *h = hvq_ready(test, false);
	unsigned long ram = totalram_pages();

	hvq_shrink(h, 600);
	KUNIT_ASSERT_EQ(test, h->dm.balloon_pages, 600UL);
	hv_dm_stop(&h->dm);
	KUNIT_EXPECT_EQ(test, hvq_state(h), HVQ_WAIT_RESET);

	KUNIT_EXPECT_EQ(test, hv_dm_resume(&h->dm), -EINVAL);
	KUNIT_EXPECT_EQ(test, h->dm.state, HV_DM_ERROR);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);

	hv_dm_stop(&h->dm);
	hvq_reset(h);
	KUNIT_ASSERT_EQ(test, hv_dm_resume(&h->dm), 0);
	KUNIT_EXPECT_EQ(test, hvq_state(h), HVQ_POST_INIT_WAIT);
	KUNIT_EXPECT_EQ(test, h->dm.state, HV_DM_READY);
	KUNIT_EXPECT_EQ(test, h->dm.balloon_pages, 0UL);
	KUNIT_EXPECT_EQ(test, h->removed_nr, 0UL);
	KUNIT_EXPECT_EQ(test, h->unexpected, 0U);
}

static struct kunit_case hv_balloon_qemu_test_cases[] = {
	KUNIT_CASE(hv_balloon_qemu_test_connect),
	KUNIT_CASE(hv_balloon_qemu_test_balloon),
	KUNIT_CASE(hv_balloon_qemu_test_balloon_short),
	KUNIT_CASE(hv_balloon_qemu_test_unballoon_burst),
	KUNIT_CASE(hv_balloon_qemu_test_hot_add),
	KUNIT_CASE(hv_balloon_qemu_test_hibernation),
	KUNIT_CASE(hv_balloon_qemu_test_restore),
	{}
};

static struct kunit_suite hv_balloon_qemu_test_suite = {
	.name = "hv_balloon_qemu",
	.exit = hvq_exit,
	.test_cases = hv_balloon_qemu_test_cases,
};

kunit_test_suite(hv_balloon_qemu_test_suite);
