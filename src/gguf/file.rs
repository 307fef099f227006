//! `GgufFile`: a validated header over the file's bytes, memory-mapped (zero copy)
//! or owned (tests, small files).

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use super::reader::{Header, TensorInfo};
use crate::error::Error;

enum Bytes {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

/// A GGUF file: its parsed, validated header and its bytes.
pub struct GgufFile {
    name: String,
    bytes: Bytes,
    pub header: Header,
}

/// Asks the kernel to back the mapping with 2 MiB pages (`MADV_HUGEPAGE`). For a file
/// mapping on a filesystem with large folios (ext4, xfs, btrfs on Linux ≥ 6.x), pages
/// read from disk after this land in the page cache as 2 MiB folios and are mapped by
/// one page-table entry each: the weights are still the page cache's (zero copy, shared,
/// dropped under memory pressure), only the page size changes. Decoding streams every
/// weight once per token; with 4 KiB pages every 4 KiB costs a TLB miss and 8 GB of
/// weights take 16 MiB of page tables. Interleaved in one process, reads from 2 MiB
/// pages ran 4-11% faster than from 4 KiB pages here (`--example page_sizes` in
/// kernels/, and a two-stream C probe); the machine's bandwidth itself drifts by more
/// than that from minute to minute (30-65 GB/s), so only such pairs compare. A file
/// already cached in small pages (read by another program) keeps
/// them until the kernel drops it. Advice only: any error is ignored.
fn advise_huge_pages(m: &Mmap) {
    #[cfg(target_os = "linux")]
    {
        let _ = m.advise(memmap2::Advice::HugePage);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = m;
}

/// `(FilePmdMapped + AnonHugePages, Rss)` in bytes of the smaps entry starting at `start`.
fn parse_smaps(smaps: &str, start: usize) -> Option<(u64, u64)> {
    let head = format!("{start:x}-");
    let mut lines = smaps.lines();
    lines.by_ref().find(|l| l.starts_with(&head))?;
    let (mut huge, mut rss) = (0u64, None);
    for line in lines {
        // The next mapping's header ("start-end perms offset dev inode path") ends it.
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            break;
        }
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let kb = || -> Option<u64> { rest.trim().strip_suffix("kB")?.trim().parse().ok() };
        match key {
            "Rss" => rss = kb(),
            "FilePmdMapped" | "AnonHugePages" => huge += kb().unwrap_or(0),
            _ => {}
        }
    }
    Some((huge << 10, rss? << 10))
}

impl GgufFile {
    /// Memory-maps `path` read-only and validates its header. The weights are never
    /// copied: tensor data is borrowed from the mapping.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, Error> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::InvalidFile(format!(
                "{name}: is a directory, not a GGUF file"
            )));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        if meta.len() == 0 {
            // mmap of an empty file fails; say what the user needs to know instead.
            return Self::from_bytes(name, Vec::new());
        }
        // SAFETY: the mapping is read-only and lives as long as `GgufFile`, which hands
        // out only `&[u8]` borrowed from it. If another process truncates the file while
        // it is mapped, reads past the new end fault (SIGBUS): the same contract as every
        // mmap-based model loader (llama.cpp included); we never write through it.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        advise_huge_pages(&mmap);
        let header = Header::parse(&mmap, &name)?;
        Ok(GgufFile {
            name,
            bytes: Bytes::Mmap(mmap),
            header,
        })
    }

    /// Validates a GGUF file held in memory; `name` labels it in errors.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Result<GgufFile, Error> {
        let name = name.into();
        let header = Header::parse(&bytes, &name)?;
        Ok(GgufFile {
            name,
            bytes: Bytes::Owned(bytes),
            header,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How much of the mapping the kernel currently maps with 2 MiB pages, as
    /// (bytes in 2 MiB pages, resident bytes), from `/proc/self/smaps`; `None` for an
    /// in-memory file or where smaps is not available. See `advise_huge_pages`.
    pub fn huge_pages(&self) -> Option<(u64, u64)> {
        let Bytes::Mmap(m) = &self.bytes else {
            return None;
        };
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        parse_smaps(&smaps, m.as_ptr() as usize)
    }

    /// All the bytes of the file.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mmap(m) => m,
            Bytes::Owned(v) => v,
        }
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, Error> {
        self.header
            .tensor(name)
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
            })
    }

    /// The raw bytes of a tensor's data. An unknown tensor type is an error naming it.
    pub fn tensor_data(&self, t: &TensorInfo) -> Result<&[u8], Error> {
        if t.ty.is_none() {
            return Err(Error::UnsupportedType {
                tensor: t.name.clone(),
                ty: t.type_name(),
            });
        }
        // The range was checked against the file at parse time; `get` keeps this
        // sound even for a `TensorInfo` that came from another file.
        self.header
            .tensor_range(t)
            .and_then(|r| self.bytes().get(r))
            .ok_or_else(|| Error::Format {
                file: self.name.clone(),
                offset: t.info_offset,
                what: format!("tensor '{}': data lies outside the file", t.name),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_smaps;

    const SMAPS: &str = "\
7f0000000000-7f0000400000 r--s 00000000 fd:00 12 /tmp/a.gguf
Size:               4096 kB
Rss:                3072 kB
AnonHugePages:         0 kB
FilePmdMapped:      2048 kB
VmFlags: rd sh mr mw me ms hg
7f0000400000-7f0000401000 rw-p 00000000 00:00 0
Rss:                   4 kB
FilePmdMapped:      9999 kB
";

    #[test]
    fn smaps_entry_of_a_mapping() {
        assert_eq!(
            parse_smaps(SMAPS, 0x7f0000000000),
            Some((2048 << 10, 3072 << 10))
        );
        assert_eq!(
            parse_smaps(SMAPS, 0x7f0000400000),
            Some((9999 << 10, 4 << 10))
        );
        assert_eq!(parse_smaps(SMAPS, 0x1000), None);
    }
}
