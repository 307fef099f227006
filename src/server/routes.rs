//! The small endpoints: `GET /health`, `GET /v1/models`, and llama-server's
//! `POST /tokenize` and `POST /detokenize`; and the router that joins every route.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::body::read_json;
use super::error::ApiError;
use super::request::{DetokenizeRequest, TokenizeRequest};
use super::{auth, completions, embeddings, App};

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(completions::chat))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            auth::require_key,
        ))
        .with_state(app)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found("not_found", format!("no route {}", uri.path()))
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    let c = &app.model.config;
    Json(json!({
        "object": "list",
        "data": [{
            "id": app.model_id,
            "object": "model",
            "created": app.created,
            "owned_by": "phiq",
            "meta": {
                "n_ctx_train": c.n_ctx_train,
                "n_ctx_slot": app.slots.n_ctx(),
                "n_vocab": app.model.n_vocab(),
                "n_embd": c.n_embd,
            },
        }],
    }))
}

/// `{"content", "add_special"?, "parse_special"?, "with_pieces"?}` → `{"tokens": [...]}`,
/// the pieces as `{"id", "piece"}` with `with_pieces` (llama-server's shapes).
async fn tokenize(State(app): State<Arc<App>>, body: Body) -> Result<Json<Value>, ApiError> {
    let req: TokenizeRequest = read_json(body, app.body_limit).await?;
    let model = Arc::clone(&app.model);
    let value = tokio::task::spawn_blocking(move || {
        let tok = model.tokenizer()?;
        let ids = tok.encode(&req.content, req.add_special, req.parse_special);
        let tokens: Vec<Value> = if req.with_pieces {
            ids.iter()
                .map(|&id| {
                    let bytes = tok.decode_bytes(&[id], true).unwrap_or_default();
                    let piece = match String::from_utf8(bytes) {
                        Ok(s) => json!(s),
                        // A piece that is part of a character: its bytes, as llama-server.
                        Err(e) => json!(e.into_bytes()),
                    };
                    json!({"id": id, "piece": piece})
                })
                .collect()
        } else {
            ids.iter().map(|&id| json!(id)).collect()
        };
        Ok::<_, crate::Error>(json!({ "tokens": tokens }))
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))??;
    Ok(Json(value))
}

/// `{"tokens": [...]}` → `{"content": text}`.
async fn detokenize(State(app): State<Arc<App>>, body: Body) -> Result<Json<Value>, ApiError> {
    let req: DetokenizeRequest = read_json(body, app.body_limit).await?;
    let tok = app.model.tokenizer()?;
    let n_vocab = tok.n_vocab();
    if let Some(bad) = req.tokens.iter().find(|&&id| id as usize >= n_vocab) {
        return Err(ApiError::invalid_param(
            "tokens",
            format!("token id {bad} is out of range (the vocabulary has {n_vocab} tokens)"),
        ));
    }
    let content = tok.decode_with(&req.tokens, true)?;
    Ok(Json(json!({ "content": content })))
}
