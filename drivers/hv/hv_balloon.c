// SPDX-License-Identifier: GPL-2.0-only
/*
 * Hyper-V Dynamic Memory guest driver, with hibernation (ACPI S4) support.
 *
 * Vocabulary
 * ----------
 * DM        Dynamic Memory: the Hyper-V service that sizes a guest's memory.
 *           Its host side (the VSP) talks to this driver over one VMBus
 *           channel in the messages defined below.
 * hpage     The 4 KiB page of the protocol. Every count and frame number on
 *           the wire is in hpages; this driver requires PAGE_SIZE == 4 KiB
 *           (Kconfig), so an hpage is a guest page.
 * range     A run of hpages on the wire: a 40-bit start frame and a 24-bit
 *           count packed into one 64-bit word.
 * balloon   Pages the guest gave to the host on a balloon-up request. They
 *           are PageOffline, out of the managed count, and recorded in
 *           @held so that balloon down frees only what was taken.
 * hot-add   The host grows the guest past its boot size: it names a region
 *           to add and, within it, the hpages it backs. Memory is added in
 *           whole memory blocks; hpages of an added block that the host
 *           has not backed yet are kept offline by the online callback
 *           until a later request backs them.
 * session   One negotiated conversation: version, then capabilities, then
 *           requests and status reports until the channel closes.
 *
 * Layers
 * ------
 * The protocol (hv_dm_*) validates messages, runs the session state machine
 * and keeps the balloon and hot-add bookkeeping. It reaches the host, the
 * page allocator and memory hotplug only through struct hv_dm_ops, so that
 * KUnit plays the host (tests/: two independent fake hosts and a fuzzer)
 * without VMBus. The VMBus transport (hv_balloon_*) owns the channel,
 * probe, remove and the PM callbacks.
 *
 * Context and locking
 * -------------------
 * The channel callback runs in softirq context. hv_dm_receive() only copies
 * each packet to @rx_queue (under @rx_lock, a spinlock) and queues
 * @rx_work, which handles the messages in order, in process context, under
 * @lock. @lock (a mutex) protects the session state and all bookkeeping.
 * A response may wait under @lock for room in the ring; the host empties
 * the ring whatever the guest does, and host messages reach @rx_queue
 * without @lock, so that wait ends. Lock order: @lock, then @rx_lock.
 * Status reports come from @status_work on the freezable workqueue, read
 * counters only and never wait for the ring (see hv_dm_post_status()).
 *
 * Hibernation
 * -----------
 * The host does not carry a balloon or hot-added memory across a guest's
 * hibernation. A guest that may hibernate, which is what
 * hv_is_hibernation_supported() says at probe, therefore never resizes:
 * each balloon-up, balloon-down and hot-add request is answered with
 * "nothing done" so the host is never left waiting, and status reports go
 * on. The capabilities are still advertised, because hosts refuse a guest
 * that does not offer them.
 *
 * Suspend (freeze and poweroff) ends the session: status reports stop,
 * in-flight messages finish, the channel closes and queued messages are
 * dropped. Resume (thaw and restore) opens the channel and negotiates a
 * new session. Pages still ballooned at suspend (only possible when S4 was
 * not offered at probe) are returned to the guest first: the new session
 * starts from an empty balloon, and a host that still wants the memory
 * asks for it again. Hot-added memory stays; it cannot be removed.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bitfield.h>
#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/hyperv.h>
#include <linux/memory.h>
#include <linux/memory_hotplug.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/swap.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <asm/mshyperv.h>

/*
 * Wire format. Hyper-V guests are little-endian (Kconfig), so the messages
 * are plain structures; bit fields are spelled as masks.
 */
#define HV_DM_VERSION(major, minor)	(((major) << 16) | (minor))
#define HV_DM_VERSION_WIN7		HV_DM_VERSION(0, 3)
#define HV_DM_VERSION_WIN8		HV_DM_VERSION(1, 0)
#define HV_DM_VERSION_WIN10		HV_DM_VERSION(2, 0)

enum hv_dm_msg_type {
	HV_DM_ERROR_REPORT		= 0,
	HV_DM_VERSION_REQUEST		= 1,
	HV_DM_VERSION_RESPONSE		= 2,
	HV_DM_CAPABILITIES_REPORT	= 3,
	HV_DM_CAPABILITIES_RESPONSE	= 4,
	HV_DM_STATUS_REPORT		= 5,
	HV_DM_BALLOON_REQUEST		= 6,
	HV_DM_BALLOON_RESPONSE		= 7,
	HV_DM_UNBALLOON_REQUEST		= 8,
	HV_DM_UNBALLOON_RESPONSE	= 9,
	HV_DM_HOT_ADD_REQUEST		= 10,
	HV_DM_HOT_ADD_RESPONSE		= 11,
	HV_DM_INFO_MESSAGE		= 12,
};

struct hv_dm_hdr {
	u16 type;
	u16 size;		/* of the whole message, header included */
	u32 trans_id;
} __packed;

#define HV_DM_RANGE_START	GENMASK_ULL(39, 0)
#define HV_DM_RANGE_COUNT	GENMASK_ULL(63, 40)
#define HV_DM_RANGE_MAX_COUNT	((u32)FIELD_MAX(HV_DM_RANGE_COUNT))

struct hv_dm_version_req {
	struct hv_dm_hdr hdr;
	u32 version;
	u32 flags;
} __packed;
#define HV_DM_VERSION_LAST_ATTEMPT	BIT(0)

struct hv_dm_version_resp {
	struct hv_dm_hdr hdr;
	u64 flags;
} __packed;
#define HV_DM_ACCEPTED			BIT_ULL(0)

struct hv_dm_caps_report {
	struct hv_dm_hdr hdr;
	u64 caps;
	u64 min_page_count;
	u64 max_page_number;
} __packed;
#define HV_DM_CAP_BALLOON		BIT_ULL(0)
#define HV_DM_CAP_HOT_ADD		BIT_ULL(1)
#define HV_DM_CAP_HOT_ADD_ALIGN		GENMASK_ULL(5, 2)  /* log2 MiB */

struct hv_dm_caps_resp {
	struct hv_dm_hdr hdr;
	u64 flags;		/* HV_DM_ACCEPTED */
} __packed;

struct hv_dm_status {
	struct hv_dm_hdr hdr;
	u64 num_avail;
	u64 num_committed;
	u64 page_file_size;
	u64 zero_free;
	u32 page_file_writes;
	u32 io_diff;
} __packed;

struct hv_dm_balloon_req {
	struct hv_dm_hdr hdr;
	u32 num_pages;
	u32 reserved;
} __packed;

struct hv_dm_balloon_resp {
	struct hv_dm_hdr hdr;
	u32 reserved;
	u32 flags;
	u64 ranges[];
} __packed;
#define HV_DM_MORE_PAGES		BIT(0)
#define HV_DM_RESP_RANGE_COUNT		GENMASK(31, 1)

struct hv_dm_unballoon_req {
	struct hv_dm_hdr hdr;
	u32 flags;		/* HV_DM_MORE_PAGES */
	u32 range_count;
	u64 ranges[];
} __packed;

struct hv_dm_unballoon_resp {
	struct hv_dm_hdr hdr;
} __packed;

struct hv_dm_hot_add_req {
	struct hv_dm_hdr hdr;
	u64 range;
	u64 region;		/* optional: the message may end before it */
} __packed;

struct hv_dm_hot_add_resp {
	struct hv_dm_hdr hdr;
	u32 page_count;
	u32 result;		/* 1: success, 0: failure */
} __packed;

struct hv_dm_info_msg {
	struct hv_dm_hdr hdr;
	u32 reserved;
	u32 info_size;
	u8 info[];
} __packed;

struct hv_dm_info_hdr {
	u32 type;
	u32 data_size;
} __packed;
#define HV_DM_INFO_MAX_PAGE_COUNT	0

/* The largest message either side sends: one hpage. */
#define HV_DM_MSG_MAX		4096
#define HV_DM_RESP_RANGES	((HV_DM_MSG_MAX - \
				  sizeof(struct hv_dm_balloon_resp)) / sizeof(u64))

#define HV_DM_2M_ORDER		(21 - PAGE_SHIFT)
#define HV_DM_RESPONSE_TIMEOUT	(5 * HZ)
#define HV_DM_SEND_BACKOFF_MS	100
#define HV_DM_RX_QUEUE_MIN	64

/**
 * enum hv_dm_state - the session, as seen by the protocol
 * @HV_DM_STOPPED: no session: before the first negotiation, and after
 *	suspend until resume. Requests are dropped.
 * @HV_DM_NEGOTIATING: version and capabilities are being exchanged.
 *	Requests are refused.
 * @HV_DM_READY: requests are served and status is reported.
 * @HV_DM_ERROR: negotiation or resume failed; nothing is served until the
 *	device is probed or resumed again.
 */
enum hv_dm_state {
	HV_DM_STOPPED,
	HV_DM_NEGOTIATING,
	HV_DM_READY,
	HV_DM_ERROR,
};

static const char * const hv_dm_state_names[] = {
	[HV_DM_STOPPED]		= "stopped",
	[HV_DM_NEGOTIATING]	= "negotiating",
	[HV_DM_READY]		= "ready",
	[HV_DM_ERROR]		= "error",
};

enum hv_dm_counter {
	HV_DM_C_BALLOONED,	/* hpages given to the host */
	HV_DM_C_UNBALLOONED,	/* hpages the host gave back */
	HV_DM_C_FALLBACK,	/* balloon-ups that fell back to 4 KiB */
	HV_DM_C_SHORT,		/* balloon-ups that took fewer than asked */
	HV_DM_C_REJECTED_RANGES, /* unballoon ranges not held, not freed */
	HV_DM_C_HOT_ADDED,	/* hpages the host backed by hot-add */
	HV_DM_C_REFUSED,	/* requests refused in hibernation mode */
	HV_DM_C_BAD_MESSAGES,	/* malformed or unexpected host messages */
	HV_DM_C_LOST,		/* requests not queued, answered as not done */
	HV_DM_C_TRANS_ID,	/* responses with another transaction id */
	HV_DM_C_STATUS,		/* status reports sent */
	HV_DM_C_RESUMES,	/* sessions negotiated again on resume */
	HV_DM_C_NR,
};

static const char * const hv_dm_counter_names[HV_DM_C_NR] = {
	[HV_DM_C_BALLOONED]	  = "ballooned",
	[HV_DM_C_UNBALLOONED]	  = "unballooned",
	[HV_DM_C_FALLBACK]	  = "fallback_4k",
	[HV_DM_C_SHORT]		  = "balloon_short",
	[HV_DM_C_REJECTED_RANGES] = "rejected_ranges",
	[HV_DM_C_HOT_ADDED]	  = "hot_added",
	[HV_DM_C_REFUSED]	  = "refused",
	[HV_DM_C_BAD_MESSAGES]	  = "bad_messages",
	[HV_DM_C_LOST]		  = "lost_requests",
	[HV_DM_C_TRANS_ID]	  = "trans_id_mismatch",
	[HV_DM_C_STATUS]	  = "status_reports",
	[HV_DM_C_RESUMES]	  = "resumes",
};

struct hv_dm;

/**
 * struct hv_dm_meminfo - the guest's memory, in hpages
 * @avail: what could be allocated without swapping (MemAvailable).
 * @committed: what the guest has promised to its users (Committed_AS).
 * @swap_free: free swap.
 */
struct hv_dm_meminfo {
	unsigned long avail;
	unsigned long committed;
	unsigned long swap_free;
};

/**
 * struct hv_dm_ops - what the protocol needs from the world around it
 * @open: open the channel to the host.
 * @close: close it; no message arrives afterwards. Closing a closed
 *	channel does nothing.
 * @send: send one message to the host; -EAGAIN when the ring is full.
 * @alloc: allocate an unmovable block of 2^@order pages to balloon, or
 *	NULL. Must not dip into reserves.
 * @add_memory: add [@start_pfn, @start_pfn + @nr_pages) as new memory;
 *	whole memory blocks only.
 * @online: give one page of added memory to the page allocator. Called
 *	under a spinlock.
 * @meminfo: read the guest's memory figures; any context but atomic.
 */
struct hv_dm_ops {
	int (*open)(struct hv_dm *dm);
	void (*close)(struct hv_dm *dm);
	int (*send)(struct hv_dm *dm, void *msg, u32 len);
	struct page *(*alloc)(struct hv_dm *dm, unsigned int order);
	int (*add_memory)(struct hv_dm *dm, unsigned long start_pfn,
			  unsigned long nr_pages);
	void (*online)(struct hv_dm *dm, unsigned long pfn);
	void (*meminfo)(struct hv_dm *dm, struct hv_dm_meminfo *mi);
};

/**
 * struct hv_dm_region - a hot-add region
 * @list: in hv_dm.regions.
 * @start_pfn: first hpage of the region; memory-block aligned.
 * @end_pfn: end of the region; memory-block aligned.
 * @added_end_pfn: memory was added from @start_pfn up to here.
 * @backed_end_pfn: the host has backed hpages up to here, except @gaps.
 * @gaps: hpages below @backed_end_pfn the host skipped; they stay offline.
 * @online: memory blocks that went online, one bit each.
 *
 * Regions and everything in them are changed under hv_dm.lock and
 * hv_dm.ha_lock both, and read under either.
 */
struct hv_dm_region {
	struct list_head list;
	unsigned long start_pfn;
	unsigned long end_pfn;
	unsigned long added_end_pfn;
	unsigned long backed_end_pfn;
	struct list_head gaps;
	unsigned long *online;
};

struct hv_dm_gap {
	struct list_head list;
	unsigned long start_pfn;
	unsigned long end_pfn;
};

/**
 * struct hv_dm - one Dynamic Memory device
 * @ops: the transport, page allocator and hotplug (see struct hv_dm_ops).
 * @lock: protects everything below it up to @rx_lock, but @balloon_pages
 *	is also read without it, and @ha_lock is explained below.
 * @state: the session; changed only by hv_dm_set_state().
 * @version: the negotiated protocol version; 0 without a session.
 * @hibernation: refuse every resize (set at init, see the top of file).
 * @hot_add: hot-add is allowed (not in hibernation mode, and hotplug is
 *	available).
 * @block_pages: hpages per memory block, the unit of hot-add.
 * @floor_pages: balloon up stops when available memory would fall below;
 *	also reported as committed (see hv_dm_post_status()).
 * @held: ballooned hpages, indexed by frame number.
 * @balloon_pages: number of entries in @held; read locklessly by status.
 * @regions: hot-add regions, in the order the host named them.
 * @ha_lock: see struct hv_dm_region; the online callback takes only this.
 * @ha_backed: hpages of added memory the host backed; under @ha_lock.
 * @ha_onlined: of those, hpages given to the page allocator; under @ha_lock.
 * @max_page_count: the host's limit for this guest (info message), or 0.
 * @send_buf: one message under construction.
 * @expect: the response type negotiation waits for, or 0.
 * @expect_trans_id: the transaction id that response must carry.
 * @accepted: the host's answer, valid once @host_event completes.
 * @host_event: completed when the awaited response was handled.
 * @rx_lock: protects @rx_queue and @rx_len.
 * @rx_queue: received messages not yet handled.
 * @rx_len: number of messages in @rx_queue.
 * @rx_lost: requests that could not be queued, by message type; each is
 *	answered as "nothing done" by @rx_work.
 * @rx_work: handles @rx_queue.
 * @status_work: sends a status report every second while READY.
 * @stopping: the session is ending; a send waiting for room gives up.
 *	Written before @lock is taken, read without it.
 * @trans_id: the last transaction id used in a message of ours.
 * @counters: see enum hv_dm_counter.
 * @priv: the transport's.
 */
struct hv_dm {
	const struct hv_dm_ops *ops;

	struct mutex lock;		/* see the top of the file */
	enum hv_dm_state state;
	u32 version;
	bool hibernation;
	bool hot_add;
	unsigned long block_pages;
	unsigned long floor_pages;
	struct xarray held;
	unsigned long balloon_pages;
	struct list_head regions;
	spinlock_t ha_lock;		/* see struct hv_dm_region */
	unsigned long ha_backed;
	unsigned long ha_onlined;
	u64 max_page_count;
	u8 send_buf[HV_DM_MSG_MAX] __aligned(8);
	u16 expect;
	u32 expect_trans_id;
	bool accepted;
	struct completion host_event;

	spinlock_t rx_lock;		/* see the top of the file */
	struct list_head rx_queue;
	unsigned int rx_len;
	unsigned int rx_lost[HV_DM_HOT_ADD_REQUEST + 1];
	struct work_struct rx_work;

	struct delayed_work status_work;
	bool stopping;
	atomic_t trans_id;
	atomic_long_t counters[HV_DM_C_NR];
	void *priv;
};

struct hv_dm_rx_msg {
	struct list_head list;
	u32 len;
	u8 data[] __aligned(8);
};

static void hv_dm_count(struct hv_dm *dm, enum hv_dm_counter c, long n)
{
	atomic_long_add(n, &dm->counters[c]);
}

static unsigned long hv_dm_counter(struct hv_dm *dm, enum hv_dm_counter c)
{
	return atomic_long_read(&dm->counters[c]);
}

static void hv_dm_set_state(struct hv_dm *dm, enum hv_dm_state state)
{
	lockdep_assert_held(&dm->lock);
	/* The status work reads it without the lock. */
	WRITE_ONCE(dm->state, state);
}

static u64 hv_dm_range(unsigned long pfn, unsigned long count)
{
	return FIELD_PREP(HV_DM_RANGE_START, pfn) |
	       FIELD_PREP(HV_DM_RANGE_COUNT, count);
}

static void hv_dm_range_get(u64 range, unsigned long *pfn,
			    unsigned long *count)
{
	*pfn = FIELD_GET(HV_DM_RANGE_START, range);
	*count = FIELD_GET(HV_DM_RANGE_COUNT, range);
}

static void hv_dm_hdr_init(struct hv_dm *dm, struct hv_dm_hdr *hdr, u16 type,
			   u16 size)
{
	hdr->type = type;
	hdr->size = size;
	hdr->trans_id = atomic_inc_return(&dm->trans_id);
}

/*
 * A full ring means the host has not caught up yet. It may be waiting
 * for exactly this message (the rest of a balloon response series, say),
 * so giving up would leave it waiting for ever: retry, backing off up to
 * HV_DM_SEND_BACKOFF_MS, until the session ends. Any other error is
 * final.
 */
static int hv_dm_send(struct hv_dm *dm, void *msg)
{
	struct hv_dm_hdr *hdr = msg;
	unsigned int delay = 1;
	int ret;

	for (;;) {
		ret = dm->ops->send(dm, msg, hdr->size);
		if (ret != -EAGAIN || READ_ONCE(dm->stopping))
			break;
		msleep(delay);
		delay = min(delay * 2, HV_DM_SEND_BACKOFF_MS);
	}
	if (ret)
		pr_err_ratelimited("cannot send message type %u: %d\n",
				   hdr->type, ret);
	return ret;
}

/* -- balloon ------------------------------------------------------------ */

static unsigned long hv_dm_avail(struct hv_dm *dm)
{
	struct hv_dm_meminfo mi;

	dm->ops->meminfo(dm, &mi);
	return mi.avail;
}

/*
 * Record and take @nr pages from @pfn: they leave the managed count and
 * become PageOffline, so that neither the snapshot nor a dump reads them.
 * All pages of one allocation share a zone.
 */
static int hv_dm_take(struct hv_dm *dm, struct page *page, unsigned int nr)
{
	unsigned long pfn = page_to_pfn(page);
	unsigned int i;
	int ret;

	lockdep_assert_held(&dm->lock);
	for (i = 0; i < nr; i++) {
		ret = xa_err(xa_store(&dm->held, pfn + i, xa_mk_value(0),
				      GFP_KERNEL | __GFP_NOWARN));
		if (ret) {
			while (i--)
				xa_erase(&dm->held, pfn + i);
			return ret;
		}
	}
	for (i = 0; i < nr; i++)
		__SetPageOffline(page + i);
	adjust_managed_page_count(page, -(long)nr);
	dm->balloon_pages += nr;
	return 0;
}

/* Free @nr held pages from @pfn; the caller checked that all are held. */
static void hv_dm_give_back(struct hv_dm *dm, unsigned long pfn,
			    unsigned long nr)
{
	unsigned long i;

	lockdep_assert_held(&dm->lock);
	for (i = 0; i < nr; i++) {
		struct page *page = pfn_to_page(pfn + i);

		xa_erase(&dm->held, pfn + i);
		__ClearPageOffline(page);
		adjust_managed_page_count(page, 1);
		__free_page(page);
	}
	dm->balloon_pages -= nr;
}

static bool hv_dm_holds(struct hv_dm *dm, unsigned long pfn,
			unsigned long nr)
{
	unsigned long i;

	for (i = 0; i < nr; i++)
		if (!xa_load(&dm->held, pfn + i))
			return false;
	return true;
}

static void hv_dm_give_back_all(struct hv_dm *dm)
{
	unsigned long pfn;
	void *entry;

	lockdep_assert_held(&dm->lock);
	xa_for_each(&dm->held, pfn, entry)
		hv_dm_give_back(dm, pfn, 1);
}

/* Give back the pages listed in a response that could not be sent. */
static unsigned long hv_dm_unwind_resp(struct hv_dm *dm,
				       struct hv_dm_balloon_resp *resp,
				       unsigned int nr_ranges)
{
	unsigned long pfn, count, total = 0;
	unsigned int i;

	for (i = 0; i < nr_ranges; i++) {
		hv_dm_range_get(resp->ranges[i], &pfn, &count);
		hv_dm_give_back(dm, pfn, count);
		total += count;
	}
	return total;
}

static void hv_dm_send_balloon_resp(struct hv_dm *dm,
				    struct hv_dm_balloon_resp *resp,
				    unsigned int nr_ranges, bool more)
{
	hv_dm_hdr_init(dm, &resp->hdr, HV_DM_BALLOON_RESPONSE,
		       struct_size(resp, ranges, nr_ranges));
	resp->reserved = 0;
	resp->flags = (more ? HV_DM_MORE_PAGES : 0) |
		      FIELD_PREP(HV_DM_RESP_RANGE_COUNT, nr_ranges);
}

/**
 * hv_dm_balloon_up() - serve a balloon-up request
 * @dm: the device; @dm->lock held.
 * @want: hpages the host asks for.
 *
 * Takes 2 MiB blocks while they come, then single pages, and answers in
 * as many responses as the ranges need; every response but the last has
 * HV_DM_MORE_PAGES. Stops early, and says so only by the total, when
 * memory runs short or available memory reaches @dm->floor_pages. A
 * response that cannot be sent ends the request and its pages are given
 * back, since the host never learned of them.
 */
static void hv_dm_balloon_up(struct hv_dm *dm, u32 want)
{
	struct hv_dm_balloon_resp *resp = (void *)dm->send_buf;
	unsigned int order = HV_DM_2M_ORDER;
	unsigned long done = 0;
	bool stop = false;

	lockdep_assert_held(&dm->lock);
	for (;;) {
		unsigned int nr = 0;
		bool more;

		while (nr < HV_DM_RESP_RANGES && done < want && !stop) {
			unsigned long start_pfn;
			unsigned int count;
			struct page *page;
			u64 *last;

			if (order && want - done < (1U << order))
				order = 0;
			if (dm->floor_pages &&
			    hv_dm_avail(dm) < dm->floor_pages + (1 << order)) {
				stop = true;
				break;
			}
			page = dm->ops->alloc(dm, order);
			if (!page && order) {
				hv_dm_count(dm, HV_DM_C_FALLBACK, 1);
				order = 0;
				continue;
			}
			if (!page) {
				stop = true;
				break;
			}
			count = 1U << order;
			if (order)
				split_page(page, order);
			if (hv_dm_take(dm, page, count)) {
				while (count--)
					__free_page(page + count);
				stop = true;
				break;
			}
			done += count;

			/* Extend the previous range when the pages follow it. */
			start_pfn = page_to_pfn(page);
			last = nr ? &resp->ranges[nr - 1] : NULL;
			if (last) {
				unsigned long lpfn, lcount;

				hv_dm_range_get(*last, &lpfn, &lcount);
				if (lpfn + lcount == start_pfn &&
				    lcount + count <= HV_DM_RANGE_MAX_COUNT) {
					*last = hv_dm_range(lpfn, lcount + count);
					continue;
				}
			}
			resp->ranges[nr++] = hv_dm_range(start_pfn, count);
		}

		more = done < want && !stop;
		hv_dm_send_balloon_resp(dm, resp, nr, more);
		if (hv_dm_send(dm, resp)) {
			done -= hv_dm_unwind_resp(dm, resp, nr);
			break;
		}
		if (!more)
			break;
	}

	hv_dm_count(dm, HV_DM_C_BALLOONED, done);
	if (done < want) {
		hv_dm_count(dm, HV_DM_C_SHORT, 1);
		pr_info_ratelimited("balloon up: took %lu of %u pages\n", done,
				    want);
	}
}

/**
 * hv_dm_balloon_down() - serve one unballoon request
 * @dm: the device; @dm->lock held.
 * @req: the request, validated: its ranges lie within the message.
 *
 * A range is freed only when every hpage of it is held; any other range is
 * logged and left alone, whatever the host thinks it owns. The response
 * follows the last request of a series (no HV_DM_MORE_PAGES).
 */
static void hv_dm_balloon_down(struct hv_dm *dm,
			       const struct hv_dm_unballoon_req *req)
{
	struct hv_dm_unballoon_resp *resp = (void *)dm->send_buf;
	unsigned long pfn, count;
	u32 i;

	lockdep_assert_held(&dm->lock);
	for (i = 0; i < req->range_count; i++) {
		hv_dm_range_get(req->ranges[i], &pfn, &count);
		if (!count)
			continue;
		if (!hv_dm_holds(dm, pfn, count)) {
			hv_dm_count(dm, HV_DM_C_REJECTED_RANGES, 1);
			pr_warn_ratelimited("balloon down: pages %#lx+%lu are not ballooned, kept\n",
					    pfn, count);
			continue;
		}
		hv_dm_give_back(dm, pfn, count);
		hv_dm_count(dm, HV_DM_C_UNBALLOONED, count);
	}
	if (req->flags & HV_DM_MORE_PAGES)
		return;
	hv_dm_hdr_init(dm, &resp->hdr, HV_DM_UNBALLOON_RESPONSE,
		       sizeof(*resp));
	hv_dm_send(dm, resp);
}

/* -- hot-add ------------------------------------------------------------ */

static struct hv_dm_region *hv_dm_find_region(struct hv_dm *dm,
					      unsigned long pfn)
{
	struct hv_dm_region *r;

	list_for_each_entry(r, &dm->regions, list)
		if (pfn >= r->start_pfn && pfn < r->end_pfn)
			return r;
	return NULL;
}

static bool hv_dm_pfn_backed(struct hv_dm_region *r, unsigned long pfn)
{
	struct hv_dm_gap *gap;

	if (pfn >= r->backed_end_pfn)
		return false;
	list_for_each_entry(gap, &r->gaps, list)
		if (pfn >= gap->start_pfn && pfn < gap->end_pfn)
			return false;
	return true;
}

static unsigned long hv_dm_block_of(struct hv_dm *dm, struct hv_dm_region *r,
				    unsigned long pfn)
{
	return (pfn - r->start_pfn) / dm->block_pages;
}

/**
 * hv_dm_pages_online() - memory is going online: free what the host backs
 * @dm: the device.
 * @pfn: first page going online.
 * @nr: pages going online.
 *
 * The online callback, which memory hotplug calls with its own lock held,
 * possibly from inside add_memory() in hv_dm_hot_add_range(): so only
 * @ha_lock is taken here. The block is remembered as online, so that
 * pages the host backs later are freed at once. Pages outside the
 * regions are not ours to hold back.
 */
static void hv_dm_pages_online(struct hv_dm *dm, unsigned long pfn,
			       unsigned long nr)
{
	struct hv_dm_region *r;
	unsigned long i;

	spin_lock(&dm->ha_lock);
	for (i = 0; i < nr; i++) {
		r = hv_dm_find_region(dm, pfn + i);
		if (r)
			__set_bit(hv_dm_block_of(dm, r, pfn + i), r->online);
		if (!r || hv_dm_pfn_backed(r, pfn + i)) {
			dm->ops->online(dm, pfn + i);
			if (r)
				dm->ha_onlined++;
		}
	}
	spin_unlock(&dm->ha_lock);
}

/* The last hpage the guest can address. */
static unsigned long hv_dm_max_pfn(void)
{
	return (1UL << (MAX_PHYSMEM_BITS - PAGE_SHIFT)) - 1;
}

/*
 * A new region: the host's, or else the memory blocks around the range.
 * Returns an ERR_PTR, having logged why, when it overlaps one we have or
 * lies past what the guest can address (-EINVAL), or when memory is short
 * (-ENOMEM).
 */
static struct hv_dm_region *hv_dm_new_region(struct hv_dm *dm,
					     unsigned long pfn,
					     unsigned long count,
					     unsigned long rg_pfn,
					     unsigned long rg_count)
{
	unsigned long start, end;
	struct hv_dm_region *r;

	lockdep_assert_held(&dm->lock);
	if (!rg_count || pfn < rg_pfn || pfn + count > rg_pfn + rg_count) {
		rg_pfn = pfn;
		rg_count = count;
	}
	start = ALIGN_DOWN(rg_pfn, dm->block_pages);
	end = ALIGN(rg_pfn + rg_count, dm->block_pages);
	if (end - 1 > hv_dm_max_pfn()) {
		pr_warn_ratelimited("hot add: region %#lx-%#lx is past the guest's physical address space\n",
				    start, end);
		return ERR_PTR(-EINVAL);
	}
	list_for_each_entry(r, &dm->regions, list) {
		if (start < r->end_pfn && r->start_pfn < end) {
			pr_warn_ratelimited("hot add: region %#lx-%#lx overlaps %#lx-%#lx\n",
					    start, end, r->start_pfn, r->end_pfn);
			return ERR_PTR(-EINVAL);
		}
	}
	r = kzalloc_obj(*r, GFP_KERNEL);
	if (!r)
		return ERR_PTR(-ENOMEM);
	r->online = bitmap_zalloc((end - start) / dm->block_pages, GFP_KERNEL);
	if (!r->online) {
		kfree(r);
		return ERR_PTR(-ENOMEM);
	}
	r->start_pfn = start;
	r->end_pfn = end;
	r->added_end_pfn = start;
	r->backed_end_pfn = start;
	INIT_LIST_HEAD(&r->gaps);
	spin_lock(&dm->ha_lock);
	list_add_tail(&r->list, &dm->regions);
	spin_unlock(&dm->ha_lock);
	return r;
}

/*
 * Grow @r so that it ends at @end or past it, on a block boundary. A host
 * that names no region (older Hyper-V) continues one request where the
 * last ended, past the blocks the first one needed.
 *
 * Return: 0; -EINVAL when the growth would overlap another region or leave
 * the guest's address space; -ENOMEM.
 */
static int hv_dm_grow_region(struct hv_dm *dm, struct hv_dm_region *r,
			     unsigned long end)
{
	unsigned long old_bits = (r->end_pfn - r->start_pfn) / dm->block_pages;
	struct hv_dm_region *o;
	unsigned long *online;

	lockdep_assert_held(&dm->lock);
	end = ALIGN(end, dm->block_pages);
	if (end - 1 > hv_dm_max_pfn())
		return -EINVAL;
	list_for_each_entry(o, &dm->regions, list)
		if (o != r && o->start_pfn < end && r->end_pfn < o->end_pfn)
			return -EINVAL;
	online = bitmap_zalloc((end - r->start_pfn) / dm->block_pages,
			       GFP_KERNEL);
	if (!online)
		return -ENOMEM;
	spin_lock(&dm->ha_lock);
	bitmap_copy(online, r->online, old_bits);
	swap(online, r->online);
	r->end_pfn = end;
	spin_unlock(&dm->ha_lock);
	bitmap_free(online);
	return 0;
}

/* add_memory() errors that a later attempt may not meet. */
static bool hv_dm_transient(int err)
{
	return err == -ENOMEM || err == -EAGAIN || err == -EBUSY;
}

/**
 * hv_dm_hot_add_range() - back hpages, adding memory where needed
 * @dm: the device; @dm->lock held.
 * @pfn: first hpage the host backs.
 * @count: hpages the host backs.
 * @rg_pfn: the region the host names, or 0.
 * @rg_count: its size, or 0.
 * @retry: set when nothing was backed for a reason that may pass
 *	(memory short), cleared when a retry cannot help.
 *
 * Backing must move forward: hpages the host skips become a gap and stay
 * offline. A range that runs past its region grows the region. Pages of
 * blocks that are online already are freed at once; past the added
 * memory, whole blocks are added, and their pages are freed by
 * hv_dm_pages_online() as each block goes online. A block that cannot be
 * added ends the request.
 *
 * Return: the hpages now backed.
 */
static unsigned long hv_dm_hot_add_range(struct hv_dm *dm, unsigned long pfn,
					 unsigned long count,
					 unsigned long rg_pfn,
					 unsigned long rg_count, bool *retry)
{
	unsigned long end, p, done = 0;
	struct hv_dm_gap *gap = NULL;
	struct hv_dm_region *r;
	int ret;

	lockdep_assert_held(&dm->lock);
	*retry = false;
	r = hv_dm_find_region(dm, pfn);
	if (!r)
		r = hv_dm_new_region(dm, pfn, count, rg_pfn, rg_count);
	if (IS_ERR(r)) {
		*retry = PTR_ERR(r) == -ENOMEM;
		return 0;
	}
	if (pfn < r->backed_end_pfn) {
		pr_warn_ratelimited("hot add: pages %#lx+%lu are backed already\n",
				    pfn, count);
		return 0;
	}
	if (pfn + count > r->end_pfn) {
		ret = hv_dm_grow_region(dm, r, pfn + count);
		if (ret == -ENOMEM) {
			*retry = true;
			return 0;
		}
		if (ret)
			pr_warn_ratelimited("hot add: region %#lx-%#lx cannot grow to %#lx\n",
					    r->start_pfn, r->end_pfn,
					    pfn + count);
	}
	if (pfn > r->backed_end_pfn) {
		gap = kzalloc_obj(*gap, GFP_KERNEL);
		if (!gap) {
			*retry = true;
			return 0;
		}
		gap->start_pfn = r->backed_end_pfn;
		gap->end_pfn = pfn;
	}
	end = min(pfn + count, r->end_pfn);

	spin_lock(&dm->ha_lock);
	if (gap)
		list_add_tail(&gap->list, &r->gaps);
	r->backed_end_pfn = min(end, r->added_end_pfn);
	for (p = pfn; p < r->backed_end_pfn; p++) {
		if (test_bit(hv_dm_block_of(dm, r, p), r->online)) {
			dm->ops->online(dm, p);
			dm->ha_onlined++;
		}
		done++;
	}
	dm->ha_backed += done;
	spin_unlock(&dm->ha_lock);

	while (r->added_end_pfn < end) {
		unsigned long block = r->added_end_pfn;
		unsigned long backed;

		/*
		 * Backed before it is added: it may go online at once, and
		 * counted as backed before hv_dm_pages_online() counts it
		 * online.
		 */
		spin_lock(&dm->ha_lock);
		r->backed_end_pfn = min(end, block + dm->block_pages);
		/* Blocks below @pfn may be added within the gap before it. */
		backed = r->backed_end_pfn > pfn ?
			 r->backed_end_pfn - max(block, pfn) : 0;
		dm->ha_backed += backed;
		spin_unlock(&dm->ha_lock);
		ret = dm->ops->add_memory(dm, block, dm->block_pages);
		spin_lock(&dm->ha_lock);
		if (ret) {
			r->backed_end_pfn = max(block, pfn);
			dm->ha_backed -= backed;
			spin_unlock(&dm->ha_lock);
			pr_warn_ratelimited("hot add: cannot add memory at %#lx: %d\n",
					    block, ret);
			*retry = !done && hv_dm_transient(ret);
			break;
		}
		r->added_end_pfn = block + dm->block_pages;
		done += backed;
		spin_unlock(&dm->ha_lock);
	}
	hv_dm_count(dm, HV_DM_C_HOT_ADDED, done);
	return done;
}

/* Hot-add's result field: 1 for "done, or do not retry", 0 for "retry". */
static void hv_dm_send_hot_add_resp(struct hv_dm *dm, unsigned long done,
				    bool retry)
{
	struct hv_dm_hot_add_resp *resp = (void *)dm->send_buf;

	memset(resp, 0, sizeof(*resp));
	hv_dm_hdr_init(dm, &resp->hdr, HV_DM_HOT_ADD_RESPONSE, sizeof(*resp));
	resp->page_count = done;
	resp->result = done || !retry;
	hv_dm_send(dm, resp);
}

static void hv_dm_hot_add(struct hv_dm *dm, const struct hv_dm_hot_add_req *req)
{
	unsigned long pfn, count, rg_pfn = 0, rg_count = 0, done = 0;
	bool retry = false;

	lockdep_assert_held(&dm->lock);
	hv_dm_range_get(req->range, &pfn, &count);
	if (req->hdr.size >= sizeof(*req))
		hv_dm_range_get(req->region, &rg_pfn, &rg_count);
	if (dm->hot_add && count)
		done = hv_dm_hot_add_range(dm, pfn, count, rg_pfn, rg_count,
					   &retry);
	else if (!dm->hot_add)
		pr_info_ratelimited("hot add: %lu pages refused: hot add is off\n",
				    count);
	hv_dm_send_hot_add_resp(dm, done, retry);
}

/* -- messages ----------------------------------------------------------- */

static void hv_dm_bad_message(struct hv_dm *dm, const char *why, u16 type,
			      u32 len)
{
	hv_dm_count(dm, HV_DM_C_BAD_MESSAGES, 1);
	pr_warn_ratelimited("dropped host message (type %u, %u bytes): %s\n",
			    type, len, why);
}

/* The smallest valid message of each type the host may send. */
static const u16 hv_dm_min_size[] = {
	[HV_DM_VERSION_RESPONSE]	= sizeof(struct hv_dm_version_resp),
	[HV_DM_CAPABILITIES_RESPONSE]	= sizeof(struct hv_dm_caps_resp),
	[HV_DM_BALLOON_REQUEST]		= sizeof(struct hv_dm_balloon_req),
	[HV_DM_UNBALLOON_REQUEST]	= sizeof(struct hv_dm_unballoon_req),
	[HV_DM_HOT_ADD_REQUEST]		= offsetof(struct hv_dm_hot_add_req,
						   region),
	[HV_DM_INFO_MESSAGE]		= sizeof(struct hv_dm_info_msg),
};

/* The host waits for an answer to these. */
static bool hv_dm_is_request(u16 type)
{
	return type == HV_DM_BALLOON_REQUEST ||
	       type == HV_DM_UNBALLOON_REQUEST ||
	       type == HV_DM_HOT_ADD_REQUEST;
}

/*
 * Whether the host waits for an answer to this request: every unballoon
 * request of a series but the last carries HV_DM_MORE_PAGES and is not
 * answered. A message too short to say counts as the last.
 */
static bool hv_dm_wants_answer(const void *msg, u32 len)
{
	const struct hv_dm_unballoon_req *req = msg;

	if (!hv_dm_is_request(req->hdr.type))
		return false;
	if (req->hdr.type != HV_DM_UNBALLOON_REQUEST ||
	    len < offsetofend(struct hv_dm_unballoon_req, flags))
		return true;
	return !(req->flags & HV_DM_MORE_PAGES);
}

/* Only while the channel is open: after that nobody waits. */
static bool hv_dm_channel_up(struct hv_dm *dm)
{
	return dm->state == HV_DM_NEGOTIATING || dm->state == HV_DM_READY;
}

/**
 * hv_dm_answer_nothing() - answer a request with "nothing done"
 * @dm: the device; @dm->lock held.
 * @type: the request's type.
 * @retry: for hot-add, whether the host may try again later.
 *
 * A balloon response with no ranges and no HV_DM_MORE_PAGES, an unballoon
 * acknowledgment, or a hot-add response of no pages.
 */
static void hv_dm_answer_nothing(struct hv_dm *dm, u16 type, bool retry)
{
	union {
		struct hv_dm_balloon_resp balloon;
		struct hv_dm_unballoon_resp unballoon;
	} *resp = (void *)dm->send_buf;

	lockdep_assert_held(&dm->lock);
	memset(resp, 0, sizeof(*resp));
	switch (type) {
	case HV_DM_BALLOON_REQUEST:
		hv_dm_send_balloon_resp(dm, &resp->balloon, 0, false);
		break;
	case HV_DM_UNBALLOON_REQUEST:
		hv_dm_hdr_init(dm, &resp->unballoon.hdr,
			       HV_DM_UNBALLOON_RESPONSE,
			       sizeof(resp->unballoon));
		break;
	case HV_DM_HOT_ADD_REQUEST:
		hv_dm_send_hot_add_resp(dm, 0, retry);
		return;
	default:
		return;
	}
	hv_dm_send(dm, resp);
}

/*
 * Drop a message that is malformed or comes at the wrong time. When it is
 * a request the host waits on, it still gets "nothing done": a host left
 * waiting stops resizing the guest. Retrying the same message cannot
 * help, so a hot-add is answered as final.
 */
static void hv_dm_drop(struct hv_dm *dm, const void *msg, u32 len,
		       const char *why)
{
	const struct hv_dm_hdr *hdr = msg;

	if (len < sizeof(*hdr)) {
		hv_dm_bad_message(dm, why, 0, len);
		return;
	}
	hv_dm_bad_message(dm, why, hdr->type, len);
	if (hv_dm_channel_up(dm) && hv_dm_wants_answer(msg, len))
		hv_dm_answer_nothing(dm, hdr->type, false);
}

/*
 * A response negotiation waits for: wake it with the host's answer. Its
 * transaction id is only logged when it differs from the request's:
 * nothing says that Hyper-V echoes it, and dropping the response would
 * fail the negotiation.
 */
static void hv_dm_handle_response(struct hv_dm *dm, const void *msg, u32 len)
{
	const struct hv_dm_hdr *hdr = msg;
	const struct hv_dm_version_resp *resp = msg;

	if (dm->expect != hdr->type) {
		hv_dm_drop(dm, msg, len, "response to no request");
		return;
	}
	if (hdr->trans_id != dm->expect_trans_id) {
		hv_dm_count(dm, HV_DM_C_TRANS_ID, 1);
		pr_info_ratelimited("response type %u carries transaction id %u, not %u; accepted\n",
				    hdr->type, hdr->trans_id,
				    dm->expect_trans_id);
	}
	/* Both responses keep the answer in bit 0 of the first word. */
	BUILD_BUG_ON(offsetof(struct hv_dm_caps_resp, flags) !=
		     offsetof(struct hv_dm_version_resp, flags));
	dm->accepted = resp->flags & HV_DM_ACCEPTED;
	dm->expect = 0;
	complete(&dm->host_event);
}

static void hv_dm_handle_info(struct hv_dm *dm,
			      const struct hv_dm_info_msg *msg)
{
	const struct hv_dm_info_hdr *info = (const void *)msg->info;
	u32 room = msg->hdr.size - sizeof(*msg);

	if (msg->info_size > room || msg->info_size < sizeof(*info) ||
	    info->data_size > msg->info_size - sizeof(*info)) {
		hv_dm_drop(dm, msg, msg->hdr.size, "info past the message");
		return;
	}
	if (info->type == HV_DM_INFO_MAX_PAGE_COUNT &&
	    info->data_size >= sizeof(u64))
		memcpy(&dm->max_page_count, info + 1, sizeof(u64));
}

/*
 * Answer a resize request with "nothing done", as hibernation mode must;
 * hot-add is refused for good (result 1), so the host does not retry.
 */
static void hv_dm_refuse(struct hv_dm *dm, const void *msg, u32 len)
{
	const struct hv_dm_hdr *hdr = msg;

	if (!hv_dm_wants_answer(msg, len))
		return;
	hv_dm_count(dm, HV_DM_C_REFUSED, 1);
	pr_info_ratelimited("refused request type %u: the VM may hibernate\n",
			    hdr->type);
	hv_dm_answer_nothing(dm, hdr->type, false);
}

/**
 * hv_dm_handle() - validate and act on one message from the host
 * @dm: the device; @dm->lock held.
 * @msg: the message.
 * @len: bytes received.
 *
 * A message is dropped, with a log line and HV_DM_C_BAD_MESSAGES, when it
 * is shorter than its header or its type's fixed part, when its size
 * field exceeds what arrived, when its type is unknown, when its ranges
 * run past its end, or when it is a response nobody waits for. A dropped
 * message changes no state, but a dropped request is still answered (see
 * hv_dm_drop()). VMBus pads packets to 8 bytes, so up to 7 bytes after
 * the size field are ignored.
 */
static void hv_dm_handle(struct hv_dm *dm, const void *msg, u32 len)
{
	const struct hv_dm_hdr *hdr = msg;

	lockdep_assert_held(&dm->lock);
	if (len < sizeof(*hdr)) {
		hv_dm_drop(dm, msg, len, "shorter than a header");
		return;
	}
	if (hdr->size > len || hdr->size < sizeof(*hdr) ||
	    len - hdr->size >= 8) {
		hv_dm_drop(dm, msg, len, "size field disagrees with length");
		return;
	}
	if (hdr->type >= ARRAY_SIZE(hv_dm_min_size) ||
	    !hv_dm_min_size[hdr->type]) {
		hv_dm_drop(dm, msg, len, "unknown type");
		return;
	}
	if (hdr->size < hv_dm_min_size[hdr->type]) {
		hv_dm_drop(dm, msg, len, "shorter than its type");
		return;
	}
	if (hdr->type == HV_DM_UNBALLOON_REQUEST) {
		const struct hv_dm_unballoon_req *req = msg;

		if (req->range_count > (hdr->size - sizeof(*req)) / sizeof(u64)) {
			hv_dm_drop(dm, msg, len, "range count past the payload");
			return;
		}
	}

	switch (hdr->type) {
	case HV_DM_VERSION_RESPONSE:
	case HV_DM_CAPABILITIES_RESPONSE:
		hv_dm_handle_response(dm, msg, len);
		return;
	case HV_DM_INFO_MESSAGE:
		hv_dm_handle_info(dm, msg);
		return;
	}

	/* A resize request. */
	if (dm->state != HV_DM_READY) {
		hv_dm_drop(dm, msg, len, dm->state == HV_DM_NEGOTIATING ?
			   "request before negotiation finished" :
			   "request without a session");
		return;
	}
	if (dm->hibernation) {
		hv_dm_refuse(dm, msg, len);
		return;
	}
	switch (hdr->type) {
	case HV_DM_BALLOON_REQUEST:
		hv_dm_balloon_up(dm, ((const struct hv_dm_balloon_req *)msg)->num_pages);
		break;
	case HV_DM_UNBALLOON_REQUEST:
		hv_dm_balloon_down(dm, msg);
		break;
	case HV_DM_HOT_ADD_REQUEST:
		hv_dm_hot_add(dm, msg);
		break;
	}
}

/*
 * Answer the requests hv_dm_receive() could not queue. Their content is
 * gone, so each is answered as "nothing done"; a hot-add may be retried,
 * since memory may not be short next time.
 */
static void hv_dm_answer_lost(struct hv_dm *dm)
{
	unsigned int lost[ARRAY_SIZE(dm->rx_lost)];
	unsigned int type, i, any = 0;

	spin_lock_irq(&dm->rx_lock);
	for (type = 0; type < ARRAY_SIZE(lost); type++)
		any += lost[type] = dm->rx_lost[type];
	memset(dm->rx_lost, 0, sizeof(dm->rx_lost));
	spin_unlock_irq(&dm->rx_lock);
	if (!any)
		return;

	mutex_lock(&dm->lock);
	for (type = 0; type < ARRAY_SIZE(lost); type++) {
		for (i = 0; i < lost[type] && hv_dm_channel_up(dm); i++)
			hv_dm_answer_nothing(dm, type, true);
	}
	mutex_unlock(&dm->lock);
}

static void hv_dm_rx_work(struct work_struct *work)
{
	struct hv_dm *dm = container_of(work, struct hv_dm, rx_work);
	struct hv_dm_rx_msg *m;

	for (;;) {
		spin_lock_irq(&dm->rx_lock);
		m = list_first_entry_or_null(&dm->rx_queue,
					     struct hv_dm_rx_msg, list);
		if (m) {
			list_del(&m->list);
			dm->rx_len--;
		}
		spin_unlock_irq(&dm->rx_lock);
		if (!m)
			break;
		mutex_lock(&dm->lock);
		hv_dm_handle(dm, m->data, m->len);
		mutex_unlock(&dm->lock);
		kfree(m);
	}
	hv_dm_answer_lost(dm);
}

/*
 * A message that cannot be queued: a request the host waits on is
 * remembered, so that hv_dm_rx_work() answers it.
 */
static void hv_dm_rx_lost(struct hv_dm *dm, const void *msg, u32 len,
			  const char *why)
{
	const struct hv_dm_hdr *hdr = msg;
	unsigned long flags;
	bool answer;

	if (len < sizeof(*hdr)) {
		hv_dm_bad_message(dm, why, 0, len);
		return;
	}
	answer = hv_dm_wants_answer(msg, len);
	hv_dm_count(dm, HV_DM_C_LOST, 1);
	pr_warn_ratelimited("host message type %u (%u bytes) not handled: %s%s\n",
			    hdr->type, len, why,
			    answer ? "; answered as not done" : "");
	if (!answer)
		return;
	spin_lock_irqsave(&dm->rx_lock, flags);
	dm->rx_lost[hdr->type]++;
	spin_unlock_irqrestore(&dm->rx_lock, flags);
	queue_work(system_wq, &dm->rx_work);
}

/**
 * hv_dm_receive() - queue a message from the host
 * @dm: the device.
 * @msg: the message; copied, so the caller may reuse the buffer.
 * @len: its length in bytes, at most HV_DM_MSG_MAX.
 *
 * Any context. The queue holds HV_DM_RX_QUEUE_MIN messages plus one per
 * ballooned page: a host returns ballooned memory in a series of
 * unballoon requests sent without waiting (QEMU sends one range per
 * request), and no honest series names more ranges than there are pages.
 * A message past that, or one that meets a failed allocation, is dropped;
 * a request among them is still answered.
 */
static void hv_dm_receive(struct hv_dm *dm, const void *msg, u32 len)
{
	struct hv_dm_rx_msg *m;
	unsigned long flags;

	if (len > HV_DM_MSG_MAX) {
		hv_dm_rx_lost(dm, msg, len, "longer than a page");
		return;
	}
	m = kmalloc(struct_size(m, data, len), GFP_ATOMIC | __GFP_NOWARN);
	if (!m) {
		hv_dm_rx_lost(dm, msg, len, "no memory");
		return;
	}
	m->len = len;
	memcpy(m->data, msg, len);
	spin_lock_irqsave(&dm->rx_lock, flags);
	if (dm->rx_len >= HV_DM_RX_QUEUE_MIN + READ_ONCE(dm->balloon_pages)) {
		spin_unlock_irqrestore(&dm->rx_lock, flags);
		kfree(m);
		hv_dm_rx_lost(dm, msg, len, "receive queue full");
		return;
	}
	list_add_tail(&m->list, &dm->rx_queue);
	dm->rx_len++;
	spin_unlock_irqrestore(&dm->rx_lock, flags);
	queue_work(system_wq, &dm->rx_work);
}

/* Drop what is queued; the caller made sure nothing adds to the queue. */
static void hv_dm_rx_purge(struct hv_dm *dm)
{
	struct hv_dm_rx_msg *m, *tmp;
	LIST_HEAD(dropped);

	cancel_work_sync(&dm->rx_work);
	spin_lock_irq(&dm->rx_lock);
	list_splice_init(&dm->rx_queue, &dropped);
	dm->rx_len = 0;
	memset(dm->rx_lost, 0, sizeof(dm->rx_lost));
	spin_unlock_irq(&dm->rx_lock);
	list_for_each_entry_safe(m, tmp, &dropped, list)
		kfree(m);
}

/* -- session ------------------------------------------------------------ */

/*
 * Send @msg and wait for the response of type @resp_type. @dm->lock must
 * not be held: the response is handled under it.
 */
static int hv_dm_exchange(struct hv_dm *dm, void *msg, u16 resp_type,
			  bool *accepted)
{
	struct hv_dm_hdr *hdr = msg;
	int ret;

	mutex_lock(&dm->lock);
	reinit_completion(&dm->host_event);
	dm->expect = resp_type;
	dm->expect_trans_id = hdr->trans_id;
	mutex_unlock(&dm->lock);

	ret = hv_dm_send(dm, msg);
	if (!ret && !wait_for_completion_timeout(&dm->host_event,
						 HV_DM_RESPONSE_TIMEOUT))
		ret = -ETIMEDOUT;

	mutex_lock(&dm->lock);
	dm->expect = 0;
	*accepted = dm->accepted;
	mutex_unlock(&dm->lock);
	return ret;
}

static const u32 hv_dm_versions[] = {
	HV_DM_VERSION_WIN10,
	HV_DM_VERSION_WIN8,
	HV_DM_VERSION_WIN7,
};

/* Return: the version the host accepted, or a negative errno. */
static int hv_dm_negotiate_version(struct hv_dm *dm)
{
	struct hv_dm_version_req req = {};
	bool accepted;
	unsigned int i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(hv_dm_versions); i++) {
		hv_dm_hdr_init(dm, &req.hdr, HV_DM_VERSION_REQUEST,
			       sizeof(req));
		req.version = hv_dm_versions[i];
		req.flags = i == ARRAY_SIZE(hv_dm_versions) - 1 ?
			    HV_DM_VERSION_LAST_ATTEMPT : 0;
		ret = hv_dm_exchange(dm, &req, HV_DM_VERSION_RESPONSE,
				     &accepted);
		if (ret)
			return ret;
		if (accepted)
			return req.version;
	}
	return -EPROTO;
}

static u64 hv_dm_caps(struct hv_dm *dm)
{
	unsigned int align = ilog2(max(dm->block_pages >> (20 - PAGE_SHIFT),
				       1UL));

	/* Offered even when refused later: hosts require both. */
	return HV_DM_CAP_BALLOON | HV_DM_CAP_HOT_ADD |
	       FIELD_PREP(HV_DM_CAP_HOT_ADD_ALIGN, min(align, 15U));
}

/**
 * hv_dm_connect() - negotiate a session
 * @dm: the device, with the channel open; @dm->lock not held.
 *
 * Offers the protocol versions newest first, down to WIN7, then reports the
 * capabilities. On success the session is READY and status reports run.
 *
 * Return: 0; -EPROTO when the host accepts no version or rejects the
 * capabilities; -ETIMEDOUT or a send error. On failure the state is ERROR.
 */
static int hv_dm_connect(struct hv_dm *dm)
{
	struct hv_dm_caps_report caps = {};
	bool accepted;
	int version;
	int ret;

	mutex_lock(&dm->lock);
	dm->version = 0;
	hv_dm_set_state(dm, HV_DM_NEGOTIATING);
	mutex_unlock(&dm->lock);

	version = hv_dm_negotiate_version(dm);
	if (version < 0) {
		ret = version;
		pr_err("no protocol version agreed with the host: %d\n", ret);
		goto fail;
	}

	hv_dm_hdr_init(dm, &caps.hdr, HV_DM_CAPABILITIES_REPORT, sizeof(caps));
	caps.caps = hv_dm_caps(dm);
	caps.min_page_count = 0;
	caps.max_page_number = U64_MAX;
	ret = hv_dm_exchange(dm, &caps, HV_DM_CAPABILITIES_RESPONSE, &accepted);
	if (!ret && !accepted)
		ret = -EPROTO;
	if (ret) {
		pr_err("host did not accept the capabilities: %d\n", ret);
		goto fail;
	}

	mutex_lock(&dm->lock);
	dm->version = version;
	hv_dm_set_state(dm, HV_DM_READY);
	mutex_unlock(&dm->lock);
	queue_delayed_work(system_freezable_wq, &dm->status_work, 0);
	return 0;

fail:
	mutex_lock(&dm->lock);
	hv_dm_set_state(dm, HV_DM_ERROR);
	mutex_unlock(&dm->lock);
	return ret;
}

/**
 * hv_dm_committed() - the committed memory the host is told of
 * @dm: the device.
 * @mi: the guest's figures.
 *
 * The host sizes the guest by its pressure, committed memory against
 * what it has, so everything the guest needs counts:
 *
 * - memory committed to users (Committed_AS);
 * - ballooned pages: the guest's, lent out;
 * - @dm->floor_pages, which balloon up never takes: reported so that the
 *   host does not aim below it;
 * - hot-added memory the host backed that is not online yet: the host
 *   gave it, but the guest cannot use it, so it must not look free.
 *
 * Return: the sum, in hpages.
 */
static u64 hv_dm_committed(struct hv_dm *dm, const struct hv_dm_meminfo *mi)
{
	unsigned long pending;

	spin_lock(&dm->ha_lock);
	pending = dm->ha_backed - dm->ha_onlined;
	spin_unlock(&dm->ha_lock);
	return (u64)mi->committed + READ_ONCE(dm->balloon_pages) +
	       dm->floor_pages + pending;
}

/*
 * The host wants available and committed memory. The page file field
 * carries free swap, the only swap figure modules can read.
 *
 * A report that finds the ring full is skipped, not retried: the next one
 * follows a second later, and this runs from freezable work, which the
 * freezer waits for; retrying until the host made room could hold up a
 * suspend for as long as the host leaves the ring full.
 */
static void hv_dm_post_status(struct hv_dm *dm)
{
	struct hv_dm_status status = {};
	struct hv_dm_meminfo mi;
	int ret;

	dm->ops->meminfo(dm, &mi);
	hv_dm_hdr_init(dm, &status.hdr, HV_DM_STATUS_REPORT, sizeof(status));
	status.num_avail = mi.avail;
	status.num_committed = hv_dm_committed(dm, &mi);
	status.page_file_size = mi.swap_free;
	ret = dm->ops->send(dm, &status, status.hdr.size);
	if (!ret)
		hv_dm_count(dm, HV_DM_C_STATUS, 1);
	else if (ret != -EAGAIN)
		pr_err_ratelimited("cannot send a status report: %d\n", ret);
}

/*
 * Freezable: between freeze and thaw it does not run, and hv_dm_stop()
 * cancels it before the channel closes in any case.
 */
static void hv_dm_status_work(struct work_struct *work)
{
	struct hv_dm *dm = container_of(to_delayed_work(work), struct hv_dm,
					status_work);

	if (READ_ONCE(dm->state) != HV_DM_READY)
		return;
	hv_dm_post_status(dm);
	queue_delayed_work(system_freezable_wq, &dm->status_work, HZ);
}

/*
 * End the session: wait for the message being handled, stop status
 * reports, close the channel, drop what is still queued. Shared by remove
 * and suspend, and by a bring-up that failed half-way.
 */
static void hv_dm_stop(struct hv_dm *dm)
{
	/* Before the lock: a send waiting for room under it gives up. */
	WRITE_ONCE(dm->stopping, true);
	mutex_lock(&dm->lock);
	hv_dm_set_state(dm, HV_DM_STOPPED);
	mutex_unlock(&dm->lock);
	cancel_delayed_work_sync(&dm->status_work);
	dm->ops->close(dm);
	hv_dm_rx_purge(dm);
}

/**
 * hv_dm_start() - open the channel and negotiate a session
 * @dm: the device, stopped; @dm->lock not held.
 *
 * Shared by probe and resume.
 *
 * Return: 0 with the session READY; otherwise the error, with the channel
 * closed and the state ERROR.
 */
static int hv_dm_start(struct hv_dm *dm)
{
	int ret;

	WRITE_ONCE(dm->stopping, false);
	ret = dm->ops->open(dm);
	if (ret) {
		pr_err("cannot open the channel: %d\n", ret);
		mutex_lock(&dm->lock);
		hv_dm_set_state(dm, HV_DM_ERROR);
		mutex_unlock(&dm->lock);
		return ret;
	}
	ret = hv_dm_connect(dm);
	if (ret) {
		WRITE_ONCE(dm->stopping, true);
		dm->ops->close(dm);
		hv_dm_rx_purge(dm);
	}
	return ret;
}

/**
 * hv_dm_resume() - a new session after suspend
 * @dm: the device, stopped by hv_dm_stop().
 *
 * The host of the old session kept no balloon for us, so ballooned pages
 * go back to the guest before the new session starts.
 *
 * Return: as hv_dm_start(); on failure Dynamic Memory stays off, in state
 * ERROR, until the next resume.
 */
static int hv_dm_resume(struct hv_dm *dm)
{
	unsigned long pages;
	int ret;

	mutex_lock(&dm->lock);
	pages = dm->balloon_pages;
	hv_dm_give_back_all(dm);
	mutex_unlock(&dm->lock);
	if (pages)
		pr_info("resume: returned %lu ballooned pages to the guest\n",
			pages);

	ret = hv_dm_start(dm);
	if (ret) {
		pr_err("resume failed, Dynamic Memory is off until the next resume: %d\n",
		       ret);
		return ret;
	}
	hv_dm_count(dm, HV_DM_C_RESUMES, 1);
	return 0;
}

static void hv_dm_init(struct hv_dm *dm, const struct hv_dm_ops *ops,
		       bool hibernation, bool hot_add,
		       unsigned long block_pages)
{
	unsigned int i;

	dm->ops = ops;
	mutex_init(&dm->lock);
	dm->state = HV_DM_STOPPED;
	dm->stopping = true;
	dm->hibernation = hibernation;
	dm->hot_add = hot_add && !hibernation;
	dm->block_pages = block_pages;
	xa_init(&dm->held);
	INIT_LIST_HEAD(&dm->regions);
	spin_lock_init(&dm->ha_lock);
	init_completion(&dm->host_event);
	spin_lock_init(&dm->rx_lock);
	INIT_LIST_HEAD(&dm->rx_queue);
	INIT_WORK(&dm->rx_work, hv_dm_rx_work);
	INIT_DELAYED_WORK(&dm->status_work, hv_dm_status_work);
	atomic_set(&dm->trans_id, 0);
	for (i = 0; i < HV_DM_C_NR; i++)
		atomic_long_set(&dm->counters[i], 0);
}

static bool hv_dm_added_memory(struct hv_dm *dm)
{
	struct hv_dm_region *r;
	bool added = false;

	mutex_lock(&dm->lock);
	list_for_each_entry(r, &dm->regions, list)
		added |= r->added_end_pfn > r->start_pfn;
	mutex_unlock(&dm->lock);
	return added;
}

/* After the session stopped and the queue was purged. */
static void hv_dm_destroy(struct hv_dm *dm)
{
	struct hv_dm_region *r, *rtmp;
	struct hv_dm_gap *g, *gtmp;

	mutex_lock(&dm->lock);
	hv_dm_give_back_all(dm);
	list_for_each_entry_safe(r, rtmp, &dm->regions, list) {
		list_for_each_entry_safe(g, gtmp, &r->gaps, list)
			kfree(g);
		bitmap_free(r->online);
		kfree(r);
	}
	INIT_LIST_HEAD(&dm->regions);
	mutex_unlock(&dm->lock);
	xa_destroy(&dm->held);
}

static int hv_dm_show(struct seq_file *s, void *unused)
{
	struct hv_dm *dm = s->private;
	struct hv_dm_region *r;
	unsigned int i;

	mutex_lock(&dm->lock);
	seq_printf(s, "state: %s\n", hv_dm_state_names[dm->state]);
	seq_printf(s, "version: %u.%u\n", dm->version >> 16,
		   dm->version & 0xffff);
	seq_printf(s, "capabilities: %#llx\n", hv_dm_caps(dm));
	seq_printf(s, "hibernation: %s\n", dm->hibernation ? "yes" : "no");
	seq_printf(s, "hot_add: %s\n", dm->hot_add ? "on" : "off");
	seq_printf(s, "balloon_pages: %lu\n", dm->balloon_pages);
	seq_printf(s, "max_page_count: %llu\n", dm->max_page_count);
	list_for_each_entry(r, &dm->regions, list)
		seq_printf(s, "region: %#lx-%#lx added %#lx backed %#lx\n",
			   r->start_pfn, r->end_pfn, r->added_end_pfn,
			   r->backed_end_pfn);
	mutex_unlock(&dm->lock);
	for (i = 0; i < HV_DM_C_NR; i++)
		seq_printf(s, "%s: %lu\n", hv_dm_counter_names[i],
			   hv_dm_counter(dm, i));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hv_dm);

/* -- VMBus transport ---------------------------------------------------- */

static bool hot_add = true;
module_param(hot_add, bool, 0444);
MODULE_PARM_DESC(hot_add, "Let the host hot-add memory (default: on; always off when the VM may hibernate)");

#define HV_BALLOON_RING_SIZE	VMBUS_RING_SIZE(16 * 1024)

/*
 * The ring reader copies a packet, its descriptor included, into a buffer
 * of the channel's max_pkt_size and cuts what does not fit; the default
 * is one page. The host sends messages of up to a page (an unballoon
 * request of 510 ranges is exactly 4096 bytes), so a packet is a page plus
 * its descriptor.
 */
#define HV_BALLOON_MAX_PKT_SIZE	(sizeof(struct vmpacket_descriptor) + \
				 HV_DM_MSG_MAX)

/**
 * struct hv_balloon - the VMBus device
 * @dm: the protocol.
 * @hdev: the VMBus device.
 * @recv_buf: one packet; used by the channel callback only.
 * @channel_open: the channel is open; changed by probe, remove and PM.
 * @debugfs: the device's debugfs directory.
 */
struct hv_balloon {
	struct hv_dm dm;
	struct hv_device *hdev;
	u8 recv_buf[HV_DM_MSG_MAX] __aligned(8);
	bool channel_open;
	struct dentry *debugfs;
};

/* The online callback has no context; there is one DM device per VM. */
static struct hv_dm *hv_balloon_hot_add_dm;
static struct dentry *hv_balloon_debugfs;

static int hv_balloon_send(struct hv_dm *dm, void *msg, u32 len)
{
	struct hv_balloon *hb = container_of(dm, struct hv_balloon, dm);

	return vmbus_sendpacket(hb->hdev->channel, msg, len, 0,
				VM_PKT_DATA_INBAND, 0);
}

static void hv_balloon_meminfo(struct hv_dm *dm, struct hv_dm_meminfo *mi)
{
	mi->avail = si_mem_available();
	mi->committed = vm_memory_committed();
	mi->swap_free = get_nr_swap_pages();
}

static struct page *hv_balloon_alloc(struct hv_dm *dm, unsigned int order)
{
	return alloc_pages(GFP_HIGHUSER | __GFP_NORETRY | __GFP_NOMEMALLOC |
			   __GFP_NOWARN, order);
}

#ifdef CONFIG_MEMORY_HOTPLUG
static int hv_balloon_add_memory(struct hv_dm *dm, unsigned long start_pfn,
				 unsigned long nr_pages)
{
	u64 start = PFN_PHYS(start_pfn);
	int ret;

	ret = add_memory(memory_add_physaddr_to_nid(start), start,
			 PFN_PHYS(nr_pages), MHP_MERGE_RESOURCE);
	/*
	 * Added memory can never be removed again, and the online callback
	 * must outlive it: pin the module.
	 */
	if (!ret)
		__module_get(THIS_MODULE);
	return ret;
}

static void hv_balloon_online(struct hv_dm *dm, unsigned long pfn)
{
	generic_online_page(pfn_to_page(pfn), 0);
}

/* Memory hotplug's online callback; it has no context argument. */
static void hv_balloon_online_page(struct page *page, unsigned int order)
{
	struct hv_dm *dm = READ_ONCE(hv_balloon_hot_add_dm);

	if (dm)
		hv_dm_pages_online(dm, page_to_pfn(page), 1UL << order);
	else
		generic_online_page(page, order);
}

static unsigned long hv_balloon_block_pages(void)
{
	return memory_block_size_bytes() >> PAGE_SHIFT;
}
#else
static int hv_balloon_add_memory(struct hv_dm *dm, unsigned long start_pfn,
				 unsigned long nr_pages)
{
	return -EOPNOTSUPP;
}

static void hv_balloon_online(struct hv_dm *dm, unsigned long pfn)
{
}

static unsigned long hv_balloon_block_pages(void)
{
	return SZ_128M >> PAGE_SHIFT;
}
#endif

static void hv_balloon_onchannel(void *context)
{
	struct hv_balloon *hb = context;
	u64 req_id;
	u32 len;
	int ret;

	for (;;) {
		ret = vmbus_recvpacket(hb->hdev->channel, hb->recv_buf,
				       sizeof(hb->recv_buf), &len, &req_id);
		if (ret) {
			/* Too large: it stays in the ring, and so do we. */
			pr_warn_ratelimited("cannot receive: %d\n", ret);
			return;
		}
		if (!len)
			return;
		hv_dm_receive(&hb->dm, hb->recv_buf, len);
	}
}

/* Before vmbus_open(), which sizes the reader's buffer from it. */
static void hv_balloon_size_channel(struct vmbus_channel *channel)
{
	channel->max_pkt_size = max_t(u32, channel->max_pkt_size,
				      HV_BALLOON_MAX_PKT_SIZE);
}

static int hv_balloon_open(struct hv_dm *dm)
{
	struct hv_balloon *hb = container_of(dm, struct hv_balloon, dm);
	int ret;

	hv_balloon_size_channel(hb->hdev->channel);
	ret = vmbus_open(hb->hdev->channel, HV_BALLOON_RING_SIZE,
			 HV_BALLOON_RING_SIZE, NULL, 0, hv_balloon_onchannel,
			 hb);
	if (!ret)
		hb->channel_open = true;
	return ret;
}

static void hv_balloon_close(struct hv_dm *dm)
{
	struct hv_balloon *hb = container_of(dm, struct hv_balloon, dm);

	if (hb->channel_open)
		vmbus_close(hb->hdev->channel);
	hb->channel_open = false;
}

static const struct hv_dm_ops hv_balloon_ops = {
	.open		= hv_balloon_open,
	.close		= hv_balloon_close,
	.send		= hv_balloon_send,
	.alloc		= hv_balloon_alloc,
	.add_memory	= hv_balloon_add_memory,
	.online		= hv_balloon_online,
	.meminfo	= hv_balloon_meminfo,
};

static int hv_balloon_probe(struct hv_device *hdev,
			    const struct hv_vmbus_device_id *id)
{
	bool hibernation = hv_is_hibernation_supported();
	struct hv_balloon *hb;
	int ret;

	if (hv_balloon_hot_add_dm) {
		dev_err(&hdev->device, "a second Dynamic Memory device\n");
		return -EBUSY;
	}
	hb = kzalloc_obj(*hb, GFP_KERNEL);
	if (!hb)
		return -ENOMEM;
	hb->hdev = hdev;
	hv_dm_init(&hb->dm, &hv_balloon_ops, hibernation,
		   hot_add && IS_ENABLED(CONFIG_MEMORY_HOTPLUG),
		   hv_balloon_block_pages());
	hb->dm.floor_pages = totalram_pages() / 32;
	hv_set_drvdata(hdev, hb);

#ifdef CONFIG_MEMORY_HOTPLUG
	if (hb->dm.hot_add) {
		ret = set_online_page_callback(hv_balloon_online_page);
		if (ret) {
			dev_warn(&hdev->device, "hot add off: another driver owns the online callback\n");
			hb->dm.hot_add = false;
		}
	}
#endif
	hv_balloon_hot_add_dm = &hb->dm;

	ret = hv_dm_start(&hb->dm);
	if (ret)
		goto err_start;

	hb->debugfs = debugfs_create_dir(dev_name(&hdev->device),
					 hv_balloon_debugfs);
	debugfs_create_file("status", 0444, hb->debugfs, &hb->dm,
			    &hv_dm_fops);
	dev_info(&hdev->device, "protocol %u.%u, hibernation %s, hot add %s\n",
		 hb->dm.version >> 16, hb->dm.version & 0xffff,
		 hibernation ? "yes: no resizing" : "no",
		 hb->dm.hot_add ? "on" : "off");
	return 0;

err_start:
	hv_balloon_hot_add_dm = NULL;
#ifdef CONFIG_MEMORY_HOTPLUG
	if (hb->dm.hot_add)
		restore_online_page_callback(hv_balloon_online_page);
#endif
	hv_dm_destroy(&hb->dm);
	kfree(hb);
	return ret;
}

static void hv_balloon_remove(struct hv_device *hdev)
{
	struct hv_balloon *hb = hv_get_drvdata(hdev);

	debugfs_remove_recursive(hb->debugfs);
	hv_dm_stop(&hb->dm);
	if (hv_dm_added_memory(&hb->dm)) {
		/*
		 * Blocks added here may still go online, and only the online
		 * callback knows which of their pages the host backs. Keep it
		 * and the regions it reads; adding memory pinned the module.
		 */
		mutex_lock(&hb->dm.lock);
		hv_dm_give_back_all(&hb->dm);
		mutex_unlock(&hb->dm.lock);
		dev_info(&hdev->device, "hot-added memory stays; keeping its state\n");
		return;
	}
	hv_balloon_hot_add_dm = NULL;
#ifdef CONFIG_MEMORY_HOTPLUG
	if (hb->dm.hot_add)
		restore_online_page_callback(hv_balloon_online_page);
#endif
	hv_dm_destroy(&hb->dm);
	kfree(hb);
}

#ifdef CONFIG_PM_SLEEP
static int hv_balloon_suspend(struct hv_device *hdev)
{
	struct hv_balloon *hb = hv_get_drvdata(hdev);

	hv_dm_stop(&hb->dm);
	return 0;
}

static int hv_balloon_resume(struct hv_device *hdev)
{
	struct hv_balloon *hb = hv_get_drvdata(hdev);

	return hv_dm_resume(&hb->dm);
}
#endif

static const struct hv_vmbus_device_id hv_balloon_id_table[] = {
	{ HV_DM_GUID, },
	{ },
};
MODULE_DEVICE_TABLE(vmbus, hv_balloon_id_table);

static struct hv_driver hv_balloon_driver = {
	.name		= "hv_balloon",
	.id_table	= hv_balloon_id_table,
	.probe		= hv_balloon_probe,
	.remove		= hv_balloon_remove,
#ifdef CONFIG_PM_SLEEP
	.suspend	= hv_balloon_suspend,
	.resume		= hv_balloon_resume,
#endif
	.driver = {
		.probe_type = PROBE_PREFER_ASYNCHRONOUS,
	},
};

static int __init hv_balloon_init(void)
{
	int ret;

	hv_balloon_debugfs = debugfs_create_dir("hv_balloon", NULL);
	ret = vmbus_driver_register(&hv_balloon_driver);
	if (ret)
		debugfs_remove_recursive(hv_balloon_debugfs);
	return ret;
}

static void __exit hv_balloon_exit(void)
{
	vmbus_driver_unregister(&hv_balloon_driver);
	debugfs_remove_recursive(hv_balloon_debugfs);
}

module_init(hv_balloon_init);
module_exit(hv_balloon_exit);

MODULE_DESCRIPTION("Hyper-V Dynamic Memory guest driver");
MODULE_LICENSE("GPL");

#ifdef CONFIG_HYPERV_BALLOON_KUNIT_TEST
#include "tests/hv_balloon_kunit.c"
#include "tests/hv_balloon_qemu_kunit.c"
#include "tests/hv_balloon_fuzz_kunit.c"
#endif
