//! An OpenAI-compatible HTTP server (`phiq serve`) on axum/tokio.
//!
//! ```text
//! HTTP ── auth (optional bearer key) ── body ≤ limit ── JSON → request.rs
//!      ── completions.rs / embeddings.rs / routes.rs ── Slots::submit (queue ≤ N, else 503)
//!      ── slot thread (own Session, shared Arc<Model>) ── events ── JSON or SSE
//! ```
//! The async runtime only moves bytes: templating and tokenizing run on `spawn_blocking`,
//! generation on the slot threads (see the `slots` module).

mod auth;
mod body;
mod completions;
mod embeddings;
mod error;
mod request;
mod routes;
mod slots;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use crate::embedding::mean_pool_normalized;
pub use auth::constant_time_eq;
pub use error::ApiError;

use crate::{Error, Model, Result};
use slots::Slots;

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub host: String,
    /// 0: any free port (the bound address goes to `on_ready`).
    pub port: u16,
    /// Slots: requests generated at once, each with its own KV cache.
    pub parallel: usize,
    /// Context (KV cache) size of each slot, in tokens.
    pub n_ctx: usize,
    /// Requests that may wait for a slot before the server answers 503.
    pub queue_size: usize,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Required as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// The model's name in `/v1/models` and in responses.
    pub model_id: String,
    /// Requests naming another model get 404 (OpenAI's behaviour); otherwise any `model`
    /// value is answered by the loaded model (llama-server's), since many clients hard-code
    /// one (`gpt-4o`, `gpt-3.5-turbo`).
    pub strict_model: bool,
    /// After SIGINT/SIGTERM, how long running generations may finish before they are
    /// stopped.
    pub shutdown_grace: Duration,
    /// Chat replies: the thinking of a reasoning model (`<think>…</think>`) in
    /// `reasoning_content`, the answer alone in `content` (llama-server's
    /// `--reasoning-format deepseek`, its default); `false`: all of it in `content`
    /// (`none`). A request's `reasoning_format` overrides it.
    pub reasoning_split: bool,
    /// Chat requests whose conversation does not fit a slot's context drop their oldest
    /// turns (never system messages nor the last message) instead of a 400, and an answer
    /// that fills the context drops more and goes on (llama-server's `--context-shift`);
    /// off: the answer stops with `finish_reason: "length"`.
    pub context_shift: bool,
}

/// What the handlers share.
pub struct App {
    model: Arc<Model>,
    slots: Slots,
    model_id: String,
    strict_model: bool,
    reasoning_split: bool,
    context_shift: bool,
    created: u64,
    body_limit: usize,
    api_key: Option<String>,
    ids: AtomicU64,
}

impl App {
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Any `model` is answered by the loaded model, as llama-server does; with
    /// `strict_model`, only this server's model (or none), others 404 as with OpenAI.
    fn check_model(&self, requested: Option<&str>) -> std::result::Result<(), ApiError> {
        match requested {
            Some(m) if self.strict_model && !m.is_empty() && m != self.model_id => {
                Err(ApiError::not_found(
                    "model_not_found",
                    format!(
                        "the model '{m}' does not exist: this server serves '{}'",
                        self.model_id
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// A prompt must leave room for at least one generated token in a slot's context.
    fn check_context(&self, n: usize, param: &str) -> std::result::Result<(), ApiError> {
        let n_ctx = self.slots.n_ctx();
        if n >= n_ctx {
            let mut e = ApiError::invalid_param(
                param,
                format!(
                    "the {param} has {n} tokens, more than the context of {n_ctx} tokens per slot allows (start the server with a larger -c)"
                ),
            );
            e.code = Some("context_length_exceeded");
            return Err(e);
        }
        Ok(())
    }
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves until SIGINT or SIGTERM. `on_ready` gets the bound address once the socket
/// listens (the CLI prints it, so scripts and tests can use port 0).
pub fn serve(
    model: Arc<Model>,
    opts: ServerOptions,
    on_ready: impl FnOnce(SocketAddr) + Send + 'static,
) -> Result<()> {
    model.tokenizer()?; // every endpoint needs it: refuse a file without one up front
    let slots = Slots::start(
        Arc::clone(&model),
        opts.parallel,
        opts.n_ctx,
        opts.queue_size,
    )?;
    let app = Arc::new(App {
        model,
        slots,
        model_id: opts.model_id.clone(),
        strict_model: opts.strict_model,
        reasoning_split: opts.reasoning_split,
        context_shift: opts.context_shift,
        created: unix_time(),
        body_limit: opts.body_limit,
        api_key: opts.api_key.clone().filter(|k| !k.is_empty()),
        ids: AtomicU64::new(0),
    });
    // Two I/O threads are plenty: they only parse, route and copy bytes.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("phiq-http")
        .enable_all()
        .build()
        .map_err(|e| Error::Resource(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(run(Arc::clone(&app), &opts, on_ready));
    // Stop and join the slot threads whatever happened (in-flight work is cancelled).
    app.slots.shutdown();
    result
}

async fn run(app: Arc<App>, opts: &ServerOptions, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| Error::Resource(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Resource(format!("cannot listen on {addr}: {e}")))?;
    on_ready(local);
    let grace = opts.shutdown_grace;
    let slots_app = Arc::clone(&app);
    let shutdown = async move {
        wait_for_signal().await;
        // Let running answers finish for `grace`, then stop them so the connections end.
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            slots_app.slots.stop_all();
        });
    };
    axum::serve(listener, routes::router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Resource(format!("server error: {e}")))
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
