"""What the judge (core/judge.py) needs measured: the metric of a run, confirmation re-runs, the best code
run again after a timeout, and why a baseline failed."""

from __future__ import annotations

from .execution import Execution


class Measuring(Execution):
    def _baseline_failure(self) -> str:
        from .first_run import diagnose

        return diagnose(self.config, self._last_outcome, self.log_path)
