//! Longer fuzzing of the GGUF reader than the test suite's 100k mutations:
//! `cargo +nightly fuzz run gguf_header` (from the repository root).
//! Any input must parse or fail with an error; a panic or abort is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phiq::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = GgufFile::from_bytes("fuzz.gguf", data.to_vec()) {
        for t in &f.header.tensors {
            let _ = f.tensor_data(t);
        }
        for (k, _) in f.header.metadata.iter() {
            let _ = f.header.metadata.get_u32(k);
            let _ = f.header.metadata.get_str(k);
        }
    }
});
