//! The GGUF reader and writer: round trips and every class of malformed header,
//! each giving a clear error that names what is wrong and where.

mod common;

use common::*;
use phiq::gguf::{Array, GgufFile, GgufWriter, Header, TensorSpec, Value};
use phiq::kernels::GgmlType;
use phiq::Error;

fn parse(bytes: &[u8]) -> Result<Header, Error> {
    Header::parse(bytes, "test.gguf")
}

fn err_text(bytes: &[u8]) -> String {
    match parse(bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A minimal v3 header writer for hand-made malformed files.
struct Raw(Vec<u8>);
impl Raw {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, x: u32) -> &mut Raw {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(&mut self, x: u64) -> &mut Raw {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Raw {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Raw {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad_to(&mut self, align: usize) -> &mut Raw {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Raw {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

#[test]
fn writer_reader_round_trip() {
    let (bytes, data) = sample_file();
    let file = GgufFile::from_bytes("sample.gguf", bytes).unwrap();
    let h = &file.header;
    assert_eq!(h.version, 3);
    let meta = sample_metadata();
    assert_eq!(h.metadata.len(), meta.len());
    for ((k, v), (k2, v2)) in meta.iter().zip(h.metadata.iter()) {
        assert_eq!(k, k2);
        assert_eq!(v, v2, "{k}");
    }
    let specs = sample_tensors();
    assert_eq!(h.tensors.len(), specs.len());
    for ((spec, t), d) in specs.iter().zip(&h.tensors).zip(&data) {
        assert_eq!(t.name, spec.name);
        assert_eq!(t.dims, spec.dims);
        assert_eq!(t.ty, Some(spec.ty));
        assert_eq!((h.data_offset + t.offset) % h.alignment, 0);
        assert_eq!(file.tensor_data(t).unwrap(), &d[..], "{}", t.name);
    }
    assert_eq!(
        h.n_params(),
        specs
            .iter()
            .map(|s| s.dims.iter().product::<u64>())
            .sum::<u64>()
    );
}

#[test]
fn open_from_disk_is_mmapped_and_equal() {
    let (bytes, _) = sample_file();
    let dir = std::env::temp_dir().join(format!("phiq-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sample.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.bytes(), &bytes[..]);
    assert_eq!(file.header.tensors.len(), sample_tensors().len());
    // A directory and a missing file are clear errors.
    let e = GgufFile::open(&dir).err().unwrap().to_string();
    assert!(e.contains("is a directory"), "{e}");
    let e = GgufFile::open(dir.join("nope.gguf")).err().unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("nope.gguf"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn typed_getters_accept_fitting_widths_and_name_the_key() {
    let (bytes, _) = sample_file();
    let h = parse(&bytes).unwrap();
    let md = &h.metadata;
    assert_eq!(md.get_u32("test.u8").unwrap(), 255);
    assert_eq!(md.get_u32("test.u16").unwrap(), 65535);
    assert_eq!(md.get_u32("test.u32").unwrap(), 4_000_000_000);
    assert_eq!(md.get_as::<i32>("test.i8").unwrap(), -128);
    assert_eq!(md.get_as::<i64>("test.i64").unwrap(), i64::MIN);
    assert_eq!(md.get_u64("test.u64").unwrap(), u64::MAX);
    assert_eq!(md.get_f32("test.f32").unwrap(), 1e-5);
    assert!(md.get_bool("test.bool").unwrap());
    assert_eq!(md.get_str("general.architecture").unwrap(), "phi3");
    assert_eq!(md.get_as::<&[String]>("test.arr_str").unwrap().len(), 3);
    assert_eq!(md.get_as::<&[i32]>("test.arr_i32").unwrap()[0], -3);
    assert_eq!(md.opt_as::<u32>("no.such.key").unwrap(), None);

    let e = md.get_u32("test.i32").unwrap_err().to_string();
    assert!(e.contains("test.i32") && e.contains("INT32 -7"), "{e}");
    let e = md.get_u32("test.u64").unwrap_err().to_string();
    assert!(e.contains("test.u64") && e.contains("UINT64"), "{e}");
    let e = md.get_str("test.u8").unwrap_err().to_string();
    assert!(
        e.contains("test.u8") && e.contains("expected STRING") && e.contains("found UINT8"),
        "{e}"
    );
    let e = md.get_u32("phi3.block_count").unwrap_err();
    assert!(matches!(e, Error::MissingKey { .. }));
    assert!(e.to_string().contains("phi3.block_count"));
}

#[test]
fn version_magic_and_endianness() {
    let e = err_text(&Raw::new(1, 0, 0).0);
    assert!(e.contains("unsupported GGUF version 1"), "{e}");
    let e = err_text(&Raw::new(4, 0, 0).0);
    assert!(e.contains("unsupported GGUF version 4"), "{e}");
    // Version 3 written big-endian.
    let mut be = b"GGUF".to_vec();
    be.extend_from_slice(&3u32.to_be_bytes());
    be.extend_from_slice(&0u64.to_be_bytes());
    be.extend_from_slice(&0u64.to_be_bytes());
    let e = err_text(&be);
    assert!(e.contains("big-endian"), "{e}");
    // Version 2 files parse.
    assert!(parse(&Raw::new(2, 0, 0).0).is_ok());
}

#[test]
fn non_gguf_files_are_named() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "empty"),
        (b"PK\x03\x04rest of a zip".to_vec(), "zip"),
        (
            {
                let mut v = 20u64.to_le_bytes().to_vec();
                v.extend_from_slice(b"{\"__metadata__\": {}} and tensors");
                v
            },
            "safetensors",
        ),
        (
            b"\n<!DOCTYPE html><html><body>404</body></html>".to_vec(),
            "HTML",
        ),
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n".to_vec(),
            "Git LFS",
        ),
        (b"tjgg\x01\x00\x00\x00".to_vec(), "legacy GGML"),
        (b"\x80\x02}q\x00".to_vec(), "pickle"),
        (b"\x00\x01\x02\x03\x04".to_vec(), "unknown magic"),
        (b"GG".to_vec(), "only 2 bytes"),
    ];
    for (bytes, want) in cases {
        let e = parse(&bytes).unwrap_err();
        assert!(matches!(e, Error::NotGguf { .. }), "{e}");
        let e = e.to_string();
        assert!(e.contains(want), "{want}: {e}");
        assert!(e.contains("test.gguf"), "{e}");
    }
}

#[test]
fn counts_too_large_for_the_file() {
    let e = err_text(&Raw::new(3, u64::MAX, 0).0);
    assert!(e.contains("byte 8") && e.contains("tensor count"), "{e}");
    let e = err_text(&Raw::new(3, 1000, 0).0);
    assert!(e.contains("cannot fit"), "{e}");
    let e = err_text(&Raw::new(3, 0, 1 << 40).0);
    assert!(
        e.contains("byte 16") && e.contains("metadata key count"),
        "{e}"
    );
    // A string whose length exceeds what is left.
    let mut r = Raw::new(3, 0, 1);
    r.u64(1 << 40).zeros(8);
    let e = err_text(&r.0);
    assert!(e.contains("byte 24") && e.contains("limit"), "{e}");
    let mut r = Raw::new(3, 0, 1);
    r.u64(100).zeros(10);
    let e = err_text(&r.0);
    assert!(e.contains("truncated") && e.contains("metadata key"), "{e}");
    // An array whose length cannot fit.
    let mut r = Raw::new(3, 0, 1);
    r.str("k").u32(9).u32(6).u64(1 << 30).zeros(16);
    let e = err_text(&r.0);
    assert!(e.contains("'k'") && e.contains("array length"), "{e}");
}

#[test]
fn bad_metadata() {
    // Unknown value type.
    let mut r = Raw::new(3, 0, 1);
    r.str("x.y").u32(13).u32(0);
    let e = err_text(&r.0);
    assert!(
        e.contains("'x.y'") && e.contains("unknown value type 13"),
        "{e}"
    );
    // Duplicate key.
    let mut r = Raw::new(3, 0, 2);
    r.str("a").u32(4).u32(1).str("a").u32(4).u32(2);
    let e = err_text(&r.0);
    assert!(
        e.contains("duplicate metadata key 'a'") && e.contains("byte 41"),
        "{e}"
    );
    // Invalid UTF-8.
    let mut r = Raw::new(3, 0, 1);
    r.str("k").u32(8).u64(2);
    r.0.extend_from_slice(&[0xff, 0xfe]);
    let e = err_text(&r.0);
    assert!(e.contains("invalid UTF-8"), "{e}");
    // Bool that is neither 0 nor 1.
    let mut r = Raw::new(3, 0, 1);
    r.str("b").u32(7);
    r.0.push(7);
    assert!(err_text(&r.0).contains("bool"));
    // Nesting deeper than the cap.
    let mut r = Raw::new(3, 0, 1);
    r.str("deep").u32(9);
    for _ in 0..20 {
        r.u32(9).u64(1);
    }
    r.u32(4).u64(0);
    let e = err_text(&r.0);
    assert!(e.contains("nested deeper"), "{e}");
    // Alignment not a power of two.
    let mut r = Raw::new(3, 0, 1);
    r.str("general.alignment").u32(4).u32(48);
    let e = err_text(&r.0);
    assert!(
        e.contains("general.alignment") && e.contains("power of two"),
        "{e}"
    );
}

#[test]
fn bad_tensor_table() {
    let one = |dims: &[u64], ty: u32, offset: u64, data: usize| {
        let mut r = Raw::new(3, 1, 0);
        r.tensor("blk.0.attn_q.weight", dims, ty, offset)
            .pad_to(32)
            .zeros(data);
        r.0
    };
    // Valid baseline.
    assert!(parse(&one(&[32, 2], 0, 0, 256)).is_ok());
    let e = err_text(&one(&[32, 0], 0, 0, 256));
    assert!(
        e.contains("blk.0.attn_q.weight") && e.contains("dimension 1 is 0"),
        "{e}"
    );
    let e = err_text(&one(&[1, 1, 1, 1, 1], 0, 0, 256));
    assert!(e.contains("5 dimensions"), "{e}");
    let e = err_text(&one(&[1 << 40, 1 << 40], 0, 0, 256));
    assert!(e.contains("overflows"), "{e}");
    let e = err_text(&one(&[48, 2], 2, 0, 256));
    assert!(e.contains("not a multiple of Q4_0's block size 32"), "{e}");
    let e = err_text(&one(&[32, 2], 0, 16, 256));
    assert!(e.contains("not a multiple of the alignment"), "{e}");
    let e = err_text(&one(&[32, 2], 0, 0, 100));
    assert!(
        e.contains("file truncated: tensor 'blk.0.attn_q.weight' needs bytes up to")
            && e.contains("incomplete download"),
        "{e}"
    );
    let e = err_text(&one(&[32, 2], 0, u64::MAX - 31, 256));
    assert!(e.contains("overflows") || e.contains("truncated"), "{e}");

    // Duplicate names and overlapping data.
    let mut r = Raw::new(3, 2, 0);
    r.tensor("t", &[8], 0, 0)
        .tensor("t", &[8], 0, 32)
        .pad_to(32)
        .zeros(64);
    assert!(err_text(&r.0).contains("duplicate tensor name 't'"));
    let mut r = Raw::new(3, 2, 0);
    r.tensor("a", &[16], 0, 0)
        .tensor("b", &[8], 0, 32)
        .pad_to(32)
        .zeros(128);
    let e = err_text(&r.0);
    assert!(
        e.contains("'a'") && e.contains("overlaps") && e.contains("'b'"),
        "{e}"
    );
}

#[test]
fn unknown_tensor_type_is_inspectable_but_not_usable() {
    let mut r = Raw::new(3, 2, 0);
    r.tensor("weird", &[32], 77, 0)
        .tensor("ok", &[8], 0, 64)
        .pad_to(32)
        .zeros(96);
    let file = GgufFile::from_bytes("t.gguf", r.0).unwrap();
    let weird = file.tensor("weird").unwrap();
    assert_eq!(weird.ty, None);
    let e = file.tensor_data(weird).unwrap_err();
    assert!(matches!(e, Error::UnsupportedType { .. }));
    assert!(e.to_string().contains("'weird'") && e.to_string().contains("77"));
    let ok = file.tensor("ok").unwrap();
    assert_eq!(file.tensor_data(ok).unwrap().len(), 32);
    assert!(matches!(
        file.tensor("missing").unwrap_err(),
        Error::MissingTensor { .. }
    ));
}

#[test]
fn writer_streams_and_checks() {
    let specs = vec![
        TensorSpec {
            name: "a".into(),
            dims: vec![3],
            ty: GgmlType::F32,
        },
        TensorSpec {
            name: "b".into(),
            dims: vec![32],
            ty: GgmlType::Q8_0,
        },
    ];
    let meta = vec![("general.alignment".to_string(), Value::U32(64))];
    // Byte by byte.
    let mut w = GgufWriter::new(Vec::new(), "x", &meta, &specs).unwrap();
    let data: Vec<u8> = (0..12 + 34).map(|i| i as u8).collect();
    for b in &data {
        w.write_data(std::slice::from_ref(b)).unwrap();
    }
    let bytes = w.finish().unwrap();
    let f = GgufFile::from_bytes("x", bytes).unwrap();
    assert_eq!(f.header.alignment, 64);
    assert_eq!(f.header.data_offset % 64, 0);
    assert_eq!(f.tensor_data(f.tensor("b").unwrap()).unwrap(), &data[12..]);
    assert_eq!(f.tensor("b").unwrap().offset, 64);

    // Too little or too much data, bad shapes, bad alignment.
    let w = GgufWriter::new(Vec::new(), "x", &meta, &specs).unwrap();
    assert!(w.finish().unwrap_err().to_string().contains("'a'"));
    let mut w = GgufWriter::new(Vec::new(), "x", &[], &specs).unwrap();
    assert!(w.write_data(&[0; 100]).is_err());
    let bad = TensorSpec {
        name: "c".into(),
        dims: vec![33],
        ty: GgmlType::Q4_0,
    };
    assert!(GgufWriter::new(Vec::new(), "x", &[], &[bad]).is_err());
    let meta = vec![("general.alignment".to_string(), Value::U32(3))];
    assert!(GgufWriter::new(Vec::new(), "x", &meta, &specs).is_err());
    let meta = vec![(
        "general.alignment".to_string(),
        Value::Array(Array::U8(vec![])),
    )];
    assert!(GgufWriter::new(Vec::new(), "x", &meta, &specs).is_err());
}
