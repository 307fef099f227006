//! The C interface of phiq: load a model, tokenize, generate with a callback per piece of
//! text. The header `capi/include/phiq.h` is generated from this file by cbindgen and
//! committed (`tests/header.rs` fails when it is stale).
//!
//! Rules every function keeps:
//! - It returns a [`phiq_status`]; on failure [`phiq_last_error`] gives the message
//!   (per thread, valid until the next phiq call on that thread).
//! - Null pointers and text that is not UTF-8 are errors (`PHIQ_ERR_NULL`,
//!   `PHIQ_ERR_UTF8`), never undefined behaviour.
//! - A Rust panic never crosses into C: it is caught and becomes `PHIQ_ERR_PANIC`.
//!
//! ```c
//! phiq_model *m;
//! if (phiq_model_load("phi-4-Q4_K_M.gguf", 0, &m) != PHIQ_OK) puts(phiq_last_error());
//! phiq_generate_params p = phiq_generate_default_params();
//! phiq_generate(m, "Hello", &p, on_piece, NULL, NULL);
//! phiq_model_free(m);
//! ```

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use phiq::{ChatMessage, GenerateParams, Model, ModelOptions, SamplerParams, StopReason};

/// What a phiq function returns. Anything but `PHIQ_OK` has a message in
/// [`phiq_last_error`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum phiq_status {
    PHIQ_OK = 0,
    /// A required pointer argument was NULL.
    PHIQ_ERR_NULL = 1,
    /// A string argument was not valid UTF-8.
    PHIQ_ERR_UTF8 = 2,
    /// The model file could not be read or is not a model phiq runs.
    PHIQ_ERR_LOAD = 3,
    /// An argument is out of range (e.g. a prompt longer than the context).
    PHIQ_ERR_INVALID = 4,
    /// The output buffer is too small; the needed length was written.
    PHIQ_ERR_BUFFER_TOO_SMALL = 5,
    /// A bug in phiq (a caught panic); the model may still be used.
    PHIQ_ERR_PANIC = 6,
}
use phiq_status::*;

/// Why a generation ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum phiq_stop_reason {
    /// `max_tokens` were generated.
    PHIQ_STOP_MAX_TOKENS = 0,
    /// The model ended its answer (an end-of-text / end-of-turn token).
    PHIQ_STOP_EOS = 1,
    /// A stop string appeared (reserved; the C API sets none yet).
    PHIQ_STOP_STRING = 2,
    /// The context is full.
    PHIQ_STOP_CONTEXT_FULL = 3,
    /// The callback returned nonzero.
    PHIQ_STOP_CALLBACK = 4,
}

/// A loaded model (opaque). Thread-safe: several threads may generate with one model at
/// once, each call with its own KV cache.
#[allow(non_camel_case_types)]
pub struct phiq_model {
    model: Model,
}

/// Generation settings; start from [`phiq_generate_default_params`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct phiq_generate_params {
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// 0: greedy (deterministic).
    pub temperature: f32,
    /// 0: off.
    pub top_k: u32,
    /// 1: off.
    pub top_p: f32,
    /// 0: off.
    pub min_p: f32,
    pub seed: u64,
    /// KV cache size; 0: prompt + max_tokens (at most the model's context).
    pub n_ctx: u32,
    /// Nonzero: wrap the prompt in the model's chat template as one user message.
    pub chat: c_int,
}

/// Called with each piece of generated text (UTF-8, `len` bytes, NUL-terminated; valid
/// only during the call) and the token that completed it. Return 0 to go on, nonzero to
/// stop.
#[allow(non_camel_case_types)]
pub type phiq_piece_callback = Option<
    unsafe extern "C" fn(
        text: *const c_char,
        len: usize,
        token: u32,
        user_data: *mut c_void,
    ) -> c_int,
>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: impl Into<String>) {
    // Interior NULs would cut the C string short: show them as U+FFFD instead.
    let msg = msg.into().replace('\0', "\u{fffd}");
    let c = CString::new(msg).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f`, turning `Err` into its status (message stored) and a panic into
/// `PHIQ_ERR_PANIC`. Every exported function goes through here.
fn guard(f: impl FnOnce() -> Result<(), (phiq_status, String)>) -> phiq_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_error("");
            PHIQ_OK
        }
        Ok(Err((status, msg))) => {
            set_error(msg);
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_error(format!("internal error (a bug in phiq): {what}"));
            PHIQ_ERR_PANIC
        }
    }
}

/// A `&str` from a C string argument.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string readable for the call's duration.
unsafe fn str_arg<'a>(s: *const c_char, name: &str) -> Result<&'a str, (phiq_status, String)> {
    if s.is_null() {
        return Err((PHIQ_ERR_NULL, format!("{name} is NULL")));
    }
    // SAFETY: non-null, and the caller promises a NUL-terminated string that outlives
    // this call (the documented contract of every phiq function taking a string).
    let c = unsafe { CStr::from_ptr(s) };
    c.to_str().map_err(|e| {
        (
            PHIQ_ERR_UTF8,
            format!("{name} is not valid UTF-8 (byte {})", e.valid_up_to()),
        )
    })
}

/// # Safety
/// `m` is NULL or a pointer returned by `phiq_model_load` and not yet freed.
unsafe fn model_arg<'a>(m: *const phiq_model) -> Result<&'a Model, (phiq_status, String)> {
    if m.is_null() {
        return Err((PHIQ_ERR_NULL, "model is NULL".into()));
    }
    // SAFETY: non-null and, by the caller's contract, a live phiq_model from
    // phiq_model_load (Box::into_raw), only read here.
    Ok(unsafe { &(*m).model })
}

fn invalid(e: phiq::Error) -> (phiq_status, String) {
    (PHIQ_ERR_INVALID, e.to_string())
}

/// The message of the last failed call on this thread ("" after a success). Owned by
/// phiq: valid until the next phiq call on this thread; never NULL.
#[no_mangle]
pub extern "C" fn phiq_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// phiq's version, e.g. "0.1.0" (static, never NULL).
#[no_mangle]
pub extern "C" fn phiq_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Maps `path` (a GGUF file) and writes the model to `*out`. `n_threads` 0: one per
/// physical core. Free it with [`phiq_model_free`]. Its KV caches are f16 (as
/// [`phiq_model_load_with_cache`] with NULL types).
///
/// # Safety
/// `path`: NULL or a NUL-terminated string; `out`: NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn phiq_model_load(
    path: *const c_char,
    n_threads: u32,
    out: *mut *mut phiq_model,
) -> phiq_status {
    // SAFETY: forwarded contract; NULL cache types are allowed.
    unsafe { phiq_model_load_with_cache(path, n_threads, std::ptr::null(), std::ptr::null(), out) }
}

/// As [`phiq_model_load`], with the KV cache's element types for keys and values, as
/// llama.cpp's `-ctk`/`-ctv` name them: "f16" (NULL: the default), "f32", "bf16",
/// "q8_0" or "q4_0". Another name is `PHIQ_ERR_INVALID`, naming the supported types.
///
/// # Safety
/// `path`: NULL or a NUL-terminated string; `cache_type_k`, `cache_type_v`: NULL or
/// NUL-terminated strings; `out`: NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn phiq_model_load_with_cache(
    path: *const c_char,
    n_threads: u32,
    cache_type_k: *const c_char,
    cache_type_v: *const c_char,
    out: *mut *mut phiq_model,
) -> phiq_status {
    guard(|| {
        if out.is_null() {
            return Err((PHIQ_ERR_NULL, "out is NULL".into()));
        }
        // SAFETY: the caller's contract on `path`.
        let path = unsafe { str_arg(path, "path") }?;
        let cache_type = |s: *const c_char,
                          name: &str|
         -> Result<phiq::model::CacheType, (phiq_status, String)> {
            if s.is_null() {
                return Ok(Default::default());
            }
            // SAFETY: the caller's contract on the cache type strings.
            let t = unsafe { str_arg(s, name) }?;
            t.parse()
                .map_err(|e| (PHIQ_ERR_INVALID, format!("{name}: {e}")))
        };
        let opts = ModelOptions {
            threads: (n_threads > 0).then_some(n_threads as usize),
            cache_type_k: cache_type(cache_type_k, "cache_type_k")?,
            cache_type_v: cache_type(cache_type_v, "cache_type_v")?,
            ..ModelOptions::default()
        };
        let model = Model::load(path, &opts).map_err(|e| (PHIQ_ERR_LOAD, e.to_string()))?;
        model
            .tokenizer()
            .map_err(|e| (PHIQ_ERR_LOAD, e.to_string()))?;
        let ptr = Box::into_raw(Box::new(phiq_model { model }));
        // SAFETY: `out` is non-null and the caller promises it is writable.
        unsafe { out.write(ptr) };
        Ok(())
    })
}

/// Frees a model from [`phiq_model_load`]. NULL is ignored.
///
/// # Safety
/// `model` is NULL or a pointer from `phiq_model_load`, not freed before, and no other
/// thread uses it.
#[no_mangle]
pub unsafe extern "C" fn phiq_model_free(model: *mut phiq_model) {
    if model.is_null() {
        return;
    }
    // SAFETY: by the contract, the pointer came from Box::into_raw in phiq_model_load and
    // is freed exactly once. Dropping unmaps the file; catch a panic there (none is known).
    let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(model) })));
}

/// Tokenizes `text` into `ids` (room for `capacity` ids) and writes the count to
/// `*n_ids`. `add_special`: add BOS if the model wants one. With too little room it
/// returns `PHIQ_ERR_BUFFER_TOO_SMALL` and `*n_ids` is the count needed (so a first call
/// with `capacity` 0 and `ids` NULL asks the size).
///
/// # Safety
/// `model` as for [`phiq_model_free`] (but still live); `text` NUL-terminated; `ids`
/// writable for `capacity` u32 (may be NULL when `capacity` is 0); `n_ids` writable.
#[no_mangle]
pub unsafe extern "C" fn phiq_tokenize(
    model: *const phiq_model,
    text: *const c_char,
    add_special: c_int,
    ids: *mut u32,
    capacity: usize,
    n_ids: *mut usize,
) -> phiq_status {
    guard(|| {
        // SAFETY: the caller's contract on `model` and `text`.
        let (model, text) = unsafe { (model_arg(model)?, str_arg(text, "text")?) };
        if n_ids.is_null() || (ids.is_null() && capacity > 0) {
            return Err((PHIQ_ERR_NULL, "ids or n_ids is NULL".into()));
        }
        let got = model
            .tokenizer()
            .map_err(invalid)?
            .encode(text, add_special != 0, false);
        // SAFETY: `n_ids` is non-null and writable by the contract.
        unsafe { n_ids.write(got.len()) };
        if got.len() > capacity {
            return Err((
                PHIQ_ERR_BUFFER_TOO_SMALL,
                format!("{} ids do not fit in a buffer of {capacity}", got.len()),
            ));
        }
        if !got.is_empty() {
            // SAFETY: `ids` is non-null (capacity ≥ got.len() > 0) and writable for
            // `capacity` u32 by the contract; the regions cannot overlap (ours is new).
            unsafe { std::ptr::copy_nonoverlapping(got.as_ptr(), ids, got.len()) };
        }
        Ok(())
    })
}

/// Default settings: 256 tokens, llama.cpp's sampling (temperature 0.8, top-k 40, top-p
/// 0.95, min-p 0.05), seed 0x5eed, n_ctx 0 (fit), no chat template.
#[no_mangle]
pub extern "C" fn phiq_generate_default_params() -> phiq_generate_params {
    let d = SamplerParams::default();
    phiq_generate_params {
        max_tokens: 256,
        temperature: d.temperature,
        top_k: d.top_k as u32,
        top_p: d.top_p,
        min_p: d.min_p,
        seed: d.seed,
        n_ctx: 0,
        chat: 0,
    }
}

/// Generates after `prompt`, calling `callback` with each piece of text. Writes why it
/// stopped to `*stop_reason` unless that is NULL. Each call has its own KV cache, so
/// several threads may generate with one model at once.
///
/// # Safety
/// `model` live; `prompt` NUL-terminated; `params` NULL (defaults) or readable;
/// `callback` non-NULL and safe to call with `user_data`; `stop_reason` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn phiq_generate(
    model: *const phiq_model,
    prompt: *const c_char,
    params: *const phiq_generate_params,
    callback: phiq_piece_callback,
    user_data: *mut c_void,
    stop_reason: *mut phiq_stop_reason,
) -> phiq_status {
    guard(|| {
        // SAFETY: the caller's contract on `model` and `prompt`.
        let (model, prompt) = unsafe { (model_arg(model)?, str_arg(prompt, "prompt")?) };
        let Some(callback) = callback else {
            return Err((PHIQ_ERR_NULL, "callback is NULL".into()));
        };
        let p = if params.is_null() {
            phiq_generate_default_params()
        } else {
            // SAFETY: non-null and readable by the contract; the struct is plain data.
            unsafe { params.read() }
        };
        let tok = model.tokenizer().map_err(invalid)?;
        let ids = if p.chat != 0 {
            tok.encode_chat(&[ChatMessage::user(prompt)], true)
                .map_err(invalid)?
        } else {
            tok.encode(prompt, true, false)
        };
        let train = model.config.n_ctx_train;
        let n_ctx = match p.n_ctx {
            0 => (ids.len() + p.max_tokens as usize).min(train),
            n => n as usize,
        };
        if ids.len() >= n_ctx {
            return Err((
                PHIQ_ERR_INVALID,
                format!(
                    "the prompt has {} tokens; the context holds {n_ctx}",
                    ids.len()
                ),
            ));
        }
        let mut session = model.session(n_ctx).map_err(invalid)?;
        let gp = GenerateParams {
            max_tokens: p.max_tokens as usize,
            sampler: SamplerParams {
                temperature: p.temperature,
                top_k: p.top_k as usize,
                top_p: p.top_p,
                min_p: p.min_p,
                seed: p.seed,
                ..SamplerParams::default()
            },
            ..GenerateParams::default()
        };
        let mut gen = session.generate(&ids, gp).map_err(invalid)?;
        let mut by_callback = false;
        while let Some(piece) = gen.next() {
            let piece = piece.map_err(invalid)?;
            if piece.text.is_empty() {
                continue;
            }
            // A C string cannot hold NUL: drop any (a model that emits U+0000 loses it).
            let c = CString::new(piece.text.replace('\0', "")).unwrap_or_default();
            let len = c.as_bytes().len();
            // SAFETY: the caller promises `callback` may be called with `user_data`; the
            // text pointer is valid for the call, as documented.
            let stop = unsafe { callback(c.as_ptr(), len, piece.token, user_data) };
            if stop != 0 {
                by_callback = true;
                gen.cancel();
            }
        }
        let reason = match gen.stop_reason() {
            _ if by_callback => phiq_stop_reason::PHIQ_STOP_CALLBACK,
            Some(StopReason::StopToken(_)) => phiq_stop_reason::PHIQ_STOP_EOS,
            Some(StopReason::StopString(_)) => phiq_stop_reason::PHIQ_STOP_STRING,
            Some(StopReason::ContextFull) => phiq_stop_reason::PHIQ_STOP_CONTEXT_FULL,
            _ => phiq_stop_reason::PHIQ_STOP_MAX_TOKENS,
        };
        if !stop_reason.is_null() {
            // SAFETY: non-null and writable by the contract.
            unsafe { stop_reason.write(reason) };
        }
        Ok(())
    })
}
