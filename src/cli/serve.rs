//! `phiq serve`: the OpenAI-compatible HTTP server (see `phiq::server`).
//!
//! Prints one line to stderr when it listens: `phiq serve: listening on http://ADDR`
//! (with `--port 0` the address has the port the OS chose; tests read it from there).

use std::sync::Arc;
use std::time::Duration;

use phiq::server::{serve, ServerOptions};
use phiq::Error;

use super::common::{ModelArgs, DEFAULT_CTX};

#[derive(clap::Args)]
#[command(
    after_help = "-c/--ctx-size is the context of EACH slot: KV cache memory is --parallel × -c.\n\
Routes: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /tokenize, /detokenize; \
GET /v1/models, /health.\n\
Example: curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
-d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'"
)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on. The default answers this machine only; anything else
    /// exposes the model to the network (use --api-key).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port, printed at start-up).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests generated at once, each in its own slot with its own KV cache.
    #[arg(
        long = "parallel",
        visible_alias = "np",
        default_value_t = 1,
        value_name = "N"
    )]
    parallel: usize,
    /// Requests that may wait for a free slot; beyond that the server answers 503.
    #[arg(long = "queue-size", default_value_t = 64, value_name = "N")]
    queue_size: usize,
    /// Require 'Authorization: Bearer KEY' [default: $PHIQ_API_KEY, else no key].
    #[arg(long = "api-key", value_name = "KEY")]
    api_key: Option<String>,
    /// Largest request body in bytes.
    #[arg(long = "body-limit", default_value_t = 8 << 20, value_name = "BYTES")]
    body_limit: usize,
    /// The model's name in /v1/models and responses [default: the file name without .gguf].
    #[arg(long, value_name = "NAME")]
    alias: Option<String>,
    /// Refuse (404) requests whose `model` is not this server's [default: any `model` is
    /// answered by the loaded model, as llama-server does].
    #[arg(long = "strict-model")]
    strict_model: bool,
    /// Chat replies of reasoning models: deepseek puts the thinking (<think>…</think>) in
    /// `reasoning_content` (streamed as `delta.reasoning_content`) and the answer alone in
    /// `content`, as llama-server does; none leaves it all in `content`. A request's
    /// `reasoning_format` overrides it.
    #[arg(long = "reasoning-format", default_value = "deepseek", value_parser = ["deepseek", "auto", "none"])]
    reasoning_format: String,
    /// A chat whose conversation does not fit a slot's context drops its oldest turns
    /// (never system messages nor the last message) instead of a 400; an answer that fills
    /// the context drops more and goes on. Off: the answer stops with finish_reason
    /// "length".
    #[arg(long = "context-shift")]
    context_shift: bool,
}

pub fn run(args: Args) -> phiq::Result<()> {
    if args.parallel == 0 {
        return Err(Error::InvalidInput("--parallel must be at least 1".into()));
    }
    let path = args.model.model_path()?;
    let model = Arc::new(args.model.load()?);
    let n_ctx = args
        .model
        .n_ctx_sessions(&model, DEFAULT_CTX, args.parallel)?;
    let model_id = args.alias.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "phiq".into())
    });
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var("PHIQ_API_KEY").ok())
        .filter(|k| !k.is_empty());
    let loopback = matches!(args.host.as_str(), "127.0.0.1" | "localhost" | "::1");
    if !loopback && api_key.is_none() {
        eprintln!(
            "phiq serve: warning: listening on {} without --api-key: anyone who can reach it can use the model",
            args.host
        );
    }
    eprintln!(
        "phiq serve: model '{model_id}' ({}), {} slot(s) × {n_ctx} tokens of context, {} threads",
        path.display(),
        args.parallel,
        model.threads()
    );
    let opts = ServerOptions {
        host: args.host,
        port: args.port,
        parallel: args.parallel,
        n_ctx,
        queue_size: args.queue_size,
        body_limit: args.body_limit,
        api_key,
        model_id,
        strict_model: args.strict_model,
        reasoning_split: args.reasoning_format != "none",
        context_shift: args.context_shift,
        shutdown_grace: Duration::from_secs(5),
    };
    serve(model, opts, |addr| {
        eprintln!("phiq serve: listening on http://{addr}");
    })?;
    eprintln!("phiq serve: stopped");
    Ok(())
}
