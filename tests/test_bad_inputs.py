"""Bad inputs give one actionable sentence and exit code 2 before any work: no traceback, no hang,
no silent wrong answer, nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from jepalab.cli import main
from jepalab.config import load_experiment
from jepalab.errors import ConfigError, DataError, ShapeError
from jepalab.preflight import check_writable_dir

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
IJEPA = str(ROOT / "configs" / "ijepa_tiny.yaml")
WM = str(ROOT / "configs" / "worldmodel_bouncing.yaml")
FAST = ["--set", "train.steps=2", "--set", "train.warmup_steps=0", "--set", "train.progress=false",
        "--set", "model.embed_dim=16", "--set", "model.depth=1", "--set", "model.pred_dim=16",
        "--set", "model.pred_depth=1", "--set", "train.batch_size=4", "--device", "cpu"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit code and stderr of one in-process CLI call (argparse errors exit through SystemExit)."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# --- files that are not UTF-8 text ----------------------------------------------------------------
def test_non_utf8_yaml_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\u00e9\nrecipe: ijepa\n".encode("latin-1"))
    code, err = run_cli(capsys, "train", str(bad), "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "not UTF-8 text" in err and "save the config as UTF-8" in err
    assert not (tmp_path / "run").exists()


def test_binary_experiment_yaml_in_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.yaml").write_bytes(bytes(range(256)) * 4)
    for name in ("model.safetensors", "config.json"):  # so that eval gets as far as reading the config
        (run / name).write_text("{}")
    for cmd in ("info", "resume", "eval"):
        code, err = run_cli(capsys, cmd, str(run))
        assert code == 2, (cmd, err)
        assert "corrupt" in err or "UTF-8" in err, (cmd, err)


# --- where a command writes ------------------------------------------------------------------------
def test_run_dir_under_a_file_is_refused_before_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(capsys, "train", IJEPA, *FAST, "--run-dir", str(blocker / "run"))
    assert code == 2 and "is a file, not a directory" in err and "--run-dir" in err
    code, err = run_cli(capsys, "train", IJEPA, *FAST, "--run-dir", str(blocker))
    assert code == 2 and "is a file" in err
    assert blocker.read_text() == "x"


def test_unwritable_directory_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as root every directory is writable, so the permission answer is simulated
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match="not writable"):
        check_writable_dir(tmp_path / "new" / "run", "--run-dir")


def test_plan_checks_out_before_loading_or_planning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # RUN_DIR does not exist: the --out error proves --out is checked first
    code, err = run_cli(capsys, "plan", str(tmp_path / "no_run"), "--env", "bouncing", "--out", str(blocker / "p"))
    assert code == 2 and "--out" in err and "is a file" in err


def test_demo_checks_out_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(capsys, "demo", "--quick", "--out", str(blocker / "demo"))
    assert code == 2 and "--out" in err and "is a file" in err


def test_collect_rejects_unknown_env_option_and_writes_nothing(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    code, err = run_cli(capsys, "collect", "bouncing", "--episodes", "1", "--steps", "3", "--out", str(out),
                        "--env-arg", "nonsense=3", "--no-progress")
    assert code == 2 and "nonsense" in err and "--env-arg" in err
    assert not out.exists()


@pytest.mark.parametrize("flag,value", [("--threads", "0"), ("--budget", "-1"), ("--samples", "0"),
                                        ("--horizon", "0")])
def test_plan_counts_must_be_positive(flag: str, value: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "plan", str(tmp_path), "--env", "bouncing", flag, value)
    assert code == 2 and flag in err and "1 or more" in err


# --- configs that cannot work ----------------------------------------------------------------------
def test_absurd_learning_rate_is_a_config_error() -> None:
    for lr in ("1e39", "1e7", ".inf"):
        with pytest.raises(ConfigError, match="train.lr"):
            load_experiment(IJEPA, [f"train.lr={lr}"])
    load_experiment(IJEPA, ["train.lr=1e4"])  # large but representable: allowed (the NaN guard's job)


def test_history_longer_than_the_clips() -> None:
    with pytest.raises(ConfigError, match="model.history"):
        load_experiment(WM, ["model.history=10"])
    with pytest.raises(ConfigError, match="frameskip 2 gives 3"):
        load_experiment(WM, ["model.frameskip=2"])  # 6 frames, every 2nd -> 3 model frames < 3 + 1
    load_experiment(WM, ["model.history=5"])  # 6 frames = 5 history + 1 target


def test_conv_patch_size_is_checked_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match="power of 2"):
        load_experiment(IJEPA, ["model.encoder=conv", "model.patch_size=6", "model.img_size=36", "data.img_size=36"])


def test_huge_model_is_refused_from_its_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "train", IJEPA, *FAST, "--set", "model.embed_dim=1000000",
                        "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "parameters" in err and "smaller" in err
    assert not (tmp_path / "run").exists()


def test_huge_batch_is_refused_not_hung(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "train", IJEPA, *FAST, "--set", "train.batch_size=1000000000",
                        "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "train.batch_size" in err
    assert not (tmp_path / "run" / "experiment.yaml").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "eval", str(tmp_path / "missing"), "--device", "cuda")
    assert code == 2 and "--device cpu" in err  # checked before the run is even read
    code, err = run_cli(capsys, "train", IJEPA, *FAST, "--device", "cuda", "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "CUDA is not available" in err
    assert not (tmp_path / "run").exists()


def test_resume_below_the_completed_steps_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code, err = run_cli(capsys, "train", IJEPA, *FAST, "--set", "train.steps=3", "--run-dir", str(run))
    assert code == 0, err
    before = (run / "experiment.yaml").read_text()
    code, err = run_cli(capsys, "resume", str(run), "--set", "train.steps=2")
    assert code == 2 and "train.steps=2 is below the 3 steps" in err
    assert (run / "experiment.yaml").read_text() == before


# --- switching a source or recipe ------------------------------------------------------------------
def test_switching_the_source_takes_its_own_defaults(tmp_path: Path) -> None:
    exp = load_experiment(IJEPA, ["data.source=folder", f"data.root={tmp_path}"])  # ijepa_tiny: bouncing keys
    assert exp.source == "folder" and exp.data.root == str(tmp_path) and exp.data.split == "train"
    assert (exp.data.img_size, exp.data.channels) == (32, 3)  # the folder source's defaults
    with pytest.raises(ConfigError, match="data.root"):
        load_experiment(IJEPA, ["data.source=folder"])  # its own required setting, said plainly
    same = load_experiment(IJEPA, ["data.source=bouncing"])  # not a switch: the file's keys stay
    assert same.data.num_balls == 3


def test_switching_the_recipe_takes_its_own_defaults() -> None:
    exp = load_experiment(IJEPA, ["recipe=vicreg", "model.img_size=32", "model.in_chans=3"])
    assert exp.recipe == "vicreg" and not hasattr(exp.model, "num_targets")


# --- API inputs ------------------------------------------------------------------------------------
def test_encode_accepts_float64_and_rejects_uint8() -> None:
    exp = load_experiment(ROOT / "configs" / "lejepa_digits.yaml")
    from jepalab.recipes import get_recipe

    model = get_recipe(exp.recipe)(exp.model).eval()
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    z = model.encode(x)
    assert z.dtype == torch.float32 and torch.allclose(z, model.encode(x.float()))
    with pytest.raises(ShapeError, match="255"):
        model.encode((x * 255).to(torch.uint8))


class _Linear:
    action_dim = 2

    def rollout(self, z_hist: torch.Tensor, actions: torch.Tensor, a_hist: torch.Tensor | None = None) -> torch.Tensor:
        return z_hist[:, -1:, :2] + actions.cumsum(1)


@pytest.mark.parametrize("what", ["a_hist", "z_hist", "goal"])
def test_planners_reject_non_finite_inputs(what: str) -> None:
    from jepalab.planning import CEM

    planner = CEM(_Linear(), horizon=3, samples=16, iterations=2, elites=4)
    z, goal, a = torch.zeros(1, 2, 2), torch.ones(1, 2), torch.zeros(1, 1, 2)
    plan = planner.plan(z, goal, a)
    assert torch.isfinite(plan).all()
    bad = {"z_hist": z, "goal": goal, "a_hist": a}
    bad[what] = bad[what].clone()
    bad[what].view(-1)[0] = float("nan")
    with pytest.raises(DataError, match=f"{what} contains NaN"):
        planner.plan(bad["z_hist"], bad["goal"], bad["a_hist"])


# --- item 14: every recipe's encode is frozen ------------------------------------------------------
def _recipe_input(cfg: object) -> torch.Tensor:
    img, ch, t = getattr(cfg, "img_size", 32), getattr(cfg, "in_chans", 3), getattr(cfg, "num_frames", 1)
    return torch.rand(2, t, ch, img, img) if t > 1 else torch.rand(2, ch, img, img)


def test_encode_is_outside_the_autograd_graph_for_every_recipe() -> None:
    from jepalab.recipes import RECIPES, get_recipe

    for name in RECIPES:
        cls = get_recipe(name)
        torch.manual_seed(0)
        model = cls(cls.config_class())
        for mode in (True, False):
            model.train(mode)
            # the language-model recipe encodes token ids, every other recipe images or clips
            x = torch.randint(0, 100, (2, 8)) if name == "llmjepa" else _recipe_input(model.config)
            z = model.encode(x)
            assert not z.requires_grad and z.grad_fn is None, (name, mode)


def test_a_new_recipe_subclass_gets_a_frozen_encode_too() -> None:
    from jepalab.recipes.base import Recipe

    class Mine(Recipe):
        def __init__(self, config: object) -> None:
            super().__init__(config)
            self.net = nn.Linear(4, 3)

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    z = Mine(None).encode(torch.rand(2, 4))
    assert not z.requires_grad
    assert torch.is_grad_enabled()  # the wrapper restores the caller's grad mode
