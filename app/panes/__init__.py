"""The four panes of the main window, one file each: Data, Train, Gallery, Runs."""
