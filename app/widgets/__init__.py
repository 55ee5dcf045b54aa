"""Reusable widgets (plot, image views, small inputs) used by the panes."""
