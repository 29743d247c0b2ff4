//! Made-up credentials in a rule's format (the secret detector's tests, end-to-end tests, fuzz
//! seeds), built at run time from a fixed pseudo-random sequence, so no file here holds anything
//! that looks like a real key. Plain Rust: unit tests include it with `#[path]`.

/// `n` characters of `charset`, the same for the same `seed`.
pub fn fake(charset: &[u8], n: usize, seed: u64) -> String {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = usize::try_from(x % charset.len() as u64).unwrap_or(0);
            char::from(charset.get(i).copied().unwrap_or(b'x'))
        })
        .collect()
}
