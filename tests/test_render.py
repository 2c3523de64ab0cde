"""The stroke renderer: geometry, compositing, resolution independence, gradients, CPU fast paths."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from paintgym.canvas import fastpath
from paintgym.canvas import render as render_module
from paintgym.canvas.render import paint_, paint_fitted_, render, render_fitted, render_prefix_losses
from paintgym.canvas.strokes import (
    MAX_RADIUS,
    MIN_RADIUS,
    decode_continuous,
    decode_discrete,
    flatten_segments,
    radius_fraction,
)


def stroke(x0, y0, x1, y1, x2, y2, r0=0.0, r1=0.0, a0=1.0, a1=1.0, rgb=(0.0, 0.0, 0.0)):
    return torch.tensor([x0, y0, x1, y1, x2, y2, r0, r1, a0, a1, *rgb], dtype=torch.float32)


def radius_param(pixels: float, size: int) -> float:
    """The r parameter that gives a brush radius of ``pixels`` at canvas ``size``."""
    return (pixels / size - MIN_RADIUS) / (MAX_RADIUS - MIN_RADIUS)


@pytest.mark.parametrize("paint", ["torch", "cpu"])
def test_stroke_lands_where_its_parameters_say(paint):
    size = 64
    s = stroke(0.25, 0.5, 0.5, 0.5, 0.75, 0.5, r0=radius_param(2.3, size), r1=radius_param(2.3, size))
    strokes = s.view(1, 1, 13)
    if paint == "torch":
        canvas = render(strokes, size=size)
    else:
        canvas = paint_(torch.ones(1, 3, size, size), strokes)
    ink = canvas[0, 0]  # black on white: ink is where the value drops
    # end points at x = 16 and 48 (pixel centres 15.5 / 47.5 are covered), row 32 / 31 straddle y = 32
    for col in (16, 32, 47):
        assert ink[31, col] < 0.05 and ink[32, col] < 0.05
    # outside the radius-2.3 capsule around the segment (plus half a pixel of anti-aliasing): paper
    assert ink[31, 11] == 1.0 and ink[31, 52] == 1.0
    assert ink[26, 32] == 1.0 and ink[37, 32] == 1.0
    # the round cap reaches 2.3 px beyond the end point (16, 32); pixel centre (13.5, 32.5) is
    # sqrt(2.5^2 + 0.5^2) px away, so its coverage is 2.3 + 0.5 - that distance
    coverage = 2.3 + 0.5 - np.hypot(2.5, 0.5)
    assert ink[32, 13].item() == pytest.approx(1.0 - coverage, abs=1e-3)


def test_curve_passes_near_its_bezier_midpoint():
    size = 64
    # from (0.2, 0.8) via control (0.5, 0.0) to (0.8, 0.8): the curve's midpoint is (0.5, 0.4)
    canvas = render(stroke(0.2, 0.8, 0.5, 0.0, 0.8, 0.8, r0=radius_param(1.5, size), r1=radius_param(1.5, size))
                    .view(1, 1, 13), size=size)
    assert canvas[0, 0, int(0.4 * size), int(0.5 * size)] < 0.1
    assert canvas[0, 0, int(0.2 * size), int(0.5 * size)] == 1.0  # the control point itself is not painted


def test_opacity_and_colour_composite_in_order():
    size = 32
    cover_all = dict(r0=1.0, r1=1.0)
    red = stroke(0.0, 0.5, 0.5, 0.5, 1.0, 0.5, a0=0.5, a1=0.5, rgb=(1.0, 0.0, 0.0), **cover_all)
    blue = stroke(0.0, 0.5, 0.5, 0.5, 1.0, 0.5, a0=0.25, a1=0.25, rgb=(0.0, 0.0, 1.0), **cover_all)
    canvas = render(torch.stack([red, blue]).view(1, 2, 13), size=size)
    pixel = canvas[0, :, size // 2, size // 2]
    after_red = torch.tensor([1.0, 0.5, 0.5])  # white * 0.5 + red * 0.5
    expected = after_red * 0.75 + torch.tensor([0.0, 0.0, 1.0]) * 0.25
    torch.testing.assert_close(pixel, expected, atol=1e-5, rtol=0)
    # the other order gives another colour: compositing is ordered
    swapped = render(torch.stack([blue, red]).view(1, 2, 13), size=size)[0, :, size // 2, size // 2]
    assert not torch.allclose(swapped, pixel, atol=1e-3)


def test_opacity_varies_along_the_stroke():
    size = 64
    s = stroke(0.1, 0.5, 0.5, 0.5, 0.9, 0.5, r0=radius_param(3, size), r1=radius_param(3, size), a0=0.2, a1=1.0)
    ink = 1.0 - render(s.view(1, 1, 13), size=size)[0, 0, 32]
    assert ink[10] == pytest.approx(0.2 + 0.8 * (10.5 / 64 - 0.1) / 0.8, abs=0.02)
    assert ink[54] > ink[32] > ink[10]


def test_same_strokes_at_512_look_like_the_64_painting():
    gen = torch.Generator().manual_seed(0)
    strokes = torch.rand(4, 12, 13, generator=gen)
    small = paint_(torch.ones(4, 3, 64, 64), strokes)
    large = paint_(torch.ones(4, 3, 512, 512), strokes)
    downscaled = F.avg_pool2d(large, 8)
    assert (downscaled - small).abs().mean() < 0.01
    # the large one is sharper: more of its pixels are at the extremes of each edge
    assert flatten_segments(512) > flatten_segments(64)


@pytest.mark.parametrize("size,strokes_per_canvas", [(16, 1), (64, 5), (128, 3)])
def test_cpu_fast_path_agrees_with_torch(size, strokes_per_canvas):
    gen = torch.Generator().manual_seed(size)
    strokes = torch.rand(20, strokes_per_canvas, 13, generator=gen)
    strokes[:5, :, :6] = strokes[:5, :, :6] * 1.4 - 0.2  # some strokes leave the canvas (clipped bounding boxes)
    strokes[:, :, :6].clamp_(0, 1)
    start = torch.rand(20, 3, size, size, generator=gen)
    active = torch.rand(20, generator=gen) > 0.3
    reference = torch.where(active.view(-1, 1, 1, 1), render_module._render_torch(strokes, start), start)
    fast = paint_(start.clone(), strokes, active)
    assert (fast - reference).abs().max() < 5e-4  # float32 rounding of pixel-unit distances


def test_torch_path_is_used_without_numba(monkeypatch):
    monkeypatch.setattr(render_module, "HAVE_NUMBA", False)
    strokes = torch.rand(3, 2, 13, generator=torch.Generator().manual_seed(1))
    canvas = paint_(torch.ones(3, 3, 32, 32), strokes)
    torch.testing.assert_close(canvas, render(strokes, size=32), atol=1e-6, rtol=0)


def test_gradient_descent_on_strokes_reduces_l2_to_a_target():
    torch.manual_seed(0)
    size = 32
    target = render(torch.rand(2, 4, 13), size=size).detach()
    logits = torch.zeros(2, 4, 13).uniform_(-1.0, 1.0).requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    losses = []
    for _ in range(60):
        loss = (render(torch.sigmoid(logits), size=size) - target).square().mean()
        optimiser.zero_grad()
        loss.backward()
        assert torch.isfinite(logits.grad).all()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_discrete_actions_decode_to_grid_cells_and_palette():
    palette = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    action = torch.tensor([[0, 15, 8, 8, 15, 0, 3, 1, 1]])
    strokes = decode_discrete(action, 1, grid=16, sizes=4, opacities=2, palette=palette)[0, 0]
    torch.testing.assert_close(strokes[:6], torch.tensor([0.5, 15.5, 8.5, 8.5, 15.5, 0.5]) / 16)
    assert strokes[6] == strokes[7] == 1.0  # the largest brush
    assert strokes[8] == strokes[9] == 1.0  # opacity level 1 of 2
    torch.testing.assert_close(strokes[10:], palette[1])


def test_continuous_actions_decode_alike_from_numpy_and_torch():
    actions = np.random.default_rng(0).uniform(-1.2, 1.2, size=(5, 2 * 13)).astype(np.float32)
    from_numpy, lowest, highest, finite = decode_continuous(actions, 2, bounds=True)  # numba's one pass
    from_torch = decode_continuous(torch.from_numpy(actions), 2)
    assert from_numpy.shape == (5, 2, 13) and torch.equal(from_numpy, from_torch)
    assert float(from_torch.min()) == 0.0 and float(from_torch.max()) == 1.0  # clipped
    assert (lowest, highest) == (actions.min(), actions.max()) and finite in (True, None)
    actions[1, 3] = np.nan
    assert decode_continuous(actions, 2, bounds=True)[3] in (False, None)  # None: the bounds fail (NaN) instead
    assert decode_continuous(torch.from_numpy(actions).double(), 2).dtype == torch.float32


@pytest.mark.skipif(not fastpath.HAVE_NUMBA, reason="numba not installed")
def test_numba_kernels_compute_the_radius_as_torch_does():
    """The kernels compile strokes.radius_fraction with float32 constants: float32 rounding as in torch."""
    r = torch.rand(2000, generator=torch.Generator().manual_seed(0))
    in_numba = np.array([render_module._radius_fraction(x) for x in r.numpy()])  # float64 of what numba returned
    assert np.array_equal(in_numba, radius_fraction(r).numpy().astype(np.float64))  # float64 math would not be


@pytest.mark.parametrize("bad", [torch.rand(2, 13), torch.rand(2, 1, 12), torch.rand(3, 1, 13)])
def test_bad_shapes_are_rejected(bad):
    with pytest.raises(ValueError, match="shape|batch"):
        paint_(torch.ones(2, 3, 16, 16), bad)


def test_non_square_canvas_is_rejected():
    with pytest.raises(ValueError, match="square"):
        render(torch.rand(1, 1, 13), torch.ones(1, 3, 16, 20))


def test_render_keeps_the_input_canvas():
    canvas = torch.ones(1, 3, 16, 16)
    render(torch.rand(1, 2, 13), canvas)
    assert np.all(canvas.numpy() == 1.0)


# ---- the differentiable numba path of render(): forward and analytic backward against torch autograd ----


def random_strokes(batch: int, count: int, seed: int) -> torch.Tensor:
    """Random strokes, opacity and radius varying along each, some leaving the canvas, and a few special
    ones: a dot (all three points equal: degenerate segments), an invisible stroke (opacity 0: every
    segment ties with the zero alpha), one fading in from opacity 0 and an opaque constant-opacity one
    (segments tie at the max)."""
    gen = torch.Generator().manual_seed(seed)
    strokes = torch.rand(batch, count, 13, generator=gen)
    strokes[: batch // 2, :, :6] = strokes[: batch // 2, :, :6] * 1.6 - 0.3  # partly off the canvas
    strokes[0, 0, 2:6] = strokes[0, 0, 0:2].repeat(2)  # a dot
    strokes[1, 0, 8:10] = 0.0  # invisible
    strokes[2, 0, 8] = 0.0  # fades in
    strokes[-1, -1, 6:10] = torch.tensor([0.6, 0.6, 1.0, 1.0])  # thick, opaque: ties at alpha = 1
    return strokes


def grads_of(fn, strokes: torch.Tensor, canvas: torch.Tensor, target: torch.Tensor):
    """``fn(strokes, canvas)`` and the gradients of an L2 loss to ``target`` w.r.t. strokes and canvas."""
    strokes, canvas = strokes.clone().requires_grad_(True), canvas.clone().requires_grad_(True)
    out = fn(strokes, canvas)
    (out - target).square().sum().backward()
    return out.detach(), strokes.grad, canvas.grad


def assert_stroke_grads_close(fast: torch.Tensor, reference: torch.Tensor) -> None:
    """Per stroke number, gradients agree to 1e-3 of that number's largest gradient; a few elements
    (at most 2%) may differ more, by under a quarter of it: the gradient jumps where a pixel sits on a
    clamp boundary or two segments tie, and the paths' float32 rounding (torch's sqrt is not always
    correctly rounded) can put a pixel on the other side of such a kink."""
    scale = reference.abs().flatten(0, 1).amax(0).clamp_min(1e-3)  # (13,)
    error = ((fast - reference).abs() / scale).flatten(0, 1)
    assert error.max() < 0.25, error.max()
    assert (error > 1e-3).float().mean() <= 0.02, error.amax(0)


@pytest.mark.parametrize("size,batch,count", [(16, 8, 3), (32, 8, 2), (64, 4, 3)])
def test_numba_gradients_match_torch_autograd(size, batch, count):
    strokes = random_strokes(batch, count, seed=size)
    gen = torch.Generator().manual_seed(size + 1)
    canvas, target = torch.rand(batch, 3, size, size, generator=gen), torch.rand(batch, 3, size, size, generator=gen)
    out, g_strokes, g_canvas = grads_of(render, strokes, canvas, target)
    ref_out, ref_strokes, ref_canvas = grads_of(render_module._render_torch, strokes, canvas, target)
    assert (out - ref_out).abs().max() < 5e-4
    assert torch.isfinite(g_strokes).all() and torch.isfinite(g_canvas).all()
    assert_stroke_grads_close(g_strokes, ref_strokes)
    torch.testing.assert_close(g_canvas, ref_canvas, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [16, 128])
def test_numba_forward_matches_torch(size):
    strokes = random_strokes(3, 2, seed=7)
    canvas = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(8))
    reference = render_module._render_torch(strokes, canvas)
    with torch.no_grad():
        assert (render(strokes, canvas) - reference).abs().max() < 5e-4
    out = render(strokes.clone().requires_grad_(True), canvas)
    assert (out.detach() - reference).abs().max() < 5e-4
    assert np.all(canvas.numpy() == torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(8)).numpy())


def test_numba_gradients_match_finite_differences():
    """Central differences of an L2-style loss against the analytic gradient, in float32.

    The loss is piecewise smooth in the stroke numbers: the gradient jumps wherever a pixel centre
    crosses a clamp boundary (the 1-pixel anti-aliased edge) or the max switches segments, every
    ~1e-4 of a stroke number at 32x32, so a plain difference quotient is off by one such jump as
    often as not. Compared instead: ``L(p + d) - L(p - d)`` with the integral of the analytic
    derivative over ``[p - d, p + d]`` (trapezoids, 101 points), which the jumps do not bias.
    """
    size, delta = 32, 3e-3
    base = torch.tensor([[[0.15, 0.3, 0.45, 0.62, 0.8, 0.55, 0.15, 0.35, 0.9, 0.5, 0.1, 0.7, 0.3],  # 3 segments
                          [0.6, 0.15, 0.55, 0.5, 0.35, 0.85, 0.3, 0.1, 0.4, 0.8, 0.9, 0.2, 0.5]]])  # 2 segments
    gen = torch.Generator().manual_seed(3)
    canvas, weights = torch.rand(1, 3, size, size, generator=gen), torch.rand(1, 3, size, size, generator=gen)

    def loss(strokes: torch.Tensor, canvas: torch.Tensor = canvas) -> torch.Tensor:
        return (render(strokes, canvas).double() * weights).sum()

    for s, j in [(0, 0), (0, 3), (0, 6), (0, 9), (0, 11), (1, 4), (1, 7), (1, 8)]:  # x0 y1 r0 a1 G, x2 r1 a0
        offsets = torch.linspace(-delta, delta, 101)
        derivatives = []
        for offset in offsets:
            strokes = base.clone()
            strokes[0, s, j] += offset
            assert render_module.polyline(strokes[0], size)[3].tolist() == [3.0, 2.0]  # no flattening change
            strokes.requires_grad_(True)
            loss(strokes).backward()
            derivatives.append(strokes.grad[0, s, j].item())
        integral = np.trapezoid(derivatives, offsets.double().numpy())
        plus, minus = base.clone(), base.clone()
        plus[0, s, j] += delta
        minus[0, s, j] -= delta
        with torch.no_grad():
            difference = (loss(plus) - loss(minus)).item()
        assert abs(difference - integral) <= 0.02 * 2 * delta * max(map(abs, derivatives)) + 1e-4, (s, j)
    # the canvas enters linearly: a plain central difference, on pixels inside and outside the strokes
    canvas_var = canvas.clone().requires_grad_(True)
    (canvas_grad,) = torch.autograd.grad(loss(base, canvas_var), canvas_var)
    for c, y, x in [(0, 10, 12), (1, 16, 16), (2, 5, 27), (0, 30, 2), (1, 20, 8)]:
        plus, minus = canvas.clone(), canvas.clone()
        plus[0, c, y, x] += 1e-2
        minus[0, c, y, x] -= 1e-2
        with torch.no_grad():
            difference = (loss(base, plus) - loss(base, minus)).item() / 2e-2
        assert difference == pytest.approx(canvas_grad[0, c, y, x].item(), rel=1e-3, abs=1e-4)


def test_numba_chained_renders_backprop_like_torch():
    size = 32
    first, second = random_strokes(4, 3, seed=11), random_strokes(4, 2, seed=12)
    gen = torch.Generator().manual_seed(13)
    canvas, target = torch.rand(4, 3, size, size, generator=gen), torch.rand(4, 3, size, size, generator=gen)
    grads = {}
    for name, fn in (("numba", render), ("torch", render_module._render_torch)):
        a, b = first.clone().requires_grad_(True), second.clone().requires_grad_(True)
        c = canvas.clone().requires_grad_(True)
        (fn(b, fn(a, c)) - target).square().sum().backward()
        grads[name] = (a.grad, b.grad, c.grad)
    for fast, reference in zip(grads["numba"][:2], grads["torch"][:2], strict=True):
        assert_stroke_grads_close(fast, reference)
    torch.testing.assert_close(grads["numba"][2], grads["torch"][2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size,batch,count", [(16, 8, 3), (64, 4, 3)])
def test_fitted_render_backprops_through_the_fit_like_torch(size, batch, count):
    """render_fitted's numba kernels (strokes coloured by their least-squares fit, the gradient flowing through
    the fit) against the torch path of the same maths, in float64."""
    strokes = random_strokes(batch, count, seed=size)
    gen = torch.Generator().manual_seed(size + 1)
    canvas, target, weights = (torch.rand(batch, 3, size, size, generator=gen) for _ in range(3))
    results = []
    for dtype in (torch.float32, torch.float64):  # float64: the torch path
        shapes, start = (x.to(dtype).clone().requires_grad_(True) for x in (strokes, canvas))
        out, colours = render_fitted(shapes, start, target.to(dtype))
        assert colours.shape == (batch, count, 3) and not colours.requires_grad
        ((out - target.to(dtype)).square() * weights.to(dtype)).sum().backward()
        results.append((out.detach().float(), colours.float(), shapes.grad.float(), start.grad.float()))
    (out, colours, g_strokes, g_canvas), (ref_out, ref_colours, ref_strokes, ref_canvas) = results
    assert type(render_fitted(strokes.clone().requires_grad_(True), canvas, target)[0].grad_fn).__name__ == \
        "_NumbaFittedRenderBackward"
    assert (out - ref_out).abs().max() < 5e-4 and (colours - ref_colours).abs().max() < 1e-4
    assert (g_strokes[..., 10:13] == 0).all()  # the fit replaces the colour numbers
    assert_stroke_grads_close(g_strokes, ref_strokes)
    torch.testing.assert_close(g_canvas, ref_canvas, atol=1e-4, rtol=1e-4)
    # the fit's own terms matter: the plain render of the fitted strokes backpropagates differently
    fitted = torch.cat([strokes.detach()[..., :10], colours], -1)
    _, plain_strokes, _ = grads_of(render, fitted, canvas, target)
    assert not torch.allclose(plain_strokes[..., :10], ref_strokes[..., :10], atol=1e-2)
    # without a gradient it paints what paint_fitted_ paints, and bad targets are refused
    painted, recoloured = canvas.clone(), strokes.detach().clone()
    paint_fitted_(painted, recoloured, target)
    with torch.no_grad():
        out, colours = render_fitted(strokes, canvas, target)
    assert torch.equal(out, painted) and torch.equal(colours, recoloured[..., 10:13])
    with pytest.raises(ValueError, match="target must have the canvas's shape"):
        render_fitted(strokes, canvas, target[:, :, :8])
    shapes = strokes.clone().requires_grad_(True)  # differentiable once, as render's numba path
    (grad,) = torch.autograd.grad(render_fitted(shapes, canvas, target)[0].square().sum(), shapes, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once"):
        grad.sum().backward()


def test_prefix_losses_kernel_matches_rendering_each_prefix():
    """render_prefix_losses's numba kernels (every prefix painted and measured in one pass, its gradient by one
    replayed backward) against rendering and measuring each prefix with the torch path, in float64."""
    batch, count, size = 4, 7, 32
    strokes = random_strokes(batch, count, seed=3)
    gen = torch.Generator().manual_seed(4)
    canvas, target = torch.rand(batch, 3, size, size, generator=gen), torch.rand(batch, 3, size, size, generator=gen)
    ends, weights, scale = [1, 2, 4, 6], [0.5, 0.2, 0.3, 1.0], torch.arange(1.0, batch + 1)

    def mse(painted, goal):
        return (painted - goal).square().flatten(1).mean(1)

    results = []
    for kernel in (True, False):
        dtype = torch.float32 if kernel else torch.float64
        shapes = strokes.to(dtype).clone().requires_grad_(True)
        losses = render_prefix_losses(shapes, target.to(dtype), ends, weights, canvas=canvas.to(dtype),
                                      loss=None if kernel else mse)
        assert (type(losses.grad_fn).__name__ == "_NumbaPrefixL2Backward") == kernel
        (losses * scale.to(dtype)).sum().backward()
        results.append((losses.detach().float(), shapes.grad.float()))
    (losses, grads), (ref_losses, ref_grads) = results
    torch.testing.assert_close(losses, ref_losses, atol=1e-6, rtol=1e-5)
    assert_stroke_grads_close(grads, ref_grads)
    # strokes after the last end count for nothing; a blank canvas by default; bad ends are refused
    shapes = strokes.clone().requires_grad_(True)
    render_prefix_losses(shapes, target, [3], [1.0]).sum().backward()
    assert (shapes.grad[:, 3:] == 0).all() and shapes.grad[:, :3].abs().sum() > 0
    blank = torch.ones_like(canvas)
    torch.testing.assert_close(render_prefix_losses(strokes, target, [count], [1.0]),
                               mse(render(strokes, blank), target))
    for bad in ([2, 2], [0, 3], [count + 1]):
        with pytest.raises(ValueError, match="prefix ends must increase"):
            render_prefix_losses(strokes, target, bad, [1.0] * len(bad))
    with pytest.raises(ValueError, match="one weight per prefix end"):
        render_prefix_losses(strokes, target, [1, 2], [1.0])
    shapes = strokes.clone().requires_grad_(True)  # differentiable once, as render's numba path
    (grad,) = torch.autograd.grad(render_prefix_losses(shapes, target, ends, weights).sum(), shapes, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once"):
        grad.sum().backward()


def test_render_dispatch(monkeypatch):
    strokes = torch.rand(2, 2, 13, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    canvas = torch.ones(2, 3, 16, 16)
    assert type(render(strokes, canvas).grad_fn).__name__ == "_NumbaRenderBackward"
    assert type(render(strokes.detach(), canvas.requires_grad_(True)).grad_fn).__name__ == "_NumbaRenderBackward"
    assert render(strokes.detach(), canvas.detach()).grad_fn is None  # no grad: the numba forward on a copy
    assert type(render(strokes.double(), canvas.double()).grad_fn).__name__ != "_NumbaRenderBackward"
    monkeypatch.setattr(render_module, "HAVE_NUMBA", False)  # what PAINTGYM_NO_NUMBA=1 sets at import
    assert type(render(strokes, canvas).grad_fn).__name__ == "AddBackward0"


def test_numba_render_is_differentiable_once():
    strokes = torch.rand(2, 2, 13, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    (grad,) = torch.autograd.grad(render(strokes, size=16).square().sum(), strokes, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once"):
        grad.sum().backward()


def test_numba_parallel_path_equals_serial():
    batch = fastpath.PARALLEL_MIN_BATCH  # the smallest batch that runs the prange kernels on 2 threads
    strokes = random_strokes(batch, 2, seed=5)
    gen = torch.Generator().manual_seed(6)
    canvas, target = torch.rand(batch, 3, 16, 16, generator=gen), torch.rand(batch, 3, 16, 16, generator=gen)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(grads_of(render, strokes, canvas, target))
    finally:
        torch.set_num_threads(before)
    assert render_module._render_parallel.signatures  # the prange kernel ran
    for serial, parallel in zip(*results, strict=True):
        assert torch.equal(serial, parallel)
