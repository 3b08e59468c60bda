"""After split_loop.py: the executor interface in place of the direct run_command calls."""

import sys
from pathlib import Path

core = Path(sys.argv[1])


def edit(name: str, old: str, new: str, count: int = 1) -> None:
    path = core / name
    text = path.read_text()
    if text.count(old) != count:
        sys.exit(f"{name}: expected {count} of {old!r}, found {text.count(old)}")
    path.write_text(text.replace(old, new))


edit("execution.py", "run_command(", "self.executor.run(", 2)
edit("execution.py", "from .runner import RunOutcome, run_command", "from .runner import RunOutcome")
edit(
    "session_state.py",
    '        when_stuck: Literal["stop", "pause"] = "stop",\n    ) -> None:\n',
    '        when_stuck: Literal["stop", "pause"] = "stop",\n        executor: Executor | None = None,\n'
    "    ) -> None:\n",
)
edit(
    "session_state.py",
    "        self._sink = sink\n",
    "        self._sink = sink\n        self.executor: Executor = executor or LocalExecutor()\n",
)
edit("session_state.py", "from .errors import", "from .executor import Executor, LocalExecutor\nfrom .errors import")
