"""The engine stays headless: importing it (and running its light commands) loads no UI library and no litellm."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("textual", "rich", "plotext", "textual_plotext", "litellm", "ray")

PROBE = """
import sys
import autoresearch.core
import autoresearch.core.{modules}
bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})
print(','.join(bad))
"""


def _loaded(*modules: str) -> str:
    code = PROBE.replace(
        "import autoresearch.core.{modules}", "\n".join(f"import autoresearch.core.{m}" for m in modules)
    )
    code = code.replace("{forbidden!r}", repr(FORBIDDEN))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_core_imports_no_ui_library_and_no_litellm() -> None:
    modules = (
        "cli",
        "loop",
        "setup",
        "status",
        "analysis",
        "mutate",
        "runner",
        "agents",
        "llm_agent",
        "provider",
        "ray_executor",
    )
    assert _loaded(*modules) == ""


def test_help_status_and_analyze_never_import_litellm() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['autoresearch', '--help']\n"
        "try:\n    runpy.run_module('autoresearch.core.cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED []" in done.stdout
