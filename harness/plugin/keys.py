"""Names the plugin's modules share: stash keys, user-property names, the recorder's registration name."""

from __future__ import annotations

import pytest


SESSION = pytest.StashKey["Any"]()


RUN_ID = pytest.StashKey[str]()


MODELS = pytest.StashKey["list[str]"]()


CALIBRATED = pytest.StashKey["dict[str, str]"]()  # suite name -> the profile its thresholds were calibrated on


BASELINE = pytest.StashKey["Any"]()  # the --baseline run (harness.report.baseline.Baseline), or None


RESULT_PROPERTY = "xai_result"


OVERLAY_PROPERTY = "xai_overlay"


RECORDER = "xai-harness-recorder"
