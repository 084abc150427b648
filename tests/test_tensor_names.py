"""The blob's tensor names come from one table (harness/export/names.py): the generated C header is
current, and C built against a table that lost a name does not compile. (That Python and C then agree
on every name is what the bit-exact device tests show: a name one side missed is BLOB_MISSING.)"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.export import names as N

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "firmware" / "core"
sys.path.insert(0, str(REPO / "firmware" / "tools"))
import gen_tables  # noqa: E402


def test_the_c_header_is_generated_from_the_table():
    assert (CORE / "tensor_names.h").read_text() == gen_tables.render_names()
    for key, name in N.NAMES.items():
        assert f'#define TRM_T_{key}' in gen_tables.render_names() and f'"{name}"' in gen_tables.render_names()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_that_uses_a_name_the_table_lost_does_not_compile(tmp_path, monkeypatch):
    lost = {k: v for k, v in N.NAMES.items() if k != "ATT_QKV"}
    monkeypatch.setattr(N, "NAMES", lost)
    (tmp_path / "tensor_names.h").write_text(gen_tables.render_names())
    for f in CORE.glob("*.h"):
        if f.name != "tensor_names.h":
            shutil.copy(f, tmp_path / f.name)
    shutil.copy(CORE / "blob.c", tmp_path / "blob.c")
    r = subprocess.run(["cc", "-std=c11", "-c", str(tmp_path / "blob.c"), "-o", str(tmp_path / "blob.o")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "TRM_T_ATT_QKV" in r.stderr, r.stderr[-500:]
    monkeypatch.setattr(N, "NAMES", {**lost, "ATT_QKV": N.ATT_QKV})
    (tmp_path / "tensor_names.h").write_text(gen_tables.render_names())
    r = subprocess.run(["cc", "-std=c11", "-c", str(tmp_path / "blob.c"), "-o", str(tmp_path / "blob.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-500:]
