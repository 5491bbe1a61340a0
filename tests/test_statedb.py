"""StateDB: a state file that could not be opened is tried again, never given up."""

import time

from shield.statedb import StateDB

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT);"


def test_a_failed_open_is_tried_again(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")  # makedirs and connect fail
    db = StateDB(str(blocker / "x.db"), SCHEMA)
    assert db.get() is None
    blocker.unlink()
    assert db.get() is None  # within RETRY_SECONDS: not tried yet
    time.sleep(StateDB.RETRY_SECONDS + 0.05)
    conn = db.get()
    assert conn is not None
    conn.execute("INSERT INTO t VALUES ('a', 'b')")
    assert conn.execute("SELECT v FROM t WHERE k = 'a'").fetchone() == ("b",)
    assert db.get() is conn  # opened once, then kept
