//! Challenge responses the listeners serve while an order is being validated.
//!
//! * HTTP-01: `GET /.well-known/acme-challenge/{token}` on the plain HTTP
//!   listener answers the key authorization (RFC 8555 §8.3).
//! * TLS-ALPN-01: a handshake offering only `acme-tls/1` for a name gets a
//!   self-signed certificate carrying the critical `acmeIdentifier`
//!   extension with SHA-256 of the key authorization (RFC 8737).
//!
//! Entries live only for the duration of one order.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Pending challenge responses, shared by the order tasks and the listeners.
#[derive(Default)]
pub struct Challenges {
    http: RwLock<HashMap<String, HttpResponse>>,
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// The fleet's store under `[acme.shared]` (see `acme/shared/challenges.rs`).
    pub(crate) shared: arc_swap::ArcSwapOption<super::shared::challenges::SharedChallenges>,
}

struct HttpResponse {
    name: String,
    key_authorization: String,
}

/// Why a TLS-ALPN-01 certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the TLS-ALPN-01 certificate: {0}")]
pub(crate) struct ChallengeCertError(String);

impl Challenges {
    /// Publishes an HTTP-01 response for `token`, valid for requests to `name`.
    pub(crate) fn add_http(&self, name: &str, token: &str, key_authorization: &str) {
        if let Ok(mut map) = self.http.write() {
            map.insert(
                token.to_string(),
                HttpResponse {
                    name: name.to_string(),
                    key_authorization: key_authorization.to_string(),
                },
            );
        }
    }

    /// Withdraws an HTTP-01 response.
    pub(crate) fn remove_http(&self, token: &str) {
        if let Ok(mut map) = self.http.write() {
            map.remove(token);
        }
    }

    /// The key authorization for `token` when the request's host (port and
    /// case ignored) is the name it was issued for.
    pub fn http_response(&self, host: &str, token: &str) -> Option<String> {
        let map = self.http.read().ok()?;
        let entry = map.get(token)?;
        entry
            .name
            .eq_ignore_ascii_case(host)
            .then(|| entry.key_authorization.clone())
    }

    /// Publishes a TLS-ALPN-01 certificate for `name`.
    pub(crate) fn add_alpn(
        &self,
        name: &str,
        key_authorization_digest: &[u8],
    ) -> Result<(), ChallengeCertError> {
        let cert = alpn_certificate(name, key_authorization_digest)?;
        if let Ok(mut map) = self.alpn.write() {
            map.insert(name.to_ascii_lowercase(), Arc::new(cert));
        }
        Ok(())
    }

    /// Withdraws the TLS-ALPN-01 certificate for `name`.
    pub(crate) fn remove_alpn(&self, name: &str) {
        if let Ok(mut map) = self.alpn.write() {
            map.remove(&name.to_ascii_lowercase());
        }
    }

    /// The TLS-ALPN-01 certificate for `name`, if an order is validating it.
    pub(crate) fn alpn_certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let map = self.alpn.read().ok()?;
        if map.is_empty() {
            return None;
        }
        map.get(&name.trim_end_matches('.').to_ascii_lowercase())
            .cloned()
    }
}

/// Builds the RFC 8737 validation certificate for `name`.
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, ChallengeCertError> {
    if digest.len() != 32 {
        return Err(ChallengeCertError(format!(
            "key authorization digest must be 32 bytes, got {}",
            digest.len()
        )));
    }
    let fail = |e: rcgen::Error| ChallengeCertError(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key).map_err(fail)?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| ChallengeCertError(e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| ChallengeCertError(e.to_string()))?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn http_responses_are_bound_to_their_name() {
        let c = Challenges::default();
        c.add_http("a.example.com", "tok", "tok.thumb");
        assert_eq!(
            c.http_response("A.example.com", "tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(c.http_response("b.example.com", "tok"), None);
        assert_eq!(c.http_response("a.example.com", "other"), None);
        c.remove_http("tok");
        assert_eq!(c.http_response("a.example.com", "tok"), None);
    }

    #[test]
    fn alpn_certificate_carries_the_critical_acme_identifier() {
        let c = Challenges::default();
        c.add_alpn("a.example.com", &[9u8; 32]).unwrap();
        let cert = c.alpn_certificate("A.EXAMPLE.com.").unwrap();
        let (_, parsed) = X509Certificate::from_der(cert.cert[0].as_ref()).unwrap();
        let ext = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        // DER OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &[9u8; 32]);
        c.remove_alpn("a.example.com");
        assert!(c.alpn_certificate("a.example.com").is_none());
        assert!(c.add_alpn("a.example.com", &[1, 2]).is_err());
    }
}
