"""A portable model: a folder another person can use without this app's run folder.

    OUT/model.safetensors   the evaluation-EMA weights, with the settings in the file's metadata
    OUT/config.toml         the run's (resolved) TrainConfig
    OUT/model.onnx          the consistency function f(x, t): inputs x [B, C, R, R] and t [B], output x0
    OUT/samples.png         a grid of samples at 1 and 4 steps
    OUT/README.md           the model card: what it is, how it was trained, how to load it

`cmcore sample OUT`, the gallery and `load_generator(OUT)` read the folder like a run.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .rundir import PORTABLE_WEIGHTS as WEIGHTS
from .rundir import scored

ONNX = "model.onnx"


def export_model(source: str | Path, out: str | Path, onnx: bool = True, seed: int = 0) -> Path:
    """Write the portable folder for a run or checkpoint; returns the folder."""
    from safetensors.torch import save_file

    from .checkpoint import FORMAT, load_checkpoint
    from .export import make_grid, save_png
    from .generator import load_generator
    from .nets import count_parameters
    from .rundir import DATA_REPORT, atomic_write_bytes, atomic_write_via, read_metrics, run_name, run_of

    out = Path(out)
    ckpt = load_checkpoint(source)
    weights = ckpt.weights.get("ema") or ckpt.weights["model"]
    gen = load_generator(ckpt.path)
    meta = {**{k: v for k, v in ckpt.meta.items() if k in ("format", "version", "step", "config", "channels",
                                                               "resolution", "num_params", "class_names")},
            "format": FORMAT, "num_params": str(count_parameters(gen.model))}
    tensors = {f"ema.{k}": v.contiguous() for k, v in weights.items()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_via(out / WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata=meta))
    gen.config.save(out / "config.toml")
    grid = make_grid(np.concatenate([gen.sample(8, 1, seed), gen.sample(8, 4, seed)]), nrow=8)
    save_png(out / "samples.png", grid, {"steps": "1 (top), 4 (bottom)", "seed": str(seed)})
    if onnx:
        export_onnx(gen.model, gen.channels, gen.resolution, out / ONNX, len(gen.class_names))
    run = run_of(ckpt.path)
    report = json.loads((run / DATA_REPORT).read_text()) if run is not None and (run / DATA_REPORT).is_file() else None
    records = read_metrics(run) if run is not None else []
    card = model_card(run_name(ckpt.path), gen, ckpt.step, report, records, onnx)
    atomic_write_bytes(out / "README.md", card.encode())
    return out


def export_onnx(model, channels: int, resolution: int, path: Path, num_classes: int = 0) -> None:
    """f(x, t) as ONNX with a dynamic batch: every sampler (one step, multistep, ODE) works on it. A
    class-conditional model takes a third input, `label` (int64 [B], the index into its class names)."""
    from .errors import ConfigError

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError("writing model.onnx needs the onnx extra: pip install 'consistency-studio[onnx]' "
                          "(or export with --no-onnx)") from None
    model = model.float().eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    x, t = torch.zeros(2, channels, resolution, resolution), torch.tensor([1.0, 0.5])
    if not num_classes:
        torch.onnx.export(model, (x, t), str(path), input_names=["x", "t"], output_names=["x0"],
                          dynamic_shapes={"x": {0: batch}, "t": {0: batch}}, dynamo=True, verbose=False)
        return
    label = torch.tensor([0, num_classes - 1])
    torch.onnx.export(model, (x, t, label), str(path), input_names=["x", "t", "label"], output_names=["x0"],
                      dynamic_shapes={"x": {0: batch}, "t": {0: batch}, "labels": {0: batch}}, dynamo=True,
                      verbose=False)


def model_card(name: str, gen, step: int, report: dict | None, records: list[dict], onnx: bool) -> str:
    c = gen.config
    losses = [r for r in records if "loss" in r]
    last = losses[-1] if losses else None
    scores = [s["score"] for s in scored(records) if s["step"] == step]
    score = ("; ".join(f"{v:.4g} at {k} step{'s' if k != 1 else ''}" for k, v in scores[-1].items())
             + " (on the run's held-out images, lower is better)") if scores else "not measured for this checkpoint"
    names = gen.class_names
    classes = f"| classes | {len(names)}: {', '.join(names)} (label i is the i-th) |\n" if names else ""
    label_in = ', "label": np.arange(4) % ' + str(len(names)) if names else ""
    label_doc = f", `label` int64 [B] (the class index, 0–{len(names) - 1})" if names else ""
    data = (f"{report['num_images']:,} images from `{report['source']}`, {report['resolution']} px, "
            f"{'RGB' if report['channels'] == 3 else 'greyscale'}") if report else f"`{c.data}`, {gen.resolution} px"
    method = {"ct": "consistency training (CT)", "cd": "consistency distillation (CD) from a flow teacher",
              "flow": "a flow-matching (ReFlow) teacher"}[c.method]
    sampler = ("`ode` (Euler on dx/dt = v; 16 or more steps)" if c.method == "flow"
               else "`multistep`: 1 step is f(x1, 1); 2–4 steps are sharper")
    loss = f"; last logged loss {last['loss']:.4g} at step {last['step']}" if last and "loss" in last else ""
    onnx_part = f"""
## With ONNX Runtime (no PyTorch, no Consistency Studio)

`model.onnx` is the consistency function f(x, t): `x` float32 [B, {gen.channels}, {gen.resolution}, {gen.resolution}], `t`
float32 [B] in [0, 1]{label_doc}, output the clean estimate x0, images in [-1, 1].

```python
import numpy as np, onnxruntime as ort
f = ort.InferenceSession("model.onnx")
x1 = np.random.default_rng(0).standard_normal((4, {gen.channels}, {gen.resolution}, {gen.resolution}), dtype=np.float32)
x0 = f.run(None, {{"x": x1, "t": np.ones(4, np.float32){label_in}}})[0]          # one step
for tau in (0.75, 0.5, 0.25):                                           # three more (multistep)
    z = np.random.default_rng().standard_normal(x0.shape, dtype=np.float32)
    x0 = f.run(None, {{"x": (1 - tau) * x0 + tau * z, "t": np.full(4, tau, np.float32){label_in}}})[0]
```
""" if onnx else ""
    return f"""# {name}

A consistency model made with Consistency Studio: {method}.

![samples at 1 step (top) and 4 steps (bottom)](samples.png)

| | |
|---|---|
| data | {data} |
| model | `{c.model}` U-Net, {sum(p.numel() for p in gen.model.parameters()):,} parameters, `{c.parametrization}` parametrization |
| training | {step:,} steps of batch {c.batch_size}, learning rate {c.lr:g}, seed {c.seed}{loss} |
| sampling | {sampler} |
{classes}| quality score | {score} |

## With Consistency Studio

```bash
cmcore sample . --steps 4 --num 16 --seed 0 --out samples/
```
or open this folder in the app's Gallery, or in Python:
```python
from cmcore import load_generator
images = load_generator(".").sample(16, steps=4, seed=0)   # uint8, N×H×W×C
```
{onnx_part}"""
