//! How much memory the VM uses: a counting global allocator, and gauges reported from the root
//! context's tick. Each VM adds the change since its own previous report, so a gauge is the sum
//! over all workers' VMs. Counting costs two relaxed atomics per allocation (plain loads and
//! stores on single-threaded wasm).

use super::stats::Stats;
use crate::metrics;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// One root context per VM reports (a VM may host several plugins' roots).
static REPORTER: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// What this VM reported last: linear memory, heap in use, highest heap.
    static REPORTED: Cell<[usize; 3]> = const { Cell::new([0; 3]) };
}

struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn grew(by: usize) {
    super::profile::allocated();
    let live = LIVE.load(Relaxed).saturating_add(by);
    LIVE.store(live, Relaxed);
    if live > PEAK.load(Relaxed) {
        PEAK.store(live, Relaxed);
    }
}

fn shrank(by: usize) {
    LIVE.store(LIVE.load(Relaxed).saturating_sub(by), Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

/// True for the first root context of this VM to ask: it is the one that reports.
pub fn claim_reporting() -> bool {
    !REPORTER.swap(true, Relaxed)
}

/// Reports the VM's linear memory, heap in use and highest heap in use since the VM started.
pub fn report(stats: &Stats) {
    let memory = core::arch::wasm32::memory_size(0).saturating_mul(65536);
    let now = [memory, LIVE.load(Relaxed), PEAK.load(Relaxed)];
    let before = REPORTED.with(|r| r.replace(now));
    let gauges = [
        metrics::vm_memory_bytes(),
        metrics::vm_heap_bytes(),
        metrics::vm_heap_peak_bytes(),
    ];
    for ((gauge, now), before) in gauges.iter().zip(now).zip(before) {
        stats.adjust(gauge, signed(now) - signed(before));
    }
}

fn signed(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
