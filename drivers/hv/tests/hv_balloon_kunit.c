// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for the Hyper-V Dynamic Memory driver.
 *
 * Included at the end of hv_balloon.c, so the cases reach the protocol's
 * static functions. Each case runs the protocol against a fake host side
 * (the VSP), which sits behind struct hv_dm_ops:
 *
 *  - send() records every message the guest sends and answers version and
 *    capability messages at once, accepting or refusing as told;
 *  - open() and close() stand for the channel, and open() can fail;
 *  - alloc() hands out real pages, but can refuse 2 MiB blocks, stop after
 *    a budget, or return pages that are never contiguous;
 *  - add_memory() and online() record what hotplug would have done;
 *  - meminfo() reports the guest's real figures, or fixed ones;
 *  - send() can find the ring full for a while, or for ever.
 *
 * Host messages go in through hv_dm_receive(), as the channel callback
 * delivers them, and the case waits for the receive work.
 */

#include <kunit/test.h>

struct hvb_sent {
	struct list_head list;
	u32 len;
	u8 data[HV_DM_MSG_MAX] __aligned(8);
};

struct hvb_fake {
	struct hv_dm dm;
	struct kunit *test;

	/* What the fake host does. */
	unsigned int refuse_versions;	/* refuse this many, newest first */
	bool refuse_caps;
	bool fail_open;
	bool no_2m;			/* alloc() fails every 2 MiB block */
	bool scatter;			/* order-0 pages are never adjacent */
	long budget;			/* pages alloc() may hand out; <0: any */
	int add_memory_ret;
	bool fixed_meminfo;		/* report @meminfo, not the guest's */
	struct hv_dm_meminfo meminfo;
	u16 full_type;			/* sends of this type find the ring full */
	unsigned int full_skip;		/* after this many went through */
	int full_tries;			/* this many times; <0: for ever */
	unsigned int full_seen;		/* -EAGAIN returned so far */
	u32 skew_trans_id;		/* added to the id of each answer */
	bool tally;			/* count answers, record nothing */
	unsigned int add_budget;	/* with @tally: blocks per request */

	/* With @tally, what it saw. */
	unsigned long answers;		/* final answers to requests */
	unsigned long answered_pages;	/* hpages balloon responses named */
	u64 recent[64];			/* ranges of recent balloon responses */
	unsigned int nr_recent;

	/* What it saw. */
	struct mutex sent_lock;		/* protects @sent */
	struct list_head sent;
	unsigned int versions_seen;
	bool open;
	unsigned int adds;
	unsigned long onlined;
	unsigned long alloc_2m_calls;
	struct list_head spares;	/* pages kept aside by @scatter */
};

static struct hvb_fake *hvb_of(struct hv_dm *dm)
{
	return container_of(dm, struct hvb_fake, dm);
}

static void hvb_answer(struct hvb_fake *f, const struct hv_dm_hdr *hdr,
		       u16 type, bool accepted)
{
	struct hv_dm_version_resp resp = {
		.hdr = { .type = type, .size = sizeof(resp),
			 .trans_id = hdr->trans_id + f->skew_trans_id },
		.flags = accepted ? HV_DM_ACCEPTED : 0,
	};

	hv_dm_receive(&f->dm, &resp, sizeof(resp));
}

/* For the fuzzer: keep count, and the last ranges the guest gave. */
static void hvb_tally(struct hvb_fake *f, const void *msg)
{
	const struct hv_dm_balloon_resp *resp = msg;
	unsigned long pfn, count;
	unsigned int i, nr;

	switch (resp->hdr.type) {
	case HV_DM_BALLOON_RESPONSE:
		nr = FIELD_GET(HV_DM_RESP_RANGE_COUNT, resp->flags);
		for (i = 0; i < nr; i++) {
			hv_dm_range_get(resp->ranges[i], &pfn, &count);
			f->answered_pages += count;
			f->recent[f->nr_recent++ % ARRAY_SIZE(f->recent)] =
				resp->ranges[i];
		}
		if (!(resp->flags & HV_DM_MORE_PAGES))
			f->answers++;
		break;
	case HV_DM_UNBALLOON_RESPONSE:
	case HV_DM_HOT_ADD_RESPONSE:
		f->answers++;
		break;
	}
}

static int hvb_send(struct hv_dm *dm, void *msg, u32 len)
{
	struct hvb_fake *f = hvb_of(dm);
	struct hv_dm_hdr *hdr = msg;
	struct hvb_sent *s;

	KUNIT_EXPECT_EQ(f->test, (u32)hdr->size, len);
	KUNIT_EXPECT_LE(f->test, len, (u32)HV_DM_MSG_MAX);
	if (f->full_type && hdr->type == f->full_type) {
		if (f->full_skip) {
			f->full_skip--;
		} else if (f->full_tries) {
			if (f->full_tries > 0)
				f->full_tries--;
			f->full_seen++;
			return -EAGAIN;
		}
	}
	if (f->tally) {
		hvb_tally(f, msg);
		return 0;
	}
	s = kunit_kzalloc(f->test, sizeof(*s), GFP_KERNEL);
	if (!s)
		return -ENOMEM;
	s->len = min_t(u32, len, HV_DM_MSG_MAX);
	memcpy(s->data, msg, s->len);
	mutex_lock(&f->sent_lock);
	list_add_tail(&s->list, &f->sent);
	mutex_unlock(&f->sent_lock);

	if (hdr->type == HV_DM_VERSION_REQUEST)
		hvb_answer(f, hdr, HV_DM_VERSION_RESPONSE,
			   f->versions_seen++ >= f->refuse_versions);
	else if (hdr->type == HV_DM_CAPABILITIES_REPORT)
		hvb_answer(f, hdr, HV_DM_CAPABILITIES_RESPONSE,
			   !f->refuse_caps);
	return 0;
}

static int hvb_open(struct hv_dm *dm)
{
	struct hvb_fake *f = hvb_of(dm);

	if (f->fail_open)
		return -EIO;
	f->open = true;
	f->versions_seen = 0;
	return 0;
}

static void hvb_close(struct hv_dm *dm)
{
	hvb_of(dm)->open = false;
}

static struct page *hvb_alloc(struct hv_dm *dm, unsigned int order)
{
	struct hvb_fake *f = hvb_of(dm);
	struct page *page;
	gfp_t gfp = GFP_HIGHUSER | __GFP_NORETRY | __GFP_NOWARN;

	if (order)
		f->alloc_2m_calls++;
	if ((order && f->no_2m) || (f->budget >= 0 && f->budget < (1L << order)))
		return NULL;
	if (!order && f->scatter) {
		/* Keep the buddy aside so that no two pages are adjacent. */
		page = alloc_pages(gfp, 1);
		if (!page)
			return NULL;
		split_page(page, 1);
		list_add(&page[1].lru, &f->spares);
	} else {
		page = alloc_pages(gfp, order);
	}
	if (page && f->budget >= 0)
		f->budget -= 1L << order;
	return page;
}

static int hvb_add_memory(struct hv_dm *dm, unsigned long start_pfn,
			  unsigned long nr_pages)
{
	struct hvb_fake *f = hvb_of(dm);

	KUNIT_EXPECT_EQ(f->test, start_pfn % dm->block_pages, 0UL);
	KUNIT_EXPECT_EQ(f->test, nr_pages, dm->block_pages);
	if (f->tally) {
		if (!f->add_budget)
			return -ENOSPC;
		f->add_budget--;
	}
	if (!f->add_memory_ret)
		f->adds++;
	return f->add_memory_ret;
}

static void hvb_online(struct hv_dm *dm, unsigned long pfn)
{
	hvb_of(dm)->onlined++;
}

static void hvb_meminfo(struct hv_dm *dm, struct hv_dm_meminfo *mi)
{
	struct hvb_fake *f = hvb_of(dm);

	if (f->fixed_meminfo)
		*mi = f->meminfo;
	else
		hv_balloon_meminfo(dm, mi);
}

static const struct hv_dm_ops hvb_ops = {
	.open		= hvb_open,
	.close		= hvb_close,
	.send		= hvb_send,
	.alloc		= hvb_alloc,
	.add_memory	= hvb_add_memory,
	.online		= hvb_online,
	.meminfo	= hvb_meminfo,
};

/* Hot-add tests use 2 MiB memory blocks, far above any RAM of the VM. */
#define HVB_BLOCK	512UL
#define HVB_HA_PFN	BIT(24)

static struct hvb_fake *hvb_new(struct kunit *test, bool hibernation)
{
	struct hvb_fake *f = kunit_kzalloc(test, sizeof(*f), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, f);
	f->test = test;
	f->budget = -1;
	mutex_init(&f->sent_lock);
	INIT_LIST_HEAD(&f->sent);
	INIT_LIST_HEAD(&f->spares);
	hv_dm_init(&f->dm, &hvb_ops, hibernation, true, HVB_BLOCK);
	test->priv = f;
	return f;
}

static void hvb_exit(struct kunit *test)
{
	struct hvb_fake *f = test->priv;
	struct page *page, *tmp;

	if (!f)
		return;
	hv_dm_stop(&f->dm);
	hv_dm_destroy(&f->dm);
	list_for_each_entry_safe(page, tmp, &f->spares, lru) {
		list_del(&page->lru);
		__free_page(page);
	}
}

static struct hvb_fake *hvb_ready(struct kunit *test, bool hibernation)
{
	struct hvb_fake *f = hvb_new(test, hibernation);

	KUNIT_ASSERT_EQ(test, hv_dm_start(&f->dm), 0);
	KUNIT_ASSERT_EQ(test, f->dm.state, HV_DM_READY);
	return f;
}

/* Deliver a host message and wait until it was handled. */
static void hvb_host(struct hvb_fake *f, const void *msg, u32 len)
{
	hv_dm_receive(&f->dm, msg, len);
	flush_work(&f->dm.rx_work);
}

static unsigned int hvb_count(struct hvb_fake *f, u16 type)
{
	struct hvb_sent *s;
	unsigned int n = 0;

	mutex_lock(&f->sent_lock);
	list_for_each_entry(s, &f->sent, list)
		n += ((struct hv_dm_hdr *)s->data)->type == type;
	mutex_unlock(&f->sent_lock);
	return n;
}

static unsigned int hvb_total_sent(struct hvb_fake *f)
{
	struct hvb_sent *s;
	unsigned int n = 0;

	mutex_lock(&f->sent_lock);
	list_for_each_entry(s, &f->sent, list)
		n++;
	mutex_unlock(&f->sent_lock);
	return n;
}

/* The @n-th message (from 0) of @type the guest sent, or NULL. */
static void *hvb_nth(struct hvb_fake *f, u16 type, unsigned int n)
{
	struct hvb_sent *s;
	void *found = NULL;

	mutex_lock(&f->sent_lock);
	list_for_each_entry(s, &f->sent, list) {
		if (((struct hv_dm_hdr *)s->data)->type == type && !n--) {
			found = s->data;
			break;
		}
	}
	mutex_unlock(&f->sent_lock);
	return found;
}

static void hvb_balloon_req_nowait(struct hvb_fake *f, u32 pages)
{
	struct hv_dm_balloon_req req = {
		.hdr = { .type = HV_DM_BALLOON_REQUEST, .size = sizeof(req),
			 .trans_id = 1000 },
		.num_pages = pages,
	};

	hv_dm_receive(&f->dm, &req, sizeof(req));
}

static void hvb_balloon_req(struct hvb_fake *f, u32 pages)
{
	hvb_balloon_req_nowait(f, pages);
	flush_work(&f->dm.rx_work);
}

/*
 * Check every balloon response of a request: ranges held and offline,
 * HV_DM_MORE_PAGES on all but the last. Returns the pages they name.
 */
static unsigned long hvb_check_balloon_resps(struct kunit *test,
					     struct hvb_fake *f,
					     unsigned int *nr_msgs)
{
	unsigned int n = hvb_count(f, HV_DM_BALLOON_RESPONSE), i, r;
	unsigned long total = 0;

	for (i = 0; i < n; i++) {
		struct hv_dm_balloon_resp *resp =
			hvb_nth(f, HV_DM_BALLOON_RESPONSE, i);
		unsigned int ranges = FIELD_GET(HV_DM_RESP_RANGE_COUNT,
						resp->flags);

		KUNIT_EXPECT_EQ(test, (u32)resp->hdr.size,
				(u32)struct_size(resp, ranges, ranges));
		KUNIT_EXPECT_EQ(test, !!(resp->flags & HV_DM_MORE_PAGES),
				i + 1 < n);
		for (r = 0; r < ranges; r++) {
			unsigned long pfn, count;

			hv_dm_range_get(resp->ranges[r], &pfn, &count);
			KUNIT_EXPECT_TRUE(test, hv_dm_holds(&f->dm, pfn, count));
			KUNIT_EXPECT_TRUE(test, PageOffline(pfn_to_page(pfn)));
			total += count;
		}
	}
	if (nr_msgs)
		*nr_msgs = n;
	return total;
}

/* Unballoon everything the balloon responses named, one range a message. */
static void hvb_unballoon_all(struct hvb_fake *f)
{
	struct {
		struct hv_dm_unballoon_req req;
		u64 range;
	} msg = {};
	unsigned int n = hvb_count(f, HV_DM_BALLOON_RESPONSE), i, r;

	for (i = 0; i < n; i++) {
		struct hv_dm_balloon_resp *resp =
			hvb_nth(f, HV_DM_BALLOON_RESPONSE, i);
		unsigned int ranges = FIELD_GET(HV_DM_RESP_RANGE_COUNT,
						resp->flags);

		for (r = 0; r < ranges; r++) {
			msg.req.hdr.type = HV_DM_UNBALLOON_REQUEST;
			msg.req.hdr.size = sizeof(msg);
			msg.req.range_count = 1;
			msg.req.flags = (i + 1 < n || r + 1 < ranges) ?
					HV_DM_MORE_PAGES : 0;
			msg.range = resp->ranges[r];
			hvb_host(f, &msg, sizeof(msg));
		}
	}
}

static void hv_balloon_test_negotiate_newest(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	struct hv_dm_version_req *v = hvb_nth(f, HV_DM_VERSION_REQUEST, 0);
	struct hv_dm_caps_report *caps;
	u64 align;

	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_VERSION_REQUEST), 1U);
	KUNIT_ASSERT_NOT_NULL(test, v);
	KUNIT_EXPECT_EQ(test, v->version, (u32)HV_DM_VERSION_WIN10);
	KUNIT_EXPECT_EQ(test, f->dm.version, (u32)HV_DM_VERSION_WIN10);
	caps = hvb_nth(f, HV_DM_CAPABILITIES_REPORT, 0);
	KUNIT_ASSERT_NOT_NULL(test, caps);
	KUNIT_EXPECT_TRUE(test, caps->caps & HV_DM_CAP_BALLOON);
	KUNIT_EXPECT_TRUE(test, caps->caps & HV_DM_CAP_HOT_ADD);
	/*
	 * 2 MiB blocks: alignment 2^1 MiB. (Read into a variable first:
	 * FIELD_GET() expanded inside a KUnit macro is more than sparse
	 * takes as one token on 7.x.)
	 */
	align = FIELD_GET(HV_DM_CAP_HOT_ADD_ALIGN, caps->caps);
	KUNIT_EXPECT_EQ(test, align, 1ULL);

	/* The status work reports at once after negotiation. */
	flush_delayed_work(&f->dm.status_work);
	KUNIT_EXPECT_GE(test, hvb_count(f, HV_DM_STATUS_REPORT), 1U);
}

static void hv_balloon_test_negotiate_fallback(struct kunit *test)
{
	struct hvb_fake *f = hvb_new(test, false);
	static const u32 want[] = { HV_DM_VERSION_WIN10, HV_DM_VERSION_WIN8,
				    HV_DM_VERSION_WIN7 };
	unsigned int i;

	f->refuse_versions = 2;
	KUNIT_ASSERT_EQ(test, hv_dm_start(&f->dm), 0);
	KUNIT_EXPECT_EQ(test, f->dm.version, (u32)HV_DM_VERSION_WIN7);
	KUNIT_ASSERT_EQ(test, hvb_count(f, HV_DM_VERSION_REQUEST), 3U);
	for (i = 0; i < 3; i++) {
		struct hv_dm_version_req *v = hvb_nth(f, HV_DM_VERSION_REQUEST, i);

		KUNIT_EXPECT_EQ(test, v->version, want[i]);
		KUNIT_EXPECT_EQ(test, !!(v->flags & HV_DM_VERSION_LAST_ATTEMPT),
				i == 2);
	}
	KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_READY);
}

static void hv_balloon_test_negotiate_all_refused(struct kunit *test)
{
	struct hvb_fake *f = hvb_new(test, false);

	f->refuse_versions = 3;
	KUNIT_EXPECT_EQ(test, hv_dm_start(&f->dm), -EPROTO);
	KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_ERROR);
	KUNIT_EXPECT_EQ(test, f->dm.version, 0U);
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_CAPABILITIES_REPORT), 0U);
	KUNIT_EXPECT_FALSE(test, f->open);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&f->dm.status_work));
}

static void hv_balloon_test_caps_rejected(struct kunit *test)
{
	struct hvb_fake *f = hvb_new(test, false);

	f->refuse_caps = true;
	KUNIT_EXPECT_EQ(test, hv_dm_start(&f->dm), -EPROTO);
	KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_ERROR);
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_CAPABILITIES_REPORT), 1U);
	KUNIT_EXPECT_FALSE(test, f->open);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&f->dm.status_work));
}

static void hv_balloon_test_balloon_up_down(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	unsigned long ram = totalram_pages();
	struct hv_dm_balloon_resp *first;
	unsigned long pfn, count;

	hvb_balloon_req(f, 1000);
	KUNIT_EXPECT_EQ(test, hvb_check_balloon_resps(test, f, NULL), 1000UL);
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 1000UL);
	KUNIT_EXPECT_EQ(test, ram - totalram_pages(), 1000UL);
	/* The first allocation is a whole 2 MiB block. */
	first = hvb_nth(f, HV_DM_BALLOON_RESPONSE, 0);
	KUNIT_ASSERT_NOT_NULL(test, first);
	hv_dm_range_get(first->ranges[0], &pfn, &count);
	KUNIT_EXPECT_GE(test, count, 1UL << HV_DM_2M_ORDER);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_SHORT), 0UL);

	hvb_unballoon_all(f);
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_UNBALLOON_RESPONSE), 1U);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_UNBALLOONED),
			1000UL);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_REJECTED_RANGES),
			0UL);
}

static void hv_balloon_test_balloon_up_partial(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);

	f->budget = 300;
	hvb_balloon_req(f, 1000);
	KUNIT_EXPECT_EQ(test, hvb_check_balloon_resps(test, f, NULL), 300UL);
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 300UL);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_SHORT), 1UL);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_BALLOONED), 300UL);
}

static void hv_balloon_test_balloon_up_fallback(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);

	f->no_2m = true;
	hvb_balloon_req(f, 1024);
	KUNIT_EXPECT_EQ(test, hvb_check_balloon_resps(test, f, NULL), 1024UL);
	/* One failed 2 MiB attempt, then 4 KiB pages to the end. */
	KUNIT_EXPECT_EQ(test, f->alloc_2m_calls, 1UL);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_FALLBACK), 1UL);
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 1024UL);
}

static void hv_balloon_test_balloon_up_batches(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	unsigned int msgs;

	/* 1200 single, scattered pages: 1200 ranges, three messages. */
	f->no_2m = true;
	f->scatter = true;
	hvb_balloon_req(f, 1200);
	KUNIT_EXPECT_EQ(test, hvb_check_balloon_resps(test, f, &msgs), 1200UL);
	KUNIT_EXPECT_EQ(test, msgs,
			(unsigned int)DIV_ROUND_UP(1200, HV_DM_RESP_RANGES));
}

static void hv_balloon_test_balloon_down_rejects(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	struct {
		struct hv_dm_unballoon_req req;
		u64 ranges[3];
	} msg = {};
	struct hv_dm_balloon_resp *resp;
	unsigned long pfn, count, ram;
	struct page *mine;

	f->no_2m = true;
	f->scatter = true;
	hvb_balloon_req(f, 2);
	resp = hvb_nth(f, HV_DM_BALLOON_RESPONSE, 0);
	KUNIT_ASSERT_NOT_NULL(test, resp);
	KUNIT_ASSERT_EQ(test, f->dm.balloon_pages, 2UL);
	hv_dm_range_get(resp->ranges[0], &pfn, &count);
	KUNIT_ASSERT_EQ(test, count, 1UL);

	mine = alloc_page(GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, mine);
	ram = totalram_pages();
	msg.req.hdr.type = HV_DM_UNBALLOON_REQUEST;
	msg.req.hdr.size = sizeof(msg);
	msg.req.range_count = 3;
	msg.ranges[0] = hv_dm_range(page_to_pfn(mine), 1);	/* never ours */
	msg.ranges[1] = hv_dm_range(pfn, 2);	/* runs past a held page */
	msg.ranges[2] = resp->ranges[1];	/* valid */
	hvb_host(f, &msg, sizeof(msg));

	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_REJECTED_RANGES),
			2UL);
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 1UL);
	KUNIT_EXPECT_TRUE(test, hv_dm_holds(&f->dm, pfn, 1));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram + 1);
	KUNIT_EXPECT_FALSE(test, PageOffline(mine));
	KUNIT_EXPECT_EQ(test, page_count(mine), 1);
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_UNBALLOON_RESPONSE), 1U);
	__free_page(mine);
}

static void hv_balloon_test_hibernation_refuses(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, true);
	unsigned long ram = totalram_pages();
	struct hv_dm_caps_report *caps;
	struct hv_dm_balloon_resp *bresp;
	struct hv_dm_hot_add_resp *hresp;
	struct {
		struct hv_dm_unballoon_req req;
		u64 range;
	} down = {
		.req = { .hdr = { .type = HV_DM_UNBALLOON_REQUEST,
				  .size = sizeof(down) }, .range_count = 1 },
		.range = hv_dm_range(0x1000, 16),
	};
	struct hv_dm_hot_add_req add = {
		.hdr = { .type = HV_DM_HOT_ADD_REQUEST, .size = sizeof(add) },
		.range = hv_dm_range(HVB_HA_PFN, 512),
		.region = hv_dm_range(HVB_HA_PFN, 512),
	};

	/* Still advertised: hosts require both. */
	caps = hvb_nth(f, HV_DM_CAPABILITIES_REPORT, 0);
	KUNIT_ASSERT_NOT_NULL(test, caps);
	KUNIT_EXPECT_TRUE(test, caps->caps & HV_DM_CAP_BALLOON);
	KUNIT_EXPECT_TRUE(test, caps->caps & HV_DM_CAP_HOT_ADD);
	KUNIT_EXPECT_FALSE(test, f->dm.hot_add);

	hvb_balloon_req(f, 100);
	bresp = hvb_nth(f, HV_DM_BALLOON_RESPONSE, 0);
	KUNIT_ASSERT_NOT_NULL(test, bresp);
	KUNIT_EXPECT_EQ(test, bresp->flags, 0U);	/* no ranges, no more */
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_BALLOON_RESPONSE), 1U);

	hvb_host(f, &down, sizeof(down));
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_UNBALLOON_RESPONSE), 1U);

	hvb_host(f, &add, sizeof(add));
	hresp = hvb_nth(f, HV_DM_HOT_ADD_RESPONSE, 0);
	KUNIT_ASSERT_NOT_NULL(test, hresp);
	KUNIT_EXPECT_EQ(test, hresp->page_count, 0U);
	/* Refused for good: the host must not retry. */
	KUNIT_EXPECT_EQ(test, hresp->result, 1U);
	KUNIT_EXPECT_EQ(test, f->adds, 0U);

	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_REFUSED), 3UL);
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);

	/* Status reports go on. */
	flush_delayed_work(&f->dm.status_work);
	KUNIT_EXPECT_GE(test, hvb_count(f, HV_DM_STATUS_REPORT), 1U);
	KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_READY);
}

static void hv_balloon_test_hot_add(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	struct hv_dm_hot_add_req add = {
		.hdr = { .type = HV_DM_HOT_ADD_REQUEST, .size = sizeof(add) },
		.range = hv_dm_range(HVB_HA_PFN, 700),
		.region = hv_dm_range(HVB_HA_PFN, 2 * HVB_BLOCK),
	};
	struct hv_dm_hot_add_resp *resp;
	struct hv_dm_region *r;

	/* Two blocks added; the second only partly backed. */
	hvb_host(f, &add, sizeof(add));
	resp = hvb_nth(f, HV_DM_HOT_ADD_RESPONSE, 0);
	KUNIT_ASSERT_NOT_NULL(test, resp);
	KUNIT_EXPECT_EQ(test, resp->page_count, 700U);
	KUNIT_EXPECT_EQ(test, resp->result, 1U);
	KUNIT_EXPECT_EQ(test, f->adds, 2U);

	/* Both blocks go online: only the backed pages are freed. */
	hv_dm_pages_online(&f->dm, HVB_HA_PFN, 2 * HVB_BLOCK);
	KUNIT_EXPECT_EQ(test, f->onlined, 700UL);

	/* Backing granted later is freed at once. */
	add.range = hv_dm_range(HVB_HA_PFN + 700, 100);
	hvb_host(f, &add, sizeof(add));
	resp = hvb_nth(f, HV_DM_HOT_ADD_RESPONSE, 1);
	KUNIT_ASSERT_NOT_NULL(test, resp);
	KUNIT_EXPECT_EQ(test, resp->page_count, 100U);
	KUNIT_EXPECT_EQ(test, f->onlined, 800UL);
	KUNIT_EXPECT_EQ(test, f->adds, 2U);

	/* Skipped pages stay offline. */
	add.range = hv_dm_range(HVB_HA_PFN + 900, 50);
	hvb_host(f, &add, sizeof(add));
	KUNIT_EXPECT_EQ(test, f->onlined, 850UL);
	r = hv_dm_find_region(&f->dm, HVB_HA_PFN);
	KUNIT_ASSERT_NOT_NULL(test, r);
	KUNIT_EXPECT_FALSE(test, hv_dm_pfn_backed(r, HVB_HA_PFN + 850));
	KUNIT_EXPECT_TRUE(test, hv_dm_pfn_backed(r, HVB_HA_PFN + 920));

	/* Backing what is backed already is refused. */
	add.range = hv_dm_range(HVB_HA_PFN + 10, 10);
	hvb_host(f, &add, sizeof(add));
	resp = hvb_nth(f, HV_DM_HOT_ADD_RESPONSE, 3);
	KUNIT_ASSERT_NOT_NULL(test, resp);
	KUNIT_EXPECT_EQ(test, resp->page_count, 0U);
	KUNIT_EXPECT_EQ(test, resp->result, 1U);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_HOT_ADDED), 850UL);
}

static void hv_balloon_test_suspend_resume(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	unsigned long ram = totalram_pages();
	unsigned int round;

	for (round = 0; round < 3; round++) {
		unsigned int versions = hvb_count(f, HV_DM_VERSION_REQUEST);
		unsigned int sent;

		hvb_balloon_req(f, 600);
		KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 600UL);

		hv_dm_stop(&f->dm);
		KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_STOPPED);
		KUNIT_EXPECT_FALSE(test, f->open);
		KUNIT_EXPECT_FALSE(test, delayed_work_pending(&f->dm.status_work));

		/* Without a session a request is dropped, not served. */
		sent = hvb_total_sent(f);
		hvb_balloon_req(f, 10);
		KUNIT_EXPECT_EQ(test, hvb_total_sent(f), sent);
		KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 600UL);

		KUNIT_ASSERT_EQ(test, hv_dm_resume(&f->dm), 0);
		KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_READY);
		KUNIT_EXPECT_TRUE(test, f->open);
		KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_VERSION_REQUEST),
				versions + 1);
		/* The new session starts with an empty balloon. */
		KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 0UL);
		KUNIT_EXPECT_TRUE(test, xa_empty(&f->dm.held));
		KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	}
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_RESUMES), 3UL);
	KUNIT_EXPECT_EQ(test, f->dm.rx_len, 0U);
}

static void hv_balloon_test_resume_fails(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	unsigned long ram = totalram_pages();
	unsigned int sent;

	/* The host refuses every version after resume. */
	hv_dm_stop(&f->dm);
	f->refuse_versions = 3;
	KUNIT_EXPECT_EQ(test, hv_dm_resume(&f->dm), -EPROTO);
	KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_ERROR);
	KUNIT_EXPECT_FALSE(test, f->open);

	sent = hvb_total_sent(f);
	hvb_balloon_req(f, 10);
	KUNIT_EXPECT_EQ(test, hvb_total_sent(f), sent);
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);

	/* The channel does not open. */
	hv_dm_stop(&f->dm);
	f->fail_open = true;
	KUNIT_EXPECT_EQ(test, hv_dm_resume(&f->dm), -EIO);
	KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_ERROR);

	/* The next resume that works brings the session back. */
	hv_dm_stop(&f->dm);
	f->fail_open = false;
	f->refuse_versions = 0;
	KUNIT_EXPECT_EQ(test, hv_dm_resume(&f->dm), 0);
	KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_READY);
}

static void hv_balloon_test_wrong_trans_id(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	struct hv_dm_version_resp resp = {
		.hdr = { .type = HV_DM_VERSION_RESPONSE, .size = sizeof(resp),
			 .trans_id = 78 },
		.flags = HV_DM_ACCEPTED,
	};

	/* As if a version request with id 77 were waiting. */
	mutex_lock(&f->dm.lock);
	reinit_completion(&f->dm.host_event);
	f->dm.expect = HV_DM_VERSION_RESPONSE;
	f->dm.expect_trans_id = 77;
	f->dm.accepted = false;
	mutex_unlock(&f->dm.lock);

	/* Another id is logged and counted, and the answer taken. */
	hvb_host(f, &resp, sizeof(resp));
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_TRANS_ID), 1UL);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_BAD_MESSAGES), 0UL);
	KUNIT_EXPECT_TRUE(test, completion_done(&f->dm.host_event));
	KUNIT_EXPECT_TRUE(test, f->dm.accepted);
	KUNIT_EXPECT_EQ(test, f->dm.expect, 0);

	/* Nothing waits any more: a second response is dropped. */
	hvb_host(f, &resp, sizeof(resp));
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_BAD_MESSAGES), 1UL);
}

/* A host whose responses never echo the request's id still connects. */
static void hv_balloon_test_negotiate_other_trans_ids(struct kunit *test)
{
	struct hvb_fake *f = hvb_new(test, false);

	f->skew_trans_id = 1000;
	KUNIT_ASSERT_EQ(test, hv_dm_start(&f->dm), 0);
	KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_READY);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_TRANS_ID), 2UL);
}

struct hvb_bad_case {
	const char *name;
	u16 type;
	u16 size;		/* the header's size field */
	u32 len;		/* bytes delivered */
	u32 word0;		/* the first payload word */
	u32 word1;		/* the second */
	u16 answer;		/* the "nothing done" answer due, or 0 */
};

/*
 * Each is dropped with a log line and leaves the state alone; a request
 * the host waits on is answered with "nothing done", anything else with
 * nothing.
 */
static const struct hvb_bad_case hvb_bad_cases[] = {
	{ "shorter than a header", HV_DM_BALLOON_REQUEST, 8, 4 },
	{ "size above length", HV_DM_BALLOON_REQUEST, 64, 16, 10, 0,
	  HV_DM_BALLOON_RESPONSE },
	{ "size below header", HV_DM_BALLOON_REQUEST, 4, 16, 10, 0,
	  HV_DM_BALLOON_RESPONSE },
	{ "size far below length", HV_DM_BALLOON_REQUEST, 16, 32, 10, 0,
	  HV_DM_BALLOON_RESPONSE },
	{ "unknown type", 99, 16, 16 },
	{ "type the guest sends", HV_DM_STATUS_REPORT, 16, 16 },
	{ "balloon request too short", HV_DM_BALLOON_REQUEST, 8, 8, 0, 0,
	  HV_DM_BALLOON_RESPONSE },
	{ "range count past payload", HV_DM_UNBALLOON_REQUEST, 24, 24, 0, 3,
	  HV_DM_UNBALLOON_RESPONSE },
	{ "huge range count", HV_DM_UNBALLOON_REQUEST, 24, 24, 0, U32_MAX,
	  HV_DM_UNBALLOON_RESPONSE },
	{ "bad unballoon with more to come", HV_DM_UNBALLOON_REQUEST, 24, 24,
	  HV_DM_MORE_PAGES, 3 },
	{ "hot add too short", HV_DM_HOT_ADD_REQUEST, 8, 8, 0, 0,
	  HV_DM_HOT_ADD_RESPONSE },
	{ "response to no request", HV_DM_CAPABILITIES_RESPONSE, 16, 16, 1 },
	{ "info past the message", HV_DM_INFO_MESSAGE, 24, 24, 0, 100 },
};

static void hvb_bad_desc(const struct hvb_bad_case *c, char *desc)
{
	strscpy(desc, c->name, KUNIT_PARAM_DESC_SIZE);
}

KUNIT_ARRAY_PARAM(hvb_bad, hvb_bad_cases, hvb_bad_desc);

static void hv_balloon_test_malformed(struct kunit *test)
{
	const struct hvb_bad_case *c = test->param_value;
	struct hvb_fake *f = hvb_ready(test, false);
	u8 buf[64] __aligned(8) = {};
	struct hv_dm_hdr *hdr = (void *)buf;
	unsigned long ram = totalram_pages();
	unsigned int sent;

	/* Status reports would be counted as answers. */
	cancel_delayed_work_sync(&f->dm.status_work);
	sent = hvb_total_sent(f);

	hdr->type = c->type;
	hdr->size = c->size;
	hdr->trans_id = 5;
	memcpy(buf + sizeof(*hdr), &c->word0, sizeof(u32));
	memcpy(buf + sizeof(*hdr) + sizeof(u32), &c->word1, sizeof(u32));
	hvb_host(f, buf, c->len);

	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_BAD_MESSAGES), 1UL);
	KUNIT_EXPECT_EQ(test, hvb_total_sent(f), sent + !!c->answer);
	if (c->answer) {
		struct hv_dm_balloon_resp *b;
		struct hv_dm_hot_add_resp *h;

		KUNIT_ASSERT_EQ(test, hvb_count(f, c->answer), 1U);
		b = hvb_nth(f, HV_DM_BALLOON_RESPONSE, 0);
		if (b)	/* no ranges, no more */
			KUNIT_EXPECT_EQ(test, b->flags, 0U);
		h = hvb_nth(f, HV_DM_HOT_ADD_RESPONSE, 0);
		if (h) {	/* nothing added, and the same won't work later */
			KUNIT_EXPECT_EQ(test, h->page_count, 0U);
			KUNIT_EXPECT_EQ(test, h->result, 1U);
		}
	}
	KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_READY);
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 0UL);
	KUNIT_EXPECT_EQ(test, f->dm.max_page_count, 0ULL);
	KUNIT_EXPECT_TRUE(test, list_empty(&f->dm.regions));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
}

/* The last status report the guest sent. */
static struct hv_dm_status *hvb_status(struct kunit *test, struct hvb_fake *f)
{
	struct hv_dm_status *st;

	hv_dm_post_status(&f->dm);
	st = hvb_nth(f, HV_DM_STATUS_REPORT,
		     hvb_count(f, HV_DM_STATUS_REPORT) - 1);
	KUNIT_ASSERT_NOT_NULL(test, st);
	KUNIT_EXPECT_EQ(test, st->hdr.size, (u16)sizeof(*st));
	return st;
}

/*
 * Every figure exact: committed memory is the guest's own plus the
 * balloon, the floor and hot-added memory that is backed but not online.
 */
static void hv_balloon_test_status(struct kunit *test)
{
	struct hvb_fake *f = hvb_new(test, false);
	struct hv_dm_hot_add_req add = {
		.hdr = { .type = HV_DM_HOT_ADD_REQUEST, .size = sizeof(add) },
		.range = hv_dm_range(HVB_HA_PFN, 700),
		.region = hv_dm_range(HVB_HA_PFN, 2 * HVB_BLOCK),
	};
	struct hv_dm_status *st;

	f->fixed_meminfo = true;
	f->meminfo.avail = 200000;
	f->meminfo.committed = 777;
	f->meminfo.swap_free = 4321;
	f->dm.floor_pages = 1000;
	KUNIT_ASSERT_EQ(test, hv_dm_start(&f->dm), 0);
	cancel_delayed_work_sync(&f->dm.status_work);

	st = hvb_status(test, f);
	KUNIT_EXPECT_EQ(test, st->num_avail, 200000ULL);
	KUNIT_EXPECT_EQ(test, st->num_committed, 777ULL + 1000);
	KUNIT_EXPECT_EQ(test, st->page_file_size, 4321ULL);
	KUNIT_EXPECT_EQ(test, st->zero_free, 0ULL);

	hvb_balloon_req(f, 512);
	KUNIT_ASSERT_EQ(test, f->dm.balloon_pages, 512UL);
	st = hvb_status(test, f);
	KUNIT_EXPECT_EQ(test, st->num_committed, 777ULL + 1000 + 512);

	/* 700 hpages backed in two new blocks, none online yet. */
	hvb_host(f, &add, sizeof(add));
	st = hvb_status(test, f);
	KUNIT_EXPECT_EQ(test, st->num_committed, 777ULL + 1000 + 512 + 700);

	/* The first block goes online: 512 of them are the guest's now. */
	hv_dm_pages_online(&f->dm, HVB_HA_PFN, HVB_BLOCK);
	st = hvb_status(test, f);
	KUNIT_EXPECT_EQ(test, st->num_committed, 777ULL + 1000 + 512 + 188);

	/* The second too; later backing of an online block counts at once. */
	hv_dm_pages_online(&f->dm, HVB_HA_PFN + HVB_BLOCK, HVB_BLOCK);
	add.range = hv_dm_range(HVB_HA_PFN + 700, 100);
	hvb_host(f, &add, sizeof(add));
	KUNIT_EXPECT_EQ(test, f->onlined, 800UL);
	st = hvb_status(test, f);
	KUNIT_EXPECT_EQ(test, st->num_committed, 777ULL + 1000 + 512);
	KUNIT_EXPECT_EQ(test, st->num_avail, 200000ULL);
}

/*
 * A status report that finds the ring full is skipped at once: it runs
 * from freezable work, and waiting for the host would hold up a suspend.
 */
static void hv_balloon_test_status_ring_full(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	unsigned int sent;

	cancel_delayed_work_sync(&f->dm.status_work);
	sent = hvb_count(f, HV_DM_STATUS_REPORT);
	f->full_type = HV_DM_STATUS_REPORT;
	f->full_tries = 3;
	hv_dm_post_status(&f->dm);
	KUNIT_EXPECT_EQ(test, f->full_seen, 1U);
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_STATUS_REPORT), sent);

	f->full_type = 0;
	hv_dm_post_status(&f->dm);
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_STATUS_REPORT), sent + 1);
}

/* The channel takes the largest message a host sends: 510 ranges. */
static void hv_balloon_test_large_message(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	struct vmbus_channel *chan;
	struct hv_dm_unballoon_req *req;
	struct hv_dm_balloon_resp *resp;
	unsigned long ram = totalram_pages();
	unsigned long ranges;
	unsigned int i;

	/* What vmbus gives a new channel, then what the driver asks. */
	chan = kunit_kzalloc(test, sizeof(*chan), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, chan);
	chan->max_pkt_size = VMBUS_DEFAULT_MAX_PKT_SIZE;
	hv_balloon_size_channel(chan);
	KUNIT_EXPECT_GE(test, chan->max_pkt_size,
			(u32)(sizeof(struct vmpacket_descriptor) +
			      struct_size(req, ranges, 510)));
	KUNIT_EXPECT_EQ(test, struct_size(req, ranges, 510), (size_t)4096);
	KUNIT_EXPECT_GE(test, sizeof_field(struct hv_balloon, recv_buf),
			struct_size(req, ranges, 510));

	/* 510 single pages, one range each, then all back in one message. */
	f->no_2m = true;
	f->scatter = true;
	hvb_balloon_req(f, 510);
	KUNIT_ASSERT_EQ(test, f->dm.balloon_pages, 510UL);
	KUNIT_ASSERT_EQ(test, hvb_count(f, HV_DM_BALLOON_RESPONSE), 1U);
	resp = hvb_nth(f, HV_DM_BALLOON_RESPONSE, 0);
	/* Read first: sparse takes FIELD_GET() in a KUnit macro as too long. */
	ranges = FIELD_GET(HV_DM_RESP_RANGE_COUNT, resp->flags);
	KUNIT_ASSERT_EQ(test, ranges, 510UL);
	req = kunit_kzalloc(test, HV_DM_MSG_MAX, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, req);
	req->hdr.type = HV_DM_UNBALLOON_REQUEST;
	req->hdr.size = struct_size(req, ranges, 510);
	req->range_count = 510;
	for (i = 0; i < 510; i++)
		req->ranges[i] = resp->ranges[i];
	hvb_host(f, req, req->hdr.size);
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_UNBALLOON_RESPONSE), 1U);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_BAD_MESSAGES), 0UL);
}

static void hvb_hot_add_req(struct hvb_fake *f, unsigned long pfn,
			    unsigned long count, bool region)
{
	struct hv_dm_hot_add_req add = {
		.hdr = { .type = HV_DM_HOT_ADD_REQUEST,
			 .size = region ? sizeof(add) :
				 offsetof(struct hv_dm_hot_add_req, region) },
		.range = hv_dm_range(pfn, count),
		.region = hv_dm_range(pfn, count),
	};

	hvb_host(f, &add, add.hdr.size);
}

static struct hv_dm_hot_add_resp *hvb_ha_resp(struct kunit *test,
					      struct hvb_fake *f,
					      unsigned int n)
{
	struct hv_dm_hot_add_resp *resp = hvb_nth(f, HV_DM_HOT_ADD_RESPONSE, n);

	KUNIT_ASSERT_NOT_NULL(test, resp);
	return resp;
}

/*
 * An older host names no region and goes on where its last request
 * ended: the region grows, and every request is served in full.
 */
static void hv_balloon_test_hot_add_continues(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	const unsigned long b = HVB_HA_PFN + 64 * HVB_BLOCK;
	struct hv_dm_region *r;

	hvb_hot_add_req(f, HVB_HA_PFN, 700, false);
	hvb_hot_add_req(f, HVB_HA_PFN + 700, 700, false);
	hvb_hot_add_req(f, HVB_HA_PFN + 1400, 300, false);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 0)->page_count, 700U);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 1)->page_count, 700U);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 2)->page_count, 300U);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 1)->result, 1U);
	KUNIT_EXPECT_EQ(test, f->adds, 4U);	/* 1700 hpages: 4 blocks */
	r = hv_dm_find_region(&f->dm, HVB_HA_PFN);
	KUNIT_ASSERT_NOT_NULL(test, r);
	KUNIT_EXPECT_EQ(test, r->end_pfn, HVB_HA_PFN + 4 * HVB_BLOCK);
	KUNIT_EXPECT_EQ(test, r->backed_end_pfn, HVB_HA_PFN + 1700);
	KUNIT_EXPECT_TRUE(test, list_is_singular(&f->dm.regions));

	/* Blocks that went online before the region grew stay online. */
	hv_dm_pages_online(&f->dm, HVB_HA_PFN, 4 * HVB_BLOCK);
	KUNIT_EXPECT_EQ(test, f->onlined, 1700UL);

	/* With a gap: the skipped hpages stay offline. */
	hvb_hot_add_req(f, b, 700, false);
	hvb_hot_add_req(f, b + 800, 400, false);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 4)->page_count, 400U);
	KUNIT_EXPECT_EQ(test, f->adds, 4U + 3);
	r = hv_dm_find_region(&f->dm, b);
	KUNIT_ASSERT_NOT_NULL(test, r);
	KUNIT_EXPECT_FALSE(test, hv_dm_pfn_backed(r, b + 750));
	KUNIT_EXPECT_TRUE(test, hv_dm_pfn_backed(r, b + 1100));
	hv_dm_pages_online(&f->dm, b, 3 * HVB_BLOCK);
	KUNIT_EXPECT_EQ(test, f->onlined, 1700UL + 1100);

	/* A region cannot grow into the next one. */
	hvb_hot_add_req(f, HVB_HA_PFN + 1700, 64 * HVB_BLOCK, false);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 5)->page_count,
			(u32)(4 * HVB_BLOCK - 1700));
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_HOT_ADDED),
			4 * HVB_BLOCK + 1100);
}

/* Result 0 ("try again") only when a later attempt may work. */
static void hv_balloon_test_hot_add_result(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);

	/* Memory short for the memmap: transient. */
	f->add_memory_ret = -ENOMEM;
	hvb_hot_add_req(f, HVB_HA_PFN, 100, true);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 0)->page_count, 0U);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 0)->result, 0U);

	/* The range cannot be added at all: final. */
	f->add_memory_ret = -EINVAL;
	hvb_hot_add_req(f, HVB_HA_PFN, 100, true);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 1)->page_count, 0U);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 1)->result, 1U);

	/* Past the guest's address space: final. */
	f->add_memory_ret = 0;
	hvb_hot_add_req(f, hv_dm_max_pfn() + 1 - 256, 512, true);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 2)->page_count, 0U);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 2)->result, 1U);

	/* Served: success. */
	hvb_hot_add_req(f, HVB_HA_PFN, 100, true);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 3)->page_count, 100U);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 3)->result, 1U);

	/* Hot add off: final. */
	f->dm.hot_add = false;
	hvb_hot_add_req(f, HVB_HA_PFN + HVB_BLOCK, 100, true);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 4)->page_count, 0U);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 4)->result, 1U);
	KUNIT_EXPECT_EQ(test, f->adds, 1U);
}

/*
 * The ring is full after the first of three responses went out: the host
 * has HV_DM_MORE_PAGES and waits for the rest, so the driver waits for
 * room rather than give up.
 */
static void hv_balloon_test_send_waits_for_room(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	unsigned int msgs;

	f->no_2m = true;
	f->scatter = true;
	f->full_type = HV_DM_BALLOON_RESPONSE;
	f->full_skip = 1;
	f->full_tries = 12;	/* about 0.6 s of backing off */
	hvb_balloon_req(f, 1200);
	KUNIT_EXPECT_EQ(test, f->full_seen, 12U);
	KUNIT_EXPECT_EQ(test, hvb_check_balloon_resps(test, f, &msgs), 1200UL);
	KUNIT_EXPECT_EQ(test, msgs, 3U);
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 1200UL);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_SHORT), 0UL);
}

/* A ring that stays full: the send gives up when the session ends. */
static void hv_balloon_test_send_ends_with_session(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	unsigned long ram = totalram_pages();

	f->full_type = HV_DM_BALLOON_RESPONSE;
	f->full_tries = -1;
	hvb_balloon_req_nowait(f, 100);
	msleep(300);
	KUNIT_EXPECT_GT(test, f->full_seen, 3U);
	hv_dm_stop(&f->dm);
	KUNIT_EXPECT_EQ(test, f->dm.state, HV_DM_STOPPED);
	/* The host never learned of the pages: they are the guest's. */
	KUNIT_EXPECT_EQ(test, f->dm.balloon_pages, 0UL);
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_BALLOON_RESPONSE), 0U);
}

/*
 * Requests that meet a full receive queue are still answered, each
 * exactly once.
 */
static void hv_balloon_test_lost_requests_answered(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	struct hv_dm_balloon_req req = {
		.hdr = { .type = HV_DM_BALLOON_REQUEST, .size = sizeof(req) },
		.num_pages = 1,
	};
	struct hv_dm_hot_add_req add = {
		.hdr = { .type = HV_DM_HOT_ADD_REQUEST, .size = sizeof(add) },
		.range = hv_dm_range(HVB_HA_PFN, 10),
	};
	const unsigned int n = HV_DM_RX_QUEUE_MIN + 10;
	unsigned int i, j, served;

	cancel_delayed_work_sync(&f->dm.status_work);
	/* Hold the receive work back while the host floods. */
	mutex_lock(&f->dm.lock);
	for (i = 0; i < n; i++)
		hv_dm_receive(&f->dm, &req, sizeof(req));
	hv_dm_receive(&f->dm, &add, sizeof(add));
	mutex_unlock(&f->dm.lock);
	flush_work(&f->dm.rx_work);

	KUNIT_EXPECT_GE(test, hv_dm_counter(&f->dm, HV_DM_C_LOST), 9UL);
	KUNIT_EXPECT_EQ(test, hvb_count(f, HV_DM_BALLOON_RESPONSE), n);
	served = 0;
	for (i = 0; i < n; i++) {
		struct hv_dm_balloon_resp *r = hvb_nth(f, HV_DM_BALLOON_RESPONSE,
						       i);

		KUNIT_EXPECT_FALSE(test, r->flags & HV_DM_MORE_PAGES);
		j = FIELD_GET(HV_DM_RESP_RANGE_COUNT, r->flags);
		served += j;
	}
	KUNIT_EXPECT_EQ(test, (unsigned long)served, f->dm.balloon_pages);
	/* Every balloon request lost, and the hot-add. */
	KUNIT_EXPECT_EQ(test, (unsigned long)(n - served + 1),
			hv_dm_counter(&f->dm, HV_DM_C_LOST));
	/* The lost hot-add may be retried. */
	KUNIT_ASSERT_EQ(test, hvb_count(f, HV_DM_HOT_ADD_RESPONSE), 1U);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 0)->page_count, 0U);
	KUNIT_EXPECT_EQ(test, hvb_ha_resp(test, f, 0)->result, 0U);
	KUNIT_EXPECT_EQ(test, f->adds, 0U);
}

static struct kunit_case hv_balloon_test_cases[] = {
	KUNIT_CASE(hv_balloon_test_negotiate_newest),
	KUNIT_CASE(hv_balloon_test_negotiate_fallback),
	KUNIT_CASE(hv_balloon_test_negotiate_all_refused),
	KUNIT_CASE(hv_balloon_test_caps_rejected),
	KUNIT_CASE(hv_balloon_test_balloon_up_down),
	KUNIT_CASE(hv_balloon_test_balloon_up_partial),
	KUNIT_CASE(hv_balloon_test_balloon_up_fallback),
	KUNIT_CASE(hv_balloon_test_balloon_up_batches),
	KUNIT_CASE(hv_balloon_test_balloon_down_rejects),
	KUNIT_CASE(hv_balloon_test_hibernation_refuses),
	KUNIT_CASE(hv_balloon_test_hot_add),
	KUNIT_CASE(hv_balloon_test_suspend_resume),
	KUNIT_CASE(hv_balloon_test_resume_fails),
	KUNIT_CASE(hv_balloon_test_wrong_trans_id),
	KUNIT_CASE(hv_balloon_test_negotiate_other_trans_ids),
	KUNIT_CASE_PARAM(hv_balloon_test_malformed, hvb_bad_gen_params),
	KUNIT_CASE(hv_balloon_test_status),
	KUNIT_CASE(hv_balloon_test_status_ring_full),
	KUNIT_CASE(hv_balloon_test_large_message),
	KUNIT_CASE(hv_balloon_test_hot_add_continues),
	KUNIT_CASE(hv_balloon_test_hot_add_result),
	KUNIT_CASE(hv_balloon_test_send_waits_for_room),
	KUNIT_CASE(hv_balloon_test_send_ends_with_session),
	KUNIT_CASE(hv_balloon_test_lost_requests_answered),
	{}
};

static struct kunit_suite hv_balloon_test_suite = {
	.name = "hv_balloon",
	.exit = hvb_exit,
	.test_cases = hv_balloon_test_cases,
};

kunit_test_suite(hv_balloon_test_suite);
