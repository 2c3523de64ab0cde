"""``gan``: a WGAN critic's score of a painting, frozen from a checkpoint or trained online.

* **frozen** — ``gan(checkpoint=runs/gan/ckpt.pt)``: the critic of a ``paintgym train-gan`` run
  rates how much a canvas looks like its training images.
* **online** — ``gan(data=digits)``: a critic trained during the agent's training to tell real
  images of ``data`` from the agent's finished paintings (SPIRAL). It has its own Adam
  optimiser, a replay buffer of recent paintings, and trains ``ratio`` critic steps per
  :meth:`GANReward.update` call with the WGAN-GP objective (plus a small drift penalty that keeps
  the scores near 0, so that the reward's scale stays put while the critic learns). With a
  checkpoint as well, the online critic starts from the checkpoint's.
* **conditional** — ``gan(conditional=true)``: a critic of (target, canvas) pairs for
  reconstruction tasks, trained online like Learning to Paint's discriminator: real pairs are
  (target, target), fake pairs (target, painting).
* **class-conditional** — ``gan(checkpoint=PATH, class=7)``: the projection critic of a
  ``train-gan --conditional`` run scores how much a canvas looks like class 7 (frozen);
  ``class=condition`` scores the class each episode was asked to paint (the env's ``condition``).

Terminal by default (paid once, at the episode's end); ``dense=true`` pays the change of the score
every step instead, so an episode's rewards sum to the final minus the initial score.
Canvases are resized (and turned grey for a grey critic) with :func:`generative.adapt_images`.
"""

from __future__ import annotations

from typing import Any

import torch

from paintgym import generative
from paintgym.canvas import collective
from paintgym.rewards.base import CONDITION, Reward, check_condition
from paintgym.rewards.registry import register


@register
class GANReward(Reward):
    """WGAN critic score ``(B,)`` of canvases ``(B, 3, H, W)`` in [0, 1] (higher = more like real images).

    :param checkpoint: a ``train-gan`` checkpoint (or run folder) whose critic to use.
    :param data: real images for an online critic: ``digits``, ``faces``, ``photos``, a folder or
        a ``.npy``/``.npz`` file. Online training needs this, or ``conditional``.
    :param conditional: score (target, canvas) pairs with an online critic (real pairs are
        (target, target)); needs a task with targets.
    :param class_: for the critic of a class-conditional GAN (``train-gan --conditional``), the class
        whose look to score (written ``class=K`` in a spec); such a critic needs it. ``"condition"``: the
        class each episode was asked to paint (the env's ``condition`` option).
    :param dense: pay the change of the score every step instead of the score at the episode's end.
    :param size: side the online critic works at (32, 64 or 128); a checkpoint fixes its own.
    :param channels: 1 or 3 for a new online critic; default: 1 if ``data`` is grey, 3 otherwise.
    :param width: base width of a new online critic.
    :param lr: Adam learning rate of the online critic.
    :param replay: capacity of the buffer of recent paintings the online critic trains on.
    :param batch_size: paintings (and real images) per critic step.
    :param ratio: critic steps per ``update`` call (fractions accumulate: 0.5 = every other call).
    :param gp_weight: weight of the gradient penalty.
    :param drift: weight of the ``E[D(real)^2]`` drift penalty.
    :param seed: seeds the new critic's initial weights and the online sampling.
    :param device: where the critic runs (the env's device).
    """

    name = "gan"
    description = "WGAN critic score: frozen (checkpoint=PATH), online (data=NAME) or of (target, canvas) pairs"
    dense = False
    differentiable = True

    def __init__(self, checkpoint: str | None = None, data: str | None = None, conditional: bool = False,
                 class_: int | str | None = None, dense: bool = False, size: int = 64, channels: int | None = None,
                 width: int = 64, lr: float = 1e-4, replay: int = 1024, batch_size: int = 64, ratio: float = 1.0,
                 gp_weight: float = 10.0, drift: float = 1e-3, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        if checkpoint is None and data is None and not conditional:
            raise ValueError("give checkpoint=PATH (a frozen critic from paintgym train-gan), data=NAME (a critic "
                             "trained online on real images) or conditional=true (online, against the targets)")
        if conditional and data is not None:
            raise ValueError("a conditional critic takes its real pairs from the targets; drop data=")
        for option, value in (("replay", replay), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{option} must be a positive integer, got {value!r}")
        if not ratio >= 0 or not lr > 0 or not gp_weight >= 0 or not drift >= 0:
            raise ValueError(f"ratio, gp_weight and drift must be >= 0 and lr > 0; got ratio={ratio}, lr={lr}, "
                             f"gp_weight={gp_weight}, drift={drift}")
        self.device = torch.device(device)
        self.checkpoint, self.data, self.conditional, self.dense = checkpoint, data, bool(conditional), bool(dense)
        self.label = class_
        self.uses_condition = class_ == CONDITION
        self.needs_target = self.conditional
        self.learns = data is not None or self.conditional
        self.lr, self.batch_size, self.ratio = lr, batch_size, float(ratio)
        self.gp_weight, self.drift, self.seed = gp_weight, drift, seed
        self._real: torch.Tensor | None = None  # (N, C, size, size) uint8 real images of an online critic

        if checkpoint is not None:
            gan = generative.load(checkpoint, device=self.device, kind="gan")
            if self.conditional:
                raise ValueError(f"the critic in {checkpoint} is unconditional; a conditional critic is trained "
                                 "online (drop checkpoint=)")
            if channels is not None and channels != gan.channels:
                raise ValueError(f"the critic in {checkpoint} has {gan.channels} channel(s), not {channels}")
            self.critic = gan.critic
            if gan.num_classes and class_ is None:
                raise ValueError(f"the critic in {checkpoint} is class-conditional ({gan.num_classes} classes): "
                                 f"say which class to score, e.g. gan(checkpoint=...,class=0)")
            if class_ is not None and not gan.num_classes:
                raise ValueError(f"the critic in {checkpoint} has no classes; drop class= or train one with "
                                 "paintgym train-gan --conditional")
            if gan.num_classes and data is not None:
                raise ValueError(f"the critic in {checkpoint} is class-conditional; it scores frozen (drop data=): "
                                 "online training would need labelled paintings")
            if class_ is not None and not self.uses_condition and (
                    not isinstance(class_, int) or isinstance(class_, bool) or not 0 <= class_ < gan.num_classes):
                raise ValueError(f"class must be an integer in [0, {gan.num_classes}) or 'condition', got {class_!r}")
            self.num_classes = int(gan.num_classes)
        else:
            if class_ is not None:
                raise ValueError("class= needs the critic of a class-conditional GAN: give checkpoint=PATH of a "
                                 "paintgym train-gan --conditional run")
            with torch.random.fork_rng(devices=[]):  # the critic's initial weights depend on seed alone
                torch.manual_seed(seed)
                if channels is None and data is None:
                    channels = 3
                if data is not None:  # channels follow the data unless given
                    real, channels = generative.load_dataset(data, size, channels, split="train", device=self.device)
                    self._real = real
                self.critic = generative.Critic(size, channels, conditional=self.conditional, width=width)
            self.critic.to(self.device)
        if checkpoint is not None and data is not None:
            self._real, _ = generative.load_dataset(data, self.critic.size, self.critic.channels, split="train",
                                                    device=self.device)
        self.size, self.channels = self.critic.size, self.critic.channels

        if self.learns:
            self.critic.train()
            self.optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.0, 0.9))  # as WGAN-GP
            shape = (replay, self.channels, self.size, self.size)
            self._paintings = torch.zeros(shape, dtype=torch.uint8, device=self.device)  # replay, quantised
            self._targets = torch.zeros(shape, dtype=torch.uint8, device=self.device) if self.conditional else None
            self._stored = 0  # paintings ever added; slot of the next is _stored % replay
            self._credit = 0.0  # fractional critic steps owed (ratio < 1)
            self._rng = torch.Generator().manual_seed(seed)  # CPU: its state restores on any device
        else:
            self.critic.eval().requires_grad_(False)

    # ------------------------------------------------------------------ scoring

    def _adapt(self, images: torch.Tensor) -> torch.Tensor:
        return generative.adapt_images(images, self.size, self.channels)

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None,
              condition: torch.Tensor | None = None) -> torch.Tensor:
        """The critic's score ``(B,)`` float32 of ``canvas`` ``(B, 3, H, W)`` (given ``target`` if conditional;
        with ``class=condition``, as the class ``condition`` ``(B,)`` int64 of each painting)."""
        pair = None  # the target a (target, canvas) critic scores the canvas against
        if self.conditional:
            if target is None:
                raise ValueError("the conditional 'gan' reward needs a target image; use a task with targets "
                                 "(paintgym/Reconstruct-v0) or drop conditional=true")
            pair = self._adapt(target)
        if self.uses_condition:
            labels = check_condition(condition, self.num_classes, self.name).to(canvas.device)
        else:
            labels = None if self.label is None else torch.full((canvas.shape[0],), self.label, device=canvas.device)
        # a graph only when the caller differentiates the canvas (the model-based agent): env steps build none
        with torch.set_grad_enabled(torch.is_grad_enabled() and canvas.requires_grad):
            return self.critic(self._adapt(canvas), pair, labels).float()

    # ------------------------------------------------------------------ online training

    @property
    def replay_size(self) -> int:
        """Paintings currently in the replay buffer."""
        return min(self._stored, self._paintings.shape[0]) if self.learns else 0

    def _quantise(self, images: torch.Tensor) -> torch.Tensor:
        return self._adapt(images.detach()).mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)

    def _push(self, canvas: torch.Tensor, target: torch.Tensor | None) -> None:
        capacity = self._paintings.shape[0]
        canvas = canvas[-capacity:]  # only the newest fit
        slots = (torch.arange(canvas.shape[0]) + self._stored) % capacity
        slots = slots.to(self.device)
        self._paintings[slots] = self._quantise(canvas)
        if self._targets is not None:
            self._targets[slots] = self._quantise(target[-capacity:])
        self._stored += canvas.shape[0]

    def _index(self, high: int) -> torch.Tensor:
        return torch.randint(high, (self.batch_size,), generator=self._rng).to(self.device)

    def update(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, float]:
        """Add finished paintings ``(N, 3, H, W)`` in [0, 1] to the replay and train the online critic.

        Runs ``ratio`` critic steps (accumulated over calls), each on ``batch_size`` paintings drawn
        from the replay and as many real images (``data``, or for the conditional critic the
        paintings' targets). A frozen critic ignores the call.

        :return: ``{"wasserstein", "gp", "loss", "steps", "replay"}`` of the last critic step
            (only ``steps`` and ``replay`` when no step ran).
        """
        if not self.learns:
            return {}
        if canvas.dim() != 4 or canvas.shape[1] != 3:
            raise ValueError(f"canvas must have shape (N, 3, H, W), got {tuple(canvas.shape)}")
        if self.conditional and (target is None or target.shape[0] != canvas.shape[0]):
            raise ValueError("the conditional 'gan' reward's update needs the paintings' targets, one per painting")
        if collective.active():  # data-parallel: every rank's paintings, in rank order, join every rank's replay;
            # the critic's draws come from its own seeded stream, so every rank's critic takes the one-process steps
            canvas = collective.all_gather_cat(canvas.contiguous())
            target = None if target is None else collective.all_gather_cat(target.contiguous())
        if canvas.shape[0] > 0:
            self._push(canvas, target)
        self._credit += self.ratio
        steps = int(self._credit)
        self._credit -= steps
        stats: dict[str, float] = {}
        for _ in range(steps if self.replay_size > 0 else 0):  # a few critic steps, each fully batched
            index = self._index(self.replay_size)
            fake = self._paintings[index].float().div_(255.0)
            if self.conditional:
                condition = self._targets[index].float().div_(255.0)
                real = condition  # Learning to Paint: (target, target) is the real pair
            else:
                condition = None
                real = self._real[self._index(self._real.shape[0])].float().div_(255.0)
            loss, terms = generative.critic_loss(self.critic, real, fake, self.gp_weight, condition,
                                                       generator=self._rng, drift_weight=self.drift)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            stats = {"loss": loss.item(), "wasserstein": terms["wasserstein"].item(), "gp": terms["gp"].item()}
        return {**stats, "steps": float(steps if self.replay_size > 0 else 0), "replay": float(self.replay_size)}

    # ------------------------------------------------------------------ state

    def to(self, device: torch.device | str) -> GANReward:
        super().to(device)
        self.device = torch.device(device)
        self.critic.to(self.device)
        if self.learns:
            self.optimizer.load_state_dict(self.optimizer.state_dict())  # moves Adam's moments to the params' device
            self._paintings = self._paintings.to(self.device)
            if self._targets is not None:
                self._targets = self._targets.to(self.device)
            if self._real is not None:
                self._real = self._real.to(self.device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Online critic, optimiser, replay and random stream (empty for a frozen critic)."""
        if not self.learns:
            return {}
        used = self.replay_size
        return {"critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict(),
                "paintings": self._paintings[:used].clone(),
                "targets": None if self._targets is None else self._targets[:used].clone(),
                "stored": self._stored, "credit": self._credit, "rng": self._rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not self.learns:
            return
        missing = {"critic", "optimizer", "paintings", "stored", "credit", "rng"} - set(state)
        if missing:
            raise ValueError(f"'gan' reward state lacks {', '.join(sorted(missing))}; was it saved by an online "
                             "gan reward?")
        capacity, used = self._paintings.shape[0], state["paintings"].shape[0]
        if used > capacity or tuple(state["paintings"].shape[1:]) != tuple(self._paintings.shape[1:]):
            raise ValueError(f"'gan' reward state holds paintings {tuple(state['paintings'].shape)} that do not fit "
                             f"this reward's replay {tuple(self._paintings.shape)}; build it with the same "
                             "size, channels and replay options")
        try:
            self.critic.load_state_dict(state["critic"])
        except RuntimeError as err:
            raise ValueError("'gan' reward state holds a critic of another shape; build the reward with the same "
                             "size, channels and width options") from err
        self.optimizer.load_state_dict(state["optimizer"])
        self._paintings.zero_()
        self._paintings[:used] = state["paintings"].to(self.device)
        if self._targets is not None:
            self._targets.zero_()
            self._targets[:used] = state["targets"].to(self.device)
        self._stored, self._credit = int(state["stored"]), float(state["credit"])
        if self._stored > used and used < capacity:  # saved from a larger replay: continue after what is kept
            self._stored = used
        self._rng.set_state(state["rng"])

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.checkpoint is not None:
            options["checkpoint"] = self.checkpoint
        if self.data is not None:
            options["data"] = self.data
        if self.conditional:
            options["conditional"] = True
        if self.label is not None:
            options["class"] = self.label
        if self.dense:
            options["dense"] = True
        if self.learns:
            options.update(size=self.size, channels=self.channels, width=self.critic.width, lr=self.lr,
                           batch_size=self.batch_size, ratio=self.ratio, replay=self._paintings.shape[0],
                           seed=self.seed)
        return options
