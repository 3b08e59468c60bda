"""The record step of an experiment, the same for one worker and many: its row in results.tsv (the file written
again first if it was deleted during the session) and its meta.json; then, once the branch was moved or taken
off to agree with the row (or could not be, which stops the session with a sentence), the version counted as
run, the noise file, the app (`ResultRecorded`) and the proposer told."""

from __future__ import annotations

import contextlib

from . import events as ev
from . import judge
from .config import RESULTS_FILE
from .history import ExperimentMeta
from .proposing import Proposing
from .results import ResultRow, ResultsTable, append_row
from .session_state import SessionState


class Recording:
    def __init__(self, state: SessionState, proposing: Proposing) -> None:
        self.s = state
        self.proposing = proposing

    def write(self, table: ResultsTable, row: ResultRow, meta: ExperimentMeta) -> ResultsTable:
        """Append `row` (one write and fsync), then save `meta`: the table with the row."""
        s = self.s
        if not s.results_path.exists():
            s.write_results(table)
            s.emit(ev.Info(f"{RESULTS_FILE} was deleted during the session; wrote its {len(table.rows)} rows again"))
        append_row(s.results_path, row, table.has_duration)
        s.history.save_meta(meta)
        return ResultsTable(table.metric_name, (*table.rows, row), table.has_duration)

    def tell(self, table: ResultsTable, meta: ExperimentMeta, *, tried: bool = True) -> None:
        """After the row and the branch agree; `tried`: its version is not proposed again (a timeout on a machine
        that got slower may be)."""
        s = self.s
        number = meta.number
        key = meta.extra.get("content_key")
        if tried and isinstance(key, str):
            s.tried.setdefault(key, number)
        with contextlib.suppress(OSError):
            judge.write_noise(s.history, judge.session_noise(s.history.all_meta(), s.host), s.config)
        best = table.best(s.config.higher_is_better)
        s.emit(
            ev.ResultRecorded(
                number,
                table.rows[number - 1],
                best[1].metric if best else None,
                table.baseline(),
                s.usage_total.tokens,
                s.usage_total.cost_usd,
            )
        )
        self.proposing.observe(self.proposing.records(table, {number: meta}, diffs=False)[-1])
