use uuid::Uuid;

/// Makes identifiers and ticket numbers. Replace it for deterministic tests or another numbering scheme.
pub trait IdGenerator: Send + Sync {
    /// A fresh unique id.
    fn uuid(&self) -> Uuid;
    /// A fresh ticket number, unique with overwhelming probability (the store's unique constraint is the guard).
    fn ticket_number(&self) -> String;
}

/// UUIDv7 ids and `EVT-XXXX-XXXX-XXXX` ticket numbers (60 random bits, Crockford base32).
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultIdGenerator;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl IdGenerator for DefaultIdGenerator {
    fn uuid(&self) -> Uuid {
        Uuid::now_v7()
    }

    fn ticket_number(&self) -> String {
        let bits = Uuid::new_v4().as_u128();
        let mut out = String::with_capacity(18);
        out.push_str("EVT");
        for i in 0..12 {
            if i % 4 == 0 {
                out.push('-');
            }
            let idx = ((bits >> (i * 5)) & 31) as usize;
            out.push(CROCKFORD[idx] as char);
        }
        out
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
    }
}
