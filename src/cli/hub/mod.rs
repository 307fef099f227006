//! Models from the Hugging Face hub, as `phiq pull REPO[:QUANT]` and `-hf REPO[:QUANT]` get
//! them (llama.cpp's `-hf` syntax, ollama's "one command and it runs").
//!
//! - [`HfSpec`]: `owner/name[:QUANT]`, parsed and checked;
//! - [`select`]: which `.gguf` of a repository's file list a quant tag names (llama.cpp's
//!   rule: the tag, case-insensitively, in the file name before `.` or `-`; Q4_K_M, then
//!   Q8_0, when no tag is given);
//! - [`cache`]: where downloaded models live (`$PHIQ_CACHE/models/{owner}/{name}/{file}`)
//!   and how names given to `-m` / `phiq rm` find them;
//! - [`download`]: the hub's HTTP API, resumable downloads checked against the hub's
//!   size and sha256.
//!
//! The three entry points the CLI uses: [`resolve_hf`] (`-hf`: the cache first, the
//! network only when the model is not cached), [`pull`] (`phiq pull`: always asks the hub,
//! downloads when the cached copy is missing or differs) and [`cache::Cache::lookup`]
//! (`-m NAME`: the cache only).

pub mod cache;
pub mod download;
pub mod select;

use std::path::PathBuf;

use phiq::{Error, Result};

use cache::Cache;
use download::Hub;

/// The quant tags tried, in order, when `REPO` is given without `:QUANT` (llama.cpp's).
pub const DEFAULT_QUANTS: [&str; 2] = ["Q4_K_M", "Q8_0"];

/// `owner/name[:QUANT]`, plus llama.cpp's `--hf-file FILE` (a file of the repository,
/// chosen by path instead of by quant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfSpec {
    /// `owner/name`, as the hub spells it.
    pub repo: String,
    /// The quant tag after `:`, as given (matched case-insensitively).
    pub quant: Option<String>,
    /// An exact file path in the repository (`--hf-file`).
    pub file: Option<String>,
}

impl HfSpec {
    /// Parses `owner/name[:QUANT]`; the error says what a valid name looks like.
    pub fn parse(s: &str) -> Result<HfSpec> {
        let (repo, quant) = match s.split_once(':') {
            Some((r, q)) => (r, Some(q)),
            None => (s, None),
        };
        if !valid_repo_id(repo) {
            return Err(Error::InvalidInput(format!(
                "'{s}' is not a Hugging Face model name: expected OWNER/NAME[:QUANT], e.g. bartowski/phi-4-GGUF:Q4_K_M (letters, digits, '_', '-', '.')"
            )));
        }
        let quant = match quant {
            None => None,
            Some(q) if !q.is_empty() && q.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                Some(q.to_string())
            }
            Some(q) => {
                return Err(Error::InvalidInput(format!(
                    "'{s}': '{q}' is not a quant tag (letters, digits and '_', e.g. Q4_K_M, Q8_0, IQ4_XS)"
                )))
            }
        };
        Ok(HfSpec {
            repo: repo.to_string(),
            quant,
            file: None,
        })
    }

    /// With `--hf-file FILE`: that file of the repository.
    pub fn with_file(mut self, file: Option<&str>) -> HfSpec {
        self.file = file.map(str::to_owned);
        self
    }
}

impl std::fmt::Display for HfSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.repo)?;
        if let Some(q) = &self.quant {
            write!(f, ":{q}")?;
        }
        if let Some(file) = &self.file {
            write!(f, " (file {file})")?;
        }
        Ok(())
    }
}

/// `owner/name`: one `/`, and each part made of `[A-Za-z0-9_.-]` that neither starts nor
/// ends with `.` or `-` and has no `..` (so it is also a safe pair of directory names).
pub fn valid_repo_id(repo: &str) -> bool {
    let Some((owner, name)) = repo.split_once('/') else {
        return false;
    };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !p.starts_with(['.', '-'])
            && !p.ends_with(['.', '-'])
            && !p.contains("..")
    };
    part_ok(owner) && part_ok(name)
}

/// `-hf REPO[:QUANT]`: the cached model when there is one (no network access at all, as
/// ollama does), else a download through [`pull`].
pub fn resolve_hf(spec: &HfSpec) -> Result<PathBuf> {
    let cache = Cache::open()?;
    if let Some(path) = cache.find_spec(spec)? {
        return Ok(path);
    }
    pull(spec)
}

/// `phiq pull REPO[:QUANT]`: asks the hub which file the spec names and its sha256, and
/// downloads it unless the cache already holds that very file (same sha256). Returns the
/// model's path in the cache.
pub fn pull(spec: &HfSpec) -> Result<PathBuf> {
    let cache = Cache::open()?;
    let hub = Hub::from_env();
    let files = hub.list_files(&spec.repo)?;
    let file = select::select(&files, spec).map_err(|e| Error::InvalidInput(e.message(spec)))?;
    let dest = cache.model_path(&spec.repo, &file.path)?;
    if cache.is_current(&dest, file) {
        eprintln!(
            "phiq: {} {} is up to date in the cache: {}",
            spec.repo,
            file.path,
            dest.display()
        );
        return Ok(dest);
    }
    hub.download(&spec.repo, file, &dest)?;
    Ok(dest)
}

/// "9.05 GB": a byte count for people (decimal units, as the hub shows sizes).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let s = HfSpec::parse("bartowski/phi-4-GGUF:Q4_K_M").unwrap();
        assert_eq!(s.repo, "bartowski/phi-4-GGUF");
        assert_eq!(s.quant.as_deref(), Some("Q4_K_M"));
        assert_eq!(s.to_string(), "bartowski/phi-4-GGUF:Q4_K_M");
        let s = HfSpec::parse("microsoft/phi-4-gguf").unwrap();
        assert_eq!(s.quant, None);
        for bad in [
            "phi-4", "a/b/c", "../x", "a/..", "a/.b", "a/b:", "a/b:Q4 K", "/b", "a/", "a b/c",
        ] {
            assert!(HfSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(9_053_114_368), "9.05 GB");
    }
}
