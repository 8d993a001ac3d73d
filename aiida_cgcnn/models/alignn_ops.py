"""ALIGNN's batch-norm-heavy steps as hand-written autograd functions, for speed on CPU.

:meth:`EdgeGatedConv.reference <aiida_cgcnn.models.alignn.EdgeGatedConv.reference>` and
:meth:`Dense.reference <aiida_cgcnn.models.alignn.Dense.reference>` write ALIGNN as the paper's
equations with ordinary autograd. On the line graph, edges outnumber nodes twelvefold, so the cost
is in the (edges × features) arrays, and there autograd spends more time moving memory than
computing: a fresh array for every step (gathers, sums, the gate, batch norm, SiLU, the residual,
and as many backwards), each written to and read back from main memory, and on CPU each fresh
array paid for again in page faults. The functions here compute the same maths

- **in row blocks** (:data:`BLOCK_ROWS`, CPU only): every step of a block runs while the block is in
  cache; only the block's inputs and outputs travel to and from main memory;
- **recomputing instead of storing**: the gate σ(m) and the normalised activations are recomputed
  in the backward pass, so a line-graph layer keeps one (edges × features) array for its backward
  pass (m) instead of about five;
- **in reused memory** (:class:`Workspace`): scratch blocks, and the arrays that outlive a call
  (m, the new edge vectors, the edge gradient) are kept from one batch to the next;
- with the gradient of m from both its readers (gate and edge update) accumulated in one array.

Reusing an output array is safe because autograd checks saved tensors: should a second forward pass
overwrite an array that a pending backward pass still needs, that backward pass raises instead of
computing a wrong gradient. ALIGNN therefore wants forward and backward passes to alternate (as in
any training loop); to keep several graphs alive at once, set ``model.workspace = None`` (the
reference path). Gradients are never handed back in reused memory where autograd could keep them
(leaf tensors). Everything is checked against the reference with ``torch.autograd.gradcheck`` in
double precision (``tests/models/test_alignn.py``). Batch norm only: layer norm takes the reference
path.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BLOCK_ROWS", "Workspace", "dense_norm_silu", "gated_edges"]

BLOCK_ROWS = 512
"""Rows per block on CPU: 512 × 256 float32 (0.5 MB) keeps every scratch block in a core's L2 cache."""


class Workspace:
    """Arrays reused across layers and batches: scratch blocks, and per-layer output arrays.

    Each named array grows to the largest size asked for (with headroom) and is handed out as a
    contiguous view of its first rows. One workspace per model; not thread-safe. It is never copied
    or pickled with its model (a copy starts empty), and :meth:`clear` frees it.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, torch.Tensor] = {}

    def get(self, name: str, like: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """An array of ``like``'s width, dtype and device with ``rows`` (default ``like``'s) rows;
        its contents are whatever the last user left."""
        rows = like.shape[0] if rows is None else rows
        cols = like.shape[1]
        array = self._arrays.get(name)
        if (
            array is None
            or array.shape[0] < rows
            or array.shape[1] != cols
            or array.device != like.device
            or array.dtype != like.dtype
        ):
            # headroom, so that a slightly larger batch does not reallocate
            array = torch.empty((rows * 5 // 4 + 1, cols), dtype=like.dtype, device=like.device)
            self._arrays[name] = array
        return array[:rows]

    def clear(self) -> None:
        """Free every array (they are made again when next needed)."""
        self._arrays.clear()

    def __deepcopy__(self, memo) -> Workspace:
        return Workspace()

    def __getstate__(self) -> dict:
        return {"_arrays": {}}


def _blocks(rows: int, device: torch.device) -> list[slice]:
    """Row blocks: cache-sized on CPU (one per thread, so that each parallel step has a block per
    core); a single block on accelerators, which need no blocking."""
    step = BLOCK_ROWS * torch.get_num_threads() if device.type == "cpu" else max(rows, 1)
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def _output_array(workspace: Workspace, name: str, like: torch.Tensor, keep: bool) -> torch.Tensor:
    """Where an output goes: the caller's reused array when it is kept for a backward pass (the
    layer's own, so one layer's array outlives the next layer's call), else a fresh one, freed as
    soon as the next layer is done with it (inference holds one layer's arrays at a time)."""
    return workspace.get(name, like) if keep else torch.empty_like(like)


def _gradient_array(workspace: Workspace, name: str, like: torch.Tensor) -> torch.Tensor:
    """Where the gradient of ``like`` goes: reused memory, unless autograd could keep it as a leaf's
    ``.grad`` (then a fresh array)."""
    return workspace.get(name, like) if like.grad_fn is not None else torch.empty_like(like)


def _keep(*tensors: torch.Tensor) -> bool:
    """Whether this call records a graph for a backward pass."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# --- batch norm -------------------------------------------------------------------------------


class _BlockStats:
    """Per-column mean and biased variance of a row-blocked array, combined in float64 (Chan et al.)."""

    def __init__(self, like: torch.Tensor, blocks: list[slice]):
        self.rows = like.shape[0]
        self.sizes = torch.tensor([b.stop - b.start for b in blocks], dtype=torch.float64, device=like.device)
        self.means = like.new_empty((len(blocks), like.shape[1]))
        self.m2 = like.new_empty((len(blocks), like.shape[1]))

    def add(self, k: int, block: torch.Tensor, scratch: torch.Tensor) -> None:
        mean = torch.sum(block, 0, out=self.means[k]).div_(block.shape[0])
        torch.sum(torch.sub(block, mean, out=scratch).square_(), 0, out=self.m2[k])

    def result(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        sizes, means = self.sizes[:, None], self.means.double()
        mean = (sizes * means).sum(0) / self.rows
        m2 = self.m2.double().sum(0) + (sizes * (means - mean).square()).sum(0)
        return mean.to(dtype), (m2 / self.rows).to(dtype)


def _norm_constants(
    norm: nn.BatchNorm1d, stats: _BlockStats | None, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """Mean, 1/std, scale γ/std and shift β − mean·scale of batch norm; in training from the batch's
    ``stats``, updating the running statistics as :class:`torch.nn.BatchNorm1d` does."""
    if stats is None:
        mean, var = norm.running_mean, norm.running_var
    else:
        mean, var = stats.result(dtype)
        if norm.track_running_stats:
            norm.num_batches_tracked.add_(1)
            factor = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
            unbiased = var * (stats.rows / max(stats.rows - 1, 1))
            norm.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
            norm.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
    invstd = torch.rsqrt(var + norm.eps)
    scale = norm.weight * invstd
    return mean, invstd, scale, norm.bias - mean * scale


def _silu_grad(grad_out: torch.Tensor, x: torch.Tensor, scale, shift, out: torch.Tensor) -> torch.Tensor:
    """d/dy of SiLU(y) at y = scale·x + shift (y recomputed), written into ``out``."""
    y = torch.addcmul(shift, x, scale, out=out)
    return torch.ops.aten.silu_backward.grad_input(grad_out, y, grad_input=y)


class _NormGrads:
    """Batch norm's backward pass over row blocks: the gradients of γ and β, and the two constants
    of the input gradient in training, d/dx = scale·g_y + slope·x − offset (g_y: d/dy of BN's output)."""

    def __init__(self, like: torch.Tensor, blocks: list[slice]):
        self.rows = like.shape[0]
        self.beta = like.new_empty((len(blocks), like.shape[1]))
        self.centred = like.new_empty((len(blocks), like.shape[1]))

    def add(
        self, k: int, grad_y: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, scratch: torch.Tensor
    ) -> None:
        torch.sum(grad_y, 0, out=self.beta[k])
        torch.sum(torch.sub(x, mean, out=scratch).mul_(grad_y), 0, out=self.centred[k])

    def finish(self, saved: tuple[torch.Tensor, ...], training: bool):
        mean, invstd, scale, _ = saved
        grad_beta = self.beta.sum(0)
        grad_gamma = self.centred.sum(0) * invstd
        if not training:
            return grad_gamma, grad_beta, None, None
        # scale·(g_y − mean(g_y) − x̂·mean(g_y·x̂)): the last two terms are linear in x
        slope = -scale * invstd * grad_gamma / self.rows
        return grad_gamma, grad_beta, slope, scale * grad_beta / self.rows + slope * mean


# --- SiLU(BN(x)) ------------------------------------------------------------------------------


class _NormSiLU(torch.autograd.Function):
    """x -> SiLU(BN(x))."""

    @staticmethod
    def forward(ctx, x, gamma, beta, norm, workspace, name, keep):
        blocks = _blocks(x.shape[0], x.device)
        scratch = workspace.get("scratch", x, blocks[0].stop)
        stats = _BlockStats(x, blocks) if norm.training else None
        if stats is not None:
            for k, rows in enumerate(blocks):
                stats.add(k, x[rows], scratch[: rows.stop - rows.start])
        saved = _norm_constants(norm, stats, x.dtype)
        out = _output_array(workspace, name, x, keep)
        for rows in blocks:
            y = torch.addcmul(saved[3], x[rows], saved[2], out=scratch[: rows.stop - rows.start])
            torch.ops.aten.silu.out(y, out=out[rows])
        ctx.workspace, ctx.name, ctx.training = workspace, name, norm.training
        ctx.save_for_backward(x, *saved)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, *saved = ctx.saved_tensors
        mean, _, scale, shift = saved
        blocks = _blocks(x.shape[0], x.device)
        ws = ctx.workspace
        buffer, scratch = ws.get("sigma", x, blocks[0].stop), ws.get("scratch", x, blocks[0].stop)
        grads = _NormGrads(x, blocks)
        for k, rows in enumerate(blocks):
            n = rows.stop - rows.start
            grads.add(
                k, _silu_grad(grad_out[rows], x[rows], scale, shift, buffer[:n]), x[rows], mean, scratch[:n]
            )
        grad_gamma, grad_beta, slope, offset = grads.finish(tuple(saved), ctx.training)
        grad_x = _gradient_array(ws, ctx.name + ".grad", x)
        for rows in blocks:
            grad_y = _silu_grad(grad_out[rows], x[rows], scale, shift, buffer[: rows.stop - rows.start])
            block = torch.mul(grad_y, scale, out=grad_x[rows])
            if slope is not None:
                block.addcmul_(x[rows], slope).sub_(offset)
        return grad_x, grad_gamma, grad_beta, None, None, None, None


def dense_norm_silu(x: torch.Tensor, norm: nn.BatchNorm1d, workspace: Workspace, name: str) -> torch.Tensor:
    """SiLU(norm(x)); ``name`` labels the caller's output array in ``workspace``."""
    return _NormSiLU.apply(x, norm.weight, norm.bias, norm, workspace, name, _keep(x, norm.weight))


# --- the edge side of an edge-gated convolution -----------------------------------------------


class _GatedEdges(torch.autograd.Function):
    """(a, b, w, e) -> (Σ σ(m)⊙w_j, Σ σ(m), e + SiLU(BN(m))) with m_ij = a_i + b_j + C e_ij."""

    @staticmethod
    def forward(ctx, a, b, w, e, weight, gamma, beta, src, dst, norm, workspace, name, keep):
        blocks = _blocks(e.shape[0], e.device)
        scratch, sigma_block = (
            workspace.get("scratch", e, blocks[0].stop),
            workspace.get("sigma", e, blocks[0].stop),
        )
        m = workspace.get(name + ".m" if keep else "m", e)  # saved for the backward pass, if any
        numerator, denominator = a.new_zeros(a.shape), a.new_zeros(a.shape)
        stats = _BlockStats(e, blocks) if norm is not None and norm.training else None
        for k, rows in enumerate(blocks):
            s, d, block, n = src[rows], dst[rows], m[rows], rows.stop - rows.start
            torch.index_select(a, 0, d, out=block)
            block.add_(torch.index_select(b, 0, s, out=scratch[:n]))
            block.addmm_(e[rows], weight.t())
            sigma = torch.sigmoid(block, out=sigma_block[:n])
            denominator.index_add_(0, d, sigma)
            numerator.index_add_(0, d, torch.index_select(w, 0, s, out=scratch[:n]).mul_(sigma))
            if stats is not None:
                stats.add(k, block, scratch[:n])
        ctx.workspace, ctx.name = workspace, name
        ctx.training = norm is not None and norm.training
        if norm is None:
            ctx.save_for_backward(m, w, e, weight, src, dst)
            return numerator, denominator
        saved = _norm_constants(norm, stats, e.dtype)
        e_new = _output_array(workspace, name + ".e", e, keep)
        for rows in blocks:
            y = torch.addcmul(saved[3], m[rows], saved[2], out=scratch[: rows.stop - rows.start])
            torch.ops.aten.silu.out(y, out=e_new[rows]).add_(e[rows])
        ctx.save_for_backward(m, w, e, weight, src, dst, *saved)
        return numerator, denominator, e_new

    @staticmethod
    def backward(ctx, grad_numerator, grad_denominator, grad_e_new=None):
        m, w, e, weight, src, dst, *saved = ctx.saved_tensors
        blocks = _blocks(m.shape[0], m.device)
        ws, first = ctx.workspace, blocks[0].stop
        scratch, sigma_block, grad_block = (
            ws.get("scratch", m, first),
            ws.get("sigma", m, first),
            ws.get("grad", m, first),
        )
        slope = offset = grad_gamma = grad_beta = None
        if grad_e_new is not None:
            mean, _, scale, shift = saved
            grads = _NormGrads(m, blocks)
            for k, rows in enumerate(blocks):
                n = rows.stop - rows.start
                grad_y = _silu_grad(grad_e_new[rows], m[rows], scale, shift, sigma_block[:n])
                grads.add(k, grad_y, m[rows], mean, scratch[:n])
            grad_gamma, grad_beta, slope, offset = grads.finish(tuple(saved), ctx.training)
        needs = ctx.needs_input_grad
        grad_a, grad_b, grad_w = w.new_zeros(w.shape), w.new_zeros(w.shape), w.new_zeros(w.shape)
        grad_e = _gradient_array(ws, ctx.name + ".grad", e) if needs[3] else None
        grad_weight = weight.new_zeros(weight.shape) if needs[4] else None
        for rows in blocks:
            s, d, x, n = src[rows], dst[rows], m[rows], rows.stop - rows.start
            sigma = torch.sigmoid(x, out=sigma_block[:n])
            # gate: dL/dσ_ij = g_num_i ⊙ w_j + g_den_i, and dL/dw_j = Σ_i g_num_i ⊙ σ_ij
            grad_m = torch.index_select(grad_numerator, 0, d, out=grad_block[:n])
            grad_w.index_add_(0, s, torch.mul(grad_m, sigma, out=scratch[:n]))
            grad_m.mul_(torch.index_select(w, 0, s, out=scratch[:n]))
            grad_m.add_(torch.index_select(grad_denominator, 0, d, out=scratch[:n]))
            torch.ops.aten.sigmoid_backward.grad_input(grad_m, sigma, grad_input=grad_m)
            if grad_e_new is not None:
                # edge update: through SiLU and batch norm
                grad_m.addcmul_(
                    _silu_grad(grad_e_new[rows], x, saved[2], saved[3], sigma_block[:n]), saved[2]
                )
                if slope is not None:
                    grad_m.addcmul_(x, slope).sub_(offset)
            grad_a.index_add_(0, d, grad_m)
            grad_b.index_add_(0, s, grad_m)
            if grad_e is not None:
                torch.mm(grad_m, weight, out=grad_e[rows])
                if grad_e_new is not None:
                    grad_e[rows].add_(grad_e_new[rows])  # the residual
            if grad_weight is not None:
                grad_weight.addmm_(grad_m.t(), e[rows])
        return (
            grad_a,
            grad_b,
            grad_w,
            grad_e,
            grad_weight,
            grad_gamma,
            grad_beta,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def gated_edges(
    a: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    e: torch.Tensor,
    weight: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    norm: nn.BatchNorm1d | None,
    workspace: Workspace,
    name: str,
) -> tuple[torch.Tensor, ...]:
    """Gated sums and (with ``norm``) new edge vectors of an edge-gated convolution.

    With m_ij = a_i + b_j + C e_ij (``a``, ``b``: the receiving and the sending node's gate terms,
    ``weight`` = C), returns Σ_j σ(m_ij) ⊙ w_j and Σ_j σ(m_ij) for each node i (``dst``) and, if
    ``norm`` is given, e_ij + SiLU(norm(m_ij)). ``name`` labels the caller's arrays in ``workspace``.
    """
    gamma = None if norm is None else norm.weight
    beta = None if norm is None else norm.bias
    keep = _keep(a, b, w, e, weight)
    return _GatedEdges.apply(a, b, w, e, weight, gamma, beta, src, dst, norm, workspace, name, keep)
