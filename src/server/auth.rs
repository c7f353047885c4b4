//! API-key check for the `/v1` routes: with `--api-key` set, a request must carry
//! `Authorization: Bearer <key>`, answered otherwise with OpenAI's 401 shape so clients show
//! their usual "invalid API key" message.

use axum::http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq as _;

use super::{ApiError, AppState};

/// Constant-time comparison (through `subtle`), so the key cannot be guessed byte by byte from
/// timings; only the length may show.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// Refuses the request unless the server has no key or the request carries it.
pub(super) fn check_auth(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.options.api_key else {
        return Ok(());
    };
    let unauthorized = |message: String| ApiError {
        status: StatusCode::UNAUTHORIZED,
        message,
        kind: "invalid_request_error",
        param: None,
        code: Some("invalid_api_key"),
        retry_after: None,
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    match given {
        None => Err(unauthorized(
            "You didn't provide an API key. Send it in an Authorization header: `Authorization: Bearer YOUR_KEY`.".into(),
        )),
        Some(v) => {
            let token = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .map(str::trim)
                .unwrap_or("");
            if same_secret(token.as_bytes(), key.as_bytes()) {
                Ok(())
            } else {
                Err(unauthorized("Incorrect API key provided.".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
        assert!(same_secret(b"", b""));
    }
}
