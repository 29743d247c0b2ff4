//! The bytes that matter inside a string, 64 at a time: bitmasks of its `"` and `\` bytes (bit
//! `i` is byte `i`), computed with 16-byte vector compares where the target has them (wasm
//! SIMD in Envoy's V8, SSE2 natively) and a plain loop elsewhere.

/// Bytes per block.
pub const LEN: usize = 64;

/// Bitmasks of the quotes and the backslashes in the first 16 bytes (most keys and block types
/// end there).
pub fn quotes_and_backslashes_16(bytes: &[u8; 16]) -> (u16, u16) {
    lane_masks(bytes)
}

/// Bitmasks of the quotes, and of the bytes that stop a validated string (backslashes and raw
/// control characters), in the first 16 bytes.
pub fn quotes_and_stops_16(bytes: &[u8; 16]) -> (u16, u16) {
    let (quotes, backslashes) = lane_masks(bytes);
    (quotes, backslashes | control_mask(bytes))
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn control_mask(lane: &[u8; 16]) -> u16 {
    use core::arch::wasm32::{u8x16_bitmask, u8x16_lt, u8x16_splat, v128, v128_load};
    // SAFETY: `lane` is 16 readable bytes; v128_load accepts unaligned addresses.
    let v = unsafe { v128_load(lane.as_ptr().cast::<v128>()) };
    u8x16_bitmask(u8x16_lt(v, u8x16_splat(0x20)))
}

#[cfg(target_arch = "x86_64")]
fn control_mask(lane: &[u8; 16]) -> u16 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: `lane` is 16 readable bytes; the load is unaligned. SSE2 is part of the x86_64
    // baseline. A byte is below 0x20 when min(byte, 0x1f) is the byte itself.
    unsafe {
        let v = _mm_loadu_si128(lane.as_ptr().cast::<__m128i>());
        _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v)) as u16
    }
}

#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    target_arch = "x86_64"
)))]
fn control_mask(lane: &[u8; 16]) -> u16 {
    lane.iter()
        .enumerate()
        .fold(0, |m, (i, &c)| m | (u16::from(c < 0x20) << i))
}

/// The last, partial block of a buffer, padded with bytes that are neither quote nor backslash.
pub fn padded(rest: &[u8]) -> [u8; LEN] {
    let mut block = [0u8; LEN];
    let n = rest.len().min(LEN);
    if let (Some(dst), Some(src)) = (block.get_mut(..n), rest.get(..n)) {
        dst.copy_from_slice(src);
    }
    block
}

/// Bitmasks of the quotes and the backslashes in `block`.
pub fn quotes_and_backslashes(block: &[u8; LEN]) -> (u64, u64) {
    let (mut quotes, mut backslashes) = (0u64, 0u64);
    let lanes = block
        .chunks_exact(16)
        .filter_map(|lane| <&[u8; 16]>::try_from(lane).ok());
    for (k, lane) in lanes.enumerate() {
        let (q, b) = lane_masks(lane);
        quotes |= u64::from(q) << (16 * k);
        backslashes |= u64::from(b) << (16 * k);
    }
    (quotes, backslashes)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn lane_masks(lane: &[u8; 16]) -> (u16, u16) {
    use core::arch::wasm32::{u8x16_bitmask, u8x16_eq, u8x16_splat, v128, v128_load};
    // SAFETY: `lane` is 16 readable bytes; v128_load accepts unaligned addresses.
    let v = unsafe { v128_load(lane.as_ptr().cast::<v128>()) };
    (
        u8x16_bitmask(u8x16_eq(v, u8x16_splat(b'"'))),
        u8x16_bitmask(u8x16_eq(v, u8x16_splat(b'\\'))),
    )
}

#[cfg(target_arch = "x86_64")]
fn lane_masks(lane: &[u8; 16]) -> (u16, u16) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: `lane` is 16 readable bytes; the load is unaligned.
    // SSE2 is part of the x86_64 baseline.
    unsafe {
        let v = _mm_loadu_si128(lane.as_ptr().cast::<__m128i>());
        let mask = |b: u8| _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8))) as u16;
        (mask(b'"'), mask(b'\\'))
    }
}

#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    target_arch = "x86_64"
)))]
fn lane_masks(lane: &[u8; 16]) -> (u16, u16) {
    let (mut q, mut b) = (0u16, 0u16);
    for (i, &c) in lane.iter().enumerate() {
        q |= u16::from(c == b'"') << i;
        b |= u16::from(c == b'\\') << i;
    }
    (q, b)
}

/// The bytes of a block that a backslash escapes. `carry` says whether the block's first byte
/// is escaped by a backslash at the end of the previous block; it is updated for the next one.
/// Branch-free, whatever the number of backslashes: in a run of them the escaping ones are the
/// first and every second after it, so a subtraction over the runs that start on an even byte,
/// with the odd bits flipped around it, marks each escaped byte (the method of simdjson's
/// string scanner).
pub fn escaped(backslashes: u64, carry: &mut bool) -> u64 {
    const ODD: u64 = 0xAAAA_AAAA_AAAA_AAAA;
    let first = u64::from(*carry);
    // A backslash escaped from the previous block is a literal one.
    let potential = backslashes & !first;
    // Per run: the escaped byte after each escaping backslash, and the escaping backslashes.
    let codes = ((potential << 1) | ODD).wrapping_sub(potential) ^ ODD;
    *carry = (codes & backslashes) >> 63 != 0;
    codes ^ (backslashes | first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(s: &[u8]) -> [u8; LEN] {
        let mut b = [b'a'; LEN];
        b[..s.len()].copy_from_slice(s);
        b
    }

    /// The same answer, one byte at a time.
    fn reference(bytes: &[u8], mut carry: bool) -> (u64, bool) {
        let mut escaped = 0u64;
        for (i, &c) in bytes.iter().enumerate() {
            if carry {
                escaped |= 1 << i;
                carry = false;
            } else if c == b'\\' {
                carry = true;
            }
        }
        (escaped, carry)
    }

    #[test]
    fn masks_mark_every_quote_and_backslash() {
        let mut b = block(br#"{"a\"b\\"}"#);
        b[63] = b'"';
        b[47] = b'\\';
        let (q, bs) = quotes_and_backslashes(&b);
        assert_eq!(q, (1 << 1) | (1 << 4) | (1 << 8) | (1 << 63));
        assert_eq!(bs, (1 << 3) | (1 << 6) | (1 << 7) | (1 << 47));
    }

    #[test]
    fn stops_are_backslashes_and_control_bytes() {
        let mut b = [b'a'; 16];
        b[2] = b'"';
        b[5] = b'\\';
        b[7] = 0x1f;
        b[8] = 0x20;
        b[9] = 0x00;
        b[10] = 0x80;
        b[11] = 0xff;
        assert_eq!(
            quotes_and_stops_16(&b),
            (1 << 2, (1 << 5) | (1 << 7) | (1 << 9))
        );
    }

    #[test]
    fn escapes_pair_up_across_blocks() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut bytes = [0u8; LEN];
            for b in &mut bytes {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                *b = [b'\\', b'\\', b'"', b'x'][(rng % 4) as usize];
            }
            let carry_in = rng & 1 << 40 != 0;
            let (_, bs) = quotes_and_backslashes(&bytes);
            let mut carry = carry_in;
            let got = escaped(bs, &mut carry);
            assert_eq!(
                (got, carry),
                reference(&bytes, carry_in),
                "{bytes:?} {carry_in}"
            );
        }
    }
}
