//! Tensor operations the f64 core does not need: a stable log-sum-exp and `J^T v` by autograd.

use candle_core::{Tensor, Var};

use super::TensorError;

/// `LSE` over dimension 0 of a `(K, N)` tensor: `m + ln sum_k exp(t_k - m)` with the max `m`
/// detached (the value and the gradient do not depend on `m`).
///
/// # Errors
/// Candle errors.
pub fn log_sum_exp0(t: &Tensor) -> Result<Tensor, TensorError> {
    let m = t.max_keepdim(0)?.detach();
    let s = t.broadcast_sub(&m)?.exp()?.sum(0)?.log()?;
    Ok((s + m.squeeze(0)?)?)
}

/// The gradient of `sum_n <s_n, v_n>` (with `v` held fixed) with respect to the variable `x`
/// that `s` was computed from: `J^T v` per row by reverse-mode autograd.
///
/// # Errors
/// Candle errors; [`TensorError::Layout`] when no gradient reaches `x` (an op without a
/// backward pass on the way).
pub fn grad_of_dot(s: &Tensor, v: &Tensor, x: &Var) -> Result<Tensor, TensorError> {
    let loss = (s * v.detach())?.sum_all()?;
    let grads = loss.backward()?;
    grads
        .get(x.as_tensor())
        .cloned()
        .ok_or_else(|| TensorError::Layout("no gradient reached x".into()))
}
