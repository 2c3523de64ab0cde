"""Action distributions for the canvas action spaces, batched over envs and action components.

* :class:`BetaActions` — continuous ``Box(-1, 1, (A,))``: an independent Beta distribution per
  component on ``[0, 1]``, mapped to ``[-1, 1]`` by ``a = 2 x - 1``. A Beta has the action bounds
  built in, so actions always land in the env's range (it raises outside it), log-probabilities are
  exact (no tanh Jacobian, no clipping bias at the bounds) and the entropy has a closed form
  (Chou et al., 2017, "Improving stochastic policy gradients in continuous control with deep
  reinforcement learning using the Beta distribution"). Concentrations are ``1 + softplus(.)``, so
  every component is unimodal.
* :class:`MultiCategorical` — discrete ``MultiDiscrete(nvec)``: one categorical per component,
  evaluated as one padded ``(B, K, max(nvec))`` tensor (no Python loop over components).

Both return log-probabilities and entropies summed over components: ``(B,)``.
"""

from __future__ import annotations

import torch
from torch.distributions import Beta

_EPS = 1e-6  # keeps Beta samples off 0 and 1, where log-probabilities are infinite in float32
_MASKED = -1e9  # logit of padding entries: probability 0, and 0 * logit stays finite in the entropy


class BetaActions:
    """Independent Beta distributions over ``A`` action components, on ``[-1, 1]``.

    Log-density and entropy are written out rather than taken from ``torch.distributions.Beta``
    (which goes through a two-component Dirichlet: stacks, broadcasts and separate log-gamma terms
    for each): both share one ``log B(alpha, beta)``, and the ``alpha`` and ``beta`` terms are one
    operation on the ``(B, 2A)`` concentrations, which matters in the PPO update's many small
    minibatches. Sampling is ``torch.distributions.Beta``'s.

    :param alpha: ``(B, A)`` float > 0.
    :param beta: ``(B, A)`` float > 0.
    """

    def __init__(self, alpha: torch.Tensor, beta: torch.Tensor) -> None:
        self._init(torch.cat((alpha, beta), dim=-1))

    @classmethod
    def from_concentrations(cls, concentrations: torch.Tensor) -> BetaActions:
        """From ``(B, 2A)`` concentrations: ``alpha`` then ``beta`` (no copy)."""
        dist = cls.__new__(cls)
        dist._init(concentrations)
        return dist

    def _init(self, concentrations: torch.Tensor) -> None:
        self.concentrations = concentrations  # (B, 2A)
        self.alpha, self.beta = concentrations.chunk(2, dim=-1)
        self._log_norm: torch.Tensor | None = None

    def log_norm(self) -> torch.Tensor:
        """``(B,)`` ``log B(alpha, beta) = log Gamma(alpha) + log Gamma(beta) - log Gamma(alpha + beta)``,
        summed over components (computed once per distribution)."""
        if self._log_norm is None:
            self._log_norm = (torch.lgamma(self.concentrations).sum(dim=-1)
                              - torch.lgamma(self.alpha + self.beta).sum(dim=-1))
        return self._log_norm

    def sample(self) -> torch.Tensor:
        """``(B, A)`` actions in ``[-1 + 2e-6, 1 - 2e-6]``."""
        x = Beta(self.alpha, self.beta, validate_args=False).sample().clamp_(_EPS, 1.0 - _EPS)
        return x.mul_(2.0).sub_(1.0)

    def mode(self) -> torch.Tensor:
        """``(B, A)`` the most likely action (concentrations >= 1 make the mode well defined)."""
        alpha, beta = self.alpha, self.beta
        x = ((alpha - 1.0) / (alpha + beta - 2.0).clamp_min(_EPS)).clamp(_EPS, 1.0 - _EPS)
        x = torch.where((alpha - 1.0).abs() + (beta - 1.0).abs() < _EPS, torch.full_like(x, 0.5), x)
        return x * 2.0 - 1.0

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """``(B, A)`` actions in ``[-1, 1]`` -> ``(B,)`` log-density (of ``x = (a + 1) / 2``, summed):
        ``(alpha - 1) log x + (beta - 1) log(1 - x) - log B(alpha, beta)``."""
        x = ((actions + 1.0) * 0.5).clamp(_EPS, 1.0 - _EPS)
        logs = torch.cat((torch.log(x), torch.log1p(-x)), dim=-1)  # (B, 2A), as the concentrations
        return ((self.concentrations - 1.0) * logs).sum(dim=-1) - self.log_norm()

    def entropy(self) -> torch.Tensor:
        """``(B,)`` differential entropy on ``[0, 1]``, summed over components (0 for uniform):
        ``log B - (alpha - 1) psi(alpha) - (beta - 1) psi(beta) + (alpha + beta - 2) psi(alpha + beta)``."""
        total = self.alpha + self.beta
        return (self.log_norm() - ((self.concentrations - 1.0) * torch.digamma(self.concentrations)).sum(dim=-1)
                + ((total - 2.0) * torch.digamma(total)).sum(dim=-1))


class MultiCategorical:
    """One categorical per ``MultiDiscrete`` component, from padded logits.

    :param logits: ``(B, K, M)`` float, ``M = max(nvec)``.
    :param valid: ``(K, M)`` bool, ``valid[k, m] = m < nvec[k]``.
    """

    def __init__(self, logits: torch.Tensor, valid: torch.Tensor) -> None:
        self.log_p = torch.log_softmax(logits.masked_fill(~valid, _MASKED), dim=-1)  # (B, K, M)

    def sample(self) -> torch.Tensor:
        """``(B, K)`` int64 component values (Gumbel-max: one batched argmax)."""
        uniform = torch.rand_like(self.log_p).clamp_(_EPS, 1.0 - _EPS)
        return (self.log_p - torch.log(-torch.log(uniform))).argmax(dim=-1)

    def mode(self) -> torch.Tensor:
        """``(B, K)`` int64, the most likely value of each component."""
        return self.log_p.argmax(dim=-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` integer actions -> ``(B,)`` log-probability, summed over components."""
        return self.log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1).sum(dim=-1)

    def entropy(self) -> torch.Tensor:
        """``(B,)`` entropy, summed over components."""
        return -(self.log_p.exp() * self.log_p).sum(dim=(-1, -2))
