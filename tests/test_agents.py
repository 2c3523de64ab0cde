"""Agents: distributions, network, storage estimators, and PPO / REINFORCE learning on a tiny task."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Beta, Categorical

from paintgym.agents.common import FlatGradients
from paintgym.agents.distributions import BetaActions, MultiCategorical
from paintgym.agents.networks import ActorCritic, PatchedObservations, obs_planes
from paintgym.agents.ppo import PPO, PPOArgs
from paintgym.agents.reinforce import Reinforce, ReinforceArgs
from paintgym.agents.storage import compute_gae, reward_to_go
from paintgym.envs import CanvasVectorEnv
from paintgym.experiments.evaluate import evaluate, random_policy
from paintgym.rewards import Reward

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py, as is tiny_env


# ------------------------------------------------------------------------------ distributions
def test_beta_actions_stay_inside_the_action_space_with_finite_log_probs():
    torch.manual_seed(0)
    alpha = torch.tensor([[1.0, 1.0, 50.0], [1.0, 2.0, 1.0]])
    beta = torch.tensor([[1.0, 50.0, 1.0], [3.0, 1.0, 1.0]])
    dist = BetaActions(alpha, beta)
    samples = torch.stack([dist.sample() for _ in range(200)])
    assert samples.abs().max() < 1.0
    assert torch.isfinite(dist.log_prob(torch.tensor([[-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]]))).all()
    mode = dist.mode()
    assert mode.shape == (2, 3) and mode.abs().max() < 1.0
    assert mode[0, 0] == 0.0  # uniform component: the middle of the range
    assert mode[0, 1] < -0.9 and mode[0, 2] > 0.9
    assert dist.entropy().shape == (2,)
    # Beta(1, 1) is uniform on [0, 1]: log-density 0 everywhere
    uniform = BetaActions(torch.ones(1, 3), torch.ones(1, 3))
    assert torch.allclose(uniform.log_prob(torch.tensor([[-0.5, 0.0, 0.7]])), torch.zeros(1), atol=1e-5)


def test_beta_actions_match_torch_beta_in_log_prob_entropy_gradients_and_samples():
    torch.manual_seed(0)
    concentrations = (torch.rand(16, 26, dtype=torch.float64) * 30 + 1).requires_grad_()
    alpha, beta = concentrations.chunk(2, dim=-1)
    ours, reference = BetaActions.from_concentrations(concentrations), Beta(alpha, beta)
    actions = torch.rand(16, 13, dtype=torch.float64) * 2 - 1
    x = ((actions + 1) * 0.5).clamp(1e-6, 1 - 1e-6)
    log_prob, entropy = ours.log_prob(actions), ours.entropy()
    assert torch.allclose(log_prob, reference.log_prob(x).sum(-1))
    assert torch.allclose(entropy, reference.entropy().sum(-1))
    grad = torch.autograd.grad((log_prob + entropy).sum(), concentrations)[0]
    expected = torch.autograd.grad((reference.log_prob(x) + reference.entropy()).sum(), concentrations)[0]
    assert torch.allclose(grad, expected)
    torch.manual_seed(1)
    sample = BetaActions(alpha.detach(), beta.detach()).sample()
    torch.manual_seed(1)
    assert torch.equal(sample, Beta(alpha.detach(), beta.detach()).sample().clamp(1e-6, 1 - 1e-6) * 2 - 1)


def test_flat_gradients_zero_and_clip_as_zero_grad_and_clip_grad_norm():
    torch.manual_seed(0)
    net, copy = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    copy.load_state_dict(net.state_dict())
    gradients = FlatGradients(net.parameters())
    for scale in (10.0, 0.01):  # clipped, then not
        x = torch.randn(5, 6) * scale
        gradients.zero_grad()
        (net(x) ** 2).sum().backward()
        norm = gradients.clip_grad_norm_(0.5)
        copy.zero_grad(set_to_none=True)
        (copy(x) ** 2).sum().backward()
        expected = torch.nn.utils.clip_grad_norm_(copy.parameters(), 0.5)
        assert torch.allclose(norm, expected)
        for p, q in zip(net.parameters(), copy.parameters(), strict=True):
            assert torch.allclose(p.grad, q.grad, atol=1e-6)
    net.zero_grad(set_to_none=True)  # someone else drops the gradients: zero_grad re-attaches the views
    gradients.zero_grad()
    (net(torch.randn(5, 6)) ** 2).sum().backward()
    assert torch.equal(gradients.flat[:24].view(4, 6), net.weight.grad)


def test_multi_categorical_matches_one_categorical_per_component():
    torch.manual_seed(0)
    nvec = torch.tensor([3, 5, 2])
    valid = torch.arange(5)[None, :] < nvec[:, None]
    logits = torch.randn(4, 3, 5)
    dist = MultiCategorical(logits, valid)
    actions = torch.stack([dist.sample() for _ in range(500)])
    assert (actions < nvec).all() and (actions >= 0).all()
    expected_logp = torch.zeros(4)
    expected_entropy = torch.zeros(4)
    action = actions[0]
    for k, n in enumerate(nvec.tolist()):
        reference = Categorical(logits=logits[:, k, :n])
        expected_logp += reference.log_prob(action[:, k])
        expected_entropy += reference.entropy()
    assert torch.allclose(dist.log_prob(action), expected_logp, atol=1e-5)
    assert torch.allclose(dist.entropy(), expected_entropy, atol=1e-5)
    # sampling frequencies follow the probabilities of the padded categorical
    freq = torch.bincount(actions[:, 0, 1], minlength=5).float() / len(actions)
    probs = torch.softmax(logits[0, 1], dim=-1)
    assert torch.allclose(freq, probs, atol=0.07)


# ------------------------------------------------------------------------------------ network
@pytest.mark.parametrize("action_mode", ["continuous", "discrete"])
def test_network_acts_inside_the_action_space_for_image_and_dict_observations(action_mode, tiny_env):
    for obs_mode in ("image", "dict"):
        env = tiny_env(3, action_mode, obs_mode=obs_mode)
        agent = ActorCritic(env.single_observation_space, env.single_action_space, hidden=32)
        obs, _ = env.reset(seed=0)
        action, logprob, entropy, value = agent.get_action_and_value(obs)
        assert action.shape == (3, *env.single_action_space.shape)
        assert logprob.shape == entropy.shape == value.shape == (3,)
        assert env.single_action_space.contains(action[0].numpy().astype(env.single_action_space.dtype))
        obs = env.step(action)[0]  # the env accepts them (it raises outside the space)
        env.step(agent.act(obs))  # and the deterministic actions


def test_dict_and_image_observations_give_the_network_the_same_planes(tiny_env):
    image_env, dict_env = tiny_env(4), tiny_env(4, obs_mode="dict")
    a, _ = image_env.reset(seed=3)
    b, _ = dict_env.reset(seed=3)
    actions = torch.rand(4, 13) * 2 - 1
    a = image_env.step(actions)[0]
    b = dict_env.step(actions)[0]
    assert torch.equal(obs_planes(a), obs_planes(b))


def test_patched_observations_score_actions_as_the_network_does_on_observations(tiny_env):
    env = tiny_env(6)
    agent = ActorCritic(env.single_observation_space, env.single_action_space, hidden=32)
    obs = torch.cat([env.reset(seed=0)[0], env.step(env.action_space.sample())[0]])  # (12, H, W, C) uint8
    patched, index = PatchedObservations(agent, obs), torch.tensor([7, 0, 3])
    actions = torch.rand(3, 13) * 2 - 1
    with torch.no_grad():
        expected = agent.get_action_and_value(obs.index_select(0, index), actions)
        got = patched.get_action_and_value(index, actions)
        for want, have in zip(expected, got, strict=True):
            assert torch.allclose(have, want, atol=1e-5)


def test_a_policy_saved_with_another_network_layout_fails_to_load_with_a_clear_error(tiny_env):
    algo = PPO(tiny_env(4), PPOArgs(hidden=32))
    state = algo.state_dict()
    old = dict(state["agent"])  # the layout before the patch merge: a second 3x3 convolution
    old.pop("encoder.merge.weight"), old.pop("encoder.merge.bias")
    old["encoder.convs.2.weight"], old["encoder.convs.2.bias"] = torch.zeros(32, 32, 3, 3), torch.zeros(32)
    with pytest.raises(ValueError, match=r"does not fit this network .*missing \['encoder.merge.bias'"):
        algo.load_state_dict({**state, "agent": old})
    with pytest.raises(ValueError, match="tensor shapes differ"):
        PPO(tiny_env(4), PPOArgs(hidden=64)).load_state_dict(state)


def test_network_rejects_foreign_spaces(tiny_env):
    env = tiny_env(1)
    with pytest.raises(ValueError, match="Box"):
        ActorCritic(env.single_observation_space, gym.spaces.Box(0.0, 1.0, (13,)))
    with pytest.raises(ValueError, match="observations"):
        ActorCritic(gym.spaces.Box(0.0, 1.0, (5,)), env.single_action_space)


# ---------------------------------------------------------------------------------- estimators
def test_gae_matches_a_per_env_reference():
    torch.manual_seed(0)
    t, b, gamma, lam = 6, 3, 0.9, 0.8
    rewards, values, next_value = torch.randn(t, b), torch.randn(t, b), torch.randn(b)
    dones = torch.zeros(t, b)
    dones[2, 0] = dones[5, 1] = dones[0, 2] = 1.0
    advantages, returns = compute_gae(rewards, values, dones, next_value, gamma, lam)
    for env in range(b):
        gae = 0.0
        for step in reversed(range(t)):
            following = next_value[env] if step == t - 1 else values[step + 1, env]
            keep = 1.0 - dones[step, env]
            delta = rewards[step, env] + gamma * following * keep - values[step, env]
            gae = delta + gamma * lam * keep * gae
            assert advantages[step, env] == pytest.approx(float(gae), abs=1e-5)
    assert torch.allclose(returns, advantages + values)


def test_reward_to_go_restarts_at_episode_ends():
    rewards = torch.tensor([[1.0], [2.0], [4.0], [8.0]])
    dones = torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    expected = torch.tensor([[1 + 0.5 * 2], [2.0], [4 + 0.5 * 8], [8.0]])
    assert torch.allclose(reward_to_go(rewards, dones, 0.5), expected)


# ----------------------------------------------------------------------------------- learning
def random_return(env: CanvasVectorEnv, seeds: int = 4) -> float:
    returns = [evaluate(random_policy(env, torch.Generator().manual_seed(s)), env, seed=11).metrics["return"]
               for s in range(seeds)]
    return float(np.mean(returns))


def test_ppo_learns_the_tiny_reconstruction_task(tiny_env):
    torch.manual_seed(0)
    env, eval_env = tiny_env(16), tiny_env(16)
    algo = PPO(env, PPOArgs(learning_rate=1e-3, hidden=64, anneal_lr=False, rollout_episodes=2))
    algo.start(env.reset(seed=0)[0])
    untrained = evaluate(algo.act, eval_env, seed=11).metrics
    for iteration in range(1, 21):
        metrics = algo.train_iteration(iteration, 20)
    trained = evaluate(algo.act, eval_env, seed=11).metrics
    random = random_return(eval_env)
    assert metrics["episodes"] == 32 and np.isfinite(metrics["policy_loss"])
    assert trained["return"] > random + 0.03, (trained, random, untrained)
    assert trained["return"] > untrained["return"] + 0.03
    assert trained["l2"] < untrained["l2"]


def test_reinforce_learns_the_tiny_task_with_discrete_actions(tiny_env):
    torch.manual_seed(0)
    env, eval_env = tiny_env(16, "discrete"), tiny_env(16, "discrete")
    algo = Reinforce(env, ReinforceArgs(learning_rate=1e-3, hidden=64, rollout_episodes=2))
    algo.start(env.reset(seed=0)[0])
    untrained = evaluate(algo.act, eval_env, seed=11).metrics
    for iteration in range(1, 41):
        algo.train_iteration(iteration, 40)
    trained = evaluate(algo.act, eval_env, seed=11).metrics
    random = random_return(eval_env)
    assert trained["return"] > random + 0.03, (trained, random, untrained)
    assert trained["return"] > untrained["return"] + 0.03


def test_reinforce_running_mean_baseline_tracks_the_reward_to_go(tiny_env):
    torch.manual_seed(0)
    env = tiny_env(8)
    algo = Reinforce(env, ReinforceArgs(baseline="mean", hidden=32))
    algo.start(env.reset(seed=0)[0])
    metrics = algo.train_iteration(1, 1)
    returns = reward_to_go(algo.storage.rewards, algo.storage.dones, algo.args.gamma)
    assert torch.allclose(algo.running_mean, returns.mean(dim=1), atol=1e-6)  # the first batch sets it
    assert np.isfinite(metrics["policy_loss"])
    with pytest.raises(ValueError, match="baseline"):
        Reinforce(env, ReinforceArgs(baseline="median"))


class _LearningProbe(Reward):
    """A reward that learns: checks that what it is shown are the finished paintings in the env."""

    name = "probe"
    learns = True

    def __init__(self) -> None:
        super().__init__()
        self.core = None
        self.calls: list[tuple[int, bool, bool, bool]] = []

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return -canvas.mean(dim=(1, 2, 3))

    def update(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, float]:
        finished = bool((self.core.steps == self.core.max_steps).all())  # before the env resets them
        same = torch.equal(canvas, self.core.canvas) and torch.equal(target, self.core.target)
        self.calls.append((canvas.shape[0], finished, same, torch.is_grad_enabled()))  # it may train a model
        return {"updates": float(len(self.calls))}


def test_rewards_that_learn_see_every_finished_painting(tiny_env):
    probe = _LearningProbe()
    env = tiny_env(4, reward=probe)
    probe.core = env.core
    algo = PPO(env, PPOArgs(hidden=32, rollout_episodes=2))
    algo.start(env.reset(seed=0)[0])
    metrics = algo.train_iteration(1, 1)
    assert probe.calls == [(4, True, True, True)] * 2  # every env, at both episode ends, autograd on
    assert metrics["reward/probe/updates"] == 2.0 and metrics["episodes"] == 8


def test_algorithms_need_the_native_tensor_env(tiny_env):
    env = CanvasVectorEnv(2, targets="digits", canvas_size=16, max_steps=2)
    with pytest.raises(ValueError, match="return_tensors"):
        PPO(env, PPOArgs())
    with pytest.raises(ValueError, match="CUDA"):
        PPO(tiny_env(2), PPOArgs(), amp=True)


def test_ppo_under_bfloat16_autocast_keeps_float32_statistics(tiny_env, monkeypatch):
    """The --amp code path, run on the CPU: bfloat16 autocast around the network only (CUDA in training)."""
    import contextlib

    import paintgym.agents.ppo as ppo_module

    torch.manual_seed(0)
    env = tiny_env(8)
    algo = PPO(env, PPOArgs(hidden=32, width=8, update_epochs=2, num_minibatches=2))
    obs = env.reset(seed=0)[0]
    with torch.no_grad():
        reference = algo.agent.get_action_and_value(obs, torch.zeros(8, 13))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = algo.agent.get_action_and_value(obs, torch.zeros(8, 13))
    for ref, got in zip(reference[1:], mixed[1:], strict=True):  # log-prob, entropy, value: float32, close
        assert got.dtype == torch.float32 and torch.allclose(got, ref, rtol=0.05, atol=0.05)

    monkeypatch.setattr(ppo_module, "autocast", lambda device, enabled: (
        torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()))
    algo.amp = True
    algo.start(obs)
    metrics = algo.train_iteration(1, 1)
    assert all(np.isfinite(metrics[key]) for key in ("policy_loss", "value_loss", "entropy", "approx_kl"))
    assert algo.storage.logprobs.dtype == algo.storage.values.dtype == torch.float32
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in algo.agent.parameters())
