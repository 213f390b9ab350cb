"""FutureJEPA and its pixel twin: shapes, errors, best-of-K, learning, save/load."""

from __future__ import annotations

import pytest
import torch

from jepalab.data.bouncing import BouncingBalls, BouncingConfig
from jepalab.errors import ConfigError, ShapeError
from jepalab.nn.frame import windows
from jepalab.recipes import Recipe
from jepalab.recipes.future import FutureConfig, FutureJEPA
from jepalab.recipes.pixel import PixelConfig, PixelTwin

torch.set_num_threads(1)


def _world(variant: str = "deterministic", frames: int = 5) -> BouncingBalls:
    return BouncingBalls(BouncingConfig(img_size=32, radius=2.5, speed=(2.5, 3.5), frames=frames, variant=variant))


def _fit(model, src, steps: int, batch: int = 32, lr: float = 2e-3) -> list[float]:
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for s in range(steps):
        out = model.training_step(src.batch(s, batch), s)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.after_optimizer_step(s)
        losses.append(float(out.get("pred_loss", out["loss"]).detach()))
    return losses


def test_shapes_and_rollout():
    torch.manual_seed(0)
    m = FutureJEPA(FutureConfig(embed_dim=32)).eval()
    clip = _world().batch(0, 4)["frames"]
    z = m.encode_clip(clip)
    assert z.shape == (4, 5, 32)
    assert m.encode(clip[:, 0]).shape == (4, 32)
    assert m.predict(z[:, :3]).shape == (4, 32)
    roll = m.rollout(z[:, :3], 4)
    assert roll.shape == (4, 4, 32)
    # the first rollout step is the one-step prediction; later steps feed predictions back
    assert torch.allclose(roll[:, 0], m.predict(z[:, :3]), atol=1e-6)
    hist = torch.cat([z[:, 1:3], roll[:, :1]], dim=1)
    assert torch.allclose(roll[:, 1], m.predict(hist), atol=1e-6)


def test_windows_pairs_history_with_next():
    e = torch.arange(2 * 5 * 1, dtype=torch.float32).view(2, 5, 1)
    hist, nxt = windows(e, 3)
    assert hist.shape == (4, 3, 1) and nxt.shape == (4, 1)
    assert hist[1, :, 0].tolist() == [1, 2, 3] and nxt[1, 0] == 4
    assert hist[2, :, 0].tolist() == [5, 6, 7] and nxt[2, 0] == 8


def test_errors_are_actionable():
    with pytest.raises(ConfigError, match="anti_collapse"):
        FutureJEPA(FutureConfig(anti_collapse="none"))
    m = FutureJEPA(FutureConfig())
    with pytest.raises(ShapeError, match="context_frames"):
        m.training_step({"frames": torch.zeros(2, 3, 1, 32, 32)}, 0)  # T must exceed k=3
    with pytest.raises(ShapeError, match="img_size"):
        m.encode(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ShapeError):
        m.predict(torch.zeros(2, 2, 64))
    mz = FutureJEPA(FutureConfig(latent_dim=2))
    with pytest.raises(ShapeError, match="z of shape"):
        mz.predictor(torch.zeros(2, 3, 64), torch.zeros(2, 5))


@pytest.mark.parametrize("anti_collapse", ["sigreg", "ema"])
def test_prediction_loss_falls(anti_collapse):
    torch.manual_seed(0)
    m = FutureJEPA(FutureConfig(anti_collapse=anti_collapse, total_steps=60))
    losses = _fit(m, _world(), 60)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)


def test_ema_teacher_gets_no_gradient_and_follows_the_student():
    torch.manual_seed(0)
    m = FutureJEPA(FutureConfig(anti_collapse="ema", total_steps=10, ema_momentum=(0.5, 0.5)))
    t0 = [p.clone() for p in m.teacher.parameters()]
    out = m.training_step(_world().batch(0, 8), 0)
    out["loss"].backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert all(p.requires_grad is False for p in m.teacher.parameters())
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    m.after_optimizer_step(0)
    moved = [(a - b).abs().max() for a, b in zip(m.teacher.parameters(), t0)]
    assert max(float(x) for x in moved) > 0.4  # momentum 0.5 moves half way towards (student + 1)


def test_best_of_k_keeps_the_closest_sample():
    torch.manual_seed(0)
    m = FutureJEPA(FutureConfig(latent_dim=3, latent_samples=5, embed_dim=16))
    hist, target = torch.randn(4, 3, 16), torch.randn(4, 16)
    torch.manual_seed(1)
    err, best = m.best_of_k(hist, target)
    torch.manual_seed(1)
    z = m.sample_latents(4 * 5)
    preds = m.predictor(hist.repeat_interleave(5, 0), z).view(4, 5, 16)
    errs = (preds - target[:, None]).pow(2).mean(-1)
    assert torch.allclose(err, errs.min(1).values, atol=1e-6)
    assert torch.allclose(best, preds[torch.arange(4), errs.argmin(1)], atol=1e-6)


def test_z_samples_give_distinct_futures_after_training_on_the_stochastic_world():
    torch.manual_seed(0)
    src = _world("stochastic")
    m = FutureJEPA(FutureConfig(latent_dim=4, latent_samples=8, total_steps=80))
    _fit(m, src, 80)
    m.eval()
    with torch.no_grad():
        e = m.encode_clip(src.batch(999, 32)["frames"])
        g = torch.Generator().manual_seed(0)
        preds = torch.stack([m.predict(e[:, :3], torch.randn(32, 4, generator=g)) for _ in range(6)], 1)
    spread = torch.cdist(preds, preds).mean()
    scale = e[:, 3].std(0).norm()
    assert spread > 0.05 * scale, (float(spread), float(scale))
    # the same z gives the same prediction: z, not noise inside the model, makes the difference
    z = torch.randn(32, 4)
    assert torch.allclose(m.predict(e[:, :3], z), m.predict(e[:, :3], z))


def test_pixel_twin_same_size_and_learns():
    torch.manual_seed(0)
    j, p = FutureJEPA(FutureConfig()), PixelTwin(PixelConfig())
    nj = sum(x.numel() for x in j.trainable_parameters())
    npx = sum(x.numel() for x in p.trainable_parameters())
    assert abs(npx - nj) / nj < 0.2, (nj, npx)
    clip = _world().batch(0, 3)["frames"]
    assert p.predict_frame(clip[:, :3]).shape == (3, 1, 32, 32)
    assert p.rollout_frames(clip[:, :3], 2).shape == (3, 2, 1, 32, 32)
    losses = _fit(p, _world(), 40)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    m = FutureJEPA(FutureConfig(latent_dim=2)).eval()
    m.save_pretrained(tmp_path)
    m2 = Recipe.from_pretrained(tmp_path).eval()
    assert isinstance(m2, FutureJEPA) and m2.config.latent_dim == 2
    x = _world().batch(0, 2)["frames"]
    assert torch.allclose(m.encode_clip(x), m2.encode_clip(x), atol=1e-6)


def test_relaxed_winner_takes_all_weights_the_losers():
    torch.manual_seed(0)
    m = FutureJEPA(FutureConfig(latent_dim=2, latent_samples=4, embed_dim=8, latent_relax=0.2))
    hist, target = torch.randn(5, 3, 8), torch.randn(5, 8)
    torch.manual_seed(3)
    err, _ = m.k_hypotheses(hist, target)
    best = err.min(1).values
    want = (0.8 * best + 0.2 * (err.sum(1) - best) / 3).mean()
    torch.manual_seed(3)
    assert torch.allclose(m.relaxed_best_of_k(hist, target), want, atol=1e-6)
    with pytest.raises(ConfigError, match="latent_relax"):
        FutureJEPA(FutureConfig(latent_dim=2, latent_relax=1.5))


def _bimodal(n: int, g: torch.Generator, d: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x -> y in {+1, -1} (fair coin) along a fixed direction e, as a next-embedding task:
    history ``(n, 3, d)``, target = last + y * e ``(n, d)``, and e ``(d,)``."""
    e = torch.zeros(d)
    e[0] = 1.0
    hist = torch.randn(n, 3, d, generator=g)
    y = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0)
    return hist, hist[:, -1] + y[:, None] * e, e


def _fit_predictor(m: FutureJEPA, steps: int) -> None:
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam([p for n, p in m.named_parameters() if not n.startswith("encoder")], lr=3e-3)
    for s in range(steps):
        hist, target, _ = _bimodal(128, g)
        if m.config.latent_dim:
            loss = m.latent_loss(hist, target, s)
        else:
            loss = (m.predictor(hist) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.after_optimizer_step(s)


def test_discrete_latent_covers_both_modes_where_a_deterministic_predictor_averages():
    """Multiple-choice learning on a bimodal regression: z-samples land on +1 and -1, the
    deterministic predictor between them (its L2 optimum is the mean, 0)."""
    torch.manual_seed(0)
    small = dict(embed_dim=4, pred_hidden=32, img_size=8, enc_width=4, enc_dim=4)
    det = FutureJEPA(FutureConfig(**small))
    mz = FutureJEPA(FutureConfig(**small, latent_dim=2, latent_kind="discrete", latent_samples=4,
                                 latent_relax=0.0, latent_warmup=50, latent_reseed_every=25))
    _fit_predictor(det, 300)
    _fit_predictor(mz, 300)
    det.eval()
    mz.eval()
    hist, _, e = _bimodal(200, torch.Generator().manual_seed(99))   # held-out inputs
    with torch.no_grad():
        off_det = (det.predictor(hist) - hist[:, -1]) @ e             # (200,)
        g = torch.Generator().manual_seed(1)
        off_z = torch.stack([(mz.predict(hist, mz.sample_latents(200, g)) - hist[:, -1]) @ e
                             for _ in range(8)], 1)                     # (200, 8)
    assert off_det.abs().mean() < 0.3, float(off_det.abs().mean())     # between the modes
    on_mode = ((off_z - 1).abs() < 0.3) | ((off_z + 1).abs() < 0.3)
    assert on_mode.float().mean() > 0.9, float(on_mode.float().mean())
    both = ((off_z - 1).abs() < 0.3).any(1) & ((off_z + 1).abs() < 0.3).any(1)
    assert both.float().mean() > 0.9, float(both.float().mean())
    prior = mz.code_prior()
    assert torch.isclose(prior.sum(), torch.tensor(1.0)) and (prior > 0.05).all(), prior  # no dead code


def test_dead_codes_are_reseeded_next_to_the_winner_and_saved(tmp_path):
    torch.manual_seed(0)
    m = FutureJEPA(FutureConfig(latent_dim=2, latent_kind="discrete", latent_samples=4))
    with torch.no_grad():
        m.code_wins.copy_(torch.tensor([0.7, 0.3, 0.0, 0.0]))
    assert m.reseed_dead_codes(step=5) == 2
    assert torch.allclose(m.codes[2], m.codes[0], atol=0.5) and not torch.equal(m.codes[2], m.codes[3])
    assert torch.allclose(m.code_wins, torch.tensor([0.7 / 3, 0.3, 0.7 / 3, 0.7 / 3]))
    z = m.sample_latents(50, torch.Generator().manual_seed(0))
    assert z.shape == (50, 2) and all(any(torch.equal(r, c) for c in m.codes) for r in z)  # z is a code
    m.save_pretrained(tmp_path)
    m2 = Recipe.from_pretrained(tmp_path)
    assert torch.equal(m2.codes, m.codes) and torch.equal(m2.code_wins, m.code_wins)
    with pytest.raises(ConfigError, match="latent_kind"):
        FutureJEPA(FutureConfig(latent_dim=2, latent_kind="mixture"))
    with pytest.raises(ConfigError, match="code_prior"):
        FutureJEPA(FutureConfig(latent_dim=2)).code_prior()


def test_mode_separation_measures_the_futures_distance_against_prediction_error():
    """With an 'encoder' that returns the ball's centroid and a copy-last 'predictor', the
    separation is the pixel distance between the two futures and the noise the last move."""
    from jepalab.demo.measure import mode_separation
    from jepalab.eval.blur import centroid

    class CentroidModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def encode_clip(self, frames):
            return centroid(frames.flatten(0, 1)).view(*frames.shape[:2], 2)

        def sample_latents(self, n, generator=None):
            return torch.zeros(n, 1)

        def predict(self, hist, z):
            return hist[:, -1]

    world = _world("stochastic", frames=4)
    b = world.batch(0, 64)
    emb = CentroidModel().encode_clip(b["frames"])
    modes = world.next_modes(b["state"][:, 2])
    out = mode_separation(CentroidModel(), emb, modes, world, k=3, samples=2, generator=torch.Generator())
    want_sep = (modes[:, 0] - modes[:, 1]).norm(dim=-1).mean()
    want_noise = (b["state"][:, 3, :2] - b["state"][:, 2, :2]).norm(dim=-1).mean()
    assert abs(out["separation"] - float(want_sep)) < 0.1, (out, float(want_sep))
    assert abs(out["noise"] - float(want_noise)) < 0.1, (out, float(want_noise))
    assert out["ratio"] == pytest.approx(out["separation"] / out["noise"])


def _turning(n: int, g: torch.Generator, d: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two equally likely futures ``last +/- u`` whose direction ``u`` turns with the context (as a
    kicked ball's two next embeddings do): history ``(n, 3, d)``, target ``(n, d)``, ``u (n, d)``."""
    v = torch.randn(d, d, generator=torch.Generator().manual_seed(123))
    hist = torch.randn(n, 3, d, generator=g)
    u = torch.nn.functional.normalize(hist[:, -1] @ v, dim=1)
    y = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0)
    return hist, hist[:, -1] + y[:, None] * u, u


def _both_futures_reached(heads: bool, steps: int = 300) -> float:
    torch.manual_seed(0)
    m = FutureJEPA(FutureConfig(embed_dim=8, pred_hidden=32, img_size=8, enc_width=4, enc_dim=4, latent_dim=2,
                                latent_kind="discrete", latent_samples=8, latent_relax=0.0, latent_to_hidden=True,
                                latent_heads=heads, latent_warmup=steps // 6, latent_reseed_every=steps // 12))
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam([p for n, p in m.named_parameters() if not n.startswith("encoder")], lr=3e-3)
    for s in range(steps):
        hist, target, _ = _turning(128, g)
        loss = m.latent_loss(hist, target, s)
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.after_optimizer_step(s)
    m.eval()
    hist, _, u = _turning(300, torch.Generator().manual_seed(99))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        along = torch.stack([((m.predict(hist, m.sample_latents(300, gen)) - hist[:, -1]) * u).sum(1)
                             for _ in range(8)], 1)                    # (300, 8): +1 / -1 are the futures
    return float((((along - 1).abs() < 0.5).any(1) & ((along + 1).abs() < 0.5).any(1)).float().mean())


def test_output_heads_let_winner_takes_all_split_futures_that_turn_with_the_context():
    """Where the two futures' direction depends on the context, codes that only shift the
    predictor's input or hidden layer split them slowly; z mixing output heads splits them."""
    old, new = _both_futures_reached(heads=False), _both_futures_reached(heads=True)
    assert new > 0.85 and new > old + 0.2, (old, new)
