//! The request bodies of the OpenAI API (the fields phiq honours) and their translation
//! into generation settings. Unknown fields are ignored, as OpenAI-compatible servers do,
//! so clients that send more than phiq uses still work.

use crate::{GenerateParams, SamplerParams};
use serde::Deserialize;

use super::error::ApiError;

/// A string or a list of strings (`stop`, `input`, `prompt`).
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A message's content: a string, or OpenAI's list of parts (only text parts).
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Debug)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// The roles a chat message may have: OpenAI's, with `developer` (OpenAI's newer name for
/// the system prompt) read as `system`. Templates know system, user and assistant; any
/// other role is refused rather than dropped by the template.
const ROLES: &[&str] = &["system", "developer", "user", "assistant"];

impl Message {
    /// The role the chat template gets (`developer` becomes `system`), or a 400 naming the
    /// message.
    pub fn template_role(&self, index: usize) -> Result<&str, ApiError> {
        match self.role.as_str() {
            "developer" => Ok("system"),
            r if ROLES.contains(&r) => Ok(r),
            other => Err(ApiError::invalid_param(
                &format!("messages[{index}].role"),
                format!(
                    "role '{other}' is not supported (phiq accepts {}; tool messages need tool calls, which phiq does not support)",
                    ROLES.join(", ")
                ),
            )),
        }
    }

    /// The text of the message; non-text parts are refused (phiq models read text only).
    pub fn text(&self, index: usize) -> Result<String, ApiError> {
        match &self.content {
            None => Ok(String::new()),
            Some(Content::Text(s)) => Ok(s.clone()),
            Some(Content::Parts(parts)) => {
                let mut out = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => out.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid_param(
                                &format!("messages[{index}].content"),
                                format!(
                                    "content part of type '{kind}' is not supported (text only)"
                                ),
                            ))
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

#[derive(Deserialize, Debug, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling and stopping fields shared by chat and text completions. Besides OpenAI's,
/// llama-server's extensions `top_k`, `min_p`, `repeat_penalty` and `ignore_eos`.
#[derive(Deserialize, Debug, Default)]
pub struct Sampling {
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<OneOrMany>,
    pub n: Option<u32>,
    #[serde(default)]
    pub ignore_eos: bool,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
}

#[derive(Deserialize, Debug)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub sampling: Sampling,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    /// llama-server's per-request `reasoning_format`: `none`, or `deepseek`/`auto`.
    pub reasoning_format: Option<String>,
}

impl ChatRequest {
    /// Whether to split the thinking off (`default`: the server's setting), or a 400 for
    /// a format phiq does not implement.
    pub fn reasoning_split(&self, default: bool) -> Result<bool, ApiError> {
        match self.reasoning_format.as_deref() {
            None => Ok(default),
            Some("none") => Ok(false),
            Some("deepseek" | "auto") => Ok(true),
            Some(other) => Err(ApiError::invalid_param(
                "reasoning_format",
                format!("reasoning_format '{other}' is not supported (none, deepseek or auto)"),
            )),
        }
    }
}

#[derive(Deserialize, Debug)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Prompt,
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Text completions take a count: the n most likely tokens at each position.
    pub logprobs: Option<u32>,
}

/// A completion prompt: text, or token ids (as OpenAI accepts).
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
    /// A batch of one (`["text"]`); more prompts per request are refused.
    Texts(Vec<String>),
}

#[derive(Deserialize, Debug)]
pub struct EmbeddingRequest {
    pub model: Option<String>,
    pub input: OneOrMany,
    pub encoding_format: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct TokenizeRequest {
    pub content: String,
    #[serde(default)]
    pub add_special: bool,
    /// llama-server's default: control-token text becomes control tokens.
    #[serde(default = "yes")]
    pub parse_special: bool,
    #[serde(default)]
    pub with_pieces: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Debug)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
}

/// The most `top_logprobs` OpenAI allows (20); phiq keeps the same cap.
pub const MAX_TOP_LOGPROBS: u32 = 20;

impl Sampling {
    /// Generation settings for this request. Defaults are llama-server's (temperature
    /// 0.8, top-k 40, top-p 0.95, min-p 0.05); a missing `max_tokens` means "until a stop
    /// token or the end of the context"; a missing seed is drawn from the clock.
    pub fn params(&self) -> Result<GenerateParams, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid_param(
                    "n",
                    format!("n = {n}: phiq generates one choice per request (n = 1)"),
                ));
            }
        }
        let d = SamplerParams::default();
        let in_range = |name: &str, v: Option<f32>, lo: f32, hi: f32, default: f32| {
            let v = v.unwrap_or(default);
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(ApiError::invalid_param(
                    name,
                    format!("{name} = {v} is out of range (must be between {lo} and {hi})"),
                ))
            }
        };
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let sampler = SamplerParams {
            temperature: in_range("temperature", self.temperature, 0.0, 2.0, d.temperature)?,
            top_p: in_range("top_p", self.top_p, 0.0, 1.0, d.top_p)?,
            top_k: self.top_k.map_or(d.top_k, |k| k as usize),
            min_p: in_range("min_p", self.min_p, 0.0, 1.0, d.min_p)?,
            presence_penalty: in_range("presence_penalty", self.presence_penalty, -2.0, 2.0, 0.0)?,
            frequency_penalty: in_range(
                "frequency_penalty",
                self.frequency_penalty,
                -2.0,
                2.0,
                0.0,
            )?,
            repeat_penalty: in_range("repeat_penalty", self.repeat_penalty, 0.01, 10.0, 1.0)?,
            seed,
            ..d
        };
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            Some(0) => {
                return Err(ApiError::invalid_param(
                    "max_tokens",
                    "max_tokens must be at least 1",
                ))
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let stop_strings = self.stop.as_ref().map(|s| match s {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        });
        let mut stop_strings = stop_strings.unwrap_or_default();
        stop_strings.retain(|s| !s.is_empty());
        if stop_strings.len() > 16 {
            return Err(ApiError::invalid_param("stop", "at most 16 stop strings"));
        }
        Ok(GenerateParams {
            max_tokens,
            sampler,
            stop_strings,
            stop_tokens: Vec::new(),
            ignore_eos: self.ignore_eos,
        })
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}
