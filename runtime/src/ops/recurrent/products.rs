//! The matrix products of a recurrent layer, on the packed product of `ops/packed.rs`, with
//! their buffer given by the caller ([`product_len`] values).

use crate::ops::isa::Isa;
use crate::ops::linear::Transposed;
use crate::ops::packed::{self, MatA, Out, Rows};

/// The buffer a product of an `m × k` left factor needs: it packed, and a block of the right.
pub(super) fn product_len(isa: Isa, m: usize, k: usize) -> usize {
    packed::packed_a_len(isa, m, k) + packed::packed_b_len(isa)
}

/// How a factor of a product is stored.
#[derive(Clone, Copy)]
pub(super) enum Stored<'a> {
    /// As it is, row-major.
    Plain(&'a [f32]),
    /// Its transpose, row-major (a weight matrix `[out, in]` used as `[in, out]`).
    Transposed(&'a [f32]),
}

/// `c[m, n] += a[m, k] · b[k, n]`, each factor stored as it says: a batch of rows times a
/// weight matrix (`b` transposed), gate gradients times a weight matrix (both plain), or a
/// weight gradient, gate gradients of every step against their inputs (`a` transposed).
pub(super) fn add_product(
    isa: Isa,
    c: &mut [f32],
    a: Stored<'_>,
    b: Stored<'_>,
    [m, k, n]: [usize; 3],
    buf: &mut [f32],
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let (packed_a, b_buf) = buf.split_at_mut(buf.len() - packed::packed_b_len(isa));
    match a {
        Stored::Plain(a) => packed::pack_a(isa, a, [k, 1], [m, k], packed_a),
        Stored::Transposed(a) => packed::pack_a(isa, a, [1, m], [m, k], packed_a),
    }
    let a = MatA::Packed(packed_a);
    match b {
        Stored::Plain(data) => {
            let rows = Rows { data, ld: n };
            packed::gemm(isa, [m, k, n], a, &rows, Out::Add, c, n, b_buf);
        }
        Stored::Transposed(data) => {
            let t = Transposed { data, ld: k };
            packed::gemm(isa, [m, k, n], a, &t, Out::Add, c, n, b_buf);
        }
    }
}
