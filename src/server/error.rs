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

    /// 405: a route that exists, asked with another method (e.g. GET on a POST route).
    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError {
            code: Some("method_not_allowed"),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                format!("{method} {path}: this route takes another method (see the README's route table)"),
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
        ApiError::unavailable(format!(
            "the server is busy: all slots are generating and {queue} requests are already waiting; retry later"
        ))
    }

    /// 503: the server cannot get what it needs (threads, memory, a runtime) right now.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_error",
            message,
        )
    }

    /// 500: the engine failed (a corrupt model file, a bug): nothing the client can fix.
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
    /// 4xx only when the request is at fault; a broken model file is 500 and a machine
    /// that cannot give threads or sockets is 503. The match lists every kind, so a new
    /// one has to be placed here.
    fn from(e: crate::Error) -> ApiError {
        use crate::Error as E;
        let message = e.to_string();
        match e {
            // The request: bad arguments, token ids outside the vocabulary, messages the
            // chat template refuses.
            E::InvalidInput(_) | E::TokenOutOfRange { .. } | E::ChatTemplate(_) => {
                ApiError::invalid(message)
            }
            // The machine.
            E::Resource(_) | E::Interrupted => ApiError::unavailable(message),
            // The model file (or another file the server read), or I/O.
            E::Io { .. }
            | E::NotGguf { .. }
            | E::Format { .. }
            | E::UnsupportedVersion { .. }
            | E::UnsupportedType { .. }
            | E::UnsupportedArch { .. }
            | E::MissingKey { .. }
            | E::WrongType { .. }
            | E::MissingTensor { .. }
            | E::ShapeMismatch { .. }
            | E::InvalidModel(_)
            | E::InvalidFile(_)
            | E::Tokenizer(_) => ApiError::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error as E;

    fn status(e: E) -> u16 {
        ApiError::from(e).status.as_u16()
    }

    #[test]
    fn request_errors_are_400() {
        assert_eq!(status(E::InvalidInput("eval: no tokens".into())), 400);
        assert_eq!(status(E::TokenOutOfRange { id: 7, n_vocab: 5 }), 400);
        assert_eq!(status(E::ChatTemplate("roles must alternate".into())), 400);
    }

    #[test]
    fn broken_model_is_500_not_400() {
        let s = |x: &str| x.to_string();
        let model_errors = [
            E::InvalidModel(s("non-finite values (NaN/inf) after layer 3")),
            E::InvalidModel(s("model metadata: phi3.attention.head_count = 0")),
            E::InvalidModel(s("chat template: syntax error")),
            E::InvalidFile(s("imatrix.dat: the importance matrix has no entries")),
            E::Tokenizer(s("no vocabulary")),
            E::Io {
                path: "m.gguf".into(),
                source: std::io::Error::other("gone"),
            },
            E::NotGguf {
                file: s("m.gguf"),
                looks_like: s("text"),
            },
            E::Format {
                file: s("m.gguf"),
                offset: 8,
                what: s("bad"),
            },
            E::UnsupportedVersion {
                file: s("m.gguf"),
                version: 9,
            },
            E::UnsupportedType {
                tensor: s("output.weight"),
                ty: s("Q1_X"),
            },
            E::UnsupportedArch {
                arch: s("llama"),
                supported: s("phi3"),
            },
            E::MissingKey {
                key: s("phi3.block_count"),
            },
            E::WrongType {
                key: s("phi3.block_count"),
                expected: s("u32"),
                found: s("string"),
            },
            E::MissingTensor {
                name: s("output_norm.weight"),
            },
            E::ShapeMismatch {
                tensor: s("blk.0.attn_qkv.weight"),
                expected: s("[1, 2]"),
                found: s("[2, 1]"),
            },
        ];
        for e in model_errors {
            let shown = e.to_string();
            let api = ApiError::from(e);
            assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR, "{shown}");
            assert_eq!(api.kind, "server_error");
            assert_eq!(api.message, shown, "the message still names what is wrong");
        }
    }

    #[test]
    fn resource_failure_is_503_not_400() {
        for e in [
            E::Resource("cannot start 4 threads: out of memory".into()),
            E::Resource("cannot start slot thread: EAGAIN".into()),
            E::Resource("PHIQ_ISA=avx512 but this CPU lacks avx512f".into()),
        ] {
            assert_eq!(status(e), 503);
        }
    }
}
