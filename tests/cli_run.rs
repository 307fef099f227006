//! `phiq run` end to end on a tiny model: streaming output, determinism, and bad input
//! as clear errors with non-zero exit codes.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;

fn model() -> Option<String> {
    Some(
        tiny_models_dir()?
            .join("tiny-phi4-Q8_0.gguf")
            .display()
            .to_string(),
    )
}

fn phiq(args: &[&str]) -> (i32, String, String) {
    run_phiq(args)
}

#[test]
fn greedy_and_seeded_runs_repeat() {
    let Some(m) = model() else { return };
    let (code, a, err) = phiq(&["run", "-m", &m, "-p", "Hello", "-n", "12", "--temp", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(!a.trim().is_empty());
    assert!(
        err.contains("prompt eval") && err.contains("generation") && err.contains("tok/s"),
        "{err}"
    );
    let (_, b, _) = phiq(&[
        "run", "-m", &m, "-p", "Hello", "-n", "12", "--temp", "0", "-t", "1",
    ]);
    assert_eq!(a, b, "greedy output must not depend on the thread count");
    let s1 = phiq(&["run", "-m", &m, "-p", "Hi", "-n", "12", "--seed", "7"]).1;
    let s2 = phiq(&["run", "-m", &m, "-p", "Hi", "-n", "12", "--seed", "7"]).1;
    assert_eq!(s1, s2);
    // --echo puts the prompt first; stdout holds nothing else.
    let (_, e, _) = phiq(&[
        "run", "-m", &m, "-p", "Hello", "-n", "12", "--temp", "0", "--echo",
    ]);
    assert_eq!(e, format!("Hello{a}"));
    // --chat wraps the prompt in the template and still generates.
    let (code, _, err) = phiq(&[
        "run",
        "-m",
        &m,
        "-p",
        "Hello",
        "-n",
        "4",
        "--chat",
        "--system",
        "Be brief.",
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn closed_stdout_ends_quietly() {
    let Some(m) = model() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_phiq"))
        .args(["run", "-m", &m, "-p", "Hello", "-n", "500", "--temp", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 5];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take()); // like `| head -c 5`
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status:?} {err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}

/// llama.cpp's negative values parse as llama.cpp reads them: `--temp -1` is greedy,
/// `--seed -1` a random seed that is printed (and repeats the run when given back),
/// `--top-k -1` off, `--repeat-last-n -1` the whole context.
#[test]
fn llama_cpp_negative_values() {
    let Some(m) = model() else { return };
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-m", &m, "-p", "Hello", "-n", "12"];
        args.extend(extra);
        phiq(&args)
    };
    let (code, greedy, err) = run(&["--temp", "0"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["--temp", "-1"]);
    assert_eq!((code, &out), (0, &greedy), "{err}");
    let (code, out, err) = run(&["--temp", "0", "--top-k", "-1", "--repeat-last-n", "-1"]);
    assert_eq!((code, &out), (0, &greedy), "{err}");
    let (code, drawn, err) = run(&["--seed", "-1", "--top-k", "-1"]);
    assert_eq!(code, 0, "{err}");
    let seed = err
        .split("phiq: seed ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no seed printed: {err}"));
    let (code, again, err) = run(&["--seed", seed, "--top-k", "-1"]);
    assert_eq!((code, &again), (0, &drawn), "{err}");
    let (code, _, err) = run(&["--repeat-last-n", "-2"]);
    assert!(code != 0 && err.contains("--repeat-last-n"), "{err}");
}

/// llama.cpp's multi-letter flags are understood, not split into letters: -ngl and -fa
/// accepted with a note, -ctk/-ctv as --cache-type-k/-v (each its own type; an unknown
/// type is an error naming the flag's supported values), -cnv and -hf a clear pointer; a
/// repeated flag takes its last value while --stop collects every one.
#[test]
fn llama_cpp_flags_and_repeats() {
    let Some(m) = model() else { return };
    let base = ["run", "-m", &m, "-p", "Hello", "--temp", "0"];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        phiq(&args)
    };
    let (code, want, err) = run(&["-n", "6"]);
    assert_eq!(code, 0, "{err}");
    let (code, got, err) = run(&[
        "-ngl", "99", "-fa", "-ctk", "f16", "-ctv", "f16", "-n", "2", "-n", "6",
    ]);
    assert_eq!((code, &got), (0, &want), "{err}");
    assert!(
        err.contains("-ngl 99 ignored") && err.contains("-fa ignored"),
        "{err}"
    );
    for (flag, hint) in [("-cnv", "phiq chat"), ("-hf", "cannot be used with")] {
        let (code, out, err) = run(&[flag, "x"]);
        assert!(
            code != 0 && out.is_empty() && err.contains(hint),
            "{flag}: {err}"
        );
    }
    let (code, out, err) = run(&["-ctk", "q8_0", "-ctv", "f32", "-n", "6"]);
    assert!(code == 0 && !out.is_empty(), "{err}");
    let (code, _, err) = run(&["-ctk", "q3_k", "-n", "6"]);
    assert!(
        code != 0 && err.contains("q3_k") && err.contains("q8_0 or q4_0"),
        "{err}"
    );
}

/// A full context ends generation with a sentence on stderr, not silently.
#[test]
fn full_context_is_said() {
    let Some(m) = model() else { return };
    let args = [
        "run",
        "-m",
        &m,
        "-p",
        "Hello",
        "-c",
        "16",
        "-n",
        "-1",
        "--temp",
        "0",
        "--ignore-eos",
    ];
    let (code, out, err) = phiq(&args);
    assert_eq!(code, 0, "{err}");
    assert!(!out.is_empty());
    assert!(err.contains("the context of 16 tokens is full"), "{err}");
}

/// `phiq ARGS` with standard input fed `input` (None: /dev/null).
fn phiq_stdin(args: &[&str], input: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phiq"))
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = input {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The prompt from a pipe, as llama.cpp users expect: `-f -`, or no -p/-f at all; the
/// same greedy text as `-p`. Nothing piped and no prompt: an error saying how to give one.
#[test]
fn prompt_from_standard_input() {
    let Some(m) = model() else { return };
    let base = ["run", "-m", &m, "-n", "8", "--temp", "0"];
    let with = |extra: &[&str], input: Option<&str>| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        phiq_stdin(&args, input)
    };
    let (code, want, err) = with(&["-p", "Hello there"], None);
    assert_eq!(code, 0, "{err}");
    for extra in [&["-f", "-"][..], &[][..]] {
        let (code, got, err) = with(extra, Some("Hello there"));
        assert_eq!((code, &got), (0, &want), "{extra:?}: {err}");
    }
    let (code, out, err) = with(&[], None);
    assert_ne!(code, 0);
    assert!(
        out.is_empty() && err.contains("no prompt") && err.contains("standard input"),
        "{err}"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let Some(m) = model() else { return };
    let dir = std::env::temp_dir();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["-p".into(), "".into()], "prompt is empty"),
        (
            vec!["-p".into(), "x".into(), "-n".into(), "0".into()],
            "-n/--n-predict",
        ),
        (
            vec!["-p".into(), "x".into(), "--top-p".into(), "7".into()],
            "--top-p",
        ),
        (
            vec![
                "-p".into(),
                "one two three four five".into(),
                "-c".into(),
                "3".into(),
            ],
            "context",
        ),
        (
            vec!["-p".into(), "x".into(), "--temp".into(), "warm".into()],
            "invalid value",
        ),
        // Beyond the model's context length: refused, never silently capped.
        (
            vec!["-p".into(), "x".into(), "-c".into(), "100000".into()],
            "more than this model's training context length",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["run".to_string(), "-m".into(), m.clone()];
        args.extend(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = phiq(&refs);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            out.is_empty() && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    let (code, _, err) = phiq(&["run", "-m", "/no/such/model.gguf", "-p", "x"]);
    assert_ne!(code, 0);
    assert!(err.contains("/no/such/model.gguf"), "{err}");
    let (code, _, err) = phiq(&["run", "-m", dir.to_str().unwrap(), "-p", "x"]);
    assert_ne!(code, 0);
    assert!(err.contains("directory"), "{err}");
    let bad = dir.join(format!("phiq-bad-{}.txt", std::process::id()));
    std::fs::write(&bad, [0x66, 0xff, 0x66]).unwrap();
    let (code, _, err) = phiq(&["run", "-m", &m, "-f", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("UTF-8"), "{err}");
    std::fs::remove_file(bad).unwrap();
}

#[test]
fn generate_api_streams_and_stops_on_strings() {
    use phiq::{GenerateParams, Model, ModelOptions, SamplerParams, StopReason};
    let Some(m) = model() else { return };
    let model = Model::load(&m, &ModelOptions::default()).unwrap();
    let tok = model.tokenizer().unwrap();
    let prompt = tok.encode("Hello", true, false);
    let greedy = GenerateParams {
        max_tokens: 24,
        sampler: SamplerParams::greedy(),
        ..Default::default()
    };
    let mut s = model.session(256).unwrap();
    let full: String = s
        .generate(&prompt, greedy.clone())
        .unwrap()
        .map(|p| p.unwrap().text)
        .collect();
    assert!(full.chars().count() > 8, "{full:?}");
    // Stop at a string that occurs in the greedy text: the output is everything before it.
    let cut = full.char_indices().nth(6).unwrap().0;
    let stop: String = full[cut..].chars().take(3).collect();
    let params = GenerateParams {
        stop_strings: vec![stop.clone()],
        ..greedy.clone()
    };
    let mut s2 = model.session(256).unwrap();
    let mut gen = s2.generate(&prompt, params).unwrap();
    let text: String = (&mut gen).map(|p| p.unwrap().text).collect();
    assert_eq!(
        gen.stop_reason(),
        Some(&StopReason::StopString(stop.clone()))
    );
    assert_eq!(text, full[..full.find(&stop).unwrap()]);
    // The next turn reuses the cached prompt prefix.
    let mut gen = s
        .generate(
            &prompt,
            GenerateParams {
                max_tokens: 2,
                ..greedy
            },
        )
        .unwrap();
    assert_eq!(gen.timings().prompt_cached, prompt.len() - 1);
    assert!(gen.next().is_some());
}

#[test]
fn chat_keeps_history_in_the_cache_and_exits_on_eof() {
    use std::io::Write;
    let Some(m) = model() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_phiq"))
        .args(["chat", "-m", &m, "-n", "6", "--temp", "0", "-v"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello\nAnd again\n/reset\nFresh start\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let turns: Vec<&str> = err.lines().filter(|l| l.starts_with("[prompt")).collect();
    assert_eq!(turns.len(), 3, "{err}");
    // Turn 2 reuses turn 1 from the cache; after /reset nothing is cached.
    assert!(turns[0].contains("(0 cached)"), "{}", turns[0]);
    assert!(!turns[1].contains("(0 cached)"), "{}", turns[1]);
    assert!(turns[2].contains("(0 cached)"), "{}", turns[2]);
    assert!(err.contains("new conversation"));
}

/// `bench -t 1,2` (a list, as llama-bench) and `-o csv` / `-o jsonl` with llama-bench's
/// field names; CSV quoting checked by parsing it back.
#[test]
fn bench_thread_lists_and_csv() {
    let Some(m) = model() else { return };
    let (code, out, err) = phiq(&[
        "bench", "-m", &m, "-p", "8", "-n", "2", "-r", "1", "-t", "1,2", "-o", "csv",
    ]);
    assert_eq!(code, 0, "{err}");
    // RFC 4180 fields: quoted ones may hold commas and doubled quotes.
    let parse = |line: &str| -> Vec<String> {
        let (mut fields, mut cur, mut quoted, mut chars) =
            (Vec::new(), String::new(), false, line.chars().peekable());
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        fields.push(cur);
        fields
    };
    let lines: Vec<Vec<String>> = out.lines().map(parse).collect();
    let header = &lines[0];
    for f in [
        "model_filename",
        "model_type",
        "n_threads",
        "n_prompt",
        "n_gen",
        "avg_ts",
        "test",
    ] {
        assert!(header.iter().any(|h| h == f), "{f} missing: {out}");
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(
        lines.len(),
        5,
        "a header and pp8, tg2 for each of 1 and 2 threads: {out}"
    );
    let mut seen: Vec<(String, String)> = Vec::new();
    for row in &lines[1..] {
        assert_eq!(row.len(), header.len(), "{row:?}");
        assert!(row[col("model_type")].contains("Q8_0:"), "{row:?}");
        assert!(row[col("avg_ts")].parse::<f64>().unwrap() > 0.0);
        seen.push((row[col("n_threads")].clone(), row[col("test")].clone()));
    }
    for t in ["1", "2"] {
        for test in ["pp8", "tg2"] {
            assert!(seen.contains(&(t.into(), test.into())), "{seen:?}");
        }
    }
    let (code, out, err) = phiq(&[
        "bench", "-m", &m, "-p", "8", "-n", "0", "-r", "1", "-o", "jsonl",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["test"], "pp8");
    let (code, _, err) = phiq(&["bench", "-m", &m, "-t", "2,0"]);
    assert_ne!(code, 0);
    assert!(err.contains("at least 1"), "{err}");
}

#[test]
fn bench_reports_llama_bench_fields() {
    let Some(m) = model() else { return };
    let (code, out, err) = phiq(&[
        "bench", "-m", &m, "-p", "16", "-n", "4", "-r", "2", "-d", "0,8", "-o", "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4); // pp16, tg4 at depths 0 and 8
    for r in rows {
        for f in [
            "n_prompt",
            "n_gen",
            "n_depth",
            "avg_ts",
            "stddev_ts",
            "model_size",
            "model_n_params",
            "n_threads",
        ] {
            assert!(!r[f].is_null(), "{f} missing: {r}");
        }
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
        assert_eq!(r["samples_ts"].as_array().unwrap().len(), 2);
    }
    let (code, md, err) = phiq(&["bench", "-m", &m, "-p", "8", "-n", "0", "-r", "1"]);
    assert_eq!(code, 0);
    assert!(md.contains("| pp8 |"), "{md}");
    // No roofline column unless --roofline, and then filled on every row.
    assert!(
        !md.contains("roofline") && md.lines().all(|l| !l.contains("|  |")),
        "{md}"
    );
    // stderr: only lines that say they are phiq's.
    assert!(
        err.lines().all(|l| l.is_empty() || l.starts_with("phiq")),
        "{err}"
    );
    let (code, md, _) = phiq(&[
        "bench",
        "-m",
        &m,
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "--roofline",
    ]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.contains("| pp8 |") || l.contains("| tg2 |"))
        .collect();
    assert_eq!(rows.len(), 2, "{md}");
    assert!(rows.iter().all(|l| l.matches('|').count() == 9), "{md}");
    assert!(
        rows[0].contains("compute-bound") && rows[1].contains("% of"),
        "{md}"
    );
    let (code, _, err) = phiq(&["bench", "-m", &m, "-p", "0", "-n", "0"]);
    assert!(code != 0 && err.contains("nothing to measure"), "{err}");
}

/// A full context in `chat`: by default a message that no longer fits is refused with
/// what to do (/clear, --context-shift, -c); with `--context-shift` the oldest turns are
/// dropped (and the user told), so every message gets an answer. An unknown /command is
/// an error, not a message; `//` sends a message that starts with '/'.
#[test]
fn chat_full_context_and_commands() {
    let Some(m) = model() else { return };
    let input = "Alice was beginning\nDown, down, down\n/foo bar\nCuriouser and curiouser\n//etc\nThe rabbit\n";
    let chat = |extra: &[&str]| {
        let mut args = vec![
            "chat",
            "-m",
            &m,
            "-c",
            "128",
            "-n",
            "30",
            "--temp",
            "0",
            "-v",
            "--system",
            "Alice in Wonderland",
        ];
        args.extend_from_slice(extra);
        phiq_stdin(&args, Some(input))
    };
    let (code, _, err) = chat(&["--context-shift"]);
    assert_eq!(code, 0, "{err}");
    let answers = err.lines().filter(|l| l.starts_with("[prompt")).count();
    assert_eq!(answers, 5, "every message but /foo is answered: {err}");
    assert!(err.contains("unknown command /foo"), "{err}");
    assert!(
        err.contains(
            "is full: dropped the 1 oldest turn of the conversation (the system message stays)"
        ),
        "{err}"
    );
    assert!(!err.contains("does not fit"), "{err}");
    let (code, _, err) = chat(&[]);
    assert_eq!(code, 0, "{err}");
    let answers = err.lines().filter(|l| l.starts_with("[prompt")).count();
    assert!(answers < 5, "{err}");
    assert!(
        err.contains("the context (128 tokens) is full")
            && err.contains(
                "/clear starts a new conversation; --context-shift drops the oldest turns instead"
            )
            && !err.contains("dropped the"),
        "{err}"
    );
}

/// A message that alone does not fit the context is refused with a reason (and the chat
/// goes on).
#[test]
fn chat_message_too_long_for_the_context() {
    let Some(m) = model() else { return };
    let long = "Alice was beginning to get very tired ".repeat(20);
    let (code, _, err) = phiq_stdin(
        &["chat", "-m", &m, "-c", "64", "-n", "4", "--temp", "0", "-v"],
        Some(&format!("{long}\nAlice\n")),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("does not fit the context of 64 tokens")
            && err.contains("shorten it, or raise -c"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("[prompt")).count(),
        1,
        "{err}"
    );
}

/// `phiq chat` at a real terminal (tests/python/chat_tty.py drives it through a
/// pseudo-terminal): Ctrl-C clears the line, an unknown /command is an error, continuation
/// lines get a prompt, Ctrl-D exits with a newline, the history is saved.
#[cfg(unix)]
#[test]
fn chat_at_a_terminal() {
    let Some(m) = model() else { return };
    let history = std::env::temp_dir().join(format!("phiq-history-{}", std::process::id()));
    let _ = std::fs::remove_file(&history);
    let out = Command::new("python3")
        .arg(repo_root().join("tests/python/chat_tty.py"))
        .arg(env!("CARGO_BIN_EXE_phiq"))
        .arg(&m)
        .arg(&history)
        .output()
        .expect("python3 runs tests/python/chat_tty.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("chat tty: all checks passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&history);
}

#[test]
fn chat_help_lists_the_commands() {
    let (code, out, err) = phiq(&["chat", "--help"]);
    assert_eq!(code, 0, "{err}");
    for c in [
        "/reset",
        "/system TEXT",
        "/exit",
        "//TEXT",
        "Ctrl-C",
        "Ctrl-D",
    ] {
        assert!(out.contains(c), "{c} missing from chat --help:\n{out}");
    }
}

/// `--reasoning`: a model whose template opens the thinking writes only thinking here;
/// `show` prints it as it is to a pipe and dimmed at a terminal, `hide` leaves it out; a
/// reply without thinking is the same either way.
#[test]
fn run_shows_or_hides_the_thinking() {
    let Some(m) = model() else { return };
    let think = demo_with_thinking_template();
    let t = think.to_str().unwrap();
    let args = |model: &str, mode: &str| -> Vec<String> {
        [
            "run",
            "-m",
            model,
            "--chat",
            "-p",
            "Alice",
            "-n",
            "8",
            "--temp",
            "0",
            "--reasoning",
            mode,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        phiq(&a)
    };
    let (code, shown, err) = run(args(t, "show"));
    assert_eq!(code, 0, "{err}");
    assert!(
        !shown.trim().is_empty() && !shown.contains('\x1b'),
        "{shown:?}"
    );
    let (code, hidden, err) = run(args(t, "hide"));
    assert_eq!((code, hidden.as_str()), (0, ""), "{err}");
    let (_, plain_show, _) = run(args(&m, "show"));
    let (_, plain_hide, _) = run(args(&m, "hide"));
    assert!(!plain_show.is_empty());
    assert_eq!(plain_show, plain_hide);

    // At a terminal (a pseudo-terminal from Python's pty): the thinking is dimmed.
    #[cfg(unix)]
    {
        let out = Command::new("python3")
            .args(["-c", "import pty, sys; pty.spawn(sys.argv[1:])"])
            .arg(env!("CARGO_BIN_EXE_phiq"))
            .args(args(t, "show"))
            .stdin(Stdio::null())
            .output()
            .expect("python3");
        let tty = String::from_utf8_lossy(&out.stdout);
        assert!(
            tty.contains("\x1b[2m") && tty.contains("\x1b[22m"),
            "{tty:?}"
        );
        let undimmed = tty.replace("\x1b[2m", "").replace("\x1b[22m", "");
        assert!(undimmed.contains(shown.trim()), "{tty:?} vs {shown:?}");
    }
}

/// `phiq --version` names the kernel level in use (PHIQ_ISA's when set, an error naming
/// the choices for an unknown one) and the CPU features it saw, as std::arch detects them.
#[test]
fn version_names_the_level_and_the_features_seen() {
    let run = |isa: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_phiq"));
        cmd.arg("--version");
        match isa {
            Some(i) => cmd.env("PHIQ_ISA", i),
            None => cmd.env_remove("PHIQ_ISA"),
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let v = run(Some("scalar"));
    assert!(v.contains("kernels: scalar;"), "{v}");
    let v = run(Some("avx3"));
    assert!(
        v.contains("kernels: error:") && v.contains("scalar, avx2, avxvnni, avx512"),
        "{v}"
    );
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let v = run(None);
        let features = v
            .split("features seen: ")
            .nth(1)
            .unwrap_or_else(|| panic!("{v}"));
        for (name, seen) in [
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("avxvnni", has!("avxvnni")),
            ("avx512f", has!("avx512f")),
            ("avx512vnni", has!("avx512vnni")),
        ] {
            assert_eq!(
                features.split([' ', ')', '\n']).any(|f| f == name),
                seen,
                "{name}: {v}"
            );
        }
        if has!("avxvnni") && has!("avx2") && has!("fma") && has!("f16c") {
            let v = run(Some("avxvnni"));
            assert!(
                v.contains("kernels: avxvnni;") && v.contains("avxvnni"),
                "{v}"
            );
        }
    }
}
