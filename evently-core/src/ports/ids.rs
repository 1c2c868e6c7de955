use uuid::Uuid;

/// Makes identifiers and ticket numbers. Replace it for deterministic tests or another numbering scheme.
pub trait IdGenerator: Send + Sync {
    /// A fresh unique id.
    fn uuid(&self) -> Uuid;
    /// A fresh ticket number, unique with overwhelming probability (the store's unique constraint is the guard).
    fn ticket_number(&self) -> String;
}

/// UUIDv7 ids and `EVT-XXXX-XXXX-XXXX` ticket numbers (60 random bits, Crockford base32).
///
/// Ids: the Unix time in milliseconds, then a per-thread counter (42 bits, starting at a random value
/// each millisecond) and 32 random bits from a per-thread xorshift generator seeded from the system's
/// random source. Ids one thread makes increase, like `Uuid::now_v7`'s; ids of different threads
/// collide with odds of about 2^-74 per millisecond. Cheaper than `Uuid::now_v7` (no shared context,
/// no call into the random source per id), and a confirmed booking takes three. Ids are unique,
/// time-ordered keys, not secrets: access to a booking is checked against its owner, never inferred
/// from knowing its id. Ticket numbers, which a QR code presents at the door, come from the system's
/// random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultIdGenerator;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Bits of the per-thread counter within a millisecond.
const COUNTER_BITS: u32 = 42;

/// One thread's id state.
#[derive(Clone, Copy)]
struct IdState {
    last_ms: u64,
    counter: u64,
    /// xorshift128+ state; all zero until the thread's first id.
    rng: [u64; 2],
}

thread_local! {
    static ID_STATE: std::cell::Cell<IdState> = const {
        std::cell::Cell::new(IdState { last_ms: 0, counter: 0, rng: [0, 0] })
    };
}

impl IdState {
    fn next_random(&mut self) -> u64 {
        if self.rng == [0, 0] {
            let (a, b) = Uuid::new_v4().as_u64_pair();
            self.rng = [a | 1, b];
        }
        let [s0, s1] = self.rng;
        let t = s0 ^ (s0 << 23);
        self.rng = [s1, t ^ s1 ^ (t >> 17) ^ (s1 >> 26)];
        s0.wrapping_add(s1)
    }

    fn next_id(&mut self, now_ms: u64) -> Uuid {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            // A random start in the lower half of the counter's range: it cannot run out within
            // the millisecond.
            self.counter = self.next_random() >> (64 - COUNTER_BITS + 1);
        } else {
            self.counter += 1;
            if self.counter >> COUNTER_BITS != 0 {
                // 2^41 ids in one millisecond: borrow the next one (as `Uuid::now_v7` does).
                self.last_ms += 1;
                self.counter = 0;
            }
        }
        // The counter above 32 random bits: 74 bits, which fill rand_a and rand_b.
        let bits = (u128::from(self.counter) << 32) | u128::from(self.next_random() & 0xFFFF_FFFF);
        uuid::Builder::from_unix_timestamp_millis(self.last_ms, &spread(bits)).into_uuid()
    }
}

/// Lays 74 bits over the 80 bits after the timestamp around the 4 version bits and 2 variant bits
/// (which the UUID builder sets), keeping their order: 12 bits in rand_a, 62 in rand_b.
fn spread(bits: u128) -> [u8; 10] {
    let rand_a = (bits >> 62) & 0xFFF;
    let rand_b = bits & ((1u128 << 62) - 1);
    let b = ((rand_a << 64) | rand_b).to_be_bytes();
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&b[6..]);
    tail
}

impl IdGenerator for DefaultIdGenerator {
    fn uuid(&self) -> Uuid {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        ID_STATE.with(|cell| {
            let mut st = cell.get();
            let id = st.next_id(ms);
            cell.set(st);
            id
        })
    }

    fn ticket_number(&self) -> String {
        let bits = Uuid::new_v4().as_u128();
        let mut out = *b"EVT-XXXX-XXXX-XXXX";
        for i in 0..12 {
            let idx = ((bits >> (i * 5)) & 31) as usize;
            out[4 + i + i / 4] = CROCKFORD[idx];
        }
        // ASCII throughout, so this never falls back.
        String::from_utf8(out.to_vec()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_numbers_have_the_documented_shape_and_differ() {
        let g = DefaultIdGenerator;
        let a = g.ticket_number();
        let b = g.ticket_number();
        assert_eq!(a.len(), 18, "{a}");
        assert!(a.starts_with("EVT-"));
        assert_eq!(a.matches('-').count(), 3);
        assert_ne!(a, b);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(groups[0], "EVT");
        for g in &groups[1..] {
            assert_eq!(g.len(), 4);
            assert!(g.bytes().all(|c| CROCKFORD.contains(&c)), "{a}");
        }
    }

    #[test]
    fn a_full_counter_borrows_the_next_millisecond_and_ids_keep_increasing() {
        let mut st = IdState {
            last_ms: 1_000,
            counter: (1 << COUNTER_BITS) - 1,
            rng: [1, 2],
        };
        let a = st.next_id(1_000);
        assert_eq!((st.last_ms, st.counter), (1_001, 0));
        // The clock is behind the ids now, or goes back: ids still increase.
        let b = st.next_id(1_000);
        let c = st.next_id(900);
        let d = st.next_id(1_002);
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
    }

    #[test]
    fn ids_are_version_7_carry_the_time_and_do_not_repeat() {
        let g = DefaultIdGenerator;
        let before = chrono::Utc::now().timestamp_millis();
        let ids: Vec<Uuid> = (0..10_000).map(|_| g.uuid()).collect();
        let after = chrono::Utc::now().timestamp_millis();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = id.get_timestamp().expect("a v7 id has a time").to_unix();
            let ms = i64::try_from(secs).unwrap() * 1000 + i64::from(nanos / 1_000_000);
            assert!(
                (before..=after).contains(&ms),
                "{ms} not in {before}..={after}"
            );
        }
        // One thread's ids increase.
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // Another thread draws from its own generator.
        let other = std::thread::spawn(move || g.uuid()).join().unwrap();
        assert!(!distinct.contains(&other));
    }
}
