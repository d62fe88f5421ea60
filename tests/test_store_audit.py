import json
import shutil
import signal
import subprocess
import sys

import pytest

from daedalus.store.audit import GENESIS, AuditLog, record_hash, verify


def _log(tmp_path, n=5):
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append("trial_result", trial=i, score=0.5 + i / 100)
    return log.path


def _lines(path):
    return path.read_text().splitlines()


def test_intact_chain_verifies(tmp_path):
    result = verify(_log(tmp_path))
    assert result.ok and result.n_records == 5 and result.first_bad is None


def test_edit_is_detected_at_the_edited_record(tmp_path):
    path = _log(tmp_path)
    lines = _lines(path)
    rec = json.loads(lines[2])
    rec["score"] = 0.99
    lines[2] = json.dumps(rec, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    result = verify(path)
    assert not result.ok and result.first_bad == 3 and "edited" in result.reason


def test_deletion_is_detected(tmp_path):
    path = _log(tmp_path)
    lines = _lines(path)
    del lines[1]
    path.write_text("\n".join(lines) + "\n")
    result = verify(path)
    assert not result.ok and result.first_bad == 2


def test_reordering_is_detected(tmp_path):
    path = _log(tmp_path)
    lines = _lines(path)
    lines[1], lines[3] = lines[3], lines[1]
    path.write_text("\n".join(lines) + "\n")
    assert not verify(path).ok and verify(path).first_bad == 2


def test_reopen_continues_the_chain_and_drops_a_torn_line(tmp_path):
    path = _log(tmp_path, 3)
    with open(path, "a") as f:
        f.write('{"seq": 3, "event": "half-writ')  # a kill in the middle of a write
    log = AuditLog(path)
    log.append("resumed")
    result = verify(path)
    assert result.ok and result.n_records == 4


def _append_many(path, writer, n):
    log = AuditLog(path)
    for i in range(n):
        log.append("steer", writer=writer, i=i)


def test_processes_appending_at_once_keep_one_chain(tmp_path):
    # The build and, from other terminals, approve/reject/steer/predict append to the same log at the same time.
    import multiprocessing

    path = _log(tmp_path, 3)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, w, 150)) for w in range(3)]
    for p in procs:
        p.start()
    _append_many(path, "main", 150)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    result = verify(path)
    assert result.ok, result.reason
    assert result.n_records == 3 + 4 * 150
    records = AuditLog(path).records()
    assert [r["i"] for r in records if r.get("writer") == 1] == list(range(150))  # each writer's order kept


def test_a_log_opened_elsewhere_continues_after_appends_from_another_handle(tmp_path):
    path = _log(tmp_path, 2)
    first, second = AuditLog(path), AuditLog(path)  # e.g. the build's, and a 'steer' command's
    first.append("a")
    second.append("b")
    first.append("c")
    assert verify(path).ok and [r["seq"] for r in first.records()] == [0, 1, 2, 3, 4]


def test_verify_reports_the_last_hash(tmp_path):
    path = _log(tmp_path, 4)
    assert verify(path).last_hash == json.loads(_lines(path)[-1])["hash"]


# -- the anchor (DATA_HOME/anchors, out of an attacker's reach) -------------------------------------------------
def _rechain(records):
    """What an attacker who can write the run directory can do: recompute every prev and hash."""
    prev = GENESIS
    for seq, rec in enumerate(records):
        rec["seq"], rec["prev"] = seq, prev
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def test_a_rehashed_edit_passes_the_chain_but_not_the_anchor(tmp_path):
    path = _log(tmp_path)
    records = [json.loads(line) for line in _lines(path)]
    records[2]["score"] = 0.99
    path.write_text(_rechain(records))
    result = verify(path)
    assert not result.ok and "rewritten" in result.reason and result.first_bad == 5


def test_a_chain_rewritten_from_the_start_has_no_anchor(tmp_path):
    path = _log(tmp_path)
    records = [json.loads(line) for line in _lines(path)]
    records[0]["time"] += 1  # a new first record: a new genesis hash
    path.write_text(_rechain(records))
    result = verify(path)
    assert not result.ok and "rewritten from the start" in result.reason and result.first_bad == 1


def test_a_run_from_another_machine_is_told_how_to_proceed(tmp_path, monkeypatch):
    path = _log(tmp_path)
    monkeypatch.setenv("DAEDALUS_HOME", str(tmp_path / "other-machine"))
    result = verify(path)
    assert not result.ok and "made on another machine" in result.reason and "copy that anchor file" in result.reason


def test_a_forged_record_appended_by_hand_is_refused(tmp_path):
    path = _log(tmp_path)
    records = [json.loads(line) for line in _lines(path)]
    forged = {"seq": 5, "time": records[-1]["time"] + 1, "event": "approval", "decision": "approved", "by": "mallory",
              "prev": records[-1]["hash"]}
    forged["hash"] = record_hash(forged)
    with open(path, "a") as f:
        f.write(json.dumps(forged, sort_keys=True) + "\n")
    result = verify(path)
    assert not result.ok and "appended without daedalus anchoring" in result.reason and result.first_bad == 6


def test_a_cut_tail_is_refused_and_a_later_append_does_not_launder_it(tmp_path):
    path = _log(tmp_path, 5)
    path.write_text("\n".join(_lines(path)[:-2]) + "\n")  # two records removed: the chain itself is intact
    result = verify(path)
    assert not result.ok and "cut off the end" in result.reason
    AuditLog(path).append("reject")  # a daedalus command run on the cut log: it must not move the anchor
    assert not verify(path).ok


def test_one_record_cut_is_restored_from_the_anchor(tmp_path):
    path = _log(tmp_path, 5)
    whole = path.read_text()
    path.write_text("\n".join(_lines(path)[:-1]) + "\n")  # the anchor holds the last record in full
    assert verify(path).ok and path.read_text() == whole


def test_a_copy_verifies_and_each_copy_keeps_its_own_head(tmp_path):
    (tmp_path / "a").mkdir()
    path = _log(tmp_path / "a", 3)
    (tmp_path / "b").mkdir()
    copy = tmp_path / "b" / "audit.jsonl"
    shutil.copy(path, copy)
    assert verify(copy).ok
    AuditLog(copy).append("approval_b")  # the copy forks from the anchored head: its own head from now on
    AuditLog(path).append("approval_a")
    assert verify(path).ok and verify(copy).ok
    (tmp_path / "d").mkdir()
    stale = tmp_path / "d" / "audit.jsonl"
    stale.write_text("".join(line + "\n" for line in _lines(path)[:-1]))  # a copy from before approval_a
    assert not verify(stale).ok  # a stale fork: its head is no longer anchored anywhere
    path.write_text(copy.read_text())  # the original swapped for the copy's diverged log
    assert not verify(path).ok
    (tmp_path / "c").mkdir()
    late = tmp_path / "c" / "audit.jsonl"
    late.write_text(copy.read_text())  # a copy's copy, at an anchored head: verifies ...
    assert verify(late).ok
    late.write_text("".join(line + "\n" for line in _lines(copy)[:-1]))  # ... cut back by one (a rejection, say)
    assert not verify(late).ok  # an earlier record is no anchored head: cutting must not make a valid copy
    records = [json.loads(line) for line in _lines(copy)]
    records[3]["event"] = "approval_forged"
    late.write_text(_rechain(records))
    assert not verify(late).ok  # a rehashed record is in no anchored log


_KILL_BEFORE_THE_LOG_LINE = """
import os, signal, sys
from daedalus.store import audit
def dying(f, record):
    if sys.argv[2] == "torn":
        f.write(b'{"seq": ' + str(record["seq"]).encode() + b', "event": "half')
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
audit._write_line = dying
audit.AuditLog(sys.argv[1]).append("approval", decision="approved", by="alice")
"""


@pytest.mark.parametrize("torn", ["clean", "torn"])
@pytest.mark.parametrize("repair", ["verify", "append"])
def test_a_kill_between_anchor_and_log_is_restored_from_the_anchor(tmp_path, torn, repair):
    path = _log(tmp_path, 3)
    done = subprocess.run([sys.executable, "-c", _KILL_BEFORE_THE_LOG_LINE, str(path), torn], timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert len(_lines(path)) == 3 + (torn == "torn")  # the record is in the anchor, not (whole) in the log
    if repair == "append":
        AuditLog(path).append("resumed")
    result = verify(path)
    assert result.ok, result.reason
    events = [r["event"] for r in AuditLog(path).records()]
    assert events[3] == "approval" and len(events) == 4 + (repair == "append")


def test_a_renamed_logs_old_head_is_dropped_and_a_copy_cut_back_to_it_does_not_verify(tmp_path):
    """A run is built under a partial name and renamed into place: the head anchored at the old name must not
    stay trusted, or a copy cut back to the run's first records would verify."""
    (tmp_path / "partial").mkdir()
    _log(tmp_path / "partial", 2)
    (tmp_path / "partial").rename(tmp_path / "run")
    path = tmp_path / "run" / "audit.jsonl"
    assert verify(path).ok  # at the head anchored under the old name
    AuditLog(path).append("trial_result")
    genesis = json.loads(_lines(path)[0])["hash"]
    from daedalus.store.audit import anchor_path

    heads = json.loads(anchor_path(genesis).read_text())["heads"]
    assert list(heads) == [str(path.resolve())]
    (tmp_path / "cut").mkdir()
    cut = tmp_path / "cut" / "audit.jsonl"
    cut.write_text("".join(line + "\n" for line in _lines(path)[:2]))
    assert not verify(cut).ok
