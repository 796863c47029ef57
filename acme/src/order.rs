//! One certificate order against the CA, answering the challenge ourselves.
//!
//! [`obtain`] tries the configured challenge types in order. A failed
//! authorization is final for its order (RFC 8555 §7.1.6), so each type gets
//! a fresh order. The private key is generated here and never leaves the
//! process except sealed by the store.

use std::path::Path;
use std::time::Duration;

use edge_config::{AcmeKeyType, ChallengeKind};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use super::challenge::Challenges;

/// A certificate obtained from the CA.
pub(crate) struct Issued {
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// PKCS#8 DER private key of the leaf.
    pub key_pkcs8_der: Vec<u8>,
    /// The challenge type that validated the name (`None` when the CA reused
    /// a still-valid authorization).
    pub challenge: Option<ChallengeKind>,
}

/// Why an order failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OrderError {
    /// The CA tried the challenge and it failed (wrong DNS, unreachable edge…).
    #[error("{challenge} validation failed: {detail}")]
    Validation {
        /// Challenge type tried.
        challenge: ChallengeKind,
        /// The CA's explanation.
        detail: String,
    },
    /// The CA did not offer this challenge type for the name.
    #[error("the CA offered no {0} challenge")]
    NotOffered(ChallengeKind),
    /// Network, protocol or CA-side errors (retryable).
    #[error("{challenge}: {detail}")]
    Ca {
        /// Challenge type being tried.
        challenge: ChallengeKind,
        /// What happened.
        detail: String,
    },
    /// The attempt ran past `acme.order_timeout_seconds`.
    #[error("{0} attempt timed out")]
    Timeout(ChallengeKind),
}

impl OrderError {
    /// Metric label for `edge_acme_orders_total{outcome}`.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            OrderError::Validation { .. } => "invalid",
            OrderError::NotOffered(_) => "not_offered",
            OrderError::Ca { .. } => "error",
            OrderError::Timeout(_) => "timeout",
        }
    }

    /// The challenge type the failed attempt used.
    pub(crate) fn challenge(&self) -> ChallengeKind {
        match self {
            OrderError::Validation { challenge, .. } | OrderError::Ca { challenge, .. } => {
                *challenge
            }
            OrderError::NotOffered(c) | OrderError::Timeout(c) => *c,
        }
    }
}

/// Restores the account from stored credentials or registers a new one.
/// Returns the account and, when it was just created, the credentials to store.
pub(crate) async fn account(
    directory_url: &str,
    ca_file: Option<&Path>,
    contact: &[String],
    stored: Option<&[u8]>,
) -> Result<(Account, Option<Vec<u8>>), String> {
    let builder = || match ca_file {
        Some(path) => Account::builder_with_root(path)
            .map_err(|e| format!("cannot trust {}: {e}", path.display())),
        None => Account::builder().map_err(|e| e.to_string()),
    };
    if let Some(stored) = stored {
        let creds: AccountCredentials = serde_json::from_slice(stored)
            .map_err(|e| format!("stored account credentials do not parse: {e}"))?;
        let account = builder()?
            .from_credentials(creds)
            .await
            .map_err(|e| format!("restoring the ACME account: {e}"))?;
        return Ok((account, None));
    }
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory_url.to_string(),
            None,
        )
        .await
        .map_err(|e| format!("registering an ACME account at {directory_url}: {e}"))?;
    let json = serde_json::to_vec(&creds).map_err(|e| e.to_string())?;
    Ok((account, Some(json)))
}

/// Orders a certificate for `name`, trying `kinds` in order. On failure,
/// returns one error per type tried.
pub(crate) async fn obtain(
    account: &Account,
    name: &str,
    kinds: &[ChallengeKind],
    key_type: AcmeKeyType,
    challenges: &Challenges,
    timeout: Duration,
) -> Result<Issued, Vec<OrderError>> {
    let mut errors = Vec::new();
    for &kind in kinds {
        let attempt =
            tokio::time::timeout(timeout, attempt(account, name, kind, key_type, challenges))
                .await
                .unwrap_or(Err(OrderError::Timeout(kind)));
        // Whatever happened, the challenge responses are withdrawn.
        challenges.remove_alpn(name);
        if kind == ChallengeKind::TlsAlpn01 {
            challenges.unpublish(Vec::new(), Some(name.to_string()));
        }
        match attempt {
            Ok(issued) => return Ok(issued),
            Err(e) => errors.push(e),
        }
    }
    Err(errors)
}

async fn attempt(
    account: &Account,
    name: &str,
    kind: ChallengeKind,
    key_type: AcmeKeyType,
    challenges: &Challenges,
) -> Result<Issued, OrderError> {
    let ca = |e: instant_acme::Error| OrderError::Ca {
        challenge: kind,
        detail: e.to_string(),
    };
    let identifiers = [Identifier::Dns(name.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(ca)?;
    let mut tokens = TokenGuard {
        challenges,
        tokens: Vec::new(),
    };
    let mut challenged = false;
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(ca)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(OrderError::Ca {
                        challenge: kind,
                        detail: format!("authorization is {other:?}"),
                    });
                }
            }
            let mut challenge = authz
                .challenge(challenge_type(kind))
                .ok_or(OrderError::NotOffered(kind))?;
            let key_authorization = challenge.key_authorization();
            match kind {
                ChallengeKind::Http01 => {
                    challenges.add_http(name, &challenge.token, key_authorization.as_str());
                    tokens.tokens.push(challenge.token.clone());
                    challenges
                        .publish_http(name, &challenge.token, key_authorization.as_str())
                        .await;
                }
                ChallengeKind::TlsAlpn01 => {
                    let digest = key_authorization.digest();
                    challenges
                        .add_alpn(name, digest.as_ref())
                        .map_err(|e| OrderError::Ca {
                            challenge: kind,
                            detail: e.to_string(),
                        })?;
                    challenges.publish_alpn(name, digest.as_ref()).await;
                }
            }
            challenge.set_ready().await.map_err(ca)?;
            challenged = true;
        }
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(Duration::from_secs(3600));
    let status = match order.poll_ready(&retry).await {
        Ok(status) => status,
        // The order's own error document: a validation verdict, unless the
        // CA says it is rate limiting or failing itself.
        Err(instant_acme::Error::Api(problem)) if !is_ca_side(&problem) => {
            return Err(OrderError::Validation {
                challenge: kind,
                detail: problem.to_string(),
            });
        }
        Err(e) => return Err(ca(e)),
    };
    if status != OrderStatus::Ready {
        return Err(OrderError::Validation {
            challenge: kind,
            detail: failure_detail(&mut order, kind).await,
        });
    }
    drop(tokens);

    let (key, params) = key_and_csr_params(name, key_type).map_err(|detail| OrderError::Ca {
        challenge: kind,
        detail,
    })?;
    let csr = params.serialize_request(&key).map_err(|e| OrderError::Ca {
        challenge: kind,
        detail: format!("building the CSR: {e}"),
    })?;
    order.finalize_csr(csr.der()).await.map_err(ca)?;
    let chain_pem = order.poll_certificate(&retry).await.map_err(ca)?;
    Ok(Issued {
        chain_pem,
        key_pkcs8_der: key.serialize_der(),
        challenge: challenged.then_some(kind),
    })
}

/// The CA's reason for an invalid order, from its failed challenge.
async fn failure_detail(order: &mut instant_acme::Order, kind: ChallengeKind) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if authz.refresh().await.is_err() {
            continue;
        }
        for challenge in &authz.challenges {
            if let Some(error) = &challenge.error {
                return error.to_string();
            }
        }
    }
    format!("the order became invalid after the {kind} challenge")
}

/// Problems that say nothing about the name: retry later, not "invalid".
fn is_ca_side(problem: &instant_acme::Problem) -> bool {
    let kind = problem.r#type.as_deref().unwrap_or("");
    kind.ends_with(":rateLimited")
        || kind.ends_with(":serverInternal")
        || kind.ends_with(":badNonce")
        || problem.status.is_some_and(|s| s == 429 || s >= 500)
}

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

fn key_and_csr_params(
    name: &str,
    key_type: AcmeKeyType,
) -> Result<(rcgen::KeyPair, rcgen::CertificateParams), String> {
    let alg = match key_type {
        AcmeKeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        AcmeKeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    let key = rcgen::KeyPair::generate_for(alg).map_err(|e| format!("generating the key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
        .map_err(|e| format!("CSR parameters for {name}: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    Ok((key, params))
}

/// Withdraws published HTTP-01 tokens when the attempt ends, however it ends.
struct TokenGuard<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
}

impl Drop for TokenGuard<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove_http(token);
        }
        self.challenges
            .unpublish(std::mem::take(&mut self.tokens), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_names_the_domain_only() {
        let (key, params) = key_and_csr_params("a.example.com", AcmeKeyType::EcdsaP384).unwrap();
        let csr = params.serialize_request(&key).unwrap();
        assert!(!csr.der().is_empty());
        assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P384_SHA384);
    }
}
