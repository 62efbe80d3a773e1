"""Ray Tune: every trial of an experiment is a live run (``pip install livetune_rl[ray]``).

* :func:`live_trial` (inside a trial): serve the trial's registry and list it in the cluster's
  directory while it runs;
* :func:`list_trials`, :class:`TrialEndpoint` (anywhere on the cluster): the live trials, as
  ``livetune runs --ray`` shows them; ``livetune set --ray --run 'EXPERIMENT/*' ...`` reaches
  every trial of an experiment;
* :class:`TuneReportCallback`: an SB3 run's progress reported to Tune (imports SB3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .directory import TrialEndpoint, list_trials
from .trial import live_trial

if TYPE_CHECKING:
    from .sb3 import TuneReportCallback

__all__ = ["TrialEndpoint", "TuneReportCallback", "list_trials", "live_trial"]


def __getattr__(name: str) -> Any:
    if name == "TuneReportCallback":
        from .sb3 import TuneReportCallback

        return TuneReportCallback
    raise AttributeError(f"module 'livetune_rl.ray' has no attribute {name!r}")
