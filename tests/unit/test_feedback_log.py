"""The feedback log never fails a request and never loses or garbles a record."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from graph.feedback import FeedbackLog


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_records_queue_while_the_log_cannot_be_written_then_land_in_order(tmp_path, caplog):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log's folder should be")
    log = FeedbackLog(blocker / "fb.jsonl")
    with caplog.at_level(logging.ERROR, logger="graph.feedback"):
        for n in range(3):
            log.append({"n": n})  # does not raise: the model has already answered
    assert log.queued == 3
    [error] = caplog.records  # said once, not per record
    assert "(FEEDBACK_LOG_PATH) cannot be written" in error.getMessage()
    blocker.unlink()
    log.append({"n": 3})
    assert log.queued == 0
    assert [json.loads(x)["n"] for x in _lines(blocker / "fb.jsonl")] == [0, 1, 2, 3]


def test_a_torn_last_line_is_ended_before_the_next_record(tmp_path):
    path = tmp_path / "fb.jsonl"
    path.write_text('{"n":0}\n{"n":1,"cut sh')  # a write cut short by a full disk
    log = FeedbackLog(path)
    log.append({"n": 2})
    assert _lines(path) == ['{"n":0}', '{"n":1,"cut sh', '{"n":2}']


def test_a_full_disk_keeps_records_and_close_logs_what_it_still_cannot_write(caplog):
    log = FeedbackLog("/dev/full")  # every write fails with ENOSPC
    log.QUEUE_LIMIT = 2
    with caplog.at_level(logging.ERROR, logger="graph.feedback"):
        for n in range(3):
            log.append({"n": n})
        assert log.queued == 2
        log.close()
    assert log.queued == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "No space left on device" in messages[0]
    assert messages[1].endswith('queue full; record not written to /dev/full: {"n":0}')
    assert [m.rsplit(": ", 1)[1] for m in messages[2:]] == ['{"n":1}', '{"n":2}']


def test_check_names_the_variable_when_the_log_cannot_be_opened(tmp_path):
    (tmp_path / "logs").write_text("not a folder")
    with pytest.raises(OSError, match=r"logs/fb.jsonl \(FEEDBACK_LOG_PATH\) cannot be written"):
        FeedbackLog(tmp_path / "logs" / "fb.jsonl").check()


def test_a_log_it_may_only_write_is_appended_to_without_the_torn_line_check(tmp_path, monkeypatch):
    path = tmp_path / "fb.jsonl"
    path.write_text('{"n":0}\n')
    real_open = os.open

    def write_only(file, flags, *args):  # what a 0200 file gives a non-root process
        if flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied")
        return real_open(file, flags, *args)

    monkeypatch.setattr(os, "open", write_only)
    FeedbackLog(path).append({"n": 1})
    assert _lines(path) == ['{"n":0}', '{"n":1}']


def test_a_rotated_or_deleted_log_is_reopened_at_its_path(tmp_path):
    path = tmp_path / "fb.jsonl"
    log = FeedbackLog(path)
    log.append({"n": 0})
    path.rename(tmp_path / "fb.jsonl.1")  # logrotate's default (create) mode
    log.append({"n": 1})
    assert _lines(tmp_path / "fb.jsonl.1") == ['{"n":0}'] and _lines(path) == ['{"n":1}']
    path.unlink()
    log.append({"n": 2})
    assert _lines(path) == ['{"n":2}']


def test_a_write_in_progress_elsewhere_is_not_taken_for_a_torn_line(tmp_path):
    """A process opening the log while another's large record was half written ended the
    'torn' line, and the record, once complete, was followed by a blank line."""
    import fcntl
    import threading

    path = tmp_path / "fb.jsonl"
    other = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_SH)  # another writer, mid-write
    os.write(other, b'{"n":0,"big":"')
    opener = threading.Thread(target=FeedbackLog(path).append, args=({"n": 1},))
    opener.start()
    inode = os.fstat(other).st_ino
    for _ in range(500):  # until the kernel lists the opener as waiting on our lock
        with open("/proc/locks") as locks:
            if any("->" in line and f":{inode} " in line for line in locks):
                break
        time.sleep(0.01)
    else:
        raise AssertionError("the opener never waited for the write in progress")
    assert opener.is_alive()
    os.write(other, b'..."}\n')
    fcntl.flock(other, fcntl.LOCK_UN)
    os.close(other)
    opener.join(5)
    assert _lines(path) == ['{"n":0,"big":"..."}', '{"n":1}']


def test_a_log_that_still_cannot_be_written_at_close_is_said_once(tmp_path, caplog):
    (tmp_path / "logs").write_text("not a folder")
    log = FeedbackLog(tmp_path / "logs" / "fb.jsonl")
    with caplog.at_level(logging.ERROR, logger="graph.feedback"):
        log.append({"n": 0})
        log.close()  # the process's exit: one more try, then the record itself
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "cannot be written" in messages[0]
    assert messages[1].endswith('not written to ' + str(tmp_path / "logs" / "fb.jsonl")
                                + ': {"n":0}')
