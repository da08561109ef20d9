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

/// The key a request presents: `Authorization: Bearer KEY` (the scheme in any case), else
/// `X-Api-Key: KEY` (an `Authorization` header of another scheme, added by a proxy, is not a
/// key and does not hide one).
fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, key) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
    });
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)).filter(|k| !k.is_empty())
}

/// Compares without an early exit (the time does not depend on where keys differ).
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Keys {
    /// Refuses keys that would protect nothing (an empty key matches an empty header).
    pub fn validate(&self) -> Result<(), String> {
        for (name, key) in [("read", &self.read), ("write", &self.write)] {
            if key.as_ref().is_some_and(|k| k.trim().is_empty()) {
                return Err(format!("the {name} key is empty: give a key, or leave it unset to turn it off"));
            }
        }
        Ok(())
    }

    /// Checks a request's credentials for `access`. The rule:
    ///
    /// - no key configured: everything is open;
    /// - reading needs the read key or the write key, except with only a write key configured,
    ///   where reading is open;
    /// - writing needs the write key whenever any key is configured: a read key never writes,
    ///   and with only a read key configured writes are refused (configure a write key to
    ///   allow them).
    pub fn check(&self, headers: &HeaderMap, access: Access) -> Result<(), ApiError> {
        let accepted: Vec<&String> = match (access, &self.read, &self.write) {
            (_, None, None) => return Ok(()),
            (Access::Read, None, Some(_)) => return Ok(()),
            (Access::Read, read, write) => read.iter().chain(write.iter()).collect(),
            (Access::Write, _, Some(write)) => vec![write],
            (Access::Write, Some(_), None) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "writes_disabled",
                    "this server has a read key and no write key, so it takes no writes: start it with --write-key \
                     (or BARISTA_WRITE_KEY) to allow them",
                ));
            }
        };
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

    /// Every combination of configured keys × presented key × access.
    #[test]
    fn every_combination_of_keys() {
        use StatusCode as S;
        let ok = S::OK;
        let configs = [(None, None), (Some("r"), None), (None, Some("w")), (Some("r"), Some("w"))];
        // (configured read, configured write, presented, access) → status
        let expected = |read: Option<&str>, write: Option<&str>, presented: Option<&str>, access: Access| -> S {
            match (read, write, presented, access) {
                (None, None, _, _) => ok,
                (_, None, _, Access::Write) => S::FORBIDDEN, // a read key alone: no writes at all
                (None, Some(_), _, Access::Read) => ok,
                (_, _, None, _) => S::UNAUTHORIZED,
                (_, Some(w), Some(p), Access::Write) => {
                    if p == w {
                        ok
                    } else {
                        S::FORBIDDEN
                    }
                }
                (r, w, Some(p), Access::Read) => {
                    if Some(p) == r || Some(p) == w {
                        ok
                    } else {
                        S::FORBIDDEN
                    }
                }
            }
        };
        for (read, write) in configs {
            let keys = Keys { read: read.map(str::to_string), write: write.map(str::to_string) };
            for presented in [None, Some("r"), Some("w"), Some("x")] {
                for access in [Access::Read, Access::Write] {
                    let got = keys.check(&headers(presented), access).map_or_else(|e| e.status, |()| ok);
                    assert_eq!(
                        got,
                        expected(read, write, presented, access),
                        "{read:?} {write:?} {presented:?} {access:?}"
                    );
                }
            }
        }
        let read_only = Keys { read: Some("r".into()), write: None };
        let e = read_only.check(&headers(Some("r")), Access::Write).unwrap_err();
        assert_eq!(e.code, "writes_disabled");
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
        // A proxy's Basic credentials do not hide the X-Api-Key; the scheme's case is free.
        x.insert(header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert!(keys.check(&x, Access::Write).is_ok());
        let mut lower = HeaderMap::new();
        lower.insert(header::AUTHORIZATION, "bearer w".parse().unwrap());
        assert!(keys.check(&lower, Access::Write).is_ok());
        let mut empty = HeaderMap::new();
        empty.insert("x-api-key", "".parse().unwrap());
        assert_eq!(keys.check(&empty, Access::Read).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert!(Keys { read: Some(" ".into()), write: None }.validate().is_err());
        assert!(keys.validate().is_ok());
        let write_only = Keys { read: None, write: Some("w".into()) };
        assert!(write_only.check(&headers(None), Access::Read).is_ok());
        assert!(write_only.check(&headers(None), Access::Write).is_err());
    }
}
