//! Per-consumer rate limits (token buckets) and per-cost-center spend budgets, as values kept
//! in the shared store. Requests are admitted if their consumer still has room; tokens and
//! money are charged when the response ends, from the actual usage (a request can take a
//! bucket below zero, and the consumer then waits until it refills).

/// A token bucket of capacity `limit` refilling at `limit` per minute. Levels are in
/// thousandths so slow refills are not lost to rounding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    pub level_milli: i64,
    pub updated_ms: u64,
}

const MINUTE_MS: i64 = 60_000;

impl Bucket {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.level_milli.to_le_bytes().to_vec();
        out.extend_from_slice(&self.updated_ms.to_le_bytes());
        out
    }

    /// Decodes a stored bucket; a missing one starts full.
    pub fn decode(bytes: Option<&[u8]>, limit: u64, now: u64) -> Bucket {
        let word =
            |b: &[u8], i: usize| -> Option<[u8; 8]> { b.get(i * 8..i * 8 + 8)?.try_into().ok() };
        match bytes.and_then(|b| Some((word(b, 0)?, word(b, 1)?))) {
            Some((level, at)) => Bucket {
                level_milli: i64::from_le_bytes(level),
                updated_ms: u64::from_le_bytes(at),
            },
            None => Bucket {
                level_milli: capacity(limit),
                updated_ms: now,
            },
        }
    }

    #[cfg(test)]
    pub fn refill_for_tests(&mut self, limit: u64, now: u64) {
        self.refill(limit, now);
    }

    fn refill(&mut self, limit: u64, now: u64) {
        let elapsed = now.saturating_sub(self.updated_ms) as i64;
        let added = elapsed.saturating_mul(limit as i64) * 1000 / MINUTE_MS;
        self.level_milli = self.level_milli.saturating_add(added).min(capacity(limit));
        self.updated_ms = now.max(self.updated_ms);
    }

    /// Milliseconds until the level reaches `need_milli`.
    fn wait_for(&self, limit: u64, need_milli: i64) -> u64 {
        let missing = need_milli - self.level_milli;
        if missing <= 0 || limit == 0 {
            return 0;
        }
        ((missing * MINUTE_MS) as u64).div_ceil(limit * 1000)
    }

    /// Takes `n` whole units if there are; `Err` gives the wait in milliseconds.
    pub fn take(&mut self, limit: u64, n: u64, now: u64) -> Result<(), u64> {
        self.refill(limit, now);
        let need = n as i64 * 1000;
        if self.level_milli >= need {
            self.level_milli -= need;
            Ok(())
        } else {
            Err(self.wait_for(limit, need))
        }
    }

    /// Admits a request if the bucket is not in debt; `Err` gives the wait in milliseconds.
    pub fn admit(&mut self, limit: u64, now: u64) -> Result<(), u64> {
        self.refill(limit, now);
        if self.level_milli > 0 {
            Ok(())
        } else {
            Err(self.wait_for(limit, 1))
        }
    }

    /// Charges `n` units, possibly into debt.
    pub fn charge(&mut self, limit: u64, n: u64, now: u64) {
        self.refill(limit, now);
        self.level_milli = self
            .level_milli
            .saturating_sub((n as i64).saturating_mul(1000));
    }
}

fn capacity(limit: u64) -> i64 {
    (limit as i64).saturating_mul(1000)
}

/// A budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// The period's number containing `now` (UTC days since the epoch, or year * 12 + month),
    /// and the time it ends.
    pub fn window(self, now: u64) -> (u64, u64) {
        let day = now / 86_400_000;
        match self {
            Period::Day => (day, (day + 1) * 86_400_000),
            Period::Month => crate::time::month_window(now),
        }
    }
}

/// Money spent in one budget window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spend {
    pub window: u64,
    pub micro_usd: u64,
}

impl Spend {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.window.to_le_bytes().to_vec();
        out.extend_from_slice(&self.micro_usd.to_le_bytes());
        out
    }

    /// The spend of the current window (a stored spend of an older window counts as zero).
    pub fn decode(bytes: Option<&[u8]>, window: u64) -> Spend {
        let word = |b: &[u8], i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        match bytes.and_then(|b| Some((word(b, 0)?, word(b, 1)?))) {
            Some((w, spent)) if w == window => Spend {
                window,
                micro_usd: spent,
            },
            _ => Spend {
                window,
                micro_usd: 0,
            },
        }
    }
}
