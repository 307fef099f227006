//! `phiq serve` end to end: the binary is started on a free loopback port (it prints the
//! address on stderr) and spoken to over plain TCP (HTTP/1.0, so responses, streams
//! included, end when the connection closes), and with the real `openai` Python client.
//! Expected answers come from the library itself (greedy generation is deterministic),
//! never from hard-coded text.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phiq::{ChatMessage, GenerateParams, Model, ModelOptions, SamplerParams};
use serde_json::{json, Value};

const DEMO: &str = "models/phiq-demo.gguf";

/// A running server, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_phiq"))
            .current_dir(common::repo_root())
            .args(["serve", "-m", DEMO, "--port", "0", "-t", "1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            stderr.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(a) = line.strip_prefix("phiq serve: listening on http://") {
                addr = Some(a.to_string());
                break;
            }
        }
        let addr = addr.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the server did not start:\n{}", stderr.lock().unwrap())
        });
        // Keep draining stderr so the server never blocks on a full pipe.
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Server {
            child,
            addr,
            stderr,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Resident memory of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = http(&self.addr, "POST", path, &[], body.to_string().as_bytes());
        (status, parse(&text))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = http(&self.addr, "GET", path, &[], b"");
        (status, parse(&text))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// One HTTP/1.0 exchange: (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading a huge body: not an error.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {raw:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, body.to_string())
}

/// The `data:` payloads of an SSE body.
fn sse_events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// The text of a streamed chat or text completion, checked for shape on the way:
/// one finish_reason at the end, then `[DONE]`.
fn streamed_text(body: &str) -> (String, String) {
    let events = sse_events(body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    let mut text = String::new();
    let mut finish = None;
    for e in &events[..events.len() - 1] {
        let v = parse(e);
        let choice = &v["choices"][0];
        assert!(finish.is_none(), "a chunk after finish_reason: {body}");
        if let Some(t) = choice["delta"]["content"]
            .as_str()
            .or(choice["text"].as_str())
        {
            text.push_str(t);
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    (text, finish.expect("a finish_reason"))
}

fn demo_model() -> Model {
    Model::load(common::repo_root().join(DEMO), &ModelOptions::default()).unwrap()
}

/// Greedy text after `prompt`, from the library.
fn library_greedy(model: &Model, prompt: &[u32], max_tokens: usize) -> String {
    let mut session = model.session(model.config.n_ctx_train).unwrap();
    let params = GenerateParams {
        max_tokens,
        sampler: SamplerParams::greedy(),
        ..GenerateParams::default()
    };
    session
        .generate(prompt, params)
        .unwrap()
        .map(|p| p.unwrap().text)
        .collect()
}

fn chat_body(content: &str, max_tokens: usize, stream: bool) -> Value {
    json!({
        "model": "phiq-demo",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    })
}

/// Every endpoint once, answers compared with the library, then bad requests: each a
/// 4xx in OpenAI's error shape, and the server goes on serving. Ends with SIGTERM.
#[test]
fn endpoints_errors_and_shutdown() {
    let mut server = Server::start(&["--parallel", "2", "-c", "256", "--body-limit", "65536"]);
    let model = demo_model();
    let tok = model.tokenizer().unwrap();

    assert_eq!(server.get("/health"), (200, json!({"status": "ok"})));
    let (status, models) = server.get("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["id"], "phiq-demo");

    // Chat: greedy, the same text as the library on the chat template's prompt.
    let content = "Alice was beginning to get very tired";
    let (status, v) = server.post("/v1/chat/completions", &chat_body(content, 12, false));
    assert_eq!(status, 200, "{v}");
    let prompt = tok
        .encode_chat(&[ChatMessage::user(content)], true)
        .unwrap();
    let want = library_greedy(&model, &prompt, 12);
    assert_eq!(v["choices"][0]["message"]["content"], want.as_str());
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["prompt_tokens"], prompt.len());
    let completion_tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&completion_tokens));
    assert_eq!(
        v["usage"]["total_tokens"].as_u64().unwrap(),
        prompt.len() as u64 + completion_tokens
    );

    // Text completion, streamed, with logprobs: the text is the library's; each chosen
    // (greedy) token is the most likely of its top list.
    let text_prompt = "Down, down, down. Would the fall NEVER come to an end!";
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/completions",
        &[],
        json!({"prompt": text_prompt, "max_tokens": 10, "temperature": 0, "stream": true, "logprobs": 3})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let (text, finish) = streamed_text(&body);
    let want = library_greedy(&model, &tok.encode(text_prompt, true, false), 10);
    assert_eq!(text, want);
    assert_eq!(finish, "length");
    for e in sse_events(&body)
        .iter()
        .filter(|e| e.contains("token_logprobs"))
    {
        let lp = &parse(e)["choices"][0]["logprobs"];
        let chosen = lp["token_logprobs"][0].as_f64().unwrap();
        let top = lp["top_logprobs"][0].as_object().unwrap();
        assert_eq!(top.len(), 3);
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!(chosen <= 0.0 && (best - chosen).abs() < 1e-6, "{lp}");
        let mass: f64 = top.values().map(|v| v.as_f64().unwrap().exp()).sum();
        assert!(mass <= 1.0 + 1e-5);
    }

    // Embeddings: unit length, n_embd wide, deterministic, different for different text.
    let (status, v) = server.post(
        "/v1/embeddings",
        &json!({"input": ["Alice", "the White Rabbit", "Alice"]}),
    );
    assert_eq!(status, 200, "{v}");
    let vecs: Vec<Vec<f64>> = (0..3)
        .map(|i| {
            v["data"][i]["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(vecs[0].len(), model.config.n_embd);
    for e in &vecs {
        let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    assert_eq!(vecs[0], vecs[2]);
    assert_ne!(vecs[0], vecs[1]);
    let n_tokens = tok.encode("Alice", true, false).len() * 2
        + tok.encode("the White Rabbit", true, false).len();
    assert_eq!(v["usage"]["prompt_tokens"], n_tokens);

    // tokenize / detokenize: the library's ids and text.
    let (status, v) = server.post("/tokenize", &json!({"content": "Curiouser and curiouser!"}));
    assert_eq!(status, 200);
    let ids = tok.encode("Curiouser and curiouser!", false, true);
    assert_eq!(v["tokens"], json!(ids));
    // Control-token text is parsed by default, as llama-server does; not when asked.
    let special = "<|im_start|>user";
    let (_, v) = server.post("/tokenize", &json!({"content": special}));
    assert_eq!(v["tokens"], json!(tok.encode(special, false, true)));
    let (_, plain) = server.post(
        "/tokenize",
        &json!({"content": special, "parse_special": false}),
    );
    assert_eq!(plain["tokens"], json!(tok.encode(special, false, false)));
    assert_ne!(v["tokens"], plain["tokens"]);
    let (status, v) = server.post("/detokenize", &json!({"tokens": ids}));
    assert_eq!(
        (status, v["content"].as_str()),
        (200, Some("Curiouser and curiouser!"))
    );

    // Bad requests: status, OpenAI's error shape with a message, and the param if any.
    let huge = format!("{{\"prompt\": \"{}\"}}", "a".repeat(100_000));
    let long_prompt = "Alice ".repeat(400);
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("/v1/chat/completions", "{not json".into(), 400, None),
        ("/v1/chat/completions", String::new(), 400, None),
        (
            "/v1/chat/completions",
            json!({"messages": "hi"}).to_string(),
            400,
            None,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"})
                .to_string(),
            400,
            None,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": []}).to_string(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 7}).to_string(),
            400,
            Some("temperature"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "n": 3}).to_string(),
            400,
            Some("n"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": long_prompt}]}).to_string(),
            400,
            Some("prompt"),
        ),
        ("/v1/completions", huge, 413, None),
        (
            "/v1/completions",
            json!({"prompt": [1, 2, 999999999]}).to_string(),
            400,
            Some("prompt"),
        ),
        (
            "/v1/embeddings",
            json!({"input": []}).to_string(),
            400,
            Some("input"),
        ),
        (
            "/detokenize",
            json!({"tokens": [4000000000u32]}).to_string(),
            400,
            Some("tokens"),
        ),
        ("/v1/nothing", "{}".into(), 404, None),
        // A role no template knows is refused, never dropped from the prompt.
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "bogus", "content": "x"}]}).to_string(),
            400,
            Some("messages[0].role"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]})
                .to_string(),
            400,
            Some("messages[1].role"),
        ),
    ];
    for (path, body, want_status, want_param) in cases {
        let (status, text) = http(&server.addr, "POST", path, &[], body.as_bytes());
        let v = parse(&text);
        let shown = &body[..body.len().min(80)];
        assert_eq!(status, want_status, "{path} {shown}: {text}");
        let err = &v["error"];
        assert!(
            err["message"].as_str().is_some_and(|m| m.len() > 10),
            "{path} {shown}: {text}"
        );
        assert!(err["type"].is_string() && err.get("code").is_some() && err.get("param").is_some());
        if let Some(p) = want_param {
            assert_eq!(err["param"], p, "{path} {shown}: {text}");
        }
    }
    let (status, v) = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Alice ".repeat(400)}]}),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("context_length_exceeded"))
    );
    // Any `model` is answered by the loaded model, as llama-server does (clients hard-code
    // names such as gpt-4o); --strict-model restores OpenAI's 404 (strict_model test).
    let mut body = chat_body(content, 4, false);
    body["model"] = json!("gpt-4o");
    let (status, v) = server.post("/v1/chat/completions", &body);
    assert_eq!(
        (status, v["model"].as_str()),
        (200, Some("phiq-demo")),
        "{v}"
    );
    // GET on a POST route: 405 in the same error shape.
    let (status, text) = http(&server.addr, "GET", "/v1/chat/completions", &[], b"");
    let v = parse(&text);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{text}"
    );
    // `developer` is OpenAI's newer name for the system prompt: the same prompt as
    // `system` (same prompt tokens and greedy answer), and more tokens than without it.
    let with_role = |role: &str| {
        let mut body = chat_body(content, 8, false);
        body["messages"] =
            json!([{"role": role, "content": "Be brief."}, {"role": "user", "content": content}]);
        server.post("/v1/chat/completions", &body)
    };
    let ((s1, dev), (s2, sys)) = (with_role("developer"), with_role("system"));
    assert_eq!((s1, s2), (200, 200), "{dev} {sys}");
    assert_eq!(dev["usage"]["prompt_tokens"], sys["usage"]["prompt_tokens"]);
    assert_eq!(
        dev["choices"][0]["message"]["content"],
        sys["choices"][0]["message"]["content"]
    );
    let (_, plain) = server.post("/v1/chat/completions", &chat_body(content, 8, false));
    assert!(
        dev["usage"]["prompt_tokens"].as_u64() > plain["usage"]["prompt_tokens"].as_u64(),
        "{dev} {plain}"
    );

    // Still serving, and the answer has not changed.
    let (status, v) = server.post("/v1/chat/completions", &chat_body(content, 12, false));
    assert_eq!(status, 200);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        library_greedy(&model, &prompt, 12).as_str()
    );

    // SIGTERM: a clean exit, soon.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    // The drain thread may still be copying the last line.
    std::thread::sleep(Duration::from_millis(200));
    assert!(server
        .stderr
        .lock()
        .unwrap()
        .contains("phiq serve: stopped"));
}

/// With --api-key: no key or a wrong one is 401 in OpenAI's shape; the key works;
/// /health needs none.
#[test]
fn api_key() {
    let server = Server::start(&["--api-key", "sk-test-123"]);
    let body = chat_body("Alice", 2, false).to_string();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer sk-test-124")],
        vec![("Authorization", "Bearer sk-test-12")],
        vec![("Authorization", "sk-test-123")],
    ] {
        let (status, text) = http(
            &server.addr,
            "POST",
            "/v1/chat/completions",
            &headers,
            body.as_bytes(),
        );
        assert_eq!(status, 401, "{headers:?}: {text}");
        assert_eq!(parse(&text)["error"]["code"], "invalid_api_key");
    }
    let (status, text) = http(
        &server.addr,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer sk-test-123")],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(server.get("/health").0, 200);
    assert_eq!(server.get("/v1/models").0, 401);
}

/// 64 requests (half streamed) on 4 slots from 16 client threads: every answer equals
/// the same request run alone, so none was cut or mixed with another; RSS stays flat.
#[test]
fn concurrent_load() {
    let server = Server::start(&["--parallel", "4", "-c", "256"]);
    let prompts = [
        "Alice was beginning to get very tired",
        "Down, down, down.",
        "'Curiouser and curiouser!' cried Alice",
        "The Rabbit took a watch out of its waistcoat-pocket",
        "So she was considering in her own mind",
        "There was nothing so VERY remarkable in that",
    ];
    let request = |i: usize| {
        let p = prompts[i % prompts.len()];
        if i.is_multiple_of(3) {
            (
                "/v1/completions",
                json!({"prompt": p, "max_tokens": 12 + i % 5, "temperature": 0, "stream": i.is_multiple_of(2)}),
            )
        } else {
            let mut b = chat_body(p, 12 + i % 5, i.is_multiple_of(2));
            b["stop"] = json!(["\n\n\n"]);
            ("/v1/chat/completions", b)
        }
    };
    let run = |server: &Server, i: usize| -> String {
        let (path, body) = request(i);
        let (status, text) = http(&server.addr, "POST", path, &[], body.to_string().as_bytes());
        assert_eq!(status, 200, "request {i}: {text}");
        if body["stream"] == true {
            streamed_text(&text).0
        } else {
            let v = parse(&text);
            let c = &v["choices"][0];
            c["message"]["content"]
                .as_str()
                .or(c["text"].as_str())
                .unwrap()
                .to_string()
        }
    };
    // Alone, one at a time (this also warms every slot's buffers).
    let alone: Vec<String> = (0..64).map(|i| run(&server, i)).collect();
    assert!(alone.iter().all(|t| !t.is_empty()));
    let rss_before = server.rss_kib();
    let next = Mutex::new(0usize);
    let results = Mutex::new(vec![String::new(); 64]);
    // Scoped threads: the clients borrow the server and the request list.
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                if i >= 64 {
                    return;
                }
                let text = run(&server, i);
                results.lock().unwrap()[i] = text;
            });
        }
    });
    let results = results.lock().unwrap();
    for i in 0..64 {
        assert_eq!(
            results[i], alone[i],
            "request {i} differs when run concurrently"
        );
    }
    let rss_after = server.rss_kib();
    // Buffers are per slot and reused: 64 more requests must not grow the heap. The
    // bound leaves room for allocator noise (a few MiB), not for a per-request leak.
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over 64 requests"
    );
}

/// One slot, no queue: a second request while the first streams is 503; when the
/// streaming client disconnects, its generation stops (the slot frees long before a full
/// generation would end); a follow-up turn of a conversation reuses the cached prefix.
#[test]
fn busy_cancel_and_prefix_reuse() {
    let server = Server::start(&["--parallel", "1", "--queue-size", "0", "-c", "512"]);
    let long = json!({
        "prompt": "Alice", "max_tokens": 480, "temperature": 0, "ignore_eos": true,
    });

    // How long a full long generation takes here and now.
    let t0 = Instant::now();
    let (status, v) = server.post("/v1/completions", &long);
    let full = t0.elapsed();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 480);

    // Start it streamed, read two chunks.
    let mut stream_body = long.clone();
    stream_body["stream"] = json!(true);
    let body = stream_body.to_string();
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut chunks = 0;
    let mut line = String::new();
    while chunks < 2 {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended early"
        );
        if line.starts_with("data: {") {
            chunks += 1;
        }
    }
    // The only slot is busy and nothing may wait: 503.
    let (status, v) = server.post(
        "/v1/completions",
        &json!({"prompt": "Alice", "max_tokens": 2}),
    );
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["type"], "unavailable_error");

    // Disconnect; the slot must be free again well before the generation would end.
    let cut = Instant::now();
    drop(reader);
    s.shutdown(std::net::Shutdown::Both).unwrap();
    drop(s);
    loop {
        let (status, _) = server.post(
            "/v1/completions",
            &json!({"prompt": "Alice", "max_tokens": 1}),
        );
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            cut.elapsed() < full,
            "the disconnected stream was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cut.elapsed() < full / 2,
        "the slot freed after {:?}; a full generation takes {full:?}",
        cut.elapsed()
    );

    // The same for a client waiting for a whole (non-streamed) answer.
    let body = long.to_string();
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The slot is idle (the last probe's answer came after it was freed), so the long
    // request takes it; probing in a loop could take the slot first and get it refused.
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = server.post(
        "/v1/completions",
        &json!({"prompt": "Alice", "max_tokens": 1}),
    );
    assert_eq!(status, 503, "the long request is not occupying the slot");
    let cut = Instant::now();
    s.shutdown(std::net::Shutdown::Both).unwrap();
    drop(s);
    while server
        .post(
            "/v1/completions",
            &json!({"prompt": "Alice", "max_tokens": 1}),
        )
        .0
        != 200
    {
        assert!(
            cut.elapsed() < full,
            "the disconnected request was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cut.elapsed() < full / 2,
        "freed after {:?}; full {full:?}",
        cut.elapsed()
    );

    // A conversation: turn 2 starts with turn 1 and its answer, so it is found cached.
    let turn1 = json!({"messages": [{"role": "user", "content": "Alice was beginning"}], "max_tokens": 8, "temperature": 0});
    let (status, v1) = server.post("/v1/chat/completions", &turn1);
    assert_eq!(status, 200);
    let answer = v1["choices"][0]["message"]["content"].as_str().unwrap();
    let p1 = v1["usage"]["prompt_tokens"].as_u64().unwrap();
    let turn2 = json!({"messages": [
        {"role": "user", "content": "Alice was beginning"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Go on."},
    ], "max_tokens": 4, "temperature": 0});
    let (status, v2) = server.post("/v1/chat/completions", &turn2);
    assert_eq!(status, 200);
    let cached = v2["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached >= p1,
        "turn 2 reused {cached} cached tokens; turn 1's prompt alone had {p1}"
    );
}

/// Two slots: an unrelated request in between takes the other slot, so the
/// conversation's cache survives it.
#[test]
fn conversation_keeps_its_slot() {
    let server = Server::start(&["--parallel", "2", "-c", "256"]);
    let turn = |msgs: Value| {
        let (status, v) = server.post(
            "/v1/chat/completions",
            &json!({"messages": msgs, "max_tokens": 6, "temperature": 0}),
        );
        assert_eq!(status, 200, "{v}");
        v
    };
    let q = "Alice was beginning to get very tired";
    let v1 = turn(json!([{"role": "user", "content": q}]));
    let answer = v1["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    turn(json!([{"role": "user", "content": "The Queen of Hearts, she made some tarts"}]));
    let v2 = turn(json!([
        {"role": "user", "content": q},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And then?"},
    ]));
    let cached = v2["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached >= v1["usage"]["prompt_tokens"].as_u64().unwrap(),
        "{v2}"
    );
}

/// The real `openai` Python client: chat, streaming, stop strings, seeded sampling,
/// logprobs, completions, embeddings and its error classes
/// (tests/python/openai_client.py).
#[test]
fn openai_python_client() {
    let Some(py) = common::python_with("openai") else {
        return;
    };
    let server = Server::start(&["--parallel", "2", "-c", "256"]);
    let out = Command::new(py)
        .arg(common::repo_root().join("tests/python/openai_client.py"))
        .arg(format!("{}/v1", server.url()))
        .arg("phiq-demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai_client.py failed:\n{stdout}\n{}\nserver:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr.lock().unwrap()
    );
    assert!(
        stdout.contains("openai client: all checks passed"),
        "{stdout}"
    );
}

/// `--strict-model`: a request naming another model is a 404 (OpenAI's behaviour); this
/// server's own name or none is served.
#[test]
fn strict_model() {
    let server = Server::start(&["--strict-model", "-c", "128"]);
    let mut body = chat_body("Alice", 2, false);
    body["model"] = json!("gpt-4o");
    let (status, v) = server.post("/v1/chat/completions", &body);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
    body["model"] = json!("phiq-demo");
    assert_eq!(server.post("/v1/chat/completions", &body).0, 200);
}

/// A reasoning model's reply: the demo model with a chat template whose generation prompt
/// opens the thinking (`…<|im_sep|><think>\n`, as DeepSeek-R1-style templates do), so all
/// it writes is thinking. `reasoning_content` holds it (whole and streamed as
/// `delta.reasoning_content`), `content` stays empty and the reply cut off inside the
/// thinking is well-formed; `reasoning_format: none` gives the raw text in `content`.
#[test]
fn reasoning_content_is_split_off() {
    let path = common::demo_with_thinking_template();
    // What the model writes after that prompt, from the library.
    let model = Model::load(&path, &ModelOptions::default()).unwrap();
    let tok = model.tokenizer().unwrap();
    let prompt = tok
        .encode_chat(&[phiq::ChatMessage::user("Alice")], true)
        .unwrap();
    assert!(tok.decode(&prompt).unwrap().ends_with("<think>\n"));
    let raw = library_greedy(&model, &prompt, 12);
    assert!(
        !raw.contains("</think>") && !raw.trim().is_empty(),
        "{raw:?}"
    );

    let server = Server::start(&["-m", path.to_str().unwrap(), "-c", "256"]);
    let (status, v) = server.post("/v1/chat/completions", &chat_body("Alice", 12, false));
    assert_eq!(status, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["reasoning_content"], raw.trim(), "{v}");
    assert_eq!(choice["message"]["content"], "", "{v}");
    assert_eq!(choice["finish_reason"], "length");

    let mut body = chat_body("Alice", 12, true);
    let (_, text) = http(
        &server.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        body.to_string().as_bytes(),
    );
    let (content, finish) = streamed_text(&text);
    assert_eq!(
        (content.as_str(), finish.as_str()),
        ("", "length"),
        "{text}"
    );
    let reasoning: String = sse_events(&text)
        .iter()
        .filter(|e| e.starts_with('{'))
        .filter_map(|e| {
            parse(e)["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(reasoning, raw.trim(), "{text}");

    body["stream"] = json!(false);
    body["reasoning_format"] = json!("none");
    let (status, v) = server.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], raw.as_str(), "{v}");
    assert!(
        v["choices"][0]["message"]
            .get("reasoning_content")
            .is_none(),
        "{v}"
    );
    body["reasoning_format"] = json!("weird");
    let (status, v) = server.post("/v1/chat/completions", &body);
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (400, Some("reasoning_format")),
        "{v}"
    );
}

/// A conversation longer than a slot's context: a 400 `context_length_exceeded` by
/// default; with `--context-shift`, its oldest turns are dropped and it is answered as the
/// shorter conversation would be (greedy: the same text as sending the kept turns), and an
/// answer that fills the context goes on past it.
#[test]
fn context_shift_drops_the_oldest_turns() {
    let mut messages = vec![json!({"role": "system", "content": "Alice in Wonderland."})];
    for i in 0..6 {
        messages.push(json!({"role": "user", "content": format!("Tell me part {i} of the story, where Alice follows the White Rabbit.")}));
        messages.push(json!({"role": "assistant", "content": "Down, down, down. Would the fall never come to an end?"}));
    }
    messages.push(json!({"role": "user", "content": "Go on."}));
    let body = |messages: &[Value], n: usize| json!({"messages": messages, "max_tokens": n, "temperature": 0});
    let plain = Server::start(&["-c", "160"]);
    let (status, v) = plain.post("/v1/chat/completions", &body(&messages, 8));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("context_length_exceeded")),
        "{v}"
    );
    let shifting = Server::start(&["-c", "160", "--context-shift"]);
    let (status, v) = shifting.post("/v1/chat/completions", &body(&messages, 8));
    assert_eq!(status, 200, "{v}");
    let shifted = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    // The kept conversation: the system message and the newest turns that fit, sent as is
    // to the server without the shift, answers the same.
    let mut kept = None;
    for drop in 1..6 {
        let mut m = vec![messages[0].clone()];
        m.extend_from_slice(&messages[1 + 2 * drop..]);
        let (status, v) = plain.post("/v1/chat/completions", &body(&m, 8));
        // The shift leaves room for min(max_tokens, n_ctx / 4) = 8 tokens of answer.
        if status == 200 && v["usage"]["prompt_tokens"].as_u64().unwrap() + 8 <= 160 {
            kept = Some(
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            break;
        }
    }
    let kept = kept.expect("some suffix of the conversation fits");
    assert_eq!(shifted, kept);
    // An answer longer than the context goes on (the plain server stops at "length").
    let short = vec![
        messages[0].clone(),
        messages[1].clone(),
        messages[2].clone(),
        messages[13].clone(),
    ];
    let (status, v) = shifting.post("/v1/chat/completions", &body(&short, 200));
    assert_eq!(status, 200, "{v}");
    let usage = &v["usage"];
    let total =
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert!(total > 161, "the answer went past the context: {v}");
    // The plain server stops it at the context: prompt + answer = n_ctx + 1 (the last
    // token is sampled, not evaluated).
    let (status, v) = plain.post("/v1/chat/completions", &body(&short, 200));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    let usage = &v["usage"];
    let total =
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(total, 161, "{v}");
}
