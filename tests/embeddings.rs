//! `Session::eval_hidden`: the final hidden states (after output_norm) are what the logits
//! are made from, so `hidden · outputᵀ` must give `eval_all`'s logits; and the mean-pooled
//! embedding the server returns is their normalised mean.

mod common;

use phiq::{Model, ModelOptions};

#[test]
fn hidden_states_give_the_logits() {
    let model = Model::load(
        common::repo_root().join("models/phiq-demo.gguf"),
        &ModelOptions::default(),
    )
    .unwrap();
    let tok = model.tokenizer().unwrap();
    let e = model.config.n_embd;
    let n_vocab = model.n_vocab();
    // The output matrix, dequantized: [n_vocab][n_embd].
    let out = &model.weights.output;
    let bytes = model.bytes(out);
    let row_bytes = out.row_bytes();
    let mut w = vec![0f32; n_vocab * e];
    for (r, row) in w.chunks_exact_mut(e).enumerate() {
        phiq::kernels::dynamic::dequantize(out.ty, &bytes[r * row_bytes..(r + 1) * row_bytes], row)
            .unwrap();
    }
    // Text the demo model was trained on: its unused tokens have zero embeddings (see
    // tools/train_demo.py), and a text of only those has an all-zero hidden state.
    for text in [
        "Alice",
        "the White Rabbit",
        "Down, down, down. Would the fall NEVER come to an end!",
    ] {
        let ids = tok.encode(text, true, false);
        let mut session = model.session(64).unwrap();
        let hidden = session.eval_hidden(&ids).unwrap();
        assert_eq!(hidden.len(), ids.len() * e);
        assert_eq!(session.n_past(), ids.len());
        assert!(
            hidden.iter().all(|v| v.is_finite()),
            "{text}: non-finite hidden state"
        );
        let mut session = model.session(64).unwrap();
        let logits = session.eval_all(&ids).unwrap();
        for (t, h) in hidden.chunks_exact(e).enumerate() {
            let want = &logits[t * n_vocab..(t + 1) * n_vocab];
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let mut worst = 0f32;
            for (v, wrow) in w.chunks_exact(e).enumerate() {
                let got: f32 = h.iter().zip(wrow).map(|(a, b)| a * b).sum();
                worst = worst.max((got - want[v]).abs());
            }
            // The engine's matmul quantizes the activations to Q8_0 (8-bit, per 32
            // values): about 1% of the largest logit is the error that allows.
            assert!(
                worst <= 0.01 * scale,
                "{text} token {t}: off by {worst} (largest logit {scale})"
            );
        }
        let pooled = phiq::embedding::mean_pool_normalized(&hidden, ids.len());
        let norm: f32 = pooled.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text}: norm {norm}");
    }
}
