//! Says what a file that is not GGUF looks like, so the error helps the user.

/// A short description of what `bytes` seems to be.
pub fn describe(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let lower = trimmed.to_ascii_lowercase();
    if bytes.is_empty() {
        return "the file is empty (0 bytes)".into();
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return "it is a zip archive (a PyTorch .pt/.bin checkpoint?); convert the model to GGUF with llama.cpp's convert_hf_to_gguf.py".into();
    }
    if bytes.len() >= 9 && bytes[8] == b'{' {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        if n >= 2 && n <= bytes.len() as u64 - 8 {
            return "it is a safetensors file; convert the model to GGUF with llama.cpp's convert_hf_to_gguf.py".into();
        }
    }
    if lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || lower.starts_with("<?xml")
        || lower.starts_with("<head")
    {
        return "it is an HTML/XML page, not a model (a download that saved an error or login page?)".into();
    }
    if trimmed.starts_with("version https://git-lfs") {
        return "it is a Git LFS pointer file, not the model data (run `git lfs pull`)".into();
    }
    if bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) {
        return "it is a Python pickle (a PyTorch checkpoint?); convert the model to GGUF first"
            .into();
    }
    match bytes.get(..4) {
        Some(b"lmgg") | Some(b"fmgg") | Some(b"tjgg") | Some(b"ggml") | Some(b"ggjt") | Some(b"ggmf") => {
            return "it is a legacy GGML/GGJT file (llama.cpp's format before GGUF); convert it to GGUF".into();
        }
        Some(b"FUGG") => return "its magic is byte-swapped ('FUGG'): a big-endian GGUF file; phiq reads little-endian GGUF only".into(),
        _ => {}
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return "it is a JSON/text file, not a model".into();
    }
    if bytes.len() < 4 {
        return format!("the file is only {} bytes long", bytes.len());
    }
    let printable = head
        .iter()
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count();
    if printable == head.len() {
        let first: String = trimmed.chars().take(40).collect();
        return format!("it is a text file starting with {first:?}");
    }
    format!(
        "unknown magic bytes {:02x} {:02x} {:02x} {:02x} (a GGUF file starts with 'GGUF')",
        bytes[0], bytes[1], bytes[2], bytes[3]
    )
}
