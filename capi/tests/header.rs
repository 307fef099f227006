//! The committed header `capi/include/phiq.h` must equal what cbindgen generates from
//! `src/lib.rs`, so C users always see the real ABI.
//!
//! Why a committed header checked by a test, not one generated in build.rs: the header is
//! part of the interface, so changes to it show in review diffs; building the library
//! needs no cbindgen (nor its parse of our source on every build); and packagers find
//! the file in the source tree. Regenerate with
//! `PHIQ_UPDATE_HEADER=1 cargo test -p phiq-capi --test header`.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = dir.join("include/phiq.h");
    if std::env::var("PHIQ_UPDATE_HEADER").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "capi/include/phiq.h is stale: regenerate it with PHIQ_UPDATE_HEADER=1 cargo test -p phiq-capi --test header\n--- generated ---\n{generated}"
    );
    // The header declares what the C demo and the Python example use.
    for name in [
        "phiq_model_load",
        "phiq_generate",
        "phiq_tokenize",
        "phiq_last_error",
        "PHIQ_ERR_UTF8",
    ] {
        assert!(generated.contains(name), "{name} missing from the header");
    }
}
