"""Generative models for paintgym: a WGAN-GP (DCGAN or StyleGAN-lite generator and critic), a convolutional VAE,
a CNN classifier and a CycleGAN.

Trained with ``paintgym train-gan`` / ``train-vae`` / ``train-classifier`` / ``train-strokes`` /
``train-cyclegan`` (their loops and run folders are :mod:`experiments`'s; one update of each model is
:mod:`generative.steps`); used by the rest of paintgym as

* a reward model — the critic scores canvases, or (target, canvas) pairs (``rewards.gan``);
* an embedding — the VAE encoder's mean (the ``novelty`` reward);
* a prior — samples as a target dataset, ``targets="gan:PATH"`` / ``"vae:PATH"`` (:func:`prior_images`);
* a judge — the classifier's log-probability of a class, or its confidence (``rewards.classifier``);
* a feature space — the classifier's penultimate layer for the Fréchet distance of samples or
  paintings (:mod:`generative.frechet`: ``bench/generative.py``, ``paintgym report --classifier``);
* a translator — a CycleGAN turns photos into painting-like targets, ``targets="cyclegan:PATH:DIR"``.

>>> import torch, generative
>>> vae = generative.VAE(size=32, channels=1)
>>> canvas = torch.rand(4, 3, 64, 64)                      # paintgym canvases, (B, 3, H, W) in [0, 1]
>>> vae.embed(generative.adapt_images(canvas, vae.size, vae.channels)).shape
torch.Size([4, 32])
"""

from __future__ import annotations

from paintgym.generative.checkpoint import CheckpointError, load, read_checkpoint, save_checkpoint
from paintgym.generative.classifier import Classifier
from paintgym.generative.cyclegan import CycleGAN
from paintgym.generative.data import adapt_images, load_dataset, load_labelled, random_stroke_canvases, to_grey, to_rgb
from paintgym.generative.losses import critic_loss, generator_loss, gradient_penalty
from paintgym.generative.models import GAN, SIZES, VAE, Critic, Generator
from paintgym.generative.prior import (
    parse_cyclegan_spec,
    parse_prior_spec,
    prior_images,
    sketch_images,
    translated_images,
)
from paintgym.generative.stylegan import StyleGenerator, mixing_grid, style_mix

__all__ = [
    "GAN", "SIZES", "VAE", "CheckpointError", "Classifier", "Critic", "CycleGAN", "Generator", "StyleGenerator",
    "adapt_images", "critic_loss", "generator_loss", "gradient_penalty", "load", "load_dataset", "load_labelled",
    "mixing_grid", "parse_cyclegan_spec", "parse_prior_spec", "prior_images", "sketch_images", "random_stroke_canvases",
    "read_checkpoint", "save_checkpoint", "style_mix", "to_grey", "to_rgb", "translated_images",
]
