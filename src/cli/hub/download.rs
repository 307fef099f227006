//! The Hugging Face hub over HTTP: a repository's file list, and resumable, checked
//! downloads.
//!
//! The hub's URL layout (what `huggingface_hub` and llama.cpp use):
//! - `GET {endpoint}/api/models/{owner}/{name}/tree/main?recursive=true`: a JSON array of
//!   `{"type": "file"|"directory", "path", "size", "oid", "lfs": {"oid", "size"}}`, where
//!   `lfs.oid` is the sha256 of an LFS file's content (every GGUF is an LFS file); a long
//!   list continues at the `Link: <url>; rel="next"` header;
//! - `GET {endpoint}/{owner}/{name}/resolve/main/{path}`: the file (the hub redirects to
//!   its CDN), with `Range: bytes=N-` honoured (206).
//!
//! `{endpoint}` is `$HF_ENDPOINT` (default `https://huggingface.co`, as `huggingface_hub`
//! reads it) and `$HF_TOKEN` goes as `Authorization: Bearer` (kept across a redirect only
//! to the same host over https, so the CDN never sees it).
//!
//! A download writes `{file}.partial` and records what it expects (size, sha256) in
//! `{file}.partial.json`; an interrupted one resumes from the partial's length when the
//! hub still has the same file (a 200 answer to the range request starts over, a 206
//! appends). The sha256 is computed while the bytes arrive (over the kept prefix first
//! when resuming); only a file of the right size and sha256 is renamed to its final name.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use phiq::{Error, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::cache::{with_suffix, PARTIAL, SIDECAR};
use super::select::RepoFile;

/// The hub's default address.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Tries of one download when the connection fails or closes early, with 1 s, then 2 s
/// between them; after the last, the partial file stays for the next run to resume.
const ATTEMPTS: u32 = 3;

/// The hub's file list is JSON of a few kB per hundred files; more is not a file list.
const MAX_LIST_BYTES: u64 = 64 << 20;

/// Pages of a file list followed at most (the hub pages by 1000 entries).
const MAX_LIST_PAGES: usize = 100;

pub struct Hub {
    /// `$HF_ENDPOINT` without a trailing `/`.
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// How one try of a download ended, when it did not complete.
enum Failed {
    /// The network failed (or the server did): worth another try, then a resume.
    Retry(String),
    /// Another try would fail the same way.
    Fatal(Error),
}

impl Hub {
    /// The hub at `$HF_ENDPOINT`, with `$HF_TOKEN` if set.
    pub fn from_env() -> Hub {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = std::env::var("HF_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let config = ureq::Agent::config_builder()
            // Statuses are answers to read (404, 206), not transport errors.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // A stalled transfer is an error (then a retry and a resume), not a hang.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .user_agent(format!("phiq/{}", env!("CARGO_PKG_VERSION")));
        // macOS builds ureq with the system's TLS only (Cargo.toml).
        #[cfg(target_os = "macos")]
        let config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::NativeTls)
                .build(),
        );
        let config = config.build();
        Hub {
            endpoint,
            token,
            agent: config.into(),
        }
    }

    fn get(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let req = self.agent.get(url);
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// Every file of `repo` (main branch), with sizes and sha256s.
    pub fn list_files(&self, repo: &str) -> Result<Vec<RepoFile>> {
        let mut url = format!(
            "{}/api/models/{repo}/tree/main?recursive=true",
            self.endpoint
        );
        let mut files = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let mut resp = self
                .get(&url)
                .header("Accept", "application/json")
                .call()
                .map_err(|e| unreachable(&url, &e))?;
            let status = resp.status().as_u16();
            let next = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = resp
                .body_mut()
                .with_config()
                .limit(MAX_LIST_BYTES)
                .read_to_string()
                .map_err(|e| unreachable(&url, &e))?;
            if status != 200 {
                return Err(self.http_error(&url, status, &body));
            }
            files.extend(parse_tree(&body).map_err(|what| {
                Error::Resource(format!("{url}: not the hub's file list: {what}"))
            })?);
            match next {
                Some(n) => url = n,
                None => return Ok(files),
            }
        }
        Err(Error::Resource(format!(
            "{repo}: the file list runs past {MAX_LIST_PAGES} pages; name the file with --hf-file"
        )))
    }

    /// Downloads `file` of `repo` to `dest` (see the module comment), with a progress bar
    /// on stderr.
    pub fn download(&self, repo: &str, file: &RepoFile, dest: &Path) -> Result<()> {
        let url = format!(
            "{}/{repo}/resolve/main/{}",
            self.endpoint,
            encode_path(&file.path)
        );
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let partial = with_suffix(dest, PARTIAL);
        let partial_meta = with_suffix(&partial, SIDECAR);
        let meta = json!({
            "repo": repo,
            "file": file.path,
            "url": url,
            "size": file.size,
            "sha256": file.sha256,
        });
        // A partial download of another version of the file is of no use.
        let same_file = std::fs::read_to_string(&partial_meta)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|old| old["size"] == meta["size"] && old["sha256"] == meta["sha256"]);
        if !same_file {
            remove_if_exists(&partial)?;
        }
        write_file(&partial_meta, format!("{meta:#}\n").as_bytes())?;
        eprintln!(
            "phiq: downloading {repo} {} ({}) to {}",
            file.path,
            super::human_bytes(file.size),
            dest.display()
        );
        let bar = progress_bar(file);
        let start = Instant::now();
        let mut attempt = 1;
        let hasher = loop {
            match self.try_download(&url, file, &partial, &bar) {
                Ok(h) => break h,
                Err(Failed::Fatal(e)) => {
                    bar.abandon();
                    return Err(e);
                }
                Err(Failed::Retry(why)) if attempt < ATTEMPTS => {
                    let wait = Duration::from_secs(1 << (attempt - 1));
                    bar.suspend(|| {
                        eprintln!(
                            "phiq: {why}; retrying in {} s (try {} of {ATTEMPTS})",
                            wait.as_secs(),
                            attempt + 1
                        )
                    });
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(Failed::Retry(why)) => {
                    bar.abandon();
                    let have = std::fs::metadata(&partial).map_or(0, |m| m.len());
                    return Err(Error::Resource(format!(
                        "{why}; gave up after {ATTEMPTS} tries. The {} downloaded so far stay in {}: run the same command again to resume",
                        super::human_bytes(have),
                        partial.display()
                    )));
                }
            }
        };
        bar.finish_and_clear();
        // The check: the hub's sha256 (its LFS oid) of the content.
        let got = hex(&hasher.finalize());
        match &file.sha256 {
            Some(expected) if !expected.eq_ignore_ascii_case(&got) => {
                remove_if_exists(&partial)?;
                remove_if_exists(&partial_meta)?;
                return Err(Error::InvalidFile(format!(
                    "{repo} {}: sha256 mismatch: expected {expected} (the hub's), got {got}; the download was deleted: run the command again to download it anew",
                    file.path
                )));
            }
            Some(_) => {}
            None => eprintln!(
                "phiq: note: the hub gives no sha256 for {} (not an LFS file): only its size was checked",
                file.path
            ),
        }
        std::fs::rename(&partial_meta, with_suffix(dest, SIDECAR)).map_err(|source| Error::Io {
            path: partial_meta.clone(),
            source,
        })?;
        std::fs::rename(&partial, dest).map_err(|source| Error::Io {
            path: partial.clone(),
            source,
        })?;
        eprintln!(
            "phiq: downloaded {} in {:.1} s, sha256 {got} checked",
            file.path,
            start.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// One try: resumes `partial` (or starts it) and reads to the end; returns the sha256
    /// state over the whole file.
    fn try_download(
        &self,
        url: &str,
        file: &RepoFile,
        partial: &Path,
        bar: &indicatif::ProgressBar,
    ) -> Result<Sha256, Failed> {
        let io_err = |source| {
            Failed::Fatal(Error::Io {
                path: partial.to_path_buf(),
                source,
            })
        };
        let mut have = std::fs::metadata(partial).map_or(0, |m| m.len());
        if have > file.size {
            remove_if_exists(partial).map_err(Failed::Fatal)?;
            have = 0;
        }
        if have > 0 && have == file.size {
            // Complete but not yet checked (stopped just before the rename).
            return hash_prefix(partial, have, bar).map_err(io_err);
        }
        let mut req = self.get(url);
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        let resp = req
            .call()
            .map_err(|e| Failed::Retry(unreachable(url, &e).to_string()))?;
        let status = resp.status().as_u16();
        let mut out = match status {
            206 if have > 0 => {
                let range = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !range.starts_with(&format!("bytes {have}-")) {
                    remove_if_exists(partial).map_err(Failed::Fatal)?;
                    return Err(Failed::Retry(format!(
                        "{url}: asked for bytes {have}- and got '{range}'; starting over"
                    )));
                }
                bar.suspend(|| {
                    eprintln!(
                        "phiq: resuming at {} of {}",
                        super::human_bytes(have),
                        super::human_bytes(file.size)
                    )
                });
                OpenOptions::new()
                    .append(true)
                    .open(partial)
                    .map_err(io_err)?
            }
            200 => {
                if have > 0 {
                    bar.suspend(|| {
                        eprintln!("phiq: the server does not resume downloads (200 to a range request): starting over")
                    });
                    have = 0;
                }
                File::create(partial).map_err(io_err)?
            }
            // A range the server cannot satisfy: the partial is not a prefix of this file.
            416 => {
                remove_if_exists(partial).map_err(Failed::Fatal)?;
                return Err(Failed::Retry(format!(
                    "{url}: HTTP 416 to a resumed download; starting over"
                )));
            }
            s if s >= 500 || s == 429 => {
                return Err(Failed::Retry(format!("{url}: HTTP {s}")));
            }
            s => {
                let mut body = resp.into_body();
                let text = body
                    .with_config()
                    .limit(1 << 16)
                    .read_to_string()
                    .unwrap_or_default();
                return Err(Failed::Fatal(self.http_error(url, s, &text)));
            }
        };
        let mut hasher = if have > 0 {
            hash_prefix(partial, have, bar).map_err(io_err)?
        } else {
            Sha256::new()
        };
        bar.set_position(have);
        bar.reset_eta();
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = have;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.flush().map_err(io_err)?;
                    return Err(Failed::Retry(format!(
                        "download interrupted at {} of {}: {e}",
                        super::human_bytes(pos),
                        super::human_bytes(file.size)
                    )));
                }
            };
            if pos + n as u64 > file.size {
                drop(out);
                remove_if_exists(partial).map_err(Failed::Fatal)?;
                return Err(Failed::Fatal(Error::InvalidFile(format!(
                    "{url}: the server sent more than the {} bytes the hub lists for {}; the download was deleted",
                    file.size, file.path
                ))));
            }
            out.write_all(&buf[..n]).map_err(io_err)?;
            hasher.update(&buf[..n]);
            pos += n as u64;
            bar.set_position(pos);
        }
        out.sync_all().map_err(io_err)?;
        if pos < file.size {
            return Err(Failed::Retry(format!(
                "the connection closed at {} of {}",
                super::human_bytes(pos),
                super::human_bytes(file.size)
            )));
        }
        Ok(hasher)
    }

    /// An HTTP error status as a sentence saying what to do.
    fn http_error(&self, url: &str, status: u16, body: &str) -> Error {
        // The hub explains itself in {"error": "..."}.
        let said = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(|s| format!(" ({s})")))
            .unwrap_or_default();
        let hint = match status {
            401 | 403 if self.token.is_some() => {
                "HF_TOKEN has no access to this repository (a gated model needs its terms accepted on its page first)"
            }
            401 | 403 => {
                "the repository is private or gated: accept its terms on its page, then set HF_TOKEN to an access token"
            }
            404 => "no such repository or file (check the name; a private repository also needs HF_TOKEN)",
            429 => "the hub is rate-limiting: wait a minute (or set HF_TOKEN)",
            _ => "the hub refused the request",
        };
        Error::Resource(format!("{url}: HTTP {status}{said}: {hint}"))
    }
}

/// A transport failure (no connection, DNS, TLS, timeout) as a message naming the URL.
fn unreachable(url: &str, e: &ureq::Error) -> Error {
    Error::Resource(format!(
        "cannot reach {url}: {e} (check the network; HF_ENDPOINT sets the hub's address)"
    ))
}

/// The hub's tree JSON → its files. `Err` says what is off.
pub fn parse_tree(body: &str) -> Result<Vec<RepoFile>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("bad JSON: {e}"))?;
    let items = v.as_array().ok_or("expected a JSON array")?;
    let mut files = Vec::new();
    for item in items {
        if item["type"].as_str() != Some("file") {
            continue;
        }
        let path = item["path"]
            .as_str()
            .ok_or_else(|| format!("an entry without a path: {item}"))?;
        let lfs = &item["lfs"];
        let size = lfs["size"]
            .as_u64()
            .or_else(|| item["size"].as_u64())
            .ok_or_else(|| format!("{path}: no size"))?;
        let sha256 = lfs["oid"]
            .as_str()
            .filter(|o| o.len() == 64 && o.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase);
        files.push(RepoFile {
            path: path.to_string(),
            size,
            sha256,
        });
    }
    Ok(files)
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// A repository path for a URL: each `/`-separated part percent-encoded (RFC 3986's
/// unreserved characters stay as they are).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 state over the first `len` bytes of `path` (a download being resumed).
fn hash_prefix(path: &Path, len: u64, bar: &indicatif::ProgressBar) -> std::io::Result<Sha256> {
    bar.suspend(|| {
        eprintln!(
            "phiq: checking the {} already downloaded",
            super::human_bytes(len)
        )
    });
    let mut hasher = Sha256::new();
    let mut f = File::open(path)?.take(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hasher)
}

/// Bytes, rate and ETA on stderr (hidden when stderr is not a terminal).
fn progress_bar(file: &RepoFile) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(file.size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:25} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style);
    }
    let name = file.path.rsplit('/').next().unwrap_or(&file.path);
    bar.set_message(name.to_string());
    bar
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_json_as_the_hub_sends_it() {
        let body = r#"[
          {"type":"directory","oid":"aa","size":0,"path":"Q8_0"},
          {"type":"file","oid":"c7a4a3b1","size":2193,"path":"README.md"},
          {"type":"file","oid":"0123","size":135,"path":"phi-4-Q4_K_M.gguf",
           "lfs":{"oid":"8F5C0E27E4D8E4B0B3F9D6A8C59E1C7F7F3C4B0E5A3D2C1B0A9F8E7D6C5B4A39","size":9053114368,"pointerSize":135}}
        ]"#;
        let files = parse_tree(body).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].sha256, None);
        assert_eq!(files[1].size, 9_053_114_368);
        assert_eq!(
            files[1].sha256.as_deref(),
            Some("8f5c0e27e4d8e4b0b3f9d6a8c59e1c7f7f3c4b0e5a3d2c1b0a9f8e7d6c5b4a39")
        );
        assert!(parse_tree("{}").is_err());
    }

    #[test]
    fn links_and_paths() {
        assert_eq!(
            next_link(r#"<https://huggingface.co/api/models/a/b/tree/main?cursor=x>; rel="next""#)
                .as_deref(),
            Some("https://huggingface.co/api/models/a/b/tree/main?cursor=x")
        );
        assert_eq!(next_link(r#"<https://x/y>; rel="prev""#), None);
        assert_eq!(encode_path("dir/a b+c.gguf"), "dir/a%20b%2Bc.gguf");
    }
}
