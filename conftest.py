"""Repository-level pytest configuration: never touch the network (no hub downloads)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
