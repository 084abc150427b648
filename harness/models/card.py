"""Model cards: what a zoo model is, how it was trained and what ``harness eval`` measured on it.

Every figure on a card comes from the checkpoint's own record (training) or from the ``harness eval``
run that wrote the card; the card keeps both commands so anyone can rerun them."""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Callable

from .. import rotary
from ..tasks import difficulty_text
from .checkpoint import atomic_write_text


def training_commands(config: dict[str, Any]) -> list[str]:
    """The commands that made the checkpoint, in order. A resume cut short (a session's end) and
    run again with the same command continues the same schedule, so consecutive repeats are one
    step of the recipe and are listed once."""
    recorded = config.get("train_commands") or [config.get("train_command", "")]
    return [c for i, c in enumerate(recorded) if i == 0 or c != recorded[i - 1]]


def same_checkpoint(old: dict[str, Any], config: dict[str, Any], result: dict[str, Any]) -> bool:
    """Whether the card ``old`` was written for the weights evaluated in ``result``: by the weights'
    sha256 (``model_digest``) where both record it; a card from before cards recorded it is taken as
    the same checkpoint when its parameter count and trained iterations are the checkpoint's."""
    if old.get("model_sha256") and result.get("model_sha256"):
        return old["model_sha256"] == result["model_sha256"]
    return (old.get("params") == result.get("params")
            and old.get("training", {}).get("iterations") == config.get("iterations"))


def write_card(folder: Path, config: dict[str, Any], result: dict[str, Any], eval_command: str,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the card from a generated held-out evaluation; an evaluation on another puzzle set (a file,
    ARC-AGI-1) is added to the existing card under ``other_evaluations``, keyed by the set's kind."""
    import torch

    evaluation = {
        "command": eval_command,
        "model_sha256": result.get("model_sha256"),
        "puzzle_set": result["puzzle_set"],
        "cell_accuracy": result["cell_accuracy"],
        "exact_accuracy": result["exact_accuracy"],
        "exact_accuracy_lo": result["exact_accuracy_lo"],
        "exact_accuracy_hi": result["exact_accuracy_hi"],
        "difficulty": result["difficulty"],
        "per_step": result["per_step"],
        **({"by_family": result["by_family"]} if "by_family" in result else {}),
    }
    path = folder / "card.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    kind = result["puzzle_set"]["kind"]
    varied = result["puzzle_set"].get("task_params")
    same = bool(old) and same_checkpoint(old, config, result)
    if kind != "generated" or varied:
        # another set (a file, ARC-AGI-1, generated puzzles of another difficulty) joins the card's list
        key = kind + "".join(f" {k}={v}" for k, v in (varied or {}).items())
        if not old:
            raise ValueError(f"write the card from a generated held-out evaluation before adding {key}")
        if not same:
            raise ValueError(f"{path} describes another checkpoint than {folder}'s weights: write the card "
                             f"from a generated held-out evaluation (no --task-param) before adding {key}")
        old.setdefault("other_evaluations", {})[key] = evaluation   # each evaluation records its weights
        atomic_write_text(path, json.dumps(old, indent=2) + "\n")
        atomic_write_text(folder / "card.md", render_markdown(old))
        return old
    model = config["model"]
    card = {
        "name": config["name"],
        "task": config["task"],
        "model": model,
        "params": result["params"],
        "macs_per_inference": result["macs_per_inference"],
        "depth": result["depth"],
        "model_sha256": result.get("model_sha256"),
        "training": {
            "commands": training_commands(config),
            "seconds": config.get("train_seconds"),
            "iterations": config.get("iterations"),
            "schedule": config.get("train", {}).get("iterations"),
            "seed": config.get("train", {}).get("seed"),
            "machine": f"{platform.machine()} CPU, torch {torch.__version__}, "
                       f"{config.get('train', {}).get('threads', '?')} thread(s)",
        },
        "evaluation": evaluation,
        "other_evaluations": old.get("other_evaluations", {}) if same else {},
    }
    if old.get("other_evaluations") and not same:
        log(f"{path}: the evaluations on other puzzle sets ({', '.join(old['other_evaluations'])}) were made "
            f"with another checkpoint and are dropped; run them again with --write-card")
    if config.get("imported"):
        card["origin"] = config["imported"]
    if config["task"]["name"] == "arc":
        from ..tasks.arc import arckit_coverage

        t = config["task"]
        cov = arckit_coverage(t["size"], rows=t.get("rows"))
        card["arc_agi_1"] = {**cov, "canvas": f"{t.get('rows') or t['size']}x{t['size']}"}
    atomic_write_text(folder / "card.json", json.dumps(card, indent=2) + "\n")
    atomic_write_text(folder / "card.md", render_markdown(card))
    return card


def write_import_card(folder: Path) -> dict[str, Any]:
    """The card of a model just imported (``harness import``): what it is and where it came from, with no
    accuracy yet (``harness eval --model FOLDER --write-card`` measures it and keeps the origin)."""
    from ..depth import Depth
    from .checkpoint import load_checkpoint
    from .evaluate import default_depth
    from .trm import macs_per_inference

    model, _, config = load_checkpoint(folder)
    d = default_depth(model)
    card = {"name": config["name"], "task": config["task"], "model": config["model"], "params": config["params"],
            "macs_per_inference": macs_per_inference(model.cfg, d.T, d.n, d.steps),
            "depth": {"T": d.T, "n": d.n, "steps": d.steps, "halting": d.halting},
            "origin": config["imported"], "evaluation": None}
    atomic_write_text(folder / "card.json", json.dumps(card, indent=2) + "\n")
    atomic_write_text(folder / "card.md", render_markdown(card))
    return card


def _architecture(m: dict[str, Any]) -> str:
    """What the model is, in words: TRM or HRM, its mixer, and the official layout's pieces it has."""
    name = "HRM" if m.get("arch") == "hrm" else "TRM"
    parts = [f"{m['mixer']} mixer"]
    if m.get("arch") == "hrm":
        parts.append(f"z network {m['layers']} blocks, y network {m['y_layers']} blocks")
    if m.get("puzzle_emb_len"):
        parts.append(f"{m['puzzle_emb_len']}-row puzzle-embedding prefix ({m['puzzle_ids']} identifiers)")
    if m.get("halt_logits", 1) == 2:
        parts.append("two-logit halting head")
    if m.get("pos_encodings") == "learned":
        parts.append("learned positions")
    if m.get("rope_axes"):
        parts.append(f"rotary positions over {rotary.spell(m['rope_axes'])} axes, theta "
                     f"{m.get('rope_theta', 10000.0):g}")
    return f"{name} ({', '.join(parts)})"


def _inner_widths(m: dict[str, Any]) -> str:
    from .trm import TRMConfig

    cfg = TRMConfig.from_dict(m)
    return (f"mixer {cfg.mix_width}, " if cfg.mixer == "mlp" else "") + f"channel {cfg.ffn_width}"


def _interval(ev: dict[str, Any]) -> str:
    """' [lo, hi] (95% Wilson)' where the evaluation recorded its interval (older cards did not)."""
    if "exact_accuracy_lo" not in ev:
        return ""
    from ..stats import CONFIDENCE

    return f" [{ev['exact_accuracy_lo']:.2%}, {ev['exact_accuracy_hi']:.2%}] ({CONFIDENCE:.0%} Wilson)"


def render_markdown(card: dict[str, Any]) -> str:
    m, t, ev = card["model"], card["task"], card["evaluation"]
    task_desc = ", ".join(f"{k}={v}" for k, v in t.items() if k != "name")
    origin = card.get("origin")
    lines = [
        f"# {card['name']}",
        "",
        f"{_architecture(m)} for **{t['name']}** ({task_desc}).",
        "",
        "| field | value |",
        "|---|---|",
        f"| parameters | {card['params']:,} |",
        f"| hidden × layers, SwiGLU inner widths | {m['hidden']} × {m['layers']}, {_inner_widths(m)} |",
        f"| depth (T, n, supervision steps) | {card['depth']['T']}, {card['depth']['n']}, {card['depth']['steps']} |",
        f"| MACs per inference at this depth | {card['macs_per_inference']:,} |",
        f"| halting head | {'trained' if m['halting'] else 'none'} (not used in this evaluation: all steps run) |",
        *([f"| weights evaluated (sha256 of tensors and config) | `{card['model_sha256'][:16]}…` |"]
          if card.get("model_sha256") else []),
    ]
    if origin:
        lines += [f"| imported from | {origin['kind']} ({origin['variant']}) checkpoint `{origin['checkpoint']}`, "
                  f"sha256 {origin['checkpoint_sha256'][:16]}…, {origin['tensors']} tensors "
                  f"({', '.join(origin['dtypes'])}); config {origin['config'] or 'none'} |",
                  f"| changes on import | {'; '.join(origin['changes']) or 'none'} |"]
    else:
        tr = card["training"]
        minutes = f"{tr['seconds'] / 60:.1f} min" if tr.get("seconds") else "unknown"
        stopped = (f" of a {tr['schedule']}-iteration schedule (stopped before its end)"
                   if tr.get("schedule") and tr["iterations"] and tr["iterations"] < tr["schedule"] else "")
        lines.append(f"| training | {tr['iterations']} iterations{stopped}, {minutes} on {tr['machine']}, "
                     f"seed {tr['seed']} |")
    if ev is None:
        lines += ["", "Not evaluated yet: `harness eval --model FOLDER --write-card` measures its accuracy "
                      "(on the task's puzzles, identifier 0 for every puzzle).", ""]
    else:
        lines += [
            f"| evaluated on | {ev['puzzle_set']['description']} |",
            *([f"| difficulty | {difficulty_text(ev['difficulty'])} |"] if "difficulty" in ev else []),
            f"| cell accuracy | {ev['cell_accuracy']:.2%} |",
            f"| puzzle-exact accuracy | {ev['exact_accuracy']:.2%}{_interval(ev)} |",
            "",
            "Accuracy after each supervision step:",
            "",
            "| step | cell | puzzle-exact |",
            "|---:|---:|---:|",
            *(f"| {r['step']} | {r['cell_accuracy']:.2%} | {r['exact_accuracy']:.2%} |" for r in ev["per_step"]),
            "",
        ]
        if ev.get("by_family"):
            lines += ["Puzzle-exact accuracy per family (95% Wilson):", "", "| family | puzzles | puzzle-exact |",
                      "|---|---:|---:|",
                      *(f"| {k} | {f['puzzles']} | {f['exact_accuracy']:.2%} [{f['exact_accuracy_lo']:.2%}, "
                        f"{f['exact_accuracy_hi']:.2%}] |" for k, f in ev["by_family"].items()), ""]
    if "arc_agi_1" in card:
        a = card["arc_agi_1"]
        lines += [f"Real ARC-AGI-1 evaluation tasks (arckit): {a['fitting']} of {a['total']} fit this model's "
                  f"{a['canvas']} canvas" + (", so none can be evaluated with it." if not a["fitting"] else
                                             " (`harness eval --puzzles arc-agi-1`)."), ""]
    for other in card.get("other_evaluations", {}).values():
        hard = f" ({difficulty_text(other['difficulty'])})" if "difficulty" in other else ""
        lines += [f"On {other['puzzle_set']['description']}{hard}: cell {other['cell_accuracy']:.2%}, "
                  f"puzzle-exact {other['exact_accuracy']:.2%}{_interval(other)}.", ""]
    made = [origin["command"]] if origin else card["training"]["commands"] or ["(training command not recorded)"]
    commands = [*made, *([ev["command"]] if ev else [])]
    commands += [o["command"] for o in card.get("other_evaluations", {}).values()]
    lines += ["Reproduce:", "", "```", *commands, "```", ""]
    return "\n".join(lines)


def _exact_interval(ev: dict[str, Any]) -> tuple[float, float]:
    """The puzzle-exact Wilson interval of an evaluation: as recorded, or (cards from before intervals were
    recorded) from its puzzle count and accuracy, which give the number solved."""
    if "exact_accuracy_lo" in ev:
        return ev["exact_accuracy_lo"], ev["exact_accuracy_hi"]
    from ..stats import wilson

    n = ev["puzzle_set"]["count"]
    return wilson(round(ev["exact_accuracy"] * n), n)


def zoo_table(cards: list[dict[str, Any]]) -> str:
    """Markdown table of the zoo, one row per card."""
    from ..stats import CONFIDENCE

    rows = ["| model | task | architecture | params | MACs/inference | depth (T,n,steps) | training | "
            f"cell acc. | puzzle-exact [{CONFIDENCE:.0%} Wilson] |", "|---|---|---|---:|---:|---|---:|---:|---:|"]
    for c in cards:
        t, ev = c["task"], c["evaluation"]
        task = f"{t['name']} {t.get('rows') or t['size']}×{t['size']}" if "size" in t else t["name"]
        if t.get("min_givens"):
            task += f", ≥{t['min_givens']} givens"
        minutes = f"{c['training']['seconds'] / 60:.0f} min" if c["training"].get("seconds") else "?"
        arch = f"{c['model'].get('arch', 'trm').upper()} {c['model']['mixer']}"
        if c["model"].get("rope_axes"):
            arch += f", {rotary.spell(c['model']['rope_axes'])} rotary"
        if c["model"].get("pos_encodings") == "learned":
            arch += ", learned positions"
        lo, hi = _exact_interval(ev)
        rows.append(f"| {c['name']} | {task} | {arch} | {c['params']:,} | "
                    f"{c['macs_per_inference']:,} | {c['depth']['T']},{c['depth']['n']},{c['depth']['steps']} | "
                    f"{minutes} | {ev['cell_accuracy']:.1%} | {ev['exact_accuracy']:.1%} [{lo:.1%}, {hi:.1%}] |")
    return "\n".join(rows) + "\n"
