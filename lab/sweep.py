"""Stage 6: sweeps, an experiment run through Optuna by one worker or many.

``rlaif sweep experiments/NAME.yaml`` runs one trial per setting into ``results/NAME/``:
``experiment.json`` (the resolved experiment), ``trials/<setting>/`` (each trial is an ordinary
labeling run folder with its config, labels and metrics) and the Optuna study: by default
``study.db`` (SQLite) beside them, or any Optuna RDB URL given with ``--storage`` (PostgreSQL for
workers on several machines; the URL, without its password, is kept in ``study.json``). Each
trial's metrics and its run identity (resolved config, content hash of the data slice and of
the templates) are stored as user attributes.

Workers: any number of ``rlaif sweep`` processes (``--workers N`` starts N on this machine)
share one study. One at a time, under the sweep lock (a file lock beside an SQLite study, an
advisory lock in PostgreSQL or MySQL), a worker creates or loads the study, checks that the
finished trials belong to this experiment, data and templates, and enqueues every setting that
no trial holds. Workers then pop queued trials through ``Study.optimize``: the storage hands
each queued trial to one worker. A running trial sends heartbeats; a trial whose worker
stopped sending them (killed, machine lost) is failed by another worker through Optuna's
``fail_stale_trials`` and queued again (``RetryHeartbeatStaleTrialCallback``), and its setting
resumes from the labels already in its folder. Every worker returns when every setting is
complete. The per-pair label cache makes a repeated or overlapping setting cost a lookup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import socket
import sys
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy

from lab import models
from lab.backends import Backend, make_backend
from lab.cache import LabelCache
from lab.config import ConfigError, build
from lab.data import DataConfig
from lab.errors import LabError, RunError
from lab.experiment import AXES, Experiment, first_difference, run_identity, setting_slug
from lab.judges import judge_class
from lab.run import prepare, run_label, write_json_atomic

RESULTS = Path("results")
HEARTBEAT = 5
"""Seconds between a running trial's heartbeats."""
GRACE_BEATS = 4
"""A trial without a heartbeat for this many intervals counts as dead and is run again."""
ZOMBIE_AFTER = 600
"""Seconds after which a RUNNING trial that never reached the objective (no ``worker``
attribute, so no heartbeat can tell) no longer holds its setting: left by a process killed
between claiming and starting it, or by a version of the lab without heartbeats."""

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

State = optuna.trial.TrialState


def results_dir(exp: Experiment, root: Path = RESULTS) -> Path:
    """Where an experiment's results live."""
    return Path(root) / exp.name


def default_storage(out: Path) -> str:
    """The SQLite study beside the results (``results/NAME/study.db``)."""
    return f"sqlite:///{Path(out) / 'study.db'}"


def public_url(url: str) -> str:
    """A storage URL without its password (safe to print and to write into ``study.json``)."""
    try:
        return sqlalchemy.engine.make_url(url).set(password=None).render_as_string()
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"--storage {url!r}: not a database URL; e.g. "
                          "postgresql://user@host/db or sqlite:///path/study.db") from None


def make_storage(url: str, heartbeat: int = HEARTBEAT) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats; a heartbeat-stale trial is queued again."""
    sqlite = url.startswith("sqlite")
    kind = _SQLiteStorage if sqlite else optuna.storages.RDBStorage
    try:
        return kind(
            url,
            engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None,
            heartbeat_interval=heartbeat,
            grace_period=GRACE_BEATS * heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
        )
    except (sqlalchemy.exc.OperationalError, ImportError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"study storage {public_url(url)}: {first}; check the URL, that the "
                       "server runs, and the password (or PGPASSWORD / ~/.pgpass); "
                       "PostgreSQL needs `pip install 'rlaif-lab[postgres]'`") from None


class _SQLiteStorage(optuna.storages.RDBStorage):
    """RDBStorage whose trial-state changes are serialised across processes by a file lock.

    SQLite has no row locks: two workers could both read a queued trial as WAITING and both
    set it RUNNING. The lock makes Optuna's check-and-set one step (PostgreSQL and MySQL do
    this with ``SELECT ... FOR UPDATE``). SQLite studies live on one machine, so a file lock
    reaches every worker.
    """

    def set_trial_state_values(self, trial_id, state, values=None) -> bool:
        with _file_lock(_lock_path(self.url)):
            return super().set_trial_state_values(trial_id, state, values)


def _lock_path(url: str) -> Path:
    database = sqlalchemy.engine.make_url(url).database
    if not database or database == ":memory:":
        raise ConfigError(f"--storage {url}: an in-memory study cannot be shared; name a file")
    return Path(database).with_name(Path(database).name + ".lock")


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def sweep_lock(url: str, name: str):
    """Hold the lock under which one worker at a time opens, checks and fills the study.

    SQLite: a file lock beside the database. PostgreSQL: a session advisory lock. MySQL:
    ``GET_LOCK``. Other databases are refused (no portable lock).
    """
    backend = sqlalchemy.engine.make_url(url).get_backend_name()
    if backend == "sqlite":
        with _file_lock(_lock_path(url)):
            yield
        return
    if backend not in ("postgresql", "mysql"):
        raise ConfigError(f"--storage {public_url(url)}: use sqlite, postgresql or mysql "
                          "(the sweep needs the database's lock for its workers)")
    key = int(hashlib.sha256(f"rlaif-sweep:{name}".encode()).hexdigest()[:15], 16)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                take = sqlalchemy.text("SELECT pg_advisory_lock(:k)")
                give = sqlalchemy.text("SELECT pg_advisory_unlock(:k)")
            else:
                take = sqlalchemy.text("SELECT GET_LOCK(CONCAT('rlaif-sweep-', :k), 3600)")
                give = sqlalchemy.text("SELECT RELEASE_LOCK(CONCAT('rlaif-sweep-', :k))")
            conn.execute(take, {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(give, {"k": key})
                conn.commit()
    except (sqlalchemy.exc.OperationalError, ImportError) as err:
        first = str(err).strip().splitlines()[0]
        raise RunError(f"study storage {public_url(url)}: {first}; check the URL, that the "
                       "server runs, and the password (or PGPASSWORD / ~/.pgpass); "
                       "PostgreSQL needs `pip install 'rlaif-lab[postgres]'`") from None
    finally:
        engine.dispose()


def experiment_record(exp: Experiment) -> dict:
    """The experiment as the study records it and later sweeps must match: ``data.path`` left
    out (the data slice is identified by content, so workers may read it from different
    places), and the ``trials`` budget (a larger budget continues a search)."""
    raw = experiment_dict(exp)
    raw["data"] = {k: v for k, v in raw["data"].items() if k != "path"}
    raw.pop("trials")
    return raw


def setting_of(trial: optuna.trial.FrozenTrial) -> dict | None:
    """The setting a trial holds: its params, or (queued, not started) the ``setting`` user
    attribute it was enqueued with."""
    return trial.params or trial.user_attrs.get("setting")


def holds(trial: optuna.trial.FrozenTrial, now: datetime.datetime) -> bool:
    """Whether a trial holds its setting: complete, queued or running (and not a zombie)."""
    if trial.state in (State.COMPLETE, State.WAITING):
        return True
    if trial.state != State.RUNNING:
        return False
    if "worker" in trial.user_attrs or trial.datetime_start is None:
        return True
    return (now - trial.datetime_start).total_seconds() < ZOMBIE_AFTER


class Sweep:
    """Runs an experiment's trials, sharing loaded models and the label cache.

    Args:
        exp: the experiment.
        root: results root (the results go to ``root/NAME``).
        cache: per-pair label cache (default: the user's SQLite cache file).
        progress: show progress bars.
        storage: an Optuna RDB URL (default: SQLite ``study.db`` in the results folder).
        heartbeat: seconds between heartbeats of a running trial.
        log: where to print what the worker is doing (None: stay quiet).
    """

    def __init__(
        self,
        exp: Experiment,
        root: Path = RESULTS,
        cache: LabelCache | None = None,
        progress: bool = True,
        storage: str | None = None,
        heartbeat: int = HEARTBEAT,
        log=None,
    ) -> None:
        self.exp = exp
        self.out = results_dir(exp, root)
        self.out.mkdir(parents=True, exist_ok=True)
        if cache is None:
            cache = LabelCache(models.cache_dir() / "labels.sqlite")
        self.cache = cache
        self.progress = progress
        self.explicit_storage = storage is not None
        self.url = storage or default_storage(self.out)
        public_url(self.url)  # a malformed URL is a one-line error here, not a traceback later
        self.heartbeat = heartbeat
        self.log = log
        self.backends: dict[str, Backend] = {}
        self.evaluated = 0  # settings labeled in this process (cache hits included)
        self._slices: dict = {}

    def say(self, text: str) -> None:
        if self.log is not None:
            print(text, file=self.log, flush=True)

    # --- labeling ------------------------------------------------------------------------

    def backend_for(self, config) -> Backend:
        """One loaded backend per distinct backend config.

        Backends with a ``close`` method (vLLM engines, which reserve their share of GPU
        memory when they start) are shut down before another one loads: one at a time.
        """
        key = json.dumps(dataclasses.asdict(config.backend), sort_keys=True)
        if key not in self.backends:
            for old in [k for k, b in self.backends.items() if hasattr(b, "close")]:
                self.backends.pop(old).close()
            self.backends[key] = make_backend(config.backend)
        return self.backends[key]

    def identity(self, setting: dict, split: str) -> dict:
        """The run identity of one setting on one split (see :func:`run_identity`)."""
        config = self.exp.run_config(setting, split)
        # a judge that shows a reference answer gets its own slice: the pairs with one
        memo = (config.data, config.prompt.shots, config.prompt.max_exemplar_chars,
                judge_class(config.prompt.judge).needs_reference)
        if memo not in self._slices:
            pairs, _, exemplars = prepare(config)
            self._slices[memo] = (pairs, exemplars)
        return run_identity(config, *self._slices[memo])

    def evaluate(self, setting: dict, split: str) -> tuple[dict, Path]:
        """Label one setting on one split; returns its metrics and run folder."""
        config = self.exp.run_config(setting, split)
        folder = self.out / ("trials" if split == self.exp.dev_split else split)
        run_dir = folder / setting_slug(setting)
        metrics = run_label(config, run_dir, self.backend_for(config), self.cache, self.progress)
        self.evaluated += 1
        return metrics, run_dir

    def values(self, metrics: dict) -> list[float]:
        vals = [metrics[self.exp.objective]]
        if self.exp.cost_objective:
            vals.append(metrics[self.exp.cost_objective])
        return [v if not math.isnan(v) else 0.0 for v in vals]

    def _objective(self, trial: optuna.Trial) -> list[float]:
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        setting: dict = {}
        # the judge first: whether a prompt axis applies depends on it (Experiment.applies)
        for a in sorted(self.exp.axes, key=lambda a: a != "judge"):
            if self.exp.applies(a, setting):
                setting[a] = trial.suggest_categorical(a, self.exp.axes[a])
        setting = {a: setting[a] for a in self.exp.axes if a in setting}  # file order
        if self.exp.sampler == "grid":
            other = self._holder(trial, setting)
            if other is not None:
                # the queue was empty when this worker asked, so the sampler proposed a
                # setting that another trial holds (or a retry raced a re-queue): run it once
                raise optuna.TrialPruned(f"{setting_slug(setting)} is held by trial {other}")
        trial.set_user_attr("identity", self.identity(setting, self.exp.dev_split))
        metrics, run_dir = self.evaluate(setting, self.exp.dev_split)
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("run_dir", str(run_dir))
        self.say(f"trial {trial.number} {setting_slug(setting)}: {self.exp.objective} "
                 f"{metrics[self.exp.objective]:.3f} ({metrics['n']} pairs)")
        return self.values(metrics)

    def _holder(self, trial: optuna.Trial, setting: dict) -> int | None:
        """Number of another trial that holds ``setting`` (complete, queued, running)."""
        now = datetime.datetime.now()
        for t in trial.study.get_trials(deepcopy=False):
            if t.number != trial.number and setting_of(t) == setting and holds(t, now):
                return t.number
        return None

    # --- the study -----------------------------------------------------------------------

    def open(self) -> optuna.Study:
        """Create or load the study under the sweep lock, check it, queue missing settings.

        Raises:
            RunError: the study holds trials of another experiment, data or templates.
        """
        with sweep_lock(self.url, self.exp.name):
            self.storage = make_storage(self.url, self.heartbeat)
            if self.exp.sampler == "grid":
                # every setting is queued, so the sampler only speaks when a worker finds the
                # queue empty; BruteForceSampler (unlike GridSampler) reads queued trials by
                # their params alone
                sampler = optuna.samplers.BruteForceSampler(seed=self.exp.seed)
            else:
                sampler = optuna.samplers.TPESampler(seed=self.exp.seed)
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            directions = ["maximize"] + (["minimize"] if self.exp.cost_objective else [])
            study = optuna.create_study(study_name=self.exp.name, storage=self.storage,
                                        sampler=sampler, directions=directions,
                                        load_if_exists=True)
            self.check(study)
            if "experiment" not in study.user_attrs:
                study.set_user_attr("experiment", experiment_record(self.exp))
            write_json_atomic(self.out / "experiment.json", experiment_dict(self.exp))
            if self.explicit_storage:
                write_json_atomic(self.out / "study.json", {"storage": public_url(self.url),
                                                            "study_name": self.exp.name})
            self.enqueue_missing(study)
        return study

    def _refuse(self, what: str) -> RunError:
        if self.explicit_storage:
            fix = (f"use another experiment name, or delete the study: optuna delete-study "
                   f"--study-name {self.exp.name} --storage {public_url(self.url)}")
        else:
            fix = f"use another --results folder (or experiment name), or move {self.out} away"
        return RunError(f"{self.out}: the study '{self.exp.name}' holds {what}; {fix}")

    def check(self, study: optuna.Study) -> None:
        """Refuse a study that holds another experiment or stale finished settings."""
        trials = study.get_trials(deepcopy=False)
        if not trials:
            return
        recorded = study.user_attrs.get("experiment")
        if recorded is None and (self.out / "experiment.json").is_file():
            old = json.loads((self.out / "experiment.json").read_text())
            recorded = {**old, "data": {k: v for k, v in old.get("data", {}).items()
                                        if k != "path"}}
            recorded.pop("trials", None)
        diff = first_difference(recorded, experiment_record(self.exp)) if recorded else None
        if diff:
            raise self._refuse(f"another experiment under this name ({diff})")
        for t in trials:
            if t.state != State.COMPLETE:
                continue
            slug = setting_slug(t.params)
            if set(t.params) != {a for a in self.exp.axes if self.exp.applies(a, t.params)}:
                raise self._refuse(f"trial {t.number} ({slug}) with other axes than "
                                   f"{', '.join(self.exp.axes)}")
            had = t.user_attrs.get("identity")
            if had is None:
                raise self._refuse(f"trial {t.number} ({slug}) from an rlaif-lab without run "
                                   "identities (its data and templates cannot be checked)")
            now = self.identity(t.params, self.exp.dev_split)
            if had.get("hash") == now["hash"]:
                continue
            if had.get("data") != now["data"]:
                what = "another data slice (the pairs' content differs)"
            elif had.get("templates") != now["templates"]:
                names = sorted(n for n in set(had["templates"]) | set(now["templates"])
                               if had["templates"].get(n) != now["templates"].get(n))
                what = f"other template text ({', '.join(names)} changed since)"
            else:
                what = f"another run config ({first_difference(had['config'], now['config'])})"
            raise self._refuse(f"trial {t.number} ({slug}) labeled with {what}")

    def enqueue_missing(self, study: optuna.Study) -> int:
        """Queue every grid setting that no trial holds (call under the sweep lock)."""
        if self.exp.sampler != "grid":
            return 0
        now = datetime.datetime.now()
        held = [setting_of(t) for t in study.get_trials(deepcopy=False) if holds(t, now)]
        missing = [s for s in self.exp.settings() if s not in held]
        # settings that share a model run together: loading one (vLLM: starting an engine)
        # is paid once per model, not once per switch (the sort is stable)
        backend_axes = [a for a in self.exp.axes if AXES[a][0] == "backend"]
        missing.sort(key=lambda s: [self.exp.axes[a].index(s[a]) for a in backend_axes
                                    if a in s])
        for setting in missing:
            study.enqueue_trial(setting, user_attrs={"setting": setting})
        return len(missing)

    def finished(self, trials: list) -> bool:
        complete = [t.params for t in trials if t.state == State.COMPLETE]
        if self.exp.sampler == "grid":
            return all(s in complete for s in self.exp.settings())
        return len(complete) >= self.exp.trials

    def run(self) -> optuna.Study:
        """Work on the study until every setting (grid) or the trial budget (tpe) is done."""
        study = self.open()
        waiting_note = False
        while True:
            trials = study.get_trials(deepcopy=False)
            if self.finished(trials):
                return study
            now = datetime.datetime.now()
            queued = [t for t in trials if t.state == State.WAITING]
            running = [t for t in trials if t.state == State.RUNNING and holds(t, now)]
            if queued:
                study.optimize(self._objective, n_trials=1, catch=())
                continue
            if self.exp.sampler == "grid":
                held = [setting_of(t) for t in trials if holds(t, now)]
                if any(s not in held for s in self.exp.settings()):
                    with sweep_lock(self.url, self.exp.name):
                        self.enqueue_missing(study)
                    continue
            else:
                done = sum(t.state == State.COMPLETE for t in trials)
                if done + len(running) < self.exp.trials:
                    study.optimize(self._objective, n_trials=1, catch=())
                    continue
            if not waiting_note:
                self.say(f"waiting for {len(running)} trial(s) running in other workers "
                         f"(one whose worker sends no heartbeat for "
                         f"{GRACE_BEATS * self.heartbeat} s is run again)")
                waiting_note = True
            time.sleep(1.0)  # a cheap poll: return soon after the last trial ends
            optuna.storages.fail_stale_trials(study)


def run_workers(exp: Experiment, root: Path, workers: int, storage: str | None,
                cache: str | None, heartbeat: int = HEARTBEAT) -> list[int]:
    """Run ``workers`` sweep processes on this machine; returns their exit codes.

    Each is an ordinary worker (as if ``rlaif sweep`` were started that many times); a worker
    that dies leaves its trial to the others (heartbeats).
    """
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads or CUDA
    procs = [ctx.Process(target=_worker, args=(exp, str(root), storage, cache, heartbeat, i),
                         name=f"sweep-worker-{i}") for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return [p.exitcode for p in procs]


def _worker(exp, root, storage, cache, heartbeat, index) -> None:
    out = sys.stderr
    try:
        sweep = Sweep(exp, root=Path(root), cache=open_cache(cache), progress=False,
                      storage=storage, heartbeat=heartbeat, log=_Prefixed(out, f"worker {index}"))
        sweep.run()
        sweep.say(f"done: {sweep.evaluated} settings evaluated here (label cache: "
                  f"{sweep.cache.hits} hits, {sweep.cache.misses} misses)")
    except LabError as err:
        print(f"error: worker {index}: {err}", file=out, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


class _Prefixed:
    """A text stream that prefixes each printed line (so workers' lines can be told apart)."""

    def __init__(self, stream, prefix: str) -> None:
        self.stream, self.prefix = stream, prefix

    def write(self, text: str) -> None:
        if text.strip():
            self.stream.write(f"{self.prefix}: {text}")
        elif text:
            self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def open_cache(location: str | None) -> LabelCache:
    """The label cache: None for the user's default file, a path, or an SQLAlchemy URL."""
    if location is None:
        return LabelCache(models.cache_dir() / "labels.sqlite")
    return LabelCache(location)


def completed_settings(study: optuna.Study) -> list[dict]:
    """Params of the complete trials."""
    return [t.params for t in study.get_trials(deepcopy=False) if t.state == State.COMPLETE]


def experiment_dict(exp: Experiment) -> dict:
    """The resolved experiment as plain data (written to experiment.json)."""
    return dataclasses.asdict(exp)


def study_storage(folder: Path) -> str:
    """The storage URL of a results folder: ``study.json``'s, else its SQLite ``study.db``."""
    record = Path(folder) / "study.json"
    if record.is_file():
        return json.loads(record.read_text())["storage"]
    return default_storage(folder)


def load_results(folder: str | Path) -> tuple[Experiment, optuna.Study]:
    """Read an experiment's resolved definition and study back from its results folder."""
    folder = Path(folder)
    exp_file = folder / "experiment.json"
    if not exp_file.is_file():
        raise ConfigError(f"{folder}: no experiment.json; run `rlaif sweep` for it first")
    raw = json.loads(exp_file.read_text())
    raw["data"] = build(DataConfig, raw["data"], str(exp_file))
    exp = build(Experiment, raw, str(exp_file))
    url = study_storage(folder)
    if url == default_storage(folder) and not (folder / "study.db").is_file():
        raise RunError(f"{folder}: no study.db (the sweep's trials are not here); run "
                       "`rlaif sweep` on its experiment file first")
    try:
        study = optuna.load_study(study_name=exp.name, storage=url)
    except KeyError:
        raise RunError(f"{folder}: no study '{exp.name}' in {public_url(url)}; "
                       "run `rlaif sweep` for it first") from None
    except sqlalchemy.exc.OperationalError as err:
        raise RunError(f"{folder}: study storage {public_url(url)}: "
                       f"{str(err).strip().splitlines()[0]}; set PGPASSWORD (or ~/.pgpass) "
                       "if the URL needs a password") from None
    return exp, study


def trial_run_dir(folder: str | Path, trial: optuna.trial.FrozenTrial) -> Path:
    """A trial's run folder: as recorded, or (the results folder moved, or read from another
    working folder) the folder of that name beside the study, under ``trials/``."""
    recorded = Path(trial.user_attrs["run_dir"])
    if recorded.is_dir():
        return recorded
    return Path(folder) / "trials" / recorded.name


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Complete trials, one per setting (the first), in trial order."""
    seen, out = [], []
    for t in study.get_trials(deepcopy=False):
        if t.state == State.COMPLETE and t.params not in seen:
            seen.append(t.params)
            out.append(t)
    return out


def ordered_trials(exp: Experiment, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Complete trials in the order of the experiment's settings (the first is the base)."""
    order = {json.dumps(s, sort_keys=True): i for i, s in enumerate(exp.settings())}
    return sorted(complete_trials(study),
                  key=lambda t: order.get(json.dumps(t.params, sort_keys=True), len(order)))


def best_trial(exp: Experiment, study: optuna.Study) -> optuna.trial.FrozenTrial:
    """Highest dev objective; ties go to the cheaper setting (fewer seconds per pair)."""
    trials = complete_trials(study)
    if not trials:
        raise RunError(f"results/{exp.name}: no complete trial yet")
    return max(trials, key=lambda t: (t.user_attrs[exp.objective],
                                      -t.user_attrs["seconds_per_pair"]))
