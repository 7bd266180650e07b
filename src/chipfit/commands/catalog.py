"""``chipfit catalog``: the devices chipfit can predict for, the source of every figure, the
price of each (provider, date, basis), and ``--check`` for every gap."""

from __future__ import annotations

import argparse

from chipfit.commands._common import add_catalog_flags, out, print_json, show

ORDER = 45


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number of days, not {text[:40]!r}"
                                         ) from None
    if not 1 <= value <= 36_500:
        raise argparse.ArgumentTypeError(f"{value}: use 1 to 36500 days")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="list the hardware catalog (peaks, memory, prices with "
                       "provider and date, sources); --check lists every gap")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list",
                   help="list every device (default) or show one entry with its sources")
    p.add_argument("key", nargs="?", help="the catalog key to show, e.g. h100-sxm")
    p.add_argument("--kind", choices=("cpu", "gpu", "tpu", "npu"), help="only devices of this kind")
    p.add_argument("--check", action="store_true", help="list every missing or unsourced figure "
                   "and every stale price; exit 1 when a device lacks a core figure")
    p.add_argument("--stale-days", type=_days, metavar="DAYS", help="with --check: a price "
                   "read longer ago than this is stale (default 365)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--wide", action="store_true", help="every column, however narrow the "
                   "terminal (by default columns that do not fit are left out and named)")
    add_catalog_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chipfit.errors import InvalidInputError
    from chipfit.hardware.catalog import STALE_DAYS, Catalog, check_catalog, load_catalog
    from chipfit.hardware.gpu_arch import gpu_figures
    from chipfit.report.catalog_view import (
        catalog_list_table,
        check_table,
        entry_json,
        show_entry,
    )

    catalog = load_catalog()
    arch = set(gpu_figures())
    if args.stale_days and not args.check:
        raise InvalidInputError("--stale-days goes with --check")
    if args.check:
        if args.action != "list" or args.key:
            raise InvalidInputError("chipfit catalog --check checks the whole catalog; drop "
                                    f"{args.key or args.action!r}")
        stale = args.stale_days or STALE_DAYS
        items = check_catalog(catalog, stale, arch_keys=arch)
        errors = [i for i in items if i.severity == "error"]
        if args.json:
            print_json({"source": "catalog", "catalog": catalog.origin, "stale_days": stale,
                        "errors": len(errors), "warnings": len(items) - len(errors),
                        "items": [vars(i) for i in items]})
        else:
            show(check_table(items, stale), args.wide)
            out.print(f"{len(catalog)} devices; {len(errors)} without a core figure"
                      + ("" if not errors else " (exit 1)"))
        return 1 if errors else 0
    if args.action == "show":
        if not args.key:
            raise InvalidInputError("chipfit catalog show needs a KEY, e.g. chipfit catalog show "
                                    "h100-sxm (chipfit catalog lists them)")
        spec = catalog[args.key]
        if args.json:
            print_json(entry_json(spec) | {"roofline_only": spec.kind == "gpu"
                                           and spec.key not in arch})
        else:
            show(show_entry(spec), args.wide)
        return 0
    if args.key:
        raise InvalidInputError(f"unexpected {args.key!r}: use chipfit catalog show {args.key}")
    chosen = Catalog({k: s for k, s in catalog.items() if not args.kind or s.kind == args.kind},
                     catalog.origin, catalog.basis)
    if args.json:
        print_json({"source": "catalog", "catalog": catalog.origin, "price_basis": catalog.basis,
                    "providers": catalog.providers(),
                    "devices": [entry_json(s) | {"roofline_only": s.kind == "gpu"
                                                 and s.key not in arch}
                                for s in chosen.values()]})
    else:
        show(catalog_list_table(chosen, out.width, args.wide, arch_keys=arch), args.wide)
    return 0

