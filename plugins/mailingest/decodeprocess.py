"""The decode's own process beside an sr3 worker (``mailDecodeProcess``).

An sr3 worker runs its callbacks on one thread, so a decode in ``after_work`` waits for the
download, and sr3's posting waits for the decode.  With a decode process, the worker hands each
pass's .eml files to a child process of its own and takes the results a pass or two later: the child
decodes (and makes the files durable) on another core while the worker downloads and posts.

Protocol, over two private pipes: the worker writes one pickled list of :class:`Job` per pass, and
the child answers each with one pickled list of :class:`Outcome` (one per job, same order).  Up to
:data:`MAX_BATCHES` passes are in flight at once, so a pass the child is slow with does not stop
the worker (it takes the answer a pass later); a thread of the worker reads the answers as they
come, so the child never blocks on a full pipe while the worker blocks writing the next batch.
The child:

* decodes each job exactly as the worker would (:func:`decode_job`), then makes every file and
  directory of the batch durable together (``mailDecodeFsync``) before it answers: what the
  worker announces is on disk;
* sends its log records back with each outcome (the worker logs them to the sr3 log, so one
  log holds them in order, and the child never rotates or writes that file);
* runs in a session of its own and ignores SIGINT and SIGTERM: a signal to the worker's process
  group or terminal (Ctrl-C on ``sr3 foreground``) stops the worker, and the worker stops the
  child (it exits at the end of its input);
* is killed by the kernel if the worker dies (``PR_SET_PDEATHSIG``), so a killed worker never
  leaves a child writing beside the worker that takes over its decodes.

The child is started with ``python -m mailingest.decodeprocess`` and the worker's ``sys.path``:
it imports nothing of sr3, and sr3 does not take it for one of its instances.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from mailingest.atomic import sync_together
from mailingest.errors import MailError, MimeError
from mailingest.mime.decoded import find_decoded
from mailingest.mime.layout import DecodeResult, DecodeSettings, decode_file

logger = logging.getLogger(__name__)

#: the child's command: this module run as a program (see :func:`main`)
MODULE = "mailingest.decodeprocess"
#: passes handed to the child and not yet collected, at most
MAX_BATCHES = 2


class DecodeProcessError(MailError):
    """The decode process could not be started, or died: decode in the worker itself instead."""


@dataclass(frozen=True)
class Job:
    """One .eml to decode: its path and the ``mail`` field of its notice (or None)."""

    path: str
    mail: Mapping[str, Any] | None = None


@dataclass
class Outcome:
    """What became of one :class:`Job` in the child."""

    path: str
    #: the files written (or found from an earlier decode, ``reannounced``); None: not decoded
    result: DecodeResult | None = None
    reannounced: bool = False
    #: why the message was not decoded (a :class:`MimeError` or :class:`OSError`: expected)
    error: str | None = None
    #: the traceback of an unexpected error (a bug: logged in full)
    unexpected: str | None = None
    #: the batch's files could not be made durable (the reason; the same for every job of it)
    sync_error: str | None = None
    #: the log records of this job, as :func:`logging.makeLogRecord` takes them
    records: list[dict[str, Any]] = field(default_factory=list)


def decode_job(job: Job, settings: DecodeSettings,
               on_start: Callable[[], None] | None = None) -> tuple[DecodeResult, bool]:
    """Decode *job*'s .eml, or find the complete decode an earlier (killed) pass left of it:
    ``(result, reannounced)``.  The one decode step of the worker and of the child; *on_start*
    is called just before a decode really begins (not for a message already decoded).

    :raises MimeError, OSError: the message is not decoded (the .eml is kept as it is).
    """
    earlier = find_decoded(job.path, job.mail)
    if earlier is not None:
        return earlier, True
    if on_start is not None:
        on_start()
    return decode_file(job.path, settings=settings, mail=job.mail), False


class DurableGroup:
    """The files and directories of some decodes, made durable together (:meth:`sync`): the
    worker's pass in its own process, a batch in the decode process."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.directories: set[str] = set()

    def add(self, result: DecodeResult) -> None:
        """What *result* needs synced to survive a power loss: its files, their directories, and
        the directory its parts directory was renamed into."""
        for written in result.files:
            self.files.append(written.path)
            self.directories.add(os.path.dirname(written.path))
        self.directories.add(os.path.dirname(result.directory))

    def sync(self) -> None:
        """fsync the files, then the directories, deepest first (:func:`sync_together`).

        :raises OSError: the group is not durable.
        """
        if self.files or self.directories:
            sync_together(self.files, sorted(self.directories, key=len, reverse=True))


# -- the worker's side ----------------------------------------------------------------------------
class DecodeProcess:
    """The worker's handle on its decode process: :meth:`submit` a pass, :meth:`collect` it later."""

    def __init__(self, settings: DecodeSettings, *, sync: bool = True, log_level: int = logging.INFO) -> None:
        #: how the child writes each file (``settings.fsync`` per file, as given)
        self.settings = settings
        #: make each batch durable together before answering (``mailDecodeFsync``)
        self.sync = sync
        self.log_level = log_level
        self._child: subprocess.Popen[bytes] | None = None
        self._to_child: IO[bytes] | None = None
        self._from_child: IO[bytes] | None = None
        #: the answers as the reader thread got them: (answer, None), or (None, why the output ended)
        self._answers: queue.SimpleQueue[tuple[Any, Exception | None]] = queue.SimpleQueue()
        self._reader: threading.Thread | None = None
        self._in_flight = 0
        self._failure: DecodeProcessError | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self) -> None:
        """Start the child and hand it the settings.

        :raises DecodeProcessError: it cannot be started (the message says why).
        """
        jobs_read, jobs_write = os.pipe()
        outcomes_read, outcomes_write = os.pipe()
        # the worker's own import path, and not the current directory (which `-m` would put first:
        # a stray email.py there must not shadow the standard library; Python 3.11+)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path), PYTHONSAFEPATH="1")
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", MODULE, str(jobs_read), str(outcomes_write), str(os.getpid())],
                pass_fds=(jobs_read, outcomes_write), env=env, stdin=subprocess.DEVNULL, close_fds=True,
                start_new_session=True)
        except (OSError, ValueError) as exc:  # ValueError: no pass_fds (not POSIX)
            for fd in (jobs_read, jobs_write, outcomes_read, outcomes_write):
                os.close(fd)
            raise DecodeProcessError("cannot start a decode process (%s -m %s): %s" % (sys.executable, MODULE, exc)) \
                from exc
        finally:
            if self._child is not None:
                os.close(jobs_read)
                os.close(outcomes_write)
        self._to_child = os.fdopen(jobs_write, "wb")
        self._from_child = os.fdopen(outcomes_read, "rb")
        self._reader = threading.Thread(target=self._read_answers, args=(self._from_child,), daemon=True,
                                        name="mailingest-decode-answers")
        self._reader.start()
        self._send((self.settings, self.sync, self.log_level))

    @property
    def in_flight(self) -> int:
        """Passes submitted and not collected yet."""
        return self._in_flight

    def submit(self, jobs: list[Job]) -> None:
        """Hand one pass's jobs to the child (at most :data:`MAX_BATCHES` passes in flight).

        :raises DecodeProcessError: the child is gone.
        """
        if self._in_flight >= MAX_BATCHES:
            raise RuntimeError("collect() a pass before submitting more than %d" % MAX_BATCHES)
        self._send(jobs)
        self._in_flight += 1

    def ready(self) -> bool:
        """Whether the oldest pass in flight is answered (:meth:`collect` would not wait)."""
        return self._in_flight > 0 and not self._answers.empty()

    def collect(self) -> list[Outcome]:
        """The outcomes of the oldest pass in flight (in the order of its jobs), once answered.

        :raises DecodeProcessError: the child died before answering (its jobs, and those of any
            later pass in flight, are not decoded).
        """
        if not self._in_flight:
            return []
        self._in_flight -= 1
        if self._failure is not None:
            raise self._failure
        answer, ended = self._answers.get()
        if ended is not None or not isinstance(answer, list):
            self._failure = self._answer_failure(answer, ended)
            raise self._failure
        return answer

    def _read_answers(self, stream: IO[bytes]) -> None:
        """The reader thread: each answer as it comes, until the child's output ends."""
        while True:
            try:
                self._answers.put((pickle.load(stream), None))
            except Exception as exc:  # noqa: BLE001 (end of input, a broken stream, or unreadable: all end it)
                self._answers.put((None, exc))
                return

    def _answer_failure(self, answer: Any, ended: Exception | None) -> DecodeProcessError:
        if ended is None:
            return DecodeProcessError("the decode process (pid %s) answered a %s, not a list of outcomes"
                                      % (self.pid, type(answer).__name__))
        if isinstance(ended, (EOFError, OSError, ValueError)):  # ValueError: read from a closed stream
            return DecodeProcessError("the decode process (pid %s) died before answering: %s"
                                      % (self.pid, self._exit_status() or ended))
        return DecodeProcessError("the decode process (pid %s) answered something unreadable (%s: %s)"
                                  % (self.pid, type(ended).__name__, ended))

    def stop(self) -> None:
        """End the child: close its input, so it exits once idle; kill it if it does not."""
        child, self._child = self._child, None
        reader, self._reader = self._reader, None
        from_child = self._from_child
        if self._to_child is not None:
            try:
                self._to_child.close()
            except OSError:
                pass
        self._to_child = self._from_child = None
        self._in_flight = 0
        if child is not None:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                logger.warning("the decode process (pid %d) did not stop within 10 s: killed", child.pid)
                child.kill()
                child.wait()
        if reader is not None:
            reader.join(timeout=10)  # the child's output has ended: it reads the end and stops
        if from_child is not None:
            try:
                from_child.close()
            except OSError:
                pass

    def _send(self, payload: Any) -> None:
        if self._to_child is None:
            raise DecodeProcessError("the decode process is not running")
        try:
            pickle.dump(payload, self._to_child, protocol=pickle.HIGHEST_PROTOCOL)
            self._to_child.flush()
        except OSError as exc:  # BrokenPipeError: the child is gone
            raise DecodeProcessError("the decode process (pid %s) is gone: %s"
                                     % (self.pid, self._exit_status() or exc)) from exc

    def _exit_status(self) -> str | None:
        if self._child is None:
            return None
        try:
            code = self._child.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None
        if code < 0:
            return "killed by signal %d" % -code
        return "exit status %d" % code


# -- the child's side ---------------------------------------------------------------------------
class _Capture(logging.Handler):
    """Keeps the child's log records of the job at hand, to be sent to the worker."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append({"name": record.name, "levelno": record.levelno, "levelname": record.levelname,
                             "msg": record.getMessage(), "args": None, "pathname": record.pathname,
                             "filename": record.filename, "module": record.module, "lineno": record.lineno,
                             "funcName": record.funcName, "created": record.created, "msecs": record.msecs,
                             "exc_text": "".join(traceback.format_exception(*record.exc_info))
                             if record.exc_info else None})

    def take(self) -> list[dict[str, Any]]:
        records, self.records = self.records, []
        return records


def serve(jobs_in: IO[bytes], outcomes_out: IO[bytes]) -> None:
    """The child's loop: settings first, then one batch of jobs after another until end of input."""
    settings, sync, level = pickle.load(jobs_in)
    capture = _Capture()
    root = logging.getLogger()
    root.handlers[:] = [capture]
    root.setLevel(level)
    while True:
        try:
            jobs: list[Job] = pickle.load(jobs_in)
        except EOFError:
            return
        outcomes = [_run(job, settings, capture) for job in jobs]
        if sync:
            _make_durable(outcomes)
        pickle.dump(outcomes, outcomes_out, protocol=pickle.HIGHEST_PROTOCOL)
        outcomes_out.flush()


def _run(job: Job, settings: DecodeSettings, capture: _Capture) -> Outcome:
    outcome = Outcome(path=job.path)
    try:
        outcome.result, outcome.reannounced = decode_job(job, settings)
    except (MimeError, OSError) as exc:  # DecodeLimitError is a MimeError
        outcome.error = str(exc)
    except Exception:  # outermost guard of the child: one message must not stop the others
        outcome.unexpected = traceback.format_exc()
    outcome.records = capture.take()
    return outcome


def _make_durable(outcomes: list[Outcome]) -> None:
    group = DurableGroup()
    for outcome in outcomes:
        if outcome.result is not None:
            group.add(outcome.result)
    try:
        group.sync()
    except OSError as exc:
        for outcome in outcomes:
            outcome.sync_error = str(exc)


def _die_with_parent() -> None:
    """Have the kernel kill this process when its parent (the sr3 worker) dies (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the child ends at the end of its input instead
        pass


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != int(argv[2]):  # the worker died before the line above took effect
        return 1
    with os.fdopen(int(argv[0]), "rb") as jobs_in, os.fdopen(int(argv[1]), "wb") as outcomes_out:
        try:
            serve(jobs_in, outcomes_out)
        except BrokenPipeError:  # the worker is gone
            return 1
    return 0


if __name__ == "__main__":
    # run as mailingest.decodeprocess, not as __main__: the classes pickled back to the worker
    # must carry the module name the worker knows them by
    from mailingest import decodeprocess

    sys.exit(decodeprocess.main(sys.argv[1:]))
