//! Optional API keys: one for reading (search, get, metrics), one for writing (upserts, deletes;
//! it also grants reading). Sent as `Authorization: Bearer KEY` or `X-Api-Key: KEY`.

use super::error::ApiError;
use axum::http::{HeaderMap, StatusCode, header};

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The configured keys.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    pub read: Option<String>,
    pub write: Option<String>,
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ").map(str::trim);
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Compares without an early exit (the time does not depend on where keys differ).
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Keys {
    /// Checks a request's credentials for `access`.
    pub fn check(&self, headers: &HeaderMap, access: Access) -> Result<(), ApiError> {
        let accepted: Vec<&String> = match access {
            Access::Read if self.read.is_none() && self.write.is_none() => return Ok(()),
            Access::Read => self.read.iter().chain(self.write.iter()).collect(),
            Access::Write => match &self.write {
                None => return Ok(()),
                Some(key) => vec![key],
            },
        };
        // With only a write key configured, reading is open.
        if access == Access::Read && self.read.is_none() {
            return Ok(());
        }
        let Some(key) = presented(headers) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "this server requires an API key: send Authorization: Bearer <key> or X-Api-Key: <key>",
            ));
        };
        if accepted.iter().any(|k| same(k, key)) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "invalid_api_key", "the API key is not valid for this operation"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(header::AUTHORIZATION, format!("Bearer {v}").parse().unwrap());
        }
        h
    }

    #[test]
    fn read_and_write_keys() {
        let open = Keys::default();
        assert!(open.check(&headers(None), Access::Write).is_ok());
        let keys = Keys { read: Some("r".into()), write: Some("w".into()) };
        assert_eq!(keys.check(&headers(None), Access::Read).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert!(keys.check(&headers(Some("r")), Access::Read).is_ok());
        assert!(keys.check(&headers(Some("w")), Access::Read).is_ok(), "the write key also reads");
        assert_eq!(keys.check(&headers(Some("r")), Access::Write).unwrap_err().status, StatusCode::FORBIDDEN);
        assert!(keys.check(&headers(Some("w")), Access::Write).is_ok());
        let mut x = HeaderMap::new();
        x.insert("x-api-key", "w".parse().unwrap());
        assert!(keys.check(&x, Access::Write).is_ok());
        let write_only = Keys { read: None, write: Some("w".into()) };
        assert!(write_only.check(&headers(None), Access::Read).is_ok());
        assert!(write_only.check(&headers(None), Access::Write).is_err());
    }
}
