//! Matrix products by one reference dot per output: what the GEMV and GEMM kernels
//! compute, up to the float rounding of their different summation orders.

/// `out[r][t] = dot(w[r], act[t])` for the rows of `w` (`[rows][n_blocks]`) and the tokens
/// of `act` (`[n_tokens][n_act_blocks]`); `out` is `[rows][n_tokens]`.
pub fn matmul<W, A>(
    w: &[W],
    n_blocks: usize,
    act: &[A],
    out: &mut [f32],
    dot: impl Fn(&[W], &[A]) -> f32,
) {
    let n_rows = w.len() / n_blocks;
    let n_tokens = out.len() / n_rows.max(1);
    let per_token = act.len() / n_tokens.max(1);
    for r in 0..n_rows {
        for t in 0..n_tokens {
            out[r * n_tokens + t] = dot(
                &w[r * n_blocks..(r + 1) * n_blocks],
                &act[t * per_token..(t + 1) * per_token],
            );
        }
    }
}
