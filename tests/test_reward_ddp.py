"""Multi-process training: `prm train` under torchrun with 2 CPU processes (DDP over gloo)
follows the same loss curve as one process with the same global batch.

Every trace has the same number of labelled steps, so the mean of the two processes' batch
losses equals the one process's loss over their union, and the gradients agree.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from prm.io import write_traces
from prm.records import Step, Trace
from helpers.reward_models import tiny_gpt2


def traces(n: int) -> list[Trace]:
    out = []
    for i in range(n):
        good = i % 3 != 0
        steps = [Step(f"{i} + 4 = <<{i}+4={i + 4}>>{i + 4}", hard_label=1),
                 Step(f"{i + 4} * 2 = {2 * (i + 4) + (0 if good else 1)}", hard_label=int(good))]
        out.append(Trace(id=f"t{i}", problem=f"What is ({i} + 4) * 2?", steps=steps))
    return out


def train(data, backbone, out, processes: int, batch: int) -> list[float]:
    # torch's gloo teardown at process exit used to abort a rank ("terminate called without an
    # active exception") or deadlock now and then; `prm train` now exits without it under
    # torchrun. Should it happen anyway, the launch is tried once more on a new port; any other
    # failure, or the same one twice, fails the test.
    try:
        return _train_once(data, backbone, out, processes, batch)
    except (subprocess.TimeoutExpired, TeardownCrash):
        shutil.rmtree(out, ignore_errors=True)
        return _train_once(data, backbone, out, processes, batch)


class TeardownCrash(Exception):
    """A rank aborted at exit after training had finished."""


def _train_once(data, backbone, out, processes: int, batch: int) -> list[float]:
    launcher = [sys.executable]
    if processes > 1:
        with socket.socket() as probe:  # a free port on loopback for the processes' rendezvous
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1",
                     "--master_port", str(port)]
    command = launcher + ["-m", "prm.app.cli", "train", str(data), "--backbone", str(backbone), "--out", str(out),
                          "--per_device_train_batch_size", str(batch), "--max_steps", "6", "--learning_rate", "1e-3",
                          "--logging_steps", "1", "--save_strategy", "no", "--seed", "0", "--use_cpu",
                          "--train_sampling_strategy", "sequential", "--dataloader_num_workers", "0"]
    if processes > 1:
        command += ["--ddp_backend", "gloo"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, env=env)
    if result.returncode != 0 and "terminate called without an active exception" in result.stderr \
            and (out / "train_summary.json").exists():
        raise TeardownCrash(result.stderr[-2000:])
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def test_ddp_with_two_cpu_processes_matches_one_process_with_the_same_global_batch(tmp_path):
    data = tmp_path / "train.jsonl"
    write_traces(data, traces(48))
    backbone = tiny_gpt2(tmp_path / "gpt2")
    single = train(data, backbone, tmp_path / "one", processes=1, batch=8)
    ddp = train(data, backbone, tmp_path / "two", processes=2, batch=4)
    assert len(single) == len(ddp) == 6
    assert ddp == pytest.approx(single, rel=1e-4, abs=1e-5)
    assert single[-1] != pytest.approx(single[0], abs=1e-3)  # it trained
