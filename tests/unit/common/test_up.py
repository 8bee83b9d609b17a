"""The startup display of `zmx up`: what it reads from each child's log file."""

from __future__ import annotations

from pathlib import Path

from common.up import _Watched


def test_a_watched_log_yields_only_this_runs_complete_json_lines(tmp_path: Path) -> None:
    log = tmp_path / "matcher-0.log"
    log.write_bytes(b'{"msg": "matcher ready"}\n')  # an earlier run's line
    watched = _Watched("matcher-0", log)

    with log.open("ab") as handle:
        handle.write(b'{"msg": "replaying journal", "records": 1000}\nnot json\n{"msg": "recov')
    assert watched.new_lines() == [{"msg": "replaying journal", "records": 1000}]

    with log.open("ab") as handle:
        handle.write(b'ered"}\n')
    assert watched.new_lines() == [{"msg": "recovered"}]
    assert watched.new_lines() == []


def test_a_log_file_that_does_not_exist_yet_has_no_lines(tmp_path: Path) -> None:
    watched = _Watched("feed", tmp_path / "logs" / "feed.log")

    assert watched.new_lines() == []
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "feed.log").write_bytes(b'{"msg": "feed ready"}\n')
    assert watched.new_lines() == [{"msg": "feed ready"}]
