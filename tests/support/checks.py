"""What every Python multi-process test shares: check() prints ok/FAIL and records failures; wait_for() polls a
predicate until a deadline (every wait in a test is bounded)."""
import time

failures = []


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what), flush=True)
    if not cond:
        failures.append(what)
    return cond


def wait_for(seconds, pred, step=0.2):
    deadline = time.monotonic() + seconds
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
