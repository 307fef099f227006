//! Reading a JSON request body under the size limit, with errors in OpenAI's shape
//! (axum's own extractors answer in plain text).

use axum::body::Body;
use serde::de::DeserializeOwned;
use tokio_stream::StreamExt;

use super::error::ApiError;

/// Reads at most `limit` bytes (413 beyond) and parses them as `T` (400 with serde's
/// message, which names the line and column, otherwise).
pub async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid(format!("cannot read the request body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::invalid(format!("invalid request: {e}")),
            Category::Eof if bytes.is_empty() => {
                ApiError::invalid("the request body is empty: send a JSON object")
            }
            _ => ApiError::invalid(format!("the request body is not valid JSON: {e}")),
        }
    })
}
