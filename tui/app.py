"""The app: one of its entry screens (run, setup, config, analyze, demo) over the same core."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.driver import Driver
from textual.screen import Screen
from textual.worker import Worker

from .analysis_screen import AnalysisScreen
from .dialogs import ConfirmDialog
from .preferences import load_theme, save_theme
from .run_screen import LoopFactory, RunScreen, default_loop_factory
from .setup_screen import EditSessionScreen, SetupResult, SetupScreen

EXIT_GRACE_S = 60.0
"""How long a hang-up or kill waits for the loop to stop the run and revert before leaving anyway."""


class AutoresearchApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "autoresearch"
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        root: Path,
        mode: str = "run",
        *,
        script: str | None = None,
        options: dict[str, Any] | None = None,
        loop_factory: LoopFactory | None = default_loop_factory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.root = root
        self.mode = mode
        self.script = script
        self.options = options
        self.loop_factory = loop_factory
        self.clock = clock
        self.setup_result: SetupResult | None = None
        self.farewell = ""
        """Printed once the app has given the terminal back: what happened and what to type next."""
        self.run_started: RunScreen | None = None

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """ctrl+p: every action the screen's keys give, named as in the footer and help, with its key."""
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or not active.enabled or binding.action in seen:
                continue
            seen.add(binding.action)
            yield SystemCommand(
                binding.description.strip(),
                f"key {self.get_key_display(binding)}",
                partial(self.run_action, binding.action, active.node),
            )
        yield SystemCommand("Light / dark theme", "key T on the run screen", self.action_toggle_theme)
        yield SystemCommand("Theme", "choose any of Textual's themes", self.action_change_theme)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def get_driver_class(self) -> type[Driver]:
        driver = super().get_driver_class()
        if driver.__name__ == "LinuxDriver":
            from .driver import PromptEscapeDriver

            return PromptEscapeDriver
        return driver

    def on_mount(self) -> None:
        self._install_signal_handlers()
        remembered = load_theme()
        if remembered is not None and remembered in self.available_themes:
            self.theme = remembered
        self.theme_changed_signal.subscribe(self, lambda theme: save_theme(theme.name))
        if self.mode == "setup":
            self.push_screen(SetupScreen(self.root, self.script or "", self.options), self.setup_done)
        elif self.mode == "config":
            from autoresearch.core.config import load_config

            existing = load_config(self.root)
            self.push_screen(EditSessionScreen(self.root, existing), self.edit_done)
        elif self.mode == "analyze":
            self.push_screen(AnalysisScreen(self.root, standalone=True))
        else:
            self.start_run()

    def start_run(self) -> None:
        self.run_started = RunScreen(self.root, self.loop_factory, self.clock)
        self.push_screen(self.run_started)

    def run_screen(self) -> RunScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, RunScreen):
                return screen
        return None

    def setup_done(self, result: SetupResult | None) -> None:
        if result is None:
            self.farewell = "Setup cancelled; nothing was written. Run autoresearch setup SCRIPT again when ready."
            self.exit(1)
            return
        self.setup_result = result
        config = result.config
        detail = f"Branch {config.branch}, metric {config.metric_name} ({config.metric_direction} is better)."
        if result.program_written:
            detail += " program.md was written and added to the read-only files."
        self.push_screen(
            ConfirmDialog(f"Session {config.tag} is ready. Start the loop now?", detail, yes="Start", no="Later"),
            self.start_after_setup,
        )

    def edit_done(self, result: SetupResult | None) -> None:
        self.setup_result = result
        self.farewell = "Settings saved." if result is not None else "Nothing was changed."
        self.exit(0 if result is not None else 1)

    def start_after_setup(self, start: bool | None) -> None:
        if start:
            self.start_run()
        else:
            tag = self.setup_result.config.tag if self.setup_result else ""
            self.farewell = f"Session {tag} is ready; start it with: autoresearch run"
            self.exit(0)

    # A hang-up or a kill must still stop the training tree and leave the session consistent.

    def _install_signal_handlers(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self.on_terminate_signal, sig)

    def on_terminate_signal(self, signum: int) -> None:
        screen = self.run_screen()
        worker = screen.loop_worker if screen is not None else None
        if screen is not None and worker is not None and worker.is_running:
            screen.shut_down(128 + signum)
        else:
            self.exit(128 + signum)
        threading.Thread(target=self._exit_once_stopped, args=(worker, signum), daemon=True).start()

    @staticmethod
    def _exit_once_stopped(worker: Worker[Any] | None, signum: int) -> None:
        """After a hang-up the terminal is gone and restoring it can block forever; once the loop has
        stopped (the session is consistent, its files synced), leave without it if a normal exit stalls."""
        deadline = time.monotonic() + EXIT_GRACE_S
        while worker is not None and worker.is_running and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)
        os._exit(128 + signum)

    def stop_loop(self) -> None:
        screen = self.run_screen()
        if screen is not None and screen.loop is not None:
            screen.loop.stop_now()

    def run_until_done(self) -> int:
        try:
            result = self.run()
        finally:
            # Whatever ended the app, the loop thread must not outlive it with a run in flight.
            self.stop_loop()
        if self.run_started is not None:
            self.farewell = self.run_started.farewell()
        if self.farewell:
            with contextlib.suppress(OSError):  # after a hang-up there is no terminal to print to
                print(self.farewell, flush=True)
        return result if isinstance(result, int) else 0
