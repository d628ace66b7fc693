// SPDX-License-Identifier: GPL-2.0-only
/*
 * Virtio memory balloon driver, with hibernation (ACPI S4) support.
 *
 * Vocabulary
 * ----------
 * bpage     The 4 KiB unit of the balloon protocol (VIRTIO_BALLOON_PFN_SHIFT).
 *           Every count kept here or exchanged with the device is in bpages;
 *           one guest page is VB_BPAGES_PER_PAGE bpages.
 * target    The device's num_pages field: how many bpages the host wants the
 *           balloon to hold. Written by the host only.
 * actual    The device's actual field: how many bpages the balloon holds.
 *           Written by this driver only.
 * inflate   Take guest pages and hand them to the host (inflateq).
 * deflate   Take pages back from the host and free them (deflateq).
 * freeze    The PM core stops the device before a hibernation snapshot, or
 *           before the machine powers off once the image is written.
 * thaw      The device comes back in the same VM after freeze: the image was
 *           written, or a step of hibernation failed. The host still holds
 *           every ballooned page.
 * restore   The device comes back in the kernel restored from an image,
 *           normally in a new VM instance whose host has never seen this
 *           balloon.
 *
 * Hibernation
 * -----------
 * Ballooned pages are PageOffline, so the snapshot leaves them out and the
 * image only holds what the guest uses. freeze therefore does not deflate:
 * asking the host for memory only to drop it again costs a round trip per
 * batch and makes the host back the whole balloon while the image is being
 * written. freeze stops every user of the virtqueues (balloon work, stats
 * work, free page reporting, the OOM notifier, migration), resets the device
 * and deletes the queues.
 *
 * On thaw the queues come back and the balloon is kept. On restore the new
 * host knows nothing of the old balloon, so every ballooned page is handed
 * back to the page allocator (telling the device first only where
 * VIRTIO_BALLOON_F_MUST_TELL_HOST demands it), actual becomes 0, and the
 * driver then follows whatever target the new host has set.
 *
 * Virtio gives its drivers a single restore() callback for thaw and restore.
 * The PM core does tell them apart: it runs the restore_early() callback of
 * the virtio device's own driver only on PMSG_RESTORE, before the transport
 * (its parent) resumes the device in the normal phase. vb_pm_restore_early()
 * records that, and vb_restore() consumes it. The PM core also resumes
 * devices with PMSG_RESTORE when /sys/power/pm_test stops hibernation at the
 * "platform" stage or later, with test_resume, and when entering S4 fails
 * after the image was written. Those are handled as a restore: the balloon
 * is dropped and then refilled to the host's unchanged target, which costs a
 * round trip but is never wrong.
 *
 * Locking
 * -------
 * vb->lock (mutex) serialises everything that uses the inflate and deflate
 * queues or changes the balloon: the balloon work, the OOM notifier,
 * migration and the PM callbacks. Lock order: vb->lock, then the
 * balloon core's page list lock, taken inside its functions.
 * vb->stop_lock (spinlock) protects vb->stopped, which gates the re-queueing
 * of work from the virtio callbacks (atomic context) against
 * cancel_work_sync() in vb_stop_users().
 */

#include <linux/balloon.h>
#include <linux/debugfs.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/oom.h>
#include <linux/page_reporting.h>
#include <linux/poison.h>
#include <linux/pm.h>
#include <linux/scatterlist.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/virtio.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_config.h>
#include <linux/vmstat.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#define VB_BPAGES_PER_PAGE	((unsigned int)(PAGE_SIZE >> VIRTIO_BALLOON_PFN_SHIFT))
#define VB_BPAGES_PER_MB	(1U << (20 - VIRTIO_BALLOON_PFN_SHIFT))

/*
 * PFNs per inflate/deflate buffer. The specification puts no limit on a
 * buffer; 4096 PFNs (a 16 KiB buffer) move 16 MiB per round trip while
 * keeping each hold of vb->lock, which migration and OOM wait behind, short.
 */
#define VB_BATCH_PFNS		4096U

/* Back-off when inflating finds nothing more to take. */
#define VB_RETRY_DELAY		(5 * HZ)

/*
 * Inflating stops while less than this share of guest memory (1/VB_RESERVE_DIV,
 * at least VB_RESERVE_MIN_MB) is available, so the balloon never takes the
 * memory the guest needs to keep running and nothing is OOM-killed for it.
 */
#define VB_RESERVE_DIV		32
#define VB_RESERVE_MIN_MB	16

static unsigned int oom_pages = 256;
module_param(oom_pages, uint, 0644);
MODULE_PARM_DESC(oom_pages,
		 "Pages to return on each OOM notification (with VIRTIO_BALLOON_F_DEFLATE_ON_OOM)");

enum vb_vq {
	VB_VQ_INFLATE,
	VB_VQ_DEFLATE,
	VB_VQ_STATS,
	VB_VQ_FREE_PAGE,	/* free page hinting: never negotiated */
	VB_VQ_REPORTING,
	VB_VQ_NR,
};

/**
 * enum vb_state - life cycle of the device, changed only by vb_set_state()
 * @VB_STATE_RUNNING: queues exist; work, notifier and reporting may run.
 * @VB_STATE_FROZEN: between freeze and thaw/restore; no queues.
 * @VB_STATE_BROKEN: thaw or restore failed; no queues and nothing runs.
 *	Ballooned pages are held until remove, which frees them without a
 *	device to tell.
 */
enum vb_state {
	VB_STATE_RUNNING,
	VB_STATE_FROZEN,
	VB_STATE_BROKEN,
};

static const char * const vb_state_names[] = {
	[VB_STATE_RUNNING] = "running",
	[VB_STATE_FROZEN] = "frozen",
	[VB_STATE_BROKEN] = "broken",
};

enum vb_counter {
	VB_CNT_INFLATED,	/* bpages given to the host */
	VB_CNT_DEFLATED,	/* bpages taken back from the host */
	VB_CNT_ALLOC_SHORT,	/* inflate rounds that found no memory */
	VB_CNT_MIGRATED,	/* balloon pages moved by compaction */
	VB_CNT_OOM_DEFLATED,	/* bpages returned to the OOM killer */
	VB_CNT_REPORTED,	/* free page reports sent */
	VB_CNT_THAWED,		/* thaw callbacks */
	VB_CNT_RESTORED,	/* restore callbacks */
	VB_CNT_RESTORE_DROPPED,	/* bpages dropped by restore */
	VB_CNT_STATS_SENT,	/* statistics buffers answered */
	VB_CNT_NR,
};

static const char * const vb_counter_names[VB_CNT_NR] = {
	[VB_CNT_INFLATED] = "inflated",
	[VB_CNT_DEFLATED] = "deflated",
	[VB_CNT_ALLOC_SHORT] = "alloc_short",
	[VB_CNT_MIGRATED] = "migrated",
	[VB_CNT_OOM_DEFLATED] = "oom_deflated",
	[VB_CNT_REPORTED] = "reported",
	[VB_CNT_THAWED] = "thawed",
	[VB_CNT_RESTORED] = "restored",
	[VB_CNT_RESTORE_DROPPED] = "restore_dropped",
	[VB_CNT_STATS_SENT] = "stats_sent",
};

/* Statistics this driver reports, in the order it fills them. */
static const u16 vb_stat_tags[] = {
	VIRTIO_BALLOON_S_SWAP_IN,
	VIRTIO_BALLOON_S_SWAP_OUT,
	VIRTIO_BALLOON_S_MAJFLT,
	VIRTIO_BALLOON_S_MINFLT,
	VIRTIO_BALLOON_S_MEMFREE,
	VIRTIO_BALLOON_S_MEMTOT,
	VIRTIO_BALLOON_S_AVAIL,
	VIRTIO_BALLOON_S_CACHES,
	VIRTIO_BALLOON_S_HTLB_PGALLOC,
	VIRTIO_BALLOON_S_HTLB_PGFAIL,
	VIRTIO_BALLOON_S_OOM_KILL,
	VIRTIO_BALLOON_S_ALLOC_STALL,
	VIRTIO_BALLOON_S_ASYNC_SCAN,
	VIRTIO_BALLOON_S_DIRECT_SCAN,
	VIRTIO_BALLOON_S_ASYNC_RECLAIM,
	VIRTIO_BALLOON_S_DIRECT_RECLAIM,
};

#define VB_NR_STATS ARRAY_SIZE(vb_stat_tags)

/**
 * struct vb_dev - one virtio balloon device
 * @vdev: the virtio device.
 * @vqs: the virtqueues; NULL where the feature is absent or the device is
 *	not running. Inflate/deflate are used under @lock, stats only by
 *	@stats_work, reporting only from @pr_dev_info's callback.
 * @lock: see "Locking" above.
 * @state: enum vb_state; protected by @lock.
 * @num_bpages: bpages in the balloon; protected by @lock. Equals the
 *	number of pages in @b_dev_info times VB_BPAGES_PER_PAGE.
 * @last_target: target seen by the last inflate round, to log a target
 *	that cannot be reached once per target; protected by @lock.
 * @short_logged: the short inflate for @last_target was logged.
 * @pfns: PFN buffer for one inflate/deflate request; protected by @lock.
 * @acked: woken when a queue returns a buffer.
 * @b_dev_info: the balloon core's page list.
 * @stop_lock: protects @stopped.
 * @stopped: no work may be queued; set before the users are cancelled.
 * @balloon_work: follows the target, one batch per run (freezable).
 * @stats_work: answers a statistics request (freezable).
 * @oom_nb: OOM notifier, registered with DEFLATE_ON_OOM only.
 * @pr_dev_info: free page reporting; registered with REPORTING only.
 * @reporting: @pr_dev_info is registered.
 * @pm_restoring: the PM core announced PMSG_RESTORE since the last freeze;
 *	written by vb_pm_restore_early() and read by vb_restore(), which the
 *	PM core runs one after the other.
 * @stats: the statistics buffer; only @stats_work and init touch it.
 * @vm_events: scratch for all_vm_events(); only @stats_work uses it.
 * @counters: enum vb_counter; updated under @lock except reporting and
 *	statistics, which each have a single writer.
 * @debugfs: this device's debugfs directory.
 */
struct vb_dev {
	struct virtio_device *vdev;
	struct virtqueue *vqs[VB_VQ_NR];

	struct mutex lock;		/* see "Locking" at the top */
	enum vb_state state;
	unsigned int num_bpages;
	u32 last_target;
	bool short_logged;
	__virtio32 *pfns;
	wait_queue_head_t acked;
	struct balloon_dev_info b_dev_info;

	spinlock_t stop_lock;		/* protects @stopped */
	bool stopped;
	struct delayed_work balloon_work;
	struct work_struct stats_work;

	struct notifier_block oom_nb;
	struct page_reporting_dev_info pr_dev_info;
	bool reporting;

	bool pm_restoring;

	struct virtio_balloon_stat stats[VB_NR_STATS];
	unsigned long vm_events[NR_VM_EVENT_ITEMS];
	unsigned long counters[VB_CNT_NR];
	struct dentry *debugfs;
};

static struct dentry *vb_debugfs_root;

static bool vb_has(struct vb_dev *vb, unsigned int fbit)
{
	return virtio_has_feature(vb->vdev, fbit);
}

static void vb_set_state(struct vb_dev *vb, enum vb_state state)
{
	lockdep_assert_held(&vb->lock);
	vb->state = state;
}

/* Queue the balloon work unless the users are stopped. Any context. */
static void vb_queue_balloon_work(struct vb_dev *vb, unsigned long delay)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->stop_lock, flags);
	if (!vb->stopped)
		mod_delayed_work(system_freezable_wq, &vb->balloon_work, delay);
	spin_unlock_irqrestore(&vb->stop_lock, flags);
}

static void vb_acked(struct virtqueue *vq)
{
	struct vb_dev *vb = vq->vdev->priv;

	wake_up(&vb->acked);
}

/* Kick @vq and wait for the device to return its only buffer. */
static int vb_kick_wait(struct vb_dev *vb, struct virtqueue *vq)
{
	unsigned int len;
	bool done;

	virtqueue_kick(vq);
	wait_event(vb->acked,
		   (done = virtqueue_get_buf(vq, &len)) || virtqueue_is_broken(vq));
	return done ? 0 : -EIO;
}

/*
 * Hand @nr PFNs in vb->pfns to @vq and wait until the device returns the
 * buffer. Return 0 or a negative errno; on error the device is unusable.
 */
static int vb_send_pfns(struct vb_dev *vb, struct virtqueue *vq,
			unsigned int nr)
{
	struct scatterlist sg;
	int err;

	lockdep_assert_held(&vb->lock);
	sg_init_one(&sg, vb->pfns, sizeof(vb->pfns[0]) * nr);
	err = virtqueue_add_outbuf(vq, &sg, 1, vb, GFP_KERNEL);
	return err ?: vb_kick_wait(vb, vq);
}

/* Append the bpages of @page to vb->pfns at *@n. False if not addressable. */
static bool vb_add_page_pfns(struct vb_dev *vb, struct page *page,
			     unsigned int *n)
{
	unsigned long pfn = page_to_pfn(page) * VB_BPAGES_PER_PAGE;
	unsigned int i;

	/* The protocol carries 32-bit PFNs. */
	if (pfn + VB_BPAGES_PER_PAGE - 1 > U32_MAX)
		return false;
	for (i = 0; i < VB_BPAGES_PER_PAGE; i++)
		vb->pfns[(*n)++] = cpu_to_virtio32(vb->vdev, pfn + i);
	return true;
}

static void vb_write_actual(struct vb_dev *vb)
{
	u32 actual = vb->num_bpages;

	lockdep_assert_held(&vb->lock);
	if (vb->state == VB_STATE_RUNNING)
		virtio_cwrite_le(vb->vdev, struct virtio_balloon_config, actual,
				 &actual);
}

/*
 * Free pages taken out of the balloon and give them back to the guest.
 * The managed counts go up first, once per run of pages in one zone:
 * per-page atomics were most of the cost of dropping a large balloon.
 */
static void vb_release_pages(struct list_head *pages)
{
	struct page *page, *next, *first = NULL;
	long run = 0;

	list_for_each_entry(page, pages, lru) {
		if (run && page_zone(page) != page_zone(first)) {
			adjust_managed_page_count(first, run);
			run = 0;
		}
		if (!run)
			first = page;
		run++;
	}
	if (run)
		adjust_managed_page_count(first, run);

	list_for_each_entry_safe(page, next, pages, lru) {
		list_del(&page->lru);
		put_page(page);
	}
}

/*
 * Pages the balloon may still take without eating into the reserve. The
 * reserve is a share of all guest memory, ballooned pages included:
 * totalram_pages() alone shrinks as the balloon grows.
 */
static unsigned long vb_spare_pages(unsigned int held)
{
	unsigned long guest = totalram_pages() + held / VB_BPAGES_PER_PAGE;
	unsigned long reserve = max_t(unsigned long, guest / VB_RESERVE_DIV,
				      VB_RESERVE_MIN_MB << (20 - PAGE_SHIFT));
	long avail = si_mem_available();

	return avail > (long)reserve ? avail - reserve : 0;
}

/**
 * vb_inflate() - inflate the balloon by up to one batch
 * @vb: the balloon.
 * @want: bpages wanted, a multiple of VB_BPAGES_PER_PAGE.
 * @held: bpages in the balloon when @want was computed.
 *
 * Pages are allocated before vb->lock is taken: the allocation may compact
 * memory, and compaction migrates balloon pages under vb->lock.
 *
 * Return: bpages inflated; 0 when no memory could be spared or the device
 * is not running.
 */
static unsigned int vb_inflate(struct vb_dev *vb, unsigned int want,
			       unsigned int held)
{
	unsigned int nr_pages, n = 0, done = 0;
	struct page *page, *next;
	LIST_HEAD(pages);

	want = min(want, VB_BATCH_PFNS);
	nr_pages = min_t(unsigned long, want / VB_BPAGES_PER_PAGE,
			 vb_spare_pages(held));
	while (nr_pages--) {
		page = balloon_page_alloc();
		if (!page)
			break;
		list_add(&page->lru, &pages);
	}

	mutex_lock(&vb->lock);
	if (vb->state != VB_STATE_RUNNING)
		goto out_unlock;
	list_for_each_entry_safe(page, next, &pages, lru) {
		if (!vb_add_page_pfns(vb, page, &n))
			continue;
		list_del(&page->lru);
		balloon_page_enqueue(&vb->b_dev_info, page);
		adjust_managed_page_count(page, -1);
		done += VB_BPAGES_PER_PAGE;
	}
	if (n && vb_send_pfns(vb, vb->vqs[VB_VQ_INFLATE], n))
		dev_err_once(&vb->vdev->dev, "inflate request failed\n");
	vb->num_bpages += done;
	vb->counters[VB_CNT_INFLATED] += done;
	if (!done)
		vb->counters[VB_CNT_ALLOC_SHORT]++;
	vb_write_actual(vb);
out_unlock:
	mutex_unlock(&vb->lock);

	/* Left over when the device stopped, or not addressable by a PFN. */
	list_for_each_entry_safe(page, next, &pages, lru) {
		list_del(&page->lru);
		put_page(page);
	}
	return done;
}

/**
 * vb_deflate_locked() - take up to one batch of pages out of the balloon
 * @vb: the balloon.
 * @want: bpages wanted.
 * @tell_host: send the PFNs to the deflate queue and wait for the device
 *	before any page is reused.
 *
 * With @tell_host, reports the new size to the device, as vb_inflate()
 * does; without, the caller reports it once it is done.
 *
 * Context: vb->lock held. With @tell_host the device must be running.
 * Return: bpages deflated and given back to the page allocator.
 */
static unsigned int vb_deflate_locked(struct vb_dev *vb, unsigned int want,
				      bool tell_host)
{
	unsigned int nr_pages, n = 0;
	struct page *page;
	LIST_HEAD(pages);

	lockdep_assert_held(&vb->lock);
	want = min3(want, vb->num_bpages, VB_BATCH_PFNS);
	nr_pages = balloon_page_list_dequeue(&vb->b_dev_info, &pages,
					     want / VB_BPAGES_PER_PAGE);
	if (!nr_pages)
		return 0;
	if (tell_host) {
		list_for_each_entry(page, &pages, lru)
			vb_add_page_pfns(vb, page, &n);
		if (vb_send_pfns(vb, vb->vqs[VB_VQ_DEFLATE], n))
			dev_err_once(&vb->vdev->dev, "deflate request failed\n");
	}
	vb->num_bpages -= nr_pages * VB_BPAGES_PER_PAGE;
	vb->counters[VB_CNT_DEFLATED] += nr_pages * VB_BPAGES_PER_PAGE;
	if (tell_host)
		vb_write_actual(vb);
	vb_release_pages(&pages);
	return nr_pages * VB_BPAGES_PER_PAGE;
}

/*
 * Empty the balloon. Pages under migration are not on the list; wait for
 * them to come back rather than leave them behind.
 */
static void vb_deflate_all_locked(struct vb_dev *vb, bool tell_host)
{
	lockdep_assert_held(&vb->lock);
	while (vb->num_bpages) {
		if (!vb_deflate_locked(vb, vb->num_bpages, tell_host)) {
			mutex_unlock(&vb->lock);
			cond_resched();
			mutex_lock(&vb->lock);
		}
	}
}

/*
 * The host's target, in bpages, rounded down to whole guest pages and
 * capped at what the guest has. A target past that is logged once.
 */
static unsigned int vb_target(struct vb_dev *vb)
{
	unsigned long limit;
	u32 target;

	lockdep_assert_held(&vb->lock);
	virtio_cread_le(vb->vdev, struct virtio_balloon_config, num_pages,
			&target);
	if (target != vb->last_target) {
		vb->last_target = target;
		vb->short_logged = false;
	}
	target = rounddown(target, VB_BPAGES_PER_PAGE);
	limit = vb->num_bpages + totalram_pages() * VB_BPAGES_PER_PAGE;
	return min_t(unsigned long, target, limit);
}

static void vb_balloon_work(struct work_struct *work)
{
	struct vb_dev *vb = container_of(to_delayed_work(work), struct vb_dev,
					 balloon_work);
	unsigned int target, held;
	unsigned long delay = 0;

	mutex_lock(&vb->lock);
	if (vb->state != VB_STATE_RUNNING) {
		mutex_unlock(&vb->lock);
		return;
	}
	target = vb_target(vb);
	held = vb->num_bpages;
	if (target < held)
		vb_deflate_locked(vb, held - target, true);
	mutex_unlock(&vb->lock);

	if (target > held && !vb_inflate(vb, target - held, held)) {
		mutex_lock(&vb->lock);
		if (!vb->short_logged)
			dev_info(&vb->vdev->dev,
				 "host asks for %u MiB, the guest can spare %u MiB now; retrying\n",
				 vb->last_target / VB_BPAGES_PER_MB,
				 vb->num_bpages / VB_BPAGES_PER_MB);
		vb->short_logged = true;
		mutex_unlock(&vb->lock);
		delay = VB_RETRY_DELAY;
	}
	if (target != held)
		vb_queue_balloon_work(vb, delay);
}

static void vb_config_changed(struct virtio_device *vdev)
{
	vb_queue_balloon_work(vdev->priv, 0);
}

static void vb_stats_request(struct virtqueue *vq)
{
	struct vb_dev *vb = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&vb->stop_lock, flags);
	if (!vb->stopped)
		queue_work(system_freezable_wq, &vb->stats_work);
	spin_unlock_irqrestore(&vb->stop_lock, flags);
}

/* Fill vb->stats; values are bytes, or counts for the event tags. */
static void vb_stats_fill(struct vb_dev *vb)
{
	unsigned long *ev = vb->vm_events;
	unsigned long stall = 0, htlb_alloc = 0, htlb_fail = 0;
	struct sysinfo si;
	u64 val[VB_NR_STATS];
	unsigned int i;

	all_vm_events(ev);
	si_meminfo(&si);
	for (i = 0; i < MAX_NR_ZONES; i++)
		stall += ev[ALLOCSTALL_NORMAL - ZONE_NORMAL + i];
#ifdef CONFIG_HUGETLB_PAGE
	htlb_alloc = ev[HTLB_BUDDY_PGALLOC];
	htlb_fail = ev[HTLB_BUDDY_PGALLOC_FAIL];
#endif
	val[0] = (u64)ev[PSWPIN] << PAGE_SHIFT;
	val[1] = (u64)ev[PSWPOUT] << PAGE_SHIFT;
	val[2] = ev[PGMAJFAULT];
	val[3] = ev[PGFAULT];
	val[4] = (u64)si.freeram * si.mem_unit;
	val[5] = (u64)si.totalram * si.mem_unit;
	val[6] = (u64)si_mem_available() << PAGE_SHIFT;
	val[7] = (u64)global_node_page_state(NR_FILE_PAGES) << PAGE_SHIFT;
	val[8] = htlb_alloc;
	val[9] = htlb_fail;
	val[10] = ev[OOM_KILL];
	val[11] = stall;
	val[12] = ev[PGSCAN_KSWAPD];
	val[13] = ev[PGSCAN_DIRECT];
	val[14] = ev[PGSTEAL_KSWAPD];
	val[15] = ev[PGSTEAL_DIRECT];
	BUILD_BUG_ON(ARRAY_SIZE(val) != 16);

	for (i = 0; i < VB_NR_STATS; i++) {
		vb->stats[i].tag = cpu_to_virtio16(vb->vdev, vb_stat_tags[i]);
		vb->stats[i].val = cpu_to_virtio64(vb->vdev, val[i]);
	}
}

/* Hand the statistics buffer to the device; it returns it to ask again. */
static int vb_stats_post(struct vb_dev *vb)
{
	struct virtqueue *vq = vb->vqs[VB_VQ_STATS];
	struct scatterlist sg;

	vb_stats_fill(vb);
	sg_init_one(&sg, vb->stats, sizeof(vb->stats));
	return virtqueue_add_outbuf(vq, &sg, 1, vb, GFP_KERNEL);
}

static void vb_stats_work(struct work_struct *work)
{
	struct vb_dev *vb = container_of(work, struct vb_dev, stats_work);
	struct virtqueue *vq = vb->vqs[VB_VQ_STATS];
	unsigned int len;

	if (!virtqueue_get_buf(vq, &len))
		return;
	if (vb_stats_post(vb)) {
		dev_warn_once(&vb->vdev->dev, "cannot answer a statistics request\n");
		return;
	}
	vb->counters[VB_CNT_STATS_SENT]++;
	virtqueue_kick(vq);
}

static int vb_oom_notify(struct notifier_block *nb, unsigned long unused,
			 void *parm)
{
	struct vb_dev *vb = container_of(nb, struct vb_dev, oom_nb);
	unsigned long *freed = parm;
	unsigned int done = 0;

	mutex_lock(&vb->lock);
	if (vb->state == VB_STATE_RUNNING) {
		done = vb_deflate_locked(vb, oom_pages * VB_BPAGES_PER_PAGE,
					 true);
		vb->counters[VB_CNT_OOM_DEFLATED] += done;
	}
	mutex_unlock(&vb->lock);
	*freed += done / VB_BPAGES_PER_PAGE;
	return NOTIFY_OK;
}

/*
 * Free page reporting hands us free pages, isolated from the allocator
 * for the duration of the call, and waits for the device to take note.
 */
static int vb_report_free_pages(struct page_reporting_dev_info *pr_dev_info,
				struct scatterlist *sg, unsigned int nents)
{
	struct vb_dev *vb = container_of(pr_dev_info, struct vb_dev,
					 pr_dev_info);
	struct virtqueue *vq = vb->vqs[VB_VQ_REPORTING];
	int err;

	err = virtqueue_add_inbuf(vq, sg, nents, vb, GFP_NOWAIT | __GFP_NOWARN);
	if (!err)
		err = vb_kick_wait(vb, vq);
	if (!err)
		vb->counters[VB_CNT_REPORTED]++;
	return err;
}

#ifdef CONFIG_BALLOON_MIGRATION
/*
 * Compaction moves a ballooned page: the host gets @newpage and returns
 * @page. Both pages are locked by the caller. On success the balloon core
 * lists @newpage in place of @page and frees @page; its own managed page
 * accounting is off (we count in batches), so a move across zones is
 * accounted here. Returning -EAGAIN leaves @page in the balloon;
 * compaction retries later.
 */
static int vb_migrate_page(struct balloon_dev_info *b_dev_info,
			   struct page *newpage, struct page *page,
			   enum migrate_mode mode)
{
	struct vb_dev *vb = container_of(b_dev_info, struct vb_dev, b_dev_info);
	unsigned int n = 0;

	/*
	 * Never wait for vb->lock: its holder may be allocating, and the
	 * allocation may be what triggered this compaction.
	 */
	if (!mutex_trylock(&vb->lock))
		return -EAGAIN;
	if (vb->state != VB_STATE_RUNNING ||
	    !vb_add_page_pfns(vb, newpage, &n)) {
		mutex_unlock(&vb->lock);
		return -EAGAIN;
	}

	if (page_zone(page) != page_zone(newpage)) {
		adjust_managed_page_count(page, 1);
		adjust_managed_page_count(newpage, -1);
	}
	vb_send_pfns(vb, vb->vqs[VB_VQ_INFLATE], n);
	n = 0;
	vb_add_page_pfns(vb, page, &n);
	vb_send_pfns(vb, vb->vqs[VB_VQ_DEFLATE], n);
	vb->counters[VB_CNT_MIGRATED]++;
	mutex_unlock(&vb->lock);
	return 0;
}
#endif

/* Find the queues. The device is not ready yet, so nothing is kicked. */
static int vb_init_vqs(struct vb_dev *vb)
{
	struct virtqueue_info info[VB_VQ_NR] = {
		[VB_VQ_INFLATE] = { "inflate", vb_acked },
		[VB_VQ_DEFLATE] = { "deflate", vb_acked },
	};

	if (vb_has(vb, VIRTIO_BALLOON_F_STATS_VQ))
		info[VB_VQ_STATS] = (struct virtqueue_info){ "stats",
							     vb_stats_request };
	if (vb_has(vb, VIRTIO_BALLOON_F_REPORTING))
		info[VB_VQ_REPORTING] = (struct virtqueue_info){ "reporting",
								 vb_acked };
	return virtio_find_vqs(vb->vdev, VB_VQ_NR, vb->vqs, info, NULL);
}

static void vb_del_vqs(struct vb_dev *vb)
{
	virtio_reset_device(vb->vdev);
	vb->vdev->config->del_vqs(vb->vdev);
	memset(vb->vqs, 0, sizeof(vb->vqs));
}

/**
 * vb_start_users() - let everything that uses the queues run
 * @vb: the balloon, with its queues found and the device ready.
 *
 * The first statistics buffer is filled here, after a restore has dropped
 * the balloon, so that the host's first reading is current.
 *
 * Undone by vb_stop_users().
 *
 * Return: 0 or a negative errno, in which case nothing was started.
 */
static int vb_start_users(struct vb_dev *vb)
{
	struct virtqueue *rvq = vb->vqs[VB_VQ_REPORTING];
	int err;

	if (vb->vqs[VB_VQ_STATS]) {
		err = vb_stats_post(vb);
		if (err)
			return err;
	}

	if (rvq && virtqueue_get_vring_size(rvq) >= PAGE_REPORTING_CAPACITY) {
		vb->pr_dev_info.report = vb_report_free_pages;
		vb->pr_dev_info.order = 0;	/* the allocator's default */
		err = page_reporting_register(&vb->pr_dev_info);
		if (err)
			return err;
		vb->reporting = true;
	} else if (rvq) {
		dev_info_once(&vb->vdev->dev,
			      "reporting queue too small; free page reporting off\n");
	}

	if (vb_has(vb, VIRTIO_BALLOON_F_DEFLATE_ON_OOM)) {
		err = register_oom_notifier(&vb->oom_nb);
		if (err) {
			if (vb->reporting)
				page_reporting_unregister(&vb->pr_dev_info);
			vb->reporting = false;
			return err;
		}
	}

	spin_lock_irq(&vb->stop_lock);
	vb->stopped = false;
	spin_unlock_irq(&vb->stop_lock);
	if (vb->vqs[VB_VQ_STATS])
		virtqueue_kick(vb->vqs[VB_VQ_STATS]);
	vb_queue_balloon_work(vb, 0);
	return 0;
}

/*
 * Stop every user of the queues and wait for the ones in flight, so the
 * queues can be deleted. Shared by remove and freeze.
 *
 * The work items are freezable: during hibernation they are not running
 * when the freeze callback is entered, and cancelling here drops anything
 * still pending. Page reporting runs on a workqueue that is not freezable,
 * and the OOM notifier and migration can run at any time, so those are
 * stopped explicitly (migration sees the state and backs off).
 */
static void vb_stop_users(struct vb_dev *vb)
{
	spin_lock_irq(&vb->stop_lock);
	vb->stopped = true;
	spin_unlock_irq(&vb->stop_lock);

	cancel_delayed_work_sync(&vb->balloon_work);
	cancel_work_sync(&vb->stats_work);
	if (vb->reporting)
		page_reporting_unregister(&vb->pr_dev_info);
	vb->reporting = false;
	if (vb_has(vb, VIRTIO_BALLOON_F_DEFLATE_ON_OOM))
		unregister_oom_notifier(&vb->oom_nb);
}

static int vb_debugfs_show(struct seq_file *f, void *unused)
{
	struct vb_dev *vb = f->private;
	unsigned int i;
	u32 target;

	mutex_lock(&vb->lock);
	virtio_cread_le(vb->vdev, struct virtio_balloon_config, num_pages,
			&target);
	seq_printf(f, "state: %s\n", vb_state_names[vb->state]);
	seq_printf(f, "target_pages: %u\n", target);
	seq_printf(f, "balloon_pages: %u\n", vb->num_bpages);
	seq_printf(f, "features: must_tell_host=%d stats=%d deflate_on_oom=%d reporting=%d page_poison=%d\n",
		   vb_has(vb, VIRTIO_BALLOON_F_MUST_TELL_HOST),
		   vb_has(vb, VIRTIO_BALLOON_F_STATS_VQ),
		   vb_has(vb, VIRTIO_BALLOON_F_DEFLATE_ON_OOM),
		   vb->reporting, vb_has(vb, VIRTIO_BALLOON_F_PAGE_POISON));
	for (i = 0; i < VB_CNT_NR; i++)
		seq_printf(f, "%s: %lu\n", vb_counter_names[i],
			   vb->counters[i]);
	mutex_unlock(&vb->lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vb_debugfs);

static int vb_validate(struct virtio_device *vdev)
{
	/*
	 * The host may drop reported pages and hand them back zeroed. That
	 * is only safe when nothing checks freed pages for a pattern, or
	 * when the device promises to keep the pattern (PAGE_POISON).
	 */
	if (!want_init_on_free() && !page_poisoning_enabled_static())
		__virtio_clear_bit(vdev, VIRTIO_BALLOON_F_PAGE_POISON);
	else if (!virtio_has_feature(vdev, VIRTIO_BALLOON_F_PAGE_POISON))
		__virtio_clear_bit(vdev, VIRTIO_BALLOON_F_REPORTING);

	/* PFNs are guest-physical addresses, never translated by an IOMMU. */
	__virtio_clear_bit(vdev, VIRTIO_F_ACCESS_PLATFORM);
	return 0;
}

static void vb_write_poison(struct vb_dev *vb)
{
	u32 poison = want_init_on_free() ? 0 : PAGE_POISON;

	if (vb_has(vb, VIRTIO_BALLOON_F_PAGE_POISON))
		virtio_cwrite_le(vb->vdev, struct virtio_balloon_config,
				 poison_val, &poison);
}

static int vb_probe(struct virtio_device *vdev)
{
	struct vb_dev *vb;
	int err;

	if (!vdev->config->get) {
		dev_err(&vdev->dev, "device has no configuration space\n");
		return -EINVAL;
	}

	vb = kzalloc(sizeof(*vb), GFP_KERNEL);
	if (!vb)
		return -ENOMEM;
	vb->vdev = vdev;
	vdev->priv = vb;
	mutex_init(&vb->lock);
	spin_lock_init(&vb->stop_lock);
	vb->stopped = true;
	init_waitqueue_head(&vb->acked);
	INIT_DELAYED_WORK(&vb->balloon_work, vb_balloon_work);
	INIT_WORK(&vb->stats_work, vb_stats_work);
	vb->oom_nb.notifier_call = vb_oom_notify;
	vb->oom_nb.priority = 80;
	balloon_devinfo_init(&vb->b_dev_info);
#ifdef CONFIG_BALLOON_MIGRATION
	vb->b_dev_info.migratepage = vb_migrate_page;
#endif

	vb->pfns = kmalloc_array(VB_BATCH_PFNS, sizeof(vb->pfns[0]),
				 GFP_KERNEL);
	if (!vb->pfns) {
		err = -ENOMEM;
		goto err_free_vb;
	}

	err = vb_init_vqs(vb);
	if (err)
		goto err_free_pfns;
	vb_write_poison(vb);
	virtio_device_ready(vdev);

	err = vb_start_users(vb);
	if (err)
		goto err_del_vqs;

	vb->debugfs = debugfs_create_dir(dev_name(&vdev->dev), vb_debugfs_root);
	debugfs_create_file("status", 0444, vb->debugfs, vb, &vb_debugfs_fops);
	return 0;

err_del_vqs:
	vb_del_vqs(vb);
err_free_pfns:
	kfree(vb->pfns);
err_free_vb:
	kfree(vb);
	vdev->priv = NULL;
	return err;
}

static void vb_remove(struct virtio_device *vdev)
{
	struct vb_dev *vb = vdev->priv;

	debugfs_remove_recursive(vb->debugfs);
	vb_stop_users(vb);
	mutex_lock(&vb->lock);
	/* A broken device has no queue to tell; its pages are ours anyway. */
	vb_deflate_all_locked(vb, vb->state == VB_STATE_RUNNING);
	if (vb->state == VB_STATE_RUNNING)
		vb_del_vqs(vb);
	mutex_unlock(&vb->lock);
	kfree(vb->pfns);
	kfree(vb);
}

#ifdef CONFIG_PM_SLEEP
static int vb_freeze(struct virtio_device *vdev)
{
	struct vb_dev *vb = vdev->priv;

	vb->pm_restoring = false;
	vb_stop_users(vb);
	mutex_lock(&vb->lock);
	if (vb->state == VB_STATE_RUNNING) {
		vb_del_vqs(vb);
		vb_set_state(vb, VB_STATE_FROZEN);
	}
	mutex_unlock(&vb->lock);
	dev_dbg(&vdev->dev, "frozen with %u balloon pages held\n",
		vb->num_bpages);
	return 0;
}

/*
 * Return every ballooned page to the guest after a restore, telling the
 * device first only when it insists on it. Context: vb->lock held.
 */
static void vb_drop_balloon_locked(struct vb_dev *vb)
{
	unsigned int dropped = vb->num_bpages;
	ktime_t start = ktime_get();

	vb_deflate_all_locked(vb,
			      vb_has(vb, VIRTIO_BALLOON_F_MUST_TELL_HOST));
	vb->counters[VB_CNT_RESTORE_DROPPED] += dropped;
	dev_info(&vb->vdev->dev,
		 "restore: returned %u MiB of ballooned memory to the guest in %lld us\n",
		 dropped / VB_BPAGES_PER_MB,
		 ktime_us_delta(ktime_get(), start));
}

/* Shared by thaw and restore; the PM core tells which (see the top). */
static int vb_restore(struct virtio_device *vdev)
{
	struct vb_dev *vb = vdev->priv;
	bool restoring = vb->pm_restoring;
	const char *what = restoring ? "restore" : "thaw";
	const char *step;
	unsigned int held;
	int err;

	vb->pm_restoring = false;
	mutex_lock(&vb->lock);
	if (vb->state != VB_STATE_FROZEN) {
		mutex_unlock(&vb->lock);
		dev_err(&vdev->dev, "%s: device was not frozen (state %s)\n",
			what, vb_state_names[vb->state]);
		return -EINVAL;
	}
	err = vb_init_vqs(vb);
	if (err) {
		step = "re-create virtqueues";
		goto err_broken;
	}
	vb_write_poison(vb);
	virtio_device_ready(vdev);
	vb_set_state(vb, VB_STATE_RUNNING);
	if (restoring) {
		vb->counters[VB_CNT_RESTORED]++;
		vb_drop_balloon_locked(vb);
	} else {
		vb->counters[VB_CNT_THAWED]++;
	}
	vb_write_actual(vb);
	mutex_unlock(&vb->lock);

	err = vb_start_users(vb);
	if (err) {
		mutex_lock(&vb->lock);
		vb_del_vqs(vb);
		step = "restart balloon users";
		goto err_broken;
	}
	return 0;

err_broken:
	vb_set_state(vb, VB_STATE_BROKEN);
	held = vb->num_bpages;
	mutex_unlock(&vb->lock);
	dev_err(&vdev->dev, "%s: cannot %s (%d); balloon off, %u pages held\n",
		what, step, err, held);
	return err;
}

static int vb_pm_restore_early(struct device *dev)
{
	struct vb_dev *vb = dev_to_virtio(dev)->priv;

	vb->pm_restoring = true;
	return 0;
}

static const struct dev_pm_ops vb_pm_ops = {
	.restore_early = vb_pm_restore_early,
};
#endif /* CONFIG_PM_SLEEP */

static const struct virtio_device_id vb_id_table[] = {
	{ VIRTIO_ID_BALLOON, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

static unsigned int vb_features[] = {
	VIRTIO_BALLOON_F_MUST_TELL_HOST,
	VIRTIO_BALLOON_F_STATS_VQ,
	VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
	VIRTIO_BALLOON_F_PAGE_POISON,
	VIRTIO_BALLOON_F_REPORTING,
};

static struct virtio_driver vb_driver = {
	.feature_table = vb_features,
	.feature_table_size = ARRAY_SIZE(vb_features),
	.driver.name = KBUILD_MODNAME,
#ifdef CONFIG_PM_SLEEP
	.driver.pm = &vb_pm_ops,
#endif
	.id_table = vb_id_table,
	.validate = vb_validate,
	.probe = vb_probe,
	.remove = vb_remove,
	.config_changed = vb_config_changed,
#ifdef CONFIG_PM_SLEEP
	.freeze = vb_freeze,
	.restore = vb_restore,
#endif
};

static int __init vb_init(void)
{
	int err;

	vb_debugfs_root = debugfs_create_dir(KBUILD_MODNAME, NULL);
	err = register_virtio_driver(&vb_driver);
	if (err)
		debugfs_remove_recursive(vb_debugfs_root);
	return err;
}

static void __exit vb_exit(void)
{
	unregister_virtio_driver(&vb_driver);
	debugfs_remove_recursive(vb_debugfs_root);
}

module_init(vb_init);
module_exit(vb_exit);

MODULE_DEVICE_TABLE(virtio, vb_id_table);
MODULE_DESCRIPTION("Virtio memory balloon driver with hibernation support");
MODULE_LICENSE("GPL");

#ifdef CONFIG_VIRTIO_BALLOON_KUNIT_TEST
#include "tests/virtio_balloon_kunit.c"
#endif
