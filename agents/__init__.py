"""paintgym agents: networks, rollout storage, REINFORCE, PPO, Stable-Baselines3, and the trainer.

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
==========================  ===================================================================

Modules are imported on demand (``import agents.ppo``); importing the package loads nothing heavy.
"""
