//! `POST /v1/embeddings`: each input's final hidden state (after output_norm), mean-pooled
//! over its tokens and scaled to unit length, as llama-server computes it with
//! `--pooling mean`. Computed on a slot (it needs a KV cache), in `float` or `base64`
//! (little-endian f32, what openai-python asks for by default).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::body::read_json;
use super::error::ApiError;
use super::request::EmbeddingRequest;
use super::slots::{Event, Work};
use super::App;

/// Most inputs in one request (OpenAI allows 2048).
const MAX_INPUTS: usize = 2048;

pub async fn embeddings(State(app): State<Arc<App>>, body: Body) -> Result<Json<Value>, ApiError> {
    let req: EmbeddingRequest = read_json(body, app.body_limit).await?;
    app.check_model(req.model.as_deref())?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("encoding_format '{other}' is not one of 'float', 'base64'"),
            ))
        }
    };
    let texts = req.input.into_vec();
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid_param(
            "input",
            format!(
                "input must hold 1 to {MAX_INPUTS} texts, not {}",
                texts.len()
            ),
        ));
    }
    if let Some(i) = texts.iter().position(|t| t.is_empty()) {
        return Err(ApiError::invalid_param(
            "input",
            format!("input[{i}] is empty"),
        ));
    }
    let model = Arc::clone(&app.model);
    let inputs = tokio::task::spawn_blocking(move || {
        let tok = model.tokenizer()?;
        Ok::<_, crate::Error>(
            texts
                .iter()
                .map(|t| tok.encode(t, true, false))
                .collect::<Vec<_>>(),
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))??;
    for ids in &inputs {
        app.check_context(ids.len(), "input")?;
    }
    let key = inputs.first().cloned().unwrap_or_default();
    let (mut events, _cancel) = app.slots.submit(Work::Embed { inputs }, &key).await?;
    match events.recv().await {
        Some(Event::Embeddings {
            vectors,
            prompt_tokens,
        }) => {
            let data: Vec<Value> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let embedding = if base64 {
                        json!(base64_f32(v))
                    } else {
                        json!(v)
                    };
                    json!({"object": "embedding", "index": i, "embedding": embedding})
                })
                .collect();
            Ok(Json(json!({
                "object": "list",
                "data": data,
                "model": app.model_id,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            })))
        }
        Some(Event::Error(e)) => Err(e),
        _ => Err(ApiError::internal("the embedding ended without a result")),
    }
}

/// Standard base64 (RFC 4648, padded) of the vector's little-endian f32 bytes.
fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64_f32;

    #[test]
    fn base64_matches_rfc4648() {
        // 1.0f32 = 00 00 80 3f; base64 of those bytes is "AACAPw==" (RFC 4648 alphabet,
        // checked with Python's base64.b64encode(struct.pack('<f', 1.0))).
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        // -2.5 = 00 00 20 c0, then 1.0: eight bytes, so one pad character.
        assert_eq!(base64_f32(&[-2.5, 1.0]), "AAAgwAAAgD8=");
        assert_eq!(base64_f32(&[]), "");
    }
}
