//! phiq's GGUF reader and writer against gguf-py (an independent implementation):
//! files gguf-py writes read identically by `phiq inspect --json`, files our writer
//! makes read identically by gguf-py, and every GGUF in ../shared/fixtures agrees.

mod common;

use std::path::PathBuf;

use common::*;
use phiq::gguf::Value;
use serde_json::Value as Json;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("phiq-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn files_written_by_gguf_py_read_identically() {
    let Some(py) = reference_python() else { return };
    let dir = tmpdir("gguf-py-samples");
    run_tool(&py, &["write-samples", dir.to_str().unwrap()]);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    let mut args = vec!["check-inspect", env!("CARGO_BIN_EXE_phiq")];
    args.extend(files.iter().map(String::as_str));
    let out = run_tool(&py, &args);
    assert_eq!(out.matches("ok ").count(), 3, "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fixtures_read_identically() {
    let Some(py) = reference_python() else { return };
    let mut files: Vec<String> = std::fs::read_dir(shared_fixtures().join("vocab"))
        .expect("../shared/fixtures/vocab")
        .chain(std::fs::read_dir(repo_root().join("tests/fixtures")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut args = vec!["check-inspect", env!("CARGO_BIN_EXE_phiq")];
    args.extend(files.iter().map(String::as_str));
    let out = run_tool(&py, &args);
    assert_eq!(out.matches("ok ").count(), files.len(), "{out}");
}

/// Compares one of our metadata values with gguf-py's JSON reading of it.
fn same(ours: &Value, theirs: &Json) -> bool {
    use phiq::gguf::Array;
    let num = |x: f64| theirs.as_f64() == Some(x);
    match ours {
        Value::F32(x) => theirs.as_f64().map(|t| t as f32) == Some(*x),
        Value::F64(x) => num(*x),
        Value::Bool(b) => theirs.as_bool() == Some(*b),
        Value::String(s) => theirs.as_str() == Some(s),
        Value::Array(a) => {
            let Some(items) = theirs.as_array() else {
                return false;
            };
            if items.len() != a.len() {
                return false;
            }
            if let Array::Array(inner) = a {
                return inner
                    .iter()
                    .zip(items)
                    .all(|(x, t)| same(&Value::Array(x.clone()), t));
            }
            (0..a.len()).all(|i| same(&a.get(i).unwrap(), &items[i]))
        }
        v => {
            let i = v.as_i128().unwrap();
            theirs.as_i64().map(i128::from) == Some(i) || theirs.as_u64().map(i128::from) == Some(i)
        }
    }
}

#[test]
fn files_written_by_phiq_read_identically_by_gguf_py() {
    let Some(py) = reference_python() else { return };
    let (bytes, data) = sample_file();
    let dir = tmpdir("phiq-written");
    let path = dir.join("sample.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let dump: Json =
        serde_json::from_str(&run_tool(&py, &["dump", path.to_str().unwrap()])).unwrap();

    assert_eq!(dump["version"], 3);
    let meta = sample_metadata();
    let theirs = dump["metadata"].as_object().unwrap();
    let keys: Vec<&String> = theirs.keys().collect();
    let ours: Vec<&String> = meta.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ours);
    for (k, v) in &meta {
        assert!(
            same(v, &theirs[k]),
            "{k}: ours {v:?}, gguf-py {}",
            theirs[k]
        );
        let ty = match v {
            Value::Array(a) => format!("ARRAY[{}]", a.elem_type()),
            v => v.value_type().to_string(),
        };
        assert_eq!(dump["metadata_types"][k], ty.as_str(), "{k}");
    }
    let tensors = dump["tensors"].as_array().unwrap();
    let specs = sample_tensors();
    assert_eq!(tensors.len(), specs.len());
    for ((t, spec), d) in tensors.iter().zip(&specs).zip(&data) {
        assert_eq!(t["name"], spec.name.as_str());
        assert_eq!(t["type"], spec.ty.name());
        assert_eq!(t["shape"], serde_json::json!(spec.dims));
        assert_eq!(t["n_bytes"], d.len() as u64);
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(t["data_hex"], hex.as_str(), "{}", spec.name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
