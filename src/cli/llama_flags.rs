//! llama.cpp's multi-letter short flags (`-ngl 99`, `-fa`, `-ctk q8_0`, `-cnv`, `-hf`), which
//! clap would read as bundles of single letters and answer with misleading errors: turned
//! into what phiq does with them before parsing, each with a note for stderr.
//!
//! - `-ngl N` / `--n-gpu-layers N` / `--gpu-layers N`: accepted and ignored (phiq runs on
//!   the CPU only);
//! - `-fa [on|off|auto]` / `--flash-attn`: accepted and ignored (phiq's attention is always
//!   one fused pass over the KV cache);
//! - `-ctk T`, `-ctv T`: `--cache-type-k T`, `--cache-type-v T`;
//! - `-hf R` / `-hfr R` / `--hf-repo R`: `--hf-repo R` (download from the Hugging Face hub),
//!   `-hff F` / `--hf-file F`: `--hf-file F`;
//! - `-cnv` / `--conversation` and `-hft` / `--hf-token`: a clear error saying what to use
//!   instead.

use std::ffi::OsString;

/// The rewritten arguments and the notes to print, or an error message.
pub fn translate(args: Vec<OsString>) -> Result<(Vec<OsString>, Vec<String>), String> {
    let mut out = Vec::with_capacity(args.len());
    let mut notes = Vec::new();
    let mut it = args.into_iter().peekable();
    // Everything after `--` is positional text, never a flag.
    let mut positional = false;
    while let Some(arg) = it.next() {
        let Some(flag) = arg.to_str().filter(|_| !positional).map(str::to_owned) else {
            out.push(arg);
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n.to_string(), Some(v.to_string())),
            _ => (flag.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("{name} needs a value ({what})")),
            }
        };
        match name.as_str() {
            "--" => {
                positional = true;
                out.push(arg);
            }
            "-ngl" | "--n-gpu-layers" | "--gpu-layers" => {
                let n = value("a layer count")?;
                notes.push(format!(
                    "{name} {n} ignored: phiq runs on the CPU only (no layers to offload)"
                ));
            }
            "-fa" | "--flash-attn" => {
                // Newer llama.cpp takes on|off|auto; older a bare flag.
                let v = match inline.clone() {
                    Some(v) => Some(v),
                    None => it
                        .next_if(|v| matches!(v.to_str(), Some("on" | "off" | "auto")))
                        .and_then(|v| v.into_string().ok()),
                };
                let shown = v.map_or(name.clone(), |v| format!("{name} {v}"));
                notes.push(format!(
                    "{shown} ignored: phiq's attention is always one fused pass over the KV cache"
                ));
            }
            "-ctk" | "--cache-type-k" => {
                out.push("--cache-type-k".into());
                out.push(value("f16, f32, bf16, q8_0 or q4_0")?.into());
            }
            "-ctv" | "--cache-type-v" => {
                out.push("--cache-type-v".into());
                out.push(value("f16, f32, bf16, q8_0 or q4_0")?.into());
            }
            "-cnv" | "--conversation" => {
                return Err(format!(
                    "{name}: for a conversation use `phiq chat` (the same model flags; --system TEXT for a system prompt)"
                ))
            }
            "-hf" | "--hf-repo" | "-hfr" => {
                out.push("--hf-repo".into());
                out.push(value("a Hugging Face repository, OWNER/REPO[:QUANT]")?.into());
            }
            "-hff" | "--hf-file" => {
                out.push("--hf-file".into());
                out.push(value("a file of the --hf-repo repository")?.into());
            }
            "-hft" | "--hf-token" => {
                return Err(format!(
                    "{name}: phiq reads the Hugging Face token from the HF_TOKEN environment variable (HF_TOKEN=... phiq run -hf ...)"
                ))
            }
            _ => out.push(arg),
        }
    }
    Ok((out, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Result<(Vec<String>, Vec<String>), String> {
        let args = args.iter().map(OsString::from).collect();
        translate(args).map(|(a, n)| (a.into_iter().map(|s| s.into_string().unwrap()).collect(), n))
    }

    #[test]
    fn llama_cpp_flags() {
        let (a, n) = t(&["phiq", "run", "-ngl", "99", "-p", "x", "-fa", "-n", "4"]).unwrap();
        assert_eq!(a, ["phiq", "run", "-p", "x", "-n", "4"]);
        assert_eq!(n.len(), 2);
        let (a, _) = t(&["phiq", "run", "-fa", "on", "-ctk", "q8_0", "-ctv", "f16"]).unwrap();
        assert_eq!(
            a,
            [
                "phiq",
                "run",
                "--cache-type-k",
                "q8_0",
                "--cache-type-v",
                "f16"
            ]
        );
        let (a, _) = t(&["phiq", "run", "--n-gpu-layers=40", "-ctk=f32"]).unwrap();
        assert_eq!(a, ["phiq", "run", "--cache-type-k", "f32"]);
        assert!(t(&["phiq", "run", "-ctk"]).is_err());
        assert!(t(&["phiq", "run", "-cnv"])
            .unwrap_err()
            .contains("phiq chat"));
        let (a, _) = t(&["phiq", "run", "-hf", "x/y:Q8_0", "-hff", "f.gguf"]).unwrap();
        assert_eq!(
            a,
            [
                "phiq",
                "run",
                "--hf-repo",
                "x/y:Q8_0",
                "--hf-file",
                "f.gguf"
            ]
        );
        let (a, _) = t(&["phiq", "inspect", "-hfr=x/y", "--hf-repo", "z/w"]).unwrap();
        assert_eq!(
            a,
            ["phiq", "inspect", "--hf-repo", "x/y", "--hf-repo", "z/w"]
        );
        assert!(t(&["phiq", "run", "-hf"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(t(&["phiq", "run", "-hft", "hf_x"])
            .unwrap_err()
            .contains("HF_TOKEN"));
        assert!(t(&["phiq", "run", "-ngl"])
            .unwrap_err()
            .contains("needs a value"));
        // After `--` and as values of other flags' text, nothing is rewritten.
        let (a, _) = t(&["phiq", "tokenize", "--", "-ngl"]).unwrap();
        assert_eq!(a, ["phiq", "tokenize", "--", "-ngl"]);
    }
}
