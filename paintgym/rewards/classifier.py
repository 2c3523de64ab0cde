"""``classifier``: a trained CNN classifier's judgement of a painting.

* ``classifier(checkpoint=PATH, class=K)`` — ``log p(K | canvas)``, in (-inf, 0]: "paint a K".
  ``K`` is a class index or a class name (a folder's subfolder name); ``class=condition`` scores
  the class each episode was asked to paint (the env's ``condition`` option), so one agent learns
  every class.
* ``classifier(checkpoint=PATH, entropy=true)`` — the prediction's negative entropy, in
  ``[-log(classes), 0]``: "paint something that is clearly *some* class".

``PATH`` is a ``paintgym train-classifier`` checkpoint (or its run folder). Canvases are resized
(and turned grey for a grey classifier) with :func:`generative.adapt_images`.

**Painting nothing does not pay.** A classifier trained with its "none" class (the default of
``train-classifier``) puts a blank canvas's probability on "none", so ``log p(K)`` of a blank
canvas is low for every ``K``; and the entropy reward counts "none" as maximally uncertain, so a
blank canvas scores near its minimum. A classifier trained with ``--no-reject`` has no such
guard: what it says about a blank canvas is arbitrary, and an agent may learn to exploit it.

Terminal by default (paid once, at the episode's end); ``dense=true`` pays the change of the score
every step instead, so an episode's rewards sum to the final minus the initial score.
Differentiable in the canvas: the model-based agent backpropagates it into its strokes.
"""

from __future__ import annotations

from typing import Any

import torch

from paintgym import generative
from paintgym.rewards.base import CONDITION, Reward, check_condition
from paintgym.rewards.registry import register


@register
class ClassifierReward(Reward):
    """A classifier's log-probability of class ``K``, or its negative entropy, ``(B,)`` of canvases
    ``(B, 3, H, W)`` in [0, 1] (higher = more clearly class ``K`` / some class).

    :param checkpoint: a ``train-classifier`` checkpoint (or run folder).
    :param class_: the class to paint, by index or name (written ``class=K`` in a spec), or
        ``"condition"``: the class each episode was asked to paint (the env's ``condition`` option).
    :param entropy: score the negative entropy of the prediction instead of one class.
    :param dense: pay the change of the score every step instead of the score at the episode's end.
    :param device: where the classifier runs (the env's device).
    """

    name = "classifier"
    description = "CNN classifier: log p(class=K | canvas), or negative prediction entropy (entropy=true)"
    dense = False
    differentiable = True

    def __init__(self, checkpoint: str | None = None, class_: int | str | None = None, entropy: bool = False,
                 dense: bool = False, device: torch.device | str = "cpu") -> None:
        super().__init__()
        if checkpoint is None:
            raise ValueError("give checkpoint=PATH, a classifier trained with paintgym train-classifier")
        if (class_ is None) == (not entropy):
            raise ValueError("give class=K (paint class K: its log-probability) or entropy=true (paint something "
                             "clearly of some class), one of the two")
        self.device = torch.device(device)
        self.checkpoint, self.entropy, self.dense = checkpoint, bool(entropy), bool(dense)
        self._adapt = generative.adapt_images
        self.model = generative.load(checkpoint, device=self.device, kind="classifier")
        self.model.eval().requires_grad_(False)
        self.label = class_
        self.uses_condition = class_ == CONDITION and CONDITION not in self.model.names
        self.num_classes = self.model.classes
        self.index = None if class_ is None or self.uses_condition else self.model.class_index(class_)

    @property
    def class_names(self) -> list[str]:
        """The classifier's class names, by index."""
        return list(self.model.names)

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None,
              condition: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(class | canvas)`` or the prediction's negative entropy, ``(B,)`` float32, of ``canvas``
        ``(B, 3, H, W)`` in [0, 1]; keeps the graph when ``canvas`` requires grad. With ``class=condition``,
        ``condition`` ``(B,)`` int64 gives each painting's class."""
        if self.uses_condition:
            condition = check_condition(condition, self.num_classes, self.name).to(canvas.device)
        # a graph only when the caller differentiates the canvas (the model-based agent): env steps build none
        with torch.set_grad_enabled(torch.is_grad_enabled() and canvas.requires_grad):
            x = self._adapt(canvas, self.model.size, self.model.channels)
            if self.entropy:
                return self.model.negative_entropy(x)
            if self.uses_condition:
                return self.model.log_probs(x).gather(1, condition[:, None]).squeeze(1)
            return self.model.class_log_prob(x, self.index)

    def to(self, device: torch.device | str) -> ClassifierReward:
        super().to(device)
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"checkpoint": self.checkpoint}
        if self.entropy:
            options["entropy"] = True
        else:
            options["class"] = self.label
        if self.dense:
            options["dense"] = True
        return options
