"""``zaoxiang keys create|list|revoke``: manage the service's API keys (stored hashed)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from zaoxiang.service.auth import KeyStore
from zaoxiang.service.core import DataPaths
from zaoxiang.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="create, list or revoke API keys for `zaoxiang serve`")
    p.add_argument("--data-dir", type=Path, help="the server's data directory")
    actions = p.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    c = actions.add_parser("create", help="make a key and print it (shown once)")
    c.add_argument("--name", default="", help="a label, e.g. who uses it")
    actions.add_parser("list", help="list keys (ids and names, never secrets)")
    r = actions.add_parser("revoke", help="revoke a key by its id")
    r.add_argument("key_id")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(data_dir=args.data_dir)
    store = KeyStore(DataPaths(Path(settings.data_dir).expanduser()).keys)
    try:
        if args.keys_action == "create":
            info, secret = store.create(args.name)
            print(secret)
            print(f"(id {info.id}; store it now: only its hash is kept)", flush=True)
            return 0
        if args.keys_action == "list":
            for k in store.list():
                state = "revoked " + _when(k.revoked) if k.revoked else "active"
                print(f"{k.id}  {_when(k.created)}  {state:<28} {k.name}")
            return 0
        if store.revoke(args.key_id):
            print(f"revoked {args.key_id}")
            return 0
        print(f"no active key {args.key_id!r}")
        return 1
    finally:
        store.close()


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"
