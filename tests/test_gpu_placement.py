"""Worker processes on GPUs: which worker gets which device, from a given device list (the machine
here has no GPU, so the visible count is given; the CUDA run itself is the GPU check's job)."""

from __future__ import annotations

import pytest
import torch

from auxopt.cli import main
from auxopt.errors import AuxoptError
from auxopt.train.runtime import DEVICE_ENV, resolve_device
from auxopt.worker import WORKERS_PER_GPU, parse_gpus, parse_workers, placement, resolve_workers, worker_devices


def test_workers_are_dealt_over_the_gpus_in_turn():
    assert worker_devices(4, visible=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]  # default: every GPU
    assert worker_devices(3, [2], visible=4) == ["cuda:2"] * 3  # several workers share one GPU
    assert worker_devices(3, [0, 2], visible=4) == ["cuda:0", "cuda:2", "cuda:0"]
    assert worker_devices(2, [3, 1], visible=4) == ["cuda:3", "cuda:1"]  # in the order given
    assert worker_devices(2, visible=0) == [None, None]  # no GPU: the run's own choice (the CPU)
    assert placement(["cuda:0", "cuda:1", "cuda:0", "cuda:1"]) == "on cuda:0 ×2, cuda:1 ×2"
    assert placement([None, None]) == "on the CPU"
    assert placement(["cuda:1"]) == "on cuda:1"


def test_auto_workers_fill_each_gpu_used_within_the_cores():
    assert parse_workers("auto") == "auto" and parse_workers("3") == 3
    assert resolve_workers(3, visible=2) == 3  # a number is itself
    assert resolve_workers("auto", visible=1, cores=16) == WORKERS_PER_GPU == 8
    assert resolve_workers("auto", visible=4, cores=64) == 4 * WORKERS_PER_GPU
    assert resolve_workers("auto", [1], visible=4, cores=64) == WORKERS_PER_GPU  # only the GPUs used
    assert resolve_workers("auto", visible=2, cores=6) == 6  # at most one a core
    assert resolve_workers("auto", visible=0, cores=16) == 1  # no GPU: one worker with every core
    for bad in ("0", "many", "-2"):
        with pytest.raises(AuxoptError, match="--workers"):
            parse_workers(bad)


def test_bad_gpu_lists_are_refused():
    assert parse_gpus("0, 2") == [0, 2] and parse_gpus(None) is None and parse_gpus("") is None
    with pytest.raises(AuxoptError, match="numbers separated by commas"):
        parse_gpus("first")
    with pytest.raises(AuxoptError, match="each GPU once"):
        parse_gpus("1,1")
    with pytest.raises(AuxoptError, match="names GPU 2, but this machine shows GPUs 0 to 1"):
        worker_devices(2, [0, 2], visible=2)
    with pytest.raises(AuxoptError, match="shows no GPU"):
        worker_devices(1, [0], visible=0)


def test_auto_takes_the_device_the_worker_was_placed_on(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit device is the run's own
    monkeypatch.setenv(DEVICE_ENV, "tpu:9")
    with pytest.raises(AuxoptError, match="unknown device 'tpu:9'"):
        resolve_device("auto")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_asking_for_a_gpu_on_a_machine_without_one_is_one_clear_error(tmp_path, capsys):
    study = tmp_path / "s.py"
    study.write_text(
        "from auxopt import StudySpec, make_synthetic_suite\n"
        "s = make_synthetic_suite(n_train=100, n_aux_train=100, n_dev=50, n_test=50)\n"
        "study = StudySpec(name='s', primary=s.primary, base={'max_steps': 2, 'eval_every': 1})\n"
    )
    assert main(["run", str(study), "--workers", "2", "--gpus", "0", "--quiet"]) == 2
    assert "--gpus names GPU 0, but this machine shows no GPU" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()  # refused before the storage was touched
