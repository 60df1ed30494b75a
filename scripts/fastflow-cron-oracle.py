#!/usr/bin/env python3
"""Writes the instants at which Fast-Flow's scheduler fires a set of crontab lines over
2027 (UTC), computed by APScheduler 3 itself (`CronTrigger.from_crontab`, as Fast-Flow
builds its cron jobs), to src/resource/fastflow/tests/fixtures/apscheduler-2027.json.
The import's translation of each line (src/resource/fastflow/cron.rs) must fire on
exactly these instants; that table test reads the file.

usage: python3 -m venv /tmp/aps && /tmp/aps/bin/pip install 'apscheduler==3.10.4'
       /tmp/aps/bin/python scripts/fastflow-cron-oracle.py
"""
import datetime
import json
import pathlib

from apscheduler.triggers.cron import CronTrigger

LINES = [
    "0 9 * * 0-4",        # numbered weekdays: 0 = Monday in APScheduler
    "30 6 * * 0",         # Mondays
    "0 0 * * 6",          # Sundays
    "*/20 8-10 * * 1-5",  # Tuesday to Saturday
    "0 12 * * */2",       # every second weekday from Monday
    "0 7 * * 1-5/2",      # a stepped range
    "0 9 1-7 * 0",        # both day fields: the first Monday of each month
    "0 22 13 * 4",        # Friday the 13th
    "0 3 * * mon,wed",    # names
    "15 4 1,15 * *",      # day of month only
    "5 5 * 1-3 fri",      # months and a name
    "45 23 * * SAT-SUN",  # a range of names, upper case
    "0 6 */10 * 2,4",     # stepped days of month and weekdays together
    "0 8 * * *",          # no day restriction
]

START = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
END = datetime.datetime(2028, 1, 1, tzinfo=datetime.timezone.utc)


def instants(line):
    trigger = CronTrigger.from_crontab(line, timezone=datetime.timezone.utc)
    out, previous, now = [], None, START - datetime.timedelta(microseconds=1)
    while True:
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None or fire >= END:
            return out
        out.append(int(fire.timestamp()))
        previous, now = fire, fire + datetime.timedelta(seconds=1)


def main():
    table = {line: instants(line) for line in LINES}
    path = pathlib.Path(__file__).resolve().parent.parent / "src/resource/fastflow/tests/fixtures/apscheduler-2027.json"
    path.write_text(json.dumps({"apscheduler": "3.10.4", "from": START.isoformat(),
                                "until": END.isoformat(), "fires": table}, indent=0) + "\n")
    for line, fires in table.items():
        print(f"{line!r}: {len(fires)} instants")


if __name__ == "__main__":
    main()
