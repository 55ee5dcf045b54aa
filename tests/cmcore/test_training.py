"""cmcore/training.py: short trainings of every method, automatic choices, resume, stops and limits."""
import math
import os
from pathlib import Path
import re
import socket
import threading

import pytest
import torch

from cmcore import events
from cmcore.config import (BETA2_CONSISTENCY, BETA2_FLOW, CT_WARMUP_FRACTION, DISTANCE_DEFAULT, DISTANCE_DISTILL,
                           DROPOUT_DISTILL, LR_FROM_SCRATCH, LR_FROM_TEACHER, LR_MIN_RATIO_DEFAULT, LR_MIN_RATIO_DISTILL)
from cmcore.checkpoint import load_checkpoint
from cmcore.config import TrainConfig
from cmcore.errors import ConfigError, TrainingError
from cmcore.generator import load_generator
from cmcore.rundir import checkpoint_name, find_checkpoint, latest_step, read_metrics
from cmcore.runlock import lock_owner
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


# --- numbers: a non-finite loss rolls back; out of memory is explained (issue 22) ------------------------
def _poison_at(trainer, monkeypatch, steps):
    """NaN weights before each step in `steps` (the step counter does not advance over a failed step)."""
    original, hits = trainer.train_step, []

    def poisoned():
        if trainer.step in steps and len(hits) < steps[trainer.step]:
            hits.append(trainer.step)
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))
        return original()

    monkeypatch.setattr(trainer, "train_step", poisoned)
    return hits


def test_a_non_finite_loss_rolls_back_and_goes_on_at_half_the_learning_rate(small_config, tmp_path, monkeypatch):
    config = small_config.replace(max_steps=20, checkpoint_every=4, preview_every=0, log_every=1, lr=1e-3,
                                  warmup_steps=0, lr_min_ratio=1.0)  # a constant learning rate
    seen = []
    trainer = Trainer(config, tmp_path / "nan", on_event=seen.append)
    hits = _poison_at(trainer, monkeypatch, {9: 1})
    assert trainer.run() == 20 and hits == [9]
    [warning] = [e for e in seen if isinstance(e, events.Warning)]
    assert warning.step == 9 and "\n" not in warning.message
    assert re.fullmatch(r"the loss became nan at step 10: rolled back to the weights of step 0 and halved the learning "
                        r"rate to 0.0005 \(1 of 3 such rollbacks\)", warning.message)
    metrics = read_metrics(tmp_path / "nan")
    assert [m["step"] for m in metrics] == list(range(1, 21))  # every step once
    assert {m["lr"] for m in metrics if m["step"] <= 9} == {1e-3} and {m["lr"] for m in metrics if m["step"] > 9} == {5e-4}
    assert metrics[-1]["nan_rollbacks"] == 1 and all(math.isfinite(m["loss"]) for m in metrics)
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "nan").weights["model"].values())
    # the halved rate travels with the checkpoint
    resumed = Trainer(None, tmp_path / "nan", resume=True)
    resumed.setup()
    assert resumed.lr_scale == 0.5 and resumed.nan_rollbacks == 1
    resumed.close()


def test_a_loss_that_stays_non_finite_stops_after_three_rollbacks(small_config, tmp_path, monkeypatch):
    seen = []
    trainer = Trainer(small_config.replace(max_steps=20, checkpoint_every=4), tmp_path / "nan", on_event=seen.append)
    _poison_at(trainer, monkeypatch, {9: 99})
    with pytest.raises(TrainingError, match=r"^the loss became nan at step 10: lower the learning rate \(now "
                                            r"0.00025 \(after 3 rollbacks, each halving it\)\) or use fp32") as caught:
        trainer.run()
    assert "\n" not in str(caught.value)
    assert len([e for e in seen if isinstance(e, events.Warning)]) == 3
    assert load_checkpoint(tmp_path / "nan").step == 8
    assert lock_owner(tmp_path / "nan") is None  # the lock is given back on an error too


def test_out_of_memory_in_a_training_step_is_one_line_with_a_hint(small_config, tmp_path, monkeypatch):
    from cmcore.errors import OutOfMemoryError

    trainer = Trainer(small_config, tmp_path / "oom")
    trainer.setup()

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(trainer, "loss_fn", oom)
    with pytest.raises(OutOfMemoryError, match=r"out of memory at step 1 on cpu: lower the batch size \(now 8\), "
                                               "the model size or the resolution"):
        trainer.train_step()
    trainer.close()


def test_out_of_memory_loading_or_sampling_a_model_is_one_line(small_config, tmp_path, monkeypatch):
    from cmcore import generator as generator_module
    from cmcore.errors import OutOfMemoryError
    from cmcore.precond import ConsistencyFunction

    run(small_config.replace(max_steps=2, preview_every=0), tmp_path / "r")
    gen = load_generator(tmp_path / "r")

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(generator_module, "sample", oom)
    with pytest.raises(OutOfMemoryError, match="out of memory sampling 500 images at 16 px on cpu: draw fewer"):
        gen.sample(500, 1, seed=0)
    monkeypatch.setattr(ConsistencyFunction, "to", oom)
    with pytest.raises(OutOfMemoryError, match=r"out of memory loading step_0000002.safetensors \(tiny model\)"):
        load_generator(tmp_path / "r")
    with pytest.raises(OutOfMemoryError, match="out of memory setting up the tiny model"):
        Trainer(None, tmp_path / "r", resume=True).run()


def test_a_preview_out_of_memory_or_on_a_full_disk_is_a_warning_and_training_goes_on(small_config, tmp_path,
                                                                                       monkeypatch):
    from PIL import Image

    from cmcore import previews

    real_sample = previews.sample
    calls = {"n": 0}

    def sample_oom_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_sample(*args, **kwargs)

    def full_disk(self, fp, *args, **kwargs):
        with open(fp, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(previews, "sample", sample_oom_once)
    monkeypatch.setattr(Image.Image, "save", full_disk)
    step, seen = run(small_config, tmp_path / "p")
    assert step == 12 and seen[-1].reason == "max_steps"
    warnings = [e for e in seen if isinstance(e, events.Warning)]
    assert [w.step for w in warnings] == [6, 12]
    assert warnings[0].message.startswith("no preview at step 6: out of memory drawing 4 preview images on cpu: lower "
                                          "preview_count")
    assert re.fullmatch(r"no preview at step 12: could not write .*step_0000012_1steps.png \(No space left on "
                        r"device\): free disk space or choose another folder", warnings[1].message)
    assert [e.step for e in seen if isinstance(e, events.Preview)] == [12]  # drawn, shown, not written
    assert list((tmp_path / "p" / "previews").iterdir()) == []  # no half PNG, no temporary file


def test_a_metrics_line_on_a_full_disk_is_a_warning_and_training_goes_on(small_config, tmp_path, monkeypatch):
    from cmcore import training

    real = training.append_metrics

    def full_at_4_and_6(run_dir, record):
        if record["step"] in (4, 6):
            raise OSError(28, "No space left on device")
        real(run_dir, record)

    monkeypatch.setattr(training, "append_metrics", full_at_4_and_6)
    step, seen = run(small_config, tmp_path / "m")
    assert step == 12
    [warning] = [e for e in seen if isinstance(e, events.Warning)]  # once per stretch of failures
    assert warning.step == 4 and "could not write metrics.jsonl at step 4 (No space left on device)" in warning.message
    assert [m["step"] for m in read_metrics(tmp_path / "m")] == [2, 8, 10, 12]
    assert len([e for e in seen if isinstance(e, events.Progress)]) == 6  # the front ends still see every step


# --- one run, one writer ---------------------------------------------------------------------------------
def test_a_second_trainer_on_a_run_being_trained_is_refused_with_one_line(small_config, tmp_path):
    from cmcore.errors import RunBusyError

    refused = []

    def second_writer(event):
        if isinstance(event, events.Progress) and event.step == 6:
            assert lock_owner(tmp_path / "r")["pid"] == os.getpid()
            with pytest.raises(RunBusyError) as caught:
                Trainer(None, tmp_path / "r", resume=True).run()
            refused.append(str(caught.value))

    run(small_config.replace(max_steps=4, checkpoint_every=2), tmp_path / "r")
    Trainer(small_config.replace(max_steps=8, checkpoint_every=2), tmp_path / "r", resume=True,
            on_event=second_writer).run()
    [message] = refused
    assert re.fullmatch(rf"this run \(.*\) is being trained by pid {os.getpid()} on {re.escape(socket.gethostname())} "
                        r"since .*: stop that process first, or train into another folder", message)
    assert lock_owner(tmp_path / "r") is None and not (tmp_path / "r" / ".lock").exists()
    assert [m["step"] for m in read_metrics(tmp_path / "r")] == [2, 4, 6, 8]


def test_a_start_that_fails_leaves_no_lock_and_no_empty_folder(small_config, tmp_path):
    with pytest.raises(ConfigError, match="data: the folder .*nowhere does not exist"):
        Trainer(small_config.replace(data=str(tmp_path / "nowhere")), tmp_path / "r").run()
    assert not (tmp_path / "r").exists()
    from cmcore.errors import DataError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        Trainer(small_config.replace(data=str(tmp_path / "empty")), tmp_path / "r").run()
    assert not (tmp_path / "r").exists()


def test_resume_refuses_another_model_size_method_or_resolution(small_config, tmp_path):
    run(small_config.replace(max_steps=2), tmp_path / "r")
    for change, message in [({"model": "small"}, "model: .* was trained with model = 'tiny' and cannot be resumed with "
                                                 "'small'"),
                            ({"method": "flow"}, "method: .*'ct'.*'flow'"),
                            ({"resolution": 24}, "resolution: .*16.*24"),
                            ({"parametrization": "reflow"}, "parametrization: .*'blend'.*'reflow'")]:
        config = TrainConfig.load(tmp_path / "r" / "config.toml").replace(max_steps=4, **change)
        with pytest.raises(ConfigError, match=message):
            Trainer(config, tmp_path / "r", resume=True).run()
    assert load_checkpoint(tmp_path / "r").step == 2


# --- paths: stored absolute; a cd run keeps the teacher checkpoint it started with --------------------------
def test_relative_data_and_teacher_paths_are_stored_absolute(small_config, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    for i in range(6):
        Image.new("RGB", (16, 16), (40 * i, 10, 200 - 30 * i)).save(tmp_path / "imgs" / f"{i}.png")
    config = small_config.replace(max_steps=2, preview_every=0)
    run(config.replace(method="flow", data="imgs"), "teacher")
    run(config.replace(method="cd", data="imgs", teacher="teacher"), "cd")
    saved = TrainConfig.load(tmp_path / "cd" / "config.toml")
    here = Path(os.getcwd())
    assert saved.data == str(here / "imgs")
    assert saved.teacher == str((tmp_path / "teacher" / "checkpoints" / "step_0000002.safetensors").resolve())
    assert TrainConfig(data="mnist:data").with_absolute_paths().data == f"mnist:{here / 'data'}"
    assert TrainConfig(data="demo").with_absolute_paths().data == "demo"
    monkeypatch.chdir(tmp_path / "imgs")  # a resume from anywhere finds both
    assert Trainer(saved.replace(max_steps=4), tmp_path / "cd", resume=True).run() == 4


def test_a_cd_run_resumes_from_the_teacher_checkpoint_it_started_with(small_config, tmp_path):
    import shutil

    from safetensors import safe_open

    config = small_config.replace(preview_every=0, max_steps=6, checkpoint_every=6)
    run(config.replace(method="flow"), tmp_path / "teacher")
    run(config.replace(method="cd", teacher=str(tmp_path / "teacher")), tmp_path / "cd")
    first = (tmp_path / "teacher" / "checkpoints" / "step_0000006.safetensors").resolve()
    with safe_open(str(find_checkpoint(tmp_path / "cd")), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["teacher_path"] == str(first) and meta["teacher_step"] == "6" and len(meta["teacher_sha256"]) == 64
    Trainer(config.replace(method="flow", max_steps=12), tmp_path / "teacher", resume=True).run()
    assert latest_step(tmp_path / "teacher") == 12  # the teacher run trained on

    student = Trainer(None, tmp_path / "cd", resume=True)
    student.setup()
    assert student.teacher_record["teacher_step"] == 6 and student.config.teacher == str(first)
    teacher_weights = load_checkpoint(first).weights["ema"]
    assert all(torch.equal(v, teacher_weights[k]) for k, v in student.teacher.state_dict().items())
    student.close()

    backup = tmp_path / "backup.safetensors"
    shutil.copy(first, backup)
    with open(first, "r+b") as fh:  # same size, other bytes
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(ConfigError, match=r"teacher: .*step_0000006.safetensors \(step 6\) has changed since this run "
                                          "started distilling it: put the original file back to resume"):
        Trainer(None, tmp_path / "cd", resume=True).run()
    first.unlink()
    with pytest.raises(ConfigError, match=r"teacher: this run distils .*step_0000006.safetensors \(step 6\), which is "
                                          "gone"):
        Trainer(None, tmp_path / "cd", resume=True).run()
    shutil.copy(backup, first)
    assert Trainer(config.replace(method="cd", teacher=str(tmp_path / "teacher"), max_steps=8), tmp_path / "cd",
                   resume=True).run() == 8  # naming the teacher run is naming it: its step-6 file is used
    with pytest.raises(ConfigError, match="a resumed run cannot change its teacher"):
        Trainer(config.replace(method="cd", teacher=str(tmp_path / "teacher" / "checkpoints" /
                                                          "step_0000012.safetensors"), max_steps=10),
                tmp_path / "cd", resume=True).run()
