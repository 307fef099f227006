//! The scale-and-grid search of one sub-block that IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S
//! share (the body of ggml's `quantize_row_iq{2_xxs,2_xs,2_s,3_xxs,3_s}_impl` between
//! the sign handling and the packing), and its neighbour choice
//! (`iq2_find_best_neighbour`, `iq3_find_best_neighbour`).
//!
//! The sub-block's magnitudes `xval` (signs are handled by the caller) are fitted as
//! `scale · (2l + 1)` with each group of N levels a grid point: a sweep of trial scales
//! `id = (2·kmax − 1 + is·step) / max` quantizes every element to its nearest level, moves
//! each group that is not a grid point to its best neighbour, and keeps the trial with the
//! best weighted least-squares score `(Σwxq)² / Σwq²`; then the groups are re-fitted at
//! that best scale (which groups, the three types differ: [`Refit`]), and the
//! least-squares scale of the result is returned.

use super::grid::{Lookup, SearchGrid};
use crate::quant::k::nearest_int;

/// Which groups are re-quantized at the best scale after the sweep.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Refit {
    /// Only the groups of the best trial that were moved to a neighbour, if any were
    /// (IQ2_XS, IQ2_S, IQ3_XXS). If no trial scored, no group counts as moved.
    OffGrid,
    /// Every group, if any of the best trial's was moved or no trial scored (IQ3_S).
    AllIfAnyOffGrid,
    /// Every group, whenever the scale is positive (IQ2_XXS).
    Always,
}

/// The parameters of one type's search.
pub(super) struct Search {
    /// ggml's `kMaxQ`: levels `0..kmax`.
    pub kmax: i32,
    /// Trial steps `is` in `-steps..=steps`, each `step` apart.
    pub steps: i32,
    pub step: f32,
    pub refit: Refit,
}

/// Fits `xval` (one sub-block's magnitudes, `weight` its importance, `waux = sqrt(weight)`),
/// with trials relative to `max`, starting from `scale`; `levels` holds the starting levels
/// (zeros, or IQ2_XXS's first fit) and receives the result. Returns the scale.
#[allow(clippy::too_many_arguments)]
pub(super) fn fit_sub_block<const N: usize>(
    grid: &SearchGrid<N>,
    p: &Search,
    xval: &[f32],
    weight: &[f32],
    waux: &[f32],
    max: f32,
    mut scale: f32,
    levels: &mut [i8],
) -> f32 {
    let n = xval.len();
    let groups = n / N;
    // Per group: is it a grid point as quantized (not moved to a neighbour)?
    let start_on_grid = p.refit == Refit::OffGrid;
    let mut on_grid = [start_on_grid; 8];
    let mut on_grid_aux = [true; 8];
    let mut aux = [0i8; 32];
    let aux = &mut aux[..n];
    let top = 2 * p.kmax - 1;
    let mut best = 0.0f32;
    for is in -p.steps..=p.steps {
        let id = (top as f32 + is as f32 * p.step) / max;
        let this_scale = 1.0 / id;
        for k in 0..groups {
            let g = k * N..(k + 1) * N;
            for i in g.clone() {
                let l = nearest_int(0.5 * (id * xval[i] - 1.0));
                aux[i] = l.min(p.kmax - 1).max(0) as i8;
            }
            on_grid_aux[k] = true;
            // (levels clamped to 0..kmax always form a pattern inside the map)
            if let Lookup::Near(near) = grid.lookup(grid.pattern(&aux[g.clone()])) {
                on_grid_aux[k] = false;
                let (x, w) = (&xval[g.clone()], &waux[g.clone()]);
                best_neighbour(grid, near, x, w, this_scale, &mut aux[g]);
            }
        }
        let (sumqx, sumq2) = weighted_sums(xval, weight, aux);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            levels.copy_from_slice(aux);
            on_grid[..groups].copy_from_slice(&on_grid_aux[..groups]);
        }
    }
    let refit = match p.refit {
        Refit::Always => true,
        Refit::OffGrid | Refit::AllIfAnyOffGrid => on_grid[..groups].iter().any(|&o| !o),
    };
    if refit && scale > 0.0 {
        let id = 1.0 / scale;
        for k in 0..groups {
            if p.refit == Refit::OffGrid && on_grid[k] {
                continue;
            }
            let g = k * N..(k + 1) * N;
            let mut l = [0i8; N];
            for (li, &x) in l.iter_mut().zip(&xval[g.clone()]) {
                *li = nearest_int(0.5 * (id * x - 1.0)).min(p.kmax - 1).max(0) as i8;
            }
            match grid.lookup(grid.pattern(&l)) {
                Lookup::Near(near) => {
                    let (x, w) = (&xval[g.clone()], &waux[g.clone()]);
                    best_neighbour(grid, near, x, w, scale, &mut levels[g]);
                }
                Lookup::Point(_) | Lookup::Outside => levels[g].copy_from_slice(&l),
            }
        }
        let (sumqx, sumq2) = weighted_sums(xval, weight, levels);
        if sumq2 > 0.0 {
            scale = sumqx / sumq2;
        }
    }
    scale
}

/// `Σ w·x·q` and `Σ w·q²` with `q = 2l + 1` (C's `w*xval[i]*q`, `w*q*q`).
pub(super) fn weighted_sums(xval: &[f32], weight: &[f32], levels: &[i8]) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for i in 0..xval.len() {
        let w = weight[i];
        let q = (2 * levels[i] as i32 + 1) as f32;
        sumqx += w * xval[i] * q;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// The neighbour in `near` closest to `xval` at `scale` (weighted squared distance, `waux`
/// the weights; the first of equals), written to `levels`: ggml's
/// `iq2_find_best_neighbour` / `iq3_find_best_neighbour`. If no distance is below
/// `f32::MAX` (infinite or NaN inputs) ggml aborts; we take the first neighbour.
pub(super) fn best_neighbour<const N: usize>(
    grid: &SearchGrid<N>,
    near: &[u16],
    xval: &[f32],
    waux: &[f32],
    scale: f32,
    levels: &mut [i8],
) -> u16 {
    let mut best_d2 = f32::MAX;
    let mut best = near[0];
    for &g in near {
        let mut d2 = 0.0f32;
        for (i, &l) in grid.point(g).iter().enumerate() {
            let q = (2 * l as i32 + 1) as f32;
            let diff = scale * q - xval[i];
            d2 += waux[i] * diff * diff;
        }
        if d2 < best_d2 {
            best_d2 = d2;
            best = g;
        }
    }
    for (l, &p) in levels.iter_mut().zip(grid.point(best)) {
        *l = p as i8;
    }
    best
}
