//! Billing: what an interval of reserved resources costs under a price version, and the usage
//! reports built from the ledger's rows.
//!
//! Money is integer throughout: prices and costs are millionths of a billing unit; the ledger's
//! units are CPU millicore-seconds, MiB-seconds and GPU-seconds.

use crate::db::PriceRow;

/// CPU millicore-seconds in a core-hour.
const MCS_PER_CORE_HOUR: i128 = 1000 * 3600;
/// MiB-seconds in a GiB-hour.
const MIB_S_PER_GIB_HOUR: i128 = 1024 * 3600;
/// GPU-seconds in a GPU-hour.
const GPU_S_PER_GPU_HOUR: i128 = 3600;
/// The least common multiple of the three, so one interval's cost is floored once.
const COMMON: i128 = 460_800_000;

/// The cost, in millionths of a billing unit, of one interval's reserved units under `price`:
/// `cpu_mcs` CPU millicore-seconds, `mib_s` MiB-seconds and `gpu_s` GPU-seconds. Integer math in
/// `i128`, floored once over the sum (so an interval never costs more than its exact price).
pub fn cost_micros(price: &PriceRow, cpu_mcs: i64, mib_s: i64, gpu_s: i64) -> i64 {
    // Saturating: no real interval comes near i128's range, but a corrupt input must not panic.
    let part = |units: i64, per_hour: i64, scale: i128| {
        i128::from(units)
            .saturating_mul(i128::from(per_hour))
            .saturating_mul(COMMON / scale)
    };
    let numerator = part(cpu_mcs, price.cpu_core_hour, MCS_PER_CORE_HOUR)
        .saturating_add(part(mib_s, price.memory_gib_hour, MIB_S_PER_GIB_HOUR))
        .saturating_add(part(gpu_s, price.gpu_hour, GPU_S_PER_GPU_HOUR));
    let cost = numerator.div_euclid(COMMON);
    i64::try_from(cost).unwrap_or(if cost < 0 { i64::MIN } else { i64::MAX })
}

/// The version in force at `t` (Unix seconds) among `versions` ordered by `effective_from`: the
/// last one that starts at or before `t` (the first one if `t` is before all of them).
pub fn price_at(versions: &[PriceRow], t: i64) -> Option<&PriceRow> {
    versions
        .iter()
        .rev()
        .find(|p| p.effective_from <= t)
        .or_else(|| versions.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(cpu: i64, mem: i64, gpu: i64) -> PriceRow {
        PriceRow {
            id: 1,
            effective_from: 0,
            cpu_core_hour: cpu,
            memory_gib_hour: mem,
            gpu_hour: gpu,
            note: String::new(),
            created: 0,
        }
    }

    #[test]
    fn an_hour_of_each_unit_costs_its_hourly_price() {
        let p = price(1_000_000, 100_000, 10_000_000);
        assert_eq!(cost_micros(&p, 1000 * 3600, 0, 0), 1_000_000);
        assert_eq!(cost_micros(&p, 0, 1024 * 3600, 0), 100_000);
        assert_eq!(cost_micros(&p, 0, 0, 3600), 10_000_000);
        // Two cores, 4 GiB and a GPU for half an hour.
        assert_eq!(
            cost_micros(&p, 2000 * 1800, 4096 * 1800, 1800),
            1_000_000 + 200_000 + 5_000_000
        );
    }

    #[test]
    fn a_fraction_of_a_millionth_is_floored_once_over_the_sum() {
        // 1 millicore-second at 1 unit per core-hour is 1/3.6 millionths: 0.
        let p = price(1_000_000, 0, 0);
        assert_eq!(cost_micros(&p, 1, 0, 0), 0);
        assert_eq!(cost_micros(&p, 4, 0, 0), 1);
        // Two parts of 0.6 each add up to 1 before the floor.
        let q = price(2160, 2212, 0);
        // 1000 mcs × 2160 / 3.6e6 = 0.6; 1024 MiB·s × 2212 / 3 686 400 ≈ 0.61.
        assert_eq!(cost_micros(&q, 1000, 1024, 0), 1);
    }

    #[test]
    fn large_intervals_do_not_overflow() {
        let p = price(i64::MAX / 2, i64::MAX / 2, i64::MAX / 2);
        assert_eq!(cost_micros(&p, i64::MAX, i64::MAX, i64::MAX), i64::MAX);
        let p = price(1_000_000, 100_000, 10_000_000);
        // A year of 1,000 cores.
        let mcs = 1_000_000 * 365 * 24 * 3600;
        assert_eq!(cost_micros(&p, mcs, 0, 0), 1000 * 365 * 24 * 1_000_000);
    }

    #[test]
    fn the_price_in_force_is_the_last_that_started() {
        let mut a = price(1, 1, 1);
        a.effective_from = 0;
        let mut b = price(2, 2, 2);
        b.id = 2;
        b.effective_from = 100;
        let v = vec![a, b];
        assert_eq!(price_at(&v, 99).map(|p| p.id), Some(1));
        assert_eq!(price_at(&v, 100).map(|p| p.id), Some(2));
        assert_eq!(price_at(&v, -5).map(|p| p.id), Some(1));
        assert_eq!(price_at(&[], 5), None);
    }
}
