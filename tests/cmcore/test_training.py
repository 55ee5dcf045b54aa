"""cmcore/training.py: short trainings of every method, automatic choices, resume, stops and limits."""
import math
import threading

import pytest
import torch

from cmcore import events
from cmcore.config import (BETA2_CONSISTENCY, BETA2_FLOW, CT_WARMUP_FRACTION, DISTANCE_DEFAULT, DISTANCE_DISTILL,
                           DROPOUT_DISTILL, LR_FROM_SCRATCH, LR_FROM_TEACHER, LR_MIN_RATIO_DEFAULT, LR_MIN_RATIO_DISTILL)
from cmcore.checkpoint import load_checkpoint
from cmcore.errors import ConfigError, TrainingError
from cmcore.generator import load_generator
from cmcore.rundir import checkpoint_name, latest_step, read_metrics
from cmcore.runs import list_runs
from cmcore.training import Trainer


def run(config, path, **kw):
    seen = []
    step = Trainer(config, path, on_event=seen.append, **kw).run()
    return step, seen


@pytest.mark.parametrize("method", ["flow", "ct"])
def test_smoke_training_writes_a_complete_run(method, small_config, tmp_path):
    step, seen = run(small_config.replace(method=method), tmp_path / method)
    assert step == 12
    kinds = [type(e).__name__ for e in seen]
    assert kinds[0] == "Started" and kinds[-1] == "Finished"
    assert {"Progress", "Preview", "CheckpointSaved"} <= set(kinds)
    run_dir = tmp_path / method
    metrics = read_metrics(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(2, 13, 2))
    assert all(math.isfinite(m["loss"]) for m in metrics)
    assert set(metrics[0]) >= {"step", "loss", "lr", "n", "images_per_s", "wall"}
    assert (run_dir / "config.toml").is_file() and (run_dir / "data_report.json").is_file()
    assert sorted(p.name for p in (run_dir / "previews").iterdir())
    ckpt = load_checkpoint(run_dir)
    assert ckpt.step == 12 and ckpt.config.method == method
    assert {"model", "ema"} <= set(ckpt.weights)
    images = load_generator(run_dir).sample(3, 2, seed=1)
    assert images.shape == (3, 16, 16, 3) and images.dtype.name == "uint8"


def test_cd_from_a_flow_teacher(small_config, tmp_path):
    run(small_config.replace(method="flow"), tmp_path / "teacher")
    step, seen = run(small_config.replace(method="cd", teacher=str(tmp_path / "teacher")), tmp_path / "cd")
    assert step == 12
    losses = [e.loss for e in seen if isinstance(e, events.Progress)]
    assert all(math.isfinite(v) for v in losses)
    # The student starts from the teacher's weights.
    teacher = load_checkpoint(tmp_path / "teacher").weights["ema"]
    student = Trainer(small_config.replace(method="cd", teacher=str(tmp_path / "teacher")), tmp_path / "cd2")
    student.setup()
    name = "net.stem.weight"
    assert torch.equal(student.model.state_dict()[name], teacher[name])


def test_auto_parametrization_and_lr_are_resolved_per_method_and_saved(small_config, tmp_path):
    assert small_config.parametrization == "auto" and small_config.lr == "auto"
    run(small_config.replace(method="flow"), tmp_path / "teacher")
    run(small_config.replace(method="ct"), tmp_path / "ct")
    assert load_checkpoint(tmp_path / "teacher").config.parametrization == "reflow"
    assert load_checkpoint(tmp_path / "ct").config.parametrization == "blend"
    assert load_checkpoint(tmp_path / "ct").config.lr == LR_FROM_SCRATCH  # "auto", written out
    assert load_checkpoint(tmp_path / "ct").config.adam_beta2 == BETA2_CONSISTENCY  # so is adam_beta2
    assert load_checkpoint(tmp_path / "teacher").config.adam_beta2 == BETA2_FLOW
    assert load_generator(tmp_path / "ct").model.parametrization == "blend"
    assert load_generator(tmp_path / "ct").default_sampler == "multistep"
    assert load_generator(tmp_path / "teacher").default_sampler == "ode"
    student = Trainer(small_config.replace(method="cd", teacher=str(tmp_path / "teacher")), tmp_path / "cd")
    student.setup()
    assert student.config.parametrization == "reflow"  # it starts from the teacher's weights
    assert student.config.lr == LR_FROM_TEACHER < LR_FROM_SCRATCH
    # dropout auto: the student drops, CT and the teacher do not; the net really has it
    assert small_config.dropout == "auto" and student.config.dropout == DROPOUT_DISTILL > 0
    assert {m.p for m in student.model.modules() if isinstance(m, torch.nn.Dropout)} == {DROPOUT_DISTILL}
    assert load_checkpoint(tmp_path / "ct").config.dropout == load_checkpoint(tmp_path / "teacher").config.dropout == 0
    # lr_min_ratio auto: the student's cosine decays to 0, CT's and the teacher's to 0.1·lr
    assert small_config.lr_min_ratio == "auto" and student.config.lr_min_ratio == LR_MIN_RATIO_DISTILL == 0.0
    assert load_checkpoint(tmp_path / "ct").config.lr_min_ratio == LR_MIN_RATIO_DEFAULT == 0.1
    assert load_checkpoint(tmp_path / "teacher").config.lr_min_ratio == LR_MIN_RATIO_DEFAULT
    # distance "auto": the student's loss uses L1 + fine detail, CT keeps pseudo-Huber
    assert small_config.distance == "auto" and DISTANCE_DISTILL != DISTANCE_DEFAULT
    assert student.config.distance == student.loss_fn.distance == DISTANCE_DISTILL
    assert load_checkpoint(tmp_path / "ct").config.distance == DISTANCE_DEFAULT
    # CT starts as a plain denoiser for a quarter of the run; the student, from a denoiser already, does not
    assert load_checkpoint(tmp_path / "ct").config.warmup_fraction == CT_WARMUP_FRACTION > 0
    assert student.config.warmup_fraction == 0.0
    # pseudo-Huber's c = 0.00054·√dim, written out (16 px, 3 channels)
    assert load_checkpoint(tmp_path / "ct").config.huber_c == pytest.approx(0.00054 * (3 * 16 * 16) ** 0.5)


def test_student_adopts_the_teachers_model_and_parametrization(small_config, tmp_path):
    run(small_config.replace(method="flow", parametrization="blend"), tmp_path / "teacher")
    student = Trainer(small_config.replace(method="cd", teacher=str(tmp_path / "teacher"), model="small"), tmp_path / "cd")
    student.setup()
    assert student.config.parametrization == "blend" and student.model.parametrization == "blend"
    assert student.config.model == "tiny"
    teacher = load_checkpoint(tmp_path / "teacher").weights["ema"]
    assert all(torch.equal(student.model.state_dict()[k], v) for k, v in teacher.items())  # starts from its weights


def test_cd_rejects_a_consistency_run_as_teacher(small_config, tmp_path):
    run(small_config.replace(method="ct"), tmp_path / "ct")
    with pytest.raises(ConfigError, match="flow"):
        Trainer(small_config.replace(method="cd", teacher=str(tmp_path / "ct")), tmp_path / "cd").run()


def test_resume_continues_exactly(small_config, tmp_path):
    config = small_config.replace(method="ct", max_steps=16, checkpoint_every=100, dropout=0.1, hflip=True)
    run(config, tmp_path / "straight")

    trainer = Trainer(config, tmp_path / "split", on_event=lambda e: isinstance(e, events.Progress)
                      and e.step == 6 and trainer.request_stop())
    assert trainer.run() == 6
    assert Trainer(None, tmp_path / "split", resume=True).run() == 16

    def metrics(name):
        return [{k: v for k, v in m.items() if k not in ("images_per_s", "wall")}
                for m in read_metrics(tmp_path / name / "metrics.jsonl")]

    assert metrics("split") == metrics("straight")
    a, b = load_checkpoint(tmp_path / "split").weights, load_checkpoint(tmp_path / "straight").weights
    for group in ("model", "ema"):
        for key in a[group]:
            assert torch.equal(a[group][key], b[group][key]), (group, key)


def test_resume_drops_metrics_logged_after_the_last_checkpoint(small_config, tmp_path):
    run(small_config.replace(checkpoint_every=6, max_steps=12), tmp_path / "r")
    ckpt_dir = tmp_path / "r" / "checkpoints"
    assert latest_step(tmp_path / "r") == 12
    (ckpt_dir / "latest").write_text(checkpoint_name(6))  # as if the process died after step 6's checkpoint
    for p in ckpt_dir.glob(f"{checkpoint_name(12)}*"):
        p.unlink()
    assert latest_step(tmp_path / "r") == 6
    Trainer(None, tmp_path / "r", resume=True).run()
    steps = [m["step"] for m in read_metrics(tmp_path / "r" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 12


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(small_config, tmp_path, monkeypatch):
    config = small_config.replace(max_steps=20, checkpoint_every=4)
    trainer = Trainer(config, tmp_path / "nan")
    original = trainer.train_step

    def poisoned():
        if trainer.step == 9:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))
        return original()

    monkeypatch.setattr(trainer, "train_step", poisoned)
    with pytest.raises(TrainingError, match="step 10"):
        trainer.run()
    ckpt = load_checkpoint(tmp_path / "nan")
    assert ckpt.step == 8
    assert all(torch.isfinite(v).all() for v in ckpt.weights["model"].values())


def test_stop_from_another_thread_saves_a_checkpoint(small_config, tmp_path):
    config = small_config.replace(max_steps=10_000, checkpoint_every=0, preview_every=0)
    trainer = Trainer(config, tmp_path / "stop")
    started = threading.Event()
    thread = threading.Thread(target=trainer.run)
    trainer.on_event = lambda e: isinstance(e, events.Progress) and started.set()
    thread.start()
    assert started.wait(60)
    trainer.pause()
    assert trainer.paused
    trainer.request_stop()
    thread.join(60)
    assert not thread.is_alive()
    assert load_checkpoint(tmp_path / "stop").step == trainer.step < 10_000


def test_max_minutes_ends_the_run(small_config, tmp_path):
    step, seen = run(small_config.replace(max_steps=10**6, max_minutes=0.02, preview_every=0, checkpoint_every=0, log_every=1),
                     tmp_path / "timed")
    assert seen[-1].reason == "max_minutes" and 0 < step < 10**6
    # Progress follows the clock, not the (unreachable) step count; the schedules use the same fraction.
    fractions = [e.fraction for e in seen if isinstance(e, events.Progress)]
    assert fractions == sorted(fractions) and fractions[-1] > 0.9
    assert all(e.step / e.max_steps < 0.01 for e in seen if isinstance(e, events.Progress))


def test_progress_fraction_follows_the_steps_without_a_time_limit(small_config, tmp_path):
    _, seen = run(small_config.replace(max_minutes=0), tmp_path / "steps")
    assert [e.fraction for e in seen if isinstance(e, events.Progress)] == pytest.approx([i / 12 for i in range(2, 13, 2)])


def test_run_listing_counts_steps_saved_after_the_last_log_line(small_config, tmp_path):
    trainer = Trainer(small_config.replace(preview_every=3, checkpoint_every=0), tmp_path / "runs" / "stopped")
    trainer.on_event = lambda e: isinstance(e, events.Preview) and trainer.request_stop()
    trainer.run()  # logs at step 2, stops after the preview at step 3 and saves it
    (tmp_path / "runs" / "empty").mkdir()
    [info] = list_runs(tmp_path / "runs")
    assert read_metrics(info.path / "metrics.jsonl")[-1]["step"] == 2
    assert (info.name, info.method, info.step, info.max_steps, info.has_checkpoint) == ("stopped", "ct", 3, 12, True)


def test_new_run_refuses_a_folder_with_a_run(small_config, tmp_path):
    run(small_config, tmp_path / "r")
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(small_config, tmp_path / "r").run()
