"""Stands in for the tool in the key tests: a process started with the model's key in its environment that runs
one command in `root` through the session's executor, as `autoresearch run` does, then prints the run's log.

Usage: tool_with_key.py ROOT COMMAND [--sandbox] [--leave-key]  (--leave-key skips keeping the key from children)
"""

import sys
import threading
from pathlib import Path

from autoresearch.core.config import SessionConfig
from autoresearch.core.executor import LocalExecutor, make_executor
from autoresearch.core.model_keys import hidden_from_training
from autoresearch.core.sandbox import sandbox_for

root, command = Path(sys.argv[1]), sys.argv[2]
config = SessionConfig(
    tag="t", script_path="train.py", metric_name="val_loss", api_key_env="AR_TEST_KEY", sandbox="--sandbox" in sys.argv
)
executor = LocalExecutor(sandbox_for(config, root)) if "--leave-key" in sys.argv else make_executor(config, root)
log = root / "tool.log"
executor.run(command, root, log, timeout_s=60, env={}, unset_env=hidden_from_training(config), cancel=threading.Event())
print(log.read_text())
