//! Context shift (`--context-shift`): a conversation that outgrows its context drops its
//! oldest turns and the answer goes on. The reference evaluates the kept tokens from
//! scratch in a fresh session: the shifted generation (which keeps the cached system
//! prompt and re-evaluates only the rest) must continue exactly as that reference does.

mod common;

use common::*;
use phiq::{
    ChatMessage, ContextShift, GenerateParams, Model, ModelOptions, SamplerParams, StopReason,
};

fn demo() -> Model {
    let opts = ModelOptions {
        threads: Some(1),
        ..Default::default()
    };
    Model::load(repo_root().join("models/phiq-demo.gguf"), &opts).unwrap()
}

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You tell the story of Alice in Wonderland."),
        ChatMessage::user("Where did the White Rabbit go?"),
        ChatMessage::assistant("Down a large rabbit-hole under the hedge."),
        ChatMessage::user("What did Alice see as she fell?"),
        ChatMessage::assistant("Cupboards and book-shelves, maps and pictures hung upon pegs."),
        ChatMessage::user("What was written on the jar she took down?"),
        ChatMessage::assistant("ORANGE MARMALADE, but to her great disappointment it was empty."),
        ChatMessage::user("Go on with the story."),
    ]
}

#[test]
fn a_shifted_answer_continues_as_the_kept_tokens_evaluated_from_scratch() {
    let model = demo();
    let tok = model.tokenizer().unwrap();
    let n_ctx = 192;
    let mut shift = ContextShift::new(conversation(), 8);
    let prompt = shift.prompt(tok, n_ctx).unwrap();
    assert!(prompt.len() + 8 <= n_ctx);
    let first_kept = shift.messages().len();
    let mut session = model.session(n_ctx).unwrap();
    let params = GenerateParams {
        max_tokens: 110,
        sampler: SamplerParams::greedy(),
        ignore_eos: true,
        ..GenerateParams::default()
    };
    // (the sequence each shift returned, the answer's length then)
    let mut kept: Vec<(Vec<u32>, usize)> = Vec::new();
    let (answer, logprobs, stop) = {
        let mut gen = session.generate(&prompt, params).unwrap();
        gen.record_logprobs(0);
        gen.shift_with(|answer| {
            let next = shift.shift(tok, n_ctx, answer)?;
            kept.extend(next.clone().map(|ids| (ids, answer.len())));
            Ok(next)
        });
        let mut logprobs = Vec::new();
        while let Some(piece) = gen.next() {
            piece.unwrap();
            logprobs.extend(gen.take_logprobs().into_iter().map(|l| l.logprob));
        }
        (gen.tokens().to_vec(), logprobs, gen.stop_reason().cloned())
    };
    assert_eq!(logprobs.len(), answer.len());
    assert!(
        kept.len() >= 2,
        "the answer outgrew the context: it shifted, twice: {}",
        kept.len()
    );
    assert!(shift.messages().len() < first_kept, "turns were dropped");
    assert_eq!(
        shift.messages()[0].role,
        "system",
        "the system message stays"
    );
    assert_eq!(
        shift.messages().last().unwrap().content,
        "Go on with the story."
    );
    // Each shift's sequence ends with the answer so far; from there the generation must
    // go on exactly as a fresh session that evaluates that sequence from scratch.
    let starts: Vec<usize> = kept.iter().map(|(_, k)| *k).collect();
    for (i, ((ids, k), &next)) in kept
        .iter()
        .zip(starts.iter().skip(1).chain([&answer.len()]))
        .enumerate()
    {
        let (k, end) = (*k, next);
        assert!(
            ids.ends_with(&answer[..k]),
            "shift {i}: the sequence ends with the answer so far"
        );
        // The token generated at the shift is the last of `ids`: the reference evaluates
        // them all in a fresh session and goes on token by token. Each later token must be
        // the reference's greedy choice, with the log-probability the reference gives it
        // (to float rounding: the kept prefix was evaluated in another batch).
        let mut fresh = model.session(n_ctx).unwrap();
        let mut logits = fresh.eval(ids).unwrap().to_vec();
        for j in k..end {
            let best = (0..logits.len())
                .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                .unwrap() as u32;
            assert_eq!(
                answer[j], best,
                "shift {i}: token {j} is not the reference's"
            );
            let lp = phiq::TokenLogprob::from_logits(&logits, answer[j], 0).logprob;
            assert!(
                (lp - logprobs[j]).abs() <= 1e-3,
                "shift {i}: token {j}: log-probability {} against the reference's {lp}",
                logprobs[j]
            );
            if j + 1 < end {
                logits = fresh.eval(&[answer[j]]).unwrap().to_vec();
            }
        }
    }
    assert_eq!(stop, Some(StopReason::MaxTokens), "{stop:?}");
}

#[test]
fn without_a_shift_a_full_context_stops_the_answer() {
    let model = demo();
    let tok = model.tokenizer().unwrap();
    let n_ctx = 192;
    let prompt = ContextShift::new(conversation(), 24)
        .prompt(tok, n_ctx)
        .unwrap();
    let mut session = model.session(n_ctx).unwrap();
    let params = GenerateParams {
        max_tokens: 240,
        sampler: SamplerParams::greedy(),
        ignore_eos: true,
        ..GenerateParams::default()
    };
    let mut gen = session.generate(&prompt, params).unwrap();
    for piece in &mut gen {
        piece.unwrap();
    }
    assert_eq!(gen.stop_reason(), Some(&StopReason::ContextFull));
    assert_eq!(prompt.len() + gen.tokens().len(), n_ctx + 1);
}

#[test]
fn a_conversation_too_long_to_start_drops_its_oldest_turns() {
    let model = demo();
    let tok = model.tokenizer().unwrap();
    let all = tok.encode_chat(&conversation(), true).unwrap().len();
    let n_ctx = all;
    let mut shift = ContextShift::new(conversation(), 32);
    let prompt = shift.prompt(tok, n_ctx).unwrap();
    assert!(
        shift.dropped >= 1 && prompt.len() + 32 <= n_ctx,
        "{}",
        shift.dropped
    );
    assert_eq!(prompt, tok.encode_chat(shift.messages(), true).unwrap());
    let roles: Vec<&str> = shift.messages().iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles[0], "system");
    assert_eq!(roles.last(), Some(&"user"));
    // The newest message alone must fit: otherwise an error naming the context.
    let err = ContextShift::new(conversation(), 32)
        .prompt(tok, 16)
        .unwrap_err()
        .to_string();
    assert!(err.contains("context of 16 tokens"), "{err}");
}
