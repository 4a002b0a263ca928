//! The skeleton as a graph: hop distances and the normalised k-hop adjacencies of DeST's
//! multi-scale graph convolution (InterAct eq. for `A^(k)`).

use crate::frame::NUM_JOINTS;

/// Hop distance between every pair of joints of a tree given by its edges (`usize::MAX` when
/// unreachable).
pub fn hop_distances(edges: &[(usize, usize)], n: usize) -> Vec<Vec<usize>> {
    let mut neighbours = vec![Vec::new(); n];
    for &(a, b) in edges {
        neighbours[a].push(b);
        neighbours[b].push(a);
    }
    (0..n)
        .map(|src| {
            let mut dist = vec![usize::MAX; n];
            dist[src] = 0;
            let mut queue = std::collections::VecDeque::from([src]);
            while let Some(at) = queue.pop_front() {
                for &next in &neighbours[at] {
                    if dist[next] == usize::MAX {
                        dist[next] = dist[at] + 1;
                        queue.push_back(next);
                    }
                }
            }
            dist
        })
        .collect()
}

/// The `scales` normalised k-hop adjacency matrices `Â_0 .. Â_{scales-1}` of the canonical
/// skeleton, each `V × V` row-major, stacked into one `(scales·V) × V` vector.
///
/// `A_0 = I`; for `k ≥ 1`, `A_k` links joints exactly `k` hops apart, plus self loops; each is
/// normalised symmetrically, `D^-1/2 A_k D^-1/2`. On the 25-joint tree (diameter 11) `Â_12 = I`,
/// which DeST keeps to match its parameter count.
pub fn k_hop_adjacency(scales: usize) -> Vec<f32> {
    let dist = hop_distances(&super::kinect_v2::BONES, NUM_JOINTS);
    let v = NUM_JOINTS;
    let mut out = Vec::with_capacity(scales * v * v);
    for k in 0..scales {
        let a: Vec<f64> = (0..v * v)
            .map(|idx| {
                let (i, j) = (idx / v, idx % v);
                let linked = if k == 0 { i == j } else { dist[i][j] == k || i == j };
                if linked { 1.0 } else { 0.0 }
            })
            .collect();
        let inv_sqrt_deg: Vec<f64> =
            (0..v).map(|i| a[i * v..(i + 1) * v].iter().sum::<f64>().powf(-0.5)).collect();
        out.extend((0..v * v).map(|idx| {
            let (i, j) = (idx / v, idx % v);
            (inv_sqrt_deg[i] * a[idx] * inv_sqrt_deg[j]) as f32
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skeleton::kinect_v2::BONES;

    #[test]
    fn canonical_graph_has_diameter_11_and_the_reference_pair_counts() {
        let dist = hop_distances(&BONES, NUM_JOINTS);
        let diameter = dist.iter().flatten().copied().max();
        assert_eq!(diameter, Some(11));
        // architecture.md §3.1: ordered pairs at distance k = 1..12.
        let expected = [48, 58, 64, 66, 80, 80, 72, 58, 40, 26, 8, 0];
        for (k, want) in (1..=12).zip(expected) {
            let got = dist.iter().flatten().filter(|&&d| d == k).count();
            assert_eq!(got, want, "pairs at distance {k}");
        }
    }

    #[test]
    fn adjacencies_are_symmetric_normalised_and_the_last_scale_is_identity() {
        let v = NUM_JOINTS;
        let a = k_hop_adjacency(13);
        assert_eq!(a.len(), 13 * v * v);
        for k in 0..13 {
            let m = &a[k * v * v..(k + 1) * v * v];
            for i in 0..v {
                for j in 0..v {
                    assert!((m[i * v + j] - m[j * v + i]).abs() < 1e-7);
                }
            }
        }
        let identity =
            |m: &[f32]| (0..v * v).all(|idx| m[idx] == if idx / v == idx % v { 1.0 } else { 0.0 });
        assert!(identity(&a[..v * v]));
        assert!(identity(&a[12 * v * v..]));
        // Â_1 between SpineBase (3 neighbours + self) and SpineMid (2 + self): 1/sqrt(4·3).
        let a1 = &a[v * v..2 * v * v];
        assert!((a1[1] - 1.0 / (12.0f32).sqrt()).abs() < 1e-6);
    }
}
