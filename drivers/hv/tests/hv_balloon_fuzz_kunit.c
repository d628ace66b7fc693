// SPDX-License-Identifier: GPL-2.0-only
/*
 * Fuzzing the Hyper-V Dynamic Memory protocol core with host messages.
 *
 * HVF_MESSAGES messages, from a fixed seed that the log shows, reach the
 * protocol core: one in HVF_QUEUED through hv_dm_receive() and the
 * receive work, as the channel callback delivers them, the others
 * straight to hv_dm_handle() under the lock as the receive work calls it,
 * which keeps the run short under TCG. They are random bytes,
 * and valid messages of every type the host sends, half of them mutated
 * (length, size field, type, range count, transaction id, ranges, any
 * byte). The fake host of hv_balloon_kunit.c answers in tally mode.
 *
 * An oracle written apart from the driver says, for each message, whether
 * it is valid and whether the host waits for an answer. After each one:
 *
 *  - a message the host waits on got exactly one final answer, any other
 *    none;
 *  - an invalid message was counted as bad and changed nothing: balloon,
 *    regions, backing, the host's page limit, the session;
 *  - the balloon holds exactly the pages the responses named less those
 *    given back.
 *
 * KASAN, UBSAN and lockdep in the KUnit kernel catch the rest; the
 * harness fails the run on any splat in the log.
 */

#define HVF_SEED	0x68765f62616c6c6fULL	/* "hv_ballo" */
#define HVF_MESSAGES	100000U
#define HVF_BUDGET	32		/* hpages per balloon request */
#define HVF_WINDOW	(256 * HVB_BLOCK) /* where valid hot-adds land */
#define HVF_QUEUED	8		/* one message in this many is queued */

struct hvf_rng {
	u64 s;
};

/* xorshift64*: small, and the same on every kernel. */
static u64 hvf_next(struct hvf_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dULL;
}

static u32 hvf_below(struct hvf_rng *r, u32 n)
{
	return (u32)(((hvf_next(r) >> 32) * n) >> 32);
}

/* Wire fields at any offset; Hyper-V guests are little-endian. */
static u32 hvf_get(const u8 *buf, unsigned int at, unsigned int size)
{
	u32 v = 0;

	memcpy(&v, buf + at, size);
	return v;
}

static u64 hvf_get64(const u8 *buf, unsigned int at)
{
	u64 v;

	memcpy(&v, buf + at, sizeof(v));
	return v;
}

static void hvf_put(u8 *buf, unsigned int at, const void *v, size_t size)
{
	memcpy(buf + at, v, size);
}

/* What the protocol says of a message, worked out without the driver. */
struct hvf_verdict {
	bool valid;
	bool answer;	/* the host waits for exactly one answer */
};

static struct hvf_verdict hvf_judge(const u8 *buf, u32 len)
{
	struct hvf_verdict v = {};
	u16 type, size;
	u32 w0, w1;

	if (len < 8)
		return v;
	type = hvf_get(buf, 0, 2);
	size = hvf_get(buf, 2, 2);
	if (type == HV_DM_BALLOON_REQUEST || type == HV_DM_HOT_ADD_REQUEST)
		v.answer = true;
	if (type == HV_DM_UNBALLOON_REQUEST)
		v.answer = len < 12 || !(hvf_get(buf, 8, 4) & 1);

	if (size > len || size < 8 || len - size >= 8)
		return v;
	switch (type) {
	case HV_DM_VERSION_RESPONSE:
	case HV_DM_CAPABILITIES_RESPONSE:
		/* Valid in form, but nothing waits for one. */
		return v;
	case HV_DM_BALLOON_REQUEST:
	case HV_DM_HOT_ADD_REQUEST:
		v.valid = size >= 16;
		return v;
	case HV_DM_UNBALLOON_REQUEST:
		v.valid = size >= 16 &&
			  hvf_get(buf, 12, 4) <= (size - 16) / 8;
		return v;
	case HV_DM_INFO_MESSAGE:
		if (size < 16 + 8)
			return v;
		w0 = hvf_get(buf, 12, 4);	/* info size */
		w1 = hvf_get(buf, 20, 4);	/* its data size */
		v.valid = w0 <= size - 16 && w0 >= 8 && w1 <= w0 - 8;
		return v;
	}
	return v;
}

struct hvf_snapshot {
	unsigned long balloon_pages;
	unsigned long regions;
	unsigned long ha_backed;
	u64 max_page_count;
	enum hv_dm_state state;
	unsigned long ram;
};

static void hvf_snap(struct hv_dm *dm, struct hvf_snapshot *s)
{
	struct hv_dm_region *r;

	memset(s, 0, sizeof(*s));	/* padding too: compared with memcmp */
	mutex_lock(&dm->lock);
	s->balloon_pages = dm->balloon_pages;
	s->regions = 0;
	list_for_each_entry(r, &dm->regions, list)
		s->regions++;
	s->ha_backed = dm->ha_backed;
	s->max_page_count = dm->max_page_count;
	s->state = dm->state;
	mutex_unlock(&dm->lock);
	s->ram = totalram_pages();
}

/* A valid message of a random kind; returns its length. */
static u32 hvf_valid(struct hvf_rng *r, struct hvb_fake *f, u8 *buf)
{
	struct hv_dm_hdr *hdr = (void *)buf;
	u32 kind = hvf_below(r, 6), i, n;

	hdr->trans_id = hvf_next(r);
	switch (kind) {
	case 0: {
		struct hv_dm_balloon_req *req = (void *)buf;

		hdr->type = HV_DM_BALLOON_REQUEST;
		hdr->size = sizeof(*req);
		req->num_pages = hvf_below(r, 2 * HVF_BUDGET);
		return hdr->size;
	}
	case 1:
	case 2: {
		struct hv_dm_unballoon_req *req = (void *)buf;

		/* Ranges the guest gave lately, a part of one, or any. */
		n = 1 + hvf_below(r, kind == 1 ? 4 : 509);
		hdr->type = HV_DM_UNBALLOON_REQUEST;
		hdr->size = struct_size(req, ranges, n);
		req->flags = hvf_below(r, 4) ? 0 : HV_DM_MORE_PAGES;
		req->range_count = n;
		for (i = 0; i < n; i++) {
			u64 rg = f->nr_recent ?
				 f->recent[hvf_below(r, min_t(u32, f->nr_recent,
						      ARRAY_SIZE(f->recent)))] :
				 hvf_next(r);

			if (!hvf_below(r, 8))
				rg = hvf_next(r);
			req->ranges[i] = rg;
		}
		return hdr->size;
	}
	case 3: {
		struct hv_dm_hot_add_req *req = (void *)buf;
		unsigned long pfn = HVB_HA_PFN + hvf_below(r, HVF_WINDOW);
		unsigned long count = 1 + hvf_below(r, 4 * HVB_BLOCK);

		hdr->type = HV_DM_HOT_ADD_REQUEST;
		hdr->size = hvf_below(r, 2) ? sizeof(*req) :
			    offsetof(struct hv_dm_hot_add_req, region);
		req->range = hv_dm_range(pfn, count);
		req->region = hv_dm_range(ALIGN_DOWN(pfn, HVB_BLOCK),
					  ALIGN(count, HVB_BLOCK) + HVB_BLOCK);
		return hdr->size;
	}
	case 4: {
		struct hv_dm_info_msg *msg = (void *)buf;
		struct hv_dm_info_hdr *info = (void *)msg->info;
		u64 limit = hvf_next(r);

		hdr->type = HV_DM_INFO_MESSAGE;
		msg->info_size = sizeof(*info) + sizeof(limit);
		hdr->size = sizeof(*msg) + msg->info_size;
		info->type = hvf_below(r, 2);
		info->data_size = sizeof(limit);
		memcpy(info + 1, &limit, sizeof(limit));
		return hdr->size;
	}
	default: {
		struct hv_dm_version_resp *resp = (void *)buf;

		hdr->type = hvf_below(r, 2) ? HV_DM_VERSION_RESPONSE :
			    HV_DM_CAPABILITIES_RESPONSE;
		hdr->size = sizeof(*resp);
		resp->flags = hvf_below(r, 2);
		return hdr->size;
	}
	}
}

/* Change one thing a host could get wrong; returns the new length. */
static u32 hvf_mutate(struct hvf_rng *r, u8 *buf, u32 len)
{
	struct hv_dm_hdr *hdr = (void *)buf;

	switch (hvf_below(r, 8)) {
	case 0:		/* the length */
		if (hvf_below(r, 2))
			return clamp_t(s32, (s32)len + (s32)hvf_below(r, 33) - 16,
				       0, HV_DM_MSG_MAX);
		return hvf_below(r, HV_DM_MSG_MAX + 1);
	case 1:		/* the size field */
		hdr->size = hvf_below(r, 2) ? hdr->size + hvf_below(r, 17) - 8 :
			    hvf_next(r);
		return len;
	case 2:		/* the type */
		hdr->type = hvf_below(r, 16);
		return len;
	case 3:		/* a range count, where unballoon keeps it */
		if (len >= 16) {
			u32 count = hvf_below(r, 4) ? hvf_below(r, 1024) :
				    (u32)hvf_next(r);

			hvf_put(buf, 12, &count, sizeof(count));
		}
		return len;
	case 4:		/* the transaction id */
		hdr->trans_id = hvf_next(r);
		return len;
	case 5:		/* a range: any word after the header */
		if (len >= 16) {
			u32 at = 8 + 8 * hvf_below(r, (len - 8) / 8);

			u64 word = hvf_get64(buf, at) ^
				   BIT_ULL(hvf_below(r, 64));

			if (at + 8 <= len)
				hvf_put(buf, at, &word, sizeof(word));
		}
		return len;
	default:	/* any byte */
		if (len)
			buf[hvf_below(r, len)] = hvf_next(r);
		return len;
	}
}

static void hv_balloon_fuzz_test_messages(struct kunit *test)
{
	struct hvb_fake *f = hvb_ready(test, false);
	u64 counts[2][2] = {};	/* [valid][answer] */
	struct hvf_rng rng = { .s = HVF_SEED };
	unsigned long given_back = 0, failures = 0;
	unsigned long ram = totalram_pages();
	ktime_t t0 = ktime_get();
	u32 i, b, dirty = HV_DM_MSG_MAX;
	u8 *buf;

	buf = kunit_kzalloc(test, HV_DM_MSG_MAX, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, buf);
	kunit_info(test, "seed %#llx, %u messages\n", HVF_SEED, HVF_MESSAGES);
	cancel_delayed_work_sync(&f->dm.status_work);
	f->tally = true;

	for (i = 0; i < HVF_MESSAGES; i++) {
		struct hvf_snapshot before, after;
		unsigned long answers = f->answers;
		unsigned long bad = hv_dm_counter(&f->dm, HV_DM_C_BAD_MESSAGES);
		struct hvf_verdict v;
		const char *what = NULL;
		u32 len;

		memset(buf, 0, dirty);
		if (!hvf_below(&rng, 8)) {
			len = hvf_below(&rng, hvf_below(&rng, 4) ? 64 :
					HV_DM_MSG_MAX + 1);
			for (b = 0; b < len; b++)
				buf[b] = hvf_next(&rng);
			dirty = len;
		} else {
			len = hvf_valid(&rng, f, buf);
			dirty = len;
			if (hvf_below(&rng, 2))
				len = hvf_mutate(&rng, buf, len);
			dirty = max(dirty, len);
		}
		v = hvf_judge(buf, len);
		counts[v.valid][v.answer]++;

		hvf_snap(&f->dm, &before);
		f->budget = HVF_BUDGET;
		f->no_2m = hvf_below(&rng, 2);
		f->add_budget = 4;
		if (i % HVF_QUEUED) {
			mutex_lock(&f->dm.lock);
			hv_dm_handle(&f->dm, buf, len);
			mutex_unlock(&f->dm.lock);
		} else {
			hvb_host(f, buf, len);
		}
		hvf_snap(&f->dm, &after);

		if (f->answers - answers != v.answer)
			what = "answers";
		else if (!v.valid &&
			 hv_dm_counter(&f->dm, HV_DM_C_BAD_MESSAGES) != bad + 1)
			what = "invalid but not counted";
		else if (v.valid &&
			 hv_dm_counter(&f->dm, HV_DM_C_BAD_MESSAGES) != bad)
			what = "valid but counted bad";
		else if (!v.valid && memcmp(&before, &after, sizeof(before)))
			what = "invalid changed state";
		else if (after.state != HV_DM_READY)
			what = "session lost";
		else if (f->answered_pages - given_back -
			 hv_dm_counter(&f->dm, HV_DM_C_UNBALLOONED) !=
			 after.balloon_pages)
			what = "balloon and responses disagree";
		if (what && failures++ < 10)
			kunit_err(test, "message %u (type %u, %u bytes): %s\n",
				  i, len >= 2 ? hvf_get(buf, 0, 2) : 0,
				  len, what);

		/* Keep the balloon small; the host never learns of this. */
		if (after.balloon_pages > 8192) {
			mutex_lock(&f->dm.lock);
			given_back += f->dm.balloon_pages;
			hv_dm_give_back_all(&f->dm);
			mutex_unlock(&f->dm.lock);
		}
	}

	KUNIT_EXPECT_EQ(test, failures, 0UL);
	KUNIT_EXPECT_EQ(test, hv_dm_counter(&f->dm, HV_DM_C_LOST), 0UL);
	mutex_lock(&f->dm.lock);
	hv_dm_give_back_all(&f->dm);
	mutex_unlock(&f->dm.lock);
	KUNIT_EXPECT_TRUE(test, xa_empty(&f->dm.held));
	KUNIT_EXPECT_EQ(test, totalram_pages(), ram);
	kunit_info(test, "valid %llu (%llu answered), invalid %llu (%llu answered), %lu bad, %lu hpages ballooned, %lu hot-added, %lld ms\n",
		   counts[1][0] + counts[1][1], counts[1][1],
		   counts[0][0] + counts[0][1], counts[0][1],
		   hv_dm_counter(&f->dm, HV_DM_C_BAD_MESSAGES),
		   hv_dm_counter(&f->dm, HV_DM_C_BALLOONED),
		   hv_dm_counter(&f->dm, HV_DM_C_HOT_ADDED),
		   ktime_ms_delta(ktime_get(), t0));
}

static struct kunit_case hv_balloon_fuzz_test_cases[] = {
	KUNIT_CASE(hv_balloon_fuzz_test_messages),
	{}
};

static struct kunit_suite hv_balloon_fuzz_test_suite = {
	.name = "hv_balloon_fuzz",
	.exit = hvb_exit,
	.test_cases = hv_balloon_fuzz_test_cases,
};

kunit_test_suite(hv_balloon_fuzz_test_suite);
