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
    import torch

    model = config["model"]
    card = {
        "name": config["name"],
        "task": config["task"],
        "model": model,
        "params": result["params"],
        "macs_per_inference": result["macs_per_inference"],
        "depth": result["depth"],
        "training": {
            "command": config.get("train_command", ""),
            "seconds": config.get("train_seconds"),
            "iterations": config.get("iterations"),
            "seed": config.get("train", {}).get("seed"),
            "machine": f"{platform.machine()} CPU, torch {torch.__version__}, "
                       f"{config.get('train', {}).get('threads', '?')} thread(s)",
        },
        "evaluation": {
            "command": eval_command,
            "puzzle_set": result["puzzle_set"],
            "cell_accuracy": result["cell_accuracy"],
            "exact_accuracy": result["exact_accuracy"],
            "per_step": result["per_step"],
        },
    }
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
        "Reproduce:",
        "",
        "```",
        tr["command"] or "(training command not recorded)",
        ev["command"],
        "```",
        "",
    ]
    return "\n".join(lines)
