"""More than one machine: ``torchrun --nnodes 2`` as two agents on this machine (c10d rendezvous on
127.0.0.1, gloo) trains exactly as one agent with 2 processes does, and its logged validation
equals a single-process evaluation of the checkpoint it saved."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys

import pytest
import torch

from avstrain import checkpoints, evaluation
from tests.helpers.train import tiny_shards

TRAIN = ["-m", "avstrain", "train", "{shards}", "-o", "{run}", "--preset", "demo", "--epochs", "2",
         "--set", "channel=16", "--set", "image_size=64", "--batch-size", "2", "--set", "workers=0",
         "--device", "cpu", "--quiet"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(shards, run) -> list[str]:
    return [a.format(shards=shards, run=run) for a in TRAIN]


def _metrics(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(fh)]


@pytest.mark.slow
def test_two_agents_equal_one_agent_and_single_process_eval(tmp_path_factory, tmp_path):
    shards = tiny_shards(tmp_path_factory.getbasetemp())
    env = dict(os.environ, OMP_NUM_THREADS="1", AVS_NO_PROGRESS="1")
    # reference: one agent, 2 processes on this node
    one = tmp_path / "one-agent"
    ref = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *_train_args(shards, one)], env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    # two agents ("nodes"), 1 process each, meeting at a c10d rendezvous on 127.0.0.1
    two = tmp_path / "two-agents"
    port = _free_port()
    agent = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
             "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "avs-test",
             "--local_addr", "127.0.0.1", *_train_args(shards, two)]
    procs = [subprocess.Popen(agent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=600))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]

    # training: same steps, same logged losses and validation, same final weights
    assert _metrics(two) == _metrics(one) and len(_metrics(two)) == 2
    ck2, ck1 = checkpoints.load_checkpoint(two / "last.pt"), checkpoints.load_checkpoint(one / "last.pt")
    assert ck2["step"] == ck1["step"] == 4  # 8 clips / (2 processes x 2 clips) x 2 epochs
    w1, w2 = ck1["model"], ck2["model"]
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    # evaluation: the 2-node run's logged val metrics equal a single-process evaluation of its checkpoint
    model, c = checkpoints.system_from_checkpoint(ck2, two / "last.pt")
    from avstrain.data import ShardDataset, make_eval_loader

    res = evaluation.evaluate(model, make_eval_loader(ShardDataset(shards, "val"), 1), torch.device("cpu"), c,
                              batch_videos=1)
    assert res["miou"] == float(_metrics(two)[-1]["val_miou"]) == ck2["history"][-1]["val_miou"]
    assert res["fscore"] == ck2["history"][-1]["val_fscore"]
