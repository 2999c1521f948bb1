//! How a matrix operand lies in memory: shared by the f32 products
//! (`cpu.rs`, the attention loops) and the bf16 product (`bf16.rs`).

/// Row and column strides of a `rows × cols` operand stored row-major, or
/// stored as its row-major transpose (`[cols × rows]`) when `transposed`.
pub(crate) fn operand_strides(transposed: bool, rows: usize, cols: usize) -> (usize, usize) {
    if transposed {
        (1, rows)
    } else {
        (cols, 1)
    }
}
