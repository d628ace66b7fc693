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
 * image only holds what the guest uses. freeze therefore does not empty the
 * balloon: asking the host for memory only to drop it again costs a round
 * trip per batch and makes the host back the whole balloon while the image
 * is being written. It gives back only what the image needs (see
 * "Hibernation headroom"). freeze stops every user of the virtqueues
 * (balloon work, stats work, free page reporting, the OOM notifier,
 * migration), resets the device and deletes the queues.
 *
 * On thaw the queues come back and the balloon is kept. On restore the
 * balloon is dropped: every ballooned page goes back to the page allocator
 * and actual becomes 0; the driver then follows whatever target the host has
 * set.
 *
 * Virtio gives its drivers a single restore() callback for thaw and restore.
 * The PM core does tell them apart: it runs the restore_early() callback of
 * the virtio device's own driver only on PMSG_RESTORE, before the transport
 * (its parent) resumes the device in the normal phase. vb_pm_restore_early()
 * records that the drop is owed; only a completed drop clears it, so a
 * restore whose transport failed before vb_restore() ran is not forgotten
 * by the next thaw.
 *
 * PMSG_RESTORE does not mean a new host. The PM core also sends it when the
 * snapshot or a later step fails (a wakeup event, a syscore or platform
 * failure), for /sys/power/pm_test "platform" and "core", and for
 * test_resume: then the same host still holds every ballooned page, and a
 * page it holds must not be reused before it is deflated (virtio 1.2,
 * 5.5.6.1; MUST_TELL_HOST only says whether to wait for the answer). The
 * driver cannot tell those cases from a real resume, so the drop always
 * goes through the deflate queue. A new host that never saw these pages just
 * acknowledges them; one batch carries 16 MiB, so telling costs little.
 *
 * The drop runs in the balloon work, one batch per run with the lock dropped
 * and cond_resched() in between, so the restore callback returns at once and
 * a large balloon neither holds up the devices resumed after this one nor
 * the CPU. Until the drop is done the counts stay exact (every batch is told,
 * freed and written to actual), nothing is inflated, migration leaves the
 * balloon alone, and a freeze in the middle leaves the rest owed to the next
 * thaw or restore.
 *
 * The kernel that boots to load a hibernation image runs this driver too,
 * if it is built in or in the initramfs, and the host may have asked it for
 * a balloon. It freezes devices with PMSG_QUIESCE before jumping into the
 * image, which reuses every frame, ballooned or not. The PM notifier tells
 * the driver first (PM_RESTORE_PREPARE, before the image is read; only
 * PM_HIBERNATION_PREPARE precedes a freeze that keeps the balloon): from
 * then on nothing is inflated and the whole balloon is deflated, told, so
 * the host and the restored kernel agree that nothing is ballooned.
 * PM_POST_RESTORE, sent if the image is not restored, lifts that again.
 *
 * Locking
 * -------
 * vb->lock (mutex) serialises every change to the balloon and every use of
 * the inflate and deflate queues: the balloon work, the OOM notifier's
 * deflate, migration (which only tries the lock, see vb_migrate_page()),
 * the PM notifier, freeze, restore_early, restore and remove; debugfs takes
 * it to read a consistent picture. It also protects vb->state and the drop
 * bookkeeping. It does not serialise the other queues, which have one user
 * each: the statistics queue the stats work, the free page queue the hint
 * work, the reporting queue page reporting's callback. Those users run only
 * between vb_start_users() and vb_stop_users(), and freeze and remove stop
 * them before the queues go. Lock order: vb->lock, then the balloon core's
 * page list lock, taken inside its functions.
 *
 * vb->stop_lock (spinlock) protects vb->stopped and vb->wake_bits. The
 * virtio callbacks (atomic context) queue work and hold the wakeup source
 * only under it and only while vb->stopped is clear, so once vb_stop_users()
 * has set the flag, the cancel_*_sync() calls after it leave nothing queued.
 * The hint run also reads the flag without the lock, only to end early.
 *
 * vb->pm_restoring is under no lock: only the PM callbacks touch it (freeze
 * clears it, restore_early sets it, restore reads and clears it), and the PM
 * core calls those for one device one after another, never at once.
 * vb->hint_lock protects the hinted blocks' list and counts.
 */

#include <linux/atomic.h>
#include <linux/balloon.h>
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/freezer.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/oom.h>
#include <linux/page_reporting.h>
#include <linux/poison.h>
#include <linux/pm.h>
#include <linux/scatterlist.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/seq_file.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include <linux/suspend.h>
#include <linux/swap.h>
#include <linux/virtio.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
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

static unsigned int hib_give_pct = 100;
module_param(hib_give_pct, uint, 0644);
MODULE_PARM_DESC(hib_give_pct,
		 "Percent of the estimated need to give back before a hibernation image (for measuring the least that works; default 100)");

/*
 * Slots of vb->vqs[], in the specification's queue order. The slot of a
 * queue whose feature was not negotiated stays NULL and takes no queue
 * index: virtio_find_vqs() numbers only the queues it is given a name for,
 * as the device numbers only the queues it offers.
 */
enum vb_vq {
	VB_VQ_INFLATE,
	VB_VQ_DEFLATE,
	VB_VQ_STATS,
	VB_VQ_FREE_PAGE,	/* free page hinting */
	VB_VQ_REPORTING,
	VB_VQ_NR,
};

/**
 * enum vb_state - life cycle of the device, changed only by vb_set_state()
 * @VB_STATE_RUNNING: queues exist; work, notifier and reporting may run.
 * @VB_STATE_FROZEN: between freeze and thaw/restore; no queues.
 * @VB_STATE_BROKEN: thaw or restore failed, or the device failed a request;
 *	the balloon no longer follows the host (users that remain, such as
 *	reporting, fail at once on a broken queue). Ballooned pages stay out
 *	of use for good: the host may still hold them and can no longer be
 *	told (see vb_remove()).
 */
enum vb_state {
	VB_STATE_RUNNING,
	VB_STATE_FROZEN,
	VB_STATE_BROKEN,
};

#define VB_WAKE_TARGET	BIT(0)	/* config change: follow the new target */
#define VB_WAKE_STATS	BIT(1)	/* statistics request */

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
	VB_CNT_HINT_RUNS,	/* free page hint runs */
	VB_CNT_HINTED,		/* pages hinted */
	VB_CNT_HIB_GIVEN,	/* bpages given back for hibernation images */
	VB_CNT_HIB_ON_DEMAND,	/* of those, by the hibernation shrinker */
	VB_CNT_HIB_TAKEN_BACK,	/* bpages inflated again at freeze */
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
	[VB_CNT_HINT_RUNS] = "hint_runs",
	[VB_CNT_HINTED] = "hinted",
	[VB_CNT_HIB_GIVEN] = "hib_given",
	[VB_CNT_HIB_ON_DEMAND] = "hib_on_demand",
	[VB_CNT_HIB_TAKEN_BACK] = "hib_taken_back",
};

/* Statistics this driver reports: every tag the specification defines. */
#define VB_NR_STATS		16

/**
 * struct vb_dev - one virtio balloon device
 * @vdev: the virtio device.
 * @vqs: the virtqueues; NULL where the feature is absent or the device is
 *	not running. Inflate/deflate are used under @lock, stats only by
 *	@stats_work, the free page queue only by @hint_work, reporting only
 *	from @pr_dev_info's callback (see "Locking" at the top).
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
 * @stop_lock: protects @stopped and @wake_bits.
 * @stopped: no work may be queued; set before the users are cancelled.
 *	Written under @stop_lock; the hint run reads it without, to end early.
 * @wake_bits: VB_WAKE_* events being handled, see vb_wake_hold_locked().
 * @balloon_work: follows the target, one batch per run (freezable).
 * @stats_work: answers a statistics request (freezable).
 * @hint_work: runs free page hinting (freezable); the only user of the
 *	free page queue while the device runs.
 * @hint_cmd: the command id the last hint run reported; only @hint_work.
 * @hint_changed: the device announced a config change that @hint_work has
 *	not read yet; set by vb_hint_changed(), cleared by @hint_work.
 * @hint_paused: a suspend or hibernation is on its way: no hint run, and
 *	a run in progress ends; written by the PM notifier only.
 * @hint_start: buffer for the command id that opens a run; only @hint_work.
 * @hint_stop: buffer for VIRTIO_BALLOON_CMD_ID_STOP; only @hint_work.
 * @hint_lock: protects @hint_held, @hint_nr_held and @hint_blocks.
 * @hint_held: hinted blocks the device has returned; held until the run
 *	ends, the device says DONE, or the OOM notifier wants memory.
 * @hint_nr_held: blocks on @hint_held.
 * @hint_blocks: hinted blocks out of the allocator, in the queue or held.
 * @oom_nb: OOM notifier, registered with DEFLATE_ON_OOM or FREE_PAGE_HINT.
 * @pr_dev_info: free page reporting; registered with REPORTING only.
 * @reporting: @pr_dev_info is registered.
 * @oom_registered: @oom_nb is registered.
 * @drop_owed: the PM core announced PMSG_RESTORE and the balloon held at
 *	that point has not been dropped completely yet; protected by @lock.
 * @handing_back: between PM_RESTORE_PREPARE and PM_POST_RESTORE, in the
 *	kernel that loads an image: hold nothing; protected by @lock.
 * @drop_start: when the restore callback began; protected by @lock.
 * @drop_work_start: when the balloon work began the drop; protected by
 *	@lock.
 * @pm_restoring: the PM core announced PMSG_RESTORE since the last freeze;
 *	cleared by vb_freeze(), set by vb_pm_restore_early(), read and
 *	cleared by vb_restore(). Under no lock: the PM core runs those
 *	callbacks one after another. Only names the transition in counters
 *	and logs; @drop_owed is what the driver acts on.
 * @drop_bpages: bpages dropped since the last thaw or restore callback;
 *	protected by @lock.
 * @pm_nb: PM notifier, see "Hibernation" at the top.
 * @hib_holding: between PM_HIBERNATION_PREPARE and PM_POST_HIBERNATION:
 *	the balloon work inflates nothing, so what was given back for the
 *	image stays with the guest until the image is written or
 *	hibernation fails (only vb_hib_freeze() takes back a surplus);
 *	protected by @lock.
 * @hib_reserve_armed: the next freeze takes the thaw reserve; set by
 *	vb_hib_give_back(), then decided by vb_hib_freeze(); protected by
 *	@lock.
 * @hib_measure: the next freeze measures the image and gives back what
 *	its write lacks (vb_hib_freeze()); set by vb_hib_prepare(), cleared
 *	by that freeze and PM_POST_HIBERNATION; protected by @lock.
 * @hib_image0: the image vb_hib_prepare() estimated, in pages; protected
 *	by @lock.
 * @hib_counted0: the counters the image moves with, read then (struct
 *	vb_hib_mem's @counted); protected by @lock.
 * @hib_given: bpages given back for the current image so far, on
 *	demand included, less what the freeze took back; protected by
 *	@lock.
 * @hib_budget: pages the hibernation shrinker may still give back;
 *	protected by vb_hib_mutex.
 * @hib_on_demand: pages it gave back for this image; protected by
 *	vb_hib_mutex.
 * @thaw_reserve: pages deflated, told, at freeze and held off the page
 *	allocator until thaw or restore re-creates the queues (see
 *	"Hibernation headroom"); protected by @lock.
 * @stats: the statistics buffer; only @stats_work and init touch it.
 * @vm_events: scratch for all_vm_events(); only @stats_work uses it.
 * @counters: enum vb_counter; updated under @lock except reporting,
 *	statistics and hinting, which each have a single writer.
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

	spinlock_t stop_lock;		/* protects @stopped, @wake_bits */
	bool stopped;
	unsigned int wake_bits;
	struct delayed_work balloon_work;
	struct work_struct stats_work;

	struct work_struct hint_work;
	u32 hint_cmd;
	atomic_t hint_changed;
	bool hint_paused;
	__virtio32 hint_start;
	__virtio32 hint_stop;
	spinlock_t hint_lock;		/* protects the three below */
	struct list_head hint_held;
	unsigned long hint_nr_held;
	unsigned long hint_blocks;

	struct notifier_block oom_nb;
	struct page_reporting_dev_info pr_dev_info;
	bool reporting;
	bool oom_registered;

	bool drop_owed;
	bool handing_back;
	ktime_t drop_start;
	ktime_t drop_work_start;
	unsigned int drop_bpages;
	bool pm_restoring;
	struct notifier_block pm_nb;
	bool hib_holding;
	bool hib_reserve_armed;
	bool hib_measure;
	unsigned long hib_image0;
	unsigned long hib_counted0;
	unsigned int hib_given;
	unsigned long hib_budget;
	unsigned long hib_on_demand;
	struct list_head thaw_reserve;

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

/* OOM takes back ballooned pages, or blocks held for a hint run. */
static bool vb_wants_oom(struct vb_dev *vb)
{
	return vb_has(vb, VIRTIO_BALLOON_F_DEFLATE_ON_OOM) ||
	       vb_has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT);
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

/*
 * Wakeup events. A new target and a statistics request are events the
 * host expects an answer to, so a system that is going to sleep can wait
 * until the driver has handled them; the source is held while any of
 * vb->wake_bits is set, and vb->stop_lock protects the bits. Probe only
 * makes the device wakeup capable: the device has a wakeup source, and
 * pm_stay_awake() does anything, only once user space enabled it
 * (power/wakeup in sysfs), as for any other device.
 */
static void vb_wake_hold_locked(struct vb_dev *vb, unsigned int bit)
{
	lockdep_assert_held(&vb->stop_lock);
	if (!vb->wake_bits)
		pm_stay_awake(&vb->vdev->dev);
	vb->wake_bits |= bit;
}

static void vb_wake_hold(struct vb_dev *vb, unsigned int bit)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->stop_lock, flags);
	if (!vb->stopped)
		vb_wake_hold_locked(vb, bit);
	spin_unlock_irqrestore(&vb->stop_lock, flags);
}

static void vb_wake_release(struct vb_dev *vb, unsigned int bits)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->stop_lock, flags);
	if (vb->wake_bits & bits) {
		vb->wake_bits &= ~bits;
		if (!vb->wake_bits)
			pm_relax(&vb->vdev->dev);
	}
	spin_unlock_irqrestore(&vb->stop_lock, flags);
}

static void vb_acked(struct virtqueue *vq)
{
	struct vb_dev *vb = vq->vdev->priv;

	wake_up(&vb->acked);
}

/*
 * Kick @vq and wait for the device to return its only buffer. Return: 0, or
 * -ENODEV if the queue broke first: the device may have seen the buffer.
 */
static int vb_kick_wait(struct vb_dev *vb, struct virtqueue *vq)
{
	unsigned int len;
	bool done;

	virtqueue_kick(vq);
	wait_event(vb->acked,
		   (done = virtqueue_get_buf(vq, &len)) || virtqueue_is_broken(vq));
	return done ? 0 : -ENODEV;
}

/*
 * Hand @nr PFNs in vb->pfns to @vq and wait until the device returns the
 * buffer.
 *
 * Return: 0; -ENODEV if the queue broke after taking the buffer, so the
 * device may have acted on the PFNs; any other negative errno if the buffer
 * never reached the device.
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

/*
 * A request the device did not complete. It cannot be trusted with another
 * one: stop following the host, keep whatever it may hold, and say so once.
 * Context: vb->lock held.
 */
static void vb_send_failed(struct vb_dev *vb, const char *what, int err)
{
	lockdep_assert_held(&vb->lock);
	vb_set_state(vb, VB_STATE_BROKEN);
	dev_err(&vb->vdev->dev,
		"%s request failed (%d): balloon off, %u MiB held out of use\n",
		what, err, vb->num_bpages / VB_BPAGES_PER_MB);
}

/* The protocol carries 32-bit PFNs: a page above 16 TiB cannot be named. */
static bool vb_page_addressable(struct page *page)
{
	return page_to_pfn(page) * VB_BPAGES_PER_PAGE + VB_BPAGES_PER_PAGE - 1
		<= U32_MAX;
}

/* Append the bpages of @page to vb->pfns at *@n. False if not addressable. */
static bool vb_add_page_pfns(struct vb_dev *vb, struct page *page,
			     unsigned int *n)
{
	unsigned long pfn = page_to_pfn(page) * VB_BPAGES_PER_PAGE;
	unsigned int i;

	if (!vb_page_addressable(page))
		return false;
	for (i = 0; i < VB_BPAGES_PER_PAGE; i++)
		vb->pfns[(*n)++] = cpu_to_virtio32(vb->vdev, pfn + i);
	return true;
}

/*
 * The balloon is being emptied: nothing may be inflated, and migration
 * leaves it alone. Context: vb->lock held.
 */
static bool vb_emptying(struct vb_dev *vb)
{
	lockdep_assert_held(&vb->lock);
	return vb->drop_owed || vb->handing_back;
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
 * vb_inflate_pages_locked() - hand a batch of allocated pages to the host
 * @vb: the balloon, running.
 * @pages: at most VB_BATCH_PFNS bpages' worth; what is not inflated is
 *	left on it for the caller to free.
 *
 * Context: vb->lock held.
 * Return: bpages inflated.
 */
static unsigned int vb_inflate_pages_locked(struct vb_dev *vb,
					    struct list_head *pages)
{
	unsigned int n = 0, done = 0;
	struct page *page, *next;
	LIST_HEAD(sent);
	int err;

	lockdep_assert_held(&vb->lock);
	list_for_each_entry_safe(page, next, pages, lru) {
		if (vb_add_page_pfns(vb, page, &n))
			list_move_tail(&page->lru, &sent);
	}
	/*
	 * The pages join the balloon only once the device may hold them: a
	 * request that never reached it leaves them ours to free.
	 *
	 * They leave the managed count even with DEFLATE_ON_OOM, where the
	 * in-tree driver keeps them in MemTotal: a ballooned page comes back
	 * only through the OOM notifier, never through reclaim, so counting
	 * it would size watermarks and the hibernation budget on memory the
	 * guest cannot use, and MemTotal would say nothing about the balloon.
	 */
	err = n ? vb_send_pfns(vb, vb->vqs[VB_VQ_INFLATE], n) : 0;
	if (err && err != -ENODEV)
		list_splice_init(&sent, pages);
	list_for_each_entry_safe(page, next, &sent, lru) {
		list_del(&page->lru);
		balloon_page_enqueue(&vb->b_dev_info, page);
		adjust_managed_page_count(page, -1);
		done += VB_BPAGES_PER_PAGE;
	}
	vb->num_bpages += done;
	vb->counters[VB_CNT_INFLATED] += done;
	if (err)
		vb_send_failed(vb, "inflate", err);
	else if (!done)
		vb->counters[VB_CNT_ALLOC_SHORT]++;
	vb_write_actual(vb);
	return done;
}

/* Allocate up to @nr_pages pages for the balloon onto @pages. */
static void vb_alloc_pages(struct list_head *pages, unsigned long nr_pages)
{
	struct page *page;

	while (nr_pages--) {
		page = balloon_page_alloc();
		if (!page)
			break;
		list_add(&page->lru, pages);
	}
}

/* Free what vb_alloc_pages() gave and the balloon did not take. */
static void vb_put_pages(struct list_head *pages)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, pages, lru) {
		list_del(&page->lru);
		put_page(page);
	}
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
 * Return: bpages inflated; 0 when no memory could be spared, the device
 * is not running or the balloon is being emptied.
 */
static unsigned int vb_inflate(struct vb_dev *vb, unsigned int want,
			       unsigned int held)
{
	unsigned int done = 0;
	LIST_HEAD(pages);

	want = min(want, VB_BATCH_PFNS);
	vb_alloc_pages(&pages, min_t(unsigned long, want / VB_BPAGES_PER_PAGE,
				     vb_spare_pages(held)));

	mutex_lock(&vb->lock);
	/*
	 * Checked again under the lock: the pages were allocated against
	 * what was free before, and a give-back for a hibernation image may
	 * have run meanwhile.
	 */
	if (vb->state == VB_STATE_RUNNING && !vb_emptying(vb) &&
	    !vb->hib_holding)
		done = vb_inflate_pages_locked(vb, &pages);
	mutex_unlock(&vb->lock);
	/* Left over when the device stopped, or not addressable by a PFN. */
	vb_put_pages(&pages);
	return done;
}

/**
 * vb_deflate_take_locked() - take up to one batch of pages out of the balloon
 * @vb: the balloon.
 * @want: bpages wanted.
 * @taken: list the pages are added to, for the caller to free or keep.
 *
 * The PFNs go to the deflate queue, and the device has returned the
 * buffer before any page is handed over; the new size is then written to
 * actual, as vb_inflate() does. If the device does not complete the
 * request, the pages go back into the balloon and the device is marked
 * broken: a page is reused only once the host has it back.
 *
 * Context: vb->lock held; the device running.
 * Return: bpages taken.
 */
static unsigned int vb_deflate_take_locked(struct vb_dev *vb,
					   unsigned int want,
					   struct list_head *taken)
{
	unsigned int nr_pages, n = 0;
	struct page *page, *next;
	LIST_HEAD(pages);
	int err;

	lockdep_assert_held(&vb->lock);
	want = min3(want, vb->num_bpages, VB_BATCH_PFNS);
	nr_pages = balloon_page_list_dequeue(&vb->b_dev_info, &pages,
					     want / VB_BPAGES_PER_PAGE);
	if (!nr_pages)
		return 0;
	list_for_each_entry(page, &pages, lru)
		vb_add_page_pfns(vb, page, &n);
	err = vb_send_pfns(vb, vb->vqs[VB_VQ_DEFLATE], n);
	if (err) {
		list_for_each_entry_safe(page, next, &pages, lru) {
			list_del(&page->lru);
			balloon_page_enqueue(&vb->b_dev_info, page);
		}
		vb_send_failed(vb, "deflate", err);
		return 0;
	}
	vb->num_bpages -= nr_pages * VB_BPAGES_PER_PAGE;
	vb->counters[VB_CNT_DEFLATED] += nr_pages * VB_BPAGES_PER_PAGE;
	vb_write_actual(vb);
	list_splice(&pages, taken);
	return nr_pages * VB_BPAGES_PER_PAGE;
}

/*
 * Deflate up to one batch, told, and give the pages back to the page
 * allocator. Context and return as vb_deflate_take_locked().
 */
static unsigned int vb_deflate_locked(struct vb_dev *vb, unsigned int want)
{
	unsigned int done;
	LIST_HEAD(pages);

	done = vb_deflate_take_locked(vb, want, &pages);
	vb_release_pages(&pages);
	return done;
}

/*
 * Empty the balloon. Pages under migration are not on the list; wait for
 * them to come back rather than leave them behind. vb->lock is let go
 * between batches so that a large balloon holds neither the CPU nor the
 * lock for long; callers make sure nothing refills the balloon meanwhile.
 * A device that stops taking deflate requests ends it early.
 */
static void vb_deflate_all_locked(struct vb_dev *vb)
{
	lockdep_assert_held(&vb->lock);
	while (vb->num_bpages && vb->state == VB_STATE_RUNNING) {
		vb_deflate_locked(vb, vb->num_bpages);
		mutex_unlock(&vb->lock);
		cond_resched();
		mutex_lock(&vb->lock);
	}
}

/* Allocations that stalled for direct reclaim, in every zone. */
static u64 vb_alloc_stalls(const unsigned long *ev)
{
	u64 stall = 0;
	unsigned int i;

	for (i = 0; i < MAX_NR_ZONES; i++)
		stall += ev[ALLOCSTALL_NORMAL - ZONE_NORMAL + i];
	return stall;
}

/* Huge page allocations, or their failures; counted only with hugetlb. */
static u64 vb_htlb_allocs(const unsigned long *ev, bool failed)
{
#ifdef CONFIG_HUGETLB_PAGE
	return ev[failed ? HTLB_BUDDY_PGALLOC_FAIL : HTLB_BUDDY_PGALLOC];
#else
	return 0;
#endif
}

/*
 * Encode the statistics into vb->stats. Each tag sits beside its value in
 * one table, so the two cannot drift apart. Values are bytes, or counts for
 * faults, OOM kills and stalls.
 */
static void vb_stats_encode(struct vb_dev *vb, const unsigned long *ev,
			    const struct sysinfo *si)
{
	const struct {
		u16 tag;
		u64 val;
	} st[] = {
		{ VIRTIO_BALLOON_S_SWAP_IN, (u64)ev[PSWPIN] << PAGE_SHIFT },
		{ VIRTIO_BALLOON_S_SWAP_OUT, (u64)ev[PSWPOUT] << PAGE_SHIFT },
		{ VIRTIO_BALLOON_S_MAJFLT, ev[PGMAJFAULT] },
		{ VIRTIO_BALLOON_S_MINFLT, ev[PGFAULT] },
		{ VIRTIO_BALLOON_S_MEMFREE, (u64)si->freeram * si->mem_unit },
		{ VIRTIO_BALLOON_S_MEMTOT, (u64)si->totalram * si->mem_unit },
		{ VIRTIO_BALLOON_S_AVAIL,
		  (u64)si_mem_available() << PAGE_SHIFT },
		{ VIRTIO_BALLOON_S_CACHES,
		  (u64)global_node_page_state(NR_FILE_PAGES) << PAGE_SHIFT },
		{ VIRTIO_BALLOON_S_HTLB_PGALLOC, vb_htlb_allocs(ev, false) },
		{ VIRTIO_BALLOON_S_HTLB_PGFAIL, vb_htlb_allocs(ev, true) },
		{ VIRTIO_BALLOON_S_OOM_KILL, ev[OOM_KILL] },
		{ VIRTIO_BALLOON_S_ALLOC_STALL, vb_alloc_stalls(ev) },
		/*
		 * The uapi defines the scan and reclaim tags in bytes. Reclaim
		 * counts these per node, not as vm events.
		 */
		{ VIRTIO_BALLOON_S_ASYNC_SCAN,
		  (u64)global_node_page_state(PGSCAN_KSWAPD) << PAGE_SHIFT },
		{ VIRTIO_BALLOON_S_DIRECT_SCAN,
		  (u64)global_node_page_state(PGSCAN_DIRECT) << PAGE_SHIFT },
		{ VIRTIO_BALLOON_S_ASYNC_RECLAIM,
		  (u64)global_node_page_state(PGSTEAL_KSWAPD) << PAGE_SHIFT },
		{ VIRTIO_BALLOON_S_DIRECT_RECLAIM,
		  (u64)global_node_page_state(PGSTEAL_DIRECT) << PAGE_SHIFT },
	};
	unsigned int i;

	BUILD_BUG_ON(ARRAY_SIZE(st) != VB_NR_STATS);
	for (i = 0; i < VB_NR_STATS; i++) {
		vb->stats[i].tag = cpu_to_virtio16(vb->vdev, st[i].tag);
		vb->stats[i].val = cpu_to_virtio64(vb->vdev, st[i].val);
	}
}

static void vb_stats_fill(struct vb_dev *vb)
{
	struct sysinfo si;

	all_vm_events(vb->vm_events);
	si_meminfo(&si);
	vb_stats_encode(vb, vb->vm_events, &si);
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

/**
 * vb_drop_step() - drop one batch of the balloon owed since a restore
 * @vb: the balloon, running, with vb->drop_owed set.
 *
 * Every batch goes through the deflate queue and is acknowledged before
 * its pages are freed, and actual follows each batch, so the host and the
 * guest agree at every moment while the drop is under way. Once the
 * balloon is empty, logs how long the whole drop took from the restore
 * callback on and how long the batches themselves took, clears
 * vb->drop_owed and posts the statistics buffer that vb_start_users()
 * held back.
 *
 * Context: vb->lock held.
 */
static void vb_drop_step(struct vb_dev *vb)
{
	unsigned int done;

	lockdep_assert_held(&vb->lock);
	if (!vb->drop_work_start)
		vb->drop_work_start = ktime_get();
	if (vb->num_bpages) {
		done = vb_deflate_locked(vb, vb->num_bpages);
		vb->drop_bpages += done;
		vb->counters[VB_CNT_RESTORE_DROPPED] += done;
		return;
	}
	vb->drop_owed = false;
	dev_info(&vb->vdev->dev,
		 "restore: returned %u MiB of ballooned memory to the guest in %lld us (batches: %lld us)\n",
		 vb->drop_bpages / VB_BPAGES_PER_MB,
		 ktime_us_delta(ktime_get(), vb->drop_start),
		 ktime_us_delta(ktime_get(), vb->drop_work_start));

	/* The host's first statistics after a restore show the balloon gone. */
	if (vb->vqs[VB_VQ_STATS]) {
		if (vb_stats_post(vb))
			dev_warn(&vb->vdev->dev, "cannot post statistics\n");
		else
			virtqueue_kick(vb->vqs[VB_VQ_STATS]);
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
		vb_wake_release(vb, VB_WAKE_TARGET);
		return;
	}
	if (vb->drop_owed) {
		vb_drop_step(vb);
		mutex_unlock(&vb->lock);
		/* One batch per run: a freeze or the lock's waiters get a turn. */
		cond_resched();
		vb_queue_balloon_work(vb, 0);
		return;
	}
	target = vb->handing_back ? 0 : vb_target(vb);
	held = vb->num_bpages;
	/* Preparing an image: keep what vb_hib_give_back() returned. */
	if (vb->hib_holding)
		target = min(target, held);
	if (target < held)
		vb_deflate_locked(vb, held - target);
	mutex_unlock(&vb->lock);

	if (target > held && !vb_inflate(vb, target - held, held)) {
		mutex_lock(&vb->lock);
		if (!vb->short_logged)
			dev_info(&vb->vdev->dev,
				 "host asks for %u MiB, the balloon holds %u MiB and the guest can spare no more now; retrying\n",
				 vb->last_target / VB_BPAGES_PER_MB,
				 vb->num_bpages / VB_BPAGES_PER_MB);
		vb->short_logged = true;
		mutex_unlock(&vb->lock);
		delay = VB_RETRY_DELAY;
	}
	/* A target the guest cannot reach yet is no reason to stay awake. */
	if (target == held || delay)
		vb_wake_release(vb, VB_WAKE_TARGET);
	if (target != held)
		vb_queue_balloon_work(vb, delay);
}

static void vb_stats_request(struct virtqueue *vq)
{
	struct vb_dev *vb = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&vb->stop_lock, flags);
	if (!vb->stopped) {
		vb_wake_hold_locked(vb, VB_WAKE_STATS);
		queue_work(system_freezable_wq, &vb->stats_work);
	}
	spin_unlock_irqrestore(&vb->stop_lock, flags);
}

static void vb_stats_work(struct work_struct *work)
{
	struct vb_dev *vb = container_of(work, struct vb_dev, stats_work);
	struct virtqueue *vq = vb->vqs[VB_VQ_STATS];
	unsigned int len;

	if (!virtqueue_get_buf(vq, &len))
		goto out;
	if (vb_stats_post(vb)) {
		dev_warn_once(&vb->vdev->dev, "cannot answer a statistics request\n");
		goto out;
	}
	vb->counters[VB_CNT_STATS_SENT]++;
	virtqueue_kick(vq);
out:
	vb_wake_release(vb, VB_WAKE_STATS);
}

/*
 * Free page hinting
 * -----------------
 * While the host migrates the guest, it may ask for a hint run by writing
 * a new command id to free_page_hint_cmd_id. The driver then sends that id
 * on the free page queue, takes free blocks from the allocator and hands
 * their addresses to the device (which need not migrate them), and ends
 * the run by sending VIRTIO_BALLOON_CMD_ID_STOP. The host may stop a run
 * early by writing STOP, and writes DONE once the hints are of no further
 * use. A hinted block must not be written before the device has returned
 * its buffer: the device clears the block's dirty state when it takes the
 * hint. Returned blocks are held until the run ends, so that a run covers
 * distinct memory, then go back to the allocator. A run hints memory that
 * is free already: its own allocations neither reclaim nor wake kswapd,
 * since evicting caches to report the space as free would make the
 * migration cost more, not less. It takes nothing from the reserve
 * inflating keeps available, the OOM notifier takes held blocks back at
 * once, and freeze reclaims every block once the device is reset.
 *
 * The hint work is freezable, and the freezer waits for a running work
 * item: a run ends when a suspend or hibernation is being prepared (the PM
 * notifier), not only when freeze stops the users, which comes too late to
 * keep the freezer from waiting.
 *
 * The command id is only worth reading when the device has announced a
 * config change. QEMU reports 0, which is VIRTIO_BALLOON_CMD_ID_STOP, for
 * as long as a run it has accepted is going on: a run that polled the
 * field would end as soon as the device took its command id, before it
 * hinted anything.
 */
#define VB_HINT_ORDER		pageblock_order
#define VB_HINT_GFP		(__GFP_NORETRY | __GFP_NOWARN | __GFP_NOMEMALLOC)

static u32 vb_hint_cmd_id(struct vb_dev *vb)
{
	u32 cmd;

	virtio_cread_le(vb->vdev, struct virtio_balloon_config,
			free_page_hint_cmd_id, &cmd);
	return cmd;
}

static void vb_hint_free_list(struct list_head *blocks)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, blocks, lru) {
		list_del(&page->lru);
		__free_pages(page, VB_HINT_ORDER);
	}
}

/* Give back up to @max held blocks. Return: how many. Any context that sleeps. */
static unsigned long vb_hint_release(struct vb_dev *vb, unsigned long max)
{
	unsigned long n = 0;
	struct page *page;
	LIST_HEAD(blocks);

	spin_lock_irq(&vb->hint_lock);
	while (n < max && !list_empty(&vb->hint_held)) {
		page = list_first_entry(&vb->hint_held, struct page, lru);
		list_move(&page->lru, &blocks);
		vb->hint_nr_held--;
		vb->hint_blocks--;
		n++;
	}
	spin_unlock_irq(&vb->hint_lock);
	vb_hint_free_list(&blocks);
	return n;
}

/* Take a block back from the device: it has seen it, or it was reset. */
static void vb_hint_reclaim(struct vb_dev *vb, void *token, bool hold)
{
	struct page *page = token;

	if (token == &vb->hint_start || token == &vb->hint_stop)
		return;
	spin_lock_irq(&vb->hint_lock);
	if (hold) {
		list_add(&page->lru, &vb->hint_held);
		vb->hint_nr_held++;
	} else {
		vb->hint_blocks--;
	}
	spin_unlock_irq(&vb->hint_lock);
	if (!hold)
		__free_pages(page, VB_HINT_ORDER);
}

/* Every hinted block is back from the device. */
static bool vb_hint_all_back(struct vb_dev *vb)
{
	bool back;

	spin_lock_irq(&vb->hint_lock);
	back = vb->hint_nr_held == vb->hint_blocks;
	spin_unlock_irq(&vb->hint_lock);
	return back;
}

/* Collect every buffer the device has returned. Return: how many. */
static unsigned int vb_hint_reap(struct vb_dev *vb, bool hold)
{
	struct virtqueue *vq = vb->vqs[VB_VQ_FREE_PAGE];
	unsigned int len, n = 0;
	void *token;

	while ((token = virtqueue_get_buf(vq, &len))) {
		vb_hint_reclaim(vb, token, hold);
		n++;
	}
	return n;
}

static int vb_hint_send_cmd(struct vb_dev *vb, __virtio32 *buf, u32 cmd)
{
	struct virtqueue *vq = vb->vqs[VB_VQ_FREE_PAGE];
	struct scatterlist sg;
	int err;

	*buf = cpu_to_virtio32(vb->vdev, cmd);
	sg_init_one(&sg, buf, sizeof(*buf));
	err = virtqueue_add_outbuf(vq, &sg, 1, buf, GFP_KERNEL);
	if (!err)
		virtqueue_kick(vq);
	return err;
}

/* Hint one free block. Return: 0, or -ENOMEM/-ENOSPC to end the run. */
static int vb_hint_one(struct vb_dev *vb)
{
	struct virtqueue *vq = vb->vqs[VB_VQ_FREE_PAGE];
	struct scatterlist sg;
	struct page *page;
	int err;

	/*
	 * The last descriptor is kept for the STOP command id: a device
	 * stays in its run until it gets it (QEMU's iothread polls the
	 * queue for it meanwhile).
	 */
	if (vq->num_free <= 1)
		return -ENOSPC;
	if (vb_spare_pages(READ_ONCE(vb->num_bpages)) < (1UL << VB_HINT_ORDER))
		return -ENOMEM;
	page = alloc_pages(VB_HINT_GFP, VB_HINT_ORDER);
	if (!page)
		return -ENOMEM;
	sg_init_table(&sg, 1);
	sg_set_page(&sg, page, PAGE_SIZE << VB_HINT_ORDER, 0);
	err = virtqueue_add_inbuf(vq, &sg, 1, page, GFP_KERNEL);
	if (err) {
		__free_pages(page, VB_HINT_ORDER);
		return err;
	}
	spin_lock_irq(&vb->hint_lock);
	vb->hint_blocks++;
	spin_unlock_irq(&vb->hint_lock);
	vb->counters[VB_CNT_HINTED] += 1UL << VB_HINT_ORDER;
	virtqueue_kick(vq);
	return 0;
}

/* The run for @cmd must end: the device was stopped or changed the id. */
static bool vb_hint_stopping(struct vb_dev *vb, u32 cmd)
{
	if (READ_ONCE(vb->stopped) || READ_ONCE(vb->hint_paused))
		return true;
	return atomic_xchg(&vb->hint_changed, 0) && vb_hint_cmd_id(vb) != cmd;
}

/* One hint run for command id @cmd; see "Free page hinting" above. */
static void vb_hint_run(struct vb_dev *vb, u32 cmd)
{
	unsigned int tries;

	vb->hint_cmd = cmd;
	vb->counters[VB_CNT_HINT_RUNS]++;
	if (vb_hint_send_cmd(vb, &vb->hint_start, cmd))
		return;
	while (!vb_hint_stopping(vb, cmd)) {
		vb_hint_reap(vb, true);
		if (vb_hint_one(vb))
			break;
		cond_resched();
	}
	if (vb_hint_send_cmd(vb, &vb->hint_stop, VIRTIO_BALLOON_CMD_ID_STOP))
		dev_warn_once(&vb->vdev->dev, "cannot end a free page hint run\n");

	/*
	 * Wait up to a second for the device to finish with the blocks;
	 * blocks it returns later are freed when they come back.
	 */
	for (tries = 0; tries < 100; tries++) {
		vb_hint_reap(vb, true);
		if (vb_hint_all_back(vb) || READ_ONCE(vb->stopped))
			break;
		wait_event_timeout(vb->acked, READ_ONCE(vb->stopped), HZ / 100);
	}
	vb_hint_release(vb, ULONG_MAX);
}

static void vb_hint_work(struct work_struct *work)
{
	struct vb_dev *vb = container_of(work, struct vb_dev, hint_work);
	u32 cmd;

	/* Cleared before the read, so a change after it queues a new look. */
	atomic_xchg(&vb->hint_changed, 0);
	cmd = vb_hint_cmd_id(vb);

	/* Late returns from an earlier run go straight back. */
	vb_hint_reap(vb, false);
	if (cmd == VIRTIO_BALLOON_CMD_ID_DONE) {
		vb_hint_release(vb, ULONG_MAX);
		vb->hint_cmd = cmd;
	} else if (cmd != VIRTIO_BALLOON_CMD_ID_STOP && cmd != vb->hint_cmd &&
		   !READ_ONCE(vb->hint_paused)) {
		vb_hint_run(vb, cmd);
	}
}

/* A config change may carry a new command id. Any context. */
static void vb_hint_changed(struct vb_dev *vb)
{
	unsigned long flags;

	if (!vb_has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
		return;
	atomic_set(&vb->hint_changed, 1);
	spin_lock_irqsave(&vb->stop_lock, flags);
	if (!vb->stopped)
		queue_work(system_freezable_wq, &vb->hint_work);
	spin_unlock_irqrestore(&vb->stop_lock, flags);
}

static void vb_config_changed(struct virtio_device *vdev)
{
	struct vb_dev *vb = vdev->priv;

	vb_wake_hold(vb, VB_WAKE_TARGET);
	vb_queue_balloon_work(vb, 0);
	vb_hint_changed(vb);
}

/*
 * After a reset the device holds none of our buffers: take every block
 * back. Context: the device is reset and its queues not yet deleted.
 */
static void vb_hint_reclaim_all(struct vb_dev *vb)
{
	struct virtqueue *vq = vb->vqs[VB_VQ_FREE_PAGE];
	void *token;

	if (!vq)
		return;
	vb_hint_reap(vb, false);
	while ((token = virtqueue_detach_unused_buf(vq)))
		vb_hint_reclaim(vb, token, false);
	vb_hint_release(vb, ULONG_MAX);
	vb->hint_cmd = VIRTIO_BALLOON_CMD_ID_STOP;
}

static int vb_oom_notify(struct notifier_block *nb, unsigned long unused,
			 void *parm)
{
	struct vb_dev *vb = container_of(nb, struct vb_dev, oom_nb);
	unsigned long *freed = parm;
	unsigned int done = 0;

	/* Held hint blocks are free memory on loan: they go first. */
	*freed += vb_hint_release(vb, ULONG_MAX) << VB_HINT_ORDER;
	if (!vb_has(vb, VIRTIO_BALLOON_F_DEFLATE_ON_OOM))
		return NOTIFY_OK;

	mutex_lock(&vb->lock);
	if (vb->state == VB_STATE_RUNNING) {
		done = vb_deflate_locked(vb, oom_pages * VB_BPAGES_PER_PAGE);
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
	bool moved = false;
	unsigned int n = 0;
	int err;

	/*
	 * Never sleep on vb->lock. Its holder may be waiting for the host,
	 * a round trip per batch, or allocating with it held (restore
	 * re-creates the queues), and that allocation may have entered the
	 * very compaction that called us. -EAGAIN costs nothing: compaction
	 * tries the page again later. While the balloon is being emptied,
	 * moving a page would only hand the host a page to take back a
	 * moment later; leave it to the drop.
	 */
	if (!mutex_trylock(&vb->lock))
		return -EAGAIN;
	if (vb->state != VB_STATE_RUNNING || vb_emptying(vb) ||
	    !vb_page_addressable(newpage)) {
		mutex_unlock(&vb->lock);
		return -EAGAIN;
	}

	/*
	 * The old page is given back first. If the device fails that, @page
	 * stays in the balloon, which is safe whatever the device did with
	 * it. If it then fails to take @newpage, the move completes when the
	 * device may have acted on @newpage (it must not be freed), and is
	 * refused when @newpage never reached it: @page then stays out of
	 * use although the host gave it up, the safe disagreement.
	 */
	vb_add_page_pfns(vb, page, &n);
	err = vb_send_pfns(vb, vb->vqs[VB_VQ_DEFLATE], n);
	if (!err) {
		n = 0;
		vb_add_page_pfns(vb, newpage, &n);
		err = vb_send_pfns(vb, vb->vqs[VB_VQ_INFLATE], n);
		moved = !err || err == -ENODEV;
	}
	if (err)
		vb_send_failed(vb, "migration", err);
	if (!moved) {
		mutex_unlock(&vb->lock);
		return -EAGAIN;
	}
	if (page_zone(page) != page_zone(newpage)) {
		adjust_managed_page_count(page, 1);
		adjust_managed_page_count(newpage, -1);
	}
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
	int err;

	if (vb_has(vb, VIRTIO_BALLOON_F_STATS_VQ))
		info[VB_VQ_STATS] = (struct virtqueue_info){ "stats",
							     vb_stats_request };
	/*
	 * Queues are numbered in this order, skipping absent ones: with
	 * hinting negotiated, reporting sits where such a device expects it.
	 */
	if (vb_has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
		info[VB_VQ_FREE_PAGE] = (struct virtqueue_info){ "free_page",
								 vb_acked };
	if (vb_has(vb, VIRTIO_BALLOON_F_REPORTING))
		info[VB_VQ_REPORTING] = (struct virtqueue_info){ "reporting",
								 vb_acked };
	err = virtio_find_vqs(vb->vdev, VB_VQ_NR, vb->vqs, info, NULL);
	/* A failed find leaves no queue, whatever it wrote to vb->vqs. */
	if (err)
		memset(vb->vqs, 0, sizeof(vb->vqs));
	return err;
}

static void vb_del_vqs(struct vb_dev *vb)
{
	virtio_reset_device(vb->vdev);
	vb_hint_reclaim_all(vb);
	vb->vdev->config->del_vqs(vb->vdev);
	memset(vb->vqs, 0, sizeof(vb->vqs));
}

/**
 * vb_start_users() - let everything that uses the queues run
 * @vb: the balloon, with its queues found and the device ready.
 *
 * The first statistics buffer is filled here, or, while a restore's drop
 * is owed, once the drop is done, so that the host's first reading shows
 * the memory the guest really has.
 *
 * Undone by vb_stop_users().
 *
 * Return: 0 or a negative errno, in which case nothing was started.
 */
static int vb_start_users(struct vb_dev *vb)
{
	struct virtqueue *rvq = vb->vqs[VB_VQ_REPORTING];
	int err;

	/* With a drop owed, vb_drop_step() posts the first buffer instead. */
	if (vb->vqs[VB_VQ_STATS] && !READ_ONCE(vb->drop_owed)) {
		err = vb_stats_post(vb);
		if (err)
			return err;
	}

	if (rvq && virtqueue_get_vring_size(rvq) >= PAGE_REPORTING_CAPACITY) {
		vb->pr_dev_info.report = vb_report_free_pages;
		/* The allocator's default order (pageblock_order). */
		vb->pr_dev_info.order = PAGE_REPORTING_ORDER_UNSPECIFIED;
		err = page_reporting_register(&vb->pr_dev_info);
		if (err)
			return err;
		vb->reporting = true;
	} else if (rvq) {
		dev_info_once(&vb->vdev->dev,
			      "reporting queue too small; free page reporting off\n");
	}

	if (vb_wants_oom(vb)) {
		err = register_oom_notifier(&vb->oom_nb);
		if (err) {
			if (vb->reporting)
				page_reporting_unregister(&vb->pr_dev_info);
			vb->reporting = false;
			return err;
		}
		vb->oom_registered = true;
	}

	spin_lock_irq(&vb->stop_lock);
	WRITE_ONCE(vb->stopped, false);
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
	WRITE_ONCE(vb->stopped, true);
	spin_unlock_irq(&vb->stop_lock);

	/*
	 * A queue the transport broke (surprise removal) raises no more
	 * interrupts: wake whoever waits on one, or cancelling below would
	 * wait for it forever.
	 */
	wake_up(&vb->acked);
	cancel_delayed_work_sync(&vb->balloon_work);
	cancel_work_sync(&vb->stats_work);
	cancel_work_sync(&vb->hint_work);
	if (vb->reporting)
		page_reporting_unregister(&vb->pr_dev_info);
	vb->reporting = false;
	if (vb->oom_registered)
		unregister_oom_notifier(&vb->oom_nb);
	vb->oom_registered = false;
	vb_wake_release(vb, VB_WAKE_TARGET | VB_WAKE_STATS);
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

/*
 * Freed pages hold a known pattern that the guest relies on: zeroes with
 * init_on_free, PAGE_POISON bytes with page poisoning.
 */
static bool vb_free_pages_patterned(void)
{
	return want_init_on_free() || page_poisoning_enabled_static();
}

/**
 * vb_validate() - drop offered features this guest cannot use
 * @vdev: the device, before feature negotiation completes.
 *
 * A device that discards reported pages may hand them back zeroed. With
 * no pattern in free pages that is harmless and PAGE_POISON has nothing to
 * promise. With a pattern, reporting is only safe if the device keeps it,
 * which is what PAGE_POISON (with poison_val) asks for; without that
 * feature, reporting is turned off rather than risk a corrupted pattern.
 *
 * The balloon's PFNs are guest-physical addresses that no IOMMU
 * translates, so ACCESS_PLATFORM is never accepted.
 *
 * Return: 0; nothing offered makes the device unusable.
 */
static int vb_validate(struct virtio_device *vdev)
{
	bool keeps_pattern = virtio_has_feature(vdev,
						VIRTIO_BALLOON_F_PAGE_POISON);

	__virtio_clear_bit(vdev, VIRTIO_F_ACCESS_PLATFORM);
	/*
	 * A free page report is up to PAGE_REPORTING_CAPACITY buffers added
	 * from the reporting worker: with indirect descriptors each report
	 * would first try a GFP_NOWAIT allocation for the table. The ring is
	 * checked to be large enough to take a report directly.
	 */
	__virtio_clear_bit(vdev, VIRTIO_RING_F_INDIRECT_DESC);

	if (!vb_free_pages_patterned()) {
		__virtio_clear_bit(vdev, VIRTIO_BALLOON_F_PAGE_POISON);
		return 0;
	}
	if (!keeps_pattern &&
	    virtio_has_feature(vdev, VIRTIO_BALLOON_F_REPORTING)) {
		dev_info(&vdev->dev,
			 "free page reporting off: freed pages hold a pattern the device does not promise to keep\n");
		__virtio_clear_bit(vdev, VIRTIO_BALLOON_F_REPORTING);
	}
	return 0;
}

/*
 * Tell a PAGE_POISON device the pattern of free pages. The device compares
 * 32-bit words, so the byte page poisoning writes fills all four bytes.
 */
static void vb_write_poison(struct vb_dev *vb)
{
	u32 poison = 0;

	if (!vb_has(vb, VIRTIO_BALLOON_F_PAGE_POISON))
		return;
	if (!want_init_on_free())
		memset(&poison, PAGE_POISON, sizeof(poison));
	virtio_cwrite_le(vb->vdev, struct virtio_balloon_config, poison_val,
			 &poison);
}

/*
 * Hand the thaw reserve (see "Hibernation headroom") to the page
 * allocator. Context: vb->lock held. Return: whether there was one.
 */
static bool vb_thaw_reserve_release(struct vb_dev *vb)
{
	lockdep_assert_held(&vb->lock);
	if (list_empty(&vb->thaw_reserve))
		return false;
	vb_release_pages(&vb->thaw_reserve);
	return true;
}

#ifdef CONFIG_PM_SLEEP
/*
 * Hibernation headroom
 * --------------------
 * The kernel preallocates every page frame of the image in
 * hibernate_preallocate_memory(), after processes are frozen and before any
 * device freezes, from what the guest holds outside the balloon. A balloon
 * that leaves too little there makes hibernation fail in one of two places:
 *
 * (A) The preallocation. With H the pages outside the balloon (the
 *     kernel's own reserved pages, its image and memory map, are saved
 *     too) and TR totalreserve_pages (high watermarks and lowmem
 *     reserves), the kernel first takes
 *
 *	alloc = (H - TR + metadata + PAGES_FOR_IO) / 2 + 2 * reserved_size
 *
 *     pages with GFP_KERNEL, and fails ("Image allocation is N pages
 *     short") if it cannot. Those allocations stop at each zone's min
 *     watermark and lowmem reserve (R): the give-back G must make
 *     free - R - bitmaps >= alloc, G counting once in H and twice on the
 *     left.
 *
 *     They also see only the buddy allocator's free pages. The per-CPU
 *     lists can hold up to a zone's low watermark after large frees (and
 *     grow there by themselves where their size is tuned at run time), a
 *     deflate's pages among them, and come back only when reclaim makes
 *     progress: in a guest squeezed by its balloon it makes none, and a
 *     4 GiB guest failed with 17,000 free pages out of reach. Counting
 *     them as lost would not do: every page given back that lands there
 *     too raises alloc by half a page and frees nothing usable. Instead
 *     the driver registers a shrinker that serves only the task that
 *     froze processes for the image (PF_SUSPEND_TASK), only until the
 *     device freezes: when the preallocation finds no page, it gives
 *     back a few ballooned pages, told, and reports them as reclaimed;
 *     that progress makes the page allocator drain the per-CPU lists and
 *     retry. It gives back at most a small budget in all, which also
 *     covers an estimate that fell short; the preallocation's second
 *     stage, which runs memory down on purpose, may use what is left.
 *     The image writer, in the same task, meets the same lists: its
 *     pages come back there as its writes complete. So thaw serves it
 *     again, with a new budget, until PM_POST_HIBERNATION, and with it
 *     the other devices' thaw and the writer's threads, which other
 *     tasks allocate while processes stay frozen.
 *
 *     The first stage also takes at most the buddy free pages it found
 *     on entry plus what it counts reclaimable (avail_normal), which
 *     neither the shrinker nor a drain raises: the give-back must reach
 *     the buddy lists for that (check (A')).
 *
 * (B) The image write. The copy takes a page for every saveable page S,
 *     with GFP_ATOMIC where the preallocation fell short, so it may dip
 *     under the min watermarks; the snapshot frees nothing, so thaw and
 *     the swap writer then live on what is left above them
 *     (vb_hib_write_floor()): the writer's compression buffers and
 *     threads take about 90 pages per thread (at most three by default),
 *     thaw a few pages per virtqueue, the queue pairs of multiqueue
 *     devices growing with the CPUs, and PAGES_FOR_IO (4 MiB) is the
 *     kernel's own check of the copy. After the copy H - 2 * S - bitmaps
 *     pages are free, or fewer: copy pages preallocated beyond S stay in
 *     use until the image is written, so after the preallocation what is
 *     free then bounds it too (vb_hib_write_short()). Short of it, the copy
 *     succeeds and thaw finds every zone under its min watermark: queues
 *     cannot be re-created and the image is not written. The per-CPU
 *     lists, which the copy drains, take a refill from what is left
 *     before anyone allocates from them (vb_pcp_refill()), and the
 *     watermark checks do not count those pages.
 *
 * The two checks see different images. With image_size 0 the kernel first
 * asks reclaim for every page it counts reclaimable, and gets between a
 * tenth and a half of them, depending on swap and on what is dirty; the
 * preallocation is sized before that, the copy after. So the give-back
 * comes in two parts. On PM_HIBERNATION_PREPARE the driver reads the
 * counters (vb_hib_need()), takes S as every page in use, no credit for
 * reclaim, and gives back (deflates, telling the host, which is the host
 * that keeps running while the image is made) what (A) and (A') lack,
 * plus room for what is allocated before the kernel counts again, when
 * it starts to preallocate. It then reads the counters again and,
 * while (A') is still short of that room because the per-CPU lists took
 * part of the give-back, gives back the shortfall found then, in at most
 * VB_HIB_PASSES - 1 more passes. At freeze, after the preallocation and
 * its reclaim, vb_hib_freeze() measures the image: the estimate made at
 * PM_HIBERNATION_PREPARE, moved by what the counters of pages in use
 * (the lists reclaim works on, slab, page tables, kernel stacks) moved by
 * since. The preallocated page frames are in none of those counters. It
 * then gives back, told while the queues still exist, what (B) lacks for
 * that image, with a small margin for what the counters miss (vmalloc,
 * other drivers' freeze callbacks). Those pages are free before the copy
 * counts what to save, so they cost the image nothing. Where the first
 * part, with no credit for reclaim, gave back more than (B) needs, it
 * inflates the surplus again, told, so that what stays given back is
 * what the write needs.
 *
 * Nothing else is inflated until PM_POST_HIBERNATION, after which the
 * balloon follows the host's target. Ordinary memory pressure never
 * deflates through this path. A reserved_size raised in sysfs is not
 * seen: a module cannot read it, and (A) assumes the default.
 *
 * The thaw reserve: thaw runs after the snapshot, when the image copy
 * fills memory, and re-creating the queues needs memory. A freeze that
 * leaves (B) at its floor (short, or part of a give-back kept) deflates
 * VB_THAW_RESERVE_PAGES more, told while the queues still exist, and
 * keeps them off the allocator until thaw or restore is about to find
 * the queues again.
 */
#define VB_HIB_IO_PAGES		((4UL << 20) >> PAGE_SHIFT)	/* PAGES_FOR_IO */
#define VB_HIB_SPARE_PAGES	((1UL << 20) >> PAGE_SHIFT)	/* reserved_size */
#define VB_THAW_RESERVE_PAGES	((1UL << 20) >> PAGE_SHIFT)
/* The room of (A) and (A') and the shrinker's budget: a share of the image. */
#define VB_HIB_MARGIN_DIV	40
#define VB_HIB_PASSES		3
/*
 * Above the watermarks after the copy: thaw's allocations and the swap
 * writer's, and per compression thread its buffers and task.
 */
#define VB_HIB_WRITE_PAGES	128
#define VB_HIB_THREAD_PAGES	96
/*
 * Per CPU, for the queues multiqueue devices re-create at thaw: a 256-entry
 * split vring takes 3 pages, virtio-blk one per CPU, virtio-net two (its
 * receive refill tolerates failure).
 */
#define VB_HIB_CPU_PAGES	8
/* The margin of (B): what the counters miss, as a share and a floor. */
#define VB_HIB_WRITE_MARGIN_DIV	256
#define VB_HIB_WRITE_MARGIN	64
/* QUARANTINE_FRACTION of mm/kasan/quarantine.c, which no header exports. */
#define VB_HIB_KASAN_QUARANTINE_DIV	32
/*
 * Pages allocated between PM_HIBERNATION_PREPARE and the preallocation's
 * count that stay in use, beyond 1/40 of the image: (A) and (A') keep
 * room for that many (see vb_hib_need()).
 */
#define VB_HIB_PREALLOC_SLACK	256
/* The shrinker: pages per call, and its budget beyond 1/40 of the image. */
#define VB_HIB_SHRINK_BATCH	32
#define VB_HIB_SHRINK_BUDGET	512
/*
 * What one CPU's per-CPU lists of a zone may take from the buddy lists
 * after the copy drained them (see vb_pcp_refill()). The unmovable
 * order-0 list, which thaw and the writer allocate from, refills with up
 * to 2^CONFIG_PCP_BATCH_SCALE_MAX batches at once (pcp->alloc_factor),
 * never past the lists' highest mark; the compat header has one batch for
 * kernels before 6.7, which did not scale refills. The other lists they
 * use (reclaimable order-0, the slab's orders 1 to 3) refill a batch
 * each. The scale belongs to the CPU's lists of the zone, not to one
 * list, so a second order-0 list refilled right after the first would
 * take as much again; every free halves the scale, and a 4 GiB 6.12 guest
 * had one scaled refill and 111 pages more on its lists at thaw.
 */
#ifndef VB_PCP_SCALED_REFILL
#define VB_PCP_SCALED_REFILL(pcp, batch)			\
	min(READ_ONCE((pcp)->high_max), (batch) << CONFIG_PCP_BATCH_SCALE_MAX)
#endif
#define VB_PCP_OTHER_LISTS	4

/**
 * struct vb_hib_mem - what the image budget is computed from, in pages
 * @guest: pages the page allocator manages outside the balloon
 *	(totalram_pages()).
 * @kernel: present pages neither managed nor ballooned: the kernel image,
 *	the memory map and early allocations, which the image saves too.
 * @free: free pages on the buddy lists (NR_FREE_PAGES).
 * @pcp: free pages on the per-CPU lists, which NR_FREE_PAGES leaves out;
 *	the shrinker below makes the preallocation drain them.
 * @pcp_refill: what the per-CPU lists may take from the buddy lists once
 *	the copy has drained them: more than the allocations that refill
 *	them use, and gone from what the watermark checks see
 *	(vb_pcp_refill()).
 * @reclaimable: pages minimum_image_size() counts as reclaimable:
 *	reclaimable slab and the anon and file LRU lists.
 * @zspages: pages of the zsmalloc pool, where zswap keeps what reclaim
 *	swapped.
 * @counted: pages in use that counters track: @reclaimable, @zspages,
 *	the unevictable list, unreclaimable slab, page tables and kernel
 *	stacks. The image moves with it while processes are frozen.
 * @reserve: the zones' min watermarks and lowmem reserves, which no
 *	allocation of the preallocation, the copy or thaw can use; see
 *	vb_hib_zones().
 * @totalreserve: totalreserve_pages, which the preallocation subtracts.
 * @spanned: page frames the snapshot's bitmaps cover.
 * @quarantine: what generic KASAN may keep of freed slab objects before
 *	it frees them: 1/32 of memory, counted in object bytes, with the
 *	limit as of its last trim (mm/kasan/quarantine.c), so a bound, not
 *	a count. The slab that reclaim frees for the preallocation, and the
 *	bio the writer frees for each page it writes, go there first. 0
 *	without KASAN.
 * @cpus: online CPUs, which set the image writer's threads.
 */
struct vb_hib_mem {
	unsigned long guest;
	unsigned long kernel;
	unsigned long free;
	unsigned long pcp;
	unsigned long pcp_refill;
	unsigned long reclaimable;
	unsigned long zspages;
	unsigned long counted;
	unsigned long reserve;
	unsigned long totalreserve;
	unsigned long spanned;
	unsigned long quarantine;
	unsigned int cpus;
};

/**
 * struct vb_hib_need - what a guest lacks to make and write its image
 * @image: the estimated image, every page in use.
 * @prealloc: pages short for the preallocation, checks (A) and (A'),
 *	with their room for what is allocated before the kernel counts.
 * @write: pages short for the copy and the write, check (B), for @image;
 *	logged only: the give-back for it waits for the freeze, which knows
 *	what reclaim took.
 */
struct vb_hib_need {
	unsigned long image;
	unsigned long prealloc;
	unsigned long write;
};

/* One snapshot bitmap: a bit per page frame, and the radix tree above. */
static unsigned long vb_hib_bitmap(const struct vb_hib_mem *m)
{
	return DIV_ROUND_UP(m->spanned, PAGE_SIZE * 8) + 1;
}

/*
 * What the copy of an image of @image pages must leave free: thaw's and
 * the swap writer's allocations above the min watermarks and lowmem
 * reserves (128 pages, 8 per CPU, and 96 for each compression thread:
 * one per CPU but one, one to three unless 7.x's
 * hibernate_compression_threads= says otherwise), at least the kernel's
 * own PAGES_FOR_IO, and the margin of (B) for what the counters miss.
 * What the per-CPU lists take back from the buddy lists after the copy
 * drained them comes on top (vb_pcp_refill()): the watermarks are checked
 * against the buddy lists alone. So does a KASAN quarantine.
 */
static unsigned long vb_hib_write_floor(const struct vb_hib_mem *m,
					unsigned long image)
{
	unsigned long writer = VB_HIB_WRITE_PAGES +
			       VB_HIB_CPU_PAGES * m->cpus +
			       VB_HIB_THREAD_PAGES * (clamp(m->cpus, 2U, 4U) - 1);

	return max(m->reserve + writer, VB_HIB_IO_PAGES) + m->pcp_refill +
	       m->quarantine + image / VB_HIB_WRITE_MARGIN_DIV +
	       VB_HIB_WRITE_MARGIN;
}

/**
 * vb_hib_write_short() - pages the guest lacks to copy and write an image
 * @m: the guest's memory, see struct vb_hib_mem.
 * @image: the image, in pages.
 * @free: free pages after the preallocation, per-CPU lists included;
 *	ULONG_MAX before it.
 *
 * Check (B) under "Hibernation headroom". The copy takes a page for each
 * page of the image the preallocation did not take already. Where the
 * preallocation took more, the rest stays in use until the image is
 * written: it counts the per-CPU lists' free pages as saveable when it
 * gives back what it took beyond the image, and a 6.12 guest kept 3,800
 * such pages. So what is free after the copy is the lesser of what is
 * free before it and what the image, its copy and the bitmaps leave of H.
 *
 * Return: pages short of vb_hib_write_floor(); negative if that many are
 * to spare.
 */
static long vb_hib_write_short(const struct vb_hib_mem *m,
			       unsigned long image, unsigned long free)
{
	long left = (long)(m->guest + m->kernel) -
		    (long)(2 * image + 5 * vb_hib_bitmap(m));

	return (long)vb_hib_write_floor(m, image) -
	       min_t(long, left, min_t(unsigned long, free, LONG_MAX));
}

/**
 * vb_hib_need() - pages the guest lacks to preallocate its image
 * @m: the guest's memory, see struct vb_hib_mem.
 * @n: filled in, see struct vb_hib_need.
 *
 * The image is taken as every page in use, the kernel's own included: an
 * upper bound. With image_size 0 the kernel asks reclaim for what it can
 * get before it preallocates, but how much that is cannot be known
 * beforehand; an image larger than the estimate is what makes
 * hibernation fail, so reclaim is not credited here. What it did take is
 * known at freeze, where vb_hib_freeze() sizes the rest.
 *
 * Return: pages to give back for checks (A) and (A') under "Hibernation
 * headroom" to hold; 0 if they already do.
 */
static unsigned long vb_hib_need(const struct vb_hib_mem *m,
				 struct vb_hib_need *n)
{
	unsigned long have = m->guest + m->kernel;
	unsigned long free = m->free + m->pcp;
	unsigned long used = m->guest > free ? m->guest - free : 0;
	unsigned long bm = vb_hib_bitmap(m);
	unsigned long want, got, room, short_a;

	/*
	 * Whatever a KASAN quarantine holds when the image is made is in it
	 * as slab in use, and it fills with what reclaim and the
	 * preallocation free: count it in use up to its limit. The write
	 * floor counts it once more: with it there alone, a 1.2 GiB KASAN
	 * guest's preallocation came out 78 pages short; with it here alone
	 * it was never measured.
	 */
	n->image = used + m->kernel + m->quarantine;
	n->write = max(vb_hib_write_short(m, n->image, ULONG_MAX), 0L);
	/*
	 * Both checks must still hold when the kernel counts again, at the
	 * start of the preallocation: the sync and the freezing of user
	 * space allocate meanwhile, and what they keep (slab, and on a KASAN
	 * kernel a quarantine whose limit grows with the pages given back)
	 * is neither free nor reclaimable then: each such page costs two on
	 * the doubled sides below, and two given back to make up for. So
	 * each check keeps room for 1/40 of the image and
	 * VB_HIB_PREALLOC_SLACK pages, at every pass: a later pass that asked
	 * only for the bare check would let the per-CPU lists keep the room
	 * of the first.
	 */
	room = 2 * (n->image / VB_HIB_MARGIN_DIV + VB_HIB_PREALLOC_SLACK);
	/*
	 * (A), both sides doubled: 2 * (free - R - the bitmaps the kernel
	 * allocates first) >= H - TR + metadata (two bitmaps) +
	 * PAGES_FOR_IO + 4 * reserved_size, each page given back adding two
	 * on the left and one on the right. Five bitmaps on the left (four
	 * before 6.3) lean towards giving back more, per-zone rounding the
	 * "+ 1" does not cover towards less.
	 */
	want = have + 2 * m->reserve + 12 * bm + VB_HIB_IO_PAGES +
	       4 * VB_HIB_SPARE_PAGES + room;
	got = 2 * free + m->totalreserve;
	short_a = want <= got ? 0 : want - got;
	/*
	 * (A'): the same alloc against what the first stage may take,
	 * buddy free + reclaimable as found after the bitmaps, doubled. The
	 * same bitmap count, but per-zone rounding may make the kernel's a
	 * few pages more: the room covers that.
	 */
	want = have + 12 * bm + VB_HIB_IO_PAGES + 4 * VB_HIB_SPARE_PAGES +
	       room;
	got = 2 * (m->free + m->reclaimable) + m->totalreserve;
	n->prealloc = max(short_a, want <= got ? 0 : want - got);
	return n->prealloc;
}

/*
 * What @pcp, one CPU's lists of a zone, may take from the buddy lists
 * when the image copy has left them empty: a first, scaled refill, and a
 * batch for each other list in use. None of it is counted free by the
 * watermark checks, and only an allocation whose reclaim made progress
 * drains it back: after the copy, with nothing left to reclaim, none does
 * (a 4 GiB 6.12 guest's kthreadd failed to fork with 2,015 free pages on
 * the lists).
 */
static unsigned long vb_pcp_refill(struct per_cpu_pages *pcp)
{
	int batch = READ_ONCE(pcp->batch);

	if (batch <= 0)
		return 0;
	return max(VB_PCP_SCALED_REFILL(pcp, batch), batch) +
	       VB_PCP_OTHER_LISTS * batch;
}

/*
 * Walk the zones for what the kernel does not export: the free pages on
 * the per-CPU lists, the frames the bitmaps cover, and the reserve no
 * allocation for the image, the copy or thaw can use: each zone's min
 * watermark (a boost included) and its largest lowmem reserve, at most its
 * size. totalreserve_pages is not exported either; the nodes' shares are.
 */
static void vb_hib_zones(struct vb_hib_mem *m)
{
	struct per_cpu_pages *pcp;
	unsigned long res;
	struct zone *zone;
	int nid, z, j, cpu;

	m->pcp = 0;
	m->pcp_refill = 0;
	m->free = 0;
	m->zspages = 0;
	m->reserve = 0;
	m->spanned = 0;
	m->totalreserve = 0;
	for_each_online_node(nid) {
		m->totalreserve += READ_ONCE(NODE_DATA(nid)->totalreserve_pages);
		for (z = 0; z < MAX_NR_ZONES; z++) {
			zone = &NODE_DATA(nid)->node_zones[z];
			if (!populated_zone(zone))
				continue;
			m->spanned += zone->spanned_pages;
			m->free += zone_page_state_snapshot(zone, NR_FREE_PAGES);
#if IS_ENABLED(CONFIG_ZSMALLOC)
			m->zspages += zone_page_state_snapshot(zone, NR_ZSPAGES);
#endif
			res = 0;
			for (j = z; j < MAX_NR_ZONES; j++)
				res = max_t(unsigned long, res,
					    zone->lowmem_reserve[j]);
			res += min_wmark_pages(zone);
			m->reserve += min(res, zone_managed_pages(zone));
			if (!zone->per_cpu_pageset)
				continue;
			for_each_online_cpu(cpu) {
				pcp = per_cpu_ptr(zone->per_cpu_pageset, cpu);
				m->pcp += max(READ_ONCE(pcp->count), 0);
				m->pcp_refill += vb_pcp_refill(pcp);
			}
		}
	}
}

/*
 * A node statistic with what the CPUs have not yet folded into it: each
 * may hold up to its threshold per item, which on a guest with many CPUs
 * adds up to thousands of pages over the items the image is measured by.
 */
static unsigned long vb_node_stat(enum node_stat_item item)
{
	long x = global_node_page_state_pages(item);
	int nid, cpu;

	for_each_online_node(nid)
		for_each_online_cpu(cpu)
			x += per_cpu_ptr(NODE_DATA(nid)->per_cpu_nodestats,
					 cpu)->vm_node_stat_diff[item];
	return x > 0 ? x : 0;
}

/* Read the counters vb_hib_need() works from. */
static void vb_hib_mem_read(struct vb_dev *vb, struct vb_hib_mem *m)
{
	unsigned long outside, present = get_num_physpages();

	vb_hib_zones(m);
	m->guest = totalram_pages();
	m->cpus = num_online_cpus();
	/*
	 * A debug kernel's: without it, a 512 MiB balloon in a 1.2 GiB KASAN
	 * guest left the writer short half-way through its image.
	 */
	m->quarantine = IS_ENABLED(CONFIG_KASAN_GENERIC) ?
			m->guest / VB_HIB_KASAN_QUARANTINE_DIV : 0;
	m->reclaimable = vb_node_stat(NR_SLAB_RECLAIMABLE_B) +
			 vb_node_stat(NR_ACTIVE_ANON) +
			 vb_node_stat(NR_INACTIVE_ANON) +
			 vb_node_stat(NR_ACTIVE_FILE) +
			 vb_node_stat(NR_INACTIVE_FILE);
	/* Reclaim may swap to zswap, whose pool grows as the lists shrink. */
	m->counted = m->reclaimable + m->zspages +
		     vb_node_stat(NR_UNEVICTABLE) +
		     vb_node_stat(NR_SLAB_UNRECLAIMABLE_B) +
		     vb_node_stat(NR_PAGETABLE) +
		     vb_node_stat(NR_SECONDARY_PAGETABLE) +
		     (vb_node_stat(NR_KERNEL_STACK_KB) >> (PAGE_SHIFT - 10));
	outside = m->guest + READ_ONCE(vb->num_bpages) / VB_BPAGES_PER_PAGE;
	m->kernel = present > outside ? present - outside : 0;
}

/*
 * Deflate, told, @pages for the hibernation image, or the whole balloon if
 * it holds fewer, and count them. The lock is let go between batches, as
 * vb_deflate_all_locked() does; @hib_holding keeps the balloon from
 * refilling meanwhile. Context: vb->lock held. Return: bpages given back.
 */
static unsigned int vb_hib_deflate(struct vb_dev *vb, unsigned long pages)
{
	unsigned long want;
	unsigned int done = 0, step;

	lockdep_assert_held(&vb->lock);
	want = min_t(unsigned long, pages * VB_BPAGES_PER_PAGE, vb->num_bpages);
	while (done < want && vb->state == VB_STATE_RUNNING) {
		step = vb_deflate_locked(vb, want - done);
		if (!step)
			break;
		done += step;
		mutex_unlock(&vb->lock);
		cond_resched();
		mutex_lock(&vb->lock);
	}
	vb->counters[VB_CNT_HIB_GIVEN] += done;
	vb->hib_given += done;
	return done;
}

/* Pages the balloon may take before it reaches the host's target. */
static unsigned long vb_hib_room(struct vb_dev *vb)
{
	unsigned int target = vb_target(vb);

	return target > vb->num_bpages ?
	       (target - vb->num_bpages) / VB_BPAGES_PER_PAGE : 0;
}

/*
 * Inflate again, told, @pages that were given back for the image and
 * turned out not to be needed, as far as the guest can spare them now,
 * the host's target allows (it may have lowered it since) and no drop is
 * owed. The lock is let go for the allocations, as vb_inflate() does.
 * Context: vb->lock held; users stopped. Return: bpages taken back.
 */
static unsigned int vb_hib_take_back(struct vb_dev *vb, unsigned long pages)
{
	unsigned int done = 0, step;
	unsigned long want, room;
	struct page *page, *next;
	LIST_HEAD(list);

	lockdep_assert_held(&vb->lock);
	pages = min_t(unsigned long, pages, vb->hib_given / VB_BPAGES_PER_PAGE);
	for (;;) {
		/* Never past the host's target, nor with a drop owed. */
		want = min_t(unsigned long, pages - done / VB_BPAGES_PER_PAGE,
			     vb_hib_room(vb));
		if (!want || vb->state != VB_STATE_RUNNING || vb_emptying(vb))
			break;
		mutex_unlock(&vb->lock);
		vb_alloc_pages(&list, min_t(unsigned long, want,
					    VB_BATCH_PFNS / VB_BPAGES_PER_PAGE));
		mutex_lock(&vb->lock);
		/* The target may have fallen while the lock was let go. */
		room = vb_hib_room(vb);
		list_for_each_entry_safe(page, next, &list, lru) {
			if (room) {
				room--;
				continue;
			}
			list_del(&page->lru);
			put_page(page);
		}
		if (list_empty(&list))
			break;
		step = vb->state == VB_STATE_RUNNING && !vb_emptying(vb) ?
		       vb_inflate_pages_locked(vb, &list) : 0;
		vb_put_pages(&list);
		if (!step)
			break;
		done += step;
	}
	vb->counters[VB_CNT_HIB_TAKEN_BACK] += done;
	vb->hib_given -= done;
	return done;
}

/**
 * vb_hib_give_back() - return what the hibernation image needs
 * @vb: the balloon.
 * @m: the guest's memory now.
 * @n: filled in with what vb_hib_need() found in @m.
 *
 * Deflates, telling the host, the pages vb_hib_need() asks for (scaled by
 * hib_give_pct), or the whole balloon if it holds fewer: with an empty
 * balloon hibernation then fails or succeeds as it would without this
 * driver. Arms the thaw reserve when anything was given back and
 * something is left to take it from.
 *
 * Context: vb->lock held; the device running.
 * Return: bpages given back.
 */
static unsigned int vb_hib_give_back(struct vb_dev *vb,
				     const struct vb_hib_mem *m,
				     struct vb_hib_need *n)
{
	unsigned long need;
	unsigned int done;

	lockdep_assert_held(&vb->lock);
	need = div_u64((u64)vb_hib_need(m, n) *
		       min(READ_ONCE(hib_give_pct), 100U), 100);
	done = vb_hib_deflate(vb, need);
	if (done)
		vb->hib_reserve_armed = vb->num_bpages != 0;
	return done;
}

/*
 * The hibernation shrinker (see "Hibernation headroom"). One serves every
 * device; the last one served answers it: on PM_HIBERNATION_PREPARE (a
 * running, non-empty balloon) or at the thaw that follows. It runs in
 * direct reclaim, where vb->lock may be held by a holder that waits for
 * the host or allocates (the balloon work, compaction's migration): it
 * only ever tries the locks. A miss reports no progress; the allocator
 * retries reclaim a number of times before it gives up, and the holders
 * let go within a host round trip. A deflate here waits for the host
 * without a timeout, as every deflate does: a host that stops answering
 * hangs the hibernation, as it would hang any balloon request.
 */
static struct shrinker *vb_hib_shrinker;
/*
 * vb_hib_mutex protects vb_hib_dev and the devices' hib_budget and
 * hib_on_demand. Not vb->lock: unserve runs at freeze, which may come
 * while the balloon work holds vb->lock for a host round trip.
 */
static DEFINE_MUTEX(vb_hib_mutex);
static struct vb_dev *vb_hib_dev;
/* vb_hib_dev serves the thaw after an image copy; see below. */
static bool vb_hib_thawed;

/*
 * Allocations without __GFP_MOVABLE (not shrink_all_memory(), which
 * reclaims to make the image smaller) of the task that froze processes
 * for the image: the preallocation and the writer. After the image copy
 * also those of every task but kswapd while processes stay frozen:
 * devices thaw from workers and the writer's threads are forked by
 * kthreadd, and the pages freed meanwhile sit on the per-CPU lists (a
 * 4 GiB 6.12 guest had 2,000 there while its disk failed to thaw).
 */
static bool vb_hib_shrink_serves(struct shrink_control *sc)
{
	if (sc->gfp_mask & __GFP_MOVABLE)
		return false;
	if (current->flags & PF_SUSPEND_TASK)
		return true;
	return READ_ONCE(vb_hib_thawed) && !current_is_kswapd() &&
	       static_branch_unlikely(&freezer_active);
}

static unsigned long vb_hib_shrink_count(struct shrinker *shrinker,
					 struct shrink_control *sc)
{
	unsigned long n = 0;

	/* Every direct reclaim in the system asks: answer those cheaply. */
	if (!READ_ONCE(vb_hib_dev) || !vb_hib_shrink_serves(sc) ||
	    !mutex_trylock(&vb_hib_mutex))
		return 0;
	if (vb_hib_dev && vb_hib_dev->hib_budget &&
	    READ_ONCE(vb_hib_dev->num_bpages))
		n = 2 * VB_HIB_SHRINK_BATCH;
	mutex_unlock(&vb_hib_mutex);
	/*
	 * A constant: reclaim scans half of what is counted, in batches, and
	 * would defer a smaller count to a later, harder round. The scan
	 * keeps to the budget.
	 */
	return n;
}

static unsigned long vb_hib_shrink_scan(struct shrinker *shrinker,
					struct shrink_control *sc)
{
	unsigned long want, done = 0;
	struct vb_dev *vb;

	if (!vb_hib_shrink_serves(sc) || !mutex_trylock(&vb_hib_mutex))
		return SHRINK_STOP;
	vb = vb_hib_dev;
	if (vb && mutex_trylock(&vb->lock)) {
		want = min(sc->nr_to_scan, vb->hib_budget);
		if (vb->state == VB_STATE_RUNNING && vb->hib_holding && want)
			done = vb_deflate_locked(vb, want * VB_BPAGES_PER_PAGE) /
			       VB_BPAGES_PER_PAGE;
		vb->counters[VB_CNT_HIB_GIVEN] += done * VB_BPAGES_PER_PAGE;
		vb->counters[VB_CNT_HIB_ON_DEMAND] += done * VB_BPAGES_PER_PAGE;
		vb->hib_given += done * VB_BPAGES_PER_PAGE;
		mutex_unlock(&vb->lock);
		vb->hib_budget -= done;
		vb->hib_on_demand += done;
	}
	mutex_unlock(&vb_hib_mutex);
	if (!done)
		return SHRINK_STOP;
	/* Progress: the allocator drains the per-CPU lists and retries. */
	mm_account_reclaimed_pages(done);
	return done;
}

/*
 * The shrinker's budget for the preallocation, and again for the write,
 * of an image of @image pages: 1/40 of it and VB_HIB_SHRINK_BUDGET pages.
 * With hib_give_pct under 100, which exists to find the least that
 * works, one batch: enough to have the per-CPU lists drained, but not to
 * make up for the shortfall.
 */
static unsigned long vb_hib_budget(unsigned long image)
{
	if (READ_ONCE(hib_give_pct) < 100)
		return VB_HIB_SHRINK_BATCH;
	return image / VB_HIB_MARGIN_DIV + VB_HIB_SHRINK_BUDGET;
}

/* Give the shrinker @budget pages of @vb for the coming allocations. */
static void vb_hib_serve(struct vb_dev *vb, unsigned long budget,
			 bool thawed)
{
	mutex_lock(&vb_hib_mutex);
	vb->hib_budget = budget;
	vb->hib_on_demand = 0;
	WRITE_ONCE(vb_hib_thawed, thawed);
	WRITE_ONCE(vb_hib_dev, vb);
	mutex_unlock(&vb_hib_mutex);
}

/*
 * Called at every freeze and at PM_POST_HIBERNATION, whichever comes
 * first, and on remove; takes no vb->lock (see vb_hib_mutex). A second
 * image made through /dev/snapshot after SNAPSHOT_FREE, with no new
 * PM_HIBERNATION_PREPARE, is therefore served only with what the thaw's
 * budget left, and not measured at freeze.
 */
static void vb_hib_unserve(struct vb_dev *vb)
{
	unsigned long given;

	mutex_lock(&vb_hib_mutex);
	if (vb_hib_dev == vb) {
		WRITE_ONCE(vb_hib_dev, NULL);
		WRITE_ONCE(vb_hib_thawed, false);
	}
	given = vb->hib_on_demand;
	vb->hib_on_demand = 0;
	vb->hib_budget = 0;
	mutex_unlock(&vb_hib_mutex);
	if (given)
		dev_info(&vb->vdev->dev,
			 "hibernation: gave back %lu more pages on demand for the image\n",
			 given);
}

/**
 * vb_hib_prepare() - give back, before the preallocation, what it needs
 * @vb: the balloon.
 *
 * Gives back what vb_hib_need() finds short, then, while the per-CPU
 * lists keep part of it from the buddy lists, twice that part (see
 * "Hibernation headroom"); logs the first pass's numbers and the total in
 * one line; gives the hibernation shrinker its budget (vb_hib_budget());
 * and has the next freeze measure the image (vb_hib_freeze()). With
 * hib_give_pct under 100 there is one pass.
 */
static void vb_hib_prepare(struct vb_dev *vb)
{
	unsigned int pct = min(READ_ONCE(hib_give_pct), 100U);
	struct vb_hib_need first, n;
	struct vb_hib_mem m, m0;
	unsigned long need;
	unsigned int done, step;
	int pass;

	mutex_lock(&vb->lock);
	if (vb->state != VB_STATE_RUNNING || vb->handing_back ||
	    !vb->num_bpages) {
		mutex_unlock(&vb->lock);
		return;
	}
	vb_hib_mem_read(vb, &m0);
	vb->hib_given = 0;
	done = vb_hib_give_back(vb, &m0, &first);
	/* Given back, the pages are free: they change neither number. */
	vb->hib_image0 = first.image;
	vb->hib_counted0 = m0.counted;
	vb->hib_measure = true;
	need = first.prealloc * pct / 100;
	for (pass = 1; pass < VB_HIB_PASSES && pct == 100 && done; pass++) {
		vb_hib_mem_read(vb, &m);
		vb_hib_need(&m, &n);
		if (!n.prealloc || !vb->num_bpages)
			break;
		step = vb_hib_give_back(vb, &m, &n);
		if (!step)
			break;
		done += step;
	}
	dev_info(&vb->vdev->dev,
		 "hibernation: gave back %u of %u ballooned pages: image ~%lu pages, guest %lu+%lu pages, %lu+%lu free, %lu reclaimable, reserve %lu/%lu, short %lu for the preallocation, %lu for the write%s\n",
		 done / VB_BPAGES_PER_PAGE,
		 (done + vb->num_bpages) / VB_BPAGES_PER_PAGE, first.image,
		 m0.guest, m0.kernel, m0.free, m0.pcp, m0.reclaimable,
		 m0.reserve, m0.totalreserve, first.prealloc, first.write,
		 need * VB_BPAGES_PER_PAGE > done && !vb->num_bpages ?
		 " (even an empty balloon may not be enough)" : "");
	mutex_unlock(&vb->lock);
	vb_hib_serve(vb, vb_hib_budget(first.image), false);
}

static int vb_hib_shrinker_init(void)
{
	vb_hib_shrinker = shrinker_alloc(0, "virtio-balloon-hibernation");
	if (!vb_hib_shrinker)
		return -ENOMEM;
	vb_hib_shrinker->count_objects = vb_hib_shrink_count;
	vb_hib_shrinker->scan_objects = vb_hib_shrink_scan;
	/* Ballooned pages cost nothing to give back: no seeks, small steps. */
	vb_hib_shrinker->seeks = 0;
	vb_hib_shrinker->batch = VB_HIB_SHRINK_BATCH;
	shrinker_register(vb_hib_shrinker);
	return 0;
}

static void vb_hib_shrinker_exit(void)
{
	shrinker_free(vb_hib_shrinker);
}

/*
 * Take the thaw reserve (see "Hibernation headroom"): deflate, told, and
 * hold the pages. Context: vb->lock held; users stopped, queues present.
 */
static unsigned int vb_thaw_reserve_take(struct vb_dev *vb)
{
	unsigned int done;

	lockdep_assert_held(&vb->lock);
	if (!vb->hib_reserve_armed)
		return 0;
	vb->hib_reserve_armed = false;
	done = vb_deflate_take_locked(vb, VB_THAW_RESERVE_PAGES *
				      VB_BPAGES_PER_PAGE, &vb->thaw_reserve);
	vb->counters[VB_CNT_HIB_GIVEN] += done;
	vb->hib_given += done;
	return done;
}

/**
 * vb_hib_freeze() - give back, at freeze, what the image write lacks
 * @vb: the balloon, its users stopped and its queues still there.
 *
 * The first freeze after PM_HIBERNATION_PREPARE comes after the kernel
 * preallocated the image and reclaimed what it could. Measures the image
 * then (see "Hibernation headroom"), takes the thaw reserve if the write
 * ends at its floor, and deflates, told, what check (B) lacks, or
 * inflates again, told, what was given back for this image beyond it
 * (as far as the host's target allows); hib_give_pct
 * applies to all given back for this image. Logs one line. Other freezes
 * only take a thaw reserve still armed.
 *
 * Context: vb->lock held; let go of between batches.
 */
static void vb_hib_freeze(struct vb_dev *vb)
{
	unsigned int pct = min(READ_ONCE(hib_give_pct), 100U);
	unsigned long image, given, total;
	unsigned int done = 0, taken = 0;
	struct vb_hib_mem m;
	long moved, short_by;

	lockdep_assert_held(&vb->lock);
	if (vb->state != VB_STATE_RUNNING)
		return;
	if (!vb->hib_measure) {
		vb_thaw_reserve_take(vb);
		return;
	}
	vb->hib_measure = false;
	vb_hib_mem_read(vb, &m);
	moved = (long)(m.counted - vb->hib_counted0);
	image = moved < 0 && -moved > vb->hib_image0 ? 0 :
		vb->hib_image0 + moved;
	/*
	 * Thaw will be tight wherever the write ends at its floor: when it
	 * is found short, and when the take-back keeps part of what was
	 * given. Where everything given can be taken back, or nothing was
	 * needed, it has room and gets no reserve.
	 */
	vb->hib_reserve_armed = vb->num_bpages &&
		(long)(vb->hib_given / VB_BPAGES_PER_PAGE) +
		vb_hib_write_short(&m, image, m.free + m.pcp) > 0;
	/* Untracked like the preallocation, but copied into the image. */
	if (vb_thaw_reserve_take(vb)) {
		image += VB_THAW_RESERVE_PAGES;
		vb_hib_mem_read(vb, &m);
	}
	short_by = vb_hib_write_short(&m, image, m.free + m.pcp);
	given = vb->hib_given / VB_BPAGES_PER_PAGE;
	total = (long)given + short_by > 0 ? given + short_by : 0;
	total = div_u64((u64)total * pct, 100);
	if (total > given)
		done = vb_hib_deflate(vb, total - given);
	else if (total < given)
		taken = vb_hib_take_back(vb, given - total);
	dev_info(&vb->vdev->dev,
		 "hibernation: at freeze the image is ~%lu pages (%+ld since the estimate), guest %lu+%lu pages, %lu+%lu free, per-CPU refill %lu, reserve %lu, %ld pages %s for the write: %s %u%s, %u in all%s\n",
		 image, moved, m.guest, m.kernel, m.free, m.pcp, m.pcp_refill,
		 m.reserve,
		 short_by > 0 ? short_by : -short_by,
		 short_by > 0 ? "short" : "spare",
		 taken ? "took back" : "gave back",
		 (taken ?: done) / VB_BPAGES_PER_PAGE, taken ? "" : " more",
		 vb->hib_given / VB_BPAGES_PER_PAGE,
		 total > given + done / VB_BPAGES_PER_PAGE && !vb->num_bpages ?
		 " (even an empty balloon may not be enough)" : "");
}

/**
 * vb_pm_notify() - learn what the next freeze is for
 * @nb: vb->pm_nb.
 * @event: PM_* event.
 * @unused: no data.
 *
 * PM_RESTORE_PREPARE comes before a kernel loads a hibernation image and
 * freezes its devices with PMSG_QUIESCE to jump into it; the image kernel
 * then uses every frame, so the balloon is handed back to the host here,
 * before the image is read, and stays empty until PM_POST_RESTORE (no
 * image restored after all). Freezes that follow PM_HIBERNATION_PREPARE
 * keep the balloon, less what vb_hib_give_back() returned for the image;
 * PM_POST_HIBERNATION lets the balloon follow the host's target again.
 *
 * From PM_HIBERNATION_PREPARE or PM_SUSPEND_PREPARE to the matching POST
 * event, free page hinting pauses (see "Free page hinting").
 *
 * Return: NOTIFY_DONE.
 */
static int vb_pm_notify(struct notifier_block *nb, unsigned long event,
			void *unused)
{
	struct vb_dev *vb = container_of(nb, struct vb_dev, pm_nb);
	unsigned int held;

	switch (event) {
	case PM_RESTORE_PREPARE:
		mutex_lock(&vb->lock);
		vb->handing_back = true;
		held = vb->num_bpages;
		if (vb->state == VB_STATE_RUNNING)
			vb_deflate_all_locked(vb);
		mutex_unlock(&vb->lock);
		if (held)
			dev_info(&vb->vdev->dev,
				 "loading a hibernation image: returned %u MiB of ballooned memory to the host\n",
				 held / VB_BPAGES_PER_MB);
		break;
	case PM_POST_RESTORE:
		mutex_lock(&vb->lock);
		vb->handing_back = false;
		mutex_unlock(&vb->lock);
		vb_queue_balloon_work(vb, 0);
		break;
	case PM_HIBERNATION_PREPARE:
		/*
		 * A hint run holds free memory while it lasts: end it before
		 * the memory is read, or the estimate counts it as used.
		 */
		WRITE_ONCE(vb->hint_paused, true);
		flush_work(&vb->hint_work);
		mutex_lock(&vb->lock);
		vb->hib_holding = true;
		mutex_unlock(&vb->lock);
		/* A restore's owed drop is no reason to skip: both are told. */
		vb_hib_prepare(vb);
		fallthrough;
	case PM_SUSPEND_PREPARE:
		WRITE_ONCE(vb->hint_paused, true);
		break;
	case PM_POST_HIBERNATION:
		/* Image written and resumed, or hibernation failed. */
		vb_hib_unserve(vb);
		mutex_lock(&vb->lock);
		vb->hib_holding = false;
		vb->hib_reserve_armed = false;
		vb->hib_measure = false;
		/* Told at freeze; left over if no thaw or restore took it. */
		vb_thaw_reserve_release(vb);
		mutex_unlock(&vb->lock);
		vb_queue_balloon_work(vb, 0);
		fallthrough;
	case PM_POST_SUSPEND:
		WRITE_ONCE(vb->hint_paused, false);
		/* A command id that came meanwhile is looked at now. */
		vb_hint_changed(vb);
		break;
	}
	return NOTIFY_DONE;
}

static int vb_pm_notifier_register(struct vb_dev *vb)
{
	return register_pm_notifier(&vb->pm_nb);
}

static void vb_pm_notifier_unregister(struct vb_dev *vb)
{
	unregister_pm_notifier(&vb->pm_nb);
	vb_hib_unserve(vb);
}
#else
static int vb_pm_notifier_register(struct vb_dev *vb)
{
	return 0;
}

static void vb_pm_notifier_unregister(struct vb_dev *vb)
{
}

static int vb_hib_shrinker_init(void)
{
	return 0;
}

static void vb_hib_shrinker_exit(void)
{
}
#endif /* CONFIG_PM_SLEEP */

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
	INIT_WORK(&vb->hint_work, vb_hint_work);
	spin_lock_init(&vb->hint_lock);
	INIT_LIST_HEAD(&vb->hint_held);
	INIT_LIST_HEAD(&vb->thaw_reserve);
	vb->hint_cmd = VIRTIO_BALLOON_CMD_ID_STOP;
	vb->oom_nb.notifier_call = vb_oom_notify;
	vb->oom_nb.priority = 80;
#ifdef CONFIG_PM_SLEEP
	vb->pm_nb.notifier_call = vb_pm_notify;
#endif
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

	/*
	 * Capable, not enabled: whether host requests may abort a suspend is
	 * the administrator's choice (power/wakeup), as upstream leaves it.
	 */
	device_set_wakeup_capable(&vdev->dev, true);

	err = vb_pm_notifier_register(vb);
	if (err)
		goto err_del_vqs;

	err = vb_start_users(vb);
	if (err)
		goto err_pm_notifier;

	vb->debugfs = debugfs_create_dir(dev_name(&vdev->dev), vb_debugfs_root);
	debugfs_create_file("status", 0444, vb->debugfs, vb, &vb_debugfs_fops);
	return 0;

err_pm_notifier:
	vb_pm_notifier_unregister(vb);
err_del_vqs:
	device_init_wakeup(&vdev->dev, false);
	vb_del_vqs(vb);
err_free_pfns:
	kfree(vb->pfns);
err_free_vb:
	kfree(vb);
	vdev->priv = NULL;
	return err;
}

/*
 * A device that is frozen or broken at removal can no longer be told
 * about the pages still in the balloon, and the host may hold them. They
 * are taken off the balloon's list, which goes away with @vb, and stay
 * allocated and out of the managed count for good: reusing a page the
 * host may have taken is worse than losing it.
 * Context: vb->lock held.
 */
static void vb_abandon_locked(struct vb_dev *vb)
{
	unsigned int got, n = 0;
	LIST_HEAD(pages);

	lockdep_assert_held(&vb->lock);
	while (vb->num_bpages > n * VB_BPAGES_PER_PAGE) {
		got = balloon_page_list_dequeue(&vb->b_dev_info, &pages,
						VB_BATCH_PFNS /
						VB_BPAGES_PER_PAGE);
		n += got;
		INIT_LIST_HEAD(&pages);
		if (!got) {
			/* Pages under migration come back to the list. */
			mutex_unlock(&vb->lock);
			cond_resched();
			mutex_lock(&vb->lock);
		}
	}
	if (n)
		dev_warn(&vb->vdev->dev,
			 "removed while %s: %u MiB of ballooned memory stay out of use, the host cannot be told\n",
			 vb_state_names[vb->state],
			 n * VB_BPAGES_PER_PAGE / VB_BPAGES_PER_MB);
	vb->num_bpages = 0;
}

static void vb_remove(struct virtio_device *vdev)
{
	struct vb_dev *vb = vdev->priv;

	debugfs_remove_recursive(vb->debugfs);
	vb_stop_users(vb);
	vb_pm_notifier_unregister(vb);
	mutex_lock(&vb->lock);
	if (vb->state == VB_STATE_RUNNING)
		vb_deflate_all_locked(vb);
	if (vb->state == VB_STATE_RUNNING) {
		vb_del_vqs(vb);
	} else {
		/*
		 * A transport whose restore failed half-way may have left
		 * status bits set, and the virtio core expects remove to leave
		 * the device reset.
		 */
		if (vb->vqs[VB_VQ_INFLATE])
			vb_del_vqs(vb);
		else
			virtio_reset_device(vdev);
		vb_abandon_locked(vb);
	}
	vb_thaw_reserve_release(vb);
	mutex_unlock(&vb->lock);
	/*
	 * Disabled, then not capable: a wakeup source the administrator
	 * enabled goes too. Another driver bound later decides for itself.
	 */
	device_init_wakeup(&vdev->dev, false);
	kfree(vb->pfns);
	kfree(vb);
}

#ifdef CONFIG_PM_SLEEP
/*
 * Freeze for a hibernation snapshot keeps the balloon (see the top). Freeze
 * for the jump into an image (PMSG_QUIESCE, after PM_RESTORE_PREPARE) hands
 * back whatever the PM notifier could not: the image reuses every frame.
 */
static int vb_freeze(struct virtio_device *vdev)
{
	struct vb_dev *vb = vdev->priv;

	/* A restore that never reached vb_restore() still owes its drop. */
	vb->pm_restoring = false;
	/* After a hibernation's preallocation: the shrinker's work is done. */
	vb_hib_unserve(vb);
	vb_stop_users(vb);
	mutex_lock(&vb->lock);
	/* The users are stopped: nothing refills it meanwhile. */
	if (vb->state == VB_STATE_RUNNING && vb->handing_back)
		vb_deflate_all_locked(vb);
	/* After the image's preallocation; a failed request breaks it. */
	vb_hib_freeze(vb);
	if (vb->state == VB_STATE_RUNNING) {
		vb_del_vqs(vb);
		vb_set_state(vb, VB_STATE_FROZEN);
	} else if (vb->vqs[VB_VQ_INFLATE]) {
		/* Broken by a failed request: the queues go all the same. */
		vb_del_vqs(vb);
	}
	mutex_unlock(&vb->lock);
	dev_dbg(&vdev->dev, "frozen with %u balloon pages held\n",
		vb->num_bpages);
	return 0;
}

/**
 * vb_restore() - bring the device back after freeze
 * @vdev: the device, reset and with features negotiated by the transport.
 *
 * Shared by thaw and restore; the PM core tells which (see the top). The
 * balloon is not touched here: an owed drop is left to the balloon work,
 * so this returns in the same short time whatever the balloon's size.
 *
 * Return: 0, or a negative errno with the device left broken.
 */
static int vb_restore(struct virtio_device *vdev)
{
	struct vb_dev *vb = vdev->priv;
	bool restoring = vb->pm_restoring;
	const char *what = restoring ? "restore" : "thaw";
	ktime_t start = ktime_get();
	unsigned int held, noreclaim;
	unsigned long image;
	struct vb_hib_mem m;
	const char *step;
	bool thawing;
	int err;

	vb->pm_restoring = false;
	mutex_lock(&vb->lock);
	if (vb->state != VB_STATE_FROZEN) {
		mutex_unlock(&vb->lock);
		dev_err(&vdev->dev, "%s: device was not frozen (state %s)\n",
			what, vb_state_names[vb->state]);
		return -EINVAL;
	}
	/*
	 * A thaw in a hibernation, most often after the image copy: what is
	 * left for thaw and the write. The same holds for a thaw after a
	 * failure, or after pm_test, where nothing is written.
	 */
	thawing = !restoring && vb->hib_holding;
	image = vb->hib_image0;
	if (thawing) {
		vb_hib_mem_read(vb, &m);
		dev_info(&vdev->dev, "thaw: %lu+%lu pages free, reserve %lu\n",
			 m.free, m.pcp, m.reserve);
	}
	/*
	 * Told at freeze: the queues' memory is ours whatever thaw finds.
	 * The image copy may have left every zone under its min watermark,
	 * where GFP_KERNEL fails however much is freed: the queues are then
	 * allocated past the watermarks, which the pages just released make
	 * up for.
	 */
	if (vb_thaw_reserve_release(vb) && !restoring) {
		noreclaim = memalloc_noreclaim_save();
		err = vb_init_vqs(vb);
		memalloc_noreclaim_restore(noreclaim);
	} else {
		err = vb_init_vqs(vb);
	}
	if (err) {
		step = "re-create virtqueues";
		goto err_broken;
	}
	vb_write_poison(vb);
	virtio_device_ready(vdev);
	vb_set_state(vb, VB_STATE_RUNNING);
	vb->counters[restoring ? VB_CNT_RESTORED : VB_CNT_THAWED]++;
	if (vb->drop_owed) {
		vb->drop_start = start;
		vb->drop_work_start = 0;
		vb->drop_bpages = 0;
	}
	/* Until the drop is done, the host is owed the count the guest holds. */
	vb_write_actual(vb);
	held = vb->drop_owed ? vb->num_bpages : 0;
	mutex_unlock(&vb->lock);

	err = vb_start_users(vb);
	if (err) {
		mutex_lock(&vb->lock);
		vb_del_vqs(vb);
		step = "restart balloon users";
		goto err_broken;
	}
	/*
	 * Debug level only: printed on a serial console, the line costs more
	 * than the rest of this callback, on the resume path. The drop's own
	 * line, from the work, has the whole time.
	 */
	if (held)
		dev_dbg(&vdev->dev,
			"%s: callback done in %lld us; dropping %u MiB in the background\n",
			what, ktime_us_delta(ktime_get(), start),
			held / VB_BPAGES_PER_MB);
	/*
	 * The image writer's pages come back to the per-CPU lists as its
	 * writes complete, where the allocator's watermark checks do not see
	 * them (see "Hibernation headroom"): serve it as the preallocation
	 * was served, and the other devices' thaw with it, until
	 * PM_POST_HIBERNATION.
	 */
	if (thawing)
		vb_hib_serve(vb, vb_hib_budget(image), true);
	return 0;

err_broken:
	vb_set_state(vb, VB_STATE_BROKEN);
	held = vb->num_bpages;
	mutex_unlock(&vb->lock);
	dev_err(&vdev->dev, "%s: cannot %s (%d); balloon off, %u pages held\n",
		what, step, err, held);
	return err;
}

/*
 * PMSG_RESTORE: the balloon is dropped, told, whatever follows. The drop
 * stays owed until the balloon work has done it, even if this restore
 * fails in the transport before vb_restore() runs.
 */
static int vb_pm_restore_early(struct device *dev)
{
	struct vb_dev *vb = dev_to_virtio(dev)->priv;

	mutex_lock(&vb->lock);
	vb->pm_restoring = true;
	vb->drop_owed = true;
	mutex_unlock(&vb->lock);
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
	VIRTIO_BALLOON_F_FREE_PAGE_HINT,
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

	err = vb_hib_shrinker_init();
	if (err)
		return err;
	vb_debugfs_root = debugfs_create_dir(KBUILD_MODNAME, NULL);
	err = register_virtio_driver(&vb_driver);
	if (err) {
		debugfs_remove_recursive(vb_debugfs_root);
		vb_hib_shrinker_exit();
	}
	return err;
}

static void __exit vb_exit(void)
{
	unregister_virtio_driver(&vb_driver);
	debugfs_remove_recursive(vb_debugfs_root);
	vb_hib_shrinker_exit();
}

module_init(vb_init);
module_exit(vb_exit);

MODULE_DEVICE_TABLE(virtio, vb_id_table);
MODULE_DESCRIPTION("Virtio memory balloon driver with hibernation support");
MODULE_LICENSE("GPL");

#ifdef CONFIG_VIRTIO_BALLOON_KUNIT_TEST
#include "tests/virtio_balloon_kunit.c"
#endif
