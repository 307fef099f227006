//! `POST /v1/chat/completions` and `POST /v1/completions`: a prompt (messages through the
//! model's chat template, or text / token ids) goes to a slot; the answer comes back
//! whole, or as server-sent events (`data: {chunk}` … `data: [DONE]`) with `stream`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::body::read_json;
use super::error::ApiError;
use super::request::{ChatRequest, CompletionRequest, Prompt, MAX_TOP_LOGPROBS};
use super::slots::{CancelOnDrop, Event, Usage, Work};
use super::App;
use crate::reasoning::{prompt_opens_thinking, Channel, ReasoningSplitter};
use crate::{ChatMessage, ContextShift, TokenLogprob, Tokenizer};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

/// What every chunk or response of one request repeats.
struct Reply {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    logprobs: bool,
    /// Chat with reasoning split off: `Some(the prompt opened the thinking)`.
    reasoning: Option<bool>,
}

pub async fn chat(State(app): State<Arc<App>>, body: Body) -> Result<Response, ApiError> {
    let req: ChatRequest = read_json(body, app.body_limit).await?;
    app.check_model(req.model.as_deref())?;
    let params = req.sampling.params()?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages must not be empty",
        ));
    }
    let messages = req
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| Ok(ChatMessage::new(m.template_role(i)?, m.text(i)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let top = match (req.logprobs, req.top_logprobs) {
        (_, Some(n)) if n > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}"),
            ))
        }
        (true, n) => Some(n.unwrap_or(0) as usize),
        (false, Some(_)) => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                "top_logprobs needs logprobs: true",
            ))
        }
        (false, None) => None,
    };
    let split = req.reasoning_split(app.reasoning_split)?;
    // Templating and tokenizing a large prompt is CPU work: off the async threads.
    let model = Arc::clone(&app.model);
    // With --context-shift, the conversation drops its oldest turns to fit the slot's
    // context (room for min(max_tokens, n_ctx / 4) of answer), and the slot may drop more.
    let n_ctx = app.slots.n_ctx();
    let shift = app
        .context_shift
        .then(|| ContextShift::new(messages.clone(), params.max_tokens.min(n_ctx / 4)));
    type Prepared = (Vec<u32>, bool, Option<ContextShift>);
    let (prompt, opened, shift) =
        tokio::task::spawn_blocking(move || -> crate::Result<Prepared> {
            let tok = model.tokenizer()?;
            let (ids, shift) = match shift {
                Some(mut shift) => (shift.prompt(tok, n_ctx)?, Some(shift)),
                None => (tok.encode_chat(&messages, true)?, None),
            };
            // Does the template open the thinking for the model (`…<think>\n`)?
            let tail = tok.decode_with(&ids[ids.len().saturating_sub(8)..], true)?;
            Ok((ids, prompt_opens_thinking(&tail), shift))
        })
        .await
        .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))?
        .map_err(|e| match e {
            crate::Error::InvalidInput(m) => {
                let mut e = ApiError::invalid_param("messages", m);
                e.code = Some("context_length_exceeded");
                e
            }
            e => e.into(),
        })?;
    let reply = Reply {
        kind: Kind::Chat,
        id: format!("chatcmpl-{}", app.next_id()),
        created: super::unix_time(),
        model: app.model_id.clone(),
        include_usage: req.sampling.include_usage(),
        logprobs: top.is_some(),
        reasoning: split.then_some(opened),
    };
    let stream = req.sampling.stream;
    respond(app, reply, prompt, params, top, stream, shift).await
}

pub async fn completions(State(app): State<Arc<App>>, body: Body) -> Result<Response, ApiError> {
    let req: CompletionRequest = read_json(body, app.body_limit).await?;
    app.check_model(req.model.as_deref())?;
    let params = req.sampling.params()?;
    if let Some(n) = req.logprobs {
        if n > MAX_TOP_LOGPROBS {
            return Err(ApiError::invalid_param(
                "logprobs",
                format!("logprobs must be between 0 and {MAX_TOP_LOGPROBS}"),
            ));
        }
    }
    let text = match req.prompt {
        Prompt::Text(t) => Some(t),
        Prompt::Texts(mut v) if v.len() == 1 => v.pop(),
        Prompt::Texts(v) => {
            return Err(ApiError::invalid_param(
                "prompt",
                format!("{} prompts in one request: phiq takes one", v.len()),
            ))
        }
        Prompt::Tokens(ids) => {
            let n_vocab = app.model.n_vocab();
            if let Some(bad) = ids.iter().find(|&&id| id as usize >= n_vocab) {
                return Err(ApiError::invalid_param(
                    "prompt",
                    format!("token id {bad} is out of range (the model has {n_vocab} tokens)"),
                ));
            }
            return finish_completion(app, req.sampling, req.logprobs, ids, params).await;
        }
    };
    let text = text.unwrap_or_default();
    let model = Arc::clone(&app.model);
    let prompt = tokio::task::spawn_blocking(move || {
        model.tokenizer().map(|t| t.encode(&text, true, false))
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))??;
    finish_completion(app, req.sampling, req.logprobs, prompt, params).await
}

async fn finish_completion(
    app: Arc<App>,
    sampling: super::request::Sampling,
    logprobs: Option<u32>,
    prompt: Vec<u32>,
    params: crate::GenerateParams,
) -> Result<Response, ApiError> {
    let reply = Reply {
        kind: Kind::Text,
        id: format!("cmpl-{}", app.next_id()),
        created: super::unix_time(),
        model: app.model_id.clone(),
        include_usage: sampling.include_usage(),
        logprobs: logprobs.is_some(),
        reasoning: None,
    };
    let top = logprobs.map(|n| n as usize);
    respond(app, reply, prompt, params, top, sampling.stream, None).await
}

/// Queues the prompt on a slot and answers whole or as a stream.
async fn respond(
    app: Arc<App>,
    reply: Reply,
    prompt: Vec<u32>,
    params: crate::GenerateParams,
    top: Option<usize>,
    stream: bool,
    shift: Option<ContextShift>,
) -> Result<Response, ApiError> {
    if prompt.is_empty() {
        return Err(ApiError::invalid_param("prompt", "the prompt is empty"));
    }
    app.check_context(prompt.len(), "prompt")?;
    let key = prompt.clone();
    let work = Work::Generate {
        prompt,
        params,
        logprobs: top,
        shift,
    };
    let (events, cancel) = app.slots.submit(work, &key).await?;
    if stream {
        Ok(stream_reply(app, reply, events, cancel))
    } else {
        whole_reply(app, reply, events, cancel).await
    }
}

/// Waits for the whole answer. `_cancel` lives as long as this future: a client that
/// disconnects drops it, which stops the generation.
async fn whole_reply(
    app: Arc<App>,
    reply: Reply,
    mut events: mpsc::UnboundedReceiver<Event>,
    _cancel: CancelOnDrop,
) -> Result<Response, ApiError> {
    let tokenizer = app.model.tokenizer()?;
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Piece {
                text: t,
                logprobs: l,
            } => {
                text.push_str(&t);
                logprobs.extend(l);
            }
            Event::Done {
                finish_reason,
                usage,
            } => {
                let lp = reply
                    .logprobs
                    .then(|| logprobs_json(reply.kind, tokenizer, &logprobs, 0));
                let choice = match reply.kind {
                    Kind::Chat => {
                        let mut message = json!({"role": "assistant", "content": text});
                        if let Some(opened) = reply.reasoning {
                            let (reasoning, content) = crate::reasoning::split(&text, opened);
                            message["content"] = json!(content);
                            if !reasoning.is_empty() {
                                message["reasoning_content"] = json!(reasoning);
                            }
                        }
                        json!({
                            "index": 0,
                            "message": message,
                            "logprobs": lp,
                            "finish_reason": finish_reason,
                        })
                    }
                    Kind::Text => json!({
                        "index": 0,
                        "text": text,
                        "logprobs": lp,
                        "finish_reason": finish_reason,
                    }),
                };
                let mut body = reply.envelope(false);
                body["choices"] = json!([choice]);
                body["usage"] = usage_json(&usage);
                return Ok(Json(body).into_response());
            }
            Event::Error(e) => return Err(e),
            Event::Embeddings { .. } => break,
        }
    }
    Err(ApiError::internal("the generation ended without an answer"))
}

/// Streams chunks as server-sent events. A task turns slot events into SSE events; when
/// the client goes away the SSE body is dropped, the task's next send fails, and the task
/// ends, dropping `cancel`, which stops the generation at its next token.
fn stream_reply(
    app: Arc<App>,
    reply: Reply,
    mut events: mpsc::UnboundedReceiver<Event>,
    cancel: CancelOnDrop,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(16);
    tokio::spawn(async move {
        let _cancel = cancel;
        let Ok(tokenizer) = app.model.tokenizer() else {
            return;
        };
        let send = |v: Value| {
            let tx = tx.clone();
            async move {
                tx.send(Ok(SseEvent::default().data(v.to_string())))
                    .await
                    .is_ok()
            }
        };
        if reply.kind == Kind::Chat
            && !send(reply.chunk(json!({"role": "assistant", "content": ""}), None, None)).await
        {
            return;
        }
        let mut offset = 0;
        let mut splitter = reply.reasoning.map(ReasoningSplitter::new);
        // One chunk per channel's piece: `delta.reasoning_content` or `delta.content`.
        let delta = |channel: Channel, text: String| match channel {
            Channel::Reasoning => json!({"reasoning_content": text}),
            Channel::Content => json!({"content": text}),
        };
        while let Some(event) = events.recv().await {
            let ok = match event {
                Event::Piece { text, logprobs } => {
                    if text.is_empty() && logprobs.is_empty() {
                        continue;
                    }
                    let mut lp = reply
                        .logprobs
                        .then(|| logprobs_json(reply.kind, tokenizer, &logprobs, offset));
                    offset += text.len();
                    match &mut splitter {
                        None => send(reply.chunk(json!({"content": text}), lp, None)).await,
                        Some(s) => {
                            let mut ok = true;
                            // (held-back text still sends its logprobs)
                            let parts = s.push(&text);
                            if parts.is_empty() && lp.is_some() {
                                ok = send(reply.chunk(json!({}), lp.take(), None)).await;
                            }
                            for (channel, t) in parts {
                                if ok {
                                    ok =
                                        send(reply.chunk(delta(channel, t), lp.take(), None)).await;
                                }
                            }
                            ok
                        }
                    }
                }
                Event::Done {
                    finish_reason,
                    usage,
                } => {
                    for (channel, t) in splitter.as_mut().map(|s| s.finish()).unwrap_or_default() {
                        if !send(reply.chunk(delta(channel, t), None, None)).await {
                            return;
                        }
                    }
                    let delta = match reply.kind {
                        Kind::Chat => json!({}),
                        Kind::Text => json!(""),
                    };
                    let _ = send(reply.chunk(delta, None, Some(finish_reason))).await;
                    if reply.include_usage {
                        let mut last = reply.envelope(true);
                        last["choices"] = json!([]);
                        last["usage"] = usage_json(&usage);
                        let _ = send(last).await;
                    }
                    let _ = tx.send(Ok(SseEvent::default().data("[DONE]"))).await;
                    return;
                }
                Event::Error(e) => {
                    // Headers (200) are gone already: report in-band, as llama-server does.
                    let _ = send(e.body()).await;
                    return;
                }
                Event::Embeddings { .. } => return,
            };
            if !ok {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

impl Reply {
    /// The fields shared by responses and chunks.
    fn envelope(&self, chunk: bool) -> Value {
        let object = match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": concat!("phiq-", env!("CARGO_PKG_VERSION")),
        })
    }

    /// One streamed chunk. `delta` is the chat delta object, or the text for completions.
    fn chunk(&self, delta: Value, logprobs: Option<Value>, finish: Option<&str>) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
            Kind::Text => json!({
                "index": 0,
                "text": delta.get("content").cloned().unwrap_or(delta),
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
        };
        let mut v = self.envelope(true);
        v["choices"] = json!([choice]);
        v
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// A token's text (control tokens shown) and its bytes, as OpenAI's logprobs give them.
fn token_text(tokenizer: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let bytes = tokenizer.decode_bytes(&[id], true).unwrap_or_default();
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// OpenAI's two logprobs shapes: chat's `{"content": [{token, logprob, bytes,
/// top_logprobs}]}`, and text completions' parallel lists (`text_offset` from `offset`).
fn logprobs_json(kind: Kind, tokenizer: &Tokenizer, lps: &[TokenLogprob], offset: usize) -> Value {
    match kind {
        Kind::Chat => {
            let content: Vec<Value> = lps
                .iter()
                .map(|lp| {
                    let (token, bytes) = token_text(tokenizer, lp.token);
                    let top: Vec<Value> = lp
                        .top
                        .iter()
                        .map(|&(id, l)| {
                            let (token, bytes) = token_text(tokenizer, id);
                            json!({"token": token, "logprob": l, "bytes": bytes})
                        })
                        .collect();
                    json!({"token": token, "logprob": lp.logprob, "bytes": bytes, "top_logprobs": top})
                })
                .collect();
            json!({"content": content})
        }
        Kind::Text => {
            let mut tokens = Vec::new();
            let mut token_logprobs = Vec::new();
            let mut top_logprobs = Vec::new();
            let mut text_offset = Vec::new();
            let mut at = offset;
            for lp in lps {
                let (token, bytes) = token_text(tokenizer, lp.token);
                text_offset.push(at);
                at += bytes.len();
                tokens.push(token);
                token_logprobs.push(lp.logprob);
                let top: serde_json::Map<String, Value> = lp
                    .top
                    .iter()
                    .map(|&(id, l)| (token_text(tokenizer, id).0, json!(l)))
                    .collect();
                top_logprobs.push(Value::Object(top));
            }
            json!({
                "tokens": tokens,
                "token_logprobs": token_logprobs,
                "top_logprobs": top_logprobs,
                "text_offset": text_offset,
            })
        }
    }
}
