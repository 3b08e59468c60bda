"""Textual's Linux driver, with escape answered within ESCDELAY.

A lone escape byte may be the start of an escape sequence, so the parser only calls it a key once
ESCDELAY has passed with no more input. Textual notices that passing only when its input poll times out,
every 0.1 s; here the poll is shortened for a few rounds after any input, so escape answers in
ESCDELAY (25 ms in this app) instead of 0.1 s and more. Everything else is Textual's own loop.
"""

from __future__ import annotations

import os
import selectors
from codecs import getincrementaldecoder

from textual import constants
from textual._loop import loop_last
from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

IDLE_POLL_S = 0.1
"""Textual's poll while nothing is typed."""
POLLS_AFTER_INPUT = 3
"""Short polls after input: enough for one escape delay to pass, then back to the idle poll."""


class PromptEscapeDriver(LinuxDriver):
    def run_input_thread(self) -> None:
        try:
            parser = XTermParser(self._debug)
        except (TypeError, AttributeError):
            # A Textual whose parser differs from the one this loop was written against: its own loop.
            super().run_input_thread()
            return
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        fileno = self.fileno
        decode = getincrementaldecoder("utf-8")().decode
        short_poll_s = constants.ESCAPE_DELAY + 0.002

        def process(selected: list[tuple[selectors.SelectorKey, int]], final: bool = False) -> None:
            for last, (_key, mask) in loop_last(selected):
                if mask & selectors.EVENT_READ:
                    data = decode(os.read(fileno, 1024 * 4), final=final and last)
                    if not data:
                        break
                    for event in parser.feed(data):
                        self.process_message(event)
            for event in parser.tick():
                self.process_message(event)

        try:
            short_polls = 0
            while not self.exit_event.is_set():
                selected = selector.select(short_poll_s if short_polls else IDLE_POLL_S)
                process(selected)
                short_polls = POLLS_AFTER_INPUT if selected else max(0, short_polls - 1)
            selector.unregister(self.fileno)
            process(selector.select(IDLE_POLL_S), final=True)
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except (EOFError, ParseError):
                pass
