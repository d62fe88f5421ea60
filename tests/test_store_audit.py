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


def test_verify_reports_the_last_hash_so_that_a_cut_tail_can_be_noticed(tmp_path):
    path = _log(tmp_path, 4)
    head = verify(path).last_hash
    assert head == json.loads(_lines(path)[-1])["hash"]
    path.write_text("\n".join(_lines(path)[:-1]) + "\n")  # the last record removed: the chain itself is intact
    assert verify(path).ok and verify(path).last_hash != head
