//! Why a handshake was refused, in the few classes an operator acts on.

use std::fmt;

use serde::Serialize;

/// Why a TLS handshake with a peer failed, classified from the TLS alert either side sent.
///
/// The classes are what an operator does next: `unknown_ca` — the peer belongs to another
/// cluster or its CA is not in `ca.pem`; `bad_name` — the certificate does not name the
/// expected node, or names none; `no_client_cert` — the peer dialled without a client
/// certificate; `expired` — outside its validity period (check clocks); `bad_usage` — the
/// certificate lacks serverAuth or clientAuth; `revoked` — a revocation list the refusing
/// side holds (`--crl`) lists the certificate; `other` — anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The certificate does not chain to a trusted CA (alert `unknown_ca`).
    UnknownCa,
    /// The certificate does not name the expected node or names no node (alert
    /// `bad_certificate`, which also covers a malformed certificate).
    BadName,
    /// The client presented no certificate (alert `certificate_required`).
    NoClientCert,
    /// The certificate is expired or not yet valid (alert `certificate_expired`).
    Expired,
    /// The certificate lacks a needed extended key usage (alert `unsupported_certificate`).
    BadUsage,
    /// A revocation list lists the certificate (alert `certificate_revoked`).
    Revoked,
    /// Any other failure: another alert, a failed admission round trip, a protocol error.
    Other,
}

impl Refusal {
    /// Every class, in a fixed order (for counters and reports).
    pub const ALL: [Refusal; 7] = [
        Refusal::UnknownCa,
        Refusal::BadName,
        Refusal::NoClientCert,
        Refusal::Expired,
        Refusal::BadUsage,
        Refusal::Revoked,
        Refusal::Other,
    ];

    /// The class of a TLS alert description (RFC 8446 section 6).
    pub fn from_alert(alert: u8) -> Refusal {
        match alert {
            48 => Refusal::UnknownCa,
            42 => Refusal::BadName,
            116 => Refusal::NoClientCert,
            45 => Refusal::Expired,
            43 => Refusal::BadUsage,
            44 => Refusal::Revoked,
            _ => Refusal::Other,
        }
    }

    /// Lowercase snake-case name, as logs and stats print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownCa => "unknown_ca",
            Refusal::BadName => "bad_name",
            Refusal::NoClientCert => "no_client_cert",
            Refusal::Expired => "expired",
            Refusal::BadUsage => "bad_usage",
            Refusal::Revoked => "revoked",
            Refusal::Other => "other",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use rustls::{AlertDescription, CertificateError};

    use super::*;

    fn class_of(e: CertificateError) -> Refusal {
        Refusal::from_alert(u8::from(AlertDescription::from(e)))
    }

    #[test]
    fn rustls_certificate_errors_map_to_classes() {
        assert_eq!(
            class_of(CertificateError::UnknownIssuer),
            Refusal::UnknownCa
        );
        assert_eq!(
            class_of(CertificateError::NotValidForName),
            Refusal::BadName
        );
        assert_eq!(class_of(CertificateError::Expired), Refusal::Expired);
        assert_eq!(class_of(CertificateError::NotValidYet), Refusal::Expired);
        assert_eq!(
            class_of(CertificateError::InvalidPurpose),
            Refusal::BadUsage
        );
        assert_eq!(
            Refusal::from_alert(u8::from(AlertDescription::CertificateRequired)),
            Refusal::NoClientCert
        );
        assert_eq!(Refusal::from_alert(0), Refusal::Other);
    }
}
