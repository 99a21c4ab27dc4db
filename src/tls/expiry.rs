//! When a certificate expires, read from its DER for the `cairn_tls_cert_not_after_seconds`
//! gauge. notAfter is the one X.509 field Cairn needs that rustls does not expose, so it is a
//! short walk over the DER here rather than an X.509 crate.

use std::time::UNIX_EPOCH;

const SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT`: the version field, absent from v1 certificates.
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// notAfter of a DER certificate, in seconds since the Unix epoch. `None` when it cannot be
/// read: the gauge is then left out, and whether the certificate is usable is for rustls to say.
pub fn not_after(cert: &[u8]) -> Option<u64> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [version], serialNumber, signature,
    // issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... }
    let (certificate, _) = element(cert, SEQUENCE)?;
    let (mut tbs, _) = element(certificate, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = skip(tbs)?;
    }
    for _serial_signature_issuer in 0..3 {
        tbs = skip(tbs)?;
    }
    let (validity, _) = element(tbs, SEQUENCE)?;
    let after = skip(validity)?;
    let tag = *after.first()?;
    let (time, _) = element(after, tag)?;
    let time = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    // RFC 5280 allows only these two forms in certificates: UTCTime for 1950–2049, and
    // GeneralizedTime from 2050 on, both in UTC to the second.
    let (year, rest) = match tag {
        UTC_TIME => {
            let yy: u32 = time.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, time.get(2..)?)
        }
        GENERALIZED_TIME => (time.get(..4)?.parse().ok()?, time.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (mo, d, h, mi, s) = (&rest[0..2], &rest[2..4], &rest[4..6], &rest[6..8], &rest[8..10]);
    let at = humantime::parse_rfc3339(&format!("{year:04}-{mo}-{d}T{h}:{mi}:{s}Z")).ok()?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// Splits the element at the start of `der`, which must carry `tag`, into its contents and
/// what follows it.
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = der.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len, rest) = rest.split_at(n);
        (len.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b)), rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// What follows the element at the start of `der`, whatever its tag.
fn skip(der: &[u8]) -> Option<&[u8]> {
    element(der, *der.first()?).map(|(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_expiring(not_after: Option<(i32, u8, u8)>) -> (Vec<u8>, i64) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        if let Some((y, m, d)) = not_after {
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let expected = params.not_after.unix_timestamp();
        (params.self_signed(&key).unwrap().der().to_vec(), expected)
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // 2031 is written as UTCTime, 2051 and rcgen's default (year 4096) as GeneralizedTime.
        let (der, _) = cert_expiring(Some((2031, 5, 17)));
        assert_eq!(not_after(&der), Some(1_936_742_400));
        for when in [Some((2051, 1, 2)), None] {
            let (der, expected) = cert_expiring(when);
            assert_eq!(not_after(&der), Some(expected as u64), "{when:?}");
        }
    }

    #[test]
    fn anything_else_is_none_not_a_panic() {
        let (der, _) = cert_expiring(None);
        for cut in 0..der.len() {
            assert_eq!(not_after(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(not_after(&[SEQUENCE, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
