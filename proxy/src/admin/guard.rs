//! The checks every admin request passes before reaching an endpoint.
//!
//! In order: `Host` and browser headers ([`edge_config::host_guard`]: the
//! allowed hosts, no `Origin`, no cross-site `Sec-Fetch-Site`); the bearer
//! token when `admin.token_file` is set; the endpoint's method; and, for
//! state-changing endpoints without a token configured, the header
//! `X-Edge-Admin: 1`. A web page cannot send that header (or
//! `Authorization`) to another origin without a CORS preflight, which the
//! admin listener never answers. The probes `/healthz` and `/readyz` carry
//! no data and change nothing: they only need the right method, so load
//! balancers and orchestrators may probe them under any `Host`.

use edge_config::host_guard::{self, AllowedHosts, Refusal};
use http::StatusCode;
use pingora_http::RequestHeader;

use super::reply::text;
use super::routes::Endpoint;
use crate::runtime::Runtime;

/// The header that marks a state-changing request as sent by a tool.
const ADMIN_HEADER: &str = "x-edge-admin";

/// Why a request was refused before reaching an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Foreign or missing `Host`, or sent by a web page.
    Host(Refusal),
    /// `admin.token_file` is set and the bearer token is missing or wrong.
    Token,
    /// The endpoint takes another method (`GET` or `POST`).
    Method(&'static str),
    /// A state-changing request without `X-Edge-Admin: 1` or a token.
    AdminHeader,
}

impl Refused {
    /// Label of `edge_admin_refused_total{reason}`.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refused::Host(r) => r.as_label(),
            Refused::Token => "token",
            Refused::Method(_) => "method",
            Refused::AdminHeader => "admin_header",
        }
    }

    /// The `endpoint` label of `edge_admin_requests_total`.
    pub(super) fn endpoint_label(self) -> &'static str {
        match self {
            Refused::Host(_) | Refused::AdminHeader => "refused",
            Refused::Token => "unauthorized",
            Refused::Method(_) => "method_not_allowed",
        }
    }

    /// The answer.
    pub(super) fn response(self) -> http::Response<Vec<u8>> {
        match self {
            Refused::Host(r) => text(r.status(), &r.to_string()),
            Refused::Token => text(StatusCode::UNAUTHORIZED, "admin token required"),
            Refused::Method(m) => text(StatusCode::METHOD_NOT_ALLOWED, &format!("use {m}")),
            Refused::AdminHeader => text(
                StatusCode::FORBIDDEN,
                "state-changing admin requests need the header X-Edge-Admin: 1 \
                 (or Authorization: Bearer <token>)",
            ),
        }
    }
}

/// Runs the checks; `Ok(None)` for a path that is no endpoint (404).
pub(super) fn check(req: &RequestHeader, rt: &Runtime) -> Result<Option<Endpoint>, Refused> {
    let endpoint = Endpoint::from_path(req.uri.path());
    if let Some(e) = endpoint
        && e.is_probe()
    {
        return method(req, e).map(|()| endpoint);
    }
    let admin = &rt.loaded.config.admin;
    let allowed = AllowedHosts::new(&admin.allowed_hosts, Some(admin.listen));
    host_guard::check(&req.uri, &req.headers, &allowed).map_err(Refused::Host)?;
    if let Some(expected) = rt.admin_token.as_deref()
        && !token_matches(req, expected)
    {
        return Err(Refused::Token);
    }
    let Some(e) = endpoint else {
        return Ok(None);
    };
    method(req, e)?;
    if e.changes_state() && rt.admin_token.is_none() && !has_admin_header(req) {
        return Err(Refused::AdminHeader);
    }
    Ok(endpoint)
}

fn method(req: &RequestHeader, e: Endpoint) -> Result<(), Refused> {
    if req.method.as_str() == e.method() {
        Ok(())
    } else {
        Err(Refused::Method(e.method()))
    }
}

fn has_admin_header(req: &RequestHeader) -> bool {
    let mut values = req.headers.get_all(ADMIN_HEADER).iter();
    matches!((values.next(), values.next()), (Some(v), None) if v.as_bytes() == b"1")
}

fn token_matches(req: &RequestHeader, expected: &[u8]) -> bool {
    let presented = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(presented.as_bytes(), expected)
}

/// Compares secrets in constant time (digests first, so the length leaks nothing either).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let da = ring::digest::digest(&ring::digest::SHA256, a);
    let db = ring::digest::digest(&ring::digest::SHA256, b);
    da.as_ref().ct_eq(db.as_ref()).into()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    use crate::test_config::MINIMAL as BASE;

    fn runtime(dir: &Path, admin: &str) -> Runtime {
        let path = dir.join("edge.toml");
        let text = format!("data_dir = {:?}\n{BASE}{admin}", dir.display());
        let loaded = edge_config::parse_str(&text, &path).unwrap();
        Runtime::build(&loaded, None).unwrap()
    }

    fn request(method: &str, path: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, path.as_bytes(), None).unwrap();
        for (name, value) in headers {
            req.insert_header(*name, *value).unwrap();
        }
        req
    }

    const HOST: (&str, &str) = ("host", "127.0.0.1:9901");

    #[test]
    fn probes_need_only_their_method_and_other_endpoints_a_local_host() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path(), "");
        let foreign = ("host", "evil.example");
        assert_eq!(
            check(&request("GET", "/readyz", &[foreign]), &rt),
            Ok(Some(Endpoint::Readyz))
        );
        assert_eq!(
            check(&request("POST", "/healthz", &[foreign]), &rt),
            Err(Refused::Method("GET"))
        );
        assert_eq!(
            check(&request("GET", "/metrics", &[HOST]), &rt),
            Ok(Some(Endpoint::Metrics))
        );
        assert!(matches!(
            check(&request("GET", "/metrics", &[foreign]), &rt),
            Err(Refused::Host(_))
        ));
        assert_eq!(check(&request("GET", "/nothing", &[HOST]), &rt), Ok(None));
    }

    #[test]
    fn state_changes_need_the_admin_header_or_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path(), "");
        assert_eq!(
            check(&request("POST", "/admin/reload", &[HOST]), &rt),
            Err(Refused::AdminHeader)
        );
        assert_eq!(
            check(
                &request("POST", "/admin/reload", &[HOST, ("x-edge-admin", "1")]),
                &rt
            ),
            Ok(Some(Endpoint::Reload))
        );

        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token-0123456789").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let rt = runtime(
            dir.path(),
            &format!("[admin]\ntoken_file = {:?}\n", token.display()),
        );
        // With a token configured, the header alone is not enough.
        assert_eq!(
            check(
                &request("POST", "/admin/reload", &[HOST, ("x-edge-admin", "1")]),
                &rt
            ),
            Err(Refused::Token)
        );
        assert_eq!(
            check(
                &request(
                    "GET",
                    "/metrics",
                    &[HOST, ("authorization", "Bearer wrong-token")]
                ),
                &rt
            ),
            Err(Refused::Token)
        );
        assert_eq!(
            check(
                &request(
                    "POST",
                    "/admin/reload",
                    &[HOST, ("authorization", "Bearer s3cret-token-0123456789")]
                ),
                &rt
            ),
            Ok(Some(Endpoint::Reload))
        );
        assert_eq!(Refused::Token.reason(), "token");
        assert_eq!(
            Refused::AdminHeader.response().status(),
            StatusCode::FORBIDDEN
        );
    }
}
