"""`cmcore train | sample | info`: the command-line front end over the same API as the app."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import LR_FROM_SCRATCH, LR_FROM_TEACHER, TrainConfig
from .errors import CmcoreError

EPILOG = "Runs, checkpoints and samples are described in the README."


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cmcore", description="Train and sample consistency models.", epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a ct, cd or flow model",
                       description="Train a model into RUN_DIR. Under torchrun (torchrun --nproc-per-node N -m cmcore "
                       "train ...) N processes train the one run, on N GPUs or CPU processes; --batch-size stays the "
                       "whole step's batch, split across them.")
    t.add_argument("--data", help="folder | demo | mnist:ROOT | fashionmnist:ROOT | cifar10:ROOT")
    t.add_argument("--method", choices=("ct", "cd", "flow"))
    t.add_argument("--out", required=True, type=Path, help="run directory")
    t.add_argument("--teacher", help="flow run directory or checkpoint (cd)")
    t.add_argument("--resolution", type=int)
    t.add_argument("--channels", choices=("auto", "1", "3"))
    t.add_argument("--classes", choices=("auto", "on", "off"),
                   help="train with classes: auto (the default) when a folder's images sit in 2+ sub-folders, named "
                        "by them; on: required (the demo's and torchvision sets' own labels too); off: never")
    t.add_argument("--model", choices=("tiny", "small", "base"))
    t.add_argument("--batch-size", type=int)
    t.add_argument("--max-steps", type=int, help="stop after N steps (default 20000)")
    t.add_argument("--max-minutes", type=float, help="stop after M minutes of training (default 10; 0 = no limit)")
    t.add_argument("--lr", help=f"learning rate, or auto (the default: {LR_FROM_SCRATCH:g}, or {LR_FROM_TEACHER:g} "
                   "for a CD student, which starts from its teacher)")
    t.add_argument("--device", help="auto | cpu | cuda:N | mps")
    t.add_argument("--seed", type=int)
    t.add_argument("--config", type=Path, help="a TOML file with any TrainConfig fields (flags override it)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-score", dest="score", action="store_false", default=None,
                   help="train on every image and score no checkpoint (default: hold out 2 %% and score each)")
    t.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write the metrics for TensorBoard to RUN/tensorboard (needs: pip install tensorboard)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw images from a run or checkpoint")
    s.add_argument("source", type=Path, help="run directory or .safetensors checkpoint")
    s.add_argument("--steps", type=int, default=1)
    s.add_argument("--num", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    s.add_argument("--sampler", choices=("multistep", "ode"), default="multistep")
    s.add_argument("--grid", type=Path, help="also write all images as one grid PNG")
    s.add_argument("--device", default="cpu")
    s.add_argument("--class", dest="class_", metavar="NAME|INDEX",
                   help="a class-conditional model: draw this class (default: every class in turn)")

    e = sub.add_parser("edit", help="edit with a trained model: inpaint, interpolate, img2img, colorize, upscale",
                       description="Zero-shot editing with the multistep sampler (white mask pixels are filled).")
    e.add_argument("source", type=Path, help="run directory or .safetensors checkpoint")
    e.add_argument("--mode", required=True, choices=("inpaint", "interpolate", "img2img", "colorize", "upscale"))
    e.add_argument("--image", type=Path, help="the input picture (any size: fitted like the training data)")
    e.add_argument("--mask", type=Path, help="inpaint: white pixels are filled")
    e.add_argument("--seeds", help="interpolate: two seeds, A,B")
    e.add_argument("--strength", type=float, default=0.5, help="img2img: 0 keeps the image, 1 ignores it")
    e.add_argument("--class", dest="class_", metavar="NAME|INDEX",
                   help="a class-conditional model: edit towards this class (default: result i gets class i)")
    e.add_argument("--steps", type=int, default=4)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--num", type=int, default=4)
    e.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    e.add_argument("--device", default="cpu")

    x = sub.add_parser("export", help="write a portable model folder: weights, config, ONNX, model card",
                       description="Write a folder another person can use without this app: the evaluation-EMA "
                       "weights (safetensors), config.toml, model.onnx of f(x, t), samples.png and a README model card.")
    x.add_argument("source", type=Path, help="run directory or .safetensors checkpoint")
    x.add_argument("--out", type=Path, required=True, help="the folder to write")
    x.add_argument("--no-onnx", action="store_true", help="skip the ONNX file")

    b = sub.add_parser("bench", help="time our training step against a plain baseline, side by side",
                       description="Time the training step against a plain baseline (round robin, median); "
                       "also sampling latency and the data rate. --json: one JSON object on the last line.")
    b.add_argument("--method", choices=("ct", "cd", "flow"), default="ct")
    b.add_argument("--model", choices=("tiny", "small", "base"), default="tiny")
    b.add_argument("--resolution", type=int, default=32)
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--device", default="cpu")
    b.add_argument("--data", default="demo")
    b.add_argument("--rounds", type=int, default=5, help="rounds of the round robin (median over them)")
    b.add_argument("--steps", type=int, default=4, help="steps per arm and round, spread over the curriculum")
    b.add_argument("--no-sampling", action="store_true", help="skip the sampling-latency table")
    b.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")

    q = sub.add_parser("score", help="a quality score of a run or checkpoint against held-out images of its data",
                       description="Score samples at each step count against the run's held-out images (all its "
                       "data when it recorded no split; --data: another data set): lower is better. Also looks "
                       "for near-copies of training images. --json: one JSON object on the last line.")
    q.add_argument("source", type=Path, help="run directory or .safetensors checkpoint")
    q.add_argument("--steps", default="1,2,4", help="sampler step counts, comma-separated (default 1,2,4)")
    q.add_argument("--data", help="score against this data instead of the run's own (folder | demo | NAME:ROOT)")
    q.add_argument("--num", type=int, default=256, help="samples per step count (default 256)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--sampler", choices=("multistep", "ode"), help="default: the run's own")
    q.add_argument("--device", default="cpu")
    q.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")

    i = sub.add_parser("info", help="describe a run or checkpoint")
    i.add_argument("source", type=Path)
    return p


FLAG_FIELDS = ("data", "method", "teacher", "resolution", "channels", "model", "batch_size", "max_steps",
               "max_minutes", "lr", "device", "seed", "score", "tensorboard", "classes")


def _train(args) -> int:
    import signal
    import threading
    import time

    from . import distributed
    from .rundir import has_checkpoint, latest_step
    from .training import Trainer

    main_rank = distributed.env_rank() == 0  # under torchrun rank 0 speaks for the run

    if args.resume:
        config = TrainConfig.load(args.out / "config.toml") if (args.out / "config.toml").exists() else None
        if config is None:
            raise CmcoreError(f"{args.out} holds no run to resume")
    else:
        config = TrainConfig.load(args.config) if args.config else TrainConfig()
    overrides = {k: getattr(args, k) for k in FLAG_FIELDS if getattr(args, k) is not None}
    config = TrainConfig.from_dict({**config.to_dict(), **overrides}).validate()
    bar = None if args.quiet or not main_rank else _ProgressBar()
    trainer = Trainer(config, args.out, resume=args.resume, on_event=lambda event: _on_train_event(event, bar))
    resume_hint = f"cmcore train --out {args.out} --resume"
    signals: list[int] = []
    first_signal: list[float] = []

    def stop(signum, frame) -> None:  # Ctrl-C: finish the step, save it, then exit
        if signals:
            # under torchrun Ctrl-C reaches a process twice, from the terminal and from the launcher: one request
            if time.monotonic() - first_signal[0] < 2.0:
                return
            raise KeyboardInterrupt  # a second one: quit now, without saving
        signals.append(signum)
        first_signal.append(time.monotonic())
        trainer.request_stop()
        if main_rank:
            print("\nstopping: saving a checkpoint of this step (Ctrl-C again to quit without saving)", file=sys.stderr)

    handled = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {sig: signal.signal(sig, stop) for sig in handled}
    try:
        step = trainer.run()
    except KeyboardInterrupt:
        saved = f"resume from step {latest_step(args.out)} with: {resume_hint}" if has_checkpoint(args.out) else \
            "no checkpoint was saved: start the run again"
        print(f"\ninterrupted; {saved}", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # DDP's gradient all-reduce fails inside backward(): another process is gone
        lost = distributed.lost_contact(exc)
        if lost is None:
            raise
        raise lost from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if bar:
            bar.close()
        distributed.teardown()
    if not main_rank:
        return 128 + signals[0] if signals else 0
    if signals:
        print(f"interrupted at step {step}: checkpoint saved; resume with: {resume_hint}", file=sys.stderr)
        return 128 + signals[0]
    print(f"done at step {step}: {args.out}")
    return 0


def _on_train_event(event, bar) -> None:
    from . import events

    if bar is not None:
        bar(event)
    line = None
    if isinstance(event, events.Warning):  # shown with --quiet too
        line = f"warning: {event.message}"
    elif isinstance(event, events.Scored):
        scores = ", ".join(f"{k} step{'s' if k > 1 else ''} {v:.4g}" for k, v in event.scores.items())
        line = f"step {event.step}: score {scores} (lower is better){' - best so far' if event.best else ''}"
    if line is not None:
        if bar is not None and bar.bar is not None:
            bar.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)


class _ProgressBar:
    """tqdm bar driven by the Trainer's events: percent done (steps or clock), loss, images/s, ETA."""

    def __init__(self):
        self.bar = None

    def __call__(self, event) -> None:
        from tqdm import tqdm

        from . import events

        if isinstance(event, events.Started):
            # The run ends at max_steps or max_minutes, whichever comes first, so the bar counts
            # percent and shows the Trainer's own ETA rather than tqdm's step-rate guess.
            self.name = f"{Path(event.run_dir).name} [{event.device}]"
            self.bar = tqdm(total=100, unit="%", dynamic_ncols=True, desc=self.name,
                            bar_format="{percentage:3.0f}%|{bar}| {desc}")
        elif isinstance(event, events.Progress) and self.bar is not None:
            self.bar.n = round(100 * event.fraction, 1)
            eta = "?" if event.eta_s is None else f"{int(event.eta_s) // 60}:{int(event.eta_s) % 60:02d}"
            self.bar.set_description_str(f"{self.name} step {event.step}, loss {event.loss:.4g}, n {event.n:.3g}, "
                                         f"{event.images_per_s:.0f} img/s, ETA {eta}")
        elif isinstance(event, events.CheckpointSaved) and self.bar is not None:
            self.bar.write(f"checkpoint: {event.path}")
        elif isinstance(event, events.RolledBack) and self.bar is not None:
            self.bar.write(f"loss spike (x{event.ratio:.1f}) at step {event.step}: rolled back to the weights of step "
                           f"{event.to_step}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _sample(args) -> int:
    from .export import image_metadata, image_stem, make_grid, save_png, unique_path
    from .generator import load_generator
    from .rundir import run_name

    if args.steps < 1 or args.num < 1:
        raise CmcoreError("--steps and --num must be at least 1")
    gen = load_generator(args.source, args.device)
    labels = gen.labels_for(args.num, args.class_)  # ConfigError for an unknown class, or a model without any
    images = gen.sample(args.num, args.steps, args.seed, args.sampler,
                        classes=None if labels is None else labels.tolist())
    args.out.mkdir(parents=True, exist_ok=True)
    run = run_name(gen.source)
    meta = dict(run=run, checkpoint=str(gen.source), step=gen.step, method=gen.method, sampler=args.sampler,
                steps=args.steps, seed=args.seed, count=args.num)
    # the class in the PNG text chunks too: enough to draw the image again
    named = {"class": gen.class_names[int(labels[0])]} if args.class_ is not None else {}
    stem = image_stem(run, gen.step, args.sampler, args.steps, args.seed)
    for i, image in enumerate(images):
        save_png(unique_path(args.out / f"{stem}_{i:03d}.png"), image, {**image_metadata(**meta, index=i), **named})
    if args.grid:
        save_png(args.grid, make_grid(images), {**image_metadata(**meta), **named})
    print(f"wrote {len(images)} images to {args.out}")
    return 0


def _info(args) -> int:
    from .checkpoint import load_checkpoint
    from .rundir import best_step, read_metrics, run_of
    from .rundir import scored as scored_lines

    ckpt = load_checkpoint(args.source)
    c = ckpt.config
    print(f"checkpoint : {ckpt.path}")
    print(f"method     : {c.method}   step {ckpt.step} of {c.max_steps}")
    print(f"model      : {c.model} ({ckpt.meta.get('num_params', '?')} parameters), {c.parametrization}")
    print(f"data       : {c.data}  {ckpt.meta.get('resolution', c.resolution)}px, {ckpt.meta.get('channels', '?')} channels")
    if ckpt.class_names:
        print(f"classes    : {len(ckpt.class_names)}: {', '.join(ckpt.class_names)}")
    run_dir = run_of(ckpt.path)
    records = read_metrics(run_dir) if run_dir is not None else []
    losses = [r for r in records if isinstance(r.get("loss"), (int, float))]
    if losses:
        print(f"last loss  : {losses[-1]['loss']:.5g} at step {losses[-1]['step']}")
    scored = {s["step"]: s["score"] for s in scored_lines(records)}
    if ckpt.step in scored:
        print(f"score      : {_scores(scored[ckpt.step])} (on held-out images, lower is better)")
    best = best_step(run_dir) if run_dir is not None else None
    if best is not None and best in scored:
        print(f"best       : step {best}, score {_scores(scored[best])}")
    return 0


def _scores(table: dict[int, float]) -> str:
    return ", ".join(f"{v:.4g} at {k} step{'s' if k != 1 else ''}" for k, v in table.items())


def _edit(args) -> int:
    from . import editing
    from .export import image_metadata, image_stem, save_png, unique_path
    from .generator import load_generator
    from .rundir import run_name
    from .sampling import to_uint8

    if args.steps < 1 or args.num < 1:
        raise CmcoreError("--steps and --num must be at least 1")
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        raise CmcoreError(f"--seeds must be two whole numbers like 3,7, got {args.seeds!r}") from None
    gen = load_generator(args.source, args.device)
    images = to_uint8(editing.run(gen, args.mode, steps=args.steps, seed=args.seed, num=args.num, image=args.image,
                                  mask=args.mask, seeds=seeds, strength=args.strength, classes=args.class_))
    run = run_name(gen.source)
    settings = {"mode": args.mode, "image": str(args.image or ""), "mask": str(args.mask or ""),
                "seeds": args.seeds or "", "strength": str(args.strength) if args.mode == "img2img" else ""}
    if args.class_ is not None:
        settings["class"] = gen.class_names[gen.class_index(args.class_)]
    stem = image_stem(run, gen.step, f"edit-{args.mode}-", args.steps, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        meta = image_metadata(run=run, checkpoint=str(gen.source), step=gen.step, method=gen.method, sampler="multistep",
                              steps=args.steps, seed=args.seed, count=args.num, index=i)
        save_png(unique_path(args.out / f"{stem}_{i:03d}.png"), image, {**meta, **{k: v for k, v in settings.items() if v}})
    print(f"wrote {len(images)} images to {args.out}")
    return 0


def _export(args) -> int:
    from .portable import export_model

    out = export_model(args.source, args.out, onnx=not args.no_onnx)
    print(f"exported to {out}")
    return 0


def _bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def _score(args) -> int:
    from .score_report import main as score_main

    return score_main(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"train": _train, "sample": _sample, "info": _info, "bench": _bench, "edit": _edit, "export": _export,
                "score": _score}[args.command](args)
    except CmcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
