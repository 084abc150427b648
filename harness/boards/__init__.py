"""Boards: every backend (qemu here; renode, serial and host in the boards issue) speaks the framed
protocol of docs/protocol.md through the same ``Board`` interface (``base.py``)."""
