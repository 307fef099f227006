//! Malformed GGUF input: a valid file truncated at every byte, every header position
//! overwritten with extreme values, and 100,000 seeded random mutations. Each must parse
//! or fail with an error — never panic, hang, or allocate more than a small multiple
//! of the file (the allocator below watches every allocation in this test binary).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::sample_file;
use phiq::gguf::{GgufFile, Value};
use phiq::Error;

/// The largest single allocation seen, and a hard cap above which allocation fails
/// (which aborts the test binary: a failure no one can miss).
static LARGEST: AtomicUsize = AtomicUsize::new(0);
const HARD_CAP: usize = 256 << 20;

struct Watch;

// SAFETY: defers to the system allocator for every allocation it allows; it only
// records sizes and refuses (returns null, as the contract permits) above HARD_CAP.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > HARD_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Watch = Watch;

/// Parses `bytes`; on success touches everything a caller might (all tensor data,
/// every metadata value through the typed getters).
fn exercise(bytes: Vec<u8>) -> Result<(), Error> {
    let len = bytes.len() as u64;
    let r = GgufFile::from_bytes("fuzz.gguf", bytes);
    match r {
        Err(Error::Format { offset, .. }) => {
            assert!(offset <= len, "error offset {offset} beyond file of {len}");
            Err(Error::InvalidInput(String::new()))
        }
        Err(e) => Err(e),
        Ok(f) => {
            for t in &f.header.tensors {
                if let Ok(d) = f.tensor_data(t) {
                    assert_eq!(Some(d.len() as u64), t.n_bytes);
                }
            }
            for (k, v) in f.header.metadata.iter() {
                let md = &f.header.metadata;
                let _ = md.get_u32(k);
                let _ = md.get_f32(k);
                let _ = md.get_str(k);
                let _ = md.get_as::<&[String]>(k);
                let _ = v.describe();
                if let Value::Array(a) = v {
                    let _ = a.get(a.len().saturating_sub(1));
                }
            }
            Ok(())
        }
    }
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const EXTREMES: [u64; 7] = [0, 1, 1 << 31, 1 << 32, 1 << 63, u64::MAX, u32::MAX as u64];

fn allocation_ok(file_len: usize) {
    // Parsing allocates at most a few times the file (strings as String, arrays as Vec)
    // plus small fixed overheads.
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= 64 * file_len + (1 << 20),
        "an allocation of {largest} bytes for a {file_len}-byte file"
    );
}

#[test]
fn truncated_at_every_byte() {
    let (bytes, _) = sample_file();
    let full = GgufFile::from_bytes("x", bytes.clone()).unwrap();
    // The last byte any tensor needs; the writer pads after it.
    let needed = full
        .header
        .tensors
        .iter()
        .map(|t| full.header.data_offset + t.offset + t.n_bytes.unwrap())
        .max()
        .unwrap() as usize;
    for cut in 0..bytes.len() {
        let r = exercise(bytes[..cut].to_vec());
        if cut < needed {
            assert!(r.is_err(), "a file cut at {cut} of {} parsed", bytes.len());
        }
    }
    allocation_ok(bytes.len());
}

#[test]
fn header_fields_overwritten_with_extremes() {
    let (bytes, _) = sample_file();
    let header_len = GgufFile::from_bytes("x", bytes.clone())
        .unwrap()
        .header
        .data_offset as usize;
    let mut cases = 0;
    for pos in 0..header_len {
        for width in [1usize, 2, 4, 8] {
            for &v in &EXTREMES {
                if pos + width > bytes.len() {
                    continue;
                }
                let mut m = bytes.clone();
                m[pos..pos + width].copy_from_slice(&v.to_le_bytes()[..width]);
                let _ = exercise(m);
                cases += 1;
            }
        }
    }
    assert!(cases > 10_000);
    allocation_ok(bytes.len());
}

#[test]
fn random_mutations() {
    let (bytes, _) = sample_file();
    let header_len = GgufFile::from_bytes("x", bytes.clone())
        .unwrap()
        .header
        .data_offset as usize;
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..100_000 {
        let mut m = bytes.clone();
        for _ in 0..1 + rng.below(4) {
            // Mostly hit the header, where the structure is.
            let span = if rng.below(4) == 0 {
                m.len()
            } else {
                header_len
            };
            let pos = rng.below(span.min(m.len()));
            match rng.below(6) {
                0 => m[pos] = rng.next() as u8,
                1 => m[pos] ^= 1 << rng.below(8),
                2 => {
                    let v = EXTREMES[rng.below(EXTREMES.len())];
                    let w = [1, 2, 4, 8][rng.below(4)];
                    let end = (pos + w).min(m.len());
                    m[pos..end].copy_from_slice(&v.to_le_bytes()[..end - pos]);
                }
                3 => m.truncate(pos),
                4 => {
                    let n = rng.below(16);
                    m.splice(pos..pos, (0..n).map(|i| i as u8));
                }
                _ => {
                    let end = (pos + rng.below(16)).min(m.len());
                    m.drain(pos..end);
                }
            }
            if m.is_empty() {
                break;
            }
        }
        match exercise(m) {
            Ok(()) => ok += 1,
            Err(_) => err += 1,
        }
    }
    // Both outcomes must occur, or the mutations are not reaching the parser.
    assert!(ok > 100 && err > 10_000, "ok {ok}, err {err}");
    allocation_ok(bytes.len() + 64);
}
