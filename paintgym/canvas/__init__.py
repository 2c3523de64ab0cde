"""The ground floor of paintgym: strokes, the renderer, images and files. It imports nothing else of ours.

==============================  ===================================================================
:mod:`canvas.strokes`           the 13-number stroke layout, the radius formula, action decoding
:mod:`canvas.render`            the batched renderer: torch (differentiable, any device) and numba (CPU)
:mod:`canvas.fastpath`          numba availability, its thread pool, and the serial/parallel kernel launch
:mod:`canvas.images`            uint8 <-> float image conventions, image datasets and their train/test split
:mod:`canvas.export`            PNG, JSON and SVG of paintings; atomic file writes
:mod:`canvas.video`             frame grids and MP4/GIF/PNG-frame writing
:mod:`canvas.painting_video`    stroke histories re-rendered as videos, each stroke drawn progressively
:mod:`canvas.collective`        collectives across data-parallel ranks (no-ops without ``torchrun``)
==============================  ===================================================================

Modules are imported on demand (``from paintgym.canvas.render import paint_``).
"""
