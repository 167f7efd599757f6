//! When a host polls the mapping: spread over the interval by its instance id, never all at
//! once — also not after a fleet-wide restart — and backing off under throttling.
//!
//! - **Phase.** A host's polls fall on wall-clock times `k·P + phase`, `phase` = FNV-1a-64 of
//!   its instance id mod P: the fleet's polls spread evenly over every interval.
//! - **Jitter.** Each poll moves by up to ±10 % of P, so hosts whose phases collide drift apart.
//! - **First poll.** After a start, the first poll waits U(0, P) — never "poll now": a
//!   fleet-wide restart (an AMI roll, a config push) would otherwise put every host's GET in the
//!   same second (51.5× the mean in the reference's simulation; 1.4× with the delay).
//! - **Backoff.** A throttled or failed poll retries after full jitter, U(0, min(cap, base·2ⁿ)),
//!   base P/60 (at least 1 s), cap 300 s; the next success returns to the phase.

use std::time::Duration;

/// Each poll's jitter, as a fraction of the interval.
pub const JITTER: f64 = 0.1;
/// The longest wait between retries of a failed poll.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// FNV-1a, 64 bits (stable across versions and architectures: a host keeps its phase).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A host's polling schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// P.
    pub interval: Duration,
    /// This host's offset in each interval.
    pub phase: Duration,
}

impl Schedule {
    /// The schedule of the host `instance_id` (on-prem: its managed-instance id) at interval P.
    pub fn new(instance_id: &str, interval: Duration) -> Self {
        let p = interval.as_nanos().max(1);
        let phase = u128::from(fnv1a64(instance_id.as_bytes())) % p;
        Self {
            interval,
            phase: Duration::from_nanos(u64::try_from(phase).unwrap_or(0)),
        }
    }

    /// The wait before the first poll after a start; `u` uniform in [0, 1).
    pub fn first_delay(&self, u: f64) -> Duration {
        self.interval.mul_f64(u.clamp(0.0, 1.0))
    }

    /// The wait before the poll after one made at `now` (time since the Unix epoch): to the
    /// first slot at least P/2 ahead and not before `not_before`, moved by `j` × [`JITTER`] × P,
    /// `j` uniform in [-1, 1]. In the steady state that is the next slot: a poll moved by the
    /// jitter, or woken up late, neither skips nor repeats one. After the first poll of a run,
    /// `not_before` = the start + P keeps the second out of the first interval, which the first
    /// polls of a fleet-wide restart already fill evenly.
    pub fn next_delay(&self, now: Duration, not_before: Duration, j: f64) -> Duration {
        let p = self.interval.as_nanos().max(1);
        let phase = self.phase.as_nanos();
        let earliest = (now.as_nanos() + p / 2).max(not_before.as_nanos());
        // The slots are k·P + phase: the first at or after `earliest`.
        let k = earliest.saturating_sub(phase).div_ceil(p);
        let slot = Duration::from_nanos(u64::try_from(k * p + phase).unwrap_or(u64::MAX));
        let jitter = self.interval.mul_f64(JITTER * j.clamp(-1.0, 1.0).abs());
        let at = if j < 0.0 {
            slot.saturating_sub(jitter)
        } else {
            slot + jitter
        };
        at.saturating_sub(now)
    }

    /// The wait before retry `attempt` (0 = the first) of a failed or throttled poll; `u`
    /// uniform in [0, 1).
    pub fn backoff(&self, attempt: u32, u: f64) -> Duration {
        let base = (self.interval / 60).max(Duration::from_secs(1));
        // Five intervals at most (300 s at the default 60 s): a short interval recovers as
        // fast, relative to it, as the default one.
        let most = BACKOFF_CAP.min(self.interval.saturating_mul(5)).max(base);
        let cap = base.saturating_mul(1u32 << attempt.min(20)).min(most);
        cap.mul_f64(u.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    const P: Duration = Duration::from_secs(60);

    #[test]
    fn the_phase_is_stable_and_spread() {
        // FNV-1a-64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let s = Schedule::new("i-0123456789abcdef0", P);
        assert_eq!(s, Schedule::new("i-0123456789abcdef0", P));
        assert!(s.phase < P);
        // 10,000 hosts over 60 one-second bins: none far from the mean of 166.7.
        let mut bins = [0u32; 60];
        for i in 0..10_000 {
            let bin = usize::try_from(Schedule::new(&format!("i-{i:017x}"), P).phase.as_secs());
            bins[bin.unwrap()] += 1;
        }
        assert!(bins.iter().all(|&b| (110..=225).contains(&b)), "{bins:?}");
    }

    #[test]
    fn polls_land_on_the_phase_about_one_interval_apart() {
        let s = Schedule {
            interval: P,
            phase: Duration::from_secs(17),
        };
        let epoch = Duration::from_secs(1_796_464_800); // a multiple of 60
        let started = epoch - Duration::from_secs(3600);
        for (now, not_before, j, want) in [
            // On the slot: the next one.
            (epoch + Duration::from_secs(17), started, 0.0, 60.0),
            // After it (a positive jitter, a late wake-up): still the next slot.
            (epoch + Duration::from_secs(23), started, 0.0, 54.0),
            (epoch + Duration::from_secs(40), started, 0.0, 37.0),
            // Before it (a negative jitter): the slot after the near one.
            (epoch + Duration::from_secs(11), started, 0.0, 66.0),
            // Jitter: ±6 s.
            (epoch + Duration::from_secs(17), started, 1.0, 66.0),
            (epoch + Duration::from_secs(17), started, -1.0, 54.0),
            // The first poll of a run started at `epoch`: the second is in the next interval.
            (epoch + Duration::from_secs(5), epoch + P, 0.0, 72.0),
            (epoch + Duration::from_secs(30), epoch + P, 0.0, 47.0),
            // ... or the one after, when the slot there is less than P/2 away.
            (epoch + Duration::from_secs(50), epoch + P, 0.0, 87.0),
        ] {
            let d = s.next_delay(now, not_before, j).as_secs_f64();
            assert!(
                (d - want).abs() < 1e-6,
                "at {now:?} j {j}: {d} s, want {want}"
            );
        }
        assert_eq!(s.first_delay(0.5), Duration::from_secs(30));
    }

    #[test]
    fn backoff_is_full_jitter_up_to_the_cap() {
        let s = Schedule::new("i-1", P);
        assert_eq!(s.backoff(0, 0.999_999).as_secs(), 0);
        assert_eq!(s.backoff(0, 1.0), Duration::from_secs(1));
        assert_eq!(s.backoff(3, 1.0), Duration::from_secs(8));
        assert_eq!(s.backoff(30, 1.0), BACKOFF_CAP);
        assert_eq!(s.backoff(30, 0.5), BACKOFF_CAP / 2);
        // A long interval backs off from P/60.
        let long = Schedule::new("i-1", Duration::from_secs(3600));
        assert_eq!(long.backoff(0, 1.0), Duration::from_secs(60));
        assert_eq!(long.backoff(30, 1.0), BACKOFF_CAP);
        // A short one waits five intervals at most.
        let short = Schedule::new("i-1", Duration::from_secs(10));
        assert_eq!(short.backoff(30, 1.0), Duration::from_secs(50));
        assert_eq!(short.backoff(2, 1.0), Duration::from_secs(4));
    }

    /// An in-memory store: the generation published, GETs per simulated second, and when each
    /// host first saw each generation.
    #[derive(Default)]
    struct Store {
        generation: u64,
        published_at: BTreeMap<u64, Duration>,
        per_second: BTreeMap<u64, u32>,
        changed: u32,
        unchanged: u32,
        propagation: Vec<Duration>,
    }

    /// One host: the first delay, then a conditional GET at each slot.
    async fn host(id: String, store: Rc<RefCell<Store>>, start: tokio::time::Instant, seed: u64) {
        let s = Schedule::new(&id, P);
        let mut rng = fastrand::Rng::with_seed(seed);
        let epoch = Duration::from_secs(1_796_464_800);
        let mut seen = 0;
        tokio::time::sleep(s.first_delay(rng.f64())).await;
        let not_before = epoch + P;
        loop {
            let t = start.elapsed();
            {
                let mut st = store.borrow_mut();
                *st.per_second.entry(t.as_secs()).or_default() += 1;
                if st.generation == seen {
                    st.unchanged += 1;
                } else {
                    st.changed += 1;
                    seen = st.generation;
                    if let Some(at) = st.published_at.get(&seen).copied() {
                        st.propagation.push(t - at);
                    }
                }
            }
            tokio::time::sleep(s.next_delay(epoch + t, not_before, rng.f64() * 2.0 - 1.0)).await;
        }
    }

    /// 10,000 hosts started at once (a fleet-wide restart), one simulated hour on tokio's
    /// paused clock, generation 2 published at 30 minutes: the GET rate stays near its mean
    /// from the first second, and the change reaches every host within P(1 + jitter).
    #[tokio::test(start_paused = true)]
    async fn ten_thousand_hosts_stay_spread_also_after_a_restart() {
        let store = Rc::new(RefCell::new(Store {
            generation: 1,
            ..Store::default()
        }));
        let local = tokio::task::LocalSet::new();
        let start = tokio::time::Instant::now();
        for i in 0..10_000u64 {
            local.spawn_local(host(format!("i-{i:017x}"), store.clone(), start, i));
        }
        let publisher = store.clone();
        local.spawn_local(async move {
            tokio::time::sleep(Duration::from_secs(1800)).await;
            let mut st = publisher.borrow_mut();
            st.generation = 2;
            st.published_at.insert(2, Duration::from_secs(1800));
        });
        local
            .run_until(tokio::time::sleep(Duration::from_secs(3600)))
            .await;
        let st = store.borrow();
        let total: u32 = st.per_second.values().sum();
        let mean = f64::from(total) / 3600.0;
        let peak = *st.per_second.values().max().unwrap();
        let first_minute = st.per_second.range(..60).map(|(_, n)| *n).max().unwrap();
        let mut prop = st.propagation.clone();
        prop.sort();
        println!(
            "GETs {total} ({} changed, {} unchanged), mean {mean:.1}/s, peak {peak}/s, peak in the first minute {first_minute}/s; generation 2 reached {} hosts: p50 {:?}, p99 {:?}, max {:?}",
            st.changed,
            st.unchanged,
            prop.len(),
            prop[prop.len() / 2],
            prop[prop.len() * 99 / 100],
            prop[prop.len() - 1]
        );
        // ≈ 60 polls per host per hour.
        assert!((mean - 166.7).abs() < 5.0, "{mean}");
        assert!(f64::from(peak) <= 1.5 * mean, "peak {peak} vs mean {mean}");
        assert_eq!(prop.len(), 10_000, "every host saw generation 2");
        // Two polls are at most P(1 + 2·jitter) apart (one early, the next late).
        assert!(prop[prop.len() - 1] <= P.mul_f64(1.0 + 2.0 * JITTER));
        // The first GET of every host was a change (generation 1), later ones mostly 304s.
        assert_eq!(st.changed, 20_000);
    }
}
