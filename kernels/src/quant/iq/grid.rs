//! The IQ grids as the quantizers search them: ggml's `iq2xs_init_impl` (IQ2_XXS, IQ2_XS,
//! IQ2_S, and IQ1_S/IQ1_M's grid) and `iq3xs_init_impl` (IQ3_XXS, IQ3_S), built once, on
//! first use.
//!
//! A grid point is N level indices `l` (N = 8 elements of 2 bits for IQ1/IQ2, N = 4 of 3
//! bits for IQ3); the quantizers compute candidate patterns of levels and ask whether the
//! pattern is a grid point. For every pattern that is not, ggml precomputes its
//! neighbours: the grid points at the `nwant` smallest distinct squared distances, with
//! coordinates taken as the odd integers `2l + 1`, ordered by (distance, index) — ggml
//! sorts `(d2, index)` pairs with `qsort`, a total order since indices differ.
//!
//! The points come from the dequantization grids of [`crate::format::iq_grids`]: each
//! magnitude's rank among the grid's distinct values is its level (IQ2: 8, 25, 43 → 0, 1,
//! 2; IQ3_XXS: 4, 12, …, 52, 62 → 0…7; IQ3_S: 1, 3, …, 15 → 0…7; IQ1: −1, 0, 1 → 0, 1,
//! 2). Packed as ggml's `kgrid_*` tables (l in bits `bits·i`), these equal the tables of
//! ggml-quants.c's init functions entry for entry (checked once with a script against
//! the vendored llama.cpp source when this was written).

use std::sync::OnceLock;

use crate::format::iq_grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
};

/// A grid prepared for the search: its points as levels, and for every pattern of levels
/// either the point it is or its neighbour list.
pub(crate) struct SearchGrid<const N: usize> {
    /// `[n_points][N]` level indices, ggml's `(pg[i] - 1) / 2`.
    levels: Vec<[u8; N]>,
    /// Per pattern: `>= 0` the grid index; `< 0` `-(1 + offset)` of its entry in
    /// `neighbours` (ggml's `kmap_q2xs` / `kmap_q3xs` encoding).
    map: Vec<i32>,
    /// Entries `[count, index…]`, one per off-grid pattern.
    neighbours: Vec<u16>,
    /// Bits per level in a pattern (2 or 3).
    bits: u32,
}

/// What a pattern of levels is.
pub(crate) enum Lookup<'a> {
    /// A grid point, by index.
    Point(u16),
    /// Not a grid point: the candidate points (never empty).
    Near(&'a [u16]),
    /// A pattern outside the map: only a level outside the quantizer's range (a NaN
    /// input) gives one. ggml would read past its table there.
    Outside,
}

impl<const N: usize> SearchGrid<N> {
    /// Builds the map and neighbour lists for `points` (level indices), patterns of N
    /// levels of `bits` bits below `map_size`, `nwant` distance shells per neighbour list.
    fn build(points: Vec<[u8; N]>, bits: u32, map_size: usize, nwant: usize) -> Self {
        let mask = (1usize << bits) - 1;
        let mut map = vec![-1i32; map_size];
        for (g, p) in points.iter().enumerate() {
            let u = p
                .iter()
                .enumerate()
                .fold(0usize, |u, (k, &l)| u | (l as usize) << (bits as usize * k));
            map[u] = g as i32;
        }
        // Coordinates as ggml's odd integers 2l + 1.
        let coords: Vec<[i32; N]> = points.iter().map(|p| p.map(|l| 2 * l as i32 + 1)).collect();
        let mut neighbours = Vec::new();
        let mut d2 = vec![0i32; points.len()];
        for (u, entry) in map.iter_mut().enumerate() {
            if *entry >= 0 {
                continue;
            }
            let pos: [i32; N] =
                std::array::from_fn(|k| 2 * ((u >> (bits as usize * k)) & mask) as i32 + 1);
            for (d, c) in d2.iter_mut().zip(&coords) {
                *d = c.iter().zip(&pos).map(|(a, b)| (a - b) * (a - b)).sum();
            }
            // The `nwant` smallest distinct distances, ascending.
            let mut shells: Vec<i32> = Vec::with_capacity(nwant + 1);
            for &d in &d2 {
                if shells.contains(&d) || (shells.len() == nwant && d > shells[nwant - 1]) {
                    continue;
                }
                let at = shells.partition_point(|&s| s < d);
                shells.insert(at, d);
                shells.truncate(nwant);
            }
            let start = neighbours.len();
            *entry = -(start as i32 + 1);
            neighbours.push(0);
            for &s in &shells {
                neighbours.extend((0..d2.len()).filter(|&j| d2[j] == s).map(|j| j as u16));
            }
            neighbours[start] = (neighbours.len() - start - 1) as u16;
        }
        SearchGrid {
            levels: points,
            map,
            neighbours,
            bits,
        }
    }

    /// The pattern of `levels` (ggml's `u |= L[i] << bits*i`, in a `uint16_t`: a level
    /// outside 0..2^bits, only possible from NaN inputs, is folded in as C would).
    pub(crate) fn pattern(&self, levels: &[i8]) -> u16 {
        levels.iter().enumerate().fold(0u16, |u, (i, &l)| {
            u | ((l as i32) << (self.bits as usize * i)) as u16
        })
    }

    pub(crate) fn lookup(&self, pattern: u16) -> Lookup<'_> {
        match self.map.get(pattern as usize) {
            Some(&g) if g >= 0 => Lookup::Point(g as u16),
            Some(&g) => {
                let at = (-g - 1) as usize;
                let n = self.neighbours[at] as usize;
                Lookup::Near(&self.neighbours[at + 1..at + 1 + n])
            }
            None => Lookup::Outside,
        }
    }

    /// The grid index of `levels`, which the search has put on the grid. ggml aborts
    /// ("Oops: found point not on grid") if it is not, which only NaN inputs cause; we
    /// take the pattern's nearest point then (point 0 for a pattern outside the map).
    pub(crate) fn index_of(&self, levels: &[i8]) -> u16 {
        match self.lookup(self.pattern(levels)) {
            Lookup::Point(g) => g,
            Lookup::Near(near) => near[0],
            Lookup::Outside => 0,
        }
    }

    /// The level indices of point `g`.
    pub(crate) fn point(&self, g: u16) -> &[u8; N] {
        &self.levels[g as usize]
    }
}

/// Each value's rank among `values` (the grid's distinct magnitudes, ascending).
fn ranks<T: PartialEq + Copy, const N: usize>(grid: &[[T; N]], values: &[T]) -> Vec<[u8; N]> {
    grid.iter()
        .map(|p| p.map(|v| values.iter().position(|&w| w == v).expect("grid value") as u8))
        .collect()
}

/// 8 levels of 2 bits: patterns up to 0xAAAA with levels ≤ 2; ggml's `kmap_size`.
const IQ2_MAP_SIZE: usize = 43692;
/// 4 levels of 3 bits.
const IQ3_MAP_SIZE: usize = 4096;
const IQ2_MAGNITUDES: [u8; 3] = [8, 25, 43];

pub(crate) fn iq2xxs() -> &'static SearchGrid<8> {
    static G: OnceLock<SearchGrid<8>> = OnceLock::new();
    G.get_or_init(|| SearchGrid::build(ranks(&IQ2XXS_GRID, &IQ2_MAGNITUDES), 2, IQ2_MAP_SIZE, 2))
}

pub(crate) fn iq2xs() -> &'static SearchGrid<8> {
    static G: OnceLock<SearchGrid<8>> = OnceLock::new();
    G.get_or_init(|| SearchGrid::build(ranks(&IQ2XS_GRID, &IQ2_MAGNITUDES), 2, IQ2_MAP_SIZE, 2))
}

pub(crate) fn iq2s() -> &'static SearchGrid<8> {
    static G: OnceLock<SearchGrid<8>> = OnceLock::new();
    G.get_or_init(|| SearchGrid::build(ranks(&IQ2S_GRID, &IQ2_MAGNITUDES), 2, IQ2_MAP_SIZE, 1))
}

/// IQ1_S and IQ1_M share one grid (ggml's `iq2_data[2]`, 3 shells).
pub(crate) fn iq1s() -> &'static SearchGrid<8> {
    static G: OnceLock<SearchGrid<8>> = OnceLock::new();
    G.get_or_init(|| SearchGrid::build(ranks(&IQ1S_GRID, &[-1, 0, 1]), 2, IQ2_MAP_SIZE, 3))
}

pub(crate) fn iq3xxs() -> &'static SearchGrid<4> {
    static G: OnceLock<SearchGrid<4>> = OnceLock::new();
    G.get_or_init(|| {
        let magnitudes = [4, 12, 20, 28, 36, 44, 52, 62];
        SearchGrid::build(ranks(&IQ3XXS_GRID, &magnitudes), 3, IQ3_MAP_SIZE, 2)
    })
}

pub(crate) fn iq3s() -> &'static SearchGrid<4> {
    static G: OnceLock<SearchGrid<4>> = OnceLock::new();
    G.get_or_init(|| {
        let magnitudes = [1, 3, 5, 7, 9, 11, 13, 15];
        SearchGrid::build(ranks(&IQ3S_GRID, &magnitudes), 3, IQ3_MAP_SIZE, 3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_maps_to_itself_and_every_other_pattern_has_neighbours() {
        fn check<const N: usize>(g: &SearchGrid<N>, n_points: usize) {
            assert_eq!(g.levels.len(), n_points);
            for (i, p) in g.levels.iter().enumerate() {
                let l = p.map(|v| v as i8);
                assert_eq!(g.index_of(&l), i as u16);
            }
            let mut off = 0;
            for u in 0..g.map.len() {
                if let Lookup::Near(near) = g.lookup(u as u16) {
                    assert!(!near.is_empty());
                    off += 1;
                }
            }
            assert_eq!(off + n_points, g.map.len());
        }
        check(iq2xxs(), 256);
        check(iq2xs(), 512);
        check(iq2s(), 1024);
        check(iq1s(), 2048);
        check(iq3xxs(), 256);
        check(iq3s(), 512);
    }

    #[test]
    fn neighbours_are_the_nearest_shells_in_index_order() {
        // Pattern 3 (first level 3, beyond the IQ2 grids' 0..2): its nearest IQ2_S point
        // (one shell) is at distance (7-5)² = 4 from [5,1,1,…], i.e. point 1.
        let Lookup::Near(near) = iq2s().lookup(3) else {
            panic!("pattern 3 is not an IQ2 grid point")
        };
        assert_eq!(near[0], 1);
        for w in near.windows(2) {
            assert!(w[0] < w[1], "one shell: ascending indices");
        }
    }
}
