"""Run-directory safety from the command line: one writer per run (a killed writer's lock is
recovered), a failed ``resume`` leaves the run as it was, ``resume --help``'s examples work, and
the CLI's CPU thread defaults (passive OpenMP wait, usable CPUs) with their overrides."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_cli import TINY, cli

from jepalab.checkpoint import latest_checkpoint, list_checkpoints, read_state
from jepalab.cli import build_parser, main, run_summary
from jepalab.errors import RunBusyError
from jepalab.runlog import read_jsonl
from jepalab.trainer import lock as lock_mod
from jepalab.trainer.lock import LOCK_FILE, RunLock, read_holder

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, steps: int = 4) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY.replace("steps: 4", f"steps: {steps}"))
    return p


def _wait_for(pred, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process exited early: {proc.stdout.read()[-2000:] if proc.stdout else ''}")
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.05)


def _popen(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "JEPALAB_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen([sys.executable, "-m", "jepalab", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


# --- item 6: one writer per run directory ------------------------------------------------------
def test_two_trains_at_once_one_is_refused_and_the_run_stays_consistent(tmp_path: Path) -> None:
    cfg, run = _config(tmp_path, steps=40), tmp_path / "run"
    procs = [_popen("train", str(cfg), "--run-dir", str(run), "--set", f"train.lr={lr}") for lr in (1e-3, 2e-3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)]
    assert "Traceback" not in loser and ("is in use by `jepalab train`" in loser or "already holds" in loser)
    # experiment.yaml, every checkpoint and the log belong to the same (winning) run
    exp_lr = yaml.safe_load((run / "experiment.yaml").read_text())["train"]["lr"]
    for ck in list_checkpoints(run):
        assert read_state(ck)["config"]["lr"] == exp_lr
    assert [r["step"] for r in read_jsonl(run / "log.jsonl")] == list(range(1, 41))
    assert run_summary(run)["steps_done"] == 40 and not (run / LOCK_FILE).exists()


def test_resume_while_training_is_refused_naming_the_writer(tmp_path: Path) -> None:
    cfg, run = _config(tmp_path, steps=100000), tmp_path / "run"
    first = _popen("train", str(cfg), "--run-dir", str(run), "--set", "train.checkpoint_every=1000")
    try:
        _wait_for(lambda: (run / "log.jsonl").is_file(), proc=first)
        r = cli("resume", str(run))
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert f"is in use by `jepalab train` (pid {first.pid} on {socket.gethostname()})" in r.stderr
    finally:
        first.kill()
        first.communicate(timeout=60)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("kernel_locks", [True, False])
def test_a_lock_left_by_a_killed_process_is_recovered(tmp_path: Path, kernel_locks: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if not kernel_locks:  # here too: the pid-file scheme on both sides
        monkeypatch.setattr(lock_mod, "fcntl", None)
    run = tmp_path / "run"
    code = ("import sys, time\nfrom jepalab.trainer import lock\n"
            + ("" if kernel_locks else "lock.fcntl = None\n")
            + f"lock.RunLock({str(run)!r}).acquire()\nprint('locked', flush=True)\ntime.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunBusyError, match=f"pid {holder.pid}"):
            RunLock(run).acquire()  # alive: refused
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert read_holder(run / LOCK_FILE)["pid"] == holder.pid  # the dead writer's file is still there
    with RunLock(run, "train") as lk:  # ... and taken over
        assert read_holder(lk.path)["pid"] == os.getpid()
    assert not (run / LOCK_FILE).exists()


def test_pid_file_locks_where_the_os_has_no_file_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock_mod, "fcntl", None)
    run = tmp_path / "run"
    run.mkdir()
    path = run / LOCK_FILE
    me = socket.gethostname()
    path.write_text(json.dumps({"pid": os.getpid(), "host": me, "command": "train"}))  # a live holder
    with pytest.raises(RunBusyError, match="jepalab train"):
        RunLock(run).acquire()
    path.write_text(json.dumps({"pid": 4242, "host": "elsewhere"}))  # another machine: cannot tell
    with pytest.raises(RunBusyError, match="delete"):
        RunLock(run).acquire()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(json.dumps({"pid": int(dead.stdout), "host": me}))  # exited: stale
    lk = RunLock(run).acquire()
    with pytest.raises(RunBusyError):
        RunLock(run).acquire()
    lk.release()
    assert not path.exists()


def test_eval_is_refused_while_a_run_is_being_written(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", str(_config(tmp_path)), "--run-dir", str(run)]) == 0
    with RunLock(run, "train"):  # stands for a `jepalab resume` still running
        assert main(["eval", str(run), "--no-baseline", "--probes", "linear"]) == 2
        assert "in use by `jepalab train`" in capsys.readouterr().err
    assert not (run / "eval.json").exists()


def test_refused_start_leaves_no_empty_run_dir(tmp_path: Path) -> None:
    from conftest import TinySource, make_model

    from jepalab.errors import ConfigError
    from jepalab.train import TrainConfig, train

    run = tmp_path / "new"
    c = TrainConfig(amp="fp16", steps=2, warmup_steps=0, progress=False, device="cpu")
    with pytest.raises(ConfigError, match="fp16.*needs CUDA"):  # refused after the lock was taken
        train(make_model(), TinySource(), c, run)
    assert not run.exists()


# --- item 11: a failed resume does not corrupt the run -----------------------------------------
def test_failed_resume_leaves_experiment_yaml_untouched(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", str(_config(tmp_path)), "--run-dir", str(run)]) == 0
    before = (run / "experiment.yaml").read_bytes()
    assert main(["resume", str(run), "--set", "model.embed_dim=24"]) == 2
    assert "does not fit this model" in capsys.readouterr().err
    assert (run / "experiment.yaml").read_bytes() == before
    assert main(["resume", str(run), "--set", "train.steps=6"]) == 0  # a plain resume still works
    assert run_summary(run)["steps_done"] == 6


def test_resume_help_examples_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["resume", "--help"])
    epilog = capsys.readouterr().out.split("examples")[1]
    examples = [ln.strip().split("  ")[0] for ln in epilog.splitlines() if ln.strip().startswith("jepalab ")]
    assert len(examples) == 2 and "configs/ijepa_tiny.yaml" in epilog
    monkeypatch.chdir(tmp_path)  # the examples use the default run directory, runs/<name>
    small = ["model.depth=1", "model.embed_dim=16", "model.pred_dim=8", "model.pred_depth=1", "model.heads=1",
             "model.pred_heads=1", "train.batch_size=2", "train.steps=4", "train.warmup_steps=1",
             "train.log_every=100", "train.monitor_every=0", "train.device=cpu", "train.progress=false"]
    assert main(["train", str(ROOT / "configs" / "ijepa_tiny.yaml")] + [a for s in small for a in ("--set", s)]) == 0
    for example in examples:
        assert main(shlex.split(example)[1:]) == 0, example
    assert read_state(latest_checkpoint(tmp_path / "runs" / "ijepa-tiny"))["step"] == 600


# --- item 10: CPU threads ------------------------------------------------------------------------
_PROBE = r"""
import json, os, sys
seen = {}
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.update(policy=os.environ.get("OMP_WAIT_POLICY"), threads=os.environ.get("OMP_NUM_THREADS"))
        return None
sys.meta_path.insert(0, Probe())
from jepalab.cli import main
rc = main(sys.argv[1:])
import torch
print(json.dumps({"rc": rc, "at_torch_import": seen, "torch_threads": torch.get_num_threads()}))
"""


def _probe(args: list[str], **env: str) -> dict:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "JEPALAB_THREADS", "MKL_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=300,
                       env={**base, **env})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_cli_sets_passive_wait_and_usable_cpus_before_torch_loads() -> None:
    from jepalab.threads import usable_cpus

    out = _probe(["recipes"])
    assert out["rc"] == 0 and out["at_torch_import"]["policy"] == "PASSIVE"
    assert out["at_torch_import"]["threads"] == str(usable_cpus()) and out["torch_threads"] == usable_cpus()


def test_thread_overrides_flag_env_and_users_omp_settings() -> None:
    out = _probe(["--threads", "3", "recipes"])
    assert out["torch_threads"] == 3 and out["at_torch_import"]["policy"] == "PASSIVE"
    out = _probe(["recipes"], JEPALAB_THREADS="2")
    assert out["at_torch_import"]["threads"] == "2" and out["torch_threads"] == 2
    out = _probe(["recipes"], OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1")
    assert out["at_torch_import"] == {"policy": "ACTIVE", "threads": "1"}
    assert build_parser().parse_args(["train", "cfg.yaml", "--threads", "2"]).cpu_threads == 2


def test_bad_thread_counts_are_one_line_exit_2(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--threads", "0", "recipes"]) == 2
    assert "--threads 0" in capsys.readouterr().err
    monkeypatch.setenv("JEPALAB_THREADS", "many")
    assert main(["recipes"]) == 2
    assert "JEPALAB_THREADS='many'" in capsys.readouterr().err


def test_help_documents_the_thread_settings() -> None:
    r = cli("--help")
    assert "--threads N" in r.stdout and "JEPALAB_THREADS" in r.stdout and "OMP_WAIT_POLICY=PASSIVE" in r.stdout
    r = cli("train", "--help")
    assert "--threads N" in r.stdout and "JEPALAB_THREADS" in r.stdout
