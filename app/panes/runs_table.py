"""How a run shows in the Runs table: its cells (text and the key it sorts by), the score's words and the
details line of the selected run. Plain functions over cmcore.runs.RunInfo and table items, no pane state."""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTableWidgetItem

PATH_ROLE = int(Qt.ItemDataRole.UserRole) + 1
COLUMNS = ["Run", "Method", "Steps", "Last loss", "Score", "Updated", "Status"]
STATUS_COLUMN = COLUMNS.index("Status")
NUMBER_COLUMNS = (COLUMNS.index("Steps"), COLUMNS.index("Last loss"), COLUMNS.index("Score"))


def score_details(info: Any) -> str:
    """What the details line says of a run's score: its best checkpoint's, on the held-out images."""
    if getattr(info, "score", None) is None:
        return "no score yet (a run is scored on held-out images at each checkpoint)"
    step = getattr(info, "best_step", None)
    where = f" at step {step:,}" if step is not None else ""
    return f"score {info.score:.3g}{where} (best checkpoint, 1 step, held-out images; lower is better)"


class SortItem(QTableWidgetItem):
    """Sorts by a number stored in UserRole instead of the displayed text; a number column's blank
    (None in UserRole) sorts last in either order."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.data(Qt.ItemDataRole.UserRole), other.data(Qt.ItemDataRole.UserRole)
        if (a is None) != (b is None):
            table = self.tableWidget()
            descending = table is not None and \
                table.horizontalHeader().sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
            return (a is None) == descending  # Qt sorts descending by asking "b < a"
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return a < b
        # not super().__lt__: the C++ operator is virtual and would call back into this method
        return self.text().lower() < other.text().lower()


def row_items(r: Any) -> list[SortItem]:
    """The cells of one RunInfo, in COLUMNS order (Status is filled in by the pane)."""
    error = getattr(r, "error", None)
    step, max_steps = r.step or 0, r.max_steps or 0
    score = getattr(r, "score", None)
    updated = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.updated)) if r.updated else "—"
    cells = [
        (r.name, r.name), ((r.method or "—").upper(), r.method or ""),
        ("—" if error else f"{step:,} / {max_steps:,}", step / max(1, max_steps)),
        ("—" if r.last_loss is None else f"{r.last_loss:.4g}", r.last_loss),
        ("" if score is None else f"{score:.3g}", score),
        (updated, r.updated or 0.0),
        ("", ""),
    ]
    items = []
    for c, (text, key) in enumerate(cells):
        item = SortItem(text)
        item.setData(Qt.ItemDataRole.UserRole, key)
        if c == 0:
            item.setData(PATH_ROLE, str(r.path))
            item.setToolTip(str(r.path))
        if c == COLUMNS.index("Score"):
            item.setToolTip(score_details(r))
        if c in NUMBER_COLUMNS:
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        items.append(item)
    return items


def describe_run(info: Any) -> str:
    """The details line of a listed run ("" for none or an unreadable one)."""
    if info is None or getattr(info, "error", None):
        return ""
    loss = "—" if info.last_loss is None else f"{info.last_loss:.4g}"
    return (f"{info.name}: {(info.method or '—').upper()} · {info.step:,} / {info.max_steps:,} steps · "
            f"last loss {loss} · {score_details(info)}")
