//! Embeddings from the final hidden states ([`crate::Session::eval_hidden`]).

/// The mean of `n` rows, scaled to unit L2 norm: llama-server's default for
/// `/v1/embeddings` (OpenAI's embeddings are unit length too). The sum is scaled directly,
/// as dividing by `n` first would cancel out; an all-zero mean stays zero.
pub fn mean_pool_normalized(hidden: &[f32], n: usize) -> Vec<f32> {
    let dim = hidden.len() / n.max(1);
    let mut mean = vec![0f64; dim];
    for row in hidden.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    let norm = mean.iter().map(|m| m * m).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    mean.iter().map(|m| (m * scale) as f32).collect()
}
