"""The `stoker` command: run the operator, or print the CRDs."""

from __future__ import annotations

import argparse
import logging
import sys


def _operator(args: argparse.Namespace) -> int:
    import stoker.main  # registers the handlers

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Kopf logs every handler call at INFO: one line per watch event is noise at our volume.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, logging.root.level))
    stoker.main.run_operator()
    return 0


def _crds(args: argparse.Namespace) -> int:
    from stoker.api.crds import rendered

    sys.stdout.write("---\n".join(rendered().values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stoker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    op = sub.add_parser("operator", help="run the operator (settings from STOKER_* variables)")
    op.add_argument("--log-level", default="info")
    op.set_defaults(fn=_operator)
    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions")
    crds.set_defaults(fn=_crds)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
