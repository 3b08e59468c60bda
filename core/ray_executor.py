"""Running each command as a Ray job on a cluster (Ray Jobs: submit, stream the logs, stop), behind the
`Executor` interface of core/executor.py. Ray is imported only when a session uses it (docs/RAY.md).

One `run()` is one job: the command as its entrypoint, the experiment's code shipped as its working directory
(or read from a shared filesystem), the run's environment in `env_vars`, one GPU asked for (`ray_resources`)
and a metadata tag naming the session, so that a restart after kill -9 finds and stops what the dead tool left.
A job Ray loses (its node died, it was never scheduled, it waited far past its budget) is retried once, then
reported in `RunOutcome.infra_error`: an infrastructure failure, never the change's crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shlex
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import DEFAULT_RAY_ADDRESS, SessionConfig
from .errors import UserError
from .runner import RunOutcome, _fresh_log, _LogTail

SESSION_KEY = "autoresearch_session"
EXPERIMENT_KEY = "autoresearch_experiment"
RUN_KEY = "autoresearch_run"
DASHBOARD_PORT = 8265
OUTPUT_VAR = "AUTORESEARCH_OUTPUT_DIR"
SHIPPED_OUTPUT = "autoresearch-output"
# Never shipped: the session's own files, git's store.
SESSION_FILES = (".git", ".autoresearch", ".autoresearch.json", "results.tsv", "run.log", ".results.tsv.tmp")
DEFAULT_EXCLUDES = (".venv", "venv", "__pycache__", "wandb", "*.pt", "*.ckpt", "*.safetensors")
# Ray assigns the job its GPUs; the device a local worker is pinned to means nothing on the cluster.
_DEVICE_VARS = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")
_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_STOP_WAIT_S = 60.0
_PENDING_STOP_WAIT_S = 5.0
_PENDING_FLOOR_S = 120.0  # with no limit set: the run's timeout, but never less (shipping the code takes a while)
_CONTACT_GRACE_S = 30.0
_TAIL_WAIT_S = 10.0
_INSTALL = "pip install 'autoresearch[ray]'"


def load_job_submission() -> Any:
    """ray.job_submission, or one sentence saying how to install it."""
    try:
        from ray import job_submission
    except ImportError:
        raise UserError(
            f'The executor is "ray" but Ray is not installed in this environment; {_INSTALL}, or run on this '
            "machine with the executor local."
        ) from None
    # Ray logs each upload and websocket to stderr, which would break the app's screen and the headless lines.
    for name in [n for n in logging.root.manager.loggerDict if n == "ray" or n.startswith("ray.")]:
        logging.getLogger(name).setLevel(logging.ERROR)
    return job_submission


def dashboard_address(address: str) -> str:
    """The Ray Jobs address (the dashboard's http URL) for an address as users write it: http(s)://HOST:PORT,
    HOST:PORT, or ray://HOST[:PORT], the Ray Client address, whose head serves Jobs on its dashboard port."""
    text = address.strip().rstrip("/")
    if text.startswith("ray://"):
        host = text[len("ray://") :].split("/")[0].rsplit(":", 1)[0]
        return f"http://{host}:{DASHBOARD_PORT}"
    return text if "://" in text else f"http://{text}"


def session_id(tag: str, root: Path) -> str:
    """The tag a session's jobs carry: its tag and a hash of its repository's path (two repos may share a tag)."""
    digest = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:10]
    return f"{tag}-{digest}"


@dataclass(frozen=True)
class RayOptions:
    address: str
    session: str
    resources: Mapping[str, float] = field(default_factory=lambda: {"num_gpus": 1})
    shared_dir: str | None = None  # where every node mounts the repository at `root`: nothing is shipped
    root: Path | None = None
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
    pending_limit_s: float | None = None  # None: the run's timeout
    poll_s: float = 0.2


class _Lost(Exception):
    """The job was lost to the infrastructure; the text is the sentence for the user."""


@dataclass
class _Attempt:
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    timed_out: bool = False
    cancelled: bool = False


class _LogStream:
    """Follows a job's log (Ray's websocket tail) into the run's log file, in a thread of its own."""

    def __init__(self, client: Any, job_id: str, fd: int) -> None:
        self._client = client
        self._job_id = job_id
        self._fd = fd
        self.chars = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"ray-log-{job_id}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._task = loop.create_task(self._follow())
        self._ready.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            loop.run_until_complete(self._task)
        loop.close()

    async def _follow(self) -> None:
        async for chunk in self._client.tail_job_logs(self._job_id):
            self._write(chunk)

    def _write(self, text: str) -> None:
        if text:
            os.write(self._fd, text.encode("utf-8", errors="replace"))
            self.chars += len(text)

    def close(self) -> None:
        """End the stream now (Ray closes it only seconds after the job ended)."""
        self._ready.wait(_TAIL_WAIT_S)
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(_TAIL_WAIT_S)

    def finish(self, full_text: Callable[[], str]) -> None:
        """Once the job has ended: close the stream, then add what it had not brought yet from the job's log."""
        self.close()
        if self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            text = full_text()
            if len(text) > self.chars:
                self._write(text[self.chars :])


class RayExecutor:
    """Runs each command as a Ray job; safe to call from several threads at once (one job per call)."""

    assigns_devices = True  # Ray gives each job its GPUs: workers are not pinned to devices of this machine

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self.address = dashboard_address(options.address)
        self._local = threading.local()
        self._jobs = load_job_submission()

    # The client and the cluster.

    def client(self) -> Any:
        """This thread's JobSubmissionClient (each holds its own HTTP session)."""
        client = getattr(self._local, "client", None)
        if client is None:
            try:
                client = self._jobs.JobSubmissionClient(self.address)
            except Exception as exc:  # ConnectionError, ValueError, RuntimeError: Ray raises them all
                raise UserError(self._unreachable(exc)) from None
            self._local.client = client
        return client

    def _unreachable(self, exc: BaseException) -> str:
        # Ray's ConnectionError only repeats the address; other errors (TLS, a proxy's reply) say something.
        reason = (
            ""
            if isinstance(exc, ConnectionError)
            else " (" + (" ".join(str(exc).split())[:160] or type(exc).__name__) + ")"
        )
        return (
            f"Cannot reach the Ray cluster at {self.address}{reason}; check ray_address (the head's dashboard, "
            f"e.g. http://HEAD:{DASHBOARD_PORT}) and that the cluster is up (ray status on the head)."
        )

    def check(self) -> None:
        """Refuse to start a session the cluster cannot run: unreachable, or without the GPUs a job asks for."""
        self.client()
        asked = float(self.options.resources.get("num_gpus", 0) or 0)
        if asked <= 0:
            return
        totals = self.cluster_totals()
        if totals is not None and totals.get("GPU", 0.0) < asked:
            have = totals.get("GPU", 0.0)
            raise UserError(
                f"The Ray cluster at {self.address} has {have:g} GPU(s) and each experiment asks for {asked:g}; "
                "add GPU nodes, or ask for none with autoresearch config ray_resources '{\"num_gpus\": 0}'."
            )

    def cluster_totals(self) -> dict[str, float] | None:
        """The resources of the cluster's live nodes, from the dashboard; None when it does not say."""
        import requests

        try:
            reply = requests.get(f"{self.address}/api/v0/nodes?limit=10000&detail=1", timeout=10)
            nodes = reply.json()["data"]["result"]["result"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None
        if not nodes:
            return None
        totals: dict[str, float] = {}
        for node in nodes:
            if node.get("state") != "ALIVE":
                continue
            for name, amount in (node.get("resources_total") or {}).items():
                totals[name] = totals.get(name, 0.0) + float(amount)
        return totals

    # Running.

    def run(
        self,
        command: str,
        cwd: Path,
        log_path: Path,
        *,
        timeout_s: float,
        env: Mapping[str, str],
        unset_env: Iterable[str] = (),
        cancel: threading.Event,
        pid_file: Path | None = None,
        on_start: Callable[[int], None] | None = None,
        on_lines: Callable[[list[str], int], None] | None = None,
    ) -> RunOutcome:
        """Run `command` as a Ray job; `pid_file` is not used (the job's metadata tag finds it after a crash)."""
        del pid_file
        cwd = Path(cwd)
        log_path = Path(log_path)
        if self.options.shared_dir is None and not cwd.is_dir():
            raise UserError(f"Cannot run {command!r}: the working directory {cwd} does not exist.")
        unset = [name for name in unset_env if name.isidentifier()]
        began = time.monotonic()
        lost: _Lost | None = None
        started: list[int] = []

        def start_once(pid: int) -> None:  # a job run again after a loss starts the run once for the loop
            if not started and on_start is not None:
                started.append(pid)
                on_start(pid)

        for attempt in (1, 2):
            os.close(_fresh_log(log_path))
            if cancel.is_set():
                return RunOutcome(None, 0.0, 0.0, None, timed_out=False, cancelled=True)
            try:
                result = self._attempt(command, cwd, log_path, timeout_s, env, unset, cancel, start_once, on_lines)
            except _Lost as exc:
                lost = exc
                if attempt == 1:
                    continue
                break
            duration = (result.ended or time.monotonic()) - (result.started or began)
            return RunOutcome(
                exit_code=result.exit_code,
                duration_s=duration,
                peak_rss_gb=0.0,
                peak_gpu_gb=None,
                timed_out=result.timed_out,
                cancelled=result.cancelled,
            )
        assert lost is not None
        return RunOutcome(
            None,
            time.monotonic() - began,
            0.0,
            None,
            timed_out=False,
            cancelled=False,
            infra_error=f"{lost} (tried twice)",
        )

    def _entrypoint(self, command: str, cwd: Path, unset: list[str]) -> str:
        run = "exec " + (f"env {' '.join(f'-u {n}' for n in unset)} " if unset else "")
        run += f"bash -c {shlex.quote(command)}"
        if self.options.shared_dir is not None:
            return f"cd {shlex.quote(self._shared_path(cwd))} && {run}"
        return f"mkdir -p {SHIPPED_OUTPUT} && export {OUTPUT_VAR}=$PWD/{SHIPPED_OUTPUT} && {run}"

    def _shared_path(self, cwd: Path) -> str:
        """A path here as the nodes see it: the same place under `shared_dir` as under the repository here (a
        worker's directory lies inside the repository)."""
        assert self.options.shared_dir is not None
        root = self.options.root
        if root is None:
            return self.options.shared_dir
        try:
            inside = Path(cwd).resolve().relative_to(Path(root).resolve())
        except ValueError:
            return self.options.shared_dir
        return str(Path(self.options.shared_dir) / inside) if inside.parts else self.options.shared_dir

    def _runtime_env(self, cwd: Path, env: Mapping[str, str]) -> dict[str, Any]:
        env_vars = {k: str(v) for k, v in env.items() if k not in _DEVICE_VARS}
        env_vars.setdefault("PYTHONUNBUFFERED", "1")
        if OUTPUT_VAR in env_vars:
            # A worker's output folder is a path on this machine: on a shared filesystem the same place under
            # ray_shared_dir, else a folder in the job's own copy of the code (gone with the job).
            if self.options.shared_dir is not None:
                env_vars[OUTPUT_VAR] = self._shared_path(Path(env_vars[OUTPUT_VAR]))
            else:
                env_vars[OUTPUT_VAR] = SHIPPED_OUTPUT
        runtime_env: dict[str, Any] = {"env_vars": env_vars}
        if self.options.shared_dir is None:
            runtime_env["working_dir"] = str(cwd)
            runtime_env["excludes"] = [*SESSION_FILES, *self.options.excludes]
        return runtime_env

    def _submit(self, client: Any, command: str, cwd: Path, env: Mapping[str, str], unset: list[str]) -> str:
        number = env.get("AUTORESEARCH_EXPERIMENT", "")
        resources = dict(self.options.resources)
        kwargs: dict[str, Any] = {
            "entrypoint_num_gpus": resources.pop("num_gpus", None),
            "entrypoint_num_cpus": resources.pop("num_cpus", None),
        }
        memory = resources.pop("memory", None)
        if memory is not None:
            kwargs["entrypoint_memory"] = int(memory)
        if resources:
            kwargs["entrypoint_resources"] = resources
        try:
            return str(
                client.submit_job(
                    entrypoint=self._entrypoint(command, cwd, unset),
                    submission_id=f"autoresearch-{self.options.session}-{number or 'x'}-{uuid.uuid4().hex[:8]}",
                    runtime_env=self._runtime_env(cwd, env),
                    metadata={
                        SESSION_KEY: self.options.session,
                        EXPERIMENT_KEY: number,
                        RUN_KEY: env.get("AUTORESEARCH_RUN", ""),
                    },
                    **{k: v for k, v in kwargs.items() if v is not None},
                )
            )
        except (ValueError, RuntimeError) as exc:
            # Raised here or by the head (the upload's reply): "Package size (...) exceeds the maximum size of N".
            if too_large := re.search(r"exceeds the maximum size of ([\d.]+) ?MiB", str(exc)):
                raise UserError(
                    f"The working directory {cwd} is too large to ship to the Ray cluster (Ray ships at most "
                    f"{float(too_large.group(1)):g} MiB, zipped); add its large files to ray_excludes, or put the "
                    "code on a filesystem every node mounts and set ray_shared_dir."
                ) from None
            raise _Lost(f"Ray refused the job: {' '.join(str(exc).split())[:200]}") from None
        except (ConnectionError, OSError) as exc:
            raise _Lost(self._unreachable(exc).removesuffix(".")) from None

    def _attempt(
        self,
        command: str,
        cwd: Path,
        log_path: Path,
        timeout_s: float,
        env: Mapping[str, str],
        unset: list[str],
        cancel: threading.Event,
        on_start: Callable[[int], None] | None,
        on_lines: Callable[[list[str], int], None] | None,
    ) -> _Attempt:
        client = self.client()
        job_id = self._submit(client, command, cwd, env, unset)
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
        tail = _LogTail(log_path) if on_lines is not None else None
        stream = _LogStream(client, job_id, fd)
        result = _Attempt()
        submitted = time.monotonic()
        pending_limit = self.options.pending_limit_s or max(timeout_s, _PENDING_FLOOR_S)
        stopped_by_us = done = False
        last_contact = submitted

        def emit(final: bool = False) -> None:
            if tail is not None and on_lines is not None:
                lines, dropped = tail.read(final)
                if lines or dropped:
                    on_lines(lines, dropped)

        try:
            while True:
                now = time.monotonic()
                try:
                    status = str(client.get_job_status(job_id))
                    last_contact = now
                except Exception as exc:  # the dashboard restarting, the network
                    if now - last_contact > _CONTACT_GRACE_S:
                        raise _Lost(self._unreachable(exc).removesuffix(".")) from None
                    status = "UNKNOWN"
                status = status.rsplit(".", 1)[-1]
                if status == "RUNNING" and result.started is None:
                    result.started = now
                    if on_start is not None:
                        on_start(0)
                emit()
                if status in _TERMINAL:
                    if result.started is None:  # it ran between two looks
                        result.started = submitted
                        if on_start is not None:
                            on_start(0)
                    result.ended = now
                    done = True
                    break
                if cancel.is_set() or (result.started is not None and now - result.started >= timeout_s):
                    result.cancelled = cancel.is_set()
                    result.timed_out = not result.cancelled
                    stopped_by_us = True
                    self._stop(client, job_id)
                    result.ended = time.monotonic()
                    done = True
                    break
                if result.started is None and now - submitted >= pending_limit:
                    self._stop(client, job_id, _PENDING_STOP_WAIT_S)
                    done = True
                    raise _Lost(self._never_started(now - submitted))
                time.sleep(self.options.poll_s)
            stream.finish(lambda: str(client.get_job_logs(job_id)))
            emit(final=True)
            if not stopped_by_us:
                result.exit_code = self._exit_code(client, job_id)
            return result
        finally:
            if not done:
                self._stop(client, job_id, _STOP_WAIT_S if result.started is not None else _PENDING_STOP_WAIT_S)
            stream.close()
            if tail is not None:
                tail.close()
            os.close(fd)

    def _never_started(self, waited_s: float) -> str:
        asked = ", ".join(f"{k} {v:g}" for k, v in self.options.resources.items()) or "nothing"
        return (
            f"The Ray job waited {waited_s / 60:.1f} min without starting (it asks for {asked}); free or add "
            "resources on the cluster (ray status), or lower ray_resources"
        )

    def _exit_code(self, client: Any, job_id: str) -> int | None:
        info = client.get_job_info(job_id)
        status = str(info.status).rsplit(".", 1)[-1]
        if status == "SUCCEEDED":
            return 0
        if status == "STOPPED":
            return -int(signal.SIGTERM)  # stopped from outside (`ray job stop`): killed by a signal from elsewhere
        error = str(info.error_type or "").rsplit(".", 1)[-1]
        if info.driver_exit_code is not None and error in ("", "JOB_ENTRYPOINT_COMMAND_ERROR"):
            return int(info.driver_exit_code)
        message = " ".join(str(info.message or error or "no reason given").split())[:200]
        raise _Lost(f"Ray lost the job ({message})")

    def _stop(self, client: Any, job_id: str, wait_s: float = _STOP_WAIT_S) -> None:
        """Stop the job (Ray signals its processes, then kills them) and wait until Ray says it ended.

        A job still pending cannot end before it is placed: Ray holds the stop and applies it the moment the
        job starts, so for such a job the wait is short.
        """
        with contextlib.suppress(Exception):
            client.stop_job(job_id)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if str(client.get_job_status(job_id)).rsplit(".", 1)[-1] in _TERMINAL:
                    return
            time.sleep(self.options.poll_s)

    # After a crash of the tool.

    def recover(self) -> list[str]:
        """Stop this session's jobs that are still going (the tool that started them died); their ids."""
        client = self.client()
        try:
            jobs = client.list_jobs()
        except Exception as exc:
            raise UserError(self._unreachable(exc)) from None
        stopped = []
        for job in jobs:
            metadata = job.metadata or {}
            status = str(job.status).rsplit(".", 1)[-1]
            if metadata.get(SESSION_KEY) == self.options.session and status not in _TERMINAL and job.submission_id:
                self._stop(client, job.submission_id, _STOP_WAIT_S if status == "RUNNING" else _PENDING_STOP_WAIT_S)
                stopped.append(str(job.submission_id))
        return stopped


def executor_for(config: SessionConfig, root: Path) -> RayExecutor:
    address = config.ray_address or os.environ.get("RAY_ADDRESS") or DEFAULT_RAY_ADDRESS
    limit = config.ray_pending_limit_minutes
    return RayExecutor(
        RayOptions(
            address=address,
            session=session_id(config.tag, root),
            resources=dict(config.ray_resources),
            shared_dir=config.ray_shared_dir,
            root=Path(root),
            excludes=tuple(config.ray_excludes) if config.ray_excludes is not None else DEFAULT_EXCLUDES,
            pending_limit_s=None if limit is None else limit * 60,
        )
    )
