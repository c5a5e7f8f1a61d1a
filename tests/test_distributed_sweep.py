"""Distributed sweeps on the fake backend: several workers on one study, one killed mid-trial.

Each scenario runs on SQLite (always) and on PostgreSQL when ``RLAIF_TEST_POSTGRES_URL`` names
a server whose user may create databases (``.ci/run`` starts one on 127.0.0.1); every
PostgreSQL test works in a database of its own, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import optuna
import pytest
import sqlalchemy
import yaml

from lab.cache import LabelCache
from lab.experiment import Experiment, setting_slug
from lab.run import read_records
from lab.sweep import Sweep
from tests.conftest import ROOT, write_rows
from tests.test_sweep import FAKE, posts

PG_ENV = "RLAIF_TEST_POSTGRES_URL"
AXES = {"preamble": ["base", "detailed"], "shots": [0, 1, 2], "cot": [False, True]}  # 12


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    """(study storage URL or None for the default SQLite file, cache URL maker)."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"no PostgreSQL: set {PG_ENV}=postgresql://user@127.0.0.1:PORT/db "
                    "(.ci/run starts one) to run the distributed sweep on PostgreSQL")
    yield "postgresql"


@pytest.fixture
def places(backend, tmp_path):
    """Storage URL (None = default SQLite) and label-cache URL for one test."""
    if backend == "sqlite":
        yield None, f"sqlite:///{tmp_path / 'labels.sqlite'}"
        return
    server = sqlalchemy.engine.make_url(os.environ[PG_ENV])
    name = f"rlaif_t_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT",
                                     poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    yield url, url
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def experiment(tmp_path, axes=AXES, delay=0.02, name="dist"):
    data = write_rows(tmp_path / "c.json", posts())
    slow = {"backend": {**FAKE, "fake": {**FAKE["fake"], "delay": delay}}}
    spec = {"name": name, "data": {"path": str(data), "confidence": "high"},
            "dev_split": "eval", "test_split": "all", "base": slow, "axes": axes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def sweep_cmd(path, results, storage, cache, *extra):
    cmd = [sys.executable, "-m", "lab", "sweep", str(path), "--results", str(results),
           "--no-progress", "--no-report", "--heartbeat", "1", "--cache", cache, *extra]
    return cmd + (["--storage", storage] if storage else [])


def env(tmp_path):
    return {**os.environ, "RLAIF_CACHE_DIR": str(tmp_path / "cache-dir"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def load(exp, results, storage):
    url = storage or f"sqlite:///{results / exp.name / 'study.db'}"
    return optuna.load_study(study_name=exp.name, storage=url)


def single_worker_labels(path, tmp_path):
    """Labels of every setting from one in-process worker with its own fresh cache."""
    cache = LabelCache()
    sweep = Sweep(Experiment.load(path), root=tmp_path / "single", cache=cache,
                  progress=False, heartbeat=1)
    sweep.run()
    labels = {}
    for setting in sweep.exp.settings():
        records = read_records(sweep.out / "trials" / setting_slug(setting) / "labels.jsonl")
        labels[setting_slug(setting)] = {r["key"]: (r["p"], r["p_fwd"], r["p_swapped"])
                                         for r in records}
    return labels, cache.misses


def check_study(exp, results, storage, single):
    """Every setting complete exactly once, nothing left queued or running, labels equal."""
    study = load(exp, results, storage)
    trials = study.get_trials()
    assert {t.state.name for t in trials} <= {"COMPLETE", "FAIL", "PRUNED"}
    complete = [json.dumps(t.params, sort_keys=True) for t in trials
                if t.state.name == "COMPLETE"]
    assert sorted(complete) == sorted(json.dumps(s, sort_keys=True) for s in exp.settings())
    for setting in exp.settings():
        slug = setting_slug(setting)
        records = read_records(results / exp.name / "trials" / slug / "labels.jsonl")
        assert len(records) == len({r["key"] for r in records})  # no pair twice
        got = {r["key"]: (r["p"], r["p_fwd"], r["p_swapped"]) for r in records}
        assert got == single[slug], slug
    return trials


def cache_rows(cache_url):
    engine = sqlalchemy.create_engine(cache_url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        total = conn.execute(sqlalchemy.text("SELECT COUNT(*) FROM rlaif_label_cache")).scalar()
        dup = conn.execute(sqlalchemy.text(
            "SELECT key FROM rlaif_label_cache GROUP BY key HAVING COUNT(*) > 1")).fetchall()
    engine.dispose()
    return total, dup


def test_three_workers_one_killed_mid_trial(places, tmp_path):
    storage, cache = places
    path = experiment(tmp_path)
    exp = Experiment.load(path)
    single, computed = single_worker_labels(path, tmp_path)
    results = tmp_path / "results"
    proc = subprocess.Popen(sweep_cmd(path, results, storage, cache, "--workers", "3"),
                            cwd=ROOT, env=env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            running = [t for t in load(exp, results, storage).get_trials()
                       if t.state.name == "RUNNING" and "identity" in t.user_attrs]
        except (KeyError, sqlalchemy.exc.OperationalError):
            continue  # the study is being created
        for t in running:
            labels = results / exp.name / "trials" / setting_slug(t.params) / "labels.jsonl"
            if labels.is_file() and len(read_records(labels)) >= 3:
                victim = t
                break
    assert victim is not None, "no trial was seen mid-way"
    os.kill(victim.user_attrs["worker"]["pid"], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "exited with -9 (their trials were run by the others)" in err
    assert f"{exp.name}: 12 settings complete by 3 workers" in out
    trials = check_study(exp, results, storage, single)
    killed = [t for t in trials if t.number == victim.number]
    assert killed[0].state.name == "FAIL"  # failed by a live worker's fail_stale_trials
    retried = [t for t in trials if t.state.name == "COMPLETE" and t.params == victim.params]
    assert len(retried) == 1 and retried[0].number > victim.number
    total, dup = cache_rows(cache)
    assert dup == [] and total == computed


@pytest.mark.parametrize("apart", [0.0, 1.0])
def test_two_sweeps_started_together_or_apart_cooperate(places, tmp_path, apart):
    storage, cache = places
    path = experiment(tmp_path, axes={"preamble": ["base", "detailed"], "shots": [0, 1, 2]})
    exp = Experiment.load(path)
    single, computed = single_worker_labels(path, tmp_path)
    results = tmp_path / "results"
    procs = []
    for _ in range(2):
        procs.append(subprocess.Popen(sweep_cmd(path, results, storage, cache), cwd=ROOT,
                                      env=env(tmp_path), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
        time.sleep(apart)
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert f"{exp.name}: 6 settings complete" in out
    evaluated = [int(out.split("(")[1].split(" evaluated")[0]) for out, _ in outputs]
    assert sum(evaluated) == 6  # each setting labeled by one of them
    check_study(exp, results, storage, single)
    total, dup = cache_rows(cache)
    assert dup == [] and total == computed


def test_default_sqlite_study_has_no_duplicate_cache_keys(tmp_path):
    # the default label cache (a SQLite file, sqlite3) and the URL one agree on the schema rule
    c = LabelCache(tmp_path / "a.sqlite")
    c.put("k", {"p": 0.25})
    c.put("k", {"p": 0.25})
    rows = sqlite3.connect(tmp_path / "a.sqlite").execute("SELECT COUNT(*) FROM labels")
    assert rows.fetchone()[0] == 1
    u = LabelCache(f"sqlite:///{tmp_path / 'b.sqlite'}")
    u.put("k", {"p": 0.25})
    u.put("k", {"p": 0.75})
    assert u.get("k") == {"p": 0.75} and u.get("missing") is None
    assert (u.hits, u.misses) == (1, 1)
    assert cache_rows(f"sqlite:///{tmp_path / 'b.sqlite'}") == (1, [])


def test_cache_table_created_by_another_worker_in_between(tmp_path, monkeypatch):
    """Two workers open one database cache together: the one whose CREATE TABLE loses the race
    (SQLite: OperationalError 'already exists') looks again instead of failing."""
    real = sqlalchemy.MetaData.create_all
    calls = []

    def racing(self, bind, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the other worker's CREATE lands first
            real(self, bind, *args, **kwargs)
            raise sqlalchemy.exc.OperationalError(
                "CREATE TABLE rlaif_label_cache", {}, Exception(
                    "table rlaif_label_cache already exists"))
        return real(self, bind, *args, **kwargs)

    monkeypatch.setattr(sqlalchemy.MetaData, "create_all", racing)
    cache = LabelCache(f"sqlite:///{tmp_path / 'labels.sqlite'}")
    cache.put("k", {"p": 0.5})
    assert len(calls) == 2 and cache.get("k") == {"p": 0.5}
