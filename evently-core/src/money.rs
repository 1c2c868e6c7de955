//! Money in integer minor units. Never a float.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// An ISO-4217-style currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a three-letter upper-case code such as `"EUR"`.
    ///
    /// ```
    /// use evently_core::Currency;
    /// assert_eq!(Currency::new("EUR").unwrap().as_str(), "EUR");
    /// assert!(Currency::new("eur").is_err());
    /// ```
    pub fn new(code: &str) -> Result<Self, Error> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(Error::Validation {
                field: "currency",
                reason: format!("{code:?} is not a three-letter upper-case currency code"),
            });
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount of money: integer minor units (cents) plus a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Amount in minor units (e.g. cents). May be zero; negative amounts are rejected where a price is expected.
    pub minor: i64,
    /// Currency of the amount.
    pub currency: Currency,
}

impl Money {
    /// Builds an amount.
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// `self * quantity`, or a validation error on overflow.
    pub fn checked_mul(self, quantity: u32) -> Result<Money, Error> {
        self.minor
            .checked_mul(i64::from(quantity))
            .map(|minor| Money { minor, ..self })
            .ok_or_else(|| Error::Validation {
                field: "price",
                reason: format!("{} x {quantity} overflows", self.minor),
            })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_are_validated() {
        assert!(Currency::new("USD").is_ok());
        for bad in ["", "US", "USDX", "usd", "U$D"] {
            assert!(Currency::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn multiplication_overflow_is_an_error_not_a_wrap() {
        let eur = Currency::new("EUR").unwrap();
        assert_eq!(Money::new(250, eur).checked_mul(4).unwrap().minor, 1000);
        assert!(Money::new(i64::MAX / 2, eur).checked_mul(3).is_err());
    }
}
