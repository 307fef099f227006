//! phiq's model cache: where `phiq pull` and `-hf` put models, and how `-m NAME`,
//! `phiq list` and `phiq rm` find them.
//!
//! Layout, meant to be read with `ls`:
//! ```text
//! $PHIQ_CACHE/models/{owner}/{name}/{file}          a complete, checked model
//! $PHIQ_CACHE/models/{owner}/{name}/{file}.json     its sidecar: repo, file, url, size, sha256
//! $PHIQ_CACHE/models/{owner}/{name}/{file}.partial  a download in progress (never used)
//! $PHIQ_CACHE/models/{owner}/{name}/{file}.partial.json  what that download expects
//! ```
//! `{file}` is the file's path in the repository (usually just a name). A model file
//! appears under its final name only after its size and sha256 matched the hub's, so
//! every `*.gguf` there is whole; `.partial.json` is written when the download starts
//! (it tells a later attempt whether the `.partial` is of the same file) and becomes the
//! model's sidecar with it.
//! `$PHIQ_CACHE` defaults to the platform's cache directory plus `phiq`.

use std::path::{Path, PathBuf};

use phiq::{Error, Result};
use serde_json::Value;

use super::select::{self, RepoFile};
use super::HfSpec;

/// Suffix of a download in progress.
pub const PARTIAL: &str = ".partial";
/// Suffix of a model's sidecar.
pub const SIDECAR: &str = ".json";

/// `$PHIQ_CACHE`, else the platform's cache directory + `phiq`.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(p) = env_path("PHIQ_CACHE") {
        return Ok(p);
    }
    platform_cache_dir().map(|d| d.join("phiq")).ok_or_else(|| {
        Error::Resource("cannot tell where to cache models: set PHIQ_CACHE to a directory".into())
    })
}

fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `%LOCALAPPDATA%`.
#[cfg(windows)]
fn platform_cache_dir() -> Option<PathBuf> {
    env_path("LOCALAPPDATA")
}

/// `~/Library/Caches`.
#[cfg(target_os = "macos")]
fn platform_cache_dir() -> Option<PathBuf> {
    env_path("HOME").map(|h| h.join("Library/Caches"))
}

/// `$XDG_CACHE_HOME` (when absolute, as the XDG spec says), else `~/.cache`.
#[cfg(not(any(windows, target_os = "macos")))]
fn platform_cache_dir() -> Option<PathBuf> {
    env_path("XDG_CACHE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| env_path("HOME").map(|h| h.join(".cache")))
}

/// `path` with `suffix` appended to its file name (`a.gguf` → `a.gguf.partial`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// One model of the cache: complete, or only a partial download, or both (a newer
/// version being downloaded over an older one).
#[derive(Clone, Debug)]
pub struct Entry {
    /// `owner/name`.
    pub repo: String,
    /// The path in the repository, `/`-separated.
    pub file: String,
    /// Where the complete model is (or will be).
    pub path: PathBuf,
    /// Size of the complete model, when there is one.
    pub size: Option<u64>,
    /// Bytes of a partial download, when there is one.
    pub partial: Option<u64>,
    /// The size and sha256 recorded in the sidecar.
    pub expected_size: Option<u64>,
    pub sha256: Option<String>,
}

impl Entry {
    /// The name `phiq list` shows, which `-m` takes: `owner/name:QUANT` when that tag picks
    /// exactly this file among the repository's cached models, else `owner/name/file`.
    pub fn name(&self, all: &[Entry]) -> String {
        if let Some(tag) = select::quant_tag(&self.file) {
            let name = format!("{}:{tag}", self.repo);
            let hits = matching(&name, all);
            if hits.len() == 1 && hits[0].path == self.path {
                return name;
            }
        }
        format!("{}/{}", self.repo, self.file)
    }

    fn as_repo_file(&self) -> RepoFile {
        RepoFile {
            path: self.file.clone(),
            size: self.size.or(self.expected_size).unwrap_or(0),
            sha256: self.sha256.clone(),
        }
    }
}

/// Entries of `all` that `name` names: `owner/name[:QUANT]` (chosen as the hub's files
/// are, see [`select`]), `owner/name/file`, or a file name with or without `.gguf`
/// (case-insensitive).
pub fn matching<'a>(name: &str, all: &'a [Entry]) -> Vec<&'a Entry> {
    let parts: Vec<&str> = name.splitn(3, '/').collect();
    match parts.as_slice() {
        [owner, repo, file] => {
            let repo = format!("{owner}/{repo}");
            all.iter()
                .filter(|e| e.repo.eq_ignore_ascii_case(&repo) && e.file.eq_ignore_ascii_case(file))
                .collect()
        }
        [_, _] => {
            let Ok(spec) = HfSpec::parse(name) else {
                return Vec::new();
            };
            let of_repo: Vec<&Entry> = all
                .iter()
                .filter(|e| e.repo.eq_ignore_ascii_case(&spec.repo))
                .collect();
            let files: Vec<RepoFile> = of_repo.iter().map(|e| e.as_repo_file()).collect();
            match select::select(&files, &spec) {
                Ok(f) => of_repo.into_iter().filter(|e| e.file == f.path).collect(),
                Err(_) => Vec::new(),
            }
        }
        _ => all
            .iter()
            .filter(|e| {
                let base = e.file.rsplit('/').next().unwrap_or(&e.file);
                let stem = base.strip_suffix(".gguf").unwrap_or(base);
                base.eq_ignore_ascii_case(name) || stem.eq_ignore_ascii_case(name)
            })
            .collect(),
    }
}

pub struct Cache {
    /// `$PHIQ_CACHE/models` (or its default).
    pub models: PathBuf,
}

impl Cache {
    /// The cache at [`cache_root`] (nothing is created until a download).
    pub fn open() -> Result<Cache> {
        Ok(Cache {
            models: cache_root()?.join("models"),
        })
    }

    /// Where the model `file` of `repo` goes. The file's path comes from the hub: every
    /// component must be a plain name (no `..`, no absolute path), so it stays inside.
    pub fn model_path(&self, repo: &str, file: &str) -> Result<PathBuf> {
        let mut path = self.models.join(repo);
        for part in file.split('/') {
            if part.is_empty()
                || part == "."
                || part == ".."
                || part.contains(['\\', ':'])
                || part.starts_with('.')
            {
                return Err(Error::InvalidInput(format!(
                    "{repo}: refusing the file path '{file}' from the hub (not a plain relative path)"
                )));
            }
            path.push(part);
        }
        Ok(path)
    }

    /// The cache holds this very file: complete, of the hub's size and, when the hub gives
    /// a sha256, with that sha256 in its sidecar.
    pub fn is_current(&self, path: &Path, file: &RepoFile) -> bool {
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        if meta.len() != file.size {
            return false;
        }
        match &file.sha256 {
            Some(sha) => read_sidecar(path)
                .and_then(|v| v["sha256"].as_str().map(str::to_owned))
                .is_some_and(|s| s.eq_ignore_ascii_case(sha)),
            None => true,
        }
    }

    /// Every model in the cache, sorted by repository and file.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let mut out: Vec<Entry> = Vec::new();
        for owner in read_dirs(&self.models)? {
            for repo_dir in read_dirs(&owner)? {
                let repo = format!(
                    "{}/{}",
                    owner.file_name().unwrap_or_default().to_string_lossy(),
                    repo_dir.file_name().unwrap_or_default().to_string_lossy()
                );
                let mut files = Vec::new();
                walk(&repo_dir, &mut files)?;
                for f in files {
                    let name = f.to_string_lossy().into_owned();
                    let (final_path, is_partial) = match name.strip_suffix(PARTIAL) {
                        Some(p) => (PathBuf::from(p), true),
                        None => (f.clone(), false),
                    };
                    if !final_path
                        .to_string_lossy()
                        .to_ascii_lowercase()
                        .ends_with(".gguf")
                    {
                        continue;
                    }
                    let Ok(rel) = final_path.strip_prefix(&repo_dir) else {
                        continue;
                    };
                    let file: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    let len = std::fs::metadata(&f).map(|m| m.len()).ok();
                    let i = match out.iter().position(|e| e.path == final_path) {
                        Some(i) => i,
                        None => {
                            let side = read_sidecar(&final_path)
                                .or_else(|| read_sidecar(&with_suffix(&final_path, PARTIAL)));
                            out.push(Entry {
                                repo: repo.clone(),
                                file: file.join("/"),
                                path: final_path.clone(),
                                size: None,
                                partial: None,
                                expected_size: side.as_ref().and_then(|v| v["size"].as_u64()),
                                sha256: side
                                    .as_ref()
                                    .and_then(|v| v["sha256"].as_str().map(str::to_owned)),
                            });
                            out.len() - 1
                        }
                    };
                    if is_partial {
                        out[i].partial = len;
                    } else {
                        out[i].size = len;
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.repo, &a.file).cmp(&(&b.repo, &b.file)));
        Ok(out)
    }

    /// `-hf SPEC` from the cache alone: the complete model the spec picks among the
    /// repository's cached models (as [`select::select`] picks among the hub's), if any.
    pub fn find_spec(&self, spec: &HfSpec) -> Result<Option<PathBuf>> {
        let complete: Vec<Entry> = self
            .entries()?
            .into_iter()
            .filter(|e| e.size.is_some() && e.repo.eq_ignore_ascii_case(&spec.repo))
            .collect();
        let files: Vec<RepoFile> = complete.iter().map(Entry::as_repo_file).collect();
        Ok(select::select(&files, spec)
            .ok()
            .and_then(|f| complete.iter().find(|e| e.file == f.path))
            .map(|e| e.path.clone()))
    }

    /// `-m NAME` when NAME is not a file: the complete cached model it names. `Ok(None)`
    /// when there is none; several are an error listing them.
    pub fn lookup(&self, name: &str) -> Result<Option<PathBuf>> {
        let all: Vec<Entry> = self
            .entries()?
            .into_iter()
            .filter(|e| e.size.is_some())
            .collect();
        let hits = matching(name, &all);
        match hits.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.path.clone())),
            many => Err(ambiguous(name, many, &all)),
        }
    }

    /// `phiq rm NAME`: removes the model NAME names (complete or partial), its sidecar
    /// and its partial download, then the directories left empty. Returns what it was.
    pub fn remove(&self, name: &str) -> Result<Entry> {
        let all = self.entries()?;
        let hits = matching(name, &all);
        let entry = match hits.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(Error::InvalidInput(format!(
                    "no cached model named '{name}' in {} (`phiq list` shows the names)",
                    self.models.display()
                )))
            }
            many => return Err(ambiguous(name, many, &all)),
        };
        let partial = with_suffix(&entry.path, PARTIAL);
        for p in [
            entry.path.clone(),
            with_suffix(&entry.path, SIDECAR),
            with_suffix(&partial, SIDECAR),
            partial,
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { path: p, source }),
            }
        }
        // Prune the directories the model leaves empty, up to models/ (kept).
        let mut dir = entry.path.parent();
        while let Some(d) = dir {
            if d == self.models || !d.starts_with(&self.models) || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(entry)
    }
}

fn ambiguous(name: &str, hits: &[&Entry], all: &[Entry]) -> Error {
    let names: String = hits
        .iter()
        .map(|e| format!("\n  {}", e.name(all)))
        .collect();
    Error::InvalidInput(format!(
        "'{name}' names {} cached models; use one of these names:{names}",
        hits.len()
    ))
}

/// The sidecar of the model at `path`, if it exists and parses.
pub fn read_sidecar(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(with_suffix(path, SIDECAR)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The subdirectories of `dir` (none when it does not exist).
fn read_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in rd.filter_map(|e| e.ok()) {
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&e.path(), out)?,
            Ok(_) => out.push(e.path()),
            Err(_) => {}
        }
    }
    Ok(())
}
