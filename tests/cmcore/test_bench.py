"""cmcore/bench.py: `cmcore bench` runs every method and prints a table, then one JSON object last."""
import json

import pytest
import torch

from cmcore import bench
from cmcore.cli import main
from cmcore.config import TrainConfig
from cmcore.data import load_dataset


@pytest.mark.parametrize("method", ["ct", "cd", "flow"])
def test_bench_prints_a_table_then_json_with_the_speedup(method, capsys):
    argv = ["bench", "--method", method, "--resolution", "16", "--batch-size", "4", "--rounds", "1", "--steps", "2",
            "--device", "cpu", "--json", "--no-sampling"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert "speedup over plain" in "\n".join(out[:-1])
    assert result["method"] == method and result["batch_size"] == 4 and result["device"] == "cpu"
    for arm in ("ours", "channels_last", "plain"):
        assert result[arm]["images_per_s"] > 0 and result[arm]["ms_per_step"] > 0
    assert result["speedup"] == pytest.approx(result["ours"]["images_per_s"] / result["plain"]["images_per_s"], rel=1e-2)
    assert result["ours"]["flops_per_s"] > 0 and result["data_images_per_s"] > 0


def test_sampling_latency_covers_every_step_count_and_batch():
    from cmcore.model import build_model

    model = build_model(TrainConfig(resolution=16).resolved(1), 1, 16)
    table = bench.sampling_latency(model, 1, 16, torch.device("cpu"), steps=(1, 2), batches=(1, 3), repeats=1)
    assert set(table) == {"1", "2"} and all(set(row) == {"1", "3"} and min(row.values()) > 0 for row in table.values())


def test_round_robin_alternates_and_times_every_arm():
    order = []
    arms = {"a": lambda p: order.append(("a", p)), "b": lambda p: order.append(("b", p))}
    seconds = bench.round_robin(arms, [1, 2], rounds=2, device=torch.device("cpu"))
    assert order == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("b", 1), ("b", 2), ("a", 1), ("a", 2)]
    assert all(len(v) == 2 and all(s >= 0 for s in v) for v in seconds.values())


def test_the_plain_baseline_trains_the_same_network_with_the_same_loss():
    dataset = load_dataset("demo", 16, "auto")
    config = TrainConfig(resolution=16, batch_size=4).resolved(3)
    plain = bench.PlainStep(config, dataset, torch.device("cpu"))
    before = [p.detach().clone() for p in plain.model.parameters()]
    losses = [plain(4) for _ in range(3)]
    assert all(loss > 0 for loss in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, plain.model.parameters()))  # it learns
    assert sum(p.numel() for p in plain.model.parameters()) == sum(
        p.numel() for p in __import__("cmcore.model", fromlist=["build_model"]).build_model(config, 3, 16).parameters())
