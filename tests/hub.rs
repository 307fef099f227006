//! `phiq pull`, `-hf`, `-m NAME`, `phiq list` and `phiq rm` against a local stand-in for the
//! Hugging Face hub: a small HTTP server on 127.0.0.1 that answers the hub's URL layout
//! (`/api/models/{repo}/tree/main`, `/{repo}/resolve/main/{file}` with `Range`) for a
//! repository holding the demo model. The real `phiq` binary runs with `HF_ENDPOINT` set to
//! it and `PHIQ_CACHE` to a fresh directory; no test reaches the network.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

const REPO: &str = "testorg/phiq-demo-GGUF";
const MODEL_FILE: &str = "phiq-demo-Q8_0.gguf";
const PROMPT: &str = "Alice was beginning to get very tired";

fn demo_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/phiq-demo.gguf")
}

fn demo_bytes() -> Vec<u8> {
    std::fs::read(demo_model()).expect("models/phiq-demo.gguf")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One request the hub saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

struct State {
    /// (path in the repository, content)
    files: Vec<(String, Vec<u8>)>,
    /// List a wrong sha256 for every LFS file.
    wrong_oid: bool,
    /// Close a file download after this many body bytes (a dropped connection).
    truncate_after: Option<usize>,
    seen: Vec<Seen>,
}

/// The stand-in hub: serves until dropped.
struct TestHub {
    url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestHub {
    fn start() -> TestHub {
        let files = vec![
            (
                ".gitattributes".to_string(),
                b"*.gguf filter=lfs\n".to_vec(),
            ),
            ("README.md".to_string(), b"# phiq demo\n".to_vec()),
            (MODEL_FILE.to_string(), demo_bytes()),
            (
                "phiq-demo-Q4_0-00001-of-00002.gguf".to_string(),
                b"GGUF part one".to_vec(),
            ),
            (
                "phiq-demo-Q4_0-00002-of-00002.gguf".to_string(),
                b"GGUF part two".to_vec(),
            ),
            (
                "mmproj-phiq-demo-F16.gguf".to_string(),
                b"GGUF proj".to_vec(),
            ),
        ];
        let state = Arc::new(Mutex::new(State {
            files,
            wrong_oid: false,
            truncate_after: None,
            seen: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        // One request per connection (`Connection: close`); phiq's
                        // requests come one at a time.
                        let _ = serve(conn, &state);
                    }
                }
            })
        };
        TestHub {
            url: format!("http://{addr}"),
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn downloads(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.contains("/resolve/main/"))
            .collect()
    }

    fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let (mut range, mut auth) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_string()),
                "authorization" => auth = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut st = state.lock().unwrap();
    st.seen.push(Seen {
        path: path.clone(),
        range: range.clone(),
        auth,
    });
    let mut conn = conn;
    let tree = format!("/api/models/{REPO}/tree/main");
    let resolve = format!("/{REPO}/resolve/main/");
    if path == tree || path.starts_with(&format!("{tree}?")) {
        let mut entries = vec![
            serde_json::json!({"type": "directory", "oid": "0".repeat(40), "size": 0, "path": "docs"}),
        ];
        for (name, content) in &st.files {
            let mut e = serde_json::json!({
                "type": "file",
                "oid": "1".repeat(40),
                "size": content.len(),
                "path": name,
            });
            if name.ends_with(".gguf") {
                let oid = if st.wrong_oid {
                    "ab".repeat(32)
                } else {
                    sha256_hex(content)
                };
                e["lfs"] =
                    serde_json::json!({"oid": oid, "size": content.len(), "pointerSize": 134});
            }
            entries.push(e);
        }
        let body = serde_json::to_string(&entries).unwrap();
        respond(&mut conn, "200 OK", &[], body.as_bytes())
    } else if let Some(name) = path.strip_prefix(&resolve) {
        let Some((_, content)) = st.files.iter().find(|(n, _)| n == name) else {
            return respond(
                &mut conn,
                "404 Not Found",
                &[],
                br#"{"error":"Entry not found"}"#,
            );
        };
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok());
        let (status, from) = match start {
            Some(s) if s < content.len() => ("206 Partial Content", s),
            Some(_) => return respond(&mut conn, "416 Range Not Satisfiable", &[], b""),
            None => ("200 OK", 0),
        };
        let content_range = format!("bytes {from}-{}/{}", content.len() - 1, content.len());
        let extra: Vec<(&str, &str)> = if from > 0 {
            vec![("Content-Range", content_range.as_str())]
        } else {
            vec![]
        };
        let body = &content[from..];
        match st.truncate_after {
            // Full headers, a part of the body, then the connection drops.
            Some(n) => {
                write_head(&mut conn, status, &extra, body.len())?;
                conn.write_all(&body[..n.min(body.len())])?;
                conn.flush()?;
                conn.shutdown(Shutdown::Both)
            }
            None => respond(&mut conn, status, &extra, body),
        }
    } else {
        respond(
            &mut conn,
            "404 Not Found",
            &[],
            br#"{"error":"Repository not found"}"#,
        )
    }
}

fn write_head(
    conn: &mut TcpStream,
    status: &str,
    extra: &[(&str, &str)],
    len: usize,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n"
    );
    for (k, v) in extra {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    conn.write_all(head.as_bytes())
}

fn respond(
    conn: &mut TcpStream,
    status: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    write_head(conn, status, extra, body.len())?;
    conn.write_all(body)?;
    conn.flush()
}

/// A fresh directory under cargo's per-test temp dir.
fn fresh_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `phiq` with the hub at `endpoint` and the cache in `cache`, and nothing from this
/// machine's environment that would change where it looks (proxies, a token, a model).
fn phiq_in(
    cwd: Option<&Path>,
    endpoint: &str,
    cache: &Path,
    token: Option<&str>,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phiq"));
    cmd.args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("PHIQ_CACHE", cache)
        .env_remove("PHIQ_MODEL")
        .env_remove("HF_TOKEN");
    for proxy in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        cmd.env_remove(proxy);
    }
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().expect("run phiq");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn phiq(endpoint: &str, cache: &Path, args: &[&str]) -> (i32, String, String) {
    phiq_in(None, endpoint, cache, None, args)
}

fn cached_model(cache: &Path) -> PathBuf {
    cache.join("models").join(REPO).join(MODEL_FILE)
}

fn partial(cache: &Path) -> PathBuf {
    cache
        .join("models")
        .join(REPO)
        .join(format!("{MODEL_FILE}.partial"))
}

/// Greedy text of the demo model file itself, the reference for every other way in.
fn run_file(cache: &Path) -> String {
    let demo = demo_model().display().to_string();
    let (code, out, err) = phiq(
        "http://127.0.0.1:9",
        cache,
        &["run", "-m", &demo, "-p", PROMPT, "-n", "8", "--temp", "0"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.trim().is_empty());
    out
}

/// An address where nothing listens: any request to it fails at once.
fn dead_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

#[test]
fn hf_downloads_once_then_runs_offline_from_the_cache() {
    let hub = TestHub::start();
    let cache = fresh_dir("once");
    let reference = run_file(&cache);
    let gen = ["-p", PROMPT, "-n", "8", "--temp", "0"];

    // First -hf: downloads (the quant tag in any case), checks, then generates exactly
    // what -m on the same file generates.
    let spec = format!("{REPO}:q8_0");
    let mut args = vec!["run", "-hf", &spec];
    args.extend(gen);
    let (code, out, err) = phiq_in(None, &hub.url, &cache, Some("hf_testtoken"), &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, reference);
    assert!(
        err.contains("downloading") && err.contains("sha256"),
        "{err}"
    );
    assert_eq!(std::fs::read(cached_model(&cache)).unwrap(), demo_bytes());
    assert!(!partial(&cache).exists());
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            cache
                .join("models")
                .join(REPO)
                .join(format!("{MODEL_FILE}.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["sha256"], sha256_hex(&demo_bytes()));
    // $HF_TOKEN went with every request.
    let seen = hub.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.auth.as_deref() == Some("Bearer hf_testtoken")),
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| s.range.is_none()), "{seen:?}");

    // Again: the cache alone, not one request; and with the hub unreachable, with the
    // default quant (no tag), through --hf-repo and llama.cpp's -hfr.
    let (code, out, err) = phiq(&hub.url, &cache, &args);
    assert_eq!((code, out.as_str()), (0, reference.as_str()), "{err}");
    assert_eq!(
        hub.seen().len(),
        2,
        "a cached model must not touch the network"
    );
    let dead = dead_endpoint();
    for flag in ["-hf", "--hf-repo", "-hfr"] {
        let mut a = vec!["run", flag, REPO];
        a.extend(gen);
        let (code, out, err) = phiq(&dead, &cache, &a);
        assert_eq!(
            (code, out.as_str()),
            (0, reference.as_str()),
            "{flag}: {err}"
        );
    }

    // -m NAME finds the cached model by every name `phiq list` may show.
    let by_path = format!("{REPO}/{MODEL_FILE}");
    for name in [
        &format!("{REPO}:Q8_0"),
        MODEL_FILE,
        "phiq-demo-q8_0",
        &by_path,
    ] {
        let mut a = vec!["run", "-m", name];
        a.extend(gen);
        let (code, out, err) = phiq(&dead, &cache, &a);
        assert_eq!(
            (code, out.as_str()),
            (0, reference.as_str()),
            "-m {name}: {err}"
        );
    }
    // Every subcommand that reads a model takes -hf and the names.
    let demo = demo_model().display().to_string();
    let ids = |src: &[&str]| {
        let mut a = vec!["tokenize", "--ids"];
        a.extend(src);
        a.push("Alice");
        phiq(&dead, &cache, &a)
    };
    let want = ids(&["-m", &demo]);
    assert_eq!(want.0, 0, "{}", want.2);
    assert_eq!(ids(&["-hf", &format!("{REPO}:Q8_0")]).1, want.1);
    assert_eq!(ids(&["-m", "phiq-demo-Q8_0"]).1, want.1);
    let (code, out, err) = phiq(&dead, &cache, &["inspect", "--json", "phiq-demo-Q8_0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"general.architecture\": \"phi3\""), "{out}");

    // `phiq pull` of an unchanged cached model asks the hub and downloads nothing.
    let before = hub.downloads().len();
    let (code, out, err) = phiq(&hub.url, &cache, &["pull", &format!("{REPO}:Q8_0")]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("up to date"), "{err}");
    assert_eq!(out.trim(), cached_model(&cache).display().to_string());
    assert_eq!(hub.downloads().len(), before);
}

#[test]
fn interrupted_download_is_never_used_and_resumes_with_a_range_request() {
    let hub = TestHub::start();
    let cache = fresh_dir("resume");
    let full = demo_bytes();
    let spec = format!("{REPO}:Q8_0");
    // Every transfer drops after 3 MB: three tries, then the partial file stays.
    hub.set(|s| s.truncate_after = Some(3_000_000));
    let (code, _, err) = phiq(&hub.url, &cache, &["pull", &spec]);
    assert_ne!(code, 0);
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );
    assert!(!cached_model(&cache).exists());
    let have = std::fs::metadata(partial(&cache)).unwrap().len() as usize;
    assert_eq!(have, 9_000_000);
    assert_eq!(std::fs::read(partial(&cache)).unwrap(), &full[..have]);
    let tries = hub.downloads();
    assert_eq!(tries.len(), 3, "{tries:?}");
    assert_eq!(tries[0].range, None);
    assert_eq!(tries[1].range.as_deref(), Some("bytes=3000000-"));
    assert_eq!(tries[2].range.as_deref(), Some("bytes=6000000-"));

    // The partial file is not a model: not by name, not listed as one.
    let (code, _, err) = phiq(
        &hub.url,
        &cache,
        &["run", "-m", "phiq-demo-Q8_0", "-p", "x", "-n", "1"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("no such file") && err.contains("phiq list"),
        "{err}"
    );
    let (_, list, _) = phiq(&hub.url, &cache, &["list"]);
    assert!(list.contains("partial 9.00 MB of"), "{list}");

    // The hub heals: the next pull sends Range from the partial's length and ends with
    // the very bytes of the file.
    hub.set(|s| s.truncate_after = None);
    let (code, out, err) = phiq(&hub.url, &cache, &["pull", &spec]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("resuming at 9.00 MB"), "{err}");
    let last = hub.downloads().pop().unwrap();
    assert_eq!(last.range.as_deref(), Some("bytes=9000000-"));
    assert_eq!(out.trim(), cached_model(&cache).display().to_string());
    assert_eq!(std::fs::read(cached_model(&cache)).unwrap(), full);
    assert!(!partial(&cache).exists());
    let (code, _, err) = phiq(
        &dead_endpoint(),
        &cache,
        &["run", "-m", "phiq-demo-Q8_0", "-p", "x", "-n", "1"],
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn checksum_mismatch_is_a_clear_error_and_leaves_no_model() {
    let hub = TestHub::start();
    let cache = fresh_dir("sha");
    hub.set(|s| s.wrong_oid = true);
    let (code, _, err) = phiq(&hub.url, &cache, &["pull", &format!("{REPO}:Q8_0")]);
    assert_ne!(code, 0);
    assert!(
        err.contains("sha256 mismatch") && err.contains(MODEL_FILE),
        "{err}"
    );
    assert!(
        err.contains(&"ab".repeat(32)),
        "expected sha256 named: {err}"
    );
    assert!(
        err.contains(&sha256_hex(&demo_bytes())),
        "got sha256 named: {err}"
    );
    let left: Vec<_> = std::fs::read_dir(cache.join("models").join(REPO))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    let (_, list, err) = phiq(&hub.url, &cache, &["list"]);
    assert!(list.is_empty() && err.contains("no models"), "{list}{err}");
}

#[test]
fn missing_quants_and_bad_names_are_clear_errors() {
    let hub = TestHub::start();
    let cache = fresh_dir("names");
    // A quant the repository lacks: the error lists its .gguf files.
    let (code, _, err) = phiq(&hub.url, &cache, &["pull", &format!("{REPO}:Q6_K")]);
    assert_ne!(code, 0);
    assert!(err.contains("'Q6_K'") && err.contains(MODEL_FILE), "{err}");
    assert!(
        err.contains("phiq-demo-Q4_0-00001-of-00002.gguf") && !err.contains("README"),
        "{err}"
    );
    // A split model: said plainly.
    let (code, _, err) = phiq(
        &hub.url,
        &cache,
        &["run", "-hf", &format!("{REPO}:Q4_0"), "-p", "x"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("split into 2 files"), "{err}");
    // --hf-file picks by path.
    let (code, _, err) = phiq(&hub.url, &cache, &["pull", REPO, "--hf-file", "nope.gguf"]);
    assert_ne!(code, 0);
    assert!(err.contains("'nope.gguf'"), "{err}");
    // An unknown repository: the hub's 404, with the URL.
    let (code, _, err) = phiq(&hub.url, &cache, &["pull", "testorg/nope"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("HTTP 404") && err.contains("/api/models/testorg/nope/tree/main"),
        "{err}"
    );
    // Not a repository name at all: no request.
    let n = hub.seen().len();
    let (code, _, err) = phiq(&hub.url, &cache, &["run", "-hf", "phi-4", "-p", "x"]);
    assert_ne!(code, 0);
    assert!(err.contains("OWNER/NAME[:QUANT]"), "{err}");
    assert_eq!(hub.seen().len(), n);
    // An unknown -m: what was looked for, and how to get a model.
    let (code, _, err) = phiq(
        &hub.url,
        &cache,
        &["run", "-m", "phi-4-Q4_K_M.gguf", "-p", "x"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("-m phi-4-Q4_K_M.gguf: no such file") && err.contains("phiq pull"),
        "{err}"
    );
    // An unreachable hub names the URL.
    let (code, _, err) = phiq(&dead_endpoint(), &cache, &["pull", REPO]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot reach") && err.contains("/api/models/"),
        "{err}"
    );
    assert!(!cache.join("models").join(REPO).exists());
}

#[test]
fn list_and_rm() {
    let hub = TestHub::start();
    let cache = fresh_dir("list");
    let (code, _, err) = phiq(&hub.url, &cache, &["pull", REPO]);
    assert_eq!(code, 0, "{err}");
    let (code, list, err) = phiq(&hub.url, &cache, &["list"]);
    assert_eq!(code, 0, "{err}");
    let size = demo_bytes().len() as f64 / 1e6;
    assert!(list.starts_with("NAME"), "{list}");
    assert!(list.contains(&format!("{REPO}:Q8_0")), "{list}");
    assert!(list.contains(&format!("{size:.2} MB")), "{list}");
    assert!(
        list.contains(&cached_model(&cache).display().to_string()),
        "{list}"
    );

    let (code, _, err) = phiq(&hub.url, &cache, &["rm", &format!("{REPO}:Q8_0")]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("removed"), "{err}");
    assert!(!cached_model(&cache).exists());
    assert!(
        !cache.join("models").join("testorg").exists(),
        "empty directories are pruned"
    );
    let (_, list, err) = phiq(&hub.url, &cache, &["list"]);
    assert!(list.is_empty() && err.contains("no models"), "{list}{err}");
    let (code, _, err) = phiq(&hub.url, &cache, &["rm", &format!("{REPO}:Q8_0")]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no cached model named") && err.contains("phiq list"),
        "{err}"
    );

    // A leftover partial download is listed and removed by the model's name.
    let p = partial(&cache);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, vec![0u8; 1000]).unwrap();
    let (_, list, _) = phiq(&hub.url, &cache, &["list"]);
    assert!(list.contains("partial 1.00 kB"), "{list}");
    let (code, _, err) = phiq(&hub.url, &cache, &["rm", "phiq-demo-Q8_0"]);
    assert_eq!(code, 0, "{err}");
    assert!(!p.exists());
}

#[test]
fn the_demo_model_is_the_default_from_any_directory() {
    let cache = fresh_dir("default");
    let reference = run_file(&cache);
    let elsewhere = fresh_dir("default-cwd");
    let (code, out, err) = phiq_in(
        Some(&elsewhere),
        "http://127.0.0.1:9",
        &cache,
        None,
        &["run", "-p", PROMPT, "-n", "8", "--temp", "0"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, reference);
}
