//! Errors in OpenAI's JSON shape: `{"error": {"message", "type", "param", "code"}}`, with
//! the HTTP status OpenAI (and llama-server) use for each kind.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered to the client. Build it with the constructors, which pick the
/// status and OpenAI's `type` together.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// 400: the request is malformed or asks for something impossible.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 naming the request field at fault.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            param: Some(param.to_string()),
            ..ApiError::invalid(message)
        }
    }

    /// 401: missing or wrong API key.
    pub fn unauthorized() -> ApiError {
        ApiError {
            code: Some("invalid_api_key"),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid or missing API key: send it as 'Authorization: Bearer KEY'",
            )
        }
    }

    /// 404: an unknown model or route.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: Some(code),
            ..ApiError::new(StatusCode::NOT_FOUND, "not_found_error", message)
        }
    }

    /// 413: the body exceeds the server's limit.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            code: Some("request_too_large"),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("the request body exceeds the server's limit of {limit} bytes"),
            )
        }
    }

    /// 503: every slot is busy and the queue is full.
    pub fn busy(queue: usize) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_error",
            format!("the server is busy: all slots are generating and {queue} requests are already waiting; retry later"),
        )
    }

    /// 500: the engine failed (a corrupt model, a bug).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body, also sent as an SSE event when a stream fails midway.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<crate::Error> for ApiError {
    /// Library errors reaching a request are about its input (a prompt over the context,
    /// a token id out of range) unless they are I/O or file-format errors.
    fn from(e: crate::Error) -> ApiError {
        match e {
            crate::Error::InvalidInput(_) | crate::Error::ChatTemplate(_) => {
                ApiError::invalid(e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}
