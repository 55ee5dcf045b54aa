"""The decoded-folder cache in the Data pane: how much it holds, its limit (kept in the settings), a Clear button.

cmcore.data imports torch, so nothing here touches the engine before `set_engine_ready`; the
limit chosen meanwhile is applied then.
"""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QWidget

from .. import settings
from ..icons import icon_button
from .common import muted

DEFAULT_CACHE_LIMIT_GB = 4.0  # cmcore.data.DEFAULT_CACHE_LIMIT_BYTES, without importing torch at start-up


class CacheControls(QWidget):
    cleared = Signal(int)  # bytes freed by the Clear button

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine_ready = False
        self.label = muted("")
        self.limit = QDoubleSpinBox()
        self.limit.setRange(0.0, 1024.0)
        self.limit.setDecimals(1)
        self.limit.setSingleStep(0.5)
        self.limit.setSuffix(" GB")
        self.limit.setSpecialValueText("no cache")
        self.limit.setToolTip("Decoded folders are cached so the next run starts at once; the least "
                              "recently used entries go when the cache grows past this")
        self.limit.setValue(float(settings.get("data/cache_limit_gb", DEFAULT_CACHE_LIMIT_GB)))
        self.clear_button = icon_button("trash", "Clear cache")

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.label, muted("limit"), self.limit, self.clear_button):
            layout.addWidget(widget)
        self.limit.valueChanged.connect(self._limit_changed)
        self.clear_button.clicked.connect(self.clear)

    def set_engine_ready(self, ready: bool) -> None:
        self.engine_ready = ready
        if ready:
            self._limit_changed(self.limit.value())

    def _limit_changed(self, gigabytes: float) -> None:
        settings.set("data/cache_limit_gb", gigabytes)
        if not self.engine_ready:
            return
        from cmcore.data import prune_cache, set_cache_limit

        set_cache_limit(int(gigabytes * 1024**3))
        prune_cache()
        self.show_size()

    def clear(self) -> None:
        if not self.engine_ready:
            return
        from cmcore.data import clear_cache

        freed = clear_cache()
        self.show_size()
        self.cleared.emit(freed)

    def show_size(self) -> None:
        if not self.engine_ready:
            return
        from cmcore.data import cache_size

        self.label.setText(f"cache {size_text(cache_size())}")


def size_text(num_bytes: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:,.1f} {unit}"
    return f"{num_bytes} bytes"
