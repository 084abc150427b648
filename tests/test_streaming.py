"""Flash-streamed puzzle embeddings (docs/model-blob.md, "Embeddings in flash or RAM").

A model with a puzzle-embedding prefix keeps both embedding tables in the blob in flash; a RUN names the
puzzle identifier and the firmware reads only that identifier's rows. In RAM mode (the RUN flag or the
blob flag a recipe sets) both tables are copied into the arena first. The model here has random weights
(**cost only**: nothing about accuracy is measured) and a puzzle table of 1024 identifiers × 4 rows × 32
channels = 131,072 bytes: more than netduinoplus2's arena, well within its blob region.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.boards import protocol as P
from harness.compress.recipes import apply, get_recipe
from harness.export import blob as B
from harness.models.trm import TRM, TRMConfig
from harness.tasks import make_task, stack
from harness.targets import load_target

TASK = make_task("sudoku", size=4)        # vocabulary 6, 16 tokens
PREFIX, IDS, HIDDEN = 4, 1024, 32
TABLE = IDS * PREFIX * HIDDEN             # the puzzle-embedding table at int8
TOKEN_TABLE = TASK.vocab_size * HIDDEN
DEPTH = (1, 2, 1)                         # T, n, steps: two z-updates read the tables twice


@pytest.fixture(scope="module")
def int_model():
    torch.manual_seed(0)
    net = TRM(TRMConfig(vocab_size=TASK.vocab_size, seq_len=TASK.seq_len, hidden=HIDDEN, layers=1, mixer="mlp",
                        T=1, n=2, steps=1, puzzle_emb_len=PREFIX, puzzle_emb_ndim=PREFIX * HIDDEN,
                        puzzle_ids=IDS))
    return apply(get_recipe("int8"), net, TASK).int_model


@pytest.fixture(scope="module")
def tokens():
    return stack(TASK.generate(2, seed=3, split="test"))[0]


def _run(board, tokens: np.ndarray, puzzle_id: int, embed_ram: bool = False) -> P.Result:
    payload = P.run_payload(tokens, *DEPTH, carries=True, embed_ram=embed_ram, puzzle_id=puzzle_id)
    return P.parse_result(board.request(P.RUN, payload, 600, expect=P.RESULT), board.info().hidden)


def test_the_table_is_larger_than_the_small_targets_arena_and_fits_its_flash(int_model):
    t = load_target("netduinoplus2")
    blob = B.to_blob(int_model)
    assert B.read_header(blob)["puzzle_ids"] == IDS
    assert TABLE > t.arena.size and len(blob) < t.blob.size


@pytest.mark.board
def test_a_table_larger_than_ram_runs_streamed_bit_exact_and_is_refused_in_ram_mode(open_board, int_model, tokens):
    """netduinoplus2: streamed, every puzzle (identifiers at both ends of the table) answers as golden;
    the same blob with the blob flag EMBED_RAM (as a recipe with embeddings = "ram" exports it) is refused
    with WORKSPACE and the bytes it needed, which is what the farm journals as does_not_fit."""
    ids = [IDS - 1, 0]
    g = int_model.run(tokens, *DEPTH, puzzle_ids=np.array(ids))
    with open_board("netduinoplus2", B.to_blob(int_model)) as board:
        for i, pid in enumerate(ids):
            r = _run(board, tokens[i], pid)
            np.testing.assert_array_equal(r.per_step, g["per_step"][:, i])
            np.testing.assert_array_equal(r.y, g["y"][-1, -1, i])
            np.testing.assert_array_equal(r.z, g["z"][-1, -1, i])
        arena = board.info().arena_capacity
    with open_board("netduinoplus2", B.to_blob(int_model, embeddings_to_ram=True)) as board:
        with pytest.raises(P.BoardError, match=r"model with EMBED_RAM \(workspace \+ embedding tables\) needs "
                                               rf"[\d,]+ bytes, the arena has {arena}") as e:
            _run(board, tokens[0], 0)
        assert e.value.detail == 10          # TRM_ERR_WORKSPACE


@pytest.mark.board
def test_streaming_saves_the_tables_ram_measured(open_board, int_model, tokens):
    """mps2-an386 (4 MB arena): both modes run and answer alike; the arena differs by exactly the two
    tables, and the flash read by the rows each z-update takes from them (P prefix + L token rows)."""
    g = int_model.run(tokens[:1], *DEPTH, puzzle_ids=np.array([7]))
    with open_board("mps2-an386", B.to_blob(int_model)) as board:
        streamed = _run(board, tokens[0], 7)
        ram = _run(board, tokens[0], 7, embed_ram=True)
    with open_board("mps2-an386", B.to_blob(int_model, embeddings_to_ram=True)) as board:
        flagged = _run(board, tokens[0], 7)
    for r in (streamed, ram, flagged):
        np.testing.assert_array_equal(r.per_step, g["per_step"][:, 0])
    assert ram.arena_bytes - streamed.arena_bytes == TABLE + TOKEN_TABLE
    assert flagged.arena_bytes == ram.arena_bytes and flagged.flags & P.RUN_EMBED_RAM
    n = DEPTH[1]
    assert streamed.flash_bytes_read - ram.flash_bytes_read == n * (PREFIX + TASK.seq_len) * HIDDEN


@pytest.mark.board
def test_the_farm_journals_ram_mode_as_does_not_fit_and_streamed_as_run(tmp_path, board_kind, int_model):
    """A farm run of the same model at int8 (streamed) and int8-ram (embeddings = "ram") on netduinoplus2:
    the streamed job's puzzles are ok and bit-exact with golden; the RAM-mode job is refused by the board
    (WORKSPACE) and journalled does_not_fit, RAM over, which the report's configs table shows as not fitting
    RAM (never as a failure)."""
    if board_kind != "qemu":
        pytest.skip("the farm test starts its own QEMU boards")
    from harness.boards.inventory import BoardSpec
    from harness.farm.plan import plan_from_dict
    from harness.farm.scheduler import farm_run
    from harness.models.checkpoint import save_checkpoint
    from harness.report.tables import load_run, tables
    torch.manual_seed(0)
    net = TRM(TRMConfig(vocab_size=TASK.vocab_size, seq_len=TASK.seq_len, hidden=HIDDEN, layers=1, mixer="mlp",
                        T=1, n=2, steps=1, puzzle_emb_len=PREFIX, puzzle_emb_ndim=PREFIX * HIDDEN, puzzle_ids=IDS))
    save_checkpoint(tmp_path / "model", net, TASK, extra={"name": "streaming"})
    plan = plan_from_dict({"name": "streaming", "models": [str(tmp_path / "model")], "recipes": ["int8", "int8-ram"],
                           "depths": ["1,2,1"], "targets": ["netduinoplus2"], "puzzles": {"count": 2, "seed": 3},
                           "run": {"puzzle_timeout_s": 60, "retries": 0, "profile_puzzles": 0, "trace": "off"}},
                          "streaming")
    out = tmp_path / "run"
    farm_run(plan, [BoardSpec("q", "qemu", "netduinoplus2")], out, log=lambda m: None)
    t = tables(load_run(out))
    rows = t["puzzles"]
    streamed, ram = rows[rows.recipe == "int8"], rows[rows.recipe == "int8-ram"]
    assert list(streamed.status) == ["ok", "ok"] and streamed.golden_match.all()
    assert list(ram.status) == ["does_not_fit", "does_not_fit"] and (ram.over == "ram").all()
    assert ram.error.str.contains("WORKSPACE").all() and ram.error.str.contains("embedding tables").all()
    c = t["configs"].set_index("recipe")
    assert not c.loc["int8-ram", "fits_ram"] and c.loc["int8-ram", "fits_flash"] and c.loc["int8", "fits"]
