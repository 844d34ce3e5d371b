//! Splitting a span of samples or pixels into equal bins: one rule for
//! the spectrometer's bins and the time-domain rigs' time bins, so what a
//! device publishes of its bins is what it measures.

/// `n` windows of (nearly) equal width covering `[start, end)`, half-open.
pub fn equal_bins(start: usize, end: usize, n: usize) -> Vec<(usize, usize)> {
    let w = end - start;
    (0..n)
        .map(|j| (start + j * w / n, start + (j + 1) * w / n))
        .collect()
}
