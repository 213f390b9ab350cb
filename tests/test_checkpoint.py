"""Training checkpoints: round trip, atomic layout, and clear errors for damaged files."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from conftest import TinySource, make_model

from jepalab.checkpoint import (
    LATEST_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    capture_rng,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temp_dirs,
    restore_rng,
    save_checkpoint,
)
from jepalab.errors import CheckpointError
from jepalab.train import TrainConfig, train

torch.set_num_threads(1)


def _trained(tmp_path, steps: int = 6):
    c = TrainConfig(steps=steps, batch_size=8, lr=1e-2, warmup_steps=1, checkpoint_every=3, keep_last=5,
                    progress=False, device="cpu", monitor_every=0)
    m = make_model()
    train(m, TinySource(), c, tmp_path, seed=0)
    return m, c


def _optimizer(model):
    return torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)


def test_round_trip_restores_model_and_optimizer(tmp_path) -> None:
    m = make_model()
    opt = _optimizer(m)
    m.training_step(TinySource().batch(0, 8), 0)["loss"].backward()
    opt.step()
    path = save_checkpoint(tmp_path, 1, m, opt, {"note": "x"}, keep_last=2)
    assert path.name == "step_0000001" and (tmp_path / "checkpoints" / LATEST_FILE).read_text() == "step_0000001"
    m2 = make_model(init_seed=3)
    opt2 = _optimizer(m2)
    state = load_checkpoint(path, m2, opt2)
    assert state["step"] == 1 and state["note"] == "x"
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for i in s1:
        for key in s1[i]:
            assert torch.equal(s1[i][key], s2[i][key]), (i, key)


def test_keep_last_and_latest_pointer(tmp_path) -> None:
    m = make_model()
    opt = _optimizer(m)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, m, opt, {}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000003", "step_0000004"]
    assert latest_checkpoint(tmp_path).name == "step_0000004"
    # a half-written temp dir from a killed save is neither listed nor kept
    (tmp_path / "checkpoints" / ".tmp-step_0000005-abc").mkdir()
    assert latest_checkpoint(tmp_path).name == "step_0000004"
    assert remove_stale_temp_dirs(tmp_path) == 1
    # without the pointer (killed between rename and pointer update) the newest dir is used
    (tmp_path / "checkpoints" / LATEST_FILE).unlink()
    assert latest_checkpoint(tmp_path).name == "step_0000004"


def test_truncated_weights_raise_checkpoint_error_naming_the_file(tmp_path) -> None:
    _trained(tmp_path)
    ck = latest_checkpoint(tmp_path)
    f = ck / MODEL_FILE
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"{MODEL_FILE} is truncated.*Delete .*step_0000006"):
        load_checkpoint(ck, make_model())
    # and train(resume=True) reports it instead of silently restarting
    with pytest.raises(CheckpointError, match=MODEL_FILE):
        train(make_model(), TinySource(), TrainConfig(steps=9, batch_size=8, progress=False, device="cpu",
                                                    warmup_steps=1), tmp_path, resume=True)


def test_flipped_byte_is_detected(tmp_path) -> None:
    _trained(tmp_path)
    ck = latest_checkpoint(tmp_path)
    data = bytearray((ck / OPTIMIZER_FILE).read_bytes())
    data[-3] ^= 0xFF  # inside tensor data: safetensors alone would load it
    (ck / OPTIMIZER_FILE).write_bytes(bytes(data))
    load_checkpoint(ck, make_model())  # the weights are fine
    with pytest.raises(CheckpointError, match=rf"{OPTIMIZER_FILE} is corrupt"):
        load_checkpoint(ck, make_model(), _optimizer(make_model()))


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b'{"step": "3"}', b"\xff\xfe\x00"])
def test_garbage_state_json(tmp_path, content) -> None:
    _trained(tmp_path)
    ck = latest_checkpoint(tmp_path)
    (ck / STATE_FILE).write_bytes(content)
    with pytest.raises(CheckpointError, match=STATE_FILE):
        load_checkpoint(ck, make_model())


def test_missing_state_and_bad_pointer(tmp_path) -> None:
    _trained(tmp_path)
    ck = latest_checkpoint(tmp_path)
    (ck / STATE_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(ck, make_model())
    (tmp_path / "checkpoints" / LATEST_FILE).write_text("../../etc")
    with pytest.raises(CheckpointError, match="Delete"):
        latest_checkpoint(tmp_path)


def test_wrong_model_is_refused(tmp_path) -> None:
    _trained(tmp_path)
    with pytest.raises(CheckpointError, match="same config"):
        load_checkpoint(latest_checkpoint(tmp_path), make_model(hidden=32))


def test_state_json_contents(tmp_path) -> None:
    _, c = _trained(tmp_path)
    state = json.loads((latest_checkpoint(tmp_path) / STATE_FILE).read_text())
    assert state["step"] == 6 and state["data"]["next_step"] == 6
    assert state["config"]["batch_size"] == c.batch_size and state["seed"] == 0
    assert {"python", "numpy", "torch"} <= state["rng"].keys()
    assert state["scheduler"]["kind"] == "warmup_cosine"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000003", "step_0000006"]


def test_rng_round_trip() -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = json.loads(json.dumps(capture_rng()))  # must survive JSON
    a = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_non_persistent_buffers_are_restored(tmp_path) -> None:
    # an EMA teacher that averages a fixed sin-cos buffer drifts it by rounding; resume must
    # restore the drifted value, not rebuild it, or the run is no longer bit-exact
    m = make_model()
    m.register_buffer("pos", torch.arange(4.0), persistent=False)
    m.pos.add_(0.5)  # stands in for the drift
    save_checkpoint(tmp_path, 1, m, _optimizer(m), {})
    m2 = make_model()
    m2.register_buffer("pos", torch.arange(4.0), persistent=False)
    load_checkpoint(latest_checkpoint(tmp_path), m2)
    assert torch.equal(m2.pos, m.pos) and "pos" not in m2.state_dict()
