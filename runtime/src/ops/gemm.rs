//! A safe, bounds-checked front for `matrixmultiply::sgemm`, so that the kernels hold no
//! `unsafe` of their own.

/// A read-only strided matrix over a slice: element `(i, j)` is `data[i*rs + j*cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// The row-major `rows × cols` matrix stored in `data` (which may be longer).
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose: a view, nothing is copied.
    pub(crate) fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Whether every element lies inside `data` (computed without overflow, so a wrapped
    /// product cannot pass for a small one).
    fn fits(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.rs)
            .zip((self.cols - 1).checked_mul(self.cs))
            .and_then(|(r, c)| r.checked_add(c));
        last.is_some_and(|last| last < self.data.len())
    }
}

/// A writable row-major `rows × cols` matrix over the start of a slice, rows `rs` apart.
#[derive(Debug)]
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
}

impl<'a> MatMut<'a> {
    /// The row-major `rows × cols` matrix stored in `data` (which may be longer).
    pub(crate) fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            rs: cols,
        }
    }

    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        (self.rows - 1)
            .checked_mul(self.rs)
            .and_then(|r| r.checked_add(self.cols))
            .is_some_and(|end| end <= self.data.len())
    }
}

/// `C ← α A B + β C`. With `β = 0`, `C` is not read (NaN or garbage in it is overwritten).
///
/// # Panics
/// When the inner dimensions disagree or a matrix reaches past the end of its slice.
pub(crate) fn sgemm(alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: MatMut<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "sgemm: inner dimensions differ");
    assert_eq!((c.rows, c.cols), (m, n), "sgemm: output shape differs");
    assert!(a.fits(), "sgemm: A out of bounds");
    assert!(b.fits(), "sgemm: B out of bounds");
    assert!(c.fits(), "sgemm: C out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    // Safety: the asserts above put every element sgemm reads, (i, j) at i*rs + j*cs for
    // i < rows and j < cols, inside `a.data` and `b.data`, and every element it writes,
    // (i, j) at i*rs + j, inside `c.data`. C has unit column stride and a row stride of at
    // least n, so no two of its elements alias, and being a `&mut` it overlaps neither A nor B. A stride that is
    // multiplied by a non-zero index is below a slice length, hence at most `isize::MAX`, so
    // those casts are lossless; when k == 0, sgemm reads neither A nor B and only scales C.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.data.as_mut_ptr(),
            c.rs as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A (2×3) Aᵀᵀ times B (3×2), with B given as the transpose of a row-major (2×3).
    #[test]
    fn strided_product() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let bt = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
        let mut c = [f32::NAN; 4];
        sgemm(
            1.0,
            Mat::new(&a, 2, 3),
            Mat::new(&bt, 2, 3).t(),
            0.0,
            MatMut::new(&mut c, 2, 2),
        );
        assert_eq!(c, [-2.0, 4.0, -2.0, 13.0]);
        sgemm(
            2.0,
            Mat::new(&a, 2, 3),
            Mat::new(&bt, 2, 3).t(),
            1.0,
            MatMut::new(&mut c, 2, 2),
        );
        assert_eq!(c, [-6.0, 12.0, -6.0, 39.0]);
    }

    #[test]
    fn empty_inner_dimension_scales_c() {
        let mut c = [1.0, 2.0];
        sgemm(
            1.0,
            Mat::new(&[], 2, 0),
            Mat::new(&[], 0, 1),
            0.5,
            MatMut::new(&mut c, 2, 1),
        );
        assert_eq!(c, [0.5, 1.0]);
    }

    #[test]
    #[should_panic(expected = "A out of bounds")]
    fn short_slice_panics() {
        let mut c = [0.0; 4];
        sgemm(
            1.0,
            Mat::new(&[1.0; 5], 2, 3),
            Mat::new(&[1.0; 6], 3, 2),
            0.0,
            MatMut::new(&mut c, 2, 2),
        );
    }
}
