"""The command line: exit codes, one-line errors, files written."""
import subprocess
import sys

import pytest
from PIL import Image

from cmcore.cli import main


def test_train_sample_info(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", "demo", "--method", "ct", "--out", str(out), "--resolution", "16",
                 "--batch-size", "4", "--max-steps", "4", "--device", "cpu", "--quiet"])
    assert code == 0
    assert main(["sample", str(out), "--steps", "2", "--num", "3", "--seed", "5", "--out", str(tmp_path / "s"),
                 "--grid", str(tmp_path / "grid.png")]) == 0
    files = sorted((tmp_path / "s").glob("*.png"))
    assert len(files) == 3
    with Image.open(files[0]) as im:
        assert im.size == (16, 16) and im.text["steps"] == "2" and im.text["seed"] == "5"
    assert (tmp_path / "grid.png").is_file()
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr()
    assert "method     : ct" in info.out
    assert "score      : " in info.out and "best       : step 4, score " in info.out  # the run's end is scored
    assert "step 4: score 1 step " in info.err  # said while training, --quiet or not
    # resume to a later step
    assert main(["train", "--out", str(out), "--resume", "--max-steps", "6", "--quiet"]) == 0


def test_no_score_trains_on_every_image_and_scores_nothing(tmp_path, capsys):
    from cmcore.rundir import best_step, read_metrics
    from cmcore.split import read_split

    out = tmp_path / "run"
    assert main(["train", "--data", "demo", "--out", str(out), "--resolution", "16", "--batch-size", "4",
                 "--max-steps", "2", "--device", "cpu", "--quiet", "--no-score"]) == 0
    assert read_split(out) is None and best_step(out) is None
    assert not any("score" in r for r in read_metrics(out)) and "score" not in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["train", "--data", "/no/such/folder", "--out", "{tmp}/r", "--max-steps", "1"], "/no/such/folder"),
    (["train", "--data", "demo", "--method", "cd", "--out", "{tmp}/r"], "teacher"),
    (["train", "--data", "demo", "--out", "{tmp}/r", "--resolution", "12"], "resolution"),
    (["sample", "{tmp}/nothing", "--out", "{tmp}/s"], "does not exist"),
    (["info", "{tmp}"], "no checkpoint"),
])
def test_bad_input_exits_nonzero_with_one_line(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_a_full_disk_exits_nonzero_with_one_line(tmp_path, capsys, monkeypatch):
    import cmcore.checkpoint as ck
    from safetensors import SafetensorError

    def full(tensors, path, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ck, "save_file", full)
    assert main(["train", "--data", "demo", "--out", str(tmp_path / "r"), "--resolution", "16", "--batch-size", "4",
                 "--max-steps", "2", "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not save the step-2 checkpoint") and "No space left on device" in err
    assert "\n" not in err


def test_module_entry_point_has_help():
    result = subprocess.run([sys.executable, "-m", "cmcore", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--max-minutes" in result.stdout
    result = subprocess.run([sys.executable, "-m", "cmcore", "bogus"], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr


# --- issue 22: one line for each of these, exit code 2, no traceback ------------------------------------------
TINY = ["--data", "demo", "--resolution", "16", "--batch-size", "4", "--max-steps", "2", "--device", "cpu", "--quiet"]


@pytest.fixture
def tiny_run(tmp_path):
    assert main(["train", "--out", str(tmp_path / "run"), *TINY]) == 0
    return tmp_path / "run"


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_resuming_with_another_model_size_is_one_line(tiny_run, capsys):
    assert main(["train", "--out", str(tiny_run), "--resume", "--model", "small", "--max-steps", "4", "--quiet"]) == 2
    _one_line_error(capsys, "model: ", "was trained with model = 'tiny' and cannot be resumed with 'small'")


def test_resuming_a_run_someone_trains_is_one_line(tiny_run, capsys):
    import json
    import socket

    (tiny_run / ".lock").write_text(json.dumps({"pid": 1, "host": socket.gethostname() + "-other", "started": 0}))
    assert main(["train", "--out", str(tiny_run), "--resume", "--max-steps", "4", "--quiet"]) == 2
    _one_line_error(capsys, "is being trained by pid 1 on")


def test_a_full_disk_while_sampling_is_one_line_and_leaves_no_temporary_file(tiny_run, tmp_path, capsys, monkeypatch):
    def half_then_full(self, fp, *args, **kwargs):
        with open(fp, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_then_full)
    assert main(["sample", str(tiny_run), "--num", "2", "--out", str(tmp_path / "s")]) == 2
    _one_line_error(capsys, "could not write", "No space left on device")
    assert list((tmp_path / "s").iterdir()) == []


def test_a_missing_data_folder_or_teacher_names_the_key(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *TINY[2:], "--data", str(tmp_path / "nowhere")]) == 2
    _one_line_error(capsys, "data: the folder", "nowhere does not exist")
    assert main(["train", "--out", str(tmp_path / "r"), *TINY, "--method", "cd", "--teacher", str(tmp_path / "t")]) == 2
    _one_line_error(capsys, "teacher: ", "does not exist")
    assert not (tmp_path / "r").exists()
