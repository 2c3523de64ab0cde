"""paintgym experiments: the run tooling around the learners (:mod:`paintgym.agents`) and the generative
models (:mod:`paintgym.generative`) -- training runs, their configuration, checkpoints and logs, and the
commands built on trained agents.

The run layer (every command that trains uses it)

==============================  ===============================================================
:mod:`experiments.config`       configuration dataclasses <-> TOML files, layered: defaults < checkpoint <
                                TOML < flags
:mod:`experiments.flags`        configuration dataclasses -> command-line flags (tyro)
:mod:`experiments.run_dir`      run directories: the default name, no silent overwrite
:mod:`experiments.checkpoints`  atomic checkpoints of agent runs, and reading them back
:mod:`experiments.rng`          every random stream of a run, saved and restored
:mod:`experiments.device`       the device (``--device auto``), mixed precision, CPU threads
:mod:`experiments.signals`      Ctrl-C and SIGTERM: finish the step, checkpoint, stop
:mod:`experiments.logs`         ``metrics.csv`` + TensorBoard, and the progress bar
:mod:`experiments.distributed`  ``torchrun``: the process group, each rank's device and share, rank 0 writes
:mod:`experiments.transfer`     ``--init-from`` / ``--freeze``: another run's weights, matched by name and shape
==============================  ===============================================================

Training

==============================  ===============================================================
:mod:`experiments.train_config` ``TrainConfig``: the options of an agent's training run
:mod:`experiments.algorithms`   the algorithms by name (``--agent``) and their hyperparameter dataclasses
:mod:`experiments.env_factory`  the training and held-out evaluation envs of a run
:mod:`experiments.trainer`      the loop: iterations, evaluations, checkpoints, resume
:mod:`experiments.artefacts`    a run's output files: videos, contact sheet, learning curve, final episodes
:mod:`experiments.evaluate`     held-out evaluation of a policy (return, reward terms, L2, PSNR)
:mod:`experiments.cli_train`    ``paintgym train`` / ``python train.py``
:mod:`experiments.generative_runs`  what ``train-gan``, ``train-vae`` and ``train-classifier`` share
:mod:`experiments.train_gan`    ``paintgym train-gan``
:mod:`experiments.train_vae`    ``paintgym train-vae``
:mod:`experiments.train_classifier`  ``paintgym train-classifier``
==============================  ===============================================================

Trained agents and runs

==============================  ===============================================================
:mod:`experiments.pretrained`   load a trained agent from a run directory; a trained agent as a painter
:mod:`experiments.cli_paint`    ``paintgym paint``: videos and SVGs of a trained agent painting
:mod:`experiments.cli_eval`     ``paintgym eval``: quality of agents and painters after 1, 2, 4, ... strokes
:mod:`experiments.cli_optimise` ``paintgym optimise``: one image painted by gradient descent on its strokes
:mod:`experiments.sweep`        ``paintgym sweep``: grids of training runs, resumable, ``--jobs``
:mod:`experiments.report`       ``paintgym report``: metrics table, learning curves, contact sheets
==============================  ===============================================================

Modules are imported on demand; importing the package loads nothing heavy.
"""
