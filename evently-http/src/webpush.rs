//! What the router needs of web push to check a browser's subscription: lenient base64url decoding
//! and the loopback test for development endpoints. Delivery itself is
//! `notify::PushNotifier` (feature `server`).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// base64url that takes the input with or without `=` padding (browsers send it without).
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes base64url with or without padding.
pub fn decode_base64url(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_LENIENT.decode(s)
}

/// Whether `url` names a loopback host (`localhost`, `127.0.0.0/8`, `[::1]`).
pub fn is_loopback(url: &url::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for (u, yes) in [
            ("http://localhost:8080/x", true),
            ("http://LOCALHOST/x", true),
            ("http://127.0.0.1/x", true),
            ("http://127.9.9.9/x", true),
            ("http://[::1]:99/x", true),
            ("http://10.0.0.1/x", false),
            ("https://push.example/x", false),
            ("http://localhost.example/x", false),
        ] {
            assert_eq!(is_loopback(&url::Url::parse(u).unwrap()), yes, "{u}");
        }
    }

    #[test]
    fn base64url_with_or_without_padding() {
        assert_eq!(decode_base64url("AQI").unwrap(), vec![1, 2]);
        assert_eq!(decode_base64url("AQI=").unwrap(), vec![1, 2]);
        assert_eq!(decode_base64url("_-8").unwrap(), vec![0xff, 0xef]);
        assert!(decode_base64url("AQ+").is_err());
    }
}
