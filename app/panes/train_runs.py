"""The Train pane's runs besides Start: following a run that another process trains (through its folder),
and the question before a finished run is extended. A mixin of TrainPane (it uses the pane's `running`,
`worker`, `plot`, `previews`, `workspace` and `_launch`).
"""
from __future__ import annotations

from pathlib import Path

from cmcore import rundir
from cmcore.config import TrainConfig

from .. import dialogs
from ..run_follower import RunFollower


class RunSources:
    """Mixed into TrainPane: following a run, extending a finished run."""

    def follow_clicked(self) -> None:
        path = dialogs.pick_folder(self, "Follow a run folder", str(self.workspace))
        if path:
            self.follow_run(path)

    def follow_run(self, run_dir: Path | str) -> bool:
        """Show a run that another process trains (or trained), as it goes; Pause/Stop reach it through its
        control file. False (and a message) for a folder that holds no run."""
        run_dir = Path(run_dir)
        if self.running:
            dialogs.show_info(self, "Training is running", "Stop the current run before following another.")
            return False
        if not (run_dir / rundir.CONFIG).is_file():
            dialogs.show_info(self, "Not a run folder", f"{run_dir} holds no {rundir.CONFIG}: choose the folder "
                              "that `cmcore train --out` writes.")
            return False
        self.plot.clear()
        self.previews.clear()
        self._launch(RunFollower(run_dir), run_dir, TrainConfig.load(run_dir / rundir.CONFIG).max_steps)
        return True

    @property
    def following_other_process(self) -> bool:
        """The pane shows a run that a process outside this app trains (closing the app leaves it running)."""
        return isinstance(self.worker, RunFollower) and not self.worker.owns_process

    def _agree_to_extend(self, run_dir: Path, config: TrainConfig) -> bool:
        """True unless the run already used its step or time budget and the person does not want
        one more (cmcore.rundir.extended then adds it)."""
        reached = rundir.limit_reached(run_dir, config)
        if reached == "steps":
            return dialogs.confirm(self, "Run is complete", f"{run_dir.name} reached its {config.max_steps:,} "
                                   f"steps.\nTrain {config.max_steps:,} more steps?", ok="Train more")
        if reached == "minutes":
            return dialogs.confirm(self, "Time limit reached", f"{run_dir.name} used its {config.max_minutes:g} "
                                   f"minutes.\nTrain {config.max_minutes:g} more minutes?", ok="Train more")
        return True
