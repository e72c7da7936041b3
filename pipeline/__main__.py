"""Command-line entry: ``python -m pipeline COMMAND [ARGS...]``.

Each command lives in its own module and exposes ``main(argv) -> int``; it is
imported only when run, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

# Command name -> (module, one-line help). Add a line here to add a command.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("pipeline.validate_params", "check params.yaml against every stage's schema"),
    "labels": ("pipeline.labels.cli", "convert face labels: COCO JSON, VOC, YOLO, OpenCV list, CSV"),
    "design": ("pipeline.experiments.design_cli", "plan and queue DVC experiments over params keys"),
    "effects": ("pipeline.experiments.effects_cli", "factor effects on a metric, beyond seed noise"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m pipeline COMMAND [ARGS...]\n\ncommands:")
        for name, (_, summary) in sorted(COMMANDS.items()):
            print(f"  {name:<20} {summary}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}; valid commands: {sorted(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
