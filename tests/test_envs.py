"""The Gymnasium faces of the canvas: checkers, seeding, vectorisation modes, autoreset, wrappers, errors."""

import json
import pickle
import subprocess
import sys

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from paintgym import envs
from paintgym.agents.sb3_vec_env import SB3VecEnv
from paintgym.canvas.export import load_json
from paintgym.canvas.images import load_images
from paintgym.envs import CanvasEnv, CanvasVectorEnv
from paintgym.envs.observations import pack_observation
from paintgym.envs.targets import TargetSource, augmented_views
from paintgym.rewards.target import mean_distance, psnr

SMALL = {"canvas_size": 32, "max_steps": 4}


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
@pytest.mark.parametrize("action_mode", ["continuous", "discrete"])
@pytest.mark.parametrize("obs_mode", ["image", "dict"])
def test_gymnasium_and_sb3_checkers_pass(env_id, action_mode, obs_mode):
    env = gym.make(env_id, action_mode=action_mode, obs_mode=obs_mode, **SMALL)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped, warn=False)


def test_observation_layout_of_the_reconstruction_task():
    env = gym.make("paintgym/Reconstruct-v0", max_steps=4)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (64, 64, 7) and obs.dtype == np.uint8
    assert (obs[..., :3] == 255).all()  # blank white canvas
    assert obs[..., 3:6].min() < 100  # a dark digit on white
    assert (obs[..., 6] == 0).all()  # progress 0
    for step in range(1, 5):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert (obs[..., 6] == round(255 * step / 4)).all()
        assert not truncated
    assert terminated and info["strokes"].shape == (4, 13)
    dict_env = gym.make("paintgym/Reconstruct-v0", obs_mode="dict")
    obs, _ = dict_env.reset(seed=3)
    assert set(obs) == {"canvas", "target", "progress"} and obs["progress"][0] == 0.0


@pytest.mark.parametrize("targets", ["digits", None])
@pytest.mark.parametrize("size", [24, 9])  # 9: image rows are not a whole number of 64-bit words
def test_incremental_image_observation_equals_a_full_repack(targets, size):
    env = CanvasVectorEnv(20, targets=targets, canvas_size=size, max_steps=3, strokes_per_step=2,
                          autoreset_mode="next_step")  # partial resets every few steps; 20 envs: the parallel kernel
    core = env.core
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for step in range(8):
        if step == 4:  # some envs restart mid-episode
            env.reset(options={"reset_mask": np.arange(20) % 3 == 0})
        obs, *_ = env.step(rng.uniform(-1, 1, (20, 26)).astype(np.float32))
        expected = pack_observation(core.canvas, core.target_u8, core._progress_levels[core.steps]).numpy()
        np.testing.assert_array_equal(obs, expected, err_msg=f"step {step}")
        if targets is not None:  # partial resets refresh the targets of the restarted envs in place
            target_u8, target = core.targets.get(core.target_index)
            assert torch.equal(core.target_u8, target_u8) and torch.equal(core.target, target)
    core.canvas[3].fill_(0.5)  # a write outside step/reset, announced as the docstring asks
    core.canvas_changed(torch.arange(20) == 3)
    assert (core.observation()[3, ..., :3] == 128).all()


def test_cpu_fast_paths_match_the_plain_torch_bookkeeping(monkeypatch):
    """Observations, rewards and targets are the same with the numba bookkeeping (incremental
    observation, row-wise reward, in-place target refresh) and without it, across partial resets."""

    def play() -> tuple[list, torch.Tensor, bool]:
        env = CanvasVectorEnv(20, targets="digits", canvas_size=16, max_steps=3, autoreset_mode="next_step")
        obs, _ = env.reset(seed=0)
        rng, trajectory = np.random.default_rng(0), [obs]
        for step in range(7):
            if step == 4:
                env.reset(options={"reset_mask": np.arange(20) % 3 == 0})
            obs, reward, *_ = env.step(rng.uniform(-1, 1, (20, 13)).astype(np.float32))
            trajectory += [obs, reward]
        return trajectory, env.core.target.clone(), env.core._cpu_fast

    fast, fast_target, fast_used = play()
    monkeypatch.setattr(envs.core, "HAVE_NUMBA", False)  # the renderer itself stays the same kernel
    monkeypatch.setattr(envs.targets, "HAVE_NUMBA", False)
    plain, plain_target, plain_used = play()
    assert fast_used and not plain_used
    assert torch.equal(fast_target, plain_target)
    for i, (a, b) in enumerate(zip(fast, plain, strict=True)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 if a.dtype == np.float32 else 0, err_msg=f"item {i}")


def test_make_with_module_prefix_needs_no_prior_import():
    code = ("import gymnasium as gym, sys; env = gym.make('paintgym:paintgym/Reconstruct-v0', canvas_size=16); "
            "obs, _ = env.reset(seed=0); sys.exit(0 if obs.shape == (16, 16, 7) else 1)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0


def rollout(env, actions, seed):
    obs, _ = env.reset(seed=seed)
    trajectory = [obs]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        trajectory += [obs, reward, terminated]
    return trajectory


def test_same_seed_gives_the_same_episode():
    actions = [np.random.default_rng(0).uniform(-1, 1, 13).astype(np.float32) for _ in range(4)]
    first = rollout(gym.make("paintgym/Reconstruct-v0", **SMALL), actions, seed=7)
    second = rollout(gym.make("paintgym/Reconstruct-v0", **SMALL), actions, seed=7)
    other = rollout(gym.make("paintgym/Reconstruct-v0", **SMALL), actions, seed=8)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])  # another seed, another target


def test_vector_env_matches_single_envs_with_corresponding_seeds():
    n, seed = 4, 11
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (10, n, 13)).astype(np.float32)  # 10 steps: crosses two episode ends
    vec = gym.make_vec("paintgym/Reconstruct-v0", num_envs=n, autoreset_mode=AutoresetMode.NEXT_STEP, **SMALL)
    singles = [gym.make("paintgym/Reconstruct-v0", **SMALL) for _ in range(n)]
    obs, _ = vec.reset(seed=seed)
    single_obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    needs_reset = np.zeros(n, dtype=bool)
    for step_actions in actions:
        obs, rewards, terminated, _, _ = vec.step(step_actions)
        for i, env in enumerate(singles):
            if needs_reset[i]:  # NEXT_STEP: this step resets the env
                expected_obs, expected_reward, expected_done = env.reset()[0], 0.0, False
            else:
                expected_obs, expected_reward, expected_done, _, _ = env.step(step_actions[i])
            np.testing.assert_array_equal(obs[i], expected_obs)
            assert rewards[i] == pytest.approx(expected_reward, abs=1e-7)
            assert terminated[i] == expected_done
        needs_reset = terminated


def test_make_vec_returns_the_native_vector_env_and_sync_async_work():
    native = gym.make_vec("paintgym/Reconstruct-v0", num_envs=3, **SMALL)
    assert isinstance(native, CanvasVectorEnv)
    native_obs, _ = native.reset(seed=5)
    for mode in ("sync", "async"):
        vec = gym.make_vec("paintgym/Reconstruct-v0", num_envs=3, vectorization_mode=mode, **SMALL)
        obs, _ = vec.reset(seed=5)
        np.testing.assert_array_equal(obs, native_obs)  # env i is seeded 5 + i in every mode
        obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
        assert obs.shape == (3, 32, 32, 7) and info["reward_terms"]["target"].shape == (3,)
        for _ in range(4):  # through an episode end and the autoreset
            obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
        vec.close()


def test_env_pickles():
    env = CanvasEnv(targets="digits", **SMALL)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    clone = pickle.loads(pickle.dumps(env))
    action = env.action_space.sample()
    np.testing.assert_array_equal(env.step(action)[0], clone.step(action)[0])


def test_same_step_autoreset_reports_final_observation_and_info():
    vec = CanvasVectorEnv(3, targets="digits", **SMALL)
    vec.reset(seed=0)
    for _ in range(3):
        _, _, terminated, _, info = vec.step(vec.action_space.sample())
        assert not terminated.any() and "final_obs" not in info
    obs, _, terminated, _, info = vec.step(vec.action_space.sample())
    assert terminated.all()
    assert info["_final_obs"].all() and info["final_obs"][0].shape == (32, 32, 7)
    assert (info["final_obs"][0][..., 6] == 255).all()  # the final observation: progress complete
    assert (obs[..., 6] == 0).all() and (obs[..., :3] == 255).all()  # the new episode is already there
    assert info["final_info"]["strokes"].shape == (3, 4, 13) and info["final_info"]["_strokes"].all()


def test_disabled_autoreset_requires_reset_mask():
    vec = CanvasVectorEnv(2, autoreset_mode="disabled", targets="digits", **SMALL)
    vec.reset(seed=0)
    for _ in range(4):
        vec.step(vec.action_space.sample())
    with pytest.raises(ValueError, match="reset_mask"):
        vec.step(vec.action_space.sample())
    obs, _ = vec.reset(options={"reset_mask": np.array([True, False])})
    assert (obs[0, ..., 6] == 0).all() and (obs[1, ..., 6] == 255).all()
    vec.reset(options={"reset_mask": np.array([False, True])})
    vec.step(vec.action_space.sample())


def test_observations_are_fresh_arrays():
    vec = CanvasVectorEnv(2, **SMALL)
    first, _ = vec.reset(seed=0)
    second, *_ = vec.step(vec.action_space.sample())
    assert not np.shares_memory(first, second)
    env = CanvasEnv(**SMALL)
    a, _ = env.reset(seed=0)
    b = env.step(env.action_space.sample())[0]
    assert not np.shares_memory(a, b)


def test_torch_outputs_stay_on_the_device():
    vec = CanvasVectorEnv(4, return_tensors=True, targets="digits", **SMALL)
    obs, _ = vec.reset(seed=0)
    action = torch.rand(4, 13) * 2 - 1
    obs, reward, terminated, truncated, info = vec.step(action)
    assert isinstance(obs, torch.Tensor) and obs.dtype == torch.uint8 and obs.device == vec.device
    assert isinstance(reward, torch.Tensor) and reward.shape == (4,)
    assert isinstance(info["reward_terms"]["target"], torch.Tensor)


@pytest.mark.parametrize(
    "action,message",
    [
        (np.zeros(12, np.float32), "shape"),
        (np.full(13, np.nan, np.float32), "NaN"),
        (np.full(13, np.inf, np.float32), "NaN or inf"),
        (np.full(13, 1.5, np.float32), r"\[-1, 1\]"),
        (np.array([0.5] * 12 + [np.nan]), "NaN"),  # one bad component among good ones, float64
        (np.array([-np.inf] + [0.0] * 12, np.float32), "NaN or inf"),
    ],
)
def test_bad_continuous_actions_raise(action, message):
    env = CanvasEnv(**SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_actions_decode_the_same_from_numpy_float32_float64_and_torch():
    core = CanvasVectorEnv(3, canvas_size=16, clip_actions=True).core
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 13))
    actions[0, :2] = [1.0 + 5e-6, -1.0]  # at the bounds, within float32 rounding slack
    expected = core.decode(torch.as_tensor(actions, dtype=torch.float32))[0]
    for batch in (actions.astype(np.float32), actions, np.asfortranarray(actions)):
        strokes, clipped = core.decode(batch)
        assert torch.equal(strokes, expected) and clipped.tolist() == [0, 0, 0]


def test_out_of_range_actions_can_be_clipped_and_counted():
    env = CanvasEnv(clip_actions=True, **SMALL)
    env.reset(seed=0)
    action = np.zeros(13, np.float32)
    action[:3] = [1.5, -2.0, 3.0]
    _, _, _, _, info = env.step(action)
    assert info["clipped_actions"] == 3


def test_bad_discrete_actions_raise():
    env = CanvasEnv(action_mode="discrete", **SMALL)
    env.reset(seed=0)
    action = env.action_space.sample()
    action[0] = env.action_space.nvec[0]
    with pytest.raises(ValueError, match="nvec"):
        env.step(action)
    with pytest.raises(ValueError, match="integers"):
        env.step(env.action_space.sample().astype(np.float32) + 0.5)


def test_unknown_options_and_bad_datasets_are_named():
    with pytest.raises(ValueError, match="unexpected keyword argument 'brush_colour'.*take: canvas_size"):
        gym.make("paintgym/Canvas-v0", brush_colour="red")
    with pytest.raises(ValueError, match="action_mode"):
        CanvasEnv(action_mode="joystick")
    with pytest.raises(ValueError, match="neither a built-in"):
        CanvasEnv(targets="/no/such/folder")
    with pytest.raises(ValueError, match="needs target images"):
        CanvasEnv(reward="target")
    with pytest.raises(ValueError, match="'nothere'.*in the union 'photos\\+nothere'"):
        CanvasEnv(targets="photos+nothere")


def test_a_union_of_datasets_holds_every_image_of_each(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((20, 30, 3), np.uint8))
    union = load_images(f"photos+{tmp_path}+digits", 16)
    photos, digits = load_images("photos", 16), load_images("digits", 16)
    assert union.shape == (len(photos) + 1 + len(digits), 16, 16, 3)
    assert np.array_equal(union[:len(photos)], photos) and np.array_equal(union[-len(digits):], digits)
    plus = tmp_path / "a+b"  # a folder whose name has a '+' is one source
    plus.mkdir()
    cv2.imwrite(str(plus / "two.png"), np.zeros((8, 8, 3), np.uint8))
    assert load_images(str(plus), 16).shape == (1, 16, 16, 3)


@pytest.mark.parametrize("make", [CanvasEnv, CanvasVectorEnv])
def test_an_unknown_option_is_a_type_error_in_pythons_words(make):
    with pytest.raises(TypeError) as raised:
        make(frameskip=1, targets="digits")
    name = make.__name__
    assert str(raised.value).startswith(f"{name}.__init__() got an unexpected keyword argument 'frameskip'; ")
    assert "canvas_size, strokes_per_step" in str(raised.value)  # the options there are
    assert isinstance(raised.value, ValueError)  # as before, for callers that catch ValueError
    with pytest.raises(TypeError, match=r"got unexpected keyword arguments 'frameskip', 'fps'"):
        make(frameskip=1, fps=4)


def test_torchrl_probe_of_the_constructor_falls_back_without_frameskip():
    """What TorchRL's ``GymEnv`` does (``torchrl/envs/libs/gym.py``): ``gymnasium.make`` with ``frameskip``,
    and on a ``TypeError`` that names it, again without (TorchRL then skips frames itself)."""
    kwargs = {"canvas_size": 16, "frameskip": 1}
    try:
        env = gym.make("paintgym/Reconstruct-v0", **kwargs)
    except TypeError as err:
        assert "unexpected keyword argument 'frameskip'" in str(err)
        kwargs.pop("frameskip")
        env = gym.make("paintgym/Reconstruct-v0", **kwargs)
    assert "frameskip" not in kwargs and env.observation_space.shape == (16, 16, 7)


def test_gymnasium_wrappers_work_on_top(tmp_path):
    env = gym.make("paintgym/Reconstruct-v0", render_mode="rgb_array", **SMALL)
    env = gym.wrappers.RecordVideo(env, str(tmp_path), episode_trigger=lambda episode: True,
                                   disable_logger=True)
    env = gym.wrappers.FrameStackObservation(env, 3)
    env = gym.wrappers.NormalizeReward(env)
    env.reset(seed=0)
    for _ in range(4):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (3, 32, 32, 7) and terminated
    env.close()
    assert list(tmp_path.glob("*.mp4"))
    normalised = gym.wrappers.NormalizeObservation(gym.make("paintgym/Canvas-v0", obs_mode="image", **SMALL))
    normalised.reset(seed=0)
    assert normalised.step(normalised.action_space.sample())[0].dtype == np.float32


def test_render_and_export_at_any_resolution(tmp_path):
    env = CanvasEnv(render_mode="rgb_array", render_size=128, targets="digits", **SMALL)
    env.reset(seed=0)
    for _ in range(4):
        env.step(env.action_space.sample())
    frame = env.render()
    assert frame.shape == (128, 256, 3)  # canvas beside its target
    png = env.export_png(tmp_path / "painting.png", size=256)
    assert cv2.imread(str(png)).shape == (256, 256, 3)
    strokes, size, background = load_json(env.export_json(tmp_path / "painting.json"))
    np.testing.assert_allclose(strokes, env.strokes(), atol=1e-6)
    assert size == 32 and background == 1.0
    assert json.loads((tmp_path / "painting.json").read_text())["layout"][0] == "x0"
    svg = env.export_svg(tmp_path / "painting.svg").read_text()
    assert svg.count("<path") == 4


def test_export_to_an_unwritable_path_says_so(tmp_path):
    env = CanvasEnv(**SMALL)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="writable"):
        env.export_png(blocker / "painting.png")


def test_dense_reward_sums_to_the_decrease_of_the_distance():
    env = CanvasEnv(targets="digits", **SMALL)
    obs, _ = env.reset(seed=2)
    target = obs[..., 3:6].astype(np.float64) / 255
    initial = np.mean((1.0 - target) ** 2)
    total = 0.0
    for _ in range(4):
        _, reward, *_ = env.step(env.action_space.sample())
        total += reward
    final = np.mean((env.core.canvas[0].permute(1, 2, 0).numpy() - env.core.target[0].permute(1, 2, 0).numpy()) ** 2)
    assert total == pytest.approx(initial - final, abs=1e-4)


@pytest.mark.parametrize("metric", ["l2", "l1", "psnr"])
def test_row_wise_reward_equals_the_full_distance_every_step(metric):
    env = CanvasVectorEnv(20, targets="digits", canvas_size=24, max_steps=3, reward=f"target(metric={metric})",
                          autoreset_mode="next_step")  # partial resets; 20 envs: the parallel kernels
    core = env.core

    def distance(canvas, target):
        mean = mean_distance(canvas, target, squared=metric != "l1")
        return -psnr(mean) if metric == "psnr" else mean

    env.reset(seed=1)
    rng = np.random.default_rng(1)
    before = distance(core.canvas, core.target)
    for step in range(7):
        restarting = env._needs_reset.clone()
        _, reward, *_ = env.step(rng.uniform(-1, 1, (20, 13)).astype(np.float32))
        after = distance(core.canvas, core.target)
        expected = np.where(restarting.numpy(), 0.0, (before - after).numpy())
        np.testing.assert_allclose(reward, expected, atol=1e-4 if metric == "psnr" else 1e-6, err_msg=f"step {step}")
        before = after
        if step == 4:  # a write outside step(), announced: the next reward pays for it, rows rebuilt
            core.canvas[:2] = 0.0
            core.canvas_changed()


def test_sb3_ppo_trains_through_make_vec(monkeypatch, tmp_path):
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path))  # SB3's default logger makes a folder; not in /tmp
    venv = SB3VecEnv(gym.make_vec("paintgym/Reconstruct-v0", num_envs=8, max_steps=8))
    model = PPO("CnnPolicy", venv, n_steps=128, batch_size=256, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048


def test_target_augment_adds_views_of_training_images_only():
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    train = TargetSource.from_spec(images, 16, split="train", augment=3)
    assert len(train) == 18 + 18 * 3  # 2 of 20 held out; 3 views of each of the other 18
    test = TargetSource.from_spec(images, 16, split="test", augment=3)
    assert len(test) == 2  # held-out images are never augmented
    views = augmented_views(images[:2], 16, 4)
    assert views.shape == (8, 16, 16, 3) and views.dtype == np.uint8
    np.testing.assert_array_equal(views, augmented_views(images[:2], 16, 4))  # a fixed part of the dataset
    assert len({v.tobytes() for v in views}) == 8  # different crops
    with pytest.raises(ValueError, match="target_augment"):
        TargetSource.from_spec(images, 16, augment=-1)
    env = CanvasEnv(targets=images, canvas_size=16, target_augment=2)
    assert len(env.unwrapped.core.targets) == 18 * 3
