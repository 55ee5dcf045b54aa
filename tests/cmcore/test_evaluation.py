"""cmcore/evaluation.py through the Trainer: a run trains on its split, scores its checkpoints on the held-out
images, logs the scores, keeps the best checkpoint through pruning and resume, and says so in the Runs list."""
import json

import pytest
import torch

from cmcore import evaluation, events, split
from cmcore.checkpoint import KEEP
from cmcore.data import load_dataset
from cmcore.errors import DataError
from cmcore.rundir import best_step, checkpoint_dir, complete_steps, find_checkpoint, read_metrics
from cmcore.runs import read_run
from cmcore.training import Trainer


def run(config, path, **kw):
    seen = []
    step = Trainer(config, path, on_event=seen.append, **kw).run()
    return step, seen


@pytest.fixture
def always(monkeypatch):
    """Score every checkpoint (the time-share rule would skip some, depending on the machine's speed)."""
    monkeypatch.setattr(evaluation, "SCORE_TIME_SHARE", 1.0)
    monkeypatch.setattr(evaluation, "SCORE_NUM", 16)
    monkeypatch.setattr(evaluation, "GAP_NUM", 16)


@pytest.fixture
def scripted(monkeypatch, always):
    """Scores by step, as the test says (the real score of a 12-step model says nothing)."""
    table: dict[int, float] = {}
    real = evaluation.score_model

    def fake(model, scorer, steps, *args, **kwargs):
        real(model, scorer, steps, *args, **kwargs)  # the real sampling and scoring runs all the same
        return {k: table[fake.step] + k for k in steps}

    monkeypatch.setattr(evaluation, "score_model", fake)
    real_evaluate = evaluation.Evaluator._evaluate

    def evaluate(self, ema, step, device):
        fake.step = step
        return real_evaluate(self, ema, step, device)

    monkeypatch.setattr(evaluation.Evaluator, "_evaluate", evaluate)
    return table


def test_a_scored_run_trains_on_its_split_and_logs_a_score_per_checkpoint(small_config, tmp_path, always):
    run_dir = tmp_path / "r"
    trainer = Trainer(small_config.replace(score=True), run_dir, on_event=(seen := []).append)
    trainer.run()
    n = len(load_dataset("demo", 16, "auto"))
    recorded = split.read_split(run_dir)
    assert recorded == {"num_images": n, "seed": 0, "held_out": split.held_out_indices(n, 0)}
    assert len(trainer.dataset) == n - len(recorded["held_out"]) == len(split.train_indices(n, 0))

    scores = [r for r in read_metrics(run_dir) if "score" in r]
    assert [r["step"] for r in scores] == [6, 12] and all("loss" not in r for r in scores)
    assert all(set(r["score"]) == {"1", "2"} and r["score"]["1"] > 0 and "gap" in r for r in scores)
    scored = [e for e in seen if isinstance(e, events.Scored)]
    assert [(e.step, e.scores[1]) for e in scored] == [(r["step"], pytest.approx(r["score"]["1"])) for r in scores]
    assert type(seen[-1]) is events.Finished and type(seen[-2]) is events.Scored  # the end is scored, then said

    best = min(scores, key=lambda r: r["score"]["1"])["step"]
    assert best_step(run_dir) == best and find_checkpoint(run_dir, "best").name == f"step_{best:07d}.safetensors"
    info = read_run(run_dir)
    assert info.best_step == best and info.score == pytest.approx(min(r["score"]["1"] for r in scores))
    assert info.last_loss is not None  # the last line is a score; the loss shown is the last loss logged


def test_the_best_checkpoint_survives_pruning_and_resume(small_config, tmp_path, scripted):
    run_dir = tmp_path / "r"
    config = small_config.replace(score=True, checkpoint_every=2, preview_every=0)
    scripted.update({2: 1.0, 4: 5.0, 6: 4.0, 8: 3.0, 10: 6.0, 12: 7.0, 14: 0.5, 16: 9.0, 18: 9.5})
    run(config, run_dir)
    kept = complete_steps(checkpoint_dir(run_dir))
    assert best_step(run_dir) == 2 and kept == [2] + [8, 10, 12][-KEEP:]
    assert [r.get("best", False) for r in read_metrics(run_dir) if "score" in r] == [True] + [False] * 5

    run(config.replace(max_steps=18), run_dir, resume=True)  # step 14 beats step 2, restored from the metrics
    assert best_step(run_dir) == 14 and complete_steps(checkpoint_dir(run_dir)) == [12, 14, 16, 18]
    assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1]) == \
        {"step": 18, "score": {"1": 10.5, "2": 11.5}, "gap": pytest.approx(0, abs=1)}


def test_resuming_on_data_of_another_size_is_refused_and_tiny_folders_are_not_scored(small_config, tmp_path, always):
    demo = load_dataset("demo", 16, "auto")
    run(small_config.replace(score=True, max_steps=6), tmp_path / "r")
    fewer = type(demo)(demo.images[:-5], demo.report)
    with pytest.raises(DataError, match=f"held out {split.held_out_size(len(demo))} of {len(demo)} images; its "
                                        f"data now has {len(demo) - 5}"):
        Trainer(small_config.replace(score=True, max_steps=8), tmp_path / "r", resume=True, dataset=fewer).run()

    tiny = type(demo)(demo.images[:split.NO_SPLIT_BELOW - 1], demo.report)
    trainer = Trainer(small_config.replace(score=True, max_steps=4), tmp_path / "tiny", dataset=tiny)
    trainer.run()
    assert len(trainer.dataset) == split.NO_SPLIT_BELOW - 1 and trainer.evaluator is None
    assert split.read_split(tmp_path / "tiny") is None and not any("score" in r for r in read_metrics(tmp_path / "tiny"))


def test_scoring_keeps_to_its_share_of_the_time(monkeypatch):
    clock = {"now": 100.0}
    monkeypatch.setattr(evaluation.time, "monotonic", lambda: clock["now"])
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    images[2:] = 255
    ev = evaluation.Evaluator(images, images, (1,), "multistep")
    assert ev.due()  # the first checkpoint is always scored

    def slow(self, ema, step, device):  # a score that takes 3 s
        clock["now"] += 3.0
        return events.Scored(step, {1: 1.0}, None, True)

    monkeypatch.setattr(evaluation.Evaluator, "_evaluate", slow)
    ev.evaluate(None, 1, "cpu")
    clock["now"] += 26.9
    assert not ev.due()  # 3 s of scoring per 30 s at most: 10 %
    clock["now"] += 0.2
    assert ev.due()
