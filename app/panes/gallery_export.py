"""The gallery's export bar (a mixin of GalleryPane): select, export the images, a grid, a GIF or the
model, and the export folder. The writing itself is app.exporting's, in the pane's `exporting` runner."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QPushButton

from cmcore.rundir import run_of

from .. import dialogs, settings
from ..exporting import export_gif, export_grid, export_images, export_model
from ..icons import icon_button
from .common import card, muted, row


class GalleryExport:
    """Needs the pane's result, grid, source, busy label, `exporting` runner and status_message."""

    def _build_export_card(self, layout) -> None:
        self.select_all = QPushButton("Select all")
        self.select_none = QPushButton("Select none")
        self.export_selected = icon_button("export", "Export selected")
        self.export_all = icon_button("export", "Export all")
        self.export_grid_button = icon_button("grid", "Export grid")
        self.export_gif_button = icon_button("film", "Export GIF")
        self.export_gif_button.setToolTip("Animated GIF of the multistep refinement (the seed's images)")
        self.export_model_button = icon_button("save", "Export model")
        self.export_model_button.setToolTip("A folder anyone can use without this app: the weights, settings, "
                                            "an ONNX file of f(x, t) and a model card (cmcore export)")
        self.export_folder_label = muted("")
        self.export_folder_label.setMaximumWidth(520)
        self.change_folder = icon_button("folder", "Export to…")
        self.open_export = icon_button("open-external", "")
        self.open_export.setToolTip("Open the export folder")
        export_card, ec = card()
        ec.addLayout(row(self.select_all, self.select_none, 12, self.export_selected, self.export_all,
                         self.export_grid_button, self.export_gif_button, self.export_model_button, None,
                         self.change_folder,
                         self.open_export))
        ec.addLayout(row(None, self.export_folder_label))
        layout.addWidget(export_card)
        self.select_all.clicked.connect(lambda: self.grid.set_all_selected(True))
        self.select_none.clicked.connect(lambda: self.grid.set_all_selected(False))
        self.grid.selection_changed.connect(self._update_buttons)
        self.export_selected.clicked.connect(lambda: self.export("selected"))
        self.export_all.clicked.connect(lambda: self.export("all"))
        self.export_grid_button.clicked.connect(lambda: self.export("grid"))
        self.export_gif_button.clicked.connect(lambda: self.export("gif"))
        self.export_model_button.clicked.connect(lambda: self.export("model"))
        self.change_folder.clicked.connect(self._choose_export_folder)
        self.open_export.clicked.connect(self._open_export_folder)

    # --- export ------------------------------------------------------------------------------------
    def export_folder(self) -> Path:
        chosen = settings.get_str("gallery/export_dir")
        if chosen:
            return Path(chosen)
        if self.result is not None:
            checkpoint = Path(self.result.checkpoint)
            return (run_of(checkpoint) or checkpoint.parent) / "exports"
        return Path.home()

    def export(self, what: str, folder: Path | None = None) -> bool:
        """what: selected | all | grid | gif. Runs in the background; False if nothing to do."""
        if self.result is None or self.exporting.busy:
            return False
        folder = Path(folder) if folder else self.export_folder()
        result = self.result
        if what == "selected":
            indices = self.grid.selected_indices()
            if not indices:
                dialogs.show_info(self, "Nothing selected", "Tick the images to export, or use Export all.")
                return False
            self.exporting.submit(export_images, result, indices, folder, context="Export", cancellable=True)
        elif what == "all":
            self.exporting.submit(export_images, result, list(range(len(result.images))), folder, context="Export", cancellable=True)
        elif what == "grid":
            self.exporting.submit(export_grid, result, folder, context="Export", cancellable=True)
        elif what == "gif":
            self.exporting.submit(export_gif, result, folder, context="Export", cancellable=True)
        elif what == "model":
            self.exporting.submit(export_model, result.checkpoint, folder / f"{result.run_name}_step{result.step}_model",
                                  context="Export model")
        else:
            raise ValueError(what)
        self.busy.setText("Exporting…")
        return True

    def _on_exported(self, paths: list[Path]) -> None:
        self.exported = list(paths)
        where = paths[0].parent if paths else ""
        text = f"Exported {len(paths)} file(s) to {where}"
        self.busy.setText(text)
        self.status_message.emit(text)

    def _choose_export_folder(self) -> None:
        path = dialogs.pick_folder(self, "Export images to", str(self.export_folder()))
        if path:
            settings.set("gallery/export_dir", path)
            self._show_export_folder(Path(path))

    def _show_export_folder(self, folder: Path) -> None:
        text = f"→ {folder}"
        metrics = self.export_folder_label.fontMetrics()
        self.export_folder_label.setText(metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, 520))
        self.export_folder_label.setToolTip(str(folder))

    def _open_export_folder(self) -> None:
        folder = self.export_folder()
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
