"""``chipfit catalog``: the devices chipfit can predict for, and the source of every figure."""

from __future__ import annotations

import argparse

from chipfit.commands._common import out, print_json, show

ORDER = 45


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="list the hardware catalog (peaks, memory, prices, sources)")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list",
                   help="list every device (default) or show one entry with its sources")
    p.add_argument("key", nargs="?", help="the catalog key to show, e.g. h100-sxm")
    p.add_argument("--kind", choices=("cpu", "gpu", "tpu", "npu"), help="only devices of this kind")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--wide", action="store_true", help="every column, however narrow the "
                   "terminal (by default columns that do not fit are left out and named)")
    p.set_defaults(func=run)


def _entry_json(spec) -> dict:
    from dataclasses import asdict

    return asdict(spec)


def run(args: argparse.Namespace) -> int:
    from chipfit.errors import InvalidInputError
    from chipfit.hardware.catalog import Catalog, load_catalog
    from chipfit.report.predict_view import catalog_entry, catalog_table

    catalog = load_catalog()
    if args.action == "show":
        if not args.key:
            raise InvalidInputError("chipfit catalog show needs a KEY, e.g. chipfit catalog show "
                                    "h100-sxm (chipfit catalog lists them)")
        spec = catalog[args.key]
        if args.json:
            print_json(_entry_json(spec))
        else:
            out.print(catalog_entry(spec))
        return 0
    if args.key:
        raise InvalidInputError(f"unexpected {args.key!r}: use chipfit catalog show {args.key}")
    chosen = Catalog({k: s for k, s in catalog.items() if not args.kind or s.kind == args.kind})
    if args.json:
        print_json({"source": "catalog", "devices": [_entry_json(s) for s in chosen.values()]})
    else:
        show(catalog_table(chosen, out.width, args.wide), args.wide)
    return 0
