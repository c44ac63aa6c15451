"""Container health check for Celery beat (the scheduler of the sweeper): its schedule file must exist and
have been written recently. beat writes it at start and syncs it every few minutes while it is scheduling
(Celery's PersistentScheduler, at least every 5 minutes with the sweeper due every minute), so a file older
than ``BEAT_STALE_AFTER_S`` (600) means beat has stopped scheduling. Standard library only.

Usage: python docker/healthcheck_beat.py [SCHEDULE_FILE]   (default /tmp/celerybeat-schedule, as in compose)
"""

import glob
import os
import sys
import time

schedule = sys.argv[1] if len(sys.argv) > 1 else "/tmp/celerybeat-schedule"  # noqa: S108 - compose and k8s use it
stale_after = float(os.environ.get("BEAT_STALE_AFTER_S", "600"))
# The dbm module behind the schedule may add a suffix (.db, .dat, ...).
files = [path for path in glob.glob(glob.escape(schedule) + "*") if os.path.isfile(path)]
if not files:
    print(f"unhealthy: no beat schedule file at {schedule}")
    sys.exit(1)
age = time.time() - max(os.path.getmtime(path) for path in files)
print(f"beat schedule written {age:.0f} s ago")
sys.exit(0 if age < stale_after else 1)
