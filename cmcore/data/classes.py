"""Class labels for class-conditional training: which images belong to which class, and when a load has any.

The setting (TrainConfig.classes) is one of CLASS_SETTINGS:

* ``auto`` (the default): a folder whose images sit in two or more sub-folders is trained with classes, the
  top-level sub-folder names (sorted) as class names, an image's class the sub-folder it is under (at any
  depth). A folder that also has images directly in it is trained without classes, and the report says why:
  those images belong to no class, and leaving them out silently would train on less than was chosen. The
  demo set and the torchvision sets stay unconditional, as before classes existed.
* ``on``: classes are required: a folder as above (else one line saying why not), or the built-in labels of
  the demo and torchvision sets.
* ``off``: never; the classes found are still listed in the report.

A folder's labels are derived from the relative paths of its loaded files, never stored: the decoded-folder
cache keys on those paths (cmcore.data.cache.cache_key), so a cached folder gives the same labels.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from ..errors import DataError

CLASS_SETTINGS = ("auto", "on", "off")


def folder_classes(relatives: Sequence[str]) -> tuple[tuple[str, ...], torch.Tensor | None, str]:
    """(class names, one label per file, note) for the relative paths ("a/b.png") of a folder's loaded files,
    in load order: ((), None, why) when the folder has no classes (the note is "" when it has no sub-folders)."""
    tops = [rel.split("/", 1)[0] if "/" in rel else None for rel in relatives]
    names = tuple(sorted({t for t in tops if t is not None}))
    if len(names) < 2:
        return (), None, ""
    loose = sum(t is None for t in tops)
    if loose:
        return (), None, (f"{loose} image(s) sit directly in the folder, not in a class sub-folder: move them "
                          "into one to train with classes")
    index = {name: i for i, name in enumerate(names)}
    return names, torch.tensor([index[t] for t in tops], dtype=torch.int64), ""


def class_counts(names: Sequence[str], labels: torch.Tensor) -> dict[str, int]:
    """{class name: images}, in class order."""
    counts = Counter(labels.tolist())
    return {name: counts.get(i, 0) for i, name in enumerate(names)}


def check_setting(classes: str) -> str:
    value = str(classes).strip().lower()
    if value not in CLASS_SETTINGS:
        raise DataError(f"classes must be one of {', '.join(CLASS_SETTINGS)}, got {classes!r}")
    return value


def choose(setting: str, names: tuple[str, ...], builtin: bool, note: str, source: str) -> bool:
    """Whether a load trains with its classes `names` (found in a folder, or a set's `builtin` labels)."""
    if setting == "off":
        return False
    if setting == "on" and not names:
        why = note or "its images must sit in two or more sub-folders, one per class"
        raise DataError(f"classes = on, but {source} has no classes: {why}")
    return bool(names) and (setting == "on" or not builtin)
