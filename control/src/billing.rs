//! Rating, sans-IO: what a call costs under a customer's rate plan.
//!
//! Money is an integer number of micro-units of the account's currency
//! (1 = 0.000001), so sums are exact. A plan has a price per minute, a
//! billing increment written `first/next` in seconds (1/1 bills every
//! second; 6/6 and 60/60 round up to blocks; 30/6 bills the first 30 s,
//! then 6 s blocks), and a minimum charge for a billed call. Only answered
//! time is billed (answer to hangup); a started second counts as a second.
//! The cost of the billed seconds rounds up to the next micro-unit.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest price per minute accepted (one million units).
pub const MAX_PRICE_MICROS: i64 = 1_000_000_000_000;
/// Longest increment accepted, seconds.
pub const MAX_INCREMENT_S: i64 = 3_600;

/// A customer's rate plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RatePlan {
    /// Price of one minute, micro-units.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "crate::model::lenient_int")]
    pub price_per_minute_micros: i64,
    /// First billed block, seconds (the `6` of 6/6).
    #[schema(minimum = 1, maximum = 3600)]
    #[serde(deserialize_with = "crate::model::lenient_int")]
    pub increment_first_s: i64,
    /// Each later block, seconds.
    #[schema(minimum = 1, maximum = 3600)]
    #[serde(deserialize_with = "crate::model::lenient_int")]
    pub increment_next_s: i64,
    /// Least a billed call costs, micro-units.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "crate::model::lenient_int")]
    pub min_charge_micros: i64,
    /// A `customer_balance_low` event goes out when the balance drops
    /// below this, micro-units.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "crate::model::lenient_int")]
    pub low_balance_threshold_micros: i64,
}

impl RatePlan {
    /// Refuses values outside the documented ranges.
    pub fn validate(&self) -> Result<(), String> {
        let money = [
            ("price_per_minute_micros", self.price_per_minute_micros),
            ("min_charge_micros", self.min_charge_micros),
            ("low_balance_threshold_micros", self.low_balance_threshold_micros),
        ];
        for (name, v) in money {
            if !(0..=MAX_PRICE_MICROS).contains(&v) {
                return Err(format!("{name} must be 0..={MAX_PRICE_MICROS}"));
            }
        }
        for (name, v) in [
            ("increment_first_s", self.increment_first_s),
            ("increment_next_s", self.increment_next_s),
        ] {
            if !(1..=MAX_INCREMENT_S).contains(&v) {
                return Err(format!("{name} must be 1..={MAX_INCREMENT_S}"));
            }
        }
        Ok(())
    }

    /// Seconds billed for `answered_ms` of answered time.
    pub fn billable_seconds(&self, answered_ms: i64) -> i64 {
        if answered_ms <= 0 {
            return 0;
        }
        let secs = answered_ms.saturating_add(999) / 1000;
        let first = self.increment_first_s.max(1);
        let next = self.increment_next_s.max(1);
        if secs <= first {
            return first;
        }
        let rest = secs - first;
        let blocks = rest / next + i64::from(rest % next != 0);
        first.saturating_add(blocks.saturating_mul(next))
    }

    /// What `billable_s` seconds cost, micro-units.
    pub fn cost(&self, billable_s: i64) -> i64 {
        if billable_s <= 0 {
            return 0;
        }
        // i128: a price up to 10^12 times seconds up to 10^10 fits.
        let raw = (i128::from(billable_s) * i128::from(self.price_per_minute_micros) + 59) / 60;
        let raw = i64::try_from(raw).unwrap_or(i64::MAX);
        raw.max(self.min_charge_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan(first: i64, next: i64, price: i64, min: i64) -> RatePlan {
        RatePlan {
            price_per_minute_micros: price,
            increment_first_s: first,
            increment_next_s: next,
            min_charge_micros: min,
            low_balance_threshold_micros: 0,
        }
    }

    #[test]
    fn increments_and_rounding_table() {
        // (first/next, answered ms, billed s, cost at 0.012/min = 12,000 µ/min)
        let table = [
            ((1, 1), 0, 0, 0),
            ((1, 1), 1, 1, 200),
            ((1, 1), 1_000, 1, 200),
            ((1, 1), 1_001, 2, 400),
            ((1, 1), 61_500, 62, 12_400),
            ((6, 6), 1, 6, 1_200),
            ((6, 6), 6_000, 6, 1_200),
            ((6, 6), 6_001, 12, 2_400),
            ((6, 6), 61_000, 66, 13_200),
            ((60, 60), 1, 60, 12_000),
            ((60, 60), 60_000, 60, 12_000),
            ((60, 60), 60_001, 120, 24_000),
            ((30, 6), 29_000, 30, 6_000),
            ((30, 6), 31_000, 36, 7_200),
            ((30, 6), 37_000, 42, 8_400),
        ];
        for ((first, next), ms, billed, cost) in table {
            let p = plan(first, next, 12_000, 0);
            assert_eq!(p.billable_seconds(ms), billed, "{first}/{next} {ms} ms");
            assert_eq!(p.cost(billed), cost, "{first}/{next} {ms} ms");
        }
    }

    #[test]
    fn cost_rounds_up_and_honours_the_minimum() {
        // 1 s at 0.01/min = 166.67 µ -> 167.
        assert_eq!(plan(1, 1, 10_000, 0).cost(1), 167);
        assert_eq!(plan(1, 1, 10_000, 500).cost(1), 500, "minimum charge");
        assert_eq!(plan(1, 1, 10_000, 500).cost(0), 0, "unbilled call is free");
        assert_eq!(plan(1, 1, 0, 0).cost(100), 0, "free plan");
    }

    #[test]
    fn validation() {
        assert!(plan(1, 1, 1, 0).validate().is_ok());
        assert!(plan(0, 1, 1, 0).validate().is_err());
        assert!(plan(1, 3_601, 1, 0).validate().is_err());
        assert!(plan(1, 1, -1, 0).validate().is_err());
        assert!(plan(1, 1, MAX_PRICE_MICROS + 1, 0).validate().is_err());
    }

    proptest! {
        #[test]
        fn billed_time_covers_answered_time_in_whole_blocks(
            first in 1i64..=3600, next in 1i64..=3600, ms in 1i64..100_000_000
        ) {
            let p = plan(first, next, 12_000, 0);
            let b = p.billable_seconds(ms);
            prop_assert!(b * 1000 >= ms);
            prop_assert!(b >= first);
            prop_assert_eq!((b - first) % next, 0);
            prop_assert!(b - (ms + 999) / 1000 < next.max(first));
        }

        #[test]
        fn cost_never_overflows_or_goes_negative(
            price in 0i64..=MAX_PRICE_MICROS, secs in 0i64..10_000_000_000, min in 0i64..=MAX_PRICE_MICROS
        ) {
            let c = plan(1, 1, price, min).cost(secs);
            prop_assert!(c >= 0);
        }
    }
}
