"""The official layout and HRM through the integer path: golden, blob format version 2, the C core on the
host and on the boards, bit for bit.

The models are the imported fixtures of tests/data/official (random weights: cost and exactness only,
no accuracy): a TRM with attention and a 2-row prefix, a TRM with the mlp mixer whose norm runs over the
sequence (``mlp_t``), and an HRM (a y network of its own, a two-logit halting head read from row 0)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.boards import protocol as P
from harness.compress.recipes import apply, get_recipe
from harness.export import blob as B
from harness.models.importer import import_official
from harness.tasks import make_task, stack

OFFICIAL = Path(__file__).parent / "data" / "official"
VARIANTS = {"trm-attention": "trm-official", "trm-mlp": "trm-official", "hrm": "hrm-official"}
RECIPES = ("int8", "int4-pc")
TASK = make_task("sudoku", size=4)     # the fixtures' vocabulary (6) and sequence (16)
DEPTH = (1, 2, 2)                      # T, n, steps
IDS = np.array([2, 0, 1])              # puzzle identifiers: each a row of the 3-row tables


@pytest.fixture(scope="module")
def int_models():
    out = {}
    for variant, kind in VARIANTS.items():
        d = OFFICIAL / variant
        model, _ = import_official(kind, d / "checkpoint.pt", d / "all_config.yaml", TASK.seq_len)
        for recipe in RECIPES:
            out[variant, recipe] = apply(get_recipe(recipe), model, TASK).int_model
    return out


@pytest.fixture(scope="module")
def tokens():
    return stack(TASK.generate(3, seed=5, split="test"))[0]


def test_the_integer_model_has_the_official_layout(int_models):
    att, mlp, hrm = (int_models[v, "int8"] for v in VARIANTS)
    assert (att.prefix, att.halt_first, att.seq_norm_const, len(att.y_blocks)) == (2, True, 0, 0)
    assert mlp.prefix == 2 and mlp.seq_norm_const > 0 and mlp.seq_norm_const != mlp.norm_const
    assert (hrm.prefix, len(hrm.blocks), len(hrm.y_blocks)) == (1, 2, 2)
    assert att.puzzle_emb.shape == (3, 2 * 32) and hrm.puzzle_emb.shape == (3, 32)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_batch_execution_equals_the_reference(int_models, tokens, variant, recipe):
    im = int_models[variant, recipe]
    fast, ref = im.run(tokens, *DEPTH, puzzle_ids=IDS), im.run_reference(tokens, *DEPTH, puzzle_ids=IDS)
    for k in ref:
        np.testing.assert_array_equal(fast[k], ref[k], err_msg=k)
    assert ref["y"].shape == (2, 1, 3, im.prefix + 16, 32)
    # the identifier matters: another row of the table gives other carries
    other = im.run(tokens, *DEPTH, puzzle_ids=np.zeros(3, int))
    assert not np.array_equal(other["y"][:, :, 0], ref["y"][:, :, 0])


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_version_2_blob_round_trips_and_the_host_build_is_bit_exact(int_models, tokens, variant, recipe):
    from harness.native import NativeModel

    im = int_models[variant, recipe]
    blob = B.to_blob(im)
    header = B.read_header(blob)
    assert struct.unpack_from("<HH", blob, 4) == (2, 80)
    assert (header["prefix"], header["y_layers"], header["puzzle_ids"]) == (im.prefix, len(im.y_blocks), 3)
    want = im.run(tokens, *DEPTH, puzzle_ids=IDS)
    for got in (B.from_blob(blob).run(tokens, *DEPTH, puzzle_ids=IDS), NativeModel(blob).run(tokens, *DEPTH, puzzle_ids=IDS)):
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def _as_version_1(blob: bytes) -> bytes:
    """A version 2 blob without the version 2 features, written as version 1: the 64-byte header, the
    table 16 bytes earlier, every payload offset 16 bytes earlier (alignment kept)."""
    h = B.read_header(blob)
    assert not (h["prefix"] or h["y_layers"] or h["seq_norm_const"] or h["flags"] & B.FLAG_HALT_FIRST)
    buf = bytearray(blob[:64] + blob[80:])
    struct.pack_into("<HHI", buf, 4, 1, 64, len(buf))
    for i in range(h["tensor_count"]):
        at = 64 + i * B.ENTRY.size
        off = struct.unpack_from("<I", buf, at + 24)[0]
        struct.pack_into("<I", buf, at + 24, off - 16)
    struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[16:])) & 0xFFFFFFFF)
    return bytes(buf)


def test_version_1_blobs_are_still_read_by_python_and_c(blobs, zoo_model):
    from harness.native import NativeModel

    v2 = blobs("sudoku6-mlp", "int8")
    v1 = _as_version_1(v2)
    x = stack(zoo_model("sudoku6-mlp")[1].generate(2, seed=9, split="test"))[0]
    want = B.from_blob(v2).run(x, *DEPTH)
    for got in (B.from_blob(v1).run(x, *DEPTH), NativeModel(v1).run(x, *DEPTH)):
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_a_version_2_blob_missing_its_prefix_table_or_y_network_is_refused_alike(int_models):
    from harness.native import NativeBlobError, NativeModel

    for variant, name in (("trm-attention", b"puzzle_emb"), ("hrm", b"yb1.ffn.res")):
        blob = bytearray(B.to_blob(int_models[variant, "int8"]))
        at = blob.find(name.ljust(16, b"\0"))
        assert at >= 80
        blob[at:at + 16] = b"renamed".ljust(16, b"\0")
        struct.pack_into("<I", blob, 12, zlib.crc32(bytes(blob[16:])) & 0xFFFFFFFF)
        with pytest.raises(B.BlobError) as e:
            B.from_blob(bytes(blob))
        assert e.value.code == "BLOB_MISSING"
        with pytest.raises(NativeBlobError) as e:
            NativeModel(bytes(blob))
        assert e.value.code == "BLOB_MISSING"


def _run(board, tokens: np.ndarray, puzzle_id: int) -> P.Result:
    payload = P.run_payload(tokens, *DEPTH, carries=True, puzzle_id=puzzle_id)
    return P.parse_result(board.request(P.RUN, payload, 600, expect=P.RESULT), board.info().hidden)


def _assert_as_golden(board, tokens: np.ndarray, ids, g: dict, where: str) -> None:
    """Each puzzle run on ``board`` with its identifier answers as golden's ``g``: predictions, halting
    accumulators, final carries."""
    for i, pid in enumerate(ids):
        r = _run(board, tokens[i], int(pid))
        msg = f"{where} puzzle {i}"
        np.testing.assert_array_equal(r.per_step, g["per_step"][:, i], err_msg=msg)
        np.testing.assert_array_equal(r.halt_acc, g["halt_acc"][:, i], err_msg=msg)
        np.testing.assert_array_equal(r.y, g["y"][-1, -1, i], err_msg=msg)
        np.testing.assert_array_equal(r.z, g["z"][-1, -1, i], err_msg=msg)


@pytest.mark.board
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_boards_run_the_official_layout_bit_exact(open_board, target, int_models, tokens, variant):
    """Every target: the imported official-layout TRMs and the HRM at int8 and int4-pc, each puzzle with its
    own identifier (sent in RUN), answer as golden does: predictions, halting accumulators, final carries."""
    for recipe in RECIPES:
        im = int_models[variant, recipe]
        blob = B.to_blob(im)
        g = im.run(tokens, *DEPTH, puzzle_ids=IDS)
        with open_board(target.name, blob) as board:
            _assert_as_golden(board, tokens, IDS, g, f"{target.name} {variant} {recipe}")
            # an identifier outside the table is refused with the table's size
            with pytest.raises(Exception, match="puzzle identifier 3 outside the blob's table of 3"):
                _run(board, tokens[0], 3)


@pytest.mark.board
@pytest.mark.parametrize("recipe", RECIPES)
def test_the_zoo_hrm_is_bit_exact_on_every_target(open_board, target, blobs, zoo_model, recipe):
    """sudoku6-hrm (trained here: a y network, the two-logit head on row 0, no prefix) at int8 and int4-pc:
    two held-out puzzles at a shallow depth, predictions, halting accumulators and final carries."""
    blob = blobs("sudoku6-hrm", recipe)
    im = B.from_blob(blob)
    assert len(im.y_blocks) == 2 and im.halt_first and not im.prefix
    x = stack(zoo_model("sudoku6-hrm")[1].generate(2, seed=77, split="test"))[0]
    g = im.run(x, *DEPTH)
    with open_board(target.name, blob) as board:
        _assert_as_golden(board, x, [0] * len(x), g, f"{target.name} sudoku6-hrm {recipe}")
