"""Collective operations across the ranks of a data-parallel run (``torch.distributed``), for every floor to use.

Each function is a no-op (or the one-process computation) when no process group is running or the world
has one rank, so code that calls them costs nothing outside ``torchrun``: one ``is_initialized()`` check.
The process group itself is started and ended by the run tooling (:mod:`experiments.distributed`).

Why gradients are averaged here rather than by wrapping modules in ``DistributedDataParallel``: the
learners do not fit DDP's hooks. The model-based agent backpropagates through an unrolled episode with
many actor calls per backward pass, PPO's minibatches run through
:class:`~agents.networks.PatchedObservations` rather than the module's ``forward``, and WGAN-GP's
gradient penalty needs a double backward, which DDP does not support. So after each backward pass the
learner averages its gradients with :func:`average_gradients_`: the gradients in one flat buffer and one
``all_reduce`` per update -- what DDP's gradient buckets do, with a single bucket.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn


def active() -> bool:
    """Whether a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Ranks in the run (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place; returns it."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over the ranks, in place; returns it."""
    if active():
        dist.all_reduce(tensor)
        tensor.div_(dist.get_world_size())
    return tensor


def all_reduce_max(value: float) -> float:
    """The largest ``value`` over the ranks (e.g. a stop flag every rank must agree on)."""
    if not active():
        return value
    tensor = torch.tensor([float(value)], device=_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor)


def average_gradients_(parameters: Iterable[torch.Tensor] | torch.Tensor) -> None:
    """Average the gradients over the ranks with one ``all_reduce`` (see the module docstring).

    :param parameters: a flat gradient buffer (:class:`~agents.common.FlatGradients.flat`, reduced in
        place), or parameters whose ``.grad`` are packed into one buffer, reduced and copied back
        (parameters without a gradient are left alone; every rank must have the same ones).
    """
    if not active():
        return
    if isinstance(parameters, torch.Tensor):
        all_reduce_mean_(parameters)
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_mean_(flat)
    for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(part.view_as(g))


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mean, biased variance and count of every element of ``x`` on every rank (one ``all_reduce``).

    Accumulated in float64. Without a process group: ``x.mean()``, ``x.var(unbiased=False)``, ``x.numel()``.

    :return: three float64 scalars on ``x``'s device.
    """
    if not active():
        return x.double().mean(), x.double().var(unbiased=False), torch.tensor(float(x.numel()), device=x.device,
                                                                                dtype=torch.float64)
    d = x.detach().double()
    sums = torch.stack([d.sum(), d.square().sum(), torch.tensor(float(d.numel()), device=d.device,
                                                                  dtype=torch.float64)])
    dist.all_reduce(sums)
    mean = sums[0] / sums[2]
    return mean, (sums[1] / sums[2] - mean.square()).clamp_(min=0.0), sums[2]


def normalise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` with the mean and the (unbiased) std of ``x`` over every rank: what
    one process holding the whole batch computes (``x.std()``). Without a process group, exactly that."""
    if not active():
        return (x - x.mean()) / (x.std() + eps)
    mean, var, count = moments(x)
    std = (var * count / (count - 1.0).clamp(min=1.0)).sqrt()
    return (x - mean.to(x.dtype)) / (std.to(x.dtype) + eps)


def average_metrics(metrics: dict[str, float], sums: Iterable[str] = ("episodes",)) -> dict[str, float]:
    """``metrics`` averaged over the ranks (those named in ``sums`` summed), in one ``all_reduce``.

    Every rank must pass the same keys. NaN stays NaN.
    """
    if not active():
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[key]) for key in keys], dtype=torch.float64, device=_device())
    all_reduce_mean_(values)
    size, summed = dist.get_world_size(), set(sums)
    return {key: value * size if key in summed else value for key, value in zip(keys, values.tolist(), strict=True)}


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` (the same shape on each) concatenated along dim 0, in rank order."""
    if not active():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's part of a global ``batch`` along dim 0 (``torch.tensor_split`` into world-size parts, in
    rank order; the first ``len % world size`` parts one longer). Without a process group: ``batch``.

    A trainer that draws every global batch on every rank from the same random streams and keeps its part
    trains on exactly what one process with the whole batch trains on.
    """
    if not active():
        return batch
    return torch.tensor_split(batch, dist.get_world_size())[dist.get_rank()]


def share_weight(count: int, total: int) -> float:
    """The factor that turns the mean loss over this rank's ``count`` examples into its share of the mean
    over the ``total`` examples of every rank, once :func:`average_gradients_` has averaged the gradients
    (and :func:`average_metrics` the losses): ``count * world size / total``. 1 when the ranks hold equal parts
    (and without a process group, where ``count == total``)."""
    return count * world_size() / total if total else 0.0


def broadcast_module_(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (as DDP does when it wraps a module)."""
    if not active():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src)


def barrier() -> None:
    """Wait for every rank."""
    if active():
        dist.barrier()


def _device() -> torch.device:
    """Where small collectives' tensors live: the backend's device (CUDA for NCCL)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --------------------------------------------------------------------------- batch normalisation
class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks, differentiable: the gradient of every rank's input is the sum of every rank's
    output gradient (each rank's loss depends on the sum through its own output)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        out = grad.clone()
        dist.all_reduce(out)
        return out


class CollectiveBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the whole batch over every rank (a
    synchronised batch norm for the CPU, where ``nn.SyncBatchNorm`` has no kernels).

    The per-channel sums and sums of squares (float64) are summed over the ranks by an all-reduce whose
    backward pass all-reduces the gradient (as ``torch.distributed.nn.functional.all_reduce``, now
    deprecated, does), so the gradient of the statistics crosses the ranks as ``SyncBatchNorm``'s does;
    the running statistics follow the global batch. Evaluation mode, or no process group, is plain ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        dims = (0, 2, 3)
        d = x.double()
        count = torch.full((1,), float(x.numel() // x.shape[1]), dtype=torch.float64, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([d.sum(dims), d.square().sum(dims), count]))
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean.square()).clamp(min=0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                unbiased = var * n / (n - 1.0).clamp(min=1.0)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        scale = (var + self.eps).rsqrt()
        out = (d - mean.view(1, c, 1, 1)) * scale.view(1, c, 1, 1)
        out = out.to(x.dtype)
        if self.affine:
            out = out * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return out


def average_running_stats_(modules: Iterable[nn.Module]) -> None:
    """Average the running statistics (``running_mean``, ``running_var``) of every batch norm in ``modules``, and
    any ``running_step_stats`` buffer of theirs, over the ranks, in one ``all_reduce`` of one flat buffer.

    For batch norms that normalise with each rank's own batch (not :func:`sync_batchnorm`): their parameters
    stay equal through the averaged gradients, but each rank's running statistics follow its own batches.
    The running averages are linear in the batch statistics, so averaging them whenever (every update, or
    before an evaluation or checkpoint) gives every rank the running mean of the global batch means, and
    the mean of the ranks' variances as the running variance (without the spread between the ranks'
    means, which is small when each rank holds many samples). A no-op without a process group.
    """
    if not active():
        return
    modules = list(modules)
    stats = [tensor for module in modules for layer in module.modules()
             if isinstance(layer, nn.modules.batchnorm._NormBase) and layer.track_running_stats
             for tensor in (layer.running_mean, layer.running_var) if tensor is not None]
    # statistics kept per episode step beside the batch norms' own (agents.model_based.PatchStrokeActor)
    stats += [layer.running_step_stats for module in modules for layer in module.modules()
              if getattr(layer, "running_step_stats", None) is not None]
    if not stats:
        return
    with torch.no_grad():
        flat = torch.cat([t.reshape(-1).double() for t in stats])
        all_reduce_mean_(flat)
        for tensor, part in zip(stats, flat.split([t.numel() for t in stats]), strict=True):
            tensor.copy_(part.view_as(tensor))


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every ``BatchNorm2d`` computing global batch statistics while a process group runs:
    ``nn.SyncBatchNorm`` on CUDA, :class:`CollectiveBatchNorm2d` on the CPU. The parameters and buffers are
    the same tensors (an optimiser built on ``module`` stays valid). Without a process group: ``module``.

    :param device: where the module will run.
    """
    if not active():
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CollectiveBatchNorm2d):
        out = CollectiveBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu(child))
    return module
