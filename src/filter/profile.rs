//! Where the filter's time goes inside Envoy, built only with `--features profile` (`make
//! profile`): each callback and phase is a span, each host call is counted and timed under the
//! callback it runs in, and allocations are counted under the innermost span. Every `EVERY`
//! requests the VM logs one `profile:` line (JSON, per request) and starts over. Without the
//! feature a span is an empty value and nothing here runs.

#[cfg(feature = "profile")]
pub use on::{allocated, host, request_done, span};

/// Measures from its creation to its drop.
#[cfg(not(feature = "profile"))]
pub struct Span;

/// Nothing to do, but a span ends where it is dropped in both builds.
#[cfg(not(feature = "profile"))]
impl Drop for Span {
    #[inline(always)]
    fn drop(&mut self) {}
}

#[cfg(not(feature = "profile"))]
#[inline(always)]
pub fn span(_name: &'static str) -> Span {
    Span
}

#[cfg(not(feature = "profile"))]
#[inline(always)]
pub fn host<T>(_call: &'static str, f: impl FnOnce() -> T) -> T {
    f()
}

#[cfg(not(feature = "profile"))]
#[inline(always)]
pub fn allocated() {}

#[cfg(not(feature = "profile"))]
#[inline(always)]
pub fn request_done() {}

#[cfg(feature = "profile")]
mod on {
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    /// Requests per logged line.
    const EVERY: u64 = 2000;

    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    }

    fn now() -> u64 {
        let mut t = 0u64;
        // SAFETY: `t` is a valid out-pointer.
        unsafe { proxy_get_current_time_nanoseconds(&mut t) };
        t
    }

    #[derive(Default)]
    struct Tally {
        /// Inclusive time by span.
        spans: BTreeMap<&'static str, (u64, u64)>,
        /// Host calls by (callback, call): count and time.
        calls: BTreeMap<(&'static str, &'static str), (u64, u64)>,
        requests: u64,
    }

    thread_local! {
        static TALLY: RefCell<Tally> = RefCell::new(Tally::default());
        /// The outermost open span: the callback host calls are charged to.
        static CALLBACK: Cell<Option<&'static str>> = const { Cell::new(None) };
        /// The innermost open span: allocations are charged to it.
        static INNER: Cell<&'static str> = const { Cell::new("outside") };
        /// Allocations by innermost span (`""`: a free slot).
        static ALLOCS: RefCell<[(&'static str, u64); 32]> = const { RefCell::new([("", 0); 32]) };
    }

    pub struct Span {
        name: &'static str,
        start: u64,
        outer: bool,
        /// The span this one is inside of, restored when it ends.
        parent: &'static str,
    }

    pub fn span(name: &'static str) -> Span {
        let outer = CALLBACK.with(|c| c.get().is_none());
        if outer {
            CALLBACK.with(|c| c.set(Some(name)));
        }
        let parent = INNER.with(|i| i.replace(name));
        Span {
            name,
            start: now(),
            outer,
            parent,
        }
    }

    impl Drop for Span {
        fn drop(&mut self) {
            let ns = now().saturating_sub(self.start);
            TALLY.with(|t| {
                let mut t = t.borrow_mut();
                let e = t.spans.entry(self.name).or_default();
                e.0 += 1;
                e.1 += ns;
            });
            INNER.with(|i| i.set(self.parent));
            if self.outer {
                CALLBACK.with(|c| c.set(None));
            }
        }
    }

    fn callback() -> &'static str {
        CALLBACK.with(|c| c.get()).unwrap_or("outside")
    }

    pub fn host<T>(call: &'static str, f: impl FnOnce() -> T) -> T {
        let start = now();
        let out = f();
        let ns = now().saturating_sub(start);
        TALLY.with(|t| {
            let mut t = t.borrow_mut();
            let e = t.calls.entry((callback(), call)).or_default();
            e.0 += 1;
            e.1 += ns;
        });
        out
    }

    /// Called by the counting allocator, so it must not allocate: a fixed table by span.
    pub fn allocated() {
        let span = INNER.with(Cell::get);
        ALLOCS.with(|cell| {
            // Busy only while a line is written: those allocations go uncounted.
            let Ok(mut a) = cell.try_borrow_mut() else {
                return;
            };
            if let Some(slot) = a.iter_mut().find(|(n, _)| n.is_empty() || *n == span) {
                *slot = (span, slot.1 + 1);
            }
        });
    }

    /// What a clock read costs (every span and timed call pays about two).
    fn clock_ns() -> u64 {
        let start = now();
        for _ in 0..99 {
            now();
        }
        now().saturating_sub(start) / 100
    }

    pub fn request_done() {
        let line = TALLY.with(|t| {
            let mut t = t.borrow_mut();
            t.requests += 1;
            if t.requests < EVERY {
                return None;
            }
            let t = std::mem::take(&mut *t);
            let n = t.requests as f64;
            let per = |(count, ns): (u64, u64)| {
                serde_json::json!([count as f64 / n, ns as f64 / n / 1e3])
            };
            let spans: serde_json::Map<_, _> = t
                .spans
                .iter()
                .map(|(k, v)| ((*k).to_owned(), per(*v)))
                .collect();
            let calls: serde_json::Map<_, _> = t
                .calls
                .iter()
                .map(|((cb, call), v)| (format!("{cb}/{call}"), per(*v)))
                .collect();
            let allocs: serde_json::Map<_, _> = ALLOCS
                .with(|a| a.replace([("", 0); 32]))
                .iter()
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| ((*k).to_owned(), serde_json::json!(*v as f64 / n)))
                .collect();
            Some(serde_json::json!({
                "requests": t.requests, "clock_ns": clock_ns(), "spans": spans,
                "host_calls": calls, "allocations": allocs,
            }))
        });
        if let Some(line) = line {
            log::warn!("profile: {line}");
        }
    }
}
