"""paintgym agents: the learners, behind one small typed interface (:class:`agents.common.Algorithm`).

==============================  ===============================================================
:mod:`agents.common`            the :class:`~agents.common.Algorithm` interface the trainer drives, and what
                                the algorithms share: network and optimiser setup, AMP, checks
:mod:`agents.networks`          CoordConv actor-critic for canvas observations (Beta / categorical heads)
:mod:`agents.distributions`     the Beta action distribution on [-1, 1] and the multi-categorical one
:mod:`agents.storage`           rollout storage on the env's device, GAE, reward-to-go, reward scaling
:mod:`agents.rollout`           one rollout of a policy into the storage (PPO and REINFORCE)
:mod:`agents.episodes`          episode returns, reward terms and final L2 during training
:mod:`agents.ppo`               PPO (CleanRL's reading order), ``PPOArgs``
:mod:`agents.reinforce`         REINFORCE with a learned or running-mean baseline, ``ReinforceArgs``
:mod:`agents.model_based`       the model-based agent, learning through the differentiable renderer
:mod:`agents.sb3_vec_env`       an SB3 ``VecEnv`` over the native vector env
:mod:`agents.sb3_ppo`           SB3's PPO behind the same interface (``--agent sb3-ppo``)
:mod:`agents.painters`          painters that need no training (random, greedy, optimise) and quality measures
==============================  ===============================================================

Training runs, checkpoints, logs and the commands live in :mod:`paintgym.experiments`, which uses this
package; nothing here imports it. Modules are imported on demand (``import paintgym.agents.ppo``);
importing the package loads nothing heavy.
"""
