"""`jepalab eval` fits its probes on a random, class-stratified sample, reports how many images of
each class it used, and warns when a class is missing or the model learned nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from jepalab.cli import main
from jepalab.eval.evaluate import evaluate_run, iter_examples
from jepalab.eval.probes import sample_rows
from jepalab.eval.table import format_table

torch.set_num_threads(1)
CLASSES = {"a_dark": 0.1, "b_mid": 0.4, "c_light": 0.7, "d_white": 0.95}


# --- the sampler ----------------------------------------------------------------------------------
def test_sample_rows_is_stratified_seeded_and_not_a_prefix() -> None:
    labels = torch.arange(10).repeat_interleave(100)  # stored by class, as an image folder is
    rows = sample_rows(labels, 200, seed=0)
    assert rows.numel() == 200 and rows.unique().numel() == 200
    assert torch.bincount(labels[rows], minlength=10).tolist() == [20] * 10
    assert torch.equal(rows, sample_rows(labels, 200, seed=0))
    assert not torch.equal(rows, sample_rows(labels, 200, seed=1))


def test_sample_rows_keeps_proportions_and_every_class() -> None:
    labels = torch.tensor([0] * 700 + [1] * 200 + [2] * 95 + [3] * 5)
    counts = torch.bincount(labels[sample_rows(labels, 100, seed=3)], minlength=4).tolist()
    assert sum(counts) == 100 and counts[0] == 70 and counts[1] == 20 and all(c >= 1 for c in counts)
    few = sample_rows(labels, 3, seed=0)  # fewer rows than classes: still n distinct rows
    assert few.numel() == 3 and few.unique().numel() == 3
    assert torch.equal(sample_rows(labels, 5000, seed=0), torch.arange(1000))  # n >= M: everything


def test_sample_rows_of_states_is_a_random_subset() -> None:
    state = torch.linspace(0, 1, 500)[:, None].repeat(1, 2)
    rows = sample_rows(state, 50, seed=0)
    assert rows.numel() == 50 and rows.max() > 400  # not the first 50


class _SortedImages:
    """An in-memory image source whose rows are sorted by class (what iter_examples reads)."""

    def __init__(self) -> None:
        self.labels = torch.arange(5).repeat_interleave(40)
        self.images = self.labels.float().view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return images


def test_iter_examples_sees_every_class_of_a_sorted_source() -> None:
    ys = torch.cat([y for _, y in iter_examples(_SortedImages(), 50, 16, clip=False, seed=0)])
    assert ys.numel() == 50 and torch.bincount(ys, minlength=5).tolist() == [10] * 5


# --- end to end on an image folder ----------------------------------------------------------------
CONFIG = """\
name: folder-probe
seed: 0
recipe: lejepa
model: {{img_size: 16, in_chans: 1, encoder: conv, embed_dim: 16, patch_size: 4, width: 8, proj_hidden: 32,
         proj_dim: 16, num_views: 2, sigreg_proj: 16}}
data: {{source: folder, root: "{root}", img_size: 16, channels: 1}}
train: {{steps: 1, batch_size: 8, lr: 1.0e-9, warmup_steps: 0, log_every: 1, monitor_every: 0,
        checkpoint_every: 0, progress: false, device: cpu}}
"""


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 4 classes x 40 gray 16x16 images (sorted by class on disk), and a run trained on
    it for one step at a negligible learning rate (so it is its random initialisation)."""
    from PIL import Image

    from jepalab.config import load_experiment
    from jepalab.experiment import run

    base = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for name, level in CLASSES.items():
        (base / "images" / name).mkdir(parents=True)
        for i in range(40):
            pixels = np.clip(level + 0.05 * rng.standard_normal((16, 16)), 0, 1)
            Image.fromarray((pixels * 255).astype(np.uint8)).save(base / "images" / name / f"{i:03d}.png")
    cfg = base / "folder.yaml"
    cfg.write_text(CONFIG.format(root=base / "images"))
    run(load_experiment(cfg), base / "run")
    return base / "run"


def test_eval_probes_see_all_classes_of_a_sorted_folder(folder_run: Path) -> None:
    res = evaluate_run(folder_run, probes=("linear", "knn"), max_train=40, max_test=32, write=False)
    assert res["task"] == "classification" and res["num_classes"] == 4
    train = res["class_counts"]["train"]  # the split's share of each class, ~10 each of 40
    assert sum(train) == 40 and min(train) >= 8  # a prefix of 40 would be class 0 only
    assert sum(res["class_counts"]["test"]) == res["n_test"] == 32
    assert res["models"]["trained"]["scores"]["linear"] > 0.6  # chance 0.25; all four levels seen
    assert not any("missing" in w for w in res["warnings"])


def test_eval_warns_about_missing_classes_and_an_untrained_model(folder_run: Path) -> None:
    res = evaluate_run(folder_run, probes=("linear", "knn"), max_train=3, max_test=32, write=False)
    assert sum(1 for c in res["class_counts"]["train"] if c) == 3
    missing = [w for w in res["warnings"] if "missing from the probe training set" in w]
    assert len(missing) == 1 and "--max-train" in missing[0]
    assert any("barely learned" in w for w in res["warnings"])  # lr 1e-9: the same as its random init
    text = format_table(res)
    assert "images per class (probe train / held-out)" in text and "warning: class(es)" in text
    assert "-0.000" not in text


def test_cli_eval_flags_and_printout(folder_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(folder_run), "--probes", "linear", "--max-train", "20", "--max-test", "16",
                 "--no-baseline"]) == 0
    out = capsys.readouterr().out
    assert "20 train / 16 held-out" in out and "images per class" in out
    assert main(["eval", str(folder_run), "--max-train", "0"]) == 2
    assert "--max-train" in capsys.readouterr().err


def test_format_table_prints_a_zero_gain_without_a_sign() -> None:
    result = {"recipe": "r", "source": "s", "n_train": 2, "n_test": 2, "split": "test", "metric": "accuracy",
              "chance": 0.5, "probes": ["linear"], "task": "classification",
              "models": {n: {"scores": {"linear": 0.5}, "rank": 1.0, "collapse": {"collapsed": False}, "details": {}}
                         for n in ("trained", "random")},
              "gain": {"linear": -0.0004, "rank": 0.0}}
    assert "-0.000" not in format_table(result) and "0.000" in format_table(result)
