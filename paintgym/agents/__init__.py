"""paintgym agents: networks, rollout storage, REINFORCE, PPO, Stable-Baselines3, the trainer, and the
commands built on trained agents (painting videos, sweeps and reports).

==========================  ===================================================================
:mod:`agents.networks`      CoordConv actor-critic for canvas observations (Beta / categorical heads)
:mod:`agents.distributions` the Beta action distribution on [-1, 1] and the multi-categorical one
:mod:`agents.storage`       rollout storage on the env's device, GAE, reward-to-go, reward scaling
:mod:`agents.episodes`      episode returns, reward terms and final L2 during training
:mod:`agents.ppo`           PPO (CleanRL's reading order), ``PPOArgs``
:mod:`agents.reinforce`     REINFORCE with a learned or running-mean baseline, ``ReinforceArgs``
:mod:`agents.sb3_vec_env`   an SB3 ``VecEnv`` over the native vector env
:mod:`agents.sb3_ppo`       SB3's PPO driven by the trainer (``--agent sb3-ppo``)
:mod:`agents.evaluate`      held-out evaluation (return, reward terms, L2, PSNR), random policy
:mod:`agents.trainer`       run directory, logs, checkpoints, resume, artefacts
:mod:`agents.cli_train`     ``paintgym train`` / ``python train.py``
:mod:`agents.common`        what the algorithms share: network and optimiser setup, AMP, threads
:mod:`agents.config`        dataclass options <-> flags and TOML files
:mod:`agents.pretrained`    load a trained agent from a run directory or checkpoint
:mod:`agents.cli_paint`     ``paintgym paint``: videos and SVGs of a trained agent painting
:mod:`agents.sweep`         ``paintgym sweep``: grids of training runs, resumable, ``--jobs``
:mod:`agents.report`        ``paintgym report``: metrics table, learning curves, contact sheets
==========================  ===================================================================

Modules are imported on demand (``import agents.ppo``); importing the package loads nothing heavy.
"""
