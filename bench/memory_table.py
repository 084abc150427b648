"""Flash and RAM per target, model and recipe, measured on the QEMU boards (docs/boards.md, "Memory").

    python bench/memory_table.py [--models sudoku6-mlp,sudoku6-attention] [--recipes int8,int4-pc]

Prints a Markdown table. Each row is one puzzle at depth 1,1,1 (the stack high-water mark and the arena
do not depend on depth), run once with the embeddings read from flash and once copied to RAM.
"""
from __future__ import annotations

import argparse

from harness.boards.base import RunRequest
from harness.boards.qemu import QemuBoard
from harness.export import blob as B
from harness.export.exporter import export_blob
from harness.figures import fit, ram_theoretical_min
from harness.models.checkpoint import load_checkpoint
from harness.targets import load_target, target_names
from harness.run import firmware_sections
from harness.tasks import stack


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="sudoku6-mlp,sudoku6-attention")
    ap.add_argument("--recipes", default="int8,int4-pc")
    ap.add_argument("--targets", default=",".join(target_names()))
    a = ap.parse_args()
    print("| target | model | recipe | firmware flash | blob | stack HWM | arena | RAM peak | theoretical min | peak / min "
          "| embeddings in RAM: + RAM | − flash read / z-update |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in a.models.split(","):
        _, task, _ = load_checkpoint(model)
        x, _ = stack(task.generate(1, seed=7, split="test"))
        for recipe in a.recipes.split(","):
            blob = export_blob(model, recipe)
            for name in a.targets.split(","):
                with QemuBoard(load_target(name), blob) as board:
                    board.info()
                    flash = board.run(RunRequest(x[0], 1, 1, 1))
                    ram = board.run(RunRequest(x[0], 1, 1, 1, embed_ram=True))
                m = fit(board.target, len(blob), firmware_sections(board), flash.stack_bytes)
                peak, minimum = flash.arena_bytes + flash.stack_bytes, ram_theoretical_min(B.read_header(blob))
                print(f"| {name} | {model} | {recipe} | {m['firmware_flash']:,} | {len(blob):,} | {flash.stack_bytes:,} "
                      f"| {flash.arena_bytes:,} | {peak:,} | {minimum:,} "
                      f"| {peak / minimum:.2f} | {ram.arena_bytes - flash.arena_bytes:,} "
                      f"| {flash.flash_bytes_read - ram.flash_bytes_read:,} |")


if __name__ == "__main__":
    main()
