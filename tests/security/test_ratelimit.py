"""The rate limiter: sliding one-minute windows shared by every process through one file."""

import json
import os
import subprocess
import sys
import textwrap
import time
import timeit
import warnings

import pytest

from shield.guard import ratelimit
from shield.guard.ratelimit import WINDOW, RateLimiter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W = 28_333_333  # a minute number: windows are floor(now / 60)


def at(window, second=0.0):
    return window * WINDOW + second


@pytest.fixture
def limiter(tmp_path):
    return RateLimiter(str(tmp_path / "cache" / "ratelimit.bin"))


def allowed_count(limiter, key, limit, n, now):
    return sum(limiter.hit(key, limit, now=now)[0] for _ in range(n))


def test_exactly_limit_hits_are_allowed_in_a_fresh_window(limiter):
    answers = [limiter.hit("ip|demo|1.2.3.4", 5, now=at(W, 1)) for _ in range(8)]
    assert [a for a, _ in answers] == [True] * 5 + [False] * 3
    assert all(r == 0 for _, r in answers[:5])
    assert all(1 <= r <= WINDOW for _, r in answers[5:])


def test_keys_and_limits_are_independent(limiter):
    assert allowed_count(limiter, "a", 3, 10, at(W, 2)) == 3
    assert allowed_count(limiter, "b", 3, 10, at(W, 2)) == 3
    assert allowed_count(limiter, "a|", 1, 10, at(W, 2)) == 1
    # A higher limit for the same key sees the count so far.
    assert allowed_count(limiter, "a", 5, 10, at(W, 2)) == 2


def test_refused_hits_are_not_counted(limiter):
    assert allowed_count(limiter, "k", 4, 100, at(W, 0)) == 4
    # Two minutes later the previous window (W + 1) is empty: a full budget again,
    # however many refused hits there were.
    assert allowed_count(limiter, "k", 4, 100, at(W + 2, 0)) == 4


def test_window_rolls_over_with_the_previous_minute_weighing_less(limiter):
    assert allowed_count(limiter, "k", 10, 10, at(W, 5)) == 10
    # Just after the boundary the previous minute still weighs 59/60 of its 10.
    assert not limiter.hit("k", 10, now=at(W + 1, 1))[0]
    # Half-way through, it weighs 5: five more fit (5 + 5 <= 10).
    assert allowed_count(limiter, "k", 10, 20, at(W + 1, 30)) == 5
    # Next minute: the previous (W + 1) holds 5 at full weight, then decays.
    assert allowed_count(limiter, "k", 10, 20, at(W + 2, 0)) == 5
    # Two idle minutes later: nothing weighs any more.
    assert allowed_count(limiter, "k", 10, 20, at(W + 4, 0)) == 10


def test_a_burst_across_the_boundary_does_not_get_twice_the_limit(limiter):
    assert allowed_count(limiter, "k", 10, 10, at(W, 59.9)) == 10
    assert allowed_count(limiter, "k", 10, 10, at(W + 1, 0.1)) == 0


@pytest.mark.parametrize("limit", [1, 2, 3, 10, 60, 600])
@pytest.mark.parametrize("filled_at", [0.0, 0.5, 10.0, 30.0, 59.0, 59.9])
@pytest.mark.parametrize("prev_fill", [0.0, 0.5, 1.0])
def test_retry_after_is_when_the_next_hit_is_allowed(tmp_path, limit, filled_at, prev_fill):
    limiter = RateLimiter(str(tmp_path / f"rl-{limit}-{filled_at}-{prev_fill}.bin"))
    prev = int(limit * prev_fill)
    assert allowed_count(limiter, "k", limit, prev, at(W - 1, 30)) == prev
    now = at(W, filled_at)
    allowed_count(limiter, "k", limit, limit, now)
    allowed, retry = limiter.hit("k", limit, now=now)
    assert not allowed
    assert isinstance(retry, int) and 1 <= retry <= WINDOW
    if retry < WINDOW:
        # Waiting retry_after seconds is enough, and (past a second) a second less is not.
        assert limiter.hit("probe", 1, now=now)  # (other keys do not disturb the count)
        if retry > 1:
            assert not limiter.hit("k", limit, now=now + retry - 1)[0]
        assert limiter.hit("k", limit, now=now + retry)[0]
    else:
        # Capped at one window: the wait may be longer than WINDOW, never shorter.
        assert not limiter.hit("k", limit, now=now + retry - 1)[0]


def test_retry_after_is_the_rest_of_the_window_when_only_this_minute_counts(limiter):
    assert allowed_count(limiter, "k", 600, 600, at(W, 10)) == 600
    # 50 s to the window's end, plus 1/600 of the next minute for the decaying weight.
    assert limiter.hit("k", 600, now=at(W, 10)) == (False, 51)
    assert limiter.hit("k", 600, now=at(W, 59.5)) == (False, 1)


@pytest.mark.parametrize("limit", [0, -1])
def test_unlimited_is_allowed_without_touching_the_disk(tmp_path, limit):
    path = tmp_path / "never" / "ratelimit.bin"
    limiter = RateLimiter(str(path))
    assert all(limiter.hit("k", limit) == (True, 0) for _ in range(1000))
    assert not path.parent.exists()


def test_counts_are_shared_between_limiters_on_one_file(tmp_path):
    path = str(tmp_path / "rl.bin")
    a, b = RateLimiter(path), RateLimiter(path)
    answers = [(a if i % 2 else b).hit("k", 7, now=at(W, 1))[0] for i in range(10)]
    assert answers.count(True) == 7
    assert os.path.getsize(path) == ratelimit.FILE_BYTES


def test_a_file_of_another_layout_is_started_afresh(tmp_path):
    path = tmp_path / "rl.bin"
    path.write_bytes(b"not a rate limit table" * 1000)
    limiter = RateLimiter(str(path))
    assert allowed_count(limiter, "k", 3, 5, at(W, 1)) == 3
    assert path.read_bytes()[:4] == ratelimit.MAGIC


def test_an_unwritable_folder_still_limits_within_the_process(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    limiter = RateLimiter(str(blocker / "ratelimit.bin"))
    assert allowed_count(limiter, "k", 3, 5, at(W, 1)) == 3


def colliding_keys(n):
    """n keys whose counters all live in one group of the table."""
    by_group = {}
    i = 0
    while True:
        key = f"ip|demo|198.51.{i // 256}.{i % 256}"
        group = by_group.setdefault(ratelimit._key_hash(key) % ratelimit.GROUPS, [])
        group.append(key)
        if len(group) == n:
            return group
        i += 1


def test_expired_slots_are_reused_before_live_ones(limiter):
    n = ratelimit.GROUP_SLOTS
    keys = colliding_keys(2 * n + 1)
    old, new, extra = keys[:n], keys[n : 2 * n], keys[2 * n]
    for key in old:
        limiter.hit(key, 100, now=at(W - 2, 1))
    # The old windows are over: every new key gets a slot and counts exactly.
    for i, key in enumerate(new):
        assert allowed_count(limiter, key, 100, i + 2, at(W, 1)) == i + 2
    for i, key in enumerate(new):
        assert allowed_count(limiter, key, i + 3, 5, at(W, 2)) == 1, key
    # A group full of live keys: the newcomer takes the least-used slot and the
    # busiest keys keep their counts (a flood of keys lets more through, never fewer).
    assert limiter.hit(extra, 1, now=at(W, 3))[0]
    assert not limiter.hit(new[-1], n + 2, now=at(W, 3))[0]


HAMMER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from shield.guard.ratelimit import RateLimiter
    path, key, limit, n, start, now = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    limiter = RateLimiter(path)
    limiter.hit("warm-up", 0)
    while time.time() < start:
        pass
    print(sum(limiter.hit(key, limit, now=now)[0] for _ in range(n)))
    """
)


def hammer(path, key, limit, n, processes, now):
    script = HAMMER.format(root=ROOT)
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, path, key, str(limit), str(n), str(start), str(now)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    counts = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        counts.append(int(out))
    return counts


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_hammering_one_key_count_exactly(tmp_path, processes):
    path = str(tmp_path / "rl.bin")
    n = 3000
    counts = hammer(path, "ip|demo|203.0.113.9", 10**9, n, processes, at(W, 1))
    assert counts == [n] * processes
    # The shared counter holds every one of them: one more fits under total + 1, then none.
    limiter = RateLimiter(path)
    total = n * processes
    assert limiter.hit("ip|demo|203.0.113.9", total + 1, now=at(W, 1)) == (True, 0)
    assert not limiter.hit("ip|demo|203.0.113.9", total + 1, now=at(W, 1))[0]


def test_processes_together_get_exactly_the_limit(tmp_path):
    counts = hammer(str(tmp_path / "rl.bin"), "project|demo", 2500, 2000, 3, at(W, 1))
    assert sum(counts) == 2500


def test_a_forked_child_opens_its_own_table_and_shares_the_counts(limiter):
    assert limiter.hit("k", 10**6, now=at(W, 1))[0]
    parent_pid = limiter._pid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads about
        pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 1
        try:
            ok = sum(limiter.hit("k", 10**6, now=at(W, 1))[0] for _ in range(500)) == 500
            code = 0 if ok and limiter._pid == os.getpid() != parent_pid else 2
        finally:
            os._exit(code)
    allowed = sum(limiter.hit("k", 10**6, now=at(W, 1))[0] for _ in range(500))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert allowed == 500
    assert limiter.hit("k", 1002, now=at(W, 1)) == (True, 0)
    assert not limiter.hit("k", 1002, now=at(W, 1))[0]


GEVENT_WAITER = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import json, sys, time
    import gevent
    sys.path.insert(0, {root!r})
    from shield.guard.ratelimit import RateLimiter
    limiter = RateLimiter(sys.argv[1])
    ticks = []
    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)
    gevent.spawn(ticker)
    gevent.sleep(0.05)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    answer = limiter.hit(sys.argv[2], 5, now=float(sys.argv[3]))
    took = time.monotonic() - started
    during = [t for t in ticks if started <= t <= started + took]
    print(json.dumps({{"answer": answer, "took": took, "ticks": len(during)}}), flush=True)
    """
)


def gevent_hit_while_locked(path, key, now, hold):
    """Hold the key's group lock from this process while a gevent process hits the key."""
    RateLimiter(path).hit("create", 1, now=now)
    group = ratelimit.HEADER_BYTES + (ratelimit._key_hash(key) % ratelimit.GROUPS) * ratelimit.GROUP_BYTES
    proc = subprocess.Popen(
        [sys.executable, "-c", GEVENT_WAITER.format(root=ROOT), path, key, str(now)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        import fcntl

        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX, ratelimit.GROUP_BYTES, group)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            time.sleep(hold)
            fcntl.lockf(fd, fcntl.LOCK_UN, ratelimit.GROUP_BYTES, group)
        finally:
            os.close(fd)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        return json.loads(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_under_gevent_a_contended_hit_yields_to_the_event_loop(tmp_path):
    path = str(tmp_path / "rl.bin")
    result = gevent_hit_while_locked(path, "k", at(W, 1), hold=0.3)
    assert result["answer"] == [True, 0]
    assert 0.2 <= result["took"] < ratelimit.LOCK_TIMEOUT + 0.5
    assert result["ticks"] >= 8  # the event loop kept running while the hit waited
    limiter = RateLimiter(path)
    assert limiter.hit("k", 2, now=at(W, 1)) == (True, 0)  # the waiting hit was counted
    assert not limiter.hit("k", 2, now=at(W, 1))[0]


def test_a_lock_held_too_long_fails_open(tmp_path):
    path = str(tmp_path / "rl.bin")
    result = gevent_hit_while_locked(path, "k", at(W, 1), hold=ratelimit.LOCK_TIMEOUT + 0.7)
    assert result["answer"] == [True, 0]
    assert ratelimit.LOCK_TIMEOUT - 0.05 <= result["took"] < ratelimit.LOCK_TIMEOUT + 0.5
    assert result["ticks"] >= 10


def test_a_hit_costs_little(limiter):
    keys = [f"ip|demo|10.0.{i // 256}.{i % 256}" for i in range(500)]
    limiter.hit("warm-up", 1)
    calls = iter(range(10**9))

    def one():
        limiter.hit(keys[next(calls) % 500], 10**9)

    best = min(timeit.repeat(one, number=2000, repeat=5)) / 2000
    assert best < 50e-6, f"{best * 1e6:.1f} us per hit"
