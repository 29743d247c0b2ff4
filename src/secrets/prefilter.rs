//! Where in a string a rule's anchor may start, 16 positions at a time. Each anchor is known by
//! a fingerprint of three bytes; fingerprints are grouped into eight buckets, and for each of
//! the three byte positions two 16-entry tables give the buckets that accept a byte's low and
//! high nibble (the "Teddy" method of Hyperscan and the aho-corasick crate). A position is a
//! candidate when one bucket accepts all three of its bytes: a few vector shuffles per 16 bytes
//! with wasm SIMD in Envoy's V8, a table walk elsewhere. Candidates are then checked exactly;
//! most text never gets that far. Written here because aho-corasick's vector search has no
//! wasm version, and its scalar automaton runs at a fraction of the scanner's speed in V8.

/// Buckets of fingerprints (one bit each in the tables).
pub const BUCKETS: usize = 8;

/// One fingerprint: its bytes (`None`: any byte) and its bucket.
pub type Fingerprint = ([Option<u8>; 3], usize);

#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// `lo[k][n]`: the buckets whose byte `k` has low nibble `n`; `hi` likewise.
    lo: [[u8; 16]; 3],
    hi: [[u8; 16]; 3],
}

impl Tables {
    pub fn new(fingerprints: &[Fingerprint]) -> Tables {
        let mut t = Tables::default();
        for (bytes, bucket) in fingerprints {
            let bit = 1u8 << (bucket % BUCKETS);
            for (k, byte) in bytes.iter().enumerate() {
                let (Some(lo), Some(hi)) = (t.lo.get_mut(k), t.hi.get_mut(k)) else {
                    continue;
                };
                // A fixed byte sets its two nibbles' bits; any byte, every nibble's.
                let (l, h) = match byte {
                    Some(b) => (1u16 << (b & 15), 1u16 << (b >> 4)),
                    None => (u16::MAX, u16::MAX),
                };
                for n in 0..16 {
                    if let (Some(lo_n), Some(hi_n)) = (lo.get_mut(n), hi.get_mut(n)) {
                        *lo_n |= if l & (1 << n) != 0 { bit } else { 0 };
                        *hi_n |= if h & (1 << n) != 0 { bit } else { 0 };
                    }
                }
            }
        }
        t
    }

    /// How many byte triples a bucket with these fingerprints would accept (what grouping
    /// unlike fingerprints costs in false candidates).
    pub fn accepted(fingerprints: &[[Option<u8>; 3]]) -> u64 {
        (0..3)
            .map(|k| {
                let mut lo = 0u16;
                let mut hi = 0u16;
                for f in fingerprints {
                    match f.get(k).copied().flatten() {
                        Some(b) => {
                            lo |= 1 << (b & 15);
                            hi |= 1 << (b >> 4);
                        }
                        None => {
                            lo = u16::MAX;
                            hi = u16::MAX;
                        }
                    }
                }
                u64::from(lo.count_ones()) * u64::from(hi.count_ones())
            })
            .product()
    }

    /// Calls `hit` with every candidate position `j` in `hay[from..to]` (the three bytes from
    /// `j` may reach past `to`; past the end of `hay` they read as zero), in order, until it
    /// returns false.
    pub fn candidates(
        &self,
        hay: &[u8],
        from: usize,
        to: usize,
        hit: &mut dyn FnMut(usize) -> bool,
    ) {
        let to = to.min(hay.len());
        let Some(mut at) = self.fast(hay, from, to, hit) else {
            return;
        };
        while at < to {
            let mut lanes = match hay.get(at..).and_then(|r| r.first_chunk::<18>()) {
                Some(window) => self.lanes(window),
                None => {
                    let mut window = [0u8; 18];
                    let rest = hay.get(at..).unwrap_or_default();
                    let n = rest.len().min(18);
                    if let (Some(d), Some(s)) = (window.get_mut(..n), rest.get(..n)) {
                        d.copy_from_slice(s);
                    }
                    self.lanes(&window)
                }
            };
            let valid = to - at;
            if valid < 16 {
                lanes &= (1u16 << valid) - 1;
            }
            while lanes != 0 {
                if !hit(at + lanes.trailing_zeros() as usize) {
                    return;
                }
                lanes &= lanes - 1;
            }
            at += 16;
        }
    }

    /// The bulk of [`Tables::candidates`] where wasm SIMD runs, 16 positions per step with the
    /// tables in registers: each block's nibbles are looked up once per byte position, and the
    /// lookups of bytes `j + 1` and `j + 2` are shifted in from the next block (Teddy's
    /// alignment). A branch only when a step has a candidate. Returns where the rest starts
    /// (`None`: `hit` said stop).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn fast(
        &self,
        hay: &[u8],
        mut at: usize,
        to: usize,
        hit: &mut dyn FnMut(usize) -> bool,
    ) -> Option<usize> {
        use core::arch::wasm32::{
            i8x16_shuffle, u8x16_bitmask, u8x16_ne, u8x16_shr, u8x16_splat, u8x16_swizzle, v128,
            v128_and, v128_any_true, v128_load, v128_or,
        };
        let load = |p: *const u8| {
            // SAFETY: every load reads 16 bytes of a table, or of `hay` at an offset checked
            // to have 16 bytes after it; v128_load accepts unaligned addresses.
            unsafe { v128_load(p.cast::<v128>()) }
        };
        let [lo0, lo1, lo2] = self.lo.map(|t| load(t.as_ptr()));
        let [hi0, hi1, hi2] = self.hi.map(|t| load(t.as_ptr()));
        let nibble = u8x16_splat(15);
        let split = |v: v128| (v128_and(v, nibble), u8x16_shr(v, 4));
        let look = |lo: v128, hi: v128, (l, h): (v128, v128)| {
            v128_and(u8x16_swizzle(lo, l), u8x16_swizzle(hi, h))
        };
        let block = |p: usize| hay.get(p..p + 16).map(|b| split(load(b.as_ptr())));
        let Some(mut cur) = block(at) else {
            return Some(at);
        };
        let (mut r1, mut r2) = (look(lo1, hi1, cur), look(lo2, hi2, cur));
        // Up to `to`, reading past it within `hay` (a string is followed by more JSON): short
        // strings and the ends of long ones take one step too.
        while at < to {
            // Two blocks per step: one test for both.
            let (Some(b), Some(c)) = (block(at + 16), block(at + 32)) else {
                break;
            };
            let (b1, b2) = (look(lo1, hi1, b), look(lo2, hi2, b));
            let (c1, c2) = (look(lo1, hi1, c), look(lo2, hi2, c));
            let one = |x: v128, y: v128| {
                i8x16_shuffle::<1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16>(x, y)
            };
            let two = |x: v128, y: v128| {
                i8x16_shuffle::<2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17>(x, y)
            };
            let first = v128_and(v128_and(look(lo0, hi0, cur), one(r1, b1)), two(r2, b2));
            let second = v128_and(v128_and(look(lo0, hi0, b), one(b1, c1)), two(b2, c2));
            if v128_any_true(v128_or(first, second)) {
                let zero = u8x16_splat(0);
                let mut found = u32::from(u8x16_bitmask(u8x16_ne(first, zero)))
                    | u32::from(u8x16_bitmask(u8x16_ne(second, zero))) << 16;
                if to - at < 32 {
                    found &= (1u32 << (to - at)) - 1;
                }
                while found != 0 {
                    if !hit(at + found.trailing_zeros() as usize) {
                        return None;
                    }
                    found &= found - 1;
                }
            }
            (cur, r1, r2) = (c, c1, c2);
            at += 32;
        }
        Some(at.min(to))
    }

    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    fn fast(
        &self,
        _: &[u8],
        at: usize,
        _: usize,
        _: &mut dyn FnMut(usize) -> bool,
    ) -> Option<usize> {
        Some(at)
    }

    /// Bit `j` set when one bucket accepts `window[j..j + 3]`, for `j` in `0..16`: a table
    /// walk (with wasm SIMD, only the last few bytes of a body come here).
    fn lanes(&self, window: &[u8; 18]) -> u16 {
        let mut lanes = 0u16;
        for j in 0..16 {
            let mut buckets = u8::MAX;
            for k in 0..3 {
                let b = window.get(j + k).copied().unwrap_or(0);
                let lo = self.lo.get(k).and_then(|t| t.get(usize::from(b & 15)));
                let hi = self.hi.get(k).and_then(|t| t.get(usize::from(b >> 4)));
                buckets &= lo.copied().unwrap_or(0) & hi.copied().unwrap_or(0);
            }
            lanes |= u16::from(buckets != 0) << j;
        }
        lanes
    }
}
