"""Novelty of a finished painting: how far it lies from the paintings seen before.

Two measures, both in an embedding space of the painting:

* k nearest neighbours (novelty search, Lehman & Stanley 2011): the mean distance to the ``k``
  nearest entries of an archive of earlier paintings. Finished paintings enter the archive through
  :meth:`NoveltyReward.update` when they are farther than ``threshold`` from everything in it; the
  archive holds at most ``archive_size`` entries and forgets the oldest first.
* random network distillation (``rnd=true``, Burda et al. 2018): the error of a predictor network,
  trained by :meth:`NoveltyReward.update` on finished paintings, at imitating the embedding. What it
  has seen often it predicts well, so familiar paintings score low.

The embedding is the posterior mean of a trained VAE's encoder when ``vae=PATH`` names a checkpoint
of ``paintgym train-vae``, else a fixed convolutional network with random weights drawn from
``seed`` (random features preserve enough of the image's layout to tell paintings apart). Embeddings
are scaled to unit length, so distances lie in [0, 2] for either embedding.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paintgym import generative
from paintgym.canvas import collective
from paintgym.rewards.base import Reward
from paintgym.rewards.registry import register

EMBED_DIM = 64
"""Size of the random network's embedding (a VAE's embedding has its latent size)."""
INPUT_SIZE = 32
"""Canvases are averaged down to this many pixels a side before the random network sees them."""
UNRELATED = math.sqrt(2.0)
"""Distance between orthogonal unit embeddings: what a missing neighbour counts as, so that a painting
compared with an archive of fewer than ``k`` entries is novel."""


class RandomConvNet(nn.Module):
    """A small convolutional network whose weights are drawn from ``seed`` (He-normal, no biases).

    ``(B, 3, H, W)`` float in [0, 1] -> ``(B, dim)``: the canvas averaged down to 32x32, centred to
    [-1, 1], three stride-2 4x4 convolutions with ReLU (8, 16, 32 channels) and a linear map.
    The same seed gives the same network on every device.
    """

    def __init__(self, dim: int = EMBED_DIM, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(int(seed))
        widths = (3, 8, 16, 32)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, stride=2, padding=1, bias=False)
                                   for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.linear = nn.Linear(widths[-1] * (INPUT_SIZE // 8) ** 2, dim, bias=False)
        with torch.no_grad():
            for layer in [*self.convs, self.linear]:
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(canvas.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="area") * 2.0 - 1.0
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.linear(x.flatten(1))


@register
class NoveltyReward(Reward):
    """Terminal novelty of the finished painting against an archive of earlier ones (or by RND).

    The score is the mean distance, between unit-length embeddings (so in [0, 2]), to the ``k``
    nearest archive entries; missing neighbours (an archive with fewer than ``k`` entries) count as
    :data:`UNRELATED` (sqrt 2). With ``rnd=true`` it is instead the distance between the predictor's
    output and the embedding. The trainer passes finished paintings to :meth:`update`; until then the
    archive is empty and every painting is equally novel.

    :param k: neighbours averaged over.
    :param archive_size: most paintings kept; the oldest are replaced first.
    :param threshold: a painting enters the archive only if its embedding is farther than this from
        every entry (and from earlier paintings of the same update), so duplicates do not crowd it.
    :param vae: path of a VAE checkpoint (``paintgym train-vae``) whose encoder mean is the embedding;
        None: a fixed random convolutional network.
    :param rnd: use random network distillation instead of the archive.
    :param lr: Adam learning rate of the RND predictor (one step per :meth:`update`).
    :param seed: seed of the random networks (embedding and RND predictor).
    :param device: where the networks and the archive live (the env passes its device).
    """

    name = "novelty"
    description = "distance to the k nearest earlier paintings in an embedding (or RND error)"
    dense = False
    learns = True

    def __init__(self, k: int = 5, archive_size: int = 4096, threshold: float = 0.01, vae: str | None = None,
                 rnd: bool = False, lr: float = 1e-3, seed: int = 0, device: torch.device | str = "cpu") -> None:
        super().__init__()
        for option, value, low in (("k", k, 1), ("archive_size", archive_size, 1), ("seed", seed, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{option} must be an integer >= {low}, got {value!r}")
        if not isinstance(threshold, (int, float)) or threshold < 0:
            raise ValueError(f"threshold must be a distance >= 0, got {threshold!r}")
        if not isinstance(rnd, bool):
            raise ValueError(f"rnd must be true or false, got {rnd!r}")
        if not isinstance(lr, (int, float)) or lr <= 0:
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self.k, self.archive_size, self.threshold = k, archive_size, float(threshold)
        self.vae_path, self.rnd, self.lr, self.seed = vae, rnd, float(lr), seed
        self.device = torch.device(device)
        if vae is not None:
            self.vae = generative.load(str(vae), device=self.device, kind="vae").eval()
            self._adapt = generative.adapt_images
            self.embedding: nn.Module | None = None
            dim = self.vae.latent_dim
        else:
            self.vae = None
            self.embedding = RandomConvNet(EMBED_DIM, seed).to(self.device).eval()
            dim = EMBED_DIM
        self.dim = dim
        self.archive = torch.zeros(archive_size, dim, device=self.device)  # (capacity, D) unit vectors
        self.count = 0  # entries in use
        self.next = 0  # the slot written next (the oldest entry once the archive is full)
        if rnd:
            self.predictor: nn.Module | None = RandomConvNet(dim, seed + 1).to(self.device)
            self.optimizer: torch.optim.Optimizer | None = torch.optim.Adam(self.predictor.parameters(), lr=self.lr)
        else:
            self.predictor = self.optimizer = None

    # ------------------------------------------------------------------------------------ embedding
    def embed(self, canvas: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings ``(B, D)`` of paintings ``(B, 3, H, W)`` float in [0, 1]."""
        if canvas.dim() != 4 or canvas.shape[1] != 3:
            raise ValueError(f"canvas must have shape (B, 3, H, W), got {tuple(canvas.shape)}")
        with torch.no_grad():
            if self.vae is not None:
                features = self.vae.encode(self._adapt(canvas, self.vae.size, self.vae.channels))[0]
            else:
                features = self.embedding(canvas)
        return F.normalize(features.float(), dim=1)

    def _knn_distance(self, embedded: torch.Tensor) -> torch.Tensor:
        """Mean distance ``(B,)`` of unit embeddings ``(B, D)`` to their k nearest archive entries."""
        found = min(self.k, self.count)
        if found == 0:
            return torch.full((embedded.shape[0],), UNRELATED, device=embedded.device)
        distances = torch.cdist(embedded, self.archive[:self.count])  # (B, count)
        nearest = distances.topk(found, dim=1, largest=False).values.sum(dim=1)
        return (nearest + (self.k - found) * UNRELATED) / self.k

    def _rnd_error(self, canvas: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        return (self.predictor(canvas.float()) - embedded).norm(dim=1)

    # ---------------------------------------------------------------------------------- interface
    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Novelty ``(B,)`` float32 of paintings ``(B, 3, H, W)`` float in [0, 1] (0 = seen before)."""
        embedded = self.embed(canvas)
        if self.rnd:
            with torch.no_grad():
                return self._rnd_error(canvas, embedded)
        return self._knn_distance(embedded)

    def update(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, float]:
        """Learn from finished paintings ``(N, 3, H, W)``: add the new ones to the archive, or train the
        RND predictor one step. Returns ``archive`` (entries), ``inserted``, or ``rnd_loss``."""
        embedded = self.embed(canvas)
        if self.rnd:
            self.predictor.train()
            loss = self._rnd_error(canvas, embedded).square().mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            collective.average_gradients_(self.predictor.parameters())  # data-parallel: every rank's paintings
            self.optimizer.step()
            return {"rnd_loss": float(loss.detach())}
        # data-parallel: every rank's paintings, in rank order, so every rank's archive is the one-process archive
        embedded = collective.all_gather_cat(embedded.contiguous())
        # new = farther than threshold from the archive and from the earlier new paintings of this batch
        nearest = (torch.cdist(embedded, self.archive[:self.count]).min(dim=1).values if self.count
                   else torch.full((embedded.shape[0],), math.inf, device=embedded.device))
        new = nearest > self.threshold
        close = torch.cdist(embedded, embedded) <= self.threshold  # (N, N)
        earlier = torch.ones_like(close).tril_(diagonal=-1)  # [i, j]: j comes before i
        new &= ~(close & earlier & new.view(1, -1)).any(dim=1)
        added = embedded[new][-self.archive_size:]
        inserted = added.shape[0]
        if inserted:
            slots = (self.next + torch.arange(inserted, device=self.archive.device)) % self.archive_size
            self.archive[slots] = added
            self.next = (self.next + inserted) % self.archive_size
            self.count = min(self.count + inserted, self.archive_size)
        return {"archive": float(self.count), "inserted": float(inserted)}

    def to(self, device: torch.device | str) -> NoveltyReward:
        super().to(device)
        self.device = torch.device(device)
        self.archive = self.archive.to(self.device)
        for module in (self.vae, self.embedding, self.predictor):
            if module is not None:
                module.to(self.device)
        if self.optimizer is not None:  # loading its own state moves Adam's moments to the parameters' device
            self.optimizer.load_state_dict(self.optimizer.state_dict())
        return self

    def state_dict(self) -> dict[str, Any]:
        """The archive (oldest entry first), and the RND predictor and optimiser, on the CPU."""
        order = (torch.arange(self.count, device=self.archive.device) + (self.next if self.count == self.archive_size
                                                                          else 0)) % self.archive_size
        state: dict[str, Any] = {"dim": self.dim, "archive": self.archive[order].cpu()}
        if self.rnd:
            weights = self.predictor.state_dict()
            state["predictor"] = {key: value.detach().cpu().clone() for key, value in weights.items()}
            state["optimizer"] = copy.deepcopy(self.optimizer.state_dict())  # a snapshot, not the live moments
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("dim") != self.dim:
            raise ValueError(f"novelty state has embeddings of size {state.get('dim')}, this reward's are "
                             f"{self.dim}; restore it with the same vae= option")
        archive = state["archive"][-self.archive_size:].to(self.device)
        self.archive.zero_()
        self.count = archive.shape[0]
        self.archive[:self.count] = archive
        self.next = self.count % self.archive_size
        if self.rnd:
            if "predictor" not in state:
                raise ValueError("novelty state has no RND predictor; it was saved without rnd=true")
            self.predictor.load_state_dict(state["predictor"])
            self.optimizer.load_state_dict(state["optimizer"])

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"k": self.k, "archive_size": self.archive_size, "threshold": self.threshold}
        if self.vae_path is not None:
            options["vae"] = self.vae_path
        if self.rnd:
            options.update(rnd=True, lr=self.lr)
        if self.seed:
            options["seed"] = self.seed
        return options
