"""PyInstaller entry script for Consistency Studio (same as the `consistency-studio`
gui-script, i.e. `app.__main__:main`). Kept outside `app/` so the package is imported
as a package and its relative imports work in the frozen build."""
import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # harmless unless something spawns worker processes

    from app.__main__ import main

    sys.exit(main())
