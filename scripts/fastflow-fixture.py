#!/usr/bin/env python3
"""Builds a Fast-Flow installation as a test fixture for `flotilla import fastflow`:
its database made by Fast-Flow's own schema, its logs directory, its pipelines folder,
and `expected.json` saying, in Fast-Flow's terms, what was put in.

The schema is Fast-Flow's: this script imports `app/models.py` from a Fast-Flow checkout
and lets SQLModel create the tables (as Fast-Flow does at first start), stamps Alembic's
head revision (as Fast-Flow's init script does), then adds sample rows through those
models. Nothing of Fast-Flow is copied into the fixture but the database it makes.
Secrets are Fernet tokens made with `cryptography` (Fast-Flow's library) under a fixed
test key, so the import's keeping of ciphertexts can be checked.

usage: python3 -m venv /tmp/ff && /tmp/ff/bin/pip install sqlmodel cryptography psycopg2-binary
       git clone <fast-flow> /tmp/fast-flow   (or any checkout of it)
       /tmp/ff/bin/python scripts/fastflow-fixture.py /tmp/fast-flow tests/fixtures/fastflow \
           [postgresql://postgres@127.0.0.1:5432/fastflow]

With a PostgreSQL URL (an empty database), the same rows are also written there by the
same models, and `pg_dump` of it becomes `data/fastflow-postgres.sql` (Fast-Flow's
DATABASE_URL may name PostgreSQL).

The output is committed; run this again only to follow a change of Fast-Flow's schema.
"""
import datetime
import json
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import uuid

from cryptography.fernet import Fernet

# The key Fast-Flow's ENCRYPTION_KEY held (the tests give it to the import).
FERNET_KEY = "kq7uNQ0zXb1m6l0uX3Gk0Q2kq8Jm3hD1y8H0bqQy3Zs="
UTC = datetime.timezone.utc
# Fernet tokens carry their creation time; a fixed one keeps the fixture reproducible.
TOKEN_TIME = 1_790_000_000
IV = bytes(range(16))

HELLO_MAIN = '''import hashlib
import os
import sys

# Secret values are masked in Flotilla's logs, so the run prints their digests.
for key in ("API_TOKEN", "REGION"):
    value = os.environ.get(key, "")
    print(f"{key} sha256={hashlib.sha256(value.encode()).hexdigest()}", flush=True)
print(f"python {sys.version_info[0]}.{sys.version_info[1]}", flush=True)
'''

HELLO_JSON = {
    "description": "Greets; reads a global secret and a parameter",
    "python_version": "3.11",
    "secrets": ["API_TOKEN", "REGION"],
    "schedule_cron": "0 7 * * 0",
    "webhook_key": "hello-webhook-key-0123456789",
    "retry_attempts": 1,
    "retry_strategy": {"type": "fixed_delay", "delay": 30},
    "max_instances": 1,
}

ETL_MAIN = 'import os\nprint(f"etl done target={os.environ.get(\'TARGET\')}", flush=True)\n'
ETL_JSON = {
    "description": "Nightly load",
    "python_version": "3.11",
    "schedules": [
        # A run configuration with settings of its own, also run by its own webhook key.
        {"id": "prod", "schedule_cron": "15 2 * * *", "default_env": {"TARGET": "prod"},
         "timeout": 900, "webhook_key": "etl-prod-webhook-key-0123"},
    ],
    "timeout": 600,
}


def at(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def log_name(pipeline, started):
    # Fast-Flow names a run's log `<pipeline>_<UTC start, ISO 8601>.log` in LOGS_DIR.
    return f"{pipeline}_{started.isoformat()}.log"


def log_text(started, lines):
    out = []
    for i, line in enumerate(lines):
        if line.startswith("!raw "):
            out.append(line[len("!raw "):])  # appended without a timestamp (error notes)
            continue
        stamp = (started + datetime.timedelta(milliseconds=250 * (i + 1))).strftime(
            "%Y-%m-%d %H:%M:%S.%f"
        )[:-3]
        out.append(f"[{stamp}] {line}")
    return "\n".join(out) + "\n"


RUNS = [
    # id, pipeline, status, trigger, started, seconds, exit, lines, extra
    ("7d0c3a52-58d1-4c9e-9a55-0b7f1d9e2a01", "hello", "SUCCESS", "manual",
     "2026-10-01T08:00:00", 4.5, 0,
     ["API_TOKEN sha256=aa", "python 3.11", "done"], {"setup_duration": 1.25}),
    ("7d0c3a52-58d1-4c9e-9a55-0b7f1d9e2a02", "hello", "FAILED", "webhook",
     "2026-10-02T09:30:00", 2.0, 1,
     ["Traceback (most recent call last):", "ValueError: bad input",
      "!raw Container exited with code 1"], {"parameters": {"DATE": "2026-10-02"}}),
    ("7d0c3a52-58d1-4c9e-9a55-0b7f1d9e2a03", "hello", "INTERRUPTED", "scheduler",
     "2026-10-03T07:00:00", 30.0, None, ["working"], {}),
    ("7d0c3a52-58d1-4c9e-9a55-0b7f1d9e2a04", "hello", "WARNING", "scheduler",
     "2026-10-04T07:00:00", 12.0, None, ["working"], {}),
    ("7d0c3a52-58d1-4c9e-9a55-0b7f1d9e2a05", "nightly_etl", "SUCCESS", "scheduler",
     "2026-10-05T02:15:00", 61.0, 0, ["etl done"],
     {"run_config_id": "prod", "git_sha": "0123456789abcdef0123456789abcdef01234567",
      "git_branch": "main", "git_commit_message": "Load the new table", "metrics": True}),
    # Still running when Fast-Flow stopped: not history yet.
    ("7d0c3a52-58d1-4c9e-9a55-0b7f1d9e2a06", "hello", "RUNNING", "manual",
     "2026-10-06T10:00:00", None, None, ["started"], {}),
]


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    checkout, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    sys.path.insert(0, str(checkout))
    if out.exists():
        shutil.rmtree(out)
    data, logs, pipelines = out / "data", out / "logs", out / "pipelines"
    for d in (data, logs, pipelines):
        d.mkdir(parents=True)
    head = sorted(p.stem for p in (checkout / "alembic" / "versions").glob("*.py"))[-1]
    expected = fill(f"sqlite:///{data / 'fastflow.db'}", head, logs)
    with sqlite3.connect(data / "fastflow.db") as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES (?)", (head,))
    if len(sys.argv) == 4:
        url = sys.argv[3]
        fill(url.replace("postgresql://", "postgresql+psycopg2://", 1), head, logs)
        from sqlalchemy import create_engine, text  # noqa: E402
        with create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1)).begin() as db:
            db.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            db.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": head})
        dump = subprocess.run(["pg_dump", "--no-owner", "--no-privileges", url],
                              check=True, capture_output=True, text=True).stdout
        (data / "fastflow-postgres.sql").write_text(dump)

    for name, main_py, meta in (("hello", HELLO_MAIN, HELLO_JSON),
                                ("nightly_etl", ETL_MAIN, ETL_JSON)):
        folder = pipelines / name
        folder.mkdir()
        (folder / "main.py").write_text(main_py)
        (folder / "pipeline.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


def fill(url, head, logs):
    """Creates Fast-Flow's tables at `url` with its models and adds the sample rows
    (and, once, their log files); answers what went in."""
    from sqlmodel import Session, SQLModel, create_engine  # noqa: E402
    from app import models  # noqa: E402  (Fast-Flow's schema)

    engine = create_engine(url)
    SQLModel.metadata.create_all(engine)
    fernet = Fernet(FERNET_KEY)
    expected = {"encryption_key": FERNET_KEY, "alembic_head": head, "runs": [],
                "secrets": {}, "parameters": {}, "ui_schedules": []}

    with Session(engine) as session:
        for name, total, ok, failed in (("hello", 5, 1, 1), ("nightly_etl", 1, 1, 0)):
            session.add(models.Pipeline(pipeline_name=name, has_requirements=False,
                                        total_runs=total, successful_runs=ok, failed_runs=failed))
        for key, value in (("API_TOKEN", "tok-3f9a-secret"), ("DB_PASSWORD", "pg-p4ss")):
            token = fernet._encrypt_from_parts(value.encode(), TOKEN_TIME, IV).decode()
            session.add(models.Secret(id=uuid.UUID(int=len(expected["secrets"]) + 1), key=key,
                                      value=token, is_parameter=False,
                                      created_at=at("2026-09-01T00:00:00"),
                                      updated_at=at("2026-09-01T00:00:00")))
            expected["secrets"][key] = {"plaintext": value, "token": token}
        session.add(models.Secret(id=uuid.UUID(int=10), key="REGION", value="eu-central-1",
                                  is_parameter=True, created_at=at("2026-09-01T00:00:00"),
                                  updated_at=at("2026-09-01T00:00:00")))
        expected["parameters"]["REGION"] = "eu-central-1"

        for run_id, pipeline, status, trigger, started, seconds, code, lines, extra in RUNS:
            start = at(started)
            log_path = logs / log_name(pipeline, start)
            log_path.write_text(log_text(start, lines))
            metrics_file = None
            if extra.get("metrics"):
                metrics_path = logs / f"{run_id}_metrics.jsonl"
                samples = [{"timestamp": (start + datetime.timedelta(seconds=2 * i)).isoformat(),
                            "cpu_percent": 10.0 * i, "ram_mb": 50.0 + i, "ram_limit_mb": 512}
                           for i in range(3)]
                metrics_path.write_text("".join(json.dumps(s) + "\n" for s in samples))
                metrics_file = f"/app/logs/{metrics_path.name}"
            finished = start + datetime.timedelta(seconds=seconds) if seconds is not None else None
            session.add(models.PipelineRun(
                id=uuid.UUID(run_id), pipeline_name=pipeline, status=status,
                # Fast-Flow stores the absolute path it wrote, inside its container.
                log_file=f"/app/logs/{log_path.name}", metrics_file=metrics_file,
                env_vars={"API_TOKEN": "tok-3f9a-secret"}, parameters=extra.get("parameters", {}),
                uv_version="0.9.5", setup_duration=extra.get("setup_duration"),
                started_at=start, finished_at=finished, exit_code=code, triggered_by=trigger,
                run_config_id=extra.get("run_config_id"), git_sha=extra.get("git_sha"),
                git_branch=extra.get("git_branch"),
                git_commit_message=extra.get("git_commit_message")))
            expected["runs"].append({
                "id": run_id, "pipeline": pipeline, "status": status, "trigger": trigger,
                "started_at": start.isoformat(), "finished_at": finished and finished.isoformat(),
                "exit_code": code, "lines": [l.removeprefix("!raw ") for l in lines],
                "parameters": extra.get("parameters", {}), "git_sha": extra.get("git_sha"),
                "setup_duration": extra.get("setup_duration"),
                "samples": 3 if extra.get("metrics") else 0})

        jobs = [
            # UI-made: kept; the first disabled in the UI and ending at a date.
            ("a1b2c3d4-0000-4000-8000-000000000001", "hello", "CRON", "30 6 * * 0", False,
             None, "2027-06-30T00:00:00", "api", None),
            ("a1b2c3d4-0000-4000-8000-000000000002", "nightly_etl", "INTERVAL", "900", True,
             "2026-11-01T00:00:00", None, "api", None),
            # Made from pipeline.json: the folder declares it, the import skips it.
            ("a1b2c3d4-0000-4000-8000-000000000003", "hello", "CRON", "0 7 * * 0", True,
             None, None, "pipeline_json", None),
        ]
        for job_id, pipeline, kind, value, enabled, start, end, source, config in jobs:
            session.add(models.ScheduledJob(
                id=uuid.UUID(job_id), pipeline_name=pipeline, trigger_type=kind,
                trigger_value=value, enabled=enabled, start_date=start and at(start),
                end_date=end and at(end), source=source, run_config_id=config,
                created_at=at("2026-09-15T00:00:00")))
            if source == "api":
                expected["ui_schedules"].append({"id": job_id, "pipeline": pipeline,
                                                 "type": kind, "value": value,
                                                 "enabled": enabled, "start": start, "end": end})
        session.add(models.DownstreamTrigger(
            id=uuid.UUID(int=20), upstream_pipeline="hello", downstream_pipeline="nightly_etl",
            on_success=True, on_failure=False, enabled=True,
            created_at=at("2026-09-15T00:00:00")))
        expected["downstream_triggers"] = [{"upstream": "hello", "downstream": "nightly_etl"}]
        session.add(models.OrchestratorSettings(id=1, max_concurrent_runs=4,
                                                container_timeout=3600, log_retention_days=30))
        expected["settings"] = {"max_concurrent_runs": 4, "container_timeout": 3600,
                                "log_retention_days": 30}
        session.commit()
    expected["run_configs"] = [{"pipeline": "nightly_etl", "id": "prod",
                                "webhook_key": "etl-prod-webhook-key-0123",
                                "env": {"TARGET": "prod"}, "timeout_seconds": 900}]
    return expected


if __name__ == "__main__":
    main()
