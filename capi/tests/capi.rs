//! The C interface from C and from Python: `tests/c/capi_demo.c` is compiled with `cc`
//! against the built `libphiq_capi`, and `examples/python/phiq_ctypes.py` loads it with
//! ctypes; both run on the demo model and their output is checked against the Rust
//! library (token ids, greedy text, early stop, error codes).

use std::path::PathBuf;
use std::process::Command;

use phiq::{GenerateParams, Model, ModelOptions, SamplerParams};

const PROMPT: &str = "Alice was beginning to get very tired of sitting by her sister";
const MAX_TOKENS: usize = 24;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn demo_model() -> PathBuf {
    repo_root().join("models/phiq-demo.gguf")
}

/// The directory of the built libraries: the test binary is `<profile>/deps/capi-*`.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// What the Rust library says: (prompt ids, greedy text, text of the first 3 pieces).
fn reference() -> (Vec<u32>, String, String) {
    let model = Model::load(demo_model(), &ModelOptions::default()).unwrap();
    let ids = model.tokenizer().unwrap().encode(PROMPT, true, false);
    let mut session = model.session(ids.len() + MAX_TOKENS).unwrap();
    let params = GenerateParams {
        max_tokens: MAX_TOKENS,
        sampler: SamplerParams::greedy(),
        ..GenerateParams::default()
    };
    let pieces: Vec<String> = session
        .generate(&ids, params)
        .unwrap()
        .map(|p| p.unwrap().text)
        .filter(|t| !t.is_empty())
        .collect();
    assert!(pieces.len() > 3, "the demo model generates text");
    (ids, pieces.concat(), pieces[..3].concat())
}

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no '{key}' line in:\n{out}"))
}

#[test]
fn c_program_matches_the_rust_library() {
    let (ids, text, early) = reference();
    let dir = lib_dir();
    assert!(
        dir.join("libphiq_capi.so").exists() || dir.join("libphiq_capi.dylib").exists(),
        "no libphiq_capi.so in {}: build it first (`cargo build -p phiq-capi`; tools/test.sh does)",
        dir.display()
    );
    let exe = std::env::temp_dir().join(format!("phiq_capi_demo_{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .arg(repo_root().join("capi/tests/c/capi_demo.c"))
        .arg("-I")
        .arg(repo_root().join("capi/include"))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg("-L")
        .arg(&dir)
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .arg("-lphiq_capi")
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler '{cc}': {e}"));
    assert!(status.success(), "compiling capi_demo.c failed");
    let out = Command::new(&exe)
        .arg(demo_model())
        .arg(PROMPT)
        .arg(MAX_TOKENS.to_string())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&exe);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "capi_demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(line(&stdout, "version: "), env!("CARGO_PKG_VERSION"));
    // Size query: PHIQ_ERR_BUFFER_TOO_SMALL (5) with the count needed.
    assert_eq!(line(&stdout, "size_query: "), format!("5 {}", ids.len()));
    let want: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(line(&stdout, "tokens: "), format!("0 {}", want.join(" ")));
    // PHIQ_OK, stopped at max_tokens (0).
    assert!(line(&stdout, "generate: ").starts_with("0 0 "), "{stdout}");
    assert_eq!(line(&stdout, "text: "), text);
    // The callback's nonzero return stops after 3 pieces: PHIQ_STOP_CALLBACK (4).
    assert_eq!(line(&stdout, "early: "), "0 4 3");
    assert_eq!(line(&stdout, "early_text: "), early);
    assert!(line(&stdout, "err_null: ").starts_with("1 path is NULL"));
    let load = line(&stdout, "err_load: ");
    assert!(
        load.starts_with("3 ") && load.contains("/nonexistent/model.gguf"),
        "{load}"
    );
    assert!(line(&stdout, "err_utf8: ").starts_with("2 prompt is not valid UTF-8 (byte 4)"));
    assert!(line(&stdout, "err_callback: ").starts_with("1 callback is NULL"));
    assert_eq!(line(&stdout, "err_small: "), format!("5 {}", ids.len()));
    assert!(line(&stdout, "err_model: ").starts_with("1 model is NULL"));
}

/// A Python 3 (only the standard library is needed): `PHIQ_PYTHON`, else `python3`.
fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PHIQ_PYTHON").map(PathBuf::from),
        Some(PathBuf::from("python3")),
    ];
    for py in candidates.into_iter().flatten() {
        if Command::new(&py)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(py);
        }
    }
    if std::env::var("PHIQ_REQUIRE_REFERENCES").as_deref() == Ok("1") {
        panic!("PHIQ_REQUIRE_REFERENCES=1 but no python3 for the ctypes example");
    }
    eprintln!("SKIPPED: no python3; the ctypes example was not run");
    None
}

#[test]
fn python_ctypes_example_matches_the_rust_library() {
    let Some(py) = python() else { return };
    let (ids, text, _) = reference();
    let dir = lib_dir();
    let lib = ["libphiq_capi.so", "libphiq_capi.dylib"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .expect("built libphiq_capi");
    let out = Command::new(py)
        .arg(repo_root().join("examples/python/phiq_ctypes.py"))
        .arg(lib)
        .arg(demo_model())
        .arg(PROMPT)
        .arg(MAX_TOKENS.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "phiq_ctypes.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(line(&stdout, "tokens: "), want.join(" "));
    assert_eq!(line(&stdout, "text: "), text);
    assert_eq!(line(&stdout, "reason: "), "0");
    let err = line(&stdout, "error: ");
    assert!(
        err.starts_with("phiq error 3:") && err.contains("/nonexistent/model.gguf"),
        "{err}"
    );
}

/// `phiq_model_load_with_cache` honours the KV cache types: seeded text at temperature 1.5
/// (where the cache's rounding moves the samples; greedy text of the demo model does not
/// change) through the C interface with q8_0 keys and q4_0 values equals the Rust
/// library's with the same types and differs from the f16 cache's, so the types were not
/// ignored; an unknown type is `PHIQ_ERR_INVALID` naming the supported ones.
#[test]
fn kv_cache_types_through_the_c_interface() {
    use phiq_capi::*;
    use std::ffi::{c_char, c_void, CStr, CString};

    unsafe extern "C" fn collect(
        text: *const c_char,
        len: usize,
        _t: u32,
        user: *mut c_void,
    ) -> i32 {
        // SAFETY: phiq passes `len` bytes of UTF-8 text and our String as user data.
        unsafe {
            let bytes = std::slice::from_raw_parts(text.cast::<u8>(), len);
            (*user.cast::<String>()).push_str(std::str::from_utf8(bytes).unwrap());
        }
        0
    }
    let path = CString::new(demo_model().to_str().unwrap()).unwrap();
    let prompt = CString::new(PROMPT).unwrap();
    let c_text = |k: &str, v: &str| -> Result<String, (phiq_status, String)> {
        let (k, v) = (CString::new(k).unwrap(), CString::new(v).unwrap());
        let mut model = std::ptr::null_mut();
        // SAFETY: valid strings and out pointer.
        let st = unsafe {
            phiq_model_load_with_cache(path.as_ptr(), 1, k.as_ptr(), v.as_ptr(), &mut model)
        };
        if st != phiq_status::PHIQ_OK {
            // SAFETY: phiq_last_error never returns NULL.
            let msg = unsafe { CStr::from_ptr(phiq_last_error()) };
            return Err((st, msg.to_string_lossy().into_owned()));
        }
        let mut params = phiq_generate_default_params();
        params.max_tokens = MAX_TOKENS as u32;
        params.temperature = 1.5;
        params.top_k = 0;
        params.top_p = 1.0;
        params.min_p = 0.0;
        params.seed = 7;
        let mut out = String::new();
        let mut reason = phiq_stop_reason::PHIQ_STOP_MAX_TOKENS;
        // SAFETY: a model from phiq_model_load_with_cache, valid strings and pointers.
        let st = unsafe {
            phiq_generate(
                model,
                prompt.as_ptr(),
                &params,
                Some(collect),
                (&mut out as *mut String).cast(),
                &mut reason,
            )
        };
        // SAFETY: the model from above, freed once.
        unsafe { phiq_model_free(model) };
        assert_eq!(st, phiq_status::PHIQ_OK);
        Ok(out)
    };
    let rust_text = |k: &str, v: &str| -> String {
        let opts = ModelOptions {
            threads: Some(1),
            cache_type_k: k.parse().unwrap(),
            cache_type_v: v.parse().unwrap(),
            ..Default::default()
        };
        let model = Model::load(demo_model(), &opts).unwrap();
        let ids = model.tokenizer().unwrap().encode(PROMPT, true, false);
        let mut session = model.session(ids.len() + MAX_TOKENS).unwrap();
        let params = GenerateParams {
            max_tokens: MAX_TOKENS,
            sampler: SamplerParams {
                temperature: 1.5,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed: 7,
                ..SamplerParams::default()
            },
            ..GenerateParams::default()
        };
        let pieces: Vec<String> = session
            .generate(&ids, params)
            .unwrap()
            .map(|p| p.unwrap().text)
            .collect();
        pieces.concat()
    };
    let quantized = c_text("q8_0", "q4_0").unwrap();
    assert_eq!(quantized, rust_text("q8_0", "q4_0"));
    assert_ne!(
        quantized,
        rust_text("f16", "f16"),
        "quantized K/V change the sampled text"
    );
    let (st, msg) = c_text("q3_k", "f16").unwrap_err();
    assert_eq!(st, phiq_status::PHIQ_ERR_INVALID);
    assert!(
        msg.contains("cache_type_k") && msg.contains("q8_0 or q4_0"),
        "{msg}"
    );
}
