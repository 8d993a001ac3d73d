"""ALIGNN's normalised edge steps as hand-written autograd functions, for speed on CPU.

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
double precision (``tests/models/test_alignn.py``), with batch norm (the paper) and layer norm
(upstream's pure-PyTorch models).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BLOCK_ROWS", "Norm", "Workspace", "dense_norm_silu", "gated_edges"]

Norm = nn.BatchNorm1d | nn.LayerNorm
"""The normalisations ALIGNN's layers take."""

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


# --- normalisation, block by block --------------------------------------------------------------


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


def _uses_batch_statistics(norm: nn.BatchNorm1d) -> bool:
    """As :class:`torch.nn.BatchNorm1d` decides: in training, or when it keeps no running statistics."""
    return norm.training or norm.running_mean is None or norm.running_var is None


def _silu_grad(grad_out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/dy of SiLU at ``y``, written over ``y``."""
    return torch.ops.aten.silu_backward.grad_input(grad_out, y, grad_input=y)


class _BatchNormKernel:
    """SiLU(BN(x)) over row blocks. Batch statistics need every block: the forward pass takes one
    pass to gather them (:meth:`observe`) before normalising; the backward pass one to sum the
    gradients of γ and β, which the input gradient depends on (:meth:`prepare_backward`)."""

    needs_passes = True
    norm: nn.BatchNorm1d
    training: bool  # normalises by the batch's statistics, so its input gradient has two more terms
    stats: _BlockStats | None
    mean: torch.Tensor
    invstd: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    grad_gamma: torch.Tensor
    grad_beta: torch.Tensor
    linear: tuple[torch.Tensor, torch.Tensor] | None  # slope and offset, see prepare_backward

    @classmethod
    def for_backward(cls, saved: tuple[torch.Tensor, ...], training: bool) -> _BatchNormKernel:
        """The kernel of a backward pass, from the tensors :meth:`saved` by the forward pass."""
        kernel = cls()
        kernel.mean, kernel.invstd, kernel.scale, kernel.shift = saved
        kernel.training = training
        kernel.linear = None
        return kernel

    @classmethod
    def for_forward(cls, norm: Norm, like: torch.Tensor, blocks: list[slice]) -> _BatchNormKernel:
        """The kernel of a forward pass (statistics gathered by :meth:`observe` when it normalises by the
        batch's)."""
        assert isinstance(norm, nn.BatchNorm1d)  # _kernel_type's choice
        kernel = cls()
        kernel.norm, kernel.training = norm, _uses_batch_statistics(norm)
        kernel.stats = _BlockStats(like, blocks) if kernel.training else None
        return kernel

    def observe(self, k: int, block: torch.Tensor, scratch: torch.Tensor) -> None:
        if self.stats is not None:
            self.stats.add(k, block, scratch)

    def finish_stats(self, dtype: torch.dtype) -> None:
        """Mean, 1/std, scale γ/std and shift β − mean·scale; in training from the batch, updating the
        running statistics as :class:`torch.nn.BatchNorm1d` does."""
        norm, stats = self.norm, self.stats
        running_mean, running_var, tracked = norm.running_mean, norm.running_var, norm.num_batches_tracked
        if stats is None:
            assert running_mean is not None and running_var is not None  # else _uses_batch_statistics
            mean, var = running_mean, running_var
        else:
            mean, var = stats.result(dtype)
            if norm.training and running_mean is not None and running_var is not None and tracked is not None:
                tracked.add_(1)
                momentum = norm.momentum
                factor = momentum if momentum is not None else 1.0 / float(tracked)
                unbiased = var * (stats.rows / max(stats.rows - 1, 1))
                running_mean.mul_(1 - factor).add_(mean, alpha=factor)
                running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        self.mean, self.invstd = mean, torch.rsqrt(var + norm.eps)
        self.scale = norm.weight * self.invstd
        self.shift = norm.bias - mean * self.scale

    def normalise(self, rows: slice, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """BN(x) of one block, written into ``out``."""
        return torch.addcmul(self.shift, x, self.scale, out=out)

    def saved(self) -> tuple[torch.Tensor, ...]:
        return self.mean, self.invstd, self.scale, self.shift

    def prepare_backward(
        self,
        grad_out: torch.Tensor,
        x: torch.Tensor,
        blocks: list[slice],
        buffer: torch.Tensor,
        scratch: torch.Tensor,
    ) -> None:
        """Sum the gradients of γ and β; in training, the input gradient's two constants:
        d/dx = scale·g_y + slope·x − offset (g_y: d/dy of BN's output)."""
        beta = x.new_empty((len(blocks), x.shape[1]))
        centred = x.new_empty((len(blocks), x.shape[1]))
        for k, rows in enumerate(blocks):
            n = rows.stop - rows.start
            grad_y = _silu_grad(grad_out[rows], self.normalise(rows, x[rows], buffer[:n]))
            torch.sum(grad_y, 0, out=beta[k])
            torch.sum(torch.sub(x[rows], self.mean, out=scratch[:n]).mul_(grad_y), 0, out=centred[k])
        self.grad_beta = beta.sum(0)
        self.grad_gamma = centred.sum(0) * self.invstd
        if self.training:
            # scale·(g_y − mean(g_y) − x̂·mean(g_y·x̂)): the last two terms are linear in x
            slope = -self.scale * self.invstd * self.grad_gamma / x.shape[0]
            self.linear = slope, self.scale * self.grad_beta / x.shape[0] + slope * self.mean

    def input_grad(
        self, rows: slice, grad_out: torch.Tensor, x: torch.Tensor, out: torch.Tensor
    ) -> torch.Tensor:
        """d/dx of SiLU(BN(x)) for one block, written into ``out``."""
        grad = _silu_grad(grad_out, self.normalise(rows, x, out)).mul_(self.scale)
        if self.linear is not None:
            slope, offset = self.linear
            grad.addcmul_(x, slope).sub_(offset)
        return grad

    def param_grads(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.grad_gamma, self.grad_beta


class _LayerNormKernel:
    """SiLU(LN(x)) over row blocks: every row normalises by itself, so one pass each way; the rows'
    mean and 1/std are kept for the backward pass (two numbers a row)."""

    needs_passes = False
    training = False  # never batch statistics
    mean: torch.Tensor
    rstd: torch.Tensor
    gamma: torch.Tensor
    beta: torch.Tensor
    eps: float
    grad_gamma: torch.Tensor
    grad_beta: torch.Tensor

    @classmethod
    def for_backward(cls, saved: tuple[torch.Tensor, ...], training: bool) -> _LayerNormKernel:
        kernel = cls()
        kernel.mean, kernel.rstd, kernel.gamma, kernel.beta, eps = saved
        kernel.eps = float(eps)
        kernel.grad_gamma = torch.zeros_like(kernel.gamma)
        kernel.grad_beta = torch.zeros_like(kernel.beta)
        return kernel

    @classmethod
    def for_forward(cls, norm: Norm, like: torch.Tensor, blocks: list[slice]) -> _LayerNormKernel:
        assert isinstance(norm, nn.LayerNorm)  # _kernel_type's choice
        kernel = cls()
        kernel.gamma, kernel.beta, kernel.eps = norm.weight, norm.bias, norm.eps
        kernel.mean = like.new_empty((like.shape[0], 1))
        kernel.rstd = like.new_empty((like.shape[0], 1))
        return kernel

    def observe(self, k: int, block: torch.Tensor, scratch: torch.Tensor) -> None:
        pass

    def finish_stats(self, dtype: torch.dtype) -> None:
        pass

    def normalise(self, rows: slice, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """LN(x) of one block, as native_layer_norm returns it (it has no ``out=``; copying it into
        ``out`` would only add a pass)."""
        y, mean, rstd = torch.ops.aten.native_layer_norm(x, [x.shape[1]], self.gamma, self.beta, self.eps)
        self.mean[rows], self.rstd[rows] = mean, rstd
        return y

    def saved(self) -> tuple[torch.Tensor, ...]:
        return self.mean, self.rstd, self.gamma, self.beta, torch.tensor(self.eps, dtype=torch.float64)

    def prepare_backward(
        self,
        grad_out: torch.Tensor,
        x: torch.Tensor,
        blocks: list[slice],
        buffer: torch.Tensor,
        scratch: torch.Tensor,
    ) -> None:
        pass

    def input_grad(
        self, rows: slice, grad_out: torch.Tensor, x: torch.Tensor, out: torch.Tensor
    ) -> torch.Tensor:
        mean, rstd = self.mean[rows], self.rstd[rows]
        y = torch.addcmul(self.beta, torch.sub(x, mean, out=out).mul_(rstd), self.gamma, out=out)
        grad_y = _silu_grad(grad_out, y)
        grad_x, grad_gamma, grad_beta = torch.ops.aten.native_layer_norm_backward(
            grad_y, x, [x.shape[1]], mean, rstd, self.gamma, self.beta, [True, True, True]
        )
        self.grad_gamma += grad_gamma
        self.grad_beta += grad_beta
        return out.copy_(grad_x)

    def param_grads(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.grad_gamma, self.grad_beta


_Kernel = _BatchNormKernel | _LayerNormKernel


def _kernel_type(norm: Norm) -> type[_BatchNormKernel] | type[_LayerNormKernel]:
    return _LayerNormKernel if isinstance(norm, nn.LayerNorm) else _BatchNormKernel


def _normalise_all(
    kernel: _Kernel,
    x: torch.Tensor,
    blocks: list[slice],
    scratch: torch.Tensor,
    out: torch.Tensor,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """out = SiLU(norm(x)) (+ residual), block by block, once the statistics are in."""
    kernel.finish_stats(x.dtype)
    for rows in blocks:
        y = kernel.normalise(rows, x[rows], scratch[: rows.stop - rows.start])
        block = torch.ops.aten.silu.out(y, out=out[rows])
        if residual is not None:
            block.add_(residual[rows])
    return out


# --- SiLU(norm(x)) ----------------------------------------------------------------------------


class _NormSiLU(torch.autograd.Function):
    """x -> SiLU(norm(x))."""

    @staticmethod
    def forward(ctx, x, gamma, beta, norm, workspace, name, keep):
        blocks = _blocks(x.shape[0], x.device)
        scratch = workspace.get("scratch", x, blocks[0].stop)
        kernel = _kernel_type(norm).for_forward(norm, x, blocks)
        if kernel.needs_passes:
            for k, rows in enumerate(blocks):
                kernel.observe(k, x[rows], scratch[: rows.stop - rows.start])
        out = _normalise_all(kernel, x, blocks, scratch, _output_array(workspace, name, x, keep))
        ctx.workspace, ctx.name, ctx.training, ctx.kernel = workspace, name, kernel.training, type(kernel)
        ctx.save_for_backward(x, *kernel.saved())
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, *saved = ctx.saved_tensors
        blocks = _blocks(x.shape[0], x.device)
        ws = ctx.workspace
        buffer, scratch = ws.get("sigma", x, blocks[0].stop), ws.get("scratch", x, blocks[0].stop)
        kernel = ctx.kernel.for_backward(tuple(saved), ctx.training)
        kernel.prepare_backward(grad_out, x, blocks, buffer, scratch)
        grad_x = _gradient_array(ws, ctx.name + ".grad", x)
        for rows in blocks:
            kernel.input_grad(rows, grad_out[rows], x[rows], grad_x[rows])
        return grad_x, *kernel.param_grads(), None, None, None, None


def dense_norm_silu(x: torch.Tensor, norm: Norm, workspace: Workspace, name: str) -> torch.Tensor:
    """SiLU(norm(x)) (batch or layer norm); ``name`` labels the caller's output array in ``workspace``."""
    return _NormSiLU.apply(x, norm.weight, norm.bias, norm, workspace, name, _keep(x, norm.weight))


# --- the edge side of an edge-gated convolution -----------------------------------------------


class _Product:
    """The products with C of one call, block by block: in the working type, or with factors
    rounded to ``dtype`` (bfloat16: products accumulate in float32 inside the kernel and are rounded
    once per block; sums across blocks, and everything outside the products, stay in float32)."""

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype | None, workspace: Workspace, rows: int):
        self.weight = weight
        self.low = None if dtype is None or dtype == weight.dtype else weight.to(dtype)
        if self.low is not None:
            like = self.low.new_empty((0, weight.shape[1]))
            self.x, self.y = workspace.get("low.x", like, rows), workspace.get("low.y", like, rows)
            self.g = workspace.get("low.g", like, rows)

    def add_to(self, out: torch.Tensor, e: torch.Tensor) -> None:
        """out += e Cᵀ."""
        if self.low is None:
            out.addmm_(e, self.weight.t())
            return
        n = e.shape[0]
        x = self.x[:n].copy_(e)
        out.add_(torch.mm(x, self.low.t(), out=self.y[:n]))

    def backward(self, grad_m, e, grad_e, grad_weight) -> None:
        """grad_e = grad_m C (if wanted); grad_weight += grad_mᵀ e (if wanted)."""
        if self.low is None:
            if grad_e is not None:
                torch.mm(grad_m, self.weight, out=grad_e)
            if grad_weight is not None:
                grad_weight.addmm_(grad_m.t(), e)
            return
        n = grad_m.shape[0]
        g = self.g[:n].copy_(grad_m)
        if grad_e is not None:
            grad_e.copy_(torch.mm(g, self.low, out=self.y[:n]))
        if grad_weight is not None:
            grad_weight.add_(torch.mm(g.t(), self.x[:n].copy_(e)))


class _GatedEdges(torch.autograd.Function):
    """(a, b, w, e) -> (Σ σ(m)⊙w_j, Σ σ(m), e + SiLU(norm(m))) with m_ij = a_i + b_j + C e_ij."""

    @staticmethod
    def forward(ctx, a, b, w, e, weight, gamma, beta, src, dst, norm, workspace, name, keep, matmul_dtype):
        blocks = _blocks(e.shape[0], e.device)
        scratch, sigma_block = (
            workspace.get("scratch", e, blocks[0].stop),
            workspace.get("sigma", e, blocks[0].stop),
        )
        product = _Product(weight, matmul_dtype, workspace, blocks[0].stop)
        m = workspace.get(name + ".m" if keep else "m", e)  # saved for the backward pass, if any
        numerator, denominator = a.new_zeros(a.shape), a.new_zeros(a.shape)
        kernel = None if norm is None else _kernel_type(norm).for_forward(norm, e, blocks)
        for k, rows in enumerate(blocks):
            s, d, block, n = src[rows], dst[rows], m[rows], rows.stop - rows.start
            torch.index_select(a, 0, d, out=block)
            block.add_(torch.index_select(b, 0, s, out=scratch[:n]))
            product.add_to(block, e[rows])
            sigma = torch.sigmoid(block, out=sigma_block[:n])
            denominator.index_add_(0, d, sigma)
            numerator.index_add_(0, d, torch.index_select(w, 0, s, out=scratch[:n]).mul_(sigma))
            if kernel is not None:
                kernel.observe(k, block, scratch[:n])
        ctx.workspace, ctx.name, ctx.matmul_dtype = workspace, name, matmul_dtype
        ctx.training = kernel is not None and kernel.training
        ctx.kernel = None if kernel is None else type(kernel)
        if kernel is None:
            ctx.save_for_backward(m, w, e, weight, src, dst)
            return numerator, denominator
        e_new = _normalise_all(kernel, m, blocks, scratch, _output_array(workspace, name + ".e", e, keep), e)
        ctx.save_for_backward(m, w, e, weight, src, dst, *kernel.saved())
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
        product = _Product(weight, ctx.matmul_dtype, ws, first)
        kernel = None
        if grad_e_new is not None:
            kernel = ctx.kernel.for_backward(tuple(saved), ctx.training)
            kernel.prepare_backward(grad_e_new, m, blocks, sigma_block, scratch)
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
            if kernel is not None:  # edge update: through SiLU and the norm
                grad_m.add_(kernel.input_grad(rows, grad_e_new[rows], x, sigma_block[:n]))
            grad_a.index_add_(0, d, grad_m)
            grad_b.index_add_(0, s, grad_m)
            product.backward(grad_m, e[rows], None if grad_e is None else grad_e[rows], grad_weight)
            if grad_e is not None and grad_e_new is not None:
                grad_e[rows].add_(grad_e_new[rows])  # the residual
        grad_gamma, grad_beta = (None, None) if kernel is None else kernel.param_grads()
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
    norm: Norm | None,
    workspace: Workspace,
    name: str,
    matmul_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, ...]:
    """Gated sums and (with ``norm``) new edge vectors of an edge-gated convolution.

    With m_ij = a_i + b_j + C e_ij (``a``, ``b``: the receiving and the sending node's gate terms,
    ``weight`` = C), returns Σ_j σ(m_ij) ⊙ w_j and Σ_j σ(m_ij) for each node i (``dst``) and, if
    ``norm`` is given, e_ij + SiLU(norm(m_ij)). ``name`` labels the caller's arrays in ``workspace``.
    With ``matmul_dtype`` (``torch.bfloat16``) the products with C, forward and backward, take their
    factors in that type; everything else stays in the type of ``e``.
    """
    gamma = None if norm is None else norm.weight
    beta = None if norm is None else norm.bias
    keep = _keep(a, b, w, e, weight)
    return _GatedEdges.apply(
        a, b, w, e, weight, gamma, beta, src, dst, norm, workspace, name, keep, matmul_dtype
    )
