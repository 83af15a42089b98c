"""The long-running service: scheduler, systemd integration, metrics (see ../shared/DESIGN.md §5)."""
