//! Batch sizing and the value-range walk's position (pure).

use std::time::Duration;

use super::sql::KeyRange;
use super::status::key_position;

/// The next adaptive batch size: toward `target / elapsed` times the current one, at most 1.5×
/// up or 2× down per batch.
pub(super) fn adapt(current: u32, elapsed: Duration, target: Duration, lo: u32, hi: u32) -> u32 {
    let elapsed = elapsed.as_secs_f64().max(1e-4);
    let ratio = (target.as_secs_f64() / elapsed).clamp(0.5, 1.5);
    let next = (current as f64 * ratio).round();
    (next.max(lo as f64).min(hi as f64)) as u32
}

/// The next rows target of a value-range walk, whose batches hold `rows` rows where `current`
/// was aimed at: toward the rows that take `target` at this batch's rate, at most 1.5× up or
/// 2× down per batch. A batch that held much fewer rows than aimed at (a sparse stretch) says
/// little about the rate (its fixed costs dominate): it only lowers the target, and only when
/// it was too slow even so.
pub(super) fn adapt_to_rows(
    current: u32,
    rows: u64,
    elapsed: Duration,
    target: Duration,
    lo: u32,
    hi: u32,
) -> u32 {
    let representative = rows.saturating_mul(2) >= u64::from(current);
    if !representative && elapsed <= target {
        return current.clamp(lo, hi);
    }
    let elapsed = elapsed.as_secs_f64().max(1e-4);
    let ideal = rows as f64 * target.as_secs_f64() / elapsed;
    let next = ideal
        .clamp(current as f64 * 0.5, current as f64 * 1.5)
        .round();
    (next.max(lo as f64).min(hi as f64)) as u32
}

/// A value-range batch may hold up to this many times its rows target before its upper bound
/// is capped by reading the keys (see [`RangeWalk::next_batch`]).
pub(super) const RANGE_SLACK: u64 = 4;

/// The least density a value-range walk assumes: a batch is at most 10^12 times its rows
/// target wide. (Wider gaps cost no empty batches either: each batch starts at the next key.)
pub(super) const DENSITY_FLOOR: f64 = 1e-12;

/// Where a value-range walk stands, and what it has learned of the key's density.
#[derive(Clone, Debug)]
pub(super) struct RangeWalk {
    /// The first key value not done yet; `None` when the walk is over.
    pub(super) next: Option<i64>,
    /// The key's min and max at start (the max is where the walk ends).
    pub(super) min: i64,
    pub(super) max: i64,
    /// Rows per key value where the walk is (at most 1 for a unique key): that of the last
    /// batch. The most recent batch is the best guess for the next one: it comes right before
    /// it, and a wrong guess costs little either way (too low: a capped batch; too high: a
    /// small batch, after which the guess is right).
    pub(super) density: f64,
}

impl RangeWalk {
    pub(super) fn new(next: Option<i64>, min: i64, max: i64) -> RangeWalk {
        RangeWalk {
            next: next.filter(|n| *n <= max),
            min,
            max,
            // The most a unique key can have: the first batch is never wider than its target.
            density: 1.0,
        }
    }

    /// The next batch for a target of `rows` rows, or `None` when the walk is over. Its value
    /// width is `rows / density`. Where that is more than [`RANGE_SLACK`] × `rows` (a sparse
    /// stretch, where a change to dense keys would put up to `width` rows in one batch), the
    /// batch is capped at that many rows by reading the keys of its range first; elsewhere it
    /// holds at most `width` ≤ `RANGE_SLACK` × `rows` rows (a unique key), and no key is read.
    pub(super) fn next_batch(&self, rows: u32) -> Option<KeyRange> {
        let lo = self.next?;
        let rows = u64::from(rows.max(1));
        let width = (rows as f64 / self.density).ceil().max(1.0);
        let slack = (rows * RANGE_SLACK) as f64;
        // (A float-to-int cast saturates.)
        let hi = (i128::from(lo) + width as i128 - 1).min(i128::from(self.max));
        let width = (hi - i128::from(lo) + 1) as f64;
        // `hi` is within [lo, max], so within the key type.
        let hi = i64::try_from(hi).unwrap_or(self.max);
        Some(KeyRange {
            lo,
            hi,
            cap: (width > slack).then_some(rows * RANGE_SLACK),
            end: self.max,
        })
    }

    /// Takes a batch's result: `updated` rows in `[lo, hi]`, `next_key` the first key after
    /// `hi` (up to the end) or `None`.
    pub(super) fn advance(&mut self, lo: i64, hi: i64, updated: u64, next_key: Option<i64>) {
        let width = (i128::from(hi) - i128::from(lo) + 1).max(1) as f64;
        self.density = if updated > 0 {
            updated as f64 / width
        } else {
            // Every row of the range was marked already (or gone): four times wider next.
            self.density / 4.0
        }
        .clamp(DENSITY_FLOOR, 1.0);
        self.next = next_key.filter(|k| *k > hi && *k <= self.max);
    }

    /// (key values done, key values in all), for the fraction done.
    pub(super) fn position(&self) -> (f64, f64) {
        let last = match self.next {
            Some(n) => n.checked_sub(1),
            None => Some(self.max),
        };
        key_position(last, self.min, self.max)
    }
}
