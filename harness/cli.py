"""The ``harness`` command line."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark recursive reasoning models compressed for microcontrollers.")
console = Console(stderr=True)


def _fail(message: str) -> None:
    from rich.markup import escape
    # one line whatever the width, and the message as written ('[run]' in it is not markup)
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _command_line(ctx: typer.Context) -> str:
    """The running command as a reproducible command line: its arguments, then every option that differs
    from its default."""
    words = ["harness", ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            words += [shlex.quote(str(v)) for v in (value if isinstance(value, (list, tuple)) else [value])]
            continue
        if param.param_type_name != "option" or value == param.default or value is None:
            continue
        if param.is_flag:
            words.append(param.opts[0] if value else param.secondary_opts[0])
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            words += [param.opts[0], shlex.quote(str(v))]
    return " ".join(words)


def _task_spec(task: str, size: Optional[int], task_param: list[str]) -> dict:
    """A task spec from --task, --size and --task-param KEY=VALUE (a JSON value, else the string)."""
    spec = {"name": task}
    if size is not None:
        spec["size"] = size
    for kv in task_param:
        key, _, value = kv.partition("=")
        try:
            spec[key] = json.loads(value)
        except json.JSONDecodeError:
            spec[key] = value
    return spec


def _layout(arch: str, layers: int, y_layers: Optional[int], puzzle_emb_len: int, hidden: int) -> dict:
    """The TRMConfig fields of --arch and the official layout's options (an HRM has the official halting
    head; a prefix comes with a one-row table: this harness's tasks have no puzzle identifiers)."""
    fields: dict = {}
    if arch == "hrm":
        fields.update(arch="hrm", y_layers=y_layers or layers, halt_logits=2, halt_read="first")
    elif arch != "trm":
        _fail(f"--arch must be trm or hrm, got {arch!r}")
    elif y_layers:
        _fail("--y-layers is for --arch hrm (a TRM has one network)")
    if puzzle_emb_len:
        fields.update(puzzle_emb_len=puzzle_emb_len, puzzle_ids=1, puzzle_emb_ndim=hidden)  # the official ndim
    return fields


def _positions(rope_axes: str, rope_theta: float, pos_encodings: str = "rope") -> dict:
    """The model fields of --pos-encodings, --rope-axes and --rope-theta, only where they differ from the
    defaults (so that a run saved before they existed resumes with the same config)."""
    out: dict = {}
    if pos_encodings != "rope":
        out["pos_encodings"] = pos_encodings
    if rope_axes:
        try:
            out["rope_axes"] = [int(a) for a in rope_axes.lower().split("x")]
        except ValueError:
            _fail(f"--rope-axes {rope_axes!r}: give sizes joined by x, e.g. 9x9 or 3x3x3x3")
    if rope_theta != 10000.0:
        out["rope_theta"] = rope_theta
    return out


@app.command()
def train(
    ctx: typer.Context,
    task: str = typer.Option(..., help="Task name: sudoku, maze or arc."),
    out: Path = typer.Option(..., help="Checkpoint folder to write."),
    size: Optional[int] = typer.Option(None, help="Grid size (sudoku 4/6/9, maze odd side, arc canvas)."),
    task_param: list[str] = typer.Option([], "--task-param", help="Extra task parameter KEY=VALUE (JSON value)."),
    arch: str = typer.Option("trm", help="trm, or hrm (a z network of --layers blocks and a y network of "
                                         "--y-layers; two-logit halting head on the first position)."),
    y_layers: Optional[int] = typer.Option(None, help="HRM: blocks of the y network (default: --layers)."),
    puzzle_emb_len: int = typer.Option(0, help="Puzzle-embedding prefix rows (the official layout; 0: none)."),
    mixer: str = typer.Option("mlp", help="Token mixer: mlp or attention."),
    hidden: int = typer.Option(64), layers: int = typer.Option(2), expansion: float = typer.Option(2.0),
    heads: int = typer.Option(4), T: int = typer.Option(2, "--T"), n: int = typer.Option(3, "--n"),
    steps: int = typer.Option(8, "--steps", "--n-sup", help="Supervision steps (the official TRM's N_sup)."), halting: bool = typer.Option(True),
    rope_axes: str = typer.Option("", help="Attention: rotary positions over these row-major axes of the "
                                           "sequence, e.g. 9x9 (a 9x9 grid) or 3x3x3x3 (its boxes too); "
                                           "empty: the flat position."),
    rope_theta: float = typer.Option(10000.0, help="Attention: base of the rotary frequencies."),
    pos_encodings: str = typer.Option("rope", help="Positions: rope (rotary, in the attention mixer) or "
                                                   "learned (a position table added to x; no rotary)."),
    iterations: int = typer.Option(6000), batch: int = typer.Option(64), lr: float = typer.Option(1e-3),
    weight_decay: float = typer.Option(0.1), warmup: int = typer.Option(200), ema: float = typer.Option(0.999),
    train_puzzles: int = typer.Option(3000, help="Base training puzzles (augmented on the fly)."),
    eval_every: int = typer.Option(500), eval_puzzles: int = typer.Option(256),
    seed: int = typer.Option(0), threads: int = typer.Option(1, help="Torch CPU threads."),
    max_minutes: float = typer.Option(0.0, help="Stop and save after this invocation has trained this long (0: no limit); --resume goes on, with any limit."),
    resume: bool = typer.Option(False, help="Continue the run saved in --out."),
):
    """Train a TRM on a task (deep supervision, EMA, AdamW, warm-up; resumable)."""
    from .models.train import TrainConfig
    from .models.train import train as run_training

    spec = _task_spec(task, size, task_param)
    cfg = TrainConfig(
        task=spec, model=dict(hidden=hidden, layers=layers, expansion=expansion, mixer=mixer, heads=heads,
                              T=T, n=n, steps=steps, halting=halting, **_layout(arch, layers, y_layers, puzzle_emb_len, hidden),
                              **_positions(rope_axes, rope_theta, pos_encodings)),
        seed=seed, train_puzzles=train_puzzles, batch=batch, lr=lr, weight_decay=weight_decay,
        warmup=warmup, iterations=iterations, ema=ema, eval_every=eval_every,
        eval_puzzles=eval_puzzles, threads=threads, max_minutes=max_minutes)
    try:
        summary = run_training(cfg, out, resume=resume, console=console, command=_command_line(ctx))
    except (FileExistsError, ValueError) as e:
        _fail(str(e))
    last = summary["history"][-1] if summary["history"] else {}
    console.print(f"saved {out}  params {summary['params']:,}  MACs/inference {summary['macs_per_inference']:,}  "
                  f"held-out exact {last.get('exact_accuracy', float('nan')):.1%}  "
                  f"in {summary['train_seconds']:.0f} s")


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="trm-official (TinyRecursiveModels) or hrm-official (sapientinc/HRM)."),
    checkpoint: Path = typer.Argument(..., help="The file the official pretrain.py saved (torch.save of the state dict)."),
    out: Path = typer.Option(..., help="Checkpoint folder to write (model.safetensors, config.json, card)."),
    config: Optional[Path] = typer.Option(None, help="The run's all_config.yaml (heads, depth, halting rule, prefix)."),
    task: str = typer.Option(..., help="Task the model solves (sudoku, maze, arc): gives the sequence length."),
    size: Optional[int] = typer.Option(None, help="Grid size of the task (the official sudoku models: 9)."),
    task_param: list[str] = typer.Option([], "--task-param", help="Extra task parameter KEY=VALUE (JSON value)."),
    heads: Optional[int] = typer.Option(None, help="Attention heads (arch.num_heads), if no --config says it."),
    T: Optional[int] = typer.Option(None, "--T", help="Cycles per step (arch.H_cycles)."),
    n: Optional[int] = typer.Option(None, "--n", help="z updates per cycle (arch.L_cycles)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Supervision steps (arch.halt_max_steps)."),
    puzzle_emb_len: Optional[int] = typer.Option(None, help="Prefix rows of a TRM (arch.puzzle_emb_len)."),
):
    """Import a checkpoint of the official TRM or HRM code: our checkpoint and a card saying where it came from."""
    from .models.card import write_import_card
    from .models.checkpoint import save_checkpoint
    from .models.importer import ImportError_, import_official
    from .tasks import make_task

    try:
        t = make_task(**_task_spec(task, size, task_param))
    except (TypeError, ValueError) as e:
        _fail(f"--task {task}: {e}")
    overrides = {"num_heads": heads, "H_cycles": T, "L_cycles": n, "halt_max_steps": steps,
                 "puzzle_emb_len": puzzle_emb_len}
    try:
        model, origin = import_official(kind, checkpoint, config, t.seq_len, overrides)
    except ImportError_ as e:
        _fail(str(e))
    if model.cfg.vocab_size != t.vocab_size:
        _fail(f"{checkpoint}: key 'embed_tokens.embedding_weight' has {model.cfg.vocab_size} rows (the vocabulary) "
              f"but task {t.spec()} has {t.vocab_size} tokens: give the task the model was trained on")
    if (out / "model.safetensors").exists():
        _fail(f"{out} already holds a checkpoint: choose another --out")
    origin["command"] = _command_line(ctx)
    save_checkpoint(out, model, t, {"imported": origin, "params": model.parameter_count()})
    write_import_card(out)
    console.print(f"imported {origin['variant']} from {checkpoint} into {out}: {model.parameter_count():,} parameters "
                  f"({', '.join(origin['dtypes'])} tensors), depth T{model.cfg.T} n{model.cfg.n} s{model.cfg.steps}, "
                  f"carry {model.cfg.carry_len}×{model.cfg.hidden}")


@app.command("eval")
def eval_cmd(
    ctx: typer.Context,
    model: str = typer.Option(..., help="Zoo model name or checkpoint folder."),
    task: Optional[str] = typer.Option(None, help="Expected task name (checked against the model's)."),
    puzzles: str = typer.Option("1000", help="N held-out puzzles to generate, a puzzle file "
                                              "(.jsonl, or sudoku .csv 'source,q,a,rating'), or 'arc-agi-1'."),
    recipe: Optional[str] = typer.Option(None, help="Compression recipe (fp32, int8, int4-pc, …, or "
                                               "FILE.toml:NAME); adds carry-trajectory fidelity to fp32."),
    depth: Optional[str] = typer.Option(None, help="T,n,steps[,halt]; default: the model's."),
    seed: int = typer.Option(1000, help="Seed of generated held-out puzzles."),
    task_param: list[str] = typer.Option([], "--task-param", help="KEY=VALUE: generate the held-out puzzles "
                                         "with this task parameter changed (e.g. min_givens=30: harder sudoku); "
                                         "the model's sequence and vocabulary must stay the same."),
    threads: int = typer.Option(2, help="Torch CPU threads."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    write_card: bool = typer.Option(False, help="Write card.json and card.md into the checkpoint folder."),
):
    """Evaluate a model, optionally compressed: cell and puzzle-exact accuracy after each step."""
    import torch

    from .models.card import write_card as write_model_card
    from .models.checkpoint import load_checkpoint, model_digest
    from .depth import Depth
    from .models.evaluate import default_depth, evaluate
    from .models.trm import macs_per_inference
    from .tasks import difficulty_text, vary_task
    from .tasks.puzzle_source import load_puzzle_source

    torch.set_num_threads(threads)
    try:
        net, model_task, config = load_checkpoint(model)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if task and task != model_task.name:
        _fail(f"model {model} solves {model_task.name!r}, not {task!r}")
    try:
        d = Depth.parse(depth, default_depth(net))
        changes = {k: v for k, v in _task_spec(model_task.name, None, task_param).items() if k != "name"}
        if changes:
            model_task = vary_task(model_task, changes)
        source, items = load_puzzle_source(model_task, puzzles, seed)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if changes:
        if source["kind"] != "generated":
            _fail(f"--task-param changes generated puzzles; {source['description']} are read as they are")
        source["task_params"] = changes
        source["description"] += ", " + ", ".join(f"{k}={v}" for k, v in changes.items())
    if not items:
        _fail(f"no puzzles to evaluate in {puzzles!r}")
    if recipe is None:
        with _progress_bar(f"eval {config['name']}", len(items), as_json) as advance:
            res = evaluate(net, model_task, items, d, progress=advance)
        result = {"model": config["name"], "task": model_task.spec(), "puzzle_set": source,
                  "model_sha256": model_digest(net), "params": net.parameter_count(),
                  "macs_per_inference": macs_per_inference(net.cfg, d.T, d.n, d.steps)}
    else:
        from .compress.recipes import apply, get_recipe
        from .compress.study import evaluate_compressed

        try:
            r = get_recipe(recipe)
            console.print(f"applying recipe {r.name}: {r.description}")
            comp = apply(r, net, model_task)
        except (ValueError, FileNotFoundError) as e:
            _fail(str(e))
        with _progress_bar(f"eval {config['name']} {r.name}", len(items), as_json) as advance:
            res = evaluate_compressed(comp, net, model_task, items, d, progress=advance)
        result = {"model": config["name"], "task": model_task.spec(), "puzzle_set": source,
                  "recipe": r.to_dict(), "evaluated_by": "golden" if comp.int_model is not None else "torch",
                  "params": comp.params(), "weight_bytes": comp.weight_bytes(),
                  "macs_per_inference": comp.macs(d), **comp.info,
                  **{k: res[k] for k in ("fidelity_final", "fidelity_auc", "fidelity_per_cycle")}}
        if write_card:
            _fail("--write-card describes the fp32 model: leave out --recipe")
    result.update({k: v for k, v in res.items() if k not in ("predictions", "exact", "cells", "cosine")})
    from .stats import CONFIDENCE, wilson
    result["exact_accuracy_lo"], result["exact_accuracy_hi"] = wilson(int(res["exact"].sum()), res["puzzles"])
    result["difficulty"] = model_task.difficulty_summary(items)
    from .models.evaluate import by_family
    if (families := by_family(items, res["exact"])) is not None:
        result["by_family"] = families
    if write_card:
        try:
            write_model_card(Path(config["path"]), config, result, _command_line(ctx), log=console.print)
        except ValueError as e:
            _fail(str(e))
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"{config['name']} on {source['description']}")
    for col in ("step", "cell accuracy", "puzzle-exact"):
        table.add_column(col, justify="right")
    for row in result["per_step"]:
        table.add_row(str(row["step"]), f"{row['cell_accuracy']:.2%}", f"{row['exact_accuracy']:.2%}")
    Console().print(table)
    Console().print(f"final ({d.label()}): cell {result['cell_accuracy']:.2%}, puzzle-exact "
                    f"{result['exact_accuracy']:.2%} [{result['exact_accuracy_lo']:.2%}, {result['exact_accuracy_hi']:.2%}] "
                    f"({CONFIDENCE:.0%} Wilson interval), mean steps {result['mean_steps']:.2f}, "
                    f"{result['params']:,} params, {result['macs_per_inference']:,} MACs per puzzle")
    Console().print(f"difficulty: {difficulty_text(result['difficulty'])}")
    if "by_family" in result:
        fam = Table(title="puzzle-exact per family")
        for col in ("family", "puzzles", "puzzle-exact", f"{CONFIDENCE:.0%} Wilson"):
            fam.add_column(col, justify="right")
        for name, f in result["by_family"].items():
            fam.add_row(name, str(f["puzzles"]), f"{f['exact_accuracy']:.2%}",
                        f"[{f['exact_accuracy_lo']:.2%}, {f['exact_accuracy_hi']:.2%}]")
        Console().print(fam)
    if recipe is not None:
        Console().print(f"recipe {recipe} ({result['evaluated_by']}): {result['weight_bytes']:,} weight bytes, "
                        f"carry fidelity to fp32: final {result['fidelity_final']:.4f}, AUC {result['fidelity_auc']:.4f}")


@app.command()
def study(
    ctx: typer.Context,
    models: str = typer.Option("all", help="Comma-separated zoo models or checkpoint folders, or 'all'."),
    recipes: str = typer.Option("fp32,fp16,bf16,int8,int8-pt,int4-naive,int4-pc,w8a16,w4a16,"
                                "prune-50,prune-75,prune-90,prune-50s,distill,linattn,qat-int4",
                                help="Comma-separated recipes (built-in names or FILE.toml:NAME)."),
    depths: str = typer.Option("default", help="Semicolon-separated depths 'T,n,steps[,halt]'; "
                                               "'default' is the model's own; the first is the reference."),
    puzzles: int = typer.Option(500, help="Held-out puzzles per model."),
    depth_recipes: Optional[str] = typer.Option(None, help="Comma-separated recipes the depths after the first "
                                                           "apply to (default: every recipe)."),
    seed: int = typer.Option(2000), threads: int = typer.Option(2),
    out: Path = typer.Option(..., help="Folder for study.csv, study.parquet, summary.md. Rows land in "
                                       "OUT/rows.jsonl as they finish; rerunning the same command resumes."),
):
    """Sweep models × recipes × depths on the host (golden reference for integer recipes)."""
    import torch
    from rich.progress import Progress

    from .compress.study import StudyPlan, run_study, write_study
    from .models.checkpoint import zoo_names

    torch.set_num_threads(threads)
    plan = StudyPlan(models=zoo_names() if models == "all" else models.split(","),
                     recipes=recipes.split(","),
                     depths=[None if d.strip() == "default" else d.strip() for d in depths.split(";")],
                     puzzles=puzzles, seed=seed,
                     depth_recipes=depth_recipes.split(",") if depth_recipes else None)
    with Progress(console=console, transient=True) as progress:
        df = run_study(plan, progress, log=lambda m: progress.console.print(m), out=out)
    write_study(df, out, _command_line(ctx), plan)
    console.print(f"wrote {len(df)} rows to {out}/study.csv, study.parquet and summary.md")


@app.command()
def puzzles(
    task: str = typer.Option(..., help="sudoku, maze or arc"),
    out: Path = typer.Option(..., help="File to write: .jsonl (any task) or .csv (sudoku)."),
    n: int = typer.Option(100), size: Optional[int] = typer.Option(None),
    task_param: list[str] = typer.Option([], "--task-param", help="KEY=VALUE task parameter, e.g. min_givens=30."),
    split: str = typer.Option("test", help="train or test (held-out)."), seed: int = typer.Option(1000),
):
    """Generate a puzzle file."""
    from .tasks import make_task
    from .tasks.files import write_csv, write_jsonl

    try:
        t = make_task(**_task_spec(task, size, task_param))
    except (TypeError, ValueError) as e:
        _fail(f"--task {task} with {task_param}: {e}")
    with _progress_bar(f"generating {task}", n, False) as advance:
        items = []
        for p in t.iter_generate(n, seed, split):
            items.append(p)
            advance(1)
    (write_csv if out.suffix == ".csv" else write_jsonl)(out, t, items)
    console.print(f"wrote {len(items)} {split} puzzles to {out}")


@app.command()
def zoo(markdown: bool = typer.Option(False, "--markdown", help="Print the zoo table as Markdown.")):
    """List the shipped models and the figures on their cards."""
    from .models.card import zoo_table
    from .models.checkpoint import ZOO, zoo_names

    cards = []
    for name in zoo_names():
        card = ZOO / name / "card.json"
        if card.exists():
            cards.append(json.loads(card.read_text()))
        else:
            console.print(f"[yellow]{name}: no card yet (harness eval --model {name} --write-card)[/]")
    text = zoo_table(cards)
    if markdown:
        print(text, end="")
        return
    from rich.markdown import Markdown

    Console().print(Markdown(text))


@app.command()
def export(
    model: str = typer.Option(..., help="Zoo model name, checkpoint folder, or shape:NAME[@SEED] (random weights: "
                                        "cost only)."),
    recipe: str = typer.Option("int8", help="Integer recipe (int8, int8-pt, int4-naive, int4-pc, qat-int4, …)."),
    out: Path = typer.Option(..., help="Where to write the model blob."),
    target: Optional[str] = typer.Option(None, help="Check that the blob fits this target's blob region."),
    train: bool = typer.Option(False, help="A training recipe (qat-int4): train it now if its checkpoint is not cached."),
):
    """Compress a model with an integer recipe and write its model blob (docs/model-blob.md)."""
    import hashlib

    from .export.exporter import export_blob

    try:
        data = export_blob(model, recipe, train=train)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if target:
        t = _target(target)
        if len(data) > t.blob.size:
            _fail(f"the blob ({len(data):,} bytes) does not fit {t.name}'s blob region ({t.blob.size:,} bytes)")
    out.write_bytes(data)
    from .models.shapes import COST_ONLY, is_shape
    console.print(f"wrote {out} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}…)"
                  + (f" [bold]{COST_ONLY}[/]: random weights" if is_shape(model) else ""))


def _target(name: str):
    from .targets import TargetError, load_target
    try:
        return load_target(name)
    except TargetError as e:
        _fail(str(e))


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _open_board(board: str, target, blob: bytes, log_dir: Optional[Path], gdb_port: Optional[int] = None,
                **options):
    from .boards.errors import BoardUnavailable
    from .boards.factory import make_board
    if board == "serial" and not options.get("port"):
        _fail("--board serial needs the board's UART: --port /dev/ttyACM0 (and --probe-id ID when more than "
              "one debug probe is attached)")
    try:
        return make_board(board, target, blob, log_dir=log_dir, gdb_port=gdb_port,
                          **{k: v for k, v in options.items() if v is not None})
    except (BoardUnavailable, ValueError) as e:
        _fail(f"--board {board}: {e}")


@app.command()
def run(
    ctx: typer.Context,
    board: str = typer.Option("qemu", help="Backend: qemu, host, renode or serial (a physical board: --port)."),
    target: str = typer.Option("mps2-an386", help="Target (targets/*.toml)."),
    model: str = typer.Option(..., help="Zoo model name, checkpoint folder, or shape:NAME[@SEED] (random weights: "
                                        "cost only, no accuracy shown)."),
    recipe: str = typer.Option("int8", help="Integer recipe."),
    puzzles: str = typer.Option("20", help="N held-out puzzles, or a puzzle file."),
    depth: Optional[str] = typer.Option(None, help="T,n,steps[,halt]; default: the model's."),
    seed: int = typer.Option(1000, help="Seed of generated held-out puzzles."),
    embed_ram: bool = typer.Option(False, help="Copy the embedding table to RAM for each run."),
    check: bool = typer.Option(True, help="Compare every puzzle with the golden reference, bit for bit."),
    trace: bool = typer.Option(False, help="Capture every cycle's carries through the debug probe (the "
                                            "emulator's GDB server: --board qemu or renode) and compute the "
                                            "device's carry fidelity to fp32."),
    train: bool = typer.Option(False, help="A training recipe (qat-int4): train it now if its checkpoint is not cached."),
    blob_file: Optional[Path] = typer.Option(None, "--blob", help="Run this model blob (from `harness export --out`) "
                                             "instead of exporting --model with --recipe; --model still gives the puzzles."),
    port: Optional[str] = typer.Option(None, help="--board serial: the board's UART (e.g. /dev/ttyACM0)."),
    probe_id: Optional[str] = typer.Option(None, help="--board serial: the pyOCD probe's unique id (`pyocd list`)."),
    log_dir: Optional[Path] = typer.Option(None, help="Keep the board's log here."),
    start_timeout: Optional[float] = typer.Option(None, help="Seconds the board may take to start (the emulator "
                                                  "up and the firmware answering); default: the backend's "
                                                  "(Renode 120 s: a loaded 2-core machine)."),
    profile: bool = typer.Option(False, help="Run every puzzle a second time with the firmware's per-operation "
                                             "profile (docs/protocol.md, PROFILE) and print where the counts go."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Solve puzzles on a board running the prebuilt firmware: per-puzzle rows and a summary."""
    from . import figures as F
    from .boards.errors import BoardFailure
    from .boards.protocol import BoardError
    from .depth import Depth
    from .export.exporter import export_blob
    from .models.checkpoint import load_checkpoint
    from .models.evaluate import default_depth
    from .run import RunError, check_blob, open_probe, prebuilt_sections, profile_puzzles, provenance, run_puzzles
    from .tasks import stack
    from .tasks.puzzle_source import load_puzzle_source

    t = _target(target)
    try:
        net, task, config = load_checkpoint(model)
        d = Depth.parse(depth, default_depth(net))
        source, items = load_puzzle_source(task, puzzles, seed)
        if blob_file is not None:
            try:
                blob = blob_file.read_bytes()
            except OSError as e:
                raise ValueError(f"--blob {blob_file}: cannot read it ({e.strerror})") from None
        else:
            blob = export_blob(model, recipe, train=train)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if len(blob) > t.blob.size:
        fit = F.fit(t, len(blob), prebuilt_sections(t))
        if as_json:  # a result a script can read, rather than only an error
            print(json.dumps({"model": config["name"], "recipe": recipe, "target": t.name, "fits": False,
                              "summary": fit, "rows": []}))
        _fail(fit["does_not_fit"])
    try:
        check_blob(blob, stack(items[:1])[0].shape[1], f"--blob {blob_file}" if blob_file else f"the blob of {model} {recipe}")
    except RunError as e:
        _fail(str(e))
    if trace and board not in ("qemu", "renode"):
        _fail("--trace needs a board with a debug probe: --board qemu (or renode)")
    gdb_port = _free_port() if trace else None
    options = {"port": port, "probe_id": probe_id} if board == "serial" else {}
    b = _open_board(board, t, blob, log_dir, gdb_port, start_timeout=start_timeout, **options)
    try:
        with b, _progress_bar(f"{config['name']} {recipe} on {b.describe()}", len(items), as_json) as advance:
            probe = None
            if trace:
                b.info()
                probe = open_probe(b)
            try:
                out = run_puzzles(b, blob, task, items, d, progress=advance, check=check, embed_ram=embed_ram,
                                  probe=probe, reference=net if trace else None)
            finally:
                if probe is not None:
                    probe.close()
            if profile:
                out["profile"] = profile_puzzles(b, blob, task, items, d, out["rows"], embed_ram=embed_ram)
    except (BoardFailure, BoardError, RunError, RuntimeError) as e:
        _fail(f"{b.describe()}: {e}")
    result = {"model": config["name"], "recipe": recipe, "depth": d.label(), "puzzle_set": source,
              "command": _command_line(ctx), **provenance(b, blob), "summary": out["summary"], "rows": out["rows"]}
    if profile:
        result["profile"] = out["profile"]
    for r in result["rows"]:
        r.update(model=config["name"], recipe=recipe, depth=d.label(), target=t.name, board=b.id)
    from .models.shapes import COST_ONLY
    if config.get("cost_only"):     # random weights: cost and fit only; an accuracy here would be chance
        for part in [result["summary"], *result["rows"]]:
            for k in [k for k in part if k.startswith(("exact_accuracy", "cell_accuracy")) or k == "correct"]:
                del part[k]
            part["label"] = COST_ONLY
        result["label"] = COST_ONLY
    if as_json:
        print(json.dumps(result))
        return
    s = out["summary"]
    table = Table(title=f"{config['name']} {recipe} {d.label()} on {b.describe()}")
    for k in ("puzzles", "exact_accuracy", "cell_accuracy", "mean_steps", "golden_match", "carries_match_golden",
              "device_fidelity_final", "device_fidelity_equals_golden", "trace_wall_s_mean", "counts_mean",
              "latency_ms", "energy_uj", "stack_bytes_max", "arena_bytes_max", "blob_bytes", "flash_bytes_read_mean"):
        if s.get(k) is not None:
            v = s[k]
            text = f"{v:.2%}" if k.endswith("accuracy") else f"{v:,.4g}" if isinstance(v, float) else f"{v:,}"
            if k.endswith("accuracy") and s.get(f"{k}_lo") is not None:
                text += f" [{s[f'{k}_lo']:.2%}, {s[f'{k}_hi']:.2%}]"
            table.add_row(k, text)
    Console().print(table)
    from .stats import CELL_INTERVAL, CONFIDENCE, INTERVAL
    if config.get("cost_only"):
        Console().print(f"[bold]{COST_ONLY}[/]: {config['name']} has random weights (harness/models/shapes.py); "
                        "its figures are cost and fit, its accuracy is not shown")
    else:
        Console().print(f"accuracy intervals: {CONFIDENCE:.0%} (puzzle-exact: {INTERVAL}; cell: {CELL_INTERVAL})")
    Console().print(f"counts: {s['counts_kind']}, {s['counts_note']}; latency: {s['latency_basis']}")
    if s.get("firmware_flash") is not None:
        Console().print(f"memory on {t.name}: flash {s['firmware_flash']:,} B firmware + {s['blob_bytes']:,} B blob "
                        f"(limit {s['flash_limit']:,}); RAM {s['ram_static']:,} B static (limit {s['ram_limit']:,}); "
                        f"inference peak {s['ram_inference_peak']:,} B = {s['ram_peak_over_min']:.2f}x the theoretical "
                        f"minimum {s['ram_theoretical_min']:,} B; "
                        + ("fits" if s["fits"] else s["does_not_fit"]))
    if profile:
        _print_profile(out["profile"])
    if check and s.get("golden_match") != s["puzzles"]:
        console.print(f"[bold red]{s['puzzles'] - s['golden_match']} puzzle(s) differ from the golden reference[/]")
        raise typer.Exit(1)


def _print_profile(pr: dict) -> None:
    kind = pr["counts_kind"]
    table = Table(title=f"per-operation profile over {pr['puzzles']} puzzle(s): {kind}")
    for col in ("operation", "calls", kind, "share", f"{kind} per MAC"):
        table.add_column(col, justify="left" if col == "operation" else "right")
    for r in pr["ops"]:
        table.add_row(r["op"], f"{r['calls']:,}", f"{r['counts']:,.0f}", f"{r['share']:.1%}",
                      f"{r['counts_per_mac']:.3f}" if "counts_per_mac" in r else "")
    table.add_row("total", "", f"{pr['total']:,.0f}", "100.0%", "")
    Console().print(table)
    line = (f"parts add up to the total: {pr['parts_counter']:,} = {pr['total_counter']:,} {pr['counter_unit']}; "
            f"top cost: {pr['top']}")
    if "plain_total" in pr:
        line += (f"; the same puzzles without the profile: {pr['plain_total']:,.0f} {kind} (the profile's marks cost "
                 f"{pr['marks_cost']:,.0f}, {pr['marks_share']:.2%})")
    Console().print(line)


firmware_app = typer.Typer(help="Build and verify the prebuilt Cortex-M firmware (firmware-bin/).", no_args_is_help=True)
app.add_typer(firmware_app, name="firmware")


@firmware_app.command("build")
def firmware_build(target: Optional[list[str]] = typer.Option(None, help="Target(s); default: all."),
                   portable: bool = typer.Option(False, help="The comparison variant with the portable C linear "
                                                 "kernels (-DTRM_PORTABLE_KERNELS), into build/firmware-portable/.")):
    """Cross-compile the firmware into firmware-bin/<target>/ with a manifest."""
    from .firmware import FirmwareError, build
    from .targets import target_names
    for name in target or target_names():
        try:
            b = build(_target(name), portable=portable)
        except FirmwareError as e:
            _fail(str(e))
        s = b.manifest["sections"]
        console.print(f"{name}: flash {s['flash']:,} B (text {s['text']:,}), RAM {s['ram']:,} B "
                      f"(bss {s['bss']:,}, stack {s['stack']:,}), elf sha256 {b.manifest['files']['firmware.elf']['sha256'][:16]}…")


@firmware_app.command("verify")
def firmware_verify(target: Optional[list[str]] = typer.Option(None, help="Target(s); default: all.")):
    """Rebuild every target and compare with firmware-bin/ byte for byte (exit 1 on a difference)."""
    from .firmware import FirmwareError, verify
    try:
        problems = verify(target or None)
    except FirmwareError as e:
        _fail(str(e))
    for p in problems:
        console.print(f"[bold red]{p}[/]")
    if problems:
        raise typer.Exit(1)
    console.print("firmware-bin/ matches a fresh build byte for byte")


board_app = typer.Typer(help="Boards on this host for other hosts (a labgrid lab host: docs/farm.md).",
                        no_args_is_help=True)
app.add_typer(board_app, name="board")


@board_app.command("serve")
def board_serve(
    target: str = typer.Option(..., help="Target (targets/*.toml)."),
    emulator: str = typer.Option("qemu", help="qemu, or renode (on PATH; it listens on every interface)."),
    port: int = typer.Option(0, help="TCP port of the board's UART (0: a free one, printed)."),
    gdb_port: Optional[int] = typer.Option(None, help="TCP port of the emulator's GDB server (the probe); none "
                                                      "without it."),
    listen: str = typer.Option("127.0.0.1", help="Address the ports listen on (0.0.0.0: every interface)."),
    power_port: Optional[int] = typer.Option(None, help="TCP port of a power switch over HTTP (labgrid's simplerest "
                                                        "form: GET /power/0, /power/1): a NetworkPowerPort for it "
                                                        "power-cycles the board."),
    blob: Optional[Path] = typer.Option(None, help="Model blob to load (`harness export --out`): a remote board "
                                                   "runs the blob its lab host loaded."),
    log_dir: Optional[Path] = typer.Option(None, help="Keep the emulator's log here."),
):
    """Run an emulated board (QEMU or Renode) whose UART and GDB server listen on TCP, for a labgrid exporter to
    export as NetworkSerialPort and NetworkService; runs until stopped (SIGTERM, Ctrl-C)."""
    import signal
    from .boards.errors import BoardFailure, BoardUnavailable
    from .boards.factory import backend_missing, make_board
    from .boards.served import serve
    t = _target(target)
    if emulator not in ("qemu", "renode"):
        _fail(f"--emulator {emulator!r}: expected qemu or renode")
    if (msg := backend_missing(emulator)):
        _fail(msg)
    try:
        data = blob.read_bytes() if blob else None
    except OSError as e:
        _fail(f"--blob {blob}: cannot read it ({e.strerror})")
    options = {"listen": listen} if emulator == "qemu" else {}
    try:
        board = make_board(emulator, t, data, board_id=f"served-{t.name}", log_dir=log_dir, gdb_port=gdb_port,
                           uart_port=port or _free_port(), **options)
    except (BoardUnavailable, ValueError) as e:
        _fail(str(e))

    def stop(signum, frame):       # SIGTERM ends the command through serve's `finally`: QEMU stopped
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    try:
        code = serve(board, power_port, listen, say=lambda m: print(m, flush=True))
    except BoardFailure as e:
        _fail(str(e))
    except KeyboardInterrupt:
        return
    _fail(f"QEMU exited with {code}" + (f"; log: {board.log_path}" if log_dir else " (keep its log: --log-dir)"))


farm_app = typer.Typer(help="Run plans on a farm of boards (emulated or physical) into a journal.", no_args_is_help=True)
app.add_typer(farm_app, name="farm")


def _farm(plan_path: str, inventory: Optional[Path], out: Path, resume: bool, command: str) -> str:
    from .boards.inventory import InventoryError, load_inventory
    from .farm.folder import FolderError, check_journal, check_out, lock_folder
    from .farm.journal import JournalError
    from .farm.plan import PlanError, load_plan
    from .farm.scheduler import FarmError, default_inventory, farm_run

    try:
        plan = load_plan(plan_path)
        boards = load_inventory(inventory) if inventory else default_inventory(plan)
    except (PlanError, InventoryError) as e:
        _fail(str(e))
    from .boards.factory import backend_missing
    for kind in sorted({b.backend for b in boards}):
        if (msg := backend_missing(kind)):
            _fail(f"inventory boards with backend {kind}: {msg}")
    try:
        check_out(out, resume)   # nothing is written to OUT before the plan and OUT itself are checked
        with lock_folder(out, command):
            check_journal(out, plan, resume, command)
            return farm_run(plan, boards, out, resume=resume, console=console,
                            log=lambda m: console.print(m))
    except (FarmError, FolderError, JournalError) as e:
        _fail(str(e))


@farm_app.command("run")
def farm_run_cmd(
    ctx: typer.Context,
    plan: str = typer.Option("demo", help="Plan TOML, or the name of a shipped plan (harness/farm/plans/)."),
    inventory: Optional[Path] = typer.Option(None, help="Inventory TOML ([[board]] tables); default: one QEMU "
                                                        "board per target of the plan."),
    out: Path = typer.Option(..., help="Run folder: journal.sqlite, board logs, then the report."),
    resume: bool = typer.Option(False, help="Finish the run already in OUT (same plan): nothing is redone."),
    report: bool = typer.Option(True, help="Write the report into OUT when the run ends."),
):
    """Schedule the plan's jobs on the inventory's boards; every result goes to OUT/journal.sqlite."""
    run_id = _farm(plan, inventory, out, resume, _command_line(ctx))
    console.print(f"{run_id}: journal {out / 'journal.sqlite'}")
    if report:
        _report(out, None)


def _report(out: Path, baseline: Optional[Path]):
    from .report.build import build_report
    try:
        r = build_report(out, baseline)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    for d in r.decisions:
        rec = d.recommended
        console.print(f"[bold]{d.target}[/]: " + (f"recommended {rec['model']} {rec['recipe']} {rec['depth']}"
                                                   if rec else "no configuration meets the budgets"))
        for reason in d.reasons:
            console.print(f"  - {reason}")
    console.print(f"report: {out / 'report.html'} and {out / 'report.md'}")
    return r


def _run_folders(patterns: list[Path]) -> list[Path]:
    """The run folders named on the command line: a path as it is when it exists, else a glob pattern
    (quoted, so the shell left it alone) expanded in sorted order; a pattern matching nothing is an error."""
    import glob
    folders: list[Path] = []
    for p in patterns:
        if p.exists() or not glob.has_magic(str(p)):
            folders.append(p)
            continue
        found = sorted(glob.glob(str(p)))
        if not found:
            _fail(f"{p} matches no run folder")
        folders += [Path(f) for f in found]
    return folders


@app.command()
def report(
    out: list[Path] = typer.Argument(..., help="A `harness farm run --out` folder; with --history, one or more "
                                               "(or quoted glob patterns such as 'runs/nightly-*')."),
    baseline: Optional[Path] = typer.Option(None, help="An earlier run folder: show what changed and exit 1 "
                                                       "on a regression beyond the plan's \\[regression] thresholds."),
    history: bool = typer.Option(False, "--history", help="Trend over the runs given (ordered by finish time): "
                                 "trend.md, trend.html, trend.csv in --to; exit 1 when the newest run regresses "
                                 "against the one before it. The run folders are only read."),
    to: Optional[Path] = typer.Option(None, "--to", metavar="DIR", help="Where --history writes the trend page "
                                      "(default: ./history, outside the run folders, so a glob over them never "
                                      "meets it)."),
    metrics: Optional[Path] = typer.Option(None, "--metrics", metavar="FILE", help="Also write OpenMetrics text "
                                           "of the (newest) run's figures: one gauge per figure, one sample per "
                                           "configuration, labelled model, recipe, depth, target."),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="Also write the gate's verdicts "
                                         "as JUnit XML: one testsuite per comparison, one testcase per "
                                         "configuration, a failure per regressed one."),
):
    """Tables, plots, decisions and provenance of a farm run (report.html, report.md, parquet and CSV);
    with --history, the trend over several runs."""
    from .report import history as H
    folders = _run_folders(out)
    if history:
        if baseline is not None:
            _fail("--baseline and --history do not go together: put the baseline first among the --history folders")
        try:
            h = H.load_history(folders)
            files = H.write_trend(h, to if to is not None else Path("history"))
            if metrics is not None:
                H.write_metrics(metrics, h.newest.configs, H.run_info(h.newest.data))
            if junit is not None:
                H.write_junit(junit, H.suites_of(h))
        except (FileNotFoundError, ValueError) as e:
            _fail(str(e))
        except OSError as e:
            _fail(f"{e.filename or ''}: {e.strerror or e}")
        for p in h.pairs:
            console.print(f"{p.old.label} -> {p.new.label}: {len(p.changes)} change(s), "
                          f"{len(p.regressions)} regression(s)")
        console.print(f"trend: {files['html']} and {files['md']}")
        _report_exports(metrics, junit)
        if h.regressions:
            old = h.pairs[-1].old.label
            console.print(f"[bold red]{len(h.regressions)} regression(s) of {h.newest.label} against {old}[/]")
            for c in h.regressions:
                console.print(f"  {c.config}: {c.metric} {c.old} -> {c.new} {c.note}")
            raise typer.Exit(1)
        return
    if to is not None:
        _fail("--to is where --history writes its trend page: a single report goes into its run folder")
    if len(folders) != 1:
        _fail(f"{len(folders)} run folders given: one, or pass --history for a trend over several")
    folder = folders[0]
    r = _report(folder, baseline)
    if metrics is not None or junit is not None:
        from .report.tables import load_run
        try:
            rd = load_run(folder)
            if metrics is not None:
                H.write_metrics(metrics, r.tables["configs"], H.run_info(rd))
            if junit is not None:
                old = load_run(baseline) if baseline is not None else None
                H.write_junit(junit, [H.suite_of_report(rd, r.tables["configs"], r.changes, old)])
        except OSError as e:
            _fail(f"{e.filename or ''}: {e.strerror or e}")
        _report_exports(metrics, junit)
    if baseline is not None:
        if r.regressions:
            console.print(f"[bold red]{len(r.regressions)} regression(s) against {baseline}[/]")
            for c in r.regressions:
                console.print(f"  {c.config}: {c.metric} {c.old} -> {c.new} {c.note}")
            raise typer.Exit(1)
        console.print(f"no regression against {baseline} ({len(r.changes)} change(s) within the thresholds)")


def _report_exports(metrics: Optional[Path], junit: Optional[Path]) -> None:
    for what, path in (("OpenMetrics", metrics), ("JUnit", junit)):
        if path is not None:
            console.print(f"{what}: {path}")


@app.command()
def demo(
    ctx: typer.Context,
    out: Path = typer.Option(Path("runs/demo"), help="Run folder for the journal and the report."),
    resume: bool = typer.Option(False, help="Finish an interrupted demo in OUT."),
):
    """The main job, small: the shipped demo plan on QEMU boards (two targets, both mixers, fp32 vs int8 vs
    int4-naive vs int4-pc, two depths), then the report and a recommendation per target."""
    from .farm.journal import NAME
    if (out / NAME).exists() and not resume:
        _fail(f"{out} already holds a run: pass --resume to finish it, or choose another --out")
    _farm("demo", None, out, resume, _command_line(ctx))
    _report(out, None)


class _progress_bar:
    """A rich progress bar on stderr (silent with --json), handing out an ``advance(k)`` callable."""

    def __init__(self, description: str, total: int, quiet: bool):
        from rich.progress import Progress

        self.progress = Progress(console=console, transient=True, disable=quiet)
        self.description, self.total = description, total

    def __enter__(self):
        self.progress.__enter__()
        bar = self.progress.add_task(self.description, total=self.total)
        return lambda k: self.progress.advance(bar, k)

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
