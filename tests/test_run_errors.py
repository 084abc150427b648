"""`harness run` with bad input: one line naming the option or file, a non-zero exit, no traceback, and
no board started (each is refused before QEMU would be)."""
from __future__ import annotations

import struct
import zlib

import pytest
from typer.testing import CliRunner

from harness.cli import app


@pytest.fixture(scope="module")
def blob_file(tmp_path_factory):
    from harness.export.exporter import export_blob
    path = tmp_path_factory.mktemp("blob") / "model.bin"
    path.write_bytes(export_blob("sudoku6-mlp", "int8"))
    return path


def run(*args: str):
    r = CliRunner().invoke(app, ["run", "--board", "qemu", "--model", "sudoku6-mlp", "--puzzles", "1", *args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r


def one_line_error(r, *fragments: str) -> None:
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def corrupt(data: bytes, how: str) -> bytes:
    if how == "crc":
        b = bytearray(data)
        b[-1] ^= 0xFF
        return bytes(b)
    if how == "truncated":
        return data[: len(data) // 2]
    return b"NOPE" + data[4:]


@pytest.mark.parametrize("how, code", [("crc", "BLOB_CRC"), ("truncated", "BLOB_TRUNCATED"), ("magic", "BLOB_MAGIC")])
def test_a_corrupt_blob_is_refused_before_a_board_starts(blob_file, tmp_path, how, code, monkeypatch):
    import harness.boards.factory as factory
    monkeypatch.setattr(factory, "make_board", lambda *a, **k: pytest.fail("a board was made for a corrupt blob"))
    bad = tmp_path / "bad.bin"
    bad.write_bytes(corrupt(blob_file.read_bytes(), how))
    one_line_error(run("--blob", str(bad)), f"--blob {bad}", code, "harness export")


def test_another_models_blob_says_so(tmp_path):
    from harness.export.exporter import export_blob
    other = tmp_path / "maze.bin"
    other.write_bytes(export_blob("maze7-mlp", "int8"))
    one_line_error(run("--blob", str(other)), "another model's blob", "49 tokens", "36")


@pytest.mark.parametrize("depth, fragment", [("1,1,100", "steps 100 > 64"), ("300,1,1", "T 300 > 16"),
                                             ("²,1,1", "expected 'T,n,steps'")])
def test_a_depth_beyond_the_bounds_names_the_option(depth, fragment):
    one_line_error(run("--depth", depth), "--depth", fragment)


def test_a_serial_board_without_a_port_says_which_option():
    r = CliRunner().invoke(app, ["run", "--board", "serial", "--target", "netduinoplus2", "--model", "sudoku6-mlp",
                                 "--puzzles", "1"])
    one_line_error(r, "--port")


def test_a_missing_blob_file_is_named(tmp_path):
    one_line_error(run("--blob", str(tmp_path / "nothing.bin")), "--blob", "nothing.bin")


def test_check_blob_sees_what_the_firmware_would():
    """The host-side validation and the firmware's parser agree on the codes (the blob contract)."""
    from harness.export.exporter import export_blob
    from harness.run import RunError, check_blob
    data = export_blob("sudoku6-mlp", "int8")
    assert check_blob(data, 36)["seq_len"] == 36
    body = bytearray(data)
    struct.pack_into("<I", body, 12, zlib.crc32(bytes(body[16:])) ^ 1)
    with pytest.raises(RunError, match="BLOB_CRC"):
        check_blob(bytes(body), 36)


@pytest.mark.parametrize("depth, fragment", [("100,100,100", "T 100 > 16"), ("²,1,1", "expected 'T,n,steps'")])
def test_eval_bounds_its_depth_too(depth, fragment):
    """Without the bound, 100,100,100 ran 100 x 101 x 100 network evaluations per puzzle and looked hung."""
    r = CliRunner().invoke(app, ["eval", "--model", "sudoku6-mlp", "--puzzles", "2", "--depth", depth])
    one_line_error(r, "--depth", fragment)
