"""The workdir lock's takeover: once a stale lock is taken over, its former holder never touches
the new holder's lock, whether it refreshes or releases before, during or after the takeover."""

import json

from common.run import workdir_lock


def _look_stale(lock_path):
  """Makes the held lock another host's whose heartbeat stopped (its token unchanged)."""
  held = json.loads(lock_path.read_text())
  held.update(host="elsewhere", heartbeat_unix=held["heartbeat_unix"] - workdir_lock.STALE_S - 1)
  lock_path.write_text(json.dumps(held))


def _token(lock_path):
  return json.loads(lock_path.read_text())["token"]


def test_former_holder_refresh_and_release_leave_the_new_holders_lock(tmp_path):
  path = tmp_path / ".lock"
  old = workdir_lock.Lock.acquire(str(tmp_path))
  _look_stale(path)
  new = workdir_lock.Lock.acquire(str(tmp_path))
  assert _token(path) == new.record["token"] != old.record["token"]
  before = path.read_text()
  old.refresh()
  assert path.read_text() == before and old._stop.is_set()  # pylint: disable=protected-access
  old.release()
  assert path.read_text() == before
  new.refresh()
  assert _token(path) == new.record["token"] and path.read_text() != before  # new heartbeat
  new.release()
  assert not path.exists()


def _takeover_during(monkeypatch, tmp_path, name: str):
  """Replaces workdir_lock.`name` so that, the first time the former holder calls it (after it
  has read the lock as its own), a new holder takes the lock over before it returns.

  Returns a list that receives the new holder."""
  original, new = getattr(workdir_lock, name), []

  def then_takeover(*args, **kwargs):
    out = original(*args, **kwargs)
    if not new:
      monkeypatch.setattr(workdir_lock, name, original)
      if (tmp_path / ".lock").exists():
        _look_stale(tmp_path / ".lock")
      new.append(workdir_lock.Lock.acquire(str(tmp_path)))
    return out

  monkeypatch.setattr(workdir_lock, name, then_takeover)
  return new


def test_a_takeover_between_refreshs_read_and_write_keeps_the_new_lock(tmp_path, monkeypatch):
  old = workdir_lock.Lock.acquire(str(tmp_path))
  old._stop.set()  # pylint: disable=protected-access  # no heartbeat thread refreshing meanwhile
  new = _takeover_during(monkeypatch, tmp_path, "_heartbeat")
  old.refresh()
  assert new and _token(tmp_path / ".lock") == new[0].record["token"]
  old.release()
  assert _token(tmp_path / ".lock") == new[0].record["token"]
  new[0].release()
  assert not (tmp_path / ".lock").exists()


def test_a_takeover_between_releases_read_and_unlink_keeps_the_new_lock(tmp_path, monkeypatch):
  old = workdir_lock.Lock.acquire(str(tmp_path))
  old._stop.set()  # pylint: disable=protected-access
  new = _takeover_during(monkeypatch, tmp_path, "_read")
  old.release()
  assert new and _token(tmp_path / ".lock") == new[0].record["token"]
  new[0].release()
  assert not (tmp_path / ".lock").exists()
