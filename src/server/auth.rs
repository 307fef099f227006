//! The optional API key: `Authorization: Bearer KEY` on every route but `/health`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::App;

/// Rejects requests without the server's key with 401 (OpenAI's shape).
pub async fn require_key(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(key) = &app.api_key {
        // Load balancers probe /health without credentials, as with llama-server.
        if req.uri().path() != "/health" {
            let given = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
                return ApiError::unauthorized().into_response();
            }
        }
    }
    next.run(req).await
}

/// Compares without stopping at the first differing byte, so the time taken does not
/// tell an attacker how much of a guessed key was right. (The length can leak; a key's
/// length is not its secret.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
        // black_box keeps the optimiser from turning the fold into an early exit.
        diff |= std::hint::black_box(x as usize);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"sk-abc", b"sk-abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"sk-abc", b"sk-abd"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-ab"));
        assert!(!constant_time_eq(b"sk-ab", b"sk-abc"));
        assert!(!constant_time_eq(b"", b"x"));
        // A prefix padded with NULs must not equal the shorter key.
        assert!(!constant_time_eq(b"k\0", b"k"));
    }
}
