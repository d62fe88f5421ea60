import json

from daedalus.store.audit import AuditLog, verify


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
