"""Boards: every backend (qemu, renode, serial, host) speaks the framed protocol of docs/protocol.md
through the same ``Board`` interface (``base.py``); ``factory.make_board`` builds one by name."""
